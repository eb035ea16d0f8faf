// SPDX-License-Identifier: GPL-2.0
/* tc on a native device: the NodePort / LoadBalancer / externalIP path of lib/nodeport.h, and BPF
 * masquerade of pod traffic (lib/masq.h).
 * Ingress: packets to frontends and replies of SNAT'd and masqueraded flows; egress: replies of
 * local backends, pod traffic leaving the native-routing CIDR.
 * One instance per device (np_nodeport_cfg). With XDP acceleration xdp.bpf.c runs the ingress
 * path first; what it marked done skips it here (only pod delivery is left). */
#include "lib/ctx_skb.h"
#include "lib/drop.h"
#include "lib/masq.h"
#include "lib/nodeport.h"
#include "lib/parse.h"
#include "lib/pod.h"
#include "lib/xfer.h"

SEC("tc")
int np_from_netdev(struct __sk_buff *ctx)
{
	struct np_pkt p;
	int ret;

	/* xdp.bpf.c ran the NodePort path on the packet already (translated it, or found it is not
	 * ours): what is left is delivery, and a local pod's packet still goes straight to it. */
	if (np_xfer_get(ctx) & NP_XFER_F_NODEPORT_DONE) {
		if (np_parse(ctx, &p) != NP_PARSE_OK)
			return NP_CTX_PASS;
		return np_pod_from_netdev(ctx, &p);
	}
	ret = np_parse(ctx, &p);
	if (ret == NP_PARSE_PASS)
		return NP_CTX_PASS;
	if (ret < 0)
		return np_drop(ctx, NP_METRIC_INGRESS, -ret);
	if (p.proto == IPPROTO_ICMP) {
		ret = np_masq_icmp_ingress(ctx, &p);
		/* An echo reply translated back to its pod is delivered like any other packet. */
		if (ret == NP_CTX_PASS)
			return np_pod_from_netdev(ctx, &p);
		if (ret != NP_MASQ_NOT_OURS)
			return ret;
	}
	/* To the node's address, a port no flow of ours uses: not a pod's either. */
	if (np_nodeport_not_ours(&p, NP_CT_INGRESS))
		return NP_CTX_PASS;
	ret = np_nodeport_ingress(ctx, &p);
	if (ret != NP_CTX_PASS)
		return ret;
	/* Passed by the NodePort path (translated back, or not a service packet): a local pod's
	 * packet goes straight to it. */
	return np_pod_from_netdev(ctx, &p);
}

SEC("tc")
int np_to_netdev(struct __sk_buff *ctx)
{
	struct np_pkt p;

	/* Egress sees what the stack built: anything we cannot parse is not ours to judge. */
	if (np_parse(ctx, &p) != NP_PARSE_OK)
		return NP_CTX_PASS;
	if (np_masq_wants(ctx, &p))
		return np_masq_egress(ctx, &p);
	if (np_nodeport_not_ours(&p, NP_CT_EGRESS))
		return NP_CTX_PASS;
	return np_nodeport_egress(ctx, &p);
}

char LICENSE[] SEC("license") = "GPL";
