// DSR with the IPv4 option (bpf/lib/dsr.h) through host.bpf.c loaded with bpf-lb-mode dsr, hybrid
// or snat. The one program plays both nodes: the ingress node for frontends on this node's address
// with backends behind node 2 (10.0.2.0/24), and the backend node for packets that node 2 sent to
// a pod of this node (10.0.1.0/24) with the option of node 2's frontend. Each case: maps set up,
// input packet(s), expected verdict, expected output bytes (the option spelled out byte by byte),
// expected conntrack and counters.
#include <arpa/inet.h>

#include <cstring>

#include "flows.h"
#include "host_fixture.h"

namespace np::bpftest {
namespace {

using np::test::inetChecksum;

inline constexpr uint16_t kUdpNodePort = 30053;
inline constexpr uint16_t kUdpRevNat = 8;
inline constexpr uint16_t kNode2NodePort = 30080;  // the frontend node 2 forwarded for
inline const Frontend kUdpNodePortFe{kNodeIp, kUdpNodePort, IPPROTO_UDP};

// The option for frontend 192.168.10.100:30080, in network order: type 0x9a, length 8, port
// 0x7580, address c0.a8.0a.64.
const Bytes kOptNodePort = {0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x64};
// 192.168.10.100:30053 (0x7565)
const Bytes kOptUdpNodePort = {0x9a, 0x08, 0x75, 0x65, 0xc0, 0xa8, 0x0a, 0x64};
// 192.168.10.101:30080 (node 2's NodePort, seen on the backend node)
const Bytes kOptNode2 = {0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x65};

constexpr size_t kOptOff = 14 + 20;

PacketBuilder clientUdp(uint16_t sport, size_t payloadLen = 5, uint16_t dport = kUdpNodePort,
                        uint32_t daddr = kNodeIp) {
  Bytes body(payloadLen);
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<uint8_t>('a' + i % 26);
  PacketBuilder b;
  b.eth(kClientMac, kEns192Mac).ipv4(kClientIp, daddr).ipId(0x2222).udp(sport, dport).payload(body);
  return b;
}

// What the ingress node sends to node 2 for a client packet: DNAT'd to the pod on node 2, TTL
// down by one, MACs from the FIB, the option after the fixed header.
PacketBuilder dsrForwarded(PacketBuilder in, const Bytes& opt, uint16_t podPort = kBackendPort) {
  in.eth(kEns192Mac, kNode2Mac).ipDst(kRemotePodA).dstPort(podPort).ttl(63).ipOptions(opt);
  return in;
}

// The same without the option (TCP after the SYN).
PacketBuilder dnatForwarded(PacketBuilder in) {
  in.eth(kEns192Mac, kNode2Mac).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  return in;
}

class DsrTest : public HostTest {
 protected:
  DsrTest() { setLbMode(LbMode::Dsr); }

  void remoteTcpService() {
    addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
    setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  }
  void remoteUdpService() {
    addBackend(2, kRemotePodA, kBackendPort, IPPROTO_UDP);
    setService(kUdpNodePortFe, kNodePortFlags, kUdpRevNat, {2});
  }
};

class DsrHybridTest : public DsrTest {
 protected:
  DsrHybridTest() { setLbMode(LbMode::Hybrid); }
};

// bpf-lb-mode snat: the default fixture, named for the capability it proves.
class DsrSnatModeTest : public HostTest {};

// ---------------------------------------------------------------------------------------------
// Ingress node

// The SYN leaves DNAT'd with the option (exact bytes), IHL 7, total length + 8, both checksums
// right, the client's address kept; one conntrack entry, no SNAT port, no reply entry.
TEST_F(DsrTest, SynCarriesOptionWithFrontend) {
  remoteTcpService();
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  const Bytes in = syn.build();
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  const Bytes want = dsrForwarded(syn, kOptNodePort).build();
  EXPECT_TRUE(samePacket(want, r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  ASSERT_EQ(r.out.size(), in.size() + 8);
  EXPECT_EQ(r.out[14], 0x47) << "version 4, IHL 7";
  EXPECT_EQ(Bytes(r.out.begin() + kOptOff, r.out.begin() + kOptOff + 8), kOptNodePort);
  auto parsed = np::test::parse(r.out);
  ASSERT_TRUE(parsed.ip);
  EXPECT_EQ(parsed.ip->saddr, kClientIp) << "DSR keeps the client's address";
  EXPECT_EQ(parsed.ip->totLen, in.size() - 14 + 8);

  auto fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_REDIRECT | NP_CT_F_DSR);
  EXPECT_EQ(fwd->nat_daddr, kRemotePodA);
  EXPECT_EQ(ntohs(fwd->nat_dport), kBackendPort);
  EXPECT_EQ(fwd->nat_saddr, 0u) << "no SNAT";
  EXPECT_EQ(fwd->nat_sport, 0);
  EXPECT_EQ(ctSynCount(), 1u) << "the replies never come back here: no reply entry";
  EXPECT_EQ(ctMainCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 1u);

  // A retransmitted SYN carries it again (the first may have been lost).
  r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(want, r.out));
}

// After the SYN the flow's segments go DNAT'd without the option; the client's ACK confirms the
// flow (its replies are never seen here), which then lives in the main table.
TEST_F(DsrTest, LaterTcpSegmentsGoWithoutOption) {
  remoteTcpService();
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_REDIRECT);

