// Which service addresses this node announces, and on which interfaces: Cilium's
// CiliumL2AnnouncementPolicy (cilium.io/v2alpha1) applied to a service, the node's labels and its
// devices, with Cilium 1.15's selection rules (pkg/l2announcer): the policy's nodeSelector must
// match the node, its serviceSelector the service's labels plus io.kubernetes.service.namespace /
// .name, the address kind must be enabled (loadBalancerIPs for status.loadBalancer.ingress IPs,
// externalIPs for spec.externalIPs), spec.loadBalancerClass must be unset or
// io.cilium/l2-announcer, and the interface regexes (unanchored, as Go's MatchString; none = every
// device) pick the devices. A service without such an address needs no lease at all.
#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include "core/net.h"
#include "core/result.h"

namespace np::l2 {

using Labels = std::map<std::string, std::string>;

// metav1.LabelSelector: matchLabels AND every matchExpressions requirement.
struct LabelSelector {
  enum class Op { In, NotIn, Exists, DoesNotExist };
  struct Requirement {
    std::string key;
    Op op = Op::Exists;
    std::vector<std::string> values;
  };
  Labels matchLabels;
  std::vector<Requirement> expressions;

  // From the JSON of a metav1.LabelSelector; what Kubernetes' LabelSelectorAsSelector refuses is
  // refused here with the same reasons (unknown operator, values with Exists, none with In).
  static Result<LabelSelector> fromJson(const boost::json::value& v);
  bool matches(const Labels& labels) const;
};

struct Policy {
  std::string name;
  std::optional<LabelSelector> serviceSelector;  // unset: every service
  std::optional<LabelSelector> nodeSelector;     // unset: every node
  std::vector<std::string> interfacePatterns;    // as written
  std::vector<std::regex> interfaces;            // compiled; empty = every device
  bool externalIPs = false;
  bool loadBalancerIPs = false;

  // From a whole CiliumL2AnnouncementPolicy object (metadata.name, spec). The error's context is
  // the condition Cilium sets on the policy: io.cilium/bad-service-selector,
  // io.cilium/bad-node-selector or io.cilium/bad-interface-regex.
  static Result<Policy> fromJson(const boost::json::value& object);
  bool matchesDevice(const std::string& device) const;
};

inline constexpr const char* kL2LoadBalancerClass = "io.cilium/l2-announcer";

// What of a Service the announcer needs.
struct Service {
  std::string ns, name;
  Labels labels;
  std::optional<std::string> loadBalancerClass;
  std::vector<Ipv4> externalIPs;        // spec.externalIPs
  std::vector<Ipv4> loadBalancerIPs;    // status.loadBalancer.ingress[].ip
};

struct Announcement {
  Ipv4 ip;
  std::string device;
  auto operator<=>(const Announcement&) const = default;
};

// Every (address, device) this node answers ARP for while it holds svc's lease, sorted and
// unique; empty when no policy selects both this node and svc (then no lease is taken part in).
std::vector<Announcement> announcementsFor(const std::vector<Policy>& policies, const Service& svc,
                                           const Labels& nodeLabels,
                                           const std::vector<std::string>& devices);

// Whether ARP may be answered on an interface (the devices announcementsFor is given): up,
// Ethernet (ARPHRD_ETHER), not loopback, not a bond's slave (its master answers for it), not one
// the agent makes for pods (lxc*, np_host/np_net). flags: IFF_* as SIOCGIFFLAGS reports them.
bool announceableDevice(const std::string& name, unsigned flags, int hwType);

// The Lease that elects the announcing node for svc (in the agent's namespace). Cilium's format
// (cilium-l2announce-<ns>-<name>), kept so users can compare: "a-b/c" and "a/b-c" share one.
std::string leaseName(const Service& svc);

// Services whose Lease names collide: among the services some policy selects on some node (node
// selectors and interfaces left out, so every node judges alike), the first by "<ns>/<name>"
// keeps the name; each later one maps to why it is not announced (rather than two services
// fighting over one Lease). services: keyed by "<ns>/<name>".
std::map<std::string, std::string> leaseCollisions(const std::vector<Policy>& policies,
                                                   const std::map<std::string, Service>& services);

}  // namespace np::l2
