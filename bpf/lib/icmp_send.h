/* SPDX-License-Identifier: Apache-2.0 */
/* ICMP errors this node sends itself, in place of a packet it cannot forward: the packet becomes
 * the error and goes back out of the device it came in on, to the MAC it came from. Works on every
 * hook through the context shim (tc and XDP build the same bytes). Self-contained on purpose:
 * lib/icmp.h (the reverse translation of ICMP errors about translated flows) is another concern. */
#ifndef NP_LIB_ICMP_SEND_H
#define NP_LIB_ICMP_SEND_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/ctx.h"
#include "lib/parse.h"

/* The error quotes this many bytes of the offending datagram, from its IPv4 header on: the header
 * and 64 bytes of data for a header without options, as Cilium quotes; always the 8 bytes of L4
 * header (ports, TCP sequence) RFC 792 asks for, even behind 40 bytes of options. */
#define NP_ICMP_QUOTE_LEN 84

/* linux/icmp.h pulls in libc's socket headers, which a BPF build does not have. */
#define NP_ICMP_DEST_UNREACH 3
#define NP_ICMP_FRAG_NEEDED  4

/* The ICMP header of a destination unreachable (RFC 792, next-hop MTU from RFC 1191). */
struct np_icmp_unreach {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu;     /* next-hop MTU (code 4) */
};

/* The new headers in front of the quote. */
struct np_icmp_err_hdr {
	struct iphdr ip;
	struct np_icmp_unreach icmp;
};

#define NP_ICMP_ERR_LEN (ETH_HLEN + sizeof(struct np_icmp_err_hdr) + NP_ICMP_QUOTE_LEN)

/* Rewrites p's packet (as it arrived: nothing translated yet) into an ICMP destination
 * unreachable, fragmentation needed (type 3, code 4) with next-hop MTU `mtu`, from the address the
 * packet was sent to (the frontend: what the sender's stack matches the error against) to its
 * source: Ethernet addresses swapped, a new IPv4 header (TTL 64, DF, TOS 0xc0 as Linux sends its
 * errors) and the first NP_ICMP_QUOTE_LEN bytes of the datagram. Returns 0 or < 0 (the packet is
 * then in no useful state: drop it). The caller redirects it out of np_ctx_ifindex(ctx).
 *
 * tc: an skb that came from a local sender over a veth may still be CHECKSUM_PARTIAL for its old
 * L4 header; nothing on a veth path completes it, and there is no helper to clear that state. */
static __always_inline int np_icmp_send_frag_needed(np_ctx_t *ctx, const struct np_pkt *p,
						    __u16 mtu)
{
	struct np_icmp_err_hdr h;
	__u8 macs[2 * ETH_ALEN], tmp[ETH_ALEN];
	__u8 *data, *data_end;
	__s64 sum;

	if (p->l3_off != ETH_HLEN || p->tot_len < NP_ICMP_QUOTE_LEN)
		return -1;
	if (np_ctx_load(ctx, 0, macs, sizeof(macs)) < 0)
		return -1;
	__builtin_memcpy(tmp, macs, ETH_ALEN);
	__builtin_memcpy(macs, macs + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(macs + ETH_ALEN, tmp, ETH_ALEN);

	__builtin_memset(&h, 0, sizeof(h));
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tos = 0xc0;
	h.ip.tot_len = bpf_htons(sizeof(h) + NP_ICMP_QUOTE_LEN);
	h.ip.frag_off = bpf_htons(0x4000); /* DF */
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_ICMP;
	h.ip.saddr = p->daddr;
	h.ip.daddr = p->saddr;
	h.ip.check = np_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));
	h.icmp.type = NP_ICMP_DEST_UNREACH;
	h.icmp.code = NP_ICMP_FRAG_NEEDED;
	h.icmp.mtu = bpf_htons(mtu);

	/* Ethernet + the quote, then room for the new headers between them. */
	if (np_ctx_set_len(ctx, ETH_HLEN + NP_ICMP_QUOTE_LEN) < 0 ||
	    np_ctx_grow_l2(ctx, sizeof(h)) < 0 || np_ctx_pull(ctx, NP_ICMP_ERR_LEN) < 0)
		return -1;
	data = np_ctx_data(ctx);
	data_end = np_ctx_data_end(ctx);
	if (data + NP_ICMP_ERR_LEN > data_end)
		return -1;
	/* The ICMP checksum covers its header and the quote. */
	sum = bpf_csum_diff(NULL, 0, (__be32 *)(data + ETH_HLEN + sizeof(h)), NP_ICMP_QUOTE_LEN, 0);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.icmp, sizeof(h.icmp), (__u32)sum);
	if (sum < 0)
		return -1;
	h.icmp.checksum = np_csum_fold((__u32)sum);

	if (np_ctx_store(ctx, 0, macs, sizeof(macs)) < 0 ||
	    np_ctx_store(ctx, ETH_HLEN, &h, sizeof(h)) < 0)
		return -1;
	return 0;
}

#endif /* NP_LIB_ICMP_SEND_H */
