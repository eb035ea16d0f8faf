// Service model validation: bad input is refused with a message that names what is wrong.
#include <gtest/gtest.h>

#include <functional>

#include "lb/model.h"
#include "lb_test_util.h"

namespace np::lb {
namespace {

using test::clusterIpService;
using test::ep;
using test::ip;

NodeContext node() {
  NodeContext n;
  n.nodeIps = {ip("192.168.10.100")};
  return n;
}

std::string why(const Status& s) { return s ? "" : s.error().message(); }

// HostPorts (CNI portMappings): a frontend kind of its own, on the node's addresses, below the
// NodePort range, refused when it clashes with a NodePort or another HostPort.
Service hostPort(uint16_t port, const char* backend, std::optional<Ipv4> hostIp = std::nullopt,
                 Protocol proto = Protocol::Tcp) {
  Service s;
  s.name = hostPortName("default", "web-0", proto, port);
  s.protocol = proto;
  s.port = port;
  s.hostPort = port;
  s.hostIp = hostIp;
  s.source = kHostPortSource;
  s.backends.push_back({ep(backend), BackendState::Active, {}});
  return s;
}

TEST(HostPortModel, FrontendsAreTheNodeAddressesOrTheHostIp) {
  NodeContext n = node();
  n.nodeIps.push_back(ip("192.168.20.100"));
  auto f = frontendsOf(hostPort(8080, "10.0.1.10:80"), n);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].str(), "192.168.10.100:8080/TCP");
  EXPECT_EQ(f[1].str(), "192.168.20.100:8080/TCP");
  EXPECT_EQ(f[0].type, FrontendType::HostPort);
  EXPECT_STREQ(frontendTypeName(f[0].type), "HostPort");
  auto one = frontendsOf(hostPort(8080, "10.0.1.10:80", ip("192.168.20.100")), n);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].str(), "192.168.20.100:8080/TCP");
}

TEST(HostPortModel, APortBelowTheNodePortRangeOnANodeAddressValidates) {
  EXPECT_EQ(why(validate(hostPort(8080, "10.0.1.10:80"), node())), "");
  EXPECT_EQ(why(validate(hostPort(53, "10.0.1.10:53", ip("192.168.10.100"), Protocol::Udp), node())), "");
  EXPECT_EQ(hostPortName("default", "web-0", Protocol::Udp, 53), "hostport/default/web-0/udp/53");
}

TEST(HostPortModel, RefusesAHostIpThatIsNotThisNodes) {
  EXPECT_NE(why(validate(hostPort(8080, "10.0.1.10:80", ip("192.168.10.7")), node())).find("not an address of this node"),
            std::string::npos);
}

TEST(HostPortModel, RefusesWhatIsNotAHostPort) {
  auto s = hostPort(8080, "10.0.1.10:80");
  s.source = "local";  // the local API cannot make one
  EXPECT_NE(why(validate(s, node())).find("CNI plugin only"), std::string::npos);
  s = hostPort(8080, "10.0.1.10:80");
  s.nodePort = 30080;
  EXPECT_NE(why(validate(s, node())).find("no other frontend"), std::string::npos);
  s = hostPort(8080, "10.0.1.10:80");
  s.backends.push_back({ep("10.0.1.11:80"), BackendState::Active, {}});
  EXPECT_NE(why(validate(s, node())).find("exactly one backend"), std::string::npos);
  s = hostPort(8080, "10.0.1.10:80");
  s.name = "hostport/default/web-0/sctp/8080";
  EXPECT_NE(why(validate(s, node())).find("name must be"), std::string::npos);
  EXPECT_FALSE(isHostPortName("hostport/default/web-0/tcp/0"));
  EXPECT_FALSE(isHostPortName("hostport/default/web-0/tcp/080"));
  EXPECT_FALSE(isHostPortName("default/web"));
  EXPECT_TRUE(isHostPortName("hostport/kube-system/coredns-7b98449c4-x2x.a/udp/53"));
}

