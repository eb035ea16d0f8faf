// Cluster-pool IPAM and CiliumNodes (pure): the operator's allocator (distinct CIDRs, a restart
// keeps them, a deleted node frees its CIDR, exhaustion, bad claims) and the agent's CiliumNode
// decoding (a fixture saved from the real API server, with fields nodepath does not know), the
// fields it writes, and the node list the CiliumNodes make.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "k8s/ciliumnode.h"
#include "operator/cluster_pool.h"

namespace np {
namespace {

namespace json = boost::json;
using op::ClusterPool;
using op::ClusterPoolConfig;

Cidr cidr(const char* s) { return *Cidr::parse(s); }

ClusterPool pool(const char* p = "10.0.0.0/16", uint8_t mask = 24) {
  auto r = ClusterPool::create(ClusterPoolConfig{cidr(p), mask});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
  return std::move(r).value();
}

TEST(ClusterPoolIpam, EachNodeGetsADistinctSlash24OfThePool) {
  ClusterPool p = pool();
  EXPECT_EQ(p.capacity(), 256u);
  std::set<Cidr> seen;
  for (int i = 0; i < 256; ++i) {
    auto c = p.allocate("node" + std::to_string(i));
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->prefix, 24);
    EXPECT_TRUE(cidr("10.0.0.0/16").contains(c->addr));
    EXPECT_TRUE(seen.insert(*c).second) << c->str() << " handed out twice";
  }
  EXPECT_EQ(p.allocate("node0")->str(), "10.0.0.0/24");  // a node asking again keeps its own
  EXPECT_EQ(p.allocated(), 256u);
}

TEST(ClusterPoolIpam, ExhaustionIsAnErrorNamingThePool) {
  ClusterPool p = pool("10.0.0.0/23", 24);
  ASSERT_TRUE(p.allocate("a").ok());
  ASSERT_TRUE(p.allocate("b").ok());
  auto c = p.allocate("c");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().err, ENOSPC);
  EXPECT_NE(c.error().message().find("10.0.0.0/23 is exhausted: all 2 /24s are in use"), std::string::npos)
      << c.error().message();
  p.release("a");  // a deleted node frees its CIDR for the waiting one
  EXPECT_EQ(p.allocate("c")->str(), "10.0.0.0/24");
}

TEST(ClusterPoolIpam, ADeletedNodesCidrIsFreedAndReusedLast) {
  ClusterPool p = pool("10.0.0.0/22", 24);
  EXPECT_EQ(p.allocate("a")->str(), "10.0.0.0/24");
  EXPECT_EQ(p.allocate("b")->str(), "10.0.1.0/24");
  p.release("a");
  EXPECT_FALSE(p.of("a"));
  EXPECT_FALSE(p.owner(cidr("10.0.0.0/24")));
  EXPECT_EQ(p.allocate("c")->str(), "10.0.2.0/24");  // not the one just freed
  EXPECT_EQ(p.allocate("d")->str(), "10.0.3.0/24");
  EXPECT_EQ(p.allocate("e")->str(), "10.0.0.0/24");  // ...until nothing else is left
}

TEST(ClusterPoolIpam, ARestartedOperatorKeepsEveryNodesCidr) {
  // The CiliumNodes as a restarted operator lists them: each keeps what it holds, and a new node
  // gets one nobody holds.
  ClusterPool p = pool();
  ASSERT_TRUE(p.claim("n2", cidr("10.0.7.0/24")).ok());
  ASSERT_TRUE(p.claim("n1", cidr("10.0.0.0/24")).ok());
  EXPECT_EQ(p.of("n1")->str(), "10.0.0.0/24");
  EXPECT_EQ(p.of("n2")->str(), "10.0.7.0/24");
  auto n3 = p.allocate("n3");
  ASSERT_TRUE(n3.ok());
  EXPECT_NE(*n3, cidr("10.0.0.0/24"));
  EXPECT_NE(*n3, cidr("10.0.7.0/24"));
  EXPECT_TRUE(p.claim("n1", cidr("10.0.0.0/24")).ok());  // claiming again is no change
  EXPECT_EQ(p.allocated(), 3u);
}

