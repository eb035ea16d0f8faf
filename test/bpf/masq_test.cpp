// BPF masquerade (lib/masq.h) through host.bpf.c: a pod's traffic leaving 10.0.0.0/16 for a host
// that is not a node leaves ens192 with the node's address and a masquerade port; the answers come
// back to the pod. Each case: maps set up, packets in, expected verdict, bytes and conntrack.
//   Masquerade...      TCP, UDP and ICMP echo out and back, ICMP errors about a flow, exhaustion
//   MasqueradeNot...   pod to pod, pod to node, the node's own traffic, masquerade off
#include <arpa/inet.h>

#include <algorithm>
#include <optional>
#include <span>
#include <string>

#include "bpf/map.h"
#include "flows.h"
#include "host_fixture.h"

namespace np::bpftest {
namespace {

inline const uint32_t kInternetHost = ip("203.0.113.10");  // behind the lab's router
constexpr uint16_t kPodPort = 1234;  // outside the masquerade ports: always replaced
constexpr uint16_t kMasqMin = 40000, kMasqMax = 40999;
constexpr uint8_t kIcmpEchoReply = 0, kIcmpEcho = 8, kIcmpDestUnreach = 3, kCodePortUnreach = 3;

// A pod's packet as the stack sends it out of ens192 (towards the router).
PacketBuilder podOut(uint32_t dst = kInternetHost, uint32_t pod = kLocalPodA) {
  PacketBuilder b;
  b.eth(kEns192Mac, kClientMac).ipv4(pod, dst).ttl(63).ipId(0x2222).dontFragment();
  return b;
}

// The internet host's answer to the node, as it arrives from the router.
PacketBuilder fromInternet(uint32_t src = kInternetHost) {
  PacketBuilder b;
  b.eth(kClientMac, kEns192Mac).ipv4(src, kNodeIp).ttl(60).ipId(0x3333).dontFragment();
  return b;
}

// An ICMP message with its checksum: type, code, 4 bytes of header rest, data.
Bytes icmpMessage(uint8_t type, uint8_t code, uint32_t rest, const Bytes& data) {
  Bytes m(8 + data.size(), 0);  // sized once: g++ 12 warns (array-bounds) on insert into a fixed list
  m[0] = type;
  m[1] = code;
  for (int i = 0; i < 4; ++i) m[4 + i] = static_cast<uint8_t>(rest >> (24 - 8 * i));
  std::copy(data.begin(), data.end(), m.begin() + 8);
  const uint16_t c = np::test::inetChecksum(m);
  m[2] = static_cast<uint8_t>(c >> 8);
  m[3] = static_cast<uint8_t>(c);
  return m;
}

Bytes echo(uint8_t type, uint16_t id, uint16_t seq) {
  const std::string data = "ping-data";
  return icmpMessage(type, 0, uint32_t{id} << 16 | seq, Bytes(data.begin(), data.end()));
}

Bytes ipPacket(const Bytes& frame) { return Bytes(frame.begin() + 14, frame.end()); }

// The ICMP message of a frame (20-byte IPv4 header) sums to zero with its checksum.
bool icmpChecksumOk(const Bytes& frame) {
  return frame.size() > 34 && np::test::inetChecksum(std::span(frame).subspan(34)) == 0;
}

uint16_t icmpId(const Bytes& frame) { return static_cast<uint16_t>(frame[38] << 8 | frame[39]); }

class MasqueradeTest : public HostTest {
 protected:
  MasqueradeTest() { setMasquerade(kMasqMin, kMasqMax); }

