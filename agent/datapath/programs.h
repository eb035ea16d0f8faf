// Loading the BPF objects with this node's configuration. Maps are pinned by name under a pin
// directory; an object loaded later (another device, a restarted agent) adopts the pinned maps,
// keeping their size when it differs from the configured one (with a warning), since a pinned map
// cannot be resized without losing its state.
#pragma once

#include <linux/bpf.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/net.h"
#include "core/result.h"
#include "np_abi.h"
#include "np_trace.h"

struct host_bpf;
struct sock_bpf;
struct xdp_bpf;
struct lxc_bpf;
struct bpf_program;
struct bpf_object;

namespace np::datapath {

// Sends libbpf's warnings (verifier logs among them) to the agent's log; drops its debug chatter.
void routeLibbpfLogs();

// max_entries of the shared maps before load; defaults from np_abi.h, the one definition.
struct MapSizes {
  uint32_t services = NP_DEFAULT_LB_MAP_MAX;
  uint32_t backends = NP_DEFAULT_LB_MAP_MAX;
  uint32_t revNat = NP_DEFAULT_REVNAT_MAX;
  uint32_t ct = NP_DEFAULT_CT_MAX;
  uint32_t ctEmbryonic = NP_DEFAULT_CT_EMBRYONIC_MAX;
  uint32_t nodes = NP_DEFAULT_NODES_MAX;
  uint32_t affinity = NP_DEFAULT_AFFINITY_MAX;
  uint32_t affinityMatch = NP_DEFAULT_LB_MAP_MAX;  // at most one per service slot
  uint32_t maglev = NP_DEFAULT_MAGLEV_MAX;
  uint32_t frag = NP_DEFAULT_FRAG_MAX;
  uint32_t events = NP_DEFAULT_EVENTS_SIZE;  // bytes

  static MapSizes fromConfig(const Config& c);
  // The configured size of a map by its name (NP_MAP_*); 0 for a fixed-size map.
  uint32_t of(const std::string& mapName) const;
};

// Sets every np_ map's max_entries in an opened, not yet loaded object: the pinned map's under
// pinDir when there is one (it cannot be resized without losing state; a different configured
// size is logged), else the configured one. Fails when a pinned map's key or value size differs
// from the object's (a new layout needs a new map name). Any object that shares the pinned maps
// goes through this before load.
Status sizeMaps(bpf_object* obj, const std::string& pinDir, const MapSizes& sizes);

// Backend selection, the same for every object (np_lb_config).
struct LbParams {
  bool maglev = false;
  uint32_t maglevTableSize = NP_DEFAULT_MAGLEV_TABLE_SIZE;
};

// Flow events (np_trace_config), the same for every packet program.
struct TraceParams {
  bool enabled = false;
  uint8_t aggregation = 2;  // enum np_trace_aggregation
  uint16_t intervalSec = 5;
};

struct HostParams {
  std::string device;
  int ifindex = 0;
  Ipv4 nodeIp;
  uint16_t snatPortMin = NP_DEFAULT_SNAT_PORT_MIN;  // host order
  uint16_t snatPortMax = NP_DEFAULT_SNAT_PORT_MAX;
  LbParams lb;
  LbMode lbMode = LbMode::Snat;  // bpf-lb-mode
  // BPF masquerade (np_masq_config): pod traffic from masqCidr leaving it, not to a node.
  bool masquerade = false;
  Cidr masqCidr{Ipv4::fromHost(0x0a000000), 16};
  uint16_t masqPortMin = NP_DEFAULT_SNAT_PORT_MIN;  // host order
  uint16_t masqPortMax = NP_DEFAULT_SNAT_PORT_MAX;
  bool bpfHostRouting = false;   // deliver to local pods with bpf_redirect_peer (lib/pod.h)
  TraceParams trace;
  // xdp.bpf.o: false loads it as on a kernel without bpf_xdp_adjust_meta for XDP (tests); the
  // hand-off is used only where the kernel has it.
  bool xdpHandOff = true;
};

// One loaded instance of host.bpf.o, for one device.
class HostProgram {
 public:
  static Result<std::unique_ptr<HostProgram>> load(const std::string& pinDir, const MapSizes& sizes,
                                                   const HostParams& params);
  ~HostProgram();
  int fromNetdevFd() const;
  int toNetdevFd() const;
  // fd of a map by its name (e.g. "np_ct4_v1"), -1 if unknown.
  int mapFd(const std::string& name) const;
  const HostParams& params() const { return params_; }
  // The LB mode the loaded program runs with, read back from its .rodata.
  LbMode loadedLbMode() const;
  // Whether the loaded program masquerades, read back from its .rodata.
  bool loadedMasquerade() const;

