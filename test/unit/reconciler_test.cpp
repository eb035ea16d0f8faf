// The reconciler against a fake map set: ID allocation, idempotency, capacity known before
// writing, exact rollback when the kernel refuses part of a change, adoption with stale entries
// kept until pruning is allowed, and the whole-map reconcile.
#include <gtest/gtest.h>
#include <arpa/inet.h>

#include <set>

#include "lb/ids.h"
#include "lb/reconciler.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

using test::clusterIpService;
using test::describe;
using test::ep;
using test::ip;
using test::mapsMatchModel;

// Holds an image like the kernel maps would; can be told to fail after n ops, and enforces
// max_entries the way a no-prealloc hash map does (a new key beyond it fails with E2BIG).
class FakeMaps : public LbMaps {
 public:
  Applied apply(const std::vector<MapOp>& ops) override {
    Applied out;
    ++calls;
    for (const MapOp& op : ops) {
      if (failAfter == 0 || !fits(op)) {
        out.error = Error{E2BIG, "update map np_svc4_v1", "the map is full"};
        if (failAfter == 0) failAfter = failAgain ? 0 : -1;
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
  Capacity capacity() const override { return cap; }

  bool fits(const MapOp& op) const {
    NewEntries n = newEntries(image, {op});
    return image.services.size() + n.services <= cap.services && image.backends.size() + n.backends <= cap.backends &&
           image.revNat.size() + n.revNat <= cap.revNat;
  }

  LbImage image;
  Capacity cap{1u << 20, 1u << 20, 65535};
  int failAfter = -1;  // -1: never
  bool failAgain = false;  // keep failing (the undo too)
  size_t opsApplied = 0;
  size_t calls = 0;
};

NodeContext node() {
  NodeContext n;
  n.nodeIps = {ip("192.168.10.100")};
  return n;
}

Service withBackends(const std::string& name, const char* vip, int n, int first = 10) {
  Service s = clusterIpService(name, vip, 80, {});
  for (int i = 0; i < n; ++i)
    s.backends.push_back({Endpoint{Ipv4::fromHost(0x0a000000u + static_cast<uint32_t>(first + i)), 8080},
                          BackendState::Active});
  return s;
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
  ids.releaseIf([](int key, uint16_t) { return key >= 30; });
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_TRUE(ids.acquire(50));
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
  auto created = r.upsert(clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"}));
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(*created, Reconciler::ChangeKind::Created);
  EXPECT_EQ(maps.image.services.size(), 3u);  // entry + 2 slots
  EXPECT_EQ(maps.image.backends.size(), 2u);
  EXPECT_EQ(maps.image.revNat.size(), 1u);
  size_t before = maps.opsApplied;
  auto again = r.upsert(clusterIpService("t/a", "10.43.0.20", 80, {"10.0.2.10:8080", "10.0.1.10:8080"}));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, Reconciler::ChangeKind::Unchanged);
  EXPECT_EQ(maps.opsApplied, before) << "re-sending the same service (backends reordered) wrote to the maps";
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
}

// The cluster's node addresses follow the node list (CiliumNodes come and go after start).
TEST(Reconciler, NodeAddressesThatJoinLaterAreCheckedToo) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto s = clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080"});
  s.externalIps = {ip("192.168.10.105")};
  r.setClusterNodeIps({ip("192.168.10.100"), ip("192.168.10.105")});
  auto refused = r.upsert(s);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("192.168.10.105 is a node's own address"), std::string::npos)
      << refused.error().message();
  EXPECT_TRUE(maps.image.services.empty());
  r.setClusterNodeIps({ip("192.168.10.100")});  // that node left
  auto created = r.upsert(s);
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(*created, Reconciler::ChangeKind::Created);
}

TEST(Reconciler, InvalidServiceNeverReachesTheMaps) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto bad = clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080"});
  bad.nodePort = 80;
  EXPECT_FALSE(r.upsert(bad));
  EXPECT_EQ(maps.calls, 0u);
  EXPECT_TRUE(maps.image.services.empty());
  ASSERT_TRUE(r.upsert(clusterIpService("t/a", "10.43.0.20", 80, {})));
  EXPECT_FALSE(r.upsert(clusterIpService("t/b", "10.43.0.20", 80, {})));  // duplicate frontend
  EXPECT_EQ(r.services().size(), 1u);
}

