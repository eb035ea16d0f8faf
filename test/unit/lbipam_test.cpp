// LB-IPAM's pure core (operator/lbipam.*): pools, selectors, requests, exhaustion, first/last
// addresses, a restart rebuilding from the services' status, malformed pools refused.
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "operator/lbipam.h"

using namespace np;
using namespace np::op::lbipam;
namespace json = boost::json;

namespace {

Pool pool(const std::string& text) {
  auto p = decodePool(json::parse(text).as_object());
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
  return p.ok() ? *p : Pool{};
}
std::string poolError(const std::string& text) {
  auto p = decodePool(json::parse(text).as_object());
  return p.ok() ? std::string("accepted") : p.error().message();
}
Service svc(const std::string& name, const std::string& extra = "", const std::string& status = "",
            const std::string& labels = "{}", const std::string& annotations = "{}") {
  std::string text = R"({"metadata":{"namespace":"default","name":")" + name + R"(","labels":)" + labels +
                     R"(,"annotations":)" + annotations + R"(},"spec":{"type":"LoadBalancer")" + extra + "}" +
                     (status.empty() ? "" : R"(,"status":{"loadBalancer":{"ingress":[{"ip":")" + status + R"("}]}})") +
                     "}";
  auto s = decodeService(json::parse(text).as_object());
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  return s.ok() ? *s : Service{};
}
ServiceKey key(const std::string& name) { return {"default", name}; }
std::string ipOf(const Allocator& a, const std::string& name) {
  auto it = a.outcomes().find(key(name));
  if (it == a.outcomes().end()) return "(none)";
  if (it->second.ips.empty()) return "(" + it->second.reason + ")";
  return it->second.ips[0].str();
}
const Outcome& outcome(const Allocator& a, const std::string& name) { return a.outcomes().at(key(name)); }

const char* kSeedPool = R"({"metadata":{"name":"lb-ip-pool"},"spec":{"cidrs":[{"cidr":"192.168.20.0/24"}]}})";

}  // namespace

TEST(LbIpam, SeedPoolGivesFirstUsableAddressAndSatisfiedCondition) {
  Allocator a;
  a.upsertPool(pool(kSeedPool));
  a.upsertService(svc("web"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "web"), "192.168.20.1");  // .0 left out without allowFirstLastIPs
  EXPECT_TRUE(outcome(a, "web").satisfied);
  EXPECT_EQ(outcome(a, "web").reason, "satisfied");
  EXPECT_EQ(a.used("lb-ip-pool"), 1u);
  EXPECT_EQ(a.pools().at("lb-ip-pool").size(), 254u);
}

TEST(LbIpam, BlocksWithCidrAndStartStop) {
  Pool p = pool(R"({"metadata":{"name":"p"},"spec":{"blocks":[{"cidr":"10.0.0.0/30"},
      {"start":"10.1.0.5","stop":"10.1.0.6"},{"start":"10.2.0.9"},{"cidr":"2001:db8::/64"}]}})");
  ASSERT_EQ(p.ranges.size(), 3u);
  EXPECT_EQ(p.size(), 2u + 2u + 1u);
  EXPECT_TRUE(p.contains(*Ipv4::parse("10.1.0.6")));
  EXPECT_FALSE(p.contains(*Ipv4::parse("10.0.0.3")));  // broadcast of the /30
}

TEST(LbIpam, AllowFirstLastIpsKeepsNetworkAndBroadcast) {
  Pool p = pool(R"({"metadata":{"name":"p"},"spec":{"allowFirstLastIPs":"Yes","blocks":[{"cidr":"10.0.0.0/30"}]}})");
  EXPECT_EQ(p.size(), 4u);
  Allocator a;
  a.upsertPool(p);
  a.upsertService(svc("a"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "a"), "10.0.0.0");
  Pool single = pool(R"({"metadata":{"name":"s"},"spec":{"blocks":[{"cidr":"10.9.0.7/32"}]}})");
  EXPECT_EQ(single.size(), 1u);  // a /32 is its one address
}

TEST(LbIpam, ExhaustionIsOutOfIpsNotAHang) {
  Allocator a;
  a.upsertPool(pool(R"({"metadata":{"name":"tiny"},"spec":{"blocks":[{"start":"10.0.0.1","stop":"10.0.0.2"}]}})"));
  for (auto n : {"a", "b", "c"}) a.upsertService(svc(n));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "a"), "10.0.0.1");
  EXPECT_EQ(ipOf(a, "b"), "10.0.0.2");
  EXPECT_FALSE(outcome(a, "c").satisfied);
  EXPECT_EQ(outcome(a, "c").reason, "out_of_ips");
  // Deleting one frees its address for the waiting service.
  a.removeService(key("a"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "c"), "10.0.0.1");
  EXPECT_TRUE(outcome(a, "c").satisfied);
}

