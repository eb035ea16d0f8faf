#include "agent.h"

#include <arpa/inet.h>
#include <malloc.h>

#include <algorithm>
#include <map>

#include "api/convert.h"
#include "core/fs.h"
#include "core/log.h"
#include "np_drop.h"

#ifndef NP_VERSION
#define NP_VERSION "0.0.0"
#endif

namespace np {

Result<std::unique_ptr<Agent>> Agent::start(Config config) {
  std::unique_ptr<Agent> a(new Agent());
  a->config_ = std::move(config);
  const Config& c = a->config_;

  NP_TRY(fs::makeDirs(c.runDir + "/state", 0700));

  auto dp = datapath::Datapath::start(c);
  if (!dp) return dp.error();
  a->datapath_ = std::move(*dp);
  NP_LOG_INFO("datapath", "programs loaded, maps under %s (%s), node IP %s", a->datapath_->pinDir().c_str(),
              a->datapath_->adoptedPins() ? "adopted pinned maps" : "new maps",
              a->datapath_->nodeIp().str().c_str());

  if (!c.configDir.empty() && fs::exists(c.configDir + "/nodes")) {
    auto text = fs::readFile(c.configDir + "/nodes");
    if (!text) return text.error();
    auto nodes = parseNodes(*text, c.nodeName);
    if (!nodes) return Error{0, c.configDir + "/nodes: " + nodes.error().context, nodes.error().detail};
    a->nodes_ = std::move(*nodes);
    NP_TRY(a->datapath_->setNodes(a->nodes_));
  }

  lb::NodeContext node;
  for (const auto& d : a->datapath_->devices()) node.nodeIps.push_back(d.ipv4);
  node.nodePortMin = c.nodePortMin;
  node.nodePortMax = c.nodePortMax;
  a->lb_ = std::make_unique<lb::Reconciler>(a->datapath_->lbMaps(), node);
  a->store_ = std::make_unique<lb::ServiceStore>(c.runDir + "/state/services.json");

  auto stored = a->store_->load();
  if (!stored) return stored.error();
  auto restored = a->lb_->restore(std::move(*stored));
  if (!restored) return restored.error();
  a->restored_ = *restored;
  for (const std::string& why : restored->skipped) NP_LOG_WARN("lb", "persisted service not restored: %s", why.c_str());
  NP_LOG_INFO("lb", "restored %zu services; adopted %zu frontends from pinned maps; %zu map operations to converge",
              restored->services, restored->adoptedFrontends, restored->ops);
  return a;
}

// A large batch leaves megabytes of freed request, plan and image memory in malloc's arenas
// (gRPC parses requests on its own threads, so in their arenas too): give it back to the system.
void Agent::releaseMemory() { malloc_trim(0); }

void Agent::persist() {
  Status st = store_->save(lb_->services());
  if (!st) {
    persistError_ = st.error().message();
    NP_LOG_ERROR("lb", "persist services: %s", persistError_.c_str());
  } else {
    persistError_.clear();
  }
}

Result<pb::UpsertServiceResponse> Agent::upsertService(const pb::UpsertServiceRequest& req) {
  auto s = api::serviceFromProto(req.service());
  if (!s) return s.error();
  using Change = lb::Reconciler::Change;
  auto change = lb_->upsert(std::move(*s));
  if (!change) return change.error();
  if (*change != Change::Unchanged) persist();
  pb::UpsertServiceResponse out;
  *out.mutable_service() = api::serviceToProto(*lb_->find(req.service().name()));
  out.set_created(*change == Change::Created);
  NP_LOG_INFO("lb", "service %s %s", req.service().name().c_str(),
              *change == Change::Created ? "created" : *change == Change::Updated ? "updated" : "unchanged");
  return out;
}

Result<pb::UpsertServicesResponse> Agent::upsertServices(const pb::UpsertServicesRequest& req) {
  std::vector<lb::Service> services;
  services.reserve(static_cast<size_t>(req.services_size()));
  for (const pb::Service& in : req.services()) {
    auto s = api::serviceFromProto(in);
    if (!s) return s.error();
    services.push_back(std::move(*s));
  }
  auto changed = lb_->upsertMany(std::move(services));
  if (!changed) return changed.error();
  if (*changed) persist();
  releaseMemory();
  pb::UpsertServicesResponse out;
  out.set_count(static_cast<uint32_t>(req.services_size()));
  NP_LOG_INFO("lb", "%d services upserted in one batch (%zu changed)", req.services_size(), *changed);
  return out;
}

Status Agent::deleteService(const std::string& name) {
  NP_TRY(lb_->remove(name));
  persist();
  NP_LOG_INFO("lb", "service %s deleted", name.c_str());
  return {};
}

Result<pb::GetServiceResponse> Agent::getService(const std::string& name) const {
  const lb::Service* s = lb_->find(name);
  if (!s) return Error{ENOENT, "service " + name, "not found"};
  pb::GetServiceResponse out;
  *out.mutable_service() = api::serviceToProto(*s);
  return out;
}

pb::ListServicesResponse Agent::listServices() const {
  pb::ListServicesResponse out;
  for (const auto& [name, s] : lb_->services()) *out.add_services() = api::serviceToProto(s);
  return out;
}

Result<pb::ListLbResponse> Agent::listLb() const {
  // Straight from the kernel: what the datapath uses, not what the agent believes.
  auto img = datapath_->lbMaps().dump();
  if (!img) return img.error();
  std::vector<np_svc_key> masters;
  for (const auto& [k, v] : img->services)
    if (k.slot == 0) masters.push_back(k);
  std::sort(masters.begin(), masters.end(), [](const np_svc_key& a, const np_svc_key& b) {
    return std::tuple(ntohl(a.addr), ntohs(a.dport), a.proto) < std::tuple(ntohl(b.addr), ntohs(b.dport), b.proto);
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
    if (!d.ingress || !d.egress) {
      s->set_error("tc program not attached");
      problems.push_back(d.info.name + ": tc program not attached");
    }
  }
  auto hooks = datapath_->socketHooksAttached();
  out.set_socket_lb(hooks.size() == 4);
  if (hooks.size() != 4) problems.push_back("socket LB: " + std::to_string(hooks.size()) + "/4 hooks attached");
  out.set_socket_lb_cgroup(datapath_->cgroupPath());
  for (const auto& h : hooks) out.add_socket_lb_hooks(h);
  out.set_lb_mode(lbModeName(config_.lbMode));
  out.set_backend_selection("Random");
  out.set_node_port_range(std::to_string(config_.nodePortMin) + "-" + std::to_string(config_.nodePortMax));
  out.set_services(static_cast<uint32_t>(lb_->services().size()));
  out.set_frontends(static_cast<uint32_t>(lb_->frontendCount()));
  out.set_backends(static_cast<uint32_t>(lb_->backendCount()));
  for (const datapath::MapState& m : datapath_->mapStates()) {
    pb::MapStatus* s = out.add_maps();
    s->set_name(m.name);
    s->set_max_entries(m.maxEntries);
    s->set_entries(m.entries);
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
  out.set_restored_services(static_cast<uint32_t>(restored_.services));
  if (!persistError_.empty()) problems.push_back("persist services: " + persistError_);
  out.set_state(problems.empty() ? "Ok" : "Degraded");
  std::string msg;
  for (const auto& p : problems) msg += (msg.empty() ? "" : "; ") + p;
  out.set_message(msg);
  return out;
}

}  // namespace np
