#include "lb/model.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string_view>
#include <tuple>

namespace np::lb {

const char* frontendTypeName(FrontendType t) {
  switch (t) {
    case FrontendType::ClusterIp: return "ClusterIP";
    case FrontendType::NodePort: return "NodePort";
    case FrontendType::NodePortWildcard: return "NodePort";
    case FrontendType::ExternalIp: return "ExternalIP";
    case FrontendType::LoadBalancer: return "LoadBalancer";
    case FrontendType::HostPort: return "HostPort";
  }
  return "?";
}

const char* sessionAffinityName(SessionAffinity a) { return a == SessionAffinity::ClientIp ? "ClientIP" : "None"; }
const char* trafficPolicyName(TrafficPolicy p) { return p == TrafficPolicy::Local ? "Local" : "Cluster"; }

std::optional<SessionAffinity> parseSessionAffinity(std::string_view s) {
  if (s == "None") return SessionAffinity::None;
  if (s == "ClientIP") return SessionAffinity::ClientIp;
  return std::nullopt;
}

std::optional<TrafficPolicy> parseTrafficPolicy(std::string_view s) {
  if (s == "Cluster") return TrafficPolicy::Cluster;
  if (s == "Local") return TrafficPolicy::Local;
  return std::nullopt;
}

bool isLocal(const Backend& b, const NodeContext& node) {
  if (!b.nodeName.empty()) return b.nodeName == node.nodeName;
  if (node.localPodCidr && node.localPodCidr->contains(b.addr.ip)) return true;
  return std::find(node.nodeIps.begin(), node.nodeIps.end(), b.addr.ip) != node.nodeIps.end();
}

std::string Frontend::str() const {
  return addr.str() + ":" + std::to_string(port) + "/" + protocolName(protocol);
}

std::vector<Frontend> frontendsOf(const Service& s, const NodeContext& node) {
  std::vector<Frontend> out;
  if (s.hostPort != 0) {
    if (s.hostIp) out.push_back({*s.hostIp, s.hostPort, s.protocol, FrontendType::HostPort});
    else
      for (Ipv4 ip : node.nodeIps) out.push_back({ip, s.hostPort, s.protocol, FrontendType::HostPort});
    return out;
  }
  if (s.clusterIp) out.push_back({*s.clusterIp, s.port, s.protocol, FrontendType::ClusterIp});
  if (s.nodePort != 0) {
    out.push_back({Ipv4{}, s.nodePort, s.protocol, FrontendType::NodePortWildcard});
    for (Ipv4 ip : node.nodeIps) out.push_back({ip, s.nodePort, s.protocol, FrontendType::NodePort});
  }
  for (Ipv4 ip : s.externalIps) out.push_back({ip, s.port, s.protocol, FrontendType::ExternalIp});
  for (Ipv4 ip : s.loadBalancerIps) out.push_back({ip, s.port, s.protocol, FrontendType::LoadBalancer});
  return out;
}

namespace {

Status checkAddress(const std::string& what, Ipv4 ip) {
  if (ip.isZero() || ip.isLoopback() || ip.isMulticastOrBroadcast())
    return error(what, ip.str() + " is not a usable unicast address");
  return {};
}

// An external or LoadBalancer IP must not capture a node's own address (its port 22, say) or a
// pod's (every pod's traffic to it would be redirected).
Status checkRoutableFrontend(const std::string& what, Ipv4 ip, const NodeContext& node) {
  if (node.allowUnsafeFrontends) return {};
  const auto isNode = [&](const std::vector<Ipv4>& ips) { return std::find(ips.begin(), ips.end(), ip) != ips.end(); };
  if (isNode(node.nodeIps) || isNode(node.clusterNodeIps))
    return error(what, ip.str() + " is a node's own address; a frontend there would take that port from the node "
                                  "(--lb-allow-unsafe-frontends allows it)");
  if (node.podCidr.contains(ip))
    return error(what, ip.str() + " is inside the pod CIDR " + node.podCidr.str() +
                           "; a frontend there would capture a pod's traffic (--lb-allow-unsafe-frontends allows it)");
  return {};
}

// A node name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'), at most 253.
bool isNodeName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

// [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters.
bool isDns1123Label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

// A HostPort service: one pod backend, no other frontend kind, its address one of this node's.
Status validateHostPort(const Service& s, const NodeContext& node) {
  const std::string ctx = "HostPort " + shown(s.name);
  if (!isHostPortName(s.name))
    return error(ctx, "name must be hostport/<namespace>/<pod>/<tcp|udp>/<host port>");
  if (s.source != kHostPortSource) return error(ctx, "HostPorts come from the CNI plugin only (source \"cni\")");
  if (s.protocol != Protocol::Tcp && s.protocol != Protocol::Udp) return error(ctx, "protocol must be TCP or UDP");
  if (s.hostPort == 0) return error(ctx, "host port 0 is not a port (1-65535)");
  if (s.port != s.hostPort) return error(ctx, "port must equal the host port");
  if (s.clusterIp || s.nodePort != 0 || !s.externalIps.empty() || !s.loadBalancerIps.empty())
    return error(ctx, "a HostPort has no other frontend (cluster IP, NodePort, external or LoadBalancer IPs)");
  if (s.hostIp) {
    NP_TRY(checkAddress(ctx + ": host IP", *s.hostIp));
    if (std::find(node.nodeIps.begin(), node.nodeIps.end(), *s.hostIp) == node.nodeIps.end())
      return error(ctx, "host IP " + s.hostIp->str() + " is not an address of this node");
  } else if (node.nodeIps.empty()) {
    return error(ctx, "this node has no address to serve it on");
  }
  if (s.backends.size() != 1) return error(ctx, "needs exactly one backend, the pod");
  const Backend& b = s.backends.front();
  if (b.addr.port == 0) return error(ctx, "container port 0 is not a port");
  NP_TRY(checkAddress(ctx + ": pod address", b.addr.ip));
  if (s.sessionAffinity != SessionAffinity::None || s.affinityTimeoutSec != kDefaultAffinityTimeoutSec ||
      s.externalTrafficPolicy != TrafficPolicy::Cluster || s.internalTrafficPolicy != TrafficPolicy::Cluster)
    return error(ctx, "a HostPort has no session affinity or traffic policies");
  return {};
}

}  // namespace

std::string hostPortName(const std::string& podNamespace, const std::string& podName, Protocol p, uint16_t hostPort) {
  return "hostport/" + podNamespace + "/" + podName + "/" + (p == Protocol::Udp ? "udp" : "tcp") + "/" +
         std::to_string(hostPort);
}

bool isHostPortName(std::string_view name) {
  constexpr std::string_view kPrefix = "hostport/";
  if (name.size() > 400 || !name.starts_with(kPrefix)) return false;
  std::string_view rest = name.substr(kPrefix.size());
  std::vector<std::string_view> parts;
  for (size_t at = 0;;) {
    size_t slash = rest.find('/', at);
    parts.push_back(rest.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at));
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  if (parts.size() != 4) return false;
  if (!isDns1123Label(parts[0]) || !isNodeName(parts[1])) return false;  // pod names are DNS-1123 subdomains
  if (parts[2] != "tcp" && parts[2] != "udp") return false;
  if (parts[3].empty() || parts[3].size() > 5 || !std::all_of(parts[3].begin(), parts[3].end(), ::isdigit)) return false;
  const int port = std::stoi(std::string(parts[3]));
  return port >= 1 && port <= 65535 && std::to_string(port) == parts[3];
}

std::string shown(std::string_view value) {
  constexpr size_t kShown = 80;
  if (value.size() <= kShown) return std::string(value);
  return std::string(value.substr(0, kShown)) + "... (" + std::to_string(value.size()) + " bytes)";
}

Status validateName(const std::string& name) {
  if (name.empty()) return error("service", "name is empty");
  const std::string why =
      "name must be <namespace>/<name> or <namespace>/<name>:<port name>, each a DNS-1123 label "
      "(lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)";
  auto slash = name.find('/');
  if (slash == std::string::npos) return error("service \"" + shownName(name) + "\"", why);
  std::string_view ns(name.data(), slash), rest(name.data() + slash + 1, name.size() - slash - 1);
  std::string_view svc = rest, port;
  if (auto colon = rest.find(':'); colon != std::string_view::npos) {
    svc = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (!isDns1123Label(port)) return error("service \"" + shownName(name) + "\"", why);
  }
  if (!isDns1123Label(ns) || !isDns1123Label(svc)) return error("service \"" + shownName(name) + "\"", why);
  return {};
}

void normalize(Service& s) {
  std::sort(s.backends.begin(), s.backends.end(), [](const Backend& a, const Backend& b) {
    return std::pair(a.addr.ip.host(), a.addr.port) < std::pair(b.addr.ip.host(), b.addr.port);
  });
}

bool sameFrontends(const Service& a, const Service& b) {
  // Every field of Service but `backends`: a field added there belongs here too.
  auto rest = [](const Service& s) {
    return std::tie(s.name, s.protocol, s.port, s.clusterIp, s.nodePort, s.externalIps, s.loadBalancerIps,
                    s.sessionAffinity, s.affinityTimeoutSec, s.externalTrafficPolicy, s.internalTrafficPolicy,
                    s.source, s.hostPort, s.hostIp);
  };
  return rest(a) == rest(b);
}

Status validate(const Service& s, const NodeContext& node) {
  if (s.hostPort != 0 || isHostPortName(s.name) || s.source == kHostPortSource) return validateHostPort(s, node);
  NP_TRY(validateName(s.name));
  const std::string ctx = "service " + s.name;
  if (s.port == 0) return error(ctx, "port 0 is not a port (1-65535)");
  if (s.protocol != Protocol::Tcp && s.protocol != Protocol::Udp)
    return error(ctx, "protocol must be TCP or UDP");
  if (!s.clusterIp && s.nodePort == 0 && s.externalIps.empty() && s.loadBalancerIps.empty())
    return error(ctx, "has no frontend: give a cluster IP, a NodePort, external IPs or LoadBalancer IPs");
  if (s.clusterIp) {
    NP_TRY(checkAddress(ctx + ": cluster IP", *s.clusterIp));
    if (!node.serviceCidr.contains(*s.clusterIp))
      return error(ctx + ": cluster IP", s.clusterIp->str() + " is outside the service CIDR " + node.serviceCidr.str() +
                                             " (--service-cidr)");
  }
  if (s.nodePort != 0 && (s.nodePort < node.nodePortMin || s.nodePort > node.nodePortMax))
    return error(ctx, "NodePort " + std::to_string(s.nodePort) + " is outside the NodePort range " +
                          std::to_string(node.nodePortMin) + "-" + std::to_string(node.nodePortMax));
  std::set<Ipv4> seen;
  if (s.clusterIp) seen.insert(*s.clusterIp);
  for (const auto* list : {&s.externalIps, &s.loadBalancerIps}) {
    for (Ipv4 ip : *list) {
      const std::string what = ctx + (list == &s.externalIps ? ": external IP" : ": LoadBalancer IP");
      NP_TRY(checkAddress(what, ip));
      NP_TRY(checkRoutableFrontend(what, ip, node));
      if (!seen.insert(ip).second) return error(ctx, "frontend address " + ip.str() + " is given twice");
    }
  }
  if (s.backends.size() > kMaxBackendsPerService)
    return error(ctx, "has " + std::to_string(s.backends.size()) + " backends; a service can have at most " +
                          std::to_string(kMaxBackendsPerService));
  std::set<Endpoint> backends;
  for (const Backend& b : s.backends) {
    if (b.addr.port == 0) return error(ctx, "backend " + b.addr.str() + ": port 0 is not a port");
    NP_TRY(checkAddress(ctx + ": backend", b.addr.ip));
    if (!backends.insert(b.addr).second) return error(ctx, "backend " + b.addr.str() + " is given twice");
    if (!b.nodeName.empty() && !isNodeName(b.nodeName))
      return error(ctx, "backend " + b.addr.str() + ": node name \"" + shown(b.nodeName) +
                            "\" is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253)");
  }
  if (s.sessionAffinity == SessionAffinity::ClientIp) {
    if (s.affinityTimeoutSec < 1 || s.affinityTimeoutSec > kMaxAffinityTimeoutSec)
      return error(ctx, "session affinity timeout " + std::to_string(s.affinityTimeoutSec) + " s is outside 1.." +
                            std::to_string(kMaxAffinityTimeoutSec) + " s");
  } else if (s.affinityTimeoutSec != kDefaultAffinityTimeoutSec) {
    return error(ctx, "a session affinity timeout is given without session affinity ClientIP");
  }
  if (s.externalTrafficPolicy == TrafficPolicy::Local && s.nodePort == 0 && s.externalIps.empty() &&
      s.loadBalancerIps.empty())
    return error(ctx, "externalTrafficPolicy Local needs an external frontend (a NodePort, external IPs or "
                      "LoadBalancer IPs)");
  return {};
}

uint64_t frontendKey(const Frontend& f) {
  return (uint64_t{f.addr.be} << 32) | (uint64_t{f.port} << 8) | static_cast<uint8_t>(f.protocol);
}

void addOwner(FrontendOwners& owners, const Service& s, const NodeContext& node) {
  for (const Frontend& f : frontendsOf(s, node)) owners[frontendKey(f)] = s.name;
}

void removeOwner(FrontendOwners& owners, const Service& s, const NodeContext& node) {
  for (const Frontend& f : frontendsOf(s, node)) {
    auto it = owners.find(frontendKey(f));
    if (it != owners.end() && it->second == s.name) owners.erase(it);
  }
}

Status checkConflicts(const Service& s, const NodeContext& node, const FrontendOwners& owners) {
  for (const Frontend& f : frontendsOf(s, node)) {
    auto it = owners.find(frontendKey(f));
    if (it != owners.end() && it->second != s.name)
      return Error{EEXIST, "service " + s.name, "frontend " + f.str() + " is already used by service " + it->second};
  }
  return {};
}

}  // namespace np::lb
