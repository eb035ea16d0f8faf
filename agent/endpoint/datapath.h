// What the pod network asks of the datapath for each endpoint: its entry in the local endpoint
// map (np_lxc4_v1) and lxc.bpf.c on its host-side veth. The datapath implements it
// (datapath::LxcEndpoints); the pod network only calls it. Single-threaded: the agent's io_context.
#pragma once

#include <vector>

#include "core/result.h"
#include "endpoint/store.h"

namespace np::endpoint {

class EndpointDatapath {
 public:
  virtual ~EndpointDatapath() = default;
  // Writes the endpoint's map entry and attaches (or atomically replaces) the lxc program on
  // both tc hooks of its host veth. Idempotent; a restarted agent calls it to adopt endpoints.
  virtual Status attach(const Endpoint& e) = 0;
  // Removes the endpoint's map entry and our filters from its veth (if it still exists).
  // Idempotent.
  virtual Status detach(const Endpoint& e) = 0;
  // Removes the map entries of pods not in `keep` (endpoints that went while no agent ran).
  virtual Status prune(const std::vector<Endpoint>& keep) = 0;
};

}  // namespace np::endpoint
