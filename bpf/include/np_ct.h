/* SPDX-License-Identifier: Apache-2.0 */
/* Connection tracking ABI. Two LRU maps of the same layout hold both directions of every
 * translated flow: a new flow starts in the small embryonic table (np_ctsyn4_v1) and moves to the
 * main table (np_ct4_v1) once its client proved to be real (it sent again after the reply
 * direction was seen: for TCP the handshake's ACK), so a flood of unconfirmed flows (spoofed SYNs)
 * only ever evicts other unconfirmed flows. Each entry is keyed by the tuple as the hook that
 * applies it sees the packet, and carries the complete rewrite for that direction, so a hit in the
 * main table is one lookup plus one rewrite. */
#ifndef NP_CT_H
#define NP_CT_H

#include "np_abi.h"

/* Which hook looks the entry up. */
enum np_ct_dir {
	NP_CT_INGRESS = 0, /* tc ingress / XDP on the native device */
	NP_CT_EGRESS = 1,  /* tc egress on the native device */
};

/* np_ct4_v1 (confirmed flows) and np_ctsyn4_v1 (unconfirmed flows): tc programs write and read;
 * the agent lists and garbage-collects. LRU_HASH. Tuple as seen by the hook (network order) ->
 * translation and state. */
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
	NP_CT_F_REPLY_SEEN = 1 << 6, /* the reply direction carried a packet (both entries say so) */
	/* Ingress node, service entry of a DSR flow (lib/dsr.h): DNAT only, the client address kept,
	 * the DSR option on every TCP SYN and UDP datagram. The flow has no reply entry here: the
	 * backend's node answers the client itself. */
	NP_CT_F_DSR       = 1 << 7,
	/* Backend node, both entries of a flow recorded from a DSR option: client -> backend
	 * (ingress, no rewrite) and backend -> client (egress, source rewritten to the frontend). */
	NP_CT_F_DSR_BACKEND = 1 << 8,
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

/* Lifetimes, in seconds. Main table: Cilium's defaults. */
#define NP_CT_LIFETIME_TCP      8000
#define NP_CT_LIFETIME_TCP_SYN  60
#define NP_CT_LIFETIME_TCP_CLOSE 10
#define NP_CT_LIFETIME_NONTCP   60
/* Embryonic table: short, because an unconfirmed flow may hold a SNAT port. A handshake that is
 * answered confirms within a round trip (retransmitted SYNs refresh the entry); UDP gets Linux's
 * unreplied timeout (nf_conntrack_udp_timeout). */
#define NP_CT_LIFETIME_TCP_EMBRYONIC    10
#define NP_CT_LIFETIME_NONTCP_EMBRYONIC 30

/* np_ctstat_v1: tc programs count, the agent's conntrack GC sums across CPUs. PERCPU_ARRAY.
 * enum np_ct_table (host order) -> what the datapath did to that table. The GC derives the LRU's
 * evictions from these, its own deletions and the live entries it counts. */
enum np_ct_table {
	NP_CT_TABLE_MAIN = 0,      /* np_ct4_v1 */
	NP_CT_TABLE_EMBRYONIC = 1, /* np_ctsyn4_v1 */
	NP_CT_TABLES = 2,
};

struct np_ct_stat {
	__u64 created;  /* entries inserted under a key the table did not hold */
	__u64 deleted;  /* entries the datapath deleted (promoted out, replaced by a new flow) */
	__u64 promoted; /* embryonic row: flows confirmed and moved to the main table */
};
NP_ASSERT_SIZE(struct np_ct_stat, 24);

#endif /* NP_CT_H */
