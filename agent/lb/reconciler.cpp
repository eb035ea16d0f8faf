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
    case FrontendType::ExternalIp: return NP_SVC_F_EXTERNAL_IP | NP_SVC_F_ROUTABLE;
    case FrontendType::LoadBalancer: return NP_SVC_F_LOADBALANCER | NP_SVC_F_ROUTABLE;
  }
  return 0;
}

np_svc_key masterKey(const Frontend& f) {
  return svcKey(f.addr.be, htons(f.port), static_cast<uint8_t>(f.protocol), 0);
}

}  // namespace

uint64_t backendKey(uint32_t addrBe, uint16_t portBe, uint8_t proto) {
  return (uint64_t{addrBe} << 32) | (uint64_t{portBe} << 8) | proto;
}

namespace {

// The distinct backend IDs service s uses (those allocated).
template <typename Ids>
std::vector<uint32_t> backendIdsOf(const Service& s, const Ids& ids) {
  std::vector<uint32_t> out;
  out.reserve(s.backends.size());
  for (const Backend& b : s.backends)
    if (auto id = ids.find(backendKey(b.addr.ip.be, htons(b.addr.port), static_cast<uint8_t>(s.protocol))))
      out.push_back(*id);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

Reconciler::Reconciler(LbMaps& maps, NodeContext node) : maps_(maps), node_(std::move(node)) {}

const Service* Reconciler::find(const std::string& name) const {
  auto it = services_.find(name);
  return it == services_.end() ? nullptr : &it->second;
}

size_t Reconciler::frontendCount() const {
  size_t n = 0;
  for (const auto& [k, v] : applied_.services) n += k.slot == 0;
  return n;
}

Status Reconciler::expandInto(const Service& s, LbImage& img) {
  const uint8_t proto = static_cast<uint8_t>(s.protocol);
  std::vector<uint32_t> active, terminating;
  for (const Backend& b : s.backends) {
    np_backend be{};
    be.addr = b.addr.ip.be;
    be.port = htons(b.addr.port);
    be.proto = proto;
    be.state = b.state == BackendState::Terminating ? NP_BACKEND_TERMINATING : NP_BACKEND_ACTIVE;
    auto id = backendIds_.acquire(backendKey(be.addr, be.port, proto));
    if (!id) return error("service " + s.name, "no free backend ID left");
    img.backends[*id] = be;
    (b.state == BackendState::Active ? active : terminating).push_back(*id);
  }
  // Slots in ID order: the same backends always land in the same slots, whatever order the
  // source lists them in, so a re-sent service changes nothing.
  std::sort(active.begin(), active.end());
  std::sort(terminating.begin(), terminating.end());
  // Terminating backends are selectable only when no active one is left.
  const bool onlyTerminating = active.empty();
  std::vector<uint32_t> slots = onlyTerminating ? terminating : active;
  const size_t selectable = slots.size();
  if (!onlyTerminating) slots.insert(slots.end(), terminating.begin(), terminating.end());

  for (const Frontend& f : frontendsOf(s, node_)) {
    np_svc_key master = masterKey(f);
    auto id = frontendIds_.acquire(master);
    if (!id) return error("service " + s.name, "no free service ID left (65535 frontends)");
    np_svc_val mv{};
    mv.count = static_cast<uint16_t>(selectable);
    mv.total = static_cast<uint16_t>(slots.size());
    mv.rev_nat_id = *id;
    mv.flags = flagsFor(f.type);
    img.services[master] = mv;
    for (size_t i = 0; i < slots.size(); ++i) {
      np_svc_key k = master;
      k.slot = static_cast<uint16_t>(i + 1);
      np_svc_val sv{};
      sv.backend_id = slots[i];
      sv.rev_nat_id = *id;
      sv.flags = mv.flags;
      img.services[k] = sv;
    }
    np_revnat rn{};
    rn.addr = f.addr.be;
    rn.port = htons(f.port);
    img.revNat[*id] = rn;
  }
  return {};
}

LbImage Reconciler::appliedScope(const std::vector<const Service*>& services, const LbImage& alsoBackends) const {
  LbImage out;
  for (const Service* s : services) {
    if (!s) continue;
    for (const Frontend& f : frontendsOf(*s, node_)) {
      np_svc_key master = masterKey(f);
      auto it = applied_.services.find(master);
      if (it == applied_.services.end()) continue;
      out.services.emplace(master, it->second);
      for (uint32_t slot = 1; slot <= it->second.total; ++slot) {
        np_svc_key k = master;
        k.slot = static_cast<uint16_t>(slot);
        auto si = applied_.services.find(k);
        if (si == applied_.services.end()) continue;
        out.services.emplace(k, si->second);
        if (auto be = applied_.backends.find(si->second.backend_id); be != applied_.backends.end())
          out.backends.emplace(be->first, be->second);
      }
      if (auto rn = applied_.revNat.find(it->second.rev_nat_id); rn != applied_.revNat.end())
        out.revNat.emplace(rn->first, rn->second);
    }
  }
  for (const auto& [id, be] : alsoBackends.backends)
    if (auto it = applied_.backends.find(id); it != applied_.backends.end()) out.backends.emplace(id, it->second);
  return out;
}

std::vector<MapOp> Reconciler::plan(const LbImage& from, const LbImage& to,
                                    const std::vector<const Service*>& before) const {
  std::vector<MapOp> ops = diff(from, to);
  // A backend these services stop using may still serve services outside the change.
  FlatMap<uint32_t, uint32_t> usedHere;
  for (const Service* s : before)
    if (s)
      for (uint32_t id : backendIdsOf(*s, backendIds_)) usedHere[id]++;
  std::erase_if(ops, [&](const MapOp& op) {
    if (op.kind != MapOp::Kind::DeleteBackend) return false;
    auto refs = backendRefs_.find(op.backendId);
    return refs != backendRefs_.end() && refs->second > usedHere[op.backendId];
  });
  return ops;
}

void Reconciler::releaseUnusedIds(const LbImage& candidates) {
  for (const auto& [k, v] : candidates.services)
    if (k.slot == 0 && !applied_.services.count(k)) frontendIds_.release(k);
  for (const auto& [id, be] : candidates.backends)
    if (!applied_.backends.count(id)) backendIds_.release(backendKey(be.addr, be.port, be.proto));
}

Status Reconciler::commit(const std::vector<const Service*>& before, const std::vector<const Service*>& after) {
  LbImage to;
  for (const Service* s : after) {
    if (!s) continue;
    Status st = expandInto(*s, to);
    if (!st) {
      releaseUnusedIds(to);
      return st;
    }
  }
  LbImage from = appliedScope(before, to);
  std::vector<MapOp> ops = plan(from, to, before);
  LbMaps::Applied r = maps_.apply(ops);
  applyOps(applied_, ops, r.done);

  if (r.error) {
    // Put the services back as they were: everything this change touched, back to `from`.
    std::vector<const Service*> touched = before;
    touched.insert(touched.end(), after.begin(), after.end());
    LbImage now = appliedScope(touched, to);
    for (const auto& [id, be] : from.backends) {
      if (auto it = applied_.backends.find(id); it != applied_.backends.end()) now.backends.emplace(id, it->second);
    }
    std::vector<MapOp> back = diff(now, from);
    LbMaps::Applied rb = maps_.apply(back);
    applyOps(applied_, back, rb.done);
    if (rb.error)
      NP_LOG_ERROR("lb", "rolling back a failed change failed too: %s; the next change retries",
                   rb.error->message().c_str());
    releaseUnusedIds(to);
    Error e = *r.error;
    if (r.done < ops.size()) e.context = "apply " + ops[r.done].str() + ": " + e.context;
    return e;
  }

  auto count = [&](const Service* s, int delta) {
    if (!s) return;
    for (uint32_t id : backendIdsOf(*s, backendIds_)) {
      auto& n = backendRefs_[id];
      n += delta;
      if (n == 0) backendRefs_.erase(id);
    }
  };
  for (const Service* s : before) count(s, -1);
  for (const Service* s : after) count(s, +1);
  releaseUnusedIds(from);
  return {};
}

Result<Reconciler::Change> Reconciler::upsert(Service s) {
  normalize(s);
  NP_TRY(validate(s, node_));
  NP_TRY(checkConflicts(s, node_, owners_));
  auto it = services_.find(s.name);
  const Service* before = it == services_.end() ? nullptr : &it->second;
  if (before && *before == s) return Change::Unchanged;
  NP_TRY(commit({before}, {&s}));
  const Change change = before ? Change::Updated : Change::Created;
  if (before) removeOwner(owners_, *before, node_);
  addOwner(owners_, s, node_);
  services_[s.name] = std::move(s);
  return change;
}

Status Reconciler::validateAll(const std::vector<Service>& services) const {
  FrontendOwners batch;
  std::set<std::string> names;
  for (const Service& s : services) {
    NP_TRY(validate(s, node_));
    if (!names.insert(s.name).second) return error("service " + s.name, "is given twice in one batch");
    NP_TRY(checkConflicts(s, node_, owners_));
    NP_TRY(checkConflicts(s, node_, batch));
    addOwner(batch, s, node_);
  }
  return {};
}

Result<size_t> Reconciler::upsertMany(std::vector<Service> services) {
  for (Service& s : services) normalize(s);
  NP_TRY(validateAll(services));
  // Re-sent services that did not change cost nothing.
  std::erase_if(services, [&](const Service& s) {
    const Service* old = find(s.name);
    return old && *old == s;
  });
  if (services.empty()) return size_t{0};
  std::vector<const Service*> before, after;
  for (const Service& s : services) {
    before.push_back(find(s.name));
    after.push_back(&s);
  }
  NP_TRY(commit(before, after));
  for (Service& s : services) {
    if (const Service* old = find(s.name)) removeOwner(owners_, *old, node_);
    addOwner(owners_, s, node_);
    std::string name = s.name;
    services_[name] = std::move(s);
  }
  return services.size();
}

Status Reconciler::remove(const std::string& name) {
  auto it = services_.find(name);
  if (it == services_.end()) return Error{ENOENT, "service " + name, "not found"};
  NP_TRY(commit({&it->second}, {nullptr}));
  removeOwner(owners_, it->second, node_);
  services_.erase(it);
  return {};
}

Result<Reconciler::Restored> Reconciler::restore(std::vector<Service> services) {
  auto dump = maps_.dump();
  if (!dump) return dump.error();
  applied_ = std::move(dump.value());
  services_.clear();
  owners_.clear();
  backendRefs_.clear();

  Restored out;
  std::vector<np_svc_key> adoptedMasters;
  std::vector<std::pair<uint32_t, np_backend>> adoptedBackends;
  for (const auto& [k, v] : applied_.services) {
    if (k.slot != 0) continue;
    adoptedMasters.push_back(k);
    if (!frontendIds_.restore(k, v.rev_nat_id))
      NP_LOG_WARN("lb", "pinned service entry with ID %u is a duplicate; it gets a new ID", v.rev_nat_id);
  }
  out.adoptedFrontends = adoptedMasters.size();
  for (const auto& [id, be] : applied_.backends) {
    adoptedBackends.emplace_back(id, be);
    backendIds_.restore(backendKey(be.addr, be.port, be.proto), id);
  }

  for (Service& s : services) {
    normalize(s);
    Status st = validate(s, node_);
    if (st) st = checkConflicts(s, node_, owners_);
    if (st && services_.count(s.name)) st = error("service " + s.name, "is persisted twice");
    if (!st) {
      out.skipped.push_back(st.error().message());
      continue;
    }
    addOwner(owners_, s, node_);
    std::string name = s.name;
    services_.emplace(name, std::move(s));
  }

  LbImage desired;
  for (const auto& [name, s] : services_) NP_TRY(expandInto(s, desired));
  std::vector<MapOp> ops = diff(applied_, desired);
  LbMaps::Applied r = maps_.apply(ops);
  applyOps(applied_, ops, r.done);
  out.ops = ops.size();
  if (r.error) {
    Error e = *r.error;
    e.context = "restore: " + (r.done < ops.size() ? "apply " + ops[r.done].str() + ": " : std::string()) + e.context;
    return e;
  }
  for (const auto& [name, s] : services_)
    for (uint32_t id : backendIdsOf(s, backendIds_)) backendRefs_[id]++;
  for (const np_svc_key& k : adoptedMasters)
    if (!applied_.services.count(k)) frontendIds_.release(k);
  for (const auto& [id, be] : adoptedBackends)
    if (!applied_.backends.count(id)) backendIds_.release(backendKey(be.addr, be.port, be.proto));
  out.services = services_.size();
  return out;
}

}  // namespace np::lb
