/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet/IPv4/TCP|UDP parsing into a flat description the rest of the library works on. */
#ifndef NP_LIB_PARSE_H
#define NP_LIB_PARSE_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "np_drop.h"

struct np_pkt {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;  /* TCP_FLAG_* of this packet, 0 for UDP */
	__u8 ttl;
	__u8 frag;       /* 1: first fragment of a fragmented datagram */
	__u16 l3_off;    /* offset of the IPv4 header */
	__u16 l4_off;    /* offset of the TCP/UDP header */
	__u16 csum_off;  /* offset of the L4 checksum */
	__u16 tot_len;   /* IPv4 total length */
};

enum np_parse_result {
	NP_PARSE_OK = 0,   /* IPv4 TCP or UDP, headers present: translate it if it matches */
	NP_PARSE_PASS = 1, /* not ours to look at (not IPv4, other L4, later fragment) */
};

/* Returns NP_PARSE_OK, NP_PARSE_PASS, or a negative enum np_drop_reason. */
static __always_inline int np_parse(np_ctx_t *ctx, struct np_pkt *p)
{
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 l4_off, l4_len;

	if (np_ctx_pull(ctx, ETH_HLEN + sizeof(struct iphdr)) < 0) {
		eth = np_ctx_data(ctx);
		if ((void *)(eth + 1) > np_ctx_data_end(ctx) || eth->h_proto != bpf_htons(ETH_P_IP))
			return NP_PARSE_PASS;
		return -NP_DROP_TRUNCATED_HEADER;
	}
	eth = np_ctx_data(ctx);
	if ((void *)(eth + 1) > np_ctx_data_end(ctx))
		return NP_PARSE_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return NP_PARSE_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > np_ctx_data_end(ctx))
		return -NP_DROP_TRUNCATED_HEADER;
	if (ip->version != 4 || ip->ihl < 5)
		return -NP_DROP_INVALID_PACKET;

	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->tot_len = bpf_ntohs(ip->tot_len);
	p->l3_off = ETH_HLEN;
	p->tcp_flags = 0;
	p->frag = 0;
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return NP_PARSE_PASS;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return NP_PARSE_PASS; /* no L4 header here; fragments are not translated */
	if (ip->frag_off & bpf_htons(IP_MF))
		p->frag = 1;

	l4_off = ETH_HLEN + ip->ihl * 4;
	l4_len = p->proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);
	if (np_ctx_pull(ctx, l4_off + l4_len) < 0)
		return -NP_DROP_TRUNCATED_HEADER;
	p->l4_off = l4_off;

	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *tcp = np_ctx_data(ctx) + l4_off;

		if ((void *)(tcp + 1) > np_ctx_data_end(ctx))
			return -NP_DROP_TRUNCATED_HEADER;
		p->sport = tcp->source;
		p->dport = tcp->dest;
		/* byte 13 of the TCP header holds CWR..FIN */
		p->tcp_flags = ((__u8 *)tcp)[13];
		p->csum_off = l4_off + __builtin_offsetof(struct tcphdr, check);
	} else {
		struct udphdr *udp = np_ctx_data(ctx) + l4_off;

		if ((void *)(udp + 1) > np_ctx_data_end(ctx))
			return -NP_DROP_TRUNCATED_HEADER;
		p->sport = udp->source;
		p->dport = udp->dest;
		p->csum_off = l4_off + __builtin_offsetof(struct udphdr, check);
	}
	return NP_PARSE_OK;
}

#endif /* NP_LIB_PARSE_H */
