#include "lease/elector.h"

#include <utility>

namespace np::lease {
namespace {

int32_t seconds(Duration d) {
  return static_cast<int32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count());
}

}  // namespace

Timings Timings::sanitise(Timings t) {
  if (t.leaseDuration < Duration(1000)) t.leaseDuration = Duration(1000);
  if (t.renewDeadline <= Duration(0) || t.renewDeadline >= t.leaseDuration)
    t.renewDeadline = t.leaseDuration / 2;
  // renewDeadline > 1.2 x retryPeriod, compared in integers
  if (t.retryPeriod <= Duration(0) || t.renewDeadline * 10 <= t.retryPeriod * 12)
    t.retryPeriod = t.renewDeadline / 2;
  return t;
}

Elector::Elector(std::string identity, Timings timings)
    : identity_(std::move(identity)), t_(Timings::sanitise(timings)) {}

void Elector::stepDown() {
  if (leader_) transition_ = -1;
  leader_ = false;
}

std::optional<Request> Elector::poll(Time now, const std::string& nowText) {
  if (inFlight_) return std::nullopt;
  // A holder that has not renewed within renewDeadline steps down before anything else.
  if (leader_ && now >= renewedAt_ + t_.renewDeadline) stepDown();
  if (plannedWrite_) {
    Request r = std::move(*plannedWrite_);
    plannedWrite_.reset();
    r.record.renewTime = nowText;
    if (r.record.acquireTime.empty()) r.record.acquireTime = nowText;
    inFlight_ = true;
    return r;
  }
  if (now < due_) return std::nullopt;
  Request r;
  if (leader_ && !mustRead_) {
    // The holder renews straight away with the version it wrote last, as client-go does; a 409
    // sends it back through a GET.
    r.kind = RequestKind::Update;
    r.record = observed_.record;
    r.record.renewTime = nowText;
    r.record.leaseDurationSeconds = seconds(t_.leaseDuration);
    r.resourceVersion = observed_.resourceVersion;
  }
  inFlight_ = true;
  return r;
}

void Elector::onGet(Time answeredAt, std::optional<Lease> lease, bool failed) {
  inFlight_ = false;
  if (failed) {
    due_ = answeredAt + t_.retryPeriod;
    return;
  }
  mustRead_ = false;
  Request w;
  if (!lease) {
    w.kind = RequestKind::Create;
    w.record = Record{identity_, seconds(t_.leaseDuration), {}, {}, 0};
  } else {
    if (!haveObserved_ || !(lease->record == observed_.record)) observedAt_ = answeredAt;
    observed_ = *lease;
    haveObserved_ = true;
    const Record& rec = lease->record;
    const bool ours = rec.holder == identity_;
    if (!rec.holder.empty() && !ours && answeredAt < observedAt_ + t_.leaseDuration) {
      stepDown();  // someone else holds it and it has not expired as we judge it
      due_ = answeredAt + t_.retryPeriod;
      return;
    }
    if (!ours && leader_) stepDown();
    w.kind = RequestKind::Update;
    w.resourceVersion = lease->resourceVersion;
    w.record = rec;
    w.record.holder = identity_;
    w.record.leaseDurationSeconds = seconds(t_.leaseDuration);
    if (!ours) {
      w.record.acquireTime.clear();  // poll() fills in the send time
      w.record.transitions = rec.transitions + 1;
    }
  }
  plannedWrite_ = std::move(w);
  due_ = answeredAt;
}

void Elector::onWrite(Time sentAt, WriteOutcome outcome, std::optional<Lease> stored) {
  inFlight_ = false;
  switch (outcome) {
    case WriteOutcome::Ok:
      if (stored) {
        observed_ = *stored;
        haveObserved_ = true;
        observedAt_ = sentAt;
      }
      if (!leader_) transition_ = +1;
      leader_ = true;
      renewedAt_ = sentAt;
      due_ = sentAt + t_.retryPeriod;
      return;
    case WriteOutcome::Conflict:
      // Another candidate wrote first, or our version is stale: read again at once. A holder
      // keeps acting until its renew deadline; the GET decides whether it still holds.
      mustRead_ = true;
      due_ = sentAt;
      return;
    case WriteOutcome::Failed:
      mustRead_ = true;
      due_ = sentAt + t_.retryPeriod;
      return;
  }
}

std::optional<Request> Elector::release(const std::string& nowText) {
  if (!leader_) return std::nullopt;
  Request r;
  r.kind = RequestKind::Update;
  r.record = observed_.record;
  r.record.holder.clear();
  r.record.leaseDurationSeconds = 1;
  r.record.renewTime = nowText;
  r.resourceVersion = observed_.resourceVersion;
  stepDown();
  return r;
}

bool Elector::isLeader(Time now) const { return leader_ && now < renewedAt_ + t_.renewDeadline; }

int Elector::takeTransition() { return std::exchange(transition_, 0); }

}  // namespace np::lease
