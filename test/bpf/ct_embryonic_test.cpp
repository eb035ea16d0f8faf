// Conntrack under a SYN flood (host.bpf.c through BPF_PROG_TEST_RUN): a new flow lives in the
// small embryonic table until its client confirms it (the handshake's ACK after the SYN-ACK),
// then moves to the main table, so unconfirmed flows only ever push out other unconfirmed flows.
// Each case: maps set up, packets in, verdicts and bytes out, both tables and np_ctstat_v1.
#include <arpa/inet.h>

#include <cstring>

#include "ct/bpf_tables.h"
#include "ct/gc.h"
#include "flows.h"
#include "host_fixture.h"

namespace np::bpftest {
namespace {

// Sources of a spoofed flood: TEST-NET-2, flow i gets its own address and port.
PacketBuilder floodSyn(uint32_t i) {
  const uint32_t src = htonl(ntohl(ip("198.51.100.0")) + (i % 256));
  return clientTcp(static_cast<uint16_t>(1024 + i / 256), kTcpSyn, src);
}

::testing::AssertionResult sameEntry(const np_ct_entry& want, const std::optional<np_ct_entry>& got) {
  if (!got) return ::testing::AssertionFailure() << "entry is gone";
  if (std::memcmp(&want, &*got, sizeof want) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "entry changed: flags " << want.flags << " -> " << got->flags << ", expires "
                                       << want.expires << " -> " << got->expires << ", packets " << want.packets
                                       << " -> " << got->packets;
}

class ConntrackTest : public HostTest {
 protected:
  // A flow to a pod on node 2 through SYN, SYN-ACK and ACK; returns its SNAT port.
  uint16_t establishRemote(uint16_t clientPort, uint32_t client = kClientIp) {
    RunResult r = fromNetdev(clientTcp(clientPort, kTcpSyn, client).build());
    EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
    auto fwd = ct(clientKey(clientPort, client));
    EXPECT_TRUE(fwd);
    if (!fwd) return 0;
    const uint16_t port = ntohs(fwd->nat_sport);
    EXPECT_EQ(fromNetdev(remotePodTcp(kRemotePodA, port, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
    EXPECT_EQ(fromNetdev(clientTcp(clientPort, kTcpAck, client).build()).verdict, TC_ACT_REDIRECT);
    return port;
  }
};

// ---------------------------------------------------------------------------------------------
// Where a flow's entries live

// A SYN creates both entries of its flow in the embryonic table and nothing in the main one; the
// counters say two entries were created there.
TEST_F(ConntrackTest, ConntrackSynCreatesOnlyEmbryonicEntries) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  addBackend(2, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  setService({kNodeIp, kNodePort + 1, IPPROTO_TCP}, kNodePortFlags, kRevNat + 1, {2});

  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  EXPECT_TRUE(ctSyn(clientKey(kClientPort)));
  EXPECT_TRUE(ctSyn(localReplyKey(kLocalPodA, kClientPort)));

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn, kClientIp, kNodePort + 1).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  const uint16_t snatPort = np::test::parse(r.out).tcp->sport;
  EXPECT_TRUE(ctSyn(clientKey(kClientPort, kClientIp, kNodePort + 1)));
  EXPECT_TRUE(ctSyn(remoteReplyKey(kRemotePodA, snatPort))) << "the SNAT port is held in the embryonic table";

  EXPECT_EQ(ctSynCount(), 4u);
  EXPECT_EQ(ctMainCount(), 0u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).created, 4u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).deleted, 0u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_MAIN).created, 0u);
}

// The backend's SYN-ACK is translated and marks both embryonic entries (reply seen), but a
// reply is no proof that the client exists (it goes to whatever address the SYN claimed): the
// flow stays unconfirmed. So does a retransmitted SYN, and a client RST.
TEST_F(ConntrackTest, ConntrackSynAckMarksButDoesNotPromote) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);

