/* SPDX-License-Identifier: Apache-2.0 */
/* The pod path (lxc.bpf.c, and host.bpf.c's delivery to local pods), on the context shim.
 *
 * From a pod (tc ingress of its host-side veth): ARP for the pod's router is answered here with
 * the veth's MAC; a packet whose source is not the pod's own address is dropped
 * (INVALID_SOURCE_IP); a packet to a service frontend the socket hook did not translate (socket
 * LB off, a pod outside the hooked cgroup) is translated per packet, with conntrack in the same
 * tables as NodePort (lib/ct.h) and its reply translated back wherever it arrives; then the
 * packet is routed: to a local pod with bpf_redirect_peer(), elsewhere through the FIB
 * (bpf_redirect() with the neighbour's MAC, or bpf_redirect_neigh() when the kernel does not know
 * it yet). What the FIB will not forward (this node's addresses, no route, too big for the
 * device) goes to the stack, counted by the FIB's answer (np_lxcstat_v1).
 *
 * To a pod from the native device: host.bpf.c calls np_pod_from_netdev() once the NodePort path
 * passed the packet (translated back or not ours), which delivers it to a local pod with
 * bpf_redirect_peer(). To a pod from the node's stack (tc egress of its veth): replies of
 * host-network backends get their frontend back.
 *
 * With legacy host routing (np_pod_cfg.bpf_host_routing = 0) everything is the same except that
 * packets go to the stack instead of being redirected.
 *
 * ICMP errors about a pod-started service flow (a local or host-network backend's port
 * unreachable) reach the pod translated back (lib/icmp.h); errors from a remote backend arrive on
 * the native device, where the NodePort path's ICMP handling finds the same reply entry. */
#ifndef NP_LIB_POD_H
#define NP_LIB_POD_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/ct.h"
#include "lib/drop.h"
#include "lib/fib.h"
#include "lib/icmp.h"
#include "lib/lb.h"
#include "lib/maps.h"
#include "lib/metrics.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "np_ct.h"
#include "np_drop.h"
#include "np_lb.h"
#include "np_lxc.h"

const volatile struct np_pod_config np_pod_cfg = {
	.bpf_host_routing = 0,
};

/* Local endpoints: the agent writes, lxc.bpf.c and host.bpf.c read. pod IPv4 -> np_endpoint. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct np_endpoint);
	__uint(max_entries, NP_DEFAULT_LXC_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_LXC SEC(".maps");

/* Pod path counters: programs count, the agent sums per CPU. enum np_lxc_stat -> packets. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_lxc_counter);
	__uint(max_entries, NP_LXC_STATS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_LXC_STATS SEC(".maps");

static __always_inline void np_pod_count(__u32 stat)
{
	struct np_lxc_counter *c = bpf_map_lookup_elem(&NP_MAP_LXC_STATS, &stat);

	if (c)
		c->packets++;
}

static __always_inline const struct np_endpoint *np_pod_endpoint(__be32 addr)
{
	return bpf_map_lookup_elem(&NP_MAP_LXC, &addr);
}

/* ARP as Ethernet carries it for IPv4 (RFC 826): the fixed 28 bytes after the Ethernet header. */
struct np_arp4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

#define NP_ARP_REQUEST 1
#define NP_ARP_REPLY   2

/* An ARP request from the pod on this veth for another address (its router: the pod's only
 * route is via it) is answered with the veth's MAC, out of the veth back into the pod. Requests
 * for the pod's own address (duplicate detection, gratuitous ARP) and replies go to the stack;
 * anything that is not Ethernet/IPv4 ARP of full length is dropped. */
static __always_inline int np_pod_arp(np_ctx_t *ctx)
{
	const struct np_endpoint *ep;
	struct ethhdr *eth;
	struct np_arp4 *arp;
	__be32 spa, tpa;

	if (np_ctx_pull(ctx, ETH_HLEN + sizeof(*arp)) < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
	eth = np_ctx_data(ctx);
	arp = (void *)(eth + 1);
	if ((void *)(arp + 1) > np_ctx_data_end(ctx))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != ETH_ALEN || arp->plen != 4)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_INVALID_PACKET);
	if (arp->op != bpf_htons(NP_ARP_REQUEST))
		return NP_CTX_PASS;
	spa = arp->spa;
	tpa = arp->tpa;
	if (spa == 0 || spa == tpa)
		return NP_CTX_PASS;
	ep = np_pod_endpoint(spa);
	if (!ep || ep->ifindex != np_ctx_ifindex(ctx))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_INVALID_SOURCE_IP);

	/* The request becomes its reply in place. */
	__builtin_memcpy(eth->h_dest, arp->sha, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->lxc_mac, ETH_ALEN);
	arp->op = bpf_htons(NP_ARP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->sha, ep->lxc_mac, ETH_ALEN);
	arp->spa = tpa;
	arp->tpa = spa;
	np_pod_count(NP_LXC_STAT_ARP);
	return np_ctx_redirect(ctx, np_ctx_ifindex(ctx));
}

