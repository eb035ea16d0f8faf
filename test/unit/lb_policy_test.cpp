// Load-balancing policy in pure code: Maglev tables (coverage, balance, what moves when a backend
// goes), the new service fields (validation, state file round trip, files of the previous
// version), their expansion into map entries (two scopes for externalTrafficPolicy=Local, local
// backends for internalTrafficPolicy=Local, affinity matches, Maglev tables) and the planner's
// handling of the new maps (a refused change undone exactly, whole-map repair).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "core/config.h"
#include "lb/maglev.h"
#include "lb/reconciler.h"
#include "lb/store.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

using test::ip;

// ---------------------------------------------------------------------------------------------
// Maglev tables

std::vector<maglev::Member> members(int n, int first = 0) {
  std::vector<maglev::Member> out;
  for (int i = first; i < first + n; ++i)
    out.push_back({"10.0." + std::to_string(1 + i / 200) + "." + std::to_string(10 + i % 200) + ":8080/TCP",
                   static_cast<uint32_t>(100 + i)});
  return out;
}

TEST(MaglevTable, EveryEntryNamesABackendAndEachHoldsItsShare) {
  for (int n : {1, 2, 3, 10, 100}) {
    SCOPED_TRACE(std::to_string(n) + " backends");
    const auto t = maglev::table(members(n), 16381);
    ASSERT_EQ(t.size(), 16381u);
    std::map<uint32_t, size_t> share;
    for (uint32_t id : t) share[id]++;
    ASSERT_EQ(share.size(), static_cast<size_t>(n)) << "every backend holds entries, nothing else does";
    for (const auto& [id, c] : share) {
      EXPECT_GE(id, 100u);
      EXPECT_LT(id, 100u + n);
    }
    // Maglev's turns keep every backend within one round of M/N.
    const auto [lo, hi] = std::minmax_element(share.begin(), share.end(),
                                              [](const auto& a, const auto& b) { return a.second < b.second; });
    EXPECT_LE(hi->second - lo->second, 1u) << "entries per backend " << lo->second << ".." << hi->second;
  }
}

TEST(MaglevTable, TheSameBackendsGiveTheSameTableInAnyOrder) {
  auto a = members(10);
  auto b = a;
  std::reverse(b.begin(), b.end());
  std::rotate(b.begin(), b.begin() + 3, b.end());
  EXPECT_EQ(maglev::table(a, 16381), maglev::table(b, 16381));
  // Positions come from the names, not from the node's IDs: another node with other IDs for the
  // same backends sends each index to the same backend.
  auto c = a;
  for (auto& m : c) m.id += 1000;
  const auto ta = maglev::table(a, 16381), tc = maglev::table(c, 16381);
  for (size_t i = 0; i < ta.size(); ++i) ASSERT_EQ(ta[i] + 1000, tc[i]) << "index " << i;
}

// Removing one of N backends moves about 1/N of the table: the removed backend's entries, and
// little else.
TEST(MaglevTable, RemovingOneOfTenBackendsMovesAboutATenth) {
  const uint32_t m = 16381;
  for (int removed = 0; removed < 10; ++removed) {
    auto all = members(10);
    const auto before = maglev::table(all, m);
    all.erase(all.begin() + removed);
    const auto after = maglev::table(all, m);
    size_t moved = 0, ownMoved = 0;
    const uint32_t gone = static_cast<uint32_t>(100 + removed);
    for (uint32_t i = 0; i < m; ++i) {
      if (before[i] == after[i]) continue;
      ++moved;
      ownMoved += before[i] == gone;
      ASSERT_NE(after[i], gone);
    }
    const double share = static_cast<double>(moved) / m;
    const double extra = static_cast<double>(moved - ownMoved) / m;
    std::printf("maglev: removing backend %d of 10 moved %.2f%% of the table (%.2f%% of it beyond its own entries)\n",
                removed, 100 * share, 100 * extra);
    EXPECT_EQ(ownMoved, static_cast<size_t>(std::count(before.begin(), before.end(), gone)))
        << "all of its own entries move";
    EXPECT_LT(share, 0.15) << "removing 1 of 10 must move about a tenth, not reshuffle the table";
  }
}

TEST(MaglevTable, AddingABackendTakesAboutItsShare) {
  const uint32_t m = 16381;
  const auto before = maglev::table(members(9), m);
  const auto after = maglev::table(members(10), m);
  size_t moved = 0;
  for (uint32_t i = 0; i < m; ++i) moved += before[i] != after[i];
  EXPECT_LT(static_cast<double>(moved) / m, 0.15);
  EXPECT_GT(static_cast<double>(moved) / m, 0.09);
}

