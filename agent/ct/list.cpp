#include "ct/list.h"

namespace np::ct {

bool matches(const ListFilter& f, np_ct_table t, const np_ct_key& k, const np_ct_entry& e) {
  if (f.table && *f.table != t) return false;
  if (f.snatOnly && !isNatEntry(e)) return false;
  if (f.address) {
    const uint32_t a = *f.address;
    if (k.saddr != a && k.daddr != a && e.nat_saddr != a && e.nat_daddr != a) return false;
  }
  return true;
}

bool isNatEntry(const np_ct_entry& e) {
  return (e.flags & (NP_CT_F_SNAT | NP_CT_F_MASQ)) && !(e.flags & NP_CT_F_LXC);
}

bool isNatMapping(const np_ct_entry& e) { return isNatEntry(e) && (e.flags & NP_CT_F_REPLY); }

}  // namespace np::ct
