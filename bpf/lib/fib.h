/* SPDX-License-Identifier: Apache-2.0 */
/* Forwarding decisions through the kernel FIB: send a rewritten packet out without the stack. */
#ifndef NP_LIB_FIB_H
#define NP_LIB_FIB_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/parse.h"
#include "np_drop.h"

/* The length the route's MTU is checked with: the packet's, or for a GSO packet (what GRO on the
 * device makes of a burst of a flow's segments, or a pod's TSO send; longer than any MTU) one
 * segment's, as the kernel's forwarding checks it (ip_exceeds_mtu): its IPv4 header, the L4
 * header without TCP options (a lower bound by up to 40 bytes: reading the real one costs the dsr
 * + Maglev program more verifier states than it has) and the segment size. Given the whole length
 * the lookup would answer FRAG_NEEDED and the flow stall on its first large write. */
static __always_inline __u16 np_fib_check_len(np_ctx_t *ctx, const struct np_pkt *p)
{
	__u32 gso = np_ctx_gso_size(ctx);

	if (!gso)
		return p->tot_len;
	return (__u16)(p->l4_off - p->l3_off + gso +
		       (p->proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr)));
}

/* Fills fib for a lookup of p's addresses and ports, as if the packet arrived on the ctx device.
 * The caller may change the destination before np_ctx_fib_lookup(). */
static __always_inline void np_fib_init(np_ctx_t *ctx, const struct np_pkt *p,
					struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = p->proto;
	fib->sport = p->sport;
	fib->dport = p->dport;
	fib->tot_len = np_fib_check_len(ctx, p);
	fib->ipv4_src = p->saddr;
	fib->ipv4_dst = p->daddr;
	fib->ifindex = np_ctx_ifindex(ctx);
}

/* The routes of the last flows forwarded on this CPU, so that an established flow's packets do
 * not each pay a FIB and neighbour lookup (~35 % of an XDP NodePort packet to a remote backend,
 * profiled: bench/README.md). Direct-mapped by a hash of the lookup's inputs, which each slot keeps
 * and a hit compares whole; only successful lookups are kept, for NP_FIB_CACHE_NS: a route or
 * neighbour change reaches a flow's packets that much later at most, as a socket's cached route
 * would. A slot holds the length its route was checked with (np_fib_check_len(): the route's MTU),
 * so a longer packet is looked up; a lookup without a length (0) neither uses nor fills a slot.
 * Unpinned: one per loaded object, empty after every load. PERCPU_ARRAY: slot -> struct
 * np_fib_cached. */
#define NP_FIB_CACHE_SLOTS 256
#define NP_FIB_CACHE_NS (50ULL * 1000 * 1000)

struct np_fib_cached {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 ifindex_in;
	__u8 proto;
	__u8 pad;
	__u16 fits_len;    /* longest tot_len the route took */
	__u32 ifindex;     /* the result: out device and its MACs */
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
	__u64 stamp;       /* bpf_ktime_get_coarse_ns() of the lookup; 0 empty */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_fib_cached);
	__uint(max_entries, NP_FIB_CACHE_SLOTS);
} np_fibcache_v1 SEC(".maps");

static __always_inline bool np_fib_cached_is(const struct np_fib_cached *c,
					     const struct bpf_fib_lookup *fib)
{
	return c->daddr == fib->ipv4_dst && c->saddr == fib->ipv4_src && c->sport == fib->sport &&
	       c->dport == fib->dport && c->ifindex_in == fib->ifindex &&
	       c->proto == fib->l4_protocol;
}

/* np_ctx_fib_lookup() through the cache: on a hit fib gets the out device and MACs (all a
 * successful lookup's caller uses: np_fib_redirect_to()), nothing else: ipv4_dst stays the
 * destination (a lookup makes it the gateway), tot_len the length (not mtu_result). */
static __always_inline int np_fib_lookup_cached(np_ctx_t *ctx, struct bpf_fib_lookup *fib)
{
	__u32 slot = ((fib->ipv4_src ^ fib->ipv4_dst ^ ((__u32)fib->sport << 16 | fib->dport)) *
		      0x9e3779b1U) >> 24;
	__u16 len = fib->tot_len;
	struct np_fib_cached *c;
	__u64 now;
	int rc;

	if (!len)
		return np_ctx_fib_lookup(ctx, fib);
	c = bpf_map_lookup_elem(&np_fibcache_v1, &slot);
	if (!c)
		return np_ctx_fib_lookup(ctx, fib);
	now = bpf_ktime_get_coarse_ns();
	if (np_fib_cached_is(c, fib) && len <= c->fits_len && now - c->stamp < NP_FIB_CACHE_NS) {
		fib->ifindex = c->ifindex;
		__builtin_memcpy(fib->smac, c->smac, ETH_ALEN);
		__builtin_memcpy(fib->dmac, c->dmac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	c->stamp = 0;  /* the slot is never a new key with an old result */
	c->saddr = fib->ipv4_src;
	c->daddr = fib->ipv4_dst;
	c->sport = fib->sport;
	c->dport = fib->dport;
	c->ifindex_in = fib->ifindex;
	c->proto = fib->l4_protocol;
	rc = np_ctx_fib_lookup(ctx, fib);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		c->stamp = 0;
		return rc;
	}
	c->fits_len = len;
	c->ifindex = fib->ifindex;
	__builtin_memcpy(c->smac, fib->smac, ETH_ALEN);
	__builtin_memcpy(c->dmac, fib->dmac, ETH_ALEN);
	c->stamp = now;
	return rc;
}

/* Looks up the route for p's (rewritten) addresses, through the cache. Returns the
 * bpf_fib_lookup() result; fib is filled for the caller (on a cached success: its out device and
 * MACs). */
static __always_inline int np_fib_lookup(np_ctx_t *ctx, const struct np_pkt *p,
					 struct bpf_fib_lookup *fib)
{
	np_fib_init(ctx, p, fib);
	return np_fib_lookup_cached(ctx, fib);
}

/* Sends the packet out by a successful lookup's result: its device, with its MACs. Returns a
 * verdict or a negative drop reason. */
static __always_inline int np_fib_redirect_to(np_ctx_t *ctx, const struct bpf_fib_lookup *fib)
{
	if (np_ctx_store(ctx, 0, fib->dmac, ETH_ALEN) < 0 ||
	    np_ctx_store(ctx, ETH_ALEN, fib->smac, ETH_ALEN) < 0)
		return -NP_DROP_WRITE_ERROR;
	return np_ctx_redirect(ctx, fib->ifindex);
}

/* Sends the packet out of the device the FIB chose: with the neighbour's MAC when the kernel
 * knows it, else through the hook's neighbour resolution (tc: bpf_redirect_neigh(); XDP has none:
 * a FIB failure, which is why XDP looks the route up before it rewrites, lib/nodeport.h).
 * Returns a verdict or a negative drop reason. The lookup lives on the
 * stack: this runs for every redirected packet of an established flow, where one stack slot is
 * cheaper than a scratch lookup, and the deepest path (a new flow) has room for it. */
static __always_inline int np_fib_redirect(np_ctx_t *ctx, const struct np_pkt *p)
{
	struct bpf_fib_lookup fib;
	int rc = np_fib_lookup(ctx, p, &fib);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS)
		return np_fib_redirect_to(ctx, &fib);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		rc = np_ctx_redirect_neigh(ctx, fib.ifindex, fib.ipv4_dst);
		if (rc >= 0)
			return rc;
	}
	return -NP_DROP_FIB_LOOKUP_FAILED;
}

#endif /* NP_LIB_FIB_H */
