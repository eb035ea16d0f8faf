/* SPDX-License-Identifier: Apache-2.0 */
/* The context shim for tc (struct __sk_buff). Library code uses only these np_ctx_* names so an
 * XDP shim with the same names can compile the same logic for the XDP hook. */
#ifndef NP_LIB_CTX_SKB_H
#define NP_LIB_CTX_SKB_H

#include "lib/common.h"

typedef struct __sk_buff np_ctx_t;

#define NP_CTX_PASS TC_ACT_OK
#define NP_CTX_DROP TC_ACT_SHOT

static __always_inline __u32 np_ctx_len(const np_ctx_t *ctx)
{
	return ctx->len;
}

/* skb->data and data_end are read with an explicit 32-bit context load: written in C, clang may
 * add a zero-extension (<<32 >>32) the verifier refuses on a packet pointer. */
#define NP_CTX_LOAD_PTR(ctx, field)                                              \
	({                                                                       \
		void *ptr_;                                                      \
		asm volatile("%[res] = *(u32 *)(%[base] + %[off])"               \
			     : [res] "=r"(ptr_)                                  \
			     : [base] "r"(ctx),                                  \
			       [off] "i"(__builtin_offsetof(struct __sk_buff, field))); \
		ptr_;                                                            \
	})

static __always_inline void *np_ctx_data(const np_ctx_t *ctx)
{
	return NP_CTX_LOAD_PTR(ctx, data);
}

static __always_inline void *np_ctx_data_end(const np_ctx_t *ctx)
{
	return NP_CTX_LOAD_PTR(ctx, data_end);
}

/* Makes the first len bytes directly accessible. Fails when the packet is shorter. */
static __always_inline int np_ctx_pull(np_ctx_t *ctx, __u32 len)
{
	if (np_ctx_data(ctx) + len <= np_ctx_data_end(ctx))
		return 0;
	if (ctx->len < len)
		return -1;
	return bpf_skb_pull_data(ctx, len);
}

static __always_inline int np_ctx_store(np_ctx_t *ctx, __u32 off, const void *from, __u32 len)
{
	return bpf_skb_store_bytes(ctx, off, from, len, 0);
}

static __always_inline int np_ctx_load(const np_ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len);
}

/* Checksum fix-ups go through the kernel helpers: they know about CHECKSUM_PARTIAL skbs (veth and
 * locally generated traffic), where only the pseudo-header part may be adjusted. */
static __always_inline int np_ctx_l3_csum_replace(np_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
						  __u32 size)
{
	return bpf_l3_csum_replace(ctx, off, from, to, size);
}

static __always_inline int np_ctx_l4_csum_replace(np_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
						  __u32 flags)
{
	return bpf_l4_csum_replace(ctx, off, from, to, flags);
}

static __always_inline __u32 np_ctx_ifindex(const np_ctx_t *ctx)
{
	return ctx->ifindex;
}

#endif /* NP_LIB_CTX_SKB_H */
