// The reconciler against the real kernel maps: random sequences of upserts, batches and deletes,
// with failures injected part-way through applying (and, in some runs, maps smaller than the
// reconciler is told, so the kernel itself refuses inserts mid-batch). After every step the maps
// must hold exactly the model's expansion - nothing leaked, nothing half-applied - and a refused
// step must leave the model as it was.
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "bpf/map.h"
#include "datapath/lb_maps.h"
#include "env.h"
#include "lb_test_util.h"

namespace np::bpftest {
namespace {

using lb::LbMaps;
using lb::MapOp;

// Real maps, created for the test (not pinned): the agent's layouts and flags.
struct RealMaps {
  bpf::Fd services, backends, revNat, affinityMatch, maglevInner, maglev;
  RealMaps(uint32_t svcMax, uint32_t beMax, uint32_t rnMax) {
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_NO_PREALLOC);
    services.reset(bpf_map_create(BPF_MAP_TYPE_HASH, NP_STR(NP_MAP_SERVICES), sizeof(np_svc_key), sizeof(np_svc_val), svcMax, &opts));
    backends.reset(bpf_map_create(BPF_MAP_TYPE_HASH, NP_STR(NP_MAP_BACKENDS), 4, sizeof(np_backend), beMax, &opts));
    revNat.reset(bpf_map_create(BPF_MAP_TYPE_HASH, NP_STR(NP_MAP_REVNAT), 2, sizeof(np_revnat), rnMax, &opts));
    affinityMatch.reset(bpf_map_create(BPF_MAP_TYPE_HASH, NP_STR(NP_MAP_AFFINITY_MATCH), sizeof(np_affinity_match), 1,
                                       svcMax, &opts));
    LIBBPF_OPTS(bpf_map_create_opts, innerOpts, .map_flags = BPF_F_INNER_MAP);
    maglevInner.reset(bpf_map_create(BPF_MAP_TYPE_ARRAY, "np_maglev_tab", 4, 4, kTableSize, &innerOpts));
    LIBBPF_OPTS(bpf_map_create_opts, outerOpts, .inner_map_fd = static_cast<__u32>(maglevInner.get()),
                .map_flags = BPF_F_NO_PREALLOC);
    maglev.reset(bpf_map_create(BPF_MAP_TYPE_HASH_OF_MAPS, NP_STR(NP_MAP_MAGLEV), sizeof(np_svc_key), 4, rnMax,
                                &outerOpts));
  }
  static constexpr uint32_t kTableSize = 251;
};

// Passes ops to the real maps; sometimes stops part-way with an error (a kernel refusal at a
// random op), and can claim more capacity than the maps have.
class FaultyMaps final : public LbMaps {
 public:
  FaultyMaps(datapath::BpfLbMaps& real, std::mt19937& rng) : real_(real), rng_(rng) {}
  Applied apply(const std::vector<MapOp>& ops) override {
    ++calls;
    // The call after a failure is the undo: let it through (a failing undo is its own test).
    const bool mayFail = !justFailed_;
    justFailed_ = false;
    if (mayFail && !ops.empty() && std::uniform_int_distribution<int>(0, 99)(rng_) < failPercent) {
      justFailed_ = true;
      const size_t cut = std::uniform_int_distribution<size_t>(0, ops.size() - 1)(rng_);
      std::vector<MapOp> prefix(ops.begin(), ops.begin() + static_cast<std::ptrdiff_t>(cut));
      Applied a = real_.apply(prefix);
      if (!a.error) a.error = Error{EIO, "injected failure", "after " + std::to_string(cut) + " ops"};
      ++injected;
      return a;
    }
    Applied a = real_.apply(ops);
    if (a.error) {
      ++kernelRefusals;
      justFailed_ = true;
    }
    return a;
  }
  Result<lb::LbImage> dump() override { return real_.dump(); }
  Capacity capacity() const override {
    Capacity c = real_.capacity();
    if (overstate) c = {c.services * 4, c.backends * 4, c.revNat * 4};
    return c;
  }

  int failPercent = 0;
  bool overstate = false;
  size_t calls = 0, injected = 0, kernelRefusals = 0;

