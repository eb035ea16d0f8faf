/* SPDX-License-Identifier: Apache-2.0 */
/* The context shim of this compilation unit. Library code that touches a packet includes this
 * header and uses only the np_ctx_* API (ctx_skb.h documents it; ctx_xdp.h implements the same
 * names for XDP), so tc, XDP and pod programs run the same code. An XDP entry file includes
 * lib/ctx_xdp.h before anything else; every other unit gets tc's shim from here. The two shims
 * refuse each other, so an XDP unit that pulled in tc's shim first does not compile. */
#ifndef NP_LIB_CTX_H
#define NP_LIB_CTX_H

#ifndef NP_LIB_CTX_XDP_H
#include "lib/ctx_skb.h"
#endif

#endif /* NP_LIB_CTX_H */
