// What `agentctl bpf ct list` / `bpf nat list` select from the conntrack tables: plain logic over
// one entry, so the API handler streams straight from the kernel's batches without holding the
// tables in memory.
#pragma once

#include <cstdint>
#include <optional>

#include "np_ct.h"

namespace np::ct {

struct ListFilter {
  std::optional<uint32_t> address;  // network order: in the tuple or in the rewrite
  bool snatOnly = false;            // NAT entries only (isNatEntry: `bpf nat list`)
  std::optional<np_ct_table> table;
};

bool matches(const ListFilter& f, np_ct_table t, const np_ct_key& k, const np_ct_entry& e);

// The node's NAT state as a user means it: both entries of every connection the node rewrote to
// its own address and a port it allocated, i.e. a NodePort flow to a remote backend in SNAT mode
// (NP_CT_F_SNAT) and a masqueraded pod flow (NP_CT_F_MASQ, whose reply entry has no SNAT bit).
// A pod's hairpin through a service, or a pod's service flow whose source port was moved off
// another flow's tuple (NP_CT_F_LXC | NP_CT_F_SNAT), leaves from NP_LXC_HAIRPIN_ADDR or from
// another port of the pod's own address and holds no node port: not NAT.
bool isNatEntry(const np_ct_entry& e);
// The one entry of a NAT'd connection that counts it: its reply entry, keyed by the allocated
// port (what holds the port, even once the forward entry is gone).
bool isNatMapping(const np_ct_entry& e);

}  // namespace np::ct
