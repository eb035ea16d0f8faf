/* SPDX-License-Identifier: Apache-2.0 */
/* ICMPv4 errors about translated flows. An error (destination unreachable, fragmentation needed
 * among them, or time exceeded) quotes the IPv4 header and at least the first 8 bytes of the
 * packet it is about; the one who sent that packet only accepts it (path-MTU discovery, a port
 * unreachable ending a UDP exchange) when the quote is its own packet as it sent it. So an error
 * about a packet this node translated is translated back: the quoted header and ports, the outer
 * destination (and the outer source when the error comes from the quoted packet's destination
 * itself; a router on the path keeps its address), with every checksum that covers them: outer
 * IPv4, ICMP, quoted IPv4, and the quoted TCP/UDP checksum when it is in the quote (the receiver
 * does not check it, but the quote is then byte for byte the packet that was sent; UDP without a
 * checksum keeps 0). Cilium does the same in snat_v4_rev_nat_handle_icmp_error().
 *
 * The quoted checksums are computed here (lib/csum.h) and the bytes written back, so tc and XDP
 * make the same bytes; every change inside the ICMP message is balanced by the ICMP checksum, so
 * an skb's CHECKSUM_COMPLETE sum stays valid. */
#ifndef NP_LIB_ICMP_H
#define NP_LIB_ICMP_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/ctx.h"
#include "lib/parse.h"
#include "np_ct.h"
#include "np_drop.h"

/* linux/icmp.h pulls in libc headers a BPF build cannot have: the few constants needed. */
#ifndef NP_ICMP_DEST_UNREACH
#define NP_ICMP_DEST_UNREACH 3   /* codes 0..15, 4: fragmentation needed (lib/icmp_send.h too) */
#endif
#define NP_ICMP_TIME_EXCEEDED 11 /* codes 0 (TTL), 1 (reassembly) */

struct np_icmphdr {
	__u8 type;
	__u8 code;
	__be16 check;
	__be32 rest; /* unused / next-hop MTU / ... */
};

/* An ICMP error and the packet it quotes. Addresses and ports in network order. */
struct np_icmp_err {
	struct iphdr ip;     /* the quoted IPv4 header, fixed part */
	__be16 sport;        /* the quoted L4 ports */
	__be16 dport;
	__be16 l4_check;     /* the quoted TCP/UDP checksum, when has_check */
	__u8 has_check;
	__u8 pad;
	__u32 ip_off;        /* offset of the quoted IPv4 header */
	__u32 l4_off;        /* offset of the quoted L4 header */
};

/* Whether p (parsed as ICMP) is an error about a TCP or UDP packet whose header and ports are in
 * the quote; fills q. Anything else (echo, other types, a quote too short to name a flow, a
 * quoted later fragment) is not ours to translate. */
static __always_inline bool np_icmp_error_parse(np_ctx_t *ctx, const struct np_pkt *p,
						struct np_icmp_err *q)
{
	struct np_icmphdr icmp;
	__u32 end = p->l3_off + p->tot_len;
	__u8 ihl;

	if (end > np_ctx_len(ctx))
		end = np_ctx_len(ctx);
	if (np_ctx_load(ctx, p->l4_off, &icmp, sizeof(icmp)) < 0)
		return false;
	if (icmp.type != NP_ICMP_DEST_UNREACH && icmp.type != NP_ICMP_TIME_EXCEEDED)
		return false;
	q->ip_off = p->l4_off + sizeof(struct np_icmphdr);
	if (np_ctx_load(ctx, q->ip_off, &q->ip, sizeof(q->ip)) < 0)
		return false;
	ihl = q->ip.ihl;
	/* The error goes to whoever sent the quoted packet. */
	if (q->ip.saddr != p->daddr || q->ip.version != 4 || ihl < 5 ||
	    (q->ip.protocol != IPPROTO_TCP && q->ip.protocol != IPPROTO_UDP) ||
	    (q->ip.frag_off & bpf_htons(IP_OFFSET)))
		return false;
	q->l4_off = q->ip_off + ihl * 4;
	if (q->l4_off + 8 > end || np_ctx_load(ctx, q->l4_off, &q->sport, 4) < 0)
		return false;
	q->has_check = 0;
	q->pad = 0;
	if (q->ip.protocol == IPPROTO_UDP) {
		if (np_ctx_load(ctx, q->l4_off + 6, &q->l4_check, 2) < 0)
			return false;
		q->has_check = q->l4_check != 0; /* 0: the datagram had no checksum */
	} else if (q->l4_off + 18 <= end &&
		   np_ctx_load(ctx, q->l4_off + 16, &q->l4_check, 2) == 0) {
		q->has_check = 1;
	}
	return true;
}

/* The conntrack key whose entry translated the quoted packet's answer direction: the quote is a
 * packet this node sent (or that left it translated), so the entry that applies is the one of
 * packets coming back the other way, as the hook `dir` sees them. */