TEST(LbIpam, ServiceSelectorPicksThePool) {
  Allocator a;
  a.upsertPool(pool(R"({"metadata":{"name":"blue"},"spec":{"blocks":[{"cidr":"10.1.0.0/24"}],
      "serviceSelector":{"matchLabels":{"color":"blue"}}}})"));
  a.upsertPool(pool(R"({"metadata":{"name":"red"},"spec":{"blocks":[{"cidr":"10.2.0.0/24"}],
      "serviceSelector":{"matchExpressions":[{"key":"color","operator":"In","values":["red"]}]}}})"));
  a.upsertPool(pool(R"({"metadata":{"name":"ns"},"spec":{"blocks":[{"cidr":"10.3.0.0/24"}],
      "serviceSelector":{"matchLabels":{"io.kubernetes.service.name":"byname"}}}})"));
  a.upsertService(svc("b", "", "", R"({"color":"blue"})"));
  a.upsertService(svc("r", "", "", R"({"color":"red"})"));
  a.upsertService(svc("byname"));
  a.upsertService(svc("none", "", "", R"({"color":"green"})"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "b"), "10.1.0.1");
  EXPECT_EQ(ipOf(a, "r"), "10.2.0.1");
  EXPECT_EQ(ipOf(a, "byname"), "10.3.0.1");
  EXPECT_EQ(outcome(a, "none").reason, "no_pool");
  EXPECT_EQ(outcome(a, "none").message, "There are no enabled CiliumLoadBalancerIPPools that match this service");
}

TEST(LbIpam, DisabledPoolGivesNothingNewButKeepsWhatIsHeld) {
  Allocator a;
  a.upsertPool(pool(R"({"metadata":{"name":"p"},"spec":{"disabled":true,"cidrs":[{"cidr":"10.0.0.0/24"}]}})"));
  a.upsertService(svc("new"));
  a.upsertService(svc("old", "", "10.0.0.9"));
  a.upsertService(svc("asks", R"(,"loadBalancerIP":"10.0.0.20")"));
  a.reconcile();
  EXPECT_EQ(outcome(a, "new").reason, "no_pool");
  EXPECT_EQ(ipOf(a, "old"), "10.0.0.9");
  EXPECT_EQ(outcome(a, "asks").reason, "no_pool");
  EXPECT_NE(outcome(a, "asks").message.find("disabled"), std::string::npos);
}

TEST(LbIpam, RequestedAddressesByAnnotationAndLoadBalancerIP) {
  Allocator a;
  a.upsertPool(pool(kSeedPool));
  a.upsertService(svc("ann", "", "", "{}", R"({"lbipam.cilium.io/ips":"192.168.20.50, 192.168.20.51"})"));
  a.upsertService(svc("old", "", "", "{}", R"({"io.cilium/lb-ipam-ips":"192.168.20.60"})"));
  a.upsertService(svc("spec", R"(,"loadBalancerIP":"192.168.20.70")"));
  a.upsertService(svc("outside", R"(,"loadBalancerIP":"10.9.9.9")"));
  a.reconcile();
  ASSERT_EQ(outcome(a, "ann").ips.size(), 2u);
  EXPECT_EQ(outcome(a, "ann").ips[1].str(), "192.168.20.51");
  EXPECT_EQ(ipOf(a, "old"), "192.168.20.60");
  EXPECT_EQ(ipOf(a, "spec"), "192.168.20.70");
  EXPECT_EQ(outcome(a, "outside").reason, "no_pool");
  EXPECT_EQ(outcome(a, "outside").message, "No pool exists with a CIDR containing '10.9.9.9'");
}

TEST(LbIpam, RequestForATakenAddressIsAlreadyAllocated) {
  Allocator a;
  a.upsertPool(pool(kSeedPool));
  a.upsertService(svc("first"));
  a.reconcile();
  ASSERT_EQ(ipOf(a, "first"), "192.168.20.1");
  // "a-thief" sorts before "first": holdings still win over requests.
  a.upsertService(svc("a-thief", R"(,"loadBalancerIP":"192.168.20.1")"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "first"), "192.168.20.1");
  EXPECT_FALSE(outcome(a, "a-thief").satisfied);
  EXPECT_EQ(outcome(a, "a-thief").reason, "already_allocated");
  EXPECT_EQ(outcome(a, "a-thief").message, "The IP '192.168.20.1' is already allocated to another service");
  // The holder goes away: the request is satisfied.
  a.removeService(key("first"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "a-thief"), "192.168.20.1");
}

