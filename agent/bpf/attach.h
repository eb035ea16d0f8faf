// Attaching programs to their hooks. The native devices' tc programs are tcx links (Linux 6.6+;
// on older kernels a clsact filter); pod devices' are clsact filters with a fixed handle/priority.
// Both outlive the agent. cgroup, XDP and tcx programs are bpf_links pinned next to the maps,
// which a restarted agent updates in place (atomically).
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"

namespace np::bpf {

enum class TcDirection { Ingress, Egress };
const char* tcDirectionName(TcDirection d);

inline constexpr uint32_t kTcHandle = 1;
inline constexpr uint32_t kTcPriority = 1;

// Attaches (or atomically replaces) our filter on ifindex.
Status attachTc(int ifindex, TcDirection dir, int progFd, const std::string& device);
// The ID of the program our filter runs now, 0 if none is attached.
Result<uint32_t> tcProgramId(int ifindex, TcDirection dir);
Status detachTc(int ifindex, TcDirection dir, const std::string& device);

// How a device's tc program is attached.
enum class TcLink {
  Tcx,     // a tcx link (bpf_mprog): no qdisc, and half the dispatch cost of a clsact filter
  Clsact,  // a clsact filter (attachTc): kernels before 6.6
};
const char* tcLinkName(TcLink l);  // "tcx", "clsact"

// Attaches progFd to ifindex's tc hook through a tcx link pinned at linkPath, first in the hook's
// chain. If that pin holds a
// live tcx link on the same device and direction (a restarted agent), the link is updated to
// progFd instead: atomic, the device never runs without the program. A stale pin is replaced. Our
// clsact filter (an older agent's) is removed once the link runs (made or updated). A kernel without tcx gets the
// clsact filter (attachTc) and no pin.
Result<TcLink> attachTcPinned(int ifindex, TcDirection dir, int progFd, const std::string& device,
                              const std::string& linkPath);
// The tcx programs on ifindex's hook (IDs, in the order they run), read back from the kernel;
// empty on a kernel without tcx.
Result<std::vector<uint32_t>> tcxProgramIds(int ifindex, TcDirection dir);
// Detaches the tcx link pinned at linkPath (if there is one) and removes the pin. Idempotent.
Status detachTcxPinned(const std::string& linkPath, const std::string& device);

// Attaches prog to the cgroup through a bpf_link pinned at linkPath; if that pin exists (a
// restarted agent) the link is updated to prog instead, so the hook is never absent.
Status attachCgroupPinned(bpf_program* prog, int cgroupFd, const std::string& linkPath);

// Attaches an XDP program to ifindex in driver (native) mode through a bpf_link pinned at
// linkPath. If that pin holds a live XDP link on the same device (a restarted agent), the link is
// updated to the new program instead: atomic, the device never runs without XDP. A pin that is
// stale (its device is gone or another one) is replaced. Fails with the kernel's errno when the
// device cannot take native XDP (EOPNOTSUPP: the driver has none; EBUSY: another XDP program is
// attached without a link).
Status attachXdpPinned(int progFd, int ifindex, const std::string& device, const std::string& linkPath);
// Detaches the XDP link pinned at linkPath (if there is one) and removes the pin. Idempotent.
Status detachXdpPinned(const std::string& linkPath, const std::string& device);

// The XDP programs on a device now (IDs, 0 for none), read back from the kernel.
struct XdpAttached {
  uint32_t driverProgId = 0;   // native (driver) mode
  uint32_t genericProgId = 0;  // generic (skb) mode
};
Result<XdpAttached> xdpAttached(int ifindex);

uint32_t programId(int progFd);

}  // namespace np::bpf
