// Lease-based leader election as client-go's leaderelection package does it, as a pure state
// machine: the caller owns the clock and the transport (GET/POST/PUT of a
// coordination.k8s.io/v1 Lease) and feeds back what the API server answered. Used by the operator
// (one active replica) and by L2 announcements (one node per service).
//
// The rules (client-go tryAcquireOrRenew):
// - A lease held by someone else is respected until leaseDuration has passed since this elector
//   last saw its record change, measured on the local clock (so clock skew between nodes does not
//   matter, only their rates).
// - Taking over writes holder = us with the resourceVersion that was read; a 409 means another
//   candidate won the race.
// - The holder renews every retryPeriod; when no renewal has succeeded for renewDeadline it gives
//   the lease up.
// One addition, for "never two holders acting at once": isLeader() is true only until
// renewDeadline after the *send time* of the last successful write. Any other candidate saw that
// write no earlier than it was sent, so it cannot take over before leaseDuration after it, and
// renewDeadline < leaseDuration is enforced (Timings::sanitise).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace np::lease {

using Clock = std::chrono::steady_clock;
using Time = Clock::time_point;
using Duration = std::chrono::milliseconds;

struct Timings {
  Duration leaseDuration{15000};
  Duration renewDeadline{5000};
  Duration retryPeriod{2000};
  // Cilium's leaseTimings rules: duration >= 1 s; renewDeadline < duration (else duration/2);
  // renewDeadline > 1.2 x retryPeriod (else retryPeriod = renewDeadline/2).
  static Timings sanitise(Timings t);
};

// The fields of a Lease's spec election cares about. Times are the caller's to encode
// (MicroTime, RFC 3339 with microseconds); the elector only compares records for change.
struct Record {
  std::string holder;             // spec.holderIdentity ("" = released)
  int32_t leaseDurationSeconds = 0;
  std::string acquireTime;        // spec.acquireTime
  std::string renewTime;          // spec.renewTime
  int32_t transitions = 0;        // spec.leaseTransitions
  bool operator==(const Record&) const = default;
};

struct Lease {
  Record record;
  std::string resourceVersion;
};

enum class RequestKind { Get, Create, Update };

struct Request {
  RequestKind kind = RequestKind::Get;
  Record record;                // Create/Update: the spec to write
  std::string resourceVersion;  // Update: precondition
};

enum class WriteOutcome { Ok, Conflict, Failed };

class Elector {
 public:
  Elector(std::string identity, Timings timings);

  // The request to send now, if one is due (never two in flight). nowText is `now` rendered as
  // the MicroTime the record carries. The caller sends it and reports the answer with onGet or
  // onWrite.
  std::optional<Request> poll(Time now, const std::string& nowText);
  // When poll() has something to send next (a write that follows a GET is due at once).
  Time nextDue() const { return due_; }

  // A GET answered at time `answeredAt` (when the answer arrived: a record first seen then is
  // judged from then): the lease, or nullopt for 404. failed: the request itself failed.
  void onGet(Time answeredAt, std::optional<Lease> lease, bool failed = false);
  // A Create/Update that was sent at `sentAt` answered: on Ok, the lease as the server stored it
  // (its resourceVersion is the precondition of the next renewal).
  void onWrite(Time sentAt, WriteOutcome outcome, std::optional<Lease> stored = std::nullopt);

  // Graceful stop (client-go ReleaseOnCancel): the Update that hands the lease back, when held.
  // Leadership ends at once, before the request is sent.
  std::optional<Request> release(const std::string& nowText);

  // True while this elector may act as the holder (see the header comment).
  bool isLeader(Time now) const;
  // When isLeader() turns false unless a renewal succeeds first (meaningful while leader).
  Time leaderUntil() const { return renewedAt_ + t_.renewDeadline; }
  // The holder as last observed ("" when none or unknown).
  const std::string& observedHolder() const { return observed_.record.holder; }
  const std::string& identity() const { return identity_; }
  const Timings& timings() const { return t_; }
  // Leadership changes since the last call: +1 became leader, -1 lost it, 0 none.
  int takeTransition();

 private:
  void stepDown();

  std::string identity_;
  Timings t_;
  Lease observed_;            // last record seen or written
  bool haveObserved_ = false;
  Time observedAt_{};         // local time the observed record was first seen
  bool leader_ = false;
  Time renewedAt_{};          // send time of the last successful write
  bool inFlight_ = false;
  bool mustRead_ = true;      // the next request is a GET (start, after a 409 or a failure)
  std::optional<Request> plannedWrite_;  // decided by a GET, sent by the next poll
  Time due_{};
  int transition_ = 0;
};

}  // namespace np::lease
