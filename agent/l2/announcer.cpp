// The L2 announcer's election; the design and its safety argument are in announcer.h.
#include "l2/announcer.h"

#include <algorithm>
#include <charconv>

namespace np::l2 {

std::string heartbeatLeaseName(const std::string& node) { return kHeartbeatLeasePrefix + node; }

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

Announcer::Announcer(std::string node, lease::Timings timings)
    : node_(std::move(node)), t_(lease::Timings::sanitise(timings)) {}

void Announcer::lapse() {
  ++epoch_;
  for (auto& [_, s] : svcs_) s.verified = false;
}

void Announcer::setSelfAliveUntil(Time until, Time now) {
  if (!selfAlive(now)) lapse();
  wasAlive_ = selfAlive(now);
  selfAliveUntil_ = until;
}

void Announcer::setDesired(std::map<std::string, std::vector<Announcement>> desired) {
  for (auto& [name, s] : svcs_) s.desired = false;
  for (auto& [name, ann] : desired) {
    auto& s = svcs_[name];
    s.ann = std::move(ann);
    s.desired = true;
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
  auto it = svcs_.find(name);
  if (it == svcs_.end()) return;
  Svc& s = it->second;
  if (l && s.known && s.exists && older(l->resourceVersion, s.lease.resourceVersion)) return;
  const bool wasOurs = holds(s);
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
  const bool alive = selfAlive(now);
  if (wasAlive_ && !alive) lapse();
  wasAlive_ = alive;

  std::vector<Action> out;
  for (auto it = svcs_.begin(); it != svcs_.end();) {
    const std::string& name = it->first;
    Svc& s = it->second;
    if (s.inFlight || now < s.retryAt) {
      ++it;
      continue;
    }
    if (!s.desired) {
      if (holds(s)) {  // withdraw: silent already (not desired), hand it back
        Action a{Action::Kind::Update, name, {}, s.lease.record, s.lease.resourceVersion};
        a.record.holder.clear();
        a.record.renewTime = nowText;
        s.inFlight = true;
        s.verified = false;
        out.push_back(std::move(a));
        ++it;
      } else {
        it = svcs_.erase(it);
      }
      continue;
    }
    if (s.mustRead || !s.known) {
      s.inFlight = true;
      out.push_back(Action{Action::Kind::GetService, name, {}, {}, {}});
      ++it;
      continue;
    }
    // Writes that make this node the holder (or re-verify it) only from a node that may answer.
    if (alive) {
      if (!s.exists) {
        s.inFlight = true;
        s.sentEpoch = epoch_;
        out.push_back(Action{Action::Kind::Create, name, {}, acquireRecord(s, nowText), {}});
      } else {
        const std::string& holder = s.lease.record.holder;
        if ((holder == node_ && !s.verified) || holder.empty()) {
          s.inFlight = true;
          s.sentEpoch = epoch_;
          out.push_back(Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion});
        } else if (holder != node_ && heartbeatDead(holder, now)) {
          auto& hb = hbs_[holder];
          if (hb.confirmed) {
            s.inFlight = true;
            s.sentEpoch = epoch_;
            out.push_back(
                Action{Action::Kind::Update, name, {}, acquireRecord(s, nowText), s.lease.resourceVersion});
          } else if (!hbInFlight_.count(holder) && now >= hb.retryAt) {
            hbInFlight_.insert(holder);
            out.push_back(Action{Action::Kind::GetHeartbeat, heartbeatLeaseName(holder), holder, {}, {}});
          }
        }
      }
    }
    ++it;
  }
  return out;
}

void Announcer::onGet(const Action& a, Time answeredAt, std::optional<lease::Lease> l, bool failed) {
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
    s.retryAt = answeredAt + t_.retryPeriod;
    return;
  }
  s.mustRead = false;
  s.known = false;  // a fresh answer replaces whatever the watch said
  observe(a.lease, std::move(l), answeredAt);
}

void Announcer::onWrite(const Action& a, Time sentAt, lease::WriteOutcome outcome, std::optional<lease::Lease> stored) {
  auto it = svcs_.find(a.lease);
  if (it == svcs_.end()) return;
  Svc& s = it->second;
  s.inFlight = false;
  const bool release = a.record.holder.empty();
  if (!release && s.exists && !s.lease.record.holder.empty() && s.lease.record.holder != node_)
    hbs_[s.lease.record.holder].confirmed = false;  // a takeover's confirmation is used once
  switch (outcome) {
    case lease::WriteOutcome::Ok:
      if (stored) {
        s.known = true;
        s.exists = true;
        s.lease = *stored;
      } else {
        s.mustRead = true;
      }
      // Verified only when no lapse came between sending and the answer: a write applied after
      // our heartbeat went stale may already have been taken over by a node that read it.
      if (!release) s.verified = s.sentEpoch == epoch_;
      if (release && !s.desired) svcs_.erase(it);
      break;
    case lease::WriteOutcome::Conflict:
      s.mustRead = true;
      s.verified = false;
      break;
    case lease::WriteOutcome::Failed:
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
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Announcer::Action> Announcer::releaseAll(const std::string& nowText) {
  std::vector<Action> out;
  selfAliveUntil_ = {};
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