  const PacketBuilder ack = clientTcp(kClientPort, kTcpAck);
  RunResult r = fromNetdev(ack.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dnatForwarded(ack).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  auto fwd = ctMain(clientKey(kClientPort));
  ASSERT_TRUE(fwd) << "the handshake's ACK did not confirm the DSR flow";
  EXPECT_EQ(fwd->flags & (NP_CT_F_DSR | NP_CT_F_SEEN_NON_SYN), NP_CT_F_DSR | NP_CT_F_SEEN_NON_SYN);
  EXPECT_EQ(ctMainCount(), 1u);
  EXPECT_EQ(ctSynCount(), 0u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).promoted, 1u);

  const PacketBuilder data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  r = fromNetdev(data.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dnatForwarded(data).build(), r.out));
  EXPECT_EQ(ctMain(clientKey(kClientPort))->packets, 3u);
}

// UDP has no connection: every datagram carries the option, the first and the later ones; the
// second confirms the flow.
TEST_F(DsrTest, EveryUdpDatagramCarriesOption) {
  remoteUdpService();
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("datagram " + std::to_string(i + 1));
    const PacketBuilder d = clientUdp(kClientPort, 5 + static_cast<size_t>(i));
    RunResult r = fromNetdev(d.build());
    EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
    EXPECT_TRUE(samePacket(dsrForwarded(d, kOptUdpNodePort).build(), r.out));
    EXPECT_TRUE(checksumsOk(r.out));
  }
  const np_ct_key key = clientKey(kClientPort, kClientIp, kUdpNodePort, IPPROTO_UDP);
  auto fwd = ctMain(key);
  ASSERT_TRUE(fwd) << "the second datagram did not confirm the flow";
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_REDIRECT | NP_CT_F_DSR);
  EXPECT_EQ(fwd->packets, 3u);
  EXPECT_EQ(ctCount(), 1u);
}

