// SPDX-License-Identifier: GPL-2.0
/* Benchmark harness for BPF_PROG_TEST_RUN. With repeat > 1 the kernel runs a program over the
 * same skb again and again without restoring it, so a program that rewrites packets would time
 * its own output from the second iteration on. The wrappers here put the original headers back
 * at the start of every iteration, then tail-call the program under test (slot 0 of
 * np_bench_jmp). Their own cost is measured by putting np_bench_noop in the slot.
 *   np_bench_fixed: the same headers every time (one flow: conntrack hits).
 *   np_bench_vary:  a new source address/port every iteration (every packet opens a new flow).
 * np_bench_baseline is the reference a packet program is compared with: parse
 * Ethernet/IPv4/TCP, one hash lookup, a verdict.
 * np_bench_insert_ct / np_bench_insert_syn are the floor of a new flow (issue 6 §6): the same
 * parse, then one insert of the packet's tuple into an LRU hash of the main / embryonic conntrack
 * table's default size, key and value sizes (np_ct_key -> np_ct_entry), nothing else.
 * np_bench_xdp_fixed / np_bench_xdp_vary / np_bench_xdp_noop: the same wrappers for XDP
 * programs (xdp.bpf.o's np_xdp_entry), through their own tail-call slot (np_bench_xdp_jmp: a
 * program array takes programs of one type). XDP's test run does not restore the packet either,
 * nor the metadata a program put in front of it (xdp.bpf.c's "done" marker): the wrapper removes
 * that too.
 * np_bench_xdp_baseline: the XDP reference (the tc baseline's parse and lookup, plus a MAC rewrite:
 * what the Katran figures are relative to).
 * np_bench_vary_len / np_bench_xdp_vary_len: np_bench_vary / np_bench_xdp_vary for a program that
 * grows the packet (DSR puts its 8-byte IPv4 option after the header): they also cut the packet
 * back to the template's length first (tc: bpf_skb_adjust_room, XDP: bpf_xdp_adjust_head), with
 * the helper called on every iteration, grown or not, so the no-op through them pays it too. */
#include "lib/ctx_skb.h"
#include "bench_abi.h"
#include "np_ct.h"

/* Template headers: user space writes, the wrappers read. 0 -> struct np_bench_tmpl. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct np_bench_tmpl);
	__uint(max_entries, 1);
} np_bench_tmpl SEC(".maps");

/* Iteration counter of np_bench_vary: it writes. 0 -> count, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} np_bench_ctr SEC(".maps");

/* The program under test: user space writes, the wrappers tail-call. NP_BENCH_SLOT -> prog. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} np_bench_jmp SEC(".maps");

/* The XDP program under test: user space writes, the XDP wrappers tail-call. NP_BENCH_SLOT -> prog. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} np_bench_xdp_jmp SEC(".maps");

/* Flows the baseline knows: user space writes, np_bench_baseline reads. 5-tuple -> packets. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct np_bench_flow_key);
	__type(value, __u64);
	__uint(max_entries, 65536);
} np_bench_flow SEC(".maps");

/* The floor's tables: np_bench_insert_* write, user space counts. 5-tuple -> a zeroed entry of the
 * conntrack value's size. LRU_HASH of the main and of the embryonic conntrack table's default size. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_bench_flow_key);
	__type(value, struct np_ct_entry);
	__uint(max_entries, NP_DEFAULT_CT_MAX);
} np_bench_lru_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_bench_flow_key);
	__type(value, struct np_ct_entry);
	__uint(max_entries, NP_DEFAULT_CT_EMBRYONIC_MAX);
} np_bench_lru_syn SEC(".maps");

/* RFC 1624 incremental checksum update over 16-bit words as they sit in memory (the one's
 * complement sum does not care about byte order as long as every word is read the same way). */
static __always_inline __u16 np_bench_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline __u16 np_bench_csum_replace(__u16 check, __u32 from, __u32 to)
{
	__u32 sum = (__u16)~check;

	sum += (~from & 0xffff) + (~from >> 16);
	sum += (to & 0xffff) + (to >> 16);
	return np_bench_csum_fold(sum);
}

SEC("tc")
int np_bench_fixed(struct __sk_buff *ctx)
{
	__u32 zero = 0;
	struct np_bench_tmpl *t = bpf_map_lookup_elem(&np_bench_tmpl, &zero);

	if (!t)
		return NP_BENCH_NO_TAIL_CALL;
	if (bpf_skb_store_bytes(ctx, 0, &t->frame.eth, NP_BENCH_HDR_LEN, 0) < 0)
		return NP_BENCH_NO_TAIL_CALL;
	bpf_tail_call(ctx, &np_bench_jmp, NP_BENCH_SLOT);
	return NP_BENCH_NO_TAIL_CALL;
}

