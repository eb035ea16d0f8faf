/* SPDX-License-Identifier: Apache-2.0 */
/* The one drop helper every packet drop goes through: counts it by reason (lib/metrics.h) and
 * returns the hook's drop verdict, and reports it as a flow event (lib/trace.h). */
#ifndef NP_LIB_DROP_H
#define NP_LIB_DROP_H

#include "lib/ctx.h"
#include "lib/metrics.h"
#include "lib/trace.h"
#include "np_drop.h"

/* reason: enum np_drop_reason; dir: enum np_metric_dir. */
static __always_inline int np_drop(np_ctx_t *ctx, __u32 dir, __u32 reason)
{
	np_metric_add(dir, reason, np_ctx_len(ctx));
	np_trace_drop(ctx, dir, reason);
	return NP_CTX_DROP;
}

#endif /* NP_LIB_DROP_H */
