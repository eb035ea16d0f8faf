// Packet builder and inspector for BPF_PROG_TEST_RUN tests.
//
// Tests describe packets as data and compare output frames byte for byte; when they differ,
// diff() names the fields that changed so a failure reads like "ip.daddr: expected 10.0.2.10 got
// 192.168.10.101" instead of two walls of hex.
//
// Byte order, everywhere in this header:
//   - IPv4 addresses are uint32_t in NETWORK order, exactly as they sit in the packet and in BPF
//     map keys (__be32), so `ip("10.0.1.10")` can go straight into a map key.
//   - Every other number (ports, ethertype, seq/ack, window, lengths, checksums, ids) is in HOST
//     order; the builder writes it big-endian and the parser reads it back the same way.
//
// Everything here is pure computation on byte vectors: no sockets, no root, thread-safe as long as
// a PacketBuilder is not shared between threads without synchronisation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace np::test {

using Bytes = std::vector<uint8_t>;
using MacAddr = std::array<uint8_t, 6>;

inline constexpr uint16_t kEthPIp = 0x0800;
inline constexpr uint16_t kEthPArp = 0x0806;
inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint16_t kArpOpRequest = 1;
inline constexpr uint16_t kArpOpReply = 2;
inline constexpr MacAddr kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// TCP flag bits as in byte 13 of the TCP header; combine with `|`.
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;

// "10.0.1.10" -> network-order address. Throws std::invalid_argument on anything that is not a
// dotted quad (tests use literals, so a typo should fail loudly at the line that made it).
uint32_t ip(std::string_view dotted);
// "02:00:00:00:00:01" -> bytes. Throws std::invalid_argument on malformed input.
MacAddr mac(std::string_view text);
std::string ipToString(uint32_t netOrderAddr);
std::string macToString(const MacAddr& addr);

// RFC 1071 Internet checksum of `data` (odd length padded with a zero byte), already complemented:
// the value to store in a checksum field, in host order.
uint16_t inetChecksum(std::span<const uint8_t> data);

// Parsed headers. Length and checksum fields hold what is in the packet, not what would be right.
struct EthHeader {
  MacAddr dst{};
  MacAddr src{};
  uint16_t proto = 0;  // ethertype
};

struct ArpBody {  // Ethernet/IPv4 ARP only (htype 1, ptype 0x0800)
  uint16_t op = 0;
  MacAddr sha{};
  uint32_t spa = 0;  // network order
  MacAddr tha{};
  uint32_t tpa = 0;  // network order
};

struct Ipv4Header {
  uint8_t ihl = 0;  // in 32-bit words
  uint8_t tos = 0;
  uint16_t totLen = 0;
  uint16_t id = 0;
  bool df = false;
  bool mf = false;
  uint16_t fragOffset = 0;  // in 8-byte units
  uint8_t ttl = 0;
  uint8_t proto = 0;
  uint16_t check = 0;
  uint32_t saddr = 0;  // network order
  uint32_t daddr = 0;  // network order
  Bytes options;       // (ihl - 5) * 4 bytes
};

struct TcpHeader {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint32_t ackSeq = 0;
  uint8_t doff = 0;  // in 32-bit words
  uint8_t flags = 0;
  uint16_t window = 0;
  uint16_t check = 0;
  uint16_t urgPtr = 0;
  Bytes options;  // (doff - 5) * 4 bytes
};

struct UdpHeader {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint16_t len = 0;
  uint16_t check = 0;
};

// What parse() found. A layer is present only if its whole header was inside the frame and
// looked like that protocol (IPv4: version 4, ihl >= 5; TCP: doff >= 5); parsing stops at the
// first layer that is not, so a truncated or malformed frame still yields its outer layers.
struct Packet {
  std::optional<EthHeader> eth;
  std::optional<ArpBody> arp;
  std::optional<Ipv4Header> ip;
  bool ipTruncated = false;  // ip->totLen claims more bytes than the frame holds
  std::optional<TcpHeader> tcp;
  std::optional<UdpHeader> udp;
  // Bytes after the innermost parsed header: up to the IPv4 tot_len (or the frame end if that is
  // shorter) for IPv4, else up to the frame end. Ethernet trailer padding is therefore excluded.
  Bytes payload;
};

Packet parse(std::span<const uint8_t> frame);

// Whether the IPv4 header checksum and the TCP/UDP checksum (with pseudo-header) are correct.
// `l4` is true when there is no TCP/UDP layer, for UDP with checksum 0 (means "none"), and for
// fragments (their L4 checksum covers bytes that are in other frames).
// Both are false when the frame holds no complete IPv4 packet (the L4 checksum cannot be checked
// over bytes that are not there).
struct ChecksumStatus {
  bool ip = false;
  bool l4 = false;
};
ChecksumStatus checkChecksums(std::span<const uint8_t> frame);
bool checksumsValid(std::span<const uint8_t> frame);  // both of the above

// Classic 16-bytes-per-line hex dump with offsets and an ASCII column.
std::string hexdump(std::span<const uint8_t> bytes);

// Empty when the two frames are byte-identical. Otherwise one line per differing field
// (`ip.daddr: expected 10.0.2.10 got 192.168.10.101`, `tcp.csum: expected 0x1234 got 0x4321`),
// a line for differences no field explains, then both hex dumps. Meant as a gtest message:
//   EXPECT_EQ(out, expected) << diff(expected, out);
std::string diff(std::span<const uint8_t> expected, std::span<const uint8_t> actual);

