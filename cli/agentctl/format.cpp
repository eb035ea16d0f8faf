#include "format.h"

#include <cstdio>

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "table.h"

namespace nodepath::agentctl {
namespace {

namespace pb = nodepath::agent::v1;

constexpr std::string_view kOk = "Ok";

std::string orDash(const std::string& s) { return s.empty() ? "-" : s; }

template <typename Range>
std::string join(const Range& items, std::string_view sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

std::string enabled(bool on) { return on ? "Enabled" : "Disabled"; }

std::string yesNo(bool b) { return b ? "yes" : "no"; }

// Matches cilium's device list: "name ipv4 (Direct Routing)", comma-separated.
std::string deviceList(const pb::StatusResponse& status) {
  std::vector<std::string> parts;
  for (const auto& dev : status.devices()) {
    std::string part = dev.name();
    if (!dev.ipv4().empty()) part += " " + dev.ipv4();
    if (dev.direct_routing()) part += " (Direct Routing)";
    parts.push_back(std::move(part));
  }
  return join(parts, ", ");
}

// `XDP Acceleration: Native [ens192]`, as cilium prints it, with the devices XDP runs on now;
// best-effort also names the devices that fell back to tc, and why.
std::string xdpAcceleration(const pb::StatusResponse& status) {
  std::string out = status.xdp_acceleration();
  std::vector<std::string> native, other;
  for (const auto& dev : status.devices()) {
    if (dev.xdp() == "native") {
      native.push_back(dev.xdp_attached() ? dev.name() : dev.name() + " (not attached)");
    } else if (dev.xdp() == "tc fallback") {
      other.push_back(dev.name() + ": tc fallback, " + dev.xdp_fallback());
    }
  }
  if (!native.empty()) out += " [" + join(native, ", ") + "]";
  if (!other.empty()) out += " [" + join(other, "; ") + "]";
  return out;
}

// "12/262144 established, 16384/16384 embryonic (40312 evicted in the last 5s)".
std::string conntrackSummary(const pb::StatusResponse& status) {
  std::vector<std::string> parts;
  for (const auto& t : status.conntrack_tables()) {
    std::string part = std::to_string(t.entries()) + "/" + std::to_string(t.max_entries()) + " " + t.kind();
    if (t.evicted_last() > 0) {
      part += " (" + std::to_string(t.evicted_last()) + " evicted in the last " +
              formatDuration((status.conntrack_gc().last_interval_ms() + 500) / 1000) + ")";
    }
    parts.push_back(std::move(part));
  }
  return join(parts, ", ");
}

}  // namespace

// As cilium status prints it: "Ok   Current/Max Flows: 12/4095 (0.29%), Flows/s: 1.20   Metrics: Ok".
std::string hubbleLine(const pb::StatusResponse& status) {
  const pb::HubbleStatus& h = status.hubble();
  std::string out = h.state().empty() ? "(no state)" : h.state();
  if (h.state() == kOk) {
    char buf[160];
    const double pct = h.max_flows() ? 100.0 * static_cast<double>(h.current_flows()) / static_cast<double>(h.max_flows()) : 0.0;
    snprintf(buf, sizeof buf, "   Current/Max Flows: %llu/%llu (%.2f%%), Flows/s: %.2f",
             static_cast<unsigned long long>(h.current_flows()), static_cast<unsigned long long>(h.max_flows()), pct,
             h.flows_per_second());
    out += buf;
  }
  if (status.has_metrics()) out += "   Metrics: " + (status.metrics().state().empty() ? std::string("?") : status.metrics().state());
  return out;
}

namespace {

void addSummaryRows(const pb::StatusResponse& status, Table& table) {
  if (!status.kube_proxy_replacement().empty()) {
    std::vector<std::string> row{"KubeProxyReplacement:", status.kube_proxy_replacement()};
    if (status.devices_size() > 0) row.push_back("[" + deviceList(status) + "]");
    table.addRow(std::move(row));
  }
  std::vector<std::string> errors;
  for (const auto& dev : status.devices()) {
    if (!dev.error().empty()) errors.push_back(dev.name() + ": " + dev.error());
  }
  if (!errors.empty()) table.addRow({"Device errors:", join(errors, "; ")});

  std::vector<std::string> agent{"nodepath:",
                                 status.state().empty() ? "(no state)" : status.state()};
  if (!status.version().empty()) agent.push_back(status.version());
  if (!status.message().empty()) agent.push_back(status.message());
  table.addRow(std::move(agent));

  if (!status.node_name().empty()) table.addRow({"Node:", status.node_name()});
  if (status.uptime_seconds() > 0) {
    table.addRow({"Uptime:", formatDuration(status.uptime_seconds())});
  }

  if (!status.xdp_acceleration().empty() && status.xdp_acceleration() != "Disabled")
    table.addRow({"XDP Acceleration:", xdpAcceleration(status)});

  std::string socketLb = enabled(status.socket_lb());
  if (status.socket_lb() && !status.socket_lb_cgroup().empty()) {
    socketLb += " [cgroup " + status.socket_lb_cgroup() + "]";
  }
  table.addRow({"Socket LB:", socketLb});
  if (!status.lb_mode().empty()) {
    std::string mode = status.lb_mode();
    if (!status.dsr_dispatch_mode().empty()) mode += " (" + status.dsr_dispatch_mode() + ")";
    table.addRow({"LB mode:", mode});
  }
  table.addRow({"Services:", std::to_string(status.services()) + " services, " +
                                 std::to_string(status.frontends()) + " frontends, " +
                                 std::to_string(status.backends()) + " backends"});
  // Host Routing before Masquerading, as cilium status prints them.
  if (!status.host_routing().empty()) {
    std::string line = status.host_routing();
    if (!status.host_routing_reason().empty()) line += " (" + status.host_routing_reason() + ")";
    table.addRow({"Host Routing:", line});
  }
  if (!status.masquerading().empty()) table.addRow({"Masquerading:", status.masquerading()});
  if (status.has_hubble()) table.addRow({"Hubble:", hubbleLine(status)});
  if (status.conntrack_tables_size() > 0) table.addRow({"Conntrack:", conntrackSummary(status)});
  if (status.has_ipam()) table.addRow({"IPAM:", ipamLine(status)});
  if (status.has_l2()) table.addRow({"L2 announcements:", l2Line(status.l2())});
  if (status.has_cni()) {
    const pb::CniConfStatus& c = status.cni();
    std::string line = c.ready() ? "Ready" : "Not ready (" + c.reason() + ")";
    line += c.conf_written() ? ", " + c.conf_path() : ", no config written";
    if (!c.plugin_present()) line += ", no nodepath-cni in " + c.bin_dir();
    table.addRow({"CNI:", line});
  }
  if (status.node_routes_size() > 0) {
    std::vector<std::string> parts;
    size_t installed = 0;
    for (const auto& r : status.node_routes()) {
      if (r.installed()) ++installed;
      else parts.push_back(r.node() + ": " + r.error());
    }
    std::string line = std::to_string(installed) + "/" + std::to_string(status.node_routes_size()) + " installed";
    if (!parts.empty()) line += " (" + join(parts, "; ") + ")";
    table.addRow({"Node routes:", line});
  }
  if (!status.bpf_root().empty()) table.addRow({"BPF root:", status.bpf_root()});
  if (status.has_local_state()) {
    const pb::StateStatus& st = status.local_state();
    std::string line = st.state() + "   " + std::to_string(st.services()) + " local services, " +
                       std::to_string(st.seq()) + " changes saved";
    if (st.stale_frontends() > 0) line += ", " + std::to_string(st.stale_frontends()) + " stale frontends kept";
    table.addRow({"Stored state:", line});
  }
  if (status.sources_size() > 0) {
    std::vector<std::string> parts;
    for (const auto& src : status.sources()) parts.push_back(src.name() + (src.synced() ? " synced" : " not synced"));
    table.addRow({"Sources:", join(parts, ", ")});
  }
  if (status.has_reconcile()) {
    const pb::ReconcileStatus& r = status.reconcile();
    std::string line;
    if (r.last_seconds_ago() < 0) {
      line = "never run";
    } else {
      const pb::ReconcileReport& l = r.last();
      line = l.error().empty() ? "Ok" : "Failed";
      line += "   last " + formatDuration(static_cast<uint64_t>(r.last_seconds_ago())) + " ago: " +
              std::to_string(l.missing()) + " missing, " + std::to_string(l.drifted()) + " drifted, " +
              std::to_string(l.orphans()) + " orphaned; " + std::to_string(r.repaired_total()) +
              " repaired in " + std::to_string(r.runs()) + " runs";
    }
    line += r.interval_seconds() ? ", every " + formatDuration(r.interval_seconds()) : ", interval off";
    table.addRow({"Reconcile:", line});
  }
  if (status.restored()) {
    table.addRow({"Restored:", std::to_string(status.restored_services()) +
                                   " services adopted from pinned maps"});
  }
}

// Reference §9.1 item 21, limited to what StatusResponse carries.
std::string kprDetails(const pb::StatusResponse& status) {
  std::string out = "KubeProxyReplacement Details:\n";
  Table details("  ");
  if (!status.kube_proxy_replacement().empty()) {
    details.addRow({"Status:", status.kube_proxy_replacement()});
  }
  details.addRow({"Socket LB:", enabled(status.socket_lb())});
  if (status.socket_lb()) {
    if (status.socket_lb_hooks_size() > 0) {
      details.addRow({"Socket LB Hooks:", join(status.socket_lb_hooks(), ", ")});
    }
    details.addRow({"Socket LB Tracing:", enabled(status.socket_lb_tracing())});
    details.addRow({"Socket LB Coverage:", "Full"});
  }
  if (status.devices_size() > 0) details.addRow({"Devices:", deviceList(status)});
  if (!status.lb_mode().empty()) details.addRow({"Mode:", status.lb_mode()});
  if (!status.dsr_dispatch_mode().empty()) {
    details.addRow({"  DSR Dispatch Mode:", status.dsr_dispatch_mode()});
  }
  if (!status.backend_selection().empty()) {
    details.addRow({"Backend Selection:", status.backend_selection()});
  }
  details.addRow({"Session Affinity:", enabled(status.kube_proxy_replacement() == "True")});
  if (!status.xdp_acceleration().empty()) details.addRow({"XDP Acceleration:", xdpAcceleration(status)});
  for (const auto& dev : status.devices())
    if (!dev.xdp_limit().empty()) details.addRow({"  XDP Hand-off:", "none on " + dev.name() + " (" + dev.xdp_limit() + ")"});
  out += details.render();

  // With kube-proxy replacement off the agent does not own any service type.
  const bool kpr = status.kube_proxy_replacement() == "True";
  out += "  Services:\n";
  Table services("  ");
  std::string nodePort = enabled(kpr);
  if (kpr && !status.node_port_range().empty()) {
    nodePort += " (Range: " + status.node_port_range() + ")";
  }
  services.addRow({"- ClusterIP:", enabled(kpr)});
  services.addRow({"- NodePort:", nodePort});
  services.addRow({"- LoadBalancer:", enabled(kpr)});
  services.addRow({"- externalIPs:", enabled(kpr)});
  out += services.render();
  return out;
}

std::string deviceTable(const pb::StatusResponse& status) {
  Table table("  ");
  // The XDP column only with acceleration on (some device has an XDP mode).
  const bool withXdp = std::any_of(status.devices().begin(), status.devices().end(),
                                   [](const pb::DeviceStatus& d) { return !d.xdp().empty(); });
  std::vector<std::string> header{"Name", "Ifindex", "IPv4", "MAC", "TC ingress", "TC egress"};
  if (withXdp) header.push_back("XDP");
  header.push_back("Error");
  table.addRow(std::move(header));
  bool native = false;
  for (const auto& dev : status.devices()) {
    // "yes (tcx)": attached, and how (a tcx link, or a clsact filter on kernels before 6.6).
    const std::string how = dev.tc_link().empty() ? "" : " (" + dev.tc_link() + ")";
    std::vector<std::string> row{dev.name(),
                                 std::to_string(dev.ifindex()),
                                 orDash(dev.ipv4()),
                                 orDash(dev.mac()),
                                 yesNo(dev.tc_ingress()) + (dev.tc_ingress() ? how : ""),
                                 yesNo(dev.tc_egress()) + (dev.tc_egress() ? how : "")};
    if (withXdp) {
      std::string mode = orDash(dev.xdp());
      if (dev.xdp() == "native" && !dev.xdp_attached()) mode += " (not attached)";
      row.push_back(std::move(mode));
    }
    row.push_back(orDash(dev.error()));
    table.addRow(std::move(row));
    native = native || dev.xdp() == "native";
  }
  std::string out = "Device Attachments:\n" + table.render();
  if (!native) return out;
  // What each device's XDP program did since it was loaded: the proof it handles the traffic.
  Table counters("  ");
  counters.addRow({"Device", "TX", "Redirect", "Pass (done)", "To tc", "Skipped", "Drop"});
  for (const auto& dev : status.devices()) {
    if (dev.xdp() != "native") continue;
    const auto& c = dev.xdp_counters();
    counters.addRow({dev.name(), std::to_string(c.tx()), std::to_string(c.redirect()), std::to_string(c.pass()),
                     std::to_string(c.deferred()), std::to_string(c.skipped()), std::to_string(c.drop())});
  }
  return out + "XDP packets:\n" + counters.render();
}

std::string mapTable(const pb::StatusResponse& status) {
  Table table("  ");
  table.addRow({"Name", "Max entries", "Entries"});
  for (const auto& map : status.maps()) {
    table.addRow({map.name(), std::to_string(map.max_entries()), std::to_string(map.entries())});
  }
  return "BPF Maps:\n" + table.render();
}

std::string conntrackTable(const pb::StatusResponse& status) {
  Table table("  ");
  table.addRow({"Table", "Kind", "Max entries", "Entries", "Evicted (last GC interval)", "Evicted (total)",
                "GC deleted (last)", "Created (total)", "Promoted (total)", "SNAT entries"});
  for (const auto& t : status.conntrack_tables()) {
    table.addRow({t.name(), t.kind(), std::to_string(t.max_entries()), std::to_string(t.entries()),
                  std::to_string(t.evicted_last()), std::to_string(t.evicted_total()),
                  std::to_string(t.gc_deleted_last()), std::to_string(t.created_total()),
                  t.kind() == "embryonic" ? std::to_string(t.promoted_total()) : "-",
                  std::to_string(t.snat_entries())});
  }
  const auto& gc = status.conntrack_gc();
  std::string line = "  GC: " + std::to_string(gc.runs()) + " runs";
  if (gc.runs() > 0) {
    line += ", the last " + std::to_string(gc.last_run_age_ms() / 1000) + " s ago took " + std::to_string(gc.last_duration_us()) + " us and covers " +
            std::to_string(gc.last_interval_ms()) + " ms";
  }
  line += ", next in " + std::to_string(gc.next_run_in_ms()) + " ms";
  if (!gc.error().empty()) line += "; last error: " + gc.error();
  return "Conntrack (evictions are estimates):\n" + table.render() + line + "\n";
}

std::string counterTable(const pb::StatusResponse& status) {
  Table table("  ");
  table.addRow({"Direction", "Reason", "Packets", "Bytes"});
  for (const auto& c : status.counters()) {
    std::string reason = std::to_string(c.reason());
    if (!c.name().empty()) reason += " (" + c.name() + ")";
    table.addRow({orDash(c.direction()), reason, std::to_string(c.packets()),
                  std::to_string(c.bytes())});
  }
  return "Datapath counters:\n" + table.render();
}

std::string orDefault(const std::string& s, const char* def) { return s.empty() ? def : s; }

// "ClientIP (10800s)", or "-" for none (the default, which the agent leaves empty).
std::string affinityText(const pb::Service& svc) {
  if (svc.session_affinity().empty() || svc.session_affinity() == "None") return "-";
  if (svc.session_affinity() != "ClientIP") return svc.session_affinity();
  return svc.session_affinity() + " (" + std::to_string(svc.session_affinity_timeout_seconds()) + "s)";
}

// "Cluster/Local": external, then internal traffic policy; "-" for both Cluster (the default).
std::string policyText(const pb::Service& svc) {
  if (svc.external_traffic_policy().empty() && svc.internal_traffic_policy().empty()) return "-";
  return orDefault(svc.external_traffic_policy(), "Cluster") + "/" + orDefault(svc.internal_traffic_policy(), "Cluster");
}

std::string backendList(const pb::Service& svc) {
  std::vector<std::string> parts;
  for (const auto& b : svc.backends()) parts.push_back(formatBackend(b));
  return orDash(join(parts, ","));
}

// Numeric order for IPv4 so 10.0.0.9 sorts before 10.0.0.10; anything unparsable sorts last.
uint64_t addressKey(const std::string& address) {
  in_addr addr{};
  if (inet_pton(AF_INET, address.c_str(), &addr) != 1) return uint64_t{1} << 32;
  return ntohl(addr.s_addr);
}

}  // namespace

std::string toJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) {
    // Only possible for messages with Any fields and no type resolver; ours have none.
    return "{\"error\": \"cannot render JSON\"}\n";
  }
  if (out.empty() || out.back() != '\n') out += '\n';
  return out;
}

