#include "datapath/datapath.h"

#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "bpf/attach.h"
#include "core/fs.h"
#include "core/log.h"
#include "np_abi.h"
#include "routing/netlink.h"

namespace np::datapath {

const char* metricDirectionName(uint32_t dir) {
  switch (dir) {
    case NP_METRIC_INGRESS: return "ingress";
    case NP_METRIC_EGRESS: return "egress";
    case NP_METRIC_SOCK: return "socket";
  }
  return "?";
}

const char* xdpModeName(XdpMode m) {
  switch (m) {
    case XdpMode::Off: return "off";
    case XdpMode::Native: return "native";
    case XdpMode::TcFallback: return "tc fallback";
  }
  return "?";
}

std::string driverName(const std::string& device) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", device.c_str());
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  int rc = ioctl(s, SIOCETHTOOL, &ifr);
  close(s);
  if (rc != 0) return "";
  return std::string(info.driver, strnlen(info.driver, sizeof info.driver));
}

std::string xdpLinkPath(const std::string& pinDir, const std::string& device) {
  return pinDir + "/links/xdp_" + device;
}

std::string tcxLinkPath(const std::string& pinDir, const std::string& device, bpf::TcDirection dir) {
  return pinDir + "/links/tcx_" + device + "_" + bpf::tcDirectionName(dir);
}

// Device discovery goes through rtnetlink (libmnl): one dump of links and one of addresses.
Result<DeviceInfo> deviceInfo(const std::string& name) {
  auto nl = routing::Netlink::open();
  if (!nl) return nl.error();
  auto link = (*nl)->linkByName(name);
  if (!link) return link.error();
  if (!*link) return Error{ENODEV, "find device " + name, {}};
  DeviceInfo d;
  d.name = name;
  d.ifindex = (*link)->ifindex;
  d.mac = (*link)->mac;
  auto addrs = (*nl)->addresses();
  if (!addrs) return addrs.error();
  for (const routing::Address& a : *addrs) {
    if (a.ifindex != d.ifindex) continue;
    d.ipv4 = a.ip;
    break;
  }
  if (d.ipv4.isZero()) return error("device " + name, "has no IPv4 address");
  return d;
}

