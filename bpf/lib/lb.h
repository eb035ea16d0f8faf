/* SPDX-License-Identifier: Apache-2.0 */
/* Service lookup and backend selection. Context-free: shared by tc, XDP and socket programs, so
 * every path picks a backend the same way: a client with session affinity gets its backend back
 * while the backend is still selectable in that entry and the timeout has not passed; otherwise
 * the tc path uses the frontend's Maglev table at a hash of the flow (with --bpf-lb-algorithm=
 * maglev) or a slot at random, the socket LB a slot by its own hash (random for TCP, the socket
 * for UDP); the choice is then remembered for affinity. */
#ifndef NP_LIB_LB_H
#define NP_LIB_LB_H

#include "lib/common.h"
#include "lib/maps.h"
#include "np_config.h"
#include "np_lb.h"

/* Backend selection's load-time configuration: the agent sets it in every object. */
const volatile struct np_lb_config np_lb_cfg = {
	.algorithm = NP_LB_ALG_RANDOM,
	.maglev_table_size = NP_DEFAULT_MAGLEV_TABLE_SIZE,
};

/* Who asks, for session affinity: a client address (tc) or a network namespace (socket LB). */
struct np_lb_client {
	__u64 id;
	__u8 kind; /* enum np_affinity_client */
};

/* True: np_backend4_v1 holds backend `id` (an array lookup the verifier inlines). False says
 * nothing: look it up. */
static __always_inline bool np_backend_known(__u32 id)
{
	__u32 k = id / 64;
	const __u64 *w = bpf_map_lookup_elem(&NP_MAP_BACKEND_LIVE, &k);

	return w && (*w >> (id % 64)) & 1;
}

static __always_inline struct np_svc_val *np_lb_lookup(struct np_svc_key *key, __be32 addr,
						       __be16 port, __u8 proto)
{
	key->addr = addr;
	key->dport = port;
	key->slot = 0;
	key->proto = proto;
	key->scope = NP_LB_SCOPE_EXT;
	key->pad[0] = 0;
	key->pad[1] = 0;
	return bpf_map_lookup_elem(&NP_MAP_SERVICES, key);
}

/* The entry in-cluster clients use for the frontend whose EXT entry is svc (found under key): its
 * INT entry when it has two scopes, else svc itself. `key` follows. NULL when the INT entry is
 * missing (a half-written service: the caller treats it as no backend). */
static __always_inline struct np_svc_val *np_lb_internal(struct np_svc_key *key,
							 struct np_svc_val *svc)
{
	if (!(svc->flags2 & NP_SVC_F2_TWO_SCOPES))
		return svc;
	key->scope = NP_LB_SCOPE_INT;
	return bpf_map_lookup_elem(&NP_MAP_SERVICES, key);
}

/* A hash of the flow that leaves the destination address out (as Cilium's Maglev does): the
 * same client tuple maps to the same table index whichever node or frontend address it reached.
 * murmur3's finalizer over the words. */
static __always_inline __u32 np_lb_mix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 np_lb_flow_hash(__be32 saddr, __be16 sport, __be16 dport, __u8 proto)
{
	__u32 h = np_lb_mix(0x4e504c42u ^ proto);

	h = np_lb_mix(h ^ (((__u32)bpf_ntohs(sport) << 16) | bpf_ntohs(dport)));
	return np_lb_mix(h ^ bpf_ntohl(saddr));
}

/* Picks slot hash % count + 1 of the service `key` (slot 0) and returns its backend, or NULL
 * when the service has no selectable backend. `key` is left pointing at the chosen slot. */
static __always_inline struct np_backend *np_lb_select(struct np_svc_key *key,
						       const struct np_svc_val *svc, __u32 hash,
						       __u32 *backend_id)
{
	struct np_svc_val *slot;

	if (svc->count == 0)
		return NULL;
	key->slot = (hash % svc->count) + 1;
	slot = bpf_map_lookup_elem(&NP_MAP_SERVICES, key);
	if (!slot)
		return NULL;
	*backend_id = slot->backend_id;
	return bpf_map_lookup_elem(&NP_MAP_BACKENDS, backend_id);
}

/* The backend of the frontend's Maglev table at hash % table size. A missing table or entry (a
 * table of another size, being replaced) falls back to the slot at the same hash. */
