/* SPDX-License-Identifier: Apache-2.0 */
/* BPF masquerade on a native device (Cilium's bpf.masquerade): a pod's packet (source in the
 * native-routing CIDR) to a destination outside that CIDR that is not a node leaves with the
 * node's address and a port of the masquerade range; replies come back translated to the pod.
 * Pod to pod and pod to node keep their addresses (native routing delivers them as they are).
 *
 * The flow lives in conntrack like a SNAT'd NodePort flow (lib/ct.h, lib/nat.h): a forward entry
 * keyed as egress sees the pod's packets (NP_CT_F_MASQ | NP_CT_F_SNAT) and a reply entry keyed
 * as ingress sees the answers (NP_CT_F_MASQ | NP_CT_F_REPLY), created in the embryonic table and
 * promoted once the pod sends again after a reply. The port comes from np_snat_alloc(), whose
 * reply keys share the tables with NodePort's SNAT: the two never hand out the same
 * (remote, node address, port) tuple. No free port after NP_SNAT_RETRIES tries is a drop,
 * NO_MAPPING_FOR_NAT_MASQUERADE, as in Cilium.
 *
 * TCP and UDP replies are translated by the NodePort ingress path (the reply entry is found
 * there like any other), and so are ICMP errors about a masqueraded TCP/UDP flow (lib/icmp.h).
 * ICMP echo is translated here: the identifier plays the port (requests: source port; replies:
 * destination port), rewritten with the ICMP checksum (ICMP has no pseudo-header). */
#ifndef NP_LIB_MASQ_H
#define NP_LIB_MASQ_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/maps.h"
#include "lib/metrics.h"
#include "lib/nat.h"
#include "lib/nodeport.h"
#include "lib/parse.h"
#include "lib/scratch.h"
#include "np_config.h"
#include "np_ct.h"
#include "np_drop.h"

/* Set by the agent per loaded object (enable-bpf-masquerade off: all of this is dead code). */
const volatile struct np_masq_config np_masq_cfg = {
	.port_min = NP_DEFAULT_SNAT_PORT_MIN,
	.port_max = NP_DEFAULT_SNAT_PORT_MAX,
};

#define NP_ICMP_ECHO_REPLY 0
#define NP_ICMP_ECHO 8

/* np_masq_icmp_ingress(): the packet is not an echo reply of a masqueraded flow. */
#define NP_MASQ_NOT_OURS (-1)

struct np_icmp_echo {
	__u8 type;
	__u8 code;
	__be16 check;
	__be16 id;
	__be16 seq;
};

static __always_inline bool np_masq_in_cidr(__be32 addr)
{
	return (addr & np_masq_cfg.cidr_mask) == np_masq_cfg.cidr;
}

/* An echo message of `type`: its identifier becomes the packet's port (request: source, reply:
 * destination), as conntrack keys it. */
static __always_inline bool np_masq_echo(np_ctx_t *ctx, struct np_pkt *p, __u8 type)
{
	struct np_icmp_echo h;

	if (np_ctx_load(ctx, p->l4_off, &h, sizeof(h)) < 0 || h.type != type || h.code != 0)
		return false;
	p->sport = type == NP_ICMP_ECHO ? h.id : 0;
	p->dport = type == NP_ICMP_ECHO ? 0 : h.id;
	return true;
}

/* A packet leaving the device that masquerade applies to: from a pod, to neither a pod nor a
 * node, TCP, UDP or an echo request. */
static __always_inline bool np_masq_wants(np_ctx_t *ctx, struct np_pkt *p)
{
	if (!np_masq_cfg.enabled || !np_masq_in_cidr(p->saddr) || np_masq_in_cidr(p->daddr))
		return false;
	if (p->daddr == np_nodeport_cfg.node_ip || bpf_map_lookup_elem(&NP_MAP_NODES, &p->daddr))
		return false;
	return p->proto != IPPROTO_ICMP || np_masq_echo(ctx, p, NP_ICMP_ECHO);
}

