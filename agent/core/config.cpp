#include "core/config.h"

#include "lb/maglev.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

namespace np {
namespace {

using Setter = std::function<Status(Config&, const std::string&)>;

struct Key {
  const char* name;
  const char* help;
  bool isBool;
  Setter set;
};

Status bad(const std::string& key, const std::string& value, const std::string& why) {
  return error("--" + key, "\"" + value + "\" " + why);
}

Result<bool> parseBool(const std::string& key, const std::string& v) {
  if (v == "true" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "0" || v == "no") return false;
  return bad(key, v, "is not a boolean (true/false)").error();
}

Result<uint32_t> parseUint(const std::string& key, const std::string& v, uint32_t min, uint32_t max) {
  uint32_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || out < min || out > max)
    return bad(key, v, "is not a number in " + std::to_string(min) + ".." + std::to_string(max)).error();
  return out;
}

// "MIN-MAX" of ports 1..65535 with MIN <= MAX; "MIN,MAX" too, as cilium-config writes
// node-port-range.
Result<PortRange> parsePortRange(const std::string& key, const std::string& v) {
  auto dash = v.find_first_of("-,");
  if (dash == std::string::npos) return bad(key, v, "is not a range MIN-MAX").error();
  auto lo = parseUint(key, v.substr(0, dash), 1, 65535);
  auto hi = parseUint(key, v.substr(dash + 1), 1, 65535);
  if (!lo || !hi || *lo > *hi) return bad(key, v, "is not a range MIN-MAX of ports with MIN <= MAX").error();
  return PortRange{static_cast<uint16_t>(*lo), static_cast<uint16_t>(*hi)};
}

Result<Cidr> parseCidr(const std::string& key, const std::string& v) {
  auto c = Cidr::parse(v);
  if (!c) return bad(key, v, "is not an IPv4 CIDR (like 10.43.0.0/16, host bits zero)").error();
  return *c;
}

// A Go-style duration as Cilium's flags take them: "30s", "1m30s", "500ms", "2h".
Result<std::chrono::milliseconds> parseDuration(const std::string& key, const std::string& v,
                                                std::chrono::milliseconds min, std::chrono::milliseconds max) {
  using std::chrono::milliseconds;
  const std::string why = "is not a duration in " + std::to_string(min.count()) + "ms.." +
                          std::to_string(max.count() / 1000) + "s (e.g. 30s, 1m30s, 500ms)";
  uint64_t total = 0;
  size_t i = 0;
  if (v.empty()) return bad(key, v, why).error();
  while (i < v.size()) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data() + i, v.data() + v.size(), n);
    if (ec != std::errc() || p == v.data() + i) return bad(key, v, why).error();
    i = static_cast<size_t>(p - v.data());
    // A fraction, as Go writes "1.5s": up to millisecond precision is kept.
    uint64_t frac = 0, denom = 1;
    if (i < v.size() && v[i] == '.') {
      ++i;
      const size_t from = i;
      while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) {
        if (denom < 1000000) {
          frac = frac * 10 + static_cast<uint64_t>(v[i] - '0');
          denom *= 10;
        }
        ++i;
      }
      if (i == from) return bad(key, v, why).error();
    }
    size_t u = i;
    while (u < v.size() && std::isalpha(static_cast<unsigned char>(v[u]))) ++u;
    const std::string unit = v.substr(i, u - i);
    uint64_t scale = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : unit == "h" ? 3600000 : 0;
    if (scale == 0 || n > (uint64_t{1} << 40)) return bad(key, v, why).error();
    total += n * scale + frac * scale / denom;
    i = u;
  }
  if (total < static_cast<uint64_t>(min.count()) || total > static_cast<uint64_t>(max.count()))
    return bad(key, v, why).error();
  return milliseconds(static_cast<int64_t>(total));
}

