// ct::Gc over a fake kernel: which entries a run deletes, what it counts, and the eviction
// estimate it derives from a known sequence of creates, deletes and evictions. Plus the GC's
// schedule and its configuration flags.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "core/config.h"
#include "ct/gc.h"

namespace np::ct {
namespace {

constexpr uint64_t kSec = 1'000'000'000ULL;

struct KeyLess {
  bool operator()(const np_ct_key& a, const np_ct_key& b) const {
    return std::tie(a.saddr, a.daddr, a.sport, a.dport, a.proto, a.dir) <
           std::tie(b.saddr, b.daddr, b.sport, b.dport, b.proto, b.dir);
  }
};

np_ct_key key(uint32_t n) {
  np_ct_key k{};
  k.saddr = n;
  k.proto = 6;
  return k;
}

// Two tables as maps, and the datapath's counters, driven by the test the way the datapath and
// the LRU would change them.
class FakeTables : public Tables {
 public:
  std::map<np_ct_key, np_ct_entry, KeyLess> tables[kTables];
  Counters stats{};
  uint32_t chunk = 3;  // small, so a walk has several chunks
  int walks = 0;
  int removeCalls = 0;
  bool failRemove = false;

  // What the datapath does.
  void create(np_ct_table t, uint32_t n, uint64_t expires) {
    np_ct_entry e{};
    e.expires = expires;
    tables[t][key(n)] = e;
    stats[t].created++;
  }
  void dpDelete(np_ct_table t, uint32_t n) {
    if (tables[t].erase(key(n))) stats[t].deleted++;
  }
  // What the LRU does: an entry vanishes, nobody counts it.
  void evict(np_ct_table t, uint32_t n) { tables[t].erase(key(n)); }

  std::string name(np_ct_table t) const override { return t == NP_CT_TABLE_MAIN ? "np_ct4_v1" : "np_ctsyn4_v1"; }
  uint32_t maxEntries(np_ct_table t) const override { return t == NP_CT_TABLE_MAIN ? 100 : 10; }
  Status walk(np_ct_table t, const Chunk& fn) override {
    ++walks;
    // Snapshot first: fn deletes while we walk, as the real walk allows.
    std::vector<np_ct_key> keys;
    std::vector<np_ct_entry> entries;
    for (auto& [k, e] : tables[t]) {
      keys.push_back(k);
      entries.push_back(e);
    }
    for (size_t i = 0; i < keys.size(); i += chunk) {
      uint32_t n = static_cast<uint32_t>(std::min<size_t>(chunk, keys.size() - i));
      fn(keys.data() + i, entries.data() + i, n);
    }
    return {};
  }
  Result<uint64_t> remove(np_ct_table t, const std::vector<np_ct_key>& keys) override {
    ++removeCalls;
    if (failRemove) return Error{EPERM, "delete from " + name(t), ""};
    uint64_t n = 0;
    for (const auto& k : keys) n += tables[t].erase(k);
    return n;
  }
  Result<Counters> counters() override { return stats; }
};

struct GcTest : ::testing::Test {
  FakeTables kernel;
  uint64_t now = 1000 * kSec;
  Gc gc{kernel, [this] { return now; }};

