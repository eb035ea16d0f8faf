// cilium.io/v2 CiliumNode, the fields nodepath uses (pure): spec.addresses (the agent writes its
// node's InternalIP), spec.ipam.podCIDRs (the operator's cluster-pool IPAM writes them) and
// status.ipam.operator-status.error (the operator's complaint, e.g. an exhausted pool).
//
// Writers keep every field they do not own: an update is the object as last read with only our
// fields changed (a PUT with its resourceVersion; 409 means someone wrote in between).
#pragma once

#include <boost/json/object.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/net.h"
#include "core/nodes.h"
#include "core/result.h"

namespace np::k8s {

inline constexpr const char* kCiliumNodesPath = "/apis/cilium.io/v2/ciliumnodes";

struct NodeAddress {
  std::string type, ip;  // InternalIP, ExternalIP, CiliumInternalIP
  bool operator==(const NodeAddress&) const = default;
};

struct CiliumNode {
  std::string name, resourceVersion, uid;
  std::vector<NodeAddress> addresses;
  std::vector<std::string> podCidrs;  // as written (the operator validates them)
  std::string operatorError;          // status.ipam.operator-status.error
  // The first InternalIP that parses (nullopt: none).
  std::optional<Ipv4> internalIp() const;
  // podCIDRs[0] when it parses.
  std::optional<Cidr> podCidr() const;
};

// Unknown fields are ignored; a wrong type is an error naming the object and the field.
Result<CiliumNode> decodeCiliumNode(const boost::json::object& o);

// The CiliumNode the agent creates for its node: name, spec.addresses = [InternalIP nodeIp].
boost::json::object newCiliumNode(const std::string& name, Ipv4 nodeIp);
// Makes `o`'s spec.addresses hold InternalIP nodeIp (other address types are kept, other
// InternalIPs dropped). True when `o` changed.
bool setInternalIp(boost::json::object& o, Ipv4 nodeIp);
// Sets spec.ipam.podCIDRs = cidrs; true when `o` changed.
bool setPodCidrs(boost::json::object& o, const std::vector<std::string>& cidrs);
// Sets status.ipam.operator-status.error ("" clears it); true when `o` changed.
bool setOperatorError(boost::json::object& o, const std::string& why);

// The node list the datapath routes by (as the nodes file gives it): every CiliumNode with an
// InternalIP and a pod CIDR. `localMissing` gets why this node has no entry ("" when it has one).
// A node with an InternalIP but no usable pod CIDR yet (the operator has not served it, or its
// CIDR clashes) is not routed to, but its address is still a node's: it is in `addressOnly`, for
// the node map (host-to-node traffic, remote-node identity) and the node-address checks.
struct NodeAddressEntry {
  std::string name;
  Ipv4 ip;
  bool local = false;
  bool operator==(const NodeAddressEntry&) const = default;
};
struct ClusterNodes {
  std::vector<NodeEntry> nodes;
  std::vector<NodeAddressEntry> addressOnly;
  std::string localMissing;
  std::vector<std::string> skipped;  // peers not routed to, with the reason
  // Every node address: nodes' and addressOnly's, this node's first when it has one.
  std::vector<Ipv4> nodeIps() const;
  // What the node map holds (NodeEntry as the datapath takes it; addressOnly entries carry no pod
  // CIDR and the node map reads none).
  std::vector<NodeEntry> nodeMapEntries() const;
};
ClusterNodes clusterNodes(const std::map<std::string, CiliumNode>& all, const std::string& localName);

}  // namespace np::k8s
