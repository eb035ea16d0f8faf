#include "bpf/map.h"

#include <cstring>
#include <functional>

namespace np::bpf {

Result<MapInfo> mapInfo(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return sysError("read map info");
  return MapInfo{info.name, info.type, info.key_size, info.value_size, info.max_entries, info.id};
}

namespace detail {

Status updateBatch(int fd, const MapInfo& info, const void* keys, const void* values, size_t n, size_t* done) {
  *done = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  const auto* k = static_cast<const uint8_t*>(keys);
  const auto* v = static_cast<const uint8_t*>(values);
  while (*done < n) {
    uint32_t count = static_cast<uint32_t>(std::min<size_t>(n - *done, 65536));
    int rc = bpf_map_update_batch(fd, k + *done * info.keySize, v + *done * info.valueSize, &count, &opts);
    *done += count;
    if (rc != 0) {
      int e = errno;
      if (e == E2BIG || e == ENOMEM || e == ENOSPC)
        return Error{e, "update map " + info.name,
                     "the map is full (" + std::to_string(info.maxEntries) + " entries); raise its size flag"};
      return sysError("update map " + info.name, e);
    }
  }
  return {};
}

Status deleteBatch(int fd, const MapInfo& info, const void* keys, size_t keySize, size_t n, size_t* done) {
  *done = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  const auto* k = static_cast<const uint8_t*>(keys);
  while (*done < n) {
    uint32_t count = static_cast<uint32_t>(std::min<size_t>(n - *done, 65536));
    int rc = bpf_map_delete_batch(fd, k + *done * keySize, &count, &opts);
    *done += count;
    if (rc != 0) {
      if (errno != ENOENT) return sysError("delete from map " + info.name);
      // The entry at *done is already gone: that is what we wanted.
      ++*done;
    }
  }
  return {};
}

Status walkBatches(int fd, const MapInfo& info,
                   const std::function<void(const uint8_t* keys, const uint8_t* values, uint32_t n)>& fn) {
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  alignas(8) uint8_t inBatch[64], outBatch[64];
  uint32_t chunk = 4096;
  std::vector<uint8_t> keys, values;
  bool first = true;
  for (;;) {
    keys.resize(size_t{chunk} * info.keySize);
    values.resize(size_t{chunk} * info.valueSize);
    uint32_t count = chunk;
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : inBatch, outBatch, keys.data(), values.data(), &count, &opts);
    int e = rc != 0 ? errno : 0;
    if (rc != 0 && e == ENOSPC && count == 0) {
      chunk *= 2;  // a hash bucket holds more entries than fit: retry the same position with more room
      continue;
    }
    if (count) fn(keys.data(), values.data(), count);
    if (rc != 0) {
      if (e == ENOENT) return {};
      return sysError("read map " + info.name, e);
    }
    std::memcpy(inBatch, outBatch, sizeof inBatch);
    first = false;
  }
}

Status dumpAll(int fd, const MapInfo& info, std::vector<uint8_t>& keys, std::vector<uint8_t>& values) {
  keys.clear();
  values.clear();
  return walkBatches(fd, info, [&](const uint8_t* k, const uint8_t* v, uint32_t n) {
    keys.insert(keys.end(), k, k + size_t{n} * info.keySize);
    values.insert(values.end(), v, v + size_t{n} * info.valueSize);
  });
}

// Counted chunk by chunk: a full conntrack map is never copied out whole (16 MiB at the default
// size) just to be counted.
Result<uint32_t> countEntries(int fd, const MapInfo& info) {
  uint32_t total = 0;
  NP_TRY(walkBatches(fd, info, [&](const uint8_t*, const uint8_t*, uint32_t n) { total += n; }));
  return total;
}

}  // namespace detail
}  // namespace np::bpf
