/* SPDX-License-Identifier: Apache-2.0 */
/* Connection tracking ABI. One LRU map holds both directions of every translated flow; each
 * entry is keyed by the tuple as the hook that applies it sees the packet, and carries the
 * complete rewrite for that direction, so a hit is one lookup plus one rewrite. */
#ifndef NP_CT_H
#define NP_CT_H

#include "np_abi.h"

/* Which hook looks the entry up. */
enum np_ct_dir {
	NP_CT_INGRESS = 0, /* tc ingress / XDP on the native device */
	NP_CT_EGRESS = 1,  /* tc egress on the native device */
};

/* np_ct4_v1: tc programs write and read; the agent lists and garbage-collects. LRU_HASH.
 * Tuple as seen by the hook (network order) -> translation and state. */
struct np_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;   /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 dir;     /* enum np_ct_dir */
	__u8 pad[2];
};
NP_ASSERT_SIZE(struct np_ct_key, 16);

enum np_ct_flags {
	NP_CT_F_SERVICE   = 1 << 0, /* forward entry of a service flow: backend_id is the choice */
	NP_CT_F_REPLY     = 1 << 1, /* reply direction of a translated flow */
	NP_CT_F_REDIRECT  = 1 << 2, /* after the rewrite, route it out with a FIB lookup (hairpin) */
	NP_CT_F_SEEN_NON_SYN = 1 << 3, /* a TCP packet without SYN went this way: established */
	NP_CT_F_CLOSING   = 1 << 4, /* FIN or RST seen: short lifetime */
	NP_CT_F_SNAT      = 1 << 5, /* source rewritten to the node (remote backend, SNAT mode) */
};

struct np_ct_entry {
	__u64 expires;     /* CLOCK_MONOTONIC ns (tick resolution) after which the entry is dead */
	__be32 nat_saddr;  /* rewrite source address to this (0 = keep) */
	__be32 nat_daddr;  /* rewrite destination address to this (0 = keep) */
	__be16 nat_sport;  /* rewrite source port to this (0 = keep) */
	__be16 nat_dport;  /* rewrite destination port to this (0 = keep) */
	__u32 backend_id;  /* service flows: the selected backend */
	__u16 rev_nat_id;  /* service flows: the frontend */
	__u16 flags;       /* enum np_ct_flags */
	__u8 tcp_flags;    /* OR of TCP flags seen in this direction */
	__u8 pad[3];
	__u64 packets;     /* packets translated by this entry */
	__u64 bytes;       /* bytes translated by this entry */
};
NP_ASSERT_SIZE(struct np_ct_entry, 48);
NP_ASSERT_OFFSET(struct np_ct_entry, packets, 32);

/* Lifetimes, in seconds (Cilium's defaults). */
#define NP_CT_LIFETIME_TCP      8000
#define NP_CT_LIFETIME_TCP_SYN  60
#define NP_CT_LIFETIME_TCP_CLOSE 10
#define NP_CT_LIFETIME_NONTCP   60

#endif /* NP_CT_H */
