#include "packet.h"

#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>

namespace np::test {
namespace {

// Reference frames written by an independent Python/struct implementation and cross-checked with
// `tcpdump -vv` (which reported every IPv4, TCP and UDP checksum as correct). They are literals on
// purpose: a builder bug must not be able to move the expectation along with it.

// 02:..:01 -> 02:..:02, 10.0.1.10:40000 -> 10.0.2.10:80, id 0x1234, DF, SYN seq 1000, win 64240.
// IPv4 csum 0x1189, TCP csum 0xfd65.
const Bytes kFrameTcpSyn = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x00, 0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06,
    0x11, 0x89, 0x0a, 0x00, 0x01, 0x0a, 0x0a, 0x00, 0x02, 0x0a, 0x9c, 0x40,
    0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02,
    0xfa, 0xf0, 0xfd, 0x65, 0x00, 0x00,
};

// 192.168.10.101:33000 -> 10.0.2.10:8080, tos 0x10, ttl 63, id 7, PSH|ACK seq 0xdeadbeef
// ack 0x01020304 win 502, payload "hello\n!" (odd length exercises the checksum's pad byte).
// IPv4 csum 0xa49b, TCP csum 0x2fc0.
const Bytes kFrameTcpData = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x00, 0x45, 0x10, 0x00, 0x2f, 0x00, 0x07, 0x00, 0x00, 0x3f, 0x06,
    0xa4, 0x9b, 0xc0, 0xa8, 0x0a, 0x65, 0x0a, 0x00, 0x02, 0x0a, 0x80, 0xe8,
    0x1f, 0x90, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x50, 0x18,
    0x01, 0xf6, 0x2f, 0xc0, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x0a,
    0x21,
};

// 02:..:0a -> 02:..:0b, 192.168.10.50:5353 -> 10.43.0.10:53, id 0xbeef, payload "hello".
// IPv4 csum 0xe6cd, UDP csum 0xd1d4.
const Bytes kFrameUdpDns = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,
    0x08, 0x00, 0x45, 0x00, 0x00, 0x21, 0xbe, 0xef, 0x00, 0x00, 0x40, 0x11,
    0xe6, 0xcd, 0xc0, 0xa8, 0x0a, 0x32, 0x0a, 0x2b, 0x00, 0x0a, 0x14, 0xe9,
    0x00, 0x35, 0x00, 0x0d, 0xd1, 0xd4, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
};

// The DSR shape: ihl 7 with the 8-byte option 0x9a/8/port 80/addr 10.43.0.100.
// 192.168.10.50:40001 -> 10.0.2.10:8080, DF, SYN seq 1, win 65535. IPv4 csum 0xbcfc, TCP 0x1d2c.
const Bytes kFrameDsrSyn = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x00, 0x47, 0x00, 0x00, 0x30, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06,
    0xbc, 0xfc, 0xc0, 0xa8, 0x0a, 0x32, 0x0a, 0x00, 0x02, 0x0a, 0x9a, 0x08,
    0x00, 0x50, 0x0a, 0x2b, 0x00, 0x64, 0x9c, 0x41, 0x1f, 0x90, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff, 0xff, 0x1d, 0x2c,
    0x00, 0x00,
};
const Bytes kDsrOption = {0x9a, 0x08, 0x00, 0x50, 0x0a, 0x2b, 0x00, 0x64};

// who-has 192.168.10.200 tell 192.168.10.50 (02:..:01), broadcast.
const Bytes kFrameArpRequest = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00,
    0x00, 0x00, 0x00, 0x01, 0xc0, 0xa8, 0x0a, 0x32, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xc0, 0xa8, 0x0a, 0xc8,
};

const MacAddr kMac1 = mac("02:00:00:00:00:01");
const MacAddr kMac2 = mac("02:00:00:00:00:02");

PacketBuilder tcpSyn() {
  return PacketBuilder()
      .eth(kMac1, kMac2)
      .ipv4(ip("10.0.1.10"), ip("10.0.2.10"))
      .ipId(0x1234)
      .dontFragment()
      .tcp(40000, 80, kTcpSyn)
      .seq(1000)
      .window(64240);
}

