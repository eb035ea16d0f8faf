/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events: what a program saw at an observation point, sent through the np_events_v1 ring
 * buffer to the agent (agent/flows/), which decodes them into Hubble flows. Observation points,
 * verdicts and event types use Hubble's flow.proto numbers (TraceObservationPoint, Verdict) and
 * Cilium's monitor message types, so the agent passes them through unchanged;
 * test/unit/flows_test.cpp checks them against proto/flow/flow.proto. Drop reasons are
 * np_drop.h's. */
#ifndef NP_TRACE_H
#define NP_TRACE_H

#include "np_abi.h"
#include "np_drop.h"

/* X(NAME, number, flow.proto TraceObservationPoint name). */
#define NP_TRACE_POINTS(X)                  \
	X(UNKNOWN, 0, "UNKNOWN_POINT")      \
	X(TO_STACK, 3, "TO_STACK")          \
	X(FROM_NETWORK, 10, "FROM_NETWORK") \
	X(TO_NETWORK, 11, "TO_NETWORK")

enum np_trace_point {
#define NP_TRACE_ENUM_(name, num, hubble) NP_TRACE_##name = num,
	NP_TRACE_POINTS(NP_TRACE_ENUM_)
#undef NP_TRACE_ENUM_
};

/* X(NAME, number, flow.proto Verdict name). */
#define NP_VERDICTS(X)                     \
	X(UNKNOWN, 0, "VERDICT_UNKNOWN")   \
	X(FORWARDED, 1, "FORWARDED")       \
	X(DROPPED, 2, "DROPPED")           \
	X(TRACED, 6, "TRACED")             \
	X(TRANSLATED, 7, "TRANSLATED")

enum np_verdict {
#define NP_VERDICT_ENUM_(name, num, hubble) NP_VERDICT_##name = num,
	NP_VERDICTS(NP_VERDICT_ENUM_)
#undef NP_VERDICT_ENUM_
};

/* Cilium's monitor message types, Hubble's CiliumEventType.type. */
enum np_event_type {
	NP_EVENT_DROP = 1,
	NP_EVENT_TRACE = 4,
	NP_EVENT_TRACE_SOCK = 7, /* socket-level translation (sock.bpf.c): no packet, see np_trace_sock */
};

/* flow.proto SocketTranslationPoint: where a socket-level event was taken. */
enum np_sock_xlate_point {
	NP_SOCK_XLATE_UNKNOWN = 0,
	NP_SOCK_XLATE_PRE_FWD = 1,  /* before the service translation (destination: the service) */
	NP_SOCK_XLATE_POST_FWD = 2, /* after it (destination: the backend) */
	NP_SOCK_XLATE_PRE_REV = 3,
	NP_SOCK_XLATE_POST_REV = 4,
};

enum np_event_flags {
	NP_EVENT_F_XLATED = 1 << 0, /* orig_* hold the tuple before translation */
	NP_EVENT_F_REPLY  = 1 << 1, /* the reply direction of a translated flow */
};

/* Bytes of the packet (from its Ethernet header) an event carries: the agent parses the tuple,
 * as the packet left the program, from these. */
#define NP_TRACE_SNAPLEN 128

/* np_events_v1: every packet program writes (bpf_ringbuf_reserve, never blocks: a full buffer is
 * counted in np_evstat_v1), the agent's flow reader consumes. RINGBUF, size in bytes. */
struct np_trace_event {
	__u64 ktime;        /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u8 type;          /* enum np_event_type */
	__u8 point;         /* enum np_trace_point */
	__u8 verdict;       /* enum np_verdict */
	__u8 reason;        /* enum np_drop_reason, 0 unless dropped */
	__u32 ifindex;      /* device the program runs on */
	__u32 len;          /* packet length */
	__u16 cap_len;      /* bytes of data[] that hold the packet */
	__u16 rev_nat_id;   /* service (frontend) ID of a translated flow, host order; 0 none */
	__u8 tcp_flags;     /* TCP flags of this packet */
	__u8 flags;         /* enum np_event_flags */
	__u8 pad[2];
	__be32 orig_saddr;  /* NP_EVENT_F_XLATED: the tuple before translation */
	__be32 orig_daddr;
	__be16 orig_sport;
	__be16 orig_dport;
	__u8 data[NP_TRACE_SNAPLEN]; /* the packet from its Ethernet header, as it left */
};
NP_ASSERT_SIZE(struct np_trace_event, 40 + NP_TRACE_SNAPLEN);
NP_ASSERT_OFFSET(struct np_trace_event, orig_saddr, 28);

/* NP_EVENT_TRACE_SOCK: one event per socket translation to a new backend (a connect(), or the
 * first datagram of a socket to that backend), carrying both sides of it, so the agent shows
 * Hubble's pre- and post-translation flows from one record. In np_trace_event: point
 * NP_TRACE_UNKNOWN, verdict NP_VERDICT_TRANSLATED, rev_nat_id the service, flags
 * NP_EVENT_F_XLATED, orig_saddr the socket's source address (0 while unbound), orig_daddr/
 * orig_dport the service frontend, orig_sport 0 (not bound yet), cap_len 0, and data[] starts
 * with this: */
struct np_trace_sock {
	__be32 xlated_daddr; /* the backend chosen */
	__be16 xlated_dport;
	__u8 l4_proto;       /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 xlate_point;    /* enum np_sock_xlate_point: POST_FWD */
	__u64 sock_cookie;   /* bpf_get_socket_cookie() */
	__u64 cgroup_id;     /* cgroup v2 ID of the process (bpf_get_current_cgroup_id()) */
	__u64 netns_cookie;  /* bpf_get_netns_cookie() of the socket: which pod (or the host) it is */
};
NP_ASSERT_SIZE(struct np_trace_sock, 32);

/* np_evstat_v1: programs count, the agent sums per CPU. PERCPU_ARRAY, one slot. */
struct np_trace_stat {
	__u64 emitted; /* events written to the ring buffer */
	__u64 lost;    /* events the full ring buffer refused */
};
NP_ASSERT_SIZE(struct np_trace_stat, 16);

/* Monitor aggregation of established flows (Cilium's --monitor-aggregation): which TCP flags make
 * a packet of a known flow worth reporting; every other packet of it is reported at most once per
 * interval. Drops are always reported. */
enum np_trace_aggregation {
	NP_TRACE_AGG_NONE = 0,   /* every packet */
	NP_TRACE_AGG_LOW = 1,    /* a TCP flag not reported before in this direction */
	NP_TRACE_AGG_MEDIUM = 2, /* a SYN, FIN or RST not reported before */
	NP_TRACE_AGG_MAX = 3,    /* as medium (there is no per-packet notification to drop further) */
};

/* lib/trace.h (np_trace_cfg): set by the agent before load, the same in every program. */
struct np_trace_config {
	__u8 enabled;       /* 0: no events at all (dead code) */
	__u8 aggregation;   /* enum np_trace_aggregation */
	__u16 interval_s;   /* report a known flow at least this often, seconds (counted in 2^30 ns) */
	__u32 wakeup_bytes; /* wake the reader once this much waits in np_events_v1 (the loader: a quarter
			     * of the ring as loaded); 0: a quarter, asked of the ring at each event */
};
NP_ASSERT_SIZE(struct np_trace_config, 8);

#define NP_DEFAULT_EVENTS_SIZE (4u << 20) /* bytes; a power of two, >= a page */
#define NP_DEFAULT_TRACE_INTERVAL_S 5
#define NP_EVENTS_POLL_MS 20 /* the reader drains the ring this often (events submit without wakeup) */

#endif /* NP_TRACE_H */
