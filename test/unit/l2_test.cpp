// L2 announcements: ARP parsing and encoding, policy selection (Cilium's rules), and the Lease
// election state machine under a simulated clock.
#include <gtest/gtest.h>

#include <net/if.h>
#include <net/if_arp.h>

#include <boost/json.hpp>

#include "l2/arp.h"
#include "l2/policy.h"
#include "lease/elector.h"

namespace {

using namespace np;
using namespace np::l2;
namespace json = boost::json;

const Mac kOurs{0x02, 0x00, 0x00, 0x00, 0x01, 0x01};
const Mac kClient{0x02, 0x00, 0x00, 0x00, 0x0c, 0x01};

Ipv4 ip(const char* s) { return *Ipv4::parse(s); }

// An ARP request frame as `arping -I eth0 192.168.20.1` sends it (broadcast, padded to 60).
std::vector<uint8_t> request(const Mac& dst, Ipv4 target, std::optional<uint16_t> vlan = {}) {
  std::vector<uint8_t> f(dst.begin(), dst.end());
  f.insert(f.end(), kClient.begin(), kClient.end());
  if (vlan) f.insert(f.end(), {0x81, 0x00, uint8_t(*vlan >> 8), uint8_t(*vlan)});
  f.insert(f.end(), {0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01});
  f.insert(f.end(), kClient.begin(), kClient.end());
  f.insert(f.end(), {192, 168, 10, 50});
  f.insert(f.end(), 6, 0);
  const auto* t = reinterpret_cast<const uint8_t*>(&target.be);
  f.insert(f.end(), t, t + 4);
  f.resize(std::max<size_t>(f.size(), 60), 0);
  return f;
}

TEST(L2Arp, BroadcastRequestIsParsedAndAnsweredByteExact) {
  auto f = request(kBroadcastMac, ip("192.168.20.1"));
  auto p = parseArpRequest(f, kOurs);
  ASSERT_TRUE(p.request);
  EXPECT_EQ(p.request->targetIp, ip("192.168.20.1"));
  EXPECT_EQ(p.request->senderIp, ip("192.168.10.50"));
  EXPECT_FALSE(p.request->vlanTci);
  const std::vector<uint8_t> want = {
      0x02, 0x00, 0x00, 0x00, 0x0c, 0x01,  // to the requester
      0x02, 0x00, 0x00, 0x00, 0x01, 0x01,  // from us
      0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,  // ARP reply
      0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 192, 168, 20, 1,         // VIP is at our MAC
      0x02, 0x00, 0x00, 0x00, 0x0c, 0x01, 192, 168, 10, 50,        // to the asker
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};      // padding to 60
  EXPECT_EQ(buildArpReply(*p.request, kOurs), want);
}

TEST(L2Arp, UnicastToUsIsAnsweredUnicastToSomeoneElseIsNot) {
  EXPECT_TRUE(parseArpRequest(request(kOurs, ip("192.168.20.1")), kOurs).request);
  const Mac other{0x02, 0, 0, 0, 0x02, 0x02};
  auto p = parseArpRequest(request(other, ip("192.168.20.1")), kOurs);
  EXPECT_FALSE(p.request);
  EXPECT_EQ(p.why, ArpIgnore::NotForUs);
}

TEST(L2Arp, VlanTaggedRequestIsLeftToThatVlansDevice) {
  // Tagged in the frame, or with the tag the kernel moved into PACKET_AUXDATA: not ours.
  auto p = parseArpRequest(request(kBroadcastMac, ip("192.168.20.7"), 0x0064), kOurs);
  EXPECT_FALSE(p.request);
  EXPECT_EQ(p.why, ArpIgnore::OtherVlan);
  p = parseArpRequest(request(kBroadcastMac, ip("192.168.20.7")), kOurs, uint16_t{0x2064});
  EXPECT_EQ(p.why, ArpIgnore::OtherVlan);
  // Priority-tagged (VLAN ID 0, PCP 5) is the untagged LAN: answered, untagged.
  p = parseArpRequest(request(kBroadcastMac, ip("192.168.20.7"), 0xa000), kOurs);
  ASSERT_TRUE(p.request);
  auto reply = buildArpReply(*p.request, kOurs);
  ASSERT_EQ(reply.size(), 60u);
  EXPECT_EQ(reply[12], 0x08);
  EXPECT_EQ(reply[13], 0x06);
  EXPECT_EQ(reply[21], 2);  // opcode reply
}

TEST(L2Arp, TruncatedAndMalformedFramesAreIgnoredWithAReason) {
  auto f = request(kBroadcastMac, ip("192.168.20.1"));
  for (size_t len : {0ul, 5ul, 13ul, 14ul, 20ul, 41ul}) {
    auto p = parseArpRequest(std::span(f.data(), len), kOurs);
    EXPECT_FALSE(p.request) << len;
    EXPECT_EQ(p.why, ArpIgnore::Truncated) << len;
  }
  EXPECT_TRUE(parseArpRequest(std::span(f.data(), 42), kOurs).request);  // unpadded is fine
  auto tagged = request(kBroadcastMac, ip("192.168.20.1"), 5);
  EXPECT_EQ(parseArpRequest(std::span(tagged.data(), 16), kOurs).why, ArpIgnore::Truncated);

  auto reply = f;
  reply[21] = 2;
  EXPECT_EQ(parseArpRequest(reply, kOurs).why, ArpIgnore::NotRequest);
  auto ipv6 = f;
  ipv6[12] = 0x86;
  ipv6[13] = 0xdd;
  EXPECT_EQ(parseArpRequest(ipv6, kOurs).why, ArpIgnore::NotArp);
  auto tokenRing = f;
  tokenRing[15] = 6;
  EXPECT_EQ(parseArpRequest(tokenRing, kOurs).why, ArpIgnore::NotIpv4OverEthernet);
  auto plen = f;
  plen[19] = 16;
  EXPECT_EQ(parseArpRequest(plen, kOurs).why, ArpIgnore::NotIpv4OverEthernet);
  auto mcast = f;
  mcast[22] = 0x01;  // sender MAC with the group bit
  EXPECT_EQ(parseArpRequest(mcast, kOurs).why, ArpIgnore::BadSender);
}

TEST(L2Arp, GratuitousArpIsABroadcastReplyForTheAddress) {
  auto g = buildGratuitousArp(ip("192.168.20.9"), kOurs);
  ASSERT_EQ(g.size(), 60u);
  EXPECT_TRUE(std::equal(kBroadcastMac.begin(), kBroadcastMac.end(), g.begin()));
  EXPECT_EQ(g[21], 2);
  EXPECT_TRUE(std::equal(kOurs.begin(), kOurs.end(), g.begin() + 22));
  const std::vector<uint8_t> vip = {192, 168, 20, 9};
  EXPECT_TRUE(std::equal(vip.begin(), vip.end(), g.begin() + 28));
  EXPECT_TRUE(std::equal(vip.begin(), vip.end(), g.begin() + 38));
}

// The seed's policy, as its YAML decodes.
const char* kSeedPolicy = R"({"apiVersion":"cilium.io/v2alpha1","kind":"CiliumL2AnnouncementPolicy",
  "metadata":{"name":"policy"},
  "spec":{"nodeSelector":{"matchExpressions":[{"key":"node-role.kubernetes.io/control-plane","operator":"Exists"}]},
          "interfaces":["ens192"],"externalIPs":true,"loadBalancerIPs":true}})";