// Builds one Ethernet frame. Setters may be called in any order and return *this; a builder is a
// value, so a test can copy one and change a field to get the expected output of a rewrite:
//
//   auto syn = PacketBuilder().eth(clientMac, nodeMac).ipv4(ip("192.168.10.50"), vip)
//                  .tcp(40000, 80, kTcpSyn);
//   auto expected = syn;  expected.eth(nodeMac, backendMac).ipDst(ip("10.0.2.10")).ttl(63);
//   Bytes in = syn.build(), want = expected.build();
//
// Lengths (IPv4 ihl/tot_len, TCP doff, UDP len) and checksums are computed by build() unless
// forced. The frame is never padded to the 60-byte Ethernet minimum (veth and test-run do not).
// Setters that receive an impossible value throw std::invalid_argument.
class PacketBuilder {
 public:
  // --- Ethernet (always present) ---
  PacketBuilder& eth(const MacAddr& src, const MacAddr& dst);
  PacketBuilder& ethSrc(const MacAddr& src);
  PacketBuilder& ethDst(const MacAddr& dst);
  // Overrides the ethertype that is otherwise derived from the L3 layer (IPv4 0x0800, ARP 0x0806,
  // none 0x0000).
  PacketBuilder& ethertype(uint16_t proto);

  // --- L3: IPv4 or ARP; the last one set wins ---
  PacketBuilder& ipv4(uint32_t saddr, uint32_t daddr);  // network order, see ip()
  PacketBuilder& ipSrc(uint32_t saddr);
  PacketBuilder& ipDst(uint32_t daddr);
  PacketBuilder& ttl(uint8_t value);       // default 64
  PacketBuilder& tos(uint8_t value);       // default 0
  PacketBuilder& ipId(uint16_t value);     // default 0
  PacketBuilder& dontFragment(bool on = true);  // default off
  // Fragment offset in 8-byte units and the MF bit. The L4 header is still emitted if set, so for
  // a non-first fragment leave tcp()/udp() unset and put the bytes in payload().
  PacketBuilder& fragment(uint16_t offset8, bool moreFragments);
  // Raw option bytes placed after the fixed header; ihl = 5 + size/4. Padding is the caller's job:
  // throws unless the size is a multiple of 4 and at most 40.
  PacketBuilder& ipOptions(Bytes options);
  // Overrides the protocol otherwise derived from the L4 layer. Required for IPv4 without
  // tcp()/udp() (build() throws std::logic_error otherwise, to catch a forgotten L4 call).
  PacketBuilder& ipProto(uint8_t proto);
  // Forces tot_len (e.g. larger than the packet) instead of the computed value.
  PacketBuilder& ipTotalLength(uint16_t totLen);

  // ARP request: sets the ARP body and, for convenience, eth src = senderMac and eth dst =
  // broadcast (call eth()/ethDst() afterwards to send it unicast). tha is zero.
  PacketBuilder& arpRequest(const MacAddr& senderMac, uint32_t senderIp, uint32_t targetIp);
  // ARP reply: sets the ARP body and eth src = senderMac, eth dst = targetMac.
  PacketBuilder& arpReply(const MacAddr& senderMac, uint32_t senderIp, const MacAddr& targetMac,
                          uint32_t targetIp);

  // --- L4: TCP or UDP; the last one set wins ---
  PacketBuilder& tcp(uint16_t sport, uint16_t dport, uint8_t flags = 0);
  PacketBuilder& udp(uint16_t sport, uint16_t dport);
  // Ports of whichever L4 layer is set (TCP and UDP share them).
  PacketBuilder& srcPort(uint16_t sport);
  PacketBuilder& dstPort(uint16_t dport);
  PacketBuilder& tcpFlags(uint8_t flags);
  PacketBuilder& seq(uint32_t value);
  PacketBuilder& ackSeq(uint32_t value);
  PacketBuilder& window(uint16_t value);  // default 65535
  // Raw TCP option bytes; doff = 5 + size/4. Throws unless a multiple of 4 and at most 40.
  PacketBuilder& tcpOptions(Bytes options);

  // --- Payload: after the innermost header ---
  PacketBuilder& payload(std::span<const uint8_t> bytes);
  PacketBuilder& payload(std::string_view text);

  // --- Negative tests ---
  PacketBuilder& ipChecksum(uint16_t check);  // write this IPv4 header checksum as is
  PacketBuilder& l4Checksum(uint16_t check);  // write this TCP/UDP checksum as is
  // Cut the built frame to at most `length` bytes, after lengths and checksums were computed over
  // the whole packet (what a short capture or a bad driver would deliver).
  PacketBuilder& truncate(std::size_t length);

  Bytes build() const;

 private:
  enum class L3 { kNone, kIpv4, kArp };
  enum class L4 { kNone, kTcp, kUdp };

  MacAddr ethSrc_{};
  MacAddr ethDst_{};
  std::optional<uint16_t> ethertype_;

  L3 l3_ = L3::kNone;
  uint32_t saddr_ = 0;
  uint32_t daddr_ = 0;
  uint8_t ttl_ = 64;
  uint8_t tos_ = 0;
  uint16_t ipId_ = 0;
  bool df_ = false;
  bool mf_ = false;
  uint16_t fragOffset_ = 0;
  Bytes ipOptions_;
  std::optional<uint8_t> ipProto_;
  std::optional<uint16_t> ipTotLen_;
  ArpBody arp_;

  L4 l4_ = L4::kNone;
  uint16_t sport_ = 0;
  uint16_t dport_ = 0;
  uint8_t tcpFlags_ = 0;
  uint32_t seq_ = 0;
  uint32_t ackSeq_ = 0;
  uint16_t window_ = 65535;
  Bytes tcpOptions_;

  Bytes payload_;
  std::optional<uint16_t> ipCheck_;
  std::optional<uint16_t> l4Check_;
  std::optional<std::size_t> truncate_;
};

}  // namespace np::test