  const TableStats& run(np_ct_table t) {
    auto r = gc.runOnce();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
    return gc.last()->tables[t];
  }
};

// Expired entries go (in batches, one delete call per chunk that has any), live ones stay, and
// the grace period protects an entry that only just expired.
TEST_F(GcTest, ConntrackGcDeletesExpiredKeepsLive) {
  for (uint32_t i = 0; i < 5; ++i) kernel.create(NP_CT_TABLE_MAIN, i, now + 60 * kSec);       // live
  for (uint32_t i = 5; i < 9; ++i) kernel.create(NP_CT_TABLE_MAIN, i, now - 10 * kSec);       // expired
  kernel.create(NP_CT_TABLE_MAIN, 9, now - kExpiryGraceNs / 2);                                // in its grace
  for (uint32_t i = 0; i < 7; ++i) kernel.create(NP_CT_TABLE_EMBRYONIC, 100 + i, now - kSec * 30);

  auto r = gc.runOnce();
  ASSERT_TRUE(r.ok()) << r.error().message();
  const TableStats& main = r->tables[NP_CT_TABLE_MAIN];
  const TableStats& syn = r->tables[NP_CT_TABLE_EMBRYONIC];
  EXPECT_EQ(main.name, "np_ct4_v1");
  EXPECT_EQ(main.maxEntries, 100u);
  EXPECT_EQ(main.gcDeleted, 4u);
  EXPECT_EQ(main.entries, 6u);
  EXPECT_EQ(kernel.tables[NP_CT_TABLE_MAIN].size(), 6u);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(key(i))) << i;
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(key(9))) << "deleted within the grace period";
  EXPECT_EQ(syn.gcDeleted, 7u);
  EXPECT_EQ(syn.entries, 0u);
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_EMBRYONIC].empty());
  EXPECT_EQ(r->number, 1u);
  EXPECT_EQ(main.evicted, 0u) << "the first run is the baseline";
  // 10 main entries in chunks of 3: chunks {0,1,2} {3,4,5} {6,7,8} {9}: two have expired ones;
  // 7 embryonic: {100..102} {103..105} {106}.
  EXPECT_EQ(kernel.removeCalls, 2 + 3);
}

// The estimate between two runs from a known sequence: creates, datapath deletes, GC deletes and
// LRU evictions; only the evictions count.
TEST_F(GcTest, ConntrackGcEstimatesEvictionsFromKnownSequence) {
  for (uint32_t i = 0; i < 8; ++i) kernel.create(NP_CT_TABLE_EMBRYONIC, i, now + 10 * kSec);
  run(NP_CT_TABLE_EMBRYONIC);  // baseline: 8 entries

  // Interval 1: 6 created, 2 deleted by the datapath (a promotion), 5 evicted, 3 expire for the GC.
  for (uint32_t i = 8; i < 14; ++i) kernel.create(NP_CT_TABLE_EMBRYONIC, i, now + 10 * kSec);
  kernel.dpDelete(NP_CT_TABLE_EMBRYONIC, 0);
  kernel.dpDelete(NP_CT_TABLE_EMBRYONIC, 1);
  for (uint32_t i = 2; i < 7; ++i) kernel.evict(NP_CT_TABLE_EMBRYONIC, i);
  for (uint32_t i = 7; i < 10; ++i) kernel.tables[NP_CT_TABLE_EMBRYONIC][key(i)].expires = now - 5 * kSec;
  kernel.stats[NP_CT_TABLE_EMBRYONIC].promoted = 1;
  now += 5 * kSec;
  const TableStats& s1 = run(NP_CT_TABLE_EMBRYONIC);
  EXPECT_EQ(s1.gcDeleted, 3u);
  EXPECT_EQ(s1.entries, 4u);  // 8 + 6 - 2 - 5 - 3
  EXPECT_EQ(s1.evicted, 5u);
  EXPECT_EQ(s1.evictedTotal, 5u);
  EXPECT_EQ(s1.createdTotal, 6u);
  EXPECT_EQ(s1.promotedTotal, 1u);
  EXPECT_EQ(gc.last()->tables[NP_CT_TABLE_MAIN].evicted, 0u);

  // Interval 2: quiet. Nothing evicted; the total stays.
  now += 5 * kSec;
  const TableStats& s2 = run(NP_CT_TABLE_EMBRYONIC);
  EXPECT_EQ(s2.evicted, 0u);
  EXPECT_EQ(s2.evictedTotal, 5u);
  EXPECT_EQ(s2.entries, 4u);

  // Interval 3: a flood: 20 created into a table the LRU keeps at 10 entries, oldest out first.
  std::vector<uint32_t> order = {10, 11, 12, 13};
  for (uint32_t i = 100; i < 120; ++i) {
    kernel.create(NP_CT_TABLE_EMBRYONIC, i, now + 10 * kSec);
    order.push_back(i);
    if (order.size() > 10) {
      kernel.evict(NP_CT_TABLE_EMBRYONIC, order.front());
      order.erase(order.begin());
    }
  }
  now += 5 * kSec;
  const TableStats& s3 = run(NP_CT_TABLE_EMBRYONIC);
  EXPECT_EQ(s3.entries, 10u);
  EXPECT_EQ(s3.evicted, 14u);
  EXPECT_EQ(s3.evictedTotal, 19u);
  EXPECT_EQ(s3.createdTotal, 26u);
  EXPECT_TRUE(underPressure(*gc.last()));
  EXPECT_EQ(gc.last()->number, 4u);
}

