/* SPDX-License-Identifier: Apache-2.0 */
/* Forwarding decisions through the kernel FIB: send a rewritten packet out without the stack. */
#ifndef NP_LIB_FIB_H
#define NP_LIB_FIB_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/parse.h"
#include "np_drop.h"

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
	fib->tot_len = p->tot_len;
	fib->ipv4_src = p->saddr;
	fib->ipv4_dst = p->daddr;
	fib->ifindex = np_ctx_ifindex(ctx);
}

/* Looks up the route for p's (rewritten) addresses. Returns the bpf_fib_lookup() result; fib is
 * filled for the caller. */
static __always_inline int np_fib_lookup(np_ctx_t *ctx, const struct np_pkt *p,
					 struct bpf_fib_lookup *fib)
{
	np_fib_init(ctx, p, fib);
	return np_ctx_fib_lookup(ctx, fib);
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