static __always_inline int np_masq_icmp_addr(np_ctx_t *ctx, struct np_pkt *p, __u32 field,
					     __be32 from, __be32 to)
{
	if (np_ctx_l3_csum_replace(ctx, p->l3_off + __builtin_offsetof(struct iphdr, check), from,
				   to, sizeof(to)) < 0)
		return -NP_DROP_CSUM_L3;
	if (np_ctx_store(ctx, p->l3_off + field, &to, sizeof(to)) < 0)
		return -NP_DROP_WRITE_ERROR;
	return 0;
}

/* Applies entry e to an echo message: addresses (IPv4 checksum only) and the identifier. */
static __always_inline int np_masq_icmp_apply(np_ctx_t *ctx, struct np_pkt *p,
					      const struct np_ct_entry *e)
{
	__be16 id = p->sport ? p->sport : p->dport;
	__be16 to = p->sport ? e->nat_sport : e->nat_dport;
	int ret;

	if (e->nat_saddr && e->nat_saddr != p->saddr) {
		ret = np_masq_icmp_addr(ctx, p, __builtin_offsetof(struct iphdr, saddr), p->saddr,
					e->nat_saddr);
		if (ret < 0)
			return ret;
		p->saddr = e->nat_saddr;
	}
	if (e->nat_daddr && e->nat_daddr != p->daddr) {
		ret = np_masq_icmp_addr(ctx, p, __builtin_offsetof(struct iphdr, daddr), p->daddr,
					e->nat_daddr);
		if (ret < 0)
			return ret;
		p->daddr = e->nat_daddr;
	}
	if (to && to != id) {
		if (np_ctx_l4_csum_replace(ctx, p->csum_off, id, to, sizeof(to)) < 0)
			return -NP_DROP_CSUM_L4;
		if (np_ctx_store(ctx, p->l4_off + __builtin_offsetof(struct np_icmp_echo, id), &to,
				 sizeof(to)) < 0)
			return -NP_DROP_WRITE_ERROR;
	}
	return 0;
}

/* Translates the packet as e says and hands it on (to the wire on egress, to the stack, which
 * routes it to the pod, on ingress). now: the caller's np_ct_now(). */
static __always_inline int np_masq_finish(np_ctx_t *ctx, struct np_pkt *p,
					  const struct np_ct_entry *e, __u32 dir, __u64 now)
{
	int ret;

	if (p->proto != IPPROTO_ICMP)
		return np_nodeport_finish(ctx, p, e, dir, now);
	ret = np_masq_icmp_apply(ctx, p, e);
	if (ret < 0)
		return np_drop(ctx, dir, -ret);
	np_metric_add(dir, NP_METRIC_FORWARDED, np_ctx_len(ctx));
	return NP_CTX_PASS;
}

/* A packet of a known flow (e found under key, in the embryonic table if `embryonic`): kept
 * alive, promoted when it confirms the flow, translated. */
static __always_inline int np_masq_hit(np_ctx_t *ctx, struct np_pkt *p, const struct np_ct_key *key,
				       struct np_ct_entry *e, bool embryonic, __u64 now, __u32 dir)
{
	__u64 expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), embryonic);
	int ret;

	if (!embryonic) {
		if (expires)
			np_ct_sync_peer(&NP_MAP_CT, key, e, expires);
		return np_masq_finish(ctx, p, e, dir, now);
	}
	if (np_ct_confirms(e, p) && np_ct_promote(key, e, now)) {
		ret = np_masq_finish(ctx, p, e, dir, now);
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, key);
		return ret;
	}
	if (expires)
		np_ct_sync_peer(&NP_MAP_CT_EMBRYONIC, key, e, expires);
	return np_masq_finish(ctx, p, e, dir, now);
}

