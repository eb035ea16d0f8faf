/* SPDX-License-Identifier: Apache-2.0 */
/* Load-time configuration of the programs: the agent fills these .rodata structs before load,
 * so disabled features are dead code to the verifier. Every field is read by a program; a feature
 * adds its knobs when it lands (XDP: the device). Defaults: np_abi.h. */
#ifndef NP_CONFIG_H
#define NP_CONFIG_H

#include "np_abi.h"

/* How the ingress node forwards to a remote backend (the agent's bpf-lb-mode). In every mode the
 * backend node side of DSR (lib/dsr.h) is compiled in except SNAT: a node that never sends the
 * option does not read it either. */
enum np_lb_mode {
	NP_LB_MODE_SNAT = 0,   /* SNAT to the node; replies come back through it */
	NP_LB_MODE_DSR = 1,    /* DSR with the IPv4 option, TCP and UDP */
	NP_LB_MODE_HYBRID = 2, /* DSR for TCP, SNAT for UDP */
};

/* lib/nodeport.h (np_nodeport_cfg): every program that runs the NodePort path; one instance per
 * native device. */
struct np_nodeport_config {
	__be32 node_ip;         /* this node's IPv4 on the device, SNAT source */
	__u16 snat_port_min;    /* SNAT source ports (disjoint from the NodePort range), host order */
	__u16 snat_port_max;
	__u8 lb_mode;           /* enum np_lb_mode */
	__u8 pad[3];
};
NP_ASSERT_SIZE(struct np_nodeport_config, 12);

/* lib/masq.h (np_masq_cfg): BPF masquerade on a native device's egress; one instance per device,
 * like np_nodeport_config (whose node_ip is the masquerade address). */
struct np_masq_config {
	__be32 cidr;         /* ipv4-native-routing-cidr: network address */
	__be32 cidr_mask;    /* its netmask */
	__u16 port_min;      /* masquerade source ports / ICMP echo identifiers, host order */
	__u16 port_max;
	__u8 enabled;        /* enable-bpf-masquerade */
	__u8 pad[3];
};
NP_ASSERT_SIZE(struct np_masq_config, 16);

/* sock.bpf.c (np_cfg): one instance per node. */
struct np_sock_config {
	__be32 node_ip;        /* this node's IPv4 (NodePort via the node address) */
	__u16 nodeport_min;    /* NodePort range, host order */
	__u16 nodeport_max;
};
NP_ASSERT_SIZE(struct np_sock_config, 8);

/* lib/lb.h (np_lb_cfg): backend selection, the same in every program that includes lib/lb.h. */
enum np_lb_algorithm {
	NP_LB_ALG_RANDOM = 0, /* a random slot (tc: then kept by conntrack) */
	NP_LB_ALG_MAGLEV = 1, /* tc path: the frontend's Maglev table at a hash of the flow */
};

struct np_lb_config {
	__u32 algorithm;         /* enum np_lb_algorithm */
	__u32 maglev_table_size; /* entries of every Maglev table (a prime), host order */
};
NP_ASSERT_SIZE(struct np_lb_config, 8);

#endif /* NP_CONFIG_H */