std::string formatStatus(const pb::StatusResponse& status, StatusDetail detail) {
  if (detail == StatusDetail::kBrief) {
    if (status.state() == kOk) return "OK\n";
    if (!status.message().empty()) return "error: " + status.message() + "\n";
    if (status.state().empty()) return "error: the agent reported no state\n";
    return "error: nodepath is " + status.state() + "\n";
  }
  Table summary;
  addSummaryRows(status, summary);
  std::string out = summary.render();
  if (detail == StatusDetail::kVerbose) {
    if (status.problems_size() > 0) {
      out += "Problems:\n";
      for (const auto& p : status.problems()) out += "  - " + p + "\n";
    }
    out += kprDetails(status);
    if (status.devices_size() > 0) out += deviceTable(status);
    if (status.maps_size() > 0) out += mapTable(status);
    if (status.conntrack_tables_size() > 0) out += conntrackTable(status);
    if (status.counters_size() > 0) out += counterTable(status);
    if (status.l2().enabled()) {
      out += "L2 announcements (" + status.l2().timings() + "; heartbeat Lease " + status.l2().namespace_() + "/" +
             status.l2().heartbeat_lease() + (status.l2().heartbeat_held() ? " held" : " not held") + "):\n";
      std::string list = formatL2List(status.l2());
      std::string indented;
      size_t start = 0;
      while (start < list.size()) {
        size_t end = list.find('\n', start);
        if (end == std::string::npos) end = list.size();
        indented += "  " + list.substr(start, end - start) + "\n";
        start = end + 1;
      }
      out += indented;
      if (status.l2().responders_size() > 0) {
        Table t("  ");
        t.addRow({"INTERFACE", "MAC", "ADDRESSES", "REQUESTS", "REPLIES", "NOT-OURS", "GRATUITOUS", "IGNORED", "STALE", "SEND-ERRORS"});
        for (const auto& r : status.l2().responders())
          t.addRow({r.device(), r.mac(), std::to_string(r.addresses()), std::to_string(r.requests()),
                    std::to_string(r.replies()), std::to_string(r.not_announced()), std::to_string(r.gratuitous()),
                    std::to_string(r.ignored()), std::to_string(r.stale()), std::to_string(r.send_errors())});
        out += "  ARP responders:\n" + t.render();
      }
    }
  }
  return out;
}

