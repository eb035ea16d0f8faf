// The backend IDs the backend map holds (np_belive4_v1, np_lb.h): a packet of an established flow
// whose backend's bit is set skips the backend's hash lookup; a clear bit sends it to the lookup.
// So a set bit must always mean "the map holds it": the agent (BpfLbMaps) sets a bit after it
// wrote the backend, clears it before it deletes the backend, and rewrites the bitmap from the
// map at its start.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <optional>

#include "datapath/lb_maps.h"
#include "flows.h"
#include "host_fixture.h"
#include "lb/reconciler.h"

namespace np::bpftest {
namespace {

class BackendLiveTest : public HostTest {
 protected:
  void SetUp() override {
    HostTest::SetUp();
    if (HasFatalFailure()) return;
    auto live = bpf::Map<uint32_t, uint64_t>::of(mapFd(NP_STR(NP_MAP_BACKEND_LIVE)));
    ASSERT_TRUE(live) << live.error().message();
    live_.emplace(*live);
    node_.nodeIps = {Ipv4{kNodeIp}};
    node_.nodeName = "n1";
    node_.localPodCidr = Cidr::parse("10.0.1.0/24");
  }
  void TearDown() override {
    reconciler_.reset();
    maps_.reset();
    live_.reset();
    HostTest::TearDown();
  }

  // An agent's start: its maps, the bitmap tracked (before the programs attach), the
  // reconciler's adopt.
  void start() {
    track();
    if (HasFatalFailure()) return;
    reconciler_.emplace(*maps_, node_);
    auto r = reconciler_->adopt();
    ASSERT_TRUE(r) << r.error().message();
  }
  void track() {
    reconciler_.reset();
    maps_ = agentLbMaps();
    ASSERT_TRUE(maps_);
    auto st = maps_->trackLiveBackends(mapFd(NP_STR(NP_MAP_BACKEND_LIVE)));
    ASSERT_TRUE(st) << st.error().message();
  }
  void upsert(const lb::Service& s) {
    auto r = reconciler_->upsert(s);
    ASSERT_TRUE(r) << r.error().message();
  }
  lb::Service service(const std::vector<uint32_t>& pods) const { return webService(pods); }