/* First packet of a masqueraded flow: both entries in the embryonic table, a port for it. */
static __always_inline int np_masq_new_flow(np_ctx_t *ctx, struct np_pkt *p,
					    const struct np_ct_key *key, __u64 now)
{
	struct np_ct_entry fwd;
	struct np_scratch *s;
	__be16 start = p->sport;
	__u16 port;

	/* A later fragment follows its first one, which made no flow. */
	if (p->frag == NP_FRAG_LATER)
		return np_drop(ctx, NP_METRIC_EGRESS, NP_DROP_FRAG_NOT_FOUND);
	/* Only a SYN opens a TCP flow: any other segment of a flow the table does not know would hold
	 * a port without a connection behind it. */
	if (!np_nodeport_opens(p))
		return np_drop(ctx, NP_METRIC_EGRESS, NP_DROP_CT_CANT_CREATE);
	s = np_scratch_get();
	if (!s)
		return np_drop(ctx, NP_METRIC_EGRESS, NP_DROP_CT_CREATE_FAILED);

	np_ct_init(&fwd, p, now, NP_CT_F_MASQ | NP_CT_F_SNAT);
	fwd.nat_saddr = np_nodeport_cfg.node_ip;
	fwd.packets = 1;
	fwd.bytes = np_ctx_len(ctx);

	__builtin_memset(&s->rev, 0, sizeof(s->rev));
	s->rev.flags = NP_CT_F_MASQ | NP_CT_F_REPLY;
	s->rev.expires = fwd.expires;
	s->rev.nat_daddr = p->saddr;
	s->rev.nat_dport = p->sport;

	s->fwd_key = *key;
	np_ct_peer_key(&s->rev_key, &s->fwd_key, &fwd);
	port = np_snat_alloc(ctx, &s->rev_key, &s->rev, bpf_ntohs(start), np_masq_cfg.port_min,
			     np_masq_cfg.port_max, now);
	if (!port)
		return np_drop(ctx, NP_METRIC_EGRESS, NP_DROP_NAT_NO_MAPPING);
	fwd.nat_sport = bpf_htons(port);
	if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->fwd_key, &fwd) < 0) {
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->rev_key);
		return np_drop(ctx, NP_METRIC_EGRESS, NP_DROP_CT_CREATE_FAILED);
	}
	return np_masq_finish(ctx, p, &fwd, NP_METRIC_EGRESS, now);
}

/* A packet leaving the device for which np_masq_wants() said yes: a flow's entry (a masqueraded
 * flow, or a NodePort reply of a local pod backend: both are keyed as egress sees them) translates
 * it; else it starts a masqueraded flow. */
static __always_inline int np_masq_egress(np_ctx_t *ctx, struct np_pkt *p)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	__u64 now = np_ct_now();
	bool embryonic = false, known = false;

	np_ct_key_from_pkt(&key, p, NP_CT_EGRESS);
	e = np_nodeport_ct_find(p, &key, now, &embryonic, &known);
	if (e)
		return np_masq_hit(ctx, p, &key, e, embryonic, now, NP_METRIC_EGRESS);
	return np_masq_new_flow(ctx, p, &key, now);
}

/* An ICMP packet arriving on the device: an echo reply to a masqueraded request goes to its pod.
 * Returns a verdict, or NP_MASQ_NOT_OURS (anything else: the NodePort path's to judge). */
static __always_inline int np_masq_icmp_ingress(np_ctx_t *ctx, struct np_pkt *p)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	__u64 now;
	bool embryonic = false, known = false;

	if (!np_masq_cfg.enabled || !np_masq_echo(ctx, p, NP_ICMP_ECHO_REPLY))
		return NP_MASQ_NOT_OURS;
	now = np_ct_now();
	np_ct_key_from_pkt(&key, p, NP_CT_INGRESS);
	e = np_nodeport_ct_find(p, &key, now, &embryonic, &known);
	if (!e || !(e->flags & NP_CT_F_MASQ))
		return NP_MASQ_NOT_OURS;
	return np_masq_hit(ctx, p, &key, e, embryonic, now, NP_METRIC_INGRESS);
}

#endif /* NP_LIB_MASQ_H */
