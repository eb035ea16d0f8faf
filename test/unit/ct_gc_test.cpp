// ct::Gc over a fake kernel: which entries a run deletes, what it counts, and the eviction
// estimate it derives from a known sequence of creates, deletes and evictions. Plus the GC's
// schedule and its configuration flags.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>

#include "core/config.h"
#include "ct/gc.h"
#include "ct/list.h"
#include "np_lxc.h"

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
  std::optional<np_ct_entry> lookup(np_ct_table t, const np_ct_key& k) override {
    auto it = tables[t].find(k);
    if (it == tables[t].end()) return std::nullopt;
    return it->second;
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

// A SNAT'd NodePort flow as the datapath keeps it: client 192.0.2.n:40000 -> frontend
// 192.168.10.100:30080, backend 10.0.2.10:8080, node port 32768+n.
struct Flow {
  np_ct_key fwdKey{}, revKey{};
  np_ct_entry fwd{}, rev{};
};
Flow snatFlow(uint32_t n, uint64_t expires) {
  Flow f;
  f.fwdKey.saddr = htonl(0xc0000200 + n);
  f.fwdKey.daddr = htonl(0xc0a80a64);
  f.fwdKey.sport = htons(40000);
  f.fwdKey.dport = htons(30080);
  f.fwdKey.proto = 6;
  f.fwdKey.dir = NP_CT_INGRESS;
  f.fwd.flags = NP_CT_F_SERVICE | NP_CT_F_SNAT | NP_CT_F_REDIRECT;
  f.fwd.nat_saddr = htonl(0xc0a80a64);
  f.fwd.nat_sport = htons(static_cast<uint16_t>(32768 + n));
  f.fwd.nat_daddr = htonl(0x0a00020a);
  f.fwd.nat_dport = htons(8080);
  f.fwd.backend_id = 7;
  f.fwd.rev_nat_id = 3;
  f.fwd.expires = expires;
  f.rev.flags = NP_CT_F_REPLY | NP_CT_F_SNAT | NP_CT_F_REDIRECT;
  f.rev.nat_saddr = f.fwdKey.daddr;
  f.rev.nat_sport = f.fwdKey.dport;
  f.rev.nat_daddr = f.fwdKey.saddr;
  f.rev.nat_dport = f.fwdKey.sport;
  f.rev.backend_id = 7;
  f.rev.rev_nat_id = 3;
  f.rev.expires = expires;
  np_ct_peer_key(&f.revKey, &f.fwdKey, &f.fwd);
  return f;
}

void put(FakeTables& k, np_ct_table t, const Flow& f, bool withService = true) {
  if (withService) k.tables[t][f.fwdKey] = f.fwd;
  k.tables[t][f.revKey] = f.rev;
}

// The pairing the GC relies on is the datapath's own (np_ct.h): a flow's reply entry maps back to
// its service entry and is recognised as its reply.
TEST(ConntrackPair, ConntrackPeerKeysAreMutual) {
  Flow f = snatFlow(1, 0);
  np_ct_key back;
  np_ct_peer_key(&back, &f.revKey, &f.rev);
  EXPECT_EQ(std::memcmp(&back, &f.fwdKey, sizeof(back)), 0);
  EXPECT_TRUE(np_ct_reply_of(&f.fwdKey, &f.fwd, &f.revKey, &f.rev));
  EXPECT_EQ(f.revKey.daddr, htonl(0xc0a80a64));
  EXPECT_EQ(f.revKey.dport, htons(32769));
  np_ct_entry other = f.rev;
  other.backend_id = 8;
  EXPECT_FALSE(np_ct_reply_of(&f.fwdKey, &f.fwd, &f.revKey, &other));
}

// An expired flow goes as a pair even when its reply entry was refreshed later (still alive):
// the flow is dead, and its SNAT port comes back. A live flow keeps both entries and counts as one
// SNAT'd connection.
TEST_F(GcTest, ConntrackGcRemovesExpiredPairsTogether) {
  Flow dead = snatFlow(1, now - 10 * kSec);
  dead.rev.expires = now + 30 * kSec;  // one-sided traffic kept the reply alive
  Flow live = snatFlow(2, now + 60 * kSec);
  put(kernel, NP_CT_TABLE_MAIN, dead);
  put(kernel, NP_CT_TABLE_MAIN, live);

  const TableStats& s = run(NP_CT_TABLE_MAIN);
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.fwdKey));
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.revKey)) << "the reply entry of a dead flow stays behind";
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.fwdKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.revKey));
  EXPECT_EQ(s.gcDeleted, 2u);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.snatEntries, 1u) << "one live SNAT'd connection";
  EXPECT_EQ(s.orphansDeleted, 0u);
}