  const PacketBuilder synAck = localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck);
  RunResult r = toNetdev(synAck.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = synAck;
  want.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(want.build(), r.out));

  auto fwd = ctSyn(clientKey(kClientPort));
  auto rev = ctSyn(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(fwd && rev);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_REPLY_SEEN);
  EXPECT_EQ(rev->flags, NP_CT_F_REPLY | NP_CT_F_REPLY_SEEN);
  EXPECT_EQ(ctMainCount(), 0u);

  // The client's SYN again (it missed the SYN-ACK): still unconfirmed, same backend.
  r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_EQ(np::test::parse(r.out).ip->daddr, kLocalPodA);
  EXPECT_EQ(ctMainCount(), 0u);
  EXPECT_EQ(ctSynCount(), 2u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).promoted, 0u);

  // A client RST closes the unconfirmed flow where it is.
  r = fromNetdev(clientTcp(kClientPort, kTcpRst).build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  EXPECT_EQ(ctMainCount(), 0u);
  fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_TRUE(fwd->flags & NP_CT_F_CLOSING);

  // The same on the SNAT path: the SYN-ACK arrives on ingress.
  addBackend(2, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService({kNodeIp, kNodePort + 1, IPPROTO_TCP}, kNodePortFlags, kRevNat + 1, {2});
  r = fromNetdev(clientTcp(kClientPort + 1, kTcpSyn, kClientIp, kNodePort + 1).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  const uint16_t snatPort = np::test::parse(r.out).tcp->sport;
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, snatPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  auto sfwd = ctSyn(clientKey(kClientPort + 1, kClientIp, kNodePort + 1));
  auto srev = ctSyn(remoteReplyKey(kRemotePodA, snatPort));
  ASSERT_TRUE(sfwd && srev);
  EXPECT_TRUE(sfwd->flags & NP_CT_F_REPLY_SEEN);
  EXPECT_TRUE(srev->flags & NP_CT_F_REPLY_SEEN);
  EXPECT_EQ(ctMainCount(), 0u);
}

// The client's ACK after the SYN-ACK confirms the flow: both entries move to the main table with
// the established lifetime and the same translation, and leave the embryonic one.
TEST_F(ConntrackTest, ConntrackClientAckPromotesBothEntries) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  const np_ct_entry synFwd = *ctSyn(clientKey(kClientPort));
  const np_ct_entry synRev = *ctSyn(localReplyKey(kLocalPodA, kClientPort));
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).created, 2u);

  const PacketBuilder ack = clientTcp(kClientPort, kTcpAck);
  RunResult r = fromNetdev(ack.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder want = ack;
  want.ipDst(kLocalPodA).dstPort(kBackendPort);
  EXPECT_TRUE(samePacket(want.build(), r.out));

  EXPECT_FALSE(ctSyn(clientKey(kClientPort)));
  EXPECT_FALSE(ctSyn(localReplyKey(kLocalPodA, kClientPort)));
  EXPECT_EQ(ctSynCount(), 0u);
  auto fwd = ctMain(clientKey(kClientPort));
  auto rev = ctMain(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(fwd && rev);
  const uint64_t established = monotonicNs() + (NP_CT_LIFETIME_TCP - 5) * kSec;
  EXPECT_GT(fwd->expires, established);
  EXPECT_GT(rev->expires, established);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_SEEN_NON_SYN | NP_CT_F_REPLY_SEEN);
  EXPECT_EQ(rev->flags, NP_CT_F_REPLY | NP_CT_F_REPLY_SEEN);
  // Translation and accounting carried over.
  for (auto [got, was] : {std::pair{*fwd, synFwd}, std::pair{*rev, synRev}}) {
    EXPECT_EQ(got.nat_saddr, was.nat_saddr);
    EXPECT_EQ(got.nat_daddr, was.nat_daddr);
    EXPECT_EQ(got.nat_sport, was.nat_sport);
    EXPECT_EQ(got.nat_dport, was.nat_dport);
    EXPECT_EQ(got.backend_id, was.backend_id);
    EXPECT_EQ(got.rev_nat_id, was.rev_nat_id);
  }
  EXPECT_EQ(fwd->packets, 2u);
  EXPECT_EQ(rev->packets, 1u);

  const np_ct_stat syn = ctStat(NP_CT_TABLE_EMBRYONIC), main = ctStat(NP_CT_TABLE_MAIN);
  EXPECT_EQ(syn.created, 2u);
  EXPECT_EQ(syn.deleted, 2u);
  EXPECT_EQ(syn.promoted, 1u);
  EXPECT_EQ(main.created, 2u);
  EXPECT_EQ(main.deleted, 0u);

  // Both directions keep working from the main table.
  const PacketBuilder data = localPodTcp(kLocalPodA, kClientPort, kTcpAck | kTcpPsh);
  r = toNetdev(data.build());
  EXPECT_EQ(r.verdict, TC_ACT_OK);
  PacketBuilder wantData = data;
  wantData.ipSrc(kNodeIp).srcPort(kNodePort);
  EXPECT_TRUE(samePacket(wantData.build(), r.out));
  EXPECT_EQ(ctMain(localReplyKey(kLocalPodA, kClientPort))->packets, 2u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_MAIN).created, 2u) << "an established flow creates nothing";
}