static __always_inline void np_icmp_error_key(struct np_ct_key *k, const struct np_icmp_err *q,
					      __u8 dir)
{
	k->saddr = q->ip.daddr;
	k->daddr = q->ip.saddr;
	k->sport = q->dport;
	k->dport = q->sport;
	k->proto = q->ip.protocol;
	k->dir = dir;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* Translates the error as entry e (found under the key np_icmp_error_key() made) translates the
 * packets it is about the answer to: the quoted source becomes e's destination, the quoted
 * destination e's source; the outer header follows. Returns 0 or a negative drop reason; p gets
 * the new outer addresses. */
static __always_inline int np_icmp_error_rev_nat(np_ctx_t *ctx, struct np_pkt *p,
						 struct np_icmp_err *q, const struct np_ct_entry *e)
{
	__be32 saddr = e->nat_daddr ? e->nat_daddr : q->ip.saddr;
	__be32 daddr = e->nat_saddr ? e->nat_saddr : q->ip.daddr;
	__be16 ports[2] = {
		e->nat_dport ? e->nat_dport : q->sport,
		e->nat_sport ? e->nat_sport : q->dport,
	};
	__u32 old_ports, new_ports;
	__be32 outer_saddr = p->saddr == q->ip.daddr ? daddr : p->saddr;
	__be16 old_ip_check = q->ip.check, old_l4_check = q->l4_check, icmp_check;
	__u32 check_off = p->l3_off + __builtin_offsetof(struct iphdr, check);

	__builtin_memcpy(&old_ports, &q->sport, 4);
	__builtin_memcpy(&new_ports, ports, 4);

	/* The quoted headers. */
	q->ip.check = np_csum_replace4(np_csum_replace4(q->ip.check, q->ip.saddr, saddr), q->ip.daddr,
				       daddr);
	if (q->has_check) {
		q->l4_check = np_csum_replace4(q->l4_check, q->ip.saddr, saddr);
		q->l4_check = np_csum_replace4(q->l4_check, q->ip.daddr, daddr);
		q->l4_check = np_csum_replace4(q->l4_check, old_ports, new_ports);
		if (q->ip.protocol == IPPROTO_UDP && !q->l4_check)
			q->l4_check = 0xffff;
	}
	/* The ICMP checksum covers all of the quote. */
	if (np_ctx_load(ctx, p->csum_off, &icmp_check, sizeof(icmp_check)) < 0)
		return -NP_DROP_INVALID_PACKET;
	icmp_check = np_csum_replace4(icmp_check, q->ip.saddr, saddr);
	icmp_check = np_csum_replace4(icmp_check, q->ip.daddr, daddr);
	icmp_check = np_csum_replace4(icmp_check, old_ip_check, q->ip.check);
	icmp_check = np_csum_replace4(icmp_check, old_ports, new_ports);
	if (q->has_check)
		icmp_check = np_csum_replace4(icmp_check, old_l4_check, q->l4_check);

	q->ip.saddr = saddr;
	q->ip.daddr = daddr;
	if (np_ctx_store(ctx, q->ip_off, &q->ip, sizeof(q->ip)) < 0 ||
	    np_ctx_store(ctx, q->l4_off, ports, sizeof(ports)) < 0 ||
	    (q->has_check &&
	     np_ctx_store(ctx, q->l4_off + (q->ip.protocol == IPPROTO_UDP ? 6 : 16), &q->l4_check,
			  sizeof(q->l4_check)) < 0) ||
	    np_ctx_store(ctx, p->csum_off, &icmp_check, sizeof(icmp_check)) < 0)
		return -NP_DROP_WRITE_ERROR;

	/* The outer header: to whoever sent the quoted packet before it was translated. ICMP has no
	 * pseudo-header, so only the IPv4 checksum follows the addresses. */
	if (saddr != p->daddr) {
		if (np_ctx_l3_csum_replace(ctx, check_off, p->daddr, saddr, sizeof(saddr)) < 0)
			return -NP_DROP_CSUM_L3;
		if (np_ctx_store(ctx, p->l3_off + __builtin_offsetof(struct iphdr, daddr), &saddr,
				 sizeof(saddr)) < 0)
			return -NP_DROP_WRITE_ERROR;
		p->daddr = saddr;
	}
	if (outer_saddr != p->saddr) {
		if (np_ctx_l3_csum_replace(ctx, check_off, p->saddr, outer_saddr, sizeof(outer_saddr)) < 0)
			return -NP_DROP_CSUM_L3;
		if (np_ctx_store(ctx, p->l3_off + __builtin_offsetof(struct iphdr, saddr), &outer_saddr,
				 sizeof(outer_saddr)) < 0)
			return -NP_DROP_WRITE_ERROR;
		p->saddr = outer_saddr;
	}
	return 0;
}

#endif /* NP_LIB_ICMP_H */
