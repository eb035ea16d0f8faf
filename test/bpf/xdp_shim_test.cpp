// The XDP context shim (bpf/lib/ctx_xdp.h) against tc's: a test-only XDP program
// (progs/xdp_shim.bpf.c) runs the shared parser and the shared established-flow rewrite
// (np_nodeport_finish) on struct xdp_md, next to host.bpf.o and on its maps. For the same input
// and the same conntrack entry its output must be byte for byte what tc's np_from_netdev makes
// (both checked against the expected packet too): addresses, ports, TTL, MACs and both checksums,
// which XDP computes by hand where tc has bpf_l3/l4_csum_replace(). Verdicts are the hook's own
// (XDP_TX: out of the device it came in on / TC_ACT_REDIRECT, XDP_PASS / TC_ACT_OK, XDP_DROP / TC_ACT_SHOT).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <cstring>

#include "flows.h"
#include "host_fixture.h"
#include "np_config.h"  // the skeleton's .rodata struct
#include "xdp_shim.skel.h"

namespace np::bpftest {
namespace {

class XdpShimTest : public HostTest {
 protected:
  void SetUp() override {
    HostTest::SetUp();
    if (HasFatalFailure()) return;
    LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pinDir().c_str());
    skel_ = xdp_shim_bpf__open_opts(&opts);
    ASSERT_NE(skel_, nullptr) << "open xdp_shim.bpf.o: " << std::strerror(errno);
    skel_->rodata->np_nodeport_cfg.node_ip = kNodeIp;
    skel_->rodata->np_nodeport_cfg.lb_mode = xdpLbMode_;
    auto sized = datapath::sizeMaps(skel_->obj, pinDir(), mapSizes());
    ASSERT_TRUE(sized.ok()) << sized.error().message();
    ASSERT_EQ(xdp_shim_bpf__load(skel_), 0) << "load xdp_shim.bpf.o (the verifier's log is above)";
  }
  void TearDown() override {
    xdp_shim_bpf__destroy(skel_);
    skel_ = nullptr;
    HostTest::TearDown();
  }

  // One packet through the XDP program as if it arrived on ens192.
  RunResult xdp(const Bytes& in) {
    RunResult r;
    r.out.resize(in.size() + 256);
    xdp_md ctxIn{};
    ctxIn.data_end = static_cast<uint32_t>(in.size());
    ctxIn.ingress_ifindex = static_cast<uint32_t>(env().ens192Ifindex);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
                .data_size_in = static_cast<uint32_t>(in.size()),
                .data_size_out = static_cast<uint32_t>(r.out.size()), .ctx_in = &ctxIn,
                .ctx_size_in = sizeof(ctxIn), .repeat = 1);
    int rc = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.np_test_xdp_rewrite), &opts);
    if (rc != 0) {
      r.error = -errno;
      ADD_FAILURE() << "BPF_PROG_TEST_RUN (xdp): " << std::strerror(errno) << "\n" << np::test::hexdump(in);
      r.out.clear();
      return r;
    }
    r.verdict = static_cast<int>(opts.retval);
    r.out.resize(opts.data_size_out);
    return r;
  }

  // `in` through XDP, then through tc (which also refreshes the flow; XDP only reads it): both
  // give the hook's verdict for the same decision and exactly `want`.
  void expectXdpLikeTc(const Bytes& in, const Bytes& want, int xdpVerdict, int tcVerdict) {
    const np_metric before = metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED);
    RunResult x = xdp(in);
    EXPECT_EQ(x.verdict, xdpVerdict);
    EXPECT_TRUE(samePacket(want, x.out)) << "XDP output";
    const np_metric after = metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED);
    EXPECT_EQ(after.packets, before.packets + 1) << "XDP counted no forwarded packet";
    // Forwarded bytes are the packet as it leaves (with the DSR option, 8 more than came in).
    EXPECT_EQ(after.bytes, before.bytes + want.size()) << "XDP counted another length";
    RunResult t = fromNetdev(in);
    EXPECT_EQ(t.verdict, tcVerdict);
    EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).bytes, after.bytes + want.size())
        << "tc counted another length";
    EXPECT_TRUE(samePacket(want, t.out)) << "tc output";
    EXPECT_TRUE(samePacket(t.out, x.out)) << "XDP and tc differ (expected: tc, actual: XDP)";
  }

  // Both programs, tc's and XDP's, run in this bpf-lb-mode.
  void setBothLbModes(LbMode tc, uint8_t xdp) {
    setLbMode(tc);
    xdpLbMode_ = xdp;
  }

  xdp_shim_bpf* skel_ = nullptr;
  uint8_t xdpLbMode_ = NP_LB_MODE_SNAT;
};

