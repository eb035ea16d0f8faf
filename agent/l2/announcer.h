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
// Failover: heartbeat leaseDuration + one PUT on the dead node's heartbeat, whatever the number
// of its services (2 s / 1.5 s / 0.5 s => ~2-2.5 s); the service Leases are rewritten after.
//
// Never two nodes answering:
// - A holder answers only while its own heartbeat is fresh, i.e. before renewDeadline after its
//   last successful renewal was sent; an observer sees that renewal no earlier than it was sent,
//   so it cannot judge the holder dead before leaseDuration > renewDeadline after it.
// - A service Lease is not renewed, so its resourceVersion does not fence a stale observer the
//   way client-go's does (an observer whose watch silently stalled would see every heartbeat
//   "unchanged" and judge every holder dead). The heartbeat Lease is renewed: a takeover is a PUT
//   on the dead node's heartbeat at the resourceVersion last observed, which succeeds only if the
//   heartbeat really was not renewed since (below, "Takeover in one write").
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
// - Service-Lease requests (GETs, writes, heartbeat takeovers and their renewals) spend a token bucket
//   (Pacing, default kLeaseRequestRate/s with a burst of kLeaseRequestBurst: a constant, not a
//   flag), in priority order: renewals of taken heartbeats, withdrawals, takeovers of dead nodes' heartbeats, rewrites of Leases this
//   node holds but must re-verify, re-reads, new acquisitions, then the conversions of a taken node's
//   service Leases (answered already). This node's own heartbeat is outside
//   the bucket (its own Client and LeaseRunner in the controller): 1,000 pending acquisitions
//   never delay a renewal. releaseAll() (the agent stopping) is not paced: it is bounded by the
//   renew deadline and a stopping node should hand everything back before it is killed.
// - A takeover's writes are paced, but not the answering (next section).
//
// Takeover in one write (issue 10: 1,000 services on a killed node answered within 3 s, at
// < 50 requests/s). A takeover is a write on the dead node's heartbeat Lease, as client-go takes
// over an expired Lease, not one write per service Lease:
// - When this node (B) has seen no change of A's heartbeat for leaseDuration (or A released it)
//   and some Lease still names A as its holder, B PUTs nodepath-l2-node-A with holderIdentity B
//   on the resourceVersion R1 it observed (POST when the Lease does not exist). The name still
//   says whose heartbeat it is; its holder says who took it. That PUT is the compare-and-swap
//   that used to need a confirming GET: if A renewed since B observed R1 (a stale watch), it
//   fails with 409. If it succeeds (new resourceVersion R3), A's own next renewal fails and A's
//   elector cannot lead again while B keeps renewing the Lease (it sees it change), so A stays
//   silent and writes no service Lease (its acquisitions, rewrites and withdrawals need its own
//   heartbeat: withdrawals are refused while the watch shows our heartbeat held by another).
//   Only the rendezvous-preferred live node for the heartbeat Lease's name writes at once; the
//   others wait a retry period (two racing takers: one PUT wins, the other gets 409 and re-reads).
// - B then answers every service Lease whose holder is A from its watch cache, once the cache is
//   proven current as of R3: the namespace's Lease watch delivers events in revision order, so
//   once it has delivered A's heartbeat with a resourceVersion B itself wrote (compared as
//   strings, never ordered), every service Lease write committed before R3 is in the cache.
//   After R3 nobody else writes a Lease held by A: A cannot (above; a write it sent while still
//   alive and applied late keeps A as holder, which B answers anyway - A itself is silent since
//   its renew deadline), other nodes see A's services as effectively B's (below) and leave them
//   alone. A released service Lease (holder "") is no longer A's: B stops answering it the moment
//   its watch shows the release.
// - A released Lease whose releaser's heartbeat is held by another node may be acquired only by
//   that node (the taker, whose cache may still show it as A's and answer it); a released Lease
//   whose releaser this node does not know (it was not watching then) may be acquired, while any
//   takeover is in progress, only by a taker. A node that sees such a release has seen R3 first
//   (revision order), so it knows the takeover. Both restrictions end when the taker hands the
//   heartbeat back.
// - Every answer from a taken heartbeat is bounded as this node's own answers are: before
//   renewDeadline after the send time of B's last successful write of A's heartbeat, and within
//   B's own heartbeat. B renews A's heartbeat every retry period from the same token bucket at the
//   highest priority (it waits at most one token, 50 ms, far inside renewDeadline - retryPeriod;
//   it replaces A's own renewals, so the cluster's load does not grow and one agent stays within
//   its burst + rate in every second). A renewal that meets 409 (A came back after B could not
//   renew for leaseDuration, or a third node took it) makes B stop answering A's services at once.
// - B converts: it rewrites each service Lease held by A to holder B (or hands back to "" those
//   it does not announce itself) on the resourceVersion it has, paced, so `kubectl get leases`
//   converges; a 409 (or a watch event with another holder) stops B answering that service at
//   once. When no Lease names A any more, B hands A's heartbeat back (holder ""): A, when it
//   returns, acquires it, and its long lapse makes it rewrite on its resourceVersion whatever it
//   believed it held (409: B's conversion changed it).
// - Effective holder (preferred nodes, who answers, agentctl l2 list): a Lease held by n whose
//   heartbeat is held by m is m's, following the chain (bounded) when m died too. A taker that
//   dies (C judges B dead) is taken over the same way; C then also takes every heartbeat B held
//   (no wait: B is silent since C's write, and the CAS on the resourceVersion orders C against a
//   late write of B's), and answers their services once its own writes are seen in the watch.
// - A long lapse of this node's own heartbeat forgets the heartbeats it took (someone may have
//   taken its own and with it theirs); they are taken again if still dead.
// Numbers: bench/README.md, L2 section.
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
      GetHeartbeat,  // GET the heartbeat Lease of `node` (a re-read after a takeover's 409)
      GetService,    // GET the service Lease `lease`
      Create,        // POST the Lease `lease` with `record`
      Update,        // PUT the Lease `lease` with `record`, precondition resourceVersion
    };
    Kind kind = Kind::GetService;
    std::string lease;  // the service Lease (heartbeat: heartbeatLeaseName(node))
    std::string node;   // non-empty: the Lease is `node`'s heartbeat (a GET, or a takeover,
                        // renewal or hand-back of a heartbeat this node took)
    lease::Record record;
    std::string resourceVersion;
  };

  struct Entry {  // for agentctl l2 list
    std::string lease;
    std::vector<Announcement> announcements;
    std::string holder;  // the effective holder as last observed ("" none or unknown)
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
  // Answers on a taken heartbeat also end at that heartbeat's own renew deadline.
  Time answeringUntil(Time now) const;
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
  // Who answers for a Lease held by `holder`: the node holding its heartbeat, followed (bounded).
  std::string effectiveHolder(const std::string& holder) const;
  // The nodes whose heartbeat this node took and still holds.
  std::vector<std::string> takenHeartbeats() const;

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
    bool mustRead = false;   // our takeover met 409: GET it (unless the watch shows a change)
    Time retryAt{};
    Time takeableSince{};    // when this node first found it dead with Leases naming it
  };
  struct Taken {  // another node's heartbeat this node holds
    std::string resourceVersion;      // as we last wrote it
    lease::Record record;
    std::set<std::string> written;    // resourceVersions we wrote (the watch delivering one proves the cache)
    // Versions naming this node that the watch delivered while a write of ours was in flight:
    // the watch may deliver our write before its answer arrives, and then never again.
    std::set<std::string> seen;
    bool proven = false;
    Time until{};       // its services may be answered until (last good write's send + renewDeadline)
    Time renewDue{};
    bool inFlight = false;
    bool releasing = false;
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
  // kConvert last: those services are answered already (from a taken heartbeat's cache).
  enum Priority { kRenewTaken, kWithdraw, kConfirm, kReverify, kReread, kAcquire, kConvert };
  struct Candidate {
    Priority prio;
    Action action;
    Svc* svc;  // nullptr: a heartbeat request
  };

  bool selfAlive(Time now) const { return now < selfAliveUntil_; }
  bool holds(const Svc& s) const;
  bool heartbeatDead(const std::string& node, Time now) const;
  bool viaTaken(const Svc& s, Time now) const;  // answered from a taken heartbeat's cache
  bool on(const Svc& s, Time now) const;        // answering
  bool namedByAny(const std::string& node) const;  // some Lease still has `node` as its holder
  std::string prefFor(const std::string& name, const Svc& s, const std::vector<std::string>& live, bool& only) const;
  void onHeartbeatWrite(const Action& a, Time sentAt, lease::WriteOutcome outcome, std::optional<lease::Lease> stored);
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
  // Per node whose heartbeat this node is taking (hbInFlight_): versions naming this node that the
  // watch delivered before the takeover's answer (Taken::seen, for the first write).
  std::map<std::string, std::set<std::string>> hbSeenInFlight_;
  std::map<std::string, Taken> taken_;  // node -> its heartbeat, held by this node
  std::string selfHbHolder_;            // our own heartbeat's holder as the watch shows it
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
