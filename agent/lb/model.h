// The service model: one port of a service and every frontend it is reachable on, with its
// backends. Both sources of desired state (the local API and, later, Kubernetes) produce these;
// reconcilers do not know where a service came from.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <boost/unordered/unordered_flat_map.hpp>
#include <vector>

#include "core/net.h"
#include "np_abi.h"
#include "core/result.h"

namespace np::lb {

enum class BackendState : uint8_t { Active = 0, Terminating = 1 };

struct Backend {
  Endpoint addr;
  BackendState state = BackendState::Active;
  // The node the backend runs on (Kubernetes: the EndpointSlice endpoint's nodeName); empty when
  // the source does not say: then it is local when it lies in this node's pod CIDR or is one of
  // this node's addresses (isLocal).
  std::string nodeName;
  bool operator==(const Backend&) const = default;
};

// Kubernetes' spec.sessionAffinity and spec.{external,internal}TrafficPolicy.
enum class SessionAffinity : uint8_t { None, ClientIp };
enum class TrafficPolicy : uint8_t { Cluster, Local };
const char* sessionAffinityName(SessionAffinity a);  // "None", "ClientIP"
const char* trafficPolicyName(TrafficPolicy p);      // "Cluster", "Local"
std::optional<SessionAffinity> parseSessionAffinity(std::string_view s);
std::optional<TrafficPolicy> parseTrafficPolicy(std::string_view s);

// sessionAffinityConfig.clientIP.timeoutSeconds: Kubernetes' default and bounds.
inline constexpr uint32_t kDefaultAffinityTimeoutSec = 10800;
inline constexpr uint32_t kMaxAffinityTimeoutSec = 86400;

struct Service {
  std::string name;  // unique, e.g. "default/web" or "default/web:http"
  Protocol protocol = Protocol::Tcp;
  uint16_t port = 0;  // ClusterIP, externalIPs and LoadBalancer IPs listen on this port
  std::optional<Ipv4> clusterIp;
  uint16_t nodePort = 0;  // 0 = none
  std::vector<Ipv4> externalIps;
  std::vector<Ipv4> loadBalancerIps;
  std::vector<Backend> backends;
  SessionAffinity sessionAffinity = SessionAffinity::None;
  uint32_t affinityTimeoutSec = kDefaultAffinityTimeoutSec;  // ClientIP only; kept at the default otherwise
  TrafficPolicy externalTrafficPolicy = TrafficPolicy::Cluster;  // NodePort, external and LB IPs
  TrafficPolicy internalTrafficPolicy = TrafficPolicy::Cluster;  // ClusterIP from this node
  std::string source = "local";  // "local", "kubernetes" or "cni" (a pod's HostPort)
  // A HostPort (CNI portMappings): hostPort != 0 makes this a node-scoped frontend and nothing
  // else: hostIp:hostPort (no hostIp: every node address) -> its one backend, the pod. Its name is
  // hostPortName(); port equals hostPort.
  uint16_t hostPort = 0;
  std::optional<Ipv4> hostIp;
  bool operator==(const Service&) const = default;
};

// What the node contributes to a service's frontends, and what a frontend must stay clear of.
struct NodeContext {
  std::vector<Ipv4> nodeIps;  // addresses NodePorts answer on (besides the wildcard)
  uint16_t nodePortMin = NP_DEFAULT_NODEPORT_MIN;
  uint16_t nodePortMax = NP_DEFAULT_NODEPORT_MAX;
  // Validation only: ClusterIPs must lie in serviceCidr; external and LoadBalancer IPs must not
  // be a node's address (clusterNodeIps, this node's included) nor lie in podCidr, unless
  // allowUnsafeFrontends (such a frontend takes over that address's port on every node).
  Cidr serviceCidr{Ipv4::fromHost(0x0a2b0000), 16};  // 10.43.0.0/16, k3s's default
  Cidr podCidr{Ipv4::fromHost(0x0a000000), 16};      // 10.0.0.0/16
  std::vector<Ipv4> clusterNodeIps;
  bool allowUnsafeFrontends = false;
  // Which backends are this node's (traffic policy Local): its name and pod CIDR (from the nodes
  // list; none: only the node's own addresses count).
  std::string nodeName;
  std::optional<Cidr> localPodCidr;
  // Backend selection of the tc path: Maglev tables of this size for routable frontends.
  bool maglev = false;
  uint32_t maglevTableSize = NP_DEFAULT_MAGLEV_TABLE_SIZE;
};

// Whether the backend runs on this node: its node name says so, or (no name given) its address is
// in the node's pod CIDR or is one of the node's addresses.
bool isLocal(const Backend& b, const NodeContext& node);

// The most backends one service can have: slot numbers and counts are 16-bit in the ABI.
inline constexpr size_t kMaxBackendsPerService = UINT16_MAX;

// A name or value as the user gave it, cut to a length that is safe to echo in an error message
// (gRPC carries messages in metadata; unbounded input must not travel back there).
std::string shown(std::string_view value);
inline std::string shownName(const std::string& name) { return shown(name); }

// The source of HostPort services, and their names: "hostport/<ns>/<pod>/<tcp|udp>/<hostPort>".
inline constexpr const char* kHostPortSource = "cni";
std::string hostPortName(const std::string& podNamespace, const std::string& podName, Protocol p, uint16_t hostPort);
bool isHostPortName(std::string_view name);

// Checks a service name: "<namespace>/<name>" or "<namespace>/<name>:<port name>", each part a
// DNS-1123 label as Kubernetes requires.
Status validateName(const std::string& name);

enum class FrontendType : uint8_t { ClusterIp, NodePort, NodePortWildcard, ExternalIp, LoadBalancer, HostPort };
const char* frontendTypeName(FrontendType t);

struct Frontend {
  Ipv4 addr;  // 0.0.0.0 for the NodePort wildcard
  uint16_t port = 0;
  Protocol protocol = Protocol::Tcp;
  FrontendType type = FrontendType::ClusterIp;
  std::string str() const;  // "10.43.0.20:80/TCP"
};

// Every frontend of s, in a stable order (ClusterIP, NodePort wildcard, NodePort per node IP,
// external IPs, LoadBalancer IPs).
std::vector<Frontend> frontendsOf(const Service& s, const NodeContext& node);

// Puts backends in address order: the order a source lists them in means nothing, so a re-sent
// service with its backends shuffled is the same service.
void normalize(Service& s);

// Whether a and b are the same service but for their backends: same name, frontends, flags and
// source. A change between two such versions moves only backend and slot entries: every frontend
// keeps its service ID and reverse-NAT entry, so what is named after frontends (flows) stays.
bool sameFrontends(const Service& a, const Service& b);

// Checks one service on its own: name, port, addresses, NodePort range, backends.
Status validate(const Service& s, const NodeContext& node);

// Frontends are exclusive: (address, port, protocol) packed into one key -> owning service.
uint64_t frontendKey(const Frontend& f);
using FrontendOwners = boost::unordered_flat_map<uint64_t, std::string>;
void addOwner(FrontendOwners& owners, const Service& s, const NodeContext& node);
void removeOwner(FrontendOwners& owners, const Service& s, const NodeContext& node);

// Checks that `s` claims no frontend another service owns (frontends owned by s.name itself
// are the version s replaces).
Status checkConflicts(const Service& s, const NodeContext& node, const FrontendOwners& owners);

}  // namespace np::lb
