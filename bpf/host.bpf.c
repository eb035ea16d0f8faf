// SPDX-License-Identifier: GPL-2.0
/* tc on a native device. Ingress: NodePort / LoadBalancer / externalIP frontends are DNAT'd to a
 * backend (local: handed to the stack; remote: SNAT'd to the node and sent back out), conntrack
 * keeps each flow on its backend, replies to SNAT'd flows are reverse-translated. Egress: replies
 * of local backends get the frontend address back. A new flow is tracked in the embryonic table
 * until its client confirms it (lib/ct.h); established flows are found in the main table with one
 * lookup. One instance per device (np_cfg). */
#include "lib/ctx_skb.h"
#include "lib/maps.h"
#include "lib/metrics.h"
#include "lib/parse.h"
#include "lib/ct.h"
#include "lib/lb.h"
#include "lib/nat.h"
#include "lib/fib.h"
#include "np_config.h"

const volatile struct np_host_config np_cfg = {
	.snat_port_min = NP_DEFAULT_SNAT_PORT_MIN,
	.snat_port_max = NP_DEFAULT_SNAT_PORT_MAX,
};

/* Rewrites the packet as entry e says and sends it on its way. */
static __always_inline int np_finish(np_ctx_t *ctx, struct np_pkt *p, const struct np_ct_entry *e,
				     __u32 dir)
{
	bool redirect = e->flags & NP_CT_F_REDIRECT;
	int ret = np_nat_apply(ctx, p, e);

	if (ret < 0)
		return np_drop(ctx, dir, -ret);
	if (redirect) {
		ret = np_ttl_dec(ctx, p);
		if (ret < 0)
			return np_drop(ctx, dir, -ret);
		ret = np_fib_redirect(ctx, p);
		if (ret < 0)
			return np_drop(ctx, dir, -ret);
	} else {
		ret = NP_CTX_PASS;
	}
	np_metric_add(dir, NP_METRIC_FORWARDED, np_ctx_len(ctx));
	return ret;
}

/* An existing service flow stays on its backend while the backend exists (terminating ones
 * drain), unless a new connection (SYN) would land on a terminating backend. */
static __always_inline bool np_ct_backend_usable(const struct np_ct_entry *e,
						 const struct np_pkt *p)
{
	__u32 id = e->backend_id;
	const struct np_backend *be = bpf_map_lookup_elem(&NP_MAP_BACKENDS, &id);

	if (!be)
		return false;
	if (be->state != NP_BACKEND_ACTIVE && p->proto == IPPROTO_TCP &&
	    (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return false;
	return true;
}

/* The entry can carry this packet of its flow; otherwise the packet starts a new flow (or is not
 * ours). */
static __always_inline bool np_ct_usable(const struct np_ct_entry *e, const struct np_pkt *p,
					 __u64 now)
{
	return !np_ct_expired(e, now) && !np_ct_reopens(e, p) &&
	       (!(e->flags & NP_CT_F_SERVICE) || np_ct_backend_usable(e, p));
}

/* A packet of an unconfirmed flow: translated like any other; the first one that confirms the
 * flow moves it to the main table. */
static __always_inline int np_ct_embryonic_hit(np_ctx_t *ctx, struct np_pkt *p,
					       const struct np_ct_key *key, struct np_ct_entry *e,
					       __u64 now, __u32 dir)
{
	__u64 expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), true);
	int ret;

	if (np_ct_confirms(e, p) && np_ct_promote(key, e, now)) {
		ret = np_finish(ctx, p, e, dir);
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, key);
		return ret;
	}
	if (expires)
		np_ct_sync_peer(&NP_MAP_CT_EMBRYONIC, key, e, expires);
	return np_finish(ctx, p, e, dir);
}

/* First packet of a flow to a frontend: pick a backend, record both directions in the embryonic
 * table, translate. */
