#include "endpoint/pod_network.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <set>

#include "core/fs.h"
#include "core/log.h"

namespace np::endpoint {

std::string confList(const std::string& socketPath) {
  namespace json = boost::json;
  // cniVersion is what a runtime that knows no cniVersions list reads (containerd 1.7: 1.0.0);
  // newer ones pick the highest of cniVersions they speak (1.1.0 brings STATUS and GC).
  json::object conf{
      {"cniVersion", "1.0.0"},
      {"cniVersions", json::array{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}},
      {"name", kNetworkName},
      {"plugins", json::array{json::object{{"type", kPluginName},
                                           {"socket", socketPath},
                                           {"capabilities", json::object{{"portMappings", true}}}}}},
  };
  return json::serialize(conf) + "\n";
}

pb::Endpoint toProto(const Endpoint& e, Ipv4 router) {
  pb::Endpoint p;
  p.set_container_id(e.containerId);
  p.set_ifname(e.ifname);
  p.set_netns(e.netns);
  p.set_pod_namespace(e.podNamespace);
  p.set_pod_name(e.podName);
  p.set_ipv4(e.ip.str());
  if (!router.isZero()) p.set_gateway(router.str());
  p.set_host_ifname(e.hostIfname);
  p.set_host_ifindex(static_cast<uint32_t>(e.hostIfindex));
  p.set_host_mac(formatMac(e.hostMac.data()));
  p.set_pod_mac(formatMac(e.podMac.data()));
  p.set_mtu(e.mtu);
  p.set_created_unix(e.createdUnix);
  return p;
}

Result<std::unique_ptr<PodNetwork>> PodNetwork::start(const Config& config, const std::string& device) {
  std::unique_ptr<PodNetwork> p(new PodNetwork());
  p->config_ = config;
  p->device_ = device;
  auto nl = routing::Netlink::open();
  if (!nl) return nl.error();
  p->nl_ = std::move(*nl);
  p->endpoints_ = std::make_unique<Manager>(config.runDir + "/state", *p->nl_);
  return p;
}

void PodNetwork::setNodes(const std::vector<NodeEntry>& nodes, const std::string& missing) {
  nodes_ = nodes;
  std::optional<Cidr> local;
  for (const NodeEntry& n : nodes_)
    if (n.local) local = n.podCidr;
  if (local && !config_.podCidr.contains(local->addr))
    NP_LOG_WARN("endpoint", "this node's pod CIDR %s is outside --cluster-pool-ipv4-cidr %s", local->str().c_str(),
                config_.podCidr.str().c_str());
  endpoints_->setPodCidr(local, missing);
  syncRoutes();
  updateConf();
}

void PodNetwork::syncRoutes() {
  routesError_.clear();
  auto link = nl_->linkByName(device_);
  auto addrs = nl_->addresses();
  if (!link || !*link || !addrs) {
    routesError_ = "node routes: cannot read device " + device_ +
                   (!link ? ": " + link.error().message() : !addrs ? ": " + addrs.error().message() : ": it is gone");
    return;
  }
  std::vector<routing::Address> mine;
  for (const routing::Address& a : *addrs)
    if (a.ifindex == (*link)->ifindex) mine.push_back(a);
  routing::NodeRoutePlan plan = routing::planNodeRoutes(nodes_, device_, (*link)->ifindex, mine);
  routing::NodeRoutes applier(*nl_);
  auto applied = applier.apply(plan);
  if (!applied) {
    routesError_ = "node routes: " + applied.error().message();
    return;
  }
  for (const routing::NodeRouteState& s : *applied) {
    bool was = false;
    for (const auto& o : routes_) was |= o.node == s.node && o.installed && o.podCidr == s.podCidr;
    if (s.installed && !was)
      NP_LOG_INFO("routing", "route %s via %s (node %s) installed", s.podCidr.str().c_str(), s.via.str().c_str(),
                  s.node.c_str());
    if (!s.installed) NP_LOG_WARN("routing", "%s", s.error.c_str());
  }
  routes_ = std::move(*applied);
}

void PodNetwork::setDatapath(EndpointDatapath* dp) {
  dp_ = dp;
  dpError_.clear();
  if (!dp_) return;
  for (const Endpoint& e : endpoints_->endpoints()) {
    if (Status st = dp_->attach(e); !st) {
      dpError_ = "adopt endpoint " + e.key() + ": " + st.error().message();
      NP_LOG_ERROR("endpoint", "%s", dpError_.c_str());
    }
  }
  if (Status st = dp_->prune(endpoints_->endpoints()); !st) {
    dpError_ = "prune endpoint map: " + st.error().message();
    NP_LOG_ERROR("endpoint", "%s", dpError_.c_str());
  }
}

void PodNetwork::setApiReady() {
  apiReady_ = true;
  updateConf();
}

void PodNetwork::tick() {
  if (!endpoints_->ready()) {
    std::optional<Cidr> local;
    for (const NodeEntry& n : nodes_)
      if (n.local) local = n.podCidr;
    if (local) endpoints_->setPodCidr(local);
  }
  updateConf();
}

void PodNetwork::updateConf() {
  const std::string path = config_.cniConfDir + "/" + kConfListName;
  const bool want = apiReady_ && endpoints_->ready();
  if (want && (!confWritten_ || !fs::exists(path))) {
    Status st = fs::makeDirs(config_.cniConfDir, 0755);
    if (st) st = fs::writeFileAtomic(path, confList(config_.runDir + "/agent.sock"), 0644);
    if (!st) {
      if (confError_ != st.error().message()) NP_LOG_ERROR("cni", "%s", st.error().message().c_str());
      confError_ = st.error().message();
      return;
    }
    confError_.clear();
    confWritten_ = true;
    NP_LOG_INFO("cni", "wrote %s: the node's pod network is ready", path.c_str());
  } else if (!want && confWritten_) {
    if (unlink(path.c_str()) == 0 || errno == ENOENT) {
      confWritten_ = false;
      NP_LOG_WARN("cni", "removed %s: %s", path.c_str(), endpoints_->reason().c_str());
    }
  }
}

const Endpoint* PodNetwork::find(const std::string& containerId, const std::string& ifname) const {
  for (const Endpoint& e : endpoints_->endpoints())
    if (e.containerId == containerId && e.ifname == ifname) return &e;
  return nullptr;
}

Result<pb::CniAddResponse> PodNetwork::add(const pb::CniAddRequest& req) {
  AddRequest ar{req.container_id(), req.ifname(), req.netns(), req.pod_namespace(), req.pod_name(), {}};
  for (int i = 0; i < req.port_mappings_size(); ++i) {
    const pb::PortMapping& in = req.port_mappings(i);
    const std::string where = "port mapping " + std::to_string(i);
    PortMapping m;
    if (in.host_port() == 0 || in.host_port() > 65535 || in.container_port() == 0 || in.container_port() > 65535)
      return error(where, "host port " + std::to_string(in.host_port()) + " / container port " +
                              std::to_string(in.container_port()) + ": a port is 1-65535");
    m.hostPort = static_cast<uint16_t>(in.host_port());
    m.containerPort = static_cast<uint16_t>(in.container_port());
    if (in.protocol() == pb::UDP) m.protocol = Protocol::Udp;
    else if (in.protocol() == pb::TCP || in.protocol() == pb::PROTOCOL_UNSPECIFIED) m.protocol = Protocol::Tcp;
    else return error(where, "protocol must be TCP or UDP");
    if (!in.host_ip().empty() && in.host_ip() != "0.0.0.0") {
      m.hostIp = Ipv4::parse(in.host_ip());
      if (!m.hostIp) return error(where, "host IP \"" + in.host_ip().substr(0, 64) + "\" is not an IPv4 address");
    }
    ar.portMappings.push_back(m);
  }
  bool existed = false;
  if (!dp_) return Error{ENOTRECOVERABLE, "add endpoint", "the datapath is not ready"};
  auto e = endpoints_->add(ar, &existed);
  if (!e) return e.error();
  if (Status st = dp_->attach(*e); !st) {
    // All or nothing: a pod without its program would have no working network.
    (void)dp_->detach(*e);
    if (!existed) (void)endpoints_->del(req.container_id(), req.ifname(), req.netns());
    return Error{EIO, "attach lxc program to " + e->hostIfname, st.error().message()};
  }
  pb::CniAddResponse out;
  *out.mutable_endpoint() = toProto(*e, endpoints_->ipam()->router());
  out.set_existed(existed);
  return out;
}

Status PodNetwork::del(const pb::CniDelRequest& req) {
  if (dp_) {
    for (const Endpoint& e : endpoints_->endpoints()) {
      if (e.containerId != req.container_id() || e.ifname != req.ifname()) continue;
      NP_TRY(dp_->detach(e));
    }
  }
  return endpoints_->del(req.container_id(), req.ifname(), req.netns());
}

Result<pb::CniCheckResponse> PodNetwork::check(const pb::CniCheckRequest& req) {
  auto e = endpoints_->check(req.container_id(), req.ifname(), req.netns());
  if (!e) return e.error();
  pb::CniCheckResponse out;
  *out.mutable_endpoint() = toProto(*e, endpoints_->ipam()->router());
  return out;
}

pb::CniGcResponse PodNetwork::gc(const pb::CniGcRequest& req) {
  std::set<std::pair<std::string, std::string>> valid;
  for (const pb::CniAttachment& a : req.valid_attachments()) valid.insert({a.container_id(), a.ifname()});
  pb::CniGcResponse out;
  const Ipv4 router = endpoints_->ipam() ? endpoints_->ipam()->router() : Ipv4{};
  for (const Endpoint& e : endpoints_->gc(valid)) {
    if (dp_) (void)dp_->detach(e);
    *out.add_released() = toProto(e, router);
  }
  return out;
}

pb::CniStatusResponse PodNetwork::cniStatus() const {
  pb::CniStatusResponse out;
  std::string why = endpoints_->reason();
  if (why.empty() && endpoints_->ipam()->allocated() >= endpoints_->ipam()->capacity())
    why = "all " + std::to_string(endpoints_->ipam()->capacity()) + " addresses of " +
          endpoints_->ipam()->pool().str() + " are in use";
  out.set_ready(why.empty());
  out.set_reason(why);
  return out;
}

pb::ListEndpointsResponse PodNetwork::listEndpoints() const {
  pb::ListEndpointsResponse out;
  const Ipv4 router = endpoints_->ipam() ? endpoints_->ipam()->router() : Ipv4{};
  for (const Endpoint& e : endpoints_->endpoints()) *out.add_endpoints() = toProto(e, router);
  return out;
}

void PodNetwork::fillStatus(pb::StatusResponse& out, std::vector<std::string>& problems) const {
  pb::IpamStatus* ipam = out.mutable_ipam();
  if (const Ipam* i = endpoints_->ipam()) {
    ipam->set_pod_cidr(i->pool().str());
    ipam->set_router(i->router().str());
    ipam->set_allocated(static_cast<uint32_t>(i->allocated()));
    ipam->set_capacity(static_cast<uint32_t>(i->capacity()));
  }
  pb::CniConfStatus* cni = out.mutable_cni();
  const std::string path = config_.cniConfDir + "/" + kConfListName;
  cni->set_ready(endpoints_->ready());
  cni->set_reason(endpoints_->reason());
  cni->set_conf_path(path);
  cni->set_conf_written(confWritten_ && fs::exists(path));
  cni->set_bin_dir(config_.cniBinDir);
  const std::string plugin = config_.cniBinDir + "/" + kPluginName;
  cni->set_plugin_present(access(plugin.c_str(), X_OK) == 0);
  if (!endpoints_->ready() && !endpoints_->unconfigured()) problems.push_back("CNI: " + endpoints_->reason());
  if (!confError_.empty()) problems.push_back("CNI: " + confError_);
  if (!dpError_.empty()) problems.push_back("endpoints: " + dpError_);
  for (const routing::NodeRouteState& s : routes_) {
    pb::NodeRouteStatus* r = out.add_node_routes();
    r->set_node(s.node);
    r->set_pod_cidr(s.podCidr.str());
    r->set_via(s.via.str());
    r->set_installed(s.installed);
    r->set_error(s.error);
    if (!s.installed) problems.push_back("node route: " + s.error);
  }
  if (!routesError_.empty()) problems.push_back(routesError_);
}

}  // namespace np::endpoint
