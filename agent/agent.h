// The agent: desired state, the datapath and the persisted store, behind the operations the API
// offers. Single-threaded: every method runs on the agent's io_context (the API posts onto it).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "agent.pb.h"
#include "core/config.h"
#include "core/nodes.h"
#include "datapath/datapath.h"
#include "lb/reconciler.h"
#include "lb/store.h"

namespace np {

namespace pb = ::nodepath::agent::v1;

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> start(Config config);

  Result<pb::UpsertServiceResponse> upsertService(const pb::UpsertServiceRequest& req);
  Result<pb::UpsertServicesResponse> upsertServices(const pb::UpsertServicesRequest& req);
  Status deleteService(const std::string& name);
  Result<pb::GetServiceResponse> getService(const std::string& name) const;
  pb::ListServicesResponse listServices() const;
  Result<pb::ListLbResponse> listLb() const;
  pb::ListNodesResponse listNodes() const;
  pb::StatusResponse status() const;

  const Config& config() const { return config_; }
  std::string socketPath() const { return config_.runDir + "/agent.sock"; }
  datapath::Datapath& datapath() { return *datapath_; }

 private:
  Agent() = default;
  void persist();
  void releaseMemory();

  Config config_;
  std::unique_ptr<datapath::Datapath> datapath_;
  std::unique_ptr<lb::Reconciler> lb_;
  std::unique_ptr<lb::ServiceStore> store_;
  std::vector<NodeEntry> nodes_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  lb::Reconciler::Restored restored_;
  std::string persistError_;
};

}  // namespace np