std::string l2Line(const pb::L2Status& l2) {
  if (!l2.enabled()) return "Disabled";
  if (!l2.synced()) return "Enabled, waiting for policies, this node and services to be listed";
  size_t here = 0, elsewhere = 0, none = 0;
  for (const auto& a : l2.announcements()) {
    if (a.answering()) ++here;
    else if (!a.holder().empty()) ++elsewhere;
    else ++none;
  }
  std::string line = std::to_string(here) + (here == 1 ? " address" : " addresses") + " announced here, " +
                     std::to_string(elsewhere) + " by other nodes";
  if (none) line += ", " + std::to_string(none) + " without holder";
  line += " (" + std::to_string(l2.policies()) + (l2.policies() == 1 ? " policy" : " policies") +
          (l2.heartbeat_held() ? ", heartbeat held" : "") + ", " + std::to_string(l2.lease_requests()) +
          " Lease requests)";
  if (!l2.error().empty()) line += ": " + l2.error();
  return line;
}

std::string formatL2List(const pb::L2Status& l2) {
  if (!l2.enabled()) return "L2 announcements: disabled (--enable-l2-announcements)\n";
  std::vector<const pb::L2Announcement*> rows;
  for (const auto& a : l2.announcements()) rows.push_back(&a);
  std::stable_sort(rows.begin(), rows.end(), [](const auto* a, const auto* b) {
    return std::tie(a->service(), a->ip(), a->device()) < std::tie(b->service(), b->ip(), b->device());
  });
  Table table;
  table.addRow({"SERVICE", "IP", "INTERFACE", "STATE", "HOLDER", "SINCE"});
  for (const auto* a : rows) {
    const std::string state = a->answering() ? "announcing" : a->holder().empty() ? "no holder" : "standby";
    const std::string since =
        a->answering() ? a->since() + " (" + formatDuration(a->since_seconds_ago()) + " ago)" : "-";
    table.addRow({orDash(a->service()), a->ip(), a->device(), state, orDash(a->holder()), since});
  }
  std::string out = table.render();
  if (rows.empty()) out += "(no service address is announceable from this node)\n";
  // Why a Lease could not be taken, once per Lease (the API server's answer: 403, 422, ...).
  std::set<std::string> told;
  for (const auto* a : rows)
    if (!a->error().empty() && told.insert(a->service() + "\n" + a->lease()).second)
      out += orDash(a->service()) + " (Lease " + a->lease() + "): " + a->error() + "\n";
  return out;
}