Policy policy(const char* text) {
  auto p = Policy::fromJson(json::parse(text));
  EXPECT_TRUE(p) << (p ? "" : p.error().message());
  return *p;
}

Service hubbleUi() {
  Service s;
  s.ns = "cilium";
  s.name = "hubble-ui";
  s.labels = {{"k8s-app", "hubble-ui"}};
  s.loadBalancerIPs = {ip("192.168.20.1")};
  return s;
}

TEST(L2Policy, SeedPolicySelectsControlPlaneNodesOnEns192) {
  std::vector<Policy> ps{policy(kSeedPolicy)};
  const Labels cp{{"node-role.kubernetes.io/control-plane", "true"}};
  const std::vector<std::string> devs{"ens192", "ens1920", "lxc1234", "eth0"};
  auto a = announcementsFor(ps, hubbleUi(), cp, devs);
  // Unanchored, as Go's MatchString: "ens192" also matches ens1920.
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0], (Announcement{ip("192.168.20.1"), "ens192"}));
  EXPECT_EQ(a[1], (Announcement{ip("192.168.20.1"), "ens1920"}));
  EXPECT_TRUE(announcementsFor(ps, hubbleUi(), Labels{{"kubernetes.io/os", "linux"}}, devs).empty());
  EXPECT_EQ(leaseName(hubbleUi()), "nodepath-l2announce-cilium-hubble-ui");
}