/* The IPv4 source of a packet from the pod on this veth is its own address. */
static __always_inline bool np_pod_source_ok(np_ctx_t *ctx, __be32 saddr)
{
	const struct np_endpoint *ep = np_pod_endpoint(saddr);

	return ep && ep->ifindex == np_ctx_ifindex(ctx);
}

/* Delivers a (translated) packet to the local pod ep: its MACs, one hop less, into the pod's
 * namespace with bpf_redirect_peer(). Returns a verdict or a negative drop reason. */
static __always_inline int np_pod_deliver(np_ctx_t *ctx, struct np_pkt *p,
					  const struct np_endpoint *ep)
{
	int ret;

	if (!np_pod_cfg.bpf_host_routing) {
		np_pod_count(NP_LXC_STAT_LEGACY);
		return NP_CTX_PASS;
	}
	ret = np_ttl_dec(ctx, p);
	if (ret < 0)
		return ret;
	if (np_ctx_store(ctx, 0, ep->pod_mac, ETH_ALEN) < 0 ||
	    np_ctx_store(ctx, ETH_ALEN, ep->lxc_mac, ETH_ALEN) < 0)
		return -NP_DROP_WRITE_ERROR;
	np_pod_count(NP_LXC_STAT_PEER);
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* Routes a packet from a pod: a local pod by its endpoint, anything else by the FIB. Returns a
 * verdict or a negative drop reason. */
static __always_inline int np_pod_route(np_ctx_t *ctx, struct np_pkt *p)
{
	const struct np_endpoint *ep = np_pod_endpoint(p->daddr);
	struct bpf_fib_lookup fib;
	struct bpf_redir_neigh nh;
	int rc;

	if (ep)
		return np_pod_deliver(ctx, p, ep);
	if (!np_pod_cfg.bpf_host_routing) {
		np_pod_count(NP_LXC_STAT_LEGACY);
		return NP_CTX_PASS;
	}
	rc = np_fib_lookup(ctx, p, &fib);  /* through the route cache (lib/fib.h) */
	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		int err = np_ttl_dec(ctx, p);

		if (err < 0)
			return err;
		if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
			if (np_ctx_store(ctx, 0, fib.dmac, ETH_ALEN) < 0 ||
			    np_ctx_store(ctx, ETH_ALEN, fib.smac, ETH_ALEN) < 0)
				return -NP_DROP_WRITE_ERROR;
			np_pod_count(NP_LXC_STAT_FIB);
			return np_ctx_redirect(ctx, fib.ifindex);
		}
		__builtin_memset(&nh, 0, sizeof(nh));
		nh.nh_family = AF_INET;
		nh.ipv4_nh = fib.ipv4_dst;
		np_pod_count(NP_LXC_STAT_NEIGH);
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	/* This node's own addresses, no route, a route that refuses, too big for the device: the
	 * stack knows what to do (deliver, answer with an ICMP error). */
	if (rc >= 0 && rc < NP_LXC_STATS - NP_LXC_STAT_STACK)
		np_pod_count(NP_LXC_STAT_STACK + rc);
	return NP_CTX_PASS;
}

/* The reply of a pod-started service flow (backend -> pod), found under the tuple as it arrives:
 * translated back to the frontend. Returns 1 (translated), 0 (not such a reply), or a negative
 * drop reason. */
static __always_inline int np_pod_rev_xlate(np_ctx_t *ctx, struct np_pkt *p, __u64 now)
{
	struct np_ct_key key;
	struct np_ct_entry *e;
	__u64 expires;
	int ret;

	np_ct_key_from_pkt(&key, p, NP_CT_INGRESS);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (!e || !(e->flags & NP_CT_F_LXC) || !(e->flags & NP_CT_F_REPLY) ||
	    np_ct_expired(e, now))
		return 0;
	expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), false);
	if (expires)
		np_ct_sync_peer(&NP_MAP_CT, &key, e, expires);
	ret = np_nat_apply(ctx, p, e);
	return ret < 0 ? ret : 1;
}