int statusExitCode(const pb::StatusResponse& status) { return status.state() == kOk ? 0 : 1; }

std::string formatServiceList(const pb::ListServicesResponse& list) {
  std::vector<const pb::Service*> services;
  for (const auto& svc : list.services()) services.push_back(&svc);
  std::stable_sort(services.begin(), services.end(),
                   [](const auto* a, const auto* b) { return a->name() < b->name(); });
  Table table;
  table.addRow({"NAME", "PROTOCOL", "PORT", "CLUSTER-IP", "NODE-PORT", "EXTERNAL-IPS", "LB-IPS",
                "AFFINITY", "ETP/ITP", "BACKENDS"});
  for (const auto* svc : services) {
    table.addRow({svc->name(), protocolName(svc->protocol()), std::to_string(svc->port()),
                  orDash(svc->cluster_ip()),
                  svc->node_port() == 0 ? "-" : std::to_string(svc->node_port()),
                  orDash(join(svc->external_ips(), ",")),
                  orDash(join(svc->load_balancer_ips(), ",")), affinityText(*svc), policyText(*svc),
                  backendList(*svc)});
  }
  return table.render();
}

std::string formatService(const pb::Service& svc) {
  Table table;
  table.addRow({"Name:", svc.name()});
  table.addRow({"Source:", orDash(svc.source())});
  table.addRow({"Protocol:", protocolName(svc.protocol())});
  table.addRow({"Port:", std::to_string(svc.port())});
  table.addRow({"Cluster IP:", orDash(svc.cluster_ip())});
  table.addRow({"Node port:", svc.node_port() == 0 ? "-" : std::to_string(svc.node_port())});
  if (svc.host_port() != 0)
    table.addRow({"Host port:", (svc.host_ip().empty() ? std::string("(node addresses)") : svc.host_ip()) + ":" +
                                    std::to_string(svc.host_port())});
  table.addRow({"External IPs:", orDash(join(svc.external_ips(), ", "))});
  table.addRow({"LB IPs:", orDash(join(svc.load_balancer_ips(), ", "))});
  if (!svc.session_affinity().empty()) table.addRow({"Session affinity:", affinityText(svc)});
  if (!svc.external_traffic_policy().empty() || !svc.internal_traffic_policy().empty())
    table.addRow({"Traffic policy:", "external " + orDefault(svc.external_traffic_policy(), "Cluster") +
                                         ", internal " + orDefault(svc.internal_traffic_policy(), "Cluster")});
  if (svc.backends_size() == 0) {
    table.addRow({"Backends:", "-"});
  } else {
    for (int i = 0; i < svc.backends_size(); ++i) {
      table.addRow({i == 0 ? "Backends:" : "", formatBackend(svc.backends(i))});
    }
  }
  return table.render();
}

