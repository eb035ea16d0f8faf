/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events (np_trace.h) for every hook, through the context shim: np_drop() reports every
 * drop; the NodePort path reports each packet it translates, aggregated by the flow's conntrack
 * entry (a new flow, a TCP flag not reported before, then at most once per interval), so an
 * established flow costs one comparison per packet and no lookup. A full ring buffer never
 * blocks: the event is counted as lost. */
#ifndef NP_LIB_TRACE_H
#define NP_LIB_TRACE_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "np_abi.h"
#include "np_ct.h"
#include "np_drop.h"
#include "np_trace.h"

const volatile struct np_trace_config np_trace_cfg = {
	.enabled = 0,
	.aggregation = NP_TRACE_AGG_MEDIUM,
	.interval_s = NP_DEFAULT_TRACE_INTERVAL_S,
	.wakeup_bytes = 0,
};

/* Flow events: every packet program writes, the agent's flow reader consumes. RINGBUF (bytes). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, NP_DEFAULT_EVENTS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_EVENTS SEC(".maps");

/* Event counters: programs count, agent sums per CPU. 0 -> emitted, lost. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct np_trace_stat);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} NP_MAP_EVENT_STATS SEC(".maps");

static __always_inline struct np_trace_event *np_trace_reserve(void)
{
	__u32 zero = 0;
	struct np_trace_stat *st = bpf_map_lookup_elem(&NP_MAP_EVENT_STATS, &zero);
	struct np_trace_event *ev = bpf_ringbuf_reserve(&NP_MAP_EVENTS, sizeof(*ev), 0);

	if (st) {
		if (ev)
			st->emitted++;
		else
			st->lost++;
	}
	return ev;
}

/* The wakeup flag for a submit: wake the agent's reader only once a quarter of the ring waits.
 * With the default (adaptive) flag a reader that keeps up is asleep at every event, so every event
 * pays an irq_work and a cross-CPU wakeup on the packet's path (microseconds in a VM, the bulk of
 * what flow recording cost a NodePort transaction). The agent polls every NP_EVENTS_POLL_MS
 * anyway (agent/flows/flows.cpp), so events wait at most that long; a burst still wakes it early.
 * The ring's size is fixed at load, so the loader passes the quarter (np_trace_cfg.wakeup_bytes)
 * and an event asks the ring only how much waits; a loader that leaves it 0 gets the same policy
 * with the size asked at each event. */
