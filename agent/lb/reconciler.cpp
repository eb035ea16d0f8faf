#include "lb/reconciler.h"

#include <arpa/inet.h>

#include <algorithm>
#include <set>

#include "core/log.h"

namespace np::lb {
namespace {

uint8_t flagsFor(FrontendType t) {
  switch (t) {
    case FrontendType::ClusterIp: return 0;
    case FrontendType::NodePortWildcard: return NP_SVC_F_NODEPORT;
    case FrontendType::NodePort: return NP_SVC_F_NODEPORT | NP_SVC_F_ROUTABLE;
    // A HostPort is served like a NodePort on one of the node's addresses.
    case FrontendType::HostPort: return NP_SVC_F_NODEPORT | NP_SVC_F_ROUTABLE;
    case FrontendType::ExternalIp: return NP_SVC_F_EXTERNAL_IP | NP_SVC_F_ROUTABLE;
    case FrontendType::LoadBalancer: return NP_SVC_F_LOADBALANCER | NP_SVC_F_ROUTABLE;
  }
  return 0;
}

np_svc_key masterKey(const Frontend& f) {
  return svcKey(f.addr.be, htons(f.port), static_cast<uint8_t>(f.protocol), 0);
}

std::string count(size_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace

uint64_t backendKey(uint32_t addrBe, uint16_t portBe, uint8_t proto) {
  return (uint64_t{addrBe} << 32) | (uint64_t{portBe} << 8) | proto;
}

Reconciler::Reconciler(LbMaps& maps, NodeContext node) : maps_(maps), node_(std::move(node)) {}

const Service* Reconciler::find(const std::string& name) const {
  auto it = services_.find(name);
  return it == services_.end() ? nullptr : &it->second;
}

std::vector<uint16_t> Reconciler::serviceIds(const Service& s) const {
  std::vector<uint16_t> out;
  for (const Frontend& f : frontendsOf(s, node_))
    if (auto it = applied_.services.find(masterKey(f)); it != applied_.services.end())
      if (applied_.revNat.contains(it->second.rev_nat_id)) out.push_back(it->second.rev_nat_id);
  return out;
}

size_t Reconciler::frontendCount() const {
  size_t n = 0;
  for (const auto& [k, v] : applied_.services) n += k.slot == 0 && k.scope == NP_LB_SCOPE_EXT;
  return n;
}

size_t Reconciler::staleFrontends() const {
  size_t n = 0;
  for (const auto& [k, v] : applied_.services)
    if (k.slot == 0 && k.scope == NP_LB_SCOPE_EXT)
      n += !owners_.contains(frontendKey({Ipv4{k.addr}, ntohs(k.dport), static_cast<Protocol>(k.proto)}));
  return n;
}

bool Reconciler::terminating(uint64_t key, const TerminatingUsers* delta) const {
  int64_t n = 0;
  if (auto it = terminatingUsers_.find(key); it != terminatingUsers_.end()) n += it->second;
  if (delta)
    if (auto it = delta->find(key); it != delta->end()) n += it->second;
  return n > 0;
}

namespace {

bool routable(FrontendType t) {
  return t == FrontendType::NodePort || t == FrontendType::ExternalIp || t == FrontendType::LoadBalancer ||
         t == FrontendType::HostPort;
}

}  // namespace

// One view of a service's backends: what one service entry selects from.
struct Reconciler::View {
  std::vector<uint32_t> slots;  // selectable first (ID order), then terminating ones kept for draining
  size_t selectable = 0;
  const FlatMap<uint32_t, np_backend>& entries;  // backend ID -> entry, for a Maglev table's names
  MaglevTable table;                              // made on first use
};

Status Reconciler::expandInto(const Service& s, LbImage& img, const TerminatingUsers* delta) {
  const uint8_t proto = static_cast<uint8_t>(s.protocol);
  struct Member {
    uint32_t id;
    bool active, local;
    np_backend entry;
    bool fresh;  // its ID was allocated by this expansion
  };
  std::vector<Member> members;
  for (const Backend& b : s.backends) {
    np_backend be{};
    be.addr = b.addr.ip.be;
    be.port = htons(b.addr.port);
    be.proto = proto;
    const uint64_t key = backendKey(be.addr, be.port, proto);
    be.state = this->terminating(key, delta) ? NP_BACKEND_TERMINATING : NP_BACKEND_ACTIVE;
    const bool fresh = !backendIds_.find(key);
    auto id = backendIds_.acquire(key);
    if (!id)
      return Error{ENOSPC, "service " + s.name,
                   "no free backend ID left: all " + count(backendIds_.size()) + " are in use; nothing was changed"};
    members.push_back({*id, b.state == BackendState::Active, isLocal(b, node_), be, fresh});
  }
  // Slots in ID order: the same backends always land in the same slots, whatever order the
  // source lists them in, so a re-sent service changes nothing. Terminating backends are
  // selectable only when no active one is left.
  FlatMap<uint32_t, np_backend> entries;
  if (node_.maglev)
    for (const Member& m : members) entries.emplace(m.id, m.entry);
  auto view = [&](bool localOnly) {
    View v{{}, 0, entries, {}};
    std::vector<const Member*> active, terminating;
    for (const Member& m : members)
      if (!localOnly || m.local) (m.active ? active : terminating).push_back(&m);
    auto byId = [](const Member* a, const Member* b) { return a->id < b->id; };
    std::sort(active.begin(), active.end(), byId);
    std::sort(terminating.begin(), terminating.end(), byId);
    const auto& selectable = active.empty() ? terminating : active;
    for (const Member* m : selectable) v.slots.push_back(m->id);
    v.selectable = v.slots.size();
    if (!active.empty())
      for (const Member* m : terminating) v.slots.push_back(m->id);
    return v;
  };
  View all = view(false);
  std::optional<View> local;
  auto localView = [&]() -> View& {
    if (!local) local.emplace(view(true));
    return *local;
  };
  const bool affinity = s.sessionAffinity == SessionAffinity::ClientIp;
  bool usedAll = false, usedLocal = false;

  for (const Frontend& f : frontendsOf(s, node_)) {
    np_svc_key master = masterKey(f);
    auto id = frontendIds_.acquire(master);
    if (!id) {
      // The caller releases what went into img; the backend IDs of this service are not there yet.
      for (const Member& m : members)
        if (m.fresh) backendIds_.release(backendKey(m.entry.addr, m.entry.port, m.entry.proto));
      return Error{ENOSPC, "service " + s.name,
                   "no free service ID left: all " + count(frontendIds_.size()) +
                       " are in use (a node holds at most 65,535 frontends); nothing was changed"};
    }
    // From outside (tc) an external frontend of an eTP=Local service reaches this node's
    // backends only; in-cluster clients (the socket LB) use its INT entry with all of them. A
    // ClusterIP of an iTP=Local service has only in-cluster clients: local backends only.
    const bool extLocal = routable(f.type) && s.externalTrafficPolicy == TrafficPolicy::Local;
    const bool intLocal = f.type == FrontendType::ClusterIp && s.internalTrafficPolicy == TrafficPolicy::Local;
    uint8_t flags = flagsFor(f.type);
    if (affinity) flags |= NP_SVC_F_AFFINITY;
    uint8_t flags2 = 0;
    if (extLocal) flags2 |= NP_SVC_F2_TWO_SCOPES;
    if (intLocal) flags2 |= NP_SVC_F2_INT_LOCAL;
    View& ext = extLocal || intLocal ? localView() : all;
    (extLocal || intLocal ? usedLocal : usedAll) = true;
    usedAll |= extLocal;  // its INT entry
    // Maglev serves the tc path, which only routable frontends see.
    const bool maglev = node_.maglev && routable(f.type) && ext.selectable > 0;
    if (maglev) flags2 |= NP_SVC_F2_MAGLEV;
    writeEntry(img, master, ext, *id, static_cast<uint8_t>(flags | (extLocal ? NP_SVC_F_LOCAL_SCOPE : 0)), flags2,
               affinity ? s.affinityTimeoutSec : 0);
    if (maglev) img.maglev[master] = tableFor(master, ext);
    if (extLocal) {
      np_svc_key internal = master;
      internal.scope = NP_LB_SCOPE_INT;
      writeEntry(img, internal, all, *id, flags, 0, affinity ? s.affinityTimeoutSec : 0);
    }
    np_revnat rn{};
    rn.addr = f.addr.be;
    rn.port = htons(f.port);
    img.revNat[*id] = rn;
  }
  // Backend entries for what the service entries name (an iTP=Local ClusterIP-only service
  // names only its local backends); an ID allocated for one that none names goes back.
  for (const Member& m : members) {
    if (usedAll || (usedLocal && m.local)) img.backends[m.id] = m.entry;
    else if (m.fresh) backendIds_.release(backendKey(m.entry.addr, m.entry.port, m.entry.proto));
  }
  return {};
}

void Reconciler::writeEntry(LbImage& img, const np_svc_key& master, const View& v, uint16_t id, uint8_t flags,
                            uint8_t flags2, uint32_t affinityTimeout) const {
  np_svc_val mv{};
  mv.backend_id = affinityTimeout;
  mv.count = static_cast<uint16_t>(v.selectable);
  mv.total = static_cast<uint16_t>(v.slots.size());
  mv.rev_nat_id = id;
  mv.flags = flags;
  mv.flags2 = flags2;
  img.services[master] = mv;
  for (size_t i = 0; i < v.slots.size(); ++i) {
    np_svc_key k = master;
    k.slot = static_cast<uint16_t>(i + 1);
    np_svc_val sv{};
    sv.backend_id = v.slots[i];
    sv.rev_nat_id = id;
    sv.flags = flags;
    img.services[k] = sv;
  }
  // Affinity holds while its backend is selectable in this entry.
  if (flags & NP_SVC_F_AFFINITY)
    for (size_t i = 0; i < v.selectable; ++i) {
      np_affinity_match m{};
      m.backend_id = v.slots[i];
      m.rev_nat_id = id;
      m.scope = master.scope;
      img.affinityMatch[m] = 0;
    }
}

MaglevTable Reconciler::tableFor(const np_svc_key& master, View& v) const {
  if (v.table.ids) return v.table;
  // The applied table of this entry, when it was made from the same backends at this size: a
  // table costs O(M log M) to compute, and a whole-map reconcile expands every service.
  auto applied = applied_.maglev.find(master);
  auto entry = applied_.services.find(master);
  if (applied != applied_.maglev.end() && entry != applied_.services.end() && applied->second.ids &&
      applied->second.ids->size() == node_.maglevTableSize && entry->second.count == v.selectable) {
    bool same = true;
    for (size_t i = 0; same && i < v.selectable; ++i) {
      np_svc_key k = master;
      k.slot = static_cast<uint16_t>(i + 1);
      auto slot = applied_.services.find(k);
      same = slot != applied_.services.end() && slot->second.backend_id == v.slots[i];
    }
    if (same) {
      v.table = applied->second;
      return v.table;
    }
  }
  // Named as Cilium names them, "ip:port/proto": the same on every node.
  std::vector<maglev::Member> members;
  members.reserve(v.selectable);
  for (size_t i = 0; i < v.selectable; ++i) {
    const np_backend& be = v.entries.at(v.slots[i]);
    members.push_back({Endpoint{Ipv4{be.addr}, ntohs(be.port)}.str() + "/" +
                           protocolName(static_cast<Protocol>(be.proto)),
                       v.slots[i]});
  }
  v.table.ids = std::make_shared<const std::vector<uint32_t>>(maglev::table(std::move(members), node_.maglevTableSize));
  return v.table;
}

namespace {

// Copies service entry `master` of `src` into `out` with what it reaches: slots 1..total, their
// backends and affinity matches, its Maglev table and its reverse-NAT entry (whatever of those
// exists). Entries `out` has are kept.
bool copyEntry(const LbImage& src, const np_svc_key& master, LbImage& out) {
  auto it = src.services.find(master);
  if (it == src.services.end()) return false;
  out.services.emplace(master, it->second);
  for (uint32_t slot = 1; slot <= it->second.total; ++slot) {
    np_svc_key k = master;
    k.slot = static_cast<uint16_t>(slot);
    auto si = src.services.find(k);
    if (si == src.services.end()) continue;
    out.services.emplace(k, si->second);
    if (auto be = src.backends.find(si->second.backend_id); be != src.backends.end()) out.backends.insert(*be);
    np_affinity_match m{};
    m.backend_id = si->second.backend_id;
    m.rev_nat_id = it->second.rev_nat_id;
    m.scope = master.scope;
    if (auto am = src.affinityMatch.find(m); am != src.affinityMatch.end()) out.affinityMatch.insert(*am);
  }
  if (auto t = src.maglev.find(master); t != src.maglev.end()) out.maglev.insert(*t);
  if (auto rn = src.revNat.find(it->second.rev_nat_id); rn != src.revNat.end()) out.revNat.insert(*rn);
  return true;
}

// A frontend (its EXT entry `master`) with both of its scopes.
bool copyFrontend(const LbImage& src, const np_svc_key& master, LbImage& out) {
  if (!copyEntry(src, master, out)) return false;
  np_svc_key internal = master;
  internal.scope = NP_LB_SCOPE_INT;
  copyEntry(src, internal, out);
  return true;
}

}  // namespace

LbImage Reconciler::appliedScope(const std::vector<np_svc_key>& masters, const LbImage& alsoBackends) const {
  LbImage out;
  for (const np_svc_key& master : masters) copyFrontend(applied_, master, out);
  for (const auto& [id, be] : alsoBackends.backends)
    if (auto it = applied_.backends.find(id); it != applied_.backends.end()) out.backends.emplace(id, it->second);
  return out;
}

std::vector<MapOp> Reconciler::plan(const LbImage& from, const LbImage& to) const {
  std::vector<MapOp> ops = diff(from, to);
  // A backend this change stops using may still be used by slots outside it (other services,
  // stale adopted entries): delete it only when no slot will point at it any more.
  FlatMap<uint32_t, int64_t> delta;
  for (const auto& [k, v] : from.services)
    if (k.slot != 0) delta[v.backend_id]--;
  for (const auto& [k, v] : to.services)
    if (k.slot != 0) delta[v.backend_id]++;
  std::erase_if(ops, [&](const MapOp& op) {
    if (op.kind != MapOp::Kind::DeleteBackend) return false;
    auto refs = slotRefs_.find(op.backendId);
    const int64_t now = refs == slotRefs_.end() ? 0 : refs->second;
    auto d = delta.find(op.backendId);
    return now + (d == delta.end() ? 0 : d->second) > 0;
  });
  return ops;
}

Status Reconciler::checkCapacity(const std::vector<MapOp>& ops) const {
  // Upserts run before deletes, so a change needs room for all of its new keys at once.
  const NewEntries need = newEntries(applied_, ops);
  const LbMaps::Capacity cap = maps_.capacity();
  auto check = [](const char* map, size_t needed, size_t used, size_t max) -> Status {
    const size_t free = used >= max ? 0 : max - used;
    if (needed <= free) return {};
    return Error{ENOSPC, "the change does not fit the " + std::string(map) + " map",
                 "needs " + count(needed) + " new entries, " + count(free) + " free (" + count(max) +
                     " max); nothing was changed"};
  };
  NP_TRY(check("service", need.services, applied_.services.size(), cap.services));
  NP_TRY(check("backend", need.backends, applied_.backends.size(), cap.backends));
  NP_TRY(check("reverse-NAT", need.revNat, applied_.revNat.size(), cap.revNat));
  NP_TRY(check("affinity-match", need.affinityMatch, applied_.affinityMatch.size(), cap.affinityMatch));
  NP_TRY(check("Maglev", need.maglev, applied_.maglev.size(), cap.maglev));
  return {};
}

void Reconciler::record(const std::vector<MapOp>& ops, size_t n) {
  using K = MapOp::Kind;
  auto unref = [&](const np_svc_key& k) {
    if (k.slot == 0) return;
    auto it = applied_.services.find(k);
    if (it == applied_.services.end()) return;
    auto r = slotRefs_.find(it->second.backend_id);
    if (r != slotRefs_.end() && --r->second == 0) slotRefs_.erase(r);
  };
  for (size_t i = 0; i < n && i < ops.size(); ++i) {
    const MapOp& op = ops[i];
    if (op.kind == K::UpsertSlot || op.kind == K::DeleteSlot) unref(op.svcKey);
    if (op.kind == K::UpsertSlot) slotRefs_[op.svcVal.backend_id]++;
  }
  applyOps(applied_, ops, n);
}

void Reconciler::rebuildRefs() {
  slotRefs_.clear();
  for (const auto& [k, v] : applied_.services)
    if (k.slot != 0) slotRefs_[v.backend_id]++;
}

void Reconciler::releaseUnusedIds(const LbImage& candidates) {
  for (const auto& [k, v] : candidates.services)
    if (k.slot == 0 && k.scope == NP_LB_SCOPE_EXT && !applied_.services.count(k)) frontendIds_.release(k);
  for (const auto& [id, be] : candidates.backends)
    if (!applied_.backends.count(id)) backendIds_.release(backendKey(be.addr, be.port, be.proto));
}

Result<Reconciler::Prepared> Reconciler::prepare(Change c) {
  Prepared p;
  std::set<std::string> names;
  for (const Service& s : c.upserts)
    if (!names.insert(s.name).second) return error("service " + shownName(s.name), "is given twice in one change");
  for (const std::string& name : c.deletes) {
    if (!names.insert(name).second) return error("service " + shownName(name), "is given twice in one change");
    if (!services_.count(name)) return Error{ENOENT, "service " + shownName(name), "not found"};
  }
  // Validate everything before allocating anything. A frontend owned by a service this change
  // replaces or deletes is free for the change's new versions (which must not collide with one
  // another: `batch`).
  FrontendOwners batch;
  for (Service& s : c.upserts) {
    normalize(s);
    NP_TRY(validate(s, node_));
    for (const Frontend& f : frontendsOf(s, node_)) {
      const uint64_t key = frontendKey(f);
      auto it = owners_.find(key);
      if (it != owners_.end() && it->second != s.name && !names.count(it->second))
        return Error{EEXIST, "service " + s.name, "frontend " + f.str() + " is already used by service " + it->second};
      auto [b, fresh] = batch.emplace(key, s.name);
      if (!fresh && b->second != s.name)
        return Error{EEXIST, "service " + s.name, "frontend " + f.str() + " is also claimed by service " + b->second +
                                                     " in the same change"};
    }
  }
  for (Service& s : c.upserts) {
    const Service* old = find(s.name);
    if (old && *old == s) continue;  // re-sent unchanged: costs nothing
    p.created.push_back(old == nullptr);
    if (old) p.previous.push_back(*old);
    p.upserts.push_back(std::move(s));
  }
  for (std::string& name : c.deletes) {
    p.previous.push_back(services_.at(name));
    p.deletes.push_back(std::move(name));
  }
  if (p.empty()) return p;

  // Which endpoints this change marks or unmarks terminating.
  auto countTerminating = [&](const Service& s, int64_t d) {
    for (const Backend& b : s.backends)
      if (b.state == BackendState::Terminating)
        p.terminatingDelta[backendKey(b.addr.ip.be, htons(b.addr.port), static_cast<uint8_t>(s.protocol))] += d;
  };
  for (const Service& s : p.previous) countTerminating(s, -1);
  for (const Service& s : p.upserts) countTerminating(s, +1);

  // Scope: every frontend of the versions before and after.
  std::vector<np_svc_key> masters;
  for (const Service& s : p.previous)
    for (const Frontend& f : frontendsOf(s, node_)) masters.push_back(masterKey(f));
  for (const Service& s : p.upserts) {
    Status st = expandInto(s, p.to, &p.terminatingDelta);
    if (!st) {
      releaseUnusedIds(p.to);
      return st.error();
    }
    for (const Frontend& f : frontendsOf(s, node_)) masters.push_back(masterKey(f));
  }
  LbImage from = appliedScope(masters, p.to);
  // A shared backend whose state flips because of this change, still used by slots outside it.
  FlatMap<uint32_t, int64_t> slotsInScope;
  for (const auto& [k, v] : from.services)
    if (k.slot != 0) slotsInScope[v.backend_id]++;
  for (const auto& [key, d] : p.terminatingDelta) {
    if (d == 0 || terminating(key, nullptr) == terminating(key, &p.terminatingDelta)) continue;
    auto id = backendIds_.find(key);
    if (!id || p.to.backends.contains(*id)) continue;
    auto it = applied_.backends.find(*id);
    auto refs = slotRefs_.find(*id);
    const int64_t outside = (refs == slotRefs_.end() ? 0 : refs->second) - slotsInScope[*id];
    if (it == applied_.backends.end() || outside <= 0) continue;
    np_backend be = it->second;
    be.state = terminating(key, &p.terminatingDelta) ? NP_BACKEND_TERMINATING : NP_BACKEND_ACTIVE;
    from.backends[*id] = it->second;
    p.to.backends[*id] = be;
  }
  p.ops = plan(from, p.to);
  if (Status st = checkCapacity(p.ops); !st) {
    releaseUnusedIds(p.to);
    return st.error();
  }
  return p;
}

bool Reconciler::Prepared::frontendsChanged() const {
  if (!deletes.empty()) return true;
  size_t replaced = 0;  // `previous` holds the replaced versions first, in upsert order
  for (size_t i = 0; i < upserts.size(); ++i) {
    if (created[i]) return true;
    if (!sameFrontends(previous[replaced++], upserts[i])) return true;
  }
  return false;
}

void Reconciler::abandon(const Prepared& p) { releaseUnusedIds(p.to); }

Status Reconciler::commit(Prepared& p) {
  if (p.empty()) return {};
  const auto started = std::chrono::steady_clock::now();
  Status st = commitOps(p);
  if (observer_) observer_("lb-apply", std::chrono::steady_clock::now() - started, st.ok());
  return st;
}

Status Reconciler::commitOps(Prepared& p) {
  // Kept before applying: the undo of a partial apply puts back exactly these values.
  LbImage before;
  for (const MapOp& op : p.ops) {
    switch (op.kind) {
      case MapOp::Kind::UpsertBackend:
      case MapOp::Kind::DeleteBackend:
        if (auto it = applied_.backends.find(op.backendId); it != applied_.backends.end()) before.backends.insert(*it);
        break;
      case MapOp::Kind::UpsertRevNat:
      case MapOp::Kind::DeleteRevNat:
        if (auto it = applied_.revNat.find(op.revNatId); it != applied_.revNat.end()) before.revNat.insert(*it);
        break;
      case MapOp::Kind::UpsertAffinityMatch:
      case MapOp::Kind::DeleteAffinityMatch:
        if (auto it = applied_.affinityMatch.find(op.match); it != applied_.affinityMatch.end())
          before.affinityMatch.insert(*it);
        break;
      case MapOp::Kind::UpsertMaglev:
      case MapOp::Kind::DeleteMaglev:
        if (auto it = applied_.maglev.find(op.svcKey); it != applied_.maglev.end()) before.maglev.insert(*it);
        break;
      default:
        if (auto it = applied_.services.find(op.svcKey); it != applied_.services.end()) before.services.insert(*it);
    }
  }
  LbMaps::Applied r = maps_.apply(p.ops);
  record(p.ops, r.done);

  if (r.error) {
    std::vector<MapOp> back = undo(before, p.ops, r.done);
    LbMaps::Applied rb = maps_.apply(back);
    record(back, rb.done);
    if (rb.error) {
      diverged_ = Error{rb.error->err, "undo a refused change", rb.error->message()};
      NP_LOG_ERROR("lb", "undoing a change the kernel refused failed too (%s); the maps differ from the model until "
                         "the next reconcile", rb.error->message().c_str());
    }
    releaseUnusedIds(p.to);
    Error e = *r.error;
    if (r.done < p.ops.size()) e.context = "apply " + p.ops[r.done].str() + ": " + e.context;
    e.detail = (e.detail.empty() ? std::string() : e.detail + "; ") + "nothing was changed";
    return e;
  }

  for (const Service& s : p.previous) removeOwner(owners_, s, node_);
  for (const std::string& name : p.deletes) services_.erase(name);
  for (Service& s : p.upserts) {
    addOwner(owners_, s, node_);
    services_[s.name] = s;
  }
  for (const auto& [key, d] : p.terminatingDelta) {
    if (d == 0) continue;
    auto& n = terminatingUsers_[key];
    n += d;
    if (n == 0) terminatingUsers_.erase(key);
  }
  // IDs of frontends and backends that left the maps.
  LbImage gone;
  for (const MapOp& op : p.ops) {
    if (op.kind == MapOp::Kind::DeleteService) gone.services.emplace(op.svcKey, np_svc_val{});
    if (op.kind == MapOp::Kind::DeleteBackend)
      if (auto it = before.backends.find(op.backendId); it != before.backends.end()) gone.backends.insert(*it);
  }
  releaseUnusedIds(gone);
  return {};
}

Result<Reconciler::ChangeKind> Reconciler::upsert(Service s) {
  auto p = prepare(Change{{std::move(s)}, {}});
  if (!p) return p.error();
  if (p->empty()) return ChangeKind::Unchanged;
  const bool created = p->created.front();
  NP_TRY(commit(*p));
  return created ? ChangeKind::Created : ChangeKind::Updated;
}

Result<size_t> Reconciler::upsertMany(std::vector<Service> services) {
  auto p = prepare(Change{std::move(services), {}});
  if (!p) return p.error();
  const size_t n = p->upserts.size();
  NP_TRY(commit(*p));
  return n;
}

Status Reconciler::remove(const std::string& name) {
  auto p = prepare(Change{{}, {name}});
  if (!p) return p.error();
  return commit(*p);
}

Result<size_t> Reconciler::adopt() {
  auto dump = maps_.dump();
  if (!dump) return dump.error();
  applied_ = std::move(dump.value());
  services_.clear();
  owners_.clear();
  terminatingUsers_.clear();
  size_t masters = 0;
  for (const auto& [k, v] : applied_.services) {
    if (k.slot != 0 || k.scope != NP_LB_SCOPE_EXT) continue;  // an INT entry shares its EXT entry's ID
    ++masters;
    if (!frontendIds_.restore(k, v.rev_nat_id))
      NP_LOG_WARN("lb", "pinned service entry %s with ID %u: the ID is taken; the entry gets a new one when claimed",
                  Frontend{Ipv4{k.addr}, ntohs(k.dport), static_cast<Protocol>(k.proto)}.str().c_str(), v.rev_nat_id);
  }
  for (const auto& [id, be] : applied_.backends) backendIds_.restore(backendKey(be.addr, be.port, be.proto), id);
  rebuildRefs();
  return masters;
}

Result<Reconciler::ReconcileReport> Reconciler::reconcileAll() {
  const auto started = std::chrono::steady_clock::now();
  auto r = reconcileAllOnce();
  if (observer_) observer_("lb-full", std::chrono::steady_clock::now() - started, r.ok() && !r->error);
  return r;
}

Result<Reconciler::ReconcileReport> Reconciler::reconcileAllOnce() {
  const auto started = std::chrono::steady_clock::now();
  ReconcileReport rep;
  auto dump = maps_.dump();
  if (!dump) return dump.error();
  LbImage kernel = std::move(dump.value());

  LbImage desired;
  for (const auto& [name, s] : services_) NP_TRY(expandInto(s, desired));
  rep.services = services_.size();
  rep.entries = desired.services.size();
  if (!pruneAllowed_) {
    // Stale frontends stay as they are, with what they reach (slots, reverse NAT, backends);
    // unreachable leftovers (slots without an entry, unreferenced backends) serve nothing and go.
    std::vector<np_svc_key> stale;
    for (const auto& [k, v] : kernel.services)
      if (k.slot == 0 && k.scope == NP_LB_SCOPE_EXT && !desired.services.contains(k)) stale.push_back(k);
    for (const np_svc_key& k : stale) copyFrontend(kernel, k, desired);
    rep.staleKept = stale.size();
  }

  std::vector<MapOp> ops = diff(kernel, desired);
  for (const MapOp& op : ops) {
    switch (op.kind) {
      case MapOp::Kind::UpsertBackend: (kernel.backends.contains(op.backendId) ? rep.drifted : rep.missing)++; break;
      case MapOp::Kind::UpsertSlot:
      case MapOp::Kind::UpsertService: (kernel.services.contains(op.svcKey) ? rep.drifted : rep.missing)++; break;
      case MapOp::Kind::UpsertRevNat: (kernel.revNat.contains(op.revNatId) ? rep.drifted : rep.missing)++; break;
      case MapOp::Kind::UpsertAffinityMatch: rep.missing++; break;
      case MapOp::Kind::UpsertMaglev: (kernel.maglev.contains(op.svcKey) ? rep.drifted : rep.missing)++; break;
      default: rep.orphans++; break;
    }
  }
  rep.ops = ops.size();
  LbMaps::Applied r = ops.empty() ? LbMaps::Applied{} : maps_.apply(ops);
  applyOps(kernel, ops, r.done);
  applied_ = std::move(kernel);
  rebuildRefs();
  if (r.error) {
    rep.error = *r.error;
    if (r.done < ops.size()) rep.error->context = "apply " + ops[r.done].str() + ": " + rep.error->context;
  } else {
    diverged_.reset();
  }
  // IDs follow the maps: entries now present keep theirs, IDs of entries that are gone are free.
  for (const auto& [k, v] : applied_.services)
    if (k.slot == 0 && k.scope == NP_LB_SCOPE_EXT) frontendIds_.restore(k, v.rev_nat_id);
  for (const auto& [id, be] : applied_.backends) backendIds_.restore(backendKey(be.addr, be.port, be.proto), id);
  frontendIds_.releaseIf(
      [&](const np_svc_key& k, uint16_t) { return !applied_.services.contains(k) && !desired.services.contains(k); });
  backendIds_.releaseIf(
      [&](uint64_t, uint32_t id) { return !applied_.backends.contains(id) && !desired.backends.contains(id); });
  rep.took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
  return rep;
}

}  // namespace np::lb
