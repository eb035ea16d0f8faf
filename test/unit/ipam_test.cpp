// Node IPAM and the persisted endpoint records (agent/endpoint): allocation, reservation,
// release, and a restore that neither loses nor double-assigns an address.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "endpoint/hostport.h"
#include "endpoint/ipam.h"
#include "endpoint/store.h"

using namespace np;
using EpRecord = np::endpoint::Endpoint;
using np::endpoint::EndpointState;
using np::endpoint::EndpointStore;
using np::endpoint::Ipam;
using np::endpoint::endpointsFromJson;
using np::endpoint::endpointsToJson;

namespace {

Cidr cidr(const char* s) { return *Cidr::parse(s); }
Ipv4 ip(const char* s) { return *Ipv4::parse(s); }

EpRecord makeEndpoint(const char* id, const char* addr) {
  EpRecord e;
  e.containerId = id;
  e.ifname = "eth0";
  e.netns = std::string("/var/run/netns/") + id;
  e.podNamespace = "default";
  e.podName = id;
  e.ip = ip(addr);
  e.hostIfname = "lxc0123456789ab";
  e.hostIfindex = 7;
  e.hostMac = {0xaa, 0xbb, 0xcc, 0, 0, 1};
  e.podMac = {0xaa, 0xbb, 0xcc, 0, 0, 2};
  e.mtu = 1500;
  e.createdUnix = 1700000000;
  return e;
}

// A second sandbox of the same pod names the same HostPort services (the name carries the pod):
// the sandbox that holds one is found, so its ADD is refused and the holder's DEL is not undone
// by the other's; another pod or another port is no holder.
TEST(HostPortSandbox, HostPortHolderIsTheOtherSandboxOfThePod) {
  auto sandbox = [](const char* id, const char* addr, const char* pod, uint16_t port) {
    EpRecord e = makeEndpoint(id, addr);
    e.podNamespace = "default";
    e.podName = pod;
    e.portMappings.push_back({port, 8080, np::Protocol::Tcp, std::nullopt});
    return e;
  };
  const EpRecord old = sandbox("c-old", "10.0.1.2", "web-1", 9080);
  const EpRecord fresh = sandbox("c-new", "10.0.1.3", "web-1", 9080);
  const EpRecord other = sandbox("c-other", "10.0.1.4", "web-2", 9080);
  const EpRecord otherPort = sandbox("c-port", "10.0.1.5", "web-1", 9090);
  const std::vector<EpRecord> all{old, fresh, other, otherPort};
  const std::string name = np::endpoint::hostPortNames(fresh).at(0);
  EXPECT_EQ(name, "hostport/default/web-1/tcp/9080");
  const EpRecord* h = np::endpoint::hostPortHolder(all, name, fresh);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->containerId, "c-old");
  h = np::endpoint::hostPortHolder(all, name, old);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->containerId, "c-new");
  EXPECT_EQ(np::endpoint::hostPortHolder({old, other, otherPort}, name, old), nullptr)
      << "only the same pod's same mapping holds it";
}

}  // namespace

TEST(IpamAllocate, ReservesNetworkRouterAndBroadcast) {
  auto ipam = Ipam::create(cidr("10.0.1.0/24"));
  ASSERT_TRUE(ipam);
  EXPECT_EQ(ipam->capacity(), 253u);
  EXPECT_EQ(ipam->router(), ip("10.0.1.1"));
  std::set<uint32_t> seen;
  for (int i = 0; i < 253; ++i) {
    auto a = ipam->allocate("pod" + std::to_string(i));
    ASSERT_TRUE(a) << i;
    EXPECT_FALSE(ipam->reserved(*a)) << a->str();
    EXPECT_TRUE(seen.insert(a->host()).second) << "handed out twice: " << a->str();
  }
  EXPECT_EQ(seen.count(ip("10.0.1.0").host()), 0u);
  EXPECT_EQ(seen.count(ip("10.0.1.1").host()), 0u);
  EXPECT_EQ(seen.count(ip("10.0.1.255").host()), 0u);
  auto full = ipam->allocate("one-too-many");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().err, ENOSPC);
}

TEST(IpamAllocate, FirstIsDotTwoAndReleasedAddressesComeBackLast) {
  auto ipam = Ipam::create(cidr("10.0.1.0/24"));
  EXPECT_EQ(ipam->allocate("a").value(), ip("10.0.1.2"));
  EXPECT_EQ(ipam->allocate("b").value(), ip("10.0.1.3"));
  ipam->release(ip("10.0.1.2"));
  EXPECT_EQ(ipam->allocate("c").value(), ip("10.0.1.4"));  // not .2 again at once
  EXPECT_EQ(ipam->allocated(), 2u);
}

