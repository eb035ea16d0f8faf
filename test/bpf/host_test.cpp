// host.bpf.c (tc on the native device) through BPF_PROG_TEST_RUN. Each case: maps set up, input
// packet(s), expected verdict, expected output bytes, expected map side effects. Multi-packet
// behaviour (SYN then reply, SYN then ACK) is steps inside one case.
#include <arpa/inet.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "flows.h"
#include "host_fixture.h"

namespace np::bpftest {
namespace {

uint32_t podOf(uint32_t backendId, uint32_t a, uint32_t b) { return backendId == 1 ? a : b; }

// ---------------------------------------------------------------------------------------------
// NodePort, local backend

// SYN to <node IP>:<NodePort> with one local backend is DNAT'd and handed to the stack.
TEST_F(HostTest, NodePortLocalBackendSynIsDnatedToPod) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});

  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  const Bytes in = syn.build();
  const uint64_t before = monotonicNs();
  RunResult r = fromNetdev(in);
  const uint64_t after = monotonicNs();

  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = syn;
  want.ipDst(kLocalPodA).dstPort(kBackendPort);  // no SNAT, TTL and MACs untouched: the stack routes it
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  // A new flow is unconfirmed: both entries are in the embryonic table only.
  auto fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd) << "no embryonic conntrack entry client -> frontend (ingress)";
  EXPECT_FALSE(ctMain(clientKey(kClientPort))) << "an unconfirmed flow must not be in the main table";
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE);
  EXPECT_EQ(fwd->backend_id, 1u);
  EXPECT_EQ(fwd->rev_nat_id, kRevNat);
  EXPECT_EQ(fwd->nat_saddr, 0u);
  EXPECT_EQ(fwd->nat_sport, 0);
  EXPECT_EQ(fwd->nat_daddr, kLocalPodA);
  EXPECT_EQ(ntohs(fwd->nat_dport), kBackendPort);
  EXPECT_EQ(fwd->tcp_flags, kTcpSyn);
  EXPECT_EQ(fwd->packets, 1u);
  EXPECT_EQ(fwd->bytes, in.size());
  // A SYN-only flow gets the short lifetime of an unconfirmed flow.
  EXPECT_GE(fwd->expires, before + NP_CT_LIFETIME_TCP_EMBRYONIC * kSec);
  EXPECT_LE(fwd->expires, after + NP_CT_LIFETIME_TCP_EMBRYONIC * kSec);

  auto rev = ctSyn(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(rev) << "no embryonic conntrack entry backend -> client (egress)";
  EXPECT_EQ(rev->expires, fwd->expires);
  EXPECT_EQ(rev->flags, NP_CT_F_REPLY);
  EXPECT_EQ(rev->backend_id, 1u);
  EXPECT_EQ(rev->rev_nat_id, kRevNat);
  EXPECT_EQ(rev->nat_saddr, kNodeIp);
  EXPECT_EQ(ntohs(rev->nat_sport), kNodePort);
  EXPECT_EQ(rev->nat_daddr, 0u);
  EXPECT_EQ(rev->nat_dport, 0);
  EXPECT_EQ(rev->packets, 0u);
  EXPECT_EQ(ctSynCount(), 2u);
  EXPECT_EQ(ctMainCount(), 0u);

  np_metric fwdCount = metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED);
  EXPECT_EQ(fwdCount.packets, 1u);
  EXPECT_EQ(fwdCount.bytes, in.size());
}

// The local pod's reply leaves through tc egress with the frontend as its source.
TEST_F(HostTest, NodePortLocalBackendReplyGetsFrontendSource) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);

  const PacketBuilder synAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  const Bytes in = synAck.build();
  RunResult r = toNetdev(in);

  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = synAck;
  want.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  auto rev = ct(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(rev);
  EXPECT_EQ(rev->packets, 1u);
  EXPECT_EQ(rev->bytes, in.size());
  EXPECT_EQ(rev->tcp_flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_METRIC_FORWARDED).packets, 1u);

  // The client's ACK with data follows the same translation; the pod's data reply too.
  const PacketBuilder ack = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  r = fromNetdev(ack.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantAck = ack;
  wantAck.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(wantAck.build(), r.out));

  const PacketBuilder data = localPodTcp(kLocalPodA, kClientPort, kTcpAck | kTcpPsh);
  r = toNetdev(data.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantData = data;
  wantData.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(wantData.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  // Traffic of the same pod to another client port is not this flow's: untouched.
  const Bytes other = localPodTcp(kLocalPodA, kClientPort + 1, kTcpAck).build();
  r = toNetdev(other);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(other, r.out));
  EXPECT_EQ(ctCount(), 2u);
}

// ---------------------------------------------------------------------------------------------
// NodePort, remote backend (SNAT mode): DNAT + SNAT to the node, sent back out through the FIB.

