// The service reconciler: owns the desired service model and what the maps hold (the applied
// image), and turns every change into planner ops applied through LbMaps. Single-threaded: call
// it from the agent's io_context only.
//
// Changes are validated as a whole before anything reaches the maps. If the kernel refuses an
// op part-way (a full map), the change is rolled back to the previous version of the services
// involved and the error returned; the model keeps the previous version.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "lb/ids.h"
#include "lb/image.h"
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
  // Everything the three maps hold now.
  virtual Result<LbImage> dump() = 0;
};

class Reconciler {
 public:
  Reconciler(LbMaps& maps, NodeContext node);

  // Adopts the maps' current content (a restarted agent) and reconciles it with `services`
  // (the persisted model): unchanged services cause no map writes at all, so established
  // connections keep their backends. Services that fail validation are skipped and reported.
  struct Restored {
    size_t services = 0;            // services restored into the model
    size_t adoptedFrontends = 0;    // service entries found in the maps
    size_t ops = 0;                 // map operations needed to converge
    std::vector<std::string> skipped;  // "name: why"
  };
  Result<Restored> restore(std::vector<Service> services);

  enum class Change { Created, Updated, Unchanged };
  // Creates or replaces one service.
  Result<Change> upsert(Service s);
  // Creates or replaces many services in one plan (validated as a whole first). Returns how
  // many of them changed.
  Result<size_t> upsertMany(std::vector<Service> services);
  // Deletes a service; an error with ENOENT if there is none of that name.
  Status remove(const std::string& name);

  const Service* find(const std::string& name) const;
  const std::map<std::string, Service>& services() const { return services_; }
  const NodeContext& node() const { return node_; }
  size_t frontendCount() const;
  size_t backendCount() const { return applied_.backends.size(); }
  const LbImage& applied() const { return applied_; }

 private:
  // Adds the map image of s to img, allocating IDs as needed.
  Status expandInto(const Service& s, LbImage& img);
  // The applied entries of the given services' frontends, plus the applied value of every
  // backend in `alsoBackends`.
  LbImage appliedScope(const std::vector<const Service*>& services, const LbImage& alsoBackends) const;
  // Replaces the versions `before` with `after` (nullptr entries: absent) in the maps.
  Status commit(const std::vector<const Service*>& before, const std::vector<const Service*>& after);
  std::vector<MapOp> plan(const LbImage& from, const LbImage& to,
                          const std::vector<const Service*>& before) const;
  void releaseUnusedIds(const LbImage& candidates);
  Status validateAll(const std::vector<Service>& services) const;

  LbMaps& maps_;
  NodeContext node_;
  std::map<std::string, Service> services_;
  FrontendOwners owners_;
  LbImage applied_;
  FlatMap<uint32_t, uint32_t> backendRefs_;  // backend ID -> services using it
  IdAllocator<np_svc_key, uint16_t, SvcKeyHash, SvcKeyEq> frontendIds_{1, 65535};
  // Backend IDs stay below 2^24 so the allocator's bitmap stays small (2 MiB at most).
  IdAllocator<uint64_t, uint32_t> backendIds_{1, (1u << 24) - 1};
};

// Packs (address, port, protocol) of a backend into its allocator key.
uint64_t backendKey(uint32_t addrBe, uint16_t portBe, uint8_t proto);

}  // namespace np::lb
