#include "packet.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace np::test {
namespace {

constexpr std::size_t kEthHeaderLen = 14;
constexpr std::size_t kArpLen = 28;
constexpr std::size_t kIpv4HeaderLen = 20;
constexpr std::size_t kTcpHeaderLen = 20;
constexpr std::size_t kUdpHeaderLen = 8;
constexpr std::size_t kMaxOptionsLen = 40;  // both IPv4 and TCP: 4-bit length field, 60 bytes max
constexpr uint16_t kIpDf = 0x4000;
constexpr uint16_t kIpMf = 0x2000;
constexpr uint16_t kIpOffsetMask = 0x1fff;

void put8(Bytes& out, uint8_t v) { out.push_back(v); }

void put16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void put32(Bytes& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}

// Network-order addresses are stored as their in-memory bytes, so copy rather than shift.
void putAddr(Bytes& out, uint32_t netOrder) {
  uint8_t b[4];
  std::memcpy(b, &netOrder, 4);
  out.insert(out.end(), b, b + 4);
}

void putMac(Bytes& out, const MacAddr& m) { out.insert(out.end(), m.begin(), m.end()); }

void putBytes(Bytes& out, std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }

void set16(Bytes& out, std::size_t off, uint16_t v) {
  out[off] = static_cast<uint8_t>(v >> 8);
  out[off + 1] = static_cast<uint8_t>(v);
}

uint16_t get16(std::span<const uint8_t> b, std::size_t off) {
  return static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
}

uint32_t get32(std::span<const uint8_t> b, std::size_t off) {
  return (uint32_t{get16(b, off)} << 16) | get16(b, off + 2);
}

uint32_t getAddr(std::span<const uint8_t> b, std::size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}

MacAddr getMac(std::span<const uint8_t> b, std::size_t off) {
  MacAddr m;
  std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(off), 6, m.begin());
  return m;
}

// One's-complement sum without the final fold/complement, so pseudo-header and segment can be
// summed separately. 64-bit accumulator: no carry handling needed for any IPv4-sized input.
uint64_t sumWords(std::span<const uint8_t> data, uint64_t acc) {
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) acc += get16(data, i);
  if (i < data.size()) acc += uint32_t{data[i]} << 8;
  return acc;
}

uint16_t fold(uint64_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc & 0xffff);
}

uint16_t pseudoChecksum(uint32_t saddr, uint32_t daddr, uint8_t proto,
                    std::span<const uint8_t> segment) {
  Bytes pseudo;
  putAddr(pseudo, saddr);
  putAddr(pseudo, daddr);
  put8(pseudo, 0);
  put8(pseudo, proto);
  put16(pseudo, static_cast<uint16_t>(segment.size()));
  return fold(sumWords(segment, sumWords(pseudo, 0)));
}

void checkOptions(const Bytes& options, const char* what) {
  if (options.size() % 4 != 0 || options.size() > kMaxOptionsLen) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(options.size()) +
                                " bytes; must be a multiple of 4 and at most 40");
  }
}

std::string hex(uint32_t v, int width) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", width, v);
  return buf;
}

std::string hexBytes(std::span<const uint8_t> b) {
  if (b.empty()) return "(none)";
  std::string s;
  char buf[4];
  for (uint8_t byte : b) {
    std::snprintf(buf, sizeof buf, "%02x", byte);
    s += buf;
  }
  return s;
}

std::string tcpFlagsToString(uint8_t flags) {
  static constexpr std::pair<uint8_t, const char*> kNames[] = {
      {kTcpFin, "FIN"}, {kTcpSyn, "SYN"}, {kTcpRst, "RST"}, {kTcpPsh, "PSH"},
      {kTcpAck, "ACK"}, {kTcpUrg, "URG"}, {0x40, "ECE"},   {0x80, "CWR"}};
  std::string names;
  for (const auto& [bit, name] : kNames) {
    if (flags & bit) names += names.empty() ? name : std::string("|") + name;
  }
  return hex(flags, 2) + " (" + (names.empty() ? "none" : names) + ")";
}

