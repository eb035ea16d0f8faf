#include "agent.h"

#include <arpa/inet.h>
#include <malloc.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "api/convert.h"
#include "core/fs.h"
#include "core/log.h"
#include "endpoint/hostport.h"
#include "routing/notrack.h"
#include "np_drop.h"

#ifndef NP_VERSION
#define NP_VERSION "0.0.0"
#endif

namespace np {
namespace {

constexpr const char* kLocal = "local";
constexpr const char* kKubernetes = k8s::kSourceKubernetes;

std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string reportLine(const lb::Reconciler::ReconcileReport& r) {
  std::string s = std::to_string(r.missing) + " missing, " + std::to_string(r.drifted) + " drifted, " +
                  std::to_string(r.orphans) + " orphaned";
  if (r.staleKept) s += "; " + plural(r.staleKept, "stale frontend kept", "stale frontends kept");
  return s;
}

pb::ReconcileReport toProto(const lb::Reconciler::ReconcileReport& r) {
  pb::ReconcileReport out;
  out.set_services(static_cast<uint32_t>(r.services));
  out.set_entries(static_cast<uint32_t>(r.entries));
  out.set_missing(static_cast<uint32_t>(r.missing));
  out.set_drifted(static_cast<uint32_t>(r.drifted));
  out.set_orphans(static_cast<uint32_t>(r.orphans));
  out.set_stale_kept(static_cast<uint32_t>(r.staleKept));
  out.set_took_us(static_cast<uint64_t>(r.took.count()));
  if (r.error) out.set_error(r.error->message());
  return out;
}

}  // namespace

Result<std::unique_ptr<Agent>> Agent::start(Config config, boost::asio::io_context& io) {
  std::unique_ptr<Agent> a(new Agent(io));
  a->config_ = std::move(config);
  const Config& c = a->config_;

  // The locks come before anything that could disturb a running agent (its socket, its maps).
  NP_TRY(fs::makeDirs(c.runDir + "/state", 0700));
  auto runLock = InstanceLock::acquire(c.runDir + "/agent.lock");
  if (!runLock) return runLock.error();
  a->runLock_.emplace(std::move(*runLock));
  NP_TRY(fs::ensureBpffs(c.bpfRoot));
  NP_TRY(fs::makeDirs(c.bpfRoot + "/nodepath", 0700));
  auto pinLock = InstanceLock::acquire(c.bpfRoot + "/nodepath");
  if (!pinLock) return pinLock.error();
  a->pinLock_.emplace(std::move(*pinLock));
  // A metrics address that cannot be served fails the start before the node is touched.
  NP_TRY(a->startMetrics());

  auto dp = datapath::Datapath::start(c);
  if (!dp) return dp.error();
  a->datapath_ = std::move(*dp);
  NP_LOG_INFO("datapath", "programs loaded, maps under %s (%s), node IP %s", a->datapath_->pinDir().c_str(),
              a->datapath_->adoptedPins() ? "adopted pinned maps" : "new maps",
              a->datapath_->nodeIp().str().c_str());

  if (!c.clusterPool() && !c.configDir.empty() && fs::exists(c.configDir + "/nodes")) {
    auto text = fs::readFile(c.configDir + "/nodes");
    if (!text) return text.error();
    auto nodes = parseNodes(*text, c.nodeName);
    if (!nodes) return Error{0, c.configDir + "/nodes: " + nodes.error().context, nodes.error().detail};
    a->nodes_ = std::move(*nodes);
    a->nodesText_ = std::move(*text);
    NP_TRY(a->datapath_->setNodes(a->nodes_));
  }
  std::string direct;
  for (const auto& d : a->datapath_->devices())
    if (d.directRouting) direct = d.name;
  auto pods = endpoint::PodNetwork::start(c, direct);
  if (!pods) return pods.error();
  a->pods_ = std::move(*pods);
  a->pods_->setNodes(a->nodes_, c.clusterPool() ? "waiting for the CiliumNodes to be listed" : "");
  if (c.installNoConntrackRules) {
    NP_TRY(routing::installNoTrack(c.nativeRoutingCidr));
    NP_LOG_INFO("routing", "raw-table NOTRACK rules for %s installed (%s, %s)", c.nativeRoutingCidr.str().c_str(),
                routing::kNoTrackPreChain, routing::kNoTrackOutputChain);
  } else if (auto removed = routing::removeNoTrack(); removed && *removed > 0) {
    // The flag was turned off since the rules were installed: they go, as the flag says.
    NP_LOG_INFO("routing", "raw-table NOTRACK rules removed (install-no-conntrack-iptables-rules is off)");
  }
  a->pods_->setDatapath(&a->datapath_->lxcEndpoints());

  lb::NodeContext node;
  for (const auto& d : a->datapath_->devices()) node.nodeIps.push_back(d.ipv4);
  for (const NodeEntry& n : a->nodes_) node.clusterNodeIps.push_back(n.ip);
  node.nodePortMin = c.nodePortMin;
  node.nodePortMax = c.nodePortMax;
  node.serviceCidr = c.serviceCidr;
  node.podCidr = c.podCidr;
  node.allowUnsafeFrontends = c.lbAllowUnsafeFrontends;
  node.nodeName = c.nodeName;
  for (const NodeEntry& n : a->nodes_)
    if (n.local) node.localPodCidr = n.podCidr;
  node.maglev = c.lbAlgorithm == LbAlgorithm::Maglev;
  node.maglevTableSize = c.maglevTableSize;
  a->lb_ = std::make_unique<lb::Reconciler>(a->datapath_->lbMaps(), node);
  a->lb_->setObserver(a->reconcileObserver());
  auto adopted = a->lb_->adopt();
  if (!adopted) return adopted.error();
  a->adoptedFrontends_ = *adopted;
  a->store_ = std::make_unique<lb::ServiceStore>(c.runDir + "/state");

  a->sources_[kLocal] = false;
  if (c.k8sEnabled()) {
    // Kubernetes is a source of desired state: the restore barrier waits for its first full sync.
    // An API server that is down leaves the datapath as pinned (status says why).
    a->sources_[kKubernetes] = false;
    Agent* self = a.get();
    auto w = k8s::ServiceWatcher::start(
        io, c, [self](lb::Change ch) { self->applyKubernetes(std::move(ch)); },
        [self] { self->markSynced(kKubernetes); });
    if (!w) return Error{w.error().err, "kubernetes: " + w.error().context, w.error().detail};
    a->k8s_ = std::move(*w);
  }
  if (c.clusterPool()) {
    // Cluster mode: the CiliumNodes replace the nodes file (direct routes, this node's pod CIDR).
    Agent* self = a.get();
    auto cn = k8s::CiliumNodeSync::start(io, c, a->datapath_->nodeIp(),
                                         [self](const k8s::ClusterNodes& n) { self->applyClusterNodes(n); });
    if (!cn) return Error{cn.error().err, "kubernetes: " + cn.error().context, cn.error().detail};
    a->ciliumNodes_ = std::move(*cn);
  }
  if (c.enableL2Announcements) {
    if (!a->k8s_) return error("--enable-l2-announcements", "needs the Kubernetes API (--k8s-kubeconfig-path or --k8s-api-server)");
    auto l2 = l2::Controller::start(io, c);
    if (!l2) return Error{l2.error().err, "L2 announcements: " + l2.error().context, l2.error().detail};
    a->l2_ = std::move(*l2);
    Agent* self = a.get();
    a->k8s_->onServicesChanged([self] { self->l2_->setServices(self->k8s_->cache().allServices()); });
  }
  a->sources_[lb::kHostPortSource] = false;
  a->loadLocal();
  a->restoreHostPorts();
  a->scheduleReconcile();
  a->ctGc_.emplace(io, a->datapath_->conntrackGc(), c.ctGcInterval);
  a->ctGc_->onRun(a->gcObserver());
  a->ctGc_->start();
  a->scheduleNodesPoll();
  if (c.enableHubble) NP_TRY(a->startFlows());
  return a;
}

void Agent::applyClusterNodes(const k8s::ClusterNodes& cn) {
  // Peers without a pod CIDR yet are not routed to but are nodes: in the node map, and their
  // addresses are node addresses for the frontend checks.
  if (Status st = datapath_->setNodes(cn.nodeMapEntries()); !st) {
    nodesError_ = "apply the CiliumNodes' node list: " + st.error().message();
    NP_LOG_ERROR("nodes", "%s", nodesError_.c_str());
    return;
  }
  NP_LOG_INFO("nodes", "node list from CiliumNodes: %zu nodes%s%s", cn.nodes.size(),
              cn.localMissing.empty() ? "" : "; ", cn.localMissing.c_str());
  nodesError_.clear();
  nodes_ = cn.nodes;
  lb_->setClusterNodeIps(cn.nodeIps());
  pods_->setNodes(nodes_, cn.localMissing);
  publishFlowPeers();
}

void Agent::reloadNodes() {
  if (config_.configDir.empty() || ciliumNodes_) return;
  const std::string path = config_.configDir + "/nodes";
  std::string text;
  if (fs::exists(path)) {
    auto t = fs::readFile(path);
    if (!t) {
      nodesError_ = t.error().message();
      return;
    }
    text = std::move(*t);
  }
  if (text == nodesText_) {
    nodesError_.clear();
    return;
  }
  auto nodes = parseNodes(text, config_.nodeName);
  if (!nodes) {
    const std::string why = path + ": " + nodes.error().message() + "; keeping the previous node list";
    if (why != nodesError_) NP_LOG_ERROR("nodes", "%s", why.c_str());
    nodesError_ = why;
    return;
  }
  if (Status st = datapath_->setNodes(*nodes); !st) {
    nodesError_ = "apply " + path + ": " + st.error().message();
    return;
  }
  NP_LOG_INFO("nodes", "node list changed: %zu nodes", nodes->size());
  nodes_ = std::move(*nodes);
  nodesText_ = std::move(text);
  nodesError_.clear();
  std::vector<Ipv4> ips;
  for (const NodeEntry& n : nodes_) ips.push_back(n.ip);
  lb_->setClusterNodeIps(std::move(ips));
  pods_->setNodes(nodes_);
  publishFlowPeers();
}

void Agent::scheduleNodesPoll() {
  // The nodes file is a ConfigMap key in a deployment: watched by polling, which also sees the
  // kubelet's symlink swaps.
  nodesTimer_.expires_after(std::chrono::seconds(1));
  nodesTimer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    reloadNodes();
    pods_->tick();
    scheduleNodesPoll();
  });
}

