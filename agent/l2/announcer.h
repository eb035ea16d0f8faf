// The L2 announcer's election, as a pure state machine (the caller owns the clock and the API
// transport, as with lease::Elector): which services' Leases this node writes, and which
// (address, device) pairs it answers ARP for right now.
//
// The API budget (issue 10: failover < 3 s AND < 50 API requests/s at 1,000 announced services).
// Cilium renews one Lease per service every retry period (1,000 services at 0.5 s = 2,000 req/s
// cluster-wide for its renewals alone). Here liveness is per node, not per service:
// - Every participating node renews one heartbeat Lease, nodepath-l2-node-<node>, every retry
//   period (a lease::Elector on a Lease only it writes). This node may answer only while that
//   elector is leader: until renewDeadline after the *send time* of its last successful renewal
//   (setSelfAliveUntil).
// - One Lease per announced service, nodepath-l2announce-<ns>-<name> (kubectl get leases shows
//   the holder), is written only on acquire, takeover and release - never renewed.
// - The holder of a service Lease is alive while its heartbeat is: another node judges it dead
//   when it has seen no change of the holder's heartbeat for leaseDuration on its own clock (as
//   client-go judges a Lease, so clock skew does not matter).
// Steady state: N_nodes heartbeat writes per retry period, whatever the number of services
// (2 nodes at 0.5 s = 4 req/s); others' Leases are observed with one watch, not GETs.
// Failover: heartbeat leaseDuration + one GET + one PUT (2 s / 1.5 s / 0.5 s => ~2-2.5 s).
//
// Never two nodes answering:
// - A holder answers only while its own heartbeat is fresh, i.e. before renewDeadline after its
//   last successful renewal was sent; an observer sees that renewal no earlier than it was sent,
//   so it cannot judge the holder dead before leaseDuration > renewDeadline after it.
// - The flaw of the brief's plain version, fixed here: a service Lease is not renewed, so its
//   resourceVersion does not fence a stale observer the way client-go's does (an observer whose
//   watch silently stalled would see every heartbeat "unchanged", judge every holder dead and its
//   takeover PUT would still succeed). So a takeover first GETs the holder's heartbeat fresh from
//   the API server and goes ahead only when its resourceVersion is still the one last observed
//   (or it is gone or released): then the heartbeat really was not renewed for leaseDuration, and
//   the holder has been silent since before its renew deadline.
// - A node whose own heartbeat lapsed for long enough that another may have judged it dead
//   forgets what it held: before it answers again it rewrites each service Lease it believes it
//   holds, on its resourceVersion (someone may have taken over while its watch was behind). A
//   shorter lapse only silences it (checkLapse in announcer.cpp says why that is safe).
// - Withdrawal (policy or service change, agent stopping) stops answering at once and then hands
//   the Lease back (holder ""), so another node takes over without waiting.
//
// Cheap, paced acquisition (issue 10: 1,000 services created at once):
// - No GET before a write: the Lease watch's cache says who holds what (setCacheSynced once the
//   first list is in; a service with no Lease in a synced cache is absent). A stale cache costs a
//   409, never safety: every write carries its precondition (POST fails when the Lease exists, PUT
//   on the resourceVersion). After a 409 the node waits a retry period for the watch to catch up
//   and GETs only if it has not.
// - One candidate per service: the preferred node is the highest rendezvous hash of (node, Lease)
//   over the live nodes (this one and those whose heartbeat Lease is held and not judged dead).
//   The preferred node writes at once; the others wait until the preferred node has made no
//   progress (acquired no service Lease they saw) for a retry period, so that a preferred node
//   working through a paced backlog is not raced, and one that does not want the service (its
//   policy does not select it) costs a retry period after its backlog, not a double write. The
//   node that handed a Lease back is no candidate for it. A new service costs one POST.
// - Service-Lease requests (GETs, writes, takeover confirmations) spend a token bucket
//   (Pacing, default kLeaseRequestRate/s with a burst of kLeaseRequestBurst: a constant, not a
//   flag), in priority order: withdrawals, confirmations of dead holders, rewrites of Leases this
//   node holds but must re-verify, takeovers, re-reads, new acquisitions. The heartbeat is outside
//   the bucket (its own Client and LeaseRunner in the controller): 1,000 pending acquisitions
//   never delay a renewal. releaseAll() (the agent stopping) is not paced: it is bounded by the
//   renew deadline and a stopping node should hand everything back before it is killed.
// - Takeover of a dead holder's services is paced too: with 1,000 services on the dead node the
//   survivor answers each one after its PUT, at the bucket's rate (the first within the heartbeat
//   lease duration, the last after about services / rate more). Answering before the write (on
//   the dead heartbeat alone) is not done: the service Lease's holder would then be read from the
//   watch cache, which may be stale (a Lease the dead node released and a third node acquired),
//   and two survivors with different views of who is alive would each pick themselves. A safe
//   version would need: the cache proved fresh (the watch has delivered this node's own latest
//   heartbeat renewal, so every write committed before it is seen), provisional answering only by
//   the preferred node among nodes with a held heartbeat Lease, only by a node continuously alive
//   for a lease duration, each provisional answer bounded (confirming GET's send time + a window
//   the paced writes fit in), and a returning holder waiting that window before it rewrites what
//   it held after a long lapse. Numbers: bench/README.md, L2 section.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "l2/policy.h"
#include "lease/elector.h"

