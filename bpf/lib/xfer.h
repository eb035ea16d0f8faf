/* SPDX-License-Identifier: Apache-2.0 */
/* The XDP -> tc hand-off: a packet XDP passed on after running the NodePort path (translated for
 * a local backend, or looked up and found not to be ours) carries a marker in the XDP metadata
 * area (bpf_xdp_adjust_meta), which tc reads from skb->data_meta and then leaves the packet alone,
 * as Cilium's XFER_PKT_NO_SVC. Metadata and not skb->mark: XDP has no skb to mark, the metadata
 * lives only until tc ingress of the device (nothing leaks into the stack's routing, iptables or
 * a forwarded packet, where marks are other people's), and the stack hands it over without cost.
 * Packets XDP did not handle (not IPv4 TCP/UDP, or deferred with NP_CTX_DEFER) carry no marker:
 * tc runs the whole path on them. */
#ifndef NP_LIB_XFER_H
#define NP_LIB_XFER_H

#include "lib/common.h"
#include "lib/ctx.h"

/* The high half says the word is ours (metadata of another program never matches by chance with
 * a whole word compared); the low half holds NP_XFER_F_* flags. */
#define NP_XFER_MAGIC      0x4e500000U
#define NP_XFER_MAGIC_MASK 0xffff0000U
#define NP_XFER_F_NODEPORT_DONE 0x1U /* the NodePort path ran in XDP: nothing left for tc to do */

#ifdef NP_LIB_CTX_XDP_H
/* Whether this kernel lets XDP write the metadata area: the loader probes for the helper (some
 * kernels are built without bpf_xdp_adjust_meta for XDP, and a program that calls it does not
 * load there) and clears this when it is missing. Without the hand-off XDP passes to tc only
 * packets it left untouched (xdp.bpf.c: np_xdp_hand_off()), so tc's lookups give what they would
 * have given without XDP. Read-only data, so the verifier prunes what it guards; the helper's
 * calls themselves the loader rewrites out (agent/datapath/programs.cpp: the verifier checks
 * every helper call, reachable or not). */
const volatile __u8 np_xfer_meta = 1;

static __always_inline bool np_xdp_hand_off(void)
{
	return np_xfer_meta != 0;
}

/* Marks the packet for tc. Call last: it moves data_meta, which invalidates packet pointers.
 * Returns 0, or < 0 when the driver has no metadata room or the kernel no helper (tc then redoes
 * the lookups, with the same result). */
static __always_inline int np_xfer_set(np_ctx_t *ctx, __u32 flags)
{
	__u32 *meta;

	if (!np_xdp_hand_off())
		return -1;
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*meta)) < 0)
		return -1;
	meta = NP_CTX_XDP_LOAD_PTR(ctx, data_meta);
	if ((void *)(meta + 1) > np_ctx_data(ctx))
		return -1;
	*meta = NP_XFER_MAGIC | flags;
	return 0;
}
#else
/* The NP_XFER_F_* flags XDP left on the packet, 0 for none. */
static __always_inline __u32 np_xfer_get(const np_ctx_t *ctx)
{
	__u32 *meta = NP_CTX_LOAD_PTR(ctx, struct __sk_buff, data_meta);
	__u32 word;

	if ((void *)(meta + 1) > np_ctx_data(ctx))
		return 0;
	word = *meta;
	if ((word & NP_XFER_MAGIC_MASK) != NP_XFER_MAGIC)
		return 0;
	return word & ~NP_XFER_MAGIC_MASK;
}
#endif

#endif /* NP_LIB_XFER_H */