// Collects "field: expected X got Y" lines for diff().
class FieldDiff {
 public:
  template <typename T, typename Fmt>
  void field(const std::string& name, const T& expected, const T& actual, Fmt fmt) {
    if (!(expected == actual)) {
      lines_.push_back(name + ": expected " + fmt(expected) + " got " + fmt(actual));
    }
  }
  template <typename T>
  void number(const std::string& name, T expected, T actual) {
    field(name, expected, actual, [](T v) { return std::to_string(v); });
  }
  template <typename T>
  void hexNumber(const std::string& name, T expected, T actual, int width) {
    field(name, expected, actual, [width](T v) { return hex(v, width); });
  }
  void addr(const std::string& name, uint32_t expected, uint32_t actual) {
    field(name, expected, actual, ipToString);
  }
  void macAddr(const std::string& name, const MacAddr& expected, const MacAddr& actual) {
    field(name, expected, actual, macToString);
  }
  void bytes(const std::string& name, const Bytes& expected, const Bytes& actual) {
    field(name, expected, actual, [](const Bytes& b) { return hexBytes(b); });
  }
  // Returns whether both sides have the layer, so the caller knows whether to compare fields.
  template <typename T>
  bool presence(const std::string& name, const std::optional<T>& expected,
                const std::optional<T>& actual) {
    if (expected.has_value() != actual.has_value()) {
      lines_.push_back(name + ": expected " + (expected ? "present" : "absent") + " got " +
                       (actual ? "present" : "absent"));
    }
    return expected && actual;
  }
  void line(std::string text) { lines_.push_back(std::move(text)); }
  bool empty() const { return lines_.empty(); }
  std::string str() const {
    std::string s;
    for (const auto& l : lines_) s += l + "\n";
    return s;
  }

 private:
  std::vector<std::string> lines_;
};

std::string payloadSummary(const Bytes& b) {
  return std::to_string(b.size()) + " bytes " +
         (b.size() <= 32 ? hexBytes(b) : hexBytes(std::span(b).first(32)) + "...");
}

}  // namespace

uint32_t ip(std::string_view dotted) {
  uint8_t b[4];
  const char* p = dotted.data();
  const char* end = dotted.data() + dotted.size();
  for (int i = 0; i < 4; ++i) {
    unsigned v = 0;
    auto [next, ec] = std::from_chars(p, end, v);
    if (ec != std::errc() || next == p || next - p > 3 || v > 255) break;
    b[i] = static_cast<uint8_t>(v);
    p = next;
    if (i == 3) {
      if (p != end) break;
      uint32_t addr;
      std::memcpy(&addr, b, 4);
      return addr;
    }
    if (p == end || *p != '.') break;
    ++p;
  }
  throw std::invalid_argument("not an IPv4 address: '" + std::string(dotted) + "'");
}

MacAddr mac(std::string_view text) {
  MacAddr m{};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 6; ++i) {
    unsigned v = 0;
    auto [next, ec] = std::from_chars(p, end, v, 16);
    if (ec != std::errc() || next - p != 2) break;
    m[static_cast<std::size_t>(i)] = static_cast<uint8_t>(v);
    p = next;
    if (i == 5) {
      if (p != end) break;
      return m;
    }
    if (p == end || *p != ':') break;
    ++p;
  }
  throw std::invalid_argument("not a MAC address: '" + std::string(text) + "'");
}

std::string ipToString(uint32_t netOrderAddr) {
  uint8_t b[4];
  std::memcpy(b, &netOrderAddr, 4);
  return std::to_string(b[0]) + "." + std::to_string(b[1]) + "." + std::to_string(b[2]) + "." +
         std::to_string(b[3]);
}

std::string macToString(const MacAddr& addr) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", addr[0], addr[1], addr[2],
                addr[3], addr[4], addr[5]);
  return buf;
}

uint16_t inetChecksum(std::span<const uint8_t> data) { return fold(sumWords(data, 0)); }

// ---------------------------------------------------------------------------------------------
// PacketBuilder

