// LbImage: the contents of the service, backend, reverse-NAT, affinity-match and Maglev maps as plain C++ containers
// of the ABI structs (bpf/include/np_lb.h), so planning and restore work without a kernel.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>
#include <boost/unordered/unordered_flat_map.hpp>

#include "np_lb.h"

// Byte-wise equality of the ABI structs (explicit padding makes this exact). In the global
// namespace, where the structs are, so lookup finds them.
inline bool operator==(const np_svc_key& a, const np_svc_key& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool operator==(const np_svc_val& a, const np_svc_val& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool operator==(const np_backend& a, const np_backend& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool operator==(const np_revnat& a, const np_revnat& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool operator==(const np_affinity_match& a, const np_affinity_match& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

namespace np::lb {

struct SvcKeyHash {
  size_t operator()(const np_svc_key& k) const noexcept {
    uint64_t a = (uint64_t{k.addr} << 32) | (uint64_t{k.dport} << 16) | k.slot;
    uint64_t b = (uint64_t{k.proto} << 8) | k.scope;
    return std::hash<uint64_t>{}(a * 0x9e3779b97f4a7c15ull ^ b);
  }
};
struct SvcKeyEq {
  bool operator()(const np_svc_key& a, const np_svc_key& b) const noexcept { return a == b; }
};

struct AffinityMatchHash {
  size_t operator()(const np_affinity_match& m) const noexcept {
    uint64_t a = (uint64_t{m.backend_id} << 32) | (uint64_t{m.rev_nat_id} << 8) | m.scope;
    return std::hash<uint64_t>{}(a * 0x9e3779b97f4a7c15ull);
  }
};
struct AffinityMatchEq {
  bool operator()(const np_affinity_match& a, const np_affinity_match& b) const noexcept { return a == b; }
};

// One frontend's Maglev table (backend IDs by index). Immutable once made, so images share it;
// equal when the contents are.
struct MaglevTable {
  std::shared_ptr<const std::vector<uint32_t>> ids;
  bool operator==(const MaglevTable& o) const {
    return ids == o.ids || (ids && o.ids && *ids == *o.ids);
  }
};

// Open-addressing maps: 220,000 entries (10,000 services x 10 backends) cost a few MiB and
// iterate fast, where node-based maps cost several times that.
template <typename K, typename V, typename H = boost::hash<K>, typename E = std::equal_to<K>>
using FlatMap = boost::unordered_flat_map<K, V, H, E>;

struct LbImage {
  FlatMap<np_svc_key, np_svc_val, SvcKeyHash, SvcKeyEq> services;  // slot 0 and slots
  FlatMap<uint32_t, np_backend> backends;                          // backend ID ->
  FlatMap<uint16_t, np_revnat> revNat;                             // service ID ->
  FlatMap<np_affinity_match, uint8_t, AffinityMatchHash, AffinityMatchEq> affinityMatch;  // -> 0
  FlatMap<np_svc_key, MaglevTable, SvcKeyHash, SvcKeyEq> maglev;   // service entry (slot 0) ->

  bool operator==(const LbImage&) const = default;
};

inline np_svc_key svcKey(uint32_t addrBe, uint16_t portBe, uint8_t proto, uint16_t slot,
                         uint8_t scope = NP_LB_SCOPE_EXT) {
  np_svc_key k{};
  k.addr = addrBe;
  k.dport = portBe;
  k.proto = proto;
  k.slot = slot;
  k.scope = scope;
  return k;
}

inline np_svc_key masterOf(np_svc_key k) {
  k.slot = 0;
  return k;
}

}  // namespace np::lb
