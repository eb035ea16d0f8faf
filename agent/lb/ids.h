// ID allocation for service frontends (reverse-NAT IDs, u16) and backends (u32). IDs are stable
// for a key while it is in use, restored from pinned maps after a restart, and handed out
// next-fit so a freed ID is not reused at once (a conntrack entry may still name it).
#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <optional>
#include <vector>

namespace np::lb {

template <typename Key, typename Id, typename Hash = boost::hash<Key>, typename Eq = std::equal_to<Key>>
class IdAllocator {
 public:
  IdAllocator(Id first, Id last) : first_(first), last_(last), next_(first) {}

  // The ID of key, allocating one if it has none. nullopt when every ID is taken.
  std::optional<Id> acquire(const Key& key) {
    if (auto it = byKey_.find(key); it != byKey_.end()) return it->second;
    if (byKey_.size() >= uint64_t{last_} - first_ + 1) return std::nullopt;
    for (;;) {
      Id id = next_;
      next_ = next_ == last_ ? first_ : static_cast<Id>(next_ + 1);
      if (!used(id)) {
        setUsed(id, true);
        byKey_.emplace(key, id);
        return id;
      }
    }
  }

  // Records an ID found in restored state. False if the ID is out of range or taken.
  bool restore(const Key& key, Id id) {
    if (id < first_ || id > last_ || used(id) || byKey_.count(key)) return false;
    setUsed(id, true);
    byKey_.emplace(key, id);
    if (id >= next_) next_ = id == last_ ? first_ : static_cast<Id>(id + 1);
    return true;
  }

  std::optional<Id> find(const Key& key) const {
    auto it = byKey_.find(key);
    if (it == byKey_.end()) return std::nullopt;
    return it->second;
  }

  void release(const Key& key) {
    auto it = byKey_.find(key);
    if (it == byKey_.end()) return;
    setUsed(it->second, false);
    byKey_.erase(it);
  }

  // Releases every ID whose key satisfies pred(key, id).
  template <typename Pred>
  void releaseIf(Pred pred) {
    boost::unordered::erase_if(byKey_, [&](const auto& kv) {
      if (!pred(kv.first, kv.second)) return false;
      setUsed(kv.second, false);
      return true;
    });
  }

  size_t size() const { return byKey_.size(); }

 private:
  // A bitmap of taken IDs, grown as IDs are handed out (next-fit keeps it dense).
  bool used(Id id) const {
    uint64_t bit = uint64_t{id} - first_;
    return bit / 64 < bits_.size() && (bits_[bit / 64] >> (bit % 64)) & 1;
  }
  void setUsed(Id id, bool on) {
    uint64_t bit = uint64_t{id} - first_;
    if (bit / 64 >= bits_.size()) bits_.resize(bit / 64 + 1);
    if (on) bits_[bit / 64] |= uint64_t{1} << (bit % 64);
    else bits_[bit / 64] &= ~(uint64_t{1} << (bit % 64));
  }

  Id first_, last_, next_;
  boost::unordered_flat_map<Key, Id, Hash, Eq> byKey_;
  std::vector<uint64_t> bits_;
};

}  // namespace np::lb