// Commas or blanks: a flag says "eth0,eth1", Cilium's ConfigMap key says "eth0 eth1".
std::vector<std::string> splitList(const std::string& v) {
  std::vector<std::string> out;
  std::string item;
  for (char ch : v + ",") {
    if (ch == ',' || ch == ' ' || ch == '\t' || ch == '\n') {
      if (!item.empty()) out.push_back(std::move(item));
      item.clear();
    } else {
      item.push_back(ch);
    }
  }
  return out;
}

const std::vector<Key>& keys() {
  static const std::vector<Key> k = {
      {"node-name", "this node's name (default: hostname)", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty()) return bad("node-name", v, "is empty");
         c.nodeName = v;
         return {};
       }},
      {"devices", "native devices, comma- or space-separated (default: devices with a global IPv4 address)", false,
       [](Config& c, const std::string& v) -> Status {
         c.devices = splitList(v);
         for (auto& d : c.devices)
           if (d.size() > 15) return bad("devices", d, "is longer than an interface name can be");
         return {};
       }},
      {"direct-routing-device", "device for node-to-node traffic (default: first device)", false,
       [](Config& c, const std::string& v) -> Status {
         c.directRoutingDevice = v;
         return {};
       }},
      {"bpf-root", "bpffs directory; pins go to <bpf-root>/nodepath", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty() || v[0] != '/') return bad("bpf-root", v, "is not an absolute path");
         c.bpfRoot = v;
         return {};
       }},
      {"cgroup-root", "cgroup v2 directory the socket hooks attach to (default: the cgroup2 mount)", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty() || v[0] != '/') return bad("cgroup-root", v, "is not an absolute path");
         c.cgroupRoot = v;
         return {};
       }},
      {"run-dir", "runtime directory: agent.sock, state/", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty() || v[0] != '/') return bad("run-dir", v, "is not an absolute path");
         c.runDir = v;
         return {};
       }},
      {"config-dir", "directory of one file per key (flags win)", false,
       [](Config& c, const std::string& v) -> Status {
         c.configDir = v;
         return {};
       }},
      {"kube-proxy-replacement", "replace kube-proxy (true/false)", true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("kube-proxy-replacement", v);
         if (!b) return b.error();
         c.kubeProxyReplacement = *b;
         return {};
       }},
      {"bpf-lb-mode", "remote backends: snat, dsr (IP option) or hybrid (DSR for TCP, SNAT for UDP)", false,
       [](Config& c, const std::string& v) -> Status {
         if (v == "snat") c.lbMode = LbMode::Snat;
         else if (v == "dsr") c.lbMode = LbMode::Dsr;
         else if (v == "hybrid") c.lbMode = LbMode::Hybrid;
         else return bad("bpf-lb-mode", v, "is not a load-balancing mode (snat, dsr, hybrid)");
         return {};
       }},
      {"bpf-lb-algorithm", "backend selection of NodePort/LB/external traffic: random or maglev", false,
       [](Config& c, const std::string& v) -> Status {
         if (v == "random") c.lbAlgorithm = LbAlgorithm::Random;
         else if (v == "maglev") c.lbAlgorithm = LbAlgorithm::Maglev;
         else return bad("bpf-lb-algorithm", v, "is not an algorithm (random, maglev)");
         return {};
       }},
      {"bpf-lb-maglev-table-size", "entries of each Maglev table: a prime of 251, 509, 1021, 2039, 4093, 8191, "
                                   "16381, 32749, 65521, 131071",
       false,
       [](Config& c, const std::string& v) -> Status {
         const auto& sizes = lb::maglev::supportedTableSizes();
         std::string list;
         for (uint32_t m : sizes) list += (list.empty() ? "" : ", ") + std::to_string(m);
         auto n = parseUint("bpf-lb-maglev-table-size", v, 0, UINT32_MAX);
         if (!n) return bad("bpf-lb-maglev-table-size", v, "is not a number (one of " + list + ")");
         if (*n < sizes.front() || *n > sizes.back())
           return bad("bpf-lb-maglev-table-size", v, "is outside " + std::to_string(sizes.front()) + ".." +
                                                      std::to_string(sizes.back()) + " (one of " + list + ")");
         if (!lb::maglev::isPrime(*n))
           return bad("bpf-lb-maglev-table-size", v, "is not a prime (one of " + list + ")");
         if (std::find(sizes.begin(), sizes.end(), *n) == sizes.end())
           return bad("bpf-lb-maglev-table-size", v, "is not one of the supported primes (" + list + ")");
         c.maglevTableSize = *n;
         return {};
       }},
      {"bpf-lb-affinity-map-max", "session-affinity entries ((service, client) pairs)", false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("bpf-lb-affinity-map-max", v, 1024, 16u << 20);
         if (!n) return n.error();
         c.affinityMapMax = *n;
         return {};
       }},
      {"bpf-lb-acceleration",
       "XDP acceleration on the devices: disabled, native (refuse to start where a device cannot take native XDP) "
       "or best-effort (tc alone on such a device)",
       false,
       [](Config& c, const std::string& v) -> Status {
         if (v == "disabled") c.lbAcceleration = LbAcceleration::Disabled;
         else if (v == "native") c.lbAcceleration = LbAcceleration::Native;
         else if (v == "best-effort") c.lbAcceleration = LbAcceleration::BestEffort;
         else if (v == "generic")
           return bad("bpf-lb-acceleration", v, "is not supported: generic XDP is slower than tc (native, best-effort, disabled)");
         else return bad("bpf-lb-acceleration", v, "is not an acceleration mode (disabled, native, best-effort)");
         return {};
       }},
      {"node-port-range", "NodePort range MIN-MAX", false,
       [](Config& c, const std::string& v) -> Status {
         auto r = parsePortRange("node-port-range", v);
         if (!r) return r.error();
         // SNAT source ports are taken above the range; leave room for them.
         if (r->max > 64511) return bad("node-port-range", v, "leaves no room above it for SNAT ports (MAX <= 64511)");
         c.nodePortMin = r->min;
         c.nodePortMax = r->max;
         return {};
       }},
      {"bpf-lb-snat-port-range",
       "source ports of SNAT'd NodePort flows MIN-MAX, outside node-port-range and the node's ephemeral ports "
       "(net.ipv4.ip_local_port_range) (default: the largest such range above node-port-range)",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto r = parsePortRange("bpf-lb-snat-port-range", v);
         if (!r) return r.error();
         if (r->size() < kMinSnatPorts)
           return bad("bpf-lb-snat-port-range", v, "holds fewer than " + std::to_string(kMinSnatPorts) + " ports");
         c.snatPorts = *r;
         return {};
       }},
      {"bpf-lb-map-max", "service and backend map entries", false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("bpf-lb-map-max", v, 1024, 16u << 20);
         if (!n) return n.error();
         c.lbMapMax = *n;
         return {};
       }},
      {"bpf-ct-global-max", "conntrack entries (both directions of a flow count)", false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("bpf-ct-global-max", v, 1024, 16u << 20);
         if (!n) return n.error();
         c.ctMapMax = *n;
         return {};
       }},
      {"bpf-ct-embryonic-max",
       "conntrack entries of unconfirmed flows (SYN seen, client not confirmed yet); keep it well below twice the "
       "32768 SNAT ports a backend offers",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("bpf-ct-embryonic-max", v, 1024, 1u << 20);
         if (!n) return n.error();
         c.ctEmbryonicMax = *n;
         return {};
       }},
      {"conntrack-gc-interval", "conntrack garbage collection interval (shorter while a table is under pressure)", false,
       [](Config& c, const std::string& v) -> Status {
         auto d = parseDuration("conntrack-gc-interval", v, std::chrono::milliseconds(500), std::chrono::hours(12));
         if (!d) return d.error();
         c.ctGcInterval = *d;
         return {};
       }},
      {"bpf-fragments-map-max", "IPv4 datagrams tracked while they arrive in fragments", false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("bpf-fragments-map-max", v, 256, 16u << 20);
         if (!n) return n.error();
         c.fragMapMax = *n;
         return {};
       }},
      {"bpf-sock-rev-map-max",
       "accepted for Cilium compatibility and checked, but sizes nothing: the socket LB keeps its reverse "
       "state with each socket (SK_STORAGE), freed when the socket closes",
       false,
       [](Config&, const std::string& v) -> Status {
         auto n = parseUint("bpf-sock-rev-map-max", v, 1024, 16u << 20);
         if (!n) return n.error();
         return {};
       }},
      {"service-cidr", "the range ClusterIPs come from (k3s --service-cidr)", false,
       [](Config& c, const std::string& v) -> Status {
         auto cidr = parseCidr("service-cidr", v);
         if (!cidr) return cidr.error();
         c.serviceCidr = *cidr;
         return {};
       }},
      {"cluster-pool-ipv4-cidr", "the pod address range", false,
       [](Config& c, const std::string& v) -> Status {
         auto cidr = parseCidr("cluster-pool-ipv4-cidr", v);
         if (!cidr) return cidr.error();
         c.podCidr = *cidr;
         return {};
       }},
      {"ipam", "where pod CIDRs come from: nodes-file (the config dir's nodes file) or cluster-pool (CiliumNodes)",
       false,
       [](Config& c, const std::string& v) -> Status {
         if (v != "nodes-file" && v != "cluster-pool") return bad("ipam", v, "is not nodes-file or cluster-pool");
         c.ipamMode = v;
         return {};
       }},
      {"ipv4-native-routing-cidr", "pod traffic to addresses in this range is routed natively, never masqueraded",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto cidr = parseCidr("ipv4-native-routing-cidr", v);
         if (!cidr) return cidr.error();
         c.nativeRoutingCidr = *cidr;
         return {};
       }},
      {"bpf-lb-sock",
       "the socket LB: ClusterIP translated once per socket by cgroup hooks (true/false); false leaves it to the "
       "per-packet tc programs (pod traffic only)",
       true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("bpf-lb-sock", v);
         if (!b) return b.error();
         c.sockLb = *b;
         return {};
       }},
      {"enable-bpf-masquerade",
       "masquerade pod traffic leaving ipv4-native-routing-cidr (not to nodes) to the node's address in BPF (true/false)",
       true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("enable-bpf-masquerade", v);
         if (!b) return b.error();
         c.enableBpfMasquerade = *b;
         return {};
       }},
      {"bpf-masquerade-port-range",
       "source ports (and ICMP echo identifiers) of masqueraded flows MIN-MAX, outside node-port-range and the "
       "node's ephemeral ports (default: the SNAT ports, bpf-lb-snat-port-range)",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto r = parsePortRange("bpf-masquerade-port-range", v);
         if (!r) return r.error();
         c.masqPorts = *r;
         return {};
       }},
      {"install-no-conntrack-iptables-rules",
       "install raw-table NOTRACK rules for pod-network traffic, so netfilter conntrack skips it (true/false)", true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("install-no-conntrack-iptables-rules", v);
         if (!b) return b.error();
         c.installNoConntrackRules = *b;
         return {};
       }},
      {"lb-allow-unsafe-frontends", "accept external and LoadBalancer IPs that are a node's address or a pod's (true/false)",
       true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("lb-allow-unsafe-frontends", v);
         if (!b) return b.error();
         c.lbAllowUnsafeFrontends = *b;
         return {};
       }},
      {"enable-host-legacy-routing", "route pod traffic through the node's stack instead of BPF host routing (true/false)",
       true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("enable-host-legacy-routing", v);
         if (!b) return b.error();
         c.enableHostLegacyRouting = *b;
         return {};
       }},
      {"lb-reconcile-interval", "how often every service map is compared with the model and repaired (0 = never)", false,
       [](Config& c, const std::string& v) -> Status {
         if (v == "0") {
           c.lbReconcileIntervalSec = 0;
           return {};
         }
         auto d = parseDuration("lb-reconcile-interval", v, std::chrono::seconds(1), std::chrono::hours(24));
         if (!d) return d.error();
         c.lbReconcileIntervalSec = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(*d).count());
         return {};
       }},
      {"cni-conf-dir", "CNI config directory: 05-nodepath.conflist is written there once the agent is ready", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty() || v[0] != '/') return bad("cni-conf-dir", v, "is not an absolute path");
         c.cniConfDir = v;
         return {};
       }},
      {"cni-bin-dir", "CNI plugin directory the runtime runs nodepath-cni from (checked, shown in status)", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty() || v[0] != '/') return bad("cni-bin-dir", v, "is not an absolute path");
         c.cniBinDir = v;
         return {};
       }},
      {"k8s-api-server", "Kubernetes API server URL (https://host:port); with it services come from Kubernetes",
       false,
       [](Config& c, const std::string& v) -> Status {
         if (v.rfind("https://", 0) != 0 || v.size() <= 8) return bad("k8s-api-server", v, "is not an https:// URL");
         c.k8sApiServer = v;
         return {};
       }},
      {"k8s-kubeconfig-path", "kubeconfig for the Kubernetes API (default: in-cluster service account)", false,
       [](Config& c, const std::string& v) -> Status {
         if (v.empty() || v[0] != '/') return bad("k8s-kubeconfig-path", v, "is not an absolute path");
         c.k8sKubeconfig = v;
          return {};
        }},
      {"k8s-namespace", "the agent's namespace: its Leases live there (default $POD_NAMESPACE, else cilium)", false,
       [](Config& c, const std::string& v) -> Status {
         // A DNS-1123 label, as a namespace name must be.
         bool ok = !v.empty() && v.size() <= 63 && std::isalnum(static_cast<unsigned char>(v.front())) &&
                   std::isalnum(static_cast<unsigned char>(v.back()));
         for (char ch : v) ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-');
         if (!ok) return bad("k8s-namespace", v, "is not a namespace name (lower-case letters, digits, '-')");
         c.k8sNamespace = v;
         return {};
       }},
      {"enable-l2-announcements",
       "answer ARP for LoadBalancer and external IPs that a CiliumL2AnnouncementPolicy selects, from one node per "
       "service (needs the Kubernetes API) (true/false)",
       true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("enable-l2-announcements", v);
         if (!b) return b.error();
         c.enableL2Announcements = *b;
         return {};
       }},
      {"l2-announcements-lease-duration",
       "how long a silent node's heartbeat Lease is respected before others take its services over (default 2s)",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto d = parseDuration("l2-announcements-lease-duration", v, std::chrono::seconds(1), std::chrono::hours(1));
         if (!d) return d.error();
         c.l2LeaseDuration = *d;
         return {};
       }},
      {"l2-announcements-renew-deadline",
       "a node whose heartbeat renewal has not succeeded for this long stops answering (< lease duration; default "
       "1500ms)",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto d = parseDuration("l2-announcements-renew-deadline", v, std::chrono::milliseconds(100), std::chrono::hours(1));
         if (!d) return d.error();
         c.l2RenewDeadline = *d;
         return {};
       }},
      {"l2-announcements-retry-period",
       "how often the heartbeat Lease is renewed and failed requests retried (< renew deadline / 1.2; default 500ms)",
       false,
       [](Config& c, const std::string& v) -> Status {
         auto d = parseDuration("l2-announcements-retry-period", v, std::chrono::milliseconds(100), std::chrono::hours(1));
         if (!d) return d.error();
         c.l2RetryPeriod = *d;
         return {};
       }},
      {"enable-hubble", "flow events in the datapath, the flow store and the Hubble API (true/false)", true,
       [](Config& c, const std::string& v) -> Status {
         auto b = parseBool("enable-hubble", v);
         if (!b) return b.error();
         c.enableHubble = *b;
         return {};
       }},
      {"hubble-event-buffer-capacity", "flows kept in the agent's ring (2^n-1, like Cilium's)", false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("hubble-event-buffer-capacity", v, 1, 65535);
         if (!n) return n.error();
         if (((*n + 1) & *n) != 0) return bad("hubble-event-buffer-capacity", v, "is not one less than a power of two");
         c.hubbleEventBufferCapacity = *n;
         return {};
       }},
      {"hubble-listen-address", "TCP address of the Hubble API (host:port or :port; empty = unix socket only)", false,
       [](Config& c, const std::string& v) -> Status {
         if (!v.empty() && v.find(':') == std::string::npos)
           return bad("hubble-listen-address", v, "is not host:port or :port");
         c.hubbleListenAddress = v;
         return {};
       }},
      {"prometheus-serve-addr", "Prometheus metrics on http://ADDR/metrics (:port or IPv4:port; empty = off)", false,
       [](Config& c, const std::string& v) -> Status {
         if (!v.empty() && !parseListenAddress(v))
           return bad("prometheus-serve-addr", v, "is not :port or IPv4:port (port 1-65535; empty disables metrics)");
         c.prometheusServeAddr = v;
         return {};
       }},
      {"monitor-aggregation", "flow events of established flows: none, low, medium, max", false,
       [](Config& c, const std::string& v) -> Status {
         static const char* names[] = {"none", "low", "medium", "max"};
         for (uint8_t i = 0; i < 4; i++)
           if (v == names[i]) {
             c.monitorAggregation = i;
             return {};
           }
         return bad("monitor-aggregation", v, "is not a level (none, low, medium, max)");
       }},
      {"monitor-aggregation-interval", "report an established flow at least this often (seconds or 5s)", false,
       [](Config& c, const std::string& v) -> Status {
         auto d = parseDuration("monitor-aggregation-interval", v, std::chrono::seconds(1), std::chrono::hours(1));
         if (!d) return d.error();
         c.monitorAggregationIntervalSec =
             static_cast<uint16_t>(std::chrono::duration_cast<std::chrono::seconds>(*d).count());
         return {};
       }},
      {"bpf-events-ring-size", "bytes of the flow event ring buffer (a power of two, >= 4096)", false,
       [](Config& c, const std::string& v) -> Status {
         auto n = parseUint("bpf-events-ring-size", v, 4096, 1u << 30);
         if (!n) return n.error();
         if ((*n & (*n - 1)) != 0) return bad("bpf-events-ring-size", v, "is not a power of two");
         c.eventsMapSize = *n;
         return {};
       }},
      {"log-level", "debug, info, warn, error", false,
       [](Config& c, const std::string& v) -> Status {
         if (v != "debug" && v != "info" && v != "warn" && v != "error")
           return bad("log-level", v, "is not a level (debug, info, warn, error)");
         c.logLevel = v;
         return {};
       }},
  };
  return k;
}

