// Load-balancing policy in host.bpf.c (tc on ens192), with the services written by the agent's own
// reconciler into the program's maps: session affinity (same client, same backend; an expired
// affinity or a backend gone from the service picks again), externalTrafficPolicy=Local (local
// backends only, client address kept, a counted drop when there is none) and Maglev (the table
// entry at the flow's hash; a flow that lost its conntrack entry returns to its backend).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "datapath/lb_maps.h"
#include "flows.h"
#include "host_fixture.h"
#include "lb/reconciler.h"

namespace np::bpftest {
namespace {

inline constexpr uint32_t kTimeout = 600;

uint64_t nowSec() { return monotonicNs() / kSec; }

// Programs services the way the agent does, through BpfLbMaps over the test program's maps.
class LbPolicyTest : public HostTest {
 protected:
  void SetUp() override {
    HostTest::SetUp();
    if (HasFatalFailure()) return;
    maps_ = agentLbMaps();
    ASSERT_TRUE(maps_);
    lb::NodeContext node;
    node.nodeIps = {Ipv4{kNodeIp}};
    node.nodeName = "n1";
    node.localPodCidr = Cidr::parse("10.0.1.0/24");  // kLocalPodA/B; 10.0.2.0/24 is node 2's
    node.maglev = lbParams().maglev;
    node.maglevTableSize = lbParams().maglevTableSize;
    reconciler_.emplace(*maps_, node);
    auto aff = bpf::Map<np_affinity_key, np_affinity_val>::of(mapFd(NP_STR(NP_MAP_AFFINITY)));
    ASSERT_TRUE(aff) << aff.error().message();
    affinity_.emplace(*aff);
  }
  void TearDown() override {
    affinity_.reset();
    reconciler_.reset();
    maps_.reset();
    HostTest::TearDown();
  }

  // A TCP NodePort service on 30080 (and its ClusterIP) with these backends (port 8080).
  lb::Service service(const std::vector<uint32_t>& backends) const { return webService(backends); }
  void upsert(const lb::Service& s) {
    auto r = reconciler_->upsert(s);
    ASSERT_TRUE(r) << r.error().message();
  }
  uint16_t revNatOf(const Frontend& f) {
    auto v = maps_->services().lookup(lb::svcKey(f.addr, htons(f.port), f.proto, 0));
    EXPECT_TRUE(v) << "no service entry";
    return v ? v->rev_nat_id : 0;
  }
  uint32_t backendIdOf(uint32_t addr) {
    auto all = maps_->backends().dump();
    EXPECT_TRUE(all) << all.error().message();
    for (const auto& [id, be] : *all)
      if (be.addr == addr) return id;
    ADD_FAILURE() << "no backend " << Ipv4{addr}.str();
    return 0;
  }
  // The backend a new flow from client:sport was sent to (its DNAT'd destination), or 0 when
  // the packet was not forwarded.
  uint32_t newFlow(uint16_t sport, uint32_t client = kClientIp) {
    RunResult r = fromNetdev(clientTcp(sport, kTcpSyn, client).build());
    if (r.verdict != TC_ACT_OK && r.verdict != TC_ACT_REDIRECT) return 0;
    return np::test::parse(r.out).ip->daddr;
  }
  np_affinity_key affinityKey(uint32_t client, uint16_t revNat) const {
    np_affinity_key k{};
    k.client = client;
    k.rev_nat_id = revNat;
    k.kind = NP_AFFINITY_CLIENT_ADDR;
    k.scope = NP_LB_SCOPE_EXT;
    return k;
  }
  void setAffinity(uint32_t client, uint16_t revNat, uint32_t backendId, uint64_t lastUsed) {
    np_affinity_val v{};
    v.backend_id = backendId;
    v.last_used = lastUsed;
    auto st = affinity_->update(affinityKey(client, revNat), v);
    ASSERT_TRUE(st) << st.error().message();
  }
  void forgetFlows() {
    for (auto* m : {&ctMainMap(), &ctSynMap()})
      for (const auto& [k, e] : dumpAll(*m)) ASSERT_TRUE(m->remove(k));
  }
  static std::vector<std::pair<np_ct_key, np_ct_entry>> dumpAll(const bpf::Map<np_ct_key, np_ct_entry>& m) {
    auto all = m.dump();
    EXPECT_TRUE(all) << all.error().message();
    return all ? *all : std::vector<std::pair<np_ct_key, np_ct_entry>>{};
  }