std::vector<lb::Service> Agent::validOnes(std::vector<lb::Service> services, std::vector<std::string>& rejected) const {
  // Each service on its own, and no frontend claimed twice (the first keeps it).
  std::vector<lb::Service> keep;
  lb::FrontendOwners owners;
  for (lb::Service& s : services) {
    lb::normalize(s);
    Status st = lb::validate(s, lb_->node());
    if (st) st = lb::checkConflicts(s, lb_->node(), owners);
    if (!st) {
      rejected.push_back(st.error().message());
      continue;
    }
    lb::addOwner(owners, s, lb_->node());
    keep.push_back(std::move(s));
  }
  return keep;
}

void Agent::loadLocal() {
  auto loaded = store_->load();
  if (!loaded) {
    if (loaded.error().err == ENOENT && !store_->anyFiles() && lb_->frontendCount() == 0) {
      // A new node: no state file of any kind and nothing in the maps, so nothing can be lost.
      if (Status st = store_->compact(lb_->services()); !st) {
        storeState_ = StoreState::Unreadable;
        storeReason_ = "cannot create the state files: " + st.error().message();
        NP_LOG_ERROR("lb", "%s", storeReason_.c_str());
        return;
      }
      storeState_ = StoreState::Ok;
      storeReason_.clear();
      markSynced(kLocal);
      return;
    }
    if (loaded.error().err == ENOENT) {
      storeState_ = StoreState::Missing;
      storeReason_ = store_->snapshotPath() + " is missing while " +
                     (lb_->frontendCount() ? "the pinned maps hold " + plural(lb_->frontendCount(), "frontend", "frontends")
                                           : std::string("its journal or last-good copy is still there"));
    } else {
      storeState_ = StoreState::Unreadable;
      storeReason_ = loaded.error().message();
    }
    NP_LOG_ERROR("lb", "stored services not loaded: %s; the datapath keeps what it has, changes are refused until "
                       "`agentctl state` resolves it", storeReason_.c_str());
    return;
  }
  if (loaded->droppedTailBytes)
    NP_LOG_WARN("lb", "dropped an incomplete last journal record (%zu bytes): a change that was being saved when the "
                      "agent stopped, never acknowledged", loaded->droppedTailBytes);
  const size_t stored = loaded->services.size();
  // Services that no longer validate (the flags changed: service CIDR, node addresses) do not
  // take the others down: those are applied, these are reported and kept on disk.
  std::vector<std::string> rejected;
  std::vector<lb::Service> keep = validOnes(std::move(loaded->services), rejected);
  const size_t n = keep.size();
  Status st;
  auto p = lb_->prepare(lb::Change{std::move(keep), {}});
  if (!p) st = p.error();
  else if (Status c = lb_->commit(*p); !c) st = c;
  if (!st) {
    storeState_ = StoreState::Unreadable;
    storeReason_ = "the stored services could not be applied: " + st.error().message();
    NP_LOG_ERROR("lb", "%s; the datapath keeps what it has, changes are refused until `agentctl state` resolves it",
                 storeReason_.c_str());
    return;
  }
  restoredServices_ = n;
  NP_LOG_INFO("lb", "restored %zu of %zu stored services (%zu journal records) into %zu adopted frontends; %zu map writes",
              n, stored, loaded->journalRecords, adoptedFrontends_, p->ops.size());
  if (!rejected.empty()) {
    storeState_ = StoreState::Unreadable;
    storeReason_ = plural(rejected.size(), "stored service does", "stored services do") +
                   " not validate with this agent's settings (" + rejected.front() + (rejected.size() > 1 ? "; ..." : "") +
                   "); the other " + std::to_string(n) + " are applied";
    NP_LOG_ERROR("lb", "%s; changes are refused until `agentctl state` resolves it", storeReason_.c_str());
    return;
  }
  storeState_ = StoreState::Ok;
  storeReason_.clear();
  if (store_->compactionDue()) (void)store_->compact(lb_->services());
  markSynced(kLocal);
}