namespace np::l2 {

inline constexpr const char* kHeartbeatLeasePrefix = "nodepath-l2-node-";
inline constexpr const char* kServiceLeasePrefix = "nodepath-l2announce-";  // l2::leaseName
std::string heartbeatLeaseName(const std::string& node);

// The budget of one agent's service-Lease requests: 20/s per agent keeps two agents (plus their
// heartbeats, 2/s each at the default retry period) under 50 requests/s for the whole cluster, in
// every second of a burst too (a burst of 3: at most 23 requests in any second per agent; a burst
// of 20 let the first second of 100 new services reach 62 requests/s across two agents).
inline constexpr double kLeaseRequestRate = 20.0;
inline constexpr int kLeaseRequestBurst = 3;
struct Pacing {
  double ratePerSecond = kLeaseRequestRate;  // <= 0: unpaced
  int burst = kLeaseRequestBurst;
};

// Rendezvous (highest random weight) score of `node` for `lease`: the same on every node.
uint64_t rendezvousScore(const std::string& node, const std::string& lease);

class Announcer {
 public:
  using Time = lease::Time;

  struct Action {
    enum class Kind {
      GetHeartbeat,  // GET the heartbeat Lease of `node` (a takeover's confirmation)
      GetService,    // GET the service Lease `lease`
      Create,        // POST the service Lease `lease` with `record`
      Update,        // PUT the service Lease `lease` with `record`, precondition resourceVersion
    };
    Kind kind = Kind::GetService;
    std::string lease;  // the service Lease (heartbeat: heartbeatLeaseName(node))
    std::string node;   // GetHeartbeat: whose
    lease::Record record;
    std::string resourceVersion;
  };

  struct Entry {  // for agentctl l2 list
    std::string lease;
    std::vector<Announcement> announcements;
    std::string holder;  // as last observed ("" none or unknown)
    bool answering = false;
    Time since{};        // when this node started answering
    std::string error;   // why the last request about this Lease failed (403, 422, ...; "" none)
  };

  Announcer(std::string node, lease::Timings timings, Pacing pacing = {});

  // This node's heartbeat: it may answer while now < until (the heartbeat elector's
  // leaderUntil() while it is leader; Time{} when it is not).
  // now: when the caller learnt it (a lapse before now makes every held Lease be rewritten before
  // this node answers for it again).
  void setSelfAliveUntil(Time until, Time now);
  // This node's heartbeat was handed back or its runner stopped (nothing left to announce, the
  // agent stopping): another node may judge it dead at once (a released heartbeat), so this one
  // forgets what it held, whatever the renew deadline said. Silent until the next
  // setSelfAliveUntil, and every Lease it still believes it holds is rewritten before it answers.
  void selfReleased();
  // While this node may answer: the deadline of the current answering set (the heartbeat's renew
  // deadline, strictly before any other node can judge its Leases free); Time{} when it may not.
  // The responder stops answering at this time by itself (AnswerSet).
  Time answeringUntil(Time now) const { return selfAlive(now) ? selfAliveUntil_ : Time{}; }
  // The services this node is eligible to announce (lease name -> what it answers for as the
  // holder). A service that leaves the set is withdrawn: silent at once, then released. From the
  // first call on (the caller knows the complete set), a Lease the watch shows held by this node
  // for a service not in the set - a previous run's, found after a restart - is released too.
  void setDesired(std::map<std::string, std::vector<Announcement>> desired);

  // What the watch on the agent's namespace's Leases delivers (nullopt: deleted), seen at `at`.
  void observe(const std::string& leaseName, std::optional<lease::Lease> l, Time at);
  // The watch's first list has been observed: a Lease it did not contain does not exist (as far
  // as a write's precondition needs). Until then the announcer writes no service Lease.
  void setCacheSynced();

