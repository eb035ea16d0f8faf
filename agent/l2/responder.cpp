#include "l2/responder.h"

#include <arpa/inet.h>
#include <linux/if_arp.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/ethernet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace np::l2 {

Result<std::unique_ptr<Responder>> Responder::open(boost::asio::io_context& io, const std::string& device) {
  const std::string ctx = "open ARP responder on " + device;
  const unsigned ifindex = ::if_nametoindex(device.c_str());
  if (ifindex == 0) return sysError(ctx);
  // Protocol 0: the socket receives nothing until bind() names the protocol and the device, so
  // no frame of another interface is ever queued on it (a socket opened with ETH_P_ARP receives
  // from every interface until it is bound).
  int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return sysError(ctx + ": socket(AF_PACKET)");
  auto fail = [&](const std::string& what) {
    Error e = sysError(ctx + ": " + what);
    ::close(fd);
    return e;
  };
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ARP);
  sll.sll_ifindex = static_cast<int>(ifindex);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) < 0) return fail("bind");
  int one = 1;
  // The kernel takes a VLAN tag out of the frame; auxdata gives it back so tagged requests are
  // told apart from untagged ones.
  if (::setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) < 0) return fail("PACKET_AUXDATA");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, device.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) return fail("read MAC");
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
    ::close(fd);
    return error(ctx, "not an Ethernet device");
  }
  Mac mac;
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  return std::unique_ptr<Responder>(new Responder(io, fd, device, static_cast<int>(ifindex), mac));
}

Responder::Responder(boost::asio::io_context& io, int fd, std::string device, int ifindex, Mac mac)
    : sock_(io, fd), device_(std::move(device)), ifindex_(ifindex), mac_(mac) {
  arm();
}

Responder::~Responder() {
  boost::system::error_code ec;
  sock_.cancel(ec);
  sock_.close(ec);
}

void Responder::arm() {
  sock_.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the responder is going away
    drain();
    arm();
  });
}

void Responder::drain() {
  std::array<uint8_t, 256> buf;  // an ARP frame is 60 bytes; anything longer is cut, still parsed
  alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(tpacket_auxdata))> cbuf;
  for (int i = 0; i < 64; ++i) {  // bounded per wake-up, so a flood cannot starve the loop
    iovec iov{buf.data(), buf.size()};
    sockaddr_ll from{};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.data();
    msg.msg_controllen = cbuf.size();
    const ssize_t n = ::recvmsg(sock_.native_handle(), &msg, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) return;  // EAGAIN: drained
    if (from.sll_pkttype == PACKET_OUTGOING) continue;  // our own replies
    if (from.sll_ifindex != ifindex_) {  // cannot happen once bound; never answered if it does
      ++counters_.otherInterface;
      continue;
    }
    std::optional<uint16_t> tci;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
      tpacket_auxdata aux;
      std::memcpy(&aux, CMSG_DATA(c), sizeof(aux));
      if (aux.tp_status & TP_STATUS_VLAN_VALID) tci = aux.tp_vlan_tci;
    }
    const size_t len = std::min(static_cast<size_t>(n), buf.size());
    auto parsed = parseArpRequest(std::span<const uint8_t>(buf.data(), len), mac_, tci);
    if (!parsed.request) {
      ++counters_.ignored[static_cast<size_t>(parsed.why)];
      continue;
    }
    ++counters_.requests;
    // Judged now, not when the set was handed in: requests queued while the loop was late are
    // not answered from a set that has gone stale meanwhile.
    switch (set_.judge(parsed.request->targetIp, AnswerSet::Clock::now())) {
      case AnswerSet::Verdict::NotAnnounced:
        ++counters_.notAnnounced;
        continue;
      case AnswerSet::Verdict::Stale:
        ++counters_.stale;
        continue;
      case AnswerSet::Verdict::Answer:
        break;
    }
    if (send(buildArpReply(*parsed.request, mac_), parsed.request->ethSrc)) ++counters_.replies;
  }
}

bool Responder::send(const std::vector<uint8_t>& frame, const Mac& to) {
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ARP);
  sll.sll_ifindex = ifindex_;
  sll.sll_halen = 6;
  std::memcpy(sll.sll_addr, to.data(), 6);
  if (::sendto(sock_.native_handle(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&sll),
               sizeof(sll)) != static_cast<ssize_t>(frame.size())) {
    ++counters_.sendErrors;
    return false;
  }
  return true;
}

Result<void> Responder::announce(Ipv4 ip) {
  switch (set_.judge(ip, AnswerSet::Clock::now())) {
    case AnswerSet::Verdict::NotAnnounced:
      return error("gratuitous ARP for " + ip.str() + " on " + device_, "not an address this node answers for");
    case AnswerSet::Verdict::Stale:
      ++counters_.stale;
      return error("gratuitous ARP for " + ip.str() + " on " + device_,
                   "the address set is past its deadline (heartbeat not renewed in time)");
    case AnswerSet::Verdict::Answer:
      break;
  }
  if (!send(buildGratuitousArp(ip, mac_), kBroadcastMac))
    return sysError("send gratuitous ARP for " + ip.str() + " on " + device_);
  ++counters_.gratuitous;
  return {};
}

}  // namespace np::l2
