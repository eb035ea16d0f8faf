/* SPDX-License-Identifier: Apache-2.0 */
/* Per-CPU scratch space for the big temporaries of one program run (a new flow's route lookup,
 * reply entry and conntrack keys), so they do not live on the 512-byte BPF stack: the new-flow
 * path leaves room for DSR and XDP to grow in (figures: lib/nodeport.h). Only for programs that run with bottom
 * halves disabled (tc, XDP): nothing else that uses it can run on the CPU before they return, so
 * one slot per CPU is enough; a tail call runs on the same CPU in the same run, so stages of one
 * program (xdp.bpf.c) hand data on through it. Socket programs can be preempted and must not use it. */
#ifndef NP_LIB_SCRATCH_H
#define NP_LIB_SCRATCH_H

#include "lib/common.h"
#include "lib/parse.h"
#include "np_ct.h"

struct np_scratch {
	struct bpf_fib_lookup fib;   /* new flow: the route to the chosen backend */
	struct np_ct_key fwd_key;    /* new flow: key of its service entry (client -> frontend) */
	struct np_ct_key rev_key;    /* new flow: key of its reply entry */
	struct np_ct_entry rev;      /* new flow: its reply entry */
	struct np_pkt pkt;           /* XDP: the parsed packet, from the entry to its tail calls */
	struct np_ct_entry fwd;      /* XDP: a new flow's service entry, from its creation to the rewrite */
	__u8 known;                  /* XDP: np_nodeport_ct_find()'s `known`, from the entry to the new flow */
};

/* Scratch: the running tc/XDP program writes and reads, within one run; unpinned, one per loaded
 * object. PERCPU_ARRAY. 0 -> struct np_scratch (host order, contents meaningless between runs). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_scratch);
	__uint(max_entries, 1);
} np_scratch_v1 SEC(".maps");

/* This CPU's scratch. NULL never happens (an array always has index 0), but the verifier wants
 * the check. */
static __always_inline struct np_scratch *np_scratch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&np_scratch_v1, &zero);
}

#endif /* NP_LIB_SCRATCH_H */