// A reply entry whose tuple another flow has taken meanwhile is not the dead flow's: kept.
TEST_F(GcTest, ConntrackGcKeepsAReplyKeyANewFlowReused) {
  Flow dead = snatFlow(1, now - 10 * kSec);
  put(kernel, NP_CT_TABLE_MAIN, dead, /*withService=*/true);
  kernel.tables[NP_CT_TABLE_MAIN].erase(dead.revKey);
  Flow reuse = snatFlow(1, now + 60 * kSec);  // same reply key, another backend
  reuse.rev.backend_id = reuse.fwd.backend_id = 9;
  reuse.fwdKey.sport = htons(40001);
  reuse.rev.nat_dport = reuse.fwdKey.sport;
  kernel.tables[NP_CT_TABLE_MAIN][reuse.fwdKey] = reuse.fwd;
  kernel.tables[NP_CT_TABLE_MAIN][reuse.revKey] = reuse.rev;
  ASSERT_EQ(std::memcmp(&reuse.revKey, &dead.revKey, sizeof(np_ct_key)), 0);

  run(NP_CT_TABLE_MAIN);
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.fwdKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(reuse.revKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(reuse.fwdKey));
}

// A reply entry whose service entry the LRU evicted holds its SNAT port until it expires; the GC
// takes it once two runs saw it orphaned, and never a reply entry whose flow is alive, nor one
// that was orphaned only at one run (a flow being created).
TEST_F(GcTest, ConntrackGcReclaimsOrphanedReplyEntriesSeenTwice) {
  Flow orphan = snatFlow(1, now + 50 * kSec);
  Flow live = snatFlow(2, now + 50 * kSec);
  Flow creating = snatFlow(3, now + 50 * kSec);
  put(kernel, NP_CT_TABLE_EMBRYONIC, orphan, /*withService=*/false);
  put(kernel, NP_CT_TABLE_EMBRYONIC, live);
  put(kernel, NP_CT_TABLE_EMBRYONIC, creating, /*withService=*/false);

  const TableStats& first = run(NP_CT_TABLE_EMBRYONIC);
  EXPECT_EQ(first.orphansDeleted, 0u) << "one sighting is not enough";
  EXPECT_EQ(kernel.tables[NP_CT_TABLE_EMBRYONIC].size(), 4u);

  kernel.tables[NP_CT_TABLE_EMBRYONIC][creating.fwdKey] = creating.fwd;  // its service entry arrived
  now += 5 * kSec;
  const TableStats& second = run(NP_CT_TABLE_EMBRYONIC);
  EXPECT_EQ(second.orphansDeleted, 1u);
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_EMBRYONIC].count(orphan.revKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_EMBRYONIC].count(live.revKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_EMBRYONIC].count(creating.revKey));
  EXPECT_EQ(second.entries, 4u);
  EXPECT_EQ(second.snatEntries, 2u) << "two live SNAT'd connections (live, creating)";
}

// A flow DSR's backend node recorded from the option: client 192.0.2.n:40000 -> pod
// 10.0.1.10:8080 (ingress, no rewrite), pod -> client (egress, source back to 192.168.10.101:30080).
Flow dsrBackendFlow(uint32_t n, uint64_t expires) {
  Flow f;
  f.fwdKey.saddr = htonl(0xc0000200 + n);
  f.fwdKey.daddr = htonl(0x0a00010a);
  f.fwdKey.sport = htons(40000);
  f.fwdKey.dport = htons(8080);
  f.fwdKey.proto = 6;
  f.fwdKey.dir = NP_CT_INGRESS;
  f.fwd.flags = NP_CT_F_DSR_BACKEND;
  f.fwd.expires = expires;
  f.rev.flags = NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND;
  f.rev.nat_saddr = htonl(0xc0a80a65);
  f.rev.nat_sport = htons(30080);
  f.rev.expires = expires;
  np_ct_peer_key(&f.revKey, &f.fwdKey, &f.fwd);
  return f;
}