// A UDP datagram without a checksum keeps 0; the option does not change what the L4 checksum
// covers.
TEST_F(DsrTest, UdpWithoutChecksumStaysWithout) {
  remoteUdpService();
  PacketBuilder d = clientUdp(kClientPort);
  d.l4Checksum(0);
  RunResult r = fromNetdev(d.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder want = dsrForwarded(d, kOptUdpNodePort);
  want.l4Checksum(0);
  EXPECT_TRUE(samePacket(want.build(), r.out));
}

// A header with options already: ours goes first, right after the fixed header; IHL counts both.
// One with no room left for 8 more bytes of options is dropped (Cilium's verdict too).
TEST_F(DsrTest, OptionGoesBeforeExistingOptions) {
  remoteTcpService();
  const Bytes nop4 = {0x01, 0x01, 0x01, 0x01};
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.ipOptions(nop4);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  Bytes both = kOptNodePort;
  both.insert(both.end(), nop4.begin(), nop4.end());
  EXPECT_TRUE(samePacket(dsrForwarded(syn, both).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  PacketBuilder full = clientTcp(kClientPort + 1, kTcpSyn);
  full.ipOptions(Bytes(36, 0x01));
  r = fromNetdev(full.build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER).packets, 1u);
}

// LoadBalancer IPs and externalIPs are frontends like the node's address: the option names them.
TEST_F(DsrTest, LoadBalancerIpTakesTheSamePath) {
  const uint32_t lbIp = ip("192.168.10.240");
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService({lbIp, 80, IPPROTO_TCP}, NP_SVC_F_LOADBALANCER | NP_SVC_F_ROUTABLE, kRevNat, {1});
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn, kClientIp, 80);
  syn.ipDst(lbIp);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dsrForwarded(syn, {0x9a, 0x08, 0x00, 0x50, 0xc0, 0xa8, 0x0a, 0xf0}).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
}

// So are externalIPs (the flags the agent writes for one: lb/reconciler.cpp), for TCP and UDP.
TEST_F(DsrTest, ExternalIpTakesTheSamePath) {
  const uint32_t extIp = ip("192.168.10.250");
  const uint8_t flags = NP_SVC_F_EXTERNAL_IP | NP_SVC_F_ROUTABLE;
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService({extIp, 443, IPPROTO_TCP}, flags, kRevNat, {1});
  addBackend(2, kRemotePodA, kBackendPort, IPPROTO_UDP);
  setService({extIp, 53, IPPROTO_UDP}, flags, kUdpRevNat, {2});

  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn, kClientIp, 443);
  syn.ipDst(extIp);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  // 192.168.10.250:443 = c0.a8.0a.fa, 0x01bb
  EXPECT_TRUE(samePacket(dsrForwarded(syn, {0x9a, 0x08, 0x01, 0xbb, 0xc0, 0xa8, 0x0a, 0xfa}).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const PacketBuilder d = clientUdp(kClientPort, 5, 53, extIp);
  r = fromNetdev(d.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dsrForwarded(d, {0x9a, 0x08, 0x00, 0x35, 0xc0, 0xa8, 0x0a, 0xfa}).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_EQ(ctSynCount(), 2u) << "one entry per flow, no reply entries";
}

// A backend on this node is served as in every mode: DNAT, handed to the stack, no option.
TEST_F(DsrTest, LocalBackendIsServedWithoutDsr) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = syn;
  want.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  auto fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE);
  EXPECT_TRUE(ctSyn(localReplyKey(kLocalPodA, kClientPort)));
}

// ---------------------------------------------------------------------------------------------
// MTU

// The ICMP error the ingress node sends for `in` (an IPv4 frame from the client): to the
// client's MAC and address, from the frontend's, type 3 code 4 with next-hop MTU `mtu`, quoting
// the first 84 bytes of the datagram as the client sent it.
Bytes fragNeeded(const Bytes& in, uint16_t mtu) {
  Bytes icmp = {3, 4, 0, 0, 0, 0, static_cast<uint8_t>(mtu >> 8), static_cast<uint8_t>(mtu)};
  icmp.insert(icmp.end(), in.begin() + 14, in.begin() + 14 + 84);
  const uint16_t sum = inetChecksum(icmp);
  icmp[2] = static_cast<uint8_t>(sum >> 8);
  icmp[3] = static_cast<uint8_t>(sum);
  auto orig = np::test::parse(in);
  PacketBuilder b;
  b.eth(kEns192Mac, kClientMac).ipv4(orig.ip->daddr, orig.ip->saddr).tos(0xc0).dontFragment().ttl(64)
      .ipProto(np::test::kIpProtoIcmp).payload(icmp);
  return b.build();
}

// A datagram of 1500 bytes on a 1500-byte device would be 1508 with the option: dropped with
// its own reason and answered with ICMP fragmentation-needed for MTU 1492, out of the device it
// came in on, byte for byte. No state is created for it.
TEST_F(DsrTest, TooBigForOptionIsAnsweredWithFragNeeded) {
  remoteUdpService();
  const Bytes in = clientUdp(kClientPort, 1500 - 20 - 8).dontFragment().build();
  ASSERT_EQ(in.size(), 1514u);
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT) << "the ICMP error goes back out of ens192";
  const Bytes want = fragNeeded(in, 1492);
  EXPECT_TRUE(samePacket(want, r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  const np_metric drops = metric(NP_METRIC_INGRESS, NP_DROP_FRAG_NEEDED);
  EXPECT_EQ(drops.packets, 1u);
  EXPECT_EQ(drops.bytes, in.size());
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_EQ(ctCount(), 0u) << "a packet that is not forwarded creates no flow";

  // One that fits exactly (1492 + 8 = 1500) goes with the option; a big one of the now known
  // flow gets the same answer.
  const PacketBuilder fits = clientUdp(kClientPort, 1492 - 20 - 8);
  r = fromNetdev(fits.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dsrForwarded(fits, kOptUdpNodePort).build(), r.out));
  EXPECT_EQ(r.out.size(), 1514u);
  ASSERT_EQ(ctCount(), 1u);
  r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(want, r.out));
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_FRAG_NEEDED).packets, 2u);
}

