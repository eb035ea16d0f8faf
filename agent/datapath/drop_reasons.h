// Names of the datapath's drop reasons, generated from the one list in bpf/include/np_drop.h
// (NP_DROP_REASONS): Hubble's flow.proto DropReason name (what a Hubble client shows) and Cilium's
// description (what `agentctl status` and the metrics show). Pure constexpr: no kernel, no state.
#pragma once

#include <cstdint>

#include "np_drop.h"

namespace np::datapath {

struct DropReasonInfo {
  uint32_t reason;          // enum np_drop_reason
  const char* symbol;       // "NP_DROP_FRAGMENT"
  const char* hubbleName;   // flow.proto DropReason: "IP_FRAGMENTATION_NOT_SUPPORTED"
  const char* description;  // "IP fragmentation not supported"
};

inline constexpr DropReasonInfo kDropReasons[] = {
#define NP_DROP_INFO_(name, num, hubble, desc) {NP_DROP_##name, "NP_DROP_" #name, hubble, desc},
    NP_DROP_REASONS(NP_DROP_INFO_)
#undef NP_DROP_INFO_
};

// The entry of a reason, nullptr for a number the datapath does not use.
constexpr const DropReasonInfo* dropReasonInfo(uint32_t reason) {
  for (const DropReasonInfo& r : kDropReasons)
    if (r.reason == reason) return &r;
  return nullptr;
}

// Metrics slot name: "forwarded" for reason 0, the description of a known reason, else "unknown".
constexpr const char* dropReasonName(uint32_t reason) {
  if (reason == NP_METRIC_FORWARDED) return "forwarded";
  const DropReasonInfo* r = dropReasonInfo(reason);
  return r ? r->description : "unknown";
}

// flow.proto DropReason name of a known reason, else "DROP_REASON_UNKNOWN" (its 0).
constexpr const char* dropReasonHubbleName(uint32_t reason) {
  const DropReasonInfo* r = dropReasonInfo(reason);
  return r ? r->hubbleName : "DROP_REASON_UNKNOWN";
}

}  // namespace np::datapath
