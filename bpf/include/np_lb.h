/* SPDX-License-Identifier: Apache-2.0 */
/* Service load-balancing ABI: the layouts of the service, backend, reverse-NAT and socket
 * reverse-NAT maps. All addresses and ports are in network byte order (__be*). */
#ifndef NP_LB_H
#define NP_LB_H

#include <linux/bpf.h> /* struct bpf_spin_lock */

#include "np_abi.h"

/* Service lookup scope. Every frontend has an EXT entry, which is what traffic from outside the
 * node (tc/XDP) selects from. A frontend whose in-cluster view differs (a routable frontend of an
 * externalTrafficPolicy=Local service: EXT holds the node-local backends only, in-cluster clients
 * may use all) also has an INT entry with the same rev_nat_id, and NP_SVC_F2_TWO_SCOPES on its EXT
 * entry tells the socket LB to use it. */
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

/* Service flags (np_svc_val.flags2), slot 0 only. */
enum np_svc_flags2 {
	NP_SVC_F2_TWO_SCOPES  = 1 << 0, /* EXT entry: in-cluster clients use the INT entry */
	NP_SVC_F2_INT_LOCAL   = 1 << 1, /* internalTrafficPolicy=Local: the entry holds local backends only */
	NP_SVC_F2_MAGLEV      = 1 << 2, /* tc path: select through this entry's np_maglev4_v1 table */
};