// The same through SNAT: the flow keeps its SNAT port when it moves.
TEST_F(ConntrackTest, ConntrackClientAckPromotesSnatFlowKeepingItsPort) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const uint16_t snatPort = establishRemote(kClientPort);
  ASSERT_NE(snatPort, 0);
  EXPECT_EQ(ctSynCount(), 0u);
  auto fwd = ctMain(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(ntohs(fwd->nat_sport), snatPort);
  EXPECT_TRUE(ctMain(remoteReplyKey(kRemotePodA, snatPort)));

  const PacketBuilder data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  RunResult r = fromNetdev(data.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder want = data;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out));
  const PacketBuilder reply = remotePodTcp(kRemotePodA, snatPort, kTcpAck | kTcpPsh);
  r = fromNetdev(reply.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder wantReply = reply;
  wantReply.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(wantReply.build(), r.out));
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).promoted, 1u);
}

// A closed flow reopened by a SYN leaves the main table (counted as deleted there) and starts
// over in the embryonic one: nothing of the old flow shadows the new one.
TEST_F(ConntrackTest, ConntrackReopenedFlowLeavesMainTable) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const uint16_t p1 = establishRemote(kClientPort);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpFin | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, p1, kTcpFin | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(ctMainCount(), 2u);

  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(ctMainCount(), 0u);
  EXPECT_EQ(ctStat(NP_CT_TABLE_MAIN).deleted, 2u);
  EXPECT_EQ(ctSynCount(), 2u);
  auto fwd = ctSyn(clientKey(kClientPort));
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->flags, NP_CT_F_SERVICE | NP_CT_F_SNAT | NP_CT_F_REDIRECT);
  const uint16_t p2 = ntohs(fwd->nat_sport);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, p2, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(ctMain(clientKey(kClientPort)));
  EXPECT_TRUE(ctMain(remoteReplyKey(kRemotePodA, p2)));
  EXPECT_EQ(ctSynCount(), 0u);
}