Status Agent::applyHostPorts(lb::Change change) {
  auto p = lb_->prepare(std::move(change));
  if (!p) return p.error();
  if (p->empty()) return {};
  const bool renamed = p->frontendsChanged();
  const std::vector<uint16_t> before = renamed ? flowIdsOf(p->previous) : std::vector<uint16_t>{};
  Status st = lb_->commit(*p);
  if (st) {
    if (renamed) renameFlowServices(before, p->upserts);  // flows of a new HostPort are named from their first packet
    // A HostPort that went may have held what a refused Kubernetes service wants.
    if (!k8sRejected_.empty()) boost::asio::post(io_, [this] { retryRefusedK8s(true); });
  }
  return st;
}

void Agent::restoreHostPorts() {
  std::vector<lb::Service> all;
  for (const endpoint::Endpoint& e : pods_->endpoints())
    for (lb::Service& s : endpoint::hostPortServices(e)) all.push_back(std::move(s));
  std::vector<std::string> rejected;
  std::vector<lb::Service> keep = validOnes(std::move(all), rejected);
  for (const std::string& why : rejected) NP_LOG_ERROR("cni", "a stored HostPort is not restored: %s", why.c_str());
  const size_t n = keep.size();
  lb::Change whole{keep, {}};
  if (Status st = applyHostPorts(std::move(whole)); st) {
    if (n) NP_LOG_INFO("cni", "restored %zu HostPorts from %s", n, "the endpoint records");
  } else {
    // One the model refuses (a frontend a local or Kubernetes service holds now, ...) costs only
    // itself: the others are restored one by one.
    size_t restored = 0;
    for (lb::Service& s : keep) {
      if (Status one = applyHostPorts(lb::Change{{std::move(s)}, {}}); !one)
        NP_LOG_ERROR("cni", "a stored HostPort is not restored: %s", one.error().message().c_str());
      else
        ++restored;
    }
    NP_LOG_INFO("cni", "restored %zu of %zu HostPorts from %s", restored, n, "the endpoint records");
  }
  markSynced(lb::kHostPortSource);
}

Result<pb::CniAddResponse> Agent::cniAdd(const pb::CniAddRequest& req) {
  auto r = pods_->add(req);
  if (!r) return r;
  publishFlowPods();  // the pod's flows carry its name
  const endpoint::Endpoint* e = pods_->find(req.container_id(), req.ifname());
  if (!e || e->portMappings.empty()) return r;
  std::vector<lb::Service> services = endpoint::hostPortServices(*e);
  Status st = endpoint::checkHostPorts(services, lb_->node());
  for (const lb::Service& s : services) {
    if (!st) break;
    if (const endpoint::Endpoint* o = endpoint::hostPortHolder(pods_->endpoints(), s.name, *e))
      st = error("HostPort " + s.name, "is held by sandbox " + o->containerId + " of the same pod; it is released when that sandbox is deleted (CNI DEL)");
  }
  if (st) st = applyHostPorts(lb::Change{std::move(services), {}});
  if (!st) {
    // All or nothing: the pod this ADD made goes again (one that existed before stays).
    if (!r->existed()) {
      pb::CniDelRequest del;
      del.set_container_id(req.container_id());
      del.set_ifname(req.ifname());
      del.set_netns(req.netns());
      if (Status d = pods_->del(del); !d)
        NP_LOG_ERROR("cni", "undo the ADD of %s/%s: %s", req.container_id().c_str(), req.ifname().c_str(),
                     d.error().message().c_str());
    }
    NP_LOG_WARN("cni", "ADD %s/%s refused: %s", req.container_id().c_str(), req.ifname().c_str(),
                st.error().message().c_str());
    // A conflict is the request's fault (CNI code 7), never "the interface exists".
    return Error{st.error().err == EEXIST ? 0 : st.error().err, "HostPorts of the pod", st.error().message()};
  }
  NP_LOG_INFO("cni", "%zu HostPorts of %s/%s programmed", e->portMappings.size(), req.container_id().c_str(),
              req.ifname().c_str());
  return r;
}

Status Agent::cniDel(const pb::CniDelRequest& req) {
  std::vector<std::string> names;
  const endpoint::Endpoint* e = pods_->find(req.container_id(), req.ifname());
  if (e) names = endpoint::hostPortNames(*e);
  std::vector<std::string> gone;
  for (const std::string& n : names)  // not one another sandbox of the pod holds (hostPortHolder)
    if (lb_->find(n) && !endpoint::hostPortHolder(pods_->endpoints(), n, *e)) gone.push_back(n);
  if (!gone.empty()) NP_TRY(applyHostPorts(lb::Change{{}, std::move(gone)}));
  publishFlowPods();
  return pods_->del(req);
}

pb::CniGcResponse Agent::cniGc(const pb::CniGcRequest& req) {
  pb::CniGcResponse out = pods_->gc(req);
  publishFlowPods();
  std::vector<std::string> gone;
  for (const auto& [name, s] : lb_->services()) {
    if (s.source != lb::kHostPortSource) continue;
    bool held = false;
    for (const endpoint::Endpoint& e : pods_->endpoints())
      for (const std::string& n : endpoint::hostPortNames(e)) held |= n == name;
    if (!held) gone.push_back(name);
  }
  if (!gone.empty())
    if (Status st = applyHostPorts(lb::Change{{}, std::move(gone)}); !st)
      NP_LOG_ERROR("cni", "GC: removing released HostPorts failed: %s", st.error().message().c_str());
  return out;
}

void Agent::markSynced(const std::string& source) {
  sources_[source] = true;
  if (!synced() || lb_->pruneAllowed()) return;
  lb_->allowPrune();
  // The restore barrier lifts: what no source claims is gone for good.
  auto r = runReconcile("restore", false);
  if (r && r->orphans)
    NP_LOG_INFO("lb", "every source has synced: removed %zu map entries no service claims", r->orphans);
}

bool Agent::synced() const {
  return std::all_of(sources_.begin(), sources_.end(), [](const auto& kv) { return kv.second; });
}

Result<lb::Reconciler::ReconcileReport> Agent::runReconcile(const char* why, bool drift) {
  auto r = lb_->reconcileAll();
  scheduleTrim();  // the dump and the expansion of every service were freed just now
  publishFlowServices();  // a repair may have changed the reverse-NAT entries
  ++reconcileRuns_;
  lastReconcileAt_ = std::chrono::steady_clock::now();
  if (!r) {
    lastReconcile_ = {};
    lastReconcile_.error = r.error();
    lastReconcileDrift_ = false;
    NP_LOG_ERROR("lb", "reconcile (%s) failed: %s", why, r.error().message().c_str());
    return r.error();
  }
  lastReconcile_ = *r;
  repairedTotal_ += r->repaired();
  lastReconcileDrift_ = drift && r->repaired() > 0;
  if (r->error)
    NP_LOG_ERROR("lb", "reconcile (%s): %s; a repair failed: %s", why, reportLine(*r).c_str(),
                 r->error->message().c_str());
  else if (lastReconcileDrift_)
    NP_LOG_WARN("lb", "reconcile (%s) found drift and repaired it: %s (%zu services, %zu entries, %lld us)", why,
                reportLine(*r).c_str(), r->services, r->entries, static_cast<long long>(r->took.count()));
  else
    NP_LOG_DEBUG("lb", "reconcile (%s): %s (%zu services, %zu entries, %lld us)", why, reportLine(*r).c_str(),
                 r->services, r->entries, static_cast<long long>(r->took.count()));
  return r;
}

