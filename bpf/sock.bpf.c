// SPDX-License-Identifier: GPL-2.0
/* Socket-level load balancing (cgroup v2). A connect() or sendmsg() to a service address is
 * translated to a backend once per socket, so its packets need no NAT and no conntrack; recvmsg()
 * and getpeername() show the service address back to the application, from the record the
 * translation left (np_lb.h: a connected socket's, TCP or UDP through connect(), in a hash by its
 * cookie, deleted on release; what an unconnected UDP socket sends to in its own storage). */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/metrics.h"
#include "lib/lb.h"
#include "lib/trace.h"
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

/* Connected sockets' reverse records (np_lb.h): socket cookie -> backend and service. The name
 * says TCP, which it held first; UDP sockets that connect() are in it too. Only this object uses
 * it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct np_sock_rev_slot);
	__uint(max_entries, NP_DEFAULT_SOCK_REV_TCP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_SOCK_REV_TCP SEC(".maps");

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

/* Records on the socket that its traffic to backend be stands for service addr:port, so its
 * replies can be shown as coming from the service. Returns 1 when the record is new (the
 * socket's first translation to this backend for this service: worth a flow event), 0 when the
 * socket had it already, -1 when it cannot be kept (no socket, no memory). */
static __always_inline int np_sock_rev_remember(struct bpf_sock_addr *ctx, const struct np_backend *be,
						__be32 addr, __be16 port, __u16 rev_nat_id)
{
	struct np_sock_rev_store *st;
	struct np_sock_rev_slot *s = NULL;
	__u32 i, idx = NP_SOCK_REV_SLOTS;
	int fresh = 0;

	if (!ctx->sk)
		return -1;
	st = bpf_sk_storage_get(&NP_MAP_SOCK_REV, ctx->sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return -1;
	bpf_spin_lock(&st->lock);
	/* The backend's slot if it has one (a reconnect, the next datagram), else a free one, else
	 * the oldest. */
	for (i = 0; i < NP_SOCK_REV_SLOTS; i++) {
		if (st->slot[i].backend_addr == be->addr && st->slot[i].backend_port == be->port) {
			idx = i;
			break;
		}
		if (idx == NP_SOCK_REV_SLOTS && !st->slot[i].backend_addr)
			idx = i;
	}
	if (idx >= NP_SOCK_REV_SLOTS) {
		idx = st->next % NP_SOCK_REV_SLOTS;
		st->next++;
	}
	if (idx < NP_SOCK_REV_SLOTS)
		s = &st->slot[idx];
	if (s) {
		fresh = s->backend_addr != be->addr || s->backend_port != be->port || s->addr != addr ||
			s->port != port || s->rev_nat_id != rev_nat_id;
		s->backend_addr = be->addr;
		s->backend_port = be->port;
		s->addr = addr;
		s->port = port;
		s->rev_nat_id = rev_nat_id;
	}
	bpf_spin_unlock(&st->lock);
	return fresh;
}

/* A connected socket's record, by its cookie (its one peer): returns 1 when it is new (a TCP
 * connection always is; a UDP socket's connect() to the backend it has is not), 0 when the socket
 * had it, or what np_sock_rev_remember() returns when the hash is full. A preallocated hash entry
 * instead of socket storage: socket storage allocates, charges the memory cgroup and frees by RCU
 * for every socket (sock_bench: ~7 us a UDP connect() with it). */
static __always_inline int np_sock_rev_remember_connected(struct bpf_sock_addr *ctx, __u64 cookie,
							  const struct np_backend *be, __be32 addr,
							  __be16 port, __u16 rev_nat_id, __u8 proto)
{
	struct np_sock_rev_slot s = {
		.backend_addr = be->addr,
		.addr = addr,
		.backend_port = be->port,
		.port = port,
		.rev_nat_id = rev_nat_id,
	};

	if (proto == IPPROTO_UDP) {
		struct np_sock_rev_slot *old = bpf_map_lookup_elem(&NP_MAP_SOCK_REV_TCP, &cookie);

		if (old && old->backend_addr == s.backend_addr && old->backend_port == s.backend_port &&
		    old->addr == s.addr && old->port == s.port && old->rev_nat_id == s.rev_nat_id)
			return 0;
	}
	if (bpf_map_update_elem(&NP_MAP_SOCK_REV_TCP, &cookie, &s, BPF_ANY) == 0)
		return 1;
	return np_sock_rev_remember(ctx, be, addr, port, rev_nat_id);
}

/* Translates ctx's destination when it is a service frontend. Returns 0, or -EHOSTUNREACH when
 * the service has no backend (the caller then refuses the connect/send). */
static __always_inline int np_sock4_xlate_fwd(struct bpf_sock_addr *ctx, bool sendmsg)
{
	struct np_svc_key key;
	struct np_svc_val *svc, *rsvc;
	struct np_lb_client client;
	struct np_backend *be;
	__be32 addr = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = (__u8)ctx->protocol;
	__u32 backend_id = 0, hash;
	__u64 cookie;
	__be32 saddr = 0;
	int rec;

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

	/* Without the reverse record getpeername()/recvmsg() would show the backend: better to keep
	 * the service address then and let the packet path handle it. */
	if (!sendmsg)
		rec = np_sock_rev_remember_connected(ctx, cookie, be, addr, port, svc->rev_nat_id, proto);
	else
		rec = np_sock_rev_remember(ctx, be, addr, port, svc->rev_nat_id);
	if (rec < 0)
		return 0;

	ctx->user_ip4 = be->addr;
	ctx->user_port = (__u32)be->port;
	if (rec > 0) {
		if (sendmsg)
			saddr = ctx->msg_src_ip4;
		else if (ctx->sk)
			saddr = ctx->sk->src_ip4;
		np_trace_sock_xlate(cookie, client.id, saddr, addr, port, be->addr, be->port, proto,
				    svc->rev_nat_id);
	}
	np_metric_add(NP_METRIC_SOCK, NP_METRIC_FORWARDED, 0);
	return 0;
}

static __always_inline void np_sock4_xlate_rev(struct bpf_sock_addr *ctx)
{
	struct np_sock_rev_store *st;
	__be32 addr = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	__be32 svc_addr = 0;
	__be16 svc_port = 0;
	int i;

	{
		__u64 cookie = bpf_get_socket_cookie(ctx);
		struct np_sock_rev_slot *s = bpf_map_lookup_elem(&NP_MAP_SOCK_REV_TCP, &cookie);

		if (s && s->backend_addr == addr && s->backend_port == port) {
			ctx->user_ip4 = s->addr;
			ctx->user_port = (__u32)s->port;
			return;
		}
	}
	if (!ctx->sk)
		return;
	st = bpf_sk_storage_get(&NP_MAP_SOCK_REV, ctx->sk, NULL, 0);
	if (!st)
		return;
	bpf_spin_lock(&st->lock);
	for (i = 0; i < NP_SOCK_REV_SLOTS; i++) {
		if (st->slot[i].backend_addr == addr && st->slot[i].backend_port == port) {
			svc_addr = st->slot[i].addr;
			svc_port = st->slot[i].port;
			break;
		}
	}
	bpf_spin_unlock(&st->lock);
	if (!svc_addr)
		return;
	ctx->user_ip4 = svc_addr;
	ctx->user_port = (__u32)svc_port;
}

SEC("cgroup/connect4")
int np_sock4_connect(struct bpf_sock_addr *ctx)
{
	if (!np_sock_proto_ok(ctx))
		return SYS_PROCEED;
	if (np_sock4_xlate_fwd(ctx, false) < 0) {
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
	if (np_sock4_xlate_fwd(ctx, true) < 0) {
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

/* A connected socket's record goes with the socket. Looked up first: a lookup takes no lock, and
 * most sockets closing never went through a service. */
SEC("cgroup/sock_release")
int np_sock_release(struct bpf_sock *ctx)
{
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_lookup_elem(&NP_MAP_SOCK_REV_TCP, &cookie))
		bpf_map_delete_elem(&NP_MAP_SOCK_REV_TCP, &cookie);
	return SYS_PROCEED;
}

char LICENSE[] SEC("license") = "GPL";
