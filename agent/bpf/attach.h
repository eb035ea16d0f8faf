// Attaching programs to their hooks. tc programs go through a clsact qdisc (Debian 12's libbpf
// has no tcx) with a fixed handle/priority and outlive the agent; cgroup programs are bpf_links
// pinned next to the maps, which a restarted agent updates in place (atomically).
#pragma once

#include <bpf/libbpf.h>

#include <cstdint>
#include <string>

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

// Attaches prog to the cgroup through a bpf_link pinned at linkPath; if that pin exists (a
// restarted agent) the link is updated to prog instead, so the hook is never absent.
Status attachCgroupPinned(bpf_program* prog, int cgroupFd, const std::string& linkPath);

uint32_t programId(int progFd);

}  // namespace np::bpf
