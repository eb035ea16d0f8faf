// SPDX-License-Identifier: GPL-2.0
/* A test-only XDP program (never attached anywhere) that runs the shared packet library on
 * struct xdp_md through lib/ctx_xdp.h, so the XDP shim is compiled, verified and run by
 * test/bpf/xdp_shim_test.cpp, which checks its output byte for byte against tc's np_from_netdev
 * for the same input. It is loaded with host.bpf.o's pin directory and shares its maps. It parses
 * with the shared parser, finds the flow's conntrack entry (main table, then embryonic; read
 * only) and translates and forwards the packet as the entry says (np_nodeport_finish: the address
 * and port rewrite with both checksums, TTL, FIB lookup, MAC rewrite, redirect, metrics; for a
 * DSR flow, with .rodata lb_mode set by the test, the option inserted through np_ctx_grow_l3 or
 * the ICMP fragmentation-needed built through np_ctx_set_len/np_ctx_grow_l2).
 * The whole ingress path (np_nodeport_ingress, new flows included) is not here: that is the XDP
 * entry's (XDP's work). Compiled for XDP it verifies since the SNAT allocator's tries became a
 * bpf_loop() callback (bench/README.md, SNAT churn: it was over the 1,000,000-instruction limit). */
#include "lib/ctx_xdp.h"
#include "lib/drop.h"
#include "lib/maps.h"
#include "lib/nodeport.h"
#include "lib/parse.h"

SEC("xdp")
int np_test_xdp_rewrite(struct xdp_md *ctx)
{
	struct np_ct_entry *e;
	struct np_ct_key key;
	struct np_pkt p;
	int ret = np_parse(ctx, &p);

	if (ret == NP_PARSE_PASS)
		return NP_CTX_PASS;
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	np_ct_key_from_pkt(&key, &p, NP_CT_INGRESS);
	e = bpf_map_lookup_elem(&NP_MAP_CT, &key);
	if (!e)
		e = bpf_map_lookup_elem(&NP_MAP_CT_EMBRYONIC, &key);
	if (!e)
		return NP_CTX_PASS;
	return np_nodeport_finish(ctx, &p, e, NP_METRIC_INGRESS, np_ct_now());
}

char LICENSE[] SEC("license") = "GPL";
