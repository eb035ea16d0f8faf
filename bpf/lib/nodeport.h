/* SPDX-License-Identifier: Apache-2.0 */
/* The service path of a native device (NodePort / LoadBalancer / externalIP frontends), for every
 * hook through the context shim: a packet of a known flow is translated as its conntrack entry
 * says; the first packet to a frontend picks a backend, decides local or remote, creates the flow
 * in the embryonic table and is translated (local: DNAT, handed to the stack; remote: DNAT + SNAT
 * to the node, or in DSR mode DNAT + the DSR option (lib/dsr.h), sent back out through the FIB);
 * replies of SNAT'd flows come back through ingress, replies of local backends through egress.
 * A packet for no frontend that carries a DSR option is a flow another node forwarded here: its
 * replies are translated on egress too. A new flow stays in the embryonic table until its client
 * confirms it (lib/ct.h); established flows are found in the main table with one lookup.
 *
 * Stack: a new flow's route lookup, reply entry and conntrack keys (144 bytes) live in per-CPU
 * scratch (lib/scratch.h). Verifier figures for tc's np_from_netdev (bench/bpf_stack.sh, kernel
 * 6.18, clang 14): stack depth 392 of 512 bytes with everything on the stack, 272 now. The
 * service entry stays on the stack on purpose: the verifier tracks stack contents, so it knows
 * which of its rewrites are zero and prunes those branches; from scratch it cannot, and with the
 * entry there too (232 bytes of stack) it walked 474,196 instructions instead of 264,231 (237,496
 * with everything on the stack). With DSR (lib/dsr.h) the frontend kept for the option costs 16
 * bytes: 288 of 512 in every mode; the verifier walked 291,335 instructions in snat mode, 18,983
 * in dsr (no SNAT allocation to explore) and 321,687 in hybrid, before the SNAT allocator's tries
 * became a bpf_loop() callback (lib/nat.h; bench/README.md, SNAT churn, has the figures since).
 *
 * Also here: ICMP errors about translated flows go back translated (lib/icmp.h), fragments of a
 * datagram follow its first one (lib/frag.h), only a SYN opens a TCP flow (with DSR and Maglev a
 * segment of a connection another node opened is carried without state:
 * np_nodeport_carries_midstream), and a backend the FIB cannot reach is a counted drop. */
#ifndef NP_LIB_NODEPORT_H
#define NP_LIB_NODEPORT_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/dsr.h"
#include "lib/fib.h"
#include "lib/icmp.h"
#include "lib/lb.h"
#include "lib/maps.h"
#include "lib/metrics.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/ports.h"
#include "lib/scratch.h"
#include "lib/trace.h"
#include "np_config.h"
#include "np_ct.h"
#include "np_drop.h"
#include "np_lb.h"

/* The NodePort path's load-time configuration: the agent sets it per loaded object (one per
 * native device). */
const volatile struct np_nodeport_config np_nodeport_cfg = {
	.snat_port_min = NP_DEFAULT_SNAT_PORT_MIN,
	.snat_port_max = NP_DEFAULT_SNAT_PORT_MAX,
};

/* The route of the packet as entry e will leave it: what np_fib_redirect() looks up after the
 * rewrite, looked up before anything changes. Returns the bpf_fib_lookup() result. */
static __always_inline int np_nodeport_route(np_ctx_t *ctx, const struct np_pkt *p,
					     const struct np_ct_entry *e,
					     struct bpf_fib_lookup *fib)
{
	np_fib_init(ctx, p, fib);
	if (e->nat_saddr)
		fib->ipv4_src = e->nat_saddr;
	if (e->nat_daddr)
		fib->ipv4_dst = e->nat_daddr;
	if (e->nat_sport)
		fib->sport = e->nat_sport;
	if (e->nat_dport)
		fib->dport = e->nat_dport;
	return np_fib_lookup_cached(ctx, fib);
}

