/* SPDX-License-Identifier: Apache-2.0 */
/* Service load-balancing ABI: the layouts of the service, backend, reverse-NAT and socket
 * reverse-NAT maps. All addresses and ports are in network byte order (__be*). */
#ifndef NP_LB_H
#define NP_LB_H

#include "np_abi.h"

/* Service lookup scope: external traffic (NodePort/LB from outside) or in-cluster. Only EXT is
 * used until externalTrafficPolicy=Local gets a second, internal entry. */
enum np_lb_scope {
	NP_LB_SCOPE_EXT = 0,
	NP_LB_SCOPE_INT = 1,
};

/* np_svc4_v1: agent writes, tc/XDP/socket programs read. HASH.
 * (frontend address, port, protocol, scope, slot) -> slot 0: the service ("master") entry,
 * slot 1..count: the selectable backends, count+1..: terminating backends kept for draining. */
struct np_svc_key {
	__be32 addr;   /* frontend address; 0.0.0.0 for the NodePort wildcard entry */
	__be16 dport;  /* frontend port */
	__u16 slot;    /* 0 = service entry, 1.. = backend slot */
	__u8 proto;    /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 scope;    /* enum np_lb_scope */
	__u8 pad[2];
};
NP_ASSERT_SIZE(struct np_svc_key, 12);

/* Service flags (np_svc_val.flags). */
enum np_svc_flags {
	NP_SVC_F_EXTERNAL_IP  = 1 << 0, /* spec.externalIPs frontend */
	NP_SVC_F_NODEPORT     = 1 << 1, /* NodePort frontend (node IP or wildcard) */
	NP_SVC_F_LOCAL_SCOPE  = 1 << 2, /* externalTrafficPolicy=Local */
	NP_SVC_F_HOSTPORT     = 1 << 3, /* hostPort frontend */
	NP_SVC_F_AFFINITY     = 1 << 4, /* sessionAffinity=ClientIP, timeout in backend_id */
	NP_SVC_F_LOADBALANCER = 1 << 5, /* LoadBalancer ingress IP frontend */
	NP_SVC_F_ROUTABLE     = 1 << 6, /* reachable from outside the node (not ClusterIP, not wildcard) */
};

struct np_svc_val {
	__u32 backend_id; /* slot > 0: backend ID; slot 0: session-affinity timeout in seconds */
	__u16 count;      /* slot 0: number of selectable backends (slots 1..count) */
	__u16 rev_nat_id; /* service (frontend) ID, key of np_revnat4_v1 */
	__u8 flags;       /* enum np_svc_flags */
	__u8 flags2;      /* reserved for scope/loopback flags */
	__u16 total;      /* slot 0: number of backend slots incl. terminating ones (count..total) */
};
NP_ASSERT_SIZE(struct np_svc_val, 12);

/* Backend state: only ACTIVE backends are selected for new connections while any exist;
 * existing connections to TERMINATING backends drain. */
enum np_backend_state {
	NP_BACKEND_ACTIVE = 0,
	NP_BACKEND_TERMINATING = 1,
};

/* np_backend4_v1: agent writes, programs read. HASH. backend ID (host order) -> backend. */
struct np_backend {
	__be32 addr;  /* backend address */
	__be16 port;  /* backend port */
	__u8 proto;   /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 state;   /* enum np_backend_state */
	__u8 pad[4];
};
NP_ASSERT_SIZE(struct np_backend, 12);

/* np_revnat4_v1: agent writes, programs read. HASH. rev_nat_id (host order) -> the frontend a
 * reply must appear to come from. */
struct np_revnat {
	__be32 addr;  /* frontend address */
	__be16 port;  /* frontend port */
	__u8 pad[2];
};
NP_ASSERT_SIZE(struct np_revnat, 8);

/* np_sockrev4_v1: socket programs write (connect/sendmsg) and read (recvmsg/getpeername). LRU.
 * (socket cookie, backend) -> the service address the application asked for. */
struct np_sock_rev_key {
	__u64 cookie; /* bpf_get_socket_cookie() */
	__be32 addr;  /* backend address */
	__be16 port;  /* backend port */
	__u8 pad[2];
};
NP_ASSERT_SIZE(struct np_sock_rev_key, 16);

struct np_sock_rev_val {
	__be32 addr;      /* service address */
	__be16 port;      /* service port */
	__u16 rev_nat_id; /* service ID */
};
NP_ASSERT_SIZE(struct np_sock_rev_val, 8);

/* np_nodes4_v1: agent writes, programs read. HASH. node IP -> node. Lets the socket LB treat
 * <any node IP>:<NodePort> like the NodePort wildcard. */
struct np_node_val {
	__u32 node_id; /* agent-assigned, stable while the node exists */
	__u32 flags;   /* NP_NODE_F_* */
};
NP_ASSERT_SIZE(struct np_node_val, 8);

enum np_node_flags {
	NP_NODE_F_LOCAL = 1 << 0, /* this node */
};

#endif /* NP_LB_H */