void Agent::scheduleReconcile() {
  if (config_.lbReconcileIntervalSec == 0) return;
  reconcileTimer_.expires_after(std::chrono::seconds(config_.lbReconcileIntervalSec));
  reconcileTimer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    (void)runReconcile("interval", true);
    scheduleReconcile();
  });
}

void Agent::scheduleTrim() {
  // Every call restarts the sequence (a pending wait is cancelled): the memory of the request
  // that asked is freed after this call, by gRPC on its own thread once the handler returned,
  // which on a busy machine can take a while. So trim 200 ms, 1.2 s and 4.2 s after the last ask.
  trimRound_ = 0;
  trimTimer_.expires_after(std::chrono::milliseconds(200));
  trimTimer_.async_wait([this](const boost::system::error_code& ec) { trimStep(ec); });
}

void Agent::trimStep(const boost::system::error_code& ec) {
  if (ec) return;  // cancelled by a newer scheduleTrim()
  malloc_trim(0);
  static constexpr std::chrono::milliseconds kNext[] = {std::chrono::milliseconds(1000), std::chrono::milliseconds(3000)};
  if (trimRound_ >= std::size(kNext)) return;
  trimTimer_.expires_after(kNext[trimRound_++]);
  trimTimer_.async_wait([this](const boost::system::error_code& e) { trimStep(e); });
}

void Agent::applyKubernetes(lb::Change change) {
  // Deletes of names the model does not hold (refused earlier) are no-ops; a name a local service
  // holds is the local API's: Kubernetes does not take it over.
  // Refused ports are retried (k8s/refused.h): whatever happens below, the timer follows.
  struct Reschedule {
    Agent* a;
    ~Reschedule() { a->scheduleK8sRetry(); }
  } reschedule{this};
  const auto now = std::chrono::steady_clock::now();
  auto refuse = [&](const std::string& name, const std::string& why) {
    if (k8sRejected_.refuse(name, why, now)) NP_LOG_WARN("k8s", "service %s refused: %s", name.c_str(), why.c_str());
  };
  lb::Change c;
  for (std::string& n : change.deletes) {
    k8sRejected_.forget(n);
    const lb::Service* s = lb_->find(n);
    if (s && s->source == kKubernetes) c.deletes.push_back(std::move(n));
  }
  c.upserts.reserve(change.upserts.size());
  for (lb::Service& s : change.upserts) {
    const lb::Service* cur = lb_->find(s.name);
    if (cur && cur->source != kKubernetes) {
      refuse(s.name, "the name is a " + cur->source + " service's");
      continue;
    }
    c.upserts.push_back(std::move(s));
  }
  std::vector<lb::Service>().swap(change.upserts);  // moved from: give the shells back now
  if (c.upserts.empty() && c.deletes.empty()) return;
  // A deleted Kubernetes service frees its frontends and map space: what was refused for want of
  // them may fit now.
  if (!c.deletes.empty()) k8sRejected_.retryAllNow(now);
  auto one = [this](lb::Change ch) -> Status {
    auto p = lb_->prepare(std::move(ch));
    if (!p) return p.error();
    if (p->empty()) return {};
    // As for the local API: named from the first packet, by what changed only. Not at all when only
    // backends moved (most EndpointSlice updates): every name stays.
    const bool renamed = p->frontendsChanged();
    const std::vector<uint16_t> before = renamed ? flowIdsOf(p->previous) : std::vector<uint16_t>{};
    Status st = lb_->commit(*p);
    if (st && renamed) renameFlowServices(before, p->upserts);
    return st;
  };
  const size_t n = c.upserts.size() + c.deletes.size();
  // The whole change goes in at once and is consumed (no copy: the first sync is every service
  // of the cluster); only its names are kept, for the fallback below.
  std::vector<std::string> names, deletes = c.deletes;
  names.reserve(c.upserts.size());
  for (const lb::Service& s : c.upserts) names.push_back(s.name);
  if (Status st = one(std::move(c)); st) {
    for (const std::string& name : names) k8sRejected_.forget(name);
    NP_LOG_DEBUG("k8s", "applied %zu service changes", n);
    return;
  }
  // Something in it is refused: apply what can be, one by one, so one bad service does not hold
  // back the others. The services again, as the cache holds them (the versions just refused).
  for (std::string& d : deletes) (void)one(lb::Change{{}, {d}});
  const std::set<std::string> wanted(names.begin(), names.end());
  std::set<std::string> keys;
  for (const std::string& name : names) keys.insert(k8s::ServiceCache::serviceKeyOf(name));
  std::vector<lb::Service> again;
  for (const std::string& key : keys)
    for (lb::Service& s : k8s_->cache().modelOf(key))
      if (wanted.count(s.name)) again.push_back(std::move(s));
  for (lb::Service& s : again) {
    const std::string name = s.name;
    if (Status st = one(lb::Change{{std::move(s)}, {}}); !st) {
      refuse(name, st.error().message());
    } else {
      if (k8sRejected_.entries().contains(name)) NP_LOG_INFO("k8s", "service %s applied (refused before)", name.c_str());
      k8sRejected_.forget(name);
    }
  }
}

void Agent::retryRefusedK8s(bool all) {
  if (!k8s_ || k8sRejected_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  if (all) k8sRejected_.retryAllNow(now);
  const std::vector<std::string> names = k8sRejected_.due(now);
  if (names.empty()) return scheduleK8sRetry();
  NP_LOG_DEBUG("k8s", "retrying %zu refused service ports", names.size());
  k8s_->retry(names);  // through applyKubernetes: applied (forgotten) or refused again (later)
  // A name the retry did not hand over (its Kubernetes service did not list it again) waits a
  // step longer rather than spinning.
  for (const std::string& n : names)
    if (auto it = k8sRejected_.entries().find(n); it != k8sRejected_.entries().end() && it->second.due <= now)
      k8sRejected_.refuse(n, it->second.reason, now);
  scheduleK8sRetry();
}

void Agent::scheduleK8sRetry() {
  const auto next = k8sRejected_.nextDue();
  if (!next) {
    k8sRetryTimer_.cancel();
    return;
  }
  k8sRetryTimer_.expires_at(*next);
  k8sRetryTimer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) retryRefusedK8s(false);
  });
}

