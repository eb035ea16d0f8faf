#include "ct/gc.h"
#include "ct/list.h"

#include <boost/container_hash/hash.hpp>
#include <cstring>

#include <time.h>

#include <algorithm>

namespace np::ct {

uint64_t monotonicCoarseNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t estimateEvictions(const np_ct_stat& before, const np_ct_stat& after, uint64_t entriesBefore,
                           uint64_t entriesAfter, uint64_t gcDeleted) {
  // Counters only grow while their map exists; smaller ones mean a new map: no estimate.
  if (after.created < before.created || after.deleted < before.deleted) return 0;
  const int64_t created = static_cast<int64_t>(after.created - before.created);
  const int64_t dpDeleted = static_cast<int64_t>(after.deleted - before.deleted);
  const int64_t grew = static_cast<int64_t>(entriesAfter) - static_cast<int64_t>(entriesBefore);
  const int64_t evicted = created - dpDeleted - static_cast<int64_t>(gcDeleted) - grew;
  return evicted > 0 ? static_cast<uint64_t>(evicted) : 0;
}

bool underPressure(const Run& run) {
  for (const TableStats& t : run.tables)
    if (t.evicted > 0 || t.fill() >= 0.75) return true;
  return false;
}

std::chrono::milliseconds nextInterval(const Run& run, std::chrono::milliseconds base) {
  return underPressure(run) ? std::min(base, kPressureInterval) : base;
}

Gc::Gc(Tables& tables, std::function<uint64_t()> monoNs) : tables_(tables), monoNs_(std::move(monoNs)) {}

namespace {

// The identity of an entry: what it translates to and for which flow; not its counters or expiry,
// which traffic changes.
bool sameFlow(const np_ct_entry& a, const np_ct_entry& b) {
  constexpr uint16_t kKind = NP_CT_F_SERVICE | NP_CT_F_REPLY | NP_CT_F_SNAT | NP_CT_F_DSR | NP_CT_F_DSR_BACKEND |
                            NP_CT_F_MASQ;
  return a.nat_saddr == b.nat_saddr && a.nat_daddr == b.nat_daddr && a.nat_sport == b.nat_sport &&
         a.nat_dport == b.nat_dport && a.backend_id == b.backend_id && a.rev_nat_id == b.rev_nat_id &&
         (a.flags & kKind) == (b.flags & kKind);
}

}  // namespace

size_t Gc::KeyHash::operator()(const np_ct_key& k) const noexcept {
  uint64_t w[2];
  static_assert(sizeof(w) == sizeof(k));
  std::memcpy(w, &k, sizeof(k));
  size_t h = boost::hash<uint64_t>{}(w[0]);
  boost::hash_combine(h, w[1]);
  return h;
}

bool Gc::KeyEq::operator()(const np_ct_key& a, const np_ct_key& b) const noexcept {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// The reply entries of the service entries this run deleted (expired), where they are still that
// flow's: looked up again now, since the datapath may have given the tuple to a new flow.
Result<Gc::Removed> Gc::removePeersOf(np_ct_table t, const std::vector<std::pair<np_ct_key, np_ct_entry>>& services) {
  Removed out;
  std::vector<np_ct_key> keys;
  for (const auto& [k, e] : services) {
    np_ct_key pk;
    np_ct_peer_key(&pk, &k, &e);
    auto rev = tables_.lookup(t, pk);
    if (!rev || !np_ct_reply_of(&k, &e, &pk, &*rev)) continue;
    keys.push_back(pk);
    out.keys.insert(pk);
    if (isNatMapping(*rev) && rev->expires + kExpiryGraceNs >= monoNs_()) ++out.snat;
  }
  if (keys.empty()) return out;
  auto deleted = tables_.remove(t, keys);
  if (!deleted) return deleted.error();
  out.deleted = *deleted;
  return out;
}

// Reply entries without their service entry: deleted when the previous run saw the same orphan.
Result<Gc::Removed> Gc::removeOrphans(np_ct_table t, const std::vector<std::pair<np_ct_key, np_ct_entry>>& replies,
                                      const KeyMap& servicePeer, const Removed& alreadyGone) {
  std::vector<std::pair<np_ct_key, np_ct_entry>>& prev = orphans_[t];
  boost::unordered_flat_map<np_ct_key, np_ct_entry, KeyHash, KeyEq> before;
  for (const auto& [k, e] : prev) before.emplace(k, e);
  prev.clear();

  Removed out;
  std::vector<np_ct_key> keys;
  for (const auto& [rk, rev] : replies) {
    if (alreadyGone.keys.contains(rk)) continue;
    np_ct_key fk;
    np_ct_peer_key(&fk, &rk, &rev);
    auto it = servicePeer.find(fk);
    if (it != servicePeer.end() && KeyEq{}(it->second, rk)) continue;  // its flow is alive
    auto seen = before.find(rk);
    if (seen == before.end() || !sameFlow(seen->second, rev)) {
      prev.emplace_back(rk, rev);
      continue;
    }
    // Orphaned in both runs. A service entry may have arrived since the walk: look once more.
    if (auto svc = tables_.lookup(t, fk); svc && np_ct_reply_of(&fk, &*svc, &rk, &rev)) continue;
    keys.push_back(rk);
    if (isNatMapping(rev)) ++out.snat;
  }
  if (keys.empty()) return out;
  auto deleted = tables_.remove(t, keys);
  if (!deleted) return deleted.error();
  out.deleted = *deleted;
  return out;
}

Result<Run> Gc::runOnce() {
  const auto started = std::chrono::steady_clock::now();
  Run run;
  run.number = last_ ? last_->number + 1 : 1;
  run.at = std::chrono::system_clock::now();
  run.covers = last_ ? std::chrono::duration_cast<std::chrono::milliseconds>(started - prevAt_)
                     : std::chrono::milliseconds(0);
  const uint64_t now = monoNs_();

  for (size_t i = 0; i < kTables; ++i) {
    const auto t = static_cast<np_ct_table>(i);
    TableStats& s = run.tables[i];
    s.name = tables_.name(t);
    s.maxEntries = tables_.maxEntries(t);
    uint64_t walked = 0;
    Status removeFailed;
    std::vector<np_ct_key> expired;
    std::vector<std::pair<np_ct_key, np_ct_entry>> deletedServices;  // their reply entries go too
    std::vector<std::pair<np_ct_key, np_ct_entry>> replies;          // live reply entries
    KeyMap servicePeer;                                               // live service entry -> its reply key
    // Deleting chunk by chunk keeps the time between seeing an entry expired and deleting it
    // short: the datapath may revive the tuple (a new flow) in between, and would lose it.
    Status st = tables_.walk(t, [&](const np_ct_key* keys, const np_ct_entry* entries, uint32_t n) {
      walked += n;
      expired.clear();
      for (uint32_t k = 0; k < n; ++k) {
        const np_ct_entry& e = entries[k];
        if (e.expires + kExpiryGraceNs < now) {
          expired.push_back(keys[k]);
          if (np_ct_client_entry(&e)) deletedServices.emplace_back(keys[k], e);
          continue;
        }
        if (isNatMapping(e)) ++s.snatEntries;
        if (np_ct_client_entry(&e)) {
          np_ct_key pk;
          np_ct_peer_key(&pk, &keys[k], &e);
          servicePeer[keys[k]] = pk;
        } else if (e.flags & NP_CT_F_REPLY) {
          replies.emplace_back(keys[k], e);
        }
      }
      if (expired.empty() || !removeFailed.ok()) return;
      auto deleted = tables_.remove(t, expired);
      if (!deleted) {
        removeFailed = deleted.error();
        return;
      }
      s.gcDeleted += *deleted;
    });
    if (!st) {
      lastError_ = st.error().message();
      return st.error();
    }
    if (!removeFailed) {
      lastError_ = removeFailed.error().message();
      return removeFailed.error();
    }
    auto pairs = removePeersOf(t, deletedServices);
    if (!pairs) {
      lastError_ = pairs.error().message();
      return pairs.error();
    }
    auto orphans = removeOrphans(t, replies, servicePeer, *pairs);
    if (!orphans) {
      lastError_ = orphans.error().message();
      return orphans.error();
    }
    s.gcDeleted += pairs->deleted + orphans->deleted;
    s.orphansDeleted = orphans->deleted;
    s.snatEntries -= std::min(s.snatEntries, pairs->snat + orphans->snat);
    s.entries = walked >= s.gcDeleted ? walked - s.gcDeleted : 0;
  }

  auto counters = tables_.counters();
  if (!counters) {
    lastError_ = counters.error().message();
    return counters.error();
  }
  for (size_t i = 0; i < kTables; ++i) {
    TableStats& s = run.tables[i];
    const np_ct_stat& cur = (*counters)[i];
    if (!last_ || cur.created < prevCounters_[i].created || cur.deleted < prevCounters_[i].deleted) {
      baseCounters_[i] = cur;  // the first run, or a new map: this is the baseline
      if (last_) s.evictedTotal = last_->tables[i].evictedTotal;
    } else {
      s.evicted = estimateEvictions(prevCounters_[i], cur, last_->tables[i].entries, s.entries, s.gcDeleted);
      s.evictedTotal = last_->tables[i].evictedTotal + s.evicted;
    }
    s.createdTotal = cur.created - baseCounters_[i].created;
    s.promotedTotal = cur.promoted - baseCounters_[i].promoted;
  }
  prevCounters_ = *counters;
  prevAt_ = started;
  run.duration = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
  last_ = run;
  lastError_.clear();
  return run;
}

}  // namespace np::ct
