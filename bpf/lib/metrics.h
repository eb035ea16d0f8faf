/* SPDX-License-Identifier: Apache-2.0 */
/* Per-CPU packet counters (np_metrics_v1). Context-free: socket programs count here too. */
#ifndef NP_LIB_METRICS_H
#define NP_LIB_METRICS_H

#include "lib/common.h"
#include "lib/maps.h"
#include "np_drop.h"

static __always_inline void np_metric_add(__u32 dir, __u32 reason, __u32 bytes)
{
	__u32 idx = (dir << 8) | (reason & 0xff);
	struct np_metric *m = bpf_map_lookup_elem(&NP_MAP_METRICS, &idx);

	if (m) {
		m->packets++;
		m->bytes += bytes;
	}
}

#endif /* NP_LIB_METRICS_H */