PacketBuilder udpDns() {
  return PacketBuilder()
      .eth(mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b"))
      .ipv4(ip("192.168.10.50"), ip("10.43.0.10"))
      .ipId(0xbeef)
      .udp(5353, 53)
      .payload("hello");
}

uint16_t be16At(const Bytes& b, std::size_t off) {
  return static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
}

TEST(PacketAddr, ParsesIntoNetworkOrder) {
  uint32_t a = ip("10.0.1.10");
  uint8_t bytes[4];
  std::memcpy(bytes, &a, 4);
  EXPECT_EQ(bytes[0], 10);
  EXPECT_EQ(bytes[1], 0);
  EXPECT_EQ(bytes[2], 1);
  EXPECT_EQ(bytes[3], 10);
  EXPECT_EQ(ipToString(ip("192.168.10.101")), "192.168.10.101");
  EXPECT_EQ(macToString(mac("02:ab:00:00:00:FF")), "02:ab:00:00:00:ff");
}

TEST(PacketAddr, RejectsMalformed) {
  for (const char* bad :
       {"10.0.1", "10.0.1.256", "10.0.1.1.", "a.b.c.d", "", "10..1.1", "1.2.3.4x"}) {
    EXPECT_THROW(ip(bad), std::invalid_argument) << bad;
  }
  for (const char* bad :
       {"02:00:00:00:00", "02:00:00:00:00:001", "02-00-00-00-00-01", "zz:00:00:00:00:00"}) {
    EXPECT_THROW(mac(bad), std::invalid_argument) << bad;
  }
}

TEST(PacketChecksum, Rfc1071Example) {
  // RFC 1071 section 3: the sum of these words is 0xddf2, so the checksum is its complement.
  const Bytes data = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(inetChecksum(data), 0x220d);
}

TEST(PacketChecksum, Ipv4HeaderMatchesWellKnownExample) {
  // The widely published example header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7:
  // a UDP packet of total length 0x73, so 115 - 20 - 8 = 87 payload bytes.
  const Bytes expectedHeader = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  Bytes out = PacketBuilder()
                  .ipv4(ip("192.168.0.1"), ip("192.168.0.199"))
                  .dontFragment()
                  .udp(1, 2)
                  .payload(Bytes(87, 0xaa))
                  .build();
  ASSERT_GE(out.size(), 34u);
  EXPECT_EQ(Bytes(out.begin() + 14, out.begin() + 34), expectedHeader);
  EXPECT_EQ(be16At(out, 24), 0xb861);
}

TEST(PacketBuilderFrames, TcpSynMatchesReference) {
  Bytes out = tcpSyn().build();
  EXPECT_EQ(out, kFrameTcpSyn) << diff(kFrameTcpSyn, out);
}

TEST(PacketBuilderFrames, TcpOddPayloadMatchesReference) {
  Bytes out = PacketBuilder()
                  .eth(kMac1, kMac2)
                  .ipv4(ip("192.168.10.101"), ip("10.0.2.10"))
                  .tos(0x10)
                  .ttl(63)
                  .ipId(7)
                  .tcp(33000, 8080, kTcpPsh | kTcpAck)
                  .seq(0xdeadbeef)
                  .ackSeq(0x01020304)
                  .window(502)
                  .payload("hello\n!")
                  .build();
  EXPECT_EQ(out, kFrameTcpData) << diff(kFrameTcpData, out);
}

TEST(PacketBuilderFrames, UdpMatchesReference) {
  Bytes out = udpDns().build();
  EXPECT_EQ(out, kFrameUdpDns) << diff(kFrameUdpDns, out);
}

TEST(PacketBuilderFrames, UdpComputedZeroChecksumIsSentAsAllOnes) {
  // Payload word 0xe01f makes the one's-complement sum 0xffff for this header (computed on the
  // side), i.e. a checksum of 0, which on the wire would mean "no checksum".
  Bytes out = PacketBuilder()
                  .ipv4(ip("10.0.0.1"), ip("10.0.0.2"))
                  .udp(1000, 2000)
                  .payload(Bytes{0xe0, 0x1f})
                  .build();
  ASSERT_EQ(out.size(), 14u + 20u + 8u + 2u);
  EXPECT_EQ(be16At(out, 40), 0xffff);
  EXPECT_TRUE(checksumsValid(out));
}

TEST(PacketBuilderFrames, ArpRequestMatchesReference) {
  Bytes out = PacketBuilder().arpRequest(kMac1, ip("192.168.10.50"), ip("192.168.10.200")).build();
  EXPECT_EQ(out, kFrameArpRequest) << diff(kFrameArpRequest, out);

  Packet p = parse(out);
  ASSERT_TRUE(p.arp);
  EXPECT_FALSE(p.ip);
  EXPECT_EQ(p.eth->dst, kBroadcastMac);
  EXPECT_EQ(p.arp->op, kArpOpRequest);
  EXPECT_EQ(p.arp->sha, kMac1);
  EXPECT_EQ(p.arp->spa, ip("192.168.10.50"));
  EXPECT_EQ(p.arp->tha, MacAddr{});
  EXPECT_EQ(p.arp->tpa, ip("192.168.10.200"));
}

TEST(PacketBuilderOptions, Ihl7WithEightOptionBytes) {
  Bytes out = PacketBuilder()
                  .eth(kMac1, kMac2)
                  .ipv4(ip("192.168.10.50"), ip("10.0.2.10"))
                  .dontFragment()
                  .ipOptions(kDsrOption)
                  .tcp(40001, 8080, kTcpSyn)
                  .seq(1)
                  .build();
  EXPECT_EQ(out, kFrameDsrSyn) << diff(kFrameDsrSyn, out);

  Packet p = parse(out);
  ASSERT_TRUE(p.ip);
  EXPECT_EQ(p.ip->ihl, 7);
  EXPECT_EQ(p.ip->totLen, 48);
  EXPECT_EQ(p.ip->options, kDsrOption);
  ASSERT_TRUE(p.tcp);  // found after the options, not inside them
  EXPECT_EQ(p.tcp->sport, 40001);
  EXPECT_EQ(p.tcp->dport, 8080);
  EXPECT_EQ(p.tcp->flags, kTcpSyn);
  EXPECT_TRUE(checksumsValid(out));
}

TEST(PacketBuilderOptions, RejectsUnpaddedOrOversizedOptions) {
  PacketBuilder b;
  EXPECT_THROW(b.ipOptions(Bytes(6, 1)), std::invalid_argument);
  EXPECT_THROW(b.ipOptions(Bytes(44, 1)), std::invalid_argument);
  EXPECT_THROW(b.tcpOptions(Bytes(3, 1)), std::invalid_argument);
  EXPECT_NO_THROW(b.ipOptions(Bytes(40, 1)));
}

TEST(PacketBuilderOptions, TcpOptionsSetDoff) {
  const Bytes mss = {0x02, 0x04, 0x05, 0xb4};
  Bytes out = tcpSyn().tcpOptions(mss).payload("x").build();
  Packet p = parse(out);
  ASSERT_TRUE(p.tcp);
  EXPECT_EQ(p.tcp->doff, 6);
  EXPECT_EQ(p.tcp->options, mss);
  EXPECT_EQ(p.payload, Bytes{'x'});
  EXPECT_EQ(p.ip->totLen, 20 + 24 + 1);
  EXPECT_TRUE(checksumsValid(out));
}

TEST(PacketRoundTrip, TcpFieldsSurviveBuildAndParse) {
  Bytes out = PacketBuilder()
                  .eth(kMac1, kMac2)
                  .ipv4(ip("10.0.1.10"), ip("10.43.0.1"))
                  .ttl(17)
                  .tos(0xb8)
                  .ipId(4242)
                  .dontFragment()
                  .ipOptions({0x01, 0x01, 0x01, 0x00})
                  .tcp(1234, 443, kTcpFin | kTcpAck)
                  .seq(0x80000001)
                  .ackSeq(0xfffffffe)
                  .window(7)
                  .payload("GET / HTTP/1.1\r\n")
                  .build();
  Packet p = parse(out);
  ASSERT_TRUE(p.eth && p.ip && p.tcp);
  EXPECT_FALSE(p.udp);
  EXPECT_EQ(p.eth->src, kMac1);
  EXPECT_EQ(p.eth->dst, kMac2);
  EXPECT_EQ(p.eth->proto, kEthPIp);
  EXPECT_EQ(p.ip->ihl, 6);
  EXPECT_EQ(p.ip->tos, 0xb8);
  EXPECT_EQ(p.ip->id, 4242);
  EXPECT_TRUE(p.ip->df);
  EXPECT_FALSE(p.ip->mf);
  EXPECT_EQ(p.ip->ttl, 17);
  EXPECT_EQ(p.ip->proto, kIpProtoTcp);
  EXPECT_EQ(p.ip->saddr, ip("10.0.1.10"));
  EXPECT_EQ(p.ip->daddr, ip("10.43.0.1"));
  EXPECT_EQ(p.ip->totLen, out.size() - 14);
  EXPECT_FALSE(p.ipTruncated);
  EXPECT_EQ(p.tcp->sport, 1234);
  EXPECT_EQ(p.tcp->dport, 443);
  EXPECT_EQ(p.tcp->seq, 0x80000001u);
  EXPECT_EQ(p.tcp->ackSeq, 0xfffffffeu);
  EXPECT_EQ(p.tcp->flags, kTcpFin | kTcpAck);
  EXPECT_EQ(p.tcp->window, 7);
  EXPECT_EQ(std::string(p.payload.begin(), p.payload.end()), "GET / HTTP/1.1\r\n");
  EXPECT_TRUE(checksumsValid(out));
}

TEST(PacketRoundTrip, UdpFieldsAndEthernetPaddingIgnored) {
  Bytes out = udpDns().build();
  out.resize(60, 0);  // what a NIC pads a short frame to; tot_len must bound the payload
  Packet p = parse(out);
  ASSERT_TRUE(p.udp);
  EXPECT_EQ(p.udp->sport, 5353);
  EXPECT_EQ(p.udp->dport, 53);
  EXPECT_EQ(p.udp->len, 13);
  EXPECT_EQ(p.udp->check, 0xd1d4);
  EXPECT_EQ(std::string(p.payload.begin(), p.payload.end()), "hello");
  EXPECT_TRUE(checksumsValid(out));
}

TEST(PacketRoundTrip, RewriteByCopyingTheBuilder) {
  PacketBuilder in = tcpSyn();
  PacketBuilder expected = in;
  expected.ipDst(ip("10.0.2.99")).dstPort(8080).ttl(63);
  Packet p = parse(expected.build());
  EXPECT_EQ(p.ip->daddr, ip("10.0.2.99"));
  EXPECT_EQ(p.tcp->dport, 8080);
  EXPECT_EQ(p.ip->ttl, 63);
  EXPECT_TRUE(checksumsValid(expected.build()));
  EXPECT_EQ(in.build(), kFrameTcpSyn);  // the original is untouched
}

TEST(PacketChecksum, DetectsEachKindOfCorruption) {
  for (const Bytes* frame : {&kFrameTcpSyn, &kFrameTcpData, &kFrameUdpDns, &kFrameDsrSyn}) {
    EXPECT_TRUE(checksumsValid(*frame)) << hexdump(*frame);
  }

  Bytes badIp = tcpSyn().ipChecksum(0x1234).build();
  EXPECT_EQ(be16At(badIp, 24), 0x1234);
  EXPECT_FALSE(checkChecksums(badIp).ip);
  EXPECT_TRUE(checkChecksums(badIp).l4);

  Bytes badTcp = tcpSyn().l4Checksum(0x4321).build();
  EXPECT_EQ(be16At(badTcp, 50), 0x4321);
  EXPECT_TRUE(checkChecksums(badTcp).ip);
  EXPECT_FALSE(checkChecksums(badTcp).l4);

  // A rewritten address without a checksum update is what a buggy NAT produces.
  Bytes natBug = kFrameUdpDns;
  natBug[33] = 0x0b;  // daddr 10.43.0.10 -> 10.43.0.11
  EXPECT_FALSE(checkChecksums(natBug).ip);
  EXPECT_FALSE(checkChecksums(natBug).l4);

  Bytes payloadFlip = kFrameTcpData;
  payloadFlip.back() ^= 0x01;
  EXPECT_TRUE(checkChecksums(payloadFlip).ip);
  EXPECT_FALSE(checkChecksums(payloadFlip).l4);

  Bytes udpNoCsum = udpDns().l4Checksum(0).build();
  EXPECT_TRUE(checksumsValid(udpNoCsum));

  EXPECT_FALSE(checksumsValid(kFrameArpRequest));  // no IPv4 to check
}

TEST(PacketTruncate, CutsAfterComputingLengths) {
  Bytes full = tcpSyn().payload("0123456789").build();
  Bytes cut = tcpSyn().payload("0123456789").truncate(58).build();
  ASSERT_EQ(cut.size(), 58u);
  EXPECT_TRUE(std::equal(cut.begin(), cut.end(), full.begin()));
  Packet p = parse(cut);
  ASSERT_TRUE(p.ip && p.tcp);
  EXPECT_TRUE(p.ipTruncated);
  EXPECT_EQ(p.ip->totLen, 50);
  EXPECT_EQ(std::string(p.payload.begin(), p.payload.end()), "0123");
  EXPECT_FALSE(checksumsValid(cut));

  Packet mid = parse(tcpSyn().truncate(40).build());  // inside the TCP header
  EXPECT_TRUE(mid.ip);
  EXPECT_FALSE(mid.tcp);

  Packet tiny = parse(tcpSyn().truncate(10).build());
  EXPECT_FALSE(tiny.eth);
}

TEST(PacketParse, RejectsWhatIsNotIpv4) {
  Bytes v6ish = kFrameTcpSyn;
  v6ish[14] = 0x65;  // version 6
  EXPECT_FALSE(parse(v6ish).ip);

  Bytes shortIhl = kFrameTcpSyn;
  shortIhl[14] = 0x44;
  EXPECT_FALSE(parse(shortIhl).ip);

  Bytes fragment = tcpSyn().fragment(3, false).build();
  Packet p = parse(fragment);
  ASSERT_TRUE(p.ip);
  EXPECT_EQ(p.ip->fragOffset, 3);
  EXPECT_FALSE(p.tcp);  // bytes after a non-first fragment's header are not a TCP header
}

TEST(PacketBuilderErrors, Ipv4WithoutL4NeedsProto) {
  EXPECT_THROW(PacketBuilder().ipv4(ip("1.1.1.1"), ip("2.2.2.2")).build(), std::logic_error);
  Bytes icmp = PacketBuilder().ipv4(ip("1.1.1.1"), ip("2.2.2.2")).ipProto(kIpProtoIcmp)
                   .payload(Bytes{8, 0, 0xf7, 0xff, 0, 0, 0, 0}).build();
  Packet p = parse(icmp);
  ASSERT_TRUE(p.ip);
  EXPECT_EQ(p.ip->proto, kIpProtoIcmp);
  EXPECT_EQ(p.payload.size(), 8u);
  EXPECT_TRUE(checksumsValid(icmp));
}

TEST(PacketDiff, NamesTheDifferingFields) {
  EXPECT_EQ(diff(kFrameTcpSyn, kFrameTcpSyn), "");

  Bytes actual = tcpSyn().ipDst(ip("192.168.10.101")).tcpFlags(kTcpSyn | kTcpAck).build();
  std::string d = diff(kFrameTcpSyn, actual);
  EXPECT_NE(d.find("ip.daddr: expected 10.0.2.10 got 192.168.10.101\n"), std::string::npos) << d;
  EXPECT_NE(d.find("ip.csum: expected 0x1189 got "), std::string::npos) << d;
  EXPECT_NE(d.find("tcp.csum: expected 0xfd65 got "), std::string::npos) << d;
  EXPECT_NE(d.find("tcp.flags: expected 0x02 (SYN) got 0x12 (SYN|ACK)\n"), std::string::npos) << d;
  EXPECT_EQ(d.find("ip.saddr"), std::string::npos) << d;  // unchanged fields stay quiet
  EXPECT_EQ(d.find("eth."), std::string::npos) << d;
  // Both dumps follow the field lines.
  EXPECT_NE(d.find("expected (54 bytes):\n0000  02 00 00 00 00 02 02 00"), std::string::npos) << d;
  EXPECT_NE(d.find("actual (54 bytes):\n"), std::string::npos) << d;
}

TEST(PacketDiff, ReportsLayerPresenceLengthAndStrayBytes) {
  std::string d = diff(kFrameTcpSyn, kFrameUdpDns);
  EXPECT_NE(d.find("tcp: expected present got absent\n"), std::string::npos) << d;
  EXPECT_NE(d.find("udp: expected absent got present\n"), std::string::npos) << d;
  EXPECT_NE(d.find("length: expected 54 got 47\n"), std::string::npos) << d;

  Bytes withOption = tcpSyn().ipOptions({1, 1, 1, 0}).build();
  d = diff(kFrameTcpSyn, withOption);
  EXPECT_NE(d.find("ip.ihl: expected 5 got 6\n"), std::string::npos) << d;
  EXPECT_NE(d.find("ip.options: expected (none) got 01010100\n"), std::string::npos) << d;

  // Same fields, different Ethernet padding: only a byte offset can explain it.
  Bytes padA = kFrameUdpDns, padB = kFrameUdpDns;
  padA.resize(60, 0);
  padB.resize(60, 0);
  padB[59] = 0xee;
  d = diff(padA, padB);
  EXPECT_NE(d.find("bytes: first difference at offset 59: expected 0x00 got 0xee\n"),
            std::string::npos) << d;
}

TEST(PacketHexdump, Format) {
  Bytes data;
  for (int i = 0; i < 18; ++i) data.push_back(static_cast<uint8_t>(0x3f + i));
  EXPECT_EQ(hexdump(data),
            "0000  3f 40 41 42 43 44 45 46  47 48 49 4a 4b 4c 4d 4e  ?@ABCDEFGHIJKLMN\n"
            "0010  4f 50                                             OP\n");
  EXPECT_EQ(hexdump(Bytes{}), "(empty)\n");
}

}  // namespace
}  // namespace np::test
