#include "lb/model.h"

#include <algorithm>
#include <set>

namespace np::lb {

const char* frontendTypeName(FrontendType t) {
  switch (t) {
    case FrontendType::ClusterIp: return "ClusterIP";
    case FrontendType::NodePort: return "NodePort";
    case FrontendType::NodePortWildcard: return "NodePort";
    case FrontendType::ExternalIp: return "ExternalIP";
    case FrontendType::LoadBalancer: return "LoadBalancer";
  }
  return "?";
}

std::string Frontend::str() const {
  return addr.str() + ":" + std::to_string(port) + "/" + protocolName(protocol);
}

std::vector<Frontend> frontendsOf(const Service& s, const NodeContext& node) {
  std::vector<Frontend> out;
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

}  // namespace

void normalize(Service& s) {
  std::sort(s.backends.begin(), s.backends.end(), [](const Backend& a, const Backend& b) {
    return std::pair(a.addr.ip.host(), a.addr.port) < std::pair(b.addr.ip.host(), b.addr.port);
  });
}

Status validate(const Service& s, const NodeContext& node) {
  if (s.name.empty()) return error("service", "name is empty");
  if (s.name.size() > 253) return error("service " + s.name.substr(0, 40) + "...", "name is longer than 253 characters");
  for (char c : s.name)
    if (c <= ' ' || c == 0x7f) return error("service \"" + s.name + "\"", "name contains whitespace or control characters");
  const std::string ctx = "service " + s.name;
  if (s.port == 0) return error(ctx, "port 0 is not a port (1-65535)");
  if (s.protocol != Protocol::Tcp && s.protocol != Protocol::Udp)
    return error(ctx, "protocol must be TCP or UDP");
  if (!s.clusterIp && s.nodePort == 0 && s.externalIps.empty() && s.loadBalancerIps.empty())
    return error(ctx, "has no frontend: give a cluster IP, a NodePort, external IPs or LoadBalancer IPs");
  if (s.clusterIp) NP_TRY(checkAddress(ctx + ": cluster IP", *s.clusterIp));
  if (s.nodePort != 0 && (s.nodePort < node.nodePortMin || s.nodePort > node.nodePortMax))
    return error(ctx, "NodePort " + std::to_string(s.nodePort) + " is outside the NodePort range " +
                          std::to_string(node.nodePortMin) + "-" + std::to_string(node.nodePortMax));
  std::set<Ipv4> seen;
  if (s.clusterIp) seen.insert(*s.clusterIp);
  for (const auto* list : {&s.externalIps, &s.loadBalancerIps}) {
    for (Ipv4 ip : *list) {
      NP_TRY(checkAddress(ctx + (list == &s.externalIps ? ": external IP" : ": LoadBalancer IP"), ip));
      if (!seen.insert(ip).second) return error(ctx, "frontend address " + ip.str() + " is given twice");
    }
  }
  std::set<Endpoint> backends;
  for (const Backend& b : s.backends) {
    if (b.addr.port == 0) return error(ctx, "backend " + b.addr.str() + ": port 0 is not a port");
    NP_TRY(checkAddress(ctx + ": backend", b.addr.ip));
    if (!backends.insert(b.addr).second) return error(ctx, "backend " + b.addr.str() + " is given twice");
  }
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
