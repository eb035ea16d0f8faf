// Agent configuration: Cilium's config keys where the meaning is the same, from command-line
// flags (--key=value or --key value) and a config directory of one file per key (a mounted
// ConfigMap). Flags win over the directory. Unknown flags are errors; unknown files in the
// directory are ignored (a cilium-config ConfigMap carries many keys we do not use).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"
#include "np_abi.h"

namespace np {

enum class LbMode { Snat, Dsr, Hybrid };
enum class LbAlgorithm { Random, Maglev };
// bpf-lb-acceleration: XDP on the native devices. Native refuses to start on a device that cannot
// take XDP in driver mode; BestEffort falls back to tc alone for that device.
enum class LbAcceleration { Disabled, Native, BestEffort };

// A range of ports, host order, both ends included.
struct PortRange {
  uint16_t min = 0;
  uint16_t max = 0;
  uint32_t size() const { return min && max >= min ? uint32_t{max} - min + 1 : 0; }  // 0-0: none
  bool overlaps(const PortRange& o) const { return min <= o.max && o.min <= max; }
  std::string str() const { return std::to_string(min) + "-" + std::to_string(max); }
  bool operator==(const PortRange&) const = default;
};

struct Config {
  std::string nodeName;                 // node-name
  std::vector<std::string> devices;     // devices (empty = auto)
  std::string directRoutingDevice;      // direct-routing-device (empty = first device)
  std::string bpfRoot = "/sys/fs/bpf";  // bpf-root
  std::string cgroupRoot;               // cgroup-root (empty = the cgroup2 mount)
  std::string runDir = "/var/run/nodepath";  // run-dir
  std::string configDir;                // config-dir
  bool kubeProxyReplacement = true;     // kube-proxy-replacement
  LbMode lbMode = LbMode::Snat;         // bpf-lb-mode
  LbAlgorithm lbAlgorithm = LbAlgorithm::Random;              // bpf-lb-algorithm
  uint32_t maglevTableSize = NP_DEFAULT_MAGLEV_TABLE_SIZE;    // bpf-lb-maglev-table-size
  uint32_t affinityMapMax = NP_DEFAULT_AFFINITY_MAX;          // bpf-lb-affinity-map-max
  LbAcceleration lbAcceleration = LbAcceleration::Disabled;  // bpf-lb-acceleration
  uint16_t nodePortMin = NP_DEFAULT_NODEPORT_MIN;  // node-port-range
  uint16_t nodePortMax = NP_DEFAULT_NODEPORT_MAX;
  PortRange snatPorts{};                // bpf-lb-snat-port-range (0-0 = auto: see snatPortRange())
  uint32_t lbMapMax = NP_DEFAULT_LB_MAP_MAX;  // bpf-lb-map-max: service and backend entries
  uint32_t ctMapMax = NP_DEFAULT_CT_MAX;      // bpf-ct-global-max: conntrack entries (both directions)
  uint32_t ctEmbryonicMax = NP_DEFAULT_CT_EMBRYONIC_MAX;  // bpf-ct-embryonic-max: unconfirmed flows' entries
  uint32_t fragMapMax = NP_DEFAULT_FRAG_MAX;              // bpf-fragments-map-max: datagrams in fragments
  std::chrono::milliseconds ctGcInterval{30000};          // conntrack-gc-interval
  std::string logLevel = "info";        // log-level
  Cidr serviceCidr{Ipv4::fromHost(0x0a2b0000), 16};  // service-cidr: ClusterIPs (k3s: 10.43.0.0/16)
  Cidr podCidr{Ipv4::fromHost(0x0a000000), 16};      // cluster-pool-ipv4-cidr: pod addresses
  bool lbAllowUnsafeFrontends = false;  // lb-allow-unsafe-frontends: external/LB IPs on node or pod addresses
  bool enableHostLegacyRouting = false; // enable-host-legacy-routing: pod traffic through the stack, no redirects
  uint32_t lbReconcileIntervalSec = 60;  // lb-reconcile-interval: whole-map reconcile period (0 = off)
  std::string cniConfDir = "/etc/cni/net.d";  // cni-conf-dir: where 05-nodepath.conflist goes once ready
  std::string cniBinDir = "/opt/cni/bin";     // cni-bin-dir: where the runtime finds nodepath-cni
  Cidr nativeRoutingCidr{Ipv4::fromHost(0x0a000000), 16};  // ipv4-native-routing-cidr: not masqueraded within
  bool sockLb = true;                   // bpf-lb-sock: the socket LB (cgroup hooks); off = per-packet tc LB only
  bool enableBpfMasquerade = false;     // enable-bpf-masquerade: pod traffic leaving the CIDR gets the node's address
  PortRange masqPorts{};                // bpf-masquerade-port-range (0-0 = the SNAT ports: see masqPortRange())
  bool installNoConntrackRules = false;  // install-no-conntrack-iptables-rules: raw NOTRACK for pod traffic
  // Kubernetes: the API server (never the ClusterIP this agent implements) and how to log in. With
  // neither set services come from the local API only.
  std::string k8sApiServer;   // k8s-api-server (https://host:port; default: the kubeconfig's)
  std::string k8sKubeconfig;  // k8s-kubeconfig-path (empty: in-cluster token and CA)
  bool k8sEnabled() const { return !k8sApiServer.empty() || !k8sKubeconfig.empty(); }
  // ipam: "nodes-file" (the config dir's nodes file) or "cluster-pool" (with a k8s API: this
  // node's CiliumNode, its pod CIDR from the operator, peers' routes from theirs).
  std::string ipamMode = "nodes-file";
  bool clusterPool() const { return k8sEnabled() && ipamMode == "cluster-pool"; }
  // The agent's namespace (k8s-namespace; default $POD_NAMESPACE, else "cilium"): its Leases.
  std::string k8sNamespace = "cilium";
  // L2 announcements (agent/l2/): ARP for LoadBalancer/external IPs a CiliumL2AnnouncementPolicy
  // selects, from one node per service. The timings are of the per-node heartbeat Lease
  // (l2/announcer.h): failover takes about leaseDuration + two requests, and the API load is one
  // write per participating node per retryPeriod whatever the number of services. Cilium's
  // defaults (15s/5s/2s) fail over in 10-20 s; these (2s/1.5s/500ms) in about 2.5 s, at 2 req/s
  // per node.
  bool enableL2Announcements = false;                    // enable-l2-announcements
  std::chrono::milliseconds l2LeaseDuration{2000};       // l2-announcements-lease-duration
  std::chrono::milliseconds l2RenewDeadline{1500};       // l2-announcements-renew-deadline
  std::chrono::milliseconds l2RetryPeriod{500};          // l2-announcements-retry-period
  // Flows (agent/flows/).
  bool enableHubble = true;                     // enable-hubble: flow events and the Hubble API
  uint32_t hubbleEventBufferCapacity = 4095;    // hubble-event-buffer-capacity: flows kept
  std::string hubbleListenAddress = ":4244";    // hubble-listen-address: TCP; empty = unix socket only
  uint8_t monitorAggregation = 2;               // monitor-aggregation: none/low/medium/max (np_trace.h)
  uint16_t monitorAggregationIntervalSec = 5;   // monitor-aggregation-interval
  uint32_t eventsMapSize = 4u << 20;            // bpf-events-ring-size: bytes of np_events_v1
  // Metrics (agent/metrics/): Prometheus text on http://<addr>/metrics; empty = not served.
  std::string prometheusServeAddr = ":9962";    // prometheus-serve-addr