TEST(HostPortModel, ClashesWithANodePortOrAnotherHostPortAreConflicts) {
  FrontendOwners owners;
  auto np = clusterIpService("t/np", "10.43.0.20", 80, {"10.0.1.10:8080"});
  np.nodePort = 30080;
  addOwner(owners, np, node());
  auto clash = hostPort(30080, "10.0.1.11:80");
  auto st = checkConflicts(clash, node(), owners);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("192.168.10.100:30080/TCP is already used by service t/np"), std::string::npos)
      << st.error().message();
  // The same number over UDP is another frontend.
  EXPECT_TRUE(checkConflicts(hostPort(30080, "10.0.1.11:80", std::nullopt, Protocol::Udp), node(), owners));
  auto a = hostPort(8080, "10.0.1.11:80");
  addOwner(owners, a, node());
  auto b = hostPort(8080, "10.0.1.12:80", ip("192.168.10.100"));
  b.name = hostPortName("default", "web-1", Protocol::Tcp, 8080);
  EXPECT_FALSE(checkConflicts(b, node(), owners));
}

TEST(ServiceModel, SameFrontendsIgnoresBackendsAndNothingElse) {
  const Service a = clusterIpService("t/web", "10.43.0.20", 80, {"10.0.1.10:8080", "10.0.1.11:8080"});
  Service b = a;
  b.backends = {{ep("10.0.2.10:8080"), BackendState::Terminating, "n2"}};
  EXPECT_TRUE(sameFrontends(a, b));
  b.backends.clear();
  EXPECT_TRUE(sameFrontends(a, b));
  // Every other field counts: each of these changes what the service is reachable on or how.
  std::vector<std::pair<const char*, std::function<void(Service&)>>> edits = {
      {"name", [](Service& s) { s.name = "t/other"; }},
      {"protocol", [](Service& s) { s.protocol = Protocol::Udp; }},
      {"port", [](Service& s) { s.port = 81; }},
      {"clusterIp", [](Service& s) { s.clusterIp = ip("10.43.0.21"); }},
      {"nodePort", [](Service& s) { s.nodePort = 30080; }},
      {"externalIps", [](Service& s) { s.externalIps = {ip("192.168.10.50")}; }},
      {"loadBalancerIps", [](Service& s) { s.loadBalancerIps = {ip("192.168.10.51")}; }},
      {"sessionAffinity", [](Service& s) { s.sessionAffinity = SessionAffinity::ClientIp; }},
      {"affinityTimeoutSec", [](Service& s) { s.affinityTimeoutSec = 60; }},
      {"externalTrafficPolicy", [](Service& s) { s.externalTrafficPolicy = TrafficPolicy::Local; }},
      {"internalTrafficPolicy", [](Service& s) { s.internalTrafficPolicy = TrafficPolicy::Local; }},
      {"source", [](Service& s) { s.source = "kubernetes"; }},
      {"hostPort", [](Service& s) { s.hostPort = 8080; }},
      {"hostIp", [](Service& s) { s.hostIp = ip("192.168.10.100"); }},
  };
  for (auto& [field, edit] : edits) {
    Service c = a;
    edit(c);
    EXPECT_FALSE(sameFrontends(a, c)) << field;
    c.backends.clear();
    EXPECT_FALSE(sameFrontends(c, a)) << field;
  }
}

TEST(ServiceModel, AcceptsAClusterIpServiceWithBackends) {
  EXPECT_TRUE(validate(clusterIpService("demo/echo", "10.43.0.20", 80, {"10.0.1.10:8080"}), node()));
}

TEST(ServiceModel, RefusesPortZero) {
  auto s = clusterIpService("t/a", "10.43.0.20", 0, {});
  EXPECT_EQ(why(validate(s, node())), "service t/a: port 0 is not a port (1-65535)");
}

TEST(ServiceModel, RefusesAServiceWithoutFrontend) {
  Service s;
  s.name = "t/a";
  s.port = 80;
  EXPECT_NE(why(validate(s, node())).find("has no frontend"), std::string::npos);
}

