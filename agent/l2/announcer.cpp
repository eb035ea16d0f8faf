// The L2 announcer's election; the design and its safety argument are in announcer.h.
#include "l2/announcer.h"

#include <algorithm>
#include <charconv>

namespace np::l2 {

std::string heartbeatLeaseName(const std::string& node) { return kHeartbeatLeasePrefix + node; }

uint64_t rendezvousScore(const std::string& node, const std::string& lease) {
  // FNV-1a over "node\0lease", then splitmix64's finaliser so that similar names spread.
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : node) mix(c);
  mix(0);
  for (unsigned char c : lease) mix(c);
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

namespace {

// resourceVersions are opaque, but the API server's are etcd revisions: when both are numbers an
// older one (a watch event that overtook nothing but arrived after our own write's answer) is
// not applied over a newer one.
bool older(const std::string& a, const std::string& b) {
  uint64_t x = 0, y = 0;
  auto ra = std::from_chars(a.data(), a.data() + a.size(), x);
  auto rb = std::from_chars(b.data(), b.data() + b.size(), y);
  if (ra.ec != std::errc{} || ra.ptr != a.data() + a.size()) return false;
  if (rb.ec != std::errc{} || rb.ptr != b.data() + b.size()) return false;
  return x < y;
}

}  // namespace

Announcer::Announcer(std::string node, lease::Timings timings, Pacing pacing)
    : node_(std::move(node)), t_(lease::Timings::sanitise(timings)), pacing_(pacing) {
  pacing_.burst = std::max(1, pacing_.burst);
  tokens_ = pacing_.burst;
}

bool Announcer::takeToken(Time now) {
  if (pacing_.ratePerSecond <= 0) return true;
  if (now > refilledAt_) {
    const double secs = std::chrono::duration<double>(now - refilledAt_).count();
    tokens_ = std::min<double>(pacing_.burst, tokens_ + secs * pacing_.ratePerSecond);
    refilledAt_ = now;
  }
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

Announcer::Time Announcer::nextToken(Time now) const {
  if (pacing_.ratePerSecond <= 0 || tokens_ >= 1) return now;
  const auto need = std::chrono::duration<double>((1 - tokens_) / pacing_.ratePerSecond);
  return std::max(now, refilledAt_ + std::chrono::ceil<lease::Clock::duration>(need));
}

std::vector<std::string> Announcer::liveNodes(Time now) const {
  std::vector<std::string> out;
  if (selfAlive(now)) out.push_back(node_);
  for (const auto& [node, hb] : hbs_)
    if (hb.exists && hb.holder == node && now < hb.observedAt + t_.leaseDuration) out.push_back(node);
  return out;
}

std::string Announcer::effectiveHolder(const std::string& holder) const {
  std::string h = holder;
  for (int i = 0; i < 8 && !h.empty() && h != node_; ++i) {
    if (taken_.count(h)) return node_;
    auto it = hbs_.find(h);
    if (it == hbs_.end() || !it->second.exists || it->second.holder.empty() || it->second.holder == h) break;
    h = it->second.holder;
  }
  return h;
}

std::vector<std::string> Announcer::takenHeartbeats() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : taken_) out.push_back(n);
  return out;
}

bool Announcer::namedByAny(const std::string& node) const {
  for (const auto& [name, c] : cache_)  // service Leases only: the namespace holds others' too
    if (c.lease.record.holder == node && name.rfind(kServiceLeasePrefix, 0) == 0) return true;
  for (const auto& [_, s] : svcs_)
    if ((s.known && s.exists && s.lease.record.holder == node) || (s.inFlight && !s.desired)) return true;
  for (const auto& [n, hb] : hbs_)
    if (n != node && hb.exists && hb.holder == node) return true;
  return false;
}

namespace {

std::string highestScore(const std::vector<std::string>& nodes, const std::string& lease, const std::string& except) {
  std::string best;
  uint64_t bestScore = 0;
  for (const auto& n : nodes) {
    if (n == except) continue;
    const uint64_t sc = rendezvousScore(n, lease);
    if (best.empty() || sc > bestScore || (sc == bestScore && n < best)) {
      best = n;
      bestScore = sc;
    }
  }
  return best;
}

}  // namespace

