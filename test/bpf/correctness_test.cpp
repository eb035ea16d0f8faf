// The correctness cases of issue 6 §2 through host.bpf.c (BPF_PROG_TEST_RUN), as data: maps set up,
// input packets, expected verdicts, expected output bytes, expected map side effects.
//   Fragment...  every fragment of a datagram takes its flow's entry (lib/frag.h)
//   Icmp...      ICMP errors about translated flows are translated back (lib/icmp.h), DSR's too
//   StrayTcp...  only a SYN opens a TCP service flow
//   Fib...       a backend the FIB cannot reach is a counted drop, not a half-translated packet
//   Snat...      SNAT ports of dead flows come back (lib/nat.h)
#include <arpa/inet.h>

#include <string>
#include <utility>

#include "flows.h"
#include "host_fixture.h"

namespace np::bpftest {
namespace {

constexpr uint16_t kUdpNodePort = 30053;
constexpr uint16_t kUdpPodPort = 5353;
constexpr uint8_t kIcmpDestUnreach = 3, kIcmpTimeExceeded = 11;
constexpr uint8_t kCodePortUnreach = 3, kCodeFragNeeded = 4;

// The IPv4 packet of a frame (the Ethernet header dropped), cut to `len` bytes (0: all of it).
Bytes ipPacket(const Bytes& frame, size_t len = 0) {
  Bytes p(frame.begin() + 14, frame.end());
  if (len && len < p.size()) p.resize(len);
  return p;
}

// An ICMP message: type, code, the 4 bytes after the checksum (host order), data; checksummed.
Bytes icmpMessage(uint8_t type, uint8_t code, uint32_t rest, const Bytes& data) {
  Bytes m = {type, code, 0, 0, static_cast<uint8_t>(rest >> 24), static_cast<uint8_t>(rest >> 16),
             static_cast<uint8_t>(rest >> 8), static_cast<uint8_t>(rest)};
  m.insert(m.end(), data.begin(), data.end());
  const uint16_t c = np::test::inetChecksum(m);
  m[2] = static_cast<uint8_t>(c >> 8);
  m[3] = static_cast<uint8_t>(c);
  return m;
}

PacketBuilder icmpFrame(const MacAddr& src, const MacAddr& dst, uint32_t from, uint32_t to, uint8_t ttl,
                        const Bytes& message) {
  PacketBuilder b;
  b.eth(src, dst).ipv4(from, to).ttl(ttl).ipId(0x7777).ipProto(np::test::kIpProtoIcmp).payload(message);
  return b;
}

// A whole IPv4 frame (20-byte header) as two fragments, the first carrying `at` bytes of the IP
// payload (a multiple of 8): what a router with a smaller MTU makes of it.
std::pair<Bytes, Bytes> fragment(const Bytes& frame, size_t at) {
  const size_t hdr = 14 + 20;
  auto make = [&](size_t from, size_t len, bool more) {
    Bytes f(frame.begin(), frame.begin() + hdr);
    f.insert(f.end(), frame.begin() + static_cast<std::ptrdiff_t>(hdr + from),
             frame.begin() + static_cast<std::ptrdiff_t>(hdr + from + len));
    const uint16_t totLen = static_cast<uint16_t>(20 + len);
    const uint16_t fragWord = static_cast<uint16_t>((f[20] & 0x40) << 8 | (more ? 0x2000 : 0) | (from / 8));
    f[16] = static_cast<uint8_t>(totLen >> 8);
    f[17] = static_cast<uint8_t>(totLen);
    f[20] = static_cast<uint8_t>(fragWord >> 8);
    f[21] = static_cast<uint8_t>(fragWord);
    f[24] = f[25] = 0;
    const uint16_t c = np::test::inetChecksum(std::span(f).subspan(14, 20));
    f[24] = static_cast<uint8_t>(c >> 8);
    f[25] = static_cast<uint8_t>(c);
    return f;
  };
  const size_t payload = frame.size() - hdr;
  return {make(0, at, true), make(at, payload - at, false)};
}

std::string bigPayload(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + i % 26));
  return s;
}