  std::optional<datapath::BpfLbMaps> maps_;
  std::optional<lb::Reconciler> reconciler_;
  std::optional<bpf::Map<np_affinity_key, np_affinity_val>> affinity_;
};

class Affinity : public LbPolicyTest {};

lb::Service withAffinity(lb::Service s) {
  s.sessionAffinity = lb::SessionAffinity::ClientIp;
  s.affinityTimeoutSec = kTimeout;
  return s;
}

// Every new connection of a client goes to the backend its first one went to; the affinity
// entry says which and when.
TEST_F(Affinity, SameClientKeepsItsBackendAcrossConnections) {
  upsert(withAffinity(service({kLocalPodA, kLocalPodB})));
  const uint64_t before = nowSec();
  const uint32_t first = newFlow(41000);
  ASSERT_TRUE(first == kLocalPodA || first == kLocalPodB) << Ipv4{first}.str();
  for (uint16_t port = 41001; port < 41040; ++port) ASSERT_EQ(newFlow(port), first) << "client port " << port;

  auto v = affinity_->lookup(affinityKey(kClientIp, revNatOf(kTcpNodePort)));
  ASSERT_TRUE(v) << "no affinity entry for the client";
  EXPECT_EQ(v->backend_id, backendIdOf(first));
  EXPECT_GE(v->last_used, before);
  EXPECT_LE(v->last_used, nowSec());

  // Another client has an affinity of its own and keeps it too.
  const uint32_t second = newFlow(41000, kClient2Ip);
  ASSERT_NE(second, 0u);
  for (uint16_t port = 41001; port < 41020; ++port) ASSERT_EQ(newFlow(port, kClient2Ip), second);
  EXPECT_TRUE(affinity_->lookup(affinityKey(kClient2Ip, revNatOf(kTcpNodePort))));

  // Without affinity the same 40 connections spread (P(all on one of two) = 2^-39).
  upsert(service({kLocalPodA, kLocalPodB}));
  std::set<uint32_t> seen;
  for (uint16_t port = 42000; port < 42040; ++port) seen.insert(newFlow(port));
  EXPECT_EQ(seen.size(), 2u);
}

// An affinity entry is used while it is younger than the timeout; an expired one is forgotten
// and the client picks again (20 tries: an expired entry that still held would send every one to
// kLocalPodB; a fresh pick does not, but with probability 2^-20).
TEST_F(Affinity, ExpiredAffinityPicksAgain) {
  upsert(withAffinity(service({kLocalPodA, kLocalPodB})));
  const uint16_t rn = revNatOf(kTcpNodePort);
  const uint32_t b = backendIdOf(kLocalPodB);
  uint16_t port = 43000;
  for (int i = 0; i < 20; ++i) {
    setAffinity(kClientIp, rn, b, nowSec() - kTimeout + 5);  // 5 s left
    ASSERT_EQ(newFlow(port++), kLocalPodB) << "a valid affinity entry decides";
  }
  std::map<uint32_t, int> picks;
  for (int i = 0; i < 20; ++i) {
    setAffinity(kClientIp, rn, b, nowSec() - kTimeout - 1);  // expired a second ago
    const uint32_t got = newFlow(port++);
    picks[got]++;
    auto v = affinity_->lookup(affinityKey(kClientIp, rn));
    ASSERT_TRUE(v) << "the new choice is remembered";
    EXPECT_EQ(v->backend_id, backendIdOf(got));
    EXPECT_GE(v->last_used + 1, nowSec()) << "with the time of this connection";
  }
  EXPECT_GT(picks[kLocalPodA], 0) << "every expired entry was still used";
}

// A backend removed from the service is no affinity target any more, even while another service
// keeps its backend entry alive; clients affine to it pick among the remaining ones.
TEST_F(Affinity, BackendRemovedFromTheServiceIsForgotten) {
  upsert(withAffinity(service({kLocalPodA, kLocalPodB})));
  lb::Service other;
  other.name = "default/other";
  other.port = 80;
  other.clusterIp = Ipv4{ip("10.43.0.51")};
  other.backends = {{Endpoint{Ipv4{kLocalPodA}, kBackendPort}}, {Endpoint{Ipv4{kLocalPodB}, kBackendPort}}};
  upsert(other);  // shares both backend entries
  const uint32_t first = newFlow(44000);
  ASSERT_NE(first, 0u);
  const uint32_t remaining = first == kLocalPodA ? kLocalPodB : kLocalPodA;

  upsert(withAffinity(service({remaining})));
  ASSERT_TRUE(maps_->backends().lookup(backendIdOf(first))) << "the backend entry lives on (default/other)";
  for (uint16_t port = 44001; port < 44011; ++port) ASSERT_EQ(newFlow(port), remaining) << "client port " << port;
  auto v = affinity_->lookup(affinityKey(kClientIp, revNatOf(kTcpNodePort)));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->backend_id, backendIdOf(remaining));