// Forward path and reply path of a flow to a pod on node 2.
TEST_F(HostTest, NodePortRemoteBackendIsSnatedAndRedirected) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});

  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  const Bytes in = syn.build();
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);

  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd) << "no conntrack entry client -> frontend (ingress)";
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_SNAT | NP_CT_F_REDIRECT);
  EXPECT_EQ(fwd->backend_id, 1u);
  EXPECT_EQ(fwd->rev_nat_id, kRevNat);
  EXPECT_EQ(fwd->nat_saddr, kNodeIp);
  EXPECT_EQ(fwd->nat_daddr, kRemotePodA);
  EXPECT_EQ(ntohs(fwd->nat_dport), kBackendPort);
  const uint16_t snatPort = ntohs(fwd->nat_sport);
  EXPECT_GE(snatPort, kSnatMin);
  EXPECT_LE(snatPort, kSnatMax);

  // The MAC rewrite is the program's own bpf_skb_store_bytes(), so data_out shows it.
  PacketBuilder want = syn;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  auto rev = ct(remoteReplyKey(kRemotePodA, snatPort));
  ASSERT_TRUE(rev) << "no conntrack entry backend -> node:" << snatPort << " (ingress)";
  EXPECT_EQ(rev->flags, NP_CT_F_REPLY | NP_CT_F_SNAT | NP_CT_F_REDIRECT);
  EXPECT_EQ(rev->backend_id, 1u);
  EXPECT_EQ(rev->nat_saddr, kNodeIp);
  EXPECT_EQ(ntohs(rev->nat_sport), kNodePort);
  EXPECT_EQ(rev->nat_daddr, kClientIp);
  EXPECT_EQ(ntohs(rev->nat_dport), kClientPort);
  EXPECT_EQ(ctCount(), 2u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 1u);

  // The redirected packet passes tc egress of ens192 on its way out: nothing to do there.
  const Bytes redirected = r.out;
  r = toNetdev(redirected);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(redirected, r.out));

  // The backend's reply comes back to the node's SNAT port and goes to the client as the frontend.
  const PacketBuilder synAck = remotePodTcp(kRemotePodA, snatPort, kTcpSyn | kTcpAck);
  r = fromNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder wantReply = synAck;
  wantReply.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(wantReply.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  rev = ct(remoteReplyKey(kRemotePodA, snatPort));
  ASSERT_TRUE(rev);
  EXPECT_EQ(rev->packets, 1u);
  EXPECT_EQ(rev->tcp_flags, kTcpSyn | kTcpAck);
  EXPECT_EQ(ctCount(), 2u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 2u);
}

// A client port inside the SNAT range that no flow uses is kept (nat.h: np_snat_alloc).
TEST_F(HostTest, NodePortRemoteBackendSnatKeepsFreeClientPort) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(ntohs(fwd->nat_sport), kClientPort);
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kClientPort);
}

// A client port outside the SNAT range (here: a privileged one) is replaced by one inside it.
TEST_F(HostTest, NodePortRemoteBackendSnatReplacesPortOutsideRange) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const PacketBuilder syn = clientTcp(1023, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(1023));
  ASSERT_TRUE(fwd);
  const uint16_t snatPort = ntohs(fwd->nat_sport);
  EXPECT_GE(snatPort, kSnatMin);
  EXPECT_LE(snatPort, kSnatMax);
  PacketBuilder want = syn;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(ct(remoteReplyKey(kRemotePodA, snatPort)));
}

// Two clients with the same source port to the same backend get different SNAT ports, and each
// reply finds its own client.
TEST_F(HostTest, NodePortRemoteBackendSnatPortCollisionPicksAnother) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn, kClientIp).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn, kClient2Ip).build()).verdict, TC_ACT_REDIRECT);
  auto f1 = ct(clientKey(kClientPort, kClientIp));
  auto f2 = ct(clientKey(kClientPort, kClient2Ip));
  ASSERT_TRUE(f1 && f2);
  const uint16_t p1 = ntohs(f1->nat_sport), p2 = ntohs(f2->nat_sport);
  EXPECT_EQ(p1, kClientPort);
  EXPECT_NE(p2, p1);
  EXPECT_GE(p2, kSnatMin);
  EXPECT_LE(p2, kSnatMax);
  EXPECT_EQ(ctCount(), 4u);

  // Client 1 is a known neighbour: full rewrite including MACs.
  const PacketBuilder reply1 = remotePodTcp(kRemotePodA, p1, kTcpSyn | kTcpAck);
  RunResult r = fromNetdev(reply1.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder want1 = reply1;
  want1.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(want1.build(), r.out));

  // Client 2 has no neighbour entry yet: bpf_redirect_neigh() resolves it when the packet is
  // sent, so the MACs in data_out stay as they came in.
  const PacketBuilder reply2 = remotePodTcp(kRemotePodA, p2, kTcpSyn | kTcpAck);
  r = fromNetdev(reply2.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder want2 = reply2;
  want2.ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClient2Ip).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(want2.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
}

// A backend behind a node whose MAC is not resolved yet: still redirected (bpf_redirect_neigh),
// with L3/L4 translated; the L2 header is filled in at transmit time, after data_out is taken.
TEST_F(HostTest, NodePortRemoteBackendUnresolvedNeighbourIsRedirected) {
  addBackend(1, kUnresolvedPod, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_SNAT | NP_CT_F_REDIRECT);
  PacketBuilder want = syn;
  want.ipSrc(kNodeIp).srcPort(ntohs(fwd->nat_sport)).ipDst(kUnresolvedPod).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
}

// The node forwards remote-backend traffic itself, so it owns the TTL check.
TEST_F(HostTest, NodePortRemoteBackendTtlExpiredIsDropped) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.ttl(1);
  const Bytes in = syn.build();
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_TTL_EXCEEDED);
  EXPECT_EQ(m.packets, 1u);
  EXPECT_EQ(m.bytes, in.size());
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
}