  // The pod -> host entry (egress) and the port it was given.
  std::optional<np_ct_entry> podEntry(uint16_t podPort, uint16_t dport, uint8_t proto,
                                      uint32_t pod = kLocalPodA) const {
    return ct(ctKey(pod, podPort, kInternetHost, dport, proto, NP_CT_EGRESS));
  }
  void addNode(uint32_t addr, uint32_t id, uint32_t flags) {
    auto nodes = bpf::Map<uint32_t, np_node_val>::of(mapFd(NP_STR(NP_MAP_NODES)));
    ASSERT_TRUE(nodes.ok()) << nodes.error().message();
    np_node_val v{id, flags};
    ASSERT_TRUE(nodes->update(addr, v).ok());
  }
};

// A pod's TCP connection to an internet host: SYN out with the node's address and a masquerade
// port, SYN-ACK back to the pod, and the pod's ACK confirms the flow into the main table.
TEST_F(MasqueradeTest, MasqueradeTcpOutAndBack) {
  const PacketBuilder syn = podOut().tcp(kPodPort, 80, kTcpSyn).seq(100).window(64240);
  RunResult r = toNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  auto fwd = podEntry(kPodPort, 80, IPPROTO_TCP);
  ASSERT_TRUE(fwd) << "no conntrack entry pod -> host (egress)";
  EXPECT_EQ(fwd->flags & (NP_CT_F_MASQ | NP_CT_F_SNAT | NP_CT_F_REPLY), NP_CT_F_MASQ | NP_CT_F_SNAT);
  EXPECT_EQ(fwd->nat_saddr, kNodeIp);
  EXPECT_EQ(fwd->nat_daddr, 0u);
  const uint16_t port = ntohs(fwd->nat_sport);
  EXPECT_GE(port, kMasqMin);
  EXPECT_LE(port, kMasqMax);
  PacketBuilder want = syn;
  want.ipSrc(kNodeIp).srcPort(port);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const np_ct_key replyKey = ctKey(kInternetHost, 80, kNodeIp, port, IPPROTO_TCP, NP_CT_INGRESS);
  auto rev = ctSyn(replyKey);
  ASSERT_TRUE(rev) << "no embryonic reply entry host -> node:" << port;
  EXPECT_EQ(rev->flags, NP_CT_F_MASQ | NP_CT_F_REPLY);
  EXPECT_EQ(rev->nat_daddr, kLocalPodA);
  EXPECT_EQ(ntohs(rev->nat_dport), kPodPort);
  EXPECT_EQ(rev->nat_saddr, 0u);
  EXPECT_EQ(ctSynCount(), 2u);
  EXPECT_EQ(ctMainCount(), 0u);

  const PacketBuilder synAck = fromInternet().tcp(80, port, kTcpSyn | kTcpAck).seq(7000).ackSeq(101);
  r = fromNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);  // to the stack, which routes it to the pod
  PacketBuilder wantBack = synAck;
  wantBack.ipDst(kLocalPodA).dstPort(kPodPort);
  EXPECT_TRUE(samePacket(wantBack.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const PacketBuilder ack = podOut().tcp(kPodPort, 80, kTcpAck).seq(101).ackSeq(7001).payload("GET /");
  r = toNetdev(ack.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantAck = ack;
  wantAck.ipSrc(kNodeIp).srcPort(port);
  EXPECT_TRUE(samePacket(wantAck.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_TRUE(ctMain(ctKey(kLocalPodA, kPodPort, kInternetHost, 80, IPPROTO_TCP, NP_CT_EGRESS)))
      << "the confirmed flow is in the main table";
  EXPECT_TRUE(ctMain(replyKey));
  EXPECT_EQ(ctSynCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_METRIC_FORWARDED).packets, 2u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 1u);
}

// Only a SYN opens a masqueraded TCP flow; a stray segment is a counted drop, never leaked with
// the pod's address.
TEST_F(MasqueradeTest, MasqueradeStrayTcpSegmentIsDropped) {
  RunResult r = toNetdev(podOut().tcp(kPodPort, 80, kTcpAck).payload("x").build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_DROP_CT_CANT_CREATE).packets, 1u);
  EXPECT_EQ(ctCount(), 0u);
}

// UDP out and back; the pod's second datagram after the answer confirms the flow.
TEST_F(MasqueradeTest, MasqueradeUdpOutAndBack) {
  const PacketBuilder query = podOut().udp(kPodPort, 53).payload("query");
  RunResult r = toNetdev(query.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  auto fwd = podEntry(kPodPort, 53, IPPROTO_UDP);
  ASSERT_TRUE(fwd);
  const uint16_t port = ntohs(fwd->nat_sport);
  EXPECT_GE(port, kMasqMin);
  EXPECT_LE(port, kMasqMax);
  PacketBuilder want = query;
  want.ipSrc(kNodeIp).srcPort(port);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  const PacketBuilder answer = fromInternet().udp(53, port).payload("answer");
  r = fromNetdev(answer.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantBack = answer;
  wantBack.ipDst(kLocalPodA).dstPort(kPodPort);
  EXPECT_TRUE(samePacket(wantBack.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  r = toNetdev(query.build());
  EXPECT_TRUE(samePacket(want.build(), r.out)) << "the same flow keeps its port";
  EXPECT_EQ(ctMainCount(), 2u);
  EXPECT_EQ(ctSynCount(), 0u);
}

// A ping from a pod: the identifier is the port. The reply comes back with the pod's identifier
// and a valid ICMP checksum.
TEST_F(MasqueradeTest, MasqueradeIcmpEchoOutAndBack) {
  const uint16_t podId = 0x1234, seq = 1;
  const Bytes req = podOut().ipProto(np::test::kIpProtoIcmp).payload(echo(kIcmpEcho, podId, seq)).build();
  RunResult r = toNetdev(req);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  auto fwd = ct(ctKey(kLocalPodA, podId, kInternetHost, 0, IPPROTO_ICMP, NP_CT_EGRESS));
  ASSERT_TRUE(fwd) << "no conntrack entry for the echo request (identifier as source port)";
  const uint16_t id = ntohs(fwd->nat_sport);
  EXPECT_GE(id, kMasqMin);
  EXPECT_LE(id, kMasqMax);
  const Bytes wantReq =
      podOut().ipSrc(kNodeIp).ipProto(np::test::kIpProtoIcmp).payload(echo(kIcmpEcho, id, seq)).build();
  EXPECT_TRUE(samePacket(wantReq, r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_TRUE(icmpChecksumOk(r.out));
  EXPECT_EQ(icmpId(r.out), id);

  const Bytes reply = fromInternet().ipProto(np::test::kIpProtoIcmp).payload(echo(kIcmpEchoReply, id, seq)).build();
  r = fromNetdev(reply);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  const Bytes wantReply = fromInternet()
                              .ipDst(kLocalPodA)
                              .ipProto(np::test::kIpProtoIcmp)
                              .payload(echo(kIcmpEchoReply, podId, seq))
                              .build();
  EXPECT_TRUE(samePacket(wantReply, r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_TRUE(icmpChecksumOk(r.out));

  // The next request confirms the flow; its reply is found in the main table.
  r = toNetdev(podOut().ipProto(np::test::kIpProtoIcmp).payload(echo(kIcmpEcho, podId, 2)).build());
  EXPECT_EQ(icmpId(r.out), id);
  EXPECT_EQ(ctMainCount(), 2u);
  r = fromNetdev(fromInternet().ipProto(np::test::kIpProtoIcmp).payload(echo(kIcmpEchoReply, id, 2)).build());
  EXPECT_EQ(icmpId(r.out), podId);
  EXPECT_TRUE(icmpChecksumOk(r.out));

  // An echo reply for no masqueraded request (the node's own ping) is left alone.
  const Bytes own = fromInternet().ipProto(np::test::kIpProtoIcmp).payload(echo(kIcmpEchoReply, 999, 1)).build();
  r = fromNetdev(own);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(own, r.out));
}

// An ICMP error about a masqueraded UDP datagram (port unreachable from the host itself) reaches
// the pod as an error about its own datagram: outer destination, quoted source address and port,
// and every checksum.
TEST_F(MasqueradeTest, MasqueradeIcmpErrorReachesPodAsItsOwnPacket) {
  const PacketBuilder query = podOut().udp(kPodPort, 53).payload("query");
  RunResult r = toNetdev(query.build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  const Bytes sent = r.out;  // as it left the node
  const Bytes err = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(sent));
  r = fromNetdev(fromInternet().ipProto(np::test::kIpProtoIcmp).payload(err).build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  const Bytes wantErr = icmpMessage(kIcmpDestUnreach, kCodePortUnreach, 0, ipPacket(query.build()));
  EXPECT_TRUE(samePacket(
      fromInternet().ipDst(kLocalPodA).ipProto(np::test::kIpProtoIcmp).payload(wantErr).build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_TRUE(icmpChecksumOk(r.out));

  // From a router on the path (time exceeded), the outer source stays the router's.
  const Bytes ttl = icmpMessage(11, 0, 0, ipPacket(sent));
  r = fromNetdev(fromInternet(kRouterIp).ipProto(np::test::kIpProtoIcmp).payload(ttl).build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  const Bytes wantTtl = icmpMessage(11, 0, 0, ipPacket(query.build()));
  EXPECT_TRUE(samePacket(
      fromInternet(kRouterIp).ipDst(kLocalPodA).ipProto(np::test::kIpProtoIcmp).payload(wantTtl).build(), r.out));
}

// Two pods, one port each towards the same host, and a range of two ports: the third flow finds
// none and is dropped with NO_MAPPING_FOR_NAT_MASQUERADE (counted, shown in status).
class MasqueradeSmallRangeTest : public MasqueradeTest {
 protected:
  MasqueradeSmallRangeTest() { setMasquerade(kMasqMin, kMasqMin + 1); }
};

TEST_F(MasqueradeSmallRangeTest, MasqueradePortExhaustionIsACountedDrop) {
  RunResult r = toNetdev(podOut().udp(kPodPort, 53).payload("a").build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  r = toNetdev(podOut(kInternetHost, kLocalPodB).udp(kPodPort, 53).payload("b").build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  auto a = podEntry(kPodPort, 53, IPPROTO_UDP);
  auto b = podEntry(kPodPort, 53, IPPROTO_UDP, kLocalPodB);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->nat_sport, b->nat_sport);

  r = toNetdev(podOut().udp(kPodPort + 1, 53).payload("c").build());
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_DROP_NAT_NO_MAPPING).packets, 1u);
  EXPECT_EQ(ctCount(), 4u) << "the dropped flow holds nothing";

  // Another host has all the ports free.
  r = toNetdev(podOut(ip("203.0.113.11")).udp(kPodPort + 1, 53).payload("d").build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
}

// Pod to pod (another node's pod), pod to a node and pod to this node keep their addresses.
TEST_F(MasqueradeTest, MasqueradeNotPodToPodOrPodToNode) {
  addNode(kNode2Ip, 2, 0);
  for (uint32_t dst : {kRemotePodA, kNode2Ip, kNodeIp}) {
    const Bytes in = podOut(dst).tcp(kPodPort, 80, kTcpSyn).build();
    RunResult r = toNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_OK) << np::test::ipToString(dst);
    EXPECT_TRUE(samePacket(in, r.out)) << np::test::ipToString(dst);
  }
  EXPECT_EQ(ctCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_METRIC_FORWARDED).packets, 0u);
}

// The node's own traffic is not masqueraded (its source is not a pod's).
TEST_F(MasqueradeTest, MasqueradeNotNodeOwnTraffic) {
  const Bytes in = podOut(kInternetHost, kNodeIp).tcp(45000, 80, kTcpSyn).build();
  RunResult r = toNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(in, r.out));
  EXPECT_EQ(ctCount(), 0u);
}

// A local pod answering a NodePort client outside the CIDR gets the frontend as its source, as
// without masquerade: the flow's own entry wins.
TEST_F(MasqueradeTest, MasqueradeNotNodePortReplyOfLocalBackend) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  const PacketBuilder synAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  RunResult r = toNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = synAck;
  want.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_EQ(ctCount(), 2u);
}

// Masquerade off (the plain fixture): a pod's packet to the internet leaves as it is.
TEST_F(HostTest, MasqueradeNotWhenDisabled) {
  const Bytes in = podOut().tcp(kPodPort, 80, kTcpSyn).build();
  RunResult r = toNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(in, r.out));
  EXPECT_EQ(ctCount(), 0u);
}

}  // namespace
}  // namespace np::bpftest