/* An ICMP error about a packet of a pod-started service flow (a local backend's port
 * unreachable, a host-network backend's fragmentation needed) goes to the pod about the packet
 * as the pod sent it: translated by the flow's reply entry (lib/icmp.h), like the replies.
 * Returns 1 (translated), 0 (not such an error), or a negative drop reason. */
static __always_inline int np_pod_icmp_rev_xlate(np_ctx_t *ctx, struct np_pkt *p, __u64 now)
{
	struct np_icmp_err q;
	struct np_ct_key key;
	struct np_ct_entry *e;
	int ret;

	if (!np_icmp_error_parse(ctx, p, &q))
		return 0;
	np_icmp_error_key(&key, &q, NP_CT_INGRESS);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (!e || !(e->flags & NP_CT_F_LXC) || !(e->flags & NP_CT_F_REPLY) ||
	    np_ct_expired(e, now))
		return 0;
	ret = np_icmp_error_rev_nat(ctx, p, &q, e);
	return ret < 0 ? ret : 1;
}

/* Only a SYN opens a TCP connection (as on the NodePort path). */
static __always_inline bool np_pod_opens(const struct np_pkt *p)
{
	return p->proto != IPPROTO_TCP ||
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK | TCP_FLAG_RST | TCP_FLAG_FIN)) == TCP_FLAG_SYN;
}

/* How many source ports a pod's new service flow tries when its reply tuple is taken. */
#define NP_POD_PORT_TRIES 8
/* Where a moved source port comes from: Linux's default ephemeral range, the ports a pod's own
 * connections come from anyway (net.ipv4.ip_local_port_range). */
#define NP_POD_PORT_MIN 32768
#define NP_POD_PORT_MAX 60999

/* True if a live flow holds the reply key rkey in the main table (a leftover there is deleted,
 * lib/nat.h). */
static __always_inline bool np_pod_reply_taken(const struct np_ct_key *rkey, __u64 now)
{
	return !np_snat_port_free_in(&NP_MAP_CT, NP_CT_TABLE_MAIN, rkey, now);
}

/* State of one np_pod_move_sport() run, for the bpf_loop() callback. */
struct np_pod_port_search {
	const struct np_ct_key *key;
	struct np_ct_entry *fwd;
	struct np_ct_key *rkey;
	__u64 now;
	bool found;
};

static long np_pod_port_try(__u32 i, void *data)
{
	struct np_pod_port_search *t = data;
	__u16 port = NP_POD_PORT_MIN + bpf_get_prandom_u32() % (NP_POD_PORT_MAX - NP_POD_PORT_MIN + 1);

	t->fwd->nat_sport = bpf_htons(port);
	np_ct_peer_key(t->rkey, t->key, t->fwd);
	if (np_pod_reply_taken(t->rkey, t->now))
		return 0;
	t->found = true;
	return 1;
}

/* Two of a pod's connections to different frontends (or to one frontend through different
 * paths) can come from the same source port and be sent to the same backend: their packets to
 * the backend, and the backend's replies, would be one 5-tuple, and the second flow's reply entry
 * would take the first one's replies. Like netfilter's NAT (nf_nat_used_tuple), the new flow then
 * leaves from another source port, random in the ephemeral range: fwd gets NP_CT_F_SNAT with the
 * pod's own address and the new port, rkey the reply key that goes with it. A pod's socket that
 * talks to the backend directly from that very port is not seen (it has no entry here; netfilter
 * would see it in its conntrack). Returns 0 or a negative drop reason. */
static __always_inline int np_pod_move_sport(const struct np_pkt *p, const struct np_ct_key *key,
					     struct np_ct_entry *fwd, struct np_ct_key *rkey,
					     __u64 now)
{
	struct np_pod_port_search t = {
		.key = key, .fwd = fwd, .rkey = rkey, .now = now, .found = false,
	};

	fwd->flags |= NP_CT_F_SNAT;
	if (!fwd->nat_saddr)
		fwd->nat_saddr = p->saddr;
	bpf_loop(NP_POD_PORT_TRIES, np_pod_port_try, &t, 0);
	if (!t.found)
		return -NP_DROP_NAT_NO_MAPPING;
	np_pod_count(NP_LXC_STAT_PORT_MOVED);
	return 0;
}

