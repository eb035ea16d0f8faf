// Decoding the datapath's flow events (bpf/include/np_trace.h) into Hubble flows. Pure: no kernel,
// no threads; the enrichment the agent knows (node name, services by rev-NAT ID, pods by
// address) comes in as data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flow/flow.pb.h"
#include "np_trace.h"

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
  std::function<std::shared_ptr<const ServiceName>(uint16_t)> service;
  // The pod at an IPv4 address (network order), if any. May be empty.
  std::function<std::shared_ptr<const PodInfo>(uint32_t)> pod;
  // The pod whose network namespace has this cookie (bpf_get_netns_cookie()), if any: names the
  // source of a socket-level translation, whose socket has no address yet. May be empty.
  std::function<std::shared_ptr<const PodInfo>(uint64_t)> podByNetns;
  // Device name of an ifindex, if known. May be empty.
  std::function<std::string(uint32_t)> ifname;
};

// What the reader keeps of one flow: the event's bytes and what the agent knew of its addresses
// when it came (names of pods and services that may be gone by the time a client reads it). A
// Hubble flow is built from it only when a client reads it (renderFlow): building the protobuf
// message is most of what decoding costs, and most flows are never read before the ring drops
// them.
struct FlowRecord {
  np_trace_event ev{};  // the ring-buffer record, zero past its size
  uint8_t sockPoint = 0;  // a socket translation: NP_SOCK_XLATE_PRE_FWD / _POST_FWD; 0 a packet
  std::shared_ptr<const PodInfo> src, dst;
  std::shared_ptr<const ServiceName> svc;
  std::string ifname;
};

// One ring-buffer record (size bytes) into its flow records: a packet event is one, a socket
// translation (NP_EVENT_TRACE_SOCK) two (Hubble's pre- and post-translation SOCK flows). Returns
// how many it wrote into out; 0: not an event of ours (short, a snippet without IPv4, an unknown
// protocol), which the caller counts.
size_t captureEvent(const void* data, size_t size, const DecodeContext& ctx, FlowRecord out[2]);
// The Hubble flow of a record captureEvent() wrote.
flow::Flow renderFlow(const FlowRecord& r, const std::string& nodeName, int64_t monoToRealtimeNs);
// Wall-clock seconds of a record (the flow's time().seconds()).
int64_t recordSeconds(const FlowRecord& r, int64_t monoToRealtimeNs);

// captureEvent() and renderFlow() in one (tests, benchmarks).
std::vector<flow::Flow> decodeEvents(const void* data, size_t size, const DecodeContext& ctx);
// A packet event into its flow; nullopt for anything else (decodeEvents takes socket events).
std::optional<flow::Flow> decodeEvent(const void* data, size_t size, const DecodeContext& ctx);

// "10.0.1.5:8080" style endpoint text of one side, for tables.
std::string flowSummary(const flow::Flow& f);

// CLOCK_REALTIME - CLOCK_MONOTONIC now, in ns.
int64_t monoToRealtimeOffsetNs();

}  // namespace np::flows
