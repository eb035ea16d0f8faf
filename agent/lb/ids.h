// ID allocation for service frontends (reverse-NAT IDs, u16) and backends (u32). IDs are stable
// for a key while it is in use, restored from pinned maps after a restart, and handed out
// next-fit so a freed ID is not reused at once (a conntrack entry may still name it).
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace np::lb {

template <typename Key, typename Id, typename Hash = std::hash<Key>, typename Eq = std::equal_to<Key>>
class IdAllocator {
 public:
  IdAllocator(Id first, Id last) : first_(first), last_(last), next_(first) {}

  // The ID of key, allocating one if it has none. nullopt when every ID is taken.
  std::optional<Id> acquire(const Key& key) {
    if (auto it = byKey_.find(key); it != byKey_.end()) return it->second;
    uint64_t span = uint64_t{last_} - first_ + 1;
    for (uint64_t i = 0; i < span; ++i) {
      Id id = next_;
      next_ = next_ == last_ ? first_ : static_cast<Id>(next_ + 1);
      if (!used_.count(id)) {
        used_.insert(id);
        byKey_.emplace(key, id);
        return id;
      }
    }
    return std::nullopt;
  }

  // Records an ID found in restored state. False if the ID is out of range or taken.
  bool restore(const Key& key, Id id) {
    if (id < first_ || id > last_ || used_.count(id) || byKey_.count(key)) return false;
    used_.insert(id);
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
    used_.erase(it->second);
    byKey_.erase(it);
  }

  size_t size() const { return byKey_.size(); }

 private:
  Id first_, last_, next_;
  std::unordered_map<Key, Id, Hash, Eq> byKey_;
  std::unordered_set<Id> used_;
};

}  // namespace np::lb
