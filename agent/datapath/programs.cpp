// The one translation unit that includes the BPF skeletons.
#include "datapath/programs.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "bpf/map.h"
#include "core/log.h"
#include "np_abi.h"
#include "np_config.h"  // the skeletons' .rodata structs
#include "np_lxc.h"     // np_pod_config
#include "host.skel.h"
#include "sock.skel.h"
#include "xdp.skel.h"
#include "lxc.skel.h"

namespace np::datapath {
namespace {

template <typename Skel>
int findMapFd(bpf_object* obj, const std::string& name) {
  bpf_map* m = bpf_object__find_map_by_name(obj, name.c_str());
  return m ? bpf_map__fd(m) : -1;
}

int libbpfPrint(libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  vsnprintf(buf, sizeof buf, fmt, ap);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  // bpf_tc_hook_create() on an existing clsact qdisc: expected on every restart. Looking for an
  // older agent's clsact filter on a device without a clsact qdisc (tcx): expected on every start.
  if (line.find("Exclusivity flag on") != std::string::npos ||
      line.find("Parent Qdisc doesn't exists") != std::string::npos)
    return 0;
  if (level == LIBBPF_WARN) NP_LOG_WARN("libbpf", "%s", line.c_str());
  else NP_LOG_DEBUG("libbpf", "%s", line.c_str());
  return 0;
}

}  // namespace

void routeLibbpfLogs() { libbpf_set_print(libbpfPrint); }

MapSizes MapSizes::fromConfig(const Config& c) {
  MapSizes s;
  s.services = c.lbMapMax;
  s.backends = c.lbMapMax;
  // revNat keeps its default whatever bpf-lb-map-max says: it holds every service ID.
  s.ct = c.ctMapMax;
  s.ctEmbryonic = c.ctEmbryonicMax;
  s.affinity = c.affinityMapMax;
  s.affinityMatch = c.lbMapMax;
  s.frag = c.fragMapMax;
  s.events = c.eventsMapSize;
  return s;
}

uint32_t MapSizes::of(const std::string& mapName) const {
  const std::pair<const char*, uint32_t> table[] = {
      {NP_STR(NP_MAP_SERVICES), services}, {NP_STR(NP_MAP_BACKENDS), backends},
      {NP_STR(NP_MAP_REVNAT), revNat},
      {NP_STR(NP_MAP_CT), ct},             {NP_STR(NP_MAP_CT_EMBRYONIC), ctEmbryonic},
      {NP_STR(NP_MAP_NODES), nodes},       {NP_STR(NP_MAP_FRAG), frag},
      {NP_STR(NP_MAP_AFFINITY), affinity}, {NP_STR(NP_MAP_AFFINITY_MATCH), affinityMatch},
      {NP_STR(NP_MAP_MAGLEV), maglev},     {NP_STR(NP_MAP_EVENTS), events},
  };
  for (const auto& [name, size] : table)
    if (mapName == name) return size;
  return 0;  // fixed-size map (metrics, conntrack counters, scratch)
}

Status sizeMaps(bpf_object* obj, const std::string& pinDir, const MapSizes& sizes) {
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    std::string name = bpf_map__name(map);
    if (name.rfind("np_", 0) != 0) continue;  // .rodata and friends
    uint32_t want = sizes.of(name);
    std::string pin = pinDir + "/" + name;
    int fd = bpf_obj_get(pin.c_str());
    if (fd >= 0) {
      auto info = bpf::mapInfo(fd);
      close(fd);
      if (!info) return info.error();
      if (info->keySize != bpf_map__key_size(map) || info->valueSize != bpf_map__value_size(map))
        return error("adopt pinned map " + pin,
                     "its layout differs from this agent's; a new layout needs a new map name (run agentctl cleanup)");
      if (want != 0 && info->maxEntries != want)
        NP_LOG_WARN("datapath", "pinned map %s keeps its %u entries (configured: %u); it cannot be resized without losing state",
                    name.c_str(), info->maxEntries, want);
      want = info->maxEntries;
    }
    if (want != 0 && bpf_map__set_max_entries(map, want) != 0) return sysError("size map " + name);
  }
  return {};
}