// The preferred node for a service; `only`: no other node may acquire it, even after waiting (a
// Lease released by a node whose heartbeat is taken, or by an unknown node during a takeover).
std::string Announcer::prefFor(const std::string& name, const Svc& s, const std::vector<std::string>& live, bool& only) const {
  only = false;
  if (s.known && s.exists && s.lease.record.holder.empty()) {
    auto isLive = [&](const std::string& n) { return std::find(live.begin(), live.end(), n) != live.end(); };
    if (!s.releasedBy.empty()) {
      const std::string e = effectiveHolder(s.releasedBy);
      if (e != s.releasedBy && isLive(e)) {
        only = true;
        return e;
      }
    } else {
      std::vector<std::string> takers;
      if (!taken_.empty() && isLive(node_)) takers.push_back(node_);
      for (const auto& [n, hb] : hbs_)
        if (hb.exists && !hb.holder.empty() && hb.holder != n && isLive(hb.holder)) takers.push_back(hb.holder);
      if (!takers.empty()) {
        only = true;
        return highestScore(takers, name, "");
      }
    }
  }
  return highestScore(live, name, s.releasedBy);
}

std::string Announcer::preferred(const std::string& lease, Time now) const {
  auto it = svcs_.find(lease);
  if (it == svcs_.end()) return highestScore(liveNodes(now), lease, "");
  bool only = false;
  return prefFor(lease, it->second, liveNodes(now), only);
}

void Announcer::lapse() {
  ++epoch_;
  for (auto& [_, s] : svcs_) s.verified = false;
  taken_.clear();  // someone may have taken our heartbeat, and with it these
}

// A lapse (the heartbeat's renew deadline passed) makes this node silent at once (answering()
// checks selfAlive). It forgets what it held only when the lapse was long enough for another node
// to have taken its heartbeat: a renewal answered before leaseDuration after the send time s of
// the last renewal that succeeded before the lapse forgives it. Why that is safe: renewals are
// sequential, so an observer that takes this node's heartbeat PUTs it on the resourceVersion of
// the renewal sent at s (or a later one), at least leaseDuration after observing it, hence at or
// after s + leaseDuration; the renewal that ends the lapse was applied before its answer arrived
// here, before s + leaseDuration, so that PUT fails with 409 (and had the PUT come first, the
// renewal would have failed instead: no forgiveness). Without this, every blip of the API server
// longer than the renew deadline cost a rewrite of every held Lease.
void Announcer::checkLapse(Time now) {
  const bool alive = selfAlive(now);
  if (wasAlive_ && !alive) {
    inLapse_ = true;
    lastGoodSend_ = selfAliveUntil_ - t_.renewDeadline;
  }
  if (inLapse_ && now >= lastGoodSend_ + t_.leaseDuration) {
    inLapse_ = false;
    lapse();
  }
  wasAlive_ = alive;
}

void Announcer::setSelfAliveUntil(Time until, Time now) {
  checkLapse(now);
  selfAliveUntil_ = until;
  if (selfAlive(now)) inLapse_ = false;  // renewed in time: forgiven (checkLapse wiped a long one)
  wasAlive_ = selfAlive(now);
}

void Announcer::selfReleased() {
  selfAliveUntil_ = {};
  wasAlive_ = false;
  inLapse_ = false;
  lapse();
}

// A Lease the watch shows held by this node, for a service it does not announce (a previous run
// held it, or a write of ours landed after we gave the service up): tracked as withdrawn, so
// poll() hands it back on its resourceVersion (a 409 re-reads it first).
void Announcer::adoptStale(const std::string& name, const lease::Lease& l, Time at) {
  // Only service Leases: the namespace holds others (the operator's) that are none of ours.
  if (!desiredKnown_ || l.record.holder != node_ || svcs_.count(name) || name.rfind(kServiceLeasePrefix, 0) != 0) return;
  Svc& s = svcs_[name];
  s.known = true;
  s.exists = true;
  s.lease = l;
  s.stateAt = at;
}