TEST(IpamAllocate, RefusesPoolsTooSmallForARouterAndPods) {
  EXPECT_FALSE(Ipam::create(cidr("10.0.1.0/31")));
  EXPECT_TRUE(Ipam::create(cidr("10.0.1.0/30")));
}

TEST(IpamRestore, RestoredAddressesAreNeverHandedOutAgain) {
  auto ipam = Ipam::create(cidr("10.0.1.0/24"));
  ASSERT_TRUE(ipam->restore(ip("10.0.1.2"), "a/eth0"));
  ASSERT_TRUE(ipam->restore(ip("10.0.1.3"), "b/eth0"));
  ipam->setLast(ip("10.0.1.3"));
  EXPECT_EQ(ipam->allocate("c").value(), ip("10.0.1.4"));
  EXPECT_EQ(ipam->restore(ip("10.0.1.2"), "other").error().err, EEXIST);
  EXPECT_FALSE(ipam->restore(ip("10.0.1.1"), "router?"));   // reserved
  EXPECT_FALSE(ipam->restore(ip("10.0.2.5"), "elsewhere"));  // outside
  // Wrap-around skips what is taken.
  ipam->setLast(ip("10.0.1.254"));
  EXPECT_EQ(ipam->allocate("d").value(), ip("10.0.1.5"));
}

TEST(IpamPersist, EndpointsRoundTripThroughTheStateFile) {
  const std::string dir = ::testing::TempDir() + "/np_ipam_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  EndpointStore store(dir);
  EXPECT_EQ(store.load().error().err, ENOENT);
  EndpointState s{cidr("10.0.1.0/24"), ip("10.0.1.3"), {makeEndpoint("a", "10.0.1.2"), makeEndpoint("b", "10.0.1.3")}};
  ASSERT_TRUE(store.save(s));
  auto back = store.load();
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->podCidr, s.podCidr);
  EXPECT_EQ(back->lastAllocated, s.lastAllocated);
  EXPECT_EQ(back->endpoints, s.endpoints);
  // What a restarted agent makes of it: the same two addresses taken, the next one new.
  auto ipam = Ipam::create(back->podCidr);
  for (const EpRecord& e : back->endpoints) ASSERT_TRUE(ipam->restore(e.ip, e.key()));
  ipam->setLast(back->lastAllocated);
  EXPECT_EQ(ipam->allocate("c/eth0").value(), ip("10.0.1.4"));
  std::filesystem::remove_all(dir);
}

TEST(IpamPersist, PortMappingsRoundTripWithTheirHostIp) {
  EpRecord e = makeEndpoint("a", "10.0.1.2");
  e.portMappings.push_back({8080, 80, np::Protocol::Tcp, std::nullopt});
  e.portMappings.push_back({5353, 53, np::Protocol::Udp, ip("10.99.0.2")});
  EndpointState s{cidr("10.0.1.0/24"), {}, {e}};
  const std::string text = endpointsToJson(s);
  auto back = endpointsFromJson(text);
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->endpoints.size(), 1u);
  EXPECT_EQ(back->endpoints[0].portMappings, e.portMappings);
  EXPECT_EQ(back->endpoints[0].portMappings[1].hostIp, ip("10.99.0.2"));  // the hostIP is kept
  EXPECT_TRUE(back->droppedPortMappings.empty());
}

// HostPort restore is per entry: a bad mapping (hostPort 0, a hostIP that is no address, an
// unknown protocol) is dropped and said so, naming the endpoint and the entry; the endpoint, its
// other mappings and the other endpoints load.
TEST(IpamPersist, BadPortMappingCostsOnlyItself) {
  EpRecord a = makeEndpoint("a", "10.0.1.2");
  a.portMappings.push_back({8080, 80, np::Protocol::Tcp, std::nullopt});
  a.portMappings.push_back({5353, 53, np::Protocol::Udp, ip("10.99.0.2")});
  a.portMappings.push_back({9090, 90, np::Protocol::Tcp, std::nullopt});
  EpRecord b = makeEndpoint("b", "10.0.1.3");
  b.portMappings.push_back({7070, 70, np::Protocol::Udp, std::nullopt});
  const std::string text = endpointsToJson(EndpointState{cidr("10.0.1.0/24"), {}, {a, b}});
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"hostPort\":5353", "\"hostPort\":0"},
           {"\"10.99.0.2\"", "\"10.99.0\""},
           {"\"protocol\":\"udp\",\"hostIP\":\"10.99.0.2\"", "\"protocol\":\"sctp\",\"hostIP\":\"10.99.0.2\""}}) {
    std::string t = text;
    ASSERT_NE(t.find(from), std::string::npos) << from << " in " << t;
    t.replace(t.find(from), from.size(), to);
    auto r = endpointsFromJson(t);
    ASSERT_TRUE(r) << from << " -> " << to << ": " << r.error().message();
    ASSERT_EQ(r->endpoints.size(), 2u);
    EXPECT_EQ(r->endpoints[0].portMappings, (std::vector<np::endpoint::PortMapping>{a.portMappings[0], a.portMappings[2]}))
        << from << " -> " << to;
    EXPECT_EQ(r->endpoints[1].portMappings, b.portMappings);
    ASSERT_EQ(r->droppedPortMappings.size(), 1u);
    EXPECT_NE(r->droppedPortMappings[0].find("portMappings[1]"), std::string::npos) << r->droppedPortMappings[0];
    EXPECT_NE(r->droppedPortMappings[0].find("(a)"), std::string::npos) << r->droppedPortMappings[0];
  }
}