const Key* findKey(const std::string& name) {
  for (auto& k : keys())
    if (name == k.name) return &k;
  return nullptr;
}

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t\r\n"));
  s.erase(s.find_last_not_of(" \t\r\n") + 1);
  return s;
}

}  // namespace

std::optional<ListenAddress> parseListenAddress(const std::string& v) {
  const auto colon = v.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  const std::string host = v.substr(0, colon), port = v.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  const unsigned long n = std::stoul(port);
  if (n < 1 || n > 65535) return std::nullopt;
  ListenAddress out;
  out.port = static_cast<uint16_t>(n);
  if (!host.empty()) {
    auto ip = Ipv4::parse(host);
    if (!ip) return std::nullopt;
    out.ip = *ip;
  }
  return out;
}

const char* lbModeName(LbMode m) {
  switch (m) {
    case LbMode::Snat: return "SNAT";
    case LbMode::Dsr: return "DSR";
    case LbMode::Hybrid: return "Hybrid";
  }
  return "?";
}

std::string backendSelectionName(const Config& c) {
  if (c.lbAlgorithm == LbAlgorithm::Random) return "Random";
  return "Maglev (Table Size: " + std::to_string(c.maglevTableSize) + ")";
}

const char* lbAccelerationName(LbAcceleration a) {
  switch (a) {
    case LbAcceleration::Disabled: return "Disabled";
    case LbAcceleration::Native: return "Native";
    case LbAcceleration::BestEffort: return "Best-Effort";
  }
  return "?";
}

