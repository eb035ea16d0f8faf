/* SPDX-License-Identifier: Apache-2.0 */
/* Per-CPU packet counters, and the one drop helper every drop goes through. */
#ifndef NP_LIB_METRICS_H
#define NP_LIB_METRICS_H

#include "lib/maps.h"

static __always_inline void np_metric_add(__u32 dir, __u32 reason, __u32 bytes)
{
	__u32 idx = (dir << 8) | (reason & 0xff);
	struct np_metric *m = bpf_map_lookup_elem(&NP_MAP_METRICS, &idx);

	if (m) {
		m->packets++;
		m->bytes += bytes;
	}
}

/* Counts the drop by reason and returns the hook's drop verdict. Flow events hook in here. */
#define np_drop(ctx, dir, reason) \
	({ np_metric_add((dir), (reason), np_ctx_len(ctx)); NP_CTX_DROP; })

#endif /* NP_LIB_METRICS_H */