// A reply entry left in the main table by a flow whose service entry the LRU evicted must not
// shadow a new flow with the same reply tuple: the new flow's SYN-ACK would hit it there, the new
// flow would never see its reply, never be confirmed, and die after its embryonic lifetime.
TEST_F(ConntrackTest, ConntrackStaleMainReplyEntryDoesNotShadowNewFlow) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  np_ct_entry orphan{};
  orphan.flags = NP_CT_F_REPLY | NP_CT_F_REPLY_SEEN | NP_CT_F_SEEN_NON_SYN;
  orphan.backend_id = 1;
  orphan.rev_nat_id = kRevNat;
  orphan.nat_saddr = kNodeIp;
  orphan.nat_sport = htons(kNodePort);
  orphan.expires = monotonicNs() + 3600 * kSec;
  ASSERT_TRUE(ctMainMap().update(localReplyKey(kLocalPodA, kClientPort), orphan).ok());

  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  EXPECT_TRUE(ctMain(clientKey(kClientPort))) << "the new flow was never confirmed";
  auto rev = ctMain(localReplyKey(kLocalPodA, kClientPort));
  ASSERT_TRUE(rev);
  EXPECT_EQ(rev->packets, 1u) << "the main table holds the orphan, not the new flow's reply entry";
  EXPECT_EQ(ctSynCount(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Floods

// A flood of SYNs from spoofed sources (answered by the backend), ten times the embryonic table
// and more than the main one, leaves an established flow's main-table entries exactly as they were; the flow still
// translates both ways, and a real client that connects during the flood gets confirmed.
TEST_F(ConntrackTest, ConntrackSynFloodLeavesEstablishedFlowUntouched) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const uint16_t snatPort = establishRemote(kClientPort);
  ASSERT_NE(snatPort, 0);
  const np_ct_key fwdKey = clientKey(kClientPort), revKey = remoteReplyKey(kRemotePodA, snatPort);
  const auto fwdBefore = ctMain(fwdKey), revBefore = ctMain(revKey);
  ASSERT_TRUE(fwdBefore && revBefore);

  constexpr uint32_t kFlood = 5 * kCtSynMax;  // 10x the embryonic table's entries, 2.5x the main table's
  static_assert(2 * kFlood > 2 * kCtMainMax);
  // A real client connects in the middle of the flood.
  constexpr uint16_t kLatePort = 41000;
  uint16_t latePort = 0;
  for (uint32_t i = 0; i < kFlood; ++i) {
    // The backend answers every SYN, and its SYN-ACK passes the node on the way to the spoofed
    // source: a flood's reply entries are hit, as real ones are.
    RunResult syn = fromNetdev(floodSyn(i).build());
    ASSERT_EQ(syn.verdict, TC_ACT_REDIRECT) << "flood SYN " << i;
    const uint16_t port = np::test::parse(syn.out).tcp->sport;
    ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, port, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT)
        << "flood SYN-ACK " << i;
    if (i == kFlood / 2) {
      RunResult r = fromNetdev(clientTcp(kLatePort, kTcpSyn, kClient2Ip).build());
      ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
      latePort = np::test::parse(r.out).tcp->sport;
    }
    if (i == kFlood / 2 + 100) {
      ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, latePort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
      ASSERT_EQ(fromNetdev(clientTcp(kLatePort, kTcpAck, kClient2Ip).build()).verdict, TC_ACT_REDIRECT);
    }
  }
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_NAT_NO_MAPPING).packets, 0u) << "the flood exhausted SNAT ports";

  EXPECT_TRUE(sameEntry(*fwdBefore, ctMain(fwdKey))) << "established service entry";
  EXPECT_TRUE(sameEntry(*revBefore, ctMain(revKey))) << "established reply entry";
  EXPECT_TRUE(ctMain(clientKey(kLatePort, kClient2Ip))) << "the client that connected during the flood";
  EXPECT_EQ(ctMainCount(), 4u) << "the flood reached the main table";
  EXPECT_LE(ctSynCount(), size_t{kCtSynMax});
  EXPECT_EQ(ctStat(NP_CT_TABLE_EMBRYONIC).created, 2 * kFlood + 4);

  const PacketBuilder data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  RunResult r = fromNetdev(data.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder want = data;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  EXPECT_TRUE(samePacket(want.build(), r.out)) << "the established flow no longer translates";
  const PacketBuilder reply = remotePodTcp(kRemotePodA, snatPort, kTcpAck | kTcpPsh);
  r = fromNetdev(reply.build());
  EXPECT_EQ(r.verdict, TC_ACT_REDIRECT);
  PacketBuilder wantReply = reply;
  wantReply.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  EXPECT_TRUE(samePacket(wantReply.build(), r.out)) << "the established flow's replies no longer translate";
}

// An unconfirmed flow holds its SNAT port only for its short lifetime: past it, the port goes
// to a new flow that asks for it. Before that it is taken.
TEST_F(ConntrackTest, ConntrackEmbryonicSnatPortFreedAfterLifetime) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  // A SYN that is never answered holds the client's port as its SNAT port.
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn, kClientIp).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_TRUE(ctSyn(remoteReplyKey(kRemotePodA, kClientPort)));

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn, kClient2Ip).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_NE(np::test::parse(r.out).tcp->sport, kClientPort) << "the port of a live unconfirmed flow was reused";

  advanceClock(NP_CT_LIFETIME_TCP_EMBRYONIC + 1);
  const uint32_t client3 = ip("192.168.10.202");
  r = fromNetdev(clientTcp(kClientPort, kTcpSyn, client3).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  EXPECT_EQ(np::test::parse(r.out).tcp->sport, kClientPort)
      << "the SNAT port of an unconfirmed flow past its " << NP_CT_LIFETIME_TCP_EMBRYONIC << " s was not freed";
  auto rev = ctSyn(remoteReplyKey(kRemotePodA, kClientPort));
  ASSERT_TRUE(rev);
  EXPECT_EQ(rev->nat_daddr, client3) << "the port's replies must now reach the new client";
}

// ---------------------------------------------------------------------------------------------
// The agent's conntrack GC on the real maps

