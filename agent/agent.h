// The agent: desired state, the datapath and the persisted store, behind the operations the API
// offers. Single-threaded: every method runs on the agent's io_context (the API posts onto it).
//
// Trust rules this class keeps:
// - One agent per node: locks on <run-dir>/agent.lock and the pin directory are taken before
//   anything else is touched, and held until the process exits.
// - Durable first, then visible: a change of the local API is prepared (validated, planned,
//   checked against free map capacity), appended to the journal and synced, and only then
//   written to the maps. A failed save fails the request with nothing applied.
// - Restore barrier: adopted map entries no service claims are kept until every source of
//   desired state has synced; an unreadable or missing state file never empties the datapath.
//   While the local state is not loaded, changes are refused and `agentctl state` offers the way
//   out.
// - Whole-map reconcile on start (once synced), on an interval and on request.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent.pb.h"
#include "core/config.h"
#include "core/lock.h"
#include "core/nodes.h"
#include "ct/gc_loop.h"
#include "datapath/datapath.h"
#include "endpoint/pod_network.h"
#include "k8s/ciliumnode_sync.h"
#include "k8s/refused.h"
#include "k8s/watcher.h"
#include "l2/controller.h"
#include "flows/flows.h"
#include "lb/reconciler.h"
#include "lb/store.h"
#include "metrics/exposition.h"
#include "metrics/http_server.h"

namespace np {

namespace pb = ::nodepath::agent::v1;

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> start(Config config, boost::asio::io_context& io);

  Result<pb::UpsertServiceResponse> upsertService(const pb::UpsertServiceRequest& req);
  Result<pb::UpsertServicesResponse> upsertServices(const pb::UpsertServicesRequest& req);
  Status deleteService(const std::string& name);
  Result<pb::GetServiceResponse> getService(const std::string& name) const;
  // Every service in name order, in pages of at most `pageSize`.
  std::vector<pb::ListServicesResponse> listServices(size_t pageSize) const;
  Result<pb::ListLbResponse> listLb() const;
  // The conntrack tables for `bpf ct list`: read from any thread (see Datapath::conntrackTables).
  ct::Tables& conntrackTables() { return datapath_->conntrackTables(); }
  pb::ListNodesResponse listNodes() const;
  pb::StatusResponse status() const;
  Result<pb::ReconcileResponse> reconcile();
  Result<pb::StateResponse> state(pb::StateRequest::Action action);

  // The pod network (CNI endpoints, IPAM, node routes, the conflist).
  endpoint::PodNetwork& podNetwork() { return *pods_; }
  // CNI ADD/DEL/GC with the pod's HostPorts (portMappings) programmed, removed and released.
  Result<pb::CniAddResponse> cniAdd(const pb::CniAddRequest& req);
  Status cniDel(const pb::CniDelRequest& req);
  pb::CniGcResponse cniGc(const pb::CniGcRequest& req);
  // The API serves now: the CNI config may be written once the pod network is ready.
  void apiReady() { pods_->setApiReady(); }

  // Returns freed memory to the system 200 ms from now, and twice more over the next seconds. The
  // API calls it after a large request's handler has returned (gRPC frees the request on its own
  // thread after that).
  void scheduleTrim();
  // The agent is stopping: L2 announcements go silent and hand their Leases back, then `done`.
  void stopAnnouncing(std::function<void()> done);

  const Config& config() const { return config_; }
  std::string socketPath() const { return config_.runDir + "/agent.sock"; }

 private:
  explicit Agent(boost::asio::io_context& io) : io_(io), reconcileTimer_(io), trimTimer_(io), nodesTimer_(io) {}
  void trimStep(const boost::system::error_code& ec);

  enum class StoreState { Ok, Missing, Unreadable };
  struct Applied {
    size_t changed = 0;
    bool created = false;
  };
  Result<Applied> applyChange(lb::Change change);
  // Loads the local store into the model; on success the local source is synced.
  void loadLocal();
  // The services that validate on their own and claim no frontend an earlier one claims; the
  // others' reasons go to `rejected`.
  std::vector<lb::Service> validOnes(std::vector<lb::Service> services, std::vector<std::string>& rejected) const;
  void markSynced(const std::string& source);
  // Applies a change of the Kubernetes source: not persisted (the API server has it); a change
  // the model refuses as a whole is applied service by service, the refused ones reported.
  void applyKubernetes(lb::Change change);
  // Programs (or removes) HostPort services without the service store: endpoints.json keeps them.
  Status applyHostPorts(lb::Change change);
  void restoreHostPorts();
  bool synced() const;
  // Runs a whole-map reconcile; `drift` says whether differences count as drift (not at restore).
  Result<lb::Reconciler::ReconcileReport> runReconcile(const char* why, bool drift);
  void scheduleReconcile();
  // Reads the nodes file of the config directory; applies it when it changed. An unreadable or
  // invalid file keeps the last good list (status says why).
  void reloadNodes();
  void scheduleNodesPoll();
  pb::StateStatus stateStatus() const;
  // What `agentctl state accept` would take: the best source that loads, split into the services
  // that validate and the reasons for those that do not.
  struct AcceptPlan {
    lb::ServiceStore::Source source{};
    std::vector<lb::Service> keep;
    std::vector<std::string> dropped;
  };
  Result<AcceptPlan> acceptPlan() const;

