/* SPDX-License-Identifier: Apache-2.0 */
/* np_ports4_v1 (lib/maps.h): the ports a flow of ours can use at this node's address. Entry
 * NP_PORTS_AGENT is the agent's (every frontend's and backend's port, the SNAT and masquerade
 * ports, and at its start every port a conntrack entry uses there); entry NP_PORTS_LEARNED is the
 * datapath's own: the ports it recorded a flow on that the agent need not know (a DSR flow to a
 * host-network backend, learned from another node's option), only ever set. */
#ifndef NP_LIB_PORTS_H
#define NP_LIB_PORTS_H

#include "lib/common.h"
#include "lib/maps.h"
#include "np_lb.h"

/* 1: port (host order) is in the agent's complete bitmap or was learned; 0: it is in neither;
 * -1: the agent has not written its bitmap yet (every port may be ours). */
static __always_inline int np_ports_has(__u16 port)
{
	__u32 k = NP_PORTS_AGENT;
	const struct np_ports *ports = bpf_map_lookup_elem(&NP_MAP_PORTS, &k);
	__u64 bit = 1ULL << (port % 64);

	if (!ports || !ports->complete)
		return -1;
	if (ports->bits[port / 64] & bit)
		return 1;
	k = NP_PORTS_LEARNED;
	ports = bpf_map_lookup_elem(&NP_MAP_PORTS, &k);
	return !ports || (ports->bits[port / 64] & bit);
}

/* A flow at this node's address on `port` (host order) was recorded here. */
static __always_inline void np_ports_learn(__u16 port)
{
	__u32 k = NP_PORTS_LEARNED;
	struct np_ports *ports = bpf_map_lookup_elem(&NP_MAP_PORTS, &k);
	__u64 bit = 1ULL << (port % 64);

	if (ports && !(ports->bits[port / 64] & bit))
		__sync_fetch_and_or(&ports->bits[port / 64], bit);
}

#endif /* NP_LIB_PORTS_H */