  // The backend comes back: the client stays where it is now.
  upsert(withAffinity(service({kLocalPodA, kLocalPodB})));
  for (uint16_t port = 44011; port < 44021; ++port) ASSERT_EQ(newFlow(port), remaining);
}

// A terminating backend takes no new clients through affinity either.
TEST_F(Affinity, TerminatingBackendTakesNoNewConnections) {
  upsert(withAffinity(service({kLocalPodA, kLocalPodB})));
  const uint32_t first = newFlow(45000);
  ASSERT_NE(first, 0u);
  lb::Service s = withAffinity(service({kLocalPodA, kLocalPodB}));
  for (auto& b : s.backends)
    if (b.addr.ip.be == first) b.state = lb::BackendState::Terminating;
  upsert(s);
  const uint32_t other = first == kLocalPodA ? kLocalPodB : kLocalPodA;
  for (uint16_t port = 45001; port < 45011; ++port) ASSERT_EQ(newFlow(port), other);
}

class ExternalTrafficPolicy : public LbPolicyTest {};

lb::Service localOnly(lb::Service s) {
  s.externalTrafficPolicy = lb::TrafficPolicy::Local;
  return s;
}

// From outside, an eTP=Local NodePort reaches the node's own backends only, with the client's
// address kept (no SNAT), byte for byte the DNAT of a local flow.
TEST_F(ExternalTrafficPolicy, NodePortPicksOnlyLocalBackendsAndKeepsTheClientAddress) {
  upsert(localOnly(service({kLocalPodA, kRemotePodA, kRemotePodB})));
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = syn;
  want.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  auto fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_FALSE(fwd->flags & NP_CT_F_SNAT);
  EXPECT_EQ(fwd->nat_saddr, 0u) << "the client address is kept";
  for (uint16_t port = 40001; port < 40031; ++port) ASSERT_EQ(newFlow(port), kLocalPodA) << "client port " << port;

  // The same service with externalTrafficPolicy=Cluster spreads over node 2's pods too.
  upsert(service({kLocalPodA, kRemotePodA, kRemotePodB}));
  std::set<uint32_t> seen;
  for (uint16_t port = 46000; port < 46040; ++port) seen.insert(newFlow(port));
  EXPECT_EQ(seen.size(), 3u);
}

// No backend on this node: the NodePort drops the client's packet, counted as
// SERVICE_BACKEND_NOT_FOUND (Cilium's DROP_NO_SERVICE), and creates no state.
TEST_F(ExternalTrafficPolicy, NoLocalBackendDropsWithItsReason) {
  upsert(localOnly(service({kRemotePodA, kRemotePodB})));
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_NO_SERVICE_BACKEND).packets, 1u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_EQ(ctCount(), 0u);
  // The in-cluster view (the socket LB's INT entry) still has both.
  auto in = maps_->services().lookup(lb::svcKey(kNodeIp, htons(kNodePort), IPPROTO_TCP, 0, NP_LB_SCOPE_INT));
  ASSERT_TRUE(in);
  EXPECT_EQ(in->count, 2);
}

