// SPDX-License-Identifier: GPL-2.0
/* XDP on a native device (--bpf-lb-acceleration=native|best-effort): the ingress NodePort /
 * LoadBalancer / externalIP path of lib/nodeport.h, the same code tc's np_from_netdev runs, before
 * the stack allocates an skb. One instance per device (np_nodeport_cfg, as host.bpf.o).
 *
 * What it does with a packet:
 *   - a known flow: translated as its conntrack entry says; sent back out of the device (XDP_TX)
 *     or out of another one (XDP_REDIRECT) when the entry forwards, else passed on (XDP_PASS);
 *   - the first packet to a frontend: the new flow is created exactly as tc creates it;
 *   - not a frontend and no flow: passed on untouched, found so before the new-flow stage;
 * and every packet it passed on after running the path carries the "done" marker (lib/xfer.h),
 * so tc's np_from_netdev lets it through instead of doing the lookups again.
 * What it leaves to tc (passed untouched and unmarked, NP_CTX_DEFER): a packet whose next hop has
 * no neighbour entry (XDP has no bpf_redirect_neigh; the route is looked up before anything is
 * rewritten or created, so tc finds the state as it was), and anything that is not IPv4 TCP/UDP.
 * On a kernel without bpf_xdp_adjust_meta for XDP (no hand-off, lib/xfer.h) it also leaves to tc
 * every new flow and every flow to a local backend: XDP then forwards known flows out of a
 * device and passes what is no flow of ours, and tc sees every other packet as it came.
 *
 * Stages. The whole path compiled for XDP is more than the verifier takes (over its 1,000,000
 * instructions: the checksum arithmetic XDP does by hand multiplies the paths of the new flow's
 * SNAT allocation loop), so it is split as Cilium splits nodeport, by tail calls through a program
 * array: np_xdp_entry parses and serves known flows (the per-packet fast path, no tail call);
 * np_xdp_new_flow, tail-called on a conntrack miss, creates the flow. The parsed packet goes from
 * one to the other in per-CPU scratch. A missing tail call (never, the array is filled at load)
 * leaves the packet to tc. Verifier figures: bench/README.md (bench/bpf_stack.sh). */
#include "lib/ctx_xdp.h"
#include "lib/ct.h"
#include "lib/parse.h"

/* The new flow's rewrite is a stage of its own (lib/nodeport.h calls this once the flow exists). */
static __always_inline int np_xdp_new_flow_next(struct xdp_md *ctx, struct np_pkt *p,
						const struct np_ct_entry *fwd, __u64 now);
#define NP_NODEPORT_NEW_FLOW_NEXT np_xdp_new_flow_next

#include "lib/drop.h"
#include "lib/maps.h"
#include "lib/nodeport.h"
#include "lib/parse.h"
#include "lib/scratch.h"
#include "lib/xfer.h"
#include "np_abi.h"
#include "np_xdp.h"

/* XDP counters: this program counts, the agent sums per CPU. enum np_xdp_stat -> packets, bytes
 * (host order). Unpinned: one per loaded object, i.e. per device. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_metric);
	__uint(max_entries, NP_XDP_STATS);
} NP_MAP_XDP_STATS SEC(".maps");

int np_xdp_new_flow(struct xdp_md *ctx);
int np_xdp_new_flow_nat(struct xdp_md *ctx);

/* The tail calls: filled by libbpf at load, read by this object's programs. enum np_xdp_call ->
 * program. Unpinned: each device's object calls its own stages. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NP_XDP_CALLS);
	__uint(key_size, sizeof(__u32));
	__array(values, int(struct xdp_md *));
} NP_MAP_XDP_CALLS SEC(".maps") = {
	.values = {
		[NP_XDP_CALL_NEW_FLOW] = (void *)&np_xdp_new_flow,
		[NP_XDP_CALL_NEW_FLOW_NAT] = (void *)&np_xdp_new_flow_nat,
	},
};

static __always_inline void np_xdp_count(__u32 stat, __u32 bytes)
{
	struct np_metric *m = bpf_map_lookup_elem(&NP_MAP_XDP_STATS, &stat);

	if (m) {
		m->packets++;
		m->bytes += bytes;
	}
}

/* The XDP verdict of what the path decided, counted; a packet passed on after the path ran is
 * marked done for tc. */
static __always_inline int np_xdp_verdict(struct xdp_md *ctx, int ret)
{
	__u32 len = np_ctx_len(ctx);

	switch (ret) {
	case XDP_TX:
		np_xdp_count(NP_XDP_STAT_TX, len);
		return XDP_TX;
	case XDP_REDIRECT:
		np_xdp_count(NP_XDP_STAT_REDIRECT, len);
		return XDP_REDIRECT;
	case XDP_PASS:
		np_xdp_count(NP_XDP_STAT_PASS, len);
		np_xfer_set(ctx, NP_XFER_F_NODEPORT_DONE);
		return XDP_PASS;
	case NP_CTX_DEFER:
		np_xdp_count(NP_XDP_STAT_DEFERRED, len);
		return XDP_PASS;
	}
	np_xdp_count(NP_XDP_STAT_DROP, len);
	return XDP_DROP;
}

