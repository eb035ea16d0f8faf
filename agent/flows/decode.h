// Decoding the datapath's flow events (bpf/include/np_trace.h) into Hubble flows. Pure: no kernel,
// no threads; the enrichment the agent knows (node name, services by rev-NAT ID, pods by
// address) comes in as data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow.pb.h"

namespace np::flows {

struct ServiceName {
  std::string name;
  std::string ns;
};

// A pod the agent has an endpoint for (CNI ADD): what flows to and from its address name.
struct PodInfo {
  std::string name;
  std::string ns;
  std::vector<std::string> labels;  // Hubble's "k8s:key=value" form
  uint32_t addr = 0;                 // its IPv4 address (network order); 0 unknown
};

struct DecodeContext {
  std::string nodeName;
  int64_t monoToRealtimeNs = 0;  // add to bpf_ktime_get_ns() for wall-clock time
  // Service of a rev-NAT ID, if known. May be empty.
  std::function<std::optional<ServiceName>(uint16_t)> service;
  // The pod at an IPv4 address (network order), if any. May be empty.
  std::function<std::optional<PodInfo>(uint32_t)> pod;
  // The pod whose network namespace has this cookie (bpf_get_netns_cookie()), if any: names the
  // source of a socket-level translation, whose socket has no address yet. May be empty.
  std::function<std::optional<PodInfo>(uint64_t)> podByNetns;
  // Device name of an ifindex, if known. May be empty.
  std::function<std::string(uint32_t)> ifname;
};

// One ring-buffer record (size bytes) into its flows: a packet event is one flow, a socket
// translation (NP_EVENT_TRACE_SOCK) Hubble's pre- and post-translation SOCK flows. Empty: not an
// event of ours (short, a snippet without IPv4, an unknown protocol); the caller counts it.
std::vector<flow::Flow> decodeEvents(const void* data, size_t size, const DecodeContext& ctx);
// A packet event into its flow; nullopt for anything else (decodeEvents takes socket events).
std::optional<flow::Flow> decodeEvent(const void* data, size_t size, const DecodeContext& ctx);

// "10.0.1.5:8080" style endpoint text of one side, for tables.
std::string flowSummary(const flow::Flow& f);

// CLOCK_REALTIME - CLOCK_MONOTONIC now, in ns.
int64_t monoToRealtimeOffsetNs();

}  // namespace np::flows
