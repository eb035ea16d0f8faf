// XDP acceleration (bpf/xdp.bpf.c) against tc (bpf/host.bpf.c): the same input gives the same
// output. xdp.bpf.o is loaded by the agent's own loader (XdpProgram::load) next to the fixture's
// host.bpf.o and on its maps, with its tail calls, and run with BPF_PROG_TEST_RUN as if the packet
// arrived on ens192.
//
// The table: each case is a service set-up and a sequence of packets (client, backend replies on
// ingress; local backend replies on egress, which is tc's in both worlds). It runs twice on the
// same maps, emptied in between: once through tc alone, once the way the kernel runs a device with
// acceleration: XDP first, then tc for what XDP passed on unmarked (deferred to tc); a packet XDP
// passed on marked "done" is what the stack gets (XdpMarkerMakesTcPassUntouched shows tc leaves
// it alone). For every step the two worlds give the same bytes and the same decision (forwarded
// out / to the stack / dropped), both equal to the expected packet, with the expected XDP verdict;
// afterwards their conntrack tables (both tables, every field but the expiry time) and their
// drop counters are the same.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>

#include "bpf/attach.h"
#include "flows.h"
#include "host_fixture.h"
#include "np_xdp.h"

namespace np::bpftest {
namespace {

constexpr uint32_t kMagic = 0x4e500000;  // lib/xfer.h: NP_XFER_MAGIC | NP_XFER_F_NODEPORT_DONE
constexpr uint32_t kDone = kMagic | 1;

// Hook-independent outcome of a packet.
enum class Outcome { Forwarded, ToStack, Dropped };
const char* outcomeName(Outcome o) {
  switch (o) {
    case Outcome::Forwarded: return "forwarded out of a device";
    case Outcome::ToStack: return "passed to the stack";
    case Outcome::Dropped: return "dropped";
  }
  return "?";
}
Outcome tcOutcome(int v) {
  return v == TC_ACT_REDIRECT ? Outcome::Forwarded : v == TC_ACT_SHOT ? Outcome::Dropped : Outcome::ToStack;
}

class XdpTest : public HostTest {
 protected:
  // false: xdp.bpf.o loaded as on a kernel without bpf_xdp_adjust_meta for XDP.
  virtual bool xdpHandOffWanted() const { return true; }

