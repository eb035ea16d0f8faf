// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing (cgroup v2). A connect() or sendmsg() to a service address is
 * translated to a backend once per socket, so its packets need no NAT and no conntrack; recvmsg()
 * and getpeername() show the service address back to the application. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/metrics.h"
#include "lib/lb.h"
#include "np_config.h"

#ifndef EHOSTUNREACH
#define EHOSTUNREACH 113
#endif

const volatile struct np_sock_config np_cfg = {
	.nodeport_min = NP_DEFAULT_NODEPORT_MIN,
	.nodeport_max = NP_DEFAULT_NODEPORT_MAX,
};

#define SYS_REJECT 0
#define SYS_PROCEED 1

static __always_inline bool np_sock_proto_ok(const struct bpf_sock_addr *ctx)
{
	return ctx->protocol == IPPROTO_TCP || ctx->protocol == IPPROTO_UDP;
}

/* <node address>:<NodePort> and 127.0.0.0/8:<NodePort> from inside the node use the NodePort
 * wildcard entry; node addresses are this node's and every node listed in np_nodes4_v1. */
static __always_inline bool np_sock_nodeport_addr(__be32 addr, __u16 port)
{
	if (port < np_cfg.nodeport_min || port > np_cfg.nodeport_max)
		return false;
	if ((bpf_ntohl(addr) >> 24) == 127 || addr == np_cfg.node_ip)
		return true;
	return bpf_map_lookup_elem(&NP_MAP_NODES, &addr) != NULL;
}

/* Translates ctx's destination when it is a service frontend. Returns 0, or -EHOSTUNREACH when
 * the service has no backend (the caller then refuses the connect/send). */
static __always_inline int np_sock4_xlate_fwd(struct bpf_sock_addr *ctx)
{
	struct np_sock_rev_key rkey = {};
	struct np_sock_rev_val rval = {};
	struct np_svc_key key;
	struct np_svc_val *svc, *rsvc;
	struct np_lb_client client;
	struct np_backend *be;
	__be32 addr = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = (__u8)ctx->protocol;
	__u32 backend_id = 0, hash;
	__u64 cookie;

	svc = np_lb_lookup(&key, addr, port, proto);
	if (!svc && np_sock_nodeport_addr(addr, bpf_ntohs(port)))
		svc = np_lb_lookup(&key, 0, port, proto);
	if (!svc)
		return 0;
	/* Processes on the node are in-cluster clients: an externalTrafficPolicy=Local frontend
	 * serves them from all its backends (its INT entry). */
	rsvc = np_lb_internal(&key, svc);

	cookie = bpf_get_socket_cookie(ctx);
	client.id = bpf_get_netns_cookie(ctx);
	client.kind = NP_AFFINITY_CLIENT_NETNS;
	/* TCP: a fresh choice per connection. UDP: the socket cookie, so one socket keeps talking to
	 * one backend even when every datagram goes through sendmsg(). */
	hash = proto == IPPROTO_UDP ? (__u32)cookie : bpf_get_prandom_u32();
	be = rsvc ? np_lb_pick(&key, rsvc, hash, &client, false, &backend_id) : NULL;
	if (!be) {
		np_metric_add(NP_METRIC_SOCK, NP_DROP_NO_SERVICE_BACKEND, 0);
		return -EHOSTUNREACH;
	}

	rkey.cookie = cookie;
	rkey.addr = be->addr;
	rkey.port = be->port;
	rval.addr = addr;
	rval.port = port;
	rval.rev_nat_id = svc->rev_nat_id;
	/* Without the reverse entry getpeername()/recvmsg() would show the backend: better to keep
	 * the service address then and let the packet path handle it. */
	if (bpf_map_update_elem(&NP_MAP_SOCK_REV, &rkey, &rval, BPF_ANY) < 0)
		return 0;

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	np_metric_add(NP_METRIC_SOCK, NP_METRIC_FORWARDED, 0);
	return 0;
}

static __always_inline void np_sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct np_sock_rev_key rkey = {};
	struct np_sock_rev_val *rval;

	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.addr = ctx->user_ip4;
	rkey.port = (__be16)ctx->user_port;
	rval = bpf_map_lookup_elem(&NP_MAP_SOCK_REV, &rkey);
	if (!rval)
		return;
	ctx->user_ip4 = rval->addr;
	ctx->user_port = (__u32)rval->port;
}

SEC("cgroup/connect4")
int np_sock4_connect(struct bpf_sock_addr *ctx)
{
	if (!np_sock_proto_ok(ctx))
		return SYS_PROCEED;
	if (np_sock4_xlate_fwd(ctx) < 0) {
		bpf_set_retval(-EHOSTUNREACH);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/sendmsg4")
int np_sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	if (!np_sock_proto_ok(ctx))
		return SYS_PROCEED;
	if (np_sock4_xlate_fwd(ctx) < 0) {
		bpf_set_retval(-EHOSTUNREACH);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/recvmsg4")
int np_sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	if (np_sock_proto_ok(ctx))
		np_sock4_xlate_rev(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int np_sock4_getpeername(struct bpf_sock_addr *ctx)
{
	if (np_sock_proto_ok(ctx))
		np_sock4_xlate_rev(ctx);
	return SYS_PROCEED;
}

char LICENSE[] SEC("license") = "GPL";
