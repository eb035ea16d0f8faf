#include "metrics/exposition.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace np::metrics {
namespace {

prometheus::ClientMetric withLabels(Labels labels) {
  prometheus::ClientMetric m;
  for (auto& [k, v] : labels) m.label.push_back({std::move(k), std::move(v)});
  return m;
}

}  // namespace

prometheus::MetricFamily& Exposition::family(const std::string& name, const std::string& help,
                                             prometheus::MetricType type) {
  auto [it, added] = index_.emplace(name, families_.size());
  if (added) families_.push_back(prometheus::MetricFamily{name, help, type, {}});
  return families_[it->second];
}

void Exposition::counter(const std::string& name, const std::string& help, Labels labels, double value) {
  auto m = withLabels(std::move(labels));
  m.counter.value = value;
  family(name, help, prometheus::MetricType::Counter).metric.push_back(std::move(m));
}

void Exposition::gauge(const std::string& name, const std::string& help, Labels labels, double value) {
  auto m = withLabels(std::move(labels));
  m.gauge.value = value;
  family(name, help, prometheus::MetricType::Gauge).metric.push_back(std::move(m));
}

void Exposition::histogram(const std::string& name, const std::string& help, Labels labels,
                           const prometheus::ClientMetric& collected) {
  auto m = withLabels(std::move(labels));
  m.histogram = collected.histogram;
  family(name, help, prometheus::MetricType::Histogram).metric.push_back(std::move(m));
}

std::vector<prometheus::MetricFamily> Exposition::families() const {
  std::vector<prometheus::MetricFamily> out = families_;
  for (auto& f : out)
    std::stable_sort(f.metric.begin(), f.metric.end(),
                     [](const prometheus::ClientMetric& a, const prometheus::ClientMetric& b) { return a.label < b.label; });
  return out;
}

std::string Exposition::text() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families());
  return out.str();
}

const std::vector<double>& ReconcileDurations::buckets() {
  static const std::vector<double> b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
  return b;
}

void ReconcileDurations::observe(const std::string& reconciler, std::chrono::nanoseconds took, bool ok) {
  auto& h = hist_[reconciler];
  if (!h) h = std::make_unique<prometheus::Histogram>(buckets());
  h->Observe(std::chrono::duration<double>(took).count());
  auto& e = errors_[reconciler];
  if (!ok) ++e;
}

void ReconcileDurations::addTo(Exposition& out) const {
  for (const auto& [name, h] : hist_)
    out.histogram(std::string(kPrefix) + "reconcile_duration_seconds",
                  "Time a reconciler took to bring the datapath to the desired state", {{"reconciler", name}},
                  h->Collect());
  for (const auto& [name, n] : errors_)
    out.counter(std::string(kPrefix) + "reconcile_errors_total", "Reconciler runs that failed",
                {{"reconciler", name}}, static_cast<double>(n));
}

}  // namespace np::metrics
