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

void setTime(flow::Flow& f, uint64_t ktime, int64_t monoToRealtimeNs) {
  int64_t ns = static_cast<int64_t>(ktime) + monoToRealtimeNs;
  f.mutable_time()->set_seconds(ns / 1000000000LL);
  f.mutable_time()->set_nanos(static_cast<int32_t>(ns % 1000000000LL));
}

// The packet snippet of an event, checked: Ethernet + IPv4 with its whole header captured.
struct Snippet {
  const uint8_t* iph;
  size_t ihl;
  size_t cap;
};

std::optional<Snippet> snippet(const np_trace_event& ev, size_t size) {
  size_t cap = ev.cap_len;
  if (cap > NP_TRACE_SNAPLEN || offsetof(np_trace_event, data) + cap > size) return std::nullopt;
  const uint8_t* pkt = ev.data;
  if (cap < 14 + 20 || be16(pkt + 12) != 0x0800) return std::nullopt;
  const uint8_t* iph = pkt + 14;
  size_t ihl = (iph[0] & 0x0f) * 4u;
  if ((iph[0] >> 4) != 4 || ihl < 20 || 14 + ihl > cap) return std::nullopt;
  return Snippet{iph, ihl, cap};
}

uint32_t addrAt(const uint8_t* p) {
  uint32_t a;
  std::memcpy(&a, p, 4);
  return a;
}

np_trace_sock sockOf(const np_trace_event& ev) {
  np_trace_sock sk;
  std::memcpy(&sk, ev.data, sizeof sk);
  return sk;
}

// A socket-level translation (NP_EVENT_TRACE_SOCK), one of Hubble's two SOCK flows of it, as
// Cilium's sock trace shows them: pre-translation (TRACED, to the service) and post-translation
// (TRANSLATED, to the backend). The source port is not known yet (the socket is not bound); the
// source pod is the one whose network namespace the socket is in (its address when unbound).
flow::Flow renderSock(const FlowRecord& r, const std::string& nodeName, int64_t monoToRealtimeNs) {
  const np_trace_event& ev = r.ev;
  np_trace_sock sk = sockOf(ev);
  uint8_t point = r.sockPoint;
  bool post = point == NP_SOCK_XLATE_POST_FWD;
  uint32_t saddr = ev.orig_saddr ? ev.orig_saddr : (r.src ? r.src->addr : 0);
  uint32_t daddr = post ? sk.xlated_daddr : ev.orig_daddr;
  uint16_t dport = ntohs(post ? sk.xlated_dport : ev.orig_dport);
  flow::Flow f;
  setTime(f, ev.ktime, monoToRealtimeNs);
  f.mutable_emitter()->set_name("nodepath");
  f.set_verdict(post ? flow::TRANSLATED : flow::TRACED);
  f.set_type(flow::SOCK);
  f.set_node_name(nodeName);
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
  if (r.src) setPod(f.mutable_source(), *r.src);
  if (r.dst) setPod(f.mutable_destination(), *r.dst);
  if (r.svc) {
    f.mutable_destination_service()->set_name(r.svc->name);
    f.mutable_destination_service()->set_namespace_(r.svc->ns);
  }
  if (sk.l4_proto == 6) f.mutable_l4()->mutable_tcp()->set_destination_port(dport);
  else f.mutable_l4()->mutable_udp()->set_destination_port(dport);
  return f;
}