Result<Agent::Applied> Agent::applyChange(lb::Change change) {
  // The local API does not overwrite or delete what Kubernetes owns.
  for (const lb::Service& s : change.upserts)
    if (const lb::Service* cur = lb_->find(s.name); cur && cur->source == kKubernetes)
      return Error{EPERM, "service " + lb::shownName(s.name), "is owned by Kubernetes; change it through the API server"};
  for (const std::string& n : change.deletes)
    if (const lb::Service* cur = lb_->find(n); cur && cur->source == kKubernetes)
      return Error{EPERM, "service " + lb::shownName(n), "is owned by Kubernetes; change it through the API server"};
  if (storeState_ != StoreState::Ok)
    return Error{ENOTRECOVERABLE, "change services",
                 "the stored state is not loaded (" + storeReason_ +
                     "); changes are refused until it is resolved: see agentctl state show"};
  if (!store_->broken().empty()) {
    // Put the disk right first: a snapshot of the model as it is replaces whatever it holds.
    if (Status c = store_->compact(lb_->services()); !c)
      return Error{c.error().err ? c.error().err : EIO, "persist the change",
                   store_->broken() + "; writing a snapshot failed too (" + c.error().message() +
                       "); nothing was changed"};
    NP_LOG_WARN("lb", "the stored state was rewritten from the model");
  }
  auto p = lb_->prepare(std::move(change));
  if (!p) {
    NP_LOG_WARN("lb", "change refused: %s", p.error().message().c_str());
    return p.error();
  }
  if (p->empty()) return Applied{};

  std::vector<const lb::Service*> ups;
  for (const lb::Service& s : p->upserts) ups.push_back(&s);
  if (Status st = store_->append(ups, p->deletes); !st) {
    lb_->abandon(*p);
    NP_LOG_ERROR("lb", "persist a change: %s; nothing was changed", st.error().message().c_str());
    Error e = st.error();
    return Error{e.err != 0 ? e.err : EIO, "persist the change", e.message() + "; nothing was changed"};
  }
  Applied out{p->upserts.size() + p->deletes.size(), !p->created.empty() && p->created.front()};
  const bool renamed = p->frontendsChanged();
  const std::vector<uint16_t> before = renamed ? flowIdsOf(p->previous) : std::vector<uint16_t>{};
  if (Status st = lb_->commit(*p); !st) {
    // The journal has the change the maps refused: record its undo, so a restart does not retry it.
    std::vector<const lb::Service*> back;
    for (const lb::Service& s : p->previous) back.push_back(&s);
    std::vector<std::string> gone;
    for (size_t i = 0; i < p->upserts.size(); ++i)
      if (p->created[i]) gone.push_back(p->upserts[i].name);
    if (Status u = store_->append(back, gone); !u) {
      // A snapshot of the model as it is puts the disk right as well; until one is written the
      // store refuses changes (the next change tries again first).
      if (Status c = store_->compact(lb_->services()); !c) {
        store_->markBroken("the journal holds a change the maps refused and neither its undo (" +
                           u.error().message() + ") nor a snapshot (" + c.error().message() + ") could be written");
        NP_LOG_ERROR("lb", "%s", store_->broken().c_str());
      }
    }
    NP_LOG_WARN("lb", "change refused by the kernel: %s", st.error().message().c_str());
    return st.error();
  }
  // Flows of a new service are named from their first packet (a change of backends only keeps
  // every name).
  if (renamed) renameFlowServices(before, p->upserts);
  // A local service deleted or moved may have held the name or a frontend a refused Kubernetes
  // service wants: try those again once this change is done.
  if (!k8sRejected_.empty()) boost::asio::post(io_, [this] { retryRefusedK8s(true); });
  if (store_->compactionDue()) {
    const auto t0 = std::chrono::steady_clock::now();
    if (Status st = store_->compact(lb_->services()); !st)
      NP_LOG_WARN("lb", "compact the journal: %s (the journal keeps every change; retried on the next change)",
                  st.error().message().c_str());
    else
      NP_LOG_DEBUG("lb", "journal compacted into a snapshot in %lld ms",
                   static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - t0).count()));
  }
  return out;
}

Result<pb::UpsertServiceResponse> Agent::upsertService(const pb::UpsertServiceRequest& req) {
  auto s = api::serviceFromProto(req.service());
  if (!s) return s.error();
  const std::string name = s->name;
  auto r = applyChange(lb::Change{{std::move(*s)}, {}});
  if (!r) return r.error();
  pb::UpsertServiceResponse out;
  *out.mutable_service() = api::serviceToProto(*lb_->find(name), &lb_->node());
  out.set_created(r->created);
  NP_LOG_INFO("lb", "service %s %s", name.c_str(), r->changed == 0 ? "unchanged" : r->created ? "created" : "updated");
  return out;
}

Result<pb::UpsertServicesResponse> Agent::upsertServices(const pb::UpsertServicesRequest& req) {
  // Every service needs at least one frontend ID: refuse an impossible batch before building it.
  if (static_cast<size_t>(req.services_size()) > NP_SVC_ID_MAX)
    return Error{ENOSPC, "upsert " + std::to_string(req.services_size()) + " services",
                 "a node holds at most 65,535 frontends (service IDs are 16-bit); nothing was changed"};
  std::vector<lb::Service> services;
  services.reserve(static_cast<size_t>(req.services_size()));
  for (const pb::Service& in : req.services()) {
    auto s = api::serviceFromProto(in);
    if (!s) return s.error();
    services.push_back(std::move(*s));
  }
  auto r = applyChange(lb::Change{std::move(services), {}});
  if (!r) return r.error();
  pb::UpsertServicesResponse out;
  out.set_count(static_cast<uint32_t>(req.services_size()));
  NP_LOG_INFO("lb", "%d services upserted in one batch (%zu changed)", req.services_size(), r->changed);
  return out;
}

Status Agent::deleteService(const std::string& name) {
  NP_TRY(lb::validateName(name));
  auto r = applyChange(lb::Change{{}, {name}});
  if (!r) return r.error();
  NP_LOG_INFO("lb", "service %s deleted", name.c_str());
  return {};
}

Result<pb::GetServiceResponse> Agent::getService(const std::string& name) const {
  // HostPort services (hostport/<ns>/<pod>/<proto>/<port>) can be read, not changed, here.
  if (!lb::isHostPortName(name)) NP_TRY(lb::validateName(name));
  const lb::Service* s = lb_->find(name);
  if (!s) return Error{ENOENT, "service " + name, "not found"};
  pb::GetServiceResponse out;
  *out.mutable_service() = api::serviceToProto(*s, &lb_->node());
  return out;
}

std::vector<pb::ListServicesResponse> Agent::listServices(size_t pageSize) const {
  std::vector<pb::ListServicesResponse> pages;
  for (const auto& [name, s] : lb_->services()) {
    if (pages.empty() || static_cast<size_t>(pages.back().services_size()) >= pageSize) pages.emplace_back();
    *pages.back().add_services() = api::serviceToProto(s, &lb_->node());
  }
  return pages;
}

