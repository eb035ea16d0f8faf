// The node's datapath: loads the programs with this node's configuration, pins and adopts maps
// under <bpf-root>/nodepath, attaches to the native devices and the cgroup, and reports what is
// attached right now (read back from the kernel, never from configuration alone).
//
// Programs keep running when the agent exits: tc filters and pinned links outlive it. Dropping
// this object releases only the agent's handles.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bpf/attach.h"
#include "bpf/map.h"
#include "core/config.h"
#include "core/nodes.h"
#include "core/result.h"
#include "ct/bpf_tables.h"
#include "ct/gc.h"
#include "datapath/drop_reasons.h"  // dropReasonName()
#include "datapath/lb_maps.h"
#include "datapath/lxc_endpoints.h"
#include "datapath/programs.h"
#include "np_drop.h"
#include "np_xdp.h"

namespace np::datapath {

struct DeviceInfo {
  std::string name;
  int ifindex = 0;
  std::array<uint8_t, 6> mac{};
  Ipv4 ipv4;
  bool directRouting = false;
};

// Reads a device's index, MAC and first IPv4 address (in the agent's network namespace).
Result<DeviceInfo> deviceInfo(const std::string& name);
// Devices with a global IPv4 address that are up, except loopback and our own pod devices.
std::vector<std::string> autoDevices();
// The device's driver as ethtool names it ("veth", "macvlan"), "" if it does not say.
std::string driverName(const std::string& device);
// Where a device's XDP link is pinned: <pinDir>/links/xdp_<device>.
std::string xdpLinkPath(const std::string& pinDir, const std::string& device);
// Where a device's tcx link is pinned: <pinDir>/links/tcx_<device>_ingress (or _egress).
std::string tcxLinkPath(const std::string& pinDir, const std::string& device, bpf::TcDirection dir);

// What XDP does on a device, by --bpf-lb-acceleration and what the device could take.
enum class XdpMode {
  Off,         // acceleration disabled
  Native,      // our XDP program in driver mode
  TcFallback,  // best-effort, and the device cannot take native XDP: tc alone
};
const char* xdpModeName(XdpMode m);  // "off", "native", "tc fallback"

struct DeviceState {
  DeviceInfo info;
  bool ingress = false;  // our program runs on the device's tc ingress hook now
  bool egress = false;
  bpf::TcLink tcLink = bpf::TcLink::Tcx;  // how (tcx link, or clsact filter on older kernels)
  XdpMode xdpMode = XdpMode::Off;  // what the agent set up
  std::string xdpFallback;         // TcFallback: why the device cannot take native XDP
  bool xdpAttached = false;        // Native: our program is the device's driver-mode XDP program now
  bool xdpHandOff = true;          // Native: XDP marks what it passes on for tc (XdpProgram::handOff)
  std::array<np_metric, NP_XDP_STATS> xdpStats{};  // Native: counters of this device's program
};

struct MapState {
  std::string name;
  uint32_t maxEntries = 0;
  uint32_t entries = 0;
  bool lru = false;  // evicts when full instead of refusing inserts
};

struct CounterRow {
  uint32_t direction = 0;  // enum np_metric_dir
  uint32_t reason = 0;     // 0 = forwarded
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

const char* metricDirectionName(uint32_t dir);

class Datapath {
 public:
  static Result<std::unique_ptr<Datapath>> start(const Config& config);

  lb::LbMaps& lbMaps() { return *lbMaps_; }
  Status setNodes(const std::vector<NodeEntry>& nodes);

  std::vector<DeviceState> deviceStates() const;
  // Hooks of ours attached to the cgroup now.
  std::vector<std::string> socketHooksAttached() const;
  static constexpr size_t kSocketHooks = 5;  // connect4, sendmsg4, recvmsg4, getpeername4, sock_release
  // The loaded socket-LB programs emit socket-translation flow events (read back from them).
  bool socketLbTracing() const;
  std::vector<MapState> mapStates() const;
  std::vector<CounterRow> counters() const;
  // The conntrack GC over this datapath's tables; runs are scheduled by the caller (ct::GcLoop).
  ct::Gc& conntrackGc() { return *ctGc_; }
  const ct::Gc& conntrackGc() const { return *ctGc_; }
  // The conntrack tables themselves, for listing. Safe from any thread: reads go straight to the
  // kernel through map fds that live as long as the datapath.
  ct::Tables& conntrackTables() { return *ctTables_; }

  const std::string& pinDir() const { return pinDir_; }
  const std::string& cgroupPath() const { return cgroupPath_; }
  bool adoptedPins() const { return adoptedPins_; }
  Ipv4 nodeIp() const { return nodeIp_; }
  // Source ports of SNAT'd flows (snatPortRange() of the config and the node's ephemeral ports).
  PortRange snatPorts() const { return snatPorts_; }
  PortRange masqPorts() const { return masqPorts_; }
  // Every device's loaded program masquerades pod traffic (read back from the programs).
  bool masquerading() const;
  const std::vector<DeviceInfo>& devices() const { return devices_; }
  // The LB mode the loaded tc programs run with (all devices load the same one).
  LbMode lbMode() const;
  // Pod endpoints: np_lxc4_v1 and lxc.bpf.c on each pod veth.
  LxcEndpoints& lxcEndpoints() { return *lxc_; }
  const LxcEndpoints& lxcEndpoints() const { return *lxc_; }
  // Host routing the loaded programs run with: BPF (redirects), or Legacy (the stack) and why.
  bool bpfHostRouting() const { return bpfHostRouting_; }
  const std::string& legacyRoutingReason() const { return legacyRoutingReason_; }

 private:
  Datapath() = default;

  std::string pinDir_;
  std::string cgroupPath_;
  bpf::Fd cgroupFd_;
  bool adoptedPins_ = false;
  Ipv4 nodeIp_;
  PortRange snatPorts_;
  PortRange masqPorts_;
  std::vector<DeviceInfo> devices_;
  std::unique_ptr<SockProgram> sock_;
  std::vector<std::unique_ptr<HostProgram>> hosts_;
  // Per device (same index as devices_): the loaded XDP program when acceleration is on (null
  // when disabled or fallen back), and the mode with the fallback reason.
  std::vector<std::unique_ptr<XdpProgram>> xdps_;
  std::vector<XdpMode> xdpModes_;
  std::vector<std::string> xdpFallbacks_;
  std::vector<bpf::TcLink> tcLinks_;  // per device, how its tc programs are attached
  Status attachTcx();  // the native devices' tc programs, as tcx links where the kernel has them
  Status attachXdp(const Config& c);
  std::optional<BpfLbMaps> lbMaps_;
  std::optional<ct::BpfTables> ctTables_;
  std::unique_ptr<ct::Gc> ctGc_;
  std::unique_ptr<LxcEndpoints> lxc_;
  bool bpfHostRouting_ = false;
  std::string legacyRoutingReason_;
};

}  // namespace np::datapath