// GRO on the node's device (on by default on a real NIC) hands tc one skb for a burst of a
// flow's segments, longer than the MTU. The route lookup must take it as the segments it leaves
// as: a flow to a remote backend stalled on its first write larger than a segment when it did not
// (the lookup answered "fragmentation needed" and the packet was dropped, reason 169). A packet
// that is not GSO and longer than the device's MTU still cannot leave, nor can segments longer
// than it.
TEST_F(HostTest, NodePortRemoteBackendGroPacketIsRedirected) {
  // The route cache is per CPU: every run on one CPU, so the warm slot is the one looked at.
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof(before), &before), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  struct Unpin {
    cpu_set_t mask;
    ~Unpin() { EXPECT_EQ(sched_setaffinity(0, sizeof(mask), &mask), 0); }
  } unpin{before};
  const uint16_t snatPort = startRemoteFlow();
  ASSERT_NE(snatPort, 0);

  // A segment that fits first: its route is kept (lib/fib.h) with the length it was checked with.
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_REDIRECT);

  PacketBuilder data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  data.payload(std::string(2 * 1448, 'x'));
  const Bytes in = data.build();
  ASSERT_GT(in.size(), 1514u);

  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_SHOT) << "a packet longer than the MTU, not GSO, cannot leave as it is";
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_FIB_LOOKUP_FAILED).packets, 1u);

  r = fromNetdevGso(in, 1448);
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder want = data;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_FIB_LOOKUP_FAILED).packets, 1u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 3u);

  // Its segments are what the route's MTU is checked with: 1480-byte segments (1520 bytes with
  // their headers) do not fit a 1500-byte MTU, whole or cached.
  r = fromNetdevGso(in, 1480);
  EXPECT_EQ(r.verdict, TC_ACT_SHOT) << "GSO segments longer than the MTU went out";
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_FIB_LOOKUP_FAILED).packets, 2u);
}

// An established flow's route is kept for a short time (lib/fib.h, NP_FIB_CACHE_NS), not for
// good: when the next hop's MAC changes, the flow's packets follow it within a second.
TEST_F(HostTest, NodePortRemoteBackendFollowsNeighbourChange) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_REDIRECT);
  const Bytes ack = clientTcp(kClientPort, kTcpAck).build();
  auto dmac = [](const RunResult& r) {
    MacAddr m{};
    if (r.out.size() >= m.size()) std::copy_n(r.out.begin(), m.size(), m.begin());
    return m;
  };
  RunResult r = fromNetdev(ack);
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(dmac(r), kNode2Mac);

  const MacAddr moved = np::test::mac("02:00:00:0a:02:99");
  auto setNode2Mac = [](const MacAddr& m) {
    return std::system(("ip neigh replace 192.168.10.101 lladdr " + np::test::macToString(m) +
                        " dev ens192 nud permanent").c_str());
  };
  struct Restore {
    decltype(setNode2Mac)& set;
    ~Restore() { EXPECT_EQ(set(kNode2Mac), 0) << "node 2's neighbour entry not restored"; }
  } restore{setNode2Mac};
  ASSERT_EQ(setNode2Mac(moved), 0);

  const auto start = std::chrono::steady_clock::now();
  bool followed = false;
  while (!followed && std::chrono::steady_clock::now() - start < std::chrono::seconds(1)) {
    r = fromNetdev(ack);
    ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
    followed = dmac(r) == moved;
    if (!followed) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval
  }
  EXPECT_TRUE(followed) << "the flow still goes to node 2's old MAC a second after it changed";
  EXPECT_TRUE(checksumsOk(r.out));
}

// ---------------------------------------------------------------------------------------------
// Conntrack: stickiness and selection

