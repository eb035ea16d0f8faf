#include "ct/bpf_tables.h"

#include <algorithm>

namespace np::ct {

Result<BpfTables> BpfTables::of(int mainFd, int embryonicFd, int statsFd) {
  auto main = CtMap::of(mainFd);
  if (!main) return main.error();
  auto embryonic = CtMap::of(embryonicFd);
  if (!embryonic) return embryonic.error();
  auto stats = bpf::mapInfo(statsFd);
  if (!stats) return stats.error();
  if (stats->valueSize != sizeof(np_ct_stat) || stats->maxEntries < kTables)
    return error("map " + stats->name, "layout differs from this agent's np_ct_stat[" + std::to_string(kTables) + "]");
  return BpfTables(std::move(*main), std::move(*embryonic), statsFd);
}

Status BpfTables::walk(np_ct_table t, const Chunk& fn) {
  const CtMap& m = maps_[t];
  return bpf::detail::walkBatches(m.fd(), m.info(), [&](const uint8_t* k, const uint8_t* v, uint32_t n) {
    // The batch buffers are byte vectors of whole keys/values: alignment of their data() is
    // operator new's (16), enough for both structs.
    fn(reinterpret_cast<const np_ct_key*>(k), reinterpret_cast<const np_ct_entry*>(v), n);
  });
}

Result<uint64_t> BpfTables::remove(np_ct_table t, const std::vector<np_ct_key>& keys) {
  const CtMap& m = maps_[t];
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  uint64_t deleted = 0;
  size_t at = 0;
  while (at < keys.size()) {
    uint32_t count = static_cast<uint32_t>(std::min<size_t>(keys.size() - at, 65536));
    int rc = bpf_map_delete_batch(m.fd(), keys.data() + at, &count, &opts);
    // count says how many were deleted before the call stopped.
    deleted += count;
    at += count;
    if (rc != 0) {
      if (errno != ENOENT) return sysError("delete expired entries from map " + m.info().name);
      ++at;  // already gone (evicted, or deleted by the datapath): not ours to count
    }
  }
  return deleted;
}

Result<Counters> BpfTables::counters() {
  auto all = bpf::sumPerCpuAll<np_ct_stat>(statsFd_, kTables);
  if (!all) return all.error();
  Counters out{};
  std::copy_n(all->begin(), kTables, out.begin());
  return out;
}

}  // namespace np::ct