TEST(MaglevTable, TableSizeFlagTakesCiliumsPrimesOnly) {
  auto parse = [](const std::string& v) { return parseConfig({"--bpf-lb-maglev-table-size=" + v}); };
  auto ok = parse("16381");
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->maglevTableSize, 16381u);
  EXPECT_EQ(parseConfig({})->maglevTableSize, 16381u) << "the default";
  for (uint32_t m : maglev::supportedTableSizes()) EXPECT_TRUE(parse(std::to_string(m))) << m;
  auto notPrime = parse("16384");
  ASSERT_FALSE(notPrime);
  EXPECT_NE(notPrime.error().message().find("is not a prime"), std::string::npos) << notPrime.error().message();
  auto outOfRange = parse("131101");
  ASSERT_FALSE(outOfRange);
  EXPECT_NE(outOfRange.error().message().find("outside 251..131071"), std::string::npos)
      << outOfRange.error().message();
  auto unlisted = parse("16411");  // a prime Cilium does not accept
  ASSERT_FALSE(unlisted);
  EXPECT_NE(unlisted.error().message().find("not one of the supported primes"), std::string::npos)
      << unlisted.error().message();
  EXPECT_FALSE(parse("abc"));
  auto alg = parseConfig({"--bpf-lb-algorithm=maglev"});
  ASSERT_TRUE(alg) << alg.error().message();
  EXPECT_EQ(alg->lbAlgorithm, LbAlgorithm::Maglev);
  EXPECT_EQ(backendSelectionName(*alg), "Maglev (Table Size: 16381)");
  EXPECT_FALSE(parseConfig({"--bpf-lb-algorithm=roundrobin"}));
}

// ---------------------------------------------------------------------------------------------
// The service fields

NodeContext node() {
  NodeContext n;
  n.nodeIps = {ip("192.168.10.100")};
  n.nodeName = "n1";
  n.localPodCidr = Cidr::parse("10.0.1.0/24");
  return n;
}

Service nodePortService() {
  Service s = test::clusterIpService("default/web", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.2.10:8080"});
  s.nodePort = 30080;
  return s;
}

TEST(ServicePolicy, LocalityComesFromTheNodeNameElseThePodCidrOrNodeAddress) {
  const NodeContext n = node();
  EXPECT_TRUE(isLocal({test::ep("10.0.1.10:8080")}, n)) << "in this node's pod CIDR";
  EXPECT_FALSE(isLocal({test::ep("10.0.2.10:8080")}, n)) << "another node's pod";
  EXPECT_TRUE(isLocal({test::ep("192.168.10.100:22")}, n)) << "the node's own address (hostNetwork)";
  EXPECT_FALSE(isLocal({test::ep("10.0.1.10:8080"), BackendState::Active, "n2"}, n)) << "the name wins";
  EXPECT_TRUE(isLocal({test::ep("10.0.2.10:8080"), BackendState::Active, "n1"}, n));
}

TEST(ServicePolicy, ValidationRefusesWhatKubernetesRefuses) {
  const NodeContext n = node();
  Service s = nodePortService();
  s.sessionAffinity = SessionAffinity::ClientIp;
  EXPECT_TRUE(validate(s, n)) << "ClientIP with the default timeout";
  s.affinityTimeoutSec = 0;
  EXPECT_FALSE(validate(s, n));
  s.affinityTimeoutSec = 86401;
  auto e = validate(s, n);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("outside 1..86400"), std::string::npos) << e.error().message();
  s.affinityTimeoutSec = 86400;
  EXPECT_TRUE(validate(s, n));
  s.sessionAffinity = SessionAffinity::None;
  EXPECT_FALSE(validate(s, n)) << "a timeout without ClientIP";

  Service c = test::clusterIpService("default/c", "10.43.0.21", 80, {"10.0.1.10:8080"});
  c.externalTrafficPolicy = TrafficPolicy::Local;
  auto el = validate(c, n);
  ASSERT_FALSE(el) << "externalTrafficPolicy Local on a ClusterIP-only service";
  EXPECT_NE(el.error().message().find("needs an external frontend"), std::string::npos);
  c.externalTrafficPolicy = TrafficPolicy::Cluster;
  c.internalTrafficPolicy = TrafficPolicy::Local;
  EXPECT_TRUE(validate(c, n));
  c.backends[0].nodeName = "Bad_Name";
  EXPECT_FALSE(validate(c, n));
  c.backends[0].nodeName = "k3s-1.example";
  EXPECT_TRUE(validate(c, n));
}

