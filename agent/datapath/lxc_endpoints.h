// The datapath side of pod endpoints (endpoint::EndpointDatapath): np_lxc4_v1 entries and the
// loaded lxc.bpf.o attached to each pod's host-side veth.
#pragma once

#include <memory>
#include <string>

#include "bpf/map.h"
#include "datapath/programs.h"
#include "endpoint/datapath.h"
#include "np_lxc.h"

namespace np::datapath {

// The endpoint map's value for e.
np_endpoint endpointValue(const endpoint::Endpoint& e);

class LxcEndpoints final : public endpoint::EndpointDatapath {
 public:
  static Result<std::unique_ptr<LxcEndpoints>> of(std::unique_ptr<LxcProgram> prog);

  Status attach(const endpoint::Endpoint& e) override;
  Status detach(const endpoint::Endpoint& e) override;
  Status prune(const std::vector<endpoint::Endpoint>& keep) override;

  const LxcProgram& program() const { return *prog_; }
  // np_lxcstat_v1 summed over CPUs, by enum np_lxc_stat.
  std::vector<uint64_t> stats() const;

 private:
  LxcEndpoints(std::unique_ptr<LxcProgram> prog, bpf::Map<uint32_t, np_endpoint> map)
      : prog_(std::move(prog)), map_(std::move(map)) {}
  std::unique_ptr<LxcProgram> prog_;
  bpf::Map<uint32_t, np_endpoint> map_;  // key: pod IPv4, network order
};

}  // namespace np::datapath