TEST(Reconciler, BatchIsRefusedAsAWholeWhenOneServiceIsBad) {
  FakeMaps maps;
  Reconciler r(maps, node());
  std::vector<Service> batch = {clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080"}),
                                clusterIpService("t/b", "10.43.0.20", 80, {"10.0.1.11:8080"})};
  auto st = r.upsertMany(batch);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(),
            "service t/b: frontend 10.43.0.20:80/TCP is also claimed by service t/a in the same change");
  EXPECT_EQ(maps.calls, 0u);
  EXPECT_TRUE(r.services().empty());
}

TEST(Reconciler, AFrontendCanMoveBetweenServicesInOneChange) {
  FakeMaps maps;
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(clusterIpService("t/old", "10.43.0.20", 80, {"10.0.1.10:8080"})));
  auto p = r.prepare(Change{{clusterIpService("t/new", "10.43.0.20", 80, {"10.0.1.11:8080"})}, {"t/old"}});
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_TRUE(r.commit(*p));
  EXPECT_EQ(r.services().count("t/old"), 0u);
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
}

TEST(Reconciler, AChangeOfBackendsOnlyLeavesEveryFrontendsIdAndReverseNat) {
  // What the agent relies on to skip renaming flows: frontendsChanged() is false only when the
  // change keeps every service ID and reverse-NAT entry as it was.
  FakeMaps maps;
  Reconciler r(maps, node());
  Service web = clusterIpService("t/web", "10.43.0.20", 80, {"10.0.1.10:8080"});
  web.nodePort = 30080;
  ASSERT_TRUE(r.upsert(web));
  ASSERT_TRUE(r.upsert(clusterIpService("t/db", "10.43.0.21", 5432, {"10.0.1.20:5432"})));
  const auto revNat = maps.image.revNat;
  Service moved = web;
  moved.backends = {{ep("10.0.1.11:8080"), BackendState::Active, {}}, {ep("10.0.1.12:8080"), BackendState::Terminating, {}}};
  auto p = r.prepare(Change{{moved}, {}});
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_FALSE(p->frontendsChanged());
  ASSERT_TRUE(r.commit(*p));
  EXPECT_EQ(maps.image.revNat, revNat);
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
  // A new frontend, a new service or a delete each count as a change of frontends.
  Service wider = moved;
  wider.externalIps = {ip("192.168.10.50")};
  auto q = r.prepare(Change{{wider}, {}});
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->frontendsChanged());
  r.abandon(*q);
  auto c = r.prepare(Change{{clusterIpService("t/new", "10.43.0.22", 80, {"10.0.1.30:80"})}, {}});
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->frontendsChanged());
  r.abandon(*c);
  auto d = r.prepare(Change{{moved}, {"t/db"}});  // moved is unchanged now: only the delete
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->frontendsChanged());
  r.abandon(*d);
}

TEST(Reconciler, ServiceIdsAreTheReverseNatIdsOfTheServicesFrontends) {
  FakeMaps maps;
  Reconciler r(maps, node());
  Service web = clusterIpService("t/web", "10.43.0.20", 80, {"10.0.1.10:8080"});
  web.nodePort = 30080;  // the wildcard and 192.168.10.100
  web.externalIps = {ip("192.168.10.50")};
  ASSERT_TRUE(r.upsert(web));
  ASSERT_TRUE(r.upsert(clusterIpService("t/db", "10.43.0.21", 80, {"10.0.1.20:5432"})));
  auto frontendsOfIds = [&](const Service& s) {
    std::vector<std::string> out;
    for (uint16_t id : r.serviceIds(s)) {
      const np_revnat& rn = maps.image.revNat.at(id);
      out.push_back(Endpoint{Ipv4{rn.addr}, ntohs(rn.port)}.str());
    }
    return out;
  };
  EXPECT_EQ(frontendsOfIds(web), (std::vector<std::string>{"10.43.0.20:80", "0.0.0.0:30080", "192.168.10.100:30080",
                                                           "192.168.10.50:80"}));
  EXPECT_EQ(frontendsOfIds(*r.find("t/db")), std::vector<std::string>{"10.43.0.21:80"});
  // Every applied reverse-NAT entry is one service's: the IDs of all services are all of them.
  std::set<uint16_t> all;
  for (const auto& [name, s] : r.services())
    for (uint16_t id : r.serviceIds(s)) EXPECT_TRUE(all.insert(id).second) << id << " named twice";
  EXPECT_EQ(all.size(), maps.image.revNat.size());
  // A frontend that went has no ID; one not applied (a version not committed) has none either.
  Service narrower = web;
  narrower.externalIps.clear();
  ASSERT_TRUE(r.upsert(narrower));
  EXPECT_EQ(frontendsOfIds(narrower), (std::vector<std::string>{"10.43.0.20:80", "0.0.0.0:30080", "192.168.10.100:30080"}));
  EXPECT_EQ(r.serviceIds(clusterIpService("t/none", "10.43.0.99", 80, {})), std::vector<uint16_t>{});
}