TEST(ServiceModel, RefusesNodePortOutsideTheRange) {
  auto s = clusterIpService("t/a", "10.43.0.20", 80, {});
  s.nodePort = 8080;
  EXPECT_EQ(why(validate(s, node())), "service t/a: NodePort 8080 is outside the NodePort range 30000-32767");
}

TEST(ServiceModel, RefusesUnusableAddresses) {
  auto s = clusterIpService("t/a", "0.0.0.0", 80, {});
  EXPECT_NE(why(validate(s, node())).find("0.0.0.0 is not a usable unicast address"), std::string::npos);
  s = clusterIpService("t/a", "10.43.0.20", 80, {"127.0.0.1:80"});
  EXPECT_NE(why(validate(s, node())).find("backend: 127.0.0.1 is not a usable unicast address"), std::string::npos);
  s = clusterIpService("t/a", "10.43.0.20", 80, {});
  s.externalIps = {ip("224.0.0.1")};
  EXPECT_NE(why(validate(s, node())).find("external IP: 224.0.0.1"), std::string::npos);
}

TEST(ServiceModel, RefusesDuplicateBackendsAndFrontendAddresses) {
  auto s = clusterIpService("t/a", "10.43.0.20", 80, {"10.0.1.10:80", "10.0.1.10:80"});
  EXPECT_EQ(why(validate(s, node())), "service t/a: backend 10.0.1.10:80 is given twice");
  s = clusterIpService("t/a", "10.43.0.20", 80, {});
  s.loadBalancerIps = {ip("10.43.0.20")};
  EXPECT_EQ(why(validate(s, node())), "service t/a: frontend address 10.43.0.20 is given twice");
}

TEST(ServiceModel, NamesAreWhatKubernetesAccepts) {
  const std::string label63(63, 'a');
  for (const std::string& good : std::vector<std::string>{"default/web", "kube-system/kube-dns:dns-tcp", "a/b", "ns-1/svc-2:p80",
                                 label63 + "/" + label63 + ":" + label63}) {
    EXPECT_TRUE(validateName(good)) << good;
  }
  for (const std::string& bad : std::vector<std::string>{"web", "a b/c", "Default/web", "default/-web", "default/web-", "default/web:",
                                "/web", "default/", "default/we_b", "default/web:HTTP", "a/b/c",
                                label63 + "a/web"}) {
    Status st = validateName(bad);
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().message().find("each a DNS-1123 label"), std::string::npos) << st.error().message();
  }
}

TEST(ServiceModel, ErrorsDoNotEchoAnUnboundedName) {
  const std::string huge = "default/" + std::string(1 << 20, 'x');
  Status st = validateName(huge);
  ASSERT_FALSE(st);
  EXPECT_LT(st.error().message().size(), 400u);
  EXPECT_NE(st.error().message().find("(1048584 bytes)"), std::string::npos) << st.error().message();
}

// Finding 8: a ClusterIP equal to a pod's address redirected the pod's traffic; an external IP
// equal to the node's address took the node's port 22.
TEST(ServiceModel, FrontendsStayOffNodeAndPodAddresses) {
  NodeContext n = node();
  n.clusterNodeIps = {ip("192.168.10.100"), ip("192.168.10.101")};
  auto s = clusterIpService("t/a", "10.0.1.10", 22, {});
  EXPECT_EQ(why(validate(s, n)),
            "service t/a: cluster IP: 10.0.1.10 is outside the service CIDR 10.43.0.0/16 (--service-cidr)");
  s.clusterIp.reset();
  s.externalIps = {ip("192.168.10.101")};
  EXPECT_EQ(why(validate(s, n)), "service t/a: external IP: 192.168.10.101 is a node's own address; a frontend there "
                                 "would take that port from the node (--lb-allow-unsafe-frontends allows it)");
  s.externalIps = {};
  s.loadBalancerIps = {ip("10.0.2.10")};
  EXPECT_EQ(why(validate(s, n)), "service t/a: LoadBalancer IP: 10.0.2.10 is inside the pod CIDR 10.0.0.0/16; a "
                                 "frontend there would capture a pod's traffic (--lb-allow-unsafe-frontends allows it)");
  n.allowUnsafeFrontends = true;
  EXPECT_TRUE(validate(s, n));
  s.loadBalancerIps = {ip("192.168.20.1")};
  n.allowUnsafeFrontends = false;
  EXPECT_TRUE(validate(s, n));
}