TEST(LbIpam, SelectorMismatchForARequestedAddress) {
  Allocator a;
  a.upsertPool(pool(R"({"metadata":{"name":"blue"},"spec":{"blocks":[{"cidr":"10.1.0.0/24"}],
      "serviceSelector":{"matchLabels":{"color":"blue"}}}})"));
  a.upsertService(svc("s", R"(,"loadBalancerIP":"10.1.0.5")"));
  a.reconcile();
  EXPECT_EQ(outcome(a, "s").reason, "pool_selector_mismatch");
}

TEST(LbIpam, RestartRebuildsFromStatusAndNeverHandsAnAddressTwice) {
  Allocator a;
  a.upsertPool(pool(kSeedPool));
  // A new operator sees services that already hold .1 and .3 in their status.
  a.upsertService(svc("x", "", "192.168.20.3"));
  a.upsertService(svc("y", "", "192.168.20.1"));
  a.upsertService(svc("z"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "x"), "192.168.20.3");
  EXPECT_EQ(ipOf(a, "y"), "192.168.20.1");
  EXPECT_EQ(ipOf(a, "z"), "192.168.20.2");
  EXPECT_EQ(a.used("lb-ip-pool"), 3u);
  // Reconciling again changes nothing.
  auto before = a.outcomes();
  a.reconcile();
  EXPECT_EQ(a.outcomes(), before);
}

TEST(LbIpam, TypeChangeFreesTheAddress) {
  Allocator a;
  a.upsertPool(pool(kSeedPool));
  a.upsertService(svc("s"));
  a.reconcile();
  ASSERT_EQ(ipOf(a, "s"), "192.168.20.1");
  Service cip = svc("s");
  cip.loadBalancer = false;
  a.upsertService(cip);
  a.reconcile();
  EXPECT_EQ(ipOf(a, "s"), "(none)");
  a.upsertService(svc("t"));
  a.reconcile();
  EXPECT_EQ(ipOf(a, "t"), "192.168.20.1");
}

TEST(LbIpam, ForeignLoadBalancerClassIsNotOurs) {
  Service s = svc("s", R"(,"loadBalancerClass":"example.com/other")");
  EXPECT_FALSE(s.loadBalancer);
  EXPECT_TRUE(svc("t", R"(,"loadBalancerClass":"io.cilium/l2-announcer")").loadBalancer);
}

TEST(LbIpam, MalformedPoolsAreRefusedWithAReason) {
  EXPECT_NE(poolError(R"({"metadata":{},"spec":{}})").find("metadata.name is missing"), std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"}})").find("spec is missing"), std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"},"spec":{"cidrs":[{"cidr":"300.0.0.0/8"}]}})")
                .find("is not an IPv4 CIDR"),
            std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"},"spec":{"blocks":[{"start":"10.0.0.9","stop":"10.0.0.1"}]}})")
                .find("is before start"),
            std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"},"spec":{"blocks":[{}]}})").find("neither cidr nor start"),
            std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"},"spec":{"blocks":"10.0.0.0/8"}})").find("is not a list"),
            std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"},"spec":{"disabled":"yes"}})").find("not a boolean"),
            std::string::npos);
  EXPECT_NE(poolError(R"({"metadata":{"name":"p"},"spec":{"serviceSelector":{"matchExpressions":[{"key":"a","operator":"Near"}]}}})")
                .find("spec.serviceSelector"),
            std::string::npos);
  auto bad = decodeService(json::parse(R"({"metadata":{"namespace":"d","name":"s"},
      "spec":{"type":"LoadBalancer","loadBalancerIP":"1.2.3"}})").as_object());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("not an IPv4 address"), std::string::npos);
}

TEST(LbIpam, UnreadableRequestGetsInvalidRequestAndHoldsNothing) {
  Allocator a;
  a.upsertPool(pool(kSeedPool));
  Service bad;
  bad.key = key("bad");
  bad.loadBalancer = true;
  bad.ingress = {*Ipv4::parse("192.168.20.1")};
  bad.invalid = "Service default/bad: requested address \"1.2.3\" is not an IPv4 address";
  a.upsertService(bad);
  a.upsertService(svc("a-good"));
  a.reconcile();
  EXPECT_EQ(outcome(a, "bad").reason, "invalid_request");
  EXPECT_NE(outcome(a, "bad").message.find("1.2.3"), std::string::npos);
  EXPECT_EQ(ipOf(a, "a-good"), "192.168.20.1");  // sorts first: bad holds nothing
}
