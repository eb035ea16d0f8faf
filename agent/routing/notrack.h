// --install-no-conntrack-iptables-rules: raw-table NOTRACK for pod-network traffic in the node's
// network namespace, so netfilter's conntrack neither tracks nor limits flows that the BPF
// datapath already handles (Cilium's CILIUM_PRE_raw / CILIUM_OUTPUT_raw). Our own chains,
// NODEPATH_PRE_raw and NODEPATH_OUTPUT_raw, jumped to from PREROUTING and OUTPUT, hold one rule
// each way per direction: source in the native-routing CIDR, destination in it. Installed with the
// real `iptables` binary (whatever backend it is), idempotently: installing again leaves exactly
// one jump and the same rules; removing leaves nothing of ours and is fine when nothing is there.
// Runs in the caller's network namespace; blocking (it waits for iptables). Not thread-affine.
#pragma once

#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"

namespace np::routing {

inline constexpr const char* kNoTrackPreChain = "NODEPATH_PRE_raw";
inline constexpr const char* kNoTrackOutputChain = "NODEPATH_OUTPUT_raw";

// The iptables argument lists (without the binary) that fill our chains with the NOTRACK rules for
// `cidr`, in order: pure, for tests and for install.
std::vector<std::vector<std::string>> noTrackRules(const Cidr& cidr);

// Creates (or refills) both chains and makes sure PREROUTING/OUTPUT jump to them once.
// `iptables`: the binary (PATH lookup when it has no slash).
Status installNoTrack(const Cidr& cidr, const std::string& iptables = "iptables");

// Removes the jumps and both chains. Returns how many of our chains were there (0 = nothing to do).
Result<int> removeNoTrack(const std::string& iptables = "iptables");

}  // namespace np::routing
