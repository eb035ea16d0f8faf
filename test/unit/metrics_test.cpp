// The Prometheus exposition (agent/metrics/exposition.*): what a scraper reads.
#include <gtest/gtest.h>

#include <sstream>

#include "metrics/exposition.h"

namespace np::metrics {
namespace {

using prometheus::MetricType;

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool hasLine(const std::string& text, const std::string& line) {
  for (const auto& l : lines(text))
    if (l == line) return true;
  return false;
}

TEST(MetricsExposition, CounterWithHelpTypeAndEscapedLabelValues) {
  Exposition e;
  e.counter("nodepath_drop_count_total", "Packets dropped", {{"reason", "a\"b\\c\nd"}, {"direction", "INGRESS"}}, 3);
  const std::string t = e.text();
  EXPECT_EQ(t,
            "# HELP nodepath_drop_count_total Packets dropped\n"
            "# TYPE nodepath_drop_count_total counter\n"
            "nodepath_drop_count_total{reason=\"a\\\"b\\\\c\\nd\",direction=\"INGRESS\"} 3\n");
}

TEST(MetricsExposition, LargeCountersAreExact) {
  Exposition e;
  e.counter("nodepath_forward_bytes_total", "Bytes", {{"direction", "EGRESS"}}, 1234567890123.0);
  EXPECT_TRUE(hasLine(e.text(), "nodepath_forward_bytes_total{direction=\"EGRESS\"} 1234567890123")) << e.text();
}

TEST(MetricsExposition, DeclaredFamilyShowsBeforeItsFirstSample) {
  Exposition e;
  e.declare("nodepath_forward_count_total", "Packets forwarded", MetricType::Counter);
  e.gauge("nodepath_services", "Services", {}, 2);
  EXPECT_EQ(e.text(),
            "# HELP nodepath_forward_count_total Packets forwarded\n"
            "# TYPE nodepath_forward_count_total counter\n"
            "# HELP nodepath_services Services\n"
            "# TYPE nodepath_services gauge\n"
            "nodepath_services 2\n");
}

TEST(MetricsExposition, StableOrderFamiliesAsAddedSamplesByLabels) {
  auto build = [](bool reversed) {
    Exposition e;
    e.declare("nodepath_b_total", "b", MetricType::Counter);
    e.declare("nodepath_a", "a", MetricType::Gauge);
    std::vector<std::string> maps{"np_svc4_v1", "np_ct4_v1", "np_backend_v1"};
    if (reversed) std::reverse(maps.begin(), maps.end());
    for (const auto& m : maps) {
      e.gauge("nodepath_a", "", {{"map", m}}, 1);
      e.counter("nodepath_b_total", "", {{"map", m}}, 2);
    }
    return e.text();
  };
  const std::string one = build(false), two = build(true);
  EXPECT_EQ(one, two);
  const auto l = lines(one);
  ASSERT_EQ(l.size(), 10u) << one;
  EXPECT_EQ(l[0], "# HELP nodepath_b_total b");  // first declared first
  EXPECT_EQ(l[2], "nodepath_b_total{map=\"np_backend_v1\"} 2");
  EXPECT_EQ(l[3], "nodepath_b_total{map=\"np_ct4_v1\"} 2");
  EXPECT_EQ(l[4], "nodepath_b_total{map=\"np_svc4_v1\"} 2");
  EXPECT_EQ(l[5], "# HELP nodepath_a a");
}

TEST(MetricsExposition, ReconcileHistogramBucketsSumCountAndInf) {
  ReconcileDurations d;
  d.observe("lb-apply", std::chrono::microseconds(50), true);    // <= 0.0001
  d.observe("lb-apply", std::chrono::milliseconds(3), true);     // <= 0.005
  d.observe("lb-apply", std::chrono::seconds(20), false);        // beyond the last bound
  d.observe("conntrack-gc", std::chrono::milliseconds(1), true);
  Exposition e;
  d.addTo(e);
  const std::string t = e.text();
  const std::string n = "nodepath_reconcile_duration_seconds";
  EXPECT_TRUE(hasLine(t, "# TYPE " + n + " histogram")) << t;
  EXPECT_TRUE(hasLine(t, n + "_bucket{reconciler=\"lb-apply\",le=\"0.0001\"} 1")) << t;
  EXPECT_TRUE(hasLine(t, n + "_bucket{reconciler=\"lb-apply\",le=\"0.0025\"} 1")) << t;
  EXPECT_TRUE(hasLine(t, n + "_bucket{reconciler=\"lb-apply\",le=\"0.005\"} 2")) << t;
  EXPECT_TRUE(hasLine(t, n + "_bucket{reconciler=\"lb-apply\",le=\"10\"} 2")) << t;
  EXPECT_TRUE(hasLine(t, n + "_bucket{reconciler=\"lb-apply\",le=\"+Inf\"} 3")) << t;
  EXPECT_TRUE(hasLine(t, n + "_count{reconciler=\"lb-apply\"} 3")) << t;
  EXPECT_TRUE(hasLine(t, n + "_sum{reconciler=\"lb-apply\"} 20.00305")) << t;
  EXPECT_TRUE(hasLine(t, n + "_bucket{reconciler=\"conntrack-gc\",le=\"+Inf\"} 1")) << t;
  EXPECT_TRUE(hasLine(t, "nodepath_reconcile_errors_total{reconciler=\"lb-apply\"} 1")) << t;
  EXPECT_TRUE(hasLine(t, "nodepath_reconcile_errors_total{reconciler=\"conntrack-gc\"} 0")) << t;
  // Every bucket bound once per reconciler, plus +Inf.
  size_t buckets = 0;
  for (const auto& l : lines(t))
    if (l.rfind(n + "_bucket{reconciler=\"conntrack-gc\"", 0) == 0) ++buckets;
  EXPECT_EQ(buckets, ReconcileDurations::buckets().size() + 1);
}

}  // namespace
}  // namespace np::metrics