/* Rewrites the packet as entry e says and sends it on its way; with dsr_opt (DSR flows only,
 * whose packet fits with it: np_dsr_fits()) it leaves with the DSR option for the frontend it was
 * sent to. fib: the route of the rewritten packet when the caller has looked it up
 * (np_nodeport_route), else NULL. A hook that cannot resolve neighbours (XDP) looks the route up
 * before it rewrites anything: without a neighbour (or any route) the packet goes on untouched
 * (NP_CTX_DEFER) to tc, which resolves it or drops it with its reason; the flow's state is the
 * same either way. now: the caller's np_ct_now(), which flow-event aggregation shares. */
static __always_inline int np_nodeport_forward_routed(np_ctx_t *ctx, struct np_pkt *p,
						      const struct np_ct_entry *e, __u32 dir,
						      bool dsr_opt, const struct bpf_fib_lookup *fib,
						      __u64 now)
{
	bool redirect = e->flags & NP_CT_F_REDIRECT;
	/* Decided before the rewrite, so that a packet aggregation suppresses (an established
	 * flow's) does not even keep its tuple. */
	bool trace = np_trace_wanted(e, p->tcp_flags, now);
	__be32 fe_addr = p->daddr;
	__be16 fe_port = p->dport;
	struct np_trace_orig orig = {};
	struct bpf_fib_lookup route;
	int ret;

	if (trace) {
		orig.saddr = p->saddr;
		orig.daddr = p->daddr;
		orig.sport = p->sport;
		orig.dport = p->dport;
	}

	if (redirect && !fib && !NP_CTX_HAS_NEIGH) {
		if (np_nodeport_route(ctx, p, e, &route) != BPF_FIB_LKUP_RET_SUCCESS)
			return NP_CTX_DEFER;
		fib = &route;
	}
	ret = np_nat_apply(ctx, p, e);
	if (ret < 0)
		return np_drop(ctx, dir, -ret);
	if (redirect) {
		ret = np_ttl_dec(ctx, p);
		if (ret < 0)
			return np_drop(ctx, dir, -ret);
		if (dsr_opt) {
			ret = np_dsr_add_opt(ctx, p, fe_addr, fe_port);
			if (ret < 0)
				return np_drop(ctx, dir, -ret);
		}
		ret = fib ? np_fib_redirect_to(ctx, fib) : np_fib_redirect(ctx, p);
		if (ret < 0)
			return np_drop(ctx, dir, -ret);
	} else {
		ret = NP_CTX_PASS;
	}
	np_metric_add(dir, NP_METRIC_FORWARDED, np_ctx_len(ctx));
	/* The entry is the flow's own (map value, or the new flow's copy): aggregation state lives
	 * there. */
	if (trace)
		np_trace_xlate(ctx, (struct np_ct_entry *)e, &orig,
			       redirect || dir == NP_METRIC_EGRESS ? NP_TRACE_TO_NETWORK :
								    NP_TRACE_TO_STACK,
			       p->tcp_flags, now);
	return ret;
}

static __always_inline int np_nodeport_forward(np_ctx_t *ctx, struct np_pkt *p,
					       const struct np_ct_entry *e, __u32 dir, bool dsr_opt,
					       __u64 now)
{
	return np_nodeport_forward_routed(ctx, p, e, dir, dsr_opt, NULL, now);
}

/* Rewrites the packet as entry e says and sends it on its way; a DSR packet too big for its
 * option becomes an ICMP error instead. fib: as for np_nodeport_forward_routed(). */
static __always_inline int np_nodeport_finish_routed(np_ctx_t *ctx, struct np_pkt *p,
						     const struct np_ct_entry *e, __u32 dir,
						     const struct bpf_fib_lookup *fib, __u64 now)
{
	bool dsr_opt = np_dsr_for(np_nodeport_cfg.lb_mode, p->proto) && np_dsr_wants_opt(e, p);
	int verdict;

	if (dsr_opt && !np_dsr_fits(ctx, p, dir, &verdict))
		return verdict;
	return np_nodeport_forward_routed(ctx, p, e, dir, dsr_opt, fib, now);
}