// A confirmed SNAT'd flow: the client's segment is DNAT'd + SNAT'd, TTL decremented, MACs set from
// the FIB and redirected; the backend's reply is reverse-translated to the client. Both
// directions, both hooks, the same bytes.
TEST_F(XdpShimTest, RemoteBackendRewriteMatchesTc) {
  const uint16_t snatPort = startRemoteFlow();
  ASSERT_NE(snatPort, 0);
  ASSERT_EQ(fromNetdev(remotePodTcp(kRemotePodA, snatPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_REDIRECT);
  ASSERT_TRUE(ctMain(clientKey(kClientPort))) << "the handshake did not confirm the flow";

  const PacketBuilder data = clientTcp(kClientPort, kTcpAck | kTcpPsh);
  PacketBuilder want = data;
  want.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63);
  expectXdpLikeTc(data.build(), want.build(), XDP_TX, TC_ACT_REDIRECT);
  EXPECT_TRUE(checksumsOk(want.build()));

  const PacketBuilder reply = remotePodTcp(kRemotePodA, snatPort, kTcpAck | kTcpPsh);
  PacketBuilder wantReply = reply;
  wantReply.eth(kEns192Mac, kClientMac).ipSrc(kNodeIp).srcPort(kNodePort).ipDst(kClientIp).dstPort(kClientPort).ttl(62);
  expectXdpLikeTc(reply.build(), wantReply.build(), XDP_TX, TC_ACT_REDIRECT);
}

// A local backend: DNAT only, the packet goes on to the stack (MACs and TTL untouched), here for
// a flow still in the embryonic table and a header with IP options (the L4 header moves).
TEST_F(XdpShimTest, LocalBackendDnatMatchesTc) {
  const Bytes options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  syn.ipOptions(options);
  ASSERT_EQ(fromNetdev(syn.build()).verdict, TC_ACT_OK);
  ASSERT_TRUE(ctSyn(clientKey(kClientPort)));

  PacketBuilder want = syn;  // a retransmitted SYN
  want.ipDst(kLocalPodA).dstPort(kBackendPort);
  expectXdpLikeTc(syn.build(), want.build(), XDP_PASS, TC_ACT_OK);
}

// UDP checksums, the part of bpf_l4_csum_replace() XDP has to do by hand: an ordinary datagram;
// one without a checksum (0 stays 0); and one whose rewritten checksum comes out as zero, which
// UDP must carry as 0xffff.
TEST_F(XdpShimTest, UdpChecksumsMatchTc) {
  constexpr uint16_t kUdpNodePort = 30053, kPodPort = 5353;
  addBackend(1, kRemotePodA, kPodPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {1});
  auto datagram = [&](uint16_t word) {
    const uint8_t body[] = {static_cast<uint8_t>(word >> 8), static_cast<uint8_t>(word), 'q', 'u', 'e', 'r', 'y'};
    PacketBuilder b;
    b.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(0x77).udp(kClientPort, kUdpNodePort).payload(body);
    return b;
  };
  ASSERT_EQ(fromNetdev(datagram(0).build()).verdict, TC_ACT_REDIRECT);
  auto fwd = ct(clientKey(kClientPort, kClientIp, kUdpNodePort, IPPROTO_UDP));
  ASSERT_TRUE(fwd);
  const uint16_t snatPort = ntohs(fwd->nat_sport);
  auto translated = [&](PacketBuilder b) {
    b.eth(kEns192Mac, kNode2Mac).ipSrc(kNodeIp).srcPort(snatPort).ipDst(kRemotePodA).dstPort(kPodPort).ttl(63);
    return b;
  };
  constexpr size_t kUdpCheckOff = 14 + 20 + 6;
  auto udpCheck = [&](const Bytes& frame) { return static_cast<uint16_t>(frame[kUdpCheckOff] << 8 | frame[kUdpCheckOff + 1]); };

  {
    SCOPED_TRACE("ordinary datagram");
    const PacketBuilder in = datagram(0x1234);
    const Bytes want = translated(in).build();
    ASSERT_NE(udpCheck(in.build()), 0);
    expectXdpLikeTc(in.build(), want, XDP_TX, TC_ACT_REDIRECT);
  }
  {
    SCOPED_TRACE("no checksum");
    PacketBuilder in = datagram(0x1234);
    in.l4Checksum(0);
    PacketBuilder want = translated(in);
    want.l4Checksum(0);
    expectXdpLikeTc(in.build(), want.build(), XDP_TX, TC_ACT_REDIRECT);
  }
  {
    SCOPED_TRACE("rewritten checksum is zero");
    // The payload word that makes the translated datagram's one's-complement sum zero: the
    // builder writes that checksum as 0xffff (a computed zero never goes out as 0 in UDP).
    uint32_t word = 0;
    while (word <= 0xffff && udpCheck(translated(datagram(static_cast<uint16_t>(word))).build()) != 0xffff) ++word;
    ASSERT_LE(word, 0xffffu) << "no payload gives a zero checksum";
    const PacketBuilder in = datagram(static_cast<uint16_t>(word));
    ASSERT_NE(udpCheck(in.build()), 0xffff) << "the input must not already carry the special value";
    expectXdpLikeTc(in.build(), translated(in).build(), XDP_TX, TC_ACT_REDIRECT);
  }
}

// The shared parser on XDP: a TCP header cut short is dropped with the same reason as on tc;
// something that is not IPv4 passes untouched.
TEST_F(XdpShimTest, ParserVerdictsMatchTc) {
  PacketBuilder cut = clientTcp(kClientPort, kTcpSyn);
  cut.truncate(14 + 20 + 10);
  const Bytes in = cut.build();
  EXPECT_EQ(xdp(in).verdict, XDP_DROP);
  EXPECT_EQ(fromNetdev(in).verdict, TC_ACT_SHOT);
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER).packets, 2u);

  PacketBuilder arp;
  arp.arpRequest(kClientMac, kClientIp, kNodeIp);
  const Bytes arpIn = arp.build();
  RunResult x = xdp(arpIn);
  EXPECT_EQ(x.verdict, XDP_PASS);
  EXPECT_TRUE(samePacket(arpIn, x.out));
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_METRIC_FORWARDED).packets, 0u);
}