TEST(ClusterPoolIpam, BadOrConflictingClaimsAreRefusedWithTheReason) {
  ClusterPool p = pool();
  ASSERT_TRUE(p.claim("a", cidr("10.0.3.0/24")).ok());
  auto dup = p.claim("b", cidr("10.0.3.0/24"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().err, EEXIST);
  EXPECT_NE(dup.error().message().find("node a holds it"), std::string::npos) << dup.error().message();
  for (const char* bad : {"10.1.0.0/24", "10.0.3.0/25", "10.0.0.0/16", "10.0.3.128/24"}) {
    auto st = p.claim("b", *Cidr::parse(bad));
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_EQ(st.ok() ? -1 : st.error().err, 0) << bad;
  }
  EXPECT_FALSE(p.of("b"));
  // not a network address (Cidr::parse refuses host bits, so built by hand: `cidr()` would
  // dereference an empty optional, and the test passed or failed on what the stack held)
  EXPECT_FALSE(ClusterPool::create({Cidr{*Ipv4::parse("10.0.0.1"), 16}, 24}).ok());
  EXPECT_FALSE(ClusterPool::create({cidr("10.0.0.0/16"), 8}).ok());   // mask shorter than the pool
  EXPECT_FALSE(ClusterPool::create({cidr("10.0.0.0/16"), 31}).ok());  // no room for pods
}

json::object fixture(const std::string& name) {
  std::ifstream in(std::string(NP_K8S_FIXTURES) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return json::parse(ss.str()).as_object();
}

TEST(CiliumNodeDecode, AnApiServerObjectWithFieldsWeDoNotKnow) {
  auto n = k8s::decodeCiliumNode(fixture("ciliumnode_n1.json"));
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(n->name, "n1");
  EXPECT_FALSE(n->resourceVersion.empty());
  EXPECT_FALSE(n->uid.empty());
  ASSERT_TRUE(n->internalIp());
  EXPECT_EQ(n->internalIp()->str(), "192.168.10.100");
  ASSERT_TRUE(n->podCidr());
  EXPECT_EQ(n->podCidr()->str(), "10.0.0.0/24");
}

TEST(CiliumNodeDecode, WrongTypesNameTheField) {
  json::object o = fixture("ciliumnode_n1.json");
  o["spec"].as_object()["ipam"].as_object()["podCIDRs"] = "10.0.0.0/24";
  auto n = k8s::decodeCiliumNode(o);
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.error().message().find("spec.ipam.podCIDRs is not a list"), std::string::npos) << n.error().message();
  o = fixture("ciliumnode_n1.json");
  o["spec"].as_object()["addresses"].as_array()[0].as_object()["ip"] = 7;
  n = k8s::decodeCiliumNode(o);
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.error().message().find("spec.addresses[0].ip is not a string"), std::string::npos) << n.error().message();
  EXPECT_FALSE(k8s::decodeCiliumNode(json::object{{"spec", json::object{}}}).ok());  // no metadata
}