static __always_inline int np_nodeport_finish(np_ctx_t *ctx, struct np_pkt *p,
					      const struct np_ct_entry *e, __u32 dir, __u64 now)
{
	return np_nodeport_finish_routed(ctx, p, e, dir, NULL, now);
}

/* Sends a packet translated by other means than np_nat_apply() (an ICMP error) on its way: to the
 * stack, or (redirect) out through the FIB as this node forwards it. */
static __always_inline int np_nodeport_send(np_ctx_t *ctx, struct np_pkt *p, bool redirect,
					    __u32 dir)
{
	int ret = NP_CTX_PASS;

	if (redirect) {
		ret = np_ttl_dec(ctx, p);
		if (ret < 0)
			return np_drop(ctx, dir, -ret);
		ret = np_fib_redirect(ctx, p);
		if (ret < 0)
			return np_drop(ctx, dir, -ret);
	}
	np_metric_add(dir, NP_METRIC_FORWARDED, np_ctx_len(ctx));
	return ret;
}

/* An ICMP error about a packet of a translated flow (lib/icmp.h) goes back the way that flow's
 * packets in its direction go, translated by the same entry: the entry of the quoted packet's
 * answers. It does not refresh the flow. Any other ICMP message is not ours. */
static __always_inline int np_nodeport_icmp(np_ctx_t *ctx, struct np_pkt *p, __u8 ct_dir,
					    __u32 dir)
{
	struct np_icmp_err q;
	struct np_ct_key key;
	struct np_ct_entry *e;
	int ret;

	if (!np_icmp_error_parse(ctx, p, &q))
		return NP_CTX_PASS;
	np_icmp_error_key(&key, &q, ct_dir);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (!e)
		e = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, &key);
	if (!e || np_ct_expired(e, np_ct_now()))
		return NP_CTX_PASS;
	ret = np_icmp_error_rev_nat(ctx, p, &q, e);
	if (ret < 0)
		return np_drop(ctx, dir, -ret);
	return np_nodeport_send(ctx, p, e->flags & NP_CT_F_REDIRECT, dir);
}

/* An existing service flow stays on its backend while the backend exists (terminating ones
 * drain), unless a new connection (SYN) would land on a terminating backend. */
static __always_inline bool np_nodeport_backend_usable(const struct np_ct_entry *e,
						       const struct np_pkt *p)
{
	__u32 id = e->backend_id;
	const bool syn = p->proto == IPPROTO_TCP &&
			 (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	const struct np_backend *be;

	/* Only a SYN needs the backend's state; any other packet only that it exists. */
	if (!syn && np_backend_known(id))
		return true;
	be = bpf_map_lookup_elem(&NP_MAP_BACKENDS, &id);
	if (!be)
		return false;
	return !(syn && be->state != NP_BACKEND_ACTIVE);
}

/* The entry can carry this packet of its flow; otherwise the packet starts a new flow (or is not
 * ours). */
static __always_inline bool np_nodeport_ct_usable(const struct np_ct_entry *e,
						  const struct np_pkt *p, __u64 now)
{
	return !np_ct_expired(e, now) && !np_ct_reopens(e, p) &&
	       !(np_dsr_enabled(np_nodeport_cfg.lb_mode) && np_dsr_backend_restarts(e, p)) &&
	       (!(e->flags & NP_CT_F_SERVICE) || np_nodeport_backend_usable(e, p));
}

/* A packet of an unconfirmed flow: translated like any other; the first one that confirms the
 * flow moves it to the main table. fib: as for np_nodeport_finish_routed(). */
static __always_inline int np_nodeport_embryonic_hit(np_ctx_t *ctx, struct np_pkt *p,
						     const struct np_ct_key *key,
						     struct np_ct_entry *e, __u64 now, __u32 dir,
						     const struct bpf_fib_lookup *fib)
{
	__u64 expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), true);
	int ret;

	if (np_ct_confirms(e, p) && np_ct_promote(key, e, now)) {
		ret = np_nodeport_finish_routed(ctx, p, e, dir, fib, now);
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, key);
		return ret;
	}
	if (expires)
		np_ct_sync_peer(&NP_MAP_CT_EMBRYONIC, key, e, expires);
	return np_nodeport_finish_routed(ctx, p, e, dir, fib, now);
}