SEC("xdp")
int np_xdp_entry(struct xdp_md *ctx)
{
	const struct bpf_fib_lookup *fib = NULL;
	bool embryonic = false, known = false;
	struct np_scratch *s;
	struct np_ct_entry *e;
	struct np_ct_key key;
	struct np_pkt p;
	__u64 now;
	int ret = np_parse(ctx, &p);

	if (ret == NP_PARSE_PASS) {
		np_xdp_count(NP_XDP_STAT_SKIPPED, np_ctx_len(ctx));
		return XDP_PASS;
	}
	if (ret < 0)
		return np_xdp_verdict(ctx, np_drop(ctx, NP_METRIC_INGRESS, -ret));
	/* ICMP errors about translated flows (lib/icmp.h) are rare: tc translates them. */
	if (p.proto == IPPROTO_ICMP) {
		np_xdp_count(NP_XDP_STAT_SKIPPED, np_ctx_len(ctx));
		return XDP_PASS;
	}
	/* No flow of ours (np_nodeport_not_ours()): done here, as a packet of no frontend is. */
	if (np_nodeport_not_ours(&p, NP_CT_INGRESS))
		return np_xdp_verdict(ctx, XDP_PASS);
	s = np_scratch_get();
	if (!s)
		return np_xdp_verdict(ctx, NP_CTX_DEFER);

	now = np_ct_now();
	np_ct_key_from_pkt(&key, &p, NP_CT_INGRESS);
	e = np_nodeport_ct_find(&p, &key, now, &embryonic, &known);
	if (e) {
		/* Without the hand-off a packet XDP would translate and pass on would reach tc
		 * translated and unmarked: such flows (a local backend) are tc's, untouched. */
		if (!np_xdp_hand_off() && !(e->flags & NP_CT_F_REDIRECT))
			return np_xdp_verdict(ctx, NP_CTX_DEFER);
		/* The route first: without a neighbour tc must do it all, and nothing (not even the
		 * entry's refresh) has happened yet. */
		if (e->flags & NP_CT_F_REDIRECT) {
			if (np_nodeport_route(ctx, &p, e, &s->fib) != BPF_FIB_LKUP_RET_SUCCESS)
				return np_xdp_verdict(ctx, NP_CTX_DEFER);
			fib = &s->fib;
		}
		return np_xdp_verdict(ctx, np_nodeport_ct_hit(ctx, &p, &key, e, embryonic, now, fib));
	}
	/* No flow and not a frontend's (nor a DSR option's): nothing to create, passed on here
	 * without the new-flow stage and its copy of the packet (the frontend is looked up again
	 * there: a map value does not cross a tail call). */
	if (!np_nodeport_new_flow_wanted(ctx, &p))
		return np_xdp_verdict(ctx, XDP_PASS);
	/* Without the hand-off new flows are tc's (whether one is local is known only once it
	 * exists); XDP serves their later packets that leave by a device. */
	if (!np_xdp_hand_off())
		return np_xdp_verdict(ctx, NP_CTX_DEFER);
	s->pkt = p;
	s->known = known;
	bpf_tail_call(ctx, &NP_MAP_XDP_CALLS, NP_XDP_CALL_NEW_FLOW);
	return np_xdp_verdict(ctx, NP_CTX_DEFER);
}

/* Tail-called by np_xdp_entry for a packet no conntrack entry carries (in scratch): creates its
 * flow, then hands the packet and the new entry on to np_xdp_new_flow_nat. */
SEC("xdp")
int np_xdp_new_flow(struct xdp_md *ctx)
{
	struct np_scratch *s = np_scratch_get();
	struct np_pkt p;

	if (!s)
		return np_xdp_verdict(ctx, NP_CTX_DEFER);
	p = s->pkt;
	return np_xdp_verdict(ctx, np_nodeport_new_flow(ctx, &p, np_ct_now(), s->known));
}

static __always_inline int np_xdp_new_flow_next(struct xdp_md *ctx, struct np_pkt *p,
						const struct np_ct_entry *fwd, __u64 now)
{
	struct np_scratch *s = np_scratch_get();

	if (!s)
		return NP_CTX_DEFER; /* never; tc translates by the flow's entry */
	s->fwd = *fwd;
	bpf_tail_call(ctx, &NP_MAP_XDP_CALLS, NP_XDP_CALL_NEW_FLOW_NAT);
	/* Never (the array is filled at load): the flow exists, and tc translates by it. */
	return NP_CTX_DEFER;
}

/* Tail-called by np_xdp_new_flow: the first packet of the flow it created (both in scratch) is
 * rewritten and sent on its way. */
SEC("xdp")
int np_xdp_new_flow_nat(struct xdp_md *ctx)
{
	struct np_scratch *s = np_scratch_get();
	struct np_pkt p;

	if (!s)
		return np_xdp_verdict(ctx, NP_CTX_DEFER);
	p = s->pkt;
	return np_xdp_verdict(ctx,
			      np_nodeport_finish(ctx, &p, &s->fwd, NP_METRIC_INGRESS, np_ct_now()));
}

char LICENSE[] SEC("license") = "GPL";