  boost::asio::io_context& io_;
  Config config_;
  std::optional<InstanceLock> runLock_, pinLock_;
  std::unique_ptr<datapath::Datapath> datapath_;
  std::optional<ct::GcLoop> ctGc_;  // conntrack GC on the agent's loop
  std::unique_ptr<lb::Reconciler> lb_;
  std::unique_ptr<lb::ServiceStore> store_;
  std::vector<NodeEntry> nodes_;
  std::string nodesText_;   // the nodes file as last applied
  std::string nodesError_;  // why the current file is not applied
  std::unique_ptr<endpoint::PodNetwork> pods_;
  std::unique_ptr<k8s::ServiceWatcher> k8s_;  // with --k8s-api-server / --k8s-kubeconfig-path
  k8s::RefusedServices k8sRejected_;  // model names the model refused, why, and when to retry
  boost::asio::steady_timer k8sRetryTimer_{io_};
  // Tries the refused Kubernetes service ports again: those due, or (all) every one now.
  void retryRefusedK8s(bool all);
  void scheduleK8sRetry();
  std::unique_ptr<k8s::CiliumNodeSync> ciliumNodes_;  // ipam=cluster-pool: the node list from CiliumNodes
  void applyClusterNodes(const k8s::ClusterNodes& cn);
  std::unique_ptr<l2::Controller> l2_;  // enable-l2-announcements
  std::unique_ptr<flows::Flows> flows_;  // null with enable-hubble=false
  size_t flowServiceCount_ = SIZE_MAX;
  bool flowNamesPending_ = false, flowPodsPending_ = false;
  uint64_t flowNameRebuilds_ = 0;
  Status startFlows();          // agent_flows.cpp
  void publishFlowServices();   // services changed: rebuild flows' names, once, soon
  void publishFlowPods();       // pod endpoints changed: rebuild only the pod names, once, soon
  void rebuildFlowNames();      // ...now (services and pods)
  void setFlowPods();           // the pods by address and by netns cookie, from the endpoints
  // Netns cookies of the endpoints' namespaces by path (0: none, or the host's), each found once:
  // a pod's namespace keeps its cookie for its life. Entries of gone endpoints are dropped.
  std::unordered_map<std::string, uint64_t> flowNetnsCookies_;
  uint64_t hostNetnsCookie_ = 0;
  // A committed change's services, named in flows by what changed only: `before` are the IDs
  // (flowIdsOf) of the versions it replaced or deleted, `now` its new versions.
  std::vector<uint16_t> flowIdsOf(const std::vector<lb::Service>& services) const;
  void renameFlowServices(const std::vector<uint16_t>& before, const std::vector<lb::Service>& now);
  void publishFlowPeers();      // the node list changed: the Hubble peers (peer.Peer/Notify)
  std::string hubblePort() const;  // ":4244": the port of --hubble-listen-address
  // Metrics (agent_metrics.cpp): the Prometheus endpoint, reconcile durations.
  std::unique_ptr<metrics::HttpServer> metricsServer_;  // null with prometheus-serve-addr=""
  metrics::ReconcileDurations reconcileDurations_;
  lb::Reconciler::Observer reconcileObserver();
  std::function<void(std::chrono::nanoseconds, bool)> gcObserver();
  Status startMetrics();
  std::string metricsText() const;
  void observabilityStatus(pb::StatusResponse& out, std::vector<std::string>& problems) const;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  size_t adoptedFrontends_ = 0;
  size_t restoredServices_ = 0;  // loaded from the store at start

  StoreState storeState_ = StoreState::Ok;
  std::string storeReason_;
  std::map<std::string, bool> sources_;  // source -> synced

  uint64_t reconcileRuns_ = 0;
  uint64_t repairedTotal_ = 0;
  std::optional<std::chrono::steady_clock::time_point> lastReconcileAt_;
  lb::Reconciler::ReconcileReport lastReconcile_;
  bool lastReconcileDrift_ = false;  // the last run repaired drift (not a restore's pruning)

  boost::asio::steady_timer reconcileTimer_;
  boost::asio::steady_timer trimTimer_;
  boost::asio::steady_timer nodesTimer_;
  size_t trimRound_ = 0;  // follow-up trims done since the last scheduleTrim()
};

}  // namespace np
