// The ports a flow of ours can use at the node's address (np_ports4_v1): the agent keeps its
// bitmap through BpfLbMaps (written at start from the maps, the ranges and the ports conntrack
// uses there; then a port's bit before what uses it is written; cleared only at the next start),
// the datapath learns the ports of DSR flows to host-network backends, and host.bpf.c passes a
// packet to or from the node's address on any other port without its conntrack and service
// lookups. Until the agent's bitmap is written ("incomplete"), every packet is looked up.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <optional>

#include "ct/bpf_tables.h"
#include "datapath/lb_maps.h"
#include "flows.h"
#include "host_fixture.h"
#include "lb/reconciler.h"

namespace np::bpftest {
namespace {

// A port of no frontend, backend or SNAT flow (this fixture's SNAT ports are 32768-65535): a
// node's own connection's.
inline constexpr uint16_t kOwnPort = 20000;

class PortsTest : public HostTest {
 protected:
  void SetUp() override {
    HostTest::SetUp();
    if (HasFatalFailure()) return;
    auto ports = bpf::Map<uint32_t, np_ports>::of(mapFd(NP_STR(NP_MAP_PORTS)));
    ASSERT_TRUE(ports) << ports.error().message();
    ports_.emplace(*ports);
    newMaps();
    node_.nodeIps = {Ipv4{kNodeIp}};
    node_.nodeName = "n1";
    node_.localPodCidr = Cidr::parse("10.0.1.0/24");
    reconciler_.emplace(*maps_, node_);
  }
  void TearDown() override {
    reconciler_.reset();
    maps_.reset();
    ports_.reset();
    HostTest::TearDown();
  }

  void newMaps() {
    maps_ = agentLbMaps();
    ASSERT_TRUE(maps_);
  }
  // An agent's start: tracking on (the SNAT range always in), the ports conntrack uses at the
  // node's address seeded, the reconciler's adopt.
  void restart() {
    reconciler_.reset();
    newMaps();
    track();
    auto tables = ct::BpfTables::of(ctMainFd(), ctSynFd(), ctStatFd());
    ASSERT_TRUE(tables) << tables.error().message();
    auto seed = datapath::portsInConntrack(*tables, {Ipv4{kNodeIp}});
    ASSERT_TRUE(seed) << seed.error().message();
    maps_->seedPorts(*seed);
    adopt();
  }
  // Tracking on, as the agent starts it: the SNAT range always in the bitmap.
  void track() {
    auto st = maps_->trackPorts(mapFd(NP_STR(NP_MAP_PORTS)), {PortRange{kSnatMin, kSnatMax}});
    ASSERT_TRUE(st) << st.error().message();
  }
  // The reconciler of a restarted agent adopts what the maps hold.
  void adopt() {
    reconciler_.emplace(*maps_, node_);
    auto r = reconciler_->adopt();
    ASSERT_TRUE(r) << r.error().message();
  }
  np_ports value(uint32_t entry = NP_PORTS_AGENT) const {
    auto v = ports_->lookup(entry);
    EXPECT_TRUE(v) << "no bitmap";
    return v.value_or(np_ports{});
  }
  bool complete() const { return value().complete != 0; }
  bool inMap(uint16_t port) const { return value().bits[port / 64] >> (port % 64) & 1; }
  bool learned(uint16_t port) const { return value(NP_PORTS_LEARNED).bits[port / 64] >> (port % 64) & 1; }
  void setComplete(bool on) {
    np_ports v = value();
    v.complete = on;
    ASSERT_TRUE(ports_->update(0, v));
  }

  // A TCP NodePort service on 30080 (and ClusterIP kClusterIp:80) with one local backend on 8080.
  lb::Service service() const {
    lb::Service s;
    s.name = "default/web";
    s.port = 80;
    s.clusterIp = Ipv4{kClusterIp};
    s.nodePort = kNodePort;
    s.backends = {{Endpoint{Ipv4{kLocalPodA}, kBackendPort}}};
    return s;
  }
  void upsert(const lb::Service& s) {
    auto r = reconciler_->upsert(s);
    ASSERT_TRUE(r) << r.error().message();
  }

  // A flow's entries under a port no frontend uses: as if a flow to a frontend on kOwnPort were
  // open. The entry of a real NodePort flow from kClientPort, moved to (client, kOwnPort).
  void plantFlowOnOwnPort() {
    RunResult syn = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
    ASSERT_NE(syn.verdict, TC_ACT_SHOT);
    auto e = ct(clientKey(kClientPort));
    ASSERT_TRUE(e) << "the SYN made no entry";
    ASSERT_TRUE(ctSynMap().update(clientKey(kClientPort, kClientIp, kOwnPort), *e));
  }

