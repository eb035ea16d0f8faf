/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet/IPv4/TCP|UDP|ICMP parsing into a flat description the rest of the library works on.
 * Fragments of TCP/UDP datagrams are parsed too: the later ones get their ports from the first
 * (lib/frag.h). */
#ifndef NP_LIB_PARSE_H
#define NP_LIB_PARSE_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/frag.h"
#include "np_drop.h"

enum np_frag_kind {
	NP_FRAG_NONE = 0,  /* a whole datagram */
	NP_FRAG_FIRST = 1, /* first fragment: L4 header present, its checksum covers the datagram */
	NP_FRAG_LATER = 2, /* later fragment: no L4 header; ports from np_frag4_v1 */
};

struct np_pkt {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;  /* TCP_FLAG_* of this packet, 0 for UDP */
	__u8 ttl;
	__u8 frag;       /* enum np_frag_kind */
	__u16 l3_off;    /* offset of the IPv4 header */
	__u16 l4_off;    /* offset of the TCP/UDP/ICMP header (later fragments: of their data) */
	__u16 csum_off;  /* offset of the L4 checksum (later fragments: none, 0) */
	__u16 tot_len;   /* IPv4 total length */
};

enum np_parse_result {
	NP_PARSE_OK = 0,   /* IPv4 TCP or UDP (headers present, or a fragment whose ports are known),
			    * or an unfragmented ICMP message (header present, ports 0) */
	NP_PARSE_PASS = 1, /* not ours to look at (not IPv4, other L4, a fragment of ICMP) */
};

static __always_inline bool np_pkt_has_l4(const struct np_pkt *p)
{
	return p->frag != NP_FRAG_LATER;
}

/* Returns NP_PARSE_OK, NP_PARSE_PASS, or a negative enum np_drop_reason: a later fragment whose
 * datagram's first fragment was not seen is -NP_DROP_FRAG_NOT_FOUND. */
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
	p->frag = NP_FRAG_NONE;
	p->sport = 0;
	p->dport = 0;
	l4_off = ETH_HLEN + ip->ihl * 4;
	p->l4_off = l4_off;
	p->csum_off = 0;
	if (p->proto == IPPROTO_ICMP) {
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return NP_PARSE_PASS; /* ICMP errors are never fragmented */
		if (np_ctx_pull(ctx, l4_off + 8) < 0)
			return NP_PARSE_PASS; /* not even an ICMP header: nothing we would translate */
		p->csum_off = l4_off + 2;
		return NP_PARSE_OK;
	}
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return NP_PARSE_PASS;
	if (ip->frag_off & bpf_htons(IP_OFFSET)) {
		p->frag = NP_FRAG_LATER;
		if (!np_frag_ports(ip, &p->sport, &p->dport))
			return -NP_DROP_FRAG_NOT_FOUND;
		return NP_PARSE_OK;
	}
	if (ip->frag_off & bpf_htons(IP_MF))
		p->frag = NP_FRAG_FIRST;

	l4_len = p->proto == IPPROTO_TCP ? sizeof(struct tcphdr) : sizeof(struct udphdr);
	if (np_ctx_pull(ctx, l4_off + l4_len) < 0)
		return -NP_DROP_TRUNCATED_HEADER;

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
	if (p->frag == NP_FRAG_FIRST) {
		/* The pull above may have moved the packet: ip is stale. */
		ip = np_ctx_data(ctx) + ETH_HLEN;
		if ((void *)(ip + 1) > np_ctx_data_end(ctx))
			return -NP_DROP_TRUNCATED_HEADER;
		np_frag_record(ip, p->sport, p->dport);
	}
	return NP_PARSE_OK;
}

#endif /* NP_LIB_PARSE_H */
