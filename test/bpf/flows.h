// The NodePort flows the host.bpf.c cases share: one service on the node's address, its clients
// on the LAN, backends on this node (local pods) and on node 2 (SNAT'd), and the packets and
// conntrack keys of both directions.
#pragma once

#include "host_fixture.h"
#include "lb/model.h"

namespace np::bpftest {

using np::test::kTcpAck;
using np::test::kTcpFin;
using np::test::kTcpPsh;
using np::test::kTcpRst;
using np::test::kTcpSyn;

inline constexpr uint16_t kNodePort = 30080;
inline constexpr uint16_t kBackendPort = 8080;
inline constexpr uint16_t kClientPort = 40000;
inline constexpr uint16_t kRevNat = 7;
inline constexpr uint8_t kNodePortFlags = NP_SVC_F_NODEPORT | NP_SVC_F_ROUTABLE;
inline constexpr uint16_t kSnatMin = NP_DEFAULT_SNAT_PORT_MIN;  // HostParams defaults
inline constexpr uint16_t kSnatMax = NP_DEFAULT_SNAT_PORT_MAX;
inline const Frontend kTcpNodePort{kNodeIp, kNodePort, IPPROTO_TCP};

// default/web, as the agent's tests program it: TCP ClusterIP kClusterIp:80 and NodePort
// kNodePort, these pods as backends on kBackendPort.
lb::Service webService(const std::vector<uint32_t>& pods);

// A TCP segment from a client to the NodePort, as it arrives on ens192.
inline PacketBuilder clientTcp(uint16_t sport, uint8_t flags, uint32_t client = kClientIp, uint16_t dport = kNodePort) {
  PacketBuilder b;
  b.eth(kClientMac, kEns192Mac).ipv4(client, kNodeIp).ipId(0x1234).dontFragment().tcp(sport, dport, flags)
      .seq(1000).window(64240);
  if (flags & kTcpAck) b.ackSeq(5001);
  if (!(flags & (kTcpSyn | kTcpRst))) b.payload("GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
  return b;
}

// A segment from a local pod to the client, as the stack sends it out of ens192.
inline PacketBuilder localPodTcp(uint32_t pod, uint16_t clientPort, uint8_t flags) {
  PacketBuilder b;
  b.eth(kEns192Mac, kClientMac).ipv4(pod, kClientIp).ipId(0x4321).dontFragment().tcp(kBackendPort, clientPort, flags)
      .seq(5000).ackSeq(1001).window(65160);
  if (!(flags & (kTcpSyn | kTcpRst))) b.payload("HTTP/1.1 200 OK\r\n\r\n");
  return b;
}

// A segment from a pod on node 2 to this node's SNAT port, as it arrives on ens192 from node 2.
inline PacketBuilder remotePodTcp(uint32_t pod, uint16_t snatPort, uint8_t flags) {
  PacketBuilder b;
  b.eth(kNode2Mac, kEns192Mac).ipv4(pod, kNodeIp).ttl(63).ipId(0x4321).dontFragment()
      .tcp(kBackendPort, snatPort, flags).seq(5000).ackSeq(1001).window(65160);
  if (!(flags & (kTcpSyn | kTcpRst))) b.payload("HTTP/1.1 200 OK\r\n\r\n");
  return b;
}

inline np_ct_key clientKey(uint16_t clientPort, uint32_t client = kClientIp, uint16_t frontendPort = kNodePort,
                    uint8_t proto = IPPROTO_TCP) {
  return ctKey(client, clientPort, kNodeIp, frontendPort, proto, NP_CT_INGRESS);
}

inline np_ct_key localReplyKey(uint32_t pod, uint16_t clientPort, uint16_t podPort = kBackendPort,
                        uint8_t proto = IPPROTO_TCP) {
  return ctKey(pod, podPort, kClientIp, clientPort, proto, NP_CT_EGRESS);
}

inline np_ct_key remoteReplyKey(uint32_t pod, uint16_t snatPort) {
  return ctKey(pod, kBackendPort, kNodeIp, snatPort, IPPROTO_TCP, NP_CT_INGRESS);
}

// Declared in HostTest (host_fixture.h), defined here with the flows it uses.
inline uint16_t HostTest::startRemoteFlow() {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  if (fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict != TC_ACT_REDIRECT) {
    ADD_FAILURE() << "the SYN to the remote backend was not redirected";
    return 0;
  }
  auto fwd = ct(clientKey(kClientPort));
  if (!fwd) ADD_FAILURE() << "no conntrack entry client -> frontend";
  return fwd ? ntohs(fwd->nat_sport) : 0;
}

}  // namespace np::bpftest