 public:
  // The services of the cases: one TCP NodePort to a local pod, to a pod on node 2, to a pod
  // behind a node whose MAC is not known; one UDP NodePort to a pod on node 2.
  void localService() {
    addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
    setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  }
  void remoteService() {
    addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
    setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  }
  void unresolvedService() {
    addBackend(1, kUnresolvedPod, kBackendPort, IPPROTO_TCP);
    setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  }
  void remoteUdpService() {
    addBackend(1, kRemotePodA, 5353, IPPROTO_UDP);
    setService({kNodeIp, 30053, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  }

 protected:
  void SetUp() override {
    HostTest::SetUp();
    if (HasFatalFailure()) return;
    datapath::HostParams p;
    p.device = "ens192";
    p.ifindex = env().ens192Ifindex;
    p.nodeIp = Ipv4{kNodeIp};
    p.lbMode = lbMode();  // the mode host.bpf.o was loaded with: both worlds run one mode
    p.xdpHandOff = xdpHandOffWanted();
    auto prog = datapath::XdpProgram::load(pinDir(), mapSizes(), p);
    ASSERT_TRUE(prog.ok()) << prog.error().message() << " (the verifier's log is above)";
    xdp_ = std::move(prog.value());
  }
  void TearDown() override {
    xdp_.reset();
    HostTest::TearDown();
  }

  XdpRun xdp(const Bytes& in) { return runXdp(xdp_->entryFd(), in, env().ens192Ifindex); }

  // Whether this kernel lets XDP mark what it passes on (lib/xfer.h). Without it XDP passes on
  // only packets it left untouched: new flows and flows to local backends are deferred to tc.
  bool handOff() const { return xdp_->handOff(); }
  // A packet XDP passed on after running the path: marked done where the kernel allows it.
  void expectDone(const XdpRun& x, const std::string& why = "passed on without the done marker") const {
    if (handOff()) EXPECT_EQ(x.meta.value_or(0), kDone) << why;
    else EXPECT_FALSE(x.meta) << "no hand-off on this kernel, yet a marker";
  }

  np_metric xdpStat(uint32_t stat) const {
    auto sum = bpf::sumPerCpu<np_metric>(xdp_->mapFd(NP_STR(NP_MAP_XDP_STATS)), stat);
    EXPECT_TRUE(sum.ok()) << sum.error().message();
    return sum.ok() ? sum.value() : np_metric{};
  }

  // Empties both conntrack tables and the counters: the next world starts where the first did.
  void resetState() {
    for (auto* m : {&ctMainMap(), &ctSynMap()}) {
      auto all = m->dump();
      ASSERT_TRUE(all.ok()) << all.error().message();
      for (const auto& [k, e] : all.value()) ASSERT_TRUE(m->remove(k).ok());
    }
    const int ncpus = libbpf_num_possible_cpus();
    std::vector<np_metric> zero(static_cast<size_t>(ncpus));
    for (uint32_t i = 0; i < NP_METRICS_MAX; ++i) ASSERT_EQ(bpf_map_update_elem(metricsFd(), &i, zero.data(), 0), 0);
  }

  // Conntrack of both tables, expiry times left out (the two worlds run at different times).
  std::map<std::string, std::string> ctSnapshot() const {
    std::map<std::string, std::string> out;
    for (auto [k, e] : ctAll()) {
      e.expires = 0;
      std::string key(reinterpret_cast<const char*>(&k), sizeof k);
      std::string val(reinterpret_cast<const char*>(&e), sizeof e);
      EXPECT_TRUE(out.emplace(key, val).second) << "a key in both tables";
    }
    return out;
  }

  std::map<uint32_t, uint64_t> dropCounts() const {
    std::map<uint32_t, uint64_t> out;
    for (uint32_t dir : {NP_METRIC_INGRESS, NP_METRIC_EGRESS})
      for (uint32_t reason = 1; reason < 256; ++reason)
        if (uint64_t n = metric(dir, reason).packets) out[dir << 8 | reason] = n;
    return out;
  }

  std::unique_ptr<datapath::XdpProgram> xdp_;
};

// One packet of a case.
struct Step {
  std::string what;
  bool egress = false;    // leaves by ens192 (tc egress in both worlds)
  Bytes in;
  Outcome outcome;
  int xdpVerdict = -1;    // ingress: XDP_TX, XDP_PASS (marked done), XDP_DROP, or kDeferred
  Bytes want;             // the packet as it leaves the datapath
};
constexpr int kDeferred = -2;  // XDP_PASS without the marker: tc does the work

struct Case {
  std::string name;
  std::function<void(XdpTest&)> setUp;  // services and backends
  std::vector<Step> steps;
  LbMode mode = LbMode::Snat;  // bpf-lb-mode of both programs
};

// gtest prints the parameter of a failing case: its name.
void PrintTo(const Case& c, std::ostream* os) { *os << '"' << c.name << '"'; }

Bytes bytes(const PacketBuilder& b) { return b.build(); }

// A client's SYN/ACK/data to the NodePort and how it leaves when DNAT'd to a local pod.
PacketBuilder toLocal(PacketBuilder b) {
  b.ipDst(kLocalPodA).dstPort(kBackendPort);
  return b;
}
// ... and when DNAT'd + SNAT'd to a pod on node 2 (SNAT port = the client's port, in range).
PacketBuilder toRemote(PacketBuilder b, uint32_t pod = kRemotePodA) {
  b.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(kClientPort).ipDst(pod).dstPort(kBackendPort).ttl(63);
  return b;
}
// A remote pod's segment back to the SNAT port, and how it leaves towards the client.
PacketBuilder backToClient(PacketBuilder b) {
  b.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  return b;
}
// A local pod's segment to the client, and how it leaves: source back to the NodePort.
PacketBuilder fromNodePort(PacketBuilder b) {
  b.ipSrc(kNodeIp).srcPort(kNodePort);
  return b;
}

// DSR (bpf-lb-mode dsr): how a client's packet leaves for the pod on node 2 - DNAT only, the
// client's address kept, TTL down, and with `opt` (the 8-byte option) after the fixed header.
PacketBuilder dsrToRemote(PacketBuilder b, const Bytes& opt, uint16_t podPort = kBackendPort) {
  b.eth(kEns192Mac, kNode2Mac).ipDst(kRemotePodA).dstPort(podPort).ttl(63);
  if (!opt.empty()) b.ipOptions(opt);
  return b;
}
// The option for 192.168.10.100:30080 / :30053, and for node 2's 192.168.10.101:30080.
const Bytes kOptTcp = {0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x64};
const Bytes kOptUdp = {0x9a, 0x08, 0x75, 0x65, 0xc0, 0xa8, 0x0a, 0x64};
const Bytes kOptFromNode2 = {0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x65};

// The fragmentation-needed the ingress node answers a datagram too big for the option with
// (lib/dsr.h): back to the client from the frontend, MTU `mtu`, quoting 84 bytes of it.
Bytes fragNeeded(const Bytes& in, uint16_t mtu) {
  // The 8-byte ICMP header, then the quote (built in one piece: GCC 12's -Warray-bounds trips
  // over an insert after an 8-byte initializer list).
  Bytes icmp(in.begin() + 14 - 8, in.begin() + 14 + 84);
  const uint8_t head[8] = {3, 4, 0, 0, 0, 0, static_cast<uint8_t>(mtu >> 8), static_cast<uint8_t>(mtu)};
  std::copy(std::begin(head), std::end(head), icmp.begin());
  const uint16_t sum = np::test::inetChecksum(icmp);
  icmp[2] = static_cast<uint8_t>(sum >> 8);
  icmp[3] = static_cast<uint8_t>(sum);
  auto orig = np::test::parse(in);
  PacketBuilder b;
  b.eth(kEns192Mac, kClientMac).ipv4(orig.ip->daddr, orig.ip->saddr).tos(0xc0).dontFragment().ttl(64)
      .ipProto(np::test::kIpProtoIcmp).payload(icmp);
  return b.build();
}

std::vector<Case> dsrCases() {
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn), ack = clientTcp(kClientPort, kTcpAck),
                      data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  PacketBuilder udp, big;
  udp.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(0x77).udp(kClientPort, 30053).payload("query");
  big = udp;
  big.srcPort(kClientPort + 1).dontFragment().payload(std::string(1500 - 20 - 8, 'x'));
  // Backend node: what node 2 forwards for its NodePort to the pod here, and the pod's answer.
  PacketBuilder n2Syn = clientTcp(kClientPort, kTcpSyn), n2Ack = clientTcp(kClientPort, kTcpAck);
  for (PacketBuilder* b : {&n2Syn, &n2Ack}) b->eth(kNode2Mac, kEns192Mac).ipDst(kLocalPodA).dstPort(kBackendPort).ttl(63);
  n2Syn.ipOptions(kOptFromNode2);
  const PacketBuilder podSynAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  PacketBuilder podSynAckOut = podSynAck;
  podSynAckOut.ipSrc(kNode2Ip).srcPort(30080);

  return {
      {"DSR: new remote TCP flow, the option on the SYN only", [](XdpTest& t) { t.remoteService(); },
       {{"client SYN: DNAT + the option, back out of ens192", false, bytes(syn), Outcome::Forwarded, XDP_TX,
         bytes(dsrToRemote(syn, kOptTcp))},
        {"client ACK: DNAT, no option; confirms the flow", false, bytes(ack), Outcome::Forwarded, XDP_TX,
         bytes(dsrToRemote(ack, {}))},
        {"client data (main table hit)", false, bytes(data), Outcome::Forwarded, XDP_TX, bytes(dsrToRemote(data, {}))}},
       LbMode::Dsr},
      {"DSR: UDP, the option on every datagram", [](XdpTest& t) { t.remoteUdpService(); },
       {{"first datagram", false, bytes(udp), Outcome::Forwarded, XDP_TX, bytes(dsrToRemote(udp, kOptUdp, 5353))},
        {"second datagram (confirms)", false, bytes(udp), Outcome::Forwarded, XDP_TX,
         bytes(dsrToRemote(udp, kOptUdp, 5353))}},
       LbMode::Dsr},
      {"DSR: too big for the option", [](XdpTest& t) { t.remoteUdpService(); },
       {{"1500-byte datagram: fragmentation-needed (MTU 1492) back to the client", false, bytes(big),
         Outcome::Forwarded, XDP_TX, fragNeeded(bytes(big), 1492)}},
       LbMode::Dsr},
      {"DSR backend node: the option records the flow", [](XdpTest&) {},
       {{"node 2's SYN with the option: delivered as it came", false, bytes(n2Syn), Outcome::ToStack, XDP_PASS,
         bytes(n2Syn)},
        {"pod SYN-ACK (tc egress): node 2's frontend as the source", true, bytes(podSynAck), Outcome::ToStack, -1,
         bytes(podSynAckOut)},
        {"client ACK without the option: the recorded flow, confirmed", false, bytes(n2Ack), Outcome::ToStack,
         XDP_PASS, bytes(n2Ack)}},
       LbMode::Dsr},
  };
}

std::vector<Case> cases() {
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn), ack = clientTcp(kClientPort, kTcpAck),
                      data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  const PacketBuilder lSynAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck),
                      lData = localPodTcp(kLocalPodA, kClientPort, kTcpAck | kTcpPsh);
  const PacketBuilder rSynAck = remotePodTcp(kRemotePodA, kClientPort, kTcpSyn | kTcpAck),
                      rData = remotePodTcp(kRemotePodA, kClientPort, kTcpAck | kTcpPsh);
  PacketBuilder udp;
  udp.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(0x77).udp(kClientPort, 30053).payload("query");
  PacketBuilder udpWant = udp;
  udpWant.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).ipDst(kRemotePodA).dstPort(5353).ttl(63);
  PacketBuilder notOurs = clientTcp(kClientPort, kTcpSyn, kClientIp, 22);
  PacketBuilder cut = clientTcp(kClientPort, kTcpSyn);
  cut.truncate(14 + 20 + 10);
  PacketBuilder noNeigh = toRemote(syn, kUnresolvedPod);
  noNeigh.ethDst(kEns192Mac).ethSrc(kClientMac);  // tc's redirect_neigh leaves MACs to the kernel