TEST(Reconciler, SharedBackendSurvivesDeletionOfOneService) {
  FakeMaps maps;
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080"})));
  ASSERT_TRUE(r.upsert(clusterIpService("t/b", "10.43.0.21", 80, {"10.0.1.10:8080"})));
  EXPECT_EQ(maps.image.backends.size(), 1u);
  ASSERT_TRUE(r.remove("t/a"));
  EXPECT_EQ(maps.image.backends.size(), 1u) << "backend still used by b was deleted";
  ASSERT_TRUE(r.remove("t/b"));
  EXPECT_TRUE(maps.image.backends.empty());
  EXPECT_TRUE(maps.image.services.empty());
  EXPECT_TRUE(maps.image.revNat.empty());
  Status st = r.remove("t/b");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, ENOENT);
}

TEST(Reconciler, OnlyTerminatingBackendsBecomeSelectable) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto s = clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.1.11:8080"});
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

// Found by the invariant test on real maps: a backend shared by two services took the state of
// whichever was written last, so every whole-map reconcile saw drift.
TEST(Reconciler, ASharedBackendIsTerminatingWhileAnyServiceSaysSo) {
  FakeMaps maps;
  Reconciler r(maps, node());
  r.allowPrune();
  auto a = clusterIpService("t/a", "10.43.0.1", 80, {"10.0.1.10:8080", "10.0.1.11:8080"});
  auto b = clusterIpService("t/b", "10.43.0.2", 80, {"10.0.1.10:8080"});
  ASSERT_TRUE(r.upsert(a));
  ASSERT_TRUE(r.upsert(b));
  a.backends[0].state = BackendState::Terminating;
  ASSERT_TRUE(r.upsert(a));
  ASSERT_EQ(maps.image.backends.size(), 2u);
  auto state = [&](const char* addr) {
    for (const auto& [id, be] : maps.image.backends)
      if (be.addr == ip(addr).be) return be.state;
    return uint8_t{255};
  };
  EXPECT_EQ(state("10.0.1.10"), NP_BACKEND_TERMINATING);
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
  auto rep = r.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->repaired(), 0u) << "the reconcile saw drift in a shared backend's state";
  // a goes; b still says active: the shared entry is active again, though b did not change.
  ASSERT_TRUE(r.remove("t/a"));
  EXPECT_EQ(state("10.0.1.10"), NP_BACKEND_ACTIVE);
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
  rep = r.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->repaired(), 0u);
}

// Finding 1: a batch the kernel refuses part-way used to leave the entries it had written.
TEST(Reconciler, ABatchTheKernelRefusesAtAnyPointLeavesNothingBehind) {
  std::vector<Service> start = {withBackends("t/keep", "10.43.0.1", 3, 10), withBackends("t/shrink", "10.43.0.2", 4, 20),
                                withBackends("t/gone", "10.43.0.3", 2, 30)};
  // The change: a new service, one shrunk onto a shared backend, one grown, one deleted.
  auto changed = withBackends("t/shrink", "10.43.0.2", 1, 10);
  auto grown = withBackends("t/keep", "10.43.0.1", 6, 10);
  std::vector<Service> ups = {withBackends("t/new", "10.43.0.4", 5, 40), changed, grown};
  size_t total = 0;
  for (int failAt = 0;; ++failAt) {
    FakeMaps maps;
    Reconciler r(maps, node());
    ASSERT_TRUE(r.upsertMany(start));
    const LbImage before = maps.image;
    maps.failAfter = failAt;
    auto p = r.prepare(Change{ups, {"t/gone"}});
    ASSERT_TRUE(p) << p.error().message();
    total = p->ops.size();
    Status st = r.commit(*p);
    if (failAt >= static_cast<int>(total)) {
      ASSERT_TRUE(st) << st.error().message();
      EXPECT_TRUE(mapsMatchModel(maps.image, r));
      break;
    }
    ASSERT_FALSE(st) << "fail after " << failAt << " of " << total;
    EXPECT_NE(st.error().message().find("nothing was changed"), std::string::npos) << st.error().message();
    EXPECT_EQ(maps.image, before) << "a change refused after " << failAt << " of " << total
                                  << " ops left entries behind:\n" << describe(p->ops);
    EXPECT_TRUE(mapsMatchModel(maps.image, r)) << "the model is not the previous version";
    EXPECT_EQ(r.find("t/keep")->backends.size(), 3u);
    EXPECT_TRUE(r.find("t/gone"));
    EXPECT_FALSE(r.diverged());
    // ...and a change that fits the maps works right after.
    ASSERT_TRUE(r.upsert(withBackends("t/after", "10.43.0.9", 2, 90)));
    EXPECT_TRUE(mapsMatchModel(maps.image, r));
  }
  EXPECT_GT(total, 20u);
}