// The backend node's pair of a DSR flow is a pair to the GC as to the datapath: the reply entry
// of a live flow is no orphan (however many runs see it), a dead flow goes with both entries.
TEST_F(GcTest, DsrBackendPairsAreKeptAndRemovedTogether) {
  Flow live = dsrBackendFlow(1, now + 60 * kSec);
  Flow dead = dsrBackendFlow(2, now - 10 * kSec);
  dead.rev.expires = now + 30 * kSec;
  np_ct_key back;
  np_ct_peer_key(&back, &live.revKey, &live.rev);
  ASSERT_EQ(std::memcmp(&back, &live.fwdKey, sizeof(back)), 0);
  EXPECT_EQ(live.revKey.dir, NP_CT_EGRESS);
  EXPECT_EQ(live.revKey.saddr, live.fwdKey.daddr);
  EXPECT_TRUE(np_ct_reply_of(&live.fwdKey, &live.fwd, &live.revKey, &live.rev));
  put(kernel, NP_CT_TABLE_MAIN, live);
  put(kernel, NP_CT_TABLE_MAIN, dead);

  run(NP_CT_TABLE_MAIN);
  now += 5 * kSec;
  const TableStats& s = run(NP_CT_TABLE_MAIN);
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.fwdKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.revKey)) << "a live DSR flow's reply entry taken for an orphan";
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.fwdKey));
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.revKey));
  EXPECT_EQ(s.orphansDeleted, 0u);
}

// A masqueraded pod flow (lib/masq.h): pod -> host keyed as egress sees it, host -> node:port as
// ingress sees it; built the way the datapath builds it (np_ct_peer_key of the forward entry).
Flow masqFlow(uint32_t n, uint64_t expires) {
  Flow f;
  f.fwdKey.saddr = htonl(0x0a00010a);  // pod 10.0.1.10
  f.fwdKey.daddr = htonl(0xcb00710a + n);  // 203.0.113.10 + n
  f.fwdKey.sport = htons(1234);
  f.fwdKey.dport = htons(443);
  f.fwdKey.proto = 6;
  f.fwdKey.dir = NP_CT_EGRESS;
  f.fwd.flags = NP_CT_F_MASQ | NP_CT_F_SNAT;
  f.fwd.nat_saddr = htonl(0xc0a80a64);
  f.fwd.nat_sport = htons(61000);
  f.fwd.expires = expires;
  f.rev.flags = NP_CT_F_MASQ | NP_CT_F_REPLY;
  f.rev.nat_daddr = f.fwdKey.saddr;
  f.rev.nat_dport = f.fwdKey.sport;
  f.rev.expires = expires;
  np_ct_peer_key(&f.revKey, &f.fwdKey, &f.fwd);
  return f;
}

