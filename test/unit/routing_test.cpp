// agent/routing without a kernel: the netlink messages the agent sends, the parsers of the
// kernel's answers, the endpoint device names, and the direct node routes plan.
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include <map>

#include "routing/netlink.h"
#include "routing/node_routes.h"
#include "routing/notrack.h"

using namespace np;
using namespace np::routing;

namespace {

std::map<uint16_t, const nlattr*> attrs(const nlmsghdr* nlh, size_t hdr) {
  std::map<uint16_t, const nlattr*> out;
  mnl_attr_parse(nlh, static_cast<unsigned>(hdr),
                 [](const nlattr* a, void* d) -> int {
                   (*static_cast<std::map<uint16_t, const nlattr*>*>(d))[mnl_attr_get_type(a)] = a;
                   return MNL_CB_OK;
                 },
                 &out);
  return out;
}

Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
Cidr cidr(const char* s) { return *Cidr::parse(s); }

}  // namespace

TEST(RoutingNetlinkMessage, RouteReplaceIsCreateReplaceWithOurProtocol) {
  Message m = buildRouteReplace({cidr("10.0.2.0/24"), ip("192.168.10.101"), 3, kRouteProtocol, RT_SCOPE_UNIVERSE, 254});
  const nlmsghdr* nlh = m.header();
  EXPECT_EQ(nlh->nlmsg_type, RTM_NEWROUTE);
  EXPECT_EQ(nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK | NLM_F_EXCL),
            NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  EXPECT_EQ(rtm->rtm_family, AF_INET);
  EXPECT_EQ(rtm->rtm_dst_len, 24);
  EXPECT_EQ(rtm->rtm_protocol, 202);
  EXPECT_EQ(rtm->rtm_table, RT_TABLE_MAIN);
  auto a = attrs(nlh, sizeof(rtmsg));
  EXPECT_EQ(mnl_attr_get_u32(a.at(RTA_DST)), ip("10.0.2.0").be);
  EXPECT_EQ(mnl_attr_get_u32(a.at(RTA_GATEWAY)), ip("192.168.10.101").be);
  EXPECT_EQ(mnl_attr_get_u32(a.at(RTA_OIF)), 3u);
  // What the kernel echoes back parses into the same route.
  nlmsghdr* echo = const_cast<nlmsghdr*>(nlh);
  auto parsed = parseRoute(echo);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, (Route{cidr("10.0.2.0/24"), ip("192.168.10.101"), 3, kRouteProtocol, RT_SCOPE_UNIVERSE, 254}));
}

TEST(RoutingNetlinkMessage, VethCreateNamesBothEndsInNestedPeerInfo) {
  Message m = buildVethCreate("lxc0123456789ab", "tmp0123456789ab");
  const nlmsghdr* nlh = m.header();
  EXPECT_EQ(nlh->nlmsg_type, RTM_NEWLINK);
  EXPECT_TRUE(nlh->nlmsg_flags & NLM_F_EXCL);
  auto top = attrs(nlh, sizeof(ifinfomsg));
  EXPECT_STREQ(mnl_attr_get_str(top.at(IFLA_IFNAME)), "lxc0123456789ab");
  // IFLA_LINKINFO { KIND "veth", DATA { VETH_INFO_PEER { ifinfomsg, IFLA_IFNAME } } }
  auto link = parseLink(nlh);
  ASSERT_TRUE(link);
  EXPECT_EQ(link->kind, "veth");
  const nlattr* info = top.at(IFLA_LINKINFO);
  std::string peer;
  const char* end = static_cast<const char*>(mnl_attr_get_payload(info)) + mnl_attr_get_payload_len(info);
  for (auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(info));
       mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a)));
       a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + MNL_ALIGN(a->nla_len))) {
    if (mnl_attr_get_type(a) != IFLA_INFO_DATA) continue;
    const nlattr* p = static_cast<const nlattr*>(mnl_attr_get_payload(a));
    ASSERT_EQ(mnl_attr_get_type(p), VETH_INFO_PEER);
    const char* inner = static_cast<const char*>(mnl_attr_get_payload(p)) + NLMSG_ALIGN(sizeof(ifinfomsg));
    const nlattr* name = reinterpret_cast<const nlattr*>(inner);
    ASSERT_EQ(mnl_attr_get_type(name), IFLA_IFNAME);
    peer = mnl_attr_get_str(name);
  }
  EXPECT_EQ(peer, "tmp0123456789ab");
}

