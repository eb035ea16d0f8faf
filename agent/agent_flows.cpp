// The agent's side of the flows subsystem (agent/flows/): started after the datapath (it reads
// the pinned event ring buffer), and told which service each rev-NAT ID names and which pod each
// address is, whenever services or endpoints change.
#include "agent.h"

#include <boost/asio/post.hpp>

#include "core/log.h"
#include "flows/services.h"

#ifndef NP_VERSION
#define NP_VERSION "0.0.0"
#endif

namespace np {

Status Agent::startFlows() {
  flows::FlowsConfig fc;
  fc.pinDir = datapath_->pinDir();
  fc.runDir = config_.runDir;
  fc.listenAddress = config_.hubbleListenAddress;
  fc.nodeName = config_.nodeName;
  fc.nodeAddress = datapath_->nodeIp().str() + hubblePort();
  fc.version = std::string("nodepath ") + NP_VERSION;
  fc.capacity = config_.hubbleEventBufferCapacity;
  auto f = flows::Flows::start(fc);
  if (!f) return f.error();
  flows_ = std::move(*f);
  rebuildFlowNames();
  publishFlowPeers();
  return {};
}

// Every node's Hubble API listens where this one does (one DaemonSet, one flag): a peer is its
// node IP with this node's listen port, as Cilium's peer service announces them.
std::string Agent::hubblePort() const {
  if (auto colon = config_.hubbleListenAddress.rfind(':'); colon != std::string::npos)
    return config_.hubbleListenAddress.substr(colon);
  return ":4244";
}

void Agent::publishFlowPeers() {
  if (!flows_) return;
  std::vector<flows::Peer> peers;
  for (const NodeEntry& n : nodes_) peers.push_back({n.name, n.ip.str() + hubblePort()});
  flows_->setPeers(std::move(peers));
}

// Services or endpoints changed: the names are rebuilt once, after the handler that changed them
// returns (a burst of changes in one turn of the loop costs one rebuild; nothing runs while
// nothing changes, however many services there are).
void Agent::publishFlowServices() {
  if (!flows_ || flowNamesPending_) return;
  flowNamesPending_ = true;
  boost::asio::post(io_, [this] {
    flowNamesPending_ = false;
    rebuildFlowNames();
  });
}

void Agent::rebuildFlowNames() {
  if (!flows_) return;
  auto names = flows::serviceNames(lb_->services(), lb_->applied().revNat);
  if (names.size() != flowServiceCount_) {
    NP_LOG_DEBUG("flows", "%zu service IDs named (of %zu reverse-NAT entries)", names.size(),
                 lb_->applied().revNat.size());
    flowServiceCount_ = names.size();
  }
  flows_->setServices(std::move(names));
  flows_->setPods(flows::podsByAddress(pods_->endpoints()));
  ++flowNameRebuilds_;
}

}  // namespace np