  return {
      {"new local flow", [](XdpTest& t) { t.localService(); },
       {{"client SYN: DNAT to the local pod, to the stack", false, bytes(syn), Outcome::ToStack, XDP_PASS,
         bytes(toLocal(syn))}}},
      {"new remote flow (SNAT)", [](XdpTest& t) { t.remoteService(); },
       {{"client SYN: DNAT + SNAT to node 2's pod, back out of ens192", false, bytes(syn), Outcome::Forwarded,
         XDP_TX, bytes(toRemote(syn))}}},
      {"new remote UDP flow (SNAT, checksums by hand)",
       [](XdpTest& t) { t.remoteUdpService(); },
       {{"datagram: DNAT + SNAT, back out", false, bytes(udp), Outcome::Forwarded, XDP_TX, bytes(udpWant)}}},
      {"established local flow, both ways", [](XdpTest& t) { t.localService(); },
       {{"client SYN", false, bytes(syn), Outcome::ToStack, XDP_PASS, bytes(toLocal(syn))},
        {"pod SYN-ACK (tc egress)", true, bytes(lSynAck), Outcome::ToStack, -1, bytes(fromNodePort(lSynAck))},
        {"client ACK confirms: moved to the main table", false, bytes(ack), Outcome::ToStack, XDP_PASS,
         bytes(toLocal(ack))},
        {"client data (main table hit)", false, bytes(data), Outcome::ToStack, XDP_PASS, bytes(toLocal(data))},
        {"pod data (tc egress)", true, bytes(lData), Outcome::ToStack, -1, bytes(fromNodePort(lData))}}},
      {"established remote flow, both ways; replies of the SNAT'd flow", [](XdpTest& t) { t.remoteService(); },
       {{"client SYN", false, bytes(syn), Outcome::Forwarded, XDP_TX, bytes(toRemote(syn))},
        {"pod SYN-ACK to the SNAT port: back to the client", false, bytes(rSynAck), Outcome::Forwarded, XDP_TX,
         bytes(backToClient(rSynAck))},
        {"client ACK confirms", false, bytes(ack), Outcome::Forwarded, XDP_TX, bytes(toRemote(ack))},
        {"client data (main table hit)", false, bytes(data), Outcome::Forwarded, XDP_TX, bytes(toRemote(data))},
        {"pod data (main table hit)", false, bytes(rData), Outcome::Forwarded, XDP_TX, bytes(backToClient(rData))}}},
      {"not a frontend", [](XdpTest& t) { t.localService(); },
       {{"SYN to the node's port 22: untouched, to the stack", false, bytes(notOurs), Outcome::ToStack, XDP_PASS,
         bytes(notOurs)}}},
      {"truncated packet", [](XdpTest& t) { t.localService(); },
       {{"TCP header cut short: dropped (truncated header)", false, bytes(cut), Outcome::Dropped, XDP_DROP, {}}}},
      {"next hop without a neighbour entry", [](XdpTest& t) { t.unresolvedService(); },
       {{"client SYN: XDP leaves it to tc, which resolves the neighbour", false, bytes(syn), Outcome::Forwarded,
         kDeferred, bytes(noNeigh)}}},
  };
}