TEST(IpamPersist, AVersion1FileLoadsWithoutPortMappings) {
  EndpointState s{cidr("10.0.1.0/24"), {}, {makeEndpoint("a", "10.0.1.2")}};
  std::string t = endpointsToJson(s);
  t.replace(t.find("\"version\":2"), 11, "\"version\":1");
  t.replace(t.find(",\"portMappings\":[]"), 18, "");
  auto r = endpointsFromJson(t);
  ASSERT_TRUE(r) << r.error().message() << "\n" << t;
  EXPECT_TRUE(r->endpoints[0].portMappings.empty());
}

TEST(IpamPersist, DecodingIsStrict) {
  EndpointState s{cidr("10.0.1.0/24"), {}, {makeEndpoint("a", "10.0.1.2")}};
  const std::string good = endpointsToJson(s);
  ASSERT_TRUE(endpointsFromJson(good));
  auto bad = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    auto pos = t.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    t.replace(pos, from.size(), to);
    auto r = endpointsFromJson(t);
    EXPECT_FALSE(r) << t;
    return r ? std::string() : r.error().message();
  };
  EXPECT_NE(bad("\"mtu\":1500", "\"mtu\":\"1500\"").find("mtu"), std::string::npos);
  EXPECT_NE(bad("\"mtu\":1500", "\"mtu\":1500,\"extra\":1").find("unknown field \"extra\""), std::string::npos);
  EXPECT_NE(bad("\"ipv4\":\"10.0.1.2\"", "\"ipv4\":\"10.0.1\"").find("ipv4"), std::string::npos);
  EXPECT_NE(bad("\"version\":2", "\"version\":3").find("version"), std::string::npos);
  EXPECT_NE(bad(",\"createdUnix\":1700000000", "").find("createdUnix"), std::string::npos);
  // Two endpoints with one address: refused, never silently merged.
  EndpointState twice{cidr("10.0.1.0/24"), {}, {makeEndpoint("a", "10.0.1.2"), makeEndpoint("b", "10.0.1.2")}};
  auto r = endpointsFromJson(endpointsToJson(twice));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("10.0.1.2"), std::string::npos);
  EXPECT_FALSE(endpointsFromJson("{not json"));
}

TEST(HostPorts, AnEndpointsMappingsAreServicesOfThePod) {
  EpRecord e = makeEndpoint("ABCDEF0123456789", "10.0.1.2");
  e.podNamespace.clear();
  e.podName.clear();
  e.portMappings.push_back({8080, 80, np::Protocol::Tcp, std::nullopt});
  e.portMappings.push_back({5353, 53, np::Protocol::Udp, ip("192.168.10.100")});
  auto svcs = np::endpoint::hostPortServices(e);
  ASSERT_EQ(svcs.size(), 2u);
  EXPECT_EQ(svcs[0].name, "hostport/default/abcdef012345/tcp/8080");  // no K8S_ args: the container ID
  EXPECT_EQ(svcs[0].source, "cni");
  EXPECT_EQ(svcs[0].backends.at(0).addr.str(), "10.0.1.2:80");
  EXPECT_EQ(svcs[1].hostIp, ip("192.168.10.100"));
  np::lb::NodeContext node;
  node.nodeIps = {ip("192.168.10.100")};
  EXPECT_TRUE(np::endpoint::checkHostPorts(svcs, node));
  e.podNamespace = "shop";
  e.podName = "web-0";
  EXPECT_EQ(np::endpoint::hostPortNames(e).at(1), "hostport/shop/web-0/udp/5353");
  // The same hostPort/protocol twice in one pod: refused before anything is programmed.
  e.portMappings.push_back({8080, 81, np::Protocol::Tcp, ip("192.168.10.100")});
  auto st = np::endpoint::checkHostPorts(np::endpoint::hostPortServices(e), node);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("hostport/shop/web-0/tcp/8080"), std::string::npos) << st.error().message();
}