/* The backend for a new flow from outside: lib/lb.h's choice with the client's address as its
 * affinity key. Maglev hashes the flow (an evicted flow returns to its backend); random draws. An
 * externalTrafficPolicy=Local frontend's entry holds only this node's backends, so the client
 * address is kept, and with none of them here the caller drops (SERVICE_BACKEND_NOT_FOUND, as
 * Cilium's DROP_NO_SERVICE). */
static __always_inline struct np_backend *np_nodeport_pick(struct np_svc_key *key,
							   const struct np_svc_val *svc,
							   const struct np_pkt *p, __u32 *backend_id)
{
	struct np_lb_client client = { .id = p->saddr, .kind = NP_AFFINITY_CLIENT_ADDR };
	__u32 hash = np_lb_cfg.algorithm == NP_LB_ALG_MAGLEV ?
			     np_lb_flow_hash(p->saddr, p->sport, p->dport, p->proto) :
			     bpf_get_prandom_u32();

	return np_lb_pick(key, svc, hash, &client, true, backend_id);
}

/* First packet of a DSR flow (remote backend, fwd filled in for DNAT): one entry, client ->
 * frontend, in the embryonic table; no reply entry and no SNAT port (the backend's node answers
 * the client). A packet too big for the option creates nothing. */
static __always_inline int np_nodeport_new_dsr_flow(np_ctx_t *ctx, struct np_pkt *p,
						    struct np_scratch *s, struct np_ct_entry *fwd,
						    __u64 now)
{
	bool dsr_opt;
	int verdict;

	fwd->flags |= NP_CT_F_DSR | NP_CT_F_REDIRECT;
	dsr_opt = np_dsr_wants_opt(fwd, p);
	if (dsr_opt && !np_dsr_fits(ctx, p, NP_METRIC_INGRESS, &verdict))
		return verdict;
	np_ct_key_from_pkt(&s->fwd_key, p, NP_CT_INGRESS);
	if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->fwd_key, fwd) < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	return np_nodeport_forward(ctx, p, fwd, NP_METRIC_INGRESS, dsr_opt, now);
}

/* What the first packet of a new flow does once the flow exists: it is translated by its service
 * entry and sent on. A hook that splits the path into tail calls defines
 * NP_NODEPORT_NEW_FLOW_NEXT(ctx, p, fwd, now) before it includes this header (xdp.bpf.c: the
 * rewrite is its next stage). */
#ifndef NP_NODEPORT_NEW_FLOW_NEXT
#define NP_NODEPORT_NEW_FLOW_NEXT(ctx, p, fwd, now) \
	np_nodeport_finish(ctx, p, fwd, NP_METRIC_INGRESS, now)
#endif

/* Only a SYN opens a TCP connection: any other TCP packet to a frontend that no entry knows
 * (a stray or spoofed ACK, a retransmission of a flow the table lost) would otherwise create state
 * that lives as long as an established connection and hold a SNAT port for it. */
static __always_inline bool np_nodeport_opens(const struct np_pkt *p)
{
	return p->proto != IPPROTO_TCP ||
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) == TCP_FLAG_SYN;
}