Result<pb::ListLbResponse> Agent::listLb() const {
  // Straight from the kernel: what the datapath uses, not what the agent believes.
  auto img = datapath_->lbMaps().dump();
  if (!img) return img.error();
  std::vector<np_svc_key> masters;
  for (const auto& [k, v] : img->services)
    if (k.slot == 0) masters.push_back(k);
  std::sort(masters.begin(), masters.end(), [](const np_svc_key& a, const np_svc_key& b) {
    return std::tuple(ntohl(a.addr), ntohs(a.dport), a.proto, a.scope) <
           std::tuple(ntohl(b.addr), ntohs(b.dport), b.proto, b.scope);
  });
  pb::ListLbResponse out;
  for (const np_svc_key& k : masters) {
    const np_svc_val& v = img->services.at(k);
    pb::LbEntry* e = out.add_entries();
    e->set_address(Ipv4{k.addr}.str());
    e->set_port(ntohs(k.dport));
    e->set_protocol(k.proto == IPPROTO_UDP ? pb::UDP : pb::TCP);
    e->set_service_id(v.rev_nat_id);
    e->set_count(v.count);
    if (v.flags & NP_SVC_F_NODEPORT) e->add_flags("NodePort");
    if (v.flags & NP_SVC_F_EXTERNAL_IP) e->add_flags("ExternalIP");
    if (v.flags & NP_SVC_F_LOADBALANCER) e->add_flags("LoadBalancer");
    if (!(v.flags & (NP_SVC_F_NODEPORT | NP_SVC_F_EXTERNAL_IP | NP_SVC_F_LOADBALANCER))) e->add_flags("ClusterIP");
    if (k.addr == 0) e->add_flags("wildcard");
    if (!(v.flags & NP_SVC_F_ROUTABLE)) e->add_flags("non-routable");
    if (v.flags & NP_SVC_F_LOCAL_SCOPE) e->add_flags("Local");
    if (k.scope == NP_LB_SCOPE_INT) e->add_flags("InternalScope");
    if (v.flags2 & NP_SVC_F2_INT_LOCAL) e->add_flags("InternalLocal");
    if (v.flags & NP_SVC_F_AFFINITY) e->add_flags("sessionAffinity=" + std::to_string(v.backend_id) + "s");
    if (v.flags2 & NP_SVC_F2_MAGLEV)
      e->add_flags(img->maglev.contains(k) ? "Maglev" : "Maglev (table missing)");
    for (uint32_t slot = 1; slot <= v.total; ++slot) {
      np_svc_key sk = k;
      sk.slot = static_cast<uint16_t>(slot);
      auto it = img->services.find(sk);
      if (it == img->services.end()) continue;
      pb::LbSlot* s = e->add_slots();
      s->set_slot(slot);
      s->set_backend_id(it->second.backend_id);
      if (auto be = img->backends.find(it->second.backend_id); be != img->backends.end()) {
        s->set_address(Ipv4{be->second.addr}.str());
        s->set_port(ntohs(be->second.port));
        s->set_state(be->second.state == NP_BACKEND_TERMINATING ? pb::TERMINATING : pb::ACTIVE);
      }
    }
  }
  return out;
}

pb::ListNodesResponse Agent::listNodes() const {
  pb::ListNodesResponse out;
  for (const NodeEntry& n : nodes_) {
    pb::Node* p = out.add_nodes();
    p->set_name(n.name);
    p->set_ip(n.ip.str());
    p->set_pod_cidr(n.podCidr.str());
    p->set_local(n.local);
  }
  return out;
}

Result<Agent::AcceptPlan> Agent::acceptPlan() const {
  using Src = lb::ServiceStore::Source;
  std::string tried;
  for (Src src : {Src::Snapshot, Src::LastGood, Src::SnapshotPrefix, Src::LastGoodPrefix}) {
    auto l = store_->peek(src);
    if (!l) {
      tried += std::string(tried.empty() ? "" : "; ") + lb::ServiceStore::sourceName(src) + ": " + l.error().message();
      continue;
    }
    AcceptPlan plan;
    plan.source = src;
    plan.keep = validOnes(std::move(l->services), plan.dropped);
    if (l->droppedRecords)
      plan.dropped.push_back(plural(l->droppedRecords, "journal record", "journal records") +
                             " from the first damaged one on");
    return plan;
  }
  return Error{ENOTRECOVERABLE, "state accept", "nothing loads (" + tried + "); agentctl state reset starts empty"};
}

pb::StateStatus Agent::stateStatus() const {
  pb::StateStatus out;
  out.set_state(storeState_ == StoreState::Ok ? "Ok" : storeState_ == StoreState::Missing ? "Missing" : "Unreadable");
  out.set_reason(storeReason_);
  out.set_dir(store_->dir());
  size_t local = 0;
  for (const auto& [name, s] : lb_->services()) local += s.source == kLocal;
  out.set_services(static_cast<uint32_t>(local));
  out.set_seq(store_->seq());
  out.set_journal_bytes(store_->journalBytes());
  out.set_last_good(fs::exists(store_->lastGoodPath()));
  out.set_stale_frontends(static_cast<uint32_t>(lb_->staleFrontends()));
  return out;
}

namespace {

// Conntrack tables from the GC's last run (status never walks the tables itself), and what about
// them is a problem: a main table nearly full or evicting (established flows are being lost), an
// embryonic table evicting (unconfirmed flows pushed out: a flood of them). Both clear once a GC
// run finds the pressure gone.
void conntrackStatus(const ct::Gc& gc, pb::StatusResponse& out, std::vector<std::string>& problems) {
  pb::ConntrackGcStatus* g = out.mutable_conntrack_gc();
  g->set_error(gc.lastError());
  if (!gc.lastError().empty()) problems.push_back("conntrack GC: " + gc.lastError());
  if (auto next = gc.nextRun()) {
    auto in = std::chrono::duration_cast<std::chrono::milliseconds>(*next - std::chrono::steady_clock::now());
    g->set_next_run_in_ms(static_cast<uint64_t>(std::max<int64_t>(in.count(), 0)));
  }
  const auto& run = gc.last();
  if (!run) return;
  g->set_runs(run->number);
  g->set_last_run_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(run->at.time_since_epoch()).count());
  g->set_last_run_age_ms(static_cast<uint64_t>(std::max<int64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now() - run->at).count(), 0)));
  g->set_last_duration_us(static_cast<uint64_t>(run->duration.count()));
  g->set_last_interval_ms(static_cast<uint64_t>(run->covers.count()));
  const std::string last = std::to_string((run->covers.count() + 500) / 1000) + "s";
  for (size_t i = 0; i < run->tables.size(); ++i) {
    const ct::TableStats& t = run->tables[i];
    const bool embryonic = i == NP_CT_TABLE_EMBRYONIC;
    pb::ConntrackTableStatus* s = out.add_conntrack_tables();
    s->set_name(t.name);
    s->set_kind(embryonic ? "embryonic" : "established");
    s->set_max_entries(t.maxEntries);
    s->set_entries(static_cast<uint32_t>(t.entries));
    s->set_evicted_last(t.evicted);
    s->set_evicted_total(t.evictedTotal);
    s->set_gc_deleted_last(t.gcDeleted);
    s->set_created_total(t.createdTotal);
    s->set_promoted_total(t.promotedTotal);
    s->set_snat_entries(static_cast<uint32_t>(t.snatEntries));
    if (embryonic) {
      if (t.evicted > 0)
        problems.push_back("embryonic conntrack table full: " + std::to_string(t.evicted) +
                           " entries of unconfirmed flows evicted in the last " + last + " (SYN flood?)");
    } else if (t.evicted > 0) {
      problems.push_back("conntrack table " + t.name + " full: " + std::to_string(t.evicted) +
                         " entries of established flows evicted in the last " + last + " (" +
                         std::to_string(t.entries) + "/" + std::to_string(t.maxEntries) +
                         "; raise --bpf-ct-global-max)");
    } else if (t.fill() > 0.9) {
      problems.push_back("conntrack table " + t.name + " " + std::to_string(static_cast<int>(t.fill() * 100)) +
                         "% full (" + std::to_string(t.entries) + "/" + std::to_string(t.maxEntries) +
                         "; raise --bpf-ct-global-max)");
    }
  }
}

}  // namespace