PacketBuilder clientUdp(uint16_t sport, const std::string& data, uint16_t ipId = 0x5151) {
  PacketBuilder b;
  b.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(ipId).udp(sport, kUdpNodePort).payload(data);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Fragments

// A big UDP datagram of a new flow arrives in two fragments: both go to the backend the first
// one chose, with the same addresses; ports and the UDP checksum (over the whole datagram) are
// rewritten in the first, where they are. Reassembled, the backend gets the translated datagram.
TEST_F(HostTest, FragmentsOfNewUdpFlowTakeOneBackendAndRewrite) {
  addBackend(1, kRemotePodA, kUdpPodPort, IPPROTO_UDP);
  addBackend(2, kRemotePodB, kUdpPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1, 2});

  const PacketBuilder dgram = clientUdp(kClientPort, bigPayload(1200));
  auto [f1, f2] = fragment(dgram.build(), 8 + 600);
  RunResult r1 = fromNetdev(f1);
  ASSERT_EQ(r1.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort, kClientIp, kUdpNodePort, IPPROTO_UDP));
  ASSERT_TRUE(fwd) << "the first fragment opens the flow";
  const uint32_t pod = fwd->backend_id == 1 ? kRemotePodA : kRemotePodB;
  PacketBuilder want = dgram;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(ntohs(fwd->nat_sport)).ipDst(pod).dstPort(kUdpPodPort).ttl(63);
  auto [w1, w2] = fragment(want.build(), 8 + 600);
  EXPECT_TRUE(samePacket(w1, r1.out));

  RunResult r2 = fromNetdev(f2);
  EXPECT_EQ(r2.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(w2, r2.out)) << "the later fragment must follow the first one's translation";
  EXPECT_EQ(ctCount(), 2u) << "one flow";
  fwd = ct(clientKey(kClientPort, kClientIp, kUdpNodePort, IPPROTO_UDP));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->packets, 2u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 2u);

  // The next datagram of the flow, fragmented again, takes the same entry.
  const PacketBuilder next = clientUdp(kClientPort, bigPayload(1000), 0x5152);
  auto [g1, g2] = fragment(next.build(), 8 + 512);
  PacketBuilder wantNext = next;
  wantNext.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(ntohs(fwd->nat_sport)).ipDst(pod).dstPort(kUdpPodPort)
      .ttl(63);
  auto [v1, v2] = fragment(wantNext.build(), 8 + 512);
  // Out of order within the pair is not possible (the later one needs the first): first, then later.
  r1 = fromNetdev(g1);
  EXPECT_TRUE(samePacket(v1, r1.out));
  r2 = fromNetdev(g2);
  EXPECT_TRUE(samePacket(v2, r2.out));
  EXPECT_EQ(ctCount(), 2u);
}

// A local backend's big reply leaves through egress in fragments: each gets the frontend as its
// source, the first also the frontend port and the checksum.
TEST_F(HostTest, FragmentsOfLocalBackendReplyAllGetFrontendSource) {
  addBackend(1, kLocalPodA, kUdpPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  ASSERT_EQ(fromNetdev(clientUdp(kClientPort, "query").build()).verdict, TC_ACT_OK);

  PacketBuilder reply;
  reply.eth(kEns192Mac, kClientMac).ipv4(kLocalPodA, kClientIp).ipId(0x4242).udp(kUdpPodPort, kClientPort)
      .payload(bigPayload(1400));
  auto [f1, f2] = fragment(reply.build(), 8 + 1000);
  PacketBuilder want = reply;
  want.ipSrc(kNodeIp).srcPort(kUdpNodePort);
  auto [w1, w2] = fragment(want.build(), 8 + 1000);
  RunResult r = toNetdev(f1);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(w1, r.out));
  r = toNetdev(f2);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(w2, r.out));
}