std::string caseId(const std::string& name) {
  std::string id;
  bool up = true;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      id += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
      up = false;
    } else {
      up = true;
    }
  }
  return id;
}

class XdpSameOutputAsTc : public XdpTest, public ::testing::WithParamInterface<Case> {
 public:
  void runCase();

 public:
  XdpSameOutputAsTc() { setLbMode(GetParam().mode); }

 protected:
  struct Seen {
    Outcome outcome;
    Bytes out;
  };

  // The case through tc alone.
  std::vector<Seen> runTc(const Case& c) {
    std::vector<Seen> seen;
    for (const Step& st : c.steps) {
      RunResult r = st.egress ? toNetdev(st.in) : fromNetdev(st.in);
      seen.push_back({tcOutcome(r.verdict), r.out});
    }
    return seen;
  }

  // The case the way a device with acceleration runs it: XDP, then tc for what XDP deferred.
  std::vector<Seen> runXdp(const Case& c) {
    std::vector<Seen> seen;
    for (const Step& st : c.steps) {
      SCOPED_TRACE("XDP world, step: " + st.what);
      if (st.egress) {
        RunResult r = toNetdev(st.in);
        seen.push_back({tcOutcome(r.verdict), r.out});
        continue;
      }
      const auto ctBefore = ctSnapshot();
      const np_metric deferredBefore = xdpStat(NP_XDP_STAT_DEFERRED);
      XdpRun x = xdp(st.in);
      const bool deferred = x.verdict == XDP_PASS && xdpStat(NP_XDP_STAT_DEFERRED).packets > deferredBefore.packets;
      EXPECT_TRUE(!deferred || !x.meta) << "deferred with the done marker";
      if (!handOff() && deferred) {
        // No hand-off: XDP may leave any step to tc (new flows, local backends); what tc then
        // does must be what tc alone did, which the case's outcomes check.
      } else if (st.xdpVerdict == kDeferred) {
        EXPECT_TRUE(deferred) << "XDP verdict " << x.verdict << ", metadata " << (x.meta ? *x.meta : 0);
      } else {
        EXPECT_EQ(x.verdict, st.xdpVerdict);
        if (x.verdict == XDP_PASS) expectDone(x);
      }
      if (deferred) {
        // Untouched, and nothing was created or changed that tc would then find.
        EXPECT_TRUE(samePacket(st.in, x.out)) << "XDP deferred a packet it had changed";
        EXPECT_EQ(ctSnapshot(), ctBefore) << "XDP deferred after changing conntrack state";
        RunResult r = fromNetdev(x.out);
        seen.push_back({tcOutcome(r.verdict), r.out});
        continue;
      }
      Outcome o = x.verdict == XDP_TX || x.verdict == XDP_REDIRECT ? Outcome::Forwarded
                  : x.verdict == XDP_PASS                          ? Outcome::ToStack
                                                                   : Outcome::Dropped;
      seen.push_back({o, x.out});
    }
    return seen;
  }
};