std::vector<std::string> autoDevices() {
  std::vector<std::string> out;
  auto nl = routing::Netlink::open();
  if (!nl) return out;
  auto links = (*nl)->links();
  auto addrs = (*nl)->addresses();
  if (!links || !addrs) return out;
  for (const routing::Address& a : *addrs) {
    auto link = std::find_if(links->begin(), links->end(), [&](const routing::Link& l) { return l.ifindex == a.ifindex; });
    if (link == links->end() || !link->up() || (link->flags & IFF_LOOPBACK)) continue;
    const std::string& n = link->name;
    if (n.rfind("lxc", 0) == 0 || n.rfind("np_", 0) == 0) continue;
    if (a.ip.isLoopback() || (a.ip.host() >> 16) == 0xa9fe) continue;  // link-local
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

Result<std::unique_ptr<Datapath>> Datapath::start(const Config& c) {
  routeLibbpfLogs();
  std::unique_ptr<Datapath> dp(new Datapath());

  std::vector<std::string> names = c.devices.empty() ? autoDevices() : c.devices;
  if (names.empty()) return error("find native devices", "none has a global IPv4 address; set --devices");
  std::string direct = c.directRoutingDevice.empty() ? names.front() : c.directRoutingDevice;
  if (std::find(names.begin(), names.end(), direct) == names.end())
    return error("--direct-routing-device " + direct, "is not one of --devices");
  for (const std::string& n : names) {
    auto d = deviceInfo(n);
    if (!d) return d.error();
    d->directRouting = n == direct;
    if (d->directRouting) dp->nodeIp_ = d->ipv4;
    dp->devices_.push_back(*d);
  }

  // Before anything is loaded: a SNAT range that collides with the node's own ports is a
  // configuration error, not something to find out from connections that fail.
  auto ephemeral = readLocalPortRange();
  if (!ephemeral) return ephemeral.error();
  auto snat = snatPortRange(c, *ephemeral);
  if (!snat) return snat.error();
  dp->snatPorts_ = *snat;
  NP_LOG_INFO("datapath", "SNAT source ports %s (%s; node-port-range %u-%u, ip_local_port_range %s)",
              snat->str().c_str(), c.snatPorts.size() ? "--bpf-lb-snat-port-range" : "auto", c.nodePortMin,
              c.nodePortMax, ephemeral->str().c_str());
  // Unconfirmed flows (a SYN flood) hold a SNAT port each, at most ctEmbryonicMax / 2 of them per
  // backend: a range smaller than twice that can be emptied by a flood.
  if (snat->size() < c.ctEmbryonicMax)
    NP_LOG_WARN("datapath",
                "SNAT source ports %s are %u per backend, fewer than twice the %u unconfirmed flows the embryonic "
                "conntrack table holds: a SYN flood can take all of them. Narrow net.ipv4.ip_local_port_range "
                "(e.g. to 32768-49151) or set --bpf-lb-snat-port-range",
                snat->str().c_str(), snat->size(), c.ctEmbryonicMax / 2);

  auto masq = masqPortRange(c, *ephemeral, *snat);
  if (!masq) return masq.error();
  dp->masqPorts_ = *masq;
  if (c.enableBpfMasquerade)
    NP_LOG_INFO("datapath", "BPF masquerade of pod traffic leaving %s: source ports %s",
                c.nativeRoutingCidr.str().c_str(), masq->str().c_str());

  NP_TRY(fs::ensureBpffs(c.bpfRoot));
  dp->pinDir_ = c.bpfRoot + "/nodepath";
  dp->adoptedPins_ = fs::exists(dp->pinDir_ + "/" NP_STR(NP_MAP_SERVICES));
  NP_TRY(fs::makeDirs(dp->pinDir_ + "/links", 0700));

  if (c.cgroupRoot.empty()) {
    auto mount = fs::findCgroup2Mount();
    if (!mount) {
      // No cgroup2 anywhere: mount one of our own, as Cilium does.
      const std::string own = "/run/nodepath/cgroupv2";
      NP_TRY(fs::makeDirs(own));
      if (!fs::isCgroup2(own) && ::mount("none", own.c_str(), "cgroup2", 0, nullptr) != 0)
        return sysError("mount cgroup2 at " + own);
      dp->cgroupPath_ = own;
    } else {
      dp->cgroupPath_ = *mount;
    }
  } else {
    dp->cgroupPath_ = c.cgroupRoot;
  }
  if (!fs::isCgroup2(dp->cgroupPath_)) return error("--cgroup-root " + dp->cgroupPath_, "is not a cgroup v2 directory");
  dp->cgroupFd_ = bpf::Fd(open(dp->cgroupPath_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dp->cgroupFd_) return sysError("open cgroup " + dp->cgroupPath_);

  const MapSizes sizes = MapSizes::fromConfig(c);
  const LbParams lb{c.lbAlgorithm == LbAlgorithm::Maglev, c.maglevTableSize};
  const TraceParams trace{c.enableHubble, c.monitorAggregation, c.monitorAggregationIntervalSec};
  auto sock = SockProgram::load(dp->pinDir_, sizes, {dp->nodeIp_, c.nodePortMin, c.nodePortMax, lb, trace});
  if (!sock) return sock.error();
  dp->sock_ = std::move(*sock);

  if (c.enableHostLegacyRouting) dp->legacyRoutingReason_ = "--enable-host-legacy-routing";
  else if (kernelHasBpfHostRouting(&dp->legacyRoutingReason_)) dp->bpfHostRouting_ = true;
  auto lxc = LxcProgram::load(dp->pinDir_, sizes, {dp->bpfHostRouting_, lb, trace});
  if (!lxc) return lxc.error();
  auto lxcEndpoints = LxcEndpoints::of(std::move(*lxc));
  if (!lxcEndpoints) return lxcEndpoints.error();
  dp->lxc_ = std::move(*lxcEndpoints);

  for (const DeviceInfo& d : dp->devices_) {
    HostParams hp;
    hp.bpfHostRouting = dp->bpfHostRouting_;
    hp.device = d.name;
    hp.ifindex = d.ifindex;
    hp.nodeIp = d.ipv4;
    hp.snatPortMin = dp->snatPorts_.min;
    hp.snatPortMax = dp->snatPorts_.max;
    hp.lb = lb;
    hp.lbMode = c.lbMode;
    hp.masquerade = c.enableBpfMasquerade;
    hp.masqCidr = c.nativeRoutingCidr;
    hp.masqPortMin = dp->masqPorts_.min;
    hp.masqPortMax = dp->masqPorts_.max;
    hp.trace = trace;
    auto host = HostProgram::load(dp->pinDir_, sizes, hp);
    if (!host) return host.error();
    dp->hosts_.push_back(std::move(*host));
    std::unique_ptr<XdpProgram> xdp;
    if (c.lbAcceleration != LbAcceleration::Disabled) {
      auto loaded = XdpProgram::load(dp->pinDir_, sizes, hp);
      if (!loaded) return loaded.error();
      if (!(*loaded)->handOff())
        NP_LOG_WARN("datapath", "%s: this kernel does not let XDP call bpf_xdp_adjust_meta: XDP forwards known flows "
                    "out of devices and leaves new flows and flows to local backends to tc", d.name.c_str());
      xdp = std::move(*loaded);
    }
    dp->xdps_.push_back(std::move(xdp));
    dp->xdpModes_.push_back(c.lbAcceleration == LbAcceleration::Disabled ? XdpMode::Off : XdpMode::Native);
    dp->xdpFallbacks_.emplace_back();
  }

  auto maps = BpfLbMaps::of(dp->sock_->mapFd(NP_STR(NP_MAP_SERVICES)), dp->sock_->mapFd(NP_STR(NP_MAP_BACKENDS)),
                            dp->sock_->mapFd(NP_STR(NP_MAP_REVNAT)), dp->sock_->mapFd(NP_STR(NP_MAP_AFFINITY_MATCH)),
                            dp->sock_->mapFd(NP_STR(NP_MAP_MAGLEV)), c.maglevTableSize);
  if (!maps) return maps.error();
  dp->lbMaps_.emplace(std::move(*maps));
  // Before the programs attach: until the reconciler's first dump() the bitmap says "incomplete".
  NP_TRY(dp->lbMaps_->trackPorts(dp->sock_->mapFd(NP_STR(NP_MAP_PORTS)), {dp->snatPorts_, dp->masqPorts_}));
  NP_TRY(dp->lbMaps_->trackLiveBackends(dp->sock_->mapFd(NP_STR(NP_MAP_BACKEND_LIVE))));
  auto ct = ct::BpfTables::of(dp->sock_->mapFd(NP_STR(NP_MAP_CT)), dp->sock_->mapFd(NP_STR(NP_MAP_CT_EMBRYONIC)),
                              dp->sock_->mapFd(NP_STR(NP_MAP_CT_STATS)));
  if (!ct) return ct.error();
  dp->ctTables_.emplace(std::move(*ct));
  dp->ctGc_ = std::make_unique<ct::Gc>(*dp->ctTables_);

  // Attach last: everything the programs read exists by now. Attaching replaces the programs of
  // a previous agent atomically; the maps (and so every connection) carry over.
  NP_TRY(dp->attachTcx());
  // XDP after tc: tc alone is the whole datapath (and knows XDP's "done" marker), XDP only
  // takes work off it.
  NP_TRY(dp->attachXdp(c));
  // Every flow conntrack holds now (a previous agent's, made under other SNAT ranges or services
  // since deleted) keeps its port in the bitmap the reconciler's first dump writes; flows the
  // programs create from here on are made on ports that bitmap has (or learns, DSR).
  {
    std::vector<Ipv4> addrs;
    for (const DeviceInfo& d : dp->devices_) addrs.push_back(d.ipv4);
    auto seed = portsInConntrack(*dp->ctTables_, addrs);
    if (!seed) {
      // Every port then: every packet is looked up, as without the bitmap.
      NP_LOG_WARN("datapath", "conntrack could not be read for the ports bitmap (%s): every packet is looked up",
                  seed.error().message().c_str());
      seed = PortBitmap{};
      seed->fill(~uint64_t{0});
    }
    dp->lbMaps_->seedPorts(*seed);
  }
  for (const auto& hook : dp->sock_->hooks()) {
    const std::string link = dp->pinDir_ + "/links/sock4_" + hook.name;
    if (c.sockLb) {
      NP_TRY(bpf::attachCgroupPinned(hook.prog, dp->cgroupFd_.get(), link));
    } else if (unlink(link.c_str()) == 0) {
      // bpf-lb-sock=false: a previous agent's hook goes with its pin (the link's last reference).
      NP_LOG_INFO("datapath", "socket LB off: detached %s from the cgroup", hook.name);
    }
  }
  return dp;
}

bool Datapath::masquerading() const {
  return !hosts_.empty() &&
         std::all_of(hosts_.begin(), hosts_.end(), [](const auto& h) { return h->loadedMasquerade(); });
}

LbMode Datapath::lbMode() const { return hosts_.empty() ? LbMode::Snat : hosts_.front()->loadedLbMode(); }

Status Datapath::attachTcx() {
  // A device a previous agent ran on and this one does not: its tcx links go.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(pinDir_ + "/links", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("tcx_", 0) != 0) continue;
    const bool ours = std::any_of(devices_.begin(), devices_.end(), [&](const DeviceInfo& d) {
      return name == "tcx_" + d.name + "_ingress" || name == "tcx_" + d.name + "_egress";
    });
    if (!ours) NP_TRY(bpf::detachTcxPinned(entry.path().string(), name.substr(4)));
  }
  for (const auto& h : hosts_) {
    const HostParams& p = h->params();
    auto in = bpf::attachTcPinned(p.ifindex, bpf::TcDirection::Ingress, h->fromNetdevFd(), p.device,
                                  tcxLinkPath(pinDir_, p.device, bpf::TcDirection::Ingress));
    if (!in) return in.error();
    auto eg = bpf::attachTcPinned(p.ifindex, bpf::TcDirection::Egress, h->toNetdevFd(), p.device,
                                  tcxLinkPath(pinDir_, p.device, bpf::TcDirection::Egress));
    if (!eg) return eg.error();
    // One kernel, one answer: both hooks are tcx links, or (no tcx) both clsact filters.
    if (*in != *eg)
      return error("attach tc to " + p.device, std::string("ingress attached as ") + bpf::tcLinkName(*in) +
                                                   ", egress as " + bpf::tcLinkName(*eg));
    if (*in == bpf::TcLink::Clsact)
      NP_LOG_INFO("datapath", "%s: no tcx in this kernel, tc programs attached as clsact filters", p.device.c_str());
    tcLinks_.push_back(*in);
  }
  return {};
}

Status Datapath::attachXdp(const Config& c) {
  std::vector<std::string> created;  // links this start made, undone when native refuses
  // A device a previous agent accelerated and this one does not run on any more: its XDP goes.
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(pinDir_ + "/links", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("xdp_", 0) != 0) continue;
    const std::string device = name.substr(4);
    if (std::none_of(devices_.begin(), devices_.end(), [&](const DeviceInfo& d) { return d.name == device; }))
      NP_TRY(bpf::detachXdpPinned(entry.path().string(), device));
  }
  for (size_t i = 0; i < devices_.size(); ++i) {
    const DeviceInfo& d = devices_[i];
    const std::string link = xdpLinkPath(pinDir_, d.name);
    if (c.lbAcceleration == LbAcceleration::Disabled) {
      // Acceleration switched off: a previous agent's XDP goes away cleanly.
      NP_TRY(bpf::detachXdpPinned(link, d.name));
      continue;
    }
    const bool existed = fs::exists(link);
    Status st = bpf::attachXdpPinned(xdps_[i]->entryFd(), d.ifindex, d.name, link);
    if (st) {
      if (!existed) created.push_back(d.name);
      continue;
    }
    const std::string driver = driverName(d.name);
    std::string why = st.error().message();
    if (st.error().err == EOPNOTSUPP)
      why += " (driver " + (driver.empty() ? std::string("unknown") : driver) + " has no native XDP)";
    else if (!driver.empty())
      why += " (driver " + driver + ")";
    if (c.lbAcceleration == LbAcceleration::Native) {
      for (const std::string& name : created) (void)bpf::detachXdpPinned(xdpLinkPath(pinDir_, name), name);
      return Error{st.error().err, "--bpf-lb-acceleration=native",
                   "device " + d.name + " cannot take native XDP: " + why +
                       "; use --bpf-lb-acceleration=best-effort to run tc alone there"};
    }
    NP_LOG_WARN("datapath", "XDP acceleration (best-effort): %s falls back to tc: %s", d.name.c_str(), why.c_str());
    // Whatever a previous agent left there is not ours to keep.
    NP_TRY(bpf::detachXdpPinned(link, d.name));
    xdps_[i].reset();
    xdpModes_[i] = XdpMode::TcFallback;
    xdpFallbacks_[i] = why;
  }
  return {};
}

Status Datapath::setNodes(const std::vector<NodeEntry>& nodes) {
  auto map = bpf::Map<uint32_t, np_node_val>::of(sock_->mapFd(NP_STR(NP_MAP_NODES)));
  if (!map) return map.error();
  auto current = map->dump();
  if (!current) return current.error();
  std::set<uint32_t> want;
  uint32_t id = 1;
  for (const NodeEntry& n : nodes) {
    np_node_val v{};
    v.node_id = id++;
    v.flags = n.local ? NP_NODE_F_LOCAL : 0;
    NP_TRY(map->update(n.ip.be, v));
    want.insert(n.ip.be);
  }
  for (const auto& [ip, v] : *current)
    if (!want.count(ip)) NP_TRY(map->remove(ip));
  return {};
}

namespace {
// Whether the kernel runs progFd on ifindex's tc hook now, attached as link says: for tcx, first
// in the chain (a program ahead of ours that passes or drops would keep ours from seeing packets).
bool tcRuns(int ifindex, bpf::TcDirection dir, bpf::TcLink link, int progFd) {
  const uint32_t want = bpf::programId(progFd);
  if (want == 0) return false;
  if (link == bpf::TcLink::Clsact) {
    auto id = bpf::tcProgramId(ifindex, dir);
    return id.ok() && *id == want;
  }
  auto ids = bpf::tcxProgramIds(ifindex, dir);
  return ids.ok() && !ids->empty() && ids->front() == want;
}
}  // namespace

std::vector<DeviceState> Datapath::deviceStates() const {
  std::vector<DeviceState> out;
  for (size_t i = 0; i < devices_.size(); ++i) {
    DeviceState s{devices_[i]};
    s.tcLink = tcLinks_[i];  // attachTcx() made one per device
    s.ingress = tcRuns(devices_[i].ifindex, bpf::TcDirection::Ingress, s.tcLink, hosts_[i]->fromNetdevFd());
    s.egress = tcRuns(devices_[i].ifindex, bpf::TcDirection::Egress, s.tcLink, hosts_[i]->toNetdevFd());
    s.xdpMode = xdpModes_[i];
    s.xdpFallback = xdpFallbacks_[i];
    if (xdps_[i]) {
      auto x = bpf::xdpAttached(devices_[i].ifindex);
      s.xdpAttached = x.ok() && x->driverProgId != 0 && x->driverProgId == bpf::programId(xdps_[i]->entryFd());
      s.xdpHandOff = xdps_[i]->handOff();
      auto stats = bpf::sumPerCpuAll<np_metric>(xdps_[i]->mapFd(NP_STR(NP_MAP_XDP_STATS)), NP_XDP_STATS);
      if (stats) std::copy_n(stats->begin(), std::min<size_t>(stats->size(), NP_XDP_STATS), s.xdpStats.begin());
    }
    out.push_back(s);
  }
  return out;
}

bool Datapath::socketLbTracing() const { return sock_ && sock_->loadedTracing(); }

std::vector<std::string> Datapath::socketHooksAttached() const {
  static_assert(std::tuple_size_v<decltype(sock_->hooks())> == kSocketHooks);
  std::vector<std::string> out;
  for (const auto& hook : sock_->hooks()) {
    uint32_t ids[64];
    uint32_t count = 64, flags = 0;
    if (bpf_prog_query(cgroupFd_.get(), hook.type, 0, &flags, ids, &count) != 0) continue;
    uint32_t mine = bpf::programId(bpf_program__fd(hook.prog));
    if (std::find(ids, ids + count, mine) != ids + count) out.push_back(hook.name);
  }
  return out;
}

std::vector<MapState> Datapath::mapStates() const {
  std::vector<MapState> out;
  for (const char* name : {NP_STR(NP_MAP_SERVICES), NP_STR(NP_MAP_BACKENDS), NP_STR(NP_MAP_REVNAT),
                           NP_STR(NP_MAP_CT), NP_STR(NP_MAP_NODES), NP_STR(NP_MAP_FRAG),
                           NP_STR(NP_MAP_AFFINITY), NP_STR(NP_MAP_AFFINITY_MATCH), NP_STR(NP_MAP_MAGLEV),
                           NP_STR(NP_MAP_SOCK_REV_TCP)}) {
    int fd = sock_->mapFd(name);
    auto info = bpf::mapInfo(fd);
    if (!info) continue;
    auto n = bpf::detail::countEntries(fd, *info);
    out.push_back({name, info->maxEntries, n.ok() ? *n : 0,
                   info->type == BPF_MAP_TYPE_LRU_HASH || info->type == BPF_MAP_TYPE_LRU_PERCPU_HASH});
  }
  return out;
}

std::vector<CounterRow> Datapath::counters() const {
  std::vector<CounterRow> out;
  auto all = bpf::sumPerCpuAll<np_metric>(sock_->mapFd(NP_STR(NP_MAP_METRICS)), NP_METRICS_MAX);
  if (!all) return out;
  for (uint32_t idx = 0; idx < NP_METRICS_MAX; ++idx) {
    const np_metric& m = (*all)[idx];
    if (m.packets != 0) out.push_back({idx >> 8, idx & 0xff, m.packets, m.bytes});
  }
  return out;
}

}  // namespace np::datapath
