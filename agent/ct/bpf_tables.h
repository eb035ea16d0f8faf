// ct::Tables over the pinned conntrack maps (np_ct4_v1, np_ctsyn4_v1) and their counters
// (np_ctstat_v1): batch lookups to walk, batch deletes to prune.
#pragma once

#include <array>

#include "bpf/map.h"
#include "ct/gc.h"

namespace np::ct {

class BpfTables final : public Tables {
 public:
  // Views of the maps (the fds stay owned by the caller, e.g. the loaded program).
  static Result<BpfTables> of(int mainFd, int embryonicFd, int statsFd);

  std::string name(np_ct_table t) const override { return maps_[t].info().name; }
  uint32_t maxEntries(np_ct_table t) const override { return maps_[t].info().maxEntries; }
  Status walk(np_ct_table t, const Chunk& fn) override;
  Result<uint64_t> remove(np_ct_table t, const std::vector<np_ct_key>& keys) override;
  std::optional<np_ct_entry> lookup(np_ct_table t, const np_ct_key& key) override { return maps_[t].lookup(key); }
  Result<Counters> counters() override;

 private:
  using CtMap = bpf::Map<np_ct_key, np_ct_entry>;
  BpfTables(CtMap main, CtMap embryonic, int statsFd) : maps_{std::move(main), std::move(embryonic)}, statsFd_(statsFd) {}
  std::array<CtMap, kTables> maps_;
  int statsFd_;
};

}  // namespace np::ct