 private:
  datapath::BpfLbMaps& real_;
  std::mt19937& rng_;
  bool justFailed_ = false;
};

lb::NodeContext node() {
  lb::NodeContext n;
  n.nodeIps = {Ipv4{kNodeIp}};
  // Half of the random backends (10.0.1.1-63) are this node's: traffic policy Local has both.
  n.nodeName = "n1";
  n.localPodCidr = Cidr::parse("10.0.1.0/26");
  n.maglev = true;
  n.maglevTableSize = RealMaps::kTableSize;
  return n;
}

lb::Service randomService(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  lb::Service s;
  s.name = "t/s" + std::to_string(pick(0, 11));
  s.protocol = pick(0, 3) == 0 ? Protocol::Udp : Protocol::Tcp;
  s.port = pick(0, 1) ? 80 : 443;
  s.clusterIp = Ipv4::fromHost(0x0a2b0000u + static_cast<uint32_t>(pick(1, 8)));
  if (pick(0, 3) == 0) s.nodePort = static_cast<uint16_t>(30080 + pick(0, 2));
  if (pick(0, 5) == 0) s.loadBalancerIps = {Ipv4::fromHost(0xc0a81400u + static_cast<uint32_t>(pick(1, 3)))};
  // The policies: affinity (its match entries), eTP=Local (a second scope), iTP=Local.
  if (pick(0, 2) == 0) {
    s.sessionAffinity = lb::SessionAffinity::ClientIp;
    s.affinityTimeoutSec = static_cast<uint32_t>(pick(1, 86400));
  }
  if ((s.nodePort || !s.loadBalancerIps.empty()) && pick(0, 2) == 0) s.externalTrafficPolicy = lb::TrafficPolicy::Local;
  if (pick(0, 3) == 0) s.internalTrafficPolicy = lb::TrafficPolicy::Local;
  const int n = pick(0, 3) == 0 ? pick(20, 60) : pick(0, 8);
  std::set<int> used;
  for (int i = 0; i < n; ++i) {
    int b = pick(1, 80);
    if (!used.insert(b).second) continue;
    s.backends.push_back({Endpoint{Ipv4::fromHost(0x0a000100u + static_cast<uint32_t>(b)), 8080},
                          pick(0, 4) == 0 ? lb::BackendState::Terminating : lb::BackendState::Active});
  }
  return s;
}

void runSequence(uint32_t seed, bool overstate) {
  SCOPED_TRACE("seed " + std::to_string(seed) + (overstate ? " (maps smaller than reported)" : ""));
  std::mt19937 rng(seed);
  RealMaps real(overstate ? 96 : 256, overstate ? 48 : 128, overstate ? 24 : 64);
  auto maps = datapath::BpfLbMaps::of(real.services.get(), real.backends.get(), real.revNat.get(),
                                      real.affinityMatch.get(), real.maglev.get(), RealMaps::kTableSize);
  ASSERT_TRUE(maps) << maps.error().message();
  FaultyMaps faulty(*maps, rng);
  faulty.failPercent = 25;
  faulty.overstate = overstate;
  lb::Reconciler r(faulty, node());
  r.allowPrune();
  size_t applied = 0, refused = 0;
  for (int step = 0; step < 300; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const auto before = r.services();
    lb::Change c;
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
    if (kind < 5) {
      c.upserts.push_back(randomService(rng));
    } else if (kind < 8) {
      for (int i = std::uniform_int_distribution<int>(2, 4)(rng); i > 0; --i) c.upserts.push_back(randomService(rng));
      if (!before.empty() && kind == 7) c.deletes.push_back(before.begin()->first);
    } else if (!before.empty()) {
      auto it = before.begin();
      std::advance(it, std::uniform_int_distribution<size_t>(0, before.size() - 1)(rng));
      c.deletes.push_back(it->first);
    }
    auto p = r.prepare(c);
    Status st = p ? r.commit(*p) : Status(p.error());
    (st ? applied : refused)++;
    if (!st) {
      ASSERT_EQ(r.services(), before) << "a refused change altered the model: " << st.error().message();
    }
    ASSERT_FALSE(r.diverged()) << r.diverged()->message();
    auto img = maps->dump();
    ASSERT_TRUE(img) << img.error().message();
    ASSERT_TRUE(lb::test::mapsMatchModel(*img, r)) << (st ? "after an applied change" : "after " + st.error().message());
    ASSERT_EQ(*img, r.applied()) << "the reconciler's idea of the maps differs from the kernel's";
    if (step % 50 == 49) {
      faulty.failPercent = 0;
      auto rep = r.reconcileAll();
      faulty.failPercent = 25;
      ASSERT_TRUE(rep) << rep.error().message();
      EXPECT_EQ(rep->repaired(), 0u) << "a whole-map reconcile found drift the steps left behind";
    }
  }
  std::printf("seed %u%s: %zu changes applied, %zu refused (%zu injected failures, %zu kernel refusals)\n", seed,
              overstate ? " overstated" : "", applied, refused, faulty.injected, faulty.kernelRefusals);
  EXPECT_GT(applied, 30u);
  EXPECT_GT(faulty.injected, 10u);
  if (overstate) {
    EXPECT_GT(faulty.kernelRefusals, 0u) << "the kernel never refused: the test did not reach that path";
  }
}

TEST(LbInvariant, RandomChangesWithInjectedFailuresKeepMapsEqualToTheModel) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) runSequence(seed, false);
}

TEST(LbInvariant, KernelRefusalsMidBatchAreUndoneOnTheRealMaps) {
  for (uint32_t seed : {11u, 12u, 13u, 14u}) runSequence(seed, true);
}

}  // namespace
}  // namespace np::bpftest
