// The drop-reason table (bpf/include/np_drop.h NP_DROP_REASONS, and the agent's names generated
// from it) against Hubble's numbering: every reason the datapath can count must carry the name
// Hubble's flow.proto gives its number, or Hubble clients would show another reason.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "datapath/drop_reasons.h"
#include "np_drop.h"

namespace np::datapath {
namespace {

// enum DropReason of cilium/cilium api/v1/flow/flow.proto (commit 04bbfcb5ddb0c31cd0f130cb4e1f0f5e6e6ec768),
// transcribed number by number: the reference, independent of the table under test.
const std::map<uint32_t, std::string>& hubbleDropReasons() {
  static const std::map<uint32_t, std::string> m = {
      {0, "DROP_REASON_UNKNOWN"},
      {130, "INVALID_SOURCE_MAC"},
      {131, "INVALID_DESTINATION_MAC"},
      {132, "INVALID_SOURCE_IP"},
      {133, "POLICY_DENIED"},
      {134, "INVALID_PACKET_DROPPED"},
      {135, "CT_TRUNCATED_OR_INVALID_HEADER"},
      {136, "CT_MISSING_TCP_ACK_FLAG"},
      {137, "CT_UNKNOWN_L4_PROTOCOL"},
      {138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET"},
      {139, "UNSUPPORTED_L3_PROTOCOL"},
      {140, "MISSED_TAIL_CALL"},
      {141, "ERROR_WRITING_TO_PACKET"},
      {142, "UNKNOWN_L4_PROTOCOL"},
      {143, "UNKNOWN_ICMPV4_CODE"},
      {144, "UNKNOWN_ICMPV4_TYPE"},
      {145, "UNKNOWN_ICMPV6_CODE"},
      {146, "UNKNOWN_ICMPV6_TYPE"},
      {147, "ERROR_RETRIEVING_TUNNEL_KEY"},
      {148, "ERROR_RETRIEVING_TUNNEL_OPTIONS"},
      {149, "INVALID_GENEVE_OPTION"},
      {150, "UNKNOWN_L3_TARGET_ADDRESS"},
      {151, "STALE_OR_UNROUTABLE_IP"},
      {152, "NO_MATCHING_LOCAL_CONTAINER_FOUND"},
      {153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM"},
      {154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM"},
      {155, "CT_MAP_INSERTION_FAILED"},
      {156, "INVALID_IPV6_EXTENSION_HEADER"},
      {157, "IP_FRAGMENTATION_NOT_SUPPORTED"},
      {158, "SERVICE_BACKEND_NOT_FOUND"},
      {160, "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT"},
      {161, "FAILED_TO_INSERT_INTO_PROXYMAP"},
      {162, "REACHED_EDT_RATE_LIMITING_DROP_HORIZON"},
      {163, "UNKNOWN_CONNECTION_TRACKING_STATE"},
      {164, "LOCAL_HOST_IS_UNREACHABLE"},
      {165, "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION"},
      {166, "UNSUPPORTED_L2_PROTOCOL"},
      {167, "NO_MAPPING_FOR_NAT_MASQUERADE"},
      {168, "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE"},
      {169, "FIB_LOOKUP_FAILED"},
      {170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED"},
      {171, "INVALID_IDENTITY"},
      {172, "UNKNOWN_SENDER"},
      {173, "NAT_NOT_NEEDED"},
      {174, "IS_A_CLUSTERIP"},
      {175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND"},
      {176, "FORBIDDEN_ICMPV6_MESSAGE"},
      {177, "DENIED_BY_LB_SRC_RANGE_CHECK"},
      {178, "SOCKET_LOOKUP_FAILED"},
      {179, "SOCKET_ASSIGN_FAILED"},
      {180, "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL"},
      {181, "POLICY_DENY"},
      {182, "VLAN_FILTERED"},
      {183, "INVALID_VNI"},
      {184, "INVALID_TC_BUFFER"},
      {185, "NO_SID"},
      {186, "MISSING_SRV6_STATE"},
      {187, "NAT46"},
      {188, "NAT64"},
      {189, "AUTH_REQUIRED"},
      {190, "CT_NO_MAP_FOUND"},
      {191, "SNAT_NO_MAP_FOUND"},
      {192, "INVALID_CLUSTER_ID"},
      {193, "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP"},
      {194, "NO_EGRESS_GATEWAY"},
      {196, "TTL_EXCEEDED"},
      {197, "NO_NODE_ID"},
      {202, "DROP_HOST_NOT_READY"},
      {203, "DROP_EP_NOT_READY"},
  };
  return m;
}

// Every enum np_drop_reason value, as the datapath names it. Spelled out here (not taken from
// kDropReasons) so a reason that lost its table entry, or an entry whose number moved, shows up.
struct EnumValue {
  uint32_t value;
  const char* symbol;
};
constexpr EnumValue kEnumValues[] = {
    {NP_DROP_INVALID_SOURCE_IP, "NP_DROP_INVALID_SOURCE_IP"},
    {NP_DROP_INVALID_PACKET, "NP_DROP_INVALID_PACKET"},
    {NP_DROP_TRUNCATED_HEADER, "NP_DROP_TRUNCATED_HEADER"},
    {NP_DROP_FRAG_NEEDED, "NP_DROP_FRAG_NEEDED"},
    {NP_DROP_WRITE_ERROR, "NP_DROP_WRITE_ERROR"},
    {NP_DROP_CT_CANT_CREATE, "NP_DROP_CT_CANT_CREATE"},
    {NP_DROP_CSUM_L3, "NP_DROP_CSUM_L3"},
    {NP_DROP_CSUM_L4, "NP_DROP_CSUM_L4"},
    {NP_DROP_CT_CREATE_FAILED, "NP_DROP_CT_CREATE_FAILED"},
    {NP_DROP_FRAGMENT, "NP_DROP_FRAGMENT"},
    {NP_DROP_NO_SERVICE_BACKEND, "NP_DROP_NO_SERVICE_BACKEND"},
    {NP_DROP_NAT_NO_MAPPING, "NP_DROP_NAT_NO_MAPPING"},
    {NP_DROP_FIB_LOOKUP_FAILED, "NP_DROP_FIB_LOOKUP_FAILED"},
    {NP_DROP_IS_CLUSTER_IP, "NP_DROP_IS_CLUSTER_IP"},
    {NP_DROP_FRAG_NOT_FOUND, "NP_DROP_FRAG_NOT_FOUND"},
    {NP_DROP_TTL_EXCEEDED, "NP_DROP_TTL_EXCEEDED"},
};

// How many values the list in np_drop.h generates: a reason added there must be added above too.
constexpr size_t kListed = 0
#define NP_COUNT_(name, num, hubble, desc) +1
    NP_DROP_REASONS(NP_COUNT_)
#undef NP_COUNT_
    ;

TEST(HubbleDropReasons, EveryEnumValueHasItsHubbleName) {
  EXPECT_EQ(std::size(kEnumValues), kListed) << "np_drop.h lists reasons this test does not know";
  EXPECT_EQ(std::size(kDropReasons), kListed);
  for (const EnumValue& v : kEnumValues) {
    SCOPED_TRACE(v.symbol);
    const DropReasonInfo* info = dropReasonInfo(v.value);
    ASSERT_NE(info, nullptr) << v.symbol << " = " << v.value << " has no table entry";
    EXPECT_STREQ(info->symbol, v.symbol);
    auto upstream = hubbleDropReasons().find(v.value);
    ASSERT_NE(upstream, hubbleDropReasons().end()) << v.value << " is not a flow.proto DropReason number";
    EXPECT_EQ(info->hubbleName, upstream->second) << "flow.proto names " << v.value << " " << upstream->second;
    EXPECT_STREQ(dropReasonHubbleName(v.value), upstream->second.c_str());
  }
}

TEST(HubbleDropReasons, NamesAreUniqueAndFitAMetricsSlot) {
  std::set<uint32_t> numbers;
  std::set<std::string> hubble, descriptions;
  for (const DropReasonInfo& r : kDropReasons) {
    SCOPED_TRACE(r.symbol);
    EXPECT_TRUE(numbers.insert(r.reason).second) << "number " << r.reason << " used twice";
    EXPECT_TRUE(hubble.insert(r.hubbleName).second) << r.hubbleName << " used twice";
    EXPECT_TRUE(descriptions.insert(r.description).second) << r.description << " used twice";
    EXPECT_NE(std::string(r.description), "");
    // The metrics index is (direction << 8) | reason, and reason 0 there means forwarded.
    EXPECT_GT(r.reason, uint32_t{NP_METRIC_FORWARDED});
    EXPECT_LT(r.reason, 256u);
    EXPECT_STREQ(dropReasonName(r.reason), r.description);
  }
}

TEST(HubbleDropReasons, ForwardedAndUnknownSlotsAreNamed) {
  EXPECT_STREQ(dropReasonName(NP_METRIC_FORWARDED), "forwarded");
  EXPECT_STREQ(dropReasonName(133), "unknown");  // POLICY_DENIED: a Hubble reason nodepath never counts
  EXPECT_STREQ(dropReasonHubbleName(133), "DROP_REASON_UNKNOWN");
  EXPECT_EQ(dropReasonInfo(255), nullptr);
  // The names the agent showed before the table existed (agentctl status, metrics).
  EXPECT_STREQ(dropReasonName(NP_DROP_NO_SERVICE_BACKEND), "Service backend not found");
  EXPECT_STREQ(dropReasonName(NP_DROP_TRUNCATED_HEADER), "CT: Truncated or invalid header");
  EXPECT_STREQ(dropReasonName(NP_DROP_CT_CREATE_FAILED), "CT: Map insertion failed");
}

}  // namespace
}  // namespace np::datapath
