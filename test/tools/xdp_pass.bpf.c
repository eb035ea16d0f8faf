// SPDX-License-Identifier: GPL-2.0
/* The lab's XDP pass program (scripts/lib/lab.sh lab_lan_xdp_pass): attached to the bridge-side
 * peers of the LAN when a node runs XDP acceleration. A veth delivers XDP frames (XDP_TX from
 * its peer) only to a receive queue with NAPI and an XDP program of its own; without one the
 * frames a node's XDP sends back out vanish. It lets everything through. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int np_lab_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