// What xdp.bpf.o's entry gave back (metadata removed).
class MaglevSelection : public LbPolicyTest {
 public:
  datapath::LbParams lbParams() const override { return {true, 251}; }
};

// The hash lib/lb.h computes (np_lb_flow_hash): murmur3's finalizer over protocol, ports and
// source address, destination left out.
uint32_t mix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
uint32_t flowHash(uint32_t saddrBe, uint16_t sport, uint16_t dport, uint8_t proto) {
  uint32_t h = mix(0x4e504c42u ^ proto);
  h = mix(h ^ ((uint32_t{sport} << 16) | dport));
  return mix(h ^ ntohl(saddrBe));
}

std::vector<uint32_t> remotePods(int n) {
  std::vector<uint32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(htonl(ntohl(kRemotePodA) + static_cast<uint32_t>(i)));
  return out;
}

// A new flow goes to the backend the frontend's table names at hash % table size.
TEST_F(MaglevSelection, NewFlowTakesTheTableEntryAtItsHash) {
  upsert(service(remotePods(10)));
  auto img = maps_->dump();
  ASSERT_TRUE(img) << img.error().message();
  const auto master = lb::svcKey(kNodeIp, htons(kNodePort), IPPROTO_TCP, 0);
  ASSERT_TRUE(img->maglev.contains(master)) << "no Maglev table for the NodePort";
  const auto& table = *img->maglev.at(master).ids;
  ASSERT_EQ(table.size(), 251u);
  std::set<uint32_t> seen;
  for (uint16_t port = 47000; port < 47060; ++port) {
    const uint32_t want = img->backends.at(table[flowHash(kClientIp, port, kNodePort, IPPROTO_TCP) % 251]).addr;
    const uint32_t got = newFlow(port);
    ASSERT_EQ(Ipv4{got}.str(), Ipv4{want}.str()) << "client port " << port;
    seen.insert(got);
  }
  EXPECT_GE(seen.size(), 8u) << "60 flows over 10 backends";
}

// A flow whose conntrack entries are gone (evicted, another node) returns to the same backend:
// the choice is a function of the flow, not a draw.
TEST_F(MaglevSelection, FlowWithoutConntrackReturnsToItsBackend) {
  upsert(service(remotePods(10)));
  std::map<uint16_t, uint32_t> first;
  for (uint16_t port = 48000; port < 48030; ++port) first[port] = newFlow(port);
  forgetFlows();
  ASSERT_EQ(ctCount(), 0u);
  for (uint16_t port = 48000; port < 48030; ++port) ASSERT_EQ(newFlow(port), first[port]) << "client port " << port;

  // Removing one backend moves its flows only.
  const uint32_t gone = first[48000];
  std::vector<uint32_t> rest;
  for (uint32_t b : remotePods(10))
    if (b != gone) rest.push_back(b);
  upsert(service(rest));
  forgetFlows();
  size_t moved = 0;
  for (uint16_t port = 48000; port < 48030; ++port) {
    const uint32_t now = newFlow(port);
    ASSERT_NE(now, gone);
    if (first[port] != gone) moved += now != first[port];
  }
  EXPECT_LE(moved, 2u) << "flows of the remaining backends stay (Maglev moves ~1/N)";
}

// XDP runs the same new-flow code: with Maglev (and affinity) in its .rodata the verifier takes
// those paths too, and must accept them.
TEST_F(MaglevSelection, XdpProgramLoadsWithMaglevSelection) {
  datapath::HostParams p;
  p.device = "ens192";
  p.ifindex = env().ens192Ifindex;
  p.nodeIp = Ipv4{kNodeIp};
  p.lb = lbParams();
  auto prog = datapath::XdpProgram::load(pinDir(), mapSizes(), p);
  ASSERT_TRUE(prog.ok()) << prog.error().message() << " (the verifier's log is above)";
}

