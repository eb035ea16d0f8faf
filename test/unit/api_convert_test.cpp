// The agent API's conntrack conversion (agent/api/convert.cpp) as `agentctl bpf ct list` and
// `bpf nat list` print it: every flag and protocol the datapath writes has a name.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "api/convert.h"
#include "format.h"
#include "np_ct.h"

namespace np::api {
namespace {

np_ct_key ctKey(const char* src, uint16_t sport, const char* dst, uint16_t dport, uint8_t proto, uint8_t dir) {
  np_ct_key k{};
  inet_pton(AF_INET, src, &k.saddr);
  inet_pton(AF_INET, dst, &k.daddr);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  k.dir = dir;
  return k;
}

bool hasFlag(const pb::CtEntry& e, const std::string& name) {
  for (const auto& f : e.flags())
    if (f == name) return true;
  return false;
}

// A pod's ping, masqueraded: the echo request's entry (identifier as port) is ICMP, masq, snat.
TEST(ConntrackList, ConntrackListNamesIcmpAndMasq) {
  const np_ct_key k = ctKey("10.0.1.10", 0x1234, "203.0.113.10", 0, IPPROTO_ICMP, NP_CT_EGRESS);
  np_ct_entry e{};
  e.flags = NP_CT_F_MASQ | NP_CT_F_SNAT;
  inet_pton(AF_INET, "192.168.10.100", &e.nat_saddr);
  e.nat_sport = htons(40001);
  const pb::CtEntry out = ctEntryToProto(NP_CT_TABLE_MAIN, k, e, 0);
  EXPECT_EQ(out.protocol(), pb::ICMP);
  EXPECT_TRUE(hasFlag(out, "masq"));
  EXPECT_TRUE(hasFlag(out, "snat"));

  pb::ListConntrackResponse list;
  *list.add_entries() = out;
  const std::string text = nodepath::agentctl::formatCtList(list, true);
  EXPECT_EQ(text.rfind("ICMP OUT 10.0.1.10:4660 -> 203.0.113.10:0 XLATE_SRC 192.168.10.100:40001 ", 0), 0u) << text;
  EXPECT_NE(text.find(" flags=snat,masq "), std::string::npos) << text;
}

// A ClusterIP flow a pod started, translated at its veth (lxc.bpf.c): both entries say lxc.
TEST(ConntrackList, ConntrackListNamesLxcFlows) {
  const np_ct_key fk = ctKey("10.0.1.10", 45000, "10.43.0.50", 80, IPPROTO_TCP, NP_CT_LXC);
  np_ct_entry fwd{};
  fwd.flags = NP_CT_F_SERVICE | NP_CT_F_LXC;
  const pb::CtEntry f = ctEntryToProto(NP_CT_TABLE_MAIN, fk, fwd, 0);
  EXPECT_EQ(f.hook(), "lxc");
  EXPECT_EQ(f.protocol(), pb::TCP);
  EXPECT_TRUE(hasFlag(f, "service"));
  EXPECT_TRUE(hasFlag(f, "lxc"));

  const np_ct_key rk = ctKey("10.0.2.10", 8080, "10.0.1.10", 45000, IPPROTO_UDP, NP_CT_INGRESS);
  np_ct_entry rev{};
  rev.flags = NP_CT_F_REPLY | NP_CT_F_LXC;
  const pb::CtEntry r = ctEntryToProto(NP_CT_TABLE_MAIN, rk, rev, 0);
  EXPECT_EQ(r.protocol(), pb::UDP);
  EXPECT_TRUE(hasFlag(r, "reply"));
  EXPECT_TRUE(hasFlag(r, "lxc"));
}

// Every flag bit np_ct.h defines has a name (a new bit without one fails here).
TEST(ConntrackList, ConntrackListNamesEveryFlagBit) {
  const np_ct_key k = ctKey("10.0.1.10", 1, "10.0.1.11", 2, IPPROTO_TCP, NP_CT_INGRESS);
  for (uint16_t bit : {NP_CT_F_SERVICE, NP_CT_F_REPLY, NP_CT_F_REDIRECT, NP_CT_F_SEEN_NON_SYN, NP_CT_F_CLOSING,
                       NP_CT_F_SNAT, NP_CT_F_REPLY_SEEN, NP_CT_F_DSR, NP_CT_F_DSR_BACKEND, NP_CT_F_MASQ,
                       NP_CT_F_LXC}) {
    np_ct_entry e{};
    e.flags = bit;
    EXPECT_EQ(ctEntryToProto(NP_CT_TABLE_MAIN, k, e, 0).flags_size(), 1) << "flag bit 0x" << std::hex << bit;
  }
}

}  // namespace
}  // namespace np::api