// Every later packet of a flow goes to the backend and SNAT port its SYN got.
TEST_F(HostTest, ConntrackKeepsFlowOnBackendAndSnatPort) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kRemotePodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1, 2});

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  const uint32_t backend = fwd->backend_id;
  ASSERT_TRUE(backend == 1 || backend == 2) << backend;
  const uint32_t pod = podOf(backend, kRemotePodA, kRemotePodB);
  const uint16_t snatPort = ntohs(fwd->nat_sport);
  ASSERT_EQ(fromNetdev(remotePodTcp(pod, snatPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);

  for (int i = 0; i < 10; ++i) {
    PacketBuilder ack = clientTcp(kClientPort, kTcpAck | kTcpPsh);
    ack.seq(1001 + 100 * i);
    r = fromNetdev(ack.build());
    EXPECT_EQ(r.verdict, TC_ACT_REDIRECT) << "packet " << i;
    PacketBuilder want = ack;
    want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(pod).dstPort(kBackendPort).ttl(63);
    EXPECT_TRUE(samePacket(want.build(), r.out)) << "packet " << i;
  }
  // The handshake's ACK confirmed the flow: it lives in the main table now.
  fwd = ctMain(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->backend_id, backend);
  EXPECT_EQ(fwd->packets, 11u);
  EXPECT_EQ(fwd->flags,
            NP_CT_F_SERVICE | NP_CT_F_SNAT | NP_CT_F_REDIRECT | NP_CT_F_SEEN_NON_SYN | NP_CT_F_REPLY_SEEN);
  EXPECT_EQ(fwd->tcp_flags, kTcpSyn | kTcpAck | kTcpPsh);
  // Established: the long lifetime.
  EXPECT_GT(fwd->expires, monotonicNs() + (NP_CT_LIFETIME_TCP - 5) * kSec);
  EXPECT_EQ(ctMainCount(), 2u);
  EXPECT_EQ(ctSynCount(), 0u);

  const PacketBuilder reply = remotePodTcp(pod, snatPort, kTcpAck | kTcpPsh);
  r = fromNetdev(reply.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder wantReply = reply;
  wantReply.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(wantReply.build(), r.out));
}

// New flows are spread over all selectable backends.
TEST_F(HostTest, NodePortLocalBackendsNewFlowsSpreadOverBackends) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1, 2});

  std::map<uint32_t, int> hits;
  for (uint16_t i = 0; i < 50; ++i) {
    const uint16_t port = static_cast<uint16_t>(41000 + i);
    const PacketBuilder syn = clientTcp(port, kTcpSyn);
    RunResult r = fromNetdev(syn.build());
    ASSERT_EQ(r.verdict, TC_ACT_OK) << "flow " << i;
    auto fwd = ct(clientKey(port));
    ASSERT_TRUE(fwd) << "flow " << i;
    ASSERT_TRUE(fwd->backend_id == 1 || fwd->backend_id == 2) << fwd->backend_id;
    PacketBuilder want = syn;
    want.ipDst(podOf(fwd->backend_id, kLocalPodA, kLocalPodB)).dstPort(kBackendPort);
    ASSERT_TRUE(samePacket(want.build(), r.out)) << "flow " << i;
    ASSERT_TRUE(ct(localReplyKey(podOf(fwd->backend_id, kLocalPodA, kLocalPodB), port))) << "flow " << i;
    ++hits[fwd->backend_id];
  }
  // P(all 50 on one backend) = 2^-49 with a uniform choice.
  EXPECT_GT(hits[1], 0) << "backend 1 never chosen";
  EXPECT_GT(hits[2], 0) << "backend 2 never chosen";
  EXPECT_EQ(ctCount(), 100u);
}

// ---------------------------------------------------------------------------------------------
// Drops with a reason

// A service without backends drops with SERVICE_BACKEND_NOT_FOUND, counted once.
TEST_F(HostTest, NodePortNoBackendIsDropped) {
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {});
  const Bytes in = clientTcp(kClientPort, kTcpSyn).build();
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_NO_SERVICE_BACKEND);
  EXPECT_EQ(m.packets, 1u);
  EXPECT_EQ(m.bytes, in.size());
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_DROP_NO_SERVICE_BACKEND).packets, 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_EQ(ctCount(), 0u);
}

// A ClusterIP is not reachable from outside the node.
TEST_F(HostTest, NodePortClusterIpFromOutsideIsDropped) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService({kClusterIp, 80, IPPROTO_TCP}, 0, 9, {1});
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.ipDst(kClusterIp).dstPort(80);
  const Bytes in = syn.build();
  RunResult r = fromNetdev(in);
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_IS_CLUSTER_IP);
  EXPECT_EQ(m.packets, 1u);
  EXPECT_EQ(m.bytes, in.size());
  EXPECT_EQ(ctCount(), 0u);
}

// IPv4 cut inside its header (here: inside the options of an ihl-7 header, see the next
// case for the fixed part) is dropped as truncated before any service lookup; egress lets it be.
TEST_F(HostTest, TruncatedIpv4HeaderIsDropped) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const Bytes options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};
  uint64_t bytes = 0;
  for (size_t cut : {14 + 20, 14 + 24, 14 + 27}) {
    PacketBuilder p = clientTcp(kClientPort, kTcpSyn);
    p.ipOptions(options).truncate(cut);
    const Bytes in = p.build();
    bytes += in.size();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_SHOT) << "cut at " << cut << "\n" << np::test::hexdump(in);

    r = toNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(in, r.out));
  }
  np_metric m = metric(NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
  EXPECT_EQ(m.packets, 3u);
  EXPECT_EQ(m.bytes, bytes);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_DROP_TRUNCATED_HEADER).packets, 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_EQ(ctCount(), 0u);
}

// TCP cut inside the TCP header, with and without IP options, is dropped as truncated.
TEST_F(HostTest, TruncatedTcpHeaderIsDropped) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const Bytes options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};
  PacketBuilder inTcp = clientTcp(kClientPort, kTcpSyn);
  inTcp.truncate(14 + 20 + 10);
  PacketBuilder inTcpWithOptions = clientTcp(kClientPort, kTcpSyn);
  inTcpWithOptions.ipOptions(options).truncate(14 + 28 + 19);

  for (const PacketBuilder* p : {&inTcp, &inTcpWithOptions}) {
    const Bytes in = p->build();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_SHOT) << np::test::hexdump(in);
  }
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER).packets, 2u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_EQ(ctCount(), 0u);
}

TEST_F(HostTest, TruncatedUdpHeaderIsDropped) {
  addBackend(1, kLocalPodA, 53, IPPROTO_UDP);
  setService({kNodeIp, 30053, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  PacketBuilder cut;
  cut.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).udp(kClientPort, 30053).payload("q").truncate(14 + 20 + 4);
  EXPECT_EQ(fromNetdev(cut.build()).verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER).packets, 1u);
  EXPECT_EQ(ctCount(), 0u);
}