  // Where flags came from, for `status`: key -> "flag" / "config-dir" / "default".
  std::map<std::string, std::string> origin;
};

// A TCP listen address as Cilium's *-serve-addr keys take it: ":9962" (every address) or
// "10.0.0.1:9962". Host names and IPv6 are not accepted.
struct ListenAddress {
  Ipv4 ip{};  // 0.0.0.0: every address
  uint16_t port = 0;
};
std::optional<ListenAddress> parseListenAddress(const std::string& v);

const char* lbModeName(LbMode m);  // "SNAT", "DSR", "Hybrid"
// "Random", "Maglev (Table Size: 16381)", as `cilium status --verbose` says it.
std::string backendSelectionName(const Config& c);
// As `cilium status` prints it: "Disabled", "Native", "Best-Effort".
const char* lbAccelerationName(LbAcceleration a);

// Parses argv (without argv[0]). Returns an error naming the flag and what is wrong; help is
// reported as an Error with context "help" so main can print usage and exit 0.
Result<Config> parseConfig(const std::vector<std::string>& args);

std::string configUsage();

// The fewest SNAT source ports a range may hold (auto or configured).
inline constexpr uint32_t kMinSnatPorts = 1024;

// The node's ephemeral ports: "MIN MAX" as /proc/sys/net/ipv4/ip_local_port_range holds them
// (the file shows the range of the network namespace of whoever opens it).
Result<PortRange> readLocalPortRange(const std::string& path = "/proc/sys/net/ipv4/ip_local_port_range");

// The SNAT source ports the datapath may use on a node whose ephemeral ports are `ephemeral`. They
// must be disjoint from the node's own ephemeral ports (a host connection and a SNAT'd flow to the
// same backend would otherwise compete for a port) and from the NodePort range. Configured
// (--bpf-lb-snat-port-range): checked, an overlap is an error naming both ranges and the flag.
// Auto: the larger of the gaps around the ephemeral range above the NodePort range (32768-65535
// minus a stock 32768-60999 leaves 61000-65535); an error when that leaves fewer than
// kMinSnatPorts.
Result<PortRange> snatPortRange(const Config& c, const PortRange& ephemeral);

// The source ports (and ICMP echo identifiers) BPF masquerade gives pod flows: the configured
// --bpf-masquerade-port-range, else the SNAT ports (`snat`, from snatPortRange()). Masquerade and
// NodePort SNAT take ports through one allocator over one conntrack, so sharing the range is safe;
// a configured range is checked against the node's ephemeral ports like the SNAT one.
Result<PortRange> masqPortRange(const Config& c, const PortRange& ephemeral, const PortRange& snat);

// The status line's value, as `cilium status` prints it: "BPF [ens192] 10.0.0.0/16 [IPv4: Enabled,
// IPv6: Disabled]", or "Disabled".
std::string masqueradingLine(bool enabled, const std::vector<std::string>& devices, const Cidr& cidr);

}  // namespace np
