#include "routing/node_routes.h"

#include <linux/rtnetlink.h>

#include <algorithm>

namespace np::routing {

NodeRoutePlan planNodeRoutes(const std::vector<NodeEntry>& nodes, const std::string& device, int deviceIfindex,
                             const std::vector<Address>& deviceAddrs) {
  NodeRoutePlan plan;
  std::string subnets;
  for (const Address& a : deviceAddrs) {
    Cidr net{Ipv4::fromHost(a.prefix == 0 ? 0 : a.ip.host() & (~0u << (32 - a.prefix))), a.prefix};
    subnets += (subnets.empty() ? "" : ", ") + net.str();
  }
  for (const NodeEntry& n : nodes) {
    if (n.local) continue;
    NodeRouteState s{n.name, n.podCidr, n.ip, false, {}};
    const bool onLink = std::any_of(deviceAddrs.begin(), deviceAddrs.end(), [&](const Address& a) {
      Cidr net{Ipv4::fromHost(a.prefix == 0 ? 0 : a.ip.host() & (~0u << (32 - a.prefix))), a.prefix};
      return a.prefix < 32 && net.contains(n.ip) && a.ip != n.ip;
    });
    if (!onLink) {
      s.error = "node " + n.name + " (" + n.ip.str() + ") is not on a directly connected subnet of " + device +
                " (" + (subnets.empty() ? std::string("no IPv4 address") : subnets) + "): no direct route to " +
                n.podCidr.str() + " (needs a router; not supported with auto-direct-node-routes)";
    } else {
      plan.routes.push_back(Route{n.podCidr, n.ip, deviceIfindex, kRouteProtocol, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN});
    }
    plan.nodes.push_back(std::move(s));
  }
  return plan;
}

Result<std::vector<NodeRouteState>> NodeRoutes::apply(const NodeRoutePlan& plan) {
  std::vector<NodeRouteState> out = plan.nodes;
  auto current = nl_.routes();
  if (!current) return current.error();
  // Stale first: a peer whose CIDR moved to another node gets its new route after the old goes.
  for (const Route& r : *current) {
    if (r.protocol != kRouteProtocol || r.gateway.isZero()) continue;
    const bool wanted = std::any_of(plan.routes.begin(), plan.routes.end(), [&](const Route& w) {
      return w.dst == r.dst && w.gateway == r.gateway && w.oif == r.oif;
    });
    if (!wanted) (void)nl_.deleteRoute(r);
  }
  for (NodeRouteState& s : out) {
    if (!s.error.empty()) continue;
    auto it = std::find_if(plan.routes.begin(), plan.routes.end(), [&](const Route& r) { return r.dst == s.podCidr; });
    if (it == plan.routes.end()) continue;
    Status st = nl_.replaceRoute(*it);
    s.installed = st.ok();
    if (!st) s.error = st.error().message();
  }
  return out;
}

}  // namespace np::routing
