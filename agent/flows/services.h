// Which service a rev-NAT ID belongs to, for naming flows: the reverse-NAT entries the LB
// reconciler applied (ID -> frontend address and port) matched against the services' frontends.
// Pure; the agent calls it on its own loop and hands the result to Flows::setServices().
#pragma once

#include <arpa/inet.h>

#include <map>
#include <string>

#include "flows/decode.h"
#include "lb/image.h"
#include "lb/model.h"

namespace np::flows {

// "default/web:http" -> {name "web", ns "default"}.
inline ServiceName splitServiceName(const std::string& full) {
  ServiceName s;
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
  std::map<uint16_t, std::string> byNodePort;
  for (const auto& [name, svc] : services) {
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

}  // namespace np::flows
