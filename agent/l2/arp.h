// ARP for L2 announcements: recognise the requests this node must answer for an announced
// service address, and write the reply and the gratuitous ARP a new holder sends (RFC 826,
// RFC 5227 §3 for the gratuitous form; IEEE 802.1Q for tagged frames). Pure code over byte
// buffers: the raw-socket responder (responder.h) feeds it frames and sends what it returns.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "core/net.h"

namespace np::l2 {

using Mac = std::array<uint8_t, 6>;
inline constexpr Mac kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// Why a frame is not an ARP request this node may answer. Counted by the responder, so an
// operator can see what the LAN sends ("agentctl l2 list" shows the counters).
enum class ArpIgnore : uint8_t {
  Truncated,      // shorter than Ethernet (+ 802.1Q tag) + the 28-byte ARP body
  NotArp,         // EtherType is not ARP (after at most one VLAN tag)
  NotIpv4OverEthernet,  // hardware type 1 / protocol 0x0800 / lengths 6 and 4 expected
  NotRequest,     // opcode is not 1 (a reply, RARP, ...)
  NotForUs,       // Ethernet destination neither broadcast nor this interface's MAC
  BadSender,      // sender hardware address is broadcast or multicast
  OtherVlan,      // tagged with a VLAN ID: it belongs to that VLAN's device (ens192.100), whose
                  // own responder sees it untagged; with no such device this node is not on it
  count_,
};
const char* arpIgnoreName(ArpIgnore why);

struct ArpRequest {
  Mac ethSrc{};                     // Ethernet source (where the reply goes)
  std::optional<uint16_t> vlanTci;  // the 802.1Q TCI of a priority-tagged request (VLAN ID 0)
  Mac senderMac{};                  // ar_sha
  Ipv4 senderIp;                    // ar_spa (0.0.0.0 for an RFC 5227 probe)
  Ipv4 targetIp;                    // ar_tpa: the address asked for
};

struct ArpParse {
  std::optional<ArpRequest> request;  // set when the frame is a request we may answer
  ArpIgnore why = ArpIgnore::Truncated;  // else why not
};

// frame: a whole Ethernet frame as read from an AF_PACKET/SOCK_RAW socket. The kernel moves a
// VLAN tag out of the frame into PACKET_AUXDATA: pass it as auxVlanTci; a tag still in the frame
// is read from there. ourMac: the MAC of
// the interface the frame came in on.
ArpParse parseArpRequest(std::span<const uint8_t> frame, const Mac& ourMac,
                         std::optional<uint16_t> auxVlanTci = std::nullopt);

// The reply to req saying "req.targetIp is at ourMac": unicast to the requester, untagged (a
// priority-tagged request, VLAN ID 0, is answered untagged). A probe (sender 0.0.0.0) is answered the same way (RFC 5227 §2.1.1: the
// prober must learn the address is taken).
std::vector<uint8_t> buildArpReply(const ArpRequest& req, const Mac& ourMac);

// The gratuitous ARP a node sends when it becomes the holder of ip: an ARP reply broadcast,
// sender and target address both ip, sender MAC ourMac (what Cilium 1.15 sends, and what Linux's
// arp_accept=0 neighbours use to refresh an existing entry).
std::vector<uint8_t> buildGratuitousArp(Ipv4 ip, const Mac& ourMac);

// The addresses a responder answers for, each set valid only until a deadline on the monotonic
// clock (issue 10: "a holder that cannot renew in time stops answering before the Lease can
// expire"). The deadline is the heartbeat's renew deadline (Announcer::answeringUntil): every
// reply and every gratuitous ARP is judged against it at the moment it would go out, so a stale
// set answers nothing even when the agent's loop that should have cleared it is late (a stall,
// a queue of requests read before the timer that withdraws them runs). Pure: the caller passes
// `now`.
class AnswerSet {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Verdict { Answer, NotAnnounced, Stale };

  // From now on answer for addrs while now < validUntil (Clock::time_point{}: never).
  void set(std::set<Ipv4> addrs, Clock::time_point validUntil) {
    addrs_ = std::move(addrs);
    validUntil_ = addrs_.empty() ? Clock::time_point{} : validUntil;
  }
  Verdict judge(Ipv4 ip, Clock::time_point now) const {
    if (!addrs_.contains(ip)) return Verdict::NotAnnounced;
    return now < validUntil_ ? Verdict::Answer : Verdict::Stale;
  }
  // The addresses answered for at `now` (none once the set is stale).
  std::set<Ipv4> live(Clock::time_point now) const { return now < validUntil_ ? addrs_ : std::set<Ipv4>{}; }
  const std::set<Ipv4>& addresses() const { return addrs_; }
  Clock::time_point validUntil() const { return validUntil_; }

 private:
  std::set<Ipv4> addrs_;
  Clock::time_point validUntil_{};
};

}  // namespace np::l2
