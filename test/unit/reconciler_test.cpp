// The reconciler against a fake map set: ID allocation, idempotency, restore adoption, backends
// shared between services, and rollback when the kernel refuses part of a change.
#include <gtest/gtest.h>

#include <set>

#include "lb/ids.h"
#include "lb/reconciler.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

using test::clusterIpService;
using test::ip;

// Holds an image like the kernel maps would; can be told to fail after n ops.
class FakeMaps : public LbMaps {
 public:
  Applied apply(const std::vector<MapOp>& ops) override {
    Applied out;
    ++calls;
    for (const MapOp& op : ops) {
      if (failAfter == 0) {
        out.error = Error{E2BIG, "update map np_svc4_v1", "the map is full"};
        failAfter = -1;
        return out;
      }
      if (failAfter > 0) --failAfter;
      applyOps(image, {op}, 1);
      ++out.done;
      ++opsApplied;
    }
    return out;
  }
  Result<LbImage> dump() override { return image; }

  LbImage image;
  int failAfter = -1;  // -1: never
  size_t opsApplied = 0;
  size_t calls = 0;
};

NodeContext node() {
  NodeContext n;
  n.nodeIps = {ip("192.168.10.100")};
  return n;
}

TEST(IdAllocation, IdsAreStablePerKeyAndNotReusedAtOnce) {
  IdAllocator<int, uint16_t> ids(1, 3);
  EXPECT_EQ(*ids.acquire(10), 1);
  EXPECT_EQ(*ids.acquire(20), 2);
  EXPECT_EQ(*ids.acquire(10), 1);
  ids.release(10);
  EXPECT_EQ(*ids.acquire(30), 3);  // next-fit: 1 was just freed, 3 comes first
  EXPECT_EQ(*ids.acquire(40), 1);
  EXPECT_FALSE(ids.acquire(50));   // all three taken
}

TEST(IdAllocation, RestoredIdsAreKeptAndSkipped) {
  IdAllocator<int, uint16_t> ids(1, 10);
  EXPECT_TRUE(ids.restore(7, 5));
  EXPECT_FALSE(ids.restore(8, 5));   // taken
  EXPECT_FALSE(ids.restore(9, 11));  // out of range
  EXPECT_EQ(*ids.acquire(7), 5);
  EXPECT_EQ(*ids.acquire(1), 6);     // continues after the restored ID
}

TEST(Reconciler, UpsertProgramsServiceAndIsIdempotent) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto created = r.upsert(clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"}));
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(*created, Reconciler::Change::Created);
  EXPECT_EQ(maps.image.services.size(), 3u);  // entry + 2 slots
  EXPECT_EQ(maps.image.backends.size(), 2u);
  EXPECT_EQ(maps.image.revNat.size(), 1u);
  size_t before = maps.opsApplied;
  auto again = r.upsert(clusterIpService("a", "10.43.0.20", 80, {"10.0.2.10:8080", "10.0.1.10:8080"}));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, Reconciler::Change::Unchanged);
  EXPECT_EQ(maps.opsApplied, before) << "re-sending the same service (backends reordered) wrote to the maps";
}

TEST(Reconciler, InvalidServiceNeverReachesTheMaps) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto bad = clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080"});
  bad.nodePort = 80;
  EXPECT_FALSE(r.upsert(bad));
  EXPECT_EQ(maps.calls, 0u);
  EXPECT_TRUE(maps.image.services.empty());
  ASSERT_TRUE(r.upsert(clusterIpService("a", "10.43.0.20", 80, {})));
  EXPECT_FALSE(r.upsert(clusterIpService("b", "10.43.0.20", 80, {})));  // duplicate frontend
  EXPECT_EQ(r.services().size(), 1u);
}

TEST(Reconciler, BatchIsRefusedAsAWholeWhenOneServiceIsBad) {
  FakeMaps maps;
  Reconciler r(maps, node());
  std::vector<Service> batch = {clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080"}),
                                clusterIpService("b", "10.43.0.20", 80, {"10.0.1.11:8080"})};
  EXPECT_FALSE(r.upsertMany(batch));
  EXPECT_EQ(maps.calls, 0u);
  EXPECT_TRUE(r.services().empty());
}