void Announcer::setDesired(std::map<std::string, std::vector<Announcement>> desired) {
  desiredKnown_ = true;
  for (auto& [name, s] : svcs_) s.desired = false;
  for (auto& [name, ann] : desired) {
    auto [it, fresh] = svcs_.try_emplace(name);
    Svc& s = it->second;
    if (fresh) {  // start from the watch's cache: no GET
      if (auto c = cache_.find(name); c != cache_.end()) {
        s.known = true;
        s.exists = true;
        s.lease = c->second.lease;
        s.stateAt = c->second.at;
        if (!s.lease.record.holder.empty() && s.lease.record.holder != node_ && !hbs_.count(s.lease.record.holder))
          observeHeartbeat(s.lease.record.holder, std::nullopt, c->second.at);  // unknown: judged from then
      } else if (cacheSynced_) {
        s.known = true;
        s.exists = false;
      }
    }
    s.ann = std::move(ann);
    s.desired = true;
  }
  for (const auto& [name, c] : cache_) adoptStale(name, c.lease, c.at);
}

void Announcer::setCacheSynced() {
  cacheSynced_ = true;
  for (auto& [name, s] : svcs_)
    if (!s.known && !s.inFlight && !cache_.count(name)) {
      s.known = true;
      s.exists = false;
    }
}

bool Announcer::holds(const Svc& s) const { return s.known && s.exists && s.lease.record.holder == node_; }

void Announcer::observeHeartbeat(const std::string& node, std::optional<lease::Lease> l, Time at) {
  auto& hb = hbs_[node];
  const std::string rv = l ? l->resourceVersion : std::string();
  const bool exists = l.has_value();
  if (auto t = taken_.find(node); t != taken_.end()) {
    if (exists && t->second.written.count(rv)) {
      t->second.proven = true;  // the watch is past our write: every earlier write is in the cache
      return;
    }
    // Our renewal's own event, delivered before its answer (one write in flight at a time, so a
    // version naming us that is not older is that write's): the answer matches it (onHeartbeatWrite).
    if (exists && t->second.inFlight && l->record.holder == node_ && !older(rv, t->second.resourceVersion)) {
      t->second.seen.insert(rv);
      return;
    }
    if (!exists || !older(rv, t->second.resourceVersion)) taken_.erase(t);  // someone else wrote it
    else return;
  }
  if (exists && hbInFlight_.count(node) && l->record.holder == node_) hbSeenInFlight_[node].insert(rv);
  if (exists && hb.exists && older(rv, hb.resourceVersion)) return;
  if (hb.observedAt == Time{} || rv != hb.resourceVersion || exists != hb.exists) {
    hb.resourceVersion = rv;
    hb.exists = exists;
    hb.holder = l ? l->record.holder : std::string();
    hb.observedAt = at;
    hb.mustRead = false;
    hb.takeableSince = {};
  }
}

void Announcer::observe(const std::string& name, std::optional<lease::Lease> l, Time at) {
  if (name.rfind(kHeartbeatLeasePrefix, 0) == 0) {
    const std::string node = name.substr(std::string(kHeartbeatLeasePrefix).size());
    if (node != node_) observeHeartbeat(node, std::move(l), at);
    else selfHbHolder_ = l ? l->record.holder : std::string();
    return;
  }
  auto c = cache_.find(name);
  if (l && c != cache_.end() && older(l->resourceVersion, c->second.lease.resourceVersion)) {
    // an older event than what we have (our own write's answer came first)
  } else if (l) {
    cache_[name] = Cached{*l, at};
  } else if (c != cache_.end()) {
    cache_.erase(c);
  }
  auto it = svcs_.find(name);
  if (it == svcs_.end()) {
    if (l) adoptStale(name, *l, at);
    return;
  }
  Svc& s = it->second;
  if (l && s.known && s.exists && older(l->resourceVersion, s.lease.resourceVersion)) return;
  // The watch caught up with whatever a 409 told us: act on it rather than GET.
  const bool changed = !s.known || l.has_value() != s.exists || (l && l->resourceVersion != s.lease.resourceVersion);
  if (changed && !s.inFlight) {
    s.mustRead = false;
    s.retryAt = {};
  }
  if (changed) s.stateAt = at;
  if (changed && l && !l->record.holder.empty() && l->record.holder != node_ &&
      !(s.known && s.exists && s.lease.record.holder == l->record.holder))
    progress_[l->record.holder] = at;
  const bool wasOurs = holds(s);
  if (l && l->record.holder.empty() && s.known && s.exists && !s.lease.record.holder.empty())
    s.releasedBy = s.lease.record.holder;
  else if (l && !l->record.holder.empty())
    s.releasedBy.clear();
  s.known = true;
  s.exists = l.has_value();
  if (l) s.lease = *l;
  if (wasOurs && !holds(s)) s.verified = false;
  if (l && !l->record.holder.empty() && l->record.holder != node_ && !hbs_.count(l->record.holder))
    observeHeartbeat(l->record.holder, std::nullopt, at);  // unknown: judged from now on
}

