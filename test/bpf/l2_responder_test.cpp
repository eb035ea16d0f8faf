// The L2 announcement ARP responder (agent/l2/responder.h) on a real veth in the tier's private
// namespace: the LAN side (peer0) sends real ARP requests through the kernel and reads what
// comes back. Not a BPF program, but the same kind of proof: real frames through real sockets
// in a namespace of our own. The kernel answers for ens192's own address; nobody but the
// responder may answer for an announced service address, which is on no interface.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "env.h"
#include "l2/responder.h"

namespace {

using namespace np;
using namespace np::l2;
using Clock = std::chrono::steady_clock;

Ipv4 ip4(const char* s) { return *Ipv4::parse(s); }

// The LAN host: a raw ARP socket on peer0.
struct LanHost {
  int fd = -1;
  int ifindex = 0;
  Mac mac{};
  LanHost() {
    fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ARP));
    ifindex = static_cast<int>(::if_nametoindex("peer0"));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "peer0", IFNAMSIZ - 1);
    ::ioctl(fd, SIOCGIFHWADDR, &ifr);
    std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ARP);
    sll.sll_ifindex = ifindex;
    ::bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll));
  }
  ~LanHost() { ::close(fd); }

  void ask(Ipv4 target, const Mac& dst = kBroadcastMac, uint16_t op = 1) {
    std::vector<uint8_t> f(dst.begin(), dst.end());
    f.insert(f.end(), mac.begin(), mac.end());
    f.insert(f.end(), {0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, uint8_t(op)});
    f.insert(f.end(), mac.begin(), mac.end());
    f.insert(f.end(), {192, 168, 10, 200});
    f.insert(f.end(), 6, 0);
    const auto* t = reinterpret_cast<const uint8_t*>(&target.be);
    f.insert(f.end(), t, t + 4);
    f.resize(60, 0);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    std::memcpy(sll.sll_addr, dst.data(), 6);
    ASSERT_EQ(::sendto(fd, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)), 60);
  }

  // ARP replies received (not our own frames) while running io for `window`.
  std::vector<std::vector<uint8_t>> replies(boost::asio::io_context& io, std::chrono::milliseconds window,
                                            size_t want = SIZE_MAX) {
    std::vector<std::vector<uint8_t>> out;
    const auto end = Clock::now() + window;
    while (Clock::now() < end && out.size() < want) {
      io.run_for(std::chrono::milliseconds(5));
      io.restart();
      std::array<uint8_t, 256> buf;
      sockaddr_ll from{};
      socklen_t fl = sizeof(from);
      ssize_t n;
      while ((n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl)) > 0) {
        if (from.sll_pkttype == PACKET_OUTGOING) continue;
        if (n >= 42 && buf[20] == 0 && buf[21] == 2) out.emplace_back(buf.begin(), buf.begin() + n);
      }
    }
    return out;
  }
};

TEST(L2Responder, AnswersAnnouncedAddressesOnlyWithItsMac) {
  boost::asio::io_context io;
  auto r = Responder::open(io, "ens192");
  ASSERT_TRUE(r) << r.error().message();
  LanHost lan;
  ASSERT_GE(lan.fd, 0);
  (*r)->setAddresses({ip4("192.168.20.1")}, Clock::now() + std::chrono::seconds(60));

  lan.ask(ip4("192.168.20.1"));
  auto got = lan.replies(io, std::chrono::milliseconds(2000), 1);
  ASSERT_EQ(got.size(), 1u) << "no answer for the announced address";
  const auto& f = got[0];
  EXPECT_TRUE(std::equal(lan.mac.begin(), lan.mac.end(), f.begin()));          // to the asker
  EXPECT_TRUE(std::equal((*r)->mac().begin(), (*r)->mac().end(), f.begin() + 22));  // VIP at ens192's MAC
  const uint8_t vip[] = {192, 168, 20, 1};
  EXPECT_TRUE(std::equal(vip, vip + 4, f.begin() + 28));
  // Exactly one answer: no second one arrives.
  EXPECT_TRUE(lan.replies(io, std::chrono::milliseconds(200)).empty());
  EXPECT_EQ((*r)->counters().replies, 1u);

  // Another address: nobody answers (the kernel does not own it, we do not announce it).
  lan.ask(ip4("192.168.20.2"));
  EXPECT_TRUE(lan.replies(io, std::chrono::milliseconds(300)).empty());
  EXPECT_GE((*r)->counters().notAnnounced, 1u);

  // Withdrawn: silent from then on.
  (*r)->setAddresses({}, Clock::now() + std::chrono::seconds(60));
  lan.ask(ip4("192.168.20.1"));
  EXPECT_TRUE(lan.replies(io, std::chrono::milliseconds(300)).empty());
  EXPECT_EQ((*r)->counters().replies, 1u);

  // An ARP reply sent at us is not a request: counted, not answered.
  (*r)->setAddresses({ip4("192.168.20.1")}, Clock::now() + std::chrono::seconds(60));
  const uint64_t before = (*r)->counters().ignored[static_cast<size_t>(ArpIgnore::NotRequest)];
  lan.ask(ip4("192.168.20.1"), kBroadcastMac, 2);
  lan.replies(io, std::chrono::milliseconds(200));
  EXPECT_EQ((*r)->counters().ignored[static_cast<size_t>(ArpIgnore::NotRequest)], before + 1);
  EXPECT_EQ((*r)->counters().replies, 1u);
}