TEST(CiliumNodeWrite, TheAgentsObjectAndUpdatesKeepOtherFields) {
  json::object o = k8s::newCiliumNode("n1", *Ipv4::parse("192.168.10.100"));
  auto n = k8s::decodeCiliumNode(o);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->internalIp()->str(), "192.168.10.100");
  EXPECT_TRUE(n->podCidrs.empty());
  EXPECT_EQ(o.at("apiVersion").as_string(), "cilium.io/v2");

  json::object got = fixture("ciliumnode_n1.json");
  EXPECT_FALSE(k8s::setInternalIp(got, *Ipv4::parse("192.168.10.100")));  // already so: no write
  EXPECT_TRUE(k8s::setInternalIp(got, *Ipv4::parse("192.168.10.150")));
  n = k8s::decodeCiliumNode(got);
  EXPECT_EQ(n->internalIp()->str(), "192.168.10.150");
  EXPECT_EQ(n->podCidr()->str(), "10.0.0.0/24");  // the operator's field untouched
  EXPECT_TRUE(got.at("metadata").as_object().contains("resourceVersion"));  // the PUT's precondition
  EXPECT_FALSE(k8s::setPodCidrs(got, {"10.0.0.0/24"}));
  EXPECT_TRUE(k8s::setPodCidrs(got, {"10.0.9.0/24"}));
  EXPECT_EQ(k8s::decodeCiliumNode(got)->podCidr()->str(), "10.0.9.0/24");
  EXPECT_TRUE(k8s::setOperatorError(got, "exhausted"));
  EXPECT_FALSE(k8s::setOperatorError(got, "exhausted"));
  EXPECT_EQ(k8s::decodeCiliumNode(got)->operatorError, "exhausted");
  EXPECT_TRUE(k8s::setOperatorError(got, ""));
  EXPECT_EQ(k8s::decodeCiliumNode(got)->operatorError, "");
}

k8s::CiliumNode node(const std::string& name, const std::string& ip, std::vector<std::string> cidrs) {
  k8s::CiliumNode n;
  n.name = name;
  if (!ip.empty()) n.addresses.push_back({"InternalIP", ip});
  n.podCidrs = std::move(cidrs);
  return n;
}

TEST(CiliumNodeList, PeersWithAnAddressAndACidrBecomeTheNodeList) {
  std::map<std::string, k8s::CiliumNode> all;
  all["n1"] = node("n1", "192.168.10.100", {"10.0.0.0/24"});
  all["n2"] = node("n2", "192.168.10.101", {"10.0.1.0/24"});
  all["n3"] = node("n3", "192.168.10.102", {});               // not served yet
  all["n4"] = node("n4", "", {"10.0.4.0/24"});                // no address
  all["n5"] = node("n5", "192.168.10.105", {"10.0.1.0/24"});  // n2's CIDR
  auto cn = k8s::clusterNodes(all, "n1");
  EXPECT_EQ(cn.localMissing, "");
  ASSERT_EQ(cn.nodes.size(), 2u);
  EXPECT_EQ(cn.nodes[0].name, "n1");
  EXPECT_TRUE(cn.nodes[0].local);
  EXPECT_EQ(cn.nodes[0].podCidr.str(), "10.0.0.0/24");
  EXPECT_EQ(cn.nodes[1].name, "n2");
  EXPECT_EQ(cn.nodes[1].ip.str(), "192.168.10.101");
  EXPECT_FALSE(cn.nodes[1].local);
  ASSERT_EQ(cn.skipped.size(), 3u);
  EXPECT_EQ(cn.skipped[0], "CiliumNode n3 has no pod CIDR yet");
  EXPECT_EQ(cn.skipped[1], "CiliumNode n4 has no InternalIP address");
  EXPECT_EQ(cn.skipped[2], "CiliumNode n5 has pod CIDR 10.0.1.0/24, which another node has");
  // Not routed to, but nodes all the same: n3 (no CIDR yet) and n5 (a clashing CIDR) are in the
  // node map and their addresses are node addresses; n4 has none to give.
  ASSERT_EQ(cn.addressOnly.size(), 2u);
  EXPECT_EQ(cn.addressOnly[0], (k8s::NodeAddressEntry{"n3", *Ipv4::parse("192.168.10.102"), false}));
  EXPECT_EQ(cn.addressOnly[1], (k8s::NodeAddressEntry{"n5", *Ipv4::parse("192.168.10.105"), false}));
  std::vector<std::string> ips;
  for (Ipv4 a : cn.nodeIps()) ips.push_back(a.str());
  EXPECT_EQ(ips, (std::vector<std::string>{"192.168.10.100", "192.168.10.101", "192.168.10.102", "192.168.10.105"}));
  std::vector<std::string> mapped;
  for (const NodeEntry& e : cn.nodeMapEntries()) mapped.push_back(e.name + " " + e.ip.str() + (e.local ? " local" : ""));
  EXPECT_EQ(mapped, (std::vector<std::string>{"n1 192.168.10.100 local", "n2 192.168.10.101", "n3 192.168.10.102",
                                              "n5 192.168.10.105"}));
}

