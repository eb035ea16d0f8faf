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
    if (hb.exists && !hb.holder.empty() && now < hb.observedAt + t_.leaseDuration) out.push_back(node);
  return out;
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

std::string Announcer::preferred(const std::string& lease, Time now) const {
  auto it = svcs_.find(lease);
  return highestScore(liveNodes(now), lease, it == svcs_.end() ? std::string() : it->second.releasedBy);
}

void Announcer::lapse() {
  ++epoch_;
  for (auto& [_, s] : svcs_) s.verified = false;
}

// A lapse (the heartbeat's renew deadline passed) makes this node silent at once (answering()
// checks selfAlive). It forgets what it held only when the lapse was long enough for another node
// to have confirmed it dead: a renewal answered before leaseDuration after the send time s of the
// last renewal that succeeded before the lapse forgives it. Why that is safe: renewals are
// sequential, so an observer that confirms this node dead saw the renewal sent at s (or a later
// one) unchanged in a GET it sent at least leaseDuration after observing it, hence at or after
// s + leaseDuration; the renewal that ends the lapse was applied before its answer arrived here,
// before s + leaseDuration, so that GET sees it and confirms nothing. Older confirmations were
// made during an earlier, long lapse, after which every Lease this node answers for again was
// rewritten (their confirmed states are stale: the takeover PUT fails). Without this, every blip
// of the API server longer than the renew deadline cost a rewrite of every held Lease.
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
  if (exists && hb.exists && older(rv, hb.resourceVersion)) return;
  if (hb.observedAt == Time{} || rv != hb.resourceVersion || exists != hb.exists) {
    hb.resourceVersion = rv;
    hb.exists = exists;
    hb.holder = l ? l->record.holder : std::string();
    hb.observedAt = at;
    hb.confirmed = false;
  }
}

