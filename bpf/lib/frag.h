/* SPDX-License-Identifier: Apache-2.0 */
/* IPv4 fragments (np_frag4_v1): the first fragment of a datagram records its L4 ports under the
 * datagram's identity (addresses, IP ID, protocol), the later ones, which carry no L4 header,
 * take them from there. So every fragment of a datagram has the same tuple, finds the same
 * conntrack entry and gets the same rewrite (addresses in every fragment, ports and the L4
 * checksum in the first, where they are). A later fragment whose first one was not seen (it
 * comes later, or its record was evicted) cannot be matched to its flow. */
#ifndef NP_LIB_FRAG_H
#define NP_LIB_FRAG_H

#include "lib/common.h"
#include "lib/maps.h"
#include "np_frag.h"

static __always_inline void np_frag_key_init(struct np_frag_key *k, const struct iphdr *ip)
{
	k->saddr = ip->saddr;
	k->daddr = ip->daddr;
	k->id = ip->id;
	k->proto = ip->protocol;
	k->pad = 0;
}

/* First fragment: remember its ports for the rest of the datagram. A full table evicts the
 * oldest datagram, whose later fragments then go unmatched. */
static __always_inline void np_frag_record(const struct iphdr *ip, __be16 sport, __be16 dport)
{
	struct np_frag_key k;
	struct np_frag_val v = { .sport = sport, .dport = dport };

	np_frag_key_init(&k, ip);
	bpf_map_update_elem(&NP_MAP_FRAG, &k, &v, BPF_ANY);
}

/* Later fragment: the ports its first fragment carried. Returns false when unknown. */
static __always_inline bool np_frag_ports(const struct iphdr *ip, __be16 *sport, __be16 *dport)
{
	struct np_frag_key k;
	struct np_frag_val *v;

	np_frag_key_init(&k, ip);
	v = bpf_map_lookup_elem(&NP_MAP_FRAG, &k);
	if (!v)
		return false;
	*sport = v->sport;
	*dport = v->dport;
	return true;
}

#endif /* NP_LIB_FRAG_H */
