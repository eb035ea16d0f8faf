/* SPDX-License-Identifier: Apache-2.0 */
/* The context shim for XDP (struct xdp_md): the API of lib/ctx_skb.h over an XDP buffer. An XDP
 * entry file includes this header first (lib/ctx.h says why). Programs are loaded without
 * BPF_F_XDP_HAS_FRAGS, so the whole packet is linear: data..data_end is all of it, and bytes are
 * read and written in place. XDP has no checksum helpers; the fix-ups are done by hand with the
 * kernel's own arithmetic (lib/csum.h), so the result is the bytes tc's helpers would produce. */
#ifndef NP_LIB_CTX_XDP_H
#define NP_LIB_CTX_XDP_H

#ifdef NP_LIB_CTX_SKB_H
#error "lib/ctx_skb.h and lib/ctx_xdp.h in one unit: an XDP entry includes lib/ctx_xdp.h first"
#endif

#include "lib/common.h"
#include "lib/csum.h"

typedef struct xdp_md np_ctx_t;

#define NP_CTX_PASS     XDP_PASS
#define NP_CTX_DROP     XDP_DROP
#define NP_CTX_REDIRECT XDP_REDIRECT
/* Not an XDP verdict: the XDP entry turns it into XDP_PASS without the "done" marker
 * (lib/xfer.h), so tc runs the whole path on the untouched packet. */
#define NP_CTX_DEFER    0x100
#define NP_CTX_HAS_NEIGH 0

/* Offsets into the packet are bounded so the verifier can check direct accesses at them; the
 * headers the library touches are all within the first few hundred bytes. */
#define NP_CTX_XDP_MAX_OFF 0x3fff

/* xdp_md->data and data_end are 32-bit context fields: read them with an explicit 32-bit load
 * (see lib/ctx_skb.h for why). */
#define NP_CTX_XDP_LOAD_PTR(ctx, field)                                          \
	({                                                                       \
		void *ptr_;                                                      \
		asm volatile("%[res] = *(u32 *)(%[base] + %[off])"               \
			     : [res] "=r"(ptr_)                                  \
			     : [base] "r"(ctx),                                  \
			       [off] "i"(__builtin_offsetof(struct xdp_md, field))); \
		ptr_;                                                            \
	})

static __always_inline void *np_ctx_data(const np_ctx_t *ctx)
{
	return NP_CTX_XDP_LOAD_PTR(ctx, data);
}

static __always_inline void *np_ctx_data_end(const np_ctx_t *ctx)
{
	return NP_CTX_XDP_LOAD_PTR(ctx, data_end);
}

static __always_inline __u32 np_ctx_len(const np_ctx_t *ctx)
{
	return np_ctx_data_end(ctx) - np_ctx_data(ctx);
}

/* Nothing to pull in a linear buffer: only checks the length. */
static __always_inline int np_ctx_pull(np_ctx_t *ctx, __u32 len)
{
	return np_ctx_data(ctx) + len <= np_ctx_data_end(ctx) ? 0 : -1;
}

/* Pointer to len bytes at off, or NULL when the packet is shorter. */
static __always_inline void *np_ctx_xdp_ptr(const np_ctx_t *ctx, __u32 off, __u32 len)
{
	void *p;

	if (off > NP_CTX_XDP_MAX_OFF)
		return NULL;
	p = np_ctx_data(ctx) + off;
	if (p + len > np_ctx_data_end(ctx))
		return NULL;
	return p;
}

static __always_inline int np_ctx_store(np_ctx_t *ctx, __u32 off, const void *from, __u32 len)
{
	void *p = np_ctx_xdp_ptr(ctx, off, len);

	if (!p)
		return -1;
	__builtin_memcpy(p, from, len);
	return 0;
}

static __always_inline int np_ctx_load(const np_ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	void *p = np_ctx_xdp_ptr(ctx, off, len);

	if (!p)
		return -1;
	__builtin_memcpy(to, p, len);
	return 0;
}

