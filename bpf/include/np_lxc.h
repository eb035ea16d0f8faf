/* SPDX-License-Identifier: Apache-2.0 */
/* Pod endpoints for lxc.bpf.c and the pod delivery of host.bpf.c (lib/pod.h): the local endpoint
 * map, the load-time configuration and the per-CPU counters of what the pod path did. */
#ifndef NP_LXC_H
#define NP_LXC_H

#include "np_abi.h"

#define NP_MAP_LXC       np_lxc4_v1
#define NP_MAP_LXC_STATS np_lxcstat_v1

/* np_lxc4_v1: the agent writes (CNI ADD/DEL, adoption at start), lxc.bpf.c and host.bpf.c read.
 * HASH. Pod IPv4 (network order) -> where the pod is. */
struct np_endpoint {
	__u32 ifindex;     /* host-side veth (lxc...) in the node's namespace, host order */
	__u32 ep_id;       /* the agent's endpoint ID (host order); the host ifindex today */
	__u8 pod_mac[6];   /* MAC of the pod's interface (CNI_IFNAME) */
	__u8 lxc_mac[6];   /* MAC of the host-side veth: the pod's router answers with it */
	__u32 flags;       /* none defined yet, 0 */
};
NP_ASSERT_SIZE(struct np_endpoint, 24);
NP_ASSERT_OFFSET(struct np_endpoint, pod_mac, 8);
NP_ASSERT_OFFSET(struct np_endpoint, lxc_mac, 14);

#define NP_DEFAULT_LXC_MAX 65536 /* local endpoints, not a flag (a /24 needs 253) */

/* lib/pod.h (np_pod_cfg): lxc.bpf.c and host.bpf.c, one instance per node. */
struct np_pod_config {
	__u8 bpf_host_routing; /* 1: deliver/forward with redirects; 0: legacy, hand to the stack */
	__u8 pad[3];
};
NP_ASSERT_SIZE(struct np_pod_config, 4);

/* The address a pod that reaches itself through a service (hairpin) sees its own connection
 * come from: Cilium's IPV4_LOOPBACK default. Network order is built at use. */
#define NP_LXC_HAIRPIN_ADDR_HOST 0xa9fe2a01U /* 169.254.42.1 */

/* np_lxcstat_v1: lxc.bpf.c and host.bpf.c count, the agent sums across CPUs. PERCPU_ARRAY.
 * enum np_lxc_stat (host order) -> packets. What was forwarded how; drops are in np_metrics_v1. */
enum np_lxc_stat {
	NP_LXC_STAT_PEER = 0,      /* to a local pod with bpf_redirect_peer() */
	NP_LXC_STAT_FIB = 1,       /* out through the FIB's device and neighbour (bpf_redirect) */
	NP_LXC_STAT_NEIGH = 2,     /* out through bpf_redirect_neigh() (FIB knew no neighbour) */
	NP_LXC_STAT_ARP = 3,       /* ARP for the router answered */
	NP_LXC_STAT_XLATE = 4,     /* new service flow translated per packet */
	NP_LXC_STAT_LEGACY = 5,    /* handed to the stack: legacy host routing */
	NP_LXC_STAT_PORT_MOVED = 6, /* new service flow whose reply tuple another flow held: its
				      * source port was moved (np_pod_move_sport) */
	/* handed to the stack because the FIB said so: NP_LXC_STAT_STACK + bpf_fib_lookup()'s
	 * result (BPF_FIB_LKUP_RET_NOT_FWDED, _FRAG_NEEDED, ...) */
	NP_LXC_STAT_STACK = 8,
	NP_LXC_STATS = 24,
};

struct np_lxc_counter {
	__u64 packets;
};
NP_ASSERT_SIZE(struct np_lxc_counter, 8);

#endif /* NP_LXC_H */