PacketBuilder& PacketBuilder::eth(const MacAddr& src, const MacAddr& dst) {
  ethSrc_ = src;
  ethDst_ = dst;
  return *this;
}
PacketBuilder& PacketBuilder::ethSrc(const MacAddr& src) { ethSrc_ = src; return *this; }
PacketBuilder& PacketBuilder::ethDst(const MacAddr& dst) { ethDst_ = dst; return *this; }
PacketBuilder& PacketBuilder::ethertype(uint16_t proto) { ethertype_ = proto; return *this; }

PacketBuilder& PacketBuilder::ipv4(uint32_t saddr, uint32_t daddr) {
  l3_ = L3::kIpv4;
  saddr_ = saddr;
  daddr_ = daddr;
  return *this;
}
PacketBuilder& PacketBuilder::ipSrc(uint32_t saddr) {
  l3_ = L3::kIpv4;
  saddr_ = saddr;
  return *this;
}
PacketBuilder& PacketBuilder::ipDst(uint32_t daddr) {
  l3_ = L3::kIpv4;
  daddr_ = daddr;
  return *this;
}
PacketBuilder& PacketBuilder::ttl(uint8_t value) { ttl_ = value; return *this; }
PacketBuilder& PacketBuilder::tos(uint8_t value) { tos_ = value; return *this; }
PacketBuilder& PacketBuilder::ipId(uint16_t value) { ipId_ = value; return *this; }
PacketBuilder& PacketBuilder::dontFragment(bool on) { df_ = on; return *this; }

PacketBuilder& PacketBuilder::fragment(uint16_t offset8, bool moreFragments) {
  if (offset8 > kIpOffsetMask) throw std::invalid_argument("fragment offset exceeds 13 bits");
  fragOffset_ = offset8;
  mf_ = moreFragments;
  return *this;
}

PacketBuilder& PacketBuilder::ipOptions(Bytes options) {
  checkOptions(options, "ipOptions");
  ipOptions_ = std::move(options);
  return *this;
}

PacketBuilder& PacketBuilder::ipProto(uint8_t proto) { ipProto_ = proto; return *this; }
PacketBuilder& PacketBuilder::ipTotalLength(uint16_t totLen) { ipTotLen_ = totLen; return *this; }

PacketBuilder& PacketBuilder::arpRequest(const MacAddr& senderMac, uint32_t senderIp,
                                         uint32_t targetIp) {
  l3_ = L3::kArp;
  arp_ = ArpBody{kArpOpRequest, senderMac, senderIp, MacAddr{}, targetIp};
  ethSrc_ = senderMac;
  ethDst_ = kBroadcastMac;
  return *this;
}

PacketBuilder& PacketBuilder::arpReply(const MacAddr& senderMac, uint32_t senderIp,
                                       const MacAddr& targetMac, uint32_t targetIp) {
  l3_ = L3::kArp;
  arp_ = ArpBody{kArpOpReply, senderMac, senderIp, targetMac, targetIp};
  ethSrc_ = senderMac;
  ethDst_ = targetMac;
  return *this;
}

PacketBuilder& PacketBuilder::tcp(uint16_t sport, uint16_t dport, uint8_t flags) {
  l4_ = L4::kTcp;
  sport_ = sport;
  dport_ = dport;
  tcpFlags_ = flags;
  return *this;
}

PacketBuilder& PacketBuilder::udp(uint16_t sport, uint16_t dport) {
  l4_ = L4::kUdp;
  sport_ = sport;
  dport_ = dport;
  return *this;
}

PacketBuilder& PacketBuilder::srcPort(uint16_t sport) { sport_ = sport; return *this; }
PacketBuilder& PacketBuilder::dstPort(uint16_t dport) { dport_ = dport; return *this; }
PacketBuilder& PacketBuilder::tcpFlags(uint8_t flags) { tcpFlags_ = flags; return *this; }
PacketBuilder& PacketBuilder::seq(uint32_t value) { seq_ = value; return *this; }
PacketBuilder& PacketBuilder::ackSeq(uint32_t value) { ackSeq_ = value; return *this; }
PacketBuilder& PacketBuilder::window(uint16_t value) { window_ = value; return *this; }