  std::optional<bpf::Map<uint32_t, np_ports>> ports_;
  std::optional<datapath::BpfLbMaps> maps_;
  lb::NodeContext node_;
  std::optional<lb::Reconciler> reconciler_;
};

TEST(PortBitmap, HoldsFrontendBackendAndAlwaysPorts) {
  lb::LbImage img;
  img.services.emplace(lb::svcKey(kClusterIp, htons(80), IPPROTO_TCP, 0), np_svc_val{});
  img.services.emplace(lb::svcKey(kNodeIp, htons(30080), IPPROTO_TCP, 1), np_svc_val{});
  np_backend be{};
  be.addr = kLocalPodA;
  be.port = htons(8080);
  img.backends.emplace(3, be);
  const datapath::PortBitmap b = datapath::portBitmap(img, {PortRange{61000, 61063}, PortRange{}});
  size_t n = 0;
  for (uint32_t p = 0; p < 65536; ++p) n += datapath::hasPort(b, static_cast<uint16_t>(p));
  EXPECT_EQ(n, 3u + 64u);
  for (uint16_t p : {80, 30080, 8080, 61000, 61063}) EXPECT_TRUE(datapath::hasPort(b, p)) << p;
  for (uint16_t p : {0, 81, 60999, 61064, 65535}) EXPECT_FALSE(datapath::hasPort(b, p)) << p;
}

// A restarted agent cannot trust the bitmap it finds (an agent without it may have written
// services since): incomplete from trackPorts() on, so a flow on any port is still looked up; the
// first dump writes it from what the maps hold, SNAT range included.
TEST_F(PortsTest, IncompleteUntilWrittenFromTheMaps) {
  upsert(service());  // written before tracking: nothing in the bitmap
  setComplete(true);  // as a previous agent left it
  track();
  EXPECT_FALSE(complete());
  for (uint16_t p : {kOwnPort, kNodePort, uint16_t{1}}) EXPECT_TRUE(inMap(p)) << "incomplete but not all bits: " << p;
  plantFlowOnOwnPort();
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpAck, kClientIp, kOwnPort).build());
  EXPECT_EQ(np::test::parse(r.out).ip->daddr, kLocalPodA) << "an incomplete bitmap skipped a flow's lookup";

  adopt();
  EXPECT_TRUE(complete());
  for (uint16_t p : {kNodePort, uint16_t{80}, kBackendPort, kSnatMin, kSnatMax}) EXPECT_TRUE(inMap(p)) << p;
  EXPECT_FALSE(inMap(kOwnPort));
}

// Once complete: a packet to the node's address on a port no flow of ours uses passes untouched,
// without a look at conntrack (the entry under its tuple is not used, not even refreshed); the
// same entry is used while the bitmap is incomplete. Other destinations are always looked up.
TEST_F(PortsTest, PacketToTheNodeOnAnUnusedPortIsNotLookedUp) {
  track();
  adopt();
  upsert(service());
  plantFlowOnOwnPort();
  const Bytes ack = clientTcp(kClientPort, kTcpAck, kClientIp, kOwnPort).build();
  const auto before = ct(clientKey(kClientPort, kClientIp, kOwnPort));
  ASSERT_TRUE(before);

  RunResult r = fromNetdev(ack);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(ack, r.out));
  auto after = ct(clientKey(kClientPort, kClientIp, kOwnPort));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->packets, before->packets) << "the entry was looked up";

  setComplete(false);
  r = fromNetdev(ack);
  EXPECT_EQ(np::test::parse(r.out).ip->daddr, kLocalPodA) << "the planted entry does not translate: the test proves nothing";
  setComplete(true);

  // The NodePort's own flows are looked up as ever.
  r = fromNetdev(clientTcp(kClientPort + 1, kTcpSyn).build());
  EXPECT_EQ(np::test::parse(r.out).ip->daddr, kLocalPodA);
}

// Egress: a packet from the node's address on an unused port (a connection of the node's own)
// is not looked up; one from a frontend's or backend's port is.
TEST_F(PortsTest, PacketFromTheNodeOnAnUnusedPortIsNotLookedUp) {
  track();
  adopt();
  upsert(service());
  // An egress entry as a host-network backend's reply would have, under the node's own port.
  RunResult syn = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_NE(syn.verdict, TC_ACT_SHOT);
  auto rev = ct(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(rev) << "the SYN made no reply entry";
  const np_ct_key own = ctKey(kNodeIp, kOwnPort, kClientIp, kClientPort, IPPROTO_TCP, NP_CT_EGRESS);
  const np_ct_key backendPort = ctKey(kNodeIp, kBackendPort, kClientIp, kClientPort, IPPROTO_TCP, NP_CT_EGRESS);
  ASSERT_TRUE(ctSynMap().update(own, *rev));
  ASSERT_TRUE(ctSynMap().update(backendPort, *rev));

  PacketBuilder b;
  b.eth(kEns192Mac, kClientMac).ipv4(kNodeIp, kClientIp).ipId(0x4321).dontFragment()
      .tcp(kOwnPort, kClientPort, kTcpAck).seq(5000).ackSeq(1001).window(65160).payload("x");
  const Bytes fromOwn = b.build();
  RunResult r = toNetdev(fromOwn);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(fromOwn, r.out));
  setComplete(false);
  r = toNetdev(fromOwn);
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kNodePort) << "the planted entry does not translate: the test proves nothing";
  setComplete(true);

  PacketBuilder h;
  h.eth(kEns192Mac, kClientMac).ipv4(kNodeIp, kClientIp).ipId(0x4321).dontFragment()
      .tcp(kBackendPort, kClientPort, kTcpAck).seq(5000).ackSeq(1001).window(65160).payload("x");
  r = toNetdev(h.build());
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kNodePort) << "a backend port's packet was not looked up";
}

