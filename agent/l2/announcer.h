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
// - A node whose own heartbeat lapsed forgets what it held: before it answers again it re-reads
//   each service Lease with a GET (someone may have taken over while its watch was behind).
// - Withdrawal (policy or service change, agent stopping) stops answering at once and then hands
//   the Lease back (holder ""), so another node takes over without waiting.
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
std::string heartbeatLeaseName(const std::string& node);

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
  };

  Announcer(std::string node, lease::Timings timings);

  // This node's heartbeat: it may answer while now < until (the heartbeat elector's
  // leaderUntil() while it is leader; Time{} when it is not).
  // now: when the caller learnt it (a lapse before now makes every held Lease be rewritten before
  // this node answers for it again).
  void setSelfAliveUntil(Time until, Time now);
  // The services this node is eligible to announce (lease name -> what it answers for as the
  // holder). A service that leaves the set is withdrawn: silent at once, then released.
  void setDesired(std::map<std::string, std::vector<Announcement>> desired);

  // What the watch on the agent's namespace's Leases delivers (nullopt: deleted), seen at `at`.
  void observe(const std::string& leaseName, std::optional<lease::Lease> l, Time at);

  // The requests to send now. Every one is answered with onGet / onWrite (failed: the request
  // itself failed or the server answered an error other than 404/409).
  std::vector<Action> poll(Time now, const std::string& nowText);
  void onGet(const Action& a, Time answeredAt, std::optional<lease::Lease> l, bool failed = false);
  void onWrite(const Action& a, Time sentAt, lease::WriteOutcome outcome, std::optional<lease::Lease> stored = {});
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
    Time retryAt{};
  };
  struct Svc {
    std::vector<Announcement> ann;
    bool desired = false;
    bool known = false;   // `lease`/`exists` reflect the server (a GET or a watch event)
    bool exists = false;
    lease::Lease lease;
    bool mustRead = true;   // act only after a fresh GET (start, after a conflict or a failure)
    bool verified = false;  // this node wrote the Lease as holder since its heartbeat last lapsed
    bool inFlight = false;
    Time retryAt{};
    Time since{};
    bool answeringBefore = false;
    uint64_t sentEpoch = 0;  // epoch_ when the write in flight was sent
  };

  bool selfAlive(Time now) const { return now < selfAliveUntil_; }
  bool holds(const Svc& s) const;
  bool heartbeatDead(const std::string& node, Time now) const;
  lease::Record acquireRecord(const Svc& s, const std::string& nowText) const;
  void observeHeartbeat(const std::string& node, std::optional<lease::Lease> l, Time at);
  void lapse();

  std::string node_;
  lease::Timings t_;
  Time selfAliveUntil_{};
  bool wasAlive_ = false;
  uint64_t epoch_ = 0;  // heartbeat lapses so far
  std::map<std::string, Svc> svcs_;
  std::map<std::string, Heartbeat> hbs_;
  std::set<std::string> hbInFlight_;
};

}  // namespace np::l2
