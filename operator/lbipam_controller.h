// LB-IPAM's Kubernetes side: reflectors on CiliumLoadBalancerIPPools and Services feed the pure
// Allocator (operator/lbipam.h); once both have listed, every change reconciles and each
// LoadBalancer service whose status differs from its outcome gets one merge PATCH of its status
// subresource (status.loadBalancer.ingress and the cilium.io/IPAMRequestSatisfied condition,
// other conditions kept). A condition that turns False (or changes reason) also gets a Warning
// Event on the Service. A service no longer of type LoadBalancer loses our address and condition.
// Patches go one at a time; changes arriving meanwhile are folded into one more pass.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>

#include "core/result.h"
#include "k8s/client.h"

namespace np::op {

class LbIpamController {
 public:
  // Runs on `client`'s io_context until the process ends (the operator exits when it stops
  // leading, as Cilium's does).
  static Result<std::shared_ptr<LbIpamController>> start(boost::asio::io_context& io, k8s::Client& client);
  struct Stats {
    uint64_t patches = 0, patchErrors = 0, events = 0, badPools = 0, badServices = 0;
  };
  const Stats& stats() const;

  struct State;

 private:
  std::shared_ptr<State> st_;
};

}  // namespace np::op