// ---------------------------------------------------------------------------------------------
// A connection that moves to this node mid-stream (L2 failover, ECMP rehash): with DSR and Maglev
// its segments reach the backend its SYN went to, and leave nothing behind (lib/nodeport.h,
// np_nodeport_carries_midstream).

class MaglevDsr : public MaglevSelection {
 public:
  MaglevDsr() { setLbMode(LbMode::Dsr); }

 protected:
  // How a client segment leaves for a pod on node 2 by DSR after the SYN: DNAT only, the client's
  // address kept, TTL down, no option.
  static Bytes dsrForwarded(PacketBuilder b, uint32_t pod) {
    b.eth(kEns192Mac, kNode2Mac).ipDst(pod).dstPort(kBackendPort).ttl(63);
    return b.build();
  }
  // The same segment through xdp.bpf.o on this test's maps (loaded as the agent loads it).
  XdpRun xdpRun(const Bytes& in) {
    if (!xdp_) {
      datapath::HostParams p;
      p.device = "ens192";
      p.ifindex = env().ens192Ifindex;
      p.nodeIp = Ipv4{kNodeIp};
      p.lb = lbParams();
      p.lbMode = lbMode();
      auto prog = datapath::XdpProgram::load(pinDir(), mapSizes(), p);
      if (!prog.ok()) {
        ADD_FAILURE() << prog.error().message() << " (the verifier's log is above)";
        return {};
      }
      xdp_ = std::move(prog.value());
    }
    return runXdp(xdp_->entryFd(), in, env().ens192Ifindex);
  }
  void TearDown() override {
    xdp_.reset();
    MaglevSelection::TearDown();
  }

  std::unique_ptr<datapath::XdpProgram> xdp_;
};

// Node B never saw the SYN (it went through node A, whose conntrack is not here): the client's
// next segments, whatever their flags without SYN, go DSR-forwarded to the backend the SYN went
// to, byte-exact, with no option; no conntrack entry, no affinity is created, and nothing is
// counted as dropped.
TEST_F(MaglevDsr, MidStreamSegmentGoesToTheSynsBackendAndCreatesNothing) {
  upsert(service(remotePods(10)));
  std::map<uint16_t, uint32_t> synBackend;
  for (uint16_t port = 49000; port < 49020; ++port) {
    synBackend[port] = newFlow(port);
    ASSERT_NE(synBackend[port], 0u) << "the SYN was not forwarded, client port " << port;
  }
  forgetFlows();
  const uint64_t createdBefore = ctStat(NP_CT_TABLE_EMBRYONIC).created + ctStat(NP_CT_TABLE_MAIN).created;
  const uint64_t fwdBefore = metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets;
  uint64_t sent = 0;
  for (uint16_t port = 49000; port < 49020; ++port) {
    for (uint8_t flags : {kTcpAck, uint8_t(kTcpAck | kTcpPsh), uint8_t(kTcpFin | kTcpAck), kTcpRst}) {
      SCOPED_TRACE("client port " + std::to_string(port) + ", flags " + std::to_string(flags));
      const PacketBuilder seg = clientTcp(port, flags);
      RunResult r = fromNetdev(seg.build());
      ++sent;
      ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
      EXPECT_TRUE(samePacket(dsrForwarded(seg, synBackend[port]), r.out));
      EXPECT_TRUE(checksumsOk(r.out));
    }
  }
  EXPECT_EQ(ctCount(), 0u) << "a mid-stream segment left conntrack state";
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).created + ctStat(NP_CT_TABLE_MAIN).created, createdBefore);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets - fwdBefore, sent);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE).packets, 0u);

  // The SYN still opens the flow as before (one DSR entry), and the flow is then carried by it.
  const PacketBuilder syn = clientTcp(49000, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(np::test::parse(r.out).ip->daddr, synBackend[49000]);
  EXPECT_EQ(ctSynCount(), 1u);

  // A SYN-ACK from a client is part of no connection of its: still not carried.
  r = fromNetdev(clientTcp(49001, kTcpSyn | kTcpAck).build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE).packets, 1u);
}

