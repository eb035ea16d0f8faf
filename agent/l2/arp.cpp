#include "l2/arp.h"

#include <algorithm>
#include <cstring>

namespace np::l2 {
namespace {

constexpr uint16_t kEthArp = 0x0806;
constexpr uint16_t kEthIpv4 = 0x0800;
constexpr uint16_t kEthVlan = 0x8100;
constexpr size_t kEthHdr = 14;
constexpr size_t kVlanHdr = 4;
constexpr size_t kArpBody = 28;
// Ethernet's minimum frame without FCS: the kernel does not pad AF_PACKET writes on veth.
constexpr size_t kMinFrame = 60;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// An untagged Ethernet frame with an ARP body, op given, padded to the minimum frame.
std::vector<uint8_t> frame(const Mac& dst, const Mac& src, uint16_t op, const Mac& sha, Ipv4 spa,
                           const Mac& tha, Ipv4 tpa) {
  // Padded to the minimum frame from the start (a resize after the writes also trips GCC 12's
  // false -Warray-bounds at -O3).
  std::vector<uint8_t> f(std::max<size_t>(kEthHdr + kArpBody, kMinFrame), 0);
  uint8_t* p = f.data();
  std::memcpy(p, dst.data(), 6);
  std::memcpy(p + 6, src.data(), 6);
  p += 12;
  put16(p, kEthArp);
  p += 2;
  put16(p, 1);         // hardware: Ethernet
  put16(p + 2, kEthIpv4);
  p[4] = 6;
  p[5] = 4;
  put16(p + 6, op);
  std::memcpy(p + 8, sha.data(), 6);
  std::memcpy(p + 14, &spa.be, 4);
  std::memcpy(p + 18, tha.data(), 6);
  std::memcpy(p + 24, &tpa.be, 4);
  return f;
}

}  // namespace

const char* arpIgnoreName(ArpIgnore why) {
  switch (why) {
    case ArpIgnore::Truncated: return "truncated";
    case ArpIgnore::NotArp: return "not ARP";
    case ArpIgnore::NotIpv4OverEthernet: return "not IPv4 over Ethernet";
    case ArpIgnore::NotRequest: return "not a request";
    case ArpIgnore::NotForUs: return "not addressed to this interface";
    case ArpIgnore::BadSender: return "bad sender address";
    case ArpIgnore::OtherVlan: return "tagged for another VLAN";
    case ArpIgnore::count_: break;
  }
  return "?";
}

ArpParse parseArpRequest(std::span<const uint8_t> f, const Mac& ourMac,
                         std::optional<uint16_t> auxVlanTci) {
  ArpParse out;
  if (f.size() < kEthHdr) return out;
  size_t off = 12;
  uint16_t type = be16(&f[off]);
  std::optional<uint16_t> tci = auxVlanTci;
  if (type == kEthVlan) {
    if (f.size() < kEthHdr + kVlanHdr) return out;
    tci = be16(&f[off + 2]);
    off += kVlanHdr;
    type = be16(&f[off]);
  }
  off += 2;
  if (type != kEthArp) {
    out.why = ArpIgnore::NotArp;
    return out;
  }
  if (tci && (*tci & 0x0fff) != 0) {
    out.why = ArpIgnore::OtherVlan;
    return out;
  }
  if (f.size() < off + kArpBody) return out;  // Truncated
  const uint8_t* a = &f[off];
  if (be16(a) != 1 || be16(a + 2) != kEthIpv4 || a[4] != 6 || a[5] != 4) {
    out.why = ArpIgnore::NotIpv4OverEthernet;
    return out;
  }
  if (be16(a + 6) != 1) {
    out.why = ArpIgnore::NotRequest;
    return out;
  }
  Mac dst;
  std::memcpy(dst.data(), f.data(), 6);
  if (dst != kBroadcastMac && dst != ourMac) {
    out.why = ArpIgnore::NotForUs;
    return out;
  }
  ArpRequest r;
  std::memcpy(r.ethSrc.data(), f.data() + 6, 6);
  std::memcpy(r.senderMac.data(), a + 8, 6);
  std::memcpy(&r.senderIp.be, a + 14, 4);
  std::memcpy(&r.targetIp.be, a + 24, 4);
  r.vlanTci = tci;
  // A multicast sender hardware address (group bit set, which includes broadcast) cannot be
  // answered without flooding the LAN; RFC 1812 §3.3.2 has routers ignore such requests.
  if ((r.senderMac[0] & 1) || (r.ethSrc[0] & 1)) {
    out.why = ArpIgnore::BadSender;
    return out;
  }
  out.request = r;
  return out;
}

std::vector<uint8_t> buildArpReply(const ArpRequest& req, const Mac& ourMac) {
  return frame(req.ethSrc, ourMac, 2, ourMac, req.targetIp, req.senderMac,
               req.senderIp);
}

std::vector<uint8_t> buildGratuitousArp(Ipv4 ip, const Mac& ourMac) {
  return frame(kBroadcastMac, ourMac, 2, ourMac, ip, kBroadcastMac, ip);
}

}  // namespace np::l2
