/* SPDX-License-Identifier: Apache-2.0 */
/* Direct server return with an IPv4 option (bpf-lb-mode dsr, and hybrid for TCP).
 *
 * Ingress node (a frontend's packet for a backend behind another node): DNAT only, the client's
 * address kept, and an 8-byte option right after the fixed IPv4 header on every TCP SYN and
 * every UDP datagram (later TCP segments go without it; the backend node knows their flow by
 * then). The flow has one conntrack entry here: its replies never come back through this node.
 * A packet the option would push past the device MTU is dropped (NP_DROP_FRAG_NEEDED) and
 * answered with ICMP fragmentation-needed carrying the MTU less the option.
 *
 * Backend node: a TCP SYN or UDP datagram carrying the option records the flow (client ->
 * backend, and backend -> client with the frontend as the source to put back); the packet is
 * delivered with the option in place (Linux ignores options it does not know on receive:
 * ip_options_compile() skips them for received packets, and TCP echoes none of them in its
 * SYN-ACK). The backend's replies get the frontend's address and port as their source on the
 * native device's tc egress, where they leave for the client directly. That is np_to_netdev for
 * now, for host-network and pod backends alike; once pods have their own program (lxc.bpf.c,
 * issue 7) a pod's replies are translated there.
 *
 * Wire format (DESIGN §3): type 0x9a (copied flag 0x80 | number 26: repeated in every fragment),
 * length 8, the frontend's port (2 bytes), the frontend's IPv4 address (4 bytes), both in network
 * order. Cilium writes the port and address byte-swapped on little-endian nodes; nodepath does
 * not interoperate with Cilium nodes and follows the design. */
#ifndef NP_LIB_DSR_H
#define NP_LIB_DSR_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/icmp_send.h"
#include "lib/metrics.h"
#include "lib/parse.h"
#include "lib/ports.h"
#include "lib/scratch.h"
#include "np_config.h"
#include "np_ct.h"
#include "np_drop.h"

#define NP_DSR_OPT_TYPE 0x9a
#define NP_DSR_OPT_LEN  8
/* IPv4 carries at most 40 bytes of options (ihl 15). */
#define NP_IP_MAX_HLEN  60

struct np_dsr_opt {
	__u8 type;    /* NP_DSR_OPT_TYPE */
	__u8 len;     /* NP_DSR_OPT_LEN */
	__be16 port;  /* frontend port */
	__be32 addr;  /* frontend IPv4 address */
};
NP_ASSERT_SIZE(struct np_dsr_opt, NP_DSR_OPT_LEN);

/* The mode sends flows of this protocol to remote backends by DSR. `mode` is load-time .rodata:
 * the verifier prunes the modes not configured. */
static __always_inline bool np_dsr_for(__u8 mode, __u8 proto)
{
	return mode == NP_LB_MODE_DSR || (mode == NP_LB_MODE_HYBRID && proto == IPPROTO_TCP);
}

/* Does this node read DSR options (the backend node side)? */
static __always_inline bool np_dsr_enabled(__u8 mode)
{
	return mode == NP_LB_MODE_DSR || mode == NP_LB_MODE_HYBRID;
}

