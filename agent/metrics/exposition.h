// The Prometheus text exposition (format 0.0.4) of the agent's metrics: a small builder over
// prometheus-cpp's data model and TextSerializer (Debian's prometheus-cpp-core), which does the
// escaping of label values and the histogram lines (_bucket with le, "+Inf", _sum, _count).
//
// Output order is stable, so two scrapes of the same state are byte-identical: families in the
// order they were first added, samples of a family sorted by their labels. Pure code, no I/O.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace np::metrics {

// Every metric the agent exposes starts with this.
inline constexpr const char* kPrefix = "nodepath_";
// The Content-Type of the exposition.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  // name is the full metric name (counters end in _total); help is one line of text. A family
  // added again keeps its first help and type; the sample is added to it.
  void counter(const std::string& name, const std::string& help, Labels labels, double value);
  void gauge(const std::string& name, const std::string& help, Labels labels, double value);
  // A histogram sample as prometheus::Histogram::Collect() gives it (buckets with the +Inf one).
  void histogram(const std::string& name, const std::string& help, Labels labels,
                 const prometheus::ClientMetric& collected);

  // A family that is shown (HELP and TYPE) even before it has samples: counters the datapath
  // creates on the first packet are known to exist from the first scrape.
  void declare(const std::string& name, const std::string& help, prometheus::MetricType type) { family(name, help, type); }

  std::vector<prometheus::MetricFamily> families() const;
  std::string text() const;

 private:
  prometheus::MetricFamily& family(const std::string& name, const std::string& help, prometheus::MetricType type);
  std::vector<prometheus::MetricFamily> families_;
  std::map<std::string, size_t> index_;
};

// Reconcile durations by reconciler ("lb-apply", "lb-full", "conntrack-gc"), as
// nodepath_reconcile_duration_seconds{reconciler}; errors as
// nodepath_reconcile_errors_total{reconciler}. Buckets from 100 us to 10 s. Not thread-safe:
// used on the agent's io_context.
class ReconcileDurations {
 public:
  static const std::vector<double>& buckets();
  void observe(const std::string& reconciler, std::chrono::nanoseconds took, bool ok);
  void addTo(Exposition& out) const;

 private:
  std::map<std::string, std::unique_ptr<prometheus::Histogram>> hist_;
  std::map<std::string, uint64_t> errors_;
};

}  // namespace np::metrics