// ---------------------------------------------------------------------------------------------
// DSR on XDP: the packet grows at the head (bpf_xdp_adjust_head + moving Ethernet and IPv4 header
// down) where tc grows it in the middle (bpf_skb_adjust_room); the bytes must be the same.

class DsrXdpShimTest : public XdpShimTest {
 protected:
  DsrXdpShimTest() { setBothLbModes(LbMode::Dsr, NP_LB_MODE_DSR); }
};

// A DSR flow's retransmitted SYN: DNAT, TTL, MACs and the option after the fixed header, the
// same through XDP as through tc.
TEST_F(DsrXdpShimTest, SynOptionMatchesTc) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  const PacketBuilder syn = clientTcp(kClientPort, kTcpSyn);
  ASSERT_EQ(fromNetdev(syn.build()).verdict, TC_ACT_REDIRECT);
  PacketBuilder want = syn;
  want.eth(kEns192Mac, kNode2Mac).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63)
      .ipOptions({0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x64});
  expectXdpLikeTc(syn.build(), want.build(), XDP_TX, TC_ACT_REDIRECT);
  EXPECT_TRUE(checksumsOk(want.build()));

  // A SYN with options of its own: XDP moves those down with the rest of the header's tail.
  PacketBuilder withOpts = clientTcp(kClientPort + 1, kTcpSyn);
  withOpts.ipOptions({0x01, 0x01, 0x01, 0x00});
  ASSERT_EQ(fromNetdev(withOpts.build()).verdict, TC_ACT_REDIRECT);
  PacketBuilder want2 = withOpts;
  want2.eth(kEns192Mac, kNode2Mac).ipDst(kRemotePodA).dstPort(kBackendPort).ttl(63)
      .ipOptions({0x9a, 0x08, 0x75, 0x80, 0xc0, 0xa8, 0x0a, 0x64, 0x01, 0x01, 0x01, 0x00});
  expectXdpLikeTc(withOpts.build(), want2.build(), XDP_TX, TC_ACT_REDIRECT);
}

// Too big for the option: the ICMP fragmentation-needed that XDP builds (the packet cut at the
// tail, room made after the Ethernet header) is tc's, byte for byte, and counted the same.
TEST_F(DsrXdpShimTest, FragNeededMatchesTc) {
  constexpr uint16_t kUdpNodePort = 30053;
  addBackend(2, kRemotePodA, kBackendPort, IPPROTO_UDP);
  setService({kNodeIp, kUdpNodePort, IPPROTO_UDP}, kNodePortFlags, 8, {2});
  auto datagram = [&](size_t len) {
    PacketBuilder b;
    b.eth(kClientMac, kEns192Mac).ipv4(kClientIp, kNodeIp).ipId(0x77).dontFragment().udp(kClientPort, kUdpNodePort)
        .payload(Bytes(len, 'z'));
    return b.build();
  };
  ASSERT_EQ(fromNetdev(datagram(10)).verdict, TC_ACT_REDIRECT);  // the flow XDP finds
  const Bytes big = datagram(1500 - 28);
  RunResult x = xdp(big);
  EXPECT_EQ(x.verdict, XDP_TX);
  RunResult t = fromNetdev(big);
  EXPECT_EQ(t.verdict, TC_ACT_REDIRECT);
  EXPECT_TRUE(samePacket(t.out, x.out)) << "XDP and tc differ (expected: tc, actual: XDP)";
  ASSERT_EQ(x.out.size(), 14u + 20 + 8 + 84);
  EXPECT_EQ(x.out[14 + 9], np::test::kIpProtoIcmp);
  EXPECT_EQ(x.out[14 + 20], 3);
  EXPECT_EQ(x.out[14 + 21], 4);
  EXPECT_EQ(x.out[14 + 26] << 8 | x.out[14 + 27], 1492);
  EXPECT_TRUE(checksumsOk(x.out));
  EXPECT_EQ(metric(NP_METRIC_INGRESS, NP_DROP_FRAG_NEEDED).packets, 2u);
}

}  // namespace
}  // namespace np::bpftest
