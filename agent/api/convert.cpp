#include "api/convert.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>
#include <tuple>
#include <utility>

namespace np::api {

Result<lb::Service> serviceFromProto(const pb::Service& in) {
  lb::Service s;
  s.name = in.name();
  const std::string ctx = "service " + (s.name.empty() ? std::string("(unnamed)") : lb::shown(s.name));
  if (s.name.empty()) return error(ctx, "name is empty");
  switch (in.protocol()) {
    case pb::TCP:
    case pb::PROTOCOL_UNSPECIFIED: s.protocol = Protocol::Tcp; break;
    case pb::UDP: s.protocol = Protocol::Udp; break;
    default: return error(ctx, "unknown protocol " + std::to_string(in.protocol()) + " (TCP or UDP)");
  }
  if (in.port() == 0 || in.port() > 65535) return error(ctx, "port " + std::to_string(in.port()) + " is not a port (1-65535)");
  s.port = static_cast<uint16_t>(in.port());
  if (!in.cluster_ip().empty()) {
    s.clusterIp = Ipv4::parse(in.cluster_ip());
    if (!s.clusterIp) return error(ctx, "cluster IP \"" + lb::shown(in.cluster_ip()) + "\" is not an IPv4 address");
  }
  if (in.node_port() > 65535) return error(ctx, "NodePort " + std::to_string(in.node_port()) + " is not a port (1-65535)");
  s.nodePort = static_cast<uint16_t>(in.node_port());
  for (const std::string& ip : in.external_ips()) {
    auto a = Ipv4::parse(ip);
    if (!a) return error(ctx, "external IP \"" + lb::shown(ip) + "\" is not an IPv4 address");
    s.externalIps.push_back(*a);
  }
  for (const std::string& ip : in.load_balancer_ips()) {
    auto a = Ipv4::parse(ip);
    if (!a) return error(ctx, "LoadBalancer IP \"" + lb::shown(ip) + "\" is not an IPv4 address");
    s.loadBalancerIps.push_back(*a);
  }
  for (const pb::Backend& b : in.backends()) {
    auto a = Ipv4::parse(b.address());
    if (!a) return error(ctx, "backend address \"" + lb::shown(b.address()) + "\" is not an IPv4 address");
    if (b.port() == 0 || b.port() > 65535)
      return error(ctx, "backend " + lb::shown(b.address()) + ": port " + std::to_string(b.port()) + " is not a port (1-65535)");
    lb::BackendState st;
    switch (b.state()) {
      case pb::ACTIVE: st = lb::BackendState::Active; break;
      case pb::TERMINATING: st = lb::BackendState::Terminating; break;
      default: return error(ctx, "backend " + lb::shown(b.address()) + ": unknown state " + std::to_string(b.state()));
    }
    s.backends.push_back({Endpoint{*a, static_cast<uint16_t>(b.port())}, st, b.node_name()});
  }
  if (!in.session_affinity().empty()) {
    auto a = lb::parseSessionAffinity(in.session_affinity());
    if (!a) return error(ctx, "session affinity \"" + lb::shown(in.session_affinity()) + "\" is not None or ClientIP");
    s.sessionAffinity = *a;
  }
  if (in.session_affinity_timeout_seconds() != 0) {
    if (s.sessionAffinity != lb::SessionAffinity::ClientIp)
      return error(ctx, "a session affinity timeout is given without session affinity ClientIP");
    s.affinityTimeoutSec = in.session_affinity_timeout_seconds();
  }
  for (auto [value, field, out] : {std::tuple{&in.external_traffic_policy(), "external", &s.externalTrafficPolicy},
                                   std::tuple{&in.internal_traffic_policy(), "internal", &s.internalTrafficPolicy}}) {
    if (value->empty()) continue;
    auto p = lb::parseTrafficPolicy(*value);
    if (!p) return error(ctx, std::string(field) + " traffic policy \"" + lb::shown(*value) + "\" is not Cluster or Local");
    *out = *p;
  }
  return s;
}

pb::Service serviceToProto(const lb::Service& s, const lb::NodeContext* node) {
  pb::Service out;
  out.set_name(s.name);
  out.set_protocol(s.protocol == Protocol::Tcp ? pb::TCP : pb::UDP);
  out.set_port(s.port);
  if (s.clusterIp) out.set_cluster_ip(s.clusterIp->str());
  out.set_node_port(s.nodePort);
  for (Ipv4 ip : s.externalIps) out.add_external_ips(ip.str());
  for (Ipv4 ip : s.loadBalancerIps) out.add_load_balancer_ips(ip.str());
  for (const lb::Backend& b : s.backends) {
    pb::Backend* pbb = out.add_backends();
    pbb->set_address(b.addr.ip.str());
    pbb->set_port(b.addr.port);
    pbb->set_state(b.state == lb::BackendState::Active ? pb::ACTIVE : pb::TERMINATING);
    // Only what differs from the defaults is set: a list of 100,000 services allocates nothing
    // for fields nobody gave.
    if (!b.nodeName.empty()) pbb->set_node_name(b.nodeName);
    if (node) pbb->set_local(lb::isLocal(b, *node));
  }
  out.set_source(s.source);
  if (s.hostPort != 0) out.set_host_port(s.hostPort);
  if (s.hostIp) out.set_host_ip(s.hostIp->str());
  if (s.sessionAffinity == lb::SessionAffinity::ClientIp) {
    out.set_session_affinity(lb::sessionAffinityName(s.sessionAffinity));
    out.set_session_affinity_timeout_seconds(s.affinityTimeoutSec);
  }
  if (s.externalTrafficPolicy != lb::TrafficPolicy::Cluster)
    out.set_external_traffic_policy(lb::trafficPolicyName(s.externalTrafficPolicy));
  if (s.internalTrafficPolicy != lb::TrafficPolicy::Cluster)
    out.set_internal_traffic_policy(lb::trafficPolicyName(s.internalTrafficPolicy));
  return out;
}

namespace {

std::string tcpFlagNames(uint8_t f) {
  static constexpr std::pair<uint8_t, const char*> kNames[] = {
      {0x02, "SYN"}, {0x10, "ACK"}, {0x08, "PSH"}, {0x01, "FIN"}, {0x04, "RST"}, {0x20, "URG"}, {0x40, "ECE"}, {0x80, "CWR"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (!(f & bit)) continue;
    if (!out.empty()) out += "|";
    out += name;
  }
  return out;
}

}  // namespace

pb::CtEntry ctEntryToProto(np_ct_table t, const np_ct_key& k, const np_ct_entry& e, uint64_t nowNs) {
  pb::CtEntry out;
  out.set_table(t == NP_CT_TABLE_EMBRYONIC ? "embryonic" : "main");
  out.set_hook(k.dir == NP_CT_EGRESS ? "egress" : k.dir == NP_CT_LXC ? "lxc" : "ingress");
  switch (k.proto) {
    case IPPROTO_TCP: out.set_protocol(pb::TCP); break;
    case IPPROTO_UDP: out.set_protocol(pb::UDP); break;
    case IPPROTO_ICMP: out.set_protocol(pb::ICMP); break;
    default: out.set_protocol(pb::PROTOCOL_UNSPECIFIED); break;
  }
  out.set_src(Ipv4{k.saddr}.str());
  out.set_sport(ntohs(k.sport));
  out.set_dst(Ipv4{k.daddr}.str());
  out.set_dport(ntohs(k.dport));
  if (e.nat_saddr) out.set_xlate_src(Ipv4{e.nat_saddr}.str());
  out.set_xlate_sport(ntohs(e.nat_sport));
  if (e.nat_daddr) out.set_xlate_dst(Ipv4{e.nat_daddr}.str());
  out.set_xlate_dport(ntohs(e.nat_dport));
  static constexpr std::pair<uint16_t, const char*> kFlags[] = {
      {NP_CT_F_SERVICE, "service"},        {NP_CT_F_REPLY, "reply"},     {NP_CT_F_SNAT, "snat"},
      {NP_CT_F_REDIRECT, "redirect"},      {NP_CT_F_SEEN_NON_SYN, "established"},
      {NP_CT_F_CLOSING, "closing"},        {NP_CT_F_REPLY_SEEN, "reply-seen"},
      {NP_CT_F_DSR, "dsr"},                {NP_CT_F_DSR_BACKEND, "dsr-backend"},
      {NP_CT_F_MASQ, "masq"},              {NP_CT_F_LXC, "lxc"}};
  for (const auto& [bit, name] : kFlags)
    if (e.flags & bit) out.add_flags(name);
  out.set_tcp_flags(tcpFlagNames(e.tcp_flags));
  // Rounded towards expiry: "0s" is still alive, "-1s" is past its lifetime.
  const int64_t left = static_cast<int64_t>(e.expires) - static_cast<int64_t>(nowNs);
  out.set_expires_in_s(left >= 0 ? left / 1'000'000'000 : -((-left + 999'999'999) / 1'000'000'000));
  out.set_backend_id(e.backend_id);
  out.set_service_id(e.rev_nat_id);
  out.set_packets(e.packets);
  out.set_bytes(e.bytes);
  return out;
}

}  // namespace np::api