/* A TCP segment without SYN that no entry knows, to frontend svc, can still be carried: its
 * connection may have been opened through another node (an L2 announcement moved to this one, an
 * ECMP rehash) or this node's entry lost. That holds only where every node picks the same backend
 * for the flow from the packet alone and the backend's answers do not need this node: DSR for TCP
 * (dsr, hybrid), Maglev (np_lb_flow_hash leaves the frontend address out, every node has the same
 * table), no session affinity (its state is per node) and externalTrafficPolicy=Cluster (a Local
 * frontend's table holds this node's backends only). Such a segment is forwarded to the backend
 * as the SYN was, and nothing is created: no entry, no affinity, no port (the stray ACK the rule
 * above keeps out stays out; each such segment pays the lookups again until a SYN opens a flow
 * here). With SNAT the backend knows the connection by the other node's address and port, which
 * this node does not have: there it stays a counted drop. */
static __always_inline bool np_nodeport_carries_midstream(const struct np_svc_val *svc,
							  const struct np_pkt *p)
{
	return p->proto == IPPROTO_TCP && !(p->tcp_flags & TCP_FLAG_SYN) &&
	       np_dsr_for(np_nodeport_cfg.lb_mode, IPPROTO_TCP) &&
	       np_lb_cfg.algorithm == NP_LB_ALG_MAGLEV && (svc->flags2 & NP_SVC_F2_MAGLEV) &&
	       !(svc->flags & (NP_SVC_F_AFFINITY | NP_SVC_F_LOCAL_SCOPE));
}

/* An address of this node: the device's, or one the agent listed as this node's. */
static __always_inline bool np_nodeport_local_addr(__be32 addr)
{
	const struct np_node_val *n;

	if (addr == np_nodeport_cfg.node_ip)
		return true;
	n = bpf_map_lookup_elem(&NP_MAP_NODES, &addr);
	return n && (n->flags & NP_NODE_F_LOCAL);
}

/* Where a new flow's backend is, from the route to it: reached back out of the device the packet
 * came in on, it is remote (its replies would bypass this node, so the flow is SNAT'd to the
 * node); routed to another device (a local pod, another native device) or an address of this node
 * (hostNetwork), it is local: the packet goes to the stack with the client address kept. The
 * lookup asks for the route only (no length: tc then checks the packet against the device's MTU
 * and says FRAG_NEEDED with the device filled in). No route, or one that refuses (unreachable,
 * blackhole, prohibit, forwarding off): the packet cannot be delivered, dropped with
 * FIB_LOOKUP_FAILED before any state is created. Returns 1 remote, 0 local,
 * NP_NODEPORT_BACKEND_DEFER (remote, but this hook cannot resolve the next hop: tc's job), or a
 * negative drop reason. */
#define NP_NODEPORT_BACKEND_DEFER 2
static __always_inline int np_nodeport_backend_where(np_ctx_t *ctx, const struct np_pkt *p,
						     const struct np_backend *be,
						     struct bpf_fib_lookup *fib)
{
	int rc;

	np_fib_init(ctx, p, fib);
	fib->ipv4_dst = be->addr;
	fib->dport = be->port;
	fib->tot_len = 0;
	rc = np_ctx_fib_lookup(ctx, fib);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		/* Too big for the device is still a route: to a local device the stack answers with
		 * fragmentation-needed (translated back on egress); out again, the forward path decides
		 * (DSR answers it itself). */
		if (fib->ifindex != np_ctx_ifindex(ctx))
			return 0;
		/* A hook that cannot resolve the backend's neighbour (XDP) leaves the flow to tc before
		 * any state exists. */
		if (rc == BPF_FIB_LKUP_RET_NO_NEIGH && !NP_CTX_HAS_NEIGH)
			return NP_NODEPORT_BACKEND_DEFER;
		return 1;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		/* A local address, or no route at all: the FIB does not say which. */
		return np_nodeport_local_addr(be->addr) ? 0 : -NP_DROP_FIB_LOOKUP_FAILED;
	default:
		return -NP_DROP_FIB_LOOKUP_FAILED;
	}
}