// Frames that are not IPv4 are not ours, however short: passed untouched, nothing counted.
TEST_F(HostTest, TruncatedNonIpFramesPassUntouched) {
  PacketBuilder ethOnly;
  ethOnly.eth(kClientMac, kEns192Mac).ethertype(0x88b5);  // IEEE local experimental, no payload
  PacketBuilder arp;
  arp.arpRequest(kClientMac, kClientIp, kNodeIp);
  PacketBuilder shortArp = arp;
  shortArp.truncate(20);

  for (const PacketBuilder* p : {&ethOnly, &arp, &shortArp}) {
    const Bytes in = p->build();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(in, r.out));
    r = toNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(in, r.out));
  }
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER).packets, 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_INVALID_PACKET).packets, 0u);
  EXPECT_EQ(ctCount(), 0u);
}

// Traffic to the node that is no service's passes untouched and leaves no state.
TEST_F(HostTest, NotAServicePassesUntouched) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});

  PacketBuilder ssh = clientTcp(kClientPort, kTcpSyn, kClientIp, 22);
  PacketBuilder otherNodePort = clientTcp(kClientPort, kTcpSyn, kClientIp, kNodePort + 1);
  PacketBuilder udpSamePort;  // the service is TCP only
  udpSamePort.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).udp(kClientPort, kNodePort).payload("x");
  for (const PacketBuilder* p : {&ssh, &otherNodePort, &udpSamePort}) {
    const Bytes in = p->build();
    RunResult r = fromNetdev(in);
    EXPECT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_TRUE(samePacket(in, r.out));
  }
  // The node's own reply leaves untouched too.
  PacketBuilder sshReply;
  sshReply.eth(kEns192Mac, kClientMac).ipv4(kNodeIp, kClientIp).tcp(22, kClientPort, kTcpSyn | kTcpAck);
  const Bytes reply = sshReply.build();
  RunResult r = toNetdev(reply);
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(reply, r.out));

  EXPECT_EQ(ctCount(), 0u);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
  EXPECT_EQ(metric(NP_METRIC_EGRESS, NP_METRIC_FORWARDED).packets, 0u);
}

// ---------------------------------------------------------------------------------------------
// Graceful termination

// A terminating backend keeps its flows but gets no new ones; once it is deleted, its
// flows move to a live backend.
TEST_F(HostTest, TerminatingBackendDrainsThenFlowsMove) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_TRUE(ctMain(clientKey(kClientPort))) << "the handshake confirms the flow";
  ASSERT_TRUE(ct(clientKey(kClientPort)));
  ASSERT_EQ(ct(clientKey(kClientPort))->backend_id, 1u);

  // A terminates: B is the only selectable slot, A stays behind it for draining.
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP, NP_BACKEND_TERMINATING);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2}, {1});

  const PacketBuilder ack = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  RunResult r = fromNetdev(ack.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toA = ack;
  toA.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toA.build(), r.out)) << "the existing flow must stay on the terminating backend";

  const PacketBuilder syn2 = clientTcp(kClientPort + 1, kTcpSyn);
  r = fromNetdev(syn2.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toB = syn2;
  toB.ipDst(kLocalPodB).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toB.build(), r.out)) << "a new flow must not go to the terminating backend";
  ASSERT_TRUE(ct(clientKey(kClientPort + 1)));
  EXPECT_EQ(ct(clientKey(kClientPort + 1))->backend_id, 2u);

  // A is gone (agent order: service slots first, then the backend).
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2});
  removeBackend(1);
  r = fromNetdev(ack.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder movedToB = ack;
  movedToB.ipDst(kLocalPodB).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(movedToB.build(), r.out)) << "the flow of a deleted backend must be re-balanced";
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->backend_id, 2u);
  EXPECT_EQ(fwd->nat_daddr, kLocalPodB);
  auto rev = ct(localReplyKey(kLocalPodB, kClientPort));
  ASSERT_TRUE(rev) << "B's replies need their reverse entry";
  EXPECT_EQ(rev->nat_saddr, kNodeIp);
  EXPECT_EQ(ntohs(rev->nat_sport), kNodePort);

  const PacketBuilder fromB = localPodTcp(kLocalPodB, kClientPort, kTcpAck);
  r = toNetdev(fromB.build());
  PacketBuilder wantFromB = fromB;
  wantFromB.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(wantFromB.build(), r.out));
}

// A new connection (SYN) that reuses the tuple of a flow on a terminating backend goes to a live
// backend, even though the old entry is still there.
TEST_F(HostTest, TerminatingBackendGetsNoNewConnectionOnReusedTuple) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_TRUE(ctMain(clientKey(kClientPort))) << "the handshake confirms the flow";

  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP, NP_BACKEND_TERMINATING);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2}, {1});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toB = syn;
  toB.ipDst(kLocalPodB).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toB.build(), r.out));
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->backend_id, 2u);
  EXPECT_EQ(fwd->tcp_flags, kTcpSyn) << "the entry must describe the new connection";
}

// ---------------------------------------------------------------------------------------------
// UDP and IP options

