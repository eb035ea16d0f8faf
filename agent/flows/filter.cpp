#include "flows/filter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <string>

namespace np::flows {
namespace {

// "10.0.0.1" or "10.0.0.0/24".
bool ipMatches(const std::string& want, const std::string& have) {
  if (have.empty()) return false;
  auto slash = want.find('/');
  if (slash == std::string::npos) return want == have;
  in_addr net{}, a{};
  if (inet_pton(AF_INET, want.substr(0, slash).c_str(), &net) != 1 || inet_pton(AF_INET, have.c_str(), &a) != 1)
    return false;
  int bits = std::atoi(want.c_str() + slash + 1);
  if (bits < 0 || bits > 32) return false;
  uint32_t mask = bits == 0 ? 0 : htonl(~uint32_t{0} << (32 - bits));
  return (net.s_addr & mask) == (a.s_addr & mask);
}

template <typename Values, typename Pred>
bool any(const Values& vs, Pred p) {
  if (vs.empty()) return true;
  return std::any_of(vs.begin(), vs.end(), p);
}

// Hubble: "namespace/pod-prefix", or "pod-prefix" in the default namespace... a bare value
// matches a pod name prefix in any namespace here (we may not know namespaces yet).
bool podMatches(const std::string& want, const flow::Endpoint& ep) {
  if (ep.pod_name().empty()) return false;
  auto slash = want.find('/');
  if (slash == std::string::npos) return ep.pod_name().rfind(want, 0) == 0;
  return ep.namespace_() == want.substr(0, slash) && ep.pod_name().rfind(want.substr(slash + 1), 0) == 0;
}

bool serviceMatches(const std::string& want, const flow::Service& s) {
  if (s.name().empty()) return false;
  auto slash = want.find('/');
  if (slash == std::string::npos) return s.name().rfind(want, 0) == 0;
  return s.namespace_() == want.substr(0, slash) && s.name().rfind(want.substr(slash + 1), 0) == 0;
}

uint32_t srcPort(const flow::Flow& f) {
  return f.l4().has_tcp() ? f.l4().tcp().source_port() : f.l4().has_udp() ? f.l4().udp().source_port() : 0;
}
uint32_t dstPort(const flow::Flow& f) {
  return f.l4().has_tcp() ? f.l4().tcp().destination_port() : f.l4().has_udp() ? f.l4().udp().destination_port() : 0;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool protoMatches(const std::string& want, const flow::Flow& f) {
  std::string p = lower(want);
  if (p == "tcp") return f.l4().has_tcp();
  if (p == "udp") return f.l4().has_udp();
  if (p == "icmp" || p == "icmpv4") return f.l4().has_icmpv4();
  return false;
}

bool tcpFlagsMatch(const flow::TCPFlags& want, const flow::Flow& f) {
  if (!f.l4().has_tcp()) return false;
  const auto& h = f.l4().tcp().flags();
  return (!want.syn() || h.syn()) && (!want.ack() || h.ack()) && (!want.fin() || h.fin()) &&
         (!want.rst() || h.rst()) && (!want.psh() || h.psh()) && (!want.urg() || h.urg());
}

}  // namespace

bool matches(const flow::FlowFilter& f, const flow::Flow& fl) {
  return any(f.source_ip(), [&](const std::string& v) { return ipMatches(v, fl.ip().source()); }) &&
         any(f.source_ip_xlated(), [&](const std::string& v) { return ipMatches(v, fl.ip().source_xlated()); }) &&
         any(f.destination_ip(), [&](const std::string& v) { return ipMatches(v, fl.ip().destination()); }) &&
         any(f.source_pod(), [&](const std::string& v) { return podMatches(v, fl.source()); }) &&
         any(f.destination_pod(), [&](const std::string& v) { return podMatches(v, fl.destination()); }) &&
         any(f.source_service(), [&](const std::string& v) { return serviceMatches(v, fl.source_service()); }) &&
         any(f.destination_service(),
             [&](const std::string& v) { return serviceMatches(v, fl.destination_service()); }) &&
         any(f.source_port(), [&](const std::string& v) { return v == std::to_string(srcPort(fl)); }) &&
         any(f.destination_port(), [&](const std::string& v) { return v == std::to_string(dstPort(fl)); }) &&
         any(f.protocol(), [&](const std::string& v) { return protoMatches(v, fl); }) &&
         any(f.verdict(), [&](int v) { return v == fl.verdict(); }) &&
         any(f.drop_reason_desc(), [&](int v) { return v == fl.drop_reason_desc(); }) &&
         any(f.traffic_direction(), [&](int v) { return v == fl.traffic_direction(); }) &&
         any(f.reply(), [&](bool v) { return fl.has_is_reply() && v == fl.is_reply().value(); }) &&
         any(f.node_name(), [&](const std::string& v) { return v == fl.node_name() || v.empty(); }) &&
         any(f.ip_version(), [&](int v) { return v == fl.ip().ipversion(); }) &&
         any(f.event_type(),
             [&](const flow::EventTypeFilter& e) {
               return e.type() == fl.event_type().type() &&
                      (!e.match_sub_type() || e.sub_type() == fl.event_type().sub_type());
             }) &&
         any(f.tcp_flags(), [&](const flow::TCPFlags& v) { return tcpFlagsMatch(v, fl); }) &&
         any(f.uuid(), [&](const std::string& v) { return v == fl.uuid(); });
}

bool allowed(const google::protobuf::RepeatedPtrField<flow::FlowFilter>& whitelist,
             const google::protobuf::RepeatedPtrField<flow::FlowFilter>& blacklist, const flow::Flow& fl) {
  if (!whitelist.empty() &&
      std::none_of(whitelist.begin(), whitelist.end(), [&](const flow::FlowFilter& f) { return matches(f, fl); }))
    return false;
  return std::none_of(blacklist.begin(), blacklist.end(), [&](const flow::FlowFilter& f) { return matches(f, fl); });
}

}  // namespace np::flows