static __always_inline __u64 np_trace_wakeup(void)
{
	__u64 avail = bpf_ringbuf_query(&NP_MAP_EVENTS, BPF_RB_AVAIL_DATA);
	__u64 threshold = np_trace_cfg.wakeup_bytes;

	if (!threshold)
		threshold = bpf_ringbuf_query(&NP_MAP_EVENTS, BPF_RB_RING_SIZE) / 4;
	return avail >= threshold ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Fills the common fields and the header snippet, and submits. */
static __always_inline void np_trace_submit(np_ctx_t *ctx, struct np_trace_event *ev)
{
	__u32 len = np_ctx_len(ctx);
	__u32 cap = len < NP_TRACE_SNAPLEN ? len : NP_TRACE_SNAPLEN;

	ev->ktime = bpf_ktime_get_ns();
	ev->ifindex = np_ctx_ifindex(ctx);
	ev->len = len;
	ev->cap_len = 0;
	if (cap >= 1 && cap <= NP_TRACE_SNAPLEN) {
#ifdef NP_LIB_CTX_XDP_H
		if (bpf_xdp_load_bytes(ctx, 0, ev->data, cap) == 0)
#else
		if (bpf_skb_load_bytes(ctx, 0, ev->data, cap) == 0)
#endif
			ev->cap_len = cap;
	}
	bpf_ringbuf_submit(ev, np_trace_wakeup());
}

/* dir: enum np_metric_dir of the hook. */
static __always_inline __u8 np_trace_drop_point(__u32 dir)
{
	if (dir == NP_METRIC_INGRESS)
		return NP_TRACE_FROM_NETWORK;
	if (dir == NP_METRIC_EGRESS)
		return NP_TRACE_TO_NETWORK;
	return NP_TRACE_UNKNOWN;
}

/* A drop: always reported (when events are on). */
static __always_inline void np_trace_drop(np_ctx_t *ctx, __u32 dir, __u32 reason)
{
	struct np_trace_event *ev;

	if (!np_trace_cfg.enabled)
		return;
	ev = np_trace_reserve();
	if (!ev)
		return;
	__builtin_memset(ev, 0, __builtin_offsetof(struct np_trace_event, data));
	ev->type = NP_EVENT_DROP;
	ev->point = np_trace_drop_point(dir);
	ev->verdict = NP_VERDICT_DROPPED;
	ev->reason = reason;
	np_trace_submit(ctx, ev);
}

/* The aggregation clock: conntrack's own reading (np_ct_now(), the coarse clock in ns) in units
 * of 2^30 ns (1.07 s), low 16 bits, never 0 (0 says "never reported"). Taking conntrack's reading
 * instead of a clock read of its own keeps the established path at one clock read per packet. */
static __always_inline __u16 np_trace_clock(__u64 now)
{
	__u16 t = (__u16)(now >> 30);

	return t ? t : 1;
}

/* The TCP flags of this packet that aggregation reports when first seen in a direction. */
static __always_inline __u8 np_trace_flag_mask(void)
{
	return np_trace_cfg.aggregation == NP_TRACE_AGG_LOW ?
		       0xff : (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST);
}

/* Whether this packet of the flow of entry e (now: np_ct_now()) is worth an event: a flow never
 * reported, a TCP flag not reported before, or the interval passed. Reads only: the packet is
 * reported (np_trace_xlate records it in e) once it has left. On the established path this is
 * the whole cost of tracing: a few loads and compares, no helper call and no lookup. */
static __always_inline bool np_trace_wanted(const struct np_ct_entry *e, __u8 tcp_flags, __u64 now)
{
	__u16 last;

	if (!np_trace_cfg.enabled)
		return false;
	if (np_trace_cfg.aggregation == NP_TRACE_AGG_NONE)
		return true;
	last = e->trace_time;
	return !last || (tcp_flags & np_trace_flag_mask() & ~e->trace_flags) ||
	       (__u16)(np_trace_clock(now) - last) >= np_trace_cfg.interval_s;
}

/* The tuple a packet had before its translation. */
struct np_trace_orig {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};

/* A packet translated by entry e (orig: its tuple before) that left for point, which
 * np_trace_wanted(e, tcp_flags, now) said is worth an event: e records it as reported. */
static __always_inline void np_trace_xlate(np_ctx_t *ctx, struct np_ct_entry *e,
					   const struct np_trace_orig *orig, __u8 point,
					   __u8 tcp_flags, __u64 now)
{
	struct np_trace_event *ev;

	if (np_trace_cfg.aggregation != NP_TRACE_AGG_NONE) {
		e->trace_flags |= tcp_flags & np_trace_flag_mask();
		e->trace_time = np_trace_clock(now);
	}
	ev = np_trace_reserve();
	if (!ev)
		return;
	__builtin_memset(ev, 0, __builtin_offsetof(struct np_trace_event, data));
	ev->type = NP_EVENT_TRACE;
	ev->point = point;
	ev->verdict = NP_VERDICT_FORWARDED;
	ev->rev_nat_id = e->rev_nat_id;
	ev->tcp_flags = tcp_flags;
	ev->flags = NP_EVENT_F_XLATED | ((e->flags & NP_CT_F_REPLY) ? NP_EVENT_F_REPLY : 0);
	ev->orig_saddr = orig->saddr;
	ev->orig_daddr = orig->daddr;
	ev->orig_sport = orig->sport;
	ev->orig_dport = orig->dport;
	np_trace_submit(ctx, ev);
}

/* A socket translated to a backend (sock.bpf.c; no packet). Only called for a socket's new
 * backend, so a UDP socket sending datagram after datagram to one service costs one event.
 * netns: the socket's network namespace cookie, which names the pod that connected. */
static __always_inline void np_trace_sock_xlate(__u64 cookie, __u64 netns, __be32 saddr, __be32 svc_addr,
						__be16 svc_port, __be32 be_addr, __be16 be_port, __u8 proto,
						__u16 rev_nat_id)
{
	struct np_trace_event *ev;
	struct np_trace_sock *sk;

	if (!np_trace_cfg.enabled)
		return;
	ev = np_trace_reserve();
	if (!ev)
		return;
	__builtin_memset(ev, 0, __builtin_offsetof(struct np_trace_event, data) + sizeof(*sk));
	ev->ktime = bpf_ktime_get_ns();
	ev->type = NP_EVENT_TRACE_SOCK;
	ev->point = NP_TRACE_UNKNOWN;
	ev->verdict = NP_VERDICT_TRANSLATED;
	ev->rev_nat_id = rev_nat_id;
	ev->flags = NP_EVENT_F_XLATED;
	ev->orig_saddr = saddr;
	ev->orig_daddr = svc_addr;
	ev->orig_dport = svc_port;
	sk = (struct np_trace_sock *)ev->data;
	sk->xlated_daddr = be_addr;
	sk->xlated_dport = be_port;
	sk->l4_proto = proto;
	sk->xlate_point = NP_SOCK_XLATE_POST_FWD;
	sk->sock_cookie = cookie;
	sk->cgroup_id = bpf_get_current_cgroup_id();
	sk->netns_cookie = netns;
	bpf_ringbuf_submit(ev, np_trace_wakeup());
}

#endif /* NP_LIB_TRACE_H */