/* First packet of a flow to a frontend: pick a backend, record both directions in the embryonic
 * table, translate. Not a frontend: passed untouched. `known`: the packet belongs to a flow whose
 * entry could not carry it (its backend went away): it is moved to another backend whatever the
 * packet is. */
static __always_inline int np_nodeport_new_flow(np_ctx_t *ctx, struct np_pkt *p, __u64 now,
						bool known)
{
	struct np_scratch *s;
	struct np_ct_entry fwd;
	struct np_svc_key svc_key;
	struct np_svc_val *svc;
	struct np_backend *be;
	__u32 backend_id = 0;
	bool remote, midstream = false;
	int rc;

	svc = np_lb_lookup(&svc_key, p->daddr, p->dport, p->proto);
	if (!svc) {
		if (np_dsr_enabled(np_nodeport_cfg.lb_mode))
			return np_dsr_backend_ingress(ctx, p, now, np_nodeport_cfg.node_ip);
		return NP_CTX_PASS;
	}
	if (!(svc->flags & NP_SVC_F_ROUTABLE))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_IS_CLUSTER_IP);
	/* A later fragment follows its first one, which had no flow (it was dropped, or its entry is
	 * gone): no backend can be chosen for part of a datagram. */
	if (p->frag == NP_FRAG_LATER)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_FRAG_NOT_FOUND);
	if (!known && !np_nodeport_opens(p)) {
		if (!np_nodeport_carries_midstream(svc, p))
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CANT_CREATE);
		midstream = true;
	}
	be = np_nodeport_pick(&svc_key, svc, p, &backend_id);
	if (!be)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_NO_SERVICE_BACKEND);
	s = np_scratch_get();
	if (!s)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);

	rc = np_nodeport_backend_where(ctx, p, be, &s->fib);
	if (rc < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -rc);
	if (rc == NP_NODEPORT_BACKEND_DEFER)
		return NP_CTX_DEFER;
	remote = rc;

	np_ct_init(&fwd, p, now, NP_CT_F_SERVICE);
	fwd.nat_daddr = be->addr;
	fwd.nat_dport = be->port;
	fwd.backend_id = backend_id;
	fwd.rev_nat_id = svc->rev_nat_id;
	fwd.packets = 1;
	fwd.bytes = np_ctx_len(ctx);

	if (midstream) {
		/* Translated by an entry that exists only here, on the stack: DNAT, and to a remote
		 * backend DSR-forwarded (no option: that is the SYN's, and the backend's node recorded
		 * the flow from it). */
		if (remote) {
			if (p->ttl <= 1)
				return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TTL_EXCEEDED);
			fwd.flags |= NP_CT_F_DSR | NP_CT_F_REDIRECT;
		}
		return NP_NODEPORT_NEW_FLOW_NEXT(ctx, p, &fwd, now);
	}

	__builtin_memset(&s->rev, 0, sizeof(s->rev));
	s->rev.flags = NP_CT_F_REPLY;
	s->rev.expires = fwd.expires;
	s->rev.backend_id = backend_id;
	s->rev.rev_nat_id = svc->rev_nat_id;
	s->rev.nat_saddr = p->daddr;
	s->rev.nat_sport = p->dport;

	if (remote) {
		/* Before any state is created: a packet that cannot be forwarded holds no port. */
		if (p->ttl <= 1)
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TTL_EXCEEDED);
		if (np_dsr_for(np_nodeport_cfg.lb_mode, p->proto))
			return np_nodeport_new_dsr_flow(ctx, p, s, &fwd, now);
		fwd.flags |= NP_CT_F_SNAT | NP_CT_F_REDIRECT;
		fwd.nat_saddr = np_nodeport_cfg.node_ip;
		s->rev.flags |= NP_CT_F_SNAT | NP_CT_F_REDIRECT;
		s->rev.nat_daddr = p->saddr;
		s->rev.nat_dport = p->sport;
	}

	/* The reply tuple comes from the one definition the conntrack library uses to pair the two
	 * directions; for SNAT its destination port is the one allocated below. */
	np_ct_key_from_pkt(&s->fwd_key, p, NP_CT_INGRESS);
	np_ct_peer_key(&s->rev_key, &s->fwd_key, &fwd);
	if (remote) {
		__u16 port = np_snat_alloc(ctx, &s->rev_key, &s->rev, bpf_ntohs(p->sport),
					   np_nodeport_cfg.snat_port_min,
					   np_nodeport_cfg.snat_port_max, now);

		if (!port)
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_NAT_NO_MAPPING);
		fwd.nat_sport = bpf_htons(port);
	} else {
		/* A leftover under this reply key in the main table (its flow's service entry evicted)
		 * would be found first and keep the new flow from ever being confirmed. */
		np_ct_delete(&NP_MAP_CT, NP_CT_TABLE_MAIN, &s->rev_key);
		if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->rev_key, &s->rev) < 0)
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	}

	if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->fwd_key, &fwd) < 0) {
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &s->rev_key);
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	}
	return NP_NODEPORT_NEW_FLOW_NEXT(ctx, p, &fwd, now);
}

