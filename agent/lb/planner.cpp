#include "lb/planner.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>

#include "core/net.h"

namespace np::lb {
namespace {

MapOp svcOp(MapOp::Kind kind, const np_svc_key& k, const np_svc_val& v = {}) {
  MapOp op{kind};
  op.svcKey = k;
  op.svcVal = v;
  return op;
}

}  // namespace

const char* opKindName(MapOp::Kind k) {
  switch (k) {
    case MapOp::Kind::UpsertBackend: return "upsert-backend";
    case MapOp::Kind::UpsertSlot: return "upsert-slot";
    case MapOp::Kind::UpsertRevNat: return "upsert-revnat";
    case MapOp::Kind::UpsertService: return "upsert-service";
    case MapOp::Kind::DeleteSlot: return "delete-slot";
    case MapOp::Kind::DeleteService: return "delete-service";
    case MapOp::Kind::DeleteRevNat: return "delete-revnat";
    case MapOp::Kind::DeleteBackend: return "delete-backend";
    case MapOp::Kind::UpsertAffinityMatch: return "upsert-affinity-match";
    case MapOp::Kind::DeleteAffinityMatch: return "delete-affinity-match";
    case MapOp::Kind::UpsertMaglev: return "upsert-maglev";
    case MapOp::Kind::DeleteMaglev: return "delete-maglev";
  }
  return "?";
}

std::string MapOp::str() const {
  std::string s = opKindName(kind);
  switch (kind) {
    case Kind::UpsertBackend:
    case Kind::DeleteBackend:
      s += " " + std::to_string(backendId);
      if (kind == Kind::UpsertBackend)
        s += " " + Endpoint{Ipv4{backend.addr}, ntohs(backend.port)}.str() +
             (backend.state == NP_BACKEND_TERMINATING ? " terminating" : "");
      break;
    case Kind::UpsertRevNat:
    case Kind::DeleteRevNat:
      s += " " + std::to_string(revNatId);
      if (kind == Kind::UpsertRevNat) s += " " + Endpoint{Ipv4{revNat.addr}, ntohs(revNat.port)}.str();
      break;
    case Kind::UpsertAffinityMatch:
    case Kind::DeleteAffinityMatch:
      s += " backend " + std::to_string(match.backend_id) + " service " + std::to_string(match.rev_nat_id) +
           " scope " + std::to_string(match.scope);
      break;
    default:
      s += " " + Endpoint{Ipv4{svcKey.addr}, ntohs(svcKey.dport)}.str() + "/" +
           std::to_string(svcKey.proto) + " slot " + std::to_string(svcKey.slot) +
           (svcKey.scope == NP_LB_SCOPE_INT ? " internal" : "");
      if (kind == Kind::UpsertMaglev) s += " table of " + std::to_string(maglev.ids ? maglev.ids->size() : 0);
      if (kind == Kind::UpsertSlot) s += " -> backend " + std::to_string(svcVal.backend_id);
      if (kind == Kind::UpsertService)
        s += " count " + std::to_string(svcVal.count) + " total " + std::to_string(svcVal.total) +
             " id " + std::to_string(svcVal.rev_nat_id);
  }
  return s;
}

std::vector<MapOp> diff(const LbImage& applied, const LbImage& desired) {
  using K = MapOp::Kind;
  std::vector<MapOp> ops;
  ops.reserve(desired.services.size() + desired.backends.size() + desired.revNat.size());
  auto svcChanged = [&](const np_svc_key& k, const np_svc_val& v) {
    auto it = applied.services.find(k);
    return it == applied.services.end() || !(it->second == v);
  };
  auto masterSurvives = [&](const np_svc_key& k) { return desired.services.contains(masterOf(k)); };
  // Phases in the order of the header comment; inside a phase the order does not matter.

  // 1. backends
  for (const auto& [id, be] : desired.backends) {
    auto it = applied.backends.find(id);
    if (it == applied.backends.end() || !(it->second == be)) {
      MapOp op{K::UpsertBackend};
      op.backendId = id;
      op.backend = be;
      ops.push_back(op);
    }
  }
  // 2. slots
  for (const auto& [k, v] : desired.services)
    if (k.slot != 0 && svcChanged(k, v)) ops.push_back(svcOp(K::UpsertSlot, k, v));
  for (const auto& [m, v] : desired.affinityMatch) {
    if (applied.affinityMatch.contains(m)) continue;
    MapOp op{K::UpsertAffinityMatch};
    op.match = m;
    ops.push_back(op);
  }
  for (const auto& [k, t] : desired.maglev) {
    auto it = applied.maglev.find(k);
    if (it != applied.maglev.end() && it->second == t) continue;
    MapOp op{K::UpsertMaglev};
    op.svcKey = k;
    op.maglev = t;
    ops.push_back(op);
  }
  // 3. reverse NAT
  for (const auto& [id, rn] : desired.revNat) {
    auto it = applied.revNat.find(id);
    if (it == applied.revNat.end() || !(it->second == rn)) {
      MapOp op{K::UpsertRevNat};
      op.revNatId = id;
      op.revNat = rn;
      ops.push_back(op);
    }
  }
  // 4. service entries
  for (const auto& [k, v] : desired.services)
    if (k.slot == 0 && svcChanged(k, v)) ops.push_back(svcOp(K::UpsertService, k, v));
  // 5. stale slots of surviving services (their entries shrank in 4)
  for (const auto& [k, v] : applied.services)
    if (k.slot != 0 && !desired.services.contains(k) && masterSurvives(k)) ops.push_back(svcOp(K::DeleteSlot, k));
  // 6. removed services: the entry, then its slots, then its reverse NAT
  for (const auto& [k, v] : applied.services)
    if (k.slot == 0 && !desired.services.contains(k)) ops.push_back(svcOp(K::DeleteService, k));
  for (const auto& [k, v] : applied.services)
    if (k.slot != 0 && !desired.services.contains(k) && !masterSurvives(k)) ops.push_back(svcOp(K::DeleteSlot, k));
  for (const auto& [k, t] : applied.maglev)
    if (!desired.maglev.contains(k)) ops.push_back(svcOp(K::DeleteMaglev, k));
  for (const auto& [m, v] : applied.affinityMatch) {
    if (desired.affinityMatch.contains(m)) continue;
    MapOp op{K::DeleteAffinityMatch};
    op.match = m;
    ops.push_back(op);
  }
  for (const auto& [id, rn] : applied.revNat) {
    if (desired.revNat.contains(id)) continue;
    MapOp op{K::DeleteRevNat};
    op.revNatId = id;
    ops.push_back(op);
  }
  // 7. backends nothing uses
  for (const auto& [id, be] : applied.backends) {
    if (desired.backends.contains(id)) continue;
    MapOp op{K::DeleteBackend};
    op.backendId = id;
    ops.push_back(op);
  }
  return ops;
}

void applyOps(LbImage& image, const std::vector<MapOp>& ops, size_t count) {
  using K = MapOp::Kind;
  for (size_t i = 0; i < count && i < ops.size(); ++i) {
    const MapOp& op = ops[i];
    switch (op.kind) {
      case K::UpsertBackend: image.backends[op.backendId] = op.backend; break;
      case K::UpsertSlot:
      case K::UpsertService: image.services[op.svcKey] = op.svcVal; break;
      case K::UpsertRevNat: image.revNat[op.revNatId] = op.revNat; break;
      case K::DeleteSlot:
      case K::DeleteService: image.services.erase(op.svcKey); break;
      case K::DeleteRevNat: image.revNat.erase(op.revNatId); break;
      case K::DeleteBackend: image.backends.erase(op.backendId); break;
      case K::UpsertAffinityMatch: image.affinityMatch[op.match] = 0; break;
      case K::DeleteAffinityMatch: image.affinityMatch.erase(op.match); break;
      case K::UpsertMaglev: image.maglev[op.svcKey] = op.maglev; break;
      case K::DeleteMaglev: image.maglev.erase(op.svcKey); break;
    }
  }
}

std::vector<MapOp> undo(const LbImage& before, const std::vector<MapOp>& ops, size_t done) {
  using K = MapOp::Kind;
  // The inverse of one op: put the key back as `before` had it.
  auto inverse = [&](const MapOp& op) -> std::optional<MapOp> {
    switch (op.kind) {
      case K::UpsertBackend:
      case K::DeleteBackend: {
        auto it = before.backends.find(op.backendId);
        if (it == before.backends.end()) {
          if (op.kind == K::DeleteBackend) return std::nullopt;
          MapOp r{K::DeleteBackend};
          r.backendId = op.backendId;
          return r;
        }
        MapOp r{K::UpsertBackend};
        r.backendId = op.backendId;
        r.backend = it->second;
        return r;
      }
      case K::UpsertRevNat:
      case K::DeleteRevNat: {
        auto it = before.revNat.find(op.revNatId);
        if (it == before.revNat.end()) {
          if (op.kind == K::DeleteRevNat) return std::nullopt;
          MapOp r{K::DeleteRevNat};
          r.revNatId = op.revNatId;
          return r;
        }
        MapOp r{K::UpsertRevNat};
        r.revNatId = op.revNatId;
        r.revNat = it->second;
        return r;
      }
      case K::UpsertAffinityMatch:
      case K::DeleteAffinityMatch: {
        const bool had = before.affinityMatch.contains(op.match);
        if (had == (op.kind == K::UpsertAffinityMatch)) return std::nullopt;  // nothing changed
        MapOp r{had ? K::UpsertAffinityMatch : K::DeleteAffinityMatch};
        r.match = op.match;
        return r;
      }
      case K::UpsertMaglev:
      case K::DeleteMaglev: {
        auto it = before.maglev.find(op.svcKey);
        if (it == before.maglev.end()) {
          if (op.kind == K::DeleteMaglev) return std::nullopt;
          return svcOp(K::DeleteMaglev, op.svcKey);
        }
        MapOp r = svcOp(K::UpsertMaglev, op.svcKey);
        r.maglev = it->second;
        return r;
      }
      default: {
        const bool master = op.svcKey.slot == 0;
        auto it = before.services.find(op.svcKey);
        if (it == before.services.end()) {
          if (op.kind == K::DeleteSlot || op.kind == K::DeleteService) return std::nullopt;
          return svcOp(master ? K::DeleteService : K::DeleteSlot, op.svcKey);
        }
        return svcOp(master ? K::UpsertService : K::UpsertSlot, op.svcKey, it->second);
      }
    }
  };
  std::vector<MapOp> out;
  out.reserve(std::min(done, ops.size()));
  size_t end = std::min(done, ops.size());
  // Runs of one kind, last run first; inside a run restores go before removals (order inside a
  // phase does not matter to the datapath, and this keeps each kind in one batch).
  while (end > 0) {
    size_t begin = end;
    while (begin > 0 && ops[begin - 1].kind == ops[end - 1].kind) --begin;
    const size_t first = out.size();
    for (size_t i = end; i-- > begin;)
      if (auto r = inverse(ops[i])) out.push_back(*r);
    std::stable_partition(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), [](const MapOp& op) {
      return op.kind == K::UpsertBackend || op.kind == K::UpsertSlot || op.kind == K::UpsertRevNat ||
             op.kind == K::UpsertService || op.kind == K::UpsertAffinityMatch || op.kind == K::UpsertMaglev;
    });
    end = begin;
  }
  return out;
}

NewEntries newEntries(const LbImage& image, const std::vector<MapOp>& ops) {
  using K = MapOp::Kind;
  NewEntries n;
  for (const MapOp& op : ops) {
    switch (op.kind) {
      case K::UpsertBackend: n.backends += !image.backends.contains(op.backendId); break;
      case K::UpsertSlot:
      case K::UpsertService: n.services += !image.services.contains(op.svcKey); break;
      case K::UpsertRevNat: n.revNat += !image.revNat.contains(op.revNatId); break;
      case K::UpsertAffinityMatch: n.affinityMatch += !image.affinityMatch.contains(op.match); break;
      case K::UpsertMaglev: n.maglev += !image.maglev.contains(op.svcKey); break;
      default: break;
    }
  }
  return n;
}

}  // namespace np::lb