void Agent::stopAnnouncing(std::function<void()> done) {
  if (!l2_) {
    done();
    return;
  }
  l2_->stop(std::move(done));
}

pb::StatusResponse Agent::status() const {
  pb::StatusResponse out;
  std::vector<std::string> problems;
  out.set_version(NP_VERSION);
  out.set_node_name(config_.nodeName);
  out.set_uptime_seconds(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count()));
  out.set_kube_proxy_replacement(config_.kubeProxyReplacement ? "True" : "False");
  for (const datapath::DeviceState& d : datapath_->deviceStates()) {
    pb::DeviceStatus* s = out.add_devices();
    s->set_name(d.info.name);
    s->set_ifindex(static_cast<uint32_t>(d.info.ifindex));
    s->set_ipv4(d.info.ipv4.str());
    s->set_mac(formatMac(d.info.mac.data()));
    s->set_direct_routing(d.info.directRouting);
    s->set_tc_ingress(d.ingress);
    s->set_tc_egress(d.egress);
    s->set_tc_link(bpf::tcLinkName(d.tcLink));
    if (!d.ingress || !d.egress) {
      // tcx: ours must be first on the hook; another program ahead of it may keep it from running.
      const std::string why = d.tcLink == bpf::TcLink::Tcx ? "tc program not attached (or not first on the tcx hook)"
                                                            : "tc program not attached";
      s->set_error(why);
      problems.push_back(d.info.name + ": " + why);
    }
    s->set_xdp(d.xdpMode == datapath::XdpMode::Off ? "" : datapath::xdpModeName(d.xdpMode));
    s->set_xdp_fallback(d.xdpFallback);
    s->set_xdp_attached(d.xdpAttached);
    if (d.xdpMode == datapath::XdpMode::Native && !d.xdpHandOff)
      s->set_xdp_limit("new flows and local backends in tc: kernel without bpf_xdp_adjust_meta for XDP");
    if (d.xdpMode == datapath::XdpMode::Native) {
      pb::XdpCounters* x = s->mutable_xdp_counters();
      x->set_tx(d.xdpStats[NP_XDP_STAT_TX].packets);
      x->set_redirect(d.xdpStats[NP_XDP_STAT_REDIRECT].packets);
      x->set_pass(d.xdpStats[NP_XDP_STAT_PASS].packets);
      x->set_deferred(d.xdpStats[NP_XDP_STAT_DEFERRED].packets);
      x->set_skipped(d.xdpStats[NP_XDP_STAT_SKIPPED].packets);
      x->set_drop(d.xdpStats[NP_XDP_STAT_DROP].packets);
      if (!d.xdpAttached) {
        const std::string why = "XDP program not attached";
        s->set_error(s->error().empty() ? why : s->error() + "; " + why);
        problems.push_back(d.info.name + ": " + why);
      }
    }
  }
  auto hooks = datapath_->socketHooksAttached();
  constexpr size_t kHooks = datapath::Datapath::kSocketHooks;
  out.set_socket_lb(hooks.size() == kHooks);
  if (config_.sockLb && hooks.size() != kHooks)
    problems.push_back("socket LB: " + std::to_string(hooks.size()) + "/" + std::to_string(kHooks) + " hooks attached");
  out.set_socket_lb_cgroup(datapath_->cgroupPath());
  for (const auto& h : hooks) out.add_socket_lb_hooks(h);
  out.set_socket_lb_tracing(datapath_->socketLbTracing());
  const LbMode lbMode = datapath_->lbMode();
  out.set_lb_mode(lbModeName(lbMode));
  if (lbMode != LbMode::Snat) out.set_dsr_dispatch_mode("IP Option/Extension");
  out.set_xdp_acceleration(lbAccelerationName(config_.lbAcceleration));
  {
    std::vector<std::string> names;
    for (const auto& d : datapath_->devices()) names.push_back(d.name);
    out.set_masquerading(masqueradingLine(datapath_->masquerading(), names, config_.nativeRoutingCidr));
  }
  out.set_host_routing(datapath_->bpfHostRouting() ? "BPF" : "Legacy");
  out.set_host_routing_reason(datapath_->legacyRoutingReason());
  out.set_backend_selection(backendSelectionName(config_));
  out.set_node_port_range(std::to_string(config_.nodePortMin) + "-" + std::to_string(config_.nodePortMax));
  out.set_services(static_cast<uint32_t>(lb_->services().size()));
  out.set_frontends(static_cast<uint32_t>(lb_->frontendCount()));
  out.set_backends(static_cast<uint32_t>(lb_->backendCount()));
  for (const datapath::MapState& m : datapath_->mapStates()) {
    pb::MapStatus* s = out.add_maps();
    s->set_name(m.name);
    s->set_max_entries(m.maxEntries);
    s->set_entries(m.entries);
    // LRU maps are full by design; their pressure is reported by what evicts from them.
    if (!m.lru && m.maxEntries > 0 && uint64_t{m.entries} * 10 > uint64_t{m.maxEntries} * 9)
      problems.push_back("map " + m.name + " is " + std::to_string(uint64_t{m.entries} * 100 / m.maxEntries) +
                         "% full (" + std::to_string(m.entries) + " of " + std::to_string(m.maxEntries) + ")");
  }
  for (const datapath::CounterRow& r : datapath_->counters()) {
    pb::Counter* c = out.add_counters();
    c->set_direction(datapath::metricDirectionName(r.direction));
    c->set_reason(r.reason);
    c->set_name(datapath::dropReasonName(r.reason));
    c->set_packets(r.packets);
    c->set_bytes(r.bytes);
  }
  conntrackStatus(datapath_->conntrackGc(), out, problems);
  out.set_bpf_root(config_.bpfRoot);
  out.set_restored(datapath_->adoptedPins());
  out.set_restored_services(static_cast<uint32_t>(datapath_->adoptedPins() ? restoredServices_ : 0));

  *out.mutable_local_state() = stateStatus();
  if (storeState_ != StoreState::Ok)
    problems.push_back("stored services " + std::string(storeState_ == StoreState::Missing ? "missing" : "unreadable") +
                       ": " + storeReason_ + "; the datapath keeps " +
                       plural(lb_->frontendCount(), "frontend", "frontends") +
                       " and changes are refused (agentctl state show)");
  for (const auto& [name, done] : sources_) {
    pb::SourceStatus* s = out.add_sources();
    s->set_name(name);
    s->set_synced(done);
    if (name == kKubernetes && k8s_) s->set_detail(k8s_->summary() + (ciliumNodes_ ? "; " + ciliumNodes_->summary() : ""));
    if (!done && !(name == kLocal && storeState_ != StoreState::Ok))
      problems.push_back("waiting for " + name + " to sync" + (name == kKubernetes && k8s_ ? " (" + k8s_->summary() + ")" : "") + "; " +
                         plural(out.local_state().stale_frontends(), "stale frontend is", "stale frontends are") +
                         " kept until then");
  }
  if (!k8sRejected_.empty())
    problems.push_back(plural(k8sRejected_.size(), "Kubernetes service port is", "Kubernetes service ports are") +
                       " refused (" + k8sRejected_.entries().begin()->first + ": " +
                       k8sRejected_.entries().begin()->second.reason + "; retried)");
  if (lb_->diverged()) problems.push_back("the maps differ from the model: " + lb_->diverged()->message() +
                                          "; the next reconcile repairs it");
  if (!store_->broken().empty()) problems.push_back("stored state: " + store_->broken());

  pb::ReconcileStatus* rs = out.mutable_reconcile();
  rs->set_runs(reconcileRuns_);
  rs->set_repaired_total(repairedTotal_);
  rs->set_interval_seconds(config_.lbReconcileIntervalSec);
  rs->set_last_seconds_ago(-1);
  if (lastReconcileAt_) {
    const auto ago = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                      *lastReconcileAt_).count();
    rs->set_last_seconds_ago(ago);
    *rs->mutable_last() = toProto(lastReconcile_);
    if (lastReconcile_.error)
      problems.push_back("the last reconcile (" + std::to_string(ago) + "s ago) failed: " +
                         lastReconcile_.error->message());
    else if (lastReconcileDrift_)
      problems.push_back("the last reconcile (" + std::to_string(ago) + "s ago) found the maps drifted from the model "
                         "and repaired them: " + reportLine(lastReconcile_));
  }

  pods_->fillStatus(out, problems);
  if (l2_) l2_->fillStatus(*out.mutable_l2(), problems);
  else out.mutable_l2()->set_enabled(false);
  observabilityStatus(out, problems);
  if (!nodesError_.empty()) problems.push_back("nodes: " + nodesError_);
  if (ciliumNodes_ && !ciliumNodes_->current().localMissing.empty())
    problems.push_back("CNI: " + ciliumNodes_->current().localMissing);

  for (const auto& p : problems) out.add_problems(p);
  out.set_state(problems.empty() ? "Ok" : "Degraded");
  std::string msg;
  for (const auto& p : problems) msg += (msg.empty() ? "" : "; ") + p;
  out.set_message(msg);
  return out;
}

