/* SPDX-License-Identifier: Apache-2.0 */
/* Internet checksum arithmetic for hooks without the kernel's checksum helpers (XDP has no
 * bpf_l3_csum_replace/bpf_l4_csum_replace), and for tc's in-place IPv4 header fix-ups
 * (lib/ctx_skb.h). Each function does exactly what the helper's kernel
 * code does (include/net/checksum.h: csum_replace2, csum_replace4, csum_fold, csum_add), including
 * which of the two one's-complement zeros comes out, so a packet rewritten through the XDP shim is
 * byte-identical to the same rewrite on an skb. Values are used as they sit in memory (network
 * order): the one's-complement sum does not care, as long as every word is read the same way. */
#ifndef NP_LIB_CSUM_H
#define NP_LIB_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* 32-bit one's-complement add (the kernel's csum_add). */
static __always_inline __u32 np_csum_add(__u32 a, __u32 b)
{
	a += b;
	return a + (a < b);
}

static __always_inline __u32 np_csum_sub(__u32 a, __u32 b)
{
	return np_csum_add(a, ~b);
}

/* Folds a 32-bit sum into the complemented 16-bit checksum (csum_fold). */
static __always_inline __u16 np_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The checksum after a 32-bit word of the summed data changed from `from` to `to`
 * (csum_replace4; also inet_proto_csum_replace2/4 of a full checksum, 16-bit values zero-extended). */
static __always_inline __u16 np_csum_replace4(__u16 check, __u32 from, __u32 to)
{
	return np_csum_fold(np_csum_add(np_csum_sub(~(__u32)check, from), to));
}

/* 16-bit one's-complement add (csum16_add). */
static __always_inline __u16 np_csum16_add(__u16 a, __u16 b)
{
	__u16 s = a + b;

	return s + (s < b);
}

/* The checksum after a 16-bit word changed (csum_replace2, what bpf_l3_csum_replace does for a
 * 2-byte field). */
static __always_inline __u16 np_csum_replace2(__u16 check, __u16 from, __u16 to)
{
	return (__u16)~np_csum16_add(np_csum16_add((__u16)~check, (__u16)~from), to);
}

#endif /* NP_LIB_CSUM_H */