  // The node this one believes should acquire `lease` now: the highest rendezvousScore among the
  // live nodes but the one that last handed it back ("" when none).
  std::string preferred(const std::string& lease, Time now) const;

  // The requests to send now. Every one is answered with onGet / onWrite (failed: the request
  // itself failed or the server answered an error other than 404/409; error: why, as the
  // operator should read it - kept per Lease for entries() until a request about it succeeds).
  std::vector<Action> poll(Time now, const std::string& nowText);
  void onGet(const Action& a, Time answeredAt, std::optional<lease::Lease> l, bool failed = false,
             std::string error = {});
  void onWrite(const Action& a, Time sentAt, lease::WriteOutcome outcome, std::optional<lease::Lease> stored = {},
               std::string error = {});
  // When poll() may have something new (or answering() may change) unless an input arrives.
  Time nextDue(Time now) const;

  // The (address, device) pairs to answer ARP for now.
  std::set<Announcement> answering(Time now) const;
  // Services that started answering since the last call (send gratuitous ARP for them).
  std::vector<std::string> takeNewlyAnswering(Time now);
  std::vector<Entry> entries(Time now) const;

  // The agent is stopping: stop answering, and the Updates that hand every held Lease back.
  std::vector<Action> releaseAll(const std::string& nowText);

  const std::string& node() const { return node_; }
  const lease::Timings& timings() const { return t_; }

 private:
  struct Heartbeat {
    std::string resourceVersion;
    std::string holder;
    bool exists = false;
    Time observedAt{};
    bool confirmed = false;  // a fresh GET found it unchanged since observedAt (or gone/released)
    Time confirmSentAt{};    // when that GET (or the one in flight) was sent
    Time retryAt{};
  };
  struct Svc {
    std::vector<Announcement> ann;
    bool desired = false;
    bool known = false;   // `lease`/`exists` reflect the server (a GET or a watch event)
    bool exists = false;
    lease::Lease lease;
    bool mustRead = false;  // after a 409 or a failure: wait for the watch, else GET at retryAt
    bool verified = false;  // this node wrote the Lease as holder since its heartbeat last lapsed
    bool inFlight = false;
    Time retryAt{};
    Time since{};
    bool answeringBefore = false;
    uint64_t sentEpoch = 0;  // epoch_ when the write in flight was sent
    Time acquirableSince{};  // when this node first saw it free or its holder dead (Time{}: not)
    Time stateAt{};          // when `lease`/`exists` were last observed to change
    std::string releasedBy;  // who handed it back last (not a candidate for it: it withdrew)
    std::string error;       // the last failed request's reason ("" after a success)
  };
  struct Cached {
    lease::Lease lease;
    Time at{};  // when observed
  };
  enum Priority { kWithdraw, kConfirm, kReverify, kTakeover, kReread, kAcquire };
  struct Candidate {
    Priority prio;
    Action action;
    Svc* svc;  // nullptr: a heartbeat confirmation
  };

  bool selfAlive(Time now) const { return now < selfAliveUntil_; }
  bool holds(const Svc& s) const;
  bool heartbeatDead(const std::string& node, Time now) const;
  lease::Record acquireRecord(const Svc& s, const std::string& nowText) const;
  void observeHeartbeat(const std::string& node, std::optional<lease::Lease> l, Time at);
  void lapse();
  void adoptStale(const std::string& name, const lease::Lease& l, Time at);
  void checkLapse(Time now);
  std::vector<std::string> liveNodes(Time now) const;
  bool takeToken(Time now);
  Time nextToken(Time now) const;

  std::string node_;
  lease::Timings t_;
  Time selfAliveUntil_{};
  bool wasAlive_ = false;
  bool inLapse_ = false;    // silent since the renew deadline; not yet judged long or forgiven
  Time lastGoodSend_{};     // the send time of the last renewal before the lapse
  uint64_t epoch_ = 0;  // heartbeat lapses so far
  std::map<std::string, Svc> svcs_;
  std::map<std::string, Heartbeat> hbs_;
  std::set<std::string> hbInFlight_;
  std::map<std::string, Cached> cache_;  // every non-heartbeat Lease the watch has delivered
  bool cacheSynced_ = false;
  bool desiredKnown_ = false;  // setDesired was called: a held Lease not in it is stale
  Pacing pacing_;
  double tokens_ = 0;
  Time refilledAt_{};
  bool backlog_ = false;  // the last poll left requests waiting for tokens
  Time fallbackDue_{};    // the earliest time a non-preferred node's wait ends (Time{}: none)
  std::map<std::string, Time> progress_;  // node -> when it was last seen acquiring a service
};

}  // namespace np::l2