/* A pod's packet to a service frontend: its flow's entry translates it, or it starts a flow to
 * a backend chosen as for any in-cluster client (the frontend's INT entry). Both entries go to
 * the main table at once: the client is a local pod whose source address was checked. A pod that
 * reaches itself (hairpin) gets the connection from NP_LXC_HAIRPIN_ADDR_HOST, or its own kernel
 * would refuse a packet from its own address. Returns 1 (translated), 0 (no frontend), or a
 * negative drop reason. */
static __always_inline int np_pod_svc_xlate(np_ctx_t *ctx, struct np_pkt *p, __u64 now)
{
	struct np_ct_entry fwd, *e;
	struct np_ct_key key, rkey;
	struct np_svc_key skey;
	struct np_svc_val *svc;
	struct np_backend *be;
	struct np_lb_client client = { .id = p->saddr, .kind = NP_AFFINITY_CLIENT_ADDR };
	__u32 backend_id = 0;
	__u64 expires;
	int ret;

	np_ct_key_from_pkt(&key, p, NP_CT_LXC);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (e && !np_ct_expired(e, now) && !np_ct_reopens(e, p) &&
	    (np_backend_known(e->backend_id) || bpf_map_lookup_elem(&NP_MAP_BACKENDS, &e->backend_id))) {
		expires = np_ct_refresh(e, p, now, np_ctx_len(ctx), false);
		if (expires)
			np_ct_sync_peer(&NP_MAP_CT, &key, e, expires);
		ret = np_nat_apply(ctx, p, e);
		return ret < 0 ? ret : 1;
	}

	svc = np_lb_lookup(&skey, p->daddr, p->dport, p->proto);
	if (!svc)
		return 0;
	if (e)
		np_ct_forget(&NP_MAP_CT, NP_CT_TABLE_MAIN, &key, e);
	svc = np_lb_internal(&skey, svc);
	if (!svc)
		return -NP_DROP_NO_SERVICE_BACKEND;
	if (p->frag == NP_FRAG_LATER)
		return -NP_DROP_FRAG_NOT_FOUND;
	if (!e && !np_pod_opens(p))
		return -NP_DROP_CT_CANT_CREATE;
	be = np_lb_pick(&skey, svc, np_lb_flow_hash(p->saddr, p->sport, p->dport, p->proto), &client,
			true, &backend_id);
	if (!be)
		return -NP_DROP_NO_SERVICE_BACKEND;

	np_ct_init(&fwd, p, now, NP_CT_F_SERVICE | NP_CT_F_LXC);
	fwd.expires = now + np_ct_lifetime(p->proto, fwd.flags, false);
	fwd.nat_daddr = be->addr;
	fwd.nat_dport = be->port;
	fwd.backend_id = backend_id;
	fwd.rev_nat_id = svc->rev_nat_id;
	if (be->addr == p->saddr) {
		fwd.flags |= NP_CT_F_SNAT;
		fwd.nat_saddr = bpf_htonl(NP_LXC_HAIRPIN_ADDR_HOST);
		fwd.nat_sport = p->sport;
	}

	/* The reply entry, built where the conntrack library pairs the two directions: under a key no
	 * other live flow holds. */
	np_ct_peer_key(&rkey, &key, &fwd);
	if (np_pod_reply_taken(&rkey, now)) {
		ret = np_pod_move_sport(p, &key, &fwd, &rkey, now);
		if (ret < 0)
			return ret;
	}
	{
		struct np_ct_entry rev;

		__builtin_memset(&rev, 0, sizeof(rev));
		rev.flags = NP_CT_F_REPLY | NP_CT_F_LXC | (fwd.flags & NP_CT_F_SNAT);
		rev.expires = fwd.expires;
		rev.backend_id = backend_id;
		rev.rev_nat_id = svc->rev_nat_id;
		rev.nat_saddr = p->daddr;
		rev.nat_sport = p->dport;
		if (fwd.flags & NP_CT_F_SNAT) {
			rev.nat_daddr = p->saddr;
			rev.nat_dport = p->sport;
		}
		if (np_ct_insert(&NP_MAP_CT, NP_CT_TABLE_MAIN, &rkey, &rev) < 0)
			return -NP_DROP_CT_CREATE_FAILED;
	}
	fwd.packets = 1;
	fwd.bytes = np_ctx_len(ctx);
	if (np_ct_insert(&NP_MAP_CT, NP_CT_TABLE_MAIN, &key, &fwd) < 0) {
		np_ct_delete(&NP_MAP_CT, NP_CT_TABLE_MAIN, &rkey);
		return -NP_DROP_CT_CREATE_FAILED;
	}
	np_pod_count(NP_LXC_STAT_XLATE);
	ret = np_nat_apply(ctx, p, &fwd);
	return ret < 0 ? ret : 1;
}