TEST(ServicePolicy, StateFileRoundTripsTheNewFields) {
  Service s = nodePortService();
  s.sessionAffinity = SessionAffinity::ClientIp;
  s.affinityTimeoutSec = 600;
  s.externalTrafficPolicy = TrafficPolicy::Local;
  s.internalTrafficPolicy = TrafficPolicy::Local;
  s.backends[1].nodeName = "n2";
  Service plain = test::clusterIpService("default/plain", "10.43.0.22", 80, {"10.0.1.11:8080"});
  const std::string text = servicesToJson({{s.name, s}, {plain.name, plain}}, 7);
  auto back = servicesFromJson(text);
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->services.size(), 2u);
  EXPECT_EQ(back->services[1], s);
  EXPECT_EQ(back->services[0], plain);
  // A service with Kubernetes' defaults is written exactly as before these fields existed.
  EXPECT_NE(text.find("{\"name\":\"default/plain\",\"protocol\":\"TCP\",\"port\":80,\"clusterIP\":\"10.43.0.22\","
                      "\"backends\":[{\"address\":\"10.0.1.11:8080\",\"state\":\"active\"}]}"),
            std::string::npos)
      << text;
}

TEST(ServicePolicy, FilesOfThePreviousVersionLoadWithKubernetesDefaults) {
  // Written by the agent before this change (no policy fields).
  const std::string old =
      "{\"version\":2,\"seq\":3,\"services\":[\n"
      "{\"name\":\"default/web\",\"protocol\":\"TCP\",\"port\":80,\"clusterIP\":\"10.43.0.20\",\"nodePort\":30080,"
      "\"backends\":[{\"address\":\"10.0.1.10:8080\",\"state\":\"active\"},"
      "{\"address\":\"10.0.2.10:8080\",\"state\":\"terminating\"}]}\n]}\n";
  auto snap = servicesFromJson(old);
  ASSERT_TRUE(snap) << snap.error().message();
  ASSERT_EQ(snap->services.size(), 1u);
  const Service& s = snap->services[0];
  EXPECT_EQ(s.sessionAffinity, SessionAffinity::None);
  EXPECT_EQ(s.affinityTimeoutSec, kDefaultAffinityTimeoutSec);
  EXPECT_EQ(s.externalTrafficPolicy, TrafficPolicy::Cluster);
  EXPECT_EQ(s.internalTrafficPolicy, TrafficPolicy::Cluster);
  EXPECT_TRUE(s.backends[0].nodeName.empty());
  EXPECT_TRUE(validate(s, node()));
  // Strict as before: wrong values and types name the field.
  auto bad = [](const std::string& field) {
    return servicesFromJson("{\"version\":2,\"seq\":0,\"services\":[{\"name\":\"default/web\",\"protocol\":\"TCP\","
                            "\"port\":80,\"nodePort\":30080," + field + "}]}");
  };
  for (const char* f : {"\"sessionAffinity\":\"Sticky\"", "\"sessionAffinity\":1", "\"sessionAffinityTimeoutSeconds\":0",
                        "\"sessionAffinityTimeoutSeconds\":\"10\"", "\"externalTrafficPolicy\":\"local\"",
                        "\"internalTrafficPolicy\":\"Node\"",
                        "\"backends\":[{\"address\":\"10.0.1.10:8080\",\"state\":\"active\",\"nodeName\":5}]"}) {
    auto r = bad(f);
    EXPECT_FALSE(r) << f;
    if (!r) {
      EXPECT_NE(r.error().message().find("default/web"), std::string::npos) << r.error().message();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Expansion and the planner

class Maps : public LbMaps {
 public:
  Applied apply(const std::vector<MapOp>& ops) override {
    Applied out;
    for (const MapOp& op : ops) {
      if (failAfter == 0) {
        failAfter = -1;
        out.error = Error{EIO, "injected", "refused"};
        return out;
      }
      if (failAfter > 0) --failAfter;
      applyOps(image, {op}, 1);
      ++out.done;
    }
    return out;
  }
  Result<LbImage> dump() override { return image; }
  Capacity capacity() const override { return {1u << 20, 1u << 20, 65535}; }
  LbImage image;
  int failAfter = -1;
};

np_svc_key entry(const char* addr, uint16_t port, uint8_t scope = NP_LB_SCOPE_EXT) {
  return svcKey(ip(addr).be, htons(port), IPPROTO_TCP, 0, scope);
}

std::set<std::string> backendsOf(const LbImage& img, np_svc_key master) {
  std::set<std::string> out;
  const np_svc_val& m = img.services.at(master);
  for (uint16_t s = 1; s <= m.count; ++s) {
    master.slot = s;
    const np_backend& be = img.backends.at(img.services.at(master).backend_id);
    out.insert(Endpoint{Ipv4{be.addr}, ntohs(be.port)}.str());
  }
  return out;
}

TEST(ServicePolicy, ExternalTrafficPolicyLocalHasTwoScopes) {
  Maps maps;
  Reconciler r(maps, node());
  Service s = nodePortService();
  s.externalTrafficPolicy = TrafficPolicy::Local;
  ASSERT_TRUE(r.upsert(s));
  const LbImage& img = maps.image;
  const auto ext = entry("192.168.10.100", 30080), in = entry("192.168.10.100", 30080, NP_LB_SCOPE_INT);
  ASSERT_TRUE(img.services.contains(ext));
  ASSERT_TRUE(img.services.contains(in));
  EXPECT_EQ(backendsOf(img, ext), std::set<std::string>{"10.0.1.10:8080"}) << "outside: this node's backends only";
  EXPECT_EQ(backendsOf(img, in), (std::set<std::string>{"10.0.1.10:8080", "10.0.2.10:8080"})) << "in-cluster: all";
  EXPECT_TRUE(img.services.at(ext).flags & NP_SVC_F_LOCAL_SCOPE);
  EXPECT_TRUE(img.services.at(ext).flags2 & NP_SVC_F2_TWO_SCOPES);
  EXPECT_EQ(img.services.at(in).rev_nat_id, img.services.at(ext).rev_nat_id) << "one frontend, one reverse NAT";
  // The ClusterIP and the wildcard (socket LB) keep all backends in one scope.
  EXPECT_EQ(backendsOf(img, entry("10.43.0.20", 80)).size(), 2u);
  EXPECT_FALSE(img.services.contains(entry("10.43.0.20", 80, NP_LB_SCOPE_INT)));
  EXPECT_EQ(backendsOf(img, entry("0.0.0.0", 30080)).size(), 2u);
  EXPECT_EQ(r.frontendCount(), 3u) << "the INT entry is no frontend of its own";

  // No local backend left: the EXT entry has none to select (the datapath drops), INT keeps all.
  s.backends = {{test::ep("10.0.2.10:8080")}, {test::ep("10.0.2.11:8080")}};
  ASSERT_TRUE(r.upsert(s));
  EXPECT_EQ(img.services.at(ext).count, 0);
  EXPECT_EQ(img.services.at(in).count, 2);

  // Back to Cluster: the INT entry and its slots go.
  s.externalTrafficPolicy = TrafficPolicy::Cluster;
  ASSERT_TRUE(r.upsert(s));
  EXPECT_FALSE(img.services.contains(in));
  for (uint16_t slot = 1; slot <= 2; ++slot) {
    auto k = in;
    k.slot = slot;
    EXPECT_FALSE(img.services.contains(k));
  }
  EXPECT_EQ(img.services.at(ext).count, 2);
  EXPECT_FALSE(img.services.at(ext).flags2 & NP_SVC_F2_TWO_SCOPES);
  ASSERT_TRUE(r.remove(s.name));
  EXPECT_TRUE(img.services.empty() && img.backends.empty() && img.revNat.empty());
}

TEST(ServicePolicy, InternalTrafficPolicyLocalLimitsTheClusterIp) {
  Maps maps;
  Reconciler r(maps, node());
  Service s = nodePortService();
  s.internalTrafficPolicy = TrafficPolicy::Local;
  ASSERT_TRUE(r.upsert(s));
  EXPECT_EQ(backendsOf(maps.image, entry("10.43.0.20", 80)), std::set<std::string>{"10.0.1.10:8080"});
  EXPECT_EQ(backendsOf(maps.image, entry("192.168.10.100", 30080)).size(), 2u) << "external traffic: all";
}

TEST(ServicePolicy, AffinityWritesTimeoutAndMatchesOfSelectableBackends) {
  Maps maps;
  Reconciler r(maps, node());
  Service s = nodePortService();
  s.sessionAffinity = SessionAffinity::ClientIp;
  s.affinityTimeoutSec = 600;
  s.backends.push_back({test::ep("10.0.2.11:8080"), BackendState::Terminating});
  ASSERT_TRUE(r.upsert(s));
  const LbImage& img = maps.image;
  const np_svc_val& m = img.services.at(entry("10.43.0.20", 80));
  EXPECT_TRUE(m.flags & NP_SVC_F_AFFINITY);
  EXPECT_EQ(m.backend_id, 600u) << "slot 0 carries the timeout";
  // 3 frontends x 2 selectable backends; the terminating one is not a target for affinity.
  EXPECT_EQ(img.affinityMatch.size(), 6u);
  for (const auto& [k, v] : img.affinityMatch) {
    const auto be = img.backends.at(k.backend_id);
    EXPECT_EQ(be.state, NP_BACKEND_ACTIVE);
  }
  // Removing a backend removes its matches: a client affine to it picks again.
  s.backends.erase(s.backends.begin());
  ASSERT_TRUE(r.upsert(s));
  EXPECT_EQ(img.affinityMatch.size(), 3u);
  s.sessionAffinity = SessionAffinity::None;
  s.affinityTimeoutSec = kDefaultAffinityTimeoutSec;
  ASSERT_TRUE(r.upsert(s));
  EXPECT_TRUE(img.affinityMatch.empty());
  EXPECT_FALSE(img.services.at(entry("10.43.0.20", 80)).flags & NP_SVC_F_AFFINITY);
}

TEST(MaglevReconcile, RoutableFrontendsGetATableOfTheirSelectableBackends) {
  NodeContext n = node();
  n.maglev = true;
  n.maglevTableSize = 251;
  Maps maps;
  Reconciler r(maps, n);
  Service s = nodePortService();
  s.externalIps = {ip("192.168.20.5")};
  ASSERT_TRUE(r.upsert(s));
  const LbImage& img = maps.image;
  // The node-IP NodePort and the external IP: the tc path's frontends. Not the ClusterIP or the
  // wildcard (socket LB selects by slot).
  ASSERT_EQ(img.maglev.size(), 2u);
  const auto np = entry("192.168.10.100", 30080);
  ASSERT_TRUE(img.maglev.contains(np));
  EXPECT_TRUE(img.services.at(np).flags2 & NP_SVC_F2_MAGLEV);
  EXPECT_FALSE(img.services.at(entry("10.43.0.20", 80)).flags2 & NP_SVC_F2_MAGLEV);
  const auto& t = *img.maglev.at(np).ids;
  EXPECT_EQ(t.size(), 251u);
  std::set<uint32_t> ids(t.begin(), t.end()), slots;
  for (uint16_t slot = 1; slot <= img.services.at(np).count; ++slot) {
    auto k = np;
    k.slot = slot;
    slots.insert(img.services.at(k).backend_id);
  }
  EXPECT_EQ(ids, slots);
  EXPECT_EQ(img.maglev.at(np).ids, img.maglev.at(entry("192.168.20.5", 80)).ids)
      << "one table per service, shared by its frontends";

  // Re-sent unchanged: nothing to write; a whole-map reconcile reuses the applied table.
  auto again = r.upsert(s);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, Reconciler::ChangeKind::Unchanged);
  auto rep = r.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->repaired(), 0u);

  // A change the kernel refuses after the new table went in is undone: the old table is back.
  const LbImage before = maps.image;
  Service grown = s;
  grown.backends.push_back({test::ep("10.0.2.11:8080")});
  auto p = r.prepare(Change{{grown}, {}});
  ASSERT_TRUE(p);
  size_t cut = 0;
  for (size_t i = 0; i < p->ops.size(); ++i)
    if (p->ops[i].kind == MapOp::Kind::UpsertMaglev) cut = i + 1;
  ASSERT_GT(cut, 0u) << test::describe(p->ops);
  maps.failAfter = static_cast<int>(cut);
  EXPECT_FALSE(r.commit(*p));
  EXPECT_TRUE(maps.image == before) << "the refused change left something behind";

  // Drift: a table that went missing is written again.
  maps.image.maglev.erase(np);
  rep = r.reconcileAll();
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->missing, 1u);
  EXPECT_TRUE(maps.image == before);

  // No backend left: no table (nothing to select), and none left behind after a delete.
  s.backends.clear();
  ASSERT_TRUE(r.upsert(s));
  EXPECT_TRUE(maps.image.maglev.empty());
  ASSERT_TRUE(r.remove(s.name));
  EXPECT_TRUE(maps.image.maglev.empty() && maps.image.services.empty() && maps.image.affinityMatch.empty());
}

}  // namespace
}  // namespace np::lb