TEST(L2Policy, AddressKindsClassAndServiceSelector) {
  auto lbOnly = policy(R"({"metadata":{"name":"lb"},"spec":{"loadBalancerIPs":true,
      "serviceSelector":{"matchLabels":{"io.kubernetes.service.namespace":"cilium"}},
      "interfaces":["^eth[0-9]+$"]}})");
  Service s = hubbleUi();
  s.externalIPs = {ip("198.51.100.7")};
  const std::vector<std::string> devs{"eth0", "eth1x"};
  auto a = announcementsFor({lbOnly}, s, {}, devs);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0], (Announcement{ip("192.168.20.1"), "eth0"}));
  s.ns = "default";  // the implicit namespace label no longer matches
  EXPECT_TRUE(announcementsFor({lbOnly}, s, {}, devs).empty());
  s.ns = "cilium";
  s.loadBalancerClass = "example.com/other";
  EXPECT_TRUE(announcementsFor({lbOnly}, s, {}, devs).empty());
  s.loadBalancerClass = kL2LoadBalancerClass;
  EXPECT_EQ(announcementsFor({lbOnly}, s, {}, devs).size(), 1u);
  Service none = hubbleUi();
  none.loadBalancerIPs.clear();  // no address: no lease at all
  auto all = policy(R"({"metadata":{"name":"all"},"spec":{"loadBalancerIPs":true,"externalIPs":true}})");
  EXPECT_TRUE(announcementsFor({all}, none, {}, devs).empty());
  EXPECT_EQ(announcementsFor({all}, s, {}, devs).size(), 4u);  // 2 addresses x 2 devices
}

// "a-b/c" and "a/b-c" share nodepath-l2announce-a-b-c (Cilium's format, kept): the first by key
// keeps it, the second is reported, on every node alike (node selectors play no part).
TEST(L2Policy, CollidingLeaseNamesAreReportedOnTheSecondService) {
  auto onlyCp = policy(kSeedPolicy);
  auto mk = [](std::string ns, std::string name) {
    Service s;
    s.ns = std::move(ns);
    s.name = std::move(name);
    s.loadBalancerIPs = {ip("192.168.20.9")};
    return s;
  };
  std::map<std::string, Service> svcs{{"a-b/c", mk("a-b", "c")}, {"a/b-c", mk("a", "b-c")}, {"x/y", mk("x", "y")}};
  ASSERT_EQ(leaseName(svcs["a-b/c"]), leaseName(svcs["a/b-c"]));
  auto c = leaseCollisions({onlyCp}, svcs);
  ASSERT_EQ(c.size(), 1u);
  ASSERT_TRUE(c.count("a/b-c"));
  EXPECT_NE(c["a/b-c"].find("a-b/c"), std::string::npos) << c["a/b-c"];
  EXPECT_NE(c["a/b-c"].find("nodepath-l2announce-a-b-c"), std::string::npos) << c["a/b-c"];
  // A service no policy selects takes no name: the other keeps it without a collision.
  svcs["a-b/c"].loadBalancerIPs.clear();
  EXPECT_TRUE(leaseCollisions({onlyCp}, svcs).empty());
}

// A policy without interfaces answers on every *announceable* device only.
TEST(L2Policy, OnlyUpEthernetNonLoopbackNonSlaveDevicesAreAnnounceable) {
  const unsigned up = IFF_UP | IFF_BROADCAST | IFF_RUNNING;
  EXPECT_TRUE(announceableDevice("ens192", up, ARPHRD_ETHER));
  EXPECT_TRUE(announceableDevice("bond0", up | IFF_MASTER, ARPHRD_ETHER));
  EXPECT_FALSE(announceableDevice("ens192", IFF_BROADCAST, ARPHRD_ETHER));         // down
  EXPECT_FALSE(announceableDevice("lo", IFF_UP | IFF_LOOPBACK, ARPHRD_LOOPBACK));  // loopback
  EXPECT_FALSE(announceableDevice("eth1", up | IFF_SLAVE, ARPHRD_ETHER));          // bond slave
  EXPECT_FALSE(announceableDevice("wg0", IFF_UP | IFF_POINTOPOINT, ARPHRD_NONE));   // not Ethernet
  EXPECT_FALSE(announceableDevice("lxc12ab", up, ARPHRD_ETHER));                   // a pod's veth
  EXPECT_FALSE(announceableDevice("np_host", up, ARPHRD_ETHER));
}

