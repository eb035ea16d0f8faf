// Direct node routes (autoDirectNodeRoutes): for every peer node on the same L2 as this node's
// direct-routing device, `<its pod CIDR> via <its node IP> dev <device> proto 202`.
//
// planNodeRoutes is pure: nodes + the device's addresses in, the routes wanted and the peers
// refused (with the reason a status line shows) out. NodeRoutes applies a plan: it installs with
// NLM_F_REPLACE (an identical route, ours or one added by hand, is no error) and removes only
// routes of our protocol that have a gateway and are no longer wanted (a pod's /32 link route is
// also ours, but has no gateway: a node-route sync never touches it).
#pragma once

#include <string>
#include <vector>

#include "core/nodes.h"
#include "routing/netlink.h"

namespace np::routing {

struct NodeRouteState {
  std::string node;
  Cidr podCidr;
  Ipv4 via;
  bool installed = false;
  std::string error;  // why it is not installed
};

struct NodeRoutePlan {
  std::vector<Route> routes;          // wanted, in node order
  std::vector<NodeRouteState> nodes;  // one per peer node, installed=false until applied
};

// `deviceIfindex`/`deviceAddrs`: the direct-routing device and its IPv4 addresses (their
// prefixes say which subnets are directly connected).
NodeRoutePlan planNodeRoutes(const std::vector<NodeEntry>& nodes, const std::string& device, int deviceIfindex,
                             const std::vector<Address>& deviceAddrs);

class NodeRoutes {
 public:
  explicit NodeRoutes(Netlink& nl) : nl_(nl) {}
  // Makes the kernel's routes match the plan; per-node errors land in the returned states (the
  // other nodes' routes are still applied). The Status fails only when the routes cannot be read.
  Result<std::vector<NodeRouteState>> apply(const NodeRoutePlan& plan);

 private:
  Netlink& nl_;
};

}  // namespace np::routing