bool Announcer::heartbeatDead(const std::string& node, Time now) const {
  auto it = hbs_.find(node);
  if (it == hbs_.end()) return false;
  const Heartbeat& hb = it->second;
  // Released: its node went silent before handing it back (LeaseRunner::stop).
  if (hb.exists && hb.holder.empty()) return true;
  return now >= hb.observedAt + t_.leaseDuration;
}

lease::Record Announcer::acquireRecord(const Svc& s, const std::string& nowText) const {
  lease::Record r;
  r.holder = node_;
  r.leaseDurationSeconds = static_cast<int32_t>(
      std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(t_.leaseDuration).count()));
  r.renewTime = nowText;
  if (s.exists) {
    const auto& old = s.lease.record;
    const bool same = old.holder == node_;
    r.acquireTime = same && !old.acquireTime.empty() ? old.acquireTime : nowText;
    r.transitions = same ? old.transitions : old.transitions + 1;
  } else {
    r.acquireTime = nowText;
  }
  return r;
}

bool Announcer::viaTaken(const Svc& s, Time now) const {
  if (!s.known || !s.exists || s.mustRead) return false;
  const std::string& h = s.lease.record.holder;
  if (h.empty() || h == node_) return false;
  auto t = taken_.find(h);
  return t != taken_.end() && t->second.proven && now < t->second.until;
}

bool Announcer::on(const Svc& s, Time now) const {
  return selfAlive(now) && s.desired && ((s.verified && holds(s)) || viaTaken(s, now));
}

Announcer::Time Announcer::answeringUntil(Time now) const {
  if (!selfAlive(now)) return Time{};
  Time until = selfAliveUntil_;
  for (const auto& [_, t] : taken_)
    if (t.proven && now < t.until) until = std::min(until, t.until);
  return until;
}

