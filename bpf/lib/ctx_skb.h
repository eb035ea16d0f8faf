/* SPDX-License-Identifier: Apache-2.0 */
/* The context shim for tc (struct __sk_buff), and the definition of the shim API. Library code
 * uses only these names (through lib/ctx.h), and lib/ctx_xdp.h implements the same ones for XDP:
 *   np_ctx_t                         the program's context type
 *   NP_CTX_PASS / _DROP / _REDIRECT  verdicts
 *   np_ctx_len(ctx)                  packet length in bytes
 *   np_ctx_data/_data_end(ctx)       direct packet access
 *   np_ctx_pull(ctx, len)            make the first len bytes directly accessible (0 or < 0)
 *   np_ctx_load/_store(ctx, off, buf, len)                    copy bytes out of / into the packet
 *   np_ctx_l3_csum_replace(ctx, off, from, to, size)          bpf_l3_csum_replace() semantics
 *   np_ctx_l4_csum_replace(ctx, off, from, to, flags)         bpf_l4_csum_replace() semantics
 *   np_ctx_ifindex(ctx)              the device the packet arrived on (tc egress: leaves by)
 *   np_ctx_fib_lookup(ctx, fib)      bpf_fib_lookup() for this hook
 *   np_ctx_gso_size(ctx)             a GSO packet's segment payload size (it is longer than the MTU
 *                                    and leaves in segments of that size); 0 for any other packet
 *   np_ctx_redirect(ctx, ifindex)    verdict that sends the packet out of ifindex as it is
 *   np_ctx_redirect_neigh(ctx, ifindex, nh)  the same with the kernel resolving next hop nh's MAC;
 *                                    < 0 where the hook cannot (XDP)
 *   NP_CTX_HAS_NEIGH                 1 if np_ctx_redirect_neigh() works on this hook
 *   NP_CTX_DEFER                     verdict that hands the packet on untouched to the next hook that
 *                                    runs the same path (XDP -> tc), which then does the work the
 *                                    hook cannot (tc: the stack; nothing after it translates)
 *   np_ctx_grow_l3(ctx, len)         insert len zero bytes right after the fixed 20-byte IPv4
 *                                    header (room for an IP option); what follows moves back
 *   np_ctx_grow_l2(ctx, len)         insert len zero bytes right after the Ethernet header (room
 *                                    for a new outer IPv4 header)
 *   np_ctx_set_len(ctx, len)         cut the packet to len bytes (len <= np_ctx_len(ctx))
 * The three that resize the packet invalidate every packet pointer (re-read np_ctx_data()).
 * Everything returning int returns 0 (or a verdict) on success and < 0 on failure. */
#ifndef NP_LIB_CTX_SKB_H
#define NP_LIB_CTX_SKB_H

#ifdef NP_LIB_CTX_XDP_H
#error "lib/ctx_skb.h and lib/ctx_xdp.h in one unit: an XDP entry includes lib/ctx_xdp.h first"
#endif

#include "lib/common.h"
#include "lib/csum.h"

typedef struct __sk_buff np_ctx_t;

#define NP_CTX_PASS     TC_ACT_OK
#define NP_CTX_DROP     TC_ACT_SHOT
#define NP_CTX_REDIRECT TC_ACT_REDIRECT
#define NP_CTX_DEFER    TC_ACT_OK
#define NP_CTX_HAS_NEIGH 1

static __always_inline __u32 np_ctx_len(const np_ctx_t *ctx)
{
	return ctx->len;
}

/* skb->data and data_end are read with an explicit 32-bit context load: written in C, clang may
 * add a zero-extension (<<32 >>32) the verifier refuses on a packet pointer. */
#define NP_CTX_LOAD_PTR(ctx, type, field)                                        \
	({                                                                       \
		void *ptr_;                                                      \
		asm volatile("%[res] = *(u32 *)(%[base] + %[off])"               \
			     : [res] "=r"(ptr_)                                  \
			     : [base] "r"(ctx),                                  \
			       [off] "i"(__builtin_offsetof(type, field)));      \
		ptr_;                                                            \
	})

static __always_inline void *np_ctx_data(const np_ctx_t *ctx)
{
	return NP_CTX_LOAD_PTR(ctx, struct __sk_buff, data);
}

static __always_inline void *np_ctx_data_end(const np_ctx_t *ctx)
{
	return NP_CTX_LOAD_PTR(ctx, struct __sk_buff, data_end);
}

/* Fails when the packet is shorter than len. */
static __always_inline int np_ctx_pull(np_ctx_t *ctx, __u32 len)
{
	if (np_ctx_data(ctx) + len <= np_ctx_data_end(ctx))
		return 0;
	if (ctx->len < len)
		return -1;
	return bpf_skb_pull_data(ctx, len);
}

