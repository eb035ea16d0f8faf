#include "endpoint/manager.h"

#include <linux/rtnetlink.h>
#include <net/if.h>

#include <algorithm>
#include <ctime>

#include "core/fs.h"
#include "core/log.h"

namespace np::endpoint {
namespace {

constexpr const char* kRouterDev = "np_host";
constexpr const char* kRouterPeer = "np_net";

// Kernel refusals become EIO so that an errno of the kernel's (ENOENT for a missing route, say)
// is never read as one of the meanings the API gives errnos.
Error kernel(const Error& e) {
  return Error{EIO, e.context, e.detail.empty() && e.err ? std::strerror(e.err) : e.detail};
}

}  // namespace

Manager::Manager(std::string stateDir, routing::Netlink& host)
    : store_(stateDir), path_(store_.path()), host_(host) {
  auto loaded = store_.load();
  if (loaded) {
    state_ = std::move(*loaded);
    stateLoaded_ = true;
    for (const std::string& why : state_.droppedPortMappings)
      NP_LOG_ERROR("endpoint", "a stored HostPort is not restored: %s", why.c_str());
  } else if (loaded.error().err == ENOENT) {
    stateLoaded_ = true;
  } else {
    stateError_ = loaded.error().message();
    NP_LOG_ERROR("endpoint", "stored endpoints not loaded: %s; CNI requests are refused until it is fixed",
                 stateError_.c_str());
  }
  reason_ = stateLoaded_ ? "no pod CIDR for this node: the node list has no entry for it"
                        : "stored endpoints unreadable: " + stateError_;
}

void Manager::setReason(std::string why) {
  if (why != reason_ && !why.empty()) NP_LOG_WARN("endpoint", "CNI not ready: %s", why.c_str());
  if (why.empty() && !reason_.empty()) NP_LOG_INFO("endpoint", "CNI ready: pod CIDR %s, router %s, %zu endpoints",
                                                   ipam_->pool().str().c_str(), ipam_->router().str().c_str(),
                                                   state_.endpoints.size());
  reason_ = std::move(why);
}

void Manager::setPodCidr(std::optional<Cidr> cidr, const std::string& missing) {
  if (!stateLoaded_) return setReason("stored endpoints unreadable: " + stateError_);
  if (ipam_ && cidr && ipam_->pool() == *cidr && reason_.empty()) return;
  wanted_ = cidr;
  if (!cidr) {
    if (ipam_) return setReason((missing.empty() ? "this node is no longer in the node list" : missing) +
                                "; keeping pod CIDR " + ipam_->pool().str() +
                                " for the existing endpoints, new pods are refused");
    return setReason(missing.empty() ? "no pod CIDR for this node: the node list has no entry for it" : missing);
  }
  if (!state_.endpoints.empty() && !(state_.podCidr == *cidr)) {
    return setReason("the node list gives pod CIDR " + cidr->str() + " but " +
                     std::to_string(state_.endpoints.size()) + " endpoints hold addresses of " + state_.podCidr.str() +
                     "; delete those pods first");
  }
  auto ipam = Ipam::create(*cidr);
  if (!ipam) return setReason(ipam.error().message());
  ipam->setLast(state_.podCidr == *cidr ? state_.lastAllocated : Ipv4{});
  for (const Endpoint& e : state_.endpoints) {
    if (Status st = ipam->restore(e.ip, e.key()); !st) return setReason("stored endpoints: " + st.error().message());
  }
  ipam_.emplace(std::move(*ipam));
  state_.podCidr = *cidr;
  if (Status st = ensureRouter(); !st) return setReason(st.error().message());
  // Host routes of restored endpoints: the kernel keeps them with their link, but a replace is
  // free and repairs one removed by hand.
  for (const Endpoint& e : state_.endpoints) {
    auto link = host_.linkByName(e.hostIfname);
    if (link && *link)
      (void)host_.replaceRoute(
          {Cidr{e.ip, 32}, {}, (*link)->ifindex, routing::kRouteProtocol, RT_SCOPE_LINK, RT_TABLE_MAIN});
  }
  setReason({});
}

Status Manager::ensureRouter() {
  auto link = host_.linkByName(kRouterDev);
  if (!link) return kernel(link.error());
  if (!*link) {
    NP_TRY(host_.createVeth(kRouterDev, kRouterPeer));
    link = host_.linkByName(kRouterDev);
    if (!link) return kernel(link.error());
    if (!*link) return Error{EIO, "create " + std::string(kRouterDev), "it is not there after creating it"};
    NP_LOG_INFO("endpoint", "created the router device %s/%s", kRouterDev, kRouterPeer);
  }
  auto peer = host_.linkByName(kRouterPeer);
  if (!peer) return kernel(peer.error());
  NP_TRY(host_.addAddress({(*link)->ifindex, ipam_->router(), 32, RT_SCOPE_UNIVERSE}, true));
  NP_TRY(host_.setUp((*link)->ifindex, kRouterDev));
  if (*peer) NP_TRY(host_.setUp((*peer)->ifindex, kRouterPeer));
  // The node routes for its pods; best effort where the namespace's sysctls are read-only.
  (void)routing::writeSysctl("net/ipv4/ip_forward", "1");
  return {};
}

Status Manager::saveWith(const std::vector<Endpoint>& eps) {
  EndpointState next = state_;
  next.endpoints = eps;
  next.lastAllocated = ipam_ ? ipam_->last() : state_.lastAllocated;
  NP_TRY(store_.save(next));
  state_ = std::move(next);
  return {};
}

Result<Endpoint> Manager::add(const AddRequest& req, bool* existed) {
  if (existed) *existed = false;
  if (!reason_.empty()) return Error{ENOTRECOVERABLE, "add endpoint", reason_};
  if (!routing::validIfName(req.ifname)) return error("add endpoint", "\"" + req.ifname + "\" is not an interface name");
  if (req.containerId.empty()) return error("add endpoint", "the container ID is empty");
  for (const Endpoint& e : state_.endpoints) {
    if (e.containerId == req.containerId && e.ifname == req.ifname) {
      if (existed) *existed = true;
      return e;
    }
  }
  auto ip = ipam_->allocate(req.containerId + "/" + req.ifname);
  if (!ip) return ip.error();
  Endpoint e;
  e.containerId = req.containerId;
  e.ifname = req.ifname;
  e.netns = req.netns;
  e.podNamespace = req.podNamespace;
  e.podName = req.podName;
  e.portMappings = req.portMappings;
  e.ip = *ip;
  auto made = [&]() -> Result<Endpoint> {
    auto podNl = routing::Netlink::openIn(req.netns);
    if (!podNl) return podNl.error().err == ENOENT ? Error{ENOENT, "add endpoint", "network namespace " + req.netns + " does not exist"}
                                                   : kernel(podNl.error());
    auto exists = (*podNl)->linkByName(req.ifname);
    if (!exists) return kernel(exists.error());
    if (*exists)
      return Error{EEXIST, "add endpoint", "interface " + req.ifname + " already exists in " + req.netns};
    e.hostIfname = routing::endpointIfName(req.containerId, req.ifname);
    const std::string tmp = routing::endpointIfName(req.containerId, req.ifname, "tmp");
    // Leftovers of an attempt that died half-way (the agent was killed) go first.
    for (const std::string& n : {e.hostIfname, tmp}) {
      auto old = host_.linkByName(n);
      if (old && *old) (void)host_.deleteLink((*old)->ifindex, n);
    }
    if (Status st = host_.createVeth(e.hostIfname, tmp); !st) return kernel(st.error());
    auto hostLink = host_.linkByName(e.hostIfname);
    auto tmpLink = host_.linkByName(tmp);
    if (!hostLink || !*hostLink || !tmpLink || !*tmpLink)
      return Error{EIO, "add endpoint", "veth pair " + e.hostIfname + "/" + tmp + " not found after creating it"};
    e.hostIfindex = (*hostLink)->ifindex;
    e.hostMac = (*hostLink)->mac;
    e.mtu = (*hostLink)->mtu;
    auto fail = [&](const Error& err) -> Result<Endpoint> {
      removeHostSide(e);
      return kernel(err);
    };
    (void)routing::writeSysctl("net/ipv4/conf/" + e.hostIfname + "/rp_filter", "0");
    auto ns = routing::NetnsFd::open(req.netns);
    if (!ns) return fail(ns.error());
    if (Status st = host_.moveToNetns((*tmpLink)->ifindex, ns->get(), tmp); !st) return fail(st.error());
    if (Status st = host_.setUp(e.hostIfindex, e.hostIfname); !st) return fail(st.error());
    // Inside the pod: rename, up, address, routes.
    auto peer = (*podNl)->linkByName(tmp);
    if (!peer || !*peer) return fail(Error{EIO, "add endpoint", tmp + " did not arrive in " + req.netns});
    const int pidx = (*peer)->ifindex;
    if (Status st = (*podNl)->rename(pidx, req.ifname); !st) return fail(st.error());
    if (Status st = (*podNl)->setUp(pidx, req.ifname); !st) return fail(st.error());
    if (Status st = (*podNl)->addAddress({pidx, e.ip, 32, RT_SCOPE_UNIVERSE}, false); !st) return fail(st.error());
    const Ipv4 router = ipam_->router();
    if (Status st = (*podNl)->replaceRoute({Cidr{router, 32}, {}, pidx, RTPROT_BOOT, RT_SCOPE_LINK, RT_TABLE_MAIN}); !st)
      return fail(st.error());
    if (Status st = (*podNl)->replaceRoute({Cidr{{}, 0}, router, pidx, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN}); !st)
      return fail(st.error());
    e.podMac = (*peer)->mac;
    if (Status st = host_.replaceRoute({Cidr{e.ip, 32}, {}, e.hostIfindex, routing::kRouteProtocol, RT_SCOPE_LINK,
                                        RT_TABLE_MAIN});
        !st)
      return fail(st.error());
    e.createdUnix = time(nullptr);
    std::vector<Endpoint> next = state_.endpoints;
    next.push_back(e);
    if (Status st = saveWith(next); !st) {
      removeHostSide(e);
      return st.error();
    }
    return e;
  }();
  if (!made) {
    ipam_->release(*ip);
    ipam_->setLast(state_.lastAllocated);
    return made;
  }
  NP_LOG_INFO("endpoint", "added %s (%s/%s): %s on %s, pod side %s in %s", made->key().c_str(),
              made->podNamespace.c_str(), made->podName.c_str(), made->ip.str().c_str(), made->hostIfname.c_str(),
              made->ifname.c_str(), made->netns.c_str());
  return made;
}

void Manager::removeHostSide(const Endpoint& e) {
  // Deleting one end of a veth deletes both; the /32 route goes with its device, but a route
  // left behind by a renamed device must not survive either.
  (void)host_.deleteRoute({Cidr{e.ip, 32}, {}, 0, routing::kRouteProtocol, RT_SCOPE_LINK, RT_TABLE_MAIN});
  for (const std::string& n : {e.hostIfname, routing::endpointIfName(e.containerId, e.ifname, "tmp")}) {
    auto link = host_.linkByName(n);
    if (link && *link) (void)host_.deleteLink((*link)->ifindex, n);
  }
}

Status Manager::del(const std::string& containerId, const std::string& ifname, const std::string& netns) {
  if (!stateLoaded_) return Error{ENOTRECOVERABLE, "delete endpoint", reason_};
  auto it = std::find_if(state_.endpoints.begin(), state_.endpoints.end(),
                         [&](const Endpoint& e) { return e.containerId == containerId && e.ifname == ifname; });
  if (it == state_.endpoints.end()) {
    // Nothing recorded; a half-made attempt's devices would carry the names this one computes.
    Endpoint ghost;
    ghost.containerId = containerId;
    ghost.ifname = ifname;
    ghost.hostIfname = routing::endpointIfName(containerId, ifname);
    for (const std::string& n : {ghost.hostIfname, routing::endpointIfName(containerId, ifname, "tmp")}) {
      auto link = host_.linkByName(n);
      if (link && *link) (void)host_.deleteLink((*link)->ifindex, n);
    }
    return {};
  }
  const Endpoint e = *it;
  (void)netns;  // the pod side goes with the host side (a veth pair dies as one)
  removeHostSide(e);
  std::vector<Endpoint> next;
  for (const Endpoint& o : state_.endpoints)
    if (o.key() != e.key()) next.push_back(o);
  if (ipam_) ipam_->release(e.ip);
  NP_TRY(saveWith(next));
  NP_LOG_INFO("endpoint", "deleted %s: released %s", e.key().c_str(), e.ip.str().c_str());
  return {};
}

Result<Endpoint> Manager::check(const std::string& containerId, const std::string& ifname, const std::string& netns) {
  if (!reason_.empty()) return Error{ENOTRECOVERABLE, "check endpoint", reason_};
  auto it = std::find_if(state_.endpoints.begin(), state_.endpoints.end(),
                         [&](const Endpoint& e) { return e.containerId == containerId && e.ifname == ifname; });
  if (it == state_.endpoints.end())
    return Error{ENOENT, "check endpoint", "no endpoint for container " + containerId + " interface " + ifname};
  const Endpoint& e = *it;
  const std::string ctx = "check endpoint " + e.key();
  auto host = host_.linkByName(e.hostIfname);
  if (!host) return kernel(host.error());
  if (!*host) return Error{EIO, ctx, "host interface " + e.hostIfname + " is missing"};
  if (!(*host)->up()) return Error{EIO, ctx, "host interface " + e.hostIfname + " is down"};
  auto routes = host_.routes();
  if (!routes) return kernel(routes.error());
  if (std::none_of(routes->begin(), routes->end(), [&](const routing::Route& r) {
        return r.dst == Cidr{e.ip, 32} && r.oif == (*host)->ifindex;
      }))
    return Error{EIO, ctx, "host route " + e.ip.str() + "/32 dev " + e.hostIfname + " is missing"};
  auto podNl = routing::Netlink::openIn(netns.empty() ? e.netns : netns);
  if (!podNl) return Error{ENOENT, ctx, "network namespace " + (netns.empty() ? e.netns : netns) + " does not exist"};
  auto pod = (*podNl)->linkByName(e.ifname);
  if (!pod) return kernel(pod.error());
  if (!*pod) return Error{EIO, ctx, "interface " + e.ifname + " is missing in " + netns};
  if (!(*pod)->up()) return Error{EIO, ctx, "interface " + e.ifname + " is down in " + netns};
  auto addrs = (*podNl)->addresses();
  if (!addrs) return kernel(addrs.error());
  if (std::none_of(addrs->begin(), addrs->end(), [&](const routing::Address& a) {
        return a.ifindex == (*pod)->ifindex && a.ip == e.ip && a.prefix == 32;
      }))
    return Error{EIO, ctx, "address " + e.ip.str() + "/32 is missing on " + e.ifname};
  auto podRoutes = (*podNl)->routes();
  if (!podRoutes) return kernel(podRoutes.error());
  const Ipv4 router = ipam_->router();
  if (std::none_of(podRoutes->begin(), podRoutes->end(), [&](const routing::Route& r) {
        return r.dst.prefix == 0 && r.gateway == router && r.oif == (*pod)->ifindex;
      }))
    return Error{EIO, ctx, "default route via " + router.str() + " is missing in " + netns};
  return e;
}

std::vector<Endpoint> Manager::gc(const std::set<std::pair<std::string, std::string>>& valid) {
  std::vector<Endpoint> released;
  const std::vector<Endpoint> all = state_.endpoints;
  for (const Endpoint& e : all) {
    if (valid.count({e.containerId, e.ifname})) continue;
    if (Status st = del(e.containerId, e.ifname, e.netns); st)
      released.push_back(e);
    else
      NP_LOG_WARN("endpoint", "GC of %s: %s", e.key().c_str(), st.error().message().c_str());
  }
  return released;
}

}  // namespace np::endpoint
