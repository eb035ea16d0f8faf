/* SPDX-License-Identifier: Apache-2.0 */
/* Drop reasons and metric slots. Reason numbers follow Hubble's flow.proto DropReason so Hubble
 * clients name them correctly; they are stable and never reused. */
#ifndef NP_DROP_H
#define NP_DROP_H

#include "np_abi.h"

/* The one list of drop reasons: X(NAME, number, Hubble's flow.proto DropReason name for that
 * number, Cilium's description of it). It generates enum np_drop_reason below and the agent's name
 * table (agent/datapath/drop_reasons.h); test/unit/drop_reason_test.cpp checks both against
 * flow.proto. A new reason is one line here, numbered as Hubble numbers it. */
#define NP_DROP_REASONS(X)                                                                      \
	X(INVALID_SOURCE_IP,  132, "INVALID_SOURCE_IP", "Invalid source ip")                     \
	X(INVALID_PACKET,     134, "INVALID_PACKET_DROPPED", "Invalid packet")                     \
	X(TRUNCATED_HEADER,   135, "CT_TRUNCATED_OR_INVALID_HEADER",                               \
	  "CT: Truncated or invalid header")                                                       \
	/* Cilium's DROP_FRAG_NEEDED; flow.proto kept the number's older name. */                  \
	X(FRAG_NEEDED,        136, "CT_MISSING_TCP_ACK_FLAG", "Fragmentation needed")              \
	X(CT_CANT_CREATE,     138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET",                           \
	  "CT: Can't create entry from packet")                                                    \
	X(WRITE_ERROR,        141, "ERROR_WRITING_TO_PACKET", "Error writing to packet")           \
	X(CSUM_L3,            153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM",                           \
	  "Error while correcting L3 checksum")                                                    \
	X(CSUM_L4,            154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM",                           \
	  "Error while correcting L4 checksum")                                                    \
	X(CT_CREATE_FAILED,   155, "CT_MAP_INSERTION_FAILED", "CT: Map insertion failed")          \
	X(FRAGMENT,           157, "IP_FRAGMENTATION_NOT_SUPPORTED", "IP fragmentation not supported") \
	X(NO_SERVICE_BACKEND, 158, "SERVICE_BACKEND_NOT_FOUND", "Service backend not found")       \
	X(NAT_NO_MAPPING,     167, "NO_MAPPING_FOR_NAT_MASQUERADE", "No mapping for NAT masquerade") \
	X(FIB_LOOKUP_FAILED,  169, "FIB_LOOKUP_FAILED", "FIB lookup failed")                       \
	X(IS_CLUSTER_IP,      174, "IS_A_CLUSTERIP", "Is a ClusterIP")                             \
	X(FRAG_NOT_FOUND,     175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND",                     \
	  "First logical datagram fragment not found")                                             \
	X(TTL_EXCEEDED,       196, "TTL_EXCEEDED", "TTL exceeded")

enum np_drop_reason {
#define NP_DROP_ENUM_(name, num, hubble, desc) NP_DROP_##name = num,
	NP_DROP_REASONS(NP_DROP_ENUM_)
#undef NP_DROP_ENUM_
};

/* np_metrics_v1: programs count, the agent sums across CPUs. PERCPU_ARRAY.
 * index = (direction << 8) | reason -> packets, bytes. reason 0 = forwarded. */
enum np_metric_dir {
	NP_METRIC_INGRESS = 0,
	NP_METRIC_EGRESS = 1,
	NP_METRIC_SOCK = 2,
};
#define NP_METRIC_FORWARDED 0
#define NP_METRICS_MAX (3 << 8)

/* A reason is the low byte of a metrics index, and 0 there means "forwarded". */
#define NP_DROP_FITS_(name, num, hubble, desc) \
	NP_STATIC_ASSERT((num) > NP_METRIC_FORWARDED && (num) < 256, "NP_DROP_" #name " fits no metrics slot");
NP_DROP_REASONS(NP_DROP_FITS_)
#undef NP_DROP_FITS_

struct np_metric {
	__u64 packets;
	__u64 bytes;
};
NP_ASSERT_SIZE(struct np_metric, 16);

#endif /* NP_DROP_H */