static __always_inline int np_lb_new_flow(np_ctx_t *ctx, struct np_pkt *p, __u64 now)
{
	struct np_svc_key svc_key;
	struct np_svc_val *svc;
	struct np_backend *be;
	struct np_ct_entry fwd, rev;
	struct np_ct_key fwd_key, rev_key;
	struct np_pkt to_backend;
	struct bpf_fib_lookup fib;
	__u32 backend_id = 0;
	bool remote;
	int rc;

	svc = np_lb_lookup(&svc_key, p->daddr, p->dport, p->proto);
	if (!svc)
		return NP_CTX_PASS;
	if (!(svc->flags & NP_SVC_F_ROUTABLE))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_IS_CLUSTER_IP);
	if (p->frag)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_FRAGMENT);
	be = np_lb_select(&svc_key, svc, bpf_get_prandom_u32(), &backend_id);
	if (!be)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_NO_SERVICE_BACKEND);

	/* A backend reached back out of the device the packet came in on is remote: its replies
	 * would bypass this node, so the flow is SNAT'd to the node. Anything else (a local pod,
	 * the node itself) is handed to the stack with the client address kept. */
	to_backend = *p;
	to_backend.daddr = be->addr;
	to_backend.dport = be->port;
	rc = np_fib_lookup(ctx, &to_backend, &fib);
	remote = (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) &&
		 fib.ifindex == np_ctx_ifindex(ctx);

	np_ct_init(&fwd, p, now, NP_CT_F_SERVICE);
	fwd.nat_daddr = be->addr;
	fwd.nat_dport = be->port;
	fwd.backend_id = backend_id;
	fwd.rev_nat_id = svc->rev_nat_id;
	fwd.packets = 1;
	fwd.bytes = np_ctx_len(ctx);

	__builtin_memset(&rev, 0, sizeof(rev));
	rev.flags = NP_CT_F_REPLY;
	rev.expires = fwd.expires;
	rev.backend_id = backend_id;
	rev.rev_nat_id = svc->rev_nat_id;
	rev.nat_saddr = p->daddr;
	rev.nat_sport = p->dport;

	if (remote) {
		/* Before any state is created: a packet that cannot be forwarded holds no port. */
		if (p->ttl <= 1)
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TTL_EXCEEDED);
		fwd.flags |= NP_CT_F_SNAT | NP_CT_F_REDIRECT;
		fwd.nat_saddr = np_cfg.node_ip;
		rev.flags |= NP_CT_F_SNAT | NP_CT_F_REDIRECT;
		rev.nat_daddr = p->saddr;
		rev.nat_dport = p->sport;
	}

	/* The reply tuple comes from the one definition the conntrack library uses to pair the two
	 * directions; for SNAT its destination port is the one allocated below. */
	np_ct_key_from_pkt(&fwd_key, p, NP_CT_INGRESS);
	np_ct_peer_key(&rev_key, &fwd_key, &fwd);
	if (remote) {
		__u16 port = np_snat_alloc(ctx, &rev_key, &rev, bpf_ntohs(p->sport), np_cfg.snat_port_min,
					   np_cfg.snat_port_max, now);

		if (!port)
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_NAT_NO_MAPPING);
		fwd.nat_sport = bpf_htons(port);
	} else {
		/* A leftover under this reply key in the main table (its flow's service entry evicted)
		 * would be found first and keep the new flow from ever being confirmed. */
		np_ct_delete(&NP_MAP_CT, NP_CT_TABLE_MAIN, &rev_key);
		if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &rev_key, &rev) < 0)
			return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	}

	if (np_ct_insert(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &fwd_key, &fwd) < 0) {
		np_ct_delete(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &rev_key);
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_CT_CREATE_FAILED);
	}
	return np_finish(ctx, p, &fwd, NP_METRIC_INGRESS);
}

SEC("tc")
int np_from_netdev(struct __sk_buff *ctx)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	struct np_pkt p;
	__u64 now;
	int ret;

	ret = np_parse(ctx, &p);
	if (ret == NP_PARSE_PASS)
		return NP_CTX_PASS;
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);

	now = np_ct_now();
	np_ct_key_from_pkt(&key, &p, NP_CT_INGRESS);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (e) {
		if (np_ct_usable(e, &p, now)) {
			__u64 expires = np_ct_refresh(e, &p, now, np_ctx_len(ctx), false);

			if (expires)
				np_ct_sync_peer(&NP_MAP_CT, &key, e, expires);
			return np_finish(ctx, &p, e, NP_METRIC_INGRESS);
		}
		np_ct_forget(&NP_MAP_CT, NP_CT_TABLE_MAIN, &key, e);
	}
	e = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, &key);
	if (e) {
		if (np_ct_usable(e, &p, now))
			return np_ct_embryonic_hit(ctx, &p, &key, e, now, NP_METRIC_INGRESS);
		np_ct_forget(&NP_MAP_CT_EMBRYONIC, NP_CT_TABLE_EMBRYONIC, &key, e);
	}
	return np_lb_new_flow(ctx, &p, now);
}

SEC("tc")
int np_to_netdev(struct __sk_buff *ctx)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	struct np_pkt p;
	__u64 now, expires;

	/* Egress sees what the stack built: anything we cannot parse is not ours to judge. */
	if (np_parse(ctx, &p) != NP_PARSE_OK)
		return NP_CTX_PASS;

	now = np_ct_now();
	np_ct_key_from_pkt(&key, &p, NP_CT_EGRESS);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (e && !np_ct_expired(e, now)) {
		expires = np_ct_refresh(e, &p, now, np_ctx_len(ctx), false);
		if (expires)
			np_ct_sync_peer(&NP_MAP_CT, &key, e, expires);
		return np_finish(ctx, &p, e, NP_METRIC_EGRESS);
	}
	/* Only reply entries are keyed for egress: this never confirms, it marks the reply seen. */
	e = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, &key);
	if (!e || np_ct_expired(e, now))
		return NP_CTX_PASS;
	return np_ct_embryonic_hit(ctx, &p, &key, e, now, NP_METRIC_EGRESS);
}

char LICENSE[] SEC("license") = "GPL";
