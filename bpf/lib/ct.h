/* SPDX-License-Identifier: Apache-2.0 */
/* Conntrack: lookups by the tuple a hook sees, lifetime and TCP state upkeep. */
#ifndef NP_LIB_CT_H
#define NP_LIB_CT_H

#include "lib/parse.h"
#include "lib/maps.h"
#include "np_ct.h"

static __always_inline void np_ct_key_from_pkt(struct np_ct_key *k, const struct np_pkt *p,
					       __u8 dir)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->dir = dir;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* Conntrack time: CLOCK_MONOTONIC in ns at tick resolution. The coarse clock is a memory read;
 * the precise one reads the TSC, which is slow in VMs, on every packet. */
static __always_inline __u64 np_ct_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

static __always_inline bool np_ct_expired(const struct np_ct_entry *e, __u64 now)
{
	return e->expires < now;
}

static __always_inline __u64 np_ct_lifetime(__u8 proto, __u16 flags)
{
	if (proto != IPPROTO_TCP)
		return NP_CT_LIFETIME_NONTCP * NP_NSEC_PER_SEC;
	if (flags & NP_CT_F_CLOSING)
		return NP_CT_LIFETIME_TCP_CLOSE * NP_NSEC_PER_SEC;
	if (flags & NP_CT_F_SEEN_NON_SYN)
		return NP_CT_LIFETIME_TCP * NP_NSEC_PER_SEC;
	return NP_CT_LIFETIME_TCP_SYN * NP_NSEC_PER_SEC;
}

/* Flags an entry gets from the packet that created or refreshed it. */
static __always_inline __u16 np_ct_flags_for(const struct np_pkt *p, __u16 flags)
{
	if (p->proto == IPPROTO_TCP) {
		if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			flags |= NP_CT_F_CLOSING;
		if (!(p->tcp_flags & TCP_FLAG_SYN))
			flags |= NP_CT_F_SEEN_NON_SYN;
	}
	return flags;
}

/* A TCP SYN (without ACK) on an entry whose connection is closing starts a new connection. */
static __always_inline bool np_ct_reopens(const struct np_ct_entry *e, const struct np_pkt *p)
{
	return p->proto == IPPROTO_TCP &&
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
	       (e->flags & NP_CT_F_CLOSING);
}

/* Keeps an entry alive for the packet that hit it. Writes only what changed (entries are shared
 * between CPUs); the lifetime is refreshed at one-second granularity. Returns the new expiry when
 * it moved, else 0. */
static __always_inline __u64 np_ct_refresh(struct np_ct_entry *e, const struct np_pkt *p, __u64 now,
					   __u32 bytes)
{
	__u16 flags = np_ct_flags_for(p, e->flags);
	__u64 expires = now + np_ct_lifetime(p->proto, flags);
	__u64 moved = 0;

	if (flags != e->flags)
		e->flags = flags;
	if ((e->tcp_flags | p->tcp_flags) != e->tcp_flags)
		e->tcp_flags |= p->tcp_flags;
	if (expires > e->expires + NP_NSEC_PER_SEC || (flags & NP_CT_F_CLOSING)) {
		e->expires = expires;
		moved = expires;
	}
	/* Plain adds: these counters are for people reading `bpf ct list`; a locked add on a line
	 * every CPU of the flow writes would cost more than the rest of the refresh. */
	e->packets++;
	e->bytes += bytes;
	return moved;
}

static __always_inline void np_ct_init(struct np_ct_entry *e, const struct np_pkt *p, __u64 now,
				       __u16 flags)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->flags = np_ct_flags_for(p, flags);
	e->tcp_flags = p->tcp_flags;
	e->expires = now + np_ct_lifetime(p->proto, e->flags);
}

/* The key of the other direction of the flow that entry e (found under key) belongs to: a
 * service entry's reply entry, or a reply entry's service entry. */
static __always_inline void np_ct_peer_key(struct np_ct_key *pk, const struct np_ct_key *key,
					   const struct np_ct_entry *e)
{
	__builtin_memset(pk, 0, sizeof(*pk));
	pk->proto = key->proto;
	if (e->flags & NP_CT_F_REPLY) {
		/* client -> frontend, as ingress saw it */
		pk->saddr = e->nat_daddr ? e->nat_daddr : key->daddr;
		pk->sport = e->nat_dport ? e->nat_dport : key->dport;
		pk->daddr = e->nat_saddr;
		pk->dport = e->nat_sport;
		pk->dir = NP_CT_INGRESS;
		return;
	}
	/* backend -> client (egress), or backend -> node SNAT port (ingress) */
	pk->saddr = e->nat_daddr;
	pk->sport = e->nat_dport;
	if (e->flags & NP_CT_F_SNAT) {
		pk->daddr = e->nat_saddr;
		pk->dport = e->nat_sport;
		pk->dir = NP_CT_INGRESS;
	} else {
		pk->daddr = key->saddr;
		pk->dport = key->sport;
		pk->dir = NP_CT_EGRESS;
	}
}

/* Both directions of a flow live and close together: traffic one way keeps the other entry alive
 * (UDP with one-sided traffic), and a FIN or RST seen one way closes both (so the next SYN on the
 * tuple starts over, whichever side closed). Called when e's lifetime moved to `expires`. */
static __always_inline void np_ct_sync_peer(const struct np_ct_key *key, const struct np_ct_entry *e,
					    __u64 expires)
{
	struct np_ct_key pk;
	struct np_ct_entry *peer;

	np_ct_peer_key(&pk, key, e);
	peer = bpf_map_lookup_elem(&np_ct4_v1, &pk);
	if (!peer)
		return;
	if (e->flags & NP_CT_F_CLOSING) {
		if (!(peer->flags & NP_CT_F_CLOSING))
			peer->flags |= NP_CT_F_CLOSING;
		if (peer->expires > expires)
			peer->expires = expires;
	} else if (peer->expires < expires && !(peer->flags & NP_CT_F_CLOSING)) {
		peer->expires = expires;
	}
}

#endif /* NP_LIB_CT_H */