/* tc ingress of a pod's veth: everything the pod sends. */
static __always_inline int np_pod_from_container(np_ctx_t *ctx)
{
	struct np_pkt p;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u64 now;
	int ret;

	if (np_ctx_pull(ctx, ETH_HLEN) < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
	eth = np_ctx_data(ctx);
	if ((void *)(eth + 1) > np_ctx_data_end(ctx))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return np_pod_arp(ctx);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return NP_CTX_PASS; /* IPv6 is not configured on pods: the stack decides */
	if (np_ctx_pull(ctx, ETH_HLEN + sizeof(*ip)) < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
	ip = np_ctx_data(ctx) + ETH_HLEN;
	if ((void *)(ip + 1) > np_ctx_data_end(ctx))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_TRUNCATED_HEADER);
	if (ip->version != 4 || ip->ihl < 5)
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_INVALID_PACKET);
	if (!np_pod_source_ok(ctx, ip->saddr))
		return np_drop(ctx, NP_METRIC_INGRESS, NP_DROP_INVALID_SOURCE_IP);

	ret = np_parse(ctx, &p);
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	if (ret == NP_PARSE_PASS)
		return NP_CTX_PASS; /* another L4 protocol, an ICMP fragment: the stack routes it */
	now = np_ct_now();
	if (p.proto == IPPROTO_ICMP) {
		ret = np_pod_icmp_rev_xlate(ctx, &p, now);
	} else {
		ret = np_pod_rev_xlate(ctx, &p, now);
		if (ret == 0)
			ret = np_pod_svc_xlate(ctx, &p, now);
	}
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	ret = np_pod_route(ctx, &p);
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	np_metric_add(NP_METRIC_INGRESS, NP_METRIC_FORWARDED, np_ctx_len(ctx));
	return ret;
}

/* tc egress of a pod's veth: what the node's stack sends the pod. Replies of a host-network
 * backend (the node answering a pod's service flow) get their frontend back. */
static __always_inline int np_pod_to_container(np_ctx_t *ctx)
{
	struct np_pkt p;
	int ret;

	if (np_parse(ctx, &p) != NP_PARSE_OK)
		return NP_CTX_PASS;
	if (p.proto == IPPROTO_ICMP)
		ret = np_pod_icmp_rev_xlate(ctx, &p, np_ct_now());
	else
		ret = np_pod_rev_xlate(ctx, &p, np_ct_now());
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_EGRESS, -ret);
	return NP_CTX_PASS;
}

/* host.bpf.c, tc ingress of a native device, after the NodePort path (and masquerade) passed p
 * (translated back or not a service packet; p says where it goes now): a packet for a local pod
 * gets a pod-started service flow's frontend back if it is that flow's reply, then goes straight
 * into the pod's namespace. Anything else is the stack's. */
static __always_inline int np_pod_from_netdev(np_ctx_t *ctx, struct np_pkt *p)
{
	const struct np_endpoint *ep;
	int ret;

	if (!np_pod_cfg.bpf_host_routing)
		return NP_CTX_PASS;
	ep = np_pod_endpoint(p->daddr);
	if (!ep)
		return NP_CTX_PASS;
	/* A pod-started service flow whose packets also left masqueraded (a backend outside the
	 * cluster): the NodePort path undid the masquerade only, and the stack's way in (the veth's
	 * tc egress, np_pod_to_container) is skipped by the redirect, so the service is undone here.
	 * For any other packet this finds no entry. */
	if (p->proto == IPPROTO_ICMP)
		ret = np_pod_icmp_rev_xlate(ctx, p, np_ct_now());
	else
		ret = np_pod_rev_xlate(ctx, p, np_ct_now());
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	ret = np_pod_deliver(ctx, p, ep);
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	return ret;
}

#endif /* NP_LIB_POD_H */