// UDP to a NodePort with a local backend, both directions; a zero (absent) UDP checksum
// stays zero through the rewrites.
TEST_F(HostTest, NodePortUdpLocalBackendIsDnated) {
  constexpr uint16_t kUdpNodePort = 30053, kDnsPort = 5353;
  addBackend(1, kLocalPodA, kDnsPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});

  PacketBuilder query;
  query.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(77).udp(kClientPort, kUdpNodePort)
      .payload("\x12\x34\x01\x00\x00\x01 query");
  const uint64_t before = monotonicNs();
  RunResult r = fromNetdev(query.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = query;
  want.ipDst(kLocalPodA).dstPort(kDnsPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_NE(np::test::parse(r.out).udp->check, 0) << "a real UDP checksum must never become 0";

  auto fwd = ctSyn(clientKey(kClientPort, kClientIp, kUdpNodePort, IPPROTO_UDP));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE);
  EXPECT_EQ(fwd->tcp_flags, 0);
  EXPECT_GE(fwd->expires, before + NP_CT_LIFETIME_NONTCP_EMBRYONIC * kSec);
  ASSERT_TRUE(ct(localReplyKey(kLocalPodA, kClientPort, kDnsPort, IPPROTO_UDP)));

  PacketBuilder answer;
  answer.eth(kEns192Mac, kClientMac).ipv4(kLocalPodA, kClientIp).ipId(78).udp(kDnsPort, kClientPort)
      .payload("\x12\x34\x81\x80 answer");
  r = toNetdev(answer.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantAnswer = answer;
  wantAnswer.ipSrc(kNodeIp).srcPort(kUdpNodePort);
  EXPECT_TRUE(samePacket(wantAnswer.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  // Checksum 0 means "none": it must stay 0 (not become a wrong non-zero sum), both ways.
  PacketBuilder noSum = query;
  noSum.srcPort(kClientPort + 1).l4Checksum(0);
  r = fromNetdev(noSum.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantNoSum = noSum;
  wantNoSum.ipDst(kLocalPodA).dstPort(kDnsPort);
  EXPECT_TRUE(samePacket(wantNoSum.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));

  PacketBuilder answerNoSum = answer;
  answerNoSum.dstPort(kClientPort + 1).l4Checksum(0);
  r = toNetdev(answerNoSum.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantAnswerNoSum = answerNoSum;
  wantAnswerNoSum.ipSrc(kNodeIp).srcPort(kUdpNodePort);
  EXPECT_TRUE(samePacket(wantAnswerNoSum.build(), r.out));
}

// IPv4 options (ihl 7) move the L4 header; the ports and checksums are rewritten there.
TEST_F(HostTest, NodePortIpOptionsAreTranslated) {
  const Bytes options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};  // router alert, NOPs, EOL
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  setService({kNodeIp, kNodePort + 1, IPPROTO_TCP}, kNodePortFlags, kRevNat + 1, {2});

  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.ipOptions(options);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = syn;
  want.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
  EXPECT_EQ(np::test::parse(r.out).ip->ihl, 7);

  PacketBuilder synRemote = clientTcp(kClientPort, kTcpSyn, kClientIp, kNodePort + 1);
  synRemote.ipOptions(options);
  r = fromNetdev(synRemote.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort, kClientIp, kNodePort + 1));
  ASSERT_TRUE(fwd);
  PacketBuilder wantRemote = synRemote;
  wantRemote.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(ntohs(fwd->nat_sport)).ipDst(kRemotePodA)
      .dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(wantRemote.build(), r.out));
  EXPECT_TRUE(checksumsOk(r.out));
}

// ---------------------------------------------------------------------------------------------
// Conntrack: connection close and reuse of a tuple

// FIN both ways: a SYN on the tuple of a closed connection is a new connection: the
// backend is chosen again and both entries describe the new connection.
TEST_F(HostTest, ConntrackFinBothWaysThenSynReselects) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpFin | kTcpAck).build()).verdict, TC_ACT_OK);
  RunResult r = toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpFin | kTcpAck).build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_EQ(np::test::parse(r.out).ip->saddr, kNodeIp);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  auto closed = ct(clientKey(kClientPort));
  ASSERT_TRUE(closed);
  EXPECT_TRUE(closed->flags & NP_CT_F_CLOSING);
  EXPECT_LE(closed->expires, monotonicNs() + NP_CT_LIFETIME_TCP_CLOSE * kSec);

  // A leaves this service (still a live backend elsewhere): a re-selection can only pick B.
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toB = syn;
  toB.ipDst(kLocalPodB).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toB.build(), r.out)) << "a SYN on a closed flow must pick a backend again";
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->backend_id, 2u);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE) << "reopened: no CLOSING/SEEN_NON_SYN left over";
  EXPECT_EQ(fwd->tcp_flags, kTcpSyn);
  EXPECT_EQ(fwd->packets, 1u);

  const PacketBuilder synAck = localPodTcp(kLocalPodB, kClientPort, kTcpSyn | kTcpAck);
  r = toNetdev(synAck.build());
  PacketBuilder wantSynAck = synAck;
  wantSynAck.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(wantSynAck.build(), r.out));
}