TEST(RoutingNetlinkMessage, MoveToNetnsUpRenameAndAddress) {
  Message mv = buildLinkSetNetns(8, 42);
  EXPECT_EQ(static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(mv.header()))->ifi_index, 8);
  EXPECT_EQ(mnl_attr_get_u32(attrs(mv.header(), sizeof(ifinfomsg)).at(IFLA_NET_NS_FD)), 42u);
  Message up = buildLinkUp(8);
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(up.header()));
  EXPECT_EQ(ifi->ifi_flags & IFF_UP, unsigned(IFF_UP));
  EXPECT_EQ(ifi->ifi_change, unsigned(IFF_UP));
  Message ren = buildLinkRename(8, "eth0");
  EXPECT_STREQ(mnl_attr_get_str(attrs(ren.header(), sizeof(ifinfomsg)).at(IFLA_IFNAME)), "eth0");
  Message addr = buildAddressAdd({8, ip("10.0.1.7"), 32, RT_SCOPE_UNIVERSE}, false);
  EXPECT_TRUE(addr.header()->nlmsg_flags & NLM_F_EXCL);
  EXPECT_EQ(addr.header()->nlmsg_type, RTM_NEWADDR);
  // The kernel's dump answers with messages of the same shape: they parse into the address.
  auto parsed = parseAddress(addr.header());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->ip, ip("10.0.1.7"));
  EXPECT_EQ(parsed->prefix, 32);
  EXPECT_EQ(parsed->ifindex, 8);
  EXPECT_TRUE(buildAddressAdd({8, ip("10.0.1.1"), 32, 0}, true).header()->nlmsg_flags & NLM_F_REPLACE);
}

TEST(RoutingEndpointNames, LxcPlusTwelveHexFitsAnInterfaceName) {
  const std::string n = endpointIfName("0123abcd", "eth0");
  EXPECT_EQ(n.size(), 15u);
  EXPECT_EQ(n.rfind("lxc", 0), 0u);
  EXPECT_EQ(n, endpointIfName("0123abcd", "eth0"));  // stable across restarts
  EXPECT_NE(n, endpointIfName("0123abcd", "net1"));  // per attachment
  EXPECT_EQ(endpointIfName("0123abcd", "eth0", "tmp").substr(3), n.substr(3));
  EXPECT_TRUE(validIfName(n));
  EXPECT_FALSE(validIfName("sixteen-chars-xx"));
  EXPECT_FALSE(validIfName("a/b"));
  EXPECT_FALSE(validIfName(""));
}

TEST(RoutingNodeRoutes, PeersOnTheLinkGetARoutePeersBehindARouterAreRefused) {
  std::vector<NodeEntry> nodes = {{"n1", ip("192.168.10.100"), cidr("10.0.1.0/24"), true},
                                  {"n2", ip("192.168.10.101"), cidr("10.0.2.0/24"), false},
                                  {"n3", ip("203.0.113.50"), cidr("10.0.3.0/24"), false}};
  NodeRoutePlan plan = planNodeRoutes(nodes, "ens192", 2, {{2, ip("192.168.10.100"), 24, 0}});
  ASSERT_EQ(plan.routes.size(), 1u);
  EXPECT_EQ(plan.routes[0], (Route{cidr("10.0.2.0/24"), ip("192.168.10.101"), 2, kRouteProtocol, 0, 254}));
  ASSERT_EQ(plan.nodes.size(), 2u);  // the local node needs no route
  EXPECT_TRUE(plan.nodes[0].error.empty());
  EXPECT_EQ(plan.nodes[1].node, "n3");
  EXPECT_NE(plan.nodes[1].error.find("not on a directly connected subnet of ens192 (192.168.10.0/24)"),
            std::string::npos)
      << plan.nodes[1].error;
}

TEST(RoutingNodeRoutes, NoAddressMeansNoPeerIsOnTheLink) {
  std::vector<NodeEntry> nodes = {{"n2", ip("192.168.10.101"), cidr("10.0.2.0/24"), false}};
  NodeRoutePlan plan = planNodeRoutes(nodes, "ens192", 2, {});
  EXPECT_TRUE(plan.routes.empty());
  EXPECT_NE(plan.nodes.at(0).error.find("no IPv4 address"), std::string::npos);
}

namespace np::routing {
namespace {

// --install-no-conntrack-iptables-rules: both directions of pod traffic skip conntrack, in our
// own raw chains (what `iptables -t raw -S` then shows).
TEST(NoTrackRules, BothDirectionsInOwnRawChains) {
  const auto rules = noTrackRules(Cidr{Ipv4::fromHost(0x0a000000), 16});
  ASSERT_EQ(rules.size(), 4u);
  auto text = [](const std::vector<std::string>& r) {
    std::string s;
    for (const auto& a : r) s += (s.empty() ? "" : " ") + a;
    return s;
  };
  EXPECT_EQ(text(rules[0]),
            "-t raw -A NODEPATH_PRE_raw -s 10.0.0.0/16 -m comment --comment nodepath: NOTRACK for pod traffic -j CT --notrack");
  EXPECT_EQ(text(rules[1]).substr(0, 43), "-t raw -A NODEPATH_PRE_raw -d 10.0.0.0/16 -");
  EXPECT_EQ(text(rules[2]).substr(0, 46), "-t raw -A NODEPATH_OUTPUT_raw -s 10.0.0.0/16 -");
  EXPECT_EQ(text(rules[3]).substr(0, 46), "-t raw -A NODEPATH_OUTPUT_raw -d 10.0.0.0/16 -");
}

// No iptables binary: a clear error, nothing half done.
TEST(NoTrackRules, MissingIptablesIsAClearError) {
  auto st = installNoTrack(Cidr{Ipv4::fromHost(0x0a000000), 16}, "/nonexistent/iptables");
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("not found"), std::string::npos) << st.error().message();
}

}  // namespace
}  // namespace np::routing
