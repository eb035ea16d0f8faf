/* SPDX-License-Identifier: Apache-2.0 */
/* IPv4 fragment tracking ABI. Only the first fragment of a datagram carries the L4 header; the
 * datapath records its ports under the datagram's identity, so the later fragments find the same
 * conntrack entry (same backend, same rewrite) as the first. */
#ifndef NP_FRAG_H
#define NP_FRAG_H

#include "np_abi.h"

/* np_frag4_v1: tc/XDP programs write (first fragment) and read (later fragments); nobody else.
 * LRU_HASH. The datagram as it arrived (addresses, IP ID, protocol; network order) -> the L4
 * ports of its first fragment (network order). Cilium: cilium_ipv4_frag_datagrams. */
struct np_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;    /* IPv4 identification */
	__u8 proto;   /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
};
NP_ASSERT_SIZE(struct np_frag_key, 12);

struct np_frag_val {
	__be16 sport;
	__be16 dport;
};
NP_ASSERT_SIZE(struct np_frag_val, 4);

#endif /* NP_FRAG_H */
