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
  bool snatOnly = false;            // entries of SNAT'd flows (the NAT state)
  std::optional<np_ct_table> table;
};

bool matches(const ListFilter& f, np_ct_table t, const np_ct_key& k, const np_ct_entry& e);

}  // namespace np::ct