TEST(Reconciler, CapacityIsKnownBeforeWriting) {
  FakeMaps maps;
  maps.cap = {40, 40, 100};
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(withBackends("t/a", "10.43.0.1", 10, 10)));  // 11 service entries
  std::vector<Service> batch;
  for (int i = 0; i < 3; ++i) batch.push_back(withBackends("t/b" + std::to_string(i), "10.43.0.2", 10, 100 + 10 * i));
  batch[1].clusterIp = ip("10.43.0.3");
  batch[2].clusterIp = ip("10.43.0.4");
  const size_t calls = maps.calls;
  auto st = r.upsertMany(batch);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, ENOSPC);
  EXPECT_EQ(st.error().message(),
            "the change does not fit the service map: needs 33 new entries, 29 free (40 max); nothing was changed");
  EXPECT_EQ(maps.calls, calls) << "a change that cannot fit reached the maps";
  batch.pop_back();
  ASSERT_TRUE(r.upsertMany(batch));  // 22 fit into 29
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
}

TEST(Reconciler, UndoThatFailsTooIsReportedAndReconcileRepairs) {
  FakeMaps maps;
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(withBackends("t/a", "10.43.0.1", 2)));
  maps.failAfter = 3;
  maps.failAgain = true;
  EXPECT_FALSE(r.upsert(withBackends("t/a", "10.43.0.1", 5)));
  ASSERT_TRUE(r.diverged());
  maps.failAfter = -1;
  r.allowPrune();
  auto rep = r.reconcileAll();
  ASSERT_TRUE(rep) << rep.error().message();
  EXPECT_GT(rep->repaired(), 0u);
  EXPECT_FALSE(r.diverged());
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
}

// Finding 2: more backends than slot numbers can address used to be accepted and black-holed.
TEST(Reconciler, AServiceWithMoreBackendsThanSlotsIsRefused) {
  FakeMaps maps;
  Reconciler r(maps, node());
  auto huge = withBackends("t/huge", "10.43.0.1", 65536);
  auto st = r.upsert(huge);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "service t/huge: has 65536 backends; a service can have at most 65535");
  EXPECT_EQ(maps.calls, 0u);
  huge.backends.pop_back();
  ASSERT_TRUE(r.upsert(huge));
  auto master = maps.image.services.at(svcKey(ip("10.43.0.1").be, htons(80), IPPROTO_TCP, 0));
  EXPECT_EQ(master.count, 65535);
  ASSERT_TRUE(r.remove("t/huge"));
  EXPECT_TRUE(maps.image.services.empty());
  EXPECT_TRUE(maps.image.backends.empty());
}