TEST(ServiceModel, NodePortHasAWildcardAndOneFrontendPerNodeAddress) {
  auto s = clusterIpService("t/a", "10.43.0.20", 80, {});
  s.nodePort = 30080;
  s.externalIps = {ip("192.0.2.10")};
  s.loadBalancerIps = {ip("192.168.20.1")};
  auto fs = frontendsOf(s, node());
  ASSERT_EQ(fs.size(), 5u);
  EXPECT_EQ(fs[0].str(), "10.43.0.20:80/TCP");
  EXPECT_EQ(fs[0].type, FrontendType::ClusterIp);
  EXPECT_EQ(fs[1].str(), "0.0.0.0:30080/TCP");
  EXPECT_EQ(fs[1].type, FrontendType::NodePortWildcard);
  EXPECT_EQ(fs[2].str(), "192.168.10.100:30080/TCP");
  EXPECT_EQ(fs[3].str(), "192.0.2.10:80/TCP");
  EXPECT_EQ(fs[3].type, FrontendType::ExternalIp);
  EXPECT_EQ(fs[4].str(), "192.168.20.1:80/TCP");
  EXPECT_EQ(fs[4].type, FrontendType::LoadBalancer);
}

TEST(ServiceModel, AFrontendBelongsToOneService) {
  FrontendOwners owners;
  auto a = clusterIpService("t/a", "10.43.0.20", 80, {});
  addOwner(owners, a, node());
  auto b = clusterIpService("t/b", "10.43.0.20", 80, {});
  Status st = checkConflicts(b, node(), owners);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, EEXIST);
  EXPECT_EQ(st.error().message(), "service t/b: frontend 10.43.0.20:80/TCP is already used by service t/a");
  // Same address, other protocol or port: no conflict; a service may replace itself.
  b.protocol = Protocol::Udp;
  EXPECT_TRUE(checkConflicts(b, node(), owners));
  EXPECT_TRUE(checkConflicts(a, node(), owners));
  removeOwner(owners, a, node());
  b.protocol = Protocol::Tcp;
  EXPECT_TRUE(checkConflicts(b, node(), owners));
}

TEST(ServiceModel, NodePortsConflictAcrossServices) {
  FrontendOwners owners;
  auto a = clusterIpService("t/a", "10.43.0.20", 80, {});
  a.nodePort = 30080;
  addOwner(owners, a, node());
  auto b = clusterIpService("t/b", "10.43.0.21", 80, {});
  b.nodePort = 30080;
  EXPECT_FALSE(checkConflicts(b, node(), owners));
}

TEST(Net, ParsesAndRefusesAddressesPortsAndCidrs) {
  EXPECT_TRUE(Ipv4::parse("10.0.0.1"));
  EXPECT_FALSE(Ipv4::parse("10.0.0"));
  EXPECT_FALSE(Ipv4::parse("10.0.0.256"));
  EXPECT_FALSE(Ipv4::parse("010.0.0.1x"));
  EXPECT_EQ(ep("10.0.1.10:8080").str(), "10.0.1.10:8080");
  EXPECT_FALSE(Endpoint::parse("10.0.1.10:0"));
  EXPECT_FALSE(Endpoint::parse("10.0.1.10:65536"));
  EXPECT_FALSE(Endpoint::parse("10.0.1.10"));
  EXPECT_FALSE(parsePort("-1"));
  EXPECT_EQ(*parsePort("65535"), 65535);
  auto c = Cidr::parse("10.0.1.0/24");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->contains(ip("10.0.1.77")));
  EXPECT_FALSE(c->contains(ip("10.0.2.1")));
  EXPECT_FALSE(Cidr::parse("10.0.1.1/24"));  // host bits set
  EXPECT_FALSE(Cidr::parse("10.0.1.0/33"));
  EXPECT_FALSE(parseProtocol("sctp"));
}

}  // namespace
}  // namespace np::lb