// Writes set the bits of the ports they use before the entries exist; a deleted service's ports
// keep their bits (its flows may live on) until the next start writes the bitmap again.
TEST_F(PortsTest, WritesSetBitsThatOnlyTheNextStartClears) {
  track();
  adopt();
  EXPECT_FALSE(inMap(kNodePort));
  upsert(service());
  for (uint16_t p : {kNodePort, uint16_t{80}, kBackendPort}) EXPECT_TRUE(inMap(p)) << p;
  auto st = reconciler_->remove("default/web");
  ASSERT_TRUE(st) << st.error().message();
  auto rep = reconciler_->reconcileAll();
  ASSERT_TRUE(rep) << rep.error().message();
  EXPECT_TRUE(inMap(kNodePort)) << "cleared while the agent runs";
  restart();
  for (uint16_t p : {kNodePort, uint16_t{80}, kBackendPort}) EXPECT_FALSE(inMap(p)) << p;
  EXPECT_TRUE(inMap(kSnatMin));
  EXPECT_TRUE(complete());
}

// A flow conntrack holds at the node's address on a port nothing else uses (a deleted service's,
// a SNAT or masquerade range's since changed) keeps its port across a restart, and its packets
// are still translated.
TEST_F(PortsTest, ConntrackPortsSurviveARestart) {
  upsert(service());
  plantFlowOnOwnPort();  // kOwnPort: in conntrack only
  restart();
  EXPECT_TRUE(complete());
  EXPECT_TRUE(inMap(kOwnPort)) << "the planted flow's port was not seeded from conntrack";
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpAck, kClientIp, kOwnPort).build());
  EXPECT_EQ(np::test::parse(r.out).ip->daddr, kLocalPodA) << "the flow lost its translation";
}

// dsr: another node sends this one a flow for a host-network backend here (the node's address, a
// port this node's maps do not have): the SYN with the option is looked up (IP options) and its
// flow recorded, the port learned, so the client's next segments and the backend's replies are
// looked up and translated too.
class PortsDsrTest : public PortsTest {
 public:
  PortsDsrTest() { setLbMode(LbMode::Dsr); }
};

TEST_F(PortsDsrTest, FlowToAHostNetworkBackendIsLearnedFromTheOption) {
  constexpr uint16_t kHostBackendPort = 9090;  // in no map of this node
  const Bytes opt = {0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x65};  // 192.168.10.101:30080
  track();
  adopt();
  ASSERT_FALSE(inMap(kHostBackendPort));
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.eth(kNode2Mac, kEns192Mac).dstPort(kHostBackendPort).ttl(63).ipOptions(opt);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(ct(ctKey(kClientIp, kClientPort, kNodeIp, kHostBackendPort, IPPROTO_TCP, NP_CT_INGRESS)))
      << "the SYN with the option recorded no flow";
  EXPECT_TRUE(learned(kHostBackendPort));

  PacketBuilder synAck;
  synAck.eth(kEns192Mac, kClientMac).ipv4(kNodeIp, kClientIp).ipId(0x4321).dontFragment()
      .tcp(kHostBackendPort, kClientPort, kTcpSyn | kTcpAck).seq(5000).ackSeq(1001).window(65160);
  r = toNetdev(synAck.build());
  EXPECT_EQ(np::test::parse(r.out).ip->saddr, kNode2Ip) << "the backend's reply left with its own address";
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kNodePort);

  PacketBuilder ack = clientTcp(kClientPort, kTcpAck);
  ack.eth(kNode2Mac, kEns192Mac).dstPort(kHostBackendPort).ttl(63);
  const auto before = ct(ctKey(kClientIp, kClientPort, kNodeIp, kHostBackendPort, IPPROTO_TCP, NP_CT_INGRESS));
  ASSERT_TRUE(before);
  fromNetdev(ack.build());
  const auto after = ct(ctKey(kClientIp, kClientPort, kNodeIp, kHostBackendPort, IPPROTO_TCP, NP_CT_INGRESS));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->packets, before->packets + 1) << "the client's next segment was not looked up";
}

}  // namespace
}  // namespace np::bpftest