std::string formatLbList(const pb::ListLbResponse& list) {
  std::vector<const pb::LbEntry*> entries;
  for (const auto& e : list.entries()) entries.push_back(&e);
  std::stable_sort(entries.begin(), entries.end(), [](const auto* a, const auto* b) {
    return std::tuple(addressKey(a->address()), a->address(), a->port(), a->protocol()) <
           std::tuple(addressKey(b->address()), b->address(), b->port(), b->protocol());
  });
  Table table;
  table.addRow({"SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"});
  for (const auto* e : entries) {
    const std::string id = " (" + std::to_string(e->service_id()) + ")";
    // Cilium prints the wildcard protocol of a pre-protocol-aware entry as ANY.
    const std::string proto =
        e->protocol() == pb::PROTOCOL_UNSPECIFIED ? "ANY" : protocolName(e->protocol());
    std::string first = "0.0.0.0:0" + id + " (0)";
    if (e->flags_size() > 0) first += " [" + join(e->flags(), ", ") + "]";
    table.addRow({e->address() + ":" + std::to_string(e->port()) + "/" + proto, first});

    std::vector<const pb::LbSlot*> slots;
    for (const auto& s : e->slots()) slots.push_back(&s);
    std::stable_sort(slots.begin(), slots.end(),
                     [](const auto* a, const auto* b) { return a->slot() < b->slot(); });
    for (const auto* s : slots) {
      std::string backend =
          s->address().empty()
              ? "(backend " + std::to_string(s->backend_id()) + " missing)"
              : s->address() + ":" + std::to_string(s->port());
      backend += id + " (" + std::to_string(s->slot()) + ")";
      if (s->state() == pb::TERMINATING) backend += " [terminating]";
      table.addRow({"", backend});
    }
  }
  return table.render();
}