  bool bit(uint32_t id) const {
    auto w = live_->lookup(id / 64);
    return w && (*w >> (id % 64)) & 1;
  }
  void setBit(uint32_t id, bool on) {
    uint64_t w = live_->lookup(id / 64).value_or(0);
    w = on ? w | uint64_t{1} << (id % 64) : w & ~(uint64_t{1} << (id % 64));
    ASSERT_TRUE(live_->update(id / 64, w));
  }
  // Every ID whose bit is set.
  std::vector<uint32_t> bits() const {
    auto all = live_->dump();
    std::vector<uint32_t> ids;
    if (!all) {
      ADD_FAILURE() << all.error().message();
      return ids;
    }
    for (const auto& [k, v] : *all)
      for (uint32_t b = 0; b < 64; ++b)
        if (v >> b & 1) ids.push_back(k * 64 + b);
    std::sort(ids.begin(), ids.end());
    return ids;
  }
  // Backends 1 (n1's pod A) and 2 (pod B) with their bits set, the NodePort on 1 alone.
  void backendsAB() {
    addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
    addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
    setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
    setBit(1, true);
    setBit(2, true);
  }
  // `in` went through tc ingress to the pod at `pod`, DNAT'd and otherwise untouched.
  ::testing::AssertionResult wentTo(const PacketBuilder& in, uint32_t pod) {
    RunResult r = fromNetdev(in.build());
    if (r.verdict != TC_ACT_OK) return ::testing::AssertionFailure() << "verdict " << r.verdict;
    PacketBuilder want = in;
    want.ipDst(pod).dstPort(kBackendPort);
    return samePacket(want.build(), r.out);
  }
  std::vector<uint32_t> backendIds() const {
    auto m = bpf::Map<uint32_t, np_backend>::of(mapFd(NP_STR(NP_MAP_BACKENDS)));
    EXPECT_TRUE(m);
    std::vector<uint32_t> ids;
    if (!m) return ids;
    auto all = m->dump();
    if (!all) {
      ADD_FAILURE() << all.error().message();
      return ids;
    }
    for (const auto& [k, v] : *all) ids.push_back(k);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  std::optional<bpf::Map<uint32_t, uint64_t>> live_;
  std::optional<datapath::BpfLbMaps> maps_;
  lb::NodeContext node_;
  std::optional<lb::Reconciler> reconciler_;
};

// The agent's bitmap is the backend map's IDs after every change, and a start rewrites what it
// finds: a bit of a backend the map no longer holds (left by an agent without the bitmap, a crash
// or another tool) goes, at once.
TEST_F(BackendLiveTest, TheAgentKeepsTheBitsOfWhatTheMapHolds) {
  start();
  EXPECT_TRUE(bits().empty());
  upsert(service({kLocalPodA, kLocalPodB}));
  ASSERT_EQ(backendIds().size(), 2u);
  EXPECT_EQ(bits(), backendIds()) << "a written backend has its bit";

  upsert(service({kLocalPodB}));
  ASSERT_EQ(backendIds().size(), 1u);
  EXPECT_EQ(bits(), backendIds()) << "a deleted backend's bit goes with it";

  // A stale bit of an ID the map does not hold, and one of a live backend cleared: the next
  // start writes the bitmap from the map.
  const uint32_t live = backendIds().front();
  setBit(4242, true);
  setBit(live, false);
  // Tracking clears it first (an agent without the bitmap may have deleted backends since): until
  // the adopt writes it, every flow's backend is looked up.
  track();
  EXPECT_TRUE(bits().empty());
  start();
  EXPECT_EQ(bits(), std::vector<uint32_t>{live});
  EXPECT_FALSE(bit(4242));

  // The restarted agent's model comes back (the same backend keeps its ID), then goes.
  upsert(service({kLocalPodB}));
  EXPECT_EQ(backendIds(), std::vector<uint32_t>{live});
  EXPECT_EQ(bits(), std::vector<uint32_t>{live});
  auto removed = reconciler_->remove("default/web");
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_TRUE(backendIds().empty());
  EXPECT_TRUE(bits().empty());
}

// The programs rely on the bit: with it set, an established flow's packet is translated without
// its backend being looked up; with it clear, the lookup decides (here: the backend is gone, the
// flow moves). A SYN still looks its backend up (a terminating one gets no new connection).
TEST_F(BackendLiveTest, AnEstablishedFlowTrustsASetBitAndLooksUpAClearOne) {
  backendsAB();
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_TRUE(ctMain(clientKey(kClientPort))) << "the handshake confirms the flow";
  ASSERT_EQ(ct(clientKey(kClientPort))->backend_id, 1u);

  // Backend 1 leaves the map behind the bitmap's back: the set bit is trusted.
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2});
  removeBackend(1);
  const PacketBuilder ack = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  EXPECT_TRUE(wentTo(ack, kLocalPodA)) << "with its bit set the backend is not looked up";

  // Its bit cleared (the agent's order: before the delete): looked up, gone, the flow moves.
  setBit(1, false);
  EXPECT_TRUE(wentTo(ack, kLocalPodB)) << "with its bit clear the deleted backend is looked up and missed";
  ASSERT_TRUE(ct(clientKey(kClientPort)));
  EXPECT_EQ(ct(clientKey(kClientPort))->backend_id, 2u);
}

// A SYN on an entry whose backend terminates (a client reusing its port) leaves it though its
// bit is set: the SYN reads the backend's state.
TEST_F(BackendLiveTest, ASynStillReadsItsBackendsState) {
  backendsAB();
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(ct(clientKey(kClientPort))->backend_id, 1u);

  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP, NP_BACKEND_TERMINATING);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2}, {1});
  EXPECT_TRUE(wentTo(clientTcp(kClientPort, kTcpSyn), kLocalPodB)) << "a SYN must not stay on a terminating backend";
}

}  // namespace
}  // namespace np::bpftest