TEST(L2Responder, GratuitousArpReachesTheLan) {
  boost::asio::io_context io;
  auto r = Responder::open(io, "ens192");
  ASSERT_TRUE(r) << r.error().message();
  LanHost lan;
  (*r)->setAddresses({ip4("192.168.20.5")}, Clock::now() + std::chrono::seconds(60));
  ASSERT_TRUE((*r)->announce(ip4("192.168.20.5")));
  auto got = lan.replies(io, std::chrono::milliseconds(2000), 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(std::equal(kBroadcastMac.begin(), kBroadcastMac.end(), got[0].begin()));
  const uint8_t vip[] = {192, 168, 20, 5};
  EXPECT_TRUE(std::equal(vip, vip + 4, got[0].begin() + 28));
  EXPECT_TRUE(std::equal(vip, vip + 4, got[0].begin() + 38));
}

// The holder's set carries its renew deadline: past it the responder is silent by itself, with
// no one clearing the set (the agent's loop stalled, or the API cut off and the withdrawal late).
TEST(L2Responder, AStaleAddressSetAnswersNothingAndSaysSo) {
  boost::asio::io_context io;
  auto r = Responder::open(io, "ens192");
  ASSERT_TRUE(r) << r.error().message();
  LanHost lan;
  const auto validUntil = Clock::now() + std::chrono::milliseconds(300);
  (*r)->setAddresses({ip4("192.168.20.1")}, validUntil);
  lan.ask(ip4("192.168.20.1"));
  ASSERT_EQ(lan.replies(io, std::chrono::milliseconds(2000), 1).size(), 1u) << "no answer before the deadline";
  // Past the deadline (polled, not slept: the clock is the responder's own).
  while (Clock::now() < validUntil) lan.replies(io, std::chrono::milliseconds(20));
  EXPECT_TRUE((*r)->liveAddresses().empty());
  lan.ask(ip4("192.168.20.1"));
  EXPECT_TRUE(lan.replies(io, std::chrono::milliseconds(300)).empty()) << "a stale set answered";
  EXPECT_EQ((*r)->counters().replies, 1u);
  EXPECT_EQ((*r)->counters().stale, 1u);
  // No gratuitous ARP from a stale set either.
  auto g = (*r)->announce(ip4("192.168.20.1"));
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message().find("deadline"), std::string::npos) << g.error().message();
  EXPECT_TRUE(lan.replies(io, std::chrono::milliseconds(200)).empty());
  EXPECT_EQ((*r)->counters().gratuitous, 0u);
  // A renewed set answers again.
  (*r)->setAddresses({ip4("192.168.20.1")}, Clock::now() + std::chrono::seconds(60));
  lan.ask(ip4("192.168.20.1"));
  EXPECT_EQ(lan.replies(io, std::chrono::milliseconds(2000), 1).size(), 1u);
}

TEST(L2Responder, RefusesADeviceThatDoesNotExist) {
  boost::asio::io_context io;
  auto r = Responder::open(io, "nosuchdev0");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("nosuchdev0"), std::string::npos);
}

}  // namespace