/* The next new flow's headers into out, the frame's length into len: false when the maps are
 * missing. */
static __always_inline bool np_bench_next_flow(struct np_bench_frame *out, __u32 *len)
{
	__u32 zero = 0, i, flows;
	struct np_bench_tmpl *t = bpf_map_lookup_elem(&np_bench_tmpl, &zero);
	__u32 *ctr = bpf_map_lookup_elem(&np_bench_ctr, &zero);
	struct np_bench_frame f;
	__be32 saddr;
	__be16 sport;

	if (!t || !ctr)
		return false;
	i = (*ctr)++;
	flows = t->flows ? t->flows : 1;
	__builtin_memcpy(&f, &t->frame, sizeof(f));

	/* Source port cycles through `flows` ports; the source address moves on after each cycle.
	 * The counter is per CPU and a test run may move between CPUs, so each CPU gets its own
	 * block of NP_BENCH_ADDRS_PER_CPU source addresses: no flow repeats across CPUs either. */
	sport = bpf_htons(t->port_base + i % flows);
	saddr = bpf_htonl(bpf_ntohl(f.ip.saddr) +
			  (bpf_get_smp_processor_id() % NP_BENCH_CPU_BLOCKS) * NP_BENCH_ADDRS_PER_CPU +
			  (i / flows) % NP_BENCH_ADDRS_PER_CPU);
	f.ip.check = np_bench_csum_replace(f.ip.check, f.ip.saddr, saddr);
	f.tcp.check = np_bench_csum_replace(f.tcp.check, f.ip.saddr, saddr);
	f.tcp.check = np_bench_csum_replace(f.tcp.check, f.tcp.source, sport);
	f.ip.saddr = saddr;
	f.tcp.source = sport;
	__builtin_memcpy(out, &f, sizeof(f));
	*len = t->len;
	return true;
}

SEC("tc")
int np_bench_vary(struct __sk_buff *ctx)
{
	struct np_bench_frame f;
	__u32 len;

	if (!np_bench_next_flow(&f, &len))
		return NP_BENCH_NO_TAIL_CALL;
	if (bpf_skb_store_bytes(ctx, 0, &f.eth, NP_BENCH_HDR_LEN, 0) < 0)
		return NP_BENCH_NO_TAIL_CALL;
	bpf_tail_call(ctx, &np_bench_jmp, NP_BENCH_SLOT);
	return NP_BENCH_NO_TAIL_CALL;
}

/* DSR's option went in right after the IPv4 header (bpf_skb_adjust_room, BPF_ADJ_ROOM_NET, which
 * takes the room from the headroom): the same helper takes the surplus out there again, which
 * gives the headroom back (cutting at the tail would not, and every few iterations the grow would
 * then reallocate the head), and the headers are written back over it. */
SEC("tc")
int np_bench_vary_len(struct __sk_buff *ctx)
{
	struct np_bench_frame f;
	__u32 len;

	if (!np_bench_next_flow(&f, &len) || len < NP_BENCH_HDR_LEN || ctx->len < len)
		return NP_BENCH_NO_TAIL_CALL;
	if (bpf_skb_adjust_room(ctx, -(__s32)(ctx->len - len), BPF_ADJ_ROOM_NET, 0) < 0)
		return NP_BENCH_NO_TAIL_CALL;
	if (bpf_skb_store_bytes(ctx, 0, &f.eth, NP_BENCH_HDR_LEN, 0) < 0)
		return NP_BENCH_NO_TAIL_CALL;
	bpf_tail_call(ctx, &np_bench_jmp, NP_BENCH_SLOT);
	return NP_BENCH_NO_TAIL_CALL;
}

/* XDP: drops the 4-byte metadata word a previous iteration left (the only metadata xdp.bpf.c
 * writes), then writes the headers back. False when the packet is too short. */
static __always_inline bool np_bench_xdp_restore(struct xdp_md *ctx, const struct np_bench_frame *f)
{
	void *meta = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;
	void *data_end;

	if (meta + 4 <= data && bpf_xdp_adjust_meta(ctx, 4) < 0)
		return false;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + NP_BENCH_HDR_LEN > data_end)
		return false;
	__builtin_memcpy(data, &f->eth, NP_BENCH_HDR_LEN);
	return true;
}

SEC("xdp")
int np_bench_xdp_fixed(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct np_bench_tmpl *t = bpf_map_lookup_elem(&np_bench_tmpl, &zero);
	struct np_bench_frame f;

	if (!t)
		return NP_BENCH_NO_TAIL_CALL;
	__builtin_memcpy(&f, &t->frame, sizeof(f));
	if (!np_bench_xdp_restore(ctx, &f))
		return NP_BENCH_NO_TAIL_CALL;
	bpf_tail_call(ctx, &np_bench_xdp_jmp, NP_BENCH_SLOT);
	return NP_BENCH_NO_TAIL_CALL;
}