// TCP gets the option only on the SYN, so only a SYN can be too big for it; later segments of
// full size go on (they carry no option).
TEST_F(DsrTest, FullSizeTcpSegmentsAfterTheSynFit) {
  remoteTcpService();
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.payload(Bytes(1500 - 20 - 20, 'x'));
  const Bytes bigSyn = syn.build();
  RunResult r = fromNetdev(bigSyn);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(fragNeeded(bigSyn, 1492), r.out));
  EXPECT_EQ(ctCount(), 0u);

  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_REDIRECT);
  PacketBuilder seg = clientTcp(kClientPort, kTcpAck);
  seg.payload(Bytes(1500 - 20 - 20, 'y'));
  r = fromNetdev(seg.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dnatForwarded(seg).build(), r.out));
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_FRAG_NEEDED).packets, 1u);
}

// ---------------------------------------------------------------------------------------------
// Backend node

// What node 2 sends this node for its NodePort 30080 with the pod here as the backend.
PacketBuilder fromNode2Tcp(uint8_t flags, bool withOption) {
  PacketBuilder b = clientTcp(kClientPort, flags);
  b.eth(kNode2Mac, kEns192Mac).ipDst(kLocalPodA).dstPort(kBackendPort).ttl(63);
  if (withOption) b.ipOptions(kOptNode2);
  return b;
}

np_ct_key backendFwdKey(uint8_t proto = IPPROTO_TCP) {
  return ctKey(kClientIp, kClientPort, kLocalPodA, kBackendPort, proto, NP_CT_INGRESS);
}