// The GC deletes expired unconfirmed flows and keeps established ones, sums the per-CPU counters
// as this fixture does, and derives exactly the entries a flood pushed out of the embryonic
// table (nothing else changes the tables here, so the estimate has no error to make).
TEST_F(ConntrackTest, ConntrackGcDeletesExpiredAndCountsFloodEvictions) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_NE(establishRemote(kClientPort), 0);
  for (uint32_t i = 0; i < 10; ++i) ASSERT_EQ(fromNetdev(floodSyn(i).build()).verdict, TC_ACT_REDIRECT);

  auto tables = ct::BpfTables::of(ctMainFd(), ctSynFd(), ctStatFd());
  ASSERT_TRUE(tables.ok()) << tables.error().message();
  ct::Gc gc(*tables);
  auto run = gc.runOnce();
  ASSERT_TRUE(run.ok()) << run.error().message();
  const ct::TableStats* main = &run->tables[NP_CT_TABLE_MAIN];
  const ct::TableStats* syn = &run->tables[NP_CT_TABLE_EMBRYONIC];
  EXPECT_EQ(main->name, NP_STR(NP_MAP_CT));
  EXPECT_EQ(main->maxEntries, kCtMainMax);
  EXPECT_EQ(main->entries, 2u);
  EXPECT_EQ(syn->name, NP_STR(NP_MAP_CT_EMBRYONIC));
  EXPECT_EQ(syn->maxEntries, kCtSynMax);
  EXPECT_EQ(syn->entries, 20u);
  EXPECT_EQ(syn->gcDeleted, 0u);

  auto counters = tables->counters();
  ASSERT_TRUE(counters.ok()) << counters.error().message();
  for (uint32_t t = 0; t < NP_CT_TABLES; ++t) {
    const np_ct_stat raw = ctStat(t);
    EXPECT_EQ((*counters)[t].created, raw.created) << "table " << t;
    EXPECT_EQ((*counters)[t].deleted, raw.deleted) << "table " << t;
    EXPECT_EQ((*counters)[t].promoted, raw.promoted) << "table " << t;
  }
  EXPECT_EQ((*counters)[NP_CT_TABLE_EMBRYONIC].promoted, 1u);

  // The unconfirmed flows expire; the established one does not.
  advanceClock(NP_CT_LIFETIME_TCP_EMBRYONIC + 3);
  run = gc.runOnce();
  ASSERT_TRUE(run.ok()) << run.error().message();
  main = &run->tables[NP_CT_TABLE_MAIN];
  syn = &run->tables[NP_CT_TABLE_EMBRYONIC];
  EXPECT_EQ(syn->gcDeleted, 20u);
  EXPECT_EQ(syn->entries, 0u);
  EXPECT_EQ(ctSynCount(), 0u);
  EXPECT_EQ(main->gcDeleted, 0u);
  EXPECT_EQ(main->entries, 2u);
  EXPECT_EQ(ctMainCount(), 2u);
  EXPECT_EQ(syn->evicted, 0u);
  EXPECT_EQ(main->evicted, 0u);

  // A flood of four times the embryonic table.
  constexpr uint32_t kFlood = 2 * kCtSynMax;
  for (uint32_t i = 100; i < 100 + kFlood; ++i) ASSERT_EQ(fromNetdev(floodSyn(i).build()).verdict, TC_ACT_REDIRECT);
  run = gc.runOnce();
  ASSERT_TRUE(run.ok()) << run.error().message();
  main = &run->tables[NP_CT_TABLE_MAIN];
  syn = &run->tables[NP_CT_TABLE_EMBRYONIC];
  const size_t left = ctSynCount();
  EXPECT_EQ(syn->entries, left);
  EXPECT_LE(left, size_t{kCtSynMax});
  EXPECT_EQ(syn->evicted, 2 * kFlood - left) << "created " << 2 * kFlood << ", " << left << " left";
  EXPECT_GE(syn->evicted, 2 * kFlood - kCtSynMax);
  EXPECT_EQ(syn->evictedTotal, syn->evicted);
  EXPECT_EQ(syn->createdTotal, 2 * kFlood);
  EXPECT_EQ(main->evicted, 0u);
  EXPECT_EQ(main->entries, 2u);
  EXPECT_TRUE(ct::underPressure(*run));
}

}  // namespace
}  // namespace np::bpftest
