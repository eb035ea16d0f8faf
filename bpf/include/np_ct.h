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
	NP_CT_LXC = 2,     /* tc ingress on a pod's lxc device: service flows a pod starts */
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
	/* BPF masquerade (lib/masq.h), both entries of a pod's flow to outside the native-routing
	 * CIDR: pod -> remote (egress, source rewritten to the node and a masquerade port) and
	 * remote -> node:port (ingress, destination rewritten back to the pod). ICMP echo flows use
	 * the identifier as the port: requests as the source port, replies as the destination. */
	NP_CT_F_MASQ      = 1 << 9,
	/* Both entries of a service flow a pod started, translated per packet by lxc.bpf.c: the
	 * service entry is keyed NP_CT_LXC, its reply entry (backend -> pod) NP_CT_INGRESS, looked up
	 * wherever the reply arrives (a local pod's lxc, the native device, the pod's lxc egress). */
	NP_CT_F_LXC       = 1 << 10,
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
	/* Flow events (lib/trace.h): kept here so aggregation costs no lookup of its own. Zero in an
	 * entry written before they existed: that flow is reported once more, nothing else. */
	__u8 trace_flags;  /* TCP flags already reported in this direction */
	__u16 trace_time;  /* when it was last reported: CLOCK_MONOTONIC_COARSE >> 30 (~1.07 s), low
			    * 16 bits; 0 never */
	__u64 packets;     /* packets translated by this entry */
	__u64 bytes;       /* bytes translated by this entry */
};
NP_ASSERT_SIZE(struct np_ct_entry, 48);
NP_ASSERT_OFFSET(struct np_ct_entry, packets, 32);
NP_ASSERT_OFFSET(struct np_ct_entry, trace_time, 30);

/* How the two entries of a flow find each other: pure functions of the ABI, shared by the
 * datapath (lib/ct.h) and the agent's GC (agent/ct/), so both pair entries the same way. */
#ifdef __cplusplus
#define NP_CT_PURE static inline
#else
#define NP_CT_PURE static inline __attribute__((always_inline))
#endif

/* The entry of a flow's client direction, whose reply entry np_ct_peer_key() names: a service
 * entry, or the client -> backend entry DSR's backend node records. */
NP_CT_PURE int np_ct_client_entry(const struct np_ct_entry *e)
{
	return (e->flags & NP_CT_F_SERVICE) ||
	       (e->flags & (NP_CT_F_DSR_BACKEND | NP_CT_F_REPLY)) == NP_CT_F_DSR_BACKEND ||
	       (e->flags & (NP_CT_F_MASQ | NP_CT_F_REPLY)) == NP_CT_F_MASQ;
}

/* The key of the other direction of the flow that entry e (found under key) belongs to: a
 * service entry's reply entry, or a reply entry's service entry. */
NP_CT_PURE void np_ct_peer_key(struct np_ct_key *pk, const struct np_ct_key *key,
			       const struct np_ct_entry *e)
{
	__builtin_memset(pk, 0, sizeof(*pk));
	pk->proto = key->proto;
	if ((e->flags & (NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND)) ==
	    (NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND)) {
		/* backend node of a DSR flow: the client sends to the backend itself */
		pk->saddr = key->daddr;
		pk->sport = key->dport;
		pk->daddr = key->saddr;
		pk->dport = key->sport;
		pk->dir = NP_CT_INGRESS;
		return;
	}
	if ((e->flags & (NP_CT_F_REPLY | NP_CT_F_MASQ)) == (NP_CT_F_REPLY | NP_CT_F_MASQ)) {
		/* masquerade: the pod -> remote entry, as egress saw it */
		pk->saddr = e->nat_daddr;
		pk->sport = e->nat_dport;
		pk->daddr = key->saddr;
		pk->dport = key->sport;
		pk->dir = NP_CT_EGRESS;
		return;
	}
	if (e->flags & NP_CT_F_REPLY) {
		/* client -> frontend, as ingress saw it */
		pk->saddr = e->nat_daddr ? e->nat_daddr : key->daddr;
		pk->sport = e->nat_dport ? e->nat_dport : key->dport;
		pk->daddr = e->nat_saddr;
		pk->dport = e->nat_sport;
		pk->dir = (e->flags & NP_CT_F_LXC) ? NP_CT_LXC : NP_CT_INGRESS;
		return;
	}
	/* backend -> client (egress), or backend -> node SNAT port (ingress); a flow without DNAT
	 * (DSR's backend node) is answered by the address it was sent to */
	pk->saddr = e->nat_daddr ? e->nat_daddr : key->daddr;
	pk->sport = e->nat_dport ? e->nat_dport : key->dport;
	if (e->flags & NP_CT_F_SNAT) {
		pk->daddr = e->nat_saddr;
		pk->dport = e->nat_sport;
		pk->dir = NP_CT_INGRESS;
	} else {
		pk->daddr = key->saddr;
		pk->dport = key->sport;
		pk->dir = (e->flags & NP_CT_F_LXC) ? NP_CT_INGRESS : NP_CT_EGRESS;
	}
}

/* True if rev (found under pk, the peer key of service entry e found under key) is e's own reply
 * entry: it translates back to e's client and frontend. A reply key can outlive its flow and be
 * reused by another one (a SNAT port reclaimed after its flow expired). */
NP_CT_PURE int np_ct_reply_of(const struct np_ct_key *key, const struct np_ct_entry *e,
			      const struct np_ct_key *pk, const struct np_ct_entry *rev)
{
	/* DSR's backend node: the two keys mirror each other, no other flow has that reply key */
	if (e->flags & NP_CT_F_DSR_BACKEND)
		return (rev->flags & (NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND)) ==
		       (NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND);
	/* masquerade: the reply entry translates back to the pod's address and port */
	if (e->flags & NP_CT_F_MASQ)
		return (rev->flags & (NP_CT_F_REPLY | NP_CT_F_MASQ)) == (NP_CT_F_REPLY | NP_CT_F_MASQ) &&
		       rev->nat_daddr == key->saddr && rev->nat_dport == key->sport;
	return (rev->flags & NP_CT_F_REPLY) && rev->backend_id == e->backend_id &&
	       rev->nat_saddr == key->daddr && rev->nat_sport == key->dport &&
	       (rev->nat_daddr ? rev->nat_daddr : pk->daddr) == key->saddr &&
	       (rev->nat_dport ? rev->nat_dport : pk->dport) == key->sport;
}

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
