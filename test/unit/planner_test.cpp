// Planner ordering and diffs: the update order never exposes half a service to the datapath.
#include <gtest/gtest.h>

#include <algorithm>

#include "lb/planner.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

using K = MapOp::Kind;
using test::describe;
using test::kinds;

np_backend backend(const char* addr, uint16_t port, uint8_t state = NP_BACKEND_ACTIVE) {
  np_backend b{};
  b.addr = test::ip(addr).be;
  b.port = htons(port);
  b.proto = IPPROTO_TCP;
  b.state = state;
  return b;
}

// A service image with `ids` as its backend slots, `count` of them selectable.
void addService(LbImage& img, const char* vip, uint16_t port, uint16_t id, std::vector<uint32_t> ids,
                size_t count) {
  np_svc_key master = svcKey(test::ip(vip).be, htons(port), IPPROTO_TCP, 0);
  np_svc_val mv{};
  mv.count = static_cast<uint16_t>(count);
  mv.total = static_cast<uint16_t>(ids.size());
  mv.rev_nat_id = id;
  img.services[master] = mv;
  for (size_t i = 0; i < ids.size(); ++i) {
    np_svc_key k = master;
    k.slot = static_cast<uint16_t>(i + 1);
    np_svc_val v{};
    v.backend_id = ids[i];
    v.rev_nat_id = id;
    img.services[k] = v;
  }
  np_revnat rn{};
  rn.addr = master.addr;
  rn.port = master.dport;
  img.revNat[id] = rn;
}

// Checks the invariant on every intermediate state: every service entry's slots 1..total exist
// and name existing backends, and every slot has its service entry.
void expectConsistentAtEveryStep(const LbImage& start, const std::vector<MapOp>& ops) {
  LbImage img = start;
  for (size_t i = 0; i <= ops.size(); ++i) {
    if (i > 0) applyOps(img, {ops[i - 1]}, 1);
    for (const auto& [k, v] : img.services) {
      if (k.slot != 0) continue;
      for (uint16_t s = 1; s <= v.total; ++s) {
        np_svc_key sk = k;
        sk.slot = s;
        auto it = img.services.find(sk);
        ASSERT_NE(it, img.services.end()) << "after op " << i << ": slot " << s << " missing\n" << describe(ops);
        ASSERT_TRUE(img.backends.count(it->second.backend_id))
            << "after op " << i << ": slot " << s << " names a missing backend\n" << describe(ops);
      }
      ASSERT_TRUE(img.revNat.count(v.rev_nat_id)) << "after op " << i << ": no rev-NAT entry\n" << describe(ops);
    }
  }
}

TEST(Planner, NewServiceWritesBackendsThenSlotsThenRevNatThenServiceEntry) {
  LbImage applied, desired;
  desired.backends[1] = backend("10.0.1.10", 8080);
  desired.backends[2] = backend("10.0.2.10", 8080);
  addService(desired, "10.43.0.20", 80, 7, {1, 2}, 2);

  auto ops = diff(applied, desired);
  EXPECT_EQ(kinds(ops), (std::vector<K>{K::UpsertBackend, K::UpsertBackend, K::UpsertSlot, K::UpsertSlot,
                                        K::UpsertRevNat, K::UpsertService}))
      << describe(ops);
  EXPECT_EQ(ops.back().svcVal.count, 2);
  EXPECT_EQ(ops.back().svcVal.rev_nat_id, 7);
  expectConsistentAtEveryStep(applied, ops);
  LbImage result = applied;
  applyOps(result, ops, ops.size());
  EXPECT_EQ(result, desired);
}

TEST(Planner, IdenticalImagesNeedNoOps) {
  LbImage img;
  img.backends[1] = backend("10.0.1.10", 8080);
  addService(img, "10.43.0.20", 80, 1, {1}, 1);
  EXPECT_TRUE(diff(img, img).empty());
}

TEST(Planner, DeletedServiceGoesEntryFirstThenSlotsThenRevNatThenBackends) {
  LbImage applied, desired;
  applied.backends[1] = backend("10.0.1.10", 8080);
  applied.backends[2] = backend("10.0.2.10", 8080);
  addService(applied, "10.43.0.20", 80, 3, {1, 2}, 2);

  auto ops = diff(applied, desired);
  EXPECT_EQ(kinds(ops), (std::vector<K>{K::DeleteService, K::DeleteSlot, K::DeleteSlot, K::DeleteRevNat,
                                        K::DeleteBackend, K::DeleteBackend}))
      << describe(ops);
  expectConsistentAtEveryStep(applied, ops);
}

TEST(Planner, ShrinkingServiceLowersCountBeforeDroppingSlots) {
  LbImage applied, desired;
  for (uint32_t id : {1u, 2u, 3u}) applied.backends[id] = backend("10.0.1.10", static_cast<uint16_t>(8000 + id));
  addService(applied, "10.43.0.20", 80, 1, {1, 2, 3}, 3);
  desired.backends[2] = applied.backends[2];
  addService(desired, "10.43.0.20", 80, 1, {2}, 1);

  auto ops = diff(applied, desired);
  // slot 1 now names backend 2, the entry's count drops to 1, then slots 2, 3 and backends 1, 3 go.
  EXPECT_EQ(kinds(ops), (std::vector<K>{K::UpsertSlot, K::UpsertService, K::DeleteSlot, K::DeleteSlot,
                                        K::DeleteBackend, K::DeleteBackend}))
      << describe(ops);
  EXPECT_EQ(ops[1].svcVal.count, 1);
  expectConsistentAtEveryStep(applied, ops);
}