/* Does a packet that no conntrack entry carries need the new-flow path? Only when it is for a
 * frontend of this node or (dsr, hybrid) carries the DSR option of another node's frontend;
 * anything else np_nodeport_new_flow() would pass untouched. A hook that runs the new flow as a
 * stage of its own (xdp.bpf.c, by tail call) asks first, so a packet that is not a service's
 * passes without going there. */
static __always_inline bool np_nodeport_new_flow_wanted(np_ctx_t *ctx, const struct np_pkt *p)
{
	struct np_svc_key svc_key;
	struct np_dsr_opt opt;

	if (np_lb_lookup(&svc_key, p->daddr, p->dport, p->proto))
		return true;
	return np_dsr_enabled(np_nodeport_cfg.lb_mode) && np_dsr_read_opt(ctx, p, &opt);
}

/* The entry of the flow of a packet arriving on the device (key: its tuple as the client or a
 * remote backend sends it), main table first, then embryonic (*embryonic says which). An entry
 * that can no longer carry its flow is forgotten; *known says there was a live one (its backend
 * went away: the packet moves to another backend whatever it is, np_nodeport_new_flow()). NULL:
 * the packet starts a new flow, or is not ours. */
static __always_inline struct np_ct_entry *np_nodeport_ct_find(const struct np_pkt *p,
								const struct np_ct_key *key,
								__u64 now, bool *embryonic,
								bool *known)
{
	struct np_ct_entry *e = bpf_map_lookup_elem(&NP_MAP_CT, key);

	if (e) {
		if (np_nodeport_ct_usable(e, p, now)) {
			*embryonic = false;
			return e;
		}
		*known = !np_ct_expired(e, now);
		np_ct_forget(&NP_MAP_CT, NP_CT_TABLE_MAIN, key, e);
	}
	e = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, key);
	if (e) {
		if (np_nodeport_ct_usable(e, p, now)) {
			*embryonic = true;
			return e;
		}
		*known |= !np_ct_expired(e, now);
		np_ct_forget(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, key, e);
	}
	return NULL;
}

/* A packet of a known flow (e, found by np_nodeport_ct_find() under key): the entry is kept
 * alive and the packet translated. fib: as for np_nodeport_finish_routed(). */
static __always_inline int np_nodeport_ct_hit(np_ctx_t *ctx, struct np_pkt *p,
					      const struct np_ct_key *key, struct np_ct_entry *e,
					      bool embryonic, __u64 now,
					      const struct bpf_fib_lookup *fib)
{
	__u64 expires;

	if (embryonic)
		return np_nodeport_embryonic_hit(ctx, p, key, e, now, NP_METRIC_INGRESS, fib);
	expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), false);
	if (expires)
		np_ct_sync_peer(&NP_MAP_CT, key, e, expires);
	return np_nodeport_finish_routed(ctx, p, e, NP_METRIC_INGRESS, fib, now);
}