struct np_svc_val {
	__u32 backend_id; /* slot > 0: backend ID; slot 0: session-affinity timeout in seconds */
	__u16 count;      /* slot 0: number of selectable backends (slots 1..count) */
	__u16 rev_nat_id; /* service (frontend) ID, key of np_revnat4_v1 */
	__u8 flags;       /* enum np_svc_flags */
	__u8 flags2;      /* slot 0: enum np_svc_flags2 */
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

/* np_sockrev4_v2: socket programs write (connect/sendmsg) and read (recvmsg/getpeername).
 * SK_STORAGE: the state lives with the socket and is freed with it, so nothing is ever evicted
 * while a socket lives, however many other sockets come and go (v1 was an LRU keyed by the socket
 * cookie: after ~262k connects every connect evicted one, and a long-idle socket could lose its
 * entry and see the backend's address). One record per socket: the backends it was sent to, each
 * with the service address the application used. A connected socket uses one slot; an
 * unconnected UDP socket sending to several services uses one per backend, and past
 * NP_SOCK_REV_SLOTS the oldest is reused. */
#define NP_SOCK_REV_SLOTS 8

/* np_sockrev4t_v1: the same record for a connected socket (TCP, or UDP through connect()), which
 * has one peer. HASH, preallocated: socket cookie -> np_sock_rev_slot; connect4 writes,
 * getpeername4 and recvmsg4 read, cgroup/sock_release deletes it when the socket goes, so nothing
 * is evicted while a socket lives.
 * Socket storage costs an allocation, a memory-cgroup charge and an RCU free per socket (2.5-3 µs
 * of a ~100 µs connect-request-reply-close in bench/README.md's socket LB breakdown); a
 * preallocated hash element is a free-list pop and push. When the hash is full the record goes
 * to the socket's storage (np_sockrev4_v2) as before. What an unconnected UDP socket sends to
 * (sendmsg4, one socket to many services) stays in the socket's storage. */

struct np_sock_rev_slot {
	__be32 backend_addr; /* where the socket's datagrams/connection went (0 = free slot) */
	__be32 addr;         /* service address the application asked for */
	__be16 backend_port;
	__be16 port;         /* service port */
	__u16 rev_nat_id;    /* service ID */
	__u8 pad[2];
};
NP_ASSERT_SIZE(struct np_sock_rev_slot, 16);

struct np_sock_rev_store {
	struct bpf_spin_lock lock; /* sendmsg() on one socket can run on several CPUs at once */
	__u32 next;                /* slot to reuse next when all are taken */
	struct np_sock_rev_slot slot[NP_SOCK_REV_SLOTS];
};
NP_ASSERT_SIZE(struct np_sock_rev_store, 8 + 16 * NP_SOCK_REV_SLOTS);

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

/* np_affinity4_v1: tc and socket programs write and read (sessionAffinity=ClientIP). LRU.
 * (service, scope, client) -> the backend the client was sent to, and when. The tc path keys by
 * the client's address, the socket LB by the calling process's network namespace (its address is
 * not known at connect time), as Cilium does. */
enum np_affinity_client {
	NP_AFFINITY_CLIENT_ADDR = 0,  /* client = IPv4 address (network order) in the low 32 bits */
	NP_AFFINITY_CLIENT_NETNS = 1, /* client = bpf_get_netns_cookie() */
};

struct np_affinity_key {
	__u64 client;     /* enum np_affinity_client says what */
	__u16 rev_nat_id; /* service (frontend) ID */
	__u8 kind;        /* enum np_affinity_client */
	__u8 scope;       /* enum np_lb_scope of the entry the backend was chosen from */
	__u8 pad[4];
};
NP_ASSERT_SIZE(struct np_affinity_key, 16);

struct np_affinity_val {
	__u64 last_used;  /* CLOCK_MONOTONIC seconds of the last connection that used it */
	__u32 backend_id; /* the backend the client sticks to */
	__u8 pad[4];
};
NP_ASSERT_SIZE(struct np_affinity_val, 16);

/* np_affmatch_v1: agent writes, tc and socket programs read. HASH.
 * (backend ID, service ID, scope) -> 0: the backend is selectable in that service entry now. An
 * affinity entry whose backend is not (removed from the service, terminating) is forgotten. */
struct np_affinity_match {
	__u32 backend_id; /* host order */
	__u16 rev_nat_id; /* service (frontend) ID */
	__u8 scope;       /* enum np_lb_scope */
	__u8 pad;
};
NP_ASSERT_SIZE(struct np_affinity_match, 8);

/* np_maglev4_v1: agent writes, tc programs read. HASH_OF_MAPS.
 * service entry key (slot 0, network order) -> an ARRAY of np_lb_config.maglev_table_size backend
 * IDs (u32, host order): the frontend's Maglev lookup table, computed by the agent
 * (agent/lb/maglev.h). Only entries with NP_SVC_F2_MAGLEV have one. */

/* np_ports4_v1 (lib/maps.h, lib/ports.h): ARRAY of two np_ports, the agent's (NP_PORTS_AGENT) and
 * the datapath's (NP_PORTS_LEARNED). Port p (host order) is bit p % 64 of bits[p / 64];
 * `complete` (the agent's entry only) is nonzero once the agent wrote its bitmap from what the
 * maps and conntrack hold (until then the programs look up every packet). */
#define NP_PORTS_WORDS 1024
#define NP_PORTS_AGENT 0
#define NP_PORTS_LEARNED 1
#define NP_PORTS_ENTRIES 2
struct np_ports {
	__u64 bits[NP_PORTS_WORDS];
	__u64 complete;
};
NP_ASSERT_SIZE(struct np_ports, 8 * NP_PORTS_WORDS + 8);

/* np_belive4_v1 (lib/maps.h, lib/lb.h): ARRAY of NP_BELIVE_WORDS words, a bitmap over backend
 * IDs: ID i is bit i % 64 of word i / 64. A set bit says np_backend4_v1 holds ID i: the agent sets
 * it after it wrote the backend and clears it before it deletes the backend, and rewrites the
 * whole bitmap from the map at its start. A clear bit says nothing: the programs then look the
 * backend up. It spares a packet of an established flow the hash lookup of its backend. */
#define NP_BACKEND_ID_MAX ((1u << 24) - 1) /* the agent hands out backend IDs 1..this */
#define NP_BELIVE_WORDS ((NP_BACKEND_ID_MAX + 1) / 64)

#endif /* NP_LB_H */
