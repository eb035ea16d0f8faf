// The agent's Prometheus metrics (agent/metrics/): what the exposition shows, read from live state
// at scrape time on the agent's io_context, and the Hubble and Metrics lines of `status`.
#include <cctype>

#include "agent.h"
#include "core/log.h"

namespace np {
namespace {

using prometheus::MetricType;

std::string name(const char* suffix) { return std::string(metrics::kPrefix) + suffix; }

// Cilium's direction label values.
std::string direction(uint32_t dir) {
  std::string d = datapath::metricDirectionName(dir);
  for (char& ch : d) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return d;
}

}  // namespace

lb::Reconciler::Observer Agent::reconcileObserver() {
  return [this](const char* what, std::chrono::nanoseconds took, bool ok) { reconcileDurations_.observe(what, took, ok); };
}

std::function<void(std::chrono::nanoseconds, bool)> Agent::gcObserver() {
  return [this](std::chrono::nanoseconds took, bool ok) { reconcileDurations_.observe("conntrack-gc", took, ok); };
}

Status Agent::startMetrics() {
  if (config_.prometheusServeAddr.empty()) {
    NP_LOG_INFO("metrics", "Prometheus metrics disabled (prometheus-serve-addr is empty)");
    return {};
  }
  auto addr = parseListenAddress(config_.prometheusServeAddr);
  if (!addr) return error("--prometheus-serve-addr " + config_.prometheusServeAddr, "is not :port or IPv4:port");
  auto s = metrics::HttpServer::start(io_, *addr, [this] { return metricsText(); });
  if (!s) return s.error();
  metricsServer_ = std::move(*s);
  NP_LOG_INFO("metrics", "serving Prometheus metrics on http://%s:%u/metrics", addr->ip.str().c_str(),
              static_cast<unsigned>(metricsServer_->port()));
  return {};
}

std::string Agent::metricsText() const {
  metrics::Exposition e;
  // Datapath counters (np_metrics_v1): forwarded (reason 0) and dropped packets by reason.
  const std::string fwd = name("forward_count_total"), fwdBytes = name("forward_bytes_total");
  const std::string drop = name("drop_count_total"), dropBytes = name("drop_bytes_total");
  e.declare(fwd, "Packets the datapath forwarded, by direction", MetricType::Counter);
  e.declare(fwdBytes, "Bytes the datapath forwarded, by direction", MetricType::Counter);
  e.declare(drop, "Packets the datapath dropped, by reason and direction",
            MetricType::Counter);
  e.declare(dropBytes, "Bytes the datapath dropped, by reason and direction", MetricType::Counter);
  for (const datapath::CounterRow& r : datapath_->counters()) {
    const std::string dir = direction(r.direction);
    if (r.reason == 0) {
      e.counter(fwd, "", {{"direction", dir}}, static_cast<double>(r.packets));
      e.counter(fwdBytes, "", {{"direction", dir}}, static_cast<double>(r.bytes));
    } else {
      // Cilium's label: the reason's description. A number the agent does not know keeps its own
      // sample (never two samples with one label set).
      const std::string label = datapath::dropReasonInfo(r.reason) ? datapath::dropReasonName(r.reason)
                                                                   : "unknown (" + std::to_string(r.reason) + ")";
      e.counter(drop, "", {{"reason", label}, {"direction", dir}}, static_cast<double>(r.packets));
      e.counter(dropBytes, "", {{"reason", label}, {"direction", dir}}, static_cast<double>(r.bytes));
    }
  }

  for (const datapath::MapState& m : datapath_->mapStates()) {
    e.gauge(name("bpf_map_entries"), "Entries in a BPF map of the datapath", {{"map", m.name}}, m.entries);
    e.gauge(name("bpf_map_capacity"), "Maximum entries of a BPF map (its max_entries)", {{"map", m.name}},
            m.maxEntries);
    e.gauge(name("bpf_map_pressure"), "Fill of a BPF map: entries / capacity", {{"map", m.name}},
            m.maxEntries ? static_cast<double>(m.entries) / m.maxEntries : 0.0);
  }

  e.declare(name("reconcile_duration_seconds"), "Time a reconciler took to bring the datapath to the desired state",
            MetricType::Histogram);
  e.declare(name("reconcile_errors_total"), "Reconciler runs that failed", MetricType::Counter);
  reconcileDurations_.addTo(e);

  e.gauge(name("services"), "Services in the model (Kubernetes service ports, local and HostPort services)", {},
          static_cast<double>(lb_->services().size()));
  e.gauge(name("service_frontends"), "Service frontends programmed in the datapath", {},
          static_cast<double>(lb_->frontendCount()));
  e.gauge(name("service_backends"), "Service backends programmed in the datapath", {},
          static_cast<double>(lb_->backendCount()));
  e.gauge(name("endpoint_count"), "Pod endpoints on this node (made through the CNI)", {},
          static_cast<double>(pods_->endpoints().size()));

  if (ctGc_) {
    const ct::GcLoop::Totals& t = ctGc_->totals();
    const std::string runs = name("datapath_conntrack_gc_runs_total");
    const char* help = "Conntrack garbage collection runs, by status (completed, uncompleted)";
    e.counter(runs, help, {{"status", "completed"}}, static_cast<double>(t.completed));
    e.counter(runs, help, {{"status", "uncompleted"}}, static_cast<double>(t.failed));
    if (const auto& last = datapath_->conntrackGc().last()) {
      for (size_t i = 0; i < last->tables.size(); ++i) {
        const ct::TableStats& s = last->tables[i];
        e.counter(name("datapath_conntrack_gc_deleted_total"), "Conntrack entries the garbage collection deleted",
                  {{"table", s.name}}, static_cast<double>(t.deleted[i]));
        const char* gh = "Conntrack entries the last garbage collection run left (alive) and deleted";
        e.gauge(name("datapath_conntrack_gc_entries"), gh, {{"table", s.name}, {"status", "alive"}},
                static_cast<double>(s.entries));
        e.gauge(name("datapath_conntrack_gc_entries"), gh, {{"table", s.name}, {"status", "deleted"}},
                static_cast<double>(s.gcDeleted));
      }
    }
  }

  if (flows_) {
    const auto st = flows_->store().stats();
    const flows::FlowCounters c = flows_->counters();
    e.counter(name("hubble_flows_processed_total"), "Flows decoded and stored", {}, static_cast<double>(st.seen));
    const char* lh = "Flow events lost, by stage: ring_buffer (the datapath found the event ring full), decoder "
                     "(records that were no flow)";
    e.counter(name("hubble_lost_events_total"), lh, {{"stage", "ring_buffer"}}, static_cast<double>(c.datapathLost));
    e.counter(name("hubble_lost_events_total"), lh, {{"stage", "decoder"}}, static_cast<double>(c.undecodable));
    e.gauge(name("hubble_flows_stored"), "Flows held in the flow ring now", {}, static_cast<double>(st.num));
    e.gauge(name("hubble_flows_capacity"), "Flows the flow ring holds (hubble-event-buffer-capacity)", {},
            static_cast<double>(st.capacity));
  }
  return e.text();
}

void Agent::observabilityStatus(pb::StatusResponse& out, std::vector<std::string>& problems) const {
  pb::HubbleStatus* h = out.mutable_hubble();
  if (flows_) {
    const auto st = flows_->store().stats();
    const flows::FlowCounters c = flows_->counters();
    h->set_state("Ok");
    h->set_current_flows(st.num);
    h->set_max_flows(st.capacity);
    h->set_seen_flows(st.seen);
    h->set_flows_per_second(st.ratePerSec);
    h->set_lost_events(c.datapathLost + c.undecodable);
  } else {
    h->set_state("Disabled");
  }
  pb::MetricsStatus* m = out.mutable_metrics();
  m->set_address(config_.prometheusServeAddr);
  if (!metricsServer_) {
    m->set_state("Disabled");
    return;
  }
  m->set_state(metricsServer_->state());
  m->set_scrapes(metricsServer_->scrapes());
  if (metricsServer_->state() != "Ok") problems.push_back("metrics: " + metricsServer_->state());
}

}  // namespace np