TEST(CiliumNodeList, APeerGetsItsRouteWhenItsCidrComesAndLeavesTheMapWhenDeleted) {
  std::map<std::string, k8s::CiliumNode> all;
  all["n1"] = node("n1", "192.168.10.100", {"10.0.0.0/24"});
  all["n2"] = node("n2", "192.168.10.101", {});
  auto cn = k8s::clusterNodes(all, "n1");
  ASSERT_EQ(cn.nodes.size(), 1u);
  ASSERT_EQ(cn.addressOnly.size(), 1u);
  EXPECT_EQ(cn.addressOnly[0].name, "n2");
  all["n2"].podCidrs = {"10.0.1.0/24"};  // the operator served it
  cn = k8s::clusterNodes(all, "n1");
  ASSERT_EQ(cn.nodes.size(), 2u);
  EXPECT_EQ(cn.nodes[1].podCidr.str(), "10.0.1.0/24");
  EXPECT_TRUE(cn.addressOnly.empty());
  EXPECT_EQ(cn.nodeIps().size(), 2u);
  all.erase("n2");
  cn = k8s::clusterNodes(all, "n1");
  EXPECT_EQ(cn.nodeIps(), (std::vector<Ipv4>{*Ipv4::parse("192.168.10.100")}));
  EXPECT_EQ(cn.nodeMapEntries().size(), 1u);
}

TEST(CiliumNodeList, APeerWithAnotherNodesAddressIsLeftOutEntirely) {
  std::map<std::string, k8s::CiliumNode> all;
  all["n1"] = node("n1", "192.168.10.100", {"10.0.0.0/24"});
  all["n2"] = node("n2", "192.168.10.100", {});
  auto cn = k8s::clusterNodes(all, "n1");
  EXPECT_TRUE(cn.addressOnly.empty());
  ASSERT_EQ(cn.skipped.size(), 1u);
  EXPECT_EQ(cn.skipped[0], "CiliumNode n2 has InternalIP 192.168.10.100, which another node has");
}

TEST(CiliumNodeList, ThisNodeWithoutACidrWaitsForTheOperator) {
  std::map<std::string, k8s::CiliumNode> all;
  EXPECT_EQ(k8s::clusterNodes(all, "n1").localMissing, "waiting for CiliumNode n1 to be created");
  all["n1"] = node("n1", "192.168.10.100", {});
  all["n2"] = node("n2", "192.168.10.101", {"10.0.1.0/24"});
  auto cn = k8s::clusterNodes(all, "n1");
  EXPECT_EQ(cn.localMissing, "waiting for the operator to assign a pod CIDR to CiliumNode n1");
  ASSERT_EQ(cn.nodes.size(), 1u);  // peers are routed meanwhile
  EXPECT_EQ(cn.nodes[0].name, "n2");
  // and this node's own address is in the node map, flagged local, while it waits
  ASSERT_EQ(cn.addressOnly.size(), 1u);
  EXPECT_EQ(cn.addressOnly[0], (k8s::NodeAddressEntry{"n1", *Ipv4::parse("192.168.10.100"), true}));
  EXPECT_EQ(cn.nodeIps().front().str(), "192.168.10.100");
  all["n1"].operatorError = "the cluster pool 10.0.0.0/16 is exhausted";
  EXPECT_EQ(k8s::clusterNodes(all, "n1").localMissing,
            "waiting for the operator to assign a pod CIDR to CiliumNode n1 (operator: the cluster pool 10.0.0.0/16 "
            "is exhausted)");
}

}  // namespace
}  // namespace np