void Announcer::observe(const std::string& name, std::optional<lease::Lease> l, Time at) {
  if (name.rfind(kHeartbeatLeasePrefix, 0) == 0) {
    const std::string node = name.substr(std::string(kHeartbeatLeasePrefix).size());
    if (node != node_) observeHeartbeat(node, std::move(l), at);
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

std::vector<Announcer::Action> Announcer::poll(Time now, const std::string& nowText) {
  checkLapse(now);
  const bool alive = selfAlive(now);

  std::vector<Candidate> cands;
  std::set<std::string> confirming;          // dead holders a confirmation is planned for
  const std::vector<std::string> live = liveNodes(now);
  fallbackDue_ = {};
  for (auto it = svcs_.begin(); it != svcs_.end();) {
    const std::string& name = it->first;
    Svc& s = it->second;
    if (s.inFlight || now < s.retryAt) {
      ++it;
      continue;
    }
    if (!s.desired) {
      if (s.mustRead) {  // a release that lost on the resourceVersion (or failed): who holds it now?
        cands.push_back({kWithdraw, Action{Action::Kind::GetService, name, {}, {}, {}}, &s});
        ++it;
      } else if (holds(s)) {  // withdraw: silent already (not desired), hand it back
        Action a{Action::Kind::Update, name, {}, s.lease.record, s.lease.resourceVersion};
        a.record.holder.clear();
        a.record.renewTime = nowText;
        cands.push_back({kWithdraw, std::move(a), &s});
        ++it;
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
    const bool takeover = s.exists && !holder.empty();
    if (takeover && !heartbeatDead(holder, now)) {
      s.acquirableSince = {};
      continue;
    }
    if (s.acquirableSince == Time{}) s.acquirableSince = now;
    // One candidate per service: the others give the preferred node time to reach it.
    const std::string pref = highestScore(live, name, s.releasedBy);
    if (pref != node_) {
      Time from = s.acquirableSince;
      if (auto p = progress_.find(pref); p != progress_.end()) from = std::max(from, p->second);
      const Time until = from + t_.retryPeriod;
      if (now < until) {
        if (fallbackDue_ == Time{} || until < fallbackDue_) fallbackDue_ = until;
        continue;
      }
    }
    if (!takeover) {
      if (!s.exists)
        cands.push_back({kAcquire, Action{Action::Kind::Create, name, {}, acquireRecord(s, nowText), {}}, &s});
      else
        cands.push_back({kAcquire, Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion}, &s});
      continue;
    }
    // One confirmation serves every takeover from the same holder whose Lease was observed before
    // the confirming GET was sent. Why that is enough: the GET found the holder's heartbeat
    // unchanged for leaseDuration, so the holder lapsed (it stopped answering at its renew
    // deadline and forgot what it held: lapse()). To answer for a service again it must first
    // rewrite that service's Lease, after a new heartbeat renewal, which the server applied after
    // it served our GET. A service Lease state we observed before sending the GET therefore
    // predates any such rewrite; our PUT's precondition on it fails if the holder got there first.
    // A state observed later (a re-read after a 409) may include a rewrite: confirm again.
    auto& hb = hbs_[holder];
    if (hb.confirmed && s.stateAt <= hb.confirmSentAt) {
      cands.push_back({kTakeover, Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion}, &s});
    } else if (!hbInFlight_.count(holder) && now >= hb.retryAt && confirming.insert(holder).second) {
      hb.confirmed = false;
      cands.push_back({kConfirm, Action{Action::Kind::GetHeartbeat, heartbeatLeaseName(holder), holder, {}, {}}, nullptr});
    }
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
      hbInFlight_.insert(c.action.node);
      hbs_[c.action.node].confirmSentAt = now;
    } else {
      c.svc->inFlight = true;
      if (c.prio == kWithdraw) c.svc->verified = false;
      else if (c.action.kind != Action::Kind::GetService) c.svc->sentEpoch = epoch_;
    }
    out.push_back(std::move(c.action));
  }
  return out;
}

void Announcer::onGet(const Action& a, Time answeredAt, std::optional<lease::Lease> l, bool failed, std::string error) {
  if (a.kind == Action::Kind::GetHeartbeat) {
    hbInFlight_.erase(a.node);
    auto& hb = hbs_[a.node];
    if (failed) {
      hb.retryAt = answeredAt + t_.retryPeriod;
      return;
    }
    const bool unchanged = l ? (hb.exists && l->resourceVersion == hb.resourceVersion) : !hb.exists;
    if (unchanged || (l && l->record.holder.empty())) {
      if (l) hb.holder = l->record.holder;
      hb.confirmed = true;
    } else {
      observeHeartbeat(a.node, std::move(l), answeredAt);  // it changed: alive after all
    }
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
      if (stored) cache_[a.lease] = Cached{*stored, sentAt};
      if (release && !s.desired) svcs_.erase(it);
      break;
    case lease::WriteOutcome::Conflict: {
      // Re-read only when the watch has not already told us what beat us; give it a retry
      // period to (observe() clears mustRead when it delivers a change).
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
  for (const auto& [_, s] : svcs_) {
    if (s.inFlight) continue;
    consider(s.retryAt);
    if (s.known && s.exists && !s.lease.record.holder.empty() && s.lease.record.holder != node_) {
      auto hb = hbs_.find(s.lease.record.holder);
      if (hb != hbs_.end()) {
        consider(hb->second.observedAt + t_.leaseDuration);
        consider(hb->second.retryAt);
      }
    }
  }
  return due;
}

std::set<Announcement> Announcer::answering(Time now) const {
  std::set<Announcement> out;
  if (!selfAlive(now)) return out;
  for (const auto& [_, s] : svcs_)
    if (s.desired && s.verified && holds(s)) out.insert(s.ann.begin(), s.ann.end());
  return out;
}

std::vector<std::string> Announcer::takeNewlyAnswering(Time now) {
  std::vector<std::string> out;
  const bool alive = selfAlive(now);
  for (auto& [name, s] : svcs_) {
    const bool on = alive && s.desired && s.verified && holds(s);
    if (on && !s.answeringBefore) {
      out.push_back(name);
      s.since = now;
    }
    s.answeringBefore = on;
  }
  return out;
}

std::vector<Announcer::Entry> Announcer::entries(Time now) const {
  std::vector<Entry> out;
  const bool alive = selfAlive(now);
  for (const auto& [name, s] : svcs_) {
    if (!s.desired) continue;
    Entry e;
    e.lease = name;
    e.announcements = s.ann;
    e.holder = s.known && s.exists ? s.lease.record.holder : std::string();
    e.answering = alive && s.verified && holds(s);
    e.since = e.answering ? s.since : Time{};
    e.error = s.error;
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Announcer::Action> Announcer::releaseAll(const std::string& nowText) {
  std::vector<Action> out;
  selfReleased();
  for (auto& [name, s] : svcs_) {
    s.desired = false;
    s.verified = false;
    if (holds(s) && !s.inFlight) {
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
