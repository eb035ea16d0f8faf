// The ARP responder of L2 announcements, in userspace: one AF_PACKET socket per announcing
// device, read on the agent's io_context, answering requests for the addresses this node holds
// the Lease of, with the device's MAC.
//
// Why userspace and not a tc program (Cilium 1.15 answers from bpf_host.c): the answer must stop
// the moment this node may no longer act as the holder. Here that is the agent's own state - a
// killed agent answers nothing, and a holder past its renew deadline clears its addresses before
// the Lease can expire elsewhere - where a BPF responder keeps answering after the agent died
// until a liveness timestamp it reads goes stale. ARP is a handful of packets per second per
// address, so the datapath gains nothing from answering in the kernel, and the native device's
// tc program stays out of it. The kernel never answers these requests itself: the addresses are
// on no interface.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/net.h"
#include "core/result.h"
#include "l2/arp.h"

namespace np::l2 {

class Responder {
 public:
  struct Counters {
    uint64_t requests = 0;        // ARP requests for some address on this device
    uint64_t replies = 0;         // answered
    uint64_t notAnnounced = 0;    // for an address this node does not announce (left alone)
    uint64_t stale = 0;           // for an announced address whose set is past its deadline (silent)
    uint64_t gratuitous = 0;      // gratuitous ARPs sent
    uint64_t sendErrors = 0;
    uint64_t otherInterface = 0;  // frames that came in on another interface (ignored)
    std::array<uint64_t, static_cast<size_t>(ArpIgnore::count_)> ignored{};  // by reason
  };

  // Opens the socket on `device` and starts reading. Fails with the reason (no such device,
  // not Ethernet, no CAP_NET_RAW).
  static Result<std::unique_ptr<Responder>> open(boost::asio::io_context& io, const std::string& device);
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // The addresses to answer for on this device from now on, while the monotonic clock is before
  // validUntil (the heartbeat's renew deadline: strictly before any other node may judge the
  // Lease expired). Checked on every reply and gratuitous ARP; past it, nothing is answered
  // (counters().stale) until a new set arrives.
  void setAddresses(std::set<Ipv4> addrs, AnswerSet::Clock::time_point validUntil) {
    set_.set(std::move(addrs), validUntil);
  }
  const std::set<Ipv4>& addresses() const { return set_.addresses(); }
  // The addresses answered for right now (none when the set is stale).
  std::set<Ipv4> liveAddresses() const { return set_.live(AnswerSet::Clock::now()); }
  // One gratuitous ARP for ip (a node that just became the holder); refused when ip is not in a
  // valid set.
  Result<void> announce(Ipv4 ip);

  const std::string& device() const { return device_; }
  int ifindex() const { return ifindex_; }
  const Mac& mac() const { return mac_; }
  const Counters& counters() const { return counters_; }

 private:
  Responder(boost::asio::io_context& io, int fd, std::string device, int ifindex, Mac mac);
  void arm();
  void drain();
  bool send(const std::vector<uint8_t>& frame, const Mac& to);

  boost::asio::posix::stream_descriptor sock_;
  std::string device_;
  int ifindex_;
  Mac mac_;
  AnswerSet set_;
  Counters counters_;
};

}  // namespace np::l2