// The SYN with the option is delivered as it came (option kept: Linux ignores it) and records the
// flow; the pod's replies leave with node 2's address and NodePort as their source, straight to
// the client; the client's later segments, without the option, match the recorded flow.
TEST_F(DsrTest, BackendNodeRecordsFlowAndRewritesReplies) {
  const Bytes syn = fromNode2Tcp(kTcpSyn, true).build();
  RunResult r = fromNetdev(syn);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(syn, r.out)) << "the backend node delivers the packet untouched";

  auto fwd = ctSyn(backendFwdKey());
  ASSERT_TRUE(fwd) << "no entry client -> pod (ingress)";
  EXPECT_EQ(fwd->flags, NP_CT_F_DSR_BACKEND);
  EXPECT_EQ(fwd->nat_saddr, 0u);
  EXPECT_EQ(fwd->nat_daddr, 0u);
  auto rev = ctSyn(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(rev) << "no entry pod -> client (egress)";
  EXPECT_EQ(rev->flags, NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND);
  EXPECT_EQ(rev->nat_saddr, kNode2Ip);
  EXPECT_EQ(ntohs(rev->nat_sport), kNode2NodePort);
  EXPECT_EQ(rev->nat_daddr, 0u);
  EXPECT_EQ(rev->nat_dport, 0);
  EXPECT_EQ(rev->expires, fwd->expires);
  EXPECT_EQ(ctCount(), 2u);

  const PacketBuilder synAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  r = toNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantSynAck = synAck;
  wantSynAck.ipSrc(kNode2Ip).srcPort(kNode2NodePort);
  EXPECT_TRUE(samePacket(wantSynAck.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const Bytes ack = fromNode2Tcp(kTcpAck, false).build();
  r = fromNetdev(ack);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(ack, r.out));
  fwd = ctMain(backendFwdKey());
  ASSERT_TRUE(fwd) << "the client's ACK did not match and confirm the recorded flow";
  EXPECT_EQ(fwd->packets, 2u);
  EXPECT_TRUE(ctMain(localReplyKey(kLocalPodA, kClientPort)));
  EXPECT_EQ(ctSynCount(), 0u);

  const PacketBuilder data = localPodTcp(kLocalPodA, kClientPort, kTcpAck | kTcpPsh);
  r = toNetdev(data.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantData = data;
  wantData.ipSrc(kNode2Ip).srcPort(kNode2NodePort);
  EXPECT_TRUE(samePacket(wantData.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_EQ(ctCount(), 2u);
}

// A packet to a pod without the option, or with another option, records nothing and is left to
// the stack; so is the pod's traffic to the client then.
TEST_F(DsrTest, BackendNodeIgnoresPacketsWithoutTheOption) {
  const Bytes plain = fromNode2Tcp(kTcpSyn, false).build();
  RunResult r = fromNetdev(plain);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(plain, r.out));
  PacketBuilder other = fromNode2Tcp(kTcpSyn, false);
  other.ipOptions({0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00});  // router alert + NOPs
  r = fromNetdev(other.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_EQ(ctCount(), 0u);
  const Bytes reply = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build();
  r = toNetdev(reply);
  EXPECT_TRUE(samePacket(reply, r.out));
}

// A new SYN on a recorded tuple starts over with the frontend its option names.
TEST_F(DsrTest, BackendNodeSynReplacesRecordedFlow) {
  ASSERT_EQ(fromNetdev(fromNode2Tcp(kTcpSyn, true).build()).verdict, TC_ACT_OK);
  PacketBuilder again = fromNode2Tcp(kTcpSyn, false);
  again.ipOptions({0x9a, 0x08, 0x00, 0x50, 0xc0, 0xa8, 0x0a, 0xf0});  // 192.168.10.240:80
  ASSERT_EQ(fromNetdev(again.build()).verdict, TC_ACT_OK);
  auto rev = ct(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(rev);
  EXPECT_EQ(rev->nat_saddr, ip("192.168.10.240"));
  EXPECT_EQ(ntohs(rev->nat_sport), 80);
  EXPECT_EQ(ctCount(), 2u);
}

// UDP on the backend node: each datagram carries the option; the first records the flow, the
// replies get the frontend as their source.
TEST_F(DsrTest, BackendNodeUdpRepliesGetFrontendSource) {
  auto datagram = [] {
    PacketBuilder b = clientUdp(kClientPort);
    b.eth(kNode2Mac, kEns192Mac).ipDst(kLocalPodA).dstPort(kBackendPort).ttl(63).ipOptions(kOptNode2);
    return b.build();
  };
  for (int i = 0; i < 2; ++i) {
    const Bytes in = datagram();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(in, r.out));
  }
  PacketBuilder reply;
  reply.eth(kEns192Mac, kClientMac).ipv4(kLocalPodA, kClientIp).udp(kBackendPort, kClientPort).payload("pong");
  RunResult r = toNetdev(reply.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = reply;
  want.ipSrc(kNode2Ip).srcPort(kNode2NodePort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_TRUE(ct(backendFwdKey(IPPROTO_UDP)));
  EXPECT_EQ(ctCount(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Hybrid and SNAT modes

// Hybrid: TCP goes by DSR, UDP through SNAT to the node (no option, a reply entry).
TEST_F(DsrHybridTest, TcpByDsrUdpBySnat) {
  remoteTcpService();
  remoteUdpService();
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(dsrForwarded(syn, kOptNodePort).build(), r.out));

  const PacketBuilder d = clientUdp(kClientPort + 1);
  r = fromNetdev(d.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort + 1, kClientIp, kUdpNodePort, IPPROTO_UDP));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_SNAT | NP_CT_F_REDIRECT);
  const uint16_t snatPort = ntohs(fwd->nat_sport);
  PacketBuilder want = d;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_TRUE(ct(ctKey(kRemotePodA, kBackendPort, kNodeIp, snatPort, IPPROTO_UDP, NP_CT_INGRESS)))
      << "no SNAT reply entry";
}

// Hybrid still reads the option of TCP flows on the backend node side.
TEST_F(DsrHybridTest, BackendNodeRecordsTcp) {
  ASSERT_EQ(fromNetdev(fromNode2Tcp(kTcpSyn, true).build()).verdict, TC_ACT_OK);
  EXPECT_TRUE(ct(localReplyKey(kLocalPodA, kClientPort)));
}

// SNAT mode neither sends nor reads the option: remote backends are SNAT'd, an option arriving
// for a pod records nothing.
TEST_F(DsrSnatModeTest, NoOptionSentOrRead) {
  addBackend(2, kRemotePodA, kBackendPort, IPPROTO_UDP);
  setService(kUdpNodePortFe, kNodePortFlags, kUdpRevNat, {2});
  RunResult r = fromNetdev(clientUdp(kClientPort).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(np::test::parse(r.out).ip->ihl, 5);
  EXPECT_EQ(np::test::parse(r.out).ip->saddr, kNodeIp);
  const size_t before = ctCount();
  const Bytes syn = fromNode2Tcp(kTcpSyn, true).build();
  r = fromNetdev(syn);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(syn, r.out));
  EXPECT_EQ(ctCount(), before);
}

}  // namespace
}  // namespace np::bpftest