// One line per entry, Cilium's `bpf ct list global` shape: "TCP IN src:sport -> dst:dport", what
// the entry rewrites, then its lifetime, counters and flags. Sorted by tuple so two listings
// compare line by line.
std::string formatCtList(const pb::ListConntrackResponse& list, bool nat) {
  std::vector<const pb::CtEntry*> entries;
  for (const auto& e : list.entries()) entries.push_back(&e);
  auto key = [](const pb::CtEntry* e) {
    return std::tuple(addressKey(e->src()), e->sport(), addressKey(e->dst()), e->dport(), e->protocol(),
                      e->hook(), e->table());
  };
  std::stable_sort(entries.begin(), entries.end(), [&](const auto* a, const auto* b) { return key(a) < key(b); });
  std::string out;
  for (const auto* e : entries) {
    out += protocolName(e->protocol());
    out += e->hook() == "egress" ? " OUT " : " IN ";
    out += e->src() + ":" + std::to_string(e->sport()) + " -> " + e->dst() + ":" + std::to_string(e->dport());
    const bool src = !e->xlate_src().empty() || e->xlate_sport() != 0;
    const bool dst = !e->xlate_dst().empty() || e->xlate_dport() != 0;
    auto endpoint = [](const std::string& addr, const std::string& keep, uint32_t port, uint32_t keepPort) {
      return (addr.empty() ? keep : addr) + ":" + std::to_string(port ? port : keepPort);
    };
    if (src) out += " XLATE_SRC " + endpoint(e->xlate_src(), e->src(), e->xlate_sport(), e->sport());
    if (dst) out += " XLATE_DST " + endpoint(e->xlate_dst(), e->dst(), e->xlate_dport(), e->dport());
    out += " expires=" + std::to_string(e->expires_in_s()) + "s";
    if (e->expires_in_s() < 0) out += "(expired)";
    out += " packets=" + std::to_string(e->packets()) + " bytes=" + std::to_string(e->bytes());
    if (!e->tcp_flags().empty()) out += " tcp=" + e->tcp_flags();
    if (e->service_id()) out += " revnat=" + std::to_string(e->service_id());
    if (e->backend_id()) out += " backend=" + std::to_string(e->backend_id());
    if (e->flags_size() > 0) out += " flags=" + join(e->flags(), ",");
    out += " table=" + e->table();
    out += "\n";
  }
  if (entries.empty()) out = nat ? "no NAT entries\n" : "no conntrack entries\n";
  return out;
}