// RST from the client: the same.
TEST_F(HostTest, ConntrackClientRstThenSynReselects) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_TRUE(ctMain(clientKey(kClientPort))) << "the handshake confirms the flow";
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpRst).build()).verdict, TC_ACT_OK);
  ASSERT_TRUE(ct(clientKey(kClientPort)));
  ASSERT_TRUE(ct(clientKey(kClientPort))->flags & NP_CT_F_CLOSING);

  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toB = syn;
  toB.ipDst(kLocalPodB).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toB.build(), r.out));
  ASSERT_TRUE(ct(clientKey(kClientPort)));
  EXPECT_EQ(ct(clientKey(kClientPort))->backend_id, 2u);
}

// Counterpart: a SYN on an open flow (a retransmission) is not a new connection and stays put.
TEST_F(HostTest, ConntrackSynOnOpenFlowStaysOnBackend) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kLocalPodB, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);

  setService(kTcpNodePort, kNodePortFlags, kRevNat, {2});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  RunResult r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toA = syn;
  toA.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toA.build(), r.out));
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->backend_id, 1u);
  EXPECT_EQ(fwd->packets, 2u);
}

// RST from the backend: the backend resets the connection; the client connects again
// from the same port after the close timeout (a client behind a NAT, or one that binds its
// port). The new connection must work: its SYN-ACK must reach the client as the frontend.
TEST_F(HostTest, ConntrackBackendRstThenSynOnSameTupleWorks) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  RunResult r = toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpRst | kTcpAck).build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  ASSERT_EQ(np::test::parse(r.out).ip->saddr, kNodeIp) << "the RST itself is translated";

  advanceClock(NP_CT_LIFETIME_TCP_CLOSE + 1);
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  r = fromNetdev(syn.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder toA = syn;
  toA.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(toA.build(), r.out));

  const PacketBuilder synAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  r = toNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantSynAck = synAck;
  wantSynAck.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(wantSynAck.build(), r.out))
      << "the new connection's SYN-ACK left with the backend's address: the client cannot connect";
}

// The same with a remote backend: the backend's RST arrives on ingress; the client's new SYN on
// the same tuple after the close timeout must get an answer.
TEST_F(HostTest, ConntrackRemoteBackendRstThenSynOnSameTupleWorks) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  uint16_t snatPort = ntohs(fwd->nat_sport);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, snatPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, snatPort, kTcpRst | kTcpAck).build()).verdict, TC_ACT_REDIRECT);

  advanceClock(NP_CT_LIFETIME_TCP_CLOSE + 1);
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  fwd = ct(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  snatPort = ntohs(fwd->nat_sport);
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, snatPort);

  const PacketBuilder synAck = remotePodTcp(kRemotePodA, snatPort, kTcpSyn | kTcpAck);
  r = fromNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT) << "the backend's SYN-ACK was not recognised as a reply";
  PacketBuilder want = synAck;
  want.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(want.build(), r.out));
}

// A UDP flow lives as long as either side talks: a client that keeps sending keeps the
// backend's replies translated too.
TEST_F(HostTest, ConntrackUdpFlowKeptAliveByClientTranslatesLateReply) {
  constexpr uint16_t kUdpNodePort = 30053, kPodPort = 5353;
  addBackend(1, kLocalPodA, kPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  PacketBuilder dgram;
  dgram.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).udp(kClientPort, kUdpNodePort).payload("tick");
  PacketBuilder reply;
  reply.eth(kEns192Mac, kClientMac).ipv4(kLocalPodA, kClientIp).udp(kPodPort, kClientPort).payload("tock");
  PacketBuilder wantReply = reply;
  wantReply.ipSrc(kNodeIp).srcPort(kUdpNodePort);

  ASSERT_EQ(fromNetdev(dgram.build()).verdict, TC_ACT_OK);
  RunResult r = toNetdev(reply.build());
  ASSERT_TRUE(samePacket(wantReply.build(), r.out));
  // The client sends every 40 s (within the 60 s UDP lifetime) for two minutes.
  for (int i = 0; i < 3; ++i) {
    advanceClock(40);
    r = fromNetdev(dgram.build());
    ASSERT_EQ(r.verdict, TC_ACT_OK);
    EXPECT_EQ(np::test::parse(r.out).ip->daddr, kLocalPodA);
  }
  r = toNetdev(reply.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_TRUE(samePacket(wantReply.build(), r.out))
      << "the backend's reply left untranslated while the flow was alive";
}

// The remote-backend flow of a client that reconnects from the same port after the backend reset
// it must not share its SNAT port with another client: the backend's replies would reach the
// wrong client.
TEST_F(HostTest, ConntrackSnatPortNotReusedWhileFlowUsesIt) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn, kClientIp).build()).verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort, kClientIp));
  ASSERT_TRUE(fwd);
  const uint16_t p1 = ntohs(fwd->nat_sport);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, p1, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck, kClientIp).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, p1, kTcpRst | kTcpAck).build()).verdict, TC_ACT_REDIRECT);

  advanceClock(NP_CT_LIFETIME_TCP_CLOSE + 1);
  // Another client, same source port: it asks for the same SNAT port first.
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn, kClient2Ip).build()).verdict, TC_ACT_REDIRECT);
  auto fwd2 = ct(clientKey(kClientPort, kClient2Ip));
  ASSERT_TRUE(fwd2);
  const uint16_t p2 = ntohs(fwd2->nat_sport);

  // The first client reconnects from its old port.
  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn, kClientIp).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  const uint16_t q1 = np::test::parse(r.out).tcp->sport;
  EXPECT_NE(q1, p2) << "two live flows to " << np::test::ipToString(kRemotePodA) << " leave with SNAT port " << p2;

  // The backend answers the first client's SYN: the answer must reach the first client.
  r = fromNetdev(remotePodTcp(kRemotePodA, q1, kTcpSyn | kTcpAck).build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto reply = np::test::parse(r.out);
  ASSERT_TRUE(reply.ip);
  EXPECT_EQ(np::test::ipToString(reply.ip->daddr), np::test::ipToString(kClientIp))
      << "the backend's reply to client 1 was delivered to another client";
}