/* Offsets into the packet are bounded so the verifier can check direct accesses at them (as in
 * lib/ctx_xdp.h); the headers the library rewrites are all within the first few hundred bytes. */
#define NP_CTX_SKB_MAX_OFF 0x3fff

/* Pointer to len bytes at off when they are in the linear part of the skb (np_parse() pulled
 * the headers there), else NULL. Writing through it is what bpf_skb_store_bytes() does without
 * flags, less the helper call: the verifier's tc prologue makes a cloned skb writable once per
 * run of a program that writes directly, and neither touches skb->csum. */
static __always_inline void *np_ctx_skb_ptr(const np_ctx_t *ctx, __u32 off, __u32 len)
{
	void *p;

	if (off > NP_CTX_SKB_MAX_OFF)
		return NULL;
	/* The bound on the register that is added to the pointer: clang may otherwise check a copy
	 * of off, and the verifier then refuses the access (an offset that may exceed 0xffff). */
	asm volatile("%[off] &= %[max]" : [off] "+r"(off) : [max] "i"(NP_CTX_SKB_MAX_OFF));
	p = np_ctx_data(ctx) + off;
	if (p + len > np_ctx_data_end(ctx))
		return NULL;
	return p;
}

/* Direct where the bytes are linear (every header rewrite after np_parse()), the helper
 * otherwise. */
static __always_inline int np_ctx_store(np_ctx_t *ctx, __u32 off, const void *from, __u32 len)
{
	void *p = np_ctx_skb_ptr(ctx, off, len);

	if (p) {
		__builtin_memcpy(p, from, len);
		return 0;
	}
	return bpf_skb_store_bytes(ctx, off, from, len, 0);
}

static __always_inline int np_ctx_load(const np_ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len);
}

/* The IPv4 header checksum is a plain field: bpf_l3_csum_replace() only rewrites it
 * (csum_replace2/4, skb->csum untouched: the header's sum stays the same), so it is done in place
 * with the same arithmetic (lib/csum.h: the same bytes, which of the two zeros included) where the
 * field is linear, by the helper otherwise. */
static __always_inline int np_ctx_l3_csum_replace(np_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
						  __u32 size)
{
	__u16 *check = np_ctx_skb_ptr(ctx, off, sizeof(*check));

	if (check && size == 2) {
		*check = np_csum_replace2(*check, (__u16)from, (__u16)to);
		return 0;
	}
	if (check && size == 4) {
		*check = np_csum_replace4(*check, from, to);
		return 0;
	}
	return bpf_l3_csum_replace(ctx, off, from, to, size);
}

/* The L4 checksum fix-ups go through the kernel helper: it knows about CHECKSUM_PARTIAL skbs
 * (veth and locally generated traffic), where only the pseudo-header part may be adjusted, and
 * keeps skb->csum of a CHECKSUM_COMPLETE skb right; a program cannot see which an skb is. */

static __always_inline int np_ctx_l4_csum_replace(np_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
						  __u32 flags)
{
	return bpf_l4_csum_replace(ctx, off, from, to, flags);
}

static __always_inline __u32 np_ctx_ifindex(const np_ctx_t *ctx)
{
	return ctx->ifindex;
}

static __always_inline __u32 np_ctx_gso_size(const np_ctx_t *ctx)
{
	return ctx->gso_size;
}

static __always_inline int np_ctx_fib_lookup(np_ctx_t *ctx, struct bpf_fib_lookup *fib)
{
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

static __always_inline int np_ctx_redirect(np_ctx_t *ctx, __u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

static __always_inline int np_ctx_redirect_neigh(np_ctx_t *ctx, __u32 ifindex, __be32 nh)
{
	struct bpf_redir_neigh p = {
		.nh_family = AF_INET,
		.ipv4_nh = nh,
	};

	return bpf_redirect_neigh(ifindex, &p, sizeof(p), 0);
}

/* BPF_ADJ_ROOM_NET inserts after the fixed IPv4 header (the kernel's bpf_skb_net_base_len()),
 * before any options the packet has; the checksum state of the skb stays right for the L4 header,
 * which does not move in memory. */
static __always_inline int np_ctx_grow_l3(np_ctx_t *ctx, __u32 len)
{
	return bpf_skb_adjust_room(ctx, len, BPF_ADJ_ROOM_NET, 0);
}

static __always_inline int np_ctx_grow_l2(np_ctx_t *ctx, __u32 len)
{
	return bpf_skb_adjust_room(ctx, len, BPF_ADJ_ROOM_MAC, 0);
}

static __always_inline int np_ctx_set_len(np_ctx_t *ctx, __u32 len)
{
	return bpf_skb_change_tail(ctx, len, 0);
}

#endif /* NP_LIB_CTX_SKB_H */
