/* SPDX-License-Identifier: Apache-2.0 */
/* Forwarding decisions through the kernel FIB: send a rewritten packet out without the stack. */
#ifndef NP_LIB_FIB_H
#define NP_LIB_FIB_H

#include "lib/parse.h"

/* Looks up the route for p's (rewritten) addresses, as if the packet arrived on the ctx device.
 * Returns the bpf_fib_lookup() result; fib is filled for the caller. */
static __always_inline int np_fib_lookup(np_ctx_t *ctx, const struct np_pkt *p,
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
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* Sends the packet out of the device the FIB chose: with the neighbour's MAC when the kernel
 * knows it, else through bpf_redirect_neigh() which resolves it. Returns a verdict or a negative
 * drop reason. */
static __always_inline int np_fib_redirect(np_ctx_t *ctx, const struct np_pkt *p)
{
	struct bpf_fib_lookup fib;
	int rc = np_fib_lookup(ctx, p, &fib);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (np_ctx_store(ctx, 0, fib.dmac, ETH_ALEN) < 0 ||
		    np_ctx_store(ctx, ETH_ALEN, fib.smac, ETH_ALEN) < 0)
			return -NP_DROP_WRITE_ERROR;
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {
			.nh_family = AF_INET,
			.ipv4_nh = fib.ipv4_dst,
		};

		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	return -NP_DROP_FIB_LOOKUP_FAILED;
}

#endif /* NP_LIB_FIB_H */
