// Typed views of BPF maps. A Map<K, V> checks sizeof(K)/sizeof(V) against the kernel's map once,
// when it is made, so a layout mismatch is an error at start-up instead of garbage at run time.
// Large maps are read and written with batch operations, never one syscall per entry.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace np::bpf {

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int f = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = f;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct MapInfo {
  std::string name;
  uint32_t type = 0;
  uint32_t keySize = 0;
  uint32_t valueSize = 0;
  uint32_t maxEntries = 0;
  uint32_t id = 0;
};

Result<MapInfo> mapInfo(int fd);

// Untyped batch helpers used by Map<K, V>.
namespace detail {
// Updates n entries; *done says how many went in before an error.
Status updateBatch(int fd, const MapInfo& info, const void* keys, const void* values, size_t n, size_t* done);
// Deletes n entries, treating an entry that is already gone as deleted.
Status deleteBatch(int fd, const MapInfo& info, const void* keys, size_t keySize, size_t n, size_t* done);
// Walks the map with batch lookups, handing each chunk of entries to fn.
Status walkBatches(int fd, const MapInfo& info,
                   const std::function<void(const uint8_t* keys, const uint8_t* values, uint32_t n)>& fn);
// Reads every entry into keys/values (raw, keySize/valueSize strided).
Status dumpAll(int fd, const MapInfo& info, std::vector<uint8_t>& keys, std::vector<uint8_t>& values);
// Counts entries (batch reads, values discarded).
Result<uint32_t> countEntries(int fd, const MapInfo& info);
}  // namespace detail

template <typename K, typename V>
class Map {
 public:
  // A view of fd (not owned: the skeleton or the caller keeps it open).
  static Result<Map> of(int fd) {
    auto info = mapInfo(fd);
    if (!info) return info.error();
    if (info->keySize != sizeof(K) || info->valueSize != sizeof(V))
      return error("map " + info->name, "key/value sizes " + std::to_string(info->keySize) + "/" +
                                            std::to_string(info->valueSize) + " do not match this agent's " +
                                            std::to_string(sizeof(K)) + "/" + std::to_string(sizeof(V)));
    return Map(fd, std::move(*info));
  }

  std::optional<V> lookup(const K& k) const {
    V v;
    if (bpf_map_lookup_elem(fd_, &k, &v) != 0) return std::nullopt;
    return v;
  }
  Status update(const K& k, const V& v, uint64_t flags = BPF_ANY) {
    if (bpf_map_update_elem(fd_, &k, &v, flags) != 0) return sysError("update map " + info_.name);
    return {};
  }
  Status remove(const K& k) {
    if (bpf_map_delete_elem(fd_, &k) != 0 && errno != ENOENT) return sysError("delete from map " + info_.name);
    return {};
  }
  Status updateBatch(const std::vector<K>& keys, const std::vector<V>& values, size_t* done) {
    return detail::updateBatch(fd_, info_, keys.data(), values.data(), keys.size(), done);
  }
  Status deleteBatch(const std::vector<K>& keys, size_t* done) {
    return detail::deleteBatch(fd_, info_, keys.data(), sizeof(K), keys.size(), done);
  }
  Result<std::vector<std::pair<K, V>>> dump() const {
    std::vector<uint8_t> kb, vb;
    NP_TRY(detail::dumpAll(fd_, info_, kb, vb));
    std::vector<std::pair<K, V>> out(kb.size() / sizeof(K));
    for (size_t i = 0; i < out.size(); ++i) {
      std::memcpy(&out[i].first, kb.data() + i * sizeof(K), sizeof(K));
      std::memcpy(&out[i].second, vb.data() + i * sizeof(V), sizeof(V));
    }
    return out;
  }
  Result<uint32_t> count() const { return detail::countEntries(fd_, info_); }

  int fd() const { return fd_; }
  const MapInfo& info() const { return info_; }

 private:
  Map(int fd, MapInfo info) : fd_(fd), info_(std::move(info)) {}
  int fd_;
  MapInfo info_;
};

namespace detail {
// Adds up one per-CPU value as the kernel copies it out: each CPU's V at an 8-byte-aligned
// stride. Counters are copied with memcpy: V's fields are __u64 (unsigned long long), and
// writing them through uint64_t* (unsigned long) would be undefined behaviour.
template <typename V>
V sumCpus(const uint8_t* buf, size_t ncpus, size_t stride) {
  constexpr size_t n = sizeof(V) / sizeof(uint64_t);
  uint64_t total[n] = {};
  for (size_t c = 0; c < ncpus; ++c) {
    uint64_t cpu[n];
    std::memcpy(cpu, buf + stride * c, sizeof cpu);
    for (size_t i = 0; i < n; ++i) total[i] += cpu[i];
  }
  V sum;
  std::memcpy(&sum, total, sizeof sum);
  return sum;
}
}  // namespace detail

// Sums a per-CPU array slot across CPUs: V must be a struct of uint64_t counters.
template <typename V>
Result<V> sumPerCpu(int fd, uint32_t index) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return error("count possible CPUs");
  const size_t stride = (sizeof(V) + 7) & ~size_t{7};
  std::vector<uint8_t> buf(stride * static_cast<size_t>(ncpus));
  if (bpf_map_lookup_elem(fd, &index, buf.data()) != 0) return sysError("read per-CPU counter " + std::to_string(index));
  return detail::sumCpus<V>(buf.data(), static_cast<size_t>(ncpus), stride);
}

// Every slot 0..count-1 of a per-CPU array, summed across CPUs, read with one batch syscall.
template <typename V>
Result<std::vector<V>> sumPerCpuAll(int fd, uint32_t count) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return error("count possible CPUs");
  const size_t stride = (sizeof(V) + 7) & ~size_t{7};
  const size_t perKey = stride * static_cast<size_t>(ncpus);
  std::vector<uint32_t> keys(count);
  std::vector<uint8_t> values(perKey * count);
  uint32_t outBatch = 0, n = count;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  if (bpf_map_lookup_batch(fd, nullptr, &outBatch, keys.data(), values.data(), &n, &opts) != 0 && errno != ENOENT)
    return sysError("read per-CPU counters");
  std::vector<V> out(count);
  for (uint32_t i = 0; i < n; ++i)
    if (keys[i] < count) out[keys[i]] = detail::sumCpus<V>(values.data() + perKey * i, static_cast<size_t>(ncpus), stride);
  return out;
}

}  // namespace np::bpf
