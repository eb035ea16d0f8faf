// Which service a rev-NAT ID belongs to, for naming flows: the IDs the LB reconciler gave each
// service's frontends; and which pod an address belongs to. Pure; the agent calls them on its own
// loop and hands the results to Flows::setServices() / updateServices() / setPods().
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

// Which service each service ID (reverse-NAT ID) stands for: every service's frontends' IDs as the
// LB reconciler applied them (`idsOf(service)`, Reconciler::serviceIds), named after the service.
// An ID no service owns (an adopted entry not claimed yet) is not named. The agent builds this
// whole once, then keeps it up to date change by change (Flows::updateServices) with the IDs of the
// services a change touched, which gives the same table.
template <typename Services, typename IdsOf>
std::map<uint16_t, ServiceName> serviceNames(const Services& services, IdsOf&& idsOf) {
  std::map<uint16_t, ServiceName> out;
  for (const auto& [name, svc] : services) {
    const auto ids = idsOf(svc);
    if (ids.empty()) continue;
    const ServiceName n = splitServiceName(name);
    for (uint16_t id : ids) out[id] = n;
  }
  return out;
}

// A pod from the agent's endpoint (CNI ADD): name, namespace, address, and the namespace label
// every Cilium endpoint carries (the endpoint records hold no pod labels).
template <typename Endpoint>
PodInfo podInfoOf(const Endpoint& e) {
  PodInfo p;
  p.name = e.podName;
  p.ns = e.podNamespace;
  if (!p.ns.empty()) p.labels.push_back("k8s:io.kubernetes.pod.namespace=" + p.ns);
  p.addr = e.ip.be;
  return p;
}

// Pods by address, from the agent's endpoints.
template <typename Endpoints>
std::unordered_map<uint32_t, PodInfo> podsByAddress(const Endpoints& endpoints) {
  std::unordered_map<uint32_t, PodInfo> out;
  for (const auto& e : endpoints) {
    if (e.podName.empty()) continue;
    out[e.ip.be] = podInfoOf(e);
  }
  return out;
}

// Pods by network namespace cookie (bpf_get_netns_cookie()), for socket-level flows:
// `cookieOf(netnsPath)` gives the cookie of an endpoint's namespace, or 0 when it has none (gone,
// or a kernel without SO_NETNS_COOKIE); such an endpoint is left out. The host's cookie is never a
// pod's: socket flows from the host keep no source pod.
template <typename Endpoints, typename CookieOf>
std::unordered_map<uint64_t, PodInfo> podsByNetns(const Endpoints& endpoints, CookieOf&& cookieOf) {
  std::unordered_map<uint64_t, PodInfo> out;
  for (const auto& e : endpoints) {
    if (e.podName.empty() || e.netns.empty()) continue;
    uint64_t cookie = cookieOf(e.netns);
    if (!cookie) continue;
    out[cookie] = podInfoOf(e);
  }
  return out;
}

}  // namespace np::flows