TEST(Planner, GrowingServiceWritesNewSlotsBeforeRaisingCount) {
  LbImage applied, desired;
  applied.backends[1] = backend("10.0.1.10", 8080);
  addService(applied, "10.43.0.20", 80, 1, {1}, 1);
  desired = applied;
  desired.backends[2] = backend("10.0.2.10", 8080);
  addService(desired, "10.43.0.20", 80, 1, {1, 2}, 2);

  auto ops = diff(applied, desired);
  EXPECT_EQ(kinds(ops), (std::vector<K>{K::UpsertBackend, K::UpsertSlot, K::UpsertService})) << describe(ops);
  expectConsistentAtEveryStep(applied, ops);
}

TEST(Planner, TerminatingBackendStaysInSlotsButLeavesTheSelectableCount) {
  LbImage applied, desired;
  applied.backends[1] = backend("10.0.1.10", 8080);
  applied.backends[2] = backend("10.0.2.10", 8080);
  addService(applied, "10.43.0.20", 80, 1, {1, 2}, 2);
  desired.backends[1] = backend("10.0.1.10", 8080, NP_BACKEND_TERMINATING);
  desired.backends[2] = applied.backends[2];
  addService(desired, "10.43.0.20", 80, 1, {2, 1}, 1);

  auto ops = diff(applied, desired);
  EXPECT_EQ(kinds(ops), (std::vector<K>{K::UpsertBackend, K::UpsertSlot, K::UpsertSlot, K::UpsertService}))
      << describe(ops);
  EXPECT_EQ(ops[0].backend.state, NP_BACKEND_TERMINATING);
  expectConsistentAtEveryStep(applied, ops);
}

// Several services change at once: one added, one removed, one shrunk, one grown (with a
// backend turning terminating if `terminating`).
void severalChanges(LbImage& applied, LbImage& desired, bool terminating = false) {
  for (uint32_t id = 1; id <= 6; ++id) applied.backends[id] = backend("10.0.1.10", static_cast<uint16_t>(9000 + id));
  addService(applied, "10.43.0.1", 443, 1, {1, 2, 3}, 3);
  addService(applied, "10.43.0.2", 53, 2, {4}, 1);
  addService(applied, "10.43.0.3", 80, 3, {5}, 1);
  for (uint32_t id : {1u, 5u, 6u, 7u}) desired.backends[id] = backend("10.0.1.10", static_cast<uint16_t>(9000 + id));
  addService(desired, "10.43.0.1", 443, 1, {1}, 1);
  if (terminating) {
    desired.backends[5].state = NP_BACKEND_TERMINATING;
    addService(desired, "10.43.0.3", 80, 3, {6, 5}, 1);
  } else {
    addService(desired, "10.43.0.3", 80, 3, {5, 6}, 2);
  }
  addService(desired, "10.43.0.4", 8080, 4, {7}, 1);
}

TEST(Planner, ApplyingAPlanReachesTheDesiredImageFromAnyStart) {
  LbImage applied, desired;
  severalChanges(applied, desired);
  auto ops = diff(applied, desired);
  expectConsistentAtEveryStep(applied, ops);
  LbImage result = applied;
  applyOps(result, ops, ops.size());
  EXPECT_EQ(result, desired) << describe(ops);
  // All upserts come before all deletes.
  auto firstDelete = std::find_if(ops.begin(), ops.end(), [](const MapOp& o) { return o.kind >= K::DeleteSlot; });
  EXPECT_TRUE(std::all_of(firstDelete, ops.end(), [](const MapOp& o) { return o.kind >= K::DeleteSlot; }))
      << describe(ops);
}

TEST(Planner, UndoOfAnyPrefixRestoresTheStartAndStaysConsistent) {
  LbImage applied, desired;
  severalChanges(applied, desired, true);
  auto ops = diff(applied, desired);
  for (size_t done = 0; done <= ops.size(); ++done) {
    LbImage partial = applied;
    applyOps(partial, ops, done);
    auto back = undo(applied, ops, done);
    expectConsistentAtEveryStep(partial, back);
    applyOps(partial, back, back.size());
    EXPECT_EQ(partial, applied) << "undo after " << done << " of " << ops.size() << " ops:\n" << describe(back);
  }
}

TEST(Planner, NewEntriesCountsOnlyKeysTheMapLacks) {
  LbImage applied, desired;
  applied.backends[1] = backend("10.0.1.10", 8080);
  addService(applied, "10.43.0.1", 80, 1, {1}, 1);
  desired = applied;
  desired.backends[2] = backend("10.0.1.11", 8080);
  addService(desired, "10.43.0.1", 80, 1, {1, 2}, 2);  // master rewritten, slot 2 new
  addService(desired, "10.43.0.2", 80, 2, {2}, 1);     // master + slot 1 new, rev-NAT 2 new
  NewEntries n = newEntries(applied, diff(applied, desired));
  EXPECT_EQ(n.services, 3u);
  EXPECT_EQ(n.backends, 1u);
  EXPECT_EQ(n.revNat, 1u);
}

}  // namespace
}  // namespace np::lb
