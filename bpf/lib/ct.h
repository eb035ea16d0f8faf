/* SPDX-License-Identifier: Apache-2.0 */
/* Conntrack: lookups by the tuple a hook sees, lifetime and TCP state upkeep, and the two tables:
 * new flows live in the embryonic table until their client proves real, then move to the main
 * table (np_ct.h says why). Calls that touch a table take the map itself (a constant after
 * inlining) and its enum np_ct_table for the counters. */
#ifndef NP_LIB_CT_H
#define NP_LIB_CT_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "np_ct.h"

#define NP_EEXIST 17

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

static __always_inline __u64 np_ct_lifetime(__u8 proto, __u16 flags, bool embryonic)
{
	if (proto != IPPROTO_TCP)
		return (embryonic ? NP_CT_LIFETIME_NONTCP_EMBRYONIC : NP_CT_LIFETIME_NONTCP) *
		       NP_NSEC_PER_SEC;
	if (flags & NP_CT_F_CLOSING)
		return NP_CT_LIFETIME_TCP_CLOSE * NP_NSEC_PER_SEC;
	if (embryonic)
		return NP_CT_LIFETIME_TCP_EMBRYONIC * NP_NSEC_PER_SEC;
	if (flags & NP_CT_F_SEEN_NON_SYN)
		return NP_CT_LIFETIME_TCP * NP_NSEC_PER_SEC;
	return NP_CT_LIFETIME_TCP_SYN * NP_NSEC_PER_SEC;
}

/* Flags an entry gets from the packet that created or refreshed it. A later fragment carries no
 * TCP flags: it says nothing about the connection's state. */
static __always_inline __u16 np_ct_flags_for(const struct np_pkt *p, __u16 flags)
{
	if (p->proto == IPPROTO_TCP && np_pkt_has_l4(p)) {
		if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
			flags |= NP_CT_F_CLOSING;
		if (!(p->tcp_flags & TCP_FLAG_SYN))
			flags |= NP_CT_F_SEEN_NON_SYN;
	}
	if (flags & NP_CT_F_REPLY)
		flags |= NP_CT_F_REPLY_SEEN;
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
 * between CPUs); the lifetime is refreshed at one-second granularity. Returns the expiry the
 * other direction must now have at least (the new one, or the unchanged one when the other
 * direction must learn that a reply was seen), else 0. */
static __always_inline __u64 np_ct_refresh(struct np_ct_entry *e, const struct np_pkt *p, __u64 now,
					   __u32 bytes, bool embryonic)
{
	__u16 flags = np_ct_flags_for(p, e->flags);
	__u64 expires = now + np_ct_lifetime(p->proto, flags, embryonic);
	__u64 moved = 0;

	if (flags != e->flags) {
		if ((flags & NP_CT_F_REPLY_SEEN) && !(e->flags & NP_CT_F_REPLY_SEEN))
			moved = e->expires;
		e->flags = flags;
	}
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
	e->expires = now + np_ct_lifetime(p->proto, e->flags, true);
}

/* np_ct_peer_key() and np_ct_reply_of() pair a flow's two entries: np_ct.h (the agent uses them too). */

/* Counters of np_ctstat_v1 (NP_MAP_CT_STATS): plain per-CPU adds. */
static __always_inline struct np_ct_stat *np_ct_stat(__u32 table)
{
	return bpf_map_lookup_elem(&NP_MAP_CT_STATS, &table);
}

/* Inserts key -> val into a table. A key the table did not hold counts as created; an existing
 * entry (another flow's leftover) is replaced. Returns 0 or a negative errno. */
static __always_inline int np_ct_insert(void *map, __u32 table, const struct np_ct_key *key,
					const struct np_ct_entry *val)
{
	struct np_ct_stat *s;
	int rc = bpf_map_update_elem(map, key, val, BPF_NOEXIST);

	if (rc == 0) {
		s = np_ct_stat(table);
		if (s)
			s->created++;
		return 0;
	}
	if (rc != -NP_EEXIST)
		return rc;
	return bpf_map_update_elem(map, key, val, BPF_ANY);
}

static __always_inline void np_ct_delete(void *map, __u32 table, const struct np_ct_key *key)
{
	struct np_ct_stat *s;

	if (bpf_map_delete_elem(map, key) == 0) {
		s = np_ct_stat(table);
		if (s)
			s->deleted++;
	}
}

/* Removes a service entry that can no longer carry its flow (expired, closed and reopened, its
 * backend gone) together with its reply entry, before a new flow takes the tuple: nothing of the
 * old flow must shadow the new one, which starts in the embryonic table. */