namespace {

// After sizeMaps(): the events ring's size is the one it is loaded with (a pinned ring's, which
// may differ from the configured one), so the wakeup threshold is a quarter of that.
template <typename Skel>
void setTrace(Skel* skel, const TraceParams& t) {
  auto& cfg = skel->rodata->np_trace_cfg;
  cfg.enabled = t.enabled ? 1 : 0;
  cfg.aggregation = t.aggregation;
  cfg.interval_s = t.intervalSec;
  cfg.wakeup_bytes = bpf_map__max_entries(skel->maps.NP_MAP_EVENTS) / 4;
}

uint8_t toBpf(LbMode m) {
  switch (m) {
    case LbMode::Dsr: return NP_LB_MODE_DSR;
    case LbMode::Hybrid: return NP_LB_MODE_HYBRID;
    case LbMode::Snat: break;
  }
  return NP_LB_MODE_SNAT;
}

void setMasq(volatile np_masq_config& m, const HostParams& p) {
  m.enabled = p.masquerade ? 1 : 0;
  const uint32_t mask = p.masqCidr.prefix ? htonl(~uint32_t{0} << (32 - p.masqCidr.prefix)) : 0;
  m.cidr = p.masqCidr.addr.be & mask;
  m.cidr_mask = mask;
  m.port_min = p.masqPortMin;
  m.port_max = p.masqPortMax;
}

}  // namespace

Result<std::unique_ptr<HostProgram>> HostProgram::load(const std::string& pinDir, const MapSizes& sizes,
                                                       const HostParams& p) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  host_bpf* skel = host_bpf__open_opts(&opts);
  if (!skel) return sysError("open host.bpf.o");
  std::unique_ptr<HostProgram> prog(new HostProgram(skel, p));
  NP_TRY(sizeMaps(skel->obj, pinDir, sizes));
  auto& cfg = skel->rodata->np_nodeport_cfg;
  cfg.node_ip = p.nodeIp.be;
  cfg.snat_port_min = p.snatPortMin;
  cfg.snat_port_max = p.snatPortMax;
  skel->rodata->np_lb_cfg.algorithm = p.lb.maglev ? NP_LB_ALG_MAGLEV : NP_LB_ALG_RANDOM;
  skel->rodata->np_lb_cfg.maglev_table_size = p.lb.maglevTableSize;
  cfg.lb_mode = toBpf(p.lbMode);
  setMasq(skel->rodata->np_masq_cfg, p);
  skel->rodata->np_pod_cfg.bpf_host_routing = p.bpfHostRouting ? 1 : 0;
  setTrace(skel, p.trace);
  int rc = host_bpf__load(skel);
  if (rc != 0) return sysError("load host.bpf.o for " + p.device, -rc);
  return prog;
}

HostProgram::~HostProgram() { host_bpf__destroy(skel_); }

LbMode HostProgram::loadedLbMode() const {
  switch (skel_->rodata->np_nodeport_cfg.lb_mode) {
    case NP_LB_MODE_DSR: return LbMode::Dsr;
    case NP_LB_MODE_HYBRID: return LbMode::Hybrid;
    default: return LbMode::Snat;
  }
}
bool HostProgram::loadedMasquerade() const { return skel_->rodata->np_masq_cfg.enabled != 0; }
int HostProgram::fromNetdevFd() const { return bpf_program__fd(skel_->progs.np_from_netdev); }
int HostProgram::toNetdevFd() const { return bpf_program__fd(skel_->progs.np_to_netdev); }
int HostProgram::mapFd(const std::string& name) const { return findMapFd<host_bpf>(skel_->obj, name); }

