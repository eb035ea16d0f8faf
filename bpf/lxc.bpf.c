// SPDX-License-Identifier: GPL-2.0
/* tc on a pod's host-side veth (lxc...): ingress is what the pod sends, egress what the node's
 * stack sends it. One loaded object serves every pod of the node; lib/pod.h does the work. */
#include "lib/ctx_skb.h"
#include "lib/pod.h"

SEC("tc")
int np_from_container(struct __sk_buff *ctx)
{
	return np_pod_from_container(ctx);
}

SEC("tc")
int np_to_container(struct __sk_buff *ctx)
{
	return np_pod_to_container(ctx);
}

char LICENSE[] SEC("license") = "GPL";