// A later fragment whose first one was not seen (it comes later, or never) cannot be matched to a
// flow: dropped and counted as FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND, no state.
TEST_F(HostTest, FragmentBeforeItsFirstIsDroppedWithReason) {
  addBackend(1, kRemotePodA, kUdpPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  auto [f1, f2] = fragment(clientUdp(kClientPort, bigPayload(1200)).build(), 8 + 600);
  RunResult r = fromNetdev(f2);
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_FRAG_NOT_FOUND);
  EXPECT_EQ(m.packets, 1u);
  EXPECT_EQ(m.bytes, f2.size());
  EXPECT_EQ(ctCount(), 0u);
  // Egress does not judge what the stack built: an unknown later fragment leaves untouched.
  r = toNetdev(f2);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(f2, r.out));
}

// Fragmented traffic that is no service's (the node's own) passes untouched, every fragment.
TEST_F(HostTest, FragmentsNotOfAServicePassUntouched) {
  addBackend(1, kRemotePodA, kUdpPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  PacketBuilder dgram;
  dgram.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(0x6161).udp(kClientPort, 5000).payload(bigPayload(900));
  auto [f1, f2] = fragment(dgram.build(), 8 + 400);
  for (const Bytes* f : {&f1, &f2}) {
    RunResult r = fromNetdev(*f);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(*f, r.out));
  }
  EXPECT_EQ(ctCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
}

// ---------------------------------------------------------------------------------------------
// ICMP errors

// Path-MTU discovery through NodePort + SNAT: a router on the way to the remote backend says the
// SNAT'd SYN was too big; the client gets the error about its own SYN, from the router, with
// every checksum right. The backend itself saying port unreachable (8-byte quote, no TCP
// checksum in it) appears to come from the frontend.
TEST_F(HostTest, IcmpErrorAboutSnatFlowReachesClientAsItsOwnPacket) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes sent = r.out;  // the SYN as it left for node 2: SNAT'd, TTL 63
  PacketBuilder asSent = syn;
  asSent.ttl(63);  // what the client's SYN looked like when it left this node, untranslated

  const Bytes tooBig = icmpMessage(kIcmpDestUnreach, kCodeFragNeeded, 1400, ipPacket(sent));
  r = fromNetdev(icmpFrame(kNode2Mac, kEns192Mac, kNode2Ip, kNodeIp, 64, tooBig).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes wantTooBig = icmpMessage(kIcmpDestUnreach, kCodeFragNeeded, 1400, ipPacket(asSent.build()));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kClientMac, kNode2Ip, kClientIp, 63, wantTooBig).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const Bytes unreach = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(sent, 28));
  r = fromNetdev(icmpFrame(kNode2Mac, kEns192Mac, kRemotePodA, kNodeIp, 63, unreach).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes wantUnreach = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(asSent.build(), 28));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kClientMac, kNodeIp, kClientIp, 62, wantUnreach).build(), r.out))
      << "the backend's own error must come from the frontend";

  // An error is not traffic of the flow: it neither refreshes nor counts on the entry.
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->packets, 1u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 3u);
}

