/* SPDX-License-Identifier: Apache-2.0 */
/* XDP acceleration (xdp.bpf.c): what its counters count, shared by BPF C and C++. */
#ifndef NP_XDP_H
#define NP_XDP_H

#include "np_abi.h"

/* np_xdpstat_v1: one per loaded xdp.bpf.o, i.e. per device, unpinned (it counts since that
 * program was loaded; a restarted agent's programs start from 0). PERCPU_ARRAY,
 * enum np_xdp_stat -> struct np_metric (np_drop.h: packets, bytes); the agent sums the CPUs. */
enum np_xdp_stat {
	NP_XDP_STAT_TX = 0,       /* translated and sent back out of the device (XDP_TX) */
	NP_XDP_STAT_REDIRECT = 1, /* translated and sent out of another device (XDP_REDIRECT) */
	NP_XDP_STAT_PASS = 2,     /* passed on marked done: DNAT'd to a local backend, or not a frontend */
	NP_XDP_STAT_DEFERRED = 3, /* passed on untouched for tc to do: no neighbour entry for the next hop */
	NP_XDP_STAT_SKIPPED = 4,  /* not IPv4 TCP/UDP (ARP, IPv6, ICMP, later fragments): passed untouched */
	NP_XDP_STAT_DROP = 5,     /* dropped; np_metrics_v1 has the reason (ingress) */
	NP_XDP_STATS = 6,
};

/* Tail calls of xdp.bpf.c (its np_xdpcall_v1 program array; unpinned, filled at load). */
enum np_xdp_call {
	NP_XDP_CALL_NEW_FLOW = 0,  /* the first packet of a flow: backend choice, state, SNAT port */
	NP_XDP_CALL_NEW_FLOW_NAT = 1, /* ... then its rewrite and forwarding by the new entry */
	NP_XDP_CALLS = 2,
};

#endif /* NP_XDP_H */
