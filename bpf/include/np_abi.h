/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by BPF C and C++: fixed-width types and the layout assertion used by every ABI struct. */
#ifndef NP_ABI_H
#define NP_ABI_H

#include <linux/types.h>

#ifdef __cplusplus
#define NP_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define NP_ASSERT_SIZE(type, size) static_assert(sizeof(type) == (size), #type " size")
#define NP_ASSERT_OFFSET(type, field, off) \
	static_assert(__builtin_offsetof(type, field) == (off), #type "." #field " offset")
#else
#define NP_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define NP_ASSERT_SIZE(type, size) _Static_assert(sizeof(type) == (size), #type " size")
#define NP_ASSERT_OFFSET(type, field, off) \
	_Static_assert(__builtin_offsetof(type, field) == (off), #type "." #field " offset")
#endif

/* Map names are "np_" + at most 12 characters (BPF_OBJ_NAME_LEN is 16 with the NUL). A layout
 * change gets a new versioned name; a pinned map is never reinterpreted. */
#define NP_MAP_SERVICES   np_svc4_v1
#define NP_MAP_BACKENDS   np_backend4_v1
#define NP_MAP_REVNAT     np_revnat4_v1
#define NP_MAP_SOCK_REV   np_sockrev4_v2
#define NP_MAP_SOCK_REV_TCP np_sockrev4t_v1
#define NP_MAP_CT         np_ct4_v1
#define NP_MAP_CT_EMBRYONIC np_ctsyn4_v1
#define NP_MAP_CT_STATS   np_ctstat_v1
#define NP_MAP_NODES      np_nodes4_v1
#define NP_MAP_FRAG       np_frag4_v1
#define NP_MAP_METRICS    np_metrics_v1
#define NP_MAP_AFFINITY   np_affinity4_v1
#define NP_MAP_AFFINITY_MATCH np_affmatch_v1
#define NP_MAP_MAGLEV     np_maglev4_v1
#define NP_MAP_PORTS      np_ports4_v1
#define NP_MAP_BACKEND_LIVE np_belive4_v1
/* Per loaded xdp.bpf.o, unpinned (np_xdp.h). */
#define NP_MAP_XDP_STATS  np_xdpstat_v1
#define NP_MAP_XDP_CALLS  np_xdpcall_v1
#define NP_MAP_EVENTS     np_events_v1
#define NP_MAP_EVENT_STATS np_evstat_v1

#define NP_STR_(x) #x
#define NP_STR(x) NP_STR_(x)

/* Service (frontend) IDs: rev_nat_id is 16 bits and 0 means "none", so IDs are 1..NP_SVC_ID_MAX.
 * The agent's ID allocator hands out exactly this range; the reverse-NAT map holds all of it. */
#define NP_SVC_ID_MAX 65535

/* Default map sizes: the one definition. The BPF map definitions (lib/maps.h), the agent's
 * MapSizes and its Config flag defaults all use these; agent flags override them, and a pinned map
 * keeps the size it was created with. They hold 10,000 services x 10 backends: 10,000 x (1 master
 * + 10 slots) = 110,000 service entries plus NodePort and LB frontends. */
#define NP_DEFAULT_LB_MAP_MAX    262144        /* bpf-lb-map-max: services and backends */
#define NP_DEFAULT_REVNAT_MAX    NP_SVC_ID_MAX /* one entry per service ID, not a flag */
#define NP_DEFAULT_CT_MAX        262144        /* bpf-ct-global-max */
/* bpf-ct-embryonic-max. Unconfirmed flows (two entries each): 8192 flows hold at most 8192 of the
 * 32768 SNAT ports a backend offers, so a flood of them leaves three quarters of every backend's
 * ports free. At 10,000 spoofed SYNs/s an entry lives ~0.8 s before the LRU reuses it, hundreds of
 * round trips longer than a real handshake needs to confirm its flow. */
#define NP_DEFAULT_CT_EMBRYONIC_MAX 16384
#define NP_DEFAULT_NODES_MAX     1024          /* not a flag */
/* Connected sockets (TCP, UDP through connect()) through a service whose reverse record is in
 * np_sockrev4t_v1 (not a flag): past that, records go to the socket's own storage, as what
 * unconnected UDP sockets send to does. */
#define NP_DEFAULT_SOCK_REV_TCP_MAX 65536
/* bpf-fragments-map-max (Cilium's key and default): datagrams in flight as fragments. An entry is
 * needed only from a datagram's first fragment to its last, so this is plenty unless fragments
 * are the normal case. */
#define NP_DEFAULT_FRAG_MAX      8192
#define NP_DEFAULT_AFFINITY_MAX  65536         /* bpf-lb-affinity-map-max: (service, client) pairs */
/* Maglev: one table per routable frontend entry (NodePort on a node IP, external IP, LoadBalancer
 * IP); socket LB never uses one. bpf-lb-maglev-table-size is one of Cilium's primes. */
#define NP_DEFAULT_MAGLEV_MAX    NP_SVC_ID_MAX /* bpf-lb-maglev-map-max: tables (not a flag) */
#define NP_DEFAULT_MAGLEV_TABLE_SIZE 16381

/* Default port ranges, host order: NodePorts (node-port-range, Kubernetes' default) and the SNAT
 * source ports above them (the agent starts SNAT right above a configured NodePort range). */
#define NP_DEFAULT_NODEPORT_MIN  30000
#define NP_DEFAULT_NODEPORT_MAX  32767
#define NP_DEFAULT_SNAT_PORT_MIN 32768
#define NP_DEFAULT_SNAT_PORT_MAX 65535

#endif /* NP_ABI_H */