// Every call of `helper` in the object's programs becomes `r0 = ret`, before load. The 6.x
// verifier checks each helper call's availability over the whole program text, reachable or
// not, so a call that read-only data makes dead (lib/xfer.h: np_xfer_meta) still keeps the
// program from loading on a kernel that lacks the helper. The callers treat ret as the helper's
// failure. Written here: libbpf offers the instruction access this is built on, nothing more.
Status withoutHelper(bpf_object* obj, int helper, int32_t ret) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    const bpf_insn* in = bpf_program__insns(prog);
    const size_t n = bpf_program__insn_cnt(prog);
    std::vector<bpf_insn> insns(in, in + n);
    bool changed = false;
    for (bpf_insn& i : insns) {
      if (i.code == (BPF_JMP | BPF_CALL) && i.src_reg == 0 && i.imm == helper) {
        i = bpf_insn{};
        i.code = BPF_ALU64 | BPF_MOV | BPF_K;
        i.dst_reg = BPF_REG_0;
        i.imm = ret;
        changed = true;
      }
    }
    if (changed) {
      int rc = bpf_program__set_insns(prog, insns.data(), insns.size());
      if (rc != 0) return sysError(std::string("rewrite the helper calls of ") + bpf_program__name(prog), -rc);
    }
  }
  return {};
}

Result<std::unique_ptr<XdpProgram>> XdpProgram::load(const std::string& pinDir, const MapSizes& sizes,
                                                     const HostParams& p) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  xdp_bpf* skel = xdp_bpf__open_opts(&opts);
  if (!skel) return sysError("open xdp.bpf.o");
  std::unique_ptr<XdpProgram> prog(new XdpProgram(skel, p));
  NP_TRY(sizeMaps(skel->obj, pinDir, sizes));
  auto& cfg = skel->rodata->np_nodeport_cfg;
  cfg.node_ip = p.nodeIp.be;
  cfg.snat_port_min = p.snatPortMin;
  cfg.snat_port_max = p.snatPortMax;
  cfg.lb_mode = toBpf(p.lbMode);
  skel->rodata->np_lb_cfg.algorithm = p.lb.maglev ? NP_LB_ALG_MAGLEV : NP_LB_ALG_RANDOM;
  skel->rodata->np_lb_cfg.maglev_table_size = p.lb.maglevTableSize;
  skel->rodata->np_xfer_meta = p.xdpHandOff && kernelHasXdpMetadata() ? 1 : 0;
  prog->handOff_ = skel->rodata->np_xfer_meta != 0;
  if (!prog->handOff_) NP_TRY(withoutHelper(skel->obj, BPF_FUNC_xdp_adjust_meta, -EOPNOTSUPP));
  setTrace(skel, p.trace);
  int rc = xdp_bpf__load(skel);
  if (rc != 0) return sysError("load xdp.bpf.o for " + p.device, -rc);
  return prog;
}

XdpProgram::~XdpProgram() { xdp_bpf__destroy(skel_); }
int XdpProgram::entryFd() const { return bpf_program__fd(skel_->progs.np_xdp_entry); }
int XdpProgram::mapFd(const std::string& name) const { return findMapFd<xdp_bpf>(skel_->obj, name); }

Result<std::unique_ptr<SockProgram>> SockProgram::load(const std::string& pinDir, const MapSizes& sizes,
                                                       const SockParams& p) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  sock_bpf* skel = sock_bpf__open_opts(&opts);
  if (!skel) return sysError("open sock.bpf.o");
  std::unique_ptr<SockProgram> prog(new SockProgram(skel));
  NP_TRY(sizeMaps(skel->obj, pinDir, sizes));
  skel->rodata->np_cfg.node_ip = p.nodeIp.be;
  skel->rodata->np_cfg.nodeport_min = p.nodePortMin;
  skel->rodata->np_cfg.nodeport_max = p.nodePortMax;
  skel->rodata->np_lb_cfg.algorithm = p.lb.maglev ? NP_LB_ALG_MAGLEV : NP_LB_ALG_RANDOM;
  skel->rodata->np_lb_cfg.maglev_table_size = p.lb.maglevTableSize;
  setTrace(skel, p.trace);
  int rc = sock_bpf__load(skel);
  if (rc != 0) return sysError("load sock.bpf.o", -rc);
  return prog;
}