Result<pb::ReconcileResponse> Agent::reconcile() {
  auto r = runReconcile("request", true);
  if (!r) return r.error();
  pb::ReconcileResponse out;
  *out.mutable_report() = toProto(*r);
  return out;
}

Result<pb::StateResponse> Agent::state(pb::StateRequest::Action action) {
  pb::StateResponse out;
  const std::string loadedMsg = "the stored state is loaded (" +
                                plural(stateStatus().services(), "service", "services") + ")";
  switch (action) {
    case pb::StateRequest::SHOW:
      if (storeState_ != StoreState::Ok) {
        // What accept would do, so the way out can be chosen knowing its cost.
        auto plan = acceptPlan();
        if (!plan) {
          out.set_message("state accept would fail: " + plan.error().detail);
          break;
        }
        std::vector<lb::Frontend> claimed;
        for (const lb::Service& s : plan->keep)
          for (const lb::Frontend& f : lb::frontendsOf(s, lb_->node())) claimed.push_back(f);
        std::set<uint64_t> keys;
        for (const lb::Frontend& f : claimed) keys.insert(lb::frontendKey(f));
        size_t removed = 0;
        for (const auto& [k, v] : lb_->applied().services)
          if (k.slot == 0 && k.scope == NP_LB_SCOPE_EXT &&
              !keys.count(lb::frontendKey({Ipv4{k.addr}, ntohs(k.dport), static_cast<Protocol>(k.proto)})))
            ++removed;
        out.set_message("state accept would take " + std::string(lb::ServiceStore::sourceName(plan->source)) + ": " +
                        plural(plan->keep.size(), "service", "services") + ", " + std::to_string(plan->dropped.size()) +
                        " dropped, and remove " + plural(removed, "frontend", "frontends") +
                        " of the maps that no accepted service claims");
        for (const std::string& d : plan->dropped) out.add_dropped(d);
      }
      break;
    case pb::StateRequest::RELOAD:
      if (storeState_ == StoreState::Ok) {
        out.set_message(loadedMsg + "; nothing to reload");
        break;
      }
      loadLocal();
      out.set_message(storeState_ == StoreState::Ok ? "reloaded " + std::to_string(stateStatus().services()) +
                                                          " services from " + store_->snapshotPath()
                                                    : "still not loadable: " + storeReason_);
      break;
    case pb::StateRequest::ACCEPT: {
      if (storeState_ == StoreState::Ok)
        return Error{ENOTRECOVERABLE, "state accept", loadedMsg + "; there is nothing to accept"};
      auto plan = acceptPlan();
      if (!plan) return plan.error();
      for (const std::string& d : plan->dropped) out.add_dropped(d);
      // The model becomes exactly the accepted services.
      std::set<std::string> names;
      for (const lb::Service& s : plan->keep) names.insert(s.name);
      lb::Change change{plan->keep, {}};
      for (const auto& [name, svc] : lb_->services())
        if (svc.source == kLocal && !names.count(name)) change.deletes.push_back(name);
      auto p = lb_->prepare(std::move(change));
      if (!p) return Error{p.error().err, "state accept", p.error().message()};
      // Durable first: the accepted state replaces the files (all or nothing), then the maps.
      std::map<std::string, lb::Service> accepted;
      for (lb::Service& s : plan->keep) accepted.emplace(s.name, std::move(s));
      auto moved = store_->replaceAll(accepted);
      if (!moved) {
        lb_->abandon(*p);
        return moved.error();
      }
      for (const std::string& m : *moved) out.add_moved_aside(m);
      if (Status st = lb_->commit(*p); !st) {
        storeState_ = StoreState::Unreadable;
        storeReason_ = "the accepted state is saved but the maps refused it: " + st.error().message() +
                       " (agentctl state reload retries)";
        return st.error();
      }
      storeState_ = StoreState::Ok;
      storeReason_.clear();
      out.set_message("accepted " + plural(accepted.size(), "service", "services") + " from " +
                      lb::ServiceStore::sourceName(plan->source) +
                      (out.dropped_size() ? ", dropped " + std::to_string(out.dropped_size()) : ""));
      NP_LOG_WARN("lb", "state accept: %s", out.message().c_str());
      markSynced(kLocal);
      break;
    }
    case pb::StateRequest::RESET: {
      if (storeState_ == StoreState::Ok)
        return Error{ENOTRECOVERABLE, "state reset", loadedMsg + "; remove services with agentctl service delete"};
      lb::Change change;
      for (const auto& [name, svc] : lb_->services())
        if (svc.source == kLocal) change.deletes.push_back(name);
      auto p = lb_->prepare(std::move(change));
      if (!p) return p.error();
      auto moved = store_->replaceAll({});
      if (!moved) {
        lb_->abandon(*p);
        return moved.error();
      }
      for (const std::string& m : *moved) out.add_moved_aside(m);
      if (Status st = lb_->commit(*p); !st) return st.error();
      storeState_ = StoreState::Ok;
      storeReason_.clear();
      out.set_message("started with no stored services");
      NP_LOG_WARN("lb", "state reset: started with no stored services");
      markSynced(kLocal);
      break;
    }
    default:
      return error("state", "unknown action " + std::to_string(action));
  }
  if (action != pb::StateRequest::SHOW) publishFlowServices();
  if (action != pb::StateRequest::SHOW && lastReconcileAt_) *out.mutable_reconcile() = toProto(lastReconcile_);
  *out.mutable_state() = stateStatus();
  return out;
}

}  // namespace np
