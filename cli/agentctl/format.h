// Rendering of agent API responses as the text a person reads, and as JSON.
//
// Every function is pure: response in, text out (each line ending in '\n'). Only fields the
// response actually carries are shown; nothing is filled in from assumptions about the agent.
#pragma once

#include <cstdint>
#include <string>

#include <google/protobuf/message.h>

#include "agent.pb.h"
#include "args.h"

namespace nodepath::agentctl {

// The message as protobuf JSON: proto field names (`cluster_ip`, not `clusterIp`), pretty-printed,
// zero-valued scalars and empty lists included so that scripts see a stable set of keys.
std::string toJson(const google::protobuf::Message& message);

// `cilium status`-style lines. kVerbose adds the KubeProxyReplacement details, device attachments,
// BPF map and datapath counter tables. kBrief gives "OK" or "error: <why>".
std::string formatStatus(const nodepath::agent::v1::StatusResponse& status, StatusDetail detail);

// 0 when the agent reports "Ok", else 1 (as `cilium status` exits 1 unless Ok).
int statusExitCode(const nodepath::agent::v1::StatusResponse& status);

// NAME PROTOCOL PORT CLUSTER-IP NODE-PORT EXTERNAL-IPS LB-IPS AFFINITY ETP/ITP BACKENDS, sorted by name.
std::string formatServiceList(const nodepath::agent::v1::ListServicesResponse& list);

// One service as a "Key:   value" block, one backend per line.
std::string formatService(const nodepath::agent::v1::Service& service);

// `cilium bpf lb list` layout: a frontend row with slot 0 and the flags, then one row per
// backend slot with the first column blank. Entries sorted by address, port, protocol.
std::string formatLbList(const nodepath::agent::v1::ListLbResponse& list);
// `bpf ct list` / `bpf nat list` (nat: only the wording of an empty list differs).
std::string formatCtList(const nodepath::agent::v1::ListConntrackResponse& list, bool nat);

// What a whole-map reconcile did, in one line plus the counts.
std::string formatReconcile(const nodepath::agent::v1::ReconcileReport& report);

// The stored state of the local API, and what a state action did.
std::string formatState(const nodepath::agent::v1::StateResponse& state);

// NAME IP POD-CIDR LOCAL, sorted by name.
std::string formatNodeList(const nodepath::agent::v1::ListNodesResponse& list);

// POD (namespace/name) CONTAINER IPV4 INTERFACE HOST-IF MAC, sorted by address.
std::string formatEndpointList(const nodepath::agent::v1::ListEndpointsResponse& list);

// `l2 list`: SERVICE IP INTERFACE STATE HOLDER SINCE, sorted by service and address; "L2
// announcements: disabled" when off.
std::string formatL2List(const nodepath::agent::v1::L2Status& l2);
// The `L2 announcements:` status line: "Disabled", or "2 announced here, 1 elsewhere ...".
std::string l2Line(const nodepath::agent::v1::L2Status& l2);
// The Hubble status line: "Ok   Current/Max Flows: 12/4095 (0.29%), Flows/s: 1.20   Metrics: Ok"
// ("Disabled   Metrics: Ok" without flows; Metrics is the Prometheus endpoint: Ok or Disabled).
std::string hubbleLine(const nodepath::agent::v1::StatusResponse& status);

// "IPv4: 3/253 allocated from 10.0.1.0/24" ("disabled (...)" without a pod CIDR).
std::string ipamLine(const nodepath::agent::v1::StatusResponse& status);

// "10.0.1.5:8080", "10.0.1.5:8080 (terminating)", "10.0.1.5:8080 @n1 (local)".
std::string formatBackend(const nodepath::agent::v1::Backend& backend);

// "TCP", "UDP"; "-" when unspecified.
std::string protocolName(nodepath::agent::v1::Protocol protocol);

// Go-style duration: "42s", "5m0s", "1h2m3s", "3d0h0m9s".
std::string formatDuration(uint64_t seconds);

}  // namespace nodepath::agentctl
