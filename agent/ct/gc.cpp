#include "ct/gc.h"

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
    // Deleting chunk by chunk keeps the time between seeing an entry expired and deleting it
    // short: the datapath may revive the tuple (a new flow) in between, and would lose it.
    Status st = tables_.walk(t, [&](const np_ct_key* keys, const np_ct_entry* entries, uint32_t n) {
      walked += n;
      expired.clear();
      for (uint32_t k = 0; k < n; ++k)
        if (entries[k].expires + kExpiryGraceNs < now) expired.push_back(keys[k]);
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