flow::Flow renderPacket(const FlowRecord& r, const std::string& nodeName, int64_t monoToRealtimeNs) {
  const np_trace_event& ev = r.ev;
  flow::Flow f;
  auto sn = snippet(ev, sizeof ev);
  if (!sn) return f;  // captureEvent() keeps no such record
  const uint8_t* pkt = ev.data;
  const uint8_t* iph = sn->iph;
  uint8_t proto = iph[9];
  uint32_t saddr = addrAt(iph + 12), daddr = addrAt(iph + 16);
  bool firstFragment = (be16(iph + 6) & 0x1fff) == 0;
  const uint8_t* l4 = iph + sn->ihl;
  size_t l4len = sn->cap - 14 - sn->ihl;

  setTime(f, ev.ktime, monoToRealtimeNs);
  f.mutable_emitter()->set_name("nodepath");
  f.set_verdict(static_cast<flow::Verdict>(ev.verdict));
  f.set_type(flow::L3_L4);
  f.set_node_name(nodeName);
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
  if (!r.ifname.empty()) f.mutable_interface()->set_name(r.ifname);

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
  if (r.src) setPod(f.mutable_source(), *r.src);
  if (r.dst) setPod(f.mutable_destination(), *r.dst);
  if (xlated) {
    f.mutable_is_reply()->set_value(reply);
    f.set_reply(reply);
    f.set_traffic_direction(reply ? flow::EGRESS : flow::INGRESS);
    if (r.svc) {
      flow::Service* s = reply ? f.mutable_source_service() : f.mutable_destination_service();
      s->set_name(r.svc->name);
      s->set_namespace_(r.svc->ns);
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

}  // namespace

int64_t monoToRealtimeOffsetNs() {
  timespec r{}, m{};
  clock_gettime(CLOCK_REALTIME, &r);
  clock_gettime(CLOCK_MONOTONIC, &m);
  return (int64_t{r.tv_sec} - m.tv_sec) * 1000000000LL + (int64_t{r.tv_nsec} - m.tv_nsec);
}

size_t captureEvent(const void* data, size_t size, const DecodeContext& ctx, FlowRecord out[2]) {
  if (size < offsetof(np_trace_event, data)) return 0;
  FlowRecord& r = out[0];
  r = FlowRecord{};
  std::memcpy(&r.ev, data, size < sizeof r.ev ? size : sizeof r.ev);
  const np_trace_event& ev = r.ev;
  if (ev.type == NP_EVENT_TRACE_SOCK) {
    if (size < offsetof(np_trace_event, data) + sizeof(np_trace_sock)) return 0;
    np_trace_sock sk = sockOf(ev);
    if (sk.l4_proto != 6 && sk.l4_proto != 17) return 0;
    if (ev.rev_nat_id && ctx.service) r.svc = ctx.service(ev.rev_nat_id);
    if (sk.netns_cookie && ctx.podByNetns) r.src = ctx.podByNetns(sk.netns_cookie);
    if (!r.src && ev.orig_saddr && ctx.pod) r.src = ctx.pod(ev.orig_saddr);
    r.sockPoint = NP_SOCK_XLATE_PRE_FWD;
    out[1] = r;
    out[1].sockPoint = NP_SOCK_XLATE_POST_FWD;
    if (ctx.pod) out[1].dst = ctx.pod(sk.xlated_daddr);
    return 2;
  }
  auto sn = snippet(ev, size);
  if (!sn) return 0;
  uint32_t saddr = addrAt(sn->iph + 12), daddr = addrAt(sn->iph + 16);
  bool xlated = ev.flags & NP_EVENT_F_XLATED;
  bool srcXlated = xlated && (ev.orig_saddr != saddr);
  if (ctx.ifname) r.ifname = ctx.ifname(ev.ifindex);
  if (ctx.pod) {
    r.src = ctx.pod(srcXlated ? ev.orig_saddr : saddr);
    r.dst = ctx.pod(daddr);
  }
  if (xlated && ev.rev_nat_id && ctx.service) r.svc = ctx.service(ev.rev_nat_id);
  return 1;
}

flow::Flow renderFlow(const FlowRecord& r, const std::string& nodeName, int64_t monoToRealtimeNs) {
  if (r.ev.type == NP_EVENT_TRACE_SOCK) return renderSock(r, nodeName, monoToRealtimeNs);
  return renderPacket(r, nodeName, monoToRealtimeNs);
}

int64_t recordSeconds(const FlowRecord& r, int64_t monoToRealtimeNs) {
  return (static_cast<int64_t>(r.ev.ktime) + monoToRealtimeNs) / 1000000000LL;
}

std::vector<flow::Flow> decodeEvents(const void* data, size_t size, const DecodeContext& ctx) {
  FlowRecord recs[2];
  size_t n = captureEvent(data, size, ctx, recs);
  std::vector<flow::Flow> out;
  for (size_t i = 0; i < n; i++) out.push_back(renderFlow(recs[i], ctx.nodeName, ctx.monoToRealtimeNs));
  return out;
}

std::optional<flow::Flow> decodeEvent(const void* data, size_t size, const DecodeContext& ctx) {
  FlowRecord recs[2];
  // A socket translation is two flows and no packet: decodeEvents() takes those.
  if (captureEvent(data, size, ctx, recs) != 1 || recs[0].ev.type == NP_EVENT_TRACE_SOCK) return std::nullopt;
  return renderFlow(recs[0], ctx.nodeName, ctx.monoToRealtimeNs);
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