static __always_inline struct np_backend *np_lb_maglev_select(struct np_svc_key *key,
							      const struct np_svc_val *svc,
							      __u32 hash, __u32 *backend_id)
{
	struct np_backend *be;
	__u32 idx, *id;
	void *table;

	table = bpf_map_lookup_elem(&NP_MAP_MAGLEV, key);
	if (table && np_lb_cfg.maglev_table_size) {
		idx = hash % np_lb_cfg.maglev_table_size;
		id = bpf_map_lookup_elem(table, &idx);
		if (id) {
			*backend_id = *id;
			be = bpf_map_lookup_elem(&NP_MAP_BACKENDS, backend_id);
			if (be)
				return be;
		}
	}
	return np_lb_select(key, svc, hash, backend_id);
}

static __always_inline void np_lb_affinity_key(struct np_affinity_key *ak,
					       const struct np_svc_key *key,
					       const struct np_svc_val *svc,
					       const struct np_lb_client *client)
{
	__builtin_memset(ak, 0, sizeof(*ak));
	ak->client = client->id;
	ak->rev_nat_id = svc->rev_nat_id;
	ak->kind = client->kind;
	ak->scope = key->scope;
}

/* The backend the client is affine to, when that still holds: the timeout (slot 0's backend_id,
 * in seconds) has not passed since its last connection, and the backend is still selectable in
 * this service entry (np_affmatch_v1) and exists. Otherwise the stale entry goes: NULL. */
static __always_inline struct np_backend *np_lb_affinity_get(const struct np_svc_key *key,
							     const struct np_svc_val *svc,
							     const struct np_lb_client *client,
							     __u64 now, __u32 *backend_id)
{
	struct np_affinity_match match = {};
	struct np_affinity_key ak;
	struct np_affinity_val *v;
	struct np_backend *be;

	np_lb_affinity_key(&ak, key, svc, client);
	v = bpf_map_lookup_elem(&NP_MAP_AFFINITY, &ak);
	if (!v)
		return NULL;
	match.backend_id = v->backend_id;
	match.rev_nat_id = svc->rev_nat_id;
	match.scope = key->scope;
	if (v->last_used + svc->backend_id <= now || !bpf_map_lookup_elem(&NP_MAP_AFFINITY_MATCH, &match))
		goto forget;
	*backend_id = v->backend_id;
	be = bpf_map_lookup_elem(&NP_MAP_BACKENDS, backend_id);
	if (!be)
		goto forget;
	if (v->last_used != now)
		v->last_used = now;
	return be;
forget:
	bpf_map_delete_elem(&NP_MAP_AFFINITY, &ak);
	return NULL;
}

static __always_inline void np_lb_affinity_put(const struct np_svc_key *key,
					       const struct np_svc_val *svc,
					       const struct np_lb_client *client, __u64 now,
					       __u32 backend_id)
{
	struct np_affinity_val v = {};
	struct np_affinity_key ak;

	np_lb_affinity_key(&ak, key, svc, client);
	v.last_used = now;
	v.backend_id = backend_id;
	/* Two CPUs racing for a new client may both choose; the last write wins (as in Cilium). */
	bpf_map_update_elem(&NP_MAP_AFFINITY, &ak, &v, BPF_ANY);
}

/* The one backend choice of every path, for the service entry svc found under key (slot 0):
 * affinity first, then Maglev (when `maglev` is asked for and the entry has a table) or the slot
 * at `hash`; remembered for affinity. NULL when the entry has no selectable backend. */
static __always_inline struct np_backend *np_lb_pick(struct np_svc_key *key,
						     const struct np_svc_val *svc, __u32 hash,
						     const struct np_lb_client *client, bool maglev,
						     __u32 *backend_id)
{
	struct np_backend *be;
	__u64 now = 0;

	if (svc->count == 0)
		return NULL;
	if (svc->flags & NP_SVC_F_AFFINITY) {
		now = bpf_ktime_get_coarse_ns() / NP_NSEC_PER_SEC;
		be = np_lb_affinity_get(key, svc, client, now, backend_id);
		if (be)
			return be;
	}
	if (maglev && np_lb_cfg.algorithm == NP_LB_ALG_MAGLEV && (svc->flags2 & NP_SVC_F2_MAGLEV))
		be = np_lb_maglev_select(key, svc, hash, backend_id);
	else
		be = np_lb_select(key, svc, hash, backend_id);
	if (be && (svc->flags & NP_SVC_F_AFFINITY))
		np_lb_affinity_put(key, svc, client, now, *backend_id);
	return be;
}

#endif /* NP_LIB_LB_H */
