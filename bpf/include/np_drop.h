/* SPDX-License-Identifier: Apache-2.0 */
/* Drop reasons and metric slots. Reason numbers follow Hubble's flow.proto DropReason so Hubble
 * clients name them correctly; they are stable and never reused. */
#ifndef NP_DROP_H
#define NP_DROP_H

#include "np_abi.h"

enum np_drop_reason {
	NP_DROP_INVALID_PACKET      = 134, /* INVALID_PACKET_DROPPED */
	NP_DROP_TRUNCATED_HEADER    = 135, /* CT_TRUNCATED_OR_INVALID_HEADER */
	NP_DROP_CT_CREATE_FAILED    = 155, /* CT_MAP_INSERTION_FAILED */
	NP_DROP_FRAGMENT            = 157, /* IP_FRAGMENTATION_NOT_SUPPORTED */
	NP_DROP_NO_SERVICE_BACKEND  = 158, /* SERVICE_BACKEND_NOT_FOUND */
	NP_DROP_NAT_NO_MAPPING      = 167, /* NO_MAPPING_FOR_NAT_MASQUERADE */
	NP_DROP_FIB_LOOKUP_FAILED   = 169, /* FIB_LOOKUP_FAILED */
	NP_DROP_IS_CLUSTER_IP       = 174, /* IS_A_CLUSTERIP */
	NP_DROP_TTL_EXCEEDED        = 196, /* TTL_EXCEEDED */
	NP_DROP_WRITE_ERROR         = 141, /* ERROR_WRITING_TO_PACKET */
	NP_DROP_CSUM_L3             = 153, /* ERROR_WHILE_CORRECTING_L3_CHECKSUM */
	NP_DROP_CSUM_L4             = 154, /* ERROR_WHILE_CORRECTING_L4_CHECKSUM */
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

struct np_metric {
	__u64 packets;
	__u64 bytes;
};
NP_ASSERT_SIZE(struct np_metric, 16);

#endif /* NP_DROP_H */