/* A packet to (ingress) or from (egress) this node's address on a port no flow of ours uses
 * (lib/ports.h), not ICMP, not carrying a DSR option: no conntrack entry, frontend or DSR flow can
 * be its, so the hook passes it without looking. Until the agent has written its bitmap, every
 * packet is looked at. */
static __always_inline bool np_nodeport_not_ours(const struct np_pkt *p, __u8 dir)
{
	__be32 addr = dir == NP_CT_INGRESS ? p->daddr : p->saddr;
	__u16 port = bpf_ntohs(dir == NP_CT_INGRESS ? p->dport : p->sport);

	/* ICMP errors name their flow inside (np_nodeport_icmp()). */
	if (p->proto == IPPROTO_ICMP || addr != np_nodeport_cfg.node_ip)
		return false;
	/* SNAT replies, the most frequent of the node's flows, without the lookup (their bits are
	 * set too). */
	if (port >= np_nodeport_cfg.snat_port_min && port <= np_nodeport_cfg.snat_port_max)
		return false;
	/* dsr, hybrid: IP options may be another node's DSR option for a host-network backend here,
	 * on a port this node's maps need not have yet (np_dsr_backend_ingress() learns it). */
	if (dir == NP_CT_INGRESS && np_dsr_enabled(np_nodeport_cfg.lb_mode) &&
	    p->l4_off - p->l3_off > sizeof(struct iphdr))
		return false;
	return np_ports_has(port) == 0;
}

/* A parsed packet arriving on the device (tuple as the client or a remote backend sends it):
 * translated by its flow's entry (main table, then embryonic), or the start of a new flow. A hook
 * that splits the path into tail calls (xdp.bpf.c) calls the two stages itself. */
static __always_inline int np_nodeport_ingress(np_ctx_t *ctx, struct np_pkt *p)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	__u64 now = np_ct_now();
	bool embryonic = false, known = false;

	if (p->proto == IPPROTO_ICMP)
		return np_nodeport_icmp(ctx, p, NP_CT_INGRESS, NP_METRIC_INGRESS);
	np_ct_key_from_pkt(&key, p, NP_CT_INGRESS);
	e = np_nodeport_ct_find(p, &key, now, &embryonic, &known);
	if (e)
		return np_nodeport_ct_hit(ctx, p, &key, e, embryonic, now, NULL);
	return np_nodeport_new_flow(ctx, p, now, known);
}

/* A parsed packet leaving by the device: replies of local backends get their frontend back.
 * Anything without an entry is not ours. */
static __always_inline int np_nodeport_egress(np_ctx_t *ctx, struct np_pkt *p)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	__u64 now = np_ct_now(), expires;

	if (p->proto == IPPROTO_ICMP)
		return np_nodeport_icmp(ctx, p, NP_CT_EGRESS, NP_METRIC_EGRESS);
	np_ct_key_from_pkt(&key, p, NP_CT_EGRESS);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (e && !np_ct_expired(e, now)) {
		expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), false);
		if (expires)
			np_ct_sync_peer(&NP_MAP_CT, &key, e, expires);
		return np_nodeport_finish(ctx, p, e, NP_METRIC_EGRESS, now);
	}
	/* Only reply entries are keyed for egress: this never confirms, it marks the reply seen. */
	e = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, &key);
	if (!e || np_ct_expired(e, now))
		return NP_CTX_PASS;
	return np_nodeport_embryonic_hit(ctx, p, &key, e, now, NP_METRIC_EGRESS, NULL);
}

#endif /* NP_LIB_NODEPORT_H */
