/* SPDX-License-Identifier: Apache-2.0 */
/* Service lookup and backend selection. Context-free: shared by tc, XDP and socket programs. */
#ifndef NP_LIB_LB_H
#define NP_LIB_LB_H

#include "lib/common.h"
#include "lib/maps.h"
#include "np_lb.h"

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

#endif /* NP_LIB_LB_H */
