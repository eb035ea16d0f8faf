/* SPDX-License-Identifier: Apache-2.0 */
/* Address/port rewriting with checksum fix-ups, and SNAT source-port allocation. */
#ifndef NP_LIB_NAT_H
#define NP_LIB_NAT_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/ct.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "np_ct.h"
#include "np_drop.h"

#define NP_SNAT_RETRIES 32

static __always_inline __u32 np_l4_csum_flags(const struct np_pkt *p)
{
	/* A UDP checksum of 0 means "none": leave it so, and never produce 0 from a real sum. */
	return p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* The L4 checksum covers the pseudo-header: it changes with the address, except in a later
 * fragment, which has no L4 header (the first fragment's checksum covers the whole datagram and
 * is fixed there). */
static __always_inline int np_rewrite_addr(np_ctx_t *ctx, struct np_pkt *p, __u32 off,
					   __be32 from, __be32 to)
{
	if (np_pkt_has_l4(p) &&
	    np_ctx_l4_csum_replace(ctx, p->csum_off, from, to,
				   np_l4_csum_flags(p) | BPF_F_PSEUDO_HDR | sizeof(to)) < 0)
		return -NP_DROP_CSUM_L4;
	if (np_ctx_l3_csum_replace(ctx, p->l3_off + __builtin_offsetof(struct iphdr, check), from,
				   to, sizeof(to)) < 0)
		return -NP_DROP_CSUM_L3;
	if (np_ctx_store(ctx, off, &to, sizeof(to)) < 0)
		return -NP_DROP_WRITE_ERROR;
	return 0;
}

static __always_inline int np_rewrite_port(np_ctx_t *ctx, struct np_pkt *p, __u32 off,
					   __be16 from, __be16 to)
{
	if (np_ctx_l4_csum_replace(ctx, p->csum_off, from, to, np_l4_csum_flags(p) | sizeof(to)) < 0)
		return -NP_DROP_CSUM_L4;
	if (np_ctx_store(ctx, off, &to, sizeof(to)) < 0)
		return -NP_DROP_WRITE_ERROR;
	return 0;
}

/* Applies the translation of a conntrack entry to the packet and to p: addresses always, ports
 * where there is an L4 header (not in a later fragment; p keeps the datagram's tuple either way).
 * Returns 0 or a negative drop reason. */
static __always_inline int np_nat_apply(np_ctx_t *ctx, struct np_pkt *p,
					const struct np_ct_entry *e)
{
	int ret;

	if (e->nat_saddr && e->nat_saddr != p->saddr) {
		ret = np_rewrite_addr(ctx, p, p->l3_off + __builtin_offsetof(struct iphdr, saddr),
				      p->saddr, e->nat_saddr);
		if (ret < 0)
			return ret;
		p->saddr = e->nat_saddr;
	}
	if (e->nat_daddr && e->nat_daddr != p->daddr) {
		ret = np_rewrite_addr(ctx, p, p->l3_off + __builtin_offsetof(struct iphdr, daddr),
				      p->daddr, e->nat_daddr);
		if (ret < 0)
			return ret;
		p->daddr = e->nat_daddr;
	}
	if (!np_pkt_has_l4(p)) {
		if (e->nat_sport)
			p->sport = e->nat_sport;
		if (e->nat_dport)
			p->dport = e->nat_dport;
		return 0;
	}
	/* TCP and UDP both keep source and destination ports in the first four bytes. */
	if (e->nat_sport && e->nat_sport != p->sport) {
		ret = np_rewrite_port(ctx, p, p->l4_off, p->sport, e->nat_sport);
		if (ret < 0)
			return ret;
		p->sport = e->nat_sport;
	}
	if (e->nat_dport && e->nat_dport != p->dport) {
		ret = np_rewrite_port(ctx, p, p->l4_off + 2, p->dport, e->nat_dport);
		if (ret < 0)
			return ret;
		p->dport = e->nat_dport;
	}
	return 0;
}

/* Decrements the TTL of a packet this node forwards itself (redirect bypasses the stack). */
static __always_inline int np_ttl_dec(np_ctx_t *ctx, struct np_pkt *p)
{
	__u32 off = p->l3_off + __builtin_offsetof(struct iphdr, ttl);
	/* TTL and protocol form one 16-bit word of the header checksum. */
	__be16 old_word = bpf_htons(((__u16)p->ttl << 8) | p->proto);
	__be16 new_word;

	if (p->ttl <= 1)
		return -NP_DROP_TTL_EXCEEDED;
	p->ttl--;
	new_word = bpf_htons(((__u16)p->ttl << 8) | p->proto);
	if (np_ctx_l3_csum_replace(ctx, p->l3_off + __builtin_offsetof(struct iphdr, check),
				   old_word, new_word, sizeof(new_word)) < 0)
		return -NP_DROP_CSUM_L3;
	if (np_ctx_store(ctx, off, &p->ttl, 1) < 0)
		return -NP_DROP_WRITE_ERROR;
	return 0;
}

/* True if a local socket already owns the 4-tuple a reply to port `port` would carry: the node's
 * own connections must keep their replies. */
static __always_inline bool np_snat_port_taken_by_host(np_ctx_t *ctx, const struct np_ct_key *rev)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.saddr = rev->saddr;
	t.ipv4.daddr = rev->daddr;
	t.ipv4.sport = rev->sport;
	t.ipv4.dport = rev->dport;
	if (rev->proto == IPPROTO_TCP)
		sk = bpf_skc_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

/* A reply entry `old` (found under rev_key in `map`) holds its key only while the service entry
 * of its flow is alive in the same table and still leaves from that address and port (its SNAT
 * ones, or its own when it has none: a pod's per-packet service flow): reclaiming it then would
 * hand the flow's replies to someone else. Anything else under a reply key is a leftover: an
 * expired flow, or an orphan whose service entry the LRU evicted (the LRU evicts the two entries
 * of a flow independently) or a new flow on the same tuple replaced. Both entries of a flow live
 * in the same table. */
static __always_inline bool np_snat_port_in_use(void *map, const struct np_ct_key *rev_key,
						const struct np_ct_entry *old, __u64 now)
{
	struct np_ct_key fk;
	struct np_ct_entry *fwd;

	if (!(old->flags & NP_CT_F_REPLY))
		return true; /* not a reply entry: never ours to reclaim */
	np_ct_peer_key(&fk, rev_key, old);
	fwd = bpf_map_lookup_elem(map, &fk);
	return fwd && !np_ct_expired(fwd, now) &&
	       (fwd->nat_sport ? fwd->nat_sport : fk.sport) == rev_key->dport &&
	       (fwd->nat_saddr ? fwd->nat_saddr : fk.saddr) == rev_key->daddr;
}

/* True if no live flow holds the reply key rev_key in this table. A leftover there is deleted,
 * so the port comes back as soon as a new flow asks for it. Looks up before anything is
 * inserted: a BPF_NOEXIST insert into an LRU that fails still takes (and may evict) a node. */
static __always_inline bool np_snat_port_free_in(void *map, __u32 table,
						 const struct np_ct_key *rev_key, __u64 now)
{
	struct np_ct_entry *old = bpf_map_lookup_elem(map, rev_key);

	if (!old)
		return true;
	if (np_snat_port_in_use(map, rev_key, old, now))
		return false;
	np_ct_delete(map, table, rev_key);
	return true;
}

/* One SNAT port candidate: free in both tables and towards the node's own sockets (TCP/UDP; an
 * ICMP echo identifier of masquerade has no socket to ask), then taken by
 * inserting the new flow's reply entry into the embryonic table. */
static __always_inline bool np_snat_take(np_ctx_t *ctx, struct np_ct_key *rev_key,
					 const struct np_ct_entry *rev, __u64 now)
{
	struct np_ct_stat *s;

	if (!np_snat_port_free_in(&NP_MAP_CT, NP_CT_TABLE_MAIN, rev_key, now) ||
	    !np_snat_port_free_in(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, rev_key, now) ||
	    (rev_key->proto != IPPROTO_ICMP && np_snat_port_taken_by_host(ctx, rev_key)))
		return false;
	/* Fails only when another CPU took the port since the lookup. */
	if (bpf_map_update_elem(&NP_MAP_CT_EMBRYONIC, rev_key, rev, BPF_NOEXIST))
		return false;
	s = np_ct_stat(NP_CT_TABLE_EMBRYONIC);
	if (s)
		s->created++;
	return true;
}

/* State of one np_snat_alloc() run, on its stack, for the bpf_loop() callback. */
struct np_snat_search {
	np_ctx_t *ctx;
	struct np_ct_key *rev_key;
	const struct np_ct_entry *rev;
	__u64 now;
	__u32 range;
	__u16 min;
	__u16 max;
	__u16 port;   /* the candidate of this try (host order) */
	__u16 found;  /* the port taken, 0 while none */
};

/* One try of np_snat_alloc(): the candidate, and a random next one. Returns 1 (stop) once a port
 * is taken. Every retry is random, none sequential: probing the ports after a taken one (as
 * Cilium does after its first retry) makes runs of taken ports that grow with every flow that
 * lands in one, until some exceed the retries; under churn the drops grew round after round
 * (bench/README.md, SNAT churn). A bpf_loop() callback: the verifier checks it once instead of
 * once per try, which keeps the new-flow path far below its instruction limit whatever
 * NP_SNAT_RETRIES is. */
static long np_snat_try(__u32 i, void *data)
{
	struct np_snat_search *t = data;
	__u16 port = t->port;

	t->rev_key->dport = bpf_htons(port);
	if (np_snat_take(t->ctx, t->rev_key, t->rev, t->now)) {
		t->found = port;
		return 1;
	}
	t->port = t->min + bpf_get_prandom_u32() % t->range;
	return 0;
}

/* Inserts the reply entry `rev` of a new flow under `rev_key` into the embryonic table, with a
 * destination port from [min, max] that no socket of the node and no live flow in either table
 * holds (leftovers of dead flows are reclaimed on the way): keeps `start` when it is in range and
 * free, else tries random ports, NP_SNAT_RETRIES candidates in all.
 * Returns the port (host order) or 0. */
static __always_inline __u16 np_snat_alloc(np_ctx_t *ctx, struct np_ct_key *rev_key,
					   const struct np_ct_entry *rev, __u16 start, __u16 min,
					   __u16 max, __u64 now)
{
	struct np_snat_search t = {
		.ctx = ctx,
		.rev_key = rev_key,
		.rev = rev,
		.now = now,
		.range = (__u32)max - min + 1,
		.min = min,
		.max = max,
		.port = start,
	};

	if (t.port < min || t.port > max)
		t.port = min + bpf_get_prandom_u32() % t.range;
	bpf_loop(NP_SNAT_RETRIES, np_snat_try, &t, 0);
	return t.found;
}

#endif /* NP_LIB_NAT_H */
