// Which service a rev-NAT ID belongs to, for naming flows: the reverse-NAT entries the LB
// reconciler applied (ID -> frontend address and port) matched against the services' frontends;
// and which pod an address belongs to. Pure; the agent calls them on its own loop when services or
// endpoints change and hands the results to Flows::setServices() / setPods().
#pragma once

#include <arpa/inet.h>

#include <map>
#include <string>
#include <unordered_map>

#include "flows/decode.h"
#include "lb/image.h"
#include "lb/model.h"

namespace np::flows {

// "default/web:http" -> {name "web", ns "default"}; a HostPort's
// "hostport/<ns>/<pod>/<proto>/<port>" -> {name "hostport/<pod>/<proto>/<port>", ns "<ns>"} (the
// pod's namespace, so namespace filters select it).
inline ServiceName splitServiceName(const std::string& full) {
  ServiceName s;
  if (full.starts_with("hostport/") && full.find('/', sizeof "hostport/" - 1) != std::string::npos) {
    std::string rest = full.substr(sizeof "hostport/" - 1);
    auto slash = rest.find('/');
    s.ns = rest.substr(0, slash);
    s.name = "hostport/" + rest.substr(slash + 1);
    return s;
  }
  std::string rest = full;
  auto colon = rest.find(':');
  if (colon != std::string::npos) rest = rest.substr(0, colon);
  auto slash = rest.find('/');
  if (slash == std::string::npos) {
    s.name = rest;
  } else {
    s.ns = rest.substr(0, slash);
    s.name = rest.substr(slash + 1);
  }
  return s;
}

template <typename RevNatMap>
std::map<uint16_t, ServiceName> serviceNames(const std::map<std::string, lb::Service>& services,
                                             const RevNatMap& revNat) {
  std::map<std::pair<uint32_t, uint16_t>, std::string> byFrontend;  // (addr be, port host) ->
  std::map<uint16_t, std::string> byNodePort;  // and HostPorts on every node address
  for (const auto& [name, svc] : services) {
    if (svc.hostPort) {
      if (svc.hostIp) byFrontend[{svc.hostIp->be, svc.hostPort}] = name;
      else byNodePort[svc.hostPort] = name;
      continue;
    }
    if (svc.clusterIp) byFrontend[{svc.clusterIp->be, svc.port}] = name;
    for (const auto& ip : svc.externalIps) byFrontend[{ip.be, svc.port}] = name;
    for (const auto& ip : svc.loadBalancerIps) byFrontend[{ip.be, svc.port}] = name;
    if (svc.nodePort) byNodePort[svc.nodePort] = name;
  }
  std::map<uint16_t, ServiceName> out;
  for (const auto& [id, rn] : revNat) {
    uint16_t port = ntohs(rn.port);
    auto it = byFrontend.find({rn.addr, port});
    if (it != byFrontend.end()) {
      out[id] = splitServiceName(it->second);
      continue;
    }
    auto np = byNodePort.find(port);
    if (np != byNodePort.end()) out[id] = splitServiceName(np->second);
  }
  return out;
}

// Pods by address, from the agent's endpoints (CNI ADDs): name, namespace, and the namespace label
// every Cilium endpoint carries (the endpoint records hold no pod labels).
template <typename Endpoints>
std::unordered_map<uint32_t, PodInfo> podsByAddress(const Endpoints& endpoints) {
  std::unordered_map<uint32_t, PodInfo> out;
  for (const auto& e : endpoints) {
    if (e.podName.empty()) continue;
    PodInfo p;
    p.name = e.podName;
    p.ns = e.podNamespace;
    if (!p.ns.empty()) p.labels.push_back("k8s:io.kubernetes.pod.namespace=" + p.ns);
    out[e.ip.be] = std::move(p);
  }
  return out;
}

}  // namespace np::flows
