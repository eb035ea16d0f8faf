// flows_decode_bench: flow events taken by the agent's reader (agent/flows/decode.cpp capture,
// FlowStore of 4095) per second on one core, from synthetic np_trace_event records of a translated
// TCP segment and of a socket-level translation; beside them the same events decoded into Hubble
// messages per event (the reader before records), and the cost of reading the whole store.
// Usage: flows_decode_bench [events=2000000]
#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

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
  ctx.service = [](uint16_t) -> std::shared_ptr<const np::flows::ServiceName> { return std::make_shared<const np::flows::ServiceName>(np::flows::ServiceName{"web", "default"}); };
  // The reader's work per event (agent/flows/flows.cpp): capture (the bytes and the names) and
  // store; then what a client reading the whole store costs (render every flow), and, for the
  // baseline, decoding and storing each flow's message as the reader did before records.
  np_trace_event sock{};
  sock.type = NP_EVENT_TRACE_SOCK;
  sock.rev_nat_id = 7;
  sock.orig_daddr = htonl(0x0a60000a);
  sock.orig_dport = htons(80);
  np_trace_sock sk{};
  sk.xlated_daddr = htonl(0x0a00010a);
  sk.xlated_dport = htons(8080);
  sk.l4_proto = 6;
  sk.xlate_point = NP_SOCK_XLATE_POST_FWD;
  std::memcpy(sock.data, &sk, sizeof sk);
  long bad = 0;
  auto rate = [&](const char* what, const np_trace_event& e, bool records) {
    np::flows::FlowStore store(4095, ctx.nodeName, 0);
    np::flows::FlowRecord recs[2];
    long flows = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; i++) {
      np_trace_event x = e;
      x.ktime = static_cast<uint64_t>(i);
      if (records) {
        size_t k = np::flows::captureEvent(&x, sizeof x, ctx, recs);
        if (k == 0) bad++;
        store.push(recs, k);
        flows += static_cast<long>(k);
      } else {
        for (auto& f : np::flows::decodeEvents(&x, sizeof x, ctx)) {
          store.push(std::move(f));
          flows++;
        }
      }
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<std::pair<uint64_t, flow::Flow>> out;
    auto t1 = std::chrono::steady_clock::now();
    store.read(0, out);
    double r = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("%-28s events=%ld flows=%ld seconds=%.3f events_per_sec=%.0f ns_per_event=%.0f read_all=%zu_flows_in_%.2f_ms\n",
                what, n, flows, s, n / s, s * 1e9 / static_cast<double>(n), out.size(), r * 1e3);
  };
  rate("packet: record (reader now)", ev, true);
  rate("packet: message (before)", ev, false);
  rate("socket: records (reader now)", sock, true);
  rate("socket: messages (before)", sock, false);
  std::printf("undecodable=%ld\n", bad);
  return bad == 0 ? 0 : 1;
}
