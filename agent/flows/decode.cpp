#include "flows/decode.h"

#include <arpa/inet.h>
#include <time.h>

#include <cstring>
#include <optional>
#include <vector>

#include "np_drop.h"
#include "np_trace.h"

namespace np::flows {
namespace {

std::string ip4(uint32_t be) {
  char buf[INET_ADDRSTRLEN];
  in_addr a{be};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::string mac(const uint8_t* m) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s(17, ':');
  for (int i = 0; i < 6; i++) {
    s[i * 3] = hex[m[i] >> 4];
    s[i * 3 + 1] = hex[m[i] & 0xf];
  }
  return s;
}

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

void setPod(flow::Endpoint* ep, const PodInfo& p) {
  ep->set_pod_name(p.name);
  ep->set_namespace_(p.ns);
  for (const auto& l : p.labels) ep->add_labels(l);
}

void setTcpFlags(flow::TCPFlags* f, uint8_t v) {
  f->set_fin(v & 0x01);
  f->set_syn(v & 0x02);
  f->set_rst(v & 0x04);
  f->set_psh(v & 0x08);
  f->set_ack(v & 0x10);
  f->set_urg(v & 0x20);
  f->set_ece(v & 0x40);
  f->set_cwr(v & 0x80);
}

void setTime(flow::Flow& f, uint64_t ktime, const DecodeContext& ctx) {
  int64_t ns = static_cast<int64_t>(ktime) + ctx.monoToRealtimeNs;
  f.mutable_time()->set_seconds(ns / 1000000000LL);
  f.mutable_time()->set_nanos(static_cast<int32_t>(ns % 1000000000LL));
}

// A socket-level translation (NP_EVENT_TRACE_SOCK): Hubble's two SOCK flows of it, as Cilium's
// sock trace shows them: pre-translation (TRACED, to the service) and post-translation
// (TRANSLATED, to the backend). The source port is not known yet (the socket is not bound); the
// source pod is the one whose network namespace the socket is in (its address when unbound).
std::vector<flow::Flow> decodeSock(const np_trace_event& ev, const DecodeContext& ctx) {
  np_trace_sock sk;
  std::memcpy(&sk, ev.data, sizeof sk);
  if (sk.l4_proto != 6 && sk.l4_proto != 17) return {};
  std::optional<ServiceName> svc;
  if (ev.rev_nat_id && ctx.service) svc = ctx.service(ev.rev_nat_id);
  std::optional<PodInfo> src;
  if (sk.netns_cookie && ctx.podByNetns) src = ctx.podByNetns(sk.netns_cookie);
  if (!src && ev.orig_saddr && ctx.pod) src = ctx.pod(ev.orig_saddr);
  uint32_t saddr = ev.orig_saddr ? ev.orig_saddr : (src ? src->addr : 0);
  std::vector<flow::Flow> out;
  for (uint8_t point : {uint8_t{NP_SOCK_XLATE_PRE_FWD}, uint8_t{NP_SOCK_XLATE_POST_FWD}}) {
    bool post = point == NP_SOCK_XLATE_POST_FWD;
    uint32_t daddr = post ? sk.xlated_daddr : ev.orig_daddr;
    uint16_t dport = ntohs(post ? sk.xlated_dport : ev.orig_dport);
    flow::Flow f;
    setTime(f, ev.ktime, ctx);
    f.mutable_emitter()->set_name("nodepath");
    f.set_verdict(post ? flow::TRANSLATED : flow::TRACED);
    f.set_type(flow::SOCK);
    f.set_node_name(ctx.nodeName);
    f.mutable_event_type()->set_type(NP_EVENT_TRACE_SOCK);
    f.mutable_event_type()->set_sub_type(point);
    f.set_sock_xlate_point(static_cast<flow::SocketTranslationPoint>(point));
    f.set_socket_cookie(sk.sock_cookie);
    f.set_cgroup_id(sk.cgroup_id);
    f.set_traffic_direction(flow::EGRESS);
    f.mutable_is_reply()->set_value(false);
    auto* ip = f.mutable_ip();
    ip->set_ipversion(flow::IPv4);
    if (saddr) ip->set_source(ip4(saddr));
    ip->set_destination(ip4(daddr));
    if (src) setPod(f.mutable_source(), *src);
    if (ctx.pod && post)
      if (auto p = ctx.pod(daddr)) setPod(f.mutable_destination(), *p);
    if (svc) {
      f.mutable_destination_service()->set_name(svc->name);
      f.mutable_destination_service()->set_namespace_(svc->ns);
    }
    if (sk.l4_proto == 6) f.mutable_l4()->mutable_tcp()->set_destination_port(dport);
    else f.mutable_l4()->mutable_udp()->set_destination_port(dport);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

int64_t monoToRealtimeOffsetNs() {
  timespec r{}, m{};
  clock_gettime(CLOCK_REALTIME, &r);
  clock_gettime(CLOCK_MONOTONIC, &m);
  return (int64_t{r.tv_sec} - m.tv_sec) * 1000000000LL + (int64_t{r.tv_nsec} - m.tv_nsec);
}

std::vector<flow::Flow> decodeEvents(const void* data, size_t size, const DecodeContext& ctx) {
  if (size >= offsetof(np_trace_event, data) + sizeof(np_trace_sock) &&
      static_cast<const uint8_t*>(data)[offsetof(np_trace_event, type)] == NP_EVENT_TRACE_SOCK) {
    np_trace_event ev;
    std::memset(&ev, 0, sizeof ev);
    std::memcpy(&ev, data, size < sizeof ev ? size : sizeof ev);
    return decodeSock(ev, ctx);
  }
  std::vector<flow::Flow> out;
  if (auto f = decodeEvent(data, size, ctx)) out.push_back(std::move(*f));
  return out;
}

std::optional<flow::Flow> decodeEvent(const void* data, size_t size, const DecodeContext& ctx) {
  np_trace_event ev;
  if (size < offsetof(np_trace_event, data)) return std::nullopt;
  std::memset(&ev, 0, sizeof ev);
  std::memcpy(&ev, data, size < sizeof ev ? size : sizeof ev);
  if (ev.type == NP_EVENT_TRACE_SOCK) return std::nullopt;  // decodeEvents: two flows, no packet
  size_t cap = ev.cap_len;
  if (cap > NP_TRACE_SNAPLEN || offsetof(np_trace_event, data) + cap > size) return std::nullopt;
  const uint8_t* pkt = ev.data;
  // Ethernet + IPv4
  if (cap < 14 + 20 || be16(pkt + 12) != 0x0800) return std::nullopt;
  const uint8_t* iph = pkt + 14;
  size_t ihl = (iph[0] & 0x0f) * 4u;
  if ((iph[0] >> 4) != 4 || ihl < 20 || 14 + ihl > cap) return std::nullopt;
  uint8_t proto = iph[9];
  uint32_t saddr, daddr;
  std::memcpy(&saddr, iph + 12, 4);
  std::memcpy(&daddr, iph + 16, 4);
  bool firstFragment = (be16(iph + 6) & 0x1fff) == 0;
  const uint8_t* l4 = iph + ihl;
  size_t l4len = cap - 14 - ihl;

  flow::Flow f;
  setTime(f, ev.ktime, ctx);
  f.mutable_emitter()->set_name("nodepath");
  f.set_verdict(static_cast<flow::Verdict>(ev.verdict));
  f.set_type(flow::L3_L4);
  f.set_node_name(ctx.nodeName);
  f.mutable_event_type()->set_type(ev.type);
  if (ev.type == NP_EVENT_DROP) {
    f.mutable_event_type()->set_sub_type(ev.reason);
    f.set_drop_reason(ev.reason);
    f.set_drop_reason_desc(static_cast<flow::DropReason>(ev.reason));
  } else {
    f.mutable_event_type()->set_sub_type(ev.point);
  }
  f.set_trace_observation_point(static_cast<flow::TraceObservationPoint>(ev.point));
  f.mutable_ethernet()->set_source(mac(pkt + 6));
  f.mutable_ethernet()->set_destination(mac(pkt));
  f.mutable_interface()->set_index(ev.ifindex);
  if (ctx.ifname) f.mutable_interface()->set_name(ctx.ifname(ev.ifindex));

  auto* ip = f.mutable_ip();
  ip->set_ipversion(flow::IPv4);
  ip->set_source(ip4(saddr));
  ip->set_destination(ip4(daddr));
  bool xlated = ev.flags & NP_EVENT_F_XLATED;
  bool reply = ev.flags & NP_EVENT_F_REPLY;
  // Hubble: source is the address before SNAT (with its port), source_xlated after it; the
  // destination is the packet's as it left (after DNAT).
  bool srcXlated = xlated && (ev.orig_saddr != saddr);
  if (srcXlated) {
    ip->set_source(ip4(ev.orig_saddr));
    ip->set_source_xlated(ip4(saddr));
  }
  if (ctx.pod) {
    if (auto p = ctx.pod(srcXlated ? ev.orig_saddr : saddr)) setPod(f.mutable_source(), *p);
    if (auto p = ctx.pod(daddr)) setPod(f.mutable_destination(), *p);
  }
  if (xlated) {
    f.mutable_is_reply()->set_value(reply);
    f.set_reply(reply);
    f.set_traffic_direction(reply ? flow::EGRESS : flow::INGRESS);
    if (ev.rev_nat_id && ctx.service) {
      if (auto svc = ctx.service(ev.rev_nat_id)) {
        flow::Service* s = reply ? f.mutable_source_service() : f.mutable_destination_service();
        s->set_name(svc->name);
        s->set_namespace_(svc->ns);
      }
    }
  } else if (ev.point == NP_TRACE_FROM_NETWORK) {
    f.set_traffic_direction(flow::INGRESS);
  } else if (ev.point == NP_TRACE_TO_NETWORK) {
    f.set_traffic_direction(flow::EGRESS);
  }

  if (firstFragment && proto == 6 && l4len >= 14) {
    auto* t = f.mutable_l4()->mutable_tcp();
    t->set_source_port(srcXlated ? ntohs(ev.orig_sport) : be16(l4));
    t->set_destination_port(be16(l4 + 2));
    setTcpFlags(t->mutable_flags(), l4[13]);
  } else if (firstFragment && proto == 17 && l4len >= 4) {
    auto* u = f.mutable_l4()->mutable_udp();
    u->set_source_port(srcXlated ? ntohs(ev.orig_sport) : be16(l4));
    u->set_destination_port(be16(l4 + 2));
  } else if (firstFragment && proto == 1 && l4len >= 2) {
    auto* i = f.mutable_l4()->mutable_icmpv4();
    i->set_type(l4[0]);
    i->set_code(l4[1]);
  }
  return f;
}

std::string flowSummary(const flow::Flow& f) {
  uint32_t sport = 0, dport = 0;
  if (f.l4().has_tcp()) {
    sport = f.l4().tcp().source_port();
    dport = f.l4().tcp().destination_port();
  } else if (f.l4().has_udp()) {
    sport = f.l4().udp().source_port();
    dport = f.l4().udp().destination_port();
  }
  std::string s = f.ip().source();
  if (sport) s += ":" + std::to_string(sport);
  s += " -> " + f.ip().destination();
  if (dport) s += ":" + std::to_string(dport);
  return s;
}

}  // namespace np::flows