std::vector<Announcer::Action> Announcer::poll(Time now, const std::string& nowText) {
  checkLapse(now);
  const bool alive = selfAlive(now);
  const bool ownHeartbeat = selfHbHolder_.empty() || selfHbHolder_ == node_;

  std::vector<Candidate> cands;
  const std::vector<std::string> live = liveNodes(now);
  fallbackDue_ = {};

  // Heartbeats this node took: renew them, hand them back once nothing names their node.
  for (auto& [node, t] : taken_) {
    if (t.inFlight || !alive) continue;
    const std::string hbName = heartbeatLeaseName(node);
    if (t.proven && !t.releasing && !namedByAny(node)) {
      Action a{Action::Kind::Update, hbName, node, t.record, t.resourceVersion};
      a.record.holder.clear();
      a.record.renewTime = nowText;
      cands.push_back({kRenewTaken, std::move(a), nullptr});
    } else if (now >= t.renewDue) {
      Action a{Action::Kind::Update, hbName, node, t.record, t.resourceVersion};
      if (t.releasing) a.record.holder.clear();
      a.record.renewTime = nowText;
      cands.push_back({kRenewTaken, std::move(a), nullptr});
    }
  }
  // Dead nodes' heartbeats with Leases this node announces still naming them (and heartbeats
  // held by a node whose heartbeat this node took: that node is silent since our write).
  if (alive && ownHeartbeat) {
    for (auto& [node, hb] : hbs_) {
      if (taken_.count(node) || hbInFlight_.count(node) || now < hb.retryAt) continue;
      if (hb.mustRead) {
        cands.push_back({kConfirm, Action{Action::Kind::GetHeartbeat, heartbeatLeaseName(node), node, {}, {}}, nullptr});
        continue;
      }
      const bool chained = hb.exists && !hb.holder.empty() && hb.holder != node && taken_.count(hb.holder) &&
                           taken_.at(hb.holder).proven;
      // Unchanged for leaseDuration, whoever holds it (its node, or a taker that died too).
      const bool dead = heartbeatDead(node, now);
      // Taken only by a node that announces one of its services (or holds a heartbeat it held):
      // the preferred node among the live ones writes at once, the others after a retry period.
      bool wanted = false;
      for (const auto& [_, sv] : svcs_)
        if (sv.desired && sv.known && sv.exists && sv.lease.record.holder == node) wanted = true;
      for (const auto& [n, other] : hbs_)
        if (n != node && other.exists && other.holder == node) wanted = true;
      if (!chained && !(dead && wanted)) {
        hb.takeableSince = {};
        continue;
      }
      if (hb.takeableSince == Time{}) hb.takeableSince = now;
      if (!chained) {
        const std::string pref = highestScore(live, heartbeatLeaseName(node), "");
        if (pref != node_ && now < hb.takeableSince + t_.retryPeriod) {
          const Time until = hb.takeableSince + t_.retryPeriod;
          if (fallbackDue_ == Time{} || until < fallbackDue_) fallbackDue_ = until;
          continue;
        }
      }
      lease::Record r;
      r.holder = node_;
      r.leaseDurationSeconds = static_cast<int32_t>(
          std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(t_.leaseDuration).count()));
      r.acquireTime = nowText;
      r.renewTime = nowText;
      const Action::Kind k = hb.exists ? Action::Kind::Update : Action::Kind::Create;
      cands.push_back({kConfirm, Action{k, heartbeatLeaseName(node), node, r, hb.exists ? hb.resourceVersion : std::string()}, nullptr});
    }
  }
  // Service Leases of a taken node that this node does not announce: hand them back (paced) so
  // that a node that announces them can acquire them.
  if (alive && desiredKnown_) {
    for (const auto& [name, c] : cache_) {
      if (svcs_.count(name) || name.rfind(kServiceLeasePrefix, 0) != 0) continue;
      auto t = taken_.find(c.lease.record.holder);
      if (t == taken_.end() || !t->second.proven) continue;
      Svc& s = svcs_[name];
      s.known = true;
      s.exists = true;
      s.lease = c.lease;
      s.stateAt = c.at;
    }
  }

  for (auto it = svcs_.begin(); it != svcs_.end();) {
    const std::string& name = it->first;
    Svc& s = it->second;
    if (s.inFlight || now < s.retryAt) {
      ++it;
      continue;
    }
    if (!s.desired) {
      const bool convert = s.known && s.exists && taken_.count(s.lease.record.holder) && taken_.at(s.lease.record.holder).proven;
      if (s.mustRead) {  // a release that lost on the resourceVersion (or failed): who holds it now?
        cands.push_back({kWithdraw, Action{Action::Kind::GetService, name, {}, {}, {}}, &s});
        ++it;
      } else if (convert && alive) {
        // A taken node's Lease this node does not announce: made ours first, then handed back
        // (below, a retry period later), so that the others see us release it and a node that
        // announces it acquires it at once (a release they would attribute to the dead node is
        // the taker's to acquire until it hands the heartbeat back).
        cands.push_back({kWithdraw, Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion}, &s});
        ++it;
      } else if (holds(s) && ownHeartbeat) {
        // Withdraw (silent already: not desired), hand it back. Not while our own heartbeat is
        // held by another node: it answers from a cache that still shows us.
        Action a{Action::Kind::Update, name, {}, s.lease.record, s.lease.resourceVersion};
        a.record.holder.clear();
        a.record.renewTime = nowText;
        cands.push_back({kWithdraw, std::move(a), &s});
        ++it;
      } else if (holds(s) || convert) {
        ++it;  // wait until we may write
      } else {
        it = svcs_.erase(it);
      }
      continue;
    }
    ++it;
    if (s.mustRead) {
      cands.push_back({kReread, Action{Action::Kind::GetService, name, {}, {}, {}}, &s});
      continue;
    }
    // Writes that make this node the holder (or re-verify it) only from a node that may answer,
    // and only once the cache can tell absent from not yet listed.
    if (!s.known || !alive) continue;
    const std::string holder = s.exists ? s.lease.record.holder : std::string();
    if (s.exists && holder == node_) {
      s.acquirableSince = {};
      if (!s.verified)
        cands.push_back({kReverify, Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion}, &s});
      continue;
    }
    if (s.exists && !holder.empty()) {
      // Held by another node: ours only through a heartbeat we took (then converted, paced;
      // answered meanwhile from the proven cache). A dead holder's heartbeat is taken above.
      s.acquirableSince = {};
      if (auto t = taken_.find(holder); t != taken_.end() && t->second.proven)
        cands.push_back({kConvert, Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion}, &s});
      continue;
    }
    if (s.acquirableSince == Time{}) s.acquirableSince = now;
    // One candidate per service: the others give the preferred node time to reach it.
    bool only = false;
    const std::string pref = prefFor(name, s, live, only);
    if (pref != node_) {
      if (only) continue;
      Time from = s.acquirableSince;
      if (auto p = progress_.find(pref); p != progress_.end()) from = std::max(from, p->second);
      const Time until = from + t_.retryPeriod;
      if (now < until) {
        if (fallbackDue_ == Time{} || until < fallbackDue_) fallbackDue_ = until;
        continue;
      }
    }
    if (!s.exists)
      cands.push_back({kAcquire, Action{Action::Kind::Create, name, {}, acquireRecord(s, nowText), {}}, &s});
    else
      cands.push_back({kAcquire, Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion}, &s});
  }

  std::stable_sort(cands.begin(), cands.end(), [](const Candidate& a, const Candidate& b) { return a.prio < b.prio; });
  std::vector<Action> out;
  backlog_ = false;
  for (auto& c : cands) {
    if (!takeToken(now)) {
      backlog_ = true;
      break;
    }
    if (!c.svc) {
      if (auto t = taken_.find(c.action.node); t != taken_.end() && c.prio == kRenewTaken) {
        t->second.inFlight = true;
        if (c.action.record.holder.empty()) t->second.releasing = true;
      } else {
        hbInFlight_.insert(c.action.node);
      }
    } else {
      c.svc->inFlight = true;
      if (c.prio == kWithdraw) c.svc->verified = false;
      else if (c.action.kind != Action::Kind::GetService) c.svc->sentEpoch = epoch_;
    }
    out.push_back(std::move(c.action));
  }
  return out;
}