TEST(ConntrackGcEstimate, ConntrackGcEvictionEstimateClampsAndSurvivesCounterReset) {
  np_ct_stat a{10, 2, 0}, b{15, 4, 0};
  EXPECT_EQ(estimateEvictions(a, b, 100, 99, 0), 4u);   // +5 -2 -0 -(-1)
  EXPECT_EQ(estimateEvictions(a, b, 100, 110, 0), 0u);  // would be negative (the walk saw more): clamped
  EXPECT_EQ(estimateEvictions(b, a, 100, 90, 0), 0u);   // counters went back: a new map, no estimate
}

// The GC keeps the previous run and reports the error when the kernel refuses.
TEST_F(GcTest, ConntrackGcReportsFailures) {
  kernel.create(NP_CT_TABLE_MAIN, 1, now - 60 * kSec);
  kernel.failRemove = true;
  auto r = gc.runOnce();
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(gc.last());
  EXPECT_NE(gc.lastError().find("delete from np_ct4_v1"), std::string::npos) << gc.lastError();
  kernel.failRemove = false;
  ASSERT_TRUE(gc.runOnce().ok());
  EXPECT_TRUE(gc.lastError().empty());
  EXPECT_EQ(gc.last()->tables[NP_CT_TABLE_MAIN].gcDeleted, 1u);
}

// A table under pressure (evicting, or 75 % full) brings the next run forward.
TEST(ConntrackGcSchedule, ConntrackGcRunsSoonerUnderPressure) {
  using std::chrono::milliseconds;
  ct::Run calm;
  calm.tables[0].maxEntries = 100;
  calm.tables[0].entries = 50;
  calm.tables[1].maxEntries = 10;
  EXPECT_EQ(nextInterval(calm, milliseconds(30000)), milliseconds(30000));
  ct::Run full = calm;
  full.tables[0].entries = 80;
  EXPECT_EQ(nextInterval(full, milliseconds(30000)), kPressureInterval);
  ct::Run evicting = calm;
  evicting.tables[1].evicted = 1;
  EXPECT_EQ(nextInterval(evicting, milliseconds(30000)), kPressureInterval);
  EXPECT_EQ(nextInterval(evicting, milliseconds(2000)), milliseconds(2000)) << "never later than configured";
}

TEST(ConntrackGcConfig, ConntrackFlagsParse) {
  auto c = parseConfig({"--bpf-ct-embryonic-max", "4096", "--conntrack-gc-interval=1m30s"});
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->ctEmbryonicMax, 4096u);
  EXPECT_EQ(c->ctGcInterval, std::chrono::milliseconds(90000));
  auto d = parseConfig({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ctEmbryonicMax, uint32_t{NP_DEFAULT_CT_EMBRYONIC_MAX});
  EXPECT_EQ(d->ctGcInterval, std::chrono::milliseconds(30000));
  EXPECT_EQ(parseConfig({"--conntrack-gc-interval", "500ms"})->ctGcInterval, std::chrono::milliseconds(500));
  for (const char* bad : {"30", "0s", "10x", "s", "13h", "-5s"}) {
    auto r = parseConfig({"--conntrack-gc-interval", bad});
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().message().find("--conntrack-gc-interval"), std::string::npos);
    }
  }
  EXPECT_FALSE(parseConfig({"--bpf-ct-embryonic-max", "100"}).ok());
}

}  // namespace
}  // namespace np::ct