TEST_P(XdpSameOutputAsTc, Case) { runCase(); }

void XdpSameOutputAsTc::runCase() {
  const Case& c = GetParam();
  c.setUp(*this);
  if (HasFatalFailure()) return;

  const std::vector<Seen> tc = runTc(c);
  const auto tcCt = ctSnapshot();
  const auto tcDrops = dropCounts();
  resetState();
  if (HasFatalFailure()) return;
  const np_metric txBefore = xdpStat(NP_XDP_STAT_TX);
  const std::vector<Seen> x = runXdp(c);
  ASSERT_EQ(tc.size(), c.steps.size());
  ASSERT_EQ(x.size(), c.steps.size());

  uint64_t tx = 0;
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& st = c.steps[i];
    SCOPED_TRACE("step " + std::to_string(i + 1) + ": " + st.what);
    EXPECT_EQ(outcomeName(tc[i].outcome), outcomeName(st.outcome)) << "tc";
    EXPECT_EQ(outcomeName(x[i].outcome), outcomeName(st.outcome)) << "XDP";
    if (st.outcome != Outcome::Dropped) {
      EXPECT_TRUE(samePacket(st.want, tc[i].out)) << "tc output";
      EXPECT_TRUE(samePacket(st.want, x[i].out)) << "XDP output";
      EXPECT_TRUE(checksumsOk(x[i].out));
    }
    EXPECT_TRUE(samePacket(tc[i].out, x[i].out)) << "XDP and tc differ (expected: tc, actual: XDP)";
    if (st.xdpVerdict == XDP_TX) ++tx;
  }
  EXPECT_EQ(ctSnapshot(), tcCt) << "conntrack after XDP differs from conntrack after tc";
  EXPECT_EQ(dropCounts(), tcDrops) << "drop counters differ";
  // Without the hand-off XDP transmits fewer (the new flows' first packets are tc's).
  if (handOff()) EXPECT_EQ(xdpStat(NP_XDP_STAT_TX).packets - txBefore.packets, tx) << "np_xdpstat_v1 TX";
  else EXPECT_LE(xdpStat(NP_XDP_STAT_TX).packets - txBefore.packets, tx) << "np_xdpstat_v1 TX";
}