TEST(Reconciler, AdoptThenClaimWritesNothing) {
  FakeMaps maps;
  std::vector<Service> model;
  {
    Reconciler first(maps, node());
    auto s = clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"});
    s.nodePort = 30080;
    ASSERT_TRUE(first.upsert(s));
    ASSERT_TRUE(first.upsert(clusterIpService("t/b", "10.43.0.21", 53, {"10.0.1.10:53"})));
    for (auto& [n, svc] : first.services()) model.push_back(svc);
  }
  LbImage before = maps.image;
  size_t ops = maps.opsApplied;
  Reconciler second(maps, node());
  auto adopted = second.adopt();
  ASSERT_TRUE(adopted);
  EXPECT_EQ(*adopted, 4u);  // ClusterIP, wildcard and node-IP NodePort of a; b
  EXPECT_EQ(second.staleFrontends(), 4u);
  ASSERT_TRUE(second.upsertMany(model));
  EXPECT_EQ(second.staleFrontends(), 0u);
  EXPECT_EQ(maps.opsApplied, ops);
  EXPECT_EQ(maps.image, before);
  // New services after a restore get fresh IDs, not the adopted ones.
  ASSERT_TRUE(second.upsert(clusterIpService("t/c", "10.43.0.22", 80, {"10.0.1.12:80"})));
  std::set<uint16_t> ids;
  for (auto& [k, v] : maps.image.services) {
    if (k.slot == 0) {
      EXPECT_TRUE(ids.insert(v.rev_nat_id).second) << "rev-NAT ID reused";
    }
  }
}

// Finding 3: the restore used to prune every adopted entry the (missing) state did not name.
TEST(Reconciler, StaleEntriesServeUntilPruningIsAllowed) {
  FakeMaps maps;
  {
    Reconciler first(maps, node());
    ASSERT_TRUE(first.upsert(clusterIpService("t/gone", "10.43.0.30", 80, {"10.0.1.30:80", "10.0.1.31:80"})));
  }
  const LbImage adopted = maps.image;
  Reconciler second(maps, node());
  ASSERT_TRUE(second.adopt());
  // A service that shares a backend with the stale one, created and deleted before sync.
  ASSERT_TRUE(second.upsert(clusterIpService("t/kept", "10.43.0.31", 80, {"10.0.1.31:80"})));
  ASSERT_TRUE(second.remove("t/kept"));
  auto rep = second.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->staleKept, 1u);
  EXPECT_EQ(rep->repaired(), 0u);
  EXPECT_EQ(maps.image, adopted) << "stale entries (or a backend they use) were touched before sync";
  // A new service does not take the stale frontend's ID.
  ASSERT_TRUE(second.upsert(clusterIpService("t/new", "10.43.0.32", 80, {})));
  const uint16_t staleId = adopted.services.at(svcKey(ip("10.43.0.30").be, htons(80), IPPROTO_TCP, 0)).rev_nat_id;
  EXPECT_NE(maps.image.services.at(svcKey(ip("10.43.0.32").be, htons(80), IPPROTO_TCP, 0)).rev_nat_id, staleId);

  second.allowPrune();
  rep = second.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->orphans, 6u);  // the stale entry, its 2 slots, its rev-NAT entry and 2 backends
  EXPECT_TRUE(mapsMatchModel(maps.image, second));
}

TEST(Reconciler, WholeMapReconcileRepairsDriftAndOrphans) {
  FakeMaps maps;
  Reconciler r(maps, node());
  ASSERT_TRUE(r.upsert(withBackends("t/a", "10.43.0.1", 3)));
  ASSERT_TRUE(r.upsert(withBackends("t/b", "10.43.0.2", 2, 50)));
  r.allowPrune();
  // Someone else writes to our maps: a slot gone, a backend changed, an orphan service entry.
  auto master = svcKey(ip("10.43.0.1").be, htons(80), IPPROTO_TCP, 0);
  auto slot = master;
  slot.slot = 2;
  maps.image.services.erase(slot);
  maps.image.backends.begin()->second.port = htons(1);
  np_svc_val orphan{};
  orphan.rev_nat_id = 999;
  maps.image.services[svcKey(ip("10.43.0.99").be, htons(80), IPPROTO_TCP, 0)] = orphan;
  auto rep = r.reconcileAll();
  ASSERT_TRUE(rep) << rep.error().message();
  EXPECT_EQ(rep->missing, 1u);
  EXPECT_EQ(rep->drifted, 1u);
  EXPECT_EQ(rep->orphans, 1u);
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
  rep = r.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->repaired(), 0u) << "a second reconcile found work";
  // IDs the orphan held are free again, and the model keeps working.
  ASSERT_TRUE(r.upsert(withBackends("t/c", "10.43.0.3", 1, 70)));
  EXPECT_TRUE(mapsMatchModel(maps.image, r));
}

}  // namespace
}  // namespace np::lb
