// The service reconciler: owns the desired service model and what the maps hold (the applied
// image), and turns every change into planner ops applied through LbMaps. Single-threaded: call
// it from the agent's io_context only.
//
// A change is prepared first (validated as a whole, expanded, planned, checked against the maps'
// free capacity) without touching the maps, so the caller can persist it before it becomes
// visible; then committed. If the kernel refuses an op part-way, the commit undoes exactly what
// went in (every touched key back to its previous value) and returns the error: the maps and the
// model stay at the previous version.
//
// After a restart the reconciler adopts the maps' content. Adopted entries that no service of
// the model claims are stale: they keep serving (established and new connections alike) and keep
// their IDs until pruning is allowed, which the agent does once every source of desired state
// has synced. A whole-map reconcile compares every map with the model, removes orphans (stale
// ones only once pruning is allowed) and repairs drift.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "lb/ids.h"
#include "lb/image.h"
#include "lb/maglev.h"
#include "lb/model.h"
#include "lb/planner.h"

namespace np::lb {

// Where ops go: the BPF maps in the agent, a fake in unit tests.
class LbMaps {
 public:
  virtual ~LbMaps() = default;
  struct Applied {
    size_t done = 0;              // ops that took effect, in order
    std::optional<Error> error;   // why op `done` failed, if it did
  };
  virtual Applied apply(const std::vector<MapOp>& ops) = 0;
  // Everything the maps hold now.
  virtual Result<LbImage> dump() = 0;
  // The maps' max_entries.
  struct Capacity {
    size_t services = 0, backends = 0, revNat = 0;
    size_t affinityMatch = SIZE_MAX, maglev = SIZE_MAX;  // unbounded unless the maps say
  };
  virtual Capacity capacity() const = 0;
};

// One change to the model: services created or replaced, and services deleted by name.
struct Change {
  std::vector<Service> upserts;
  std::vector<std::string> deletes;
};

class Reconciler {
 public:
  Reconciler(LbMaps& maps, NodeContext node);

  // Adopts what the maps hold now (a restarted agent). Every adopted frontend is stale until a
  // service claims it. Returns the number of adopted frontends.
  Result<size_t> adopt();

  // A change ready to commit. Holds IDs allocated for it: pass it to commit() or abandon().
  struct Prepared {
    std::vector<Service> upserts;           // new versions, normalized; unchanged ones left out
    std::vector<std::string> deletes;       // names that go
    std::vector<Service> previous;          // the versions these replace or delete (persistence undo)
    std::vector<bool> created;              // per upsert: the name is new
    std::vector<MapOp> ops;
    LbImage to;                             // the expanded image of `upserts`
    FlatMap<uint64_t, int64_t> terminatingDelta;  // applied to terminatingUsers_ on commit
    bool empty() const { return upserts.empty() && deletes.empty(); }
    // Whether a service is created or deleted or one changes more than its backends (sameFrontends):
    // false when the change only moves backends, so every frontend keeps its ID and reverse-NAT
    // entry and what is named after them (flows) stays as it is.
    bool frontendsChanged() const;
  };
  // Validates `c` as a whole (each service, names given twice, frontends already used, deletes
  // of unknown names: ENOENT) and plans it. Fails with ENOSPC, saying what is needed and what is
  // free, when the maps could not take the new entries; with ENOSPC when IDs run out.
  Result<Prepared> prepare(Change c);
  // Applies a prepared change to the maps and the model; undoes it completely on a kernel error.
  Status commit(Prepared& p);
  // Drops a prepared change (releases the IDs allocated for it).
  void abandon(const Prepared& p);

  // prepare + commit, for callers that persist nothing (tests, benchmarks).
  enum class ChangeKind { Created, Updated, Unchanged };
  Result<ChangeKind> upsert(Service s);
  Result<size_t> upsertMany(std::vector<Service> services);  // how many changed
  Status remove(const std::string& name);

  struct ReconcileReport {
    size_t services = 0;      // services in the model
    size_t entries = 0;       // service-map entries the model expands to
    size_t missing = 0;       // entries the model has and the maps lacked (written)
    size_t drifted = 0;       // entries whose value differed (rewritten)
    size_t orphans = 0;       // entries no service owns (removed)
    size_t staleKept = 0;     // adopted frontends kept because pruning is not allowed yet
    size_t ops = 0;
    std::chrono::microseconds took{0};
    std::optional<Error> error;  // the maps refused a repair (the rest was applied)
    size_t repaired() const { return missing + drifted + orphans; }
  };
  // Compares every entry of the three maps with the model's expansion and fixes what differs.
  Result<ReconcileReport> reconcileAll();