void Announcer::onHeartbeatWrite(const Action& a, Time sentAt, lease::WriteOutcome outcome, std::optional<lease::Lease> stored) {
  const std::string& node = a.node;
  auto t = taken_.find(node);
  auto& hb = hbs_[node];
  if (t != taken_.end() && t->second.inFlight) {  // a renewal or a hand-back of a heartbeat we hold
    Taken& k = t->second;
    k.inFlight = false;
    const bool release = a.record.holder.empty();
    if (outcome == lease::WriteOutcome::Ok && !release) {
      k.record = a.record;
      k.resourceVersion = stored ? stored->resourceVersion : std::string();
      k.written.insert(k.resourceVersion);
      if (k.seen.count(k.resourceVersion)) k.proven = true;  // the watch delivered it first
      k.seen.clear();
      k.until = sentAt + t_.renewDeadline;
      k.renewDue = sentAt + t_.retryPeriod;
      if (stored && (!hb.exists || !older(stored->resourceVersion, hb.resourceVersion))) {
        hb.resourceVersion = stored->resourceVersion;
        hb.exists = true;
        hb.holder = node_;
        hb.observedAt = sentAt;
      }
      if (!stored) taken_.erase(t);  // cannot renew without its resourceVersion: let it go
    } else if (outcome == lease::WriteOutcome::Failed) {
      k.seen.clear();
      k.renewDue = sentAt + t_.retryPeriod;  // retried; its answers end at `until` meanwhile
    } else {  // handed back, or someone else wrote it: stop answering its services at once
      taken_.erase(t);
      if (outcome == lease::WriteOutcome::Ok && stored) {
        hb.resourceVersion = stored->resourceVersion;
        hb.exists = true;
        hb.holder.clear();
        hb.observedAt = sentAt;
      } else {
        hb.mustRead = true;
      }
    }
    return;
  }
  hbInFlight_.erase(node);
  std::set<std::string> seenFirst;
  if (auto it = hbSeenInFlight_.find(node); it != hbSeenInFlight_.end()) {
    seenFirst = std::move(it->second);
    hbSeenInFlight_.erase(it);
  }
  if (t != taken_.end()) return;  // a stale answer
  switch (outcome) {
    case lease::WriteOutcome::Ok: {
      if (!stored || stored->resourceVersion.empty()) {
        hb.mustRead = true;
        return;
      }
      Taken k;
      k.record = a.record;
      k.resourceVersion = stored->resourceVersion;
      k.written.insert(k.resourceVersion);
      k.proven = seenFirst.count(k.resourceVersion) > 0;  // the watch delivered our write before its answer
      k.until = sentAt + t_.renewDeadline;
      k.renewDue = sentAt + t_.retryPeriod;
      taken_[node] = std::move(k);
      hb.resourceVersion = stored->resourceVersion;
      hb.exists = true;
      hb.holder = node_;
      hb.observedAt = sentAt;
      hb.takeableSince = {};
      break;
    }
    case lease::WriteOutcome::Conflict:  // it was renewed (or taken) after all: re-read it
      hb.mustRead = true;
      hb.retryAt = sentAt + t_.retryPeriod;
      break;
    case lease::WriteOutcome::Failed:
      hb.retryAt = sentAt + t_.retryPeriod;
      break;
  }
}