// The other direction: the client (or a router near it) answers a reply with an error; it goes
// to the remote backend about the backend's own packet.
TEST_F(HostTest, IcmpErrorFromClientAboutReplyReachesRemoteBackend) {
  const uint16_t snatPort = startRemoteFlow();
  ASSERT_NE(snatPort, 0);
  const PacketBuilder synAck = remotePodTcp(kRemotePodA, snatPort, kTcpSyn | kTcpAck);
  RunResult r = fromNetdev(synAck.build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes atClient = r.out;  // TTL 62
  PacketBuilder asSent = synAck;
  asSent.ttl(62);

  const Bytes err = icmpMessage(kIcmpTimeExceeded, 0, 0, ipPacket(atClient));
  r = fromNetdev(icmpFrame(kClientMac, kEns192Mac, kClientIp, kNodeIp, 64, err).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes want = icmpMessage(kIcmpTimeExceeded, 0, 0, ipPacket(asSent.build()));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kNode2Mac, kNodeIp, kRemotePodA, 63, want).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
}

// A local pod's port unreachable about a UDP datagram leaves as the frontend's, quoting the
// client's datagram as the client sent it (UDP checksum included).
TEST_F(HostTest, IcmpPortUnreachableFromLocalPodLeavesAsFrontend) {
  addBackend(1, kLocalPodA, kUdpPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  const PacketBuilder query = clientUdp(kClientPort, "\x12\x34 query");
  RunResult r = fromNetdev(query.build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  const Bytes atPod = r.out;

  const Bytes err = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(atPod));
  r = toNetdev(icmpFrame(kEns192Mac, kClientMac, kLocalPodA, kClientIp, 64, err).build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  const Bytes want = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(query.build()));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kClientMac, kNodeIp, kClientIp, 64, want).build(), r.out));
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_METRIC_FORWARDED).packets, 1u);

  // A UDP datagram sent without a checksum is quoted with 0 there, and stays so.
  PacketBuilder noSum = clientUdp(kClientPort + 1, "q");
  noSum.l4Checksum(0);
  r = fromNetdev(noSum.build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  const Bytes err0 = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(r.out));
  r = toNetdev(icmpFrame(kEns192Mac, kClientMac, kLocalPodA, kClientIp, 64, err0).build());
  const Bytes want0 = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(noSum.build()));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kClientMac, kNodeIp, kClientIp, 64, want0).build(), r.out));
}

// ICMP that is not an error about one of our flows is not ours: untouched, uncounted.
TEST_F(HostTest, IcmpNotAboutOurFlowsPassesUntouched) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_REDIRECT);
  const Bytes ping = icmpFrame(kClientMac, kEns192Mac, kClientIp, kNodeIp, 64, icmpMessage(8, 0, 0x00010001, {1, 2, 3}))
                         .build();
  // About a flow nobody has: the node's own connection to port 22.
  PacketBuilder ssh;
  ssh.eth(kEns192Mac, kClientMac).ipv4(kNodeIp, kClientIp).tcp(22, kClientPort, kTcpAck);
  const Bytes unknown = icmpFrame(kClientMac, kEns192Mac, kClientIp, kNodeIp, 64,
                                  icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(ssh.build(), 28)))
                            .build();
  for (const Bytes* in : {&ping, &unknown}) {
    RunResult r = fromNetdev(*in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(*in, r.out));
    r = toNetdev(*in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(*in, r.out));
  }
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 1u);  // the SYN only
}

// ---------------------------------------------------------------------------------------------
// ICMP errors and DSR (bpf-lb-mode dsr): the replies of a DSR flow leave the backend's node with
// the frontend as their source, so an error about a reply (path-MTU discovery of the backend's
// big segments, a client's port unreachable) comes to the frontend's node, which has the flow's
// only entry here; an error the backend sends about a client's packet leaves the backend's node.

class DsrIcmpTest : public HostTest {
 protected:
  DsrIcmpTest() { setLbMode(LbMode::Dsr); }
};

constexpr uint16_t kNode2NodePort = 30080;  // node 2's frontend, on the backend node side
// The DSR option node 2 puts on what it forwards for its NodePort 192.168.10.101:30080.
const Bytes kOptNode2 = {0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x65};
const uint32_t kRouterIp = ip("192.168.10.1");

