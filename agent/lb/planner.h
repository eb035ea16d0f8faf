// The planner: turns (applied, desired) map images into the ordered map operations that take
// the maps from one to the other without ever exposing half a service to the datapath:
//   1. backends are written,          2. backend slots, affinity matches and Maglev tables written,
//   3. reverse-NAT entries written,   4. service (slot 0) entries written with the new count,
//   5. stale slots of surviving services deleted,
//   6. removed services: service entry, then its slots; then Maglev tables and affinity matches
//      nothing uses, then reverse-NAT entries,
//   7. backends no longer referenced deleted.
// At every step each service entry's slots 1..total exist and point at existing backends.
// Pure: no kernel, no state; applying diff(a, b) to a gives b, and diff(a, a) is empty.
#pragma once

#include <string>
#include <vector>

#include "lb/image.h"

namespace np::lb {

struct MapOp {
  enum class Kind : uint8_t {
    UpsertBackend,
    UpsertSlot,
    UpsertAffinityMatch,
    UpsertMaglev,
    UpsertRevNat,
    UpsertService,
    DeleteSlot,
    DeleteService,
    DeleteMaglev,
    DeleteAffinityMatch,
    DeleteRevNat,
    DeleteBackend,
  };
  Kind kind;
  np_svc_key svcKey{};    // Upsert/Delete Slot/Service/Maglev
  np_svc_val svcVal{};    // Upsert Slot/Service
  uint32_t backendId = 0; // Upsert/Delete Backend
  np_backend backend{};   // UpsertBackend
  uint16_t revNatId = 0;  // Upsert/Delete RevNat
  np_revnat revNat{};     // UpsertRevNat
  np_affinity_match match{};  // Upsert/Delete AffinityMatch
  MaglevTable maglev;     // UpsertMaglev

  std::string str() const;  // for logs and test failures
};

const char* opKindName(MapOp::Kind k);

std::vector<MapOp> diff(const LbImage& applied, const LbImage& desired);

// Applies ops to an image (what the maps hold after the ops succeeded).
void applyOps(LbImage& image, const std::vector<MapOp>& ops, size_t count);

// The ops that undo the first `done` of `ops`, which were applied to maps that held `before`:
// every key goes back to its value in `before` (or away, if it had none). The undo runs the
// phases backwards (removed services come back slots first, a grown service shrinks its entry
// before its slots go), so it never exposes half a service either. Inside each phase restores
// come before removals, so each kind batches.
std::vector<MapOp> undo(const LbImage& before, const std::vector<MapOp>& ops, size_t done);

// Entries each op would add to its map (keys not in `image`), per map.
struct NewEntries {
  size_t services = 0, backends = 0, revNat = 0, affinityMatch = 0, maglev = 0;
};
NewEntries newEntries(const LbImage& image, const std::vector<MapOp>& ops);

}  // namespace np::lb