void Announcer::onGet(const Action& a, Time answeredAt, std::optional<lease::Lease> l, bool failed, std::string error) {
  if (a.kind == Action::Kind::GetHeartbeat) {
    hbInFlight_.erase(a.node);
    hbSeenInFlight_.erase(a.node);
    auto& hb = hbs_[a.node];
    if (failed) {
      hb.retryAt = answeredAt + t_.retryPeriod;
      return;
    }
    hb.mustRead = false;
    observeHeartbeat(a.node, std::move(l), answeredAt);
    return;
  }
  auto it = svcs_.find(a.lease);
  if (it == svcs_.end()) return;
  Svc& s = it->second;
  s.inFlight = false;
  if (failed) {
    s.error = error.empty() ? "GET Lease " + a.lease + " failed" : std::move(error);
    s.retryAt = answeredAt + t_.retryPeriod;
    return;
  }
  s.error.clear();
  s.mustRead = false;
  s.known = false;  // a fresh answer replaces whatever the watch said
  observe(a.lease, std::move(l), answeredAt);
}

void Announcer::onWrite(const Action& a, Time sentAt, lease::WriteOutcome outcome, std::optional<lease::Lease> stored,
                        std::string error) {
  if (!a.node.empty()) {
    onHeartbeatWrite(a, sentAt, outcome, std::move(stored));
    return;
  }
  auto it = svcs_.find(a.lease);
  if (it == svcs_.end()) return;
  Svc& s = it->second;
  s.inFlight = false;
  const bool release = a.record.holder.empty();
  switch (outcome) {
    case lease::WriteOutcome::Ok:
      s.error.clear();
      if (stored) {
        s.known = true;
        s.exists = true;
        s.lease = *stored;
        s.stateAt = sentAt;
      } else {
        s.mustRead = true;
      }
      // Verified only when no lapse came between sending and the answer: a write applied after
      // our heartbeat went stale may already have been taken over by a node that read it.
      if (!release) s.verified = s.sentEpoch == epoch_;
      if (!release && !s.desired) s.retryAt = sentAt + t_.retryPeriod;  // a converted Lease: let the watch show it first
      if (stored) cache_[a.lease] = Cached{*stored, sentAt};
      if (release && !s.desired) svcs_.erase(it);
      break;
    case lease::WriteOutcome::Conflict: {
      // Re-read only when the watch has not already told us what beat us; give it a retry
      // period to (observe() clears mustRead when it delivers a change). Either way the state
      // we had is stale: a service answered from a taken heartbeat's cache falls silent now.
      const bool stale = a.kind == Action::Kind::Create ? !s.exists : (s.exists && s.lease.resourceVersion == a.resourceVersion);
      if (stale) {
        s.mustRead = true;
        s.retryAt = sentAt + t_.retryPeriod;
      }
      s.verified = false;
      break;
    }
    case lease::WriteOutcome::Failed:
      s.error = error.empty() ? std::string(a.kind == Action::Kind::Create ? "POST" : "PUT") + " Lease " + a.lease + " failed"
                              : std::move(error);
      s.mustRead = true;
      s.verified = false;
      s.retryAt = sentAt + t_.retryPeriod;
      break;
  }
}

