// Conntrack garbage collection and LRU pressure accounting for the two conntrack tables (main:
// confirmed flows, embryonic: unconfirmed flows; bpf/include/np_ct.h).
//
// One run walks each table with batch lookups, deletes the entries that expired (batch deletes,
// chunk by chunk as the walk goes, never one syscall per entry), counts the live ones, and
// derives how many entries the kernel's LRU pushed out since the previous run from the
// datapath's counters (np_ctstat_v1). Pure logic over the Tables interface: unit-tested with a
// fake, run on the real maps through BpfTables (bpf_tables.h).
//
// Thread affinity: none of its own; the agent calls it from its io_context only (GcLoop).
#pragma once

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "core/result.h"
#include "np_ct.h"

namespace np::ct {

// The two tables, indexed by enum np_ct_table.
inline constexpr size_t kTables = NP_CT_TABLES;
using Counters = std::array<np_ct_stat, kTables>;

// The kernel side of the GC: the tables and the datapath's counters.
class Tables {
 public:
  using Chunk = std::function<void(const np_ct_key* keys, const np_ct_entry* entries, uint32_t n)>;
  virtual ~Tables() = default;
  virtual std::string name(np_ct_table t) const = 0;
  virtual uint32_t maxEntries(np_ct_table t) const = 0;
  // Hands every entry of the table to fn, chunk by chunk; fn may delete entries (remove()).
  virtual Status walk(np_ct_table t, const Chunk& fn) = 0;
  // Deletes the keys; returns how many this call deleted (keys already gone do not count).
  virtual Result<uint64_t> remove(np_ct_table t, const std::vector<np_ct_key>& keys) = 0;
  // The entry under key now, if any.
  virtual std::optional<np_ct_entry> lookup(np_ct_table t, const np_ct_key& key) = 0;
  // The datapath's counters, summed over CPUs.
  virtual Result<Counters> counters() = 0;
};

struct TableStats {
  std::string name;
  uint32_t maxEntries = 0;
  uint64_t entries = 0;        // live entries counted by this run (after its deletions)
  uint64_t gcDeleted = 0;      // entries this run deleted (expired, their peers, orphans)
  uint64_t orphansDeleted = 0; // ... of which reply entries whose flow's service entry was gone
  uint64_t snatEntries = 0;    // live SNAT'd or masqueraded connections, each once (ct::isNatMapping)
  uint64_t evicted = 0;        // entries the LRU pushed out since the previous run (estimate)
  uint64_t evictedTotal = 0;   // ... since the GC started (sum of the runs' estimates)
  uint64_t createdTotal = 0;   // entries the datapath created since the GC started
  uint64_t promotedTotal = 0;  // embryonic table: flows confirmed since the GC started
  double fill() const { return maxEntries ? static_cast<double>(entries) / maxEntries : 0.0; }
};

struct Run {
  uint64_t number = 0;                          // 1 = the first run (the baseline)
  std::chrono::system_clock::time_point at;     // when it started
  std::chrono::microseconds duration{0};
  std::chrono::milliseconds covers{0};          // time since the previous run (0 for the first)
  std::array<TableStats, kTables> tables;
};

// Entries count as expired this long after their expiry: the two entries of a flow expire within
// the datapath's one-second refresh granularity of each other, and a SNAT reply entry must not be
// deleted (its port handed out again) while its service entry is still alive.
inline constexpr uint64_t kExpiryGraceNs = 2'000'000'000ULL;

// A flow's two entries go together: when a run deletes an expired service entry it deletes that
// flow's reply entry too, whatever the reply's own expiry says. A reply entry whose service entry
// is gone (the LRU evicted it, or another flow took its tuple) can never be used again, but it
// holds its tuple (for SNAT: a port): it is an orphan, and a run deletes it when the previous run
// already saw it orphaned, unchanged (a flow being created inserts its reply entry an instant
// before its service entry; two runs seconds apart never both see that).

// Evictions between two runs, from what entered and left the table:
//   entries(now) = entries(then) + created - deleted by the datapath - deleted by the GC - evicted
// so evicted = Δcreated - Δdatapath-deleted - gcDeleted - Δentries, clamped at 0. It is an
// estimate: the walk that counts the entries is not a snapshot (the datapath inserts and the LRU
// evicts while it runs) and the counters are read a moment after it, so under churn it is off by
// the entries that changed during the walk.
uint64_t estimateEvictions(const np_ct_stat& before, const np_ct_stat& after, uint64_t entriesBefore,
                           uint64_t entriesAfter, uint64_t gcDeleted);

// When to run next: `base`, or sooner while a table is under pressure (it evicted since the last
// run, or is at least 75% full), so that expired entries make room before the LRU has to, and
// a status that reports the pressure notices its end within seconds.
bool underPressure(const Run& run);
std::chrono::milliseconds nextInterval(const Run& run, std::chrono::milliseconds base);
inline constexpr std::chrono::milliseconds kPressureInterval{5000};

// CLOCK_MONOTONIC_COARSE in ns: the clock of bpf_ktime_get_coarse_ns() and np_ct_entry.expires.
uint64_t monotonicCoarseNs();

class Gc {
 public:
  explicit Gc(Tables& tables, std::function<uint64_t()> monoNs = monotonicCoarseNs);

  // One pass over both tables. The first run sets the baseline (no evictions are derived from
  // it). A failure leaves the previous run as last() and is kept in lastError().
  Result<Run> runOnce();

  const std::optional<Run>& last() const { return last_; }
  const std::string& lastError() const { return lastError_; }
  // Set by whoever schedules the runs, for status.
  void setNextRun(std::chrono::steady_clock::time_point t) { nextRun_ = t; }
  std::optional<std::chrono::steady_clock::time_point> nextRun() const { return nextRun_; }

 private:
  struct KeyHash {
    size_t operator()(const np_ct_key& k) const noexcept;
  };
  struct KeyEq {
    bool operator()(const np_ct_key& a, const np_ct_key& b) const noexcept;
  };
  using KeyMap = boost::unordered_flat_map<np_ct_key, np_ct_key, KeyHash, KeyEq>;
  struct Removed {
    uint64_t deleted = 0;  // entries the call deleted
    uint64_t snat = 0;     // ... of which live NAT mappings (counted by the walk)
    boost::unordered_flat_set<np_ct_key, KeyHash, KeyEq> keys;
  };
  Result<Removed> removePeersOf(np_ct_table t, const std::vector<std::pair<np_ct_key, np_ct_entry>>& services);
  Result<Removed> removeOrphans(np_ct_table t, const std::vector<std::pair<np_ct_key, np_ct_entry>>& replies,
                                const KeyMap& servicePeer, const Removed& alreadyGone);

  Tables& tables_;
  std::function<uint64_t()> monoNs_;
  std::optional<Run> last_;
  std::string lastError_;
  Counters baseCounters_{};  // at the first run
  Counters prevCounters_{};
  std::chrono::steady_clock::time_point prevAt_;
  std::optional<std::chrono::steady_clock::time_point> nextRun_;
  // Orphaned reply entries the previous run saw, per table, as (key, entry) to compare.
  std::array<std::vector<std::pair<np_ct_key, np_ct_entry>>, kTables> orphans_;
};

}  // namespace np::ct