// The masquerade pair is a pair to the GC as to the datapath: the reply key is (host, node,
// port, ingress), maps back to the forward entry, a live flow's reply entry is never an orphan and
// a dead flow goes with both entries.
TEST_F(GcTest, MasqueradePairsAreKeptAndRemovedTogether) {
  Flow live = masqFlow(1, now + 60 * kSec);
  Flow dead = masqFlow(2, now - 10 * kSec);
  dead.rev.expires = now + 30 * kSec;
  EXPECT_EQ(live.revKey.saddr, live.fwdKey.daddr);
  EXPECT_EQ(live.revKey.daddr, htonl(0xc0a80a64));
  EXPECT_EQ(live.revKey.dport, htons(61000));
  EXPECT_EQ(live.revKey.dir, NP_CT_INGRESS);
  np_ct_key back;
  np_ct_peer_key(&back, &live.revKey, &live.rev);
  ASSERT_EQ(std::memcmp(&back, &live.fwdKey, sizeof(back)), 0);
  EXPECT_TRUE(np_ct_client_entry(&live.fwd));
  EXPECT_FALSE(np_ct_client_entry(&live.rev));
  EXPECT_TRUE(np_ct_reply_of(&live.fwdKey, &live.fwd, &live.revKey, &live.rev));
  np_ct_entry other = live.rev;
  other.nat_dport = htons(999);
  EXPECT_FALSE(np_ct_reply_of(&live.fwdKey, &live.fwd, &live.revKey, &other)) << "another pod port's reply";
  put(kernel, NP_CT_TABLE_MAIN, live);
  put(kernel, NP_CT_TABLE_MAIN, dead);

  run(NP_CT_TABLE_MAIN);
  now += 5 * kSec;
  const TableStats& s = run(NP_CT_TABLE_MAIN);
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.fwdKey));
  EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.revKey)) << "a live masqueraded flow's reply taken for an orphan";
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.fwdKey));
  EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.revKey));
  EXPECT_EQ(s.orphansDeleted, 0u);
}

// A service flow a pod started, translated per packet by lxc.bpf.c: pod 10.0.1.10:45000 ->
// ClusterIP 10.43.0.50:80 (keyed at the pod's veth, NP_CT_LXC), backend 10.0.2.10:8080 -> pod
// (keyed NP_CT_INGRESS, wherever the reply arrives). hairpin: the backend is the pod itself, the
// connection comes from 169.254.42.1.
Flow lxcFlow(uint32_t n, uint64_t expires, bool hairpin = false) {
  Flow f;
  f.fwdKey.saddr = htonl(0x0a00010a);
  f.fwdKey.daddr = htonl(0x0a2b0032);
  f.fwdKey.sport = htons(static_cast<uint16_t>(45000 + n));
  f.fwdKey.dport = htons(80);
  f.fwdKey.proto = 6;
  f.fwdKey.dir = NP_CT_LXC;
  f.fwd.flags = NP_CT_F_SERVICE | NP_CT_F_LXC;
  f.fwd.nat_daddr = hairpin ? f.fwdKey.saddr : htonl(0x0a00020a);
  f.fwd.nat_dport = htons(8080);
  f.fwd.backend_id = 1;
  f.fwd.expires = expires;
  f.rev.flags = NP_CT_F_REPLY | NP_CT_F_LXC;
  f.rev.backend_id = 1;
  f.rev.nat_saddr = f.fwdKey.daddr;
  f.rev.nat_sport = f.fwdKey.dport;
  if (hairpin) {
    f.fwd.flags |= NP_CT_F_SNAT;
    f.fwd.nat_saddr = htonl(NP_LXC_HAIRPIN_ADDR_HOST);
    f.fwd.nat_sport = f.fwdKey.sport;
    f.rev.flags |= NP_CT_F_SNAT;
    f.rev.nat_daddr = f.fwdKey.saddr;
    f.rev.nat_dport = f.fwdKey.sport;
  }
  f.rev.expires = expires;
  np_ct_peer_key(&f.revKey, &f.fwdKey, &f.fwd);
  return f;
}

