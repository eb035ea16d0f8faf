/* SPDX-License-Identifier: Apache-2.0 */
/* Every shared map, defined once for all programs. Each is pinned by name under
 * <bpf-root>/nodepath/, so sock.bpf.o and host.bpf.o (one instance per device) share one copy, and
 * a restarted agent adopts it. Names (NP_MAP_*) and default sizes (NP_DEFAULT_*) come from np_abi.h,
 * the agent's definitions too; the agent sets the real max_entries before load. */
#ifndef NP_LIB_MAPS_H
#define NP_LIB_MAPS_H

#include "lib/common.h"
#include "np_abi.h"
#include "np_lb.h"
#include "np_ct.h"
#include "np_drop.h"
#include "np_frag.h"

/* Service entries: agent writes, every program reads. (frontend, slot) -> service/backend slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct np_svc_key);
	__type(value, struct np_svc_val);
	__uint(max_entries, NP_DEFAULT_LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_SERVICES SEC(".maps");

/* Backends: agent writes, every program reads. backend ID -> address, port, state. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct np_backend);
	__uint(max_entries, NP_DEFAULT_LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_BACKENDS SEC(".maps");

/* Reverse NAT: agent writes, programs read. service ID -> frontend address and port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct np_revnat);
	__uint(max_entries, NP_DEFAULT_REVNAT_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_REVNAT SEC(".maps");

/* Socket reverse NAT: socket programs write and read. Per socket (freed with it): the backends
 * it was sent to -> the service address. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__type(key, int);
	__type(value, struct np_sock_rev_store);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_SOCK_REV SEC(".maps");

/* Conntrack, confirmed flows: tc programs write and read, agent lists and collects. tuple+hook
 * (network order) -> translation. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_ct_key);
	__type(value, struct np_ct_entry);
	__uint(max_entries, NP_DEFAULT_CT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_CT SEC(".maps");

/* Conntrack, unconfirmed flows: tc programs write, read and promote to np_ct4_v1; agent collects.
 * tuple+hook (network order) -> translation. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_ct_key);
	__type(value, struct np_ct_entry);
	__uint(max_entries, NP_DEFAULT_CT_EMBRYONIC_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_CT_EMBRYONIC SEC(".maps");

/* Conntrack counters: tc programs count, agent sums per CPU. enum np_ct_table (host order) ->
 * entries created and deleted by the datapath, flows promoted. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_ct_stat);
	__uint(max_entries, NP_CT_TABLES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_CT_STATS SEC(".maps");

/* Nodes: agent writes, socket programs read. node IP -> node ID and flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct np_node_val);
	__uint(max_entries, NP_DEFAULT_NODES_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_NODES SEC(".maps");

/* Fragments: tc/XDP programs write (first fragment) and read (later ones). The datagram as it
 * arrived (addresses, IP ID, protocol) -> its first fragment's L4 ports, network order. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_frag_key);
	__type(value, struct np_frag_val);
	__uint(max_entries, NP_DEFAULT_FRAG_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_FRAG SEC(".maps");

/* Metrics: programs count, agent sums per CPU. (dir << 8 | reason) -> packets, bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_metric);
	__uint(max_entries, NP_METRICS_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_METRICS SEC(".maps");

/* Session affinity: tc and socket programs write and read. (service, scope, client) -> backend,
 * last use (np_lb.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_affinity_key);
	__type(value, struct np_affinity_val);
	__uint(max_entries, NP_DEFAULT_AFFINITY_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_AFFINITY SEC(".maps");

/* Affinity match: agent writes, tc and socket programs read. (backend, service, scope) -> 0 while
 * the backend is selectable in that service entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct np_affinity_match);
	__type(value, __u8);
	__uint(max_entries, NP_DEFAULT_LB_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_AFFINITY_MATCH SEC(".maps");

/* One frontend's Maglev table: index -> backend ID (host order). The agent creates one per table
 * with np_lb_config.maglev_table_size entries (BPF_F_INNER_MAP: any size may go in). */
struct np_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, NP_DEFAULT_MAGLEV_TABLE_SIZE);
	__uint(map_flags, BPF_F_INNER_MAP);
};

/* Maglev tables: agent writes, tc programs read. service entry key (slot 0) -> its table. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, struct np_svc_key);
	__type(value, __u32);
	__uint(max_entries, NP_DEFAULT_MAGLEV_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct np_maglev_inner);
} NP_MAP_MAGLEV SEC(".maps");

/* Ports a flow of ours can use at this node's address: the agent writes its entry, tc and XDP
 * programs read both and learn into theirs (lib/ports.h). A packet to or from the node's address
 * on any other port (a reply to a connection of the node's own, through the socket LB or not) is
 * no flow of ours and skips the conntrack and service lookups. Always a superset: the agent sets a
 * port's bit before it writes what uses the port and clears bits only at its start, when it writes
 * them from the maps and the conntrack tables. 0|1 -> np_ports (np_lb.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct np_ports);
	__uint(max_entries, NP_PORTS_ENTRIES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_PORTS SEC(".maps");

/* Backend IDs np_backend4_v1 holds (np_lb.h): agent writes, programs read. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, NP_BELIVE_WORDS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_BACKEND_LIVE SEC(".maps");

#endif /* NP_LIB_MAPS_H */