PacketBuilder& PacketBuilder::tcpOptions(Bytes options) {
  checkOptions(options, "tcpOptions");
  tcpOptions_ = std::move(options);
  return *this;
}

PacketBuilder& PacketBuilder::payload(std::span<const uint8_t> bytes) {
  payload_.assign(bytes.begin(), bytes.end());
  return *this;
}

PacketBuilder& PacketBuilder::payload(std::string_view text) {
  payload_.assign(text.begin(), text.end());
  return *this;
}

PacketBuilder& PacketBuilder::ipChecksum(uint16_t check) { ipCheck_ = check; return *this; }
PacketBuilder& PacketBuilder::l4Checksum(uint16_t check) { l4Check_ = check; return *this; }
PacketBuilder& PacketBuilder::truncate(std::size_t length) { truncate_ = length; return *this; }

Bytes PacketBuilder::build() const {
  // Inside out: the L4 segment first, because IPv4 lengths depend on it.
  Bytes segment;
  uint8_t derivedProto = 0;
  std::size_t checkOffset = 0;
  if (l4_ == L4::kTcp) {
    derivedProto = kIpProtoTcp;
    put16(segment, sport_);
    put16(segment, dport_);
    put32(segment, seq_);
    put32(segment, ackSeq_);
    put8(segment, static_cast<uint8_t>(((kTcpHeaderLen + tcpOptions_.size()) / 4) << 4));
    put8(segment, tcpFlags_);
    put16(segment, window_);
    checkOffset = segment.size();
    put16(segment, 0);
    put16(segment, 0);  // urgent pointer
    putBytes(segment, tcpOptions_);
  } else if (l4_ == L4::kUdp) {
    derivedProto = kIpProtoUdp;
    put16(segment, sport_);
    put16(segment, dport_);
    std::size_t udpLen = kUdpHeaderLen + payload_.size();
    if (udpLen > 0xffff) throw std::invalid_argument("UDP datagram longer than 65535 bytes");
    put16(segment, static_cast<uint16_t>(udpLen));
    checkOffset = segment.size();
    put16(segment, 0);
  }
  putBytes(segment, payload_);

  Bytes out;
  putMac(out, ethDst_);
  putMac(out, ethSrc_);
  uint16_t derivedEthertype = l3_ == L3::kIpv4 ? kEthPIp : l3_ == L3::kArp ? kEthPArp : 0;
  put16(out, ethertype_.value_or(derivedEthertype));

  if (l3_ == L3::kArp) {
    put16(out, 1);  // htype Ethernet
    put16(out, kEthPIp);
    put8(out, 6);
    put8(out, 4);
    put16(out, arp_.op);
    putMac(out, arp_.sha);
    putAddr(out, arp_.spa);
    putMac(out, arp_.tha);
    putAddr(out, arp_.tpa);
  } else if (l3_ == L3::kIpv4) {
    if (!ipProto_ && l4_ == L4::kNone) {
      throw std::logic_error("ipv4 without tcp()/udp() needs ipProto()");
    }
    uint8_t proto = ipProto_.value_or(derivedProto);
    std::size_t headerLen = kIpv4HeaderLen + ipOptions_.size();
    std::size_t totLen = headerLen + segment.size();
    if (totLen > 0xffff) throw std::invalid_argument("IPv4 packet longer than 65535 bytes");

    if (l4_ != L4::kNone) {
      uint16_t check = pseudoChecksum(saddr_, daddr_, derivedProto, segment);
      // UDP reserves 0 for "no checksum"; a computed 0 is sent as its one's-complement twin.
      if (l4_ == L4::kUdp && check == 0) check = 0xffff;
      set16(segment, checkOffset, l4Check_.value_or(check));
    }

    std::size_t ipStart = out.size();
    put8(out, static_cast<uint8_t>(0x40 | headerLen / 4));
    put8(out, tos_);
    put16(out, ipTotLen_.value_or(static_cast<uint16_t>(totLen)));
    put16(out, ipId_);
    put16(out, static_cast<uint16_t>((df_ ? kIpDf : 0) | (mf_ ? kIpMf : 0) | fragOffset_));
    put8(out, ttl_);
    put8(out, proto);
    put16(out, 0);
    putAddr(out, saddr_);
    putAddr(out, daddr_);
    putBytes(out, ipOptions_);
    uint16_t check = inetChecksum(std::span(out).subspan(ipStart, headerLen));
    set16(out, ipStart + 10, ipCheck_.value_or(check));
    putBytes(out, segment);
    if (truncate_ && *truncate_ < out.size()) out.resize(*truncate_);
    return out;
  }

  // ARP or no L3: whatever L4/payload was set follows directly (checksums need an IPv4 header,
  // so an L4 header here carries a zero checksum unless forced).
  if (l4_ != L4::kNone && l4Check_) set16(segment, checkOffset, *l4Check_);
  putBytes(out, segment);
  if (truncate_ && *truncate_ < out.size()) out.resize(*truncate_);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parsing

Packet parse(std::span<const uint8_t> frame) {
  Packet pkt;
  if (frame.size() < kEthHeaderLen) {
    pkt.payload.assign(frame.begin(), frame.end());
    return pkt;
  }
  EthHeader& eth = pkt.eth.emplace();
  eth.dst = getMac(frame, 0);
  eth.src = getMac(frame, 6);
  eth.proto = get16(frame, 12);
  std::size_t off = kEthHeaderLen;
  std::size_t end = frame.size();

  auto finish = [&]() -> Packet {
    if (off < end) pkt.payload.assign(frame.begin() + static_cast<std::ptrdiff_t>(off),
                                      frame.begin() + static_cast<std::ptrdiff_t>(end));
    return std::move(pkt);
  };

  if (eth.proto == kEthPArp) {
    if (end - off < kArpLen || get16(frame, off) != 1 || get16(frame, off + 2) != kEthPIp ||
        frame[off + 4] != 6 || frame[off + 5] != 4) {
      return finish();
    }
    ArpBody& arp = pkt.arp.emplace();
    arp.op = get16(frame, off + 6);
    arp.sha = getMac(frame, off + 8);
    arp.spa = getAddr(frame, off + 14);
    arp.tha = getMac(frame, off + 18);
    arp.tpa = getAddr(frame, off + 24);
    off += kArpLen;
    return finish();
  }
  if (eth.proto != kEthPIp || end - off < kIpv4HeaderLen || (frame[off] >> 4) != 4) return finish();
  std::size_t ihl = frame[off] & 0x0f;
  if (ihl < 5 || end - off < ihl * 4) return finish();

  Ipv4Header& iph = pkt.ip.emplace();
  iph.ihl = static_cast<uint8_t>(ihl);
  iph.tos = frame[off + 1];
  iph.totLen = get16(frame, off + 2);
  iph.id = get16(frame, off + 4);
  uint16_t fragWord = get16(frame, off + 6);
  iph.df = fragWord & kIpDf;
  iph.mf = fragWord & kIpMf;
  iph.fragOffset = fragWord & kIpOffsetMask;
  iph.ttl = frame[off + 8];
  iph.proto = frame[off + 9];
  iph.check = get16(frame, off + 10);
  iph.saddr = getAddr(frame, off + 12);
  iph.daddr = getAddr(frame, off + 16);
  iph.options.assign(frame.begin() + static_cast<std::ptrdiff_t>(off + kIpv4HeaderLen),
                     frame.begin() + static_cast<std::ptrdiff_t>(off + ihl * 4));
  // tot_len bounds the payload (drops Ethernet padding); a tot_len shorter than the header is
  // nonsense, so then the frame end is the only bound we have.
  if (iph.totLen >= ihl * 4) {
    if (off + iph.totLen > end) {
      pkt.ipTruncated = true;
    } else {
      end = off + iph.totLen;
    }
  }
  off += ihl * 4;
  // L4 headers exist only in the first fragment.
  if (iph.fragOffset != 0) return finish();

  if (iph.proto == kIpProtoTcp && end - off >= kTcpHeaderLen) {
    std::size_t doff = frame[off + 12] >> 4;
    if (doff < 5 || end - off < doff * 4) return finish();
    TcpHeader& th = pkt.tcp.emplace();
    th.sport = get16(frame, off);
    th.dport = get16(frame, off + 2);
    th.seq = get32(frame, off + 4);
    th.ackSeq = get32(frame, off + 8);
    th.doff = static_cast<uint8_t>(doff);
    th.flags = frame[off + 13];
    th.window = get16(frame, off + 14);
    th.check = get16(frame, off + 16);
    th.urgPtr = get16(frame, off + 18);
    th.options.assign(frame.begin() + static_cast<std::ptrdiff_t>(off + kTcpHeaderLen),
                      frame.begin() + static_cast<std::ptrdiff_t>(off + doff * 4));
    off += doff * 4;
  } else if (iph.proto == kIpProtoUdp && end - off >= kUdpHeaderLen) {
    UdpHeader& uh = pkt.udp.emplace();
    uh.sport = get16(frame, off);
    uh.dport = get16(frame, off + 2);
    uh.len = get16(frame, off + 4);
    uh.check = get16(frame, off + 6);
    off += kUdpHeaderLen;
  }
  return finish();
}

ChecksumStatus checkChecksums(std::span<const uint8_t> frame) {
  ChecksumStatus status;
  Packet pkt = parse(frame);
  if (!pkt.ip || pkt.ipTruncated || pkt.ip->totLen < pkt.ip->ihl * 4u) return status;
  const Ipv4Header& iph = *pkt.ip;
  std::size_t ipStart = kEthHeaderLen;
  std::size_t headerLen = iph.ihl * 4u;
  // Summing a header that includes its own correct checksum gives 0 after complement.
  status.ip = inetChecksum(frame.subspan(ipStart, headerLen)) == 0;
  auto segment = frame.subspan(ipStart + headerLen, iph.totLen - headerLen);
  if (iph.fragOffset != 0 || iph.mf) {
    status.l4 = true;  // a fragment's L4 checksum covers bytes this frame does not hold
  } else if (iph.proto == kIpProtoTcp) {
    status.l4 = pkt.tcp && pseudoChecksum(iph.saddr, iph.daddr, iph.proto, segment) == 0;
  } else if (iph.proto == kIpProtoUdp) {
    status.l4 = pkt.udp && (pkt.udp->check == 0 ||
                            pseudoChecksum(iph.saddr, iph.daddr, iph.proto, segment) == 0);
  } else {
    status.l4 = true;
  }
  return status;
}

bool checksumsValid(std::span<const uint8_t> frame) {
  ChecksumStatus s = checkChecksums(frame);
  return s.ip && s.l4;
}

std::string hexdump(std::span<const uint8_t> bytes) {
  std::string out;
  char buf[24];
  for (std::size_t line = 0; line < bytes.size(); line += 16) {
    std::snprintf(buf, sizeof buf, "%04zx ", line);
    out += buf;
    std::string ascii;
    for (std::size_t i = line; i < line + 16; ++i) {
      if (i % 16 == 8) out += ' ';
      if (i < bytes.size()) {
        std::snprintf(buf, sizeof buf, " %02x", bytes[i]);
        out += buf;
        ascii += (bytes[i] >= 0x20 && bytes[i] < 0x7f) ? static_cast<char>(bytes[i]) : '.';
      } else {
        out += "   ";
      }
    }
    out += "  " + ascii + "\n";
  }
  if (bytes.empty()) out = "(empty)\n";
  return out;
}

std::string diff(std::span<const uint8_t> expected, std::span<const uint8_t> actual) {
  if (std::ranges::equal(expected, actual)) return "";
  Packet e = parse(expected);
  Packet a = parse(actual);
  FieldDiff d;

  if (d.presence("eth", e.eth, a.eth)) {
    d.macAddr("eth.dst", e.eth->dst, a.eth->dst);
    d.macAddr("eth.src", e.eth->src, a.eth->src);
    d.hexNumber("eth.proto", e.eth->proto, a.eth->proto, 4);
  }
  if (d.presence("arp", e.arp, a.arp)) {
    d.number("arp.op", e.arp->op, a.arp->op);
    d.macAddr("arp.sha", e.arp->sha, a.arp->sha);
    d.addr("arp.spa", e.arp->spa, a.arp->spa);
    d.macAddr("arp.tha", e.arp->tha, a.arp->tha);
    d.addr("arp.tpa", e.arp->tpa, a.arp->tpa);
  }
  if (d.presence("ip", e.ip, a.ip)) {
    const Ipv4Header& x = *e.ip;
    const Ipv4Header& y = *a.ip;
    d.number("ip.ihl", x.ihl, y.ihl);
    d.hexNumber("ip.tos", x.tos, y.tos, 2);
    d.number("ip.tot_len", x.totLen, y.totLen);
    d.number("ip.id", x.id, y.id);
    d.number("ip.df", int{x.df}, int{y.df});
    d.number("ip.mf", int{x.mf}, int{y.mf});
    d.number("ip.frag_off", x.fragOffset, y.fragOffset);
    d.number("ip.ttl", x.ttl, y.ttl);
    d.number("ip.proto", x.proto, y.proto);
    d.hexNumber("ip.csum", x.check, y.check, 4);
    d.addr("ip.saddr", x.saddr, y.saddr);
    d.addr("ip.daddr", x.daddr, y.daddr);
    d.bytes("ip.options", x.options, y.options);
  }
  if (e.ipTruncated != a.ipTruncated) {
    d.line(std::string("ip.truncated: expected ") + (e.ipTruncated ? "yes" : "no") + " got " +
           (a.ipTruncated ? "yes" : "no"));
  }
  if (d.presence("tcp", e.tcp, a.tcp)) {
    const TcpHeader& x = *e.tcp;
    const TcpHeader& y = *a.tcp;
    d.number("tcp.sport", x.sport, y.sport);
    d.number("tcp.dport", x.dport, y.dport);
    d.number("tcp.seq", x.seq, y.seq);
    d.number("tcp.ack_seq", x.ackSeq, y.ackSeq);
    d.number("tcp.doff", x.doff, y.doff);
    d.field("tcp.flags", x.flags, y.flags, tcpFlagsToString);
    d.number("tcp.window", x.window, y.window);
    d.hexNumber("tcp.csum", x.check, y.check, 4);
    d.number("tcp.urg_ptr", x.urgPtr, y.urgPtr);
    d.bytes("tcp.options", x.options, y.options);
  }
  if (d.presence("udp", e.udp, a.udp)) {
    d.number("udp.sport", e.udp->sport, a.udp->sport);
    d.number("udp.dport", e.udp->dport, a.udp->dport);
    d.number("udp.len", e.udp->len, a.udp->len);
    d.hexNumber("udp.csum", e.udp->check, a.udp->check, 4);
  }
  d.field("payload", e.payload, a.payload, payloadSummary);
  if (expected.size() != actual.size()) {
    d.line("length: expected " + std::to_string(expected.size()) + " got " +
           std::to_string(actual.size()));
  }
  if (d.empty()) {
    // Same fields and length, different bytes: e.g. Ethernet padding after tot_len.
    auto [ei, ai] = std::ranges::mismatch(expected, actual);
    auto off = static_cast<std::size_t>(ei - expected.begin());
    d.line("bytes: first difference at offset " + std::to_string(off) + ": expected " +
           hex(*ei, 2) + " got " + hex(*ai, 2));
  }
  return d.str() + "expected (" + std::to_string(expected.size()) + " bytes):\n" +
         hexdump(expected) + "actual (" + std::to_string(actual.size()) + " bytes):\n" +
         hexdump(actual);
}

}  // namespace np::test