std::string formatReconcile(const pb::ReconcileReport& r) {
  std::string out = r.error().empty() ? "reconciled" : "reconcile failed part-way";
  out += " " + std::to_string(r.services()) + " services (" + std::to_string(r.entries()) +
         " service-map entries) in " + std::to_string(r.took_us() / 1000) + " ms: " + std::to_string(r.missing()) +
         " missing, " + std::to_string(r.drifted()) + " drifted, " + std::to_string(r.orphans()) + " orphaned";
  if (r.stale_kept()) out += "; " + std::to_string(r.stale_kept()) + " stale frontends kept until every source syncs";
  out += "\n";
  if (!r.error().empty()) out += "error: " + r.error() + "\n";
  return out;
}

std::string formatState(const pb::StateResponse& resp) {
  const pb::StateStatus& st = resp.state();
  std::string out;
  if (!resp.message().empty()) out += resp.message() + "\n";
  for (const auto& d : resp.dropped()) out += "dropped: " + d + "\n";
  for (const auto& m : resp.moved_aside()) out += "moved aside: " + m + "\n";
  if (resp.has_reconcile()) out += formatReconcile(resp.reconcile());
  Table table;
  table.addRow({"State:", orDash(st.state())});
  if (!st.reason().empty()) table.addRow({"Reason:", st.reason()});
  table.addRow({"Directory:", orDash(st.dir())});
  table.addRow({"Services:", std::to_string(st.services())});
  table.addRow({"Changes saved:", std::to_string(st.seq()) + " (" + std::to_string(st.journal_bytes()) +
                                      " journal bytes since the last snapshot)"});
  table.addRow({"Last-good copy:", st.last_good() ? "yes" : "no"});
  table.addRow({"Stale frontends:", std::to_string(st.stale_frontends()) +
                                        (st.stale_frontends() ? " (adopted, kept until the state is loaded)" : "")});
  out += table.render();
  if (st.state() != "Ok" && !st.state().empty())
    out += "Ways out: fix the file and run `agentctl state reload`; `agentctl state accept` takes the best\n"
           "state that loads; `agentctl state reset` starts empty (removes the stale entries).\n";
  return out;
}