std::string configUsage() {
  std::string s = "usage: nodepath-agent [--key=value | --key value]...\n\nkeys:\n";
  for (auto& k : keys()) {
    std::string name = std::string("  --") + k.name;
    name.resize(std::max<size_t>(name.size() + 2, 28), ' ');
    s += name + k.help + "\n";
  }
  return s;
}

Result<Config> parseConfig(const std::vector<std::string>& args) {
  std::map<std::string, std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") return error("help");
    if (a.rfind("--", 0) != 0) return error(a, "unexpected argument (flags are --key=value)");
    std::string name = a.substr(2), value;
    auto eq = name.find('=');
    const Key* key = findKey(eq == std::string::npos ? name : name.substr(0, eq));
    if (!key) return error("--" + (eq == std::string::npos ? name : name.substr(0, eq)), "unknown flag (see --help)");
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (key->isBool && (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)) {
      value = "true";
    } else {
      if (i + 1 >= args.size()) return error("--" + name, "needs a value");
      value = args[++i];
    }
    flags[name] = value;
  }

  Config c;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  c.nodeName = host;
  if (const char* ns = std::getenv("POD_NAMESPACE"); ns && *ns) c.k8sNamespace = ns;

  std::map<std::string, std::string> values;
  std::string dir = flags.count("config-dir") ? flags["config-dir"] : "";
  if (!dir.empty()) {
    DIR* d = opendir(dir.c_str());
    if (!d) return sysError("read --config-dir " + dir);
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      // ConfigMap volumes hold ..data and dot-dirs; only plain key files count.
      if (name.empty() || name[0] == '.' || !findKey(name) || name == "config-dir") continue;
      std::ifstream f(dir + "/" + name);
      std::stringstream ss;
      ss << f.rdbuf();
      values[name] = trim(ss.str());
      c.origin[name] = "config-dir";
    }
    closedir(d);
  }
  for (auto& [k, v] : flags) {
    values[k] = v;
    c.origin[k] = "flag";
  }
  for (auto& [k, v] : values) {
    Status s = findKey(k)->set(c, v);
    if (!s) {
      if (c.origin[k] == "config-dir") {
        Error e = s.error();
        e.context = "config-dir " + dir + "/" + k;
        return e;
      }
      return s.error();
    }
  }
  const auto overlap = [](const Cidr& a, const Cidr& b) { return a.contains(b.addr) || b.contains(a.addr); };
  if (overlap(c.serviceCidr, c.podCidr))
    return error("--service-cidr " + c.serviceCidr.str(), "overlaps --cluster-pool-ipv4-cidr " + c.podCidr.str());
  // Refused rather than quietly adjusted (Cilium's leaseTimings would): the safety argument of
  // l2/announcer.h needs renewDeadline < leaseDuration, and renewals need room before the deadline.
  auto ms = [](std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; };
  if (c.l2RenewDeadline >= c.l2LeaseDuration)
    return error("--l2-announcements-renew-deadline " + ms(c.l2RenewDeadline),
                 "is not below --l2-announcements-lease-duration " + ms(c.l2LeaseDuration) +
                     " (a node must stop answering before others may take over)");
  if (c.l2RetryPeriod * 6 >= c.l2RenewDeadline * 5)
    return error("--l2-announcements-retry-period " + ms(c.l2RetryPeriod),
                 "is not below --l2-announcements-renew-deadline " + ms(c.l2RenewDeadline) +
                     " / 1.2 (a renewal must be retried before the deadline)");
  const PortRange nodePorts{c.nodePortMin, c.nodePortMax};
  if (c.snatPorts.size() && c.snatPorts.overlaps(nodePorts))
    return error("--bpf-lb-snat-port-range " + c.snatPorts.str(), "overlaps --node-port-range " + nodePorts.str());
  if (c.masqPorts.size() && c.masqPorts.overlaps(nodePorts))
    return error("--bpf-masquerade-port-range " + c.masqPorts.str(), "overlaps --node-port-range " + nodePorts.str());
  return c;
}

