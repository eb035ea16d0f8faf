// Service model validation: bad input is refused with a message that names what is wrong.
#include <gtest/gtest.h>

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

TEST(ServiceModel, AcceptsAClusterIpServiceWithBackends) {
  EXPECT_TRUE(validate(clusterIpService("demo/echo", "10.43.0.20", 80, {"10.0.1.10:8080"}), node()));
}

TEST(ServiceModel, RefusesPortZero) {
  auto s = clusterIpService("a", "10.43.0.20", 0, {});
  EXPECT_EQ(why(validate(s, node())), "service a: port 0 is not a port (1-65535)");
}

TEST(ServiceModel, RefusesAServiceWithoutFrontend) {
  Service s;
  s.name = "a";
  s.port = 80;
  EXPECT_NE(why(validate(s, node())).find("has no frontend"), std::string::npos);
}

TEST(ServiceModel, RefusesNodePortOutsideTheRange) {
  auto s = clusterIpService("a", "10.43.0.20", 80, {});
  s.nodePort = 8080;
  EXPECT_EQ(why(validate(s, node())), "service a: NodePort 8080 is outside the NodePort range 30000-32767");
}

TEST(ServiceModel, RefusesUnusableAddresses) {
  auto s = clusterIpService("a", "0.0.0.0", 80, {});
  EXPECT_NE(why(validate(s, node())).find("0.0.0.0 is not a usable unicast address"), std::string::npos);
  s = clusterIpService("a", "10.43.0.20", 80, {"127.0.0.1:80"});
  EXPECT_NE(why(validate(s, node())).find("backend: 127.0.0.1 is not a usable unicast address"), std::string::npos);
  s = clusterIpService("a", "10.43.0.20", 80, {});
  s.externalIps = {ip("224.0.0.1")};
  EXPECT_NE(why(validate(s, node())).find("external IP: 224.0.0.1"), std::string::npos);
}

TEST(ServiceModel, RefusesDuplicateBackendsAndFrontendAddresses) {
  auto s = clusterIpService("a", "10.43.0.20", 80, {"10.0.1.10:80", "10.0.1.10:80"});
  EXPECT_EQ(why(validate(s, node())), "service a: backend 10.0.1.10:80 is given twice");
  s = clusterIpService("a", "10.43.0.20", 80, {});
  s.loadBalancerIps = {ip("10.43.0.20")};
  EXPECT_EQ(why(validate(s, node())), "service a: frontend address 10.43.0.20 is given twice");
}

TEST(ServiceModel, RefusesNamesWithWhitespace) {
  auto s = clusterIpService("a b", "10.43.0.20", 80, {});
  EXPECT_NE(why(validate(s, node())).find("whitespace"), std::string::npos);
}

TEST(ServiceModel, NodePortHasAWildcardAndOneFrontendPerNodeAddress) {
  auto s = clusterIpService("a", "10.43.0.20", 80, {});
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
  auto a = clusterIpService("a", "10.43.0.20", 80, {});
  addOwner(owners, a, node());
  auto b = clusterIpService("b", "10.43.0.20", 80, {});
  Status st = checkConflicts(b, node(), owners);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err, EEXIST);
  EXPECT_EQ(st.error().message(), "service b: frontend 10.43.0.20:80/TCP is already used by service a");
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
  auto a = clusterIpService("a", "10.43.0.20", 80, {});
  a.nodePort = 30080;
  addOwner(owners, a, node());
  auto b = clusterIpService("b", "10.43.0.21", 80, {});
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