// The GC pairs a pod's service flow as lxc.bpf.c does: the reply entry is keyed at ingress by the
// backend's tuple, a live flow's reply is no orphan, a dead flow goes with both entries.
TEST_F(GcTest, LxcServiceFlowPairsAreKeptAndRemovedTogether) {
  for (bool hairpin : {false, true}) {
    Flow live = lxcFlow(1, now + 60 * kSec, hairpin);
    Flow dead = lxcFlow(2, now - 10 * kSec, hairpin);
    dead.rev.expires = now + 30 * kSec;
    EXPECT_EQ(live.revKey.dir, NP_CT_INGRESS);
    EXPECT_EQ(live.revKey.saddr, live.fwd.nat_daddr);
    EXPECT_EQ(live.revKey.daddr, hairpin ? htonl(NP_LXC_HAIRPIN_ADDR_HOST) : live.fwdKey.saddr);
    np_ct_key back;
    np_ct_peer_key(&back, &live.revKey, &live.rev);
    EXPECT_EQ(std::memcmp(&back, &live.fwdKey, sizeof(back)), 0) << "hairpin " << hairpin;
    EXPECT_TRUE(np_ct_reply_of(&live.fwdKey, &live.fwd, &live.revKey, &live.rev));
    kernel.tables[NP_CT_TABLE_MAIN].clear();
    put(kernel, NP_CT_TABLE_MAIN, live);
    put(kernel, NP_CT_TABLE_MAIN, dead);

    run(NP_CT_TABLE_MAIN);
    now += 5 * kSec;
    const TableStats& s = run(NP_CT_TABLE_MAIN);
    EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.fwdKey));
    EXPECT_TRUE(kernel.tables[NP_CT_TABLE_MAIN].count(live.revKey)) << "a live pod flow's reply taken for an orphan";
    EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.fwdKey));
    EXPECT_FALSE(kernel.tables[NP_CT_TABLE_MAIN].count(dead.revKey));
    EXPECT_EQ(s.orphansDeleted, 0u);
  }
}

// What status and `bpf nat list` call NAT: a SNAT'd NodePort flow and a masqueraded pod flow
// count once each, whatever their entries' flags, and show both entries in the list; a pod's
// plain service flow and its hairpin (LXC | SNAT to the hairpin address) are no NAT at all. A
// reply entry whose forward entry is gone still holds its port: it counts until the GC takes it.
TEST_F(GcTest, NatCountsEveryMasqueradedOrSnatConnectionOnce) {
  const Flow snat = snatFlow(1, now + 60 * kSec);
  const Flow masq = masqFlow(1, now + 60 * kSec);
  const Flow masqOrphan = masqFlow(2, now + 60 * kSec);
  const Flow pod = lxcFlow(1, now + 60 * kSec);
  const Flow hairpin = lxcFlow(2, now + 60 * kSec, /*hairpin=*/true);
  put(kernel, NP_CT_TABLE_MAIN, snat);
  put(kernel, NP_CT_TABLE_MAIN, masq);
  put(kernel, NP_CT_TABLE_MAIN, masqOrphan, /*withService=*/false);
  put(kernel, NP_CT_TABLE_MAIN, pod);
  put(kernel, NP_CT_TABLE_MAIN, hairpin);

  const TableStats& s = run(NP_CT_TABLE_MAIN);
  EXPECT_EQ(s.entries, 9u);
  EXPECT_EQ(s.snatEntries, 3u) << "the SNAT'd flow, the masqueraded one and the orphan's held port";

  ListFilter nat;
  nat.snatOnly = true;
  std::vector<np_ct_key> listed;
  for (const auto& [k, e] : kernel.tables[NP_CT_TABLE_MAIN])
    if (matches(nat, NP_CT_TABLE_MAIN, k, e)) listed.push_back(k);
  auto has = [&](const np_ct_key& k) {
    return std::any_of(listed.begin(), listed.end(),
                       [&](const np_ct_key& l) { return std::memcmp(&l, &k, sizeof(k)) == 0; });
  };
  EXPECT_EQ(listed.size(), 5u);
  EXPECT_TRUE(has(snat.fwdKey) && has(snat.revKey)) << "both entries of the SNAT'd flow";
  EXPECT_TRUE(has(masq.fwdKey) && has(masq.revKey)) << "both entries of the masqueraded flow";
  EXPECT_TRUE(has(masqOrphan.revKey));
  EXPECT_FALSE(has(hairpin.fwdKey) || has(hairpin.revKey)) << "a pod's hairpin is not NAT";
  EXPECT_FALSE(has(pod.fwdKey) || has(pod.revKey));

  // The orphan goes at the second run that sees it, and with it its count.
  now += 5 * kSec;
  const TableStats& s2 = run(NP_CT_TABLE_MAIN);
  EXPECT_EQ(s2.orphansDeleted, 1u);
  EXPECT_EQ(s2.snatEntries, 2u);
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
