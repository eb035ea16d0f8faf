// agentctl status: the conntrack lines (a short one in the summary, a table with --verbose).
#include <gtest/gtest.h>

#include "format.h"

namespace nodepath::agentctl {
namespace {

namespace pb = nodepath::agent::v1;

pb::StatusResponse flooded() {
  pb::StatusResponse r;
  r.set_state("Degraded");
  r.set_message("embryonic conntrack table full: 40312 entries of unconfirmed flows evicted in the last 5s (SYN flood?)");
  auto* t = r.add_conntrack_tables();
  t->set_name("np_ct4_v1");
  t->set_kind("established");
  t->set_max_entries(262144);
  t->set_entries(22);
  t->set_created_total(24);
  t->set_snat_entries(10);
  t = r.add_conntrack_tables();
  t->set_name("np_ctsyn4_v1");
  t->set_kind("embryonic");
  t->set_max_entries(16384);
  t->set_entries(16384);
  t->set_evicted_last(40312);
  t->set_evicted_total(90000);
  t->set_gc_deleted_last(7);
  t->set_created_total(106400);
  t->set_promoted_total(12);
  auto* gc = r.mutable_conntrack_gc();
  gc->set_runs(4);
  gc->set_last_duration_us(1800);
  gc->set_last_run_age_ms(3400);
  gc->set_last_interval_ms(5003);
  gc->set_next_run_in_ms(4200);
  return r;
}

TEST(AgentctlStatus, ConntrackSummaryShowsFillAndEvictions) {
  const std::string text = formatStatus(flooded(), StatusDetail::kNormal);
  EXPECT_NE(text.find("Conntrack:   22/262144 established, 16384/16384 embryonic (40312 evicted in the last 5s)\n"),
            std::string::npos)
      << text;
}

TEST(AgentctlStatus, ConntrackVerboseTableAndGc) {
  const std::string text = formatStatus(flooded(), StatusDetail::kVerbose);
  EXPECT_NE(text.find("Conntrack (evictions are estimates):\n"
                      "  Table          Kind          Max entries   Entries   Evicted (last GC interval)   "
                      "Evicted (total)   GC deleted (last)   Created (total)   Promoted (total)   SNAT entries\n"
                      "  np_ct4_v1      established   262144        22        0                            "
                      "0                 0                   24                -                  10\n"
                      "  np_ctsyn4_v1   embryonic     16384         16384     40312                        "
                      "90000             7                   106400            12                 0\n"
                      "  GC: 4 runs, the last 3 s ago took 1800 us and covers 5003 ms, next in 4200 ms\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace nodepath::agentctl