TEST(Reconciler, SharedBackendSurvivesDeletionOfOneService) {
  FakeMaps maps;
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080"})));
  ASSERT_TRUE(r.upsert(clusterIpService("b", "10.43.0.21", 80, {"10.0.1.10:8080"})));
  EXPECT_EQ(maps.image.backends.size(), 1u);
  ASSERT_TRUE(r.remove("a"));
  EXPECT_EQ(maps.image.backends.size(), 1u) << "backend still used by b was deleted";
  ASSERT_TRUE(r.remove("b"));
  EXPECT_TRUE(maps.image.backends.empty());
  EXPECT_TRUE(maps.image.services.empty());
  EXPECT_TRUE(maps.image.revNat.empty());
  Status st = r.remove("b");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, ENOENT);
}

TEST(Reconciler, OnlyTerminatingBackendsBecomeSelectable) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto s = clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.1.11:8080"});
  s.backends[0].state = BackendState::Terminating;
  ASSERT_TRUE(r.upsert(s));
  auto master = maps.image.services.at(svcKey(ip("10.43.0.20").be, htons(80), IPPROTO_TCP, 0));
  EXPECT_EQ(master.count, 1);
  EXPECT_EQ(master.total, 2);
  s.backends[1].state = BackendState::Terminating;
  ASSERT_TRUE(r.upsert(s));
  master = maps.image.services.at(svcKey(ip("10.43.0.20").be, htons(80), IPPROTO_TCP, 0));
  EXPECT_EQ(master.count, 2) << "with no active backend left, terminating ones take new connections";
}

TEST(Reconciler, RestoreAdoptsPinnedStateWithoutWriting) {
  FakeMaps maps;
  std::vector<Service> model;
  {
    Reconciler first(maps, node());
    auto s = clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"});
    s.nodePort = 30080;
    ASSERT_TRUE(first.upsert(s));
    ASSERT_TRUE(first.upsert(clusterIpService("b", "10.43.0.21", 53, {"10.0.1.10:53"})));
    for (auto& [n, svc] : first.services()) model.push_back(svc);
  }
  LbImage before = maps.image;
  size_t ops = maps.opsApplied;
  Reconciler second(maps, node());
  auto restored = second.restore(model);
  ASSERT_TRUE(restored) << restored.error().message();
  EXPECT_EQ(restored->services, 2u);
  EXPECT_EQ(restored->adoptedFrontends, 4u);  // ClusterIP, wildcard and node-IP NodePort of a; b
  EXPECT_EQ(restored->ops, 0u);
  EXPECT_EQ(maps.opsApplied, ops);
  EXPECT_EQ(maps.image, before);
  // New services after a restore get fresh IDs, not the adopted ones.
  ASSERT_TRUE(second.upsert(clusterIpService("c", "10.43.0.22", 80, {"10.0.1.12:80"})));
  std::set<uint16_t> ids;
  for (auto& [k, v] : maps.image.services) {
    if (k.slot == 0) {
      EXPECT_TRUE(ids.insert(v.rev_nat_id).second) << "rev-NAT ID reused";
    }
  }
}

TEST(Reconciler, RestoreRemovesWhatNoPersistedServiceOwns) {
  FakeMaps maps;
  {
    Reconciler first(maps, node());
    ASSERT_TRUE(first.upsert(clusterIpService("gone", "10.43.0.30", 80, {"10.0.1.30:80"})));
  }
  Reconciler second(maps, node());
  auto restored = second.restore({clusterIpService("kept", "10.43.0.31", 80, {"10.0.1.31:80"})});
  ASSERT_TRUE(restored);
  EXPECT_EQ(maps.image.services.size(), 2u);
  EXPECT_EQ(maps.image.backends.size(), 1u);
  EXPECT_TRUE(maps.image.services.count(svcKey(ip("10.43.0.31").be, htons(80), IPPROTO_TCP, 0)));
}

TEST(Reconciler, AChangeTheKernelRefusesIsRolledBack) {
  FakeMaps maps;
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:8080"})));
  LbImage before = maps.image;
  maps.failAfter = 2;  // new backends go in, then the map is "full"
  auto st = r.upsert(clusterIpService("a", "10.43.0.20", 80, {"10.0.1.11:8080", "10.0.1.12:8080", "10.0.1.13:8080"}));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, E2BIG);
  EXPECT_EQ(maps.image, before) << "the failed change left entries behind";
  EXPECT_EQ(r.find("a")->backends.size(), 1u);
  // And the next change works.
  ASSERT_TRUE(r.upsert(clusterIpService("a", "10.43.0.20", 80, {"10.0.1.11:8080"})));
  EXPECT_EQ(maps.image.backends.size(), 1u);
}

}  // namespace
}  // namespace np::lb