/* bpf_l3_csum_replace(): size 2 or 4 (0, a precomputed diff, is not used by the library). */
static __always_inline int np_ctx_l3_csum_replace(np_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
						  __u32 size)
{
	__u16 *check = np_ctx_xdp_ptr(ctx, off, sizeof(*check));

	if (!check)
		return -1;
	if (size == 2)
		*check = np_csum_replace2(*check, (__u16)from, (__u16)to);
	else if (size == 4)
		*check = np_csum_replace4(*check, from, to);
	else
		return -1;
	return 0;
}

/* bpf_l4_csum_replace() of a packet whose checksum is complete (there is no CHECKSUM_PARTIAL in
 * XDP): BPF_F_PSEUDO_HDR changes nothing then; BPF_F_MARK_MANGLED_0 leaves a zero (UDP without
 * checksum) alone and writes a computed zero as 0xffff. */
static __always_inline int np_ctx_l4_csum_replace(np_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
						  __u32 flags)
{
	__u16 *check = np_ctx_xdp_ptr(ctx, off, sizeof(*check));
	bool mangled_0 = flags & BPF_F_MARK_MANGLED_0;
	__u32 size = flags & BPF_F_HDR_FIELD_MASK;

	if (!check)
		return -1;
	if (size != 2 && size != 4)
		return -1;
	if (mangled_0 && !*check)
		return 0;
	*check = np_csum_replace4(*check, from, to);
	if (mangled_0 && !*check)
		*check = 0xffff;
	return 0;
}

static __always_inline __u32 np_ctx_ifindex(const np_ctx_t *ctx)
{
	return ctx->ingress_ifindex;
}

/* A native XDP buffer is one frame off the wire (no GRO before XDP). */
static __always_inline __u32 np_ctx_gso_size(const np_ctx_t *ctx)
{
	return 0;
}

static __always_inline int np_ctx_fib_lookup(np_ctx_t *ctx, struct bpf_fib_lookup *fib)
{
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

/* Out of the device it came in on: XDP_TX, which needs no redirect map or target device lookup;
 * any other device: XDP_REDIRECT. */
static __always_inline int np_ctx_redirect(np_ctx_t *ctx, __u32 ifindex)
{
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

/* XDP cannot resolve a neighbour: the caller decides what to do with the packet. */
static __always_inline int np_ctx_redirect_neigh(np_ctx_t *ctx, __u32 ifindex, __be32 nh)
{
	return -1;
}

/* Inserts len zero bytes after the first `keep` bytes: the head moves len bytes down
 * (bpf_xdp_adjust_head) and the first keep bytes are copied to the new front. keep and len are
 * constants after inlining; the copy goes up in 16-bit steps, which is a correct move for a
 * destination below its source. */
static __always_inline int np_ctx_xdp_insert(np_ctx_t *ctx, __u32 keep, __u32 len)
{
	__u8 *data, *data_end;
	__u32 i;

	if (bpf_xdp_adjust_head(ctx, -(int)len))
		return -1;
	data = np_ctx_data(ctx);
	data_end = np_ctx_data_end(ctx);
	if (data + len + keep > data_end)
		return -1;
#pragma unroll
	for (i = 0; i + 1 < keep; i += 2)
		*(__u16 *)(data + i) = *(__u16 *)(data + len + i);
	if (keep & 1)
		data[keep - 1] = data[len + keep - 1];
#pragma unroll
	for (i = 0; i < len; i++)
		data[keep + i] = 0;
	return 0;
}

static __always_inline int np_ctx_grow_l3(np_ctx_t *ctx, __u32 len)
{
	return np_ctx_xdp_insert(ctx, ETH_HLEN + sizeof(struct iphdr), len);
}

static __always_inline int np_ctx_grow_l2(np_ctx_t *ctx, __u32 len)
{
	return np_ctx_xdp_insert(ctx, ETH_HLEN, len);
}

static __always_inline int np_ctx_set_len(np_ctx_t *ctx, __u32 len)
{
	return bpf_xdp_adjust_tail(ctx, (int)len - (int)np_ctx_len(ctx));
}

#endif /* NP_LIB_CTX_XDP_H */
