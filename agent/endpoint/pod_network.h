// The node's pod network as the agent API sees it: pod endpoints for the CNI plugin (through
// endpoint::Manager), the direct routes to the other nodes' pod CIDRs, and the CNI config file
// that tells the runtime the network is there.
//
// The conflist (<cni-conf-dir>/05-nodepath.conflist) is written, atomically, only once the
// agent serves its API and can serve an ADD (it has a pod CIDR and its router device); it is
// removed again when that stops being true. Only a file this agent wrote is ever removed
// (`agentctl cleanup` removes it for good).
//
// Single-threaded: the agent's io_context.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent.pb.h"
#include "core/config.h"
#include "core/nodes.h"
#include "endpoint/datapath.h"
#include "endpoint/manager.h"
#include "routing/netlink.h"
#include "routing/node_routes.h"

namespace np::endpoint {

namespace pb = ::nodepath::agent::v1;

inline constexpr const char* kConfListName = "05-nodepath.conflist";
inline constexpr const char* kNetworkName = "nodepath";
inline constexpr const char* kPluginName = "nodepath-cni";

// The conflist the agent writes, for `socketPath`.
std::string confList(const std::string& socketPath);

class PodNetwork {
 public:
  // `device`: the direct-routing device (node routes go through it).
  static Result<std::unique_ptr<PodNetwork>> start(const Config& config, const std::string& device);

  // The node list changed (or is read the first time): this node's pod CIDR, the node routes.
  // `missing`: why this node has no entry (cluster mode: the CiliumNode has no pod CIDR yet).
  void setNodes(const std::vector<NodeEntry>& nodes, const std::string& missing = {});
  // The datapath that programs endpoints (lxc.bpf.c). Adopts every recorded endpoint at once (a
  // restarted agent re-attaches the new program) and removes map entries of pods that are gone.
  // Until it is set, ADD is refused (the pod would have no datapath).
  void setDatapath(EndpointDatapath* dp);
  // The API is served: from now on the conflist may be written.
  void setApiReady();
  // Retries what can recover on its own (router device, a conflist removed by hand).
  void tick();

  Result<pb::CniAddResponse> add(const pb::CniAddRequest& req);
  Status del(const pb::CniDelRequest& req);
  Result<pb::CniCheckResponse> check(const pb::CniCheckRequest& req);
  pb::CniGcResponse gc(const pb::CniGcRequest& req);
  pb::CniStatusResponse cniStatus() const;
  pb::ListEndpointsResponse listEndpoints() const;
  // The endpoint of an attachment (nullptr: none); every endpoint.
  const Endpoint* find(const std::string& containerId, const std::string& ifname) const;
  const std::vector<Endpoint>& endpoints() const { return endpoints_->endpoints(); }

  void fillStatus(pb::StatusResponse& out, std::vector<std::string>& problems) const;

 private:
  PodNetwork() = default;
  void updateConf();
  void syncRoutes();

  Config config_;
  std::string device_;
  EndpointDatapath* dp_ = nullptr;
  std::string dpError_;  // why adopting an endpoint failed
  std::unique_ptr<routing::Netlink> nl_;
  std::unique_ptr<Manager> endpoints_;
  std::vector<NodeEntry> nodes_;
  std::vector<routing::NodeRouteState> routes_;
  std::string routesError_;
  bool apiReady_ = false;
  bool confWritten_ = false;
  std::string confError_;
};

pb::Endpoint toProto(const Endpoint& e, Ipv4 router);

}  // namespace np::endpoint
