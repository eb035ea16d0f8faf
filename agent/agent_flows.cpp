// The agent's side of the flows subsystem (agent/flows/): started after the datapath (it reads
// the pinned event ring buffer), and told which service each rev-NAT ID names and which pod each
// address is, whenever services or endpoints change.
#include "agent.h"

#include <boost/asio/post.hpp>
#include <set>

#include "core/log.h"
#include "flows/services.h"
#include "routing/netlink.h"

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

std::vector<uint16_t> Agent::flowIdsOf(const std::vector<lb::Service>& services) const {
  std::vector<uint16_t> out;
  if (!flows_) return out;
  for (const lb::Service& s : services)
    for (uint16_t id : lb_->serviceIds(s)) out.push_back(id);
  return out;
}

void Agent::renameFlowServices(const std::vector<uint16_t>& before, const std::vector<lb::Service>& now) {
  if (!flows_) return;
  // The IDs the change's services have now are named after them; an ID one of them had before and
  // no longer has went with its frontend (IDs live as long as their frontend's map entry).
  std::vector<std::pair<uint16_t, flows::ServiceName>> named;
  std::set<uint16_t> kept;
  for (const lb::Service& s : now) {
    const std::vector<uint16_t> ids = lb_->serviceIds(s);
    if (ids.empty()) continue;
    const flows::ServiceName n = flows::splitServiceName(s.name);
    for (uint16_t id : ids) {
      named.emplace_back(id, n);
      kept.insert(id);
    }
  }
  std::vector<uint16_t> gone;
  for (uint16_t id : before)
    if (!kept.count(id)) gone.push_back(id);
  flows_->updateServices(gone, std::move(named));
}

void Agent::publishFlowPods() {
  // A pod's ADD/DEL changes no service name: not worth the O(services) rebuild of those.
  if (!flows_ || flowPodsPending_) return;
  flowPodsPending_ = true;
  boost::asio::post(io_, [this] {
    flowPodsPending_ = false;
    if (flows_) setFlowPods();
  });
}

void Agent::setFlowPods() {
  const auto& endpoints = pods_->endpoints();
  flows_->setPods(flows::podsByAddress(endpoints));
  if (!hostNetnsCookie_) {
    auto own = routing::netnsCookie("");
    if (own) hostNetnsCookie_ = *own;
    else NP_LOG_WARN("flows", "socket flows name no source pod: %s", own.error().message().c_str());
  }
  if (!hostNetnsCookie_) return;  // no SO_NETNS_COOKIE: the pods' cookies cannot be known either
  std::unordered_map<std::string, uint64_t> cookies;
  for (const auto& e : endpoints) {
    if (e.netns.empty() || cookies.count(e.netns)) continue;
    auto it = flowNetnsCookies_.find(e.netns);
    if (it != flowNetnsCookies_.end()) {
      cookies.emplace(e.netns, it->second);
      continue;
    }
    auto c = routing::netnsCookie(e.netns);
    if (!c) NP_LOG_DEBUG("flows", "netns cookie of %s: %s", e.podName.c_str(), c.error().message().c_str());
    // A namespace path that is the host's (or gone) names no pod.
    cookies.emplace(e.netns, c && *c != hostNetnsCookie_ ? *c : 0);
  }
  flowNetnsCookies_.swap(cookies);
  flows_->setPodsByNetns(flows::podsByNetns(endpoints, [this](const std::string& ns) {
    auto it = flowNetnsCookies_.find(ns);
    return it == flowNetnsCookies_.end() ? uint64_t{0} : it->second;
  }));
}

void Agent::rebuildFlowNames() {
  if (!flows_) return;
  auto names = flows::serviceNames(lb_->services(), [this](const lb::Service& s) { return lb_->serviceIds(s); });
  if (names.size() != flowServiceCount_) {
    NP_LOG_DEBUG("flows", "%zu service IDs named (of %zu reverse-NAT entries)", names.size(),
                 lb_->applied().revNat.size());
    flowServiceCount_ = names.size();
  }
  flows_->setServices(std::move(names));
  setFlowPods();
  ++flowNameRebuilds_;
}

}  // namespace np