 private:
  HostProgram(host_bpf* skel, HostParams params) : skel_(skel), params_(std::move(params)) {}
  host_bpf* skel_;
  HostParams params_;
};

// One loaded instance of xdp.bpf.o, for one device: the entry program (what is attached) and
// the stages it tail-calls, filled into its own program array at load. Same parameters as the
// device's HostProgram: both run the NodePort path with the same configuration.
class XdpProgram {
 public:
  static Result<std::unique_ptr<XdpProgram>> load(const std::string& pinDir, const MapSizes& sizes,
                                                  const HostParams& params);
  ~XdpProgram();
  int entryFd() const;
  int mapFd(const std::string& name) const;
  const HostParams& params() const { return params_; }
  // Whether packets XDP passes on carry the "done" marker for tc (lib/xfer.h): false on a kernel
  // without bpf_xdp_adjust_meta for XDP, where XDP leaves new flows and flows to local backends
  // to tc.
  bool handOff() const { return handOff_; }

 private:
  XdpProgram(xdp_bpf* skel, HostParams params) : skel_(skel), params_(std::move(params)) {}
  xdp_bpf* skel_;
  HostParams params_;
  bool handOff_ = true;
};

// Whether XDP programs may call bpf_xdp_adjust_meta here (probed once).
bool kernelHasXdpMetadata();

// Rewrites every call of `helper` in an opened, not yet loaded object to `r0 = ret`, so a kernel
// whose verifier refuses the helper for the program type loads it (the caller's code must take
// `ret` as the helper's failure). libbpf has no such option: it only drops whole programs.
Status withoutHelper(bpf_object* obj, int helper, int32_t ret);

struct SockParams {
  Ipv4 nodeIp;
  uint16_t nodePortMin = NP_DEFAULT_NODEPORT_MIN;  // host order
  uint16_t nodePortMax = NP_DEFAULT_NODEPORT_MAX;
  LbParams lb;
  TraceParams trace;  // socket-translation events (one per socket and new backend)
};

// The loaded sock.bpf.o: the socket-LB hooks.
class SockProgram {
 public:
  static Result<std::unique_ptr<SockProgram>> load(const std::string& pinDir, const MapSizes& sizes,
                                                   const SockParams& params);
  ~SockProgram();
  struct Hook {
    const char* name;  // "connect4", ...
    bpf_program* prog;
    bpf_attach_type type;
  };
  std::array<Hook, 5> hooks() const;  // Datapath::kSocketHooks
  int mapFd(const std::string& name) const;
  bool loadedTracing() const;  // emits socket-translation flow events (read back from .rodata)

 private:
  explicit SockProgram(sock_bpf* skel) : skel_(skel) {}
  sock_bpf* skel_;
};

struct LxcParams {
  bool bpfHostRouting = false;  // redirects (BPF host routing) or the stack (legacy)
  LbParams lb;
  TraceParams trace;            // its drops (spoofed sources, ...) are flow events too
};

// The loaded lxc.bpf.o: one instance serves every pod veth of the node (tc ingress: from the
// pod, tc egress: to the pod).
class LxcProgram {
 public:
  static Result<std::unique_ptr<LxcProgram>> load(const std::string& pinDir, const MapSizes& sizes,
                                                  const LxcParams& params);
  ~LxcProgram();
  int fromContainerFd() const;
  int toContainerFd() const;
  int mapFd(const std::string& name) const;
  const LxcParams& params() const { return params_; }

 private:
  LxcProgram(lxc_bpf* skel, LxcParams params) : skel_(skel), params_(params) {}
  lxc_bpf* skel_;
  LxcParams params_;
};

// Whether this kernel runs BPF host routing (bpf_redirect_peer and bpf_redirect_neigh in tc
// programs); the reason when it does not.
bool kernelHasBpfHostRouting(std::string* why);

}  // namespace np::datapath