Announcer::Time Announcer::nextDue(Time now) const {
  Time due = now + t_.retryPeriod;
  auto consider = [&](Time t) {
    if (t > now && t < due) due = t;
  };
  if (selfAlive(now)) consider(selfAliveUntil_);
  if (backlog_) consider(std::max(nextToken(now), now + std::chrono::milliseconds(1)));
  if (fallbackDue_ != Time{}) consider(fallbackDue_);
  for (const auto& [_, t] : taken_) {
    consider(t.renewDue);
    consider(t.until);
  }
  for (const auto& [_, hb] : hbs_) {
    consider(hb.observedAt + t_.leaseDuration);
    consider(hb.retryAt);
  }
  for (const auto& [_, s] : svcs_)
    if (!s.inFlight) consider(s.retryAt);
  return due;
}

std::set<Announcement> Announcer::answering(Time now) const {
  std::set<Announcement> out;
  for (const auto& [_, s] : svcs_)
    if (on(s, now)) out.insert(s.ann.begin(), s.ann.end());
  return out;
}

std::vector<std::string> Announcer::takeNewlyAnswering(Time now) {
  std::vector<std::string> out;
  for (auto& [name, s] : svcs_) {
    const bool yes = on(s, now);
    if (yes && !s.answeringBefore) {
      out.push_back(name);
      s.since = now;
    }
    s.answeringBefore = yes;
  }
  return out;
}

std::vector<Announcer::Entry> Announcer::entries(Time now) const {
  std::vector<Entry> out;
  for (const auto& [name, s] : svcs_) {
    if (!s.desired) continue;
    Entry e;
    e.lease = name;
    e.announcements = s.ann;
    e.holder = s.known && s.exists ? effectiveHolder(s.lease.record.holder) : std::string();
    e.answering = on(s, now);
    e.since = e.answering ? s.since : Time{};
    e.error = s.error;
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Announcer::Action> Announcer::releaseAll(const std::string& nowText) {
  std::vector<Action> out;
  const bool ownHeartbeat = selfHbHolder_.empty() || selfHbHolder_ == node_;
  // The heartbeats this node took: handed back too (their services stay named by the dead node;
  // another node takes its heartbeat again at once, a released heartbeat being dead).
  for (auto& [node, t] : taken_) {
    if (t.inFlight) continue;
    Action a{Action::Kind::Update, heartbeatLeaseName(node), node, t.record, t.resourceVersion};
    a.record.holder.clear();
    a.record.renewTime = nowText;
    t.inFlight = true;
    t.releasing = true;
    out.push_back(std::move(a));
  }
  std::map<std::string, Taken> keep;
  keep.swap(taken_);
  selfReleased();
  keep.swap(taken_);  // kept until their hand-back's answer (silent already: selfReleased)
  for (auto& [name, s] : svcs_) {
    s.desired = false;
    s.verified = false;
    if (holds(s) && !s.inFlight && ownHeartbeat) {
      Action a{Action::Kind::Update, name, {}, s.lease.record, s.lease.resourceVersion};
      a.record.holder.clear();
      a.record.renewTime = nowText;
      s.inFlight = true;
      out.push_back(std::move(a));
    }
  }
  return out;
}

}  // namespace np::l2