TEST(L2Policy, SelectorOperatorsFollowKubernetes) {
  auto sel = LabelSelector::fromJson(json::parse(R"({"matchLabels":{"a":"1"},"matchExpressions":[
      {"key":"tier","operator":"In","values":["web","api"]},
      {"key":"env","operator":"NotIn","values":["prod"]},
      {"key":"gone","operator":"DoesNotExist"}]})"));
  ASSERT_TRUE(sel);
  EXPECT_TRUE(sel->matches({{"a", "1"}, {"tier", "web"}}));
  EXPECT_TRUE(sel->matches({{"a", "1"}, {"tier", "api"}, {"env", "dev"}}));
  EXPECT_FALSE(sel->matches({{"a", "1"}, {"tier", "api"}, {"env", "prod"}}));
  EXPECT_FALSE(sel->matches({{"a", "1"}, {"tier", "db"}}));
  EXPECT_FALSE(sel->matches({{"a", "2"}, {"tier", "web"}}));
  EXPECT_FALSE(sel->matches({{"a", "1"}, {"tier", "web"}, {"gone", ""}}));
  EXPECT_TRUE(LabelSelector::fromJson(json::parse("{}"))->matches({}));
}

TEST(L2Policy, MalformedPoliciesNameCiliumsCondition) {
  auto bad = [](const char* text) {
    auto p = Policy::fromJson(json::parse(text));
    EXPECT_FALSE(p) << text;
    return p ? std::string() : p.error().context;
  };
  EXPECT_EQ(bad(R"({"spec":{"interfaces":["(unclosed"]}})"), "io.cilium/bad-interface-regex");
  EXPECT_EQ(bad(R"({"spec":{"interfaces":"ens192"}})"), "io.cilium/bad-interface-regex");
  EXPECT_EQ(bad(R"({"spec":{"nodeSelector":{"matchExpressions":[{"key":"k","operator":"Sideways"}]}}})"),
            "io.cilium/bad-node-selector");
  EXPECT_EQ(bad(R"({"spec":{"serviceSelector":{"matchExpressions":[{"key":"k","operator":"In"}]}}})"),
            "io.cilium/bad-service-selector");
  EXPECT_EQ(bad(R"({"spec":{"serviceSelector":{"matchExpressions":[{"key":"k","operator":"Exists","values":["x"]}]}}})"),
            "io.cilium/bad-service-selector");
  EXPECT_EQ(bad(R"({"spec":{"serviceSelector":{"matchLabels":{"k":1}}}})"), "io.cilium/bad-service-selector");
  EXPECT_FALSE(Policy::fromJson(json::parse(R"({"metadata":{"name":"x"}})")));
  EXPECT_FALSE(Policy::fromJson(json::parse("[1]")));
}

// --- Lease election under a simulated clock, against a model of the API server's Lease. ---

using namespace std::chrono_literals;
using lease::Elector;
using lease::Lease;
using lease::RequestKind;
using lease::Time;
using lease::WriteOutcome;

struct FakeServer {
  std::optional<Lease> lease;
  int rv = 0;
  int requests = 0;
  bool down = false;
};

std::string text(Time t) { return std::to_string(t.time_since_epoch().count()); }

// One round for one elector at `now`: send what it wants, answer it as the server would.
void step(Elector& e, FakeServer& s, Time now) {
  for (int i = 0; i < 3; ++i) {  // a GET and the write it decides on go out in one round
    auto r = e.poll(now, text(now));
    if (!r) return;
    ++s.requests;
    if (s.down) {
      if (r->kind == RequestKind::Get) e.onGet(now, std::nullopt, true);
      else e.onWrite(now, WriteOutcome::Failed);
      return;
    }
    switch (r->kind) {
      case RequestKind::Get: e.onGet(now, s.lease); break;
      case RequestKind::Create:
        if (s.lease) { e.onWrite(now, WriteOutcome::Conflict); break; }
        s.lease = Lease{r->record, std::to_string(++s.rv)};
        e.onWrite(now, WriteOutcome::Ok, s.lease);
        break;
      case RequestKind::Update:
        if (!s.lease || s.lease->resourceVersion != r->resourceVersion) {
          e.onWrite(now, WriteOutcome::Conflict);
          break;
        }
        s.lease = Lease{r->record, std::to_string(++s.rv)};
        e.onWrite(now, WriteOutcome::Ok, s.lease);
        break;
    }
  }
}

TEST(LeaseElection, OneHolderAtATimeAndFailoverAfterTheLeaseDuration) {
  const lease::Timings t{2000ms, 1500ms, 500ms};
  Elector a("node-a", t), b("node-b", t);
  FakeServer s;
  Time now{};
  step(a, s, now);
  step(b, s, now);
  EXPECT_TRUE(a.isLeader(now));
  EXPECT_FALSE(b.isLeader(now));
  EXPECT_EQ(b.observedHolder(), "node-a");
  EXPECT_EQ(a.takeTransition(), +1);
  // Ten simulated seconds in 100 ms steps: a keeps renewing, b never takes over.
  for (int i = 0; i < 100; ++i) {
    now += 100ms;
    step(a, s, now);
    step(b, s, now);
    ASSERT_TRUE(a.isLeader(now)) << i;
    ASSERT_FALSE(b.isLeader(now)) << i;
  }
  EXPECT_EQ(s.lease->record.holder, "node-a");
  // a dies (stops stepping). b must not act before a's deadline, and takes over within
  // leaseDuration + retryPeriod of a's last renewal.
  const Time died = now;
  Time tookOver{};
  for (int i = 0; i < 60 && tookOver == Time{}; ++i) {
    now += 100ms;
    step(b, s, now);
    if (b.isLeader(now)) tookOver = now;
    ASSERT_FALSE(b.isLeader(now) && a.isLeader(now)) << "two holders at " << i;
  }
  ASSERT_NE(tookOver, Time{});
  EXPECT_GE(tookOver - died, 2000ms - 500ms);
  EXPECT_LE(tookOver - died, 2000ms + 500ms + 100ms);
  EXPECT_EQ(s.lease->record.holder, "node-b");
  EXPECT_EQ(s.lease->record.transitions, 1);
  EXPECT_FALSE(a.isLeader(now));  // its renew deadline passed long ago
}

TEST(LeaseElection, HolderThatCannotRenewStopsBeforeAnyoneCanTakeOver) {
  const lease::Timings t{3000ms, 2000ms, 500ms};
  Elector a("node-a", t);
  FakeServer s;
  Time now{};
  step(a, s, now);
  ASSERT_TRUE(a.isLeader(now));
  const Time lastRenew = now;
  s.down = true;  // the API server becomes unreachable for a
  Time stopped{};
  for (int i = 0; i < 50; ++i) {
    now += 100ms;
    step(a, s, now);
    if (!a.isLeader(now) && stopped == Time{}) stopped = now;
  }
  ASSERT_NE(stopped, Time{});
  EXPECT_LE(stopped - lastRenew, 2000ms + 100ms);  // by its renew deadline
  EXPECT_LT(stopped - lastRenew, 3000ms);          // before the lease can expire elsewhere
  EXPECT_EQ(a.takeTransition(), -1);  // became leader, then stepped down
}

TEST(LeaseElection, ConflictingCreateAndReleaseHandOver) {
  const lease::Timings t{15000ms, 5000ms, 2000ms};
  Elector a("node-a", t), b("node-b", t);
  FakeServer s;
  Time now{};
  // Both GET 404 before either creates: the second create is a 409, then it reads the holder.
  auto ra = a.poll(now, text(now));
  auto rb = b.poll(now, text(now));
  ASSERT_TRUE(ra && rb);
  a.onGet(now, std::nullopt);
  b.onGet(now, std::nullopt);
  step(a, s, now);
  step(b, s, now);
  EXPECT_TRUE(a.isLeader(now));
  EXPECT_FALSE(b.isLeader(now));
  now += 2000ms;
  step(b, s, now);
  EXPECT_EQ(b.observedHolder(), "node-a");
  EXPECT_FALSE(b.isLeader(now));
  // a shuts down gracefully: it stops at once and b takes over at its next retry, not after 15 s.
  auto rel = a.release(text(now));
  ASSERT_TRUE(rel);
  EXPECT_FALSE(a.isLeader(now));
  EXPECT_EQ(rel->record.holder, "");
  s.lease = Lease{rel->record, std::to_string(++s.rv)};
  now += 2000ms;
  step(b, s, now);
  EXPECT_TRUE(b.isLeader(now));
  EXPECT_EQ(s.lease->record.transitions, 1);
}

TEST(LeaseElection, TimingsAreSanitisedAsCiliumDoes) {
  auto t = lease::Timings::sanitise({500ms, 5000ms, 4000ms});
  EXPECT_EQ(t.leaseDuration, 1000ms);
  EXPECT_EQ(t.renewDeadline, 500ms);
  EXPECT_EQ(t.retryPeriod, 250ms);
  auto d = lease::Timings::sanitise({});
  EXPECT_EQ(d.leaseDuration, 15000ms);
  EXPECT_EQ(d.renewDeadline, 5000ms);
  EXPECT_EQ(d.retryPeriod, 2000ms);
}

}  // namespace