SEC("xdp")
int np_bench_xdp_vary(struct xdp_md *ctx)
{
	struct np_bench_frame f;
	__u32 len;

	if (!np_bench_next_flow(&f, &len) || !np_bench_xdp_restore(ctx, &f))
		return NP_BENCH_NO_TAIL_CALL;
	bpf_tail_call(ctx, &np_bench_xdp_jmp, NP_BENCH_SLOT);
	return NP_BENCH_NO_TAIL_CALL;
}

/* XDP's DSR made room for the option at the front (bpf_xdp_adjust_head) and moved the Ethernet
 * and IPv4 headers there: dropping the surplus at the front and writing the headers back gives the
 * original frame. The metadata goes first (np_bench_xdp_restore), so the front that moves is the
 * packet's. */
SEC("xdp")
int np_bench_xdp_vary_len(struct xdp_md *ctx)
{
	void *meta = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;
	struct np_bench_frame f;
	__u32 len;
	long cur;

	if (!np_bench_next_flow(&f, &len) || len < NP_BENCH_HDR_LEN)
		return NP_BENCH_NO_TAIL_CALL;
	if (meta + 4 <= data && bpf_xdp_adjust_meta(ctx, 4) < 0)
		return NP_BENCH_NO_TAIL_CALL;
	cur = (long)ctx->data_end - (long)ctx->data;
	if (cur < len || bpf_xdp_adjust_head(ctx, (int)(cur - len)) < 0)
		return NP_BENCH_NO_TAIL_CALL;
	if (!np_bench_xdp_restore(ctx, &f))
		return NP_BENCH_NO_TAIL_CALL;
	bpf_tail_call(ctx, &np_bench_xdp_jmp, NP_BENCH_SLOT);
	return NP_BENCH_NO_TAIL_CALL;
}

SEC("xdp")
int np_bench_xdp_noop(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int np_bench_noop(struct __sk_buff *ctx)
{
	return TC_ACT_OK;
}

/* Ethernet/IPv4/TCP of the packet into key; false for anything else. */
static __always_inline bool np_bench_parse(struct __sk_buff *ctx, struct np_bench_flow_key *key)
{
	void *data = np_ctx_data(ctx), *data_end = np_ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *tcp;

	if ((void *)(ip + 1) > data_end)
		return false;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return false;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return false;
	key->saddr = ip->saddr;
	key->daddr = ip->daddr;
	key->sport = tcp->source;
	key->dport = tcp->dest;
	key->proto = ip->protocol;
	return true;
}

static __always_inline int np_bench_insert(struct __sk_buff *ctx, void *lru)
{
	struct np_bench_flow_key key = {};
	struct np_ct_entry e = {};

	if (!np_bench_parse(ctx, &key))
		return TC_ACT_OK;
	return bpf_map_update_elem(lru, &key, &e, BPF_NOEXIST) == 0 ? TC_ACT_OK : TC_ACT_SHOT;
}

SEC("tc")
int np_bench_insert_ct(struct __sk_buff *ctx)
{
	return np_bench_insert(ctx, &np_bench_lru_ct);
}

SEC("tc")
int np_bench_insert_syn(struct __sk_buff *ctx)
{
	return np_bench_insert(ctx, &np_bench_lru_syn);
}

SEC("tc")
int np_bench_baseline(struct __sk_buff *ctx)
{
	void *data = np_ctx_data(ctx), *data_end = np_ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct np_bench_flow_key key = {};
	struct tcphdr *tcp;

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return TC_ACT_OK;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return TC_ACT_OK;
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.sport = tcp->source;
	key.dport = tcp->dest;
	key.proto = ip->protocol;
	return bpf_map_lookup_elem(&np_bench_flow, &key) ? TC_ACT_OK : TC_ACT_SHOT;
}

/* The XDP reference, as the issue states Katran's baseline: parse Ethernet/IPv4/TCP, one hash
 * lookup, a MAC rewrite (source and destination swapped), XDP_PASS. */
SEC("xdp")
int np_bench_xdp_baseline(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct np_bench_flow_key key = {};
	unsigned char mac[ETH_ALEN];
	struct tcphdr *tcp;

	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
		return XDP_PASS;
	tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	key.saddr = ip->saddr;
	key.daddr = ip->daddr;
	key.sport = tcp->source;
	key.dport = tcp->dest;
	key.proto = ip->protocol;
	if (!bpf_map_lookup_elem(&np_bench_flow, &key))
		return XDP_DROP;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