  // Told how long each non-empty commit ("lb-apply") and each reconcileAll ("lb-full") took and
  // whether it succeeded (the agent's reconcile duration metrics).
  using Observer = std::function<void(const char* what, std::chrono::nanoseconds took, bool ok)>;
  void setObserver(Observer o) { observer_ = std::move(o); }

  // Allows removing stale adopted entries (every source of desired state has synced).
  void allowPrune() { pruneAllowed_ = true; }
  bool pruneAllowed() const { return pruneAllowed_; }

  // The service IDs (reverse-NAT IDs) the applied maps give s's frontends, in frontendsOf order;
  // a frontend the maps do not hold has none. O(frontends of s).
  std::vector<uint16_t> serviceIds(const Service& s) const;

  const Service* find(const std::string& name) const;
  const std::map<std::string, Service>& services() const { return services_; }
  const NodeContext& node() const { return node_; }
  // The cluster's node addresses follow the node list (NodeContext::clusterNodeIps). They only
  // validate: changes prepared from now on are checked against them; applied services are not
  // re-checked.
  void setClusterNodeIps(std::vector<Ipv4> ips) { node_.clusterNodeIps = std::move(ips); }
  size_t frontendCount() const;
  size_t staleFrontends() const;  // adopted frontends no service owns
  size_t backendCount() const { return applied_.backends.size(); }
  const LbImage& applied() const { return applied_; }
  // Set when an undo failed: the maps differ from the model until the next whole-map reconcile.
  const std::optional<Error>& diverged() const { return diverged_; }

 private:
  Status commitOps(Prepared& p);
  Result<ReconcileReport> reconcileAllOnce();
  Observer observer_;
  // Endpoint (backendKey) -> model services that list it as terminating. A backend entry is
  // shared by every service that uses the endpoint, so its state is terminating when any of them
  // says so (a pod going away); each service's own view still decides its slot order.
  using TerminatingUsers = FlatMap<uint64_t, int64_t>;
  // Adds the map image of s to img, allocating IDs as needed; `delta` adjusts terminatingUsers_
  // for a change being prepared.
  Status expandInto(const Service& s, LbImage& img, const TerminatingUsers* delta = nullptr);
  struct View;
  // The service entry `master` selecting from view v: slot 0, slots, affinity matches.
  void writeEntry(LbImage& img, const np_svc_key& master, const View& v, uint16_t id, uint8_t flags, uint8_t flags2,
                  uint32_t affinityTimeout) const;
  // v's Maglev table for entry `master`: the applied one when it was made from the same backends.
  MaglevTable tableFor(const np_svc_key& master, View& v) const;
  bool terminating(uint64_t key, const TerminatingUsers* delta) const;
  // The applied entries of these frontends (entry, its slots, its reverse NAT, their backends),
  // plus the applied value of every backend in `alsoBackends`.
  LbImage appliedScope(const std::vector<np_svc_key>& masters, const LbImage& alsoBackends) const;
  std::vector<MapOp> plan(const LbImage& from, const LbImage& to) const;
  Status checkCapacity(const std::vector<MapOp>& ops) const;
  // Records the first n ops as applied: applied_ and the slot reference counts.
  void record(const std::vector<MapOp>& ops, size_t n);
  void releaseUnusedIds(const LbImage& candidates);
  void rebuildRefs();

  LbMaps& maps_;
  NodeContext node_;
  std::map<std::string, Service> services_;
  FrontendOwners owners_;
  LbImage applied_;
  FlatMap<uint32_t, uint32_t> slotRefs_;  // backend ID -> applied slots pointing at it
  TerminatingUsers terminatingUsers_;
  bool pruneAllowed_ = false;
  std::optional<Error> diverged_;
  IdAllocator<np_svc_key, uint16_t, SvcKeyHash, SvcKeyEq> frontendIds_{1, NP_SVC_ID_MAX};
  // Backend IDs stay below 2^24 so the allocator's bitmap and np_belive4_v1 stay small (2 MiB).
  IdAllocator<uint64_t, uint32_t> backendIds_{1, NP_BACKEND_ID_MAX};
};

// Packs (address, port, protocol) of a backend into its allocator key.
uint64_t backendKey(uint32_t addrBe, uint16_t portBe, uint8_t proto);

}  // namespace np::lb