// The hand-off: a packet XDP passed on marked "done" reaches tc's np_from_netdev, which lets it
// through as it is. Run for real: XDP in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES), whose
// XDP_PASS frames enter the stack on ens192 with their metadata, and tc attached to ens192's
// ingress in this test's own namespace. The service is one tc would translate a second time
// without the marker: NodePort 30080 goes to a backend on the node itself (192.168.10.100:30090),
// which is NodePort 30090 of another service. Then the control: a packet XDP defers (next hop
// without a neighbour) carries no marker, and tc does create its flow.
TEST_F(XdpTest, MarkerMakesTcPassUntouched) {
  if (!handOff()) GTEST_SKIP() << "this kernel has no bpf_xdp_adjust_meta for XDP: no marker (XdpTest.WithoutHandOffTcSeesOnlyUntouchedPackets)";
  addBackend(1, kNodeIp, 30090, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  addBackend(2, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService({kNodeIp, 30090, IPPROTO_TCP}, kNodePortFlags, 9, {2});
  auto tcProg = bpf::attachTc(env().ens192Ifindex, bpf::TcDirection::Ingress, tcFromNetdevFd(), "ens192");
  ASSERT_TRUE(tcProg.ok()) << tcProg.error().message();

  auto live = [&](const Bytes& in) {
    xdp_md ctxIn{};
    ctxIn.data_end = static_cast<uint32_t>(in.size());
    ctxIn.ingress_ifindex = static_cast<uint32_t>(env().ens192Ifindex);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_size_in = static_cast<uint32_t>(in.size()),
                .ctx_in = &ctxIn, .ctx_size_in = sizeof(ctxIn), .repeat = 1, .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
    ASSERT_EQ(bpf_prog_test_run_opts(xdp_->entryFd(), &opts), 0) << "live XDP run: " << std::strerror(errno);
  };
  const np_metric passBefore = xdpStat(NP_XDP_STAT_PASS);
  live(clientTcp(kClientPort, kTcpSyn).build());
  EXPECT_EQ(xdpStat(NP_XDP_STAT_PASS).packets, passBefore.packets + 1) << "XDP did not pass the SYN on done";
  auto fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd) << "XDP created no flow for the SYN";
  EXPECT_EQ(fwd->nat_daddr, kNodeIp);
  EXPECT_EQ(ntohs(fwd->nat_dport), 30090);
  EXPECT_FALSE(ct(ctKey(kClientIp, kClientPort, kNodeIp, 30090, IPPROTO_TCP, NP_CT_INGRESS)))
      << "tc translated the packet XDP had marked done a second time (to NodePort 30090's backend)";
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 1u) << "forwarded once, by XDP";
  EXPECT_EQ(ctSynCount(), 2u) << "one flow (service and reply entry)";

  // Control: unmarked (deferred by XDP), so tc runs the path and creates the flow itself.
  addBackend(3, kUnresolvedPod, kBackendPort, IPPROTO_TCP);
  setService({kNodeIp, 30091, IPPROTO_TCP}, kNodePortFlags, 10, {3});
  const np_metric deferredBefore = xdpStat(NP_XDP_STAT_DEFERRED);
  live(clientTcp(kClientPort + 1, kTcpSyn, kClientIp, 30091).build());
  EXPECT_EQ(xdpStat(NP_XDP_STAT_DEFERRED).packets, deferredBefore.packets + 1) << "XDP did not defer it";
  EXPECT_TRUE(ctSyn(clientKey(kClientPort + 1, kClientIp, 30091))) << "tc did not run on the unmarked packet";
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 2u) << "forwarded once more, by tc";
  auto detached = bpf::detachTc(env().ens192Ifindex, bpf::TcDirection::Ingress, "ens192");
  EXPECT_TRUE(detached.ok()) << detached.error().message();
}

// The FIB sends a translated packet out of another device than it came in on: XDP_REDIRECT
// (tc: TC_ACT_REDIRECT), with the same bytes. The client of a SNAT'd flow sits behind lxcp1 (a
// neighbour entry for it added here, in this test's namespace), so the backend's reply, which
// arrives on ens192, leaves by lxcp1; the client's own segment goes back out of ens192 (XDP_TX).
TEST_F(XdpTest, RedirectsToAnotherDevice) {
  const MacAddr clientMac = np::test::mac("02:00:00:0a:01:0b");
  ASSERT_EQ(std::system(("ip neigh replace 10.0.1.11 lladdr " + np::test::macToString(clientMac) +
                         " dev lxcp1 nud permanent").c_str()),
            0);
  remoteService();
  const uint32_t client = kLocalPodB;
  auto world = [&](bool withXdp) {
    std::vector<std::pair<int, Bytes>> seen;
    PacketBuilder syn = clientTcp(kClientPort, kTcpSyn, client);
    PacketBuilder synAck = remotePodTcp(kRemotePodA, kClientPort, kTcpSyn | kTcpAck);
    for (const PacketBuilder* b : {&syn, &synAck}) {
      if (withXdp) {
        XdpRun x = xdp(b->build());
        if (x.verdict == XDP_PASS && !handOff()) {  // left to tc
          EXPECT_TRUE(samePacket(b->build(), x.out)) << "deferred after a change";
          RunResult t = fromNetdev(x.out);
          seen.emplace_back(t.verdict, t.out);
        } else {
          seen.emplace_back(x.verdict, x.out);
        }
      } else {
        RunResult t = fromNetdev(b->build());
        seen.emplace_back(t.verdict, t.out);
      }
    }
    return seen;
  };
  const auto tc = world(false);
  resetState();
  const np_metric redirects = xdpStat(NP_XDP_STAT_REDIRECT);
  const auto x = world(true);
  ASSERT_EQ(tc.size(), 2u);
  ASSERT_EQ(x.size(), 2u);
  EXPECT_EQ(tc[0].first, TC_ACT_REDIRECT);
  if (!handOff()) EXPECT_EQ(x[0].first, TC_ACT_REDIRECT) << "no hand-off: the SYN (a new flow) is left to tc";
  else EXPECT_EQ(x[0].first, XDP_TX) << "the SYN goes back out of ens192";
  EXPECT_EQ(tc[1].first, TC_ACT_REDIRECT);
  EXPECT_EQ(x[1].first, XDP_REDIRECT) << "the reply leaves by lxcp1";
  EXPECT_EQ(xdpStat(NP_XDP_STAT_REDIRECT).packets, redirects.packets + 1);
  for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(samePacket(tc[i].second, x[i].second)) << "step " << i + 1;
  ASSERT_GE(x[1].second.size(), 34u);
  EXPECT_TRUE(std::equal(clientMac.begin(), clientMac.end(), x[1].second.begin())) << "destination MAC: the client's";
  uint32_t dst;
  std::memcpy(&dst, x[1].second.data() + 30, 4);
  EXPECT_EQ(dst, client) << "reverse-translated to the client";
  EXPECT_TRUE(checksumsOk(x[1].second));
  EXPECT_EQ(std::system("ip neigh del 10.0.1.11 dev lxcp1"), 0);
}

