#include "bpf/map.h"

#include <cstring>

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

Status dumpAll(int fd, const MapInfo& info, std::vector<uint8_t>& keys, std::vector<uint8_t>& values) {
  keys.clear();
  values.clear();
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  alignas(8) uint8_t inBatch[64], outBatch[64];
  bool first = true;
  uint32_t chunk = 4096;
  for (;;) {
    size_t have = keys.size() / info.keySize;
    keys.resize((have + chunk) * info.keySize);
    values.resize((have + chunk) * info.valueSize);
    uint32_t count = chunk;
    int rc = bpf_map_lookup_batch(fd, first ? nullptr : inBatch, outBatch, keys.data() + have * info.keySize,
                                  values.data() + have * info.valueSize, &count, &opts);
    int e = rc != 0 ? errno : 0;
    if (rc != 0 && e == ENOSPC && count == 0) {
      // A hash bucket holds more entries than fit: retry the same position with more room.
      keys.resize(have * info.keySize);
      values.resize(have * info.valueSize);
      chunk *= 2;
      continue;
    }
    keys.resize((have + count) * info.keySize);
    values.resize((have + count) * info.valueSize);
    if (rc != 0) {
      if (e == ENOENT) return {};
      return sysError("read map " + info.name, e);
    }
    std::memcpy(inBatch, outBatch, sizeof inBatch);
    first = false;
  }
}

Result<uint32_t> countEntries(int fd, const MapInfo& info) {
  std::vector<uint8_t> k, v;
  NP_TRY(dumpAll(fd, info, k, v));
  return static_cast<uint32_t>(k.size() / info.keySize);
}

}  // namespace detail
}  // namespace np::bpf
