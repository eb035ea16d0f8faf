// The world a BPF_PROG_TEST_RUN test runs in: a private network namespace shaped like node 1 of the
// lab, and a private bpffs for the pinned maps. main() builds it once per process, before any
// test runs; it goes away with the process (see main.cpp for how, and what is never touched).
//
// Topology of the private namespace (bpf_fib_lookup() consults it, so the addresses matter):
//   ens192  192.168.10.100/24, MAC kEns192Mac   <-veth->  peer0
//           neighbours (permanent): 192.168.10.101 (node 2) = kNode2Mac,
//                                   192.168.10.200 (client) = kClientMac
//           routes: 10.0.2.0/24 via 192.168.10.101   (pods of node 2)
//                   10.0.3.0/24 via 192.168.10.102   (a node whose MAC is not known yet)
//                   198.51.100.0/24 via 192.168.10.1 (spoofed flood sources: the lab's router,
//                                                     MAC not known)
//                   unreachable 10.0.9.0/24, blackhole 10.0.8.0/24, prohibit 10.0.7.0/24
//                   (routes that refuse); no default route: 203.0.113.0/24 has no route at all
//   lxcp1   <-veth->  p1peer;  routes 10.0.1.10/32 and 10.0.1.11/32 dev lxcp1  (local pods)
//   net.ipv4.ip_forward = 1 (bpf_fib_lookup() answers only for forwarding devices)
#pragma once

#include <cstdint>
#include <string>

#include "packet.h"

namespace np::bpftest {

using np::test::ip;
using np::test::MacAddr;

inline const uint32_t kNodeIp = ip("192.168.10.100");
inline const uint32_t kNode2Ip = ip("192.168.10.101");
inline const uint32_t kNode3Ip = ip("192.168.10.102");  // no neighbour entry
inline const uint32_t kClientIp = ip("192.168.10.200");
inline const uint32_t kClient2Ip = ip("192.168.10.201");
inline const uint32_t kLocalPodA = ip("10.0.1.10");
inline const uint32_t kLocalPodB = ip("10.0.1.11");
inline const uint32_t kRemotePodA = ip("10.0.2.10");
inline const uint32_t kRemotePodB = ip("10.0.2.11");
inline const uint32_t kUnresolvedPod = ip("10.0.3.10");  // behind kNode3Ip
inline const uint32_t kClusterIp = ip("10.43.0.50");
inline const uint32_t kRouterIp = ip("192.168.10.1");

inline const MacAddr kEns192Mac = np::test::mac("02:00:00:0a:01:64");
inline const MacAddr kNode2Mac = np::test::mac("02:00:00:0a:02:65");
inline const MacAddr kClientMac = np::test::mac("02:00:00:0a:c8:c8");

struct Env {
  std::string bpffs;    // a bpffs mount private to this process; each test pins under a subdir
  int ens192Ifindex = 0;
  MacAddr ens192Mac{};  // as the kernel reports it (equals kEns192Mac)
};

// Valid once main() has built the environment (i.e. inside any TEST).
const Env& env();

// Builds the environment in the calling process: new network and mount namespaces, bpffs mounted
// on `bpffsDir` (an existing empty directory), the topology above. Returns false with a message
// on stderr when anything fails. Must run single-threaded (unshare(CLONE_NEWNS) requires it).
bool setUpEnv(const std::string& bpffsDir);

}  // namespace np::bpftest