// A UDP flow lives as long as either side talks: a backend that keeps sending keeps the
// client's later datagrams on the same backend and SNAT port (the backend sees one peer), before
// the flow is confirmed (pushes within the 30 s of an unconfirmed flow) and after (within 60 s).
TEST_F(HostTest, ConntrackUdpFlowKeptAliveByBackendKeepsSnatPort) {
  constexpr uint16_t kUdpNodePort = 30053, kPodPort = 5353;
  addBackend(1, kRemotePodA, kPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  PacketBuilder dgram;
  dgram.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).udp(kClientPort, kUdpNodePort).payload("subscribe");
  RunResult r = fromNetdev(dgram.build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  const np_ct_key fwdKey = clientKey(kClientPort, kClientIp, kUdpNodePort, IPPROTO_UDP);
  auto fwd = ct(fwdKey);
  ASSERT_TRUE(fwd);
  const uint16_t snatPort = ntohs(fwd->nat_sport);

  PacketBuilder push;
  push.eth(kNode2Mac, kEns192Mac).ipv4(kRemotePodA, kNodeIp).ttl(63).udp(kPodPort, snatPort).payload("update");
  PacketBuilder wantPush = push;
  wantPush.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kUdpNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  PacketBuilder want = dgram;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kPodPort).ttl(63);

  // Unconfirmed: the backend pushes every 20 s for two minutes.
  for (int i = 0; i < 6; ++i) {
    advanceClock(20);
    r = fromNetdev(push.build());
    ASSERT_EQ(r.verdict, TC_ACT_REDIRECT) << "push " << i;
    ASSERT_TRUE(samePacket(wantPush.build(), r.out)) << "push " << i;
  }
  ASSERT_TRUE(ctSyn(fwdKey)) << "replies alone do not confirm a flow";
  r = fromNetdev(dgram.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(want.build(), r.out))
      << "the client's datagram left with another SNAT port: the backend sees a new peer";
  ASSERT_TRUE(ctMain(fwdKey)) << "the client sent after a reply: the flow is confirmed";

  // Confirmed: pushes every 40 s for two minutes.
  for (int i = 0; i < 3; ++i) {
    advanceClock(40);
    r = fromNetdev(push.build());
    ASSERT_EQ(r.verdict, TC_ACT_REDIRECT) << "confirmed push " << i;
    ASSERT_TRUE(samePacket(wantPush.build(), r.out)) << "confirmed push " << i;
  }
  r = fromNetdev(dgram.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(want.build(), r.out));
}

// ---------------------------------------------------------------------------------------------
// Metrics as the agent reads them

// The agent sums the per-CPU counters with bpf::sumPerCpu / sumPerCpuAll (agent/bpf/map.h): they
// must report what the program counted (this fixture sums the raw per-CPU values itself).
TEST_F(HostTest, MetricsAgentSumMatchesProgramCounters) {
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {});
  const Bytes in = clientTcp(kClientPort, kTcpSyn).build();
  ASSERT_EQ(fromNetdev(in).verdict, TC_ACT_SHOT);
  ASSERT_EQ(fromNetdev(in).verdict, TC_ACT_SHOT);
  const np_metric raw = metric(NP_METRIC_INGRESS, NP_DROP_NO_SERVICE_BACKEND);
  ASSERT_EQ(raw.packets, 2u);
  ASSERT_EQ(raw.bytes, 2 * in.size());

  auto agent = bpf::sumPerCpu<np_metric>(metricsFd(), (NP_METRIC_INGRESS << 8) | NP_DROP_NO_SERVICE_BACKEND);
  ASSERT_TRUE(agent.ok()) << agent.error().message();
  EXPECT_EQ(agent.value().packets, raw.packets);
  EXPECT_EQ(agent.value().bytes, raw.bytes);

  // status reads every slot in one batch: the same numbers, and nothing counted elsewhere.
  auto all = bpf::sumPerCpuAll<np_metric>(metricsFd(), NP_METRICS_MAX);
  ASSERT_TRUE(all.ok()) << all.error().message();
  ASSERT_EQ(all->size(), size_t{NP_METRICS_MAX});
  for (uint32_t idx = 0; idx < NP_METRICS_MAX; ++idx) {
    const bool counted = idx == ((NP_METRIC_INGRESS << 8) | NP_DROP_NO_SERVICE_BACKEND);
    EXPECT_EQ((*all)[idx].packets, counted ? raw.packets : 0u) << "slot " << idx;
    EXPECT_EQ((*all)[idx].bytes, counted ? raw.bytes : 0u) << "slot " << idx;
  }
}

}  // namespace
}  // namespace np::bpftest
