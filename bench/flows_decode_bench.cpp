// flows_decode_bench: flow events decoded (agent/flows/decode.cpp) and stored (FlowStore, 4095)
// per second on one core, from synthetic np_trace_event records of a translated TCP segment.
// Usage: flows_decode_bench [events=2000000]
#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "flows/decode.h"
#include "flows/store.h"
#include "np_trace.h"

int main(int argc, char** argv) {
  const long n = argc > 1 ? std::atol(argv[1]) : 2000000;
  np_trace_event ev{};
  ev.type = NP_EVENT_TRACE;
  ev.point = NP_TRACE_TO_STACK;
  ev.verdict = NP_VERDICT_FORWARDED;
  ev.flags = NP_EVENT_F_XLATED;
  ev.rev_nat_id = 7;
  ev.orig_saddr = htonl(0xc0a80ac8);
  ev.orig_daddr = htonl(0xc0a80a64);
  uint8_t* p = ev.data;
  p[12] = 0x08;
  p[14] = 0x45;
  p[14 + 9] = 6;
  const uint8_t src[4] = {192, 168, 10, 200}, dst[4] = {10, 0, 1, 10};
  std::memcpy(p + 14 + 12, src, 4);
  std::memcpy(p + 14 + 16, dst, 4);
  p[34] = 0x9c;
  p[36] = 0x1f;
  p[37] = 0x90;
  p[34 + 13] = 0x10;
  ev.cap_len = 54;
  ev.len = 54;
  np::flows::DecodeContext ctx;
  ctx.nodeName = "node-1";
  ctx.service = [](uint16_t) -> std::optional<np::flows::ServiceName> { return np::flows::ServiceName{"web", "default"}; };
  np::flows::FlowStore store(4095);
  long bad = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < n; i++) {
    ev.ktime = static_cast<uint64_t>(i);
    auto f = np::flows::decodeEvent(&ev, sizeof ev, ctx);
    if (!f) {
      bad++;
      continue;
    }
    store.push(std::move(*f));
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("events=%ld seconds=%.3f decoded_and_stored_per_sec=%.0f undecodable=%ld\n", n, s, n / s, bad);
  return bad == 0 ? 0 : 1;
}
