/* SPDX-License-Identifier: Apache-2.0 */
/* Load-time configuration of the programs: the agent fills these .rodata structs before load,
 * so disabled features are dead code to the verifier. */
#ifndef NP_CONFIG_H
#define NP_CONFIG_H

#include "np_abi.h"

enum np_lb_mode {
	NP_LB_MODE_SNAT = 0,
	NP_LB_MODE_DSR = 1,
	NP_LB_MODE_HYBRID = 2,
};

/* host.bpf.c: one instance per native device. */
struct np_host_config {
	__be32 node_ip;         /* this node's IPv4 on the device, SNAT source */
	__u32 ifindex;          /* the device */
	__u8 mac[6];            /* the device's MAC */
	__u8 lb_mode;           /* enum np_lb_mode */
	__u8 pad;
	__u16 nodeport_min;     /* NodePort range, host order */
	__u16 nodeport_max;
	__u16 snat_port_min;    /* SNAT source ports (disjoint from the NodePort range), host order */
	__u16 snat_port_max;
};
NP_ASSERT_SIZE(struct np_host_config, 24);

/* sock.bpf.c: one instance per node. */
struct np_sock_config {
	__be32 node_ip;        /* this node's IPv4 (NodePort via the node address) */
	__u16 nodeport_min;    /* host order */
	__u16 nodeport_max;
};
NP_ASSERT_SIZE(struct np_sock_config, 8);

#endif /* NP_CONFIG_H */