static __always_inline void np_ct_forget(void *map, __u32 table, const struct np_ct_key *key,
					 const struct np_ct_entry *e)
{
	struct np_ct_key pk;
	struct np_ct_entry *rev;

	if (!np_ct_client_entry(e))
		return;
	np_ct_peer_key(&pk, key, e);
	rev = bpf_map_lookup_elem(map, &pk);
	if (rev && np_ct_reply_of(key, e, &pk, rev))
		np_ct_delete(map, table, &pk);
	np_ct_delete(map, table, key);
}

/* Both directions of a flow live and close together: traffic one way keeps the other entry alive
 * (UDP with one-sided traffic), a FIN or RST seen one way closes both (so the next SYN on the
 * tuple starts over, whichever side closed), and both learn that a reply was seen. Called when
 * np_ct_refresh() returned `expires`. */
static __always_inline void np_ct_sync_peer(void *map, const struct np_ct_key *key,
					    const struct np_ct_entry *e, __u64 expires)
{
	struct np_ct_key pk;
	struct np_ct_entry *peer;

	np_ct_peer_key(&pk, key, e);
	peer = bpf_map_lookup_elem(map, &pk);
	if (!peer)
		return;
	if ((e->flags & NP_CT_F_REPLY_SEEN) && !(peer->flags & NP_CT_F_REPLY_SEEN))
		peer->flags |= NP_CT_F_REPLY_SEEN;
	if (e->flags & NP_CT_F_CLOSING) {
		if (!(peer->flags & NP_CT_F_CLOSING))
			peer->flags |= NP_CT_F_CLOSING;
		if (peer->expires > expires)
			peer->expires = expires;
	} else if (peer->expires < expires && !(peer->flags & NP_CT_F_CLOSING)) {
		peer->expires = expires;
	}
}

/* An unconfirmed flow's client is real when it sends again after the reply direction was seen:
 * for TCP the ACK that completes the handshake (a spoofed source never sees the SYN-ACK, so it
 * has nothing to acknowledge); a flow that is closing stays where it is. Called with the service
 * entry after np_ct_refresh(). */
static __always_inline bool np_ct_confirms(const struct np_ct_entry *e, const struct np_pkt *p)
{
	bool tcp_ack = (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK)) == TCP_FLAG_ACK;

	if (e->flags & NP_CT_F_CLOSING)
		return false;
	/* The ingress node of a DSR flow never sees its replies: the client confirms by going on
	 * (TCP: the handshake's ACK; UDP: a second datagram). */
	if (e->flags & NP_CT_F_DSR)
		return p->proto == IPPROTO_TCP ? tcp_ack : e->packets > 1;
	if (!np_ct_client_entry(e) || !(e->flags & NP_CT_F_REPLY_SEEN))
		return false;
	return p->proto != IPPROTO_TCP || tcp_ack;
}

/* Moves a confirmed flow to the main table with the main table's lifetimes: the service entry e
 * (found under key in the embryonic table) first, then its reply entry, which leaves the
 * embryonic table at once. The caller deletes e from the embryonic table once it has used it.
 * Returns false (nothing moved) when the reply entry is gone or the main table refused. */
static __always_inline bool np_ct_promote(const struct np_ct_key *key, struct np_ct_entry *e,
					  __u64 now)
{
	struct np_ct_key pk;
	struct np_ct_entry *rev;
	struct np_ct_stat *s;
	__u64 expires = now + np_ct_lifetime(key->proto, e->flags, false);

	if (e->flags & NP_CT_F_DSR) {
		/* the ingress node of a DSR flow holds no reply entry */
		e->expires = expires;
		if (np_ct_insert(&NP_MAP_CT, NP_CT_TABLE_MAIN, key, e) < 0)
			return false;
		goto promoted;
	}
	np_ct_peer_key(&pk, key, e);
	rev = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, &pk);
	if (!rev || !np_ct_reply_of(key, e, &pk, rev))
		return false;
	e->expires = expires;
	if (np_ct_insert(&NP_MAP_CT, NP_CT_TABLE_MAIN, key, e) < 0)
		return false;
	if (!(rev->flags & NP_CT_F_CLOSING))
		rev->expires = expires;
	/* A main-table reply entry always has its service entry there: SNAT port allocation relies
	 * on it (np_snat_port_in_use). */
	if (np_ct_insert(&NP_MAP_CT, NP_CT_TABLE_MAIN, &pk, rev) < 0) {
		np_ct_delete(&NP_MAP_CT, NP_CT_TABLE_MAIN, key);
		return false;
	}
	np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &pk);
promoted:
	s = np_ct_stat(NP_CT_TABLE_EMBRYONIC);
	if (s)
		s->promoted++;
	return true;
}

#endif /* NP_LIB_CT_H */