SockProgram::~SockProgram() { sock_bpf__destroy(skel_); }
bool SockProgram::loadedTracing() const { return skel_->rodata->np_trace_cfg.enabled != 0; }

std::array<SockProgram::Hook, 5> SockProgram::hooks() const {
  return {{{"connect4", skel_->progs.np_sock4_connect, BPF_CGROUP_INET4_CONNECT},
           {"sendmsg4", skel_->progs.np_sock4_sendmsg, BPF_CGROUP_UDP4_SENDMSG},
           {"recvmsg4", skel_->progs.np_sock4_recvmsg, BPF_CGROUP_UDP4_RECVMSG},
           {"getpeername4", skel_->progs.np_sock4_getpeername, BPF_CGROUP_INET4_GETPEERNAME},
           {"sock_release", skel_->progs.np_sock_release, BPF_CGROUP_INET_SOCK_RELEASE}}};
}

int SockProgram::mapFd(const std::string& name) const { return findMapFd<sock_bpf>(skel_->obj, name); }

Result<std::unique_ptr<LxcProgram>> LxcProgram::load(const std::string& pinDir, const MapSizes& sizes,
                                                     const LxcParams& p) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir.c_str());
  lxc_bpf* skel = lxc_bpf__open_opts(&opts);
  if (!skel) return sysError("open lxc.bpf.o");
  std::unique_ptr<LxcProgram> prog(new LxcProgram(skel, p));
  NP_TRY(sizeMaps(skel->obj, pinDir, sizes));
  skel->rodata->np_pod_cfg.bpf_host_routing = p.bpfHostRouting ? 1 : 0;
  skel->rodata->np_lb_cfg.algorithm = p.lb.maglev ? NP_LB_ALG_MAGLEV : NP_LB_ALG_RANDOM;
  skel->rodata->np_lb_cfg.maglev_table_size = p.lb.maglevTableSize;
  setTrace(skel, p.trace);
  int rc = lxc_bpf__load(skel);
  if (rc != 0) return sysError("load lxc.bpf.o", -rc);
  return prog;
}

LxcProgram::~LxcProgram() { lxc_bpf__destroy(skel_); }
int LxcProgram::fromContainerFd() const { return bpf_program__fd(skel_->progs.np_from_container); }
int LxcProgram::toContainerFd() const { return bpf_program__fd(skel_->progs.np_to_container); }
int LxcProgram::mapFd(const std::string& name) const { return findMapFd<lxc_bpf>(skel_->obj, name); }

// Loads `bpf_xdp_adjust_meta(ctx, 0); return 0;` as XDP. Not libbpf_probe_bpf_helper(): the
// libbpf this builds with recognises only older verifiers' words for a helper the program type
// may not call, and takes "program of this type cannot use helper" for support.
bool kernelHasXdpMetadata() {
  static const bool has = [] {
    bpf_insn insns[4] = {};
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r2 = 0 (r1 is the context)
    insns[0].dst_reg = BPF_REG_2;
    insns[1].code = BPF_JMP | BPF_CALL;
    insns[1].imm = BPF_FUNC_xdp_adjust_meta;
    insns[2].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = 0
    insns[2].dst_reg = BPF_REG_0;
    insns[3].code = BPF_JMP | BPF_EXIT;
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "np_probe_meta", "GPL", insns, 4, nullptr);
    if (fd < 0) return false;
    close(fd);
    return true;
  }();
  return has;
}

bool kernelHasBpfHostRouting(std::string* why) {
  for (auto [helper, name] : {std::pair{BPF_FUNC_redirect_peer, "bpf_redirect_peer"},
                              std::pair{BPF_FUNC_redirect_neigh, "bpf_redirect_neigh"}}) {
    if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, helper, nullptr) != 1) {
      if (why) *why = std::string("kernel lacks ") + name;
      return false;
    }
  }
  return true;
}

}  // namespace np::datapath
