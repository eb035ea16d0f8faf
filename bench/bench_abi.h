/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by bench.bpf.c and datapath_bench.cpp: the map layouts of the benchmark wrapper. */
#ifndef NP_BENCH_ABI_H
#define NP_BENCH_ABI_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>

#include "np_abi.h"

/* The headers of the input frame: Ethernet, IPv4 without options, TCP without options. Two bytes
 * of padding in front put the IPv4 and TCP headers on 4-byte boundaries, so the wrapper can copy
 * the template to its stack and patch it with aligned accesses (the verifier insists on them). */
struct np_bench_frame {
	__u8 pad[2];
	struct ethhdr eth;
	struct iphdr ip;
	struct tcphdr tcp;
};
NP_ASSERT_SIZE(struct np_bench_frame, 56);
NP_ASSERT_OFFSET(struct np_bench_frame, ip, 16);
NP_ASSERT_OFFSET(struct np_bench_frame, tcp, 36);

/* Bytes the wrapper writes back at offset 0 of the packet on every iteration. */
#define NP_BENCH_HDR_LEN 54

/* np_bench_tmpl: user space writes, the wrappers read. ARRAY, one entry. 0 -> template. */
struct np_bench_tmpl {
	struct np_bench_frame frame; /* headers as they were before the first iteration */
	__u32 flows;                 /* np_bench_vary: distinct source ports per source address */
	__u16 port_base;             /* np_bench_vary: first source port (host order) */
	__u16 len;                   /* the frame's length: the *_len wrappers cut a grown packet
				      * (DSR's option) back to it (host order) */
};
NP_ASSERT_SIZE(struct np_bench_tmpl, 64);

/* np_bench_vary's source addresses: the template's address plus a block per CPU (the counter
 * is per CPU), NP_BENCH_CPU_BLOCKS blocks of NP_BENCH_ADDRS_PER_CPU addresses: a /15 in all. With
 * 60,000 ports per address a CPU makes 245 million distinct flows before it repeats one. */
#define NP_BENCH_CPU_BLOCKS 32
#define NP_BENCH_ADDRS_PER_CPU 4096

/* np_bench_jmp: PROG_ARRAY, one entry: slot 0 holds the program under test. User space swaps it
 * between measurements; the constant index lets the JIT patch the tail call into a direct jump. */
#define NP_BENCH_SLOT 0

/* What a wrapper returns when the tail call did not happen (empty slot, or the loop limit): no tc
 * verdict uses it, so a timed run that never reached the program cannot pass for one that did. */
#define NP_BENCH_NO_TAIL_CALL 0x7e57

/* np_bench_flow: user space writes, np_bench_baseline reads. HASH. 5-tuple -> packet count. */
struct np_bench_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};
NP_ASSERT_SIZE(struct np_bench_flow_key, 16);

#endif /* NP_BENCH_ABI_H */