// Ingress node: a router between node 2 and the client cannot forward the backend's SYN-ACK
// (sent as the frontend's by node 2) without fragmenting it. Its fragmentation-needed comes to
// the frontend address; it goes on to the backend on node 2, quoting the backend's own packet
// (pod address and port) with every checksum right, the router's address kept as the source.
// The client's own port unreachable about a reply goes the same way with its address kept.
TEST_F(DsrIcmpTest, IcmpErrorAboutDsrReplyGoesOnToTheBackend) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(np::test::parse(r.out).ip->ihl, 7) << "the SYN did not go by DSR";

  // The SYN-ACK as node 2 sent it to the client (frontend's address and port), and as the pod
  // sent it before node 2's egress translated it.
  PacketBuilder reply;
  reply.eth(kNode2Mac, kClientMac).ipv4(kNodeIp, kClientIp).ttl(63).ipId(0x4321).dontFragment()
      .tcp(kNodePort, kClientPort, kTcpSyn | kTcpAck).seq(5000).ackSeq(1001).window(65160);
  PacketBuilder fromPod = reply;
  fromPod.ipSrc(kRemotePodA).srcPort(kBackendPort);

  const Bytes tooBig = icmpMessage(kIcmpDestUnreach, kCodeFragNeeded, 1400, ipPacket(reply.build()));
  r = fromNetdev(icmpFrame(kClientMac, kEns192Mac, kRouterIp, kNodeIp, 64, tooBig).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT) << "the error must go on to node 2";
  const Bytes want = icmpMessage(kIcmpDestUnreach, kCodeFragNeeded, 1400, ipPacket(fromPod.build()));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kNode2Mac, kRouterIp, kRemotePodA, 63, want).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const Bytes unreach = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(reply.build(), 28));
  r = fromNetdev(icmpFrame(kClientMac, kEns192Mac, kClientIp, kNodeIp, 64, unreach).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes wantUnreach = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(fromPod.build(), 28));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kNode2Mac, kClientIp, kRemotePodA, 63, wantUnreach).build(), r.out))
      << "the client's own error keeps the client's address";

  // Errors are not traffic of the flow: no option, no new state, the entry not refreshed.
  EXPECT_EQ(np::test::parse(r.out).ip->ihl, 5);
  EXPECT_EQ(ctCount(), 1u);
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->packets, 1u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 3u);
}

// Backend node: the pod answers a UDP datagram that node 2 forwarded by DSR with port
// unreachable. The error leaves as node 2's frontend's, quoting the datagram with the frontend
// as its destination (UDP checksum right for it), so the client takes it for its own; the
// quoted DSR option stays (the client's stack finds the ports by the quoted IHL).
TEST_F(DsrIcmpTest, IcmpErrorFromDsrBackendLeavesAsTheFrontend) {
  PacketBuilder dgram;
  dgram.eth(kNode2Mac, kEns192Mac).ipv4(kClientIp, kLocalPodA).ttl(63).ipId(0x2222).ipOptions(kOptNode2)
      .udp(kClientPort, kUdpPodPort).payload("\x12\x34 query");
  const Bytes atPod = dgram.build();
  RunResult r = fromNetdev(atPod);
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  ASSERT_TRUE(ct(ctKey(kLocalPodA, kUdpPodPort, kClientIp, kClientPort, IPPROTO_UDP, NP_CT_EGRESS)))
      << "the datagram's option did not record the flow";

  const Bytes err = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(atPod));
  r = toNetdev(icmpFrame(kEns192Mac, kClientMac, kLocalPodA, kClientIp, 64, err).build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder asFrontend = dgram;
  asFrontend.ipDst(kNode2Ip).dstPort(kNode2NodePort);
  const Bytes want = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(asFrontend.build()));
  EXPECT_TRUE(samePacket(icmpFrame(kEns192Mac, kClientMac, kNode2Ip, kClientIp, 64, want).build(), r.out))
      << "the pod's error must come from node 2's frontend";
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_METRIC_FORWARDED).packets, 1u);
}

// Backend node: the error the frontend's node sent on (previous cases but one) arrives for the
// pod quoting the pod's own packet: delivered as it came.
TEST_F(DsrIcmpTest, IcmpErrorForwardedToDsrBackendIsDeliveredAsItCame) {
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.eth(kNode2Mac, kEns192Mac).ipDst(kLocalPodA).dstPort(kBackendPort).ttl(63).ipOptions(kOptNode2);
  ASSERT_EQ(fromNetdev(syn.build()).verdict, TC_ACT_OK);
  const PacketBuilder synAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  const Bytes in = icmpFrame(kNode2Mac, kEns192Mac, kRouterIp, kLocalPodA, 63,
                             icmpMessage(kIcmpDestUnreach, kCodeFragNeeded, 1400, ipPacket(synAck.build())))
                       .build();
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(in, r.out));
}

