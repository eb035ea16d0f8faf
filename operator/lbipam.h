// LB-IPAM, Cilium 1.15's (operator/pkg/ipam/lbipam): addresses for Services of type LoadBalancer
// from CiliumLoadBalancerIPPools (cilium.io/v2alpha1).
//
// The core here is pure: pools and services in, per service the addresses it holds and its
// `cilium.io/IPAMRequestSatisfied` condition out. Every reconcile recomputes the whole picture
// from what the services already hold (the allocator's own earlier grants, else their
// status.loadBalancer.ingress), so a restarted operator rebuilds its allocations from the
// services' status and never hands out an address twice:
//  1. holdings first, in key order: a service keeps an address that is still in an enabled or
//     disabled pool selecting it (a disabled pool gives no new addresses but takes none back),
//     that it still wants (its request, when it has one) and that no earlier service holds;
//  2. then requests: spec.loadBalancerIP or the `lbipam.cilium.io/ips` / `io.cilium/lb-ipam-ips`
//     annotation (comma-separated) names the addresses; otherwise the first free address of
//     the first enabled pool (by name) whose serviceSelector matches.
// Failures carry Cilium's reasons: no_pool, pool_selector_mismatch, already_allocated,
// out_of_ips, and invalid_request for a request that cannot be read.
#pragma once

#include <boost/json/object.hpp>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"
#include "l2/policy.h"

namespace np::op::lbipam {

inline constexpr const char* kConditionSatisfied = "cilium.io/IPAMRequestSatisfied";
inline constexpr const char* kAnnotationIps = "lbipam.cilium.io/ips";
inline constexpr const char* kAnnotationIpsOld = "io.cilium/lb-ipam-ips";

struct Range {
  uint32_t first = 0, last = 0;  // host order, inclusive, usable addresses only
  uint64_t size() const { return uint64_t(last) - first + 1; }
};

struct Pool {
  std::string name;
  std::vector<Range> ranges;
  std::optional<l2::LabelSelector> serviceSelector;  // unset: every service
  bool disabled = false;
  bool matches(const l2::Labels& serviceLabels) const;
  bool contains(Ipv4 ip) const;
  uint64_t size() const;
};

// spec.blocks (cidr, or start with an optional stop) and the deprecated spec.cidrs, disabled,
// allowFirstLastIPs ("Yes"/"No"; a CIDR's network and broadcast addresses are left out unless
// Yes, except in a /31 or /32), serviceSelector. IPv6 blocks are skipped (IPv4 only here).
// Anything malformed is refused with the reason.
Result<Pool> decodePool(const boost::json::object& obj);

struct ServiceKey {
  std::string ns, name;
  auto operator<=>(const ServiceKey&) const = default;
  std::string str() const { return ns + "/" + name; }
};

struct Service {
  ServiceKey key;
  l2::Labels labels;  // metadata.labels plus io.kubernetes.service.namespace / .name
  bool loadBalancer = false;  // type LoadBalancer and no foreign loadBalancerClass
  std::vector<Ipv4> requested;  // spec.loadBalancerIP or the annotation
  std::vector<Ipv4> ingress;    // status.loadBalancer.ingress[].ip
  int64_t generation = 0;
  std::string invalid;  // set: the request cannot be read (the reason); the service gets nothing
};

// A Service object; a malformed requested address is refused with the reason.
Result<Service> decodeService(const boost::json::object& obj);

struct Outcome {
  std::vector<Ipv4> ips;  // what the service holds, in order
  bool satisfied = false;
  std::string reason;   // "satisfied" or a failure reason
  std::string message;  // "" when satisfied
  bool operator==(const Outcome&) const = default;
};

class Allocator {
 public:
  void upsertPool(Pool p);
  void removePool(const std::string& name);
  void upsertService(Service s);
  void removeService(const ServiceKey& k);  // frees what it held

  // Recomputes every LoadBalancer service's outcome.
  const std::map<ServiceKey, Outcome>& reconcile();
  const std::map<ServiceKey, Outcome>& outcomes() const { return outcomes_; }
  // Addresses in use in a pool.
  uint64_t used(const std::string& pool) const;
  const std::map<std::string, Pool>& pools() const { return pools_; }

 private:
  const Pool* poolOf(Ipv4 ip) const;
  std::map<std::string, Pool> pools_;
  std::map<ServiceKey, Service> services_;
  std::map<ServiceKey, Outcome> outcomes_;
  std::map<uint32_t, ServiceKey> taken_;  // host-order address -> holder
};

}  // namespace np::op::lbipam