std::string formatNodeList(const pb::ListNodesResponse& list) {
  std::vector<const pb::Node*> nodes;
  for (const auto& n : list.nodes()) nodes.push_back(&n);
  std::stable_sort(nodes.begin(), nodes.end(),
                   [](const auto* a, const auto* b) { return a->name() < b->name(); });
  Table table;
  table.addRow({"NAME", "IP", "POD-CIDR", "LOCAL"});
  for (const auto* n : nodes) {
    table.addRow({n->name(), orDash(n->ip()), orDash(n->pod_cidr()), yesNo(n->local())});
  }
  return table.render();
}

std::string ipamLine(const pb::StatusResponse& status) {
  const pb::IpamStatus& i = status.ipam();
  if (i.pod_cidr().empty()) return "IPv4: disabled (no pod CIDR for this node)";
  return "IPv4: " + std::to_string(i.allocated()) + "/" + std::to_string(i.capacity()) + " allocated from " +
         i.pod_cidr() + ", router " + i.router();
}

std::string formatEndpointList(const pb::ListEndpointsResponse& list) {
  std::vector<const pb::Endpoint*> eps;
  for (const auto& e : list.endpoints()) eps.push_back(&e);
  std::stable_sort(eps.begin(), eps.end(), [](const auto* a, const auto* b) {
    auto key = [](const pb::Endpoint* e) {
      unsigned a1 = 0, a2 = 0, a3 = 0, a4 = 0;
      sscanf(e->ipv4().c_str(), "%u.%u.%u.%u", &a1, &a2, &a3, &a4);
      return (uint64_t{a1} << 24) | (a2 << 16) | (a3 << 8) | a4;
    };
    return key(a) < key(b);
  });
  Table table;
  table.addRow({"POD", "CONTAINER", "IPV4", "INTERFACE", "HOST-IF", "HOST-IFINDEX", "MAC"});
  for (const auto* e : eps) {
    std::string pod = e->pod_name().empty() ? "-" : (e->pod_namespace().empty() ? "" : e->pod_namespace() + "/") + e->pod_name();
    std::string cid = e->container_id().size() > 12 ? e->container_id().substr(0, 12) : e->container_id();
    table.addRow({pod, cid, e->ipv4(), e->ifname() + " (" + e->netns() + ")", e->host_ifname(),
                  std::to_string(e->host_ifindex()), e->pod_mac()});
  }
  return table.render();
}

std::string formatBackend(const pb::Backend& backend) {
  std::string out = backend.address() + ":" + std::to_string(backend.port());
  if (backend.state() == pb::TERMINATING) out += " (terminating)";
  if (!backend.node_name().empty()) out += " @" + backend.node_name();
  if (backend.local()) out += " (local)";
  return out;
}

std::string protocolName(pb::Protocol protocol) {
  switch (protocol) {
    case pb::TCP:
      return "TCP";
    case pb::UDP:
      return "UDP";
    case pb::ICMP:
      return "ICMP";
    case pb::PROTOCOL_UNSPECIFIED:
      return "-";
    default:
      return std::to_string(static_cast<int>(protocol));  // a newer agent's protocol
  }
}

std::string formatDuration(uint64_t seconds) {
  const uint64_t d = seconds / 86400;
  const uint64_t h = seconds / 3600 % 24;
  const uint64_t m = seconds / 60 % 60;
  const uint64_t s = seconds % 60;
  std::string out;
  if (d > 0) out += std::to_string(d) + "d";
  if (d > 0 || h > 0) out += std::to_string(h) + "h";
  if (d > 0 || h > 0 || m > 0) out += std::to_string(m) + "m";
  out += std::to_string(s) + "s";
  return out;
}

}  // namespace nodepath::agentctl