// A packet that no flow and no frontend claims passes XDP without its new-flow stage: with the
// stage's slot emptied from the program array (a tail call to it now fails, and the entry leaves
// the packet to tc unmarked), such a packet still passes marked done, untouched, creating and
// counting nothing but its pass; a SYN to the frontend, which does need the stage, is the control
// (it comes back deferred). tc passes the same packet untouched too.
TEST_F(XdpTest, NotAServicePassesWithoutTheNewFlowStage) {
  localService();
  const Bytes notOurs = clientTcp(kClientPort, kTcpSyn, kClientIp, 22).build();
  const Bytes ack = clientTcp(kClientPort, kTcpAck, kClientIp, 22).build();
  RunResult t = fromNetdev(notOurs);
  EXPECT_EQ(t.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(notOurs, t.out)) << "tc";

  const uint32_t slot = NP_XDP_CALL_NEW_FLOW;
  ASSERT_EQ(bpf_map_delete_elem(xdp_->mapFd(NP_STR(NP_MAP_XDP_CALLS)), &slot), 0) << std::strerror(errno);
  const np_metric pass = xdpStat(NP_XDP_STAT_PASS), deferred = xdpStat(NP_XDP_STAT_DEFERRED);
  for (const Bytes* in : {&notOurs, &ack}) {
    XdpRun x = xdp(*in);
    EXPECT_EQ(x.verdict, XDP_PASS);
    expectDone(x, "left to tc: the entry went for the new-flow stage");
    EXPECT_TRUE(samePacket(*in, x.out));
  }
  EXPECT_EQ(xdpStat(NP_XDP_STAT_PASS).packets - pass.packets, 2u);
  EXPECT_EQ(xdpStat(NP_XDP_STAT_DEFERRED).packets, deferred.packets);
  EXPECT_EQ(ctCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_TRUE(dropCounts().empty());

  // Control: the frontend's SYN needs the stage it cannot reach now.
  XdpRun x = xdp(clientTcp(kClientPort, kTcpSyn).build());
  EXPECT_EQ(x.verdict, XDP_PASS);
  EXPECT_FALSE(x.meta) << "the SYN to the NodePort did not go for the new-flow stage";
  EXPECT_EQ(xdpStat(NP_XDP_STAT_DEFERRED).packets, deferred.packets + 1);
  EXPECT_EQ(ctCount(), 0u);
}

// A packet to the node's address on a port no flow of ours uses (np_ports4_v1 complete, the
// port's bit clear) passes XDP marked done without a conntrack lookup: an entry under its tuple
// (a flow to a frontend on that port, planted) is not used. With the bitmap incomplete the same
// packet is translated by it.
TEST_F(XdpTest, UnusedPortOfTheNodePassesWithoutLookups) {
  localService();
  ASSERT_NE(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_SHOT);
  auto e = ct(clientKey(kClientPort));
  ASSERT_TRUE(e) << "the SYN made no entry";
  constexpr uint16_t kUnused = 20000;  // below the SNAT ports, no frontend's or backend's
  ASSERT_TRUE(ctSynMap().update(clientKey(kClientPort, kClientIp, kUnused), *e));
  const Bytes ack = clientTcp(kClientPort, kTcpAck, kClientIp, kUnused).build();
  const int ports = mapFd(NP_STR(NP_MAP_PORTS));
  const uint32_t zero = 0;
  np_ports bitmap{};
  bitmap.complete = 1;  // every port's bit is clear
  ASSERT_EQ(bpf_map_update_elem(ports, &zero, &bitmap, BPF_ANY), 0) << std::strerror(errno);
  XdpRun x = xdp(ack);
  EXPECT_EQ(x.verdict, XDP_PASS);
  expectDone(x);
  EXPECT_TRUE(samePacket(ack, x.out));

  bitmap.complete = 0;
  ASSERT_EQ(bpf_map_update_elem(ports, &zero, &bitmap, BPF_ANY), 0) << std::strerror(errno);
  x = xdp(ack);
  EXPECT_EQ(x.verdict, XDP_PASS);
  if (!handOff()) {
    // A flow to a local backend is tc's: left untouched, and tc translates it by the entry.
    EXPECT_TRUE(samePacket(ack, x.out)) << "no hand-off, yet XDP translated a local flow";
    x.out = fromNetdev(x.out).out;
  }
  EXPECT_EQ(np::test::parse(x.out).ip->daddr, kLocalPodA) << "the planted entry does not translate: the test proves nothing";
}

// In dsr mode a packet for no frontend may carry another node's DSR option (this node is the
// backend's): that one still goes to the stage (control: deferred with the slot emptied), one
// without the option does not.
class XdpDsrTest : public XdpTest {
 public:
  XdpDsrTest() { setLbMode(LbMode::Dsr); }
};

TEST_F(XdpDsrTest, NotAServicePassesWithoutTheNewFlowStageUnlessItCarriesTheOption) {
  PacketBuilder withOpt = clientTcp(kClientPort, kTcpSyn), plain = clientTcp(kClientPort, kTcpAck);
  for (PacketBuilder* b : {&withOpt, &plain})
    b->eth(kNode2Mac, kEns192Mac).ipDst(kLocalPodA).dstPort(kBackendPort).ttl(63);
  withOpt.ipOptions(kOptFromNode2);
  const uint32_t slot = NP_XDP_CALL_NEW_FLOW;
  ASSERT_EQ(bpf_map_delete_elem(xdp_->mapFd(NP_STR(NP_MAP_XDP_CALLS)), &slot), 0) << std::strerror(errno);

  XdpRun x = xdp(plain.build());
  EXPECT_EQ(x.verdict, XDP_PASS);
  expectDone(x, "left to tc: the entry went for the new-flow stage");
  EXPECT_TRUE(samePacket(plain.build(), x.out));

  x = xdp(withOpt.build());
  EXPECT_EQ(x.verdict, XDP_PASS);
  EXPECT_FALSE(x.meta) << "a packet with the DSR option did not go for the new-flow stage";
  EXPECT_EQ(ctCount(), 0u);
}

// Every --bpf-lb-mode gives an XDP object the verifier takes (the load-time mode decides which
// of the path's branches exist: DSR adds the option and the ICMP error, hybrid has both).
TEST_F(XdpTest, LoadsInEveryLbMode) {
  for (LbMode mode : {LbMode::Snat, LbMode::Dsr, LbMode::Hybrid}) {
    datapath::HostParams p;
    p.device = "ens192";
    p.ifindex = env().ens192Ifindex;
    p.nodeIp = Ipv4{kNodeIp};
    p.lbMode = mode;
    auto prog = datapath::XdpProgram::load(pinDir(), mapSizes(), p);
    EXPECT_TRUE(prog.ok()) << lbModeName(mode) << ": " << (prog.ok() ? "" : prog.error().message());
  }
}

// The same cases with xdp.bpf.o as a kernel without bpf_xdp_adjust_meta for XDP runs it (no
// hand-off, lib/xfer.h): XDP leaves new flows and flows to local backends to tc untouched, and
// what comes out is what tc alone gives.
class XdpSameOutputAsTcWithoutHandOff : public XdpSameOutputAsTc {
 protected:
  bool xdpHandOffWanted() const override { return false; }
};

TEST_P(XdpSameOutputAsTcWithoutHandOff, Case) {
  ASSERT_FALSE(handOff());
  runCase();
}

INSTANTIATE_TEST_SUITE_P(Table, XdpSameOutputAsTcWithoutHandOff, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return caseId(info.param.name); });
INSTANTIATE_TEST_SUITE_P(Dsr, XdpSameOutputAsTcWithoutHandOff, ::testing::ValuesIn(dsrCases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return caseId(info.param.name); });

INSTANTIATE_TEST_SUITE_P(Table, XdpSameOutputAsTc, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return caseId(info.param.name); });
INSTANTIATE_TEST_SUITE_P(Dsr, XdpSameOutputAsTc, ::testing::ValuesIn(dsrCases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return caseId(info.param.name); });

}  // namespace
}  // namespace np::bpftest