Result<PortRange> readLocalPortRange(const std::string& path) {
  std::ifstream f(path);
  unsigned lo = 0, hi = 0;
  if (!(f >> lo >> hi)) return error("read " + path, "no \"MIN MAX\" port range in it");
  if (lo < 1 || hi > 65535 || lo > hi) return error("read " + path, std::to_string(lo) + " " + std::to_string(hi) + " is not a port range");
  return PortRange{static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
}

Result<PortRange> snatPortRange(const Config& c, const PortRange& ephemeral) {
  const PortRange nodePorts{c.nodePortMin, c.nodePortMax};
  const std::string fix = "set --bpf-lb-snat-port-range to a range outside node-port-range " + nodePorts.str() +
                          " and ip_local_port_range " + ephemeral.str() +
                          ", or narrow the node's net.ipv4.ip_local_port_range";
  if (c.snatPorts.size()) {
    if (c.snatPorts.overlaps(ephemeral))
      return error("--bpf-lb-snat-port-range " + c.snatPorts.str(),
                   "overlaps the node's ephemeral ports (net.ipv4.ip_local_port_range " + ephemeral.str() +
                       "): host connections and SNAT'd flows would compete for ports; " + fix);
    return c.snatPorts;
  }
  // Above the NodePorts: below the ephemeral range, or above it.
  const uint32_t from = uint32_t{c.nodePortMax} + 1;
  PortRange below{}, above{};
  if (ephemeral.min > from) below = {static_cast<uint16_t>(from), static_cast<uint16_t>(ephemeral.min - 1)};
  const uint32_t aboveFrom = std::max(from, uint32_t{ephemeral.max} + 1);
  if (aboveFrom <= 65535) above = {static_cast<uint16_t>(aboveFrom), 65535};
  const PortRange best = below.size() > above.size() ? below : above;
  if (best.size() < kMinSnatPorts)
    return error("choose SNAT ports",
                 "node-port-range " + nodePorts.str() + " and the node's ephemeral ports (net.ipv4.ip_local_port_range " +
                     ephemeral.str() + ") leave " + std::to_string(best.size()) + " ports above the NodePorts, fewer than " +
                     std::to_string(kMinSnatPorts) + "; " + fix);
  return best;
}

Result<PortRange> masqPortRange(const Config& c, const PortRange& ephemeral, const PortRange& snat) {
  if (!c.masqPorts.size()) return snat;
  if (c.masqPorts.overlaps(ephemeral))
    return error("--bpf-masquerade-port-range " + c.masqPorts.str(),
                 "overlaps the node's ephemeral ports " + ephemeral.str() + " (net.ipv4.ip_local_port_range)");
  return c.masqPorts;
}

std::string masqueradingLine(bool enabled, const std::vector<std::string>& devices, const Cidr& cidr) {
  if (!enabled) return "Disabled";
  std::string list;
  for (const auto& d : devices) list += (list.empty() ? "" : ", ") + d;
  return "BPF [" + list + "] " + cidr.str() + " [IPv4: Enabled, IPv6: Disabled]";
}

}  // namespace np