// ---------------------------------------------------------------------------------------------
// Stray TCP

// TCP without SYN to a frontend that no entry knows (a stray or spoofed ACK, a FIN or RST of a
// flow the table lost, a SYN-ACK) opens nothing: dropped as CT_CANNOT_CREATE_ENTRY_FROM_PACKET,
// no conntrack entry, no SNAT port held - the next SYN from the same port keeps it.
TEST_F(HostTest, StrayTcpWithoutSynCreatesNoState) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  uint64_t bytes = 0;
  for (uint8_t flags : {kTcpAck, uint8_t(kTcpAck | kTcpPsh), uint8_t(kTcpFin | kTcpAck), kTcpRst,
                        uint8_t(kTcpSyn | kTcpAck)}) {
    const Bytes in = clientTcp(kClientPort, flags).build();
    bytes += in.size();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_SHOT) << "flags " << int(flags);
  }
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE);
  EXPECT_EQ(m.packets, 5u);
  EXPECT_EQ(m.bytes, bytes);
  EXPECT_EQ(ctCount(), 0u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).created, 0u);

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kClientPort) << "the client's port was held by nothing";
  EXPECT_EQ(ctCount(), 2u);
}

// ---------------------------------------------------------------------------------------------
// FIB

// A backend the FIB cannot reach (no route at all, or a route that refuses: unreachable,
// blackhole, prohibit) is dropped as FIB_LOOKUP_FAILED before any state is created, instead of
// going to the stack DNAT'd.
TEST_F(HostTest, FibFailureToBackendIsDroppedWithReason) {
  const uint32_t backends[] = {ip("203.0.113.10"), ip("10.0.9.10"), ip("10.0.8.10"), ip("10.0.7.10")};
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(np::test::ipToString(backends[i]));
    const uint16_t port = static_cast<uint16_t>(kNodePort + i);
    addBackend(i + 1, backends[i], kBackendPort, IPPROTO_TCP);
    setService({kNodeIp, port, IPPROTO_TCP}, kNodePortFlags, static_cast<uint16_t>(kRevNat + i), {i + 1});
    const Bytes in = clientTcp(kClientPort, kTcpSyn, kClientIp, port).build();
    bytes += in.size();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  }
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_FIB_LOOKUP_FAILED);
  EXPECT_EQ(m.packets, 4u);
  EXPECT_EQ(m.bytes, bytes);
  EXPECT_EQ(ctCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
}

// A hostNetwork backend (an address of this node: the FIB says "not forwarded") is local: DNAT'd
// and handed to the stack, no SNAT.
TEST_F(HostTest, FibLocalAddressBackendIsServedLocally) {
  addBackend(1, kNodeIp, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = syn;
  want.dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE);
}

// ---------------------------------------------------------------------------------------------
// SNAT ports

// The LRU evicts a flow's two entries independently. A reply entry whose service entry is gone
// holds its SNAT port for nobody: the next flow that asks for the port gets it, and the
// backend's answers on it reach that flow's client.
TEST_F(HostTest, SnatOrphanReplyEntryPortIsReclaimed) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn, kClientIp).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck, kClientIp).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_TRUE(ctMain(remoteReplyKey(kRemotePodA, kClientPort))) << "a confirmed flow holding SNAT port " << kClientPort;
  // As the LRU would: the service entry goes, the reply entry (alive for hours) stays.
  ASSERT_TRUE(ctMainMap().remove(clientKey(kClientPort, kClientIp)).ok());

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn, kClient2Ip).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kClientPort) << "the orphan's port was not reclaimed";
  EXPECT_FALSE(ctMain(remoteReplyKey(kRemotePodA, kClientPort))) << "the orphan is still in the main table";
  r = fromNetdev(remotePodTcp(kRemotePodA, kClientPort, kTcpSyn | kTcpAck).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(np::test::ipToString(np::test::parse(r.out).ip->daddr), np::test::ipToString(kClient2Ip));
}

}  // namespace
}  // namespace np::bpftest