// XDP runs the same code: the mid-stream segment leaves by XDP_TX with tc's bytes, and XDP
// creates nothing either.
TEST_F(MaglevDsr, XdpForwardsMidStreamSegmentAsTcDoes) {
  upsert(service(remotePods(10)));
  const PacketBuilder seg = clientTcp(49100, kTcpAck | kTcpPsh);
  RunResult t = fromNetdev(seg.build());
  ASSERT_EQ(t.verdict, TC_ACT_REDIRECT);
  XdpRun x = xdpRun(seg.build());
  if (!datapath::kernelHasXdpMetadata()) {
    // No XDP -> tc hand-off on this kernel (lib/xfer.h): what has no flow is tc's, untouched,
    // and tc carries it as above.
    EXPECT_EQ(x.verdict, XDP_PASS);
    EXPECT_TRUE(samePacket(seg.build(), x.out)) << "left to tc after a change";
    EXPECT_EQ(ctCount(), 0u);
    return;
  }
  EXPECT_EQ(x.verdict, XDP_TX);
  EXPECT_TRUE(samePacket(t.out, x.out)) << "XDP and tc differ (expected: tc, actual: XDP)";
  const uint32_t be = newFlow(49100);
  EXPECT_EQ(np::test::parse(x.out).ip->daddr, be) << "not the backend the SYN picks";
  forgetFlows();
  x = xdpRun(seg.build());
  EXPECT_EQ(x.verdict, XDP_TX);
  EXPECT_EQ(ctCount(), 0u);
}

// The backend the flow hashes to may be on this node (node B is the backend's node): DNAT to it,
// to the stack, nothing created.
TEST_F(MaglevDsr, MidStreamSegmentToALocalBackendIsDnatOnly) {
  upsert(service({kLocalPodA}));
  const PacketBuilder seg = clientTcp(49200, kTcpAck | kTcpPsh);
  RunResult r = fromNetdev(seg.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = seg;
  want.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_EQ(ctCount(), 0u);
}

// Session affinity is per node (the client's backend on node A is not node B's choice): a
// mid-stream segment is dropped as before, and creates nothing.
TEST_F(MaglevDsr, WithAffinityMidStreamSegmentIsDroppedAsBefore) {
  upsert(withAffinity(service(remotePods(3))));
  RunResult r = fromNetdev(clientTcp(49300, kTcpAck).build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE).packets, 1u);
  EXPECT_EQ(ctCount(), 0u);
  auto aff = affinity_->dump();
  ASSERT_TRUE(aff) << aff.error().message();
  EXPECT_TRUE(aff->empty()) << "affinity written for a segment that opened nothing";
}

// bpf-lb-algorithm random: the backend is a draw, another node's is unknown: dropped as before.
class RandomDsr : public LbPolicyTest {
 public:
  RandomDsr() { setLbMode(LbMode::Dsr); }
};

TEST_F(RandomDsr, MidStreamSegmentIsDroppedAsBefore) {
  upsert(service(remotePods(3)));
  RunResult r = fromNetdev(clientTcp(49400, kTcpAck).build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE).packets, 1u);
  EXPECT_EQ(ctCount(), 0u);
}

// bpf-lb-mode snat with Maglev: the backend knows the connection by the other node's SNAT
// address and port, which this node cannot give it: dropped as before.
TEST_F(MaglevSelection, SnatModeMidStreamSegmentIsDroppedAsBefore) {
  upsert(service(remotePods(3)));
  RunResult r = fromNetdev(clientTcp(49500, kTcpAck).build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE).packets, 1u);
  EXPECT_EQ(ctCount(), 0u);
}

}  // namespace
}  // namespace np::bpftest