static __always_inline bool np_dsr_is_syn(const struct np_pkt *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* Ingress node: the packet of flow e carries the option (a DSR flow's SYN, retransmissions too,
 * and each of its UDP datagrams). */
static __always_inline bool np_dsr_wants_opt(const struct np_ct_entry *e, const struct np_pkt *p)
{
	return (e->flags & NP_CT_F_DSR) && (p->proto == IPPROTO_UDP || np_dsr_is_syn(p));
}

/* Ingress node, before anything is translated: true when the packet still fits the device it
 * leaves by (the one it came in on) with the option. Otherwise the drop is counted, the packet
 * is turned into the ICMP fragmentation-needed for its sender and *verdict says where it goes. A
 * GSO packet fits (bpf_check_mtu(): it is segmented on the way out). */
static __always_inline bool np_dsr_fits(np_ctx_t *ctx, const struct np_pkt *p, __u32 dir,
					int *verdict)
{
	__u32 ifindex = np_ctx_ifindex(ctx);
	__u32 mtu = p->tot_len;

	if (bpf_check_mtu(ctx, ifindex, &mtu, NP_DSR_OPT_LEN, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED)
		return true;
	np_metric_add(dir, NP_DROP_FRAG_NEEDED, np_ctx_len(ctx));
	if (mtu <= NP_DSR_OPT_LEN || np_icmp_send_frag_needed(ctx, p, mtu - NP_DSR_OPT_LEN) < 0)
		*verdict = NP_CTX_DROP;
	else
		*verdict = np_ctx_redirect(ctx, ifindex);
	return false;
}

/* Ingress node: inserts the option for frontend addr:port (network order) after the fixed IPv4
 * header of p's packet, which is DNAT'd already (the L4 checksum does not cover options), and
 * fixes IHL, total length and the header checksum. p follows the packet. Returns 0 or a negative
 * drop reason. */
static __always_inline int np_dsr_add_opt(np_ctx_t *ctx, struct np_pkt *p, __be32 addr,
					  __be16 port)
{
	__u32 hlen = p->l4_off - p->l3_off;
	__u32 check_off = p->l3_off + __builtin_offsetof(struct iphdr, check);
	struct np_dsr_opt opt = {
		.type = NP_DSR_OPT_TYPE,
		.len = NP_DSR_OPT_LEN,
		.port = port,
		.addr = addr,
	};
	__be32 word0_old, word0_new;
	__u32 opt_words[2];

	if (hlen + NP_DSR_OPT_LEN > NP_IP_MAX_HLEN)
		return -NP_DROP_TRUNCATED_HEADER; /* no room left for options: Cilium's verdict too */
	/* The header's first word: version/IHL, TOS, total length. */
	if (np_ctx_load(ctx, p->l3_off, &word0_old, sizeof(word0_old)) < 0)
		return -NP_DROP_WRITE_ERROR;
	word0_new = word0_old;
	((__u8 *)&word0_new)[0] += NP_DSR_OPT_LEN / 4;
	((__be16 *)&word0_new)[1] = bpf_htons(p->tot_len + NP_DSR_OPT_LEN);

	if (np_ctx_grow_l3(ctx, NP_DSR_OPT_LEN) < 0)
		return -NP_DROP_WRITE_ERROR;
	__builtin_memcpy(opt_words, &opt, sizeof(opt));
	if (np_ctx_store(ctx, p->l3_off + sizeof(struct iphdr), &opt, sizeof(opt)) < 0 ||
	    np_ctx_store(ctx, p->l3_off, &word0_new, sizeof(word0_new)) < 0)
		return -NP_DROP_WRITE_ERROR;
	/* The option's two words were zero in the sum (they were not there). */
	if (np_ctx_l3_csum_replace(ctx, check_off, word0_old, word0_new, 4) < 0 ||
	    np_ctx_l3_csum_replace(ctx, check_off, 0, opt_words[0], 4) < 0 ||
	    np_ctx_l3_csum_replace(ctx, check_off, 0, opt_words[1], 4) < 0)
		return -NP_DROP_CSUM_L3;
	p->l4_off += NP_DSR_OPT_LEN;
	p->csum_off += NP_DSR_OPT_LEN;
	p->tot_len += NP_DSR_OPT_LEN;
	return 0;
}

/* Backend node: a recorded DSR flow starts over on a SYN, which carries the option of the
 * connection it opens (or none, and the tuple is not DSR any more). */
static __always_inline bool np_dsr_backend_restarts(const struct np_ct_entry *e,
						    const struct np_pkt *p)
{
	return (e->flags & NP_CT_F_DSR_BACKEND) && np_dsr_is_syn(p);
}

/* Backend node: the frontend of a TCP SYN or UDP datagram that carries the option, in opt.
 * False for anything else. */
static __always_inline bool np_dsr_read_opt(np_ctx_t *ctx, const struct np_pkt *p,
					    struct np_dsr_opt *opt)
{
	if (p->proto != IPPROTO_UDP && !np_dsr_is_syn(p))
		return false;
	if (p->l4_off - p->l3_off < sizeof(struct iphdr) + NP_DSR_OPT_LEN)
		return false;
	if (np_ctx_load(ctx, p->l3_off + sizeof(struct iphdr), opt, sizeof(*opt)) < 0)
		return false;
	return opt->type == NP_DSR_OPT_TYPE && opt->len == NP_DSR_OPT_LEN && opt->addr && opt->port;
}

/* Backend node: a packet for no frontend of this node. With the option, its flow is recorded in
 * the embryonic table (both directions; confirmed like a local backend's flow: the client's next
 * packet after the reply) and it goes on to the backend; without, it is not ours. A flow to a
 * host-network backend (node_ip: this node's address) has its port learned first, so its later
 * packets are looked up whatever this node's maps hold. Returns a verdict. */
static __always_inline int np_dsr_backend_ingress(np_ctx_t *ctx, const struct np_pkt *p, __u64 now,
						  __be32 node_ip)
{
	struct np_scratch *s;
	struct np_ct_entry fwd;
	struct np_dsr_opt opt;

	if (!np_dsr_read_opt(ctx, p, &opt))
		return NP_CTX_PASS;
	s = np_scratch_get();
	if (!s)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	if (p->daddr == node_ip)
		np_ports_learn(bpf_ntohs(p->dport));

	np_ct_init(&fwd, p, now, NP_CT_F_DSR_BACKEND);
	fwd.packets = 1;
	fwd.bytes = np_ctx_len(ctx);
	np_ct_key_from_pkt(&s->fwd_key, p, NP_CT_INGRESS);
	np_ct_peer_key(&s->rev_key, &s->fwd_key, &fwd);

	__builtin_memset(&s->rev, 0, sizeof(s->rev));
	s->rev.flags = NP_CT_F_REPLY | NP_CT_F_DSR_BACKEND;
	s->rev.expires = fwd.expires;
	s->rev.nat_saddr = opt.addr;
	s->rev.nat_sport = opt.port;

	/* A leftover under the reply key in the main table (its flow's entry evicted) would be found
	 * first by np_nodeport_egress; one under the client's key was forgotten on the way here. */
	np_ct_delete(&NP_MAP_CT, NP_CT_TABLE_MAIN, &s->rev_key);
	if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->rev_key, &s->rev) < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->fwd_key, &fwd) < 0) {
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->rev_key);
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	}
	np_metric_add(NP_METRIC_INGRESS, NP_METRIC_FORWARDED, np_ctx_len(ctx));
	return NP_CTX_PASS;
}

#endif /* NP_LIB_DSR_H */
