// The L2 announcer's election under a simulated clock: nodes with a heartbeat elector and an
// Announcer each, against a model of the API server's Leases (one store, a global
// resourceVersion, 409 on a stale precondition), with watches that deliver every change at once
// unless a node's watch is stalled. The property checked on every step: never two nodes answering
// for the same address. The announcers are paced by their default budget (kLeaseRequestRate).
#include <gtest/gtest.h>

#include <map>

#include "l2/announcer.h"
#include "l2/arp.h"
#include "lease/elector.h"

namespace {

using namespace np;
using namespace np::l2;
using namespace std::chrono_literals;
using lease::Lease;
using lease::Time;
using lease::WriteOutcome;
using Kind = Announcer::Action::Kind;

const lease::Timings kT{2000ms, 1500ms, 500ms};

std::string text(Time t) { return std::to_string(t.time_since_epoch().count()); }

struct Api {
  std::map<std::string, Lease> leases;
  uint64_t rv = 0;
  uint64_t requests = 0, serviceWrites = 0, heartbeatWrites = 0;
  std::optional<Lease> get(const std::string& n) const {
    auto it = leases.find(n);
    if (it == leases.end()) return std::nullopt;
    return it->second;
  }
};

struct Node {
  std::string name;
  lease::Elector hb;
  Announcer ann;
  bool running = true;      // false: the agent was killed
  bool partitioned = false;  // every request fails
  bool watchStalled = false;
  // The watch delivers a heartbeat write of this node's announcer before the write's own answer
  // arrives (both come from the API server at once; either may be read first).
  bool watchFirst = false;
  std::map<std::string, std::string> delivered;  // what the watch delivered: Lease -> resourceVersion
  bool loopStalled = false;
  std::string failWrites;    // service-Lease writes answered with this error (e.g. RBAC's 403)  // the agent's loop runs nothing (no renewal, no step), its responder stays
  AnswerSet responder;       // what its ARP responder was last given (Controller::apply)
  uint64_t requests = 0, gets = 0, hbGets = 0, conflicts = 0, hbRenewals = 0;
  std::vector<Time> requestTimes;  // the announcer's requests, for the budget
  Node(std::string n, lease::Timings t, Pacing p = {}) : name(n), hb(n, t), ann(n, t, p) {}
};

std::map<std::string, std::vector<Announcement>> services(int n) {
  std::map<std::string, std::vector<Announcement>> out;
  for (int i = 0; i < n; ++i) {
    const uint32_t a = (192u << 24) | (168u << 16) | (uint32_t(20 + i / 250) << 8) | uint32_t(1 + i % 250);
    out["nodepath-l2announce-default-svc" + std::to_string(i)] = {Announcement{Ipv4::fromHost(a), "eth0"}};
  }
  return out;
}

// One round for one node at `now`: its heartbeat elector, then the announcer.
void step(Node& n, Api& api, Time now) {
  if (!n.running || n.loopStalled) return;
  const std::string hbName = heartbeatLeaseName(n.name);
  for (int i = 0; i < 3; ++i) {
    auto r = n.hb.poll(now, text(now));
    if (!r) break;
    ++api.requests;
    if (n.partitioned) {
      if (r->kind == lease::RequestKind::Get) n.hb.onGet(now, std::nullopt, true);
      else n.hb.onWrite(now, WriteOutcome::Failed);
      break;
    }
    if (r->kind == lease::RequestKind::Get) {
      n.hb.onGet(now, api.get(hbName));
      continue;
    }
    ++api.heartbeatWrites;
    ++n.hbRenewals;
    auto cur = api.get(hbName);
    if ((r->kind == lease::RequestKind::Create && cur) ||
        (r->kind == lease::RequestKind::Update && (!cur || cur->resourceVersion != r->resourceVersion))) {
      n.hb.onWrite(now, WriteOutcome::Conflict);
      continue;
    }
    api.leases[hbName] = Lease{r->record, std::to_string(++api.rv)};
    n.hb.onWrite(now, WriteOutcome::Ok, api.leases[hbName]);
  }
  n.ann.setSelfAliveUntil(n.hb.isLeader(now) ? n.hb.leaderUntil() : Time{}, now);
  if (!n.watchStalled && !n.partitioned) {
    // As a watch does: each version once.
    for (const auto& [name, l] : api.leases) {
      auto& d = n.delivered[name];
      if (d == l.resourceVersion) continue;
      d = l.resourceVersion;
      n.ann.observe(name, l, now);
    }
    n.ann.setCacheSynced();
  }
  for (int i = 0; i < 4; ++i) {  // a GET and the write it decides on go out in one round
    auto actions = n.ann.poll(now, text(now));
    if (actions.empty()) break;
    for (const auto& a : actions) {
      ++api.requests;
      ++n.requests;
      n.requestTimes.push_back(now);
      const bool get = a.kind == Kind::GetHeartbeat || a.kind == Kind::GetService;
      if (a.kind == Kind::GetService) ++n.gets;
      if (a.kind == Kind::GetHeartbeat) ++n.hbGets;
      if (n.partitioned) {
        if (get) n.ann.onGet(a, now, std::nullopt, true);
        else n.ann.onWrite(a, now, WriteOutcome::Failed);
        continue;
      }
      if (get) {
        n.ann.onGet(a, now, api.get(a.lease));
        continue;
      }
      if (!n.failWrites.empty()) {
        n.ann.onWrite(a, now, WriteOutcome::Failed, std::nullopt, n.failWrites);
        continue;
      }
      ++api.serviceWrites;
      auto cur = api.get(a.lease);
      if ((a.kind == Kind::Create && cur) ||
          (a.kind == Kind::Update && (!cur || cur->resourceVersion != a.resourceVersion))) {
        ++n.conflicts;
        n.ann.onWrite(a, now, WriteOutcome::Conflict);
        continue;
      }
      api.leases[a.lease] = Lease{a.record, std::to_string(++api.rv)};
      if (n.watchFirst && !a.node.empty() && !n.watchStalled) {
        n.delivered[a.lease] = api.leases[a.lease].resourceVersion;
        n.ann.observe(a.lease, api.leases[a.lease], now);
      }
      n.ann.onWrite(a, now, WriteOutcome::Ok, api.leases[a.lease]);
    }
  }
  // As Controller::apply hands the set to the responder, with its deadline.
  std::set<Ipv4> addrs;
  for (const auto& a : n.ann.answering(now)) addrs.insert(a.ip);
  n.responder.set(std::move(addrs), n.ann.answeringUntil(now));
}

// What the node's ARP responder answers for at `now`, judged by itself.
std::set<Ipv4> responding(Node& n, Time now) {
  if (!n.running) return {};
  return n.responder.live(now);
}

std::set<Announcement> answering(Node& n, Time now) {
  if (!n.running) return {};  // a killed agent's responder is gone with it
  return n.ann.answering(now);
}

// Steps every node until `until`, in 50 ms rounds, failing on two nodes answering one address.
// Returns the first time `pred` held (or Time{}).
template <class Pred>
Time run(std::vector<Node*> nodes, Api& api, Time& now, Time until, Pred pred) {
  Time first{};
  while (now < until) {
    now += 50ms;
    for (Node* n : nodes) step(*n, api, now);
    std::map<Announcement, std::string> who;
    for (Node* n : nodes)
      for (const auto& a : answering(*n, now)) {
        auto [it, fresh] = who.emplace(a, n->name);
        EXPECT_TRUE(fresh) << "two nodes answer " << a.ip.str() << ": " << it->second << " and " << n->name;
        if (!fresh) return first;
      }
    // And what goes on the wire: the responders, each judging its own set's deadline.
    std::map<Ipv4, std::string> wire;
    for (Node* n : nodes)
      for (const auto& ip : responding(*n, now)) {
        auto [it, fresh] = wire.emplace(ip, n->name);
        EXPECT_TRUE(fresh) << "two responders answer " << ip.str() << ": " << it->second << " and " << n->name;
        if (!fresh) return first;
      }
    if (first == Time{} && pred(now)) first = now;
  }
  return first;
}

TEST(L2Announcer, OneHolderAnswersAndAnotherTakesOverWhenItsAgentIsKilled) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(1));
  run({&a}, api, now, now + 200ms, [](Time) { return false; });
  b.ann.setDesired(services(1));
  run({&a, &b}, api, now, now + 3s, [](Time) { return false; });
  const auto lease = "nodepath-l2announce-default-svc0";
  EXPECT_EQ(a.ann.answering(now).size(), 1u);
  EXPECT_TRUE(b.ann.answering(now).empty());
  EXPECT_EQ(api.leases[lease].record.holder, "node-a");
  ASSERT_EQ(a.ann.entries(now).size(), 1u);
  EXPECT_TRUE(a.ann.entries(now)[0].answering);
  EXPECT_EQ(b.ann.entries(now)[0].holder, "node-a");

  a.running = false;
  const Time killed = now;
  const Time took = run({&a, &b}, api, now, now + 5s, [&](Time t) { return !b.ann.answering(t).empty(); });
  ASSERT_NE(took, Time{});
  // The heartbeat's leaseDuration after a's last renewal, plus one confirming GET and one PUT.
  EXPECT_GE(took - killed, kT.leaseDuration - kT.retryPeriod);
  EXPECT_LE(took - killed, kT.leaseDuration + 200ms);
  EXPECT_EQ(api.leases[lease].record.holder, "node-b");
  EXPECT_EQ(api.leases[lease].record.transitions, 1);
  EXPECT_EQ(b.ann.takeNewlyAnswering(now), std::vector<std::string>{lease});  // gratuitous ARP due
  EXPECT_TRUE(b.ann.takeNewlyAnswering(now).empty());
}

TEST(L2Announcer, HolderThatCannotRenewGoesSilentBeforeAnyoneMayTakeOver) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(3));
  run({&a}, api, now, now + 200ms, [](Time) { return false; });
  b.ann.setDesired(services(3));
  run({&a, &b}, api, now, now + 2s, [](Time) { return false; });
  ASSERT_EQ(a.ann.answering(now).size(), 3u);
  // a keeps running but reaches nothing (its API connections hang or fail).
  a.partitioned = true;
  const Time cut = now;
  Time silent{};
  const Time took = run({&a, &b}, api, now, now + 5s, [&](Time t) {
    if (silent == Time{} && a.ann.answering(t).empty()) silent = t;
    return b.ann.answering(t).size() == 3;
  });
  ASSERT_NE(silent, Time{});
  ASSERT_NE(took, Time{});
  EXPECT_LE(silent - cut, kT.renewDeadline);
  EXPECT_LT(silent, took);
  EXPECT_GE(took - silent, kT.leaseDuration - kT.renewDeadline - kT.retryPeriod);
  // a heals with its watch still behind: it rewrites what it believed it held, loses on the
  // resourceVersion, re-reads, and stays silent.
  a.partitioned = false;
  a.watchStalled = true;
  run({&a, &b}, api, now, now + 3s, [](Time) { return false; });
  EXPECT_TRUE(a.ann.answering(now).empty());
  EXPECT_EQ(b.ann.answering(now).size(), 3u);
  for (const auto& e : a.ann.entries(now)) EXPECT_EQ(e.holder, "node-b") << e.lease;
}

TEST(L2Announcer, AStalledWatchDoesNotMakeALiveHolderLookDead) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(1));
  run({&a}, api, now, now + 200ms, [](Time) { return false; });
  b.ann.setDesired(services(1));
  run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
  // b stops seeing events: a's heartbeat looks unchanged to it. Its takeover (a PUT on a's
  // heartbeat at the resourceVersion it saw) must be refused, however long this lasts.
  b.watchStalled = true;
  const uint64_t before = api.requests;
  run({&a, &b}, api, now, now + 10s, [](Time) { return false; });
  EXPECT_EQ(a.ann.answering(now).size(), 1u);
  EXPECT_TRUE(b.ann.answering(now).empty());
  EXPECT_EQ(api.leases["nodepath-l2announce-default-svc0"].record.holder, "node-a");
  // One refused takeover PUT and one re-read per leaseDuration, not one per round.
  EXPECT_LT(api.requests - before, uint64_t(2 * 10 * 2 /*heartbeats*/ + 2 * 10 / 2 + 5));
}

TEST(L2Announcer, WithdrawnServiceIsSilentAtOnceAndHandedOverWithoutWaiting) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(1));
  run({&a}, api, now, now + 200ms, [](Time) { return false; });
  b.ann.setDesired(services(1));
  run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
  ASSERT_EQ(a.ann.answering(now).size(), 1u);
  a.ann.setDesired({});  // the policy no longer selects node-a
  EXPECT_TRUE(a.ann.answering(now).empty());
  const Time changed = now;
  const Time took = run({&a, &b}, api, now, now + 3s, [&](Time t) { return !b.ann.answering(t).empty(); });
  ASSERT_NE(took, Time{});
  EXPECT_LE(took - changed, 200ms);  // released, not expired
  EXPECT_TRUE(a.ann.entries(now).empty());
  // And when no node wants it any more, its holder releases it.
  b.ann.setDesired({});
  run({&a, &b}, api, now, now + 500ms, [](Time) { return false; });
  EXPECT_EQ(api.leases["nodepath-l2announce-default-svc0"].record.holder, "");
}

TEST(L2Announcer, SteadyStateWritesOnlyHeartbeatsWhateverTheNumberOfServices) {
  for (int count : {1, 100, 1000}) {
    Api api;
    Node a("node-a", kT), b("node-b", kT);
    Time now{};
    a.ann.setDesired(services(count));
    b.ann.setDesired(services(count));
    // Acquisition is paced (two nodes at kLeaseRequestRate each): 1,000 take about 25 s.
    run({&a, &b}, api, now, now + 2s + std::chrono::seconds(count / 30), [](Time) { return false; });
    EXPECT_EQ(a.ann.answering(now).size() + b.ann.answering(now).size(), size_t(count)) << count;
    const uint64_t req = api.requests, svcWrites = api.serviceWrites;
    run({&a, &b}, api, now, now + 10s, [](Time) { return false; });
    EXPECT_EQ(api.serviceWrites, svcWrites) << count;
    // Two heartbeats every retry period: 4 requests/s, whatever `count` is.
    const double rate = double(api.requests - req) / 10.0;
    EXPECT_LE(rate, 2 * 1000.0 / kT.retryPeriod.count() + 0.5) << count;
  }
}

TEST(L2Announcer, StoppingAgentFallsSilentAndHandsEveryLeaseBack) {
  Api api;
  Node a("node-a", kT);
  Time now{};
  a.ann.setDesired(services(2));
  run({&a}, api, now, now + 500ms, [](Time) { return false; });
  ASSERT_EQ(a.ann.answering(now).size(), 2u);
  auto rel = a.ann.releaseAll(text(now));
  EXPECT_TRUE(a.ann.answering(now).empty());
  ASSERT_EQ(rel.size(), 2u);
  for (const auto& r : rel) {
    EXPECT_EQ(r.kind, Kind::Update);
    EXPECT_EQ(r.record.holder, "");
    EXPECT_EQ(r.resourceVersion, api.leases[r.lease].resourceVersion);
  }
}

// The largest number of `times` inside any window of `w`.
size_t maxInWindow(const std::vector<Time>& times, lease::Duration w) {
  size_t best = 0, lo = 0;
  for (size_t hi = 0; hi < times.size(); ++hi) {
    while (times[hi] - times[lo] >= w) ++lo;
    best = std::max(best, hi - lo + 1);
  }
  return best;
}

// Two nodes that are already live (their heartbeats seen by each other).
// The first Lease name prefix + i that node-a wins the rendezvous for over node-b.
std::string nameNodeAPrefers(const std::string& prefix) {
  for (int i = 0;; ++i) {
    const std::string n = prefix + std::to_string(i);
    if (rendezvousScore("node-a", n) > rendezvousScore("node-b", n)) return n;
  }
}

void warmUp(std::vector<Node*> nodes, Api& api, Time& now) {
  run(nodes, api, now, now + 1s, [](Time) { return false; });
}

size_t answeringCount(std::vector<Node*> nodes, Time now) {
  size_t n = 0;
  for (Node* x : nodes) n += answering(*x, now).size();
  return n;
}

TEST(L2Announcer, ABurstOfNewServicesCostsAboutOneWriteEachWithinTheBudget) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  warmUp({&a, &b}, api, now);
  const uint64_t hbA = a.hbRenewals, hbB = b.hbRenewals;
  const Time created = now;
  a.ann.setDesired(services(1000));
  b.ann.setDesired(services(1000));
  bool alwaysAlive = true;
  const Time all = run({&a, &b}, api, now, now + 60s, [&](Time t) {
    alwaysAlive = alwaysAlive && a.hb.isLeader(t) && b.hb.isLeader(t);
    return answeringCount({&a, &b}, t) == 1000;
  });
  ASSERT_NE(all, Time{});
  // Each node at most its burst plus its rate in any second; together under 50 requests/s with
  // the heartbeats (2 nodes x 2 renewals/s).
  for (Node* n : {&a, &b}) {
    EXPECT_LE(maxInWindow(n->requestTimes, 1000ms), size_t(kLeaseRequestBurst + kLeaseRequestRate)) << n->name;
    EXPECT_LE(maxInWindow(n->requestTimes, 5000ms), size_t(kLeaseRequestBurst + 5 * kLeaseRequestRate)) << n->name;
  }
  std::vector<Time> both = a.requestTimes;
  both.insert(both.end(), b.requestTimes.begin(), b.requestTimes.end());
  std::sort(both.begin(), both.end());
  const double sustained = double(maxInWindow(both, 10000ms)) / 10.0 + 2 * 1000.0 / kT.retryPeriod.count();
  EXPECT_LT(sustained, 50.0);
  // About one write per service: no GETs (the watch's cache), no races (one candidate each).
  EXPECT_EQ(a.gets + b.gets, 0u);
  EXPECT_LE(a.conflicts + b.conflicts, 10u);
  EXPECT_LE(a.requests + b.requests, 1010u);
  // Shared between the two, each service held by its preferred node, in about
  // 1,000 / (2 x rate) = 25 s.
  const size_t onA = a.ann.answering(now).size();
  EXPECT_GT(onA, 400u);
  EXPECT_LT(onA, 600u);
  size_t notPreferred = 0;
  for (const auto& [name, l] : api.leases)
    if (name.rfind(kHeartbeatLeasePrefix, 0) != 0 && l.record.holder != a.ann.preferred(name, now)) ++notPreferred;
  EXPECT_LE(notPreferred, 10u);
  EXPECT_LE(all - created, 30s);
  // The 1,000 pending acquisitions never delayed a heartbeat renewal.
  EXPECT_TRUE(alwaysAlive);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - created).count();
  for (uint64_t renewals : {a.hbRenewals - hbA, b.hbRenewals - hbB})
    EXPECT_GE(renewals, uint64_t(secs * 1000 / kT.retryPeriod.count() - 1));
}

TEST(L2Announcer, OnlyThePreferredNodeWritesANewServicesLease) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  warmUp({&a, &b}, api, now);
  const auto svcs = services(20);
  a.ann.setDesired(svcs);
  b.ann.setDesired(svcs);
  const uint64_t writes = api.serviceWrites;
  run({&a, &b}, api, now, now + 3s, [](Time) { return false; });
  EXPECT_EQ(api.serviceWrites - writes, 20u);
  EXPECT_EQ(a.conflicts + b.conflicts, 0u);
  size_t onA = 0;
  for (const auto& [name, _] : svcs) {
    const std::string pref = rendezvousScore("node-a", name) > rendezvousScore("node-b", name) ? "node-a" : "node-b";
    EXPECT_EQ(api.leases[name].record.holder, pref) << name;
    EXPECT_EQ(a.ann.preferred(name, now), pref);
    EXPECT_EQ(b.ann.preferred(name, now), pref);
    onA += pref == "node-a";
  }
  EXPECT_GT(onA, 0u);  // both nodes get a share (20 names: all on one would be 1 in 500,000)
  EXPECT_LT(onA, 20u);
}

TEST(L2Announcer, ANodeThatIsNotPreferredAcquiresAfterARetryPeriodWhenThePreferredDoesNotWantIt) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  warmUp({&a, &b}, api, now);
  // A service node-a is preferred for, which only node-b's policy selects.
  const std::string name = nameNodeAPrefers("nodepath-l2announce-default-only-b-");
  b.ann.setDesired({{name, {Announcement{*Ipv4::parse("192.168.30.1"), "eth0"}}}});
  const Time wanted = now;
  const Time took = run({&a, &b}, api, now, now + 3s, [&](Time t) { return !b.ann.answering(t).empty(); });
  ASSERT_NE(took, Time{});
  EXPECT_GE(took - wanted, kT.retryPeriod);
  EXPECT_LE(took - wanted, kT.retryPeriod + 100ms);
  EXPECT_EQ(api.leases[name].record.holder, "node-b");
}

size_t serviceLeasesHeldBy(const Api& api, const std::string& node) {
  size_t n = 0;
  for (const auto& [name, l] : api.leases)
    if (name.rfind(kServiceLeasePrefix, 0) == 0 && l.record.holder == node) ++n;
  return n;
}

// Issue 10: 1,000 services on a killed holder answered by the survivor within the heartbeat's
// leaseDuration and a retry period (one write: the dead node's heartbeat), then their Leases
// rewritten at the paced rate, the dead heartbeat handed back at the end.
TEST(L2Announcer, FailoverOfAThousandServicesAnswersAllAtOnceThenConvertsPaced) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(1000));
  run({&a}, api, now, now + 55s, [](Time) { return false; });
  ASSERT_EQ(a.ann.answering(now).size(), 1000u);
  b.ann.setDesired(services(1000));
  run({&a, &b}, api, now, now + 2s, [](Time) { return false; });
  ASSERT_EQ(a.ann.answering(now).size(), 1000u);  // held by a live node: nothing to do for b
  EXPECT_EQ(b.requests, 0u);

  // A Lease of someone else's in the namespace that happens to name node-a: not ours to convert,
  // and no reason to keep node-a's heartbeat.
  api.leases["nodepath-operator"] = Lease{lease::Record{"node-a", 15, "t", "t", 0}, std::to_string(++api.rv)};
  a.running = false;
  const Time killed = now;
  const size_t requestsBefore = b.requestTimes.size();
  Time first{};
  size_t requestsToAnswer = 0, stillOnA = 0;
  const Time all = run({&a, &b}, api, now, now + 3s, [&](Time t) {
    const size_t n = b.ann.answering(t).size();
    if (first == Time{} && n > 0) first = t;
    if (n < 1000) {
      requestsToAnswer = b.requestTimes.size() - requestsBefore;
      stillOnA = serviceLeasesHeldBy(api, "node-a");
    }
    return n == 1000;
  });
  ASSERT_NE(first, Time{});
  ASSERT_NE(all, Time{});
  EXPECT_EQ(first, all);  // all at once
  EXPECT_LT(all - killed, 3s);
  EXPECT_LE(all - killed, kT.leaseDuration + kT.retryPeriod);
  EXPECT_LE(requestsToAnswer, 5u);  // the heartbeat's PUT and the first paced rewrites
  EXPECT_EQ(b.hbGets, 0u);
  EXPECT_EQ(b.gets, 0u);
  EXPECT_EQ(api.leases[heartbeatLeaseName("node-a")].record.holder, "node-b");
  EXPECT_GE(stillOnA, 995u);  // not rewritten yet: answered from the cache
  // The conversion, paced; b answers all 1,000 throughout (run() checks nobody else does).
  bool allThroughout = true;
  const Time converted = run({&a, &b}, api, now, now + 70s, [&](Time t) {
    allThroughout = allThroughout && b.ann.answering(t).size() == 1000;
    return serviceLeasesHeldBy(api, "node-b") == 1000 && api.leases[heartbeatLeaseName("node-a")].record.holder.empty();
  });
  ASSERT_NE(converted, Time{});
  EXPECT_TRUE(allThroughout);
  EXPECT_EQ(b.conflicts, 0u);
  EXPECT_EQ(api.leases["nodepath-operator"].record.holder, "node-a");
  // 1,000 rewrites at the bucket's rate, plus the heartbeat's renewals from the same bucket.
  const auto expected = std::chrono::milliseconds(long(1000 * 1000 / (kLeaseRequestRate - 1000.0 / kT.retryPeriod.count())));
  EXPECT_LE(converted - killed, kT.leaseDuration + expected + 2s);
  const std::vector<Time> after(b.requestTimes.begin() + long(requestsBefore), b.requestTimes.end());
  // Every second: at most the burst plus the rate, heartbeat renewals included; with b's own
  // heartbeat (outside the bucket, 2/s) under 50 requests/s for the cluster (a is dead).
  EXPECT_LE(maxInWindow(after, 1000ms), size_t(kLeaseRequestBurst + kLeaseRequestRate));
  EXPECT_LT(double(maxInWindow(after, 1000ms)) + 1000.0 / kT.retryPeriod.count(), 50.0);
  const size_t renewals = after.size() - 1000 - 2;  // minus the rewrites, the takeover and the hand-back
  EXPECT_LE(renewals, size_t((converted - killed) / kT.retryPeriod) + 1);
  // Nothing more once converted: b writes only its own heartbeat.
  const size_t done = b.requestTimes.size();
  run({&a, &b}, api, now, now + 5s, [](Time) { return false; });
  EXPECT_EQ(b.requestTimes.size(), done);
  EXPECT_EQ(b.ann.answering(now).size(), 1000u);
}

// The dead holder comes back while the survivor is converting (its watch behind or not): it
// stays silent while the survivor renews its heartbeat, gets the heartbeat back when the
// survivor hands it back, and then finds (409) that what it believed it held is not its own.
TEST(L2Announcer, AHolderThatReturnsDuringTheConversionNeverAnswersWithTheSurvivor) {
  for (bool stalled : {false, true}) {
    Api api;
    Node a("node-a", kT), b("node-b", kT);
    Time now{};
    a.ann.setDesired(services(200));
    run({&a}, api, now, now + 12s, [](Time) { return false; });
    ASSERT_EQ(a.ann.answering(now).size(), 200u);
    b.ann.setDesired(services(200));
    run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
    // a is cut off long enough for b to take its heartbeat and answer everything...
    a.partitioned = true;
    run({&a, &b}, api, now, now + kT.leaseDuration + 3s, [](Time) { return false; });
    ASSERT_EQ(b.ann.answering(now).size(), 200u) << stalled;
    ASSERT_GT(serviceLeasesHeldBy(api, "node-a"), 0u) << stalled;  // still converting
    // ...then heals (its watch behind or not) while b goes on: run() fails on any address
    // answered by both.
    a.partitioned = false;
    a.watchStalled = stalled;
    bool aAnswered = false;
    run({&a, &b}, api, now, now + 20s, [&](Time t) { return aAnswered = aAnswered || !a.ann.answering(t).empty(); });
    a.watchStalled = false;
    run({&a, &b}, api, now, now + 5s, [&](Time t) { return aAnswered = aAnswered || !a.ann.answering(t).empty(); });
    EXPECT_FALSE(aAnswered) << stalled;
    EXPECT_EQ(b.ann.answering(now).size(), 200u) << stalled;
    EXPECT_EQ(serviceLeasesHeldBy(api, "node-b"), 200u) << stalled;
    // a has its heartbeat back and takes part again (a new service may go to it).
    EXPECT_EQ(api.leases[heartbeatLeaseName("node-a")].record.holder, "node-a") << stalled;
    EXPECT_TRUE(a.hb.isLeader(now)) << stalled;
  }
}

// The taker answers from its watch cache only once the watch has delivered its own write on the
// dead node's heartbeat (every earlier write is then in the cache): not while the watch is behind.
TEST(L2Announcer, ATakerAnswersOnlyOnceItsWatchHasDeliveredItsTakeover) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(10));
  run({&a}, api, now, now + 2s, [](Time) { return false; });
  b.ann.setDesired(services(10));
  run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
  const Time lastRenewal = a.hb.leaderUntil() - kT.renewDeadline;
  a.running = false;
  run({&a, &b}, api, now, lastRenewal + kT.leaseDuration - 50ms, [](Time) { return false; });
  b.watchStalled = true;
  bool answered = false;
  run({&a, &b}, api, now, now + 1s, [&](Time t) { return answered = answered || !b.ann.answering(t).empty(); });
  ASSERT_EQ(api.leases[heartbeatLeaseName("node-a")].record.holder, "node-b");  // taken...
  EXPECT_FALSE(answered);                                                        // ...not proven
  EXPECT_EQ(serviceLeasesHeldBy(api, "node-a"), 10u);  // and nothing converted on an unproven cache
  b.watchStalled = false;
  const Time stalledUntil = now;
  const Time all = run({&a, &b}, api, now, now + 1s, [&](Time t) { return b.ann.answering(t).size() == 10; });
  ASSERT_NE(all, Time{});
  EXPECT_LE(all - stalledUntil, 100ms);
}

// The watch may deliver the taker's own write of the dead node's heartbeat (the takeover, and
// each renewal after it) before the write's answer, and then never again: the taker must still
// answer at once, and keep answering across its renewals (it did not: the takeover went
// unproven, and each renewal seen first looked like someone else's write and dropped it).
TEST(L2Announcer, ATakerWhoseWatchDeliversItsWritesBeforeTheirAnswersAnswersAtOnceAndKeepsAnswering) {
  for (int n : {1, 10}) {
    Api api;
    Node a("node-a", kT), b("node-b", kT);
    b.watchFirst = true;
    Time now{};
    a.ann.setDesired(services(n));
    run({&a}, api, now, now + 2s, [](Time) { return false; });
    b.ann.setDesired(services(n));
    run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
    ASSERT_EQ(serviceLeasesHeldBy(api, "node-a"), static_cast<size_t>(n));
    const Time lastRenewal = a.hb.leaderUntil() - kT.renewDeadline;
    a.running = false;
    const Time killed = now;
    const Time all = run({&a, &b}, api, now, now + 5s,
                         [&](Time t) { return responding(b, t).size() == static_cast<size_t>(n); });
    ASSERT_NE(all, Time{}) << n << " services";
    EXPECT_LE(all - lastRenewal, kT.leaseDuration + 150ms) << n << " services, " << (all - killed).count() << " after the kill";
    // Answering holds from then on, through renewals, the conversion and the hand-back.
    bool dropped = false;
    run({&a, &b}, api, now, now + 5s, [&](Time t) {
      dropped = dropped || responding(b, t).size() != static_cast<size_t>(n);
      return false;
    });
    EXPECT_FALSE(dropped) << n << " services";
    EXPECT_EQ(serviceLeasesHeldBy(api, "node-b"), static_cast<size_t>(n));
  }
}

// Two survivors judge the holder dead: the preferred one takes the heartbeat, the other defers;
// when the other's watch is behind it races, loses on the resourceVersion and defers.
TEST(L2Announcer, TwoSurvivorsRacingTheTakeoverOneWinsTheOtherDefers) {
  for (bool stalled : {false, true}) {
    Api api;
    Node a("node-a", kT), b("node-b", kT), c("node-c", kT);
    Time now{};
    a.ann.setDesired(services(100));
    run({&a}, api, now, now + 6s, [](Time) { return false; });
    b.ann.setDesired(services(100));
    c.ann.setDesired(services(100));
    run({&a, &b, &c}, api, now, now + 1s, [](Time) { return false; });
    const std::string hb = heartbeatLeaseName("node-a");
    const bool bPreferred = rendezvousScore("node-b", hb) > rendezvousScore("node-c", hb);
    Node& winner = bPreferred ? b : c;
    Node& loser = bPreferred ? c : b;
    const Time lastRenewal = a.hb.leaderUntil() - kT.renewDeadline;
    a.running = false;
    const Time killed = now;
    // The loser's watch stops just before it could see the winner's write.
    const Time all = run({&a, &b, &c}, api, now, now + 5s, [&](Time t) {
      if (stalled && t >= lastRenewal + kT.leaseDuration - 50ms) loser.watchStalled = true;
      return winner.ann.answering(t).size() == 100;
    });
    ASSERT_NE(all, Time{}) << stalled;
    EXPECT_LT(all - killed, 3s) << stalled;
    run({&a, &b, &c}, api, now, now + 2s, [](Time) { return false; });
    loser.watchStalled = false;
    run({&a, &b, &c}, api, now, now + 2s, [](Time) { return false; });
    EXPECT_TRUE(loser.ann.answering(now).empty()) << stalled;
    EXPECT_EQ(winner.ann.answering(now).size(), 100u) << stalled;
    EXPECT_EQ(serviceLeasesHeldBy(api, winner.name), 100u) << stalled;
    // Behind, the loser PUTs on the old heartbeat (409) and re-reads it, once per leaseDuration
    // of its stall at most per heartbeat (a's, and the winner's, which it sees unchanged too).
    if (stalled) EXPECT_GE(loser.conflicts, 1u);
    else EXPECT_EQ(loser.conflicts, 0u);
    EXPECT_LE(loser.conflicts, 2u * (5 + 2) / 2);
    EXPECT_EQ(loser.hbGets, loser.conflicts) << stalled;
    EXPECT_EQ(loser.gets, 0u) << stalled;
    for (const auto& e : loser.ann.entries(now)) EXPECT_EQ(e.holder, winner.name) << e.lease;
  }
}

// The taker dies while converting: a third node takes the taker's heartbeat and with it the
// dead node's, and answers both nodes' services.
TEST(L2Announcer, ATakerThatDiesDuringTheConversionIsTakenOverWithWhatItTook) {
  Api api;
  Node a("node-a", kT), b("node-b", kT), c("node-c", kT);
  Time now{};
  a.ann.setDesired(services(300));
  run({&a}, api, now, now + 18s, [](Time) { return false; });
  b.ann.setDesired(services(300));
  c.ann.setDesired(services(300));
  run({&a, &b, &c}, api, now, now + 1s, [](Time) { return false; });
  a.running = false;
  Node* taker = nullptr;
  run({&a, &b, &c}, api, now, now + 5s, [&](Time t) {
    if (b.ann.answering(t).size() == 300) taker = &b;
    if (c.ann.answering(t).size() == 300) taker = &c;
    return taker != nullptr;
  });
  ASSERT_NE(taker, nullptr);
  run({&a, &b, &c}, api, now, now + 2s, [](Time) { return false; });
  ASSERT_GT(serviceLeasesHeldBy(api, "node-a"), 0u);
  ASSERT_GT(serviceLeasesHeldBy(api, taker->name), 0u);
  Node& third = taker == &b ? c : b;
  taker->running = false;
  const Time killed = now;
  const Time all = run({&a, &b, &c}, api, now, now + 5s, [&](Time t) { return third.ann.answering(t).size() == 300; });
  ASSERT_NE(all, Time{});
  EXPECT_LT(all - killed, 3s);
  const Time converted = run({&a, &b, &c}, api, now, now + 60s, [&](Time t) {
    return third.ann.answering(t).size() == 300 && serviceLeasesHeldBy(api, third.name) == 300 &&
           api.leases[heartbeatLeaseName("node-a")].record.holder.empty() &&
           api.leases[heartbeatLeaseName(taker->name)].record.holder.empty();
  });
  ASSERT_NE(converted, Time{});
  for (const auto& e : third.ann.entries(now)) EXPECT_EQ(e.holder, third.name) << e.lease;
}

// A service the dead node handed back just before it died, acquired by another node: the taker
// must not answer it from its cache. And one the dead node hands back after the takeover (it
// came back with its watch behind, unaware): only the taker may acquire it.
TEST(L2Announcer, AServiceReleasedByTheDeadHolderIsNotAnsweredByTheTakerOnceAnotherHasIt) {
  for (bool afterTakeover : {false, true}) {
    Api api;
    Node a("node-a", kT), b("node-b", kT), c("node-c", kT);
    Time now{};
    // x: a service c wins the rendezvous for over b (b and c both announce it).
    std::string x;
    for (int i = 0;; ++i) {
      x = "nodepath-l2announce-default-x" + std::to_string(i);
      if (rendezvousScore("node-c", x) > rendezvousScore("node-b", x) &&
          rendezvousScore("node-a", x) > rendezvousScore("node-c", x))
        break;
    }
    // 200 others: the conversion (in name order, x last) takes ~10 s.
    auto withX = services(200);
    withX[x] = {Announcement{*Ipv4::parse("192.168.40.1"), "eth0"}};
    auto withoutX = services(200);
    a.ann.setDesired(withX);
    run({&a}, api, now, now + 12s, [](Time) { return false; });
    ASSERT_EQ(api.leases[x].record.holder, "node-a");
    b.ann.setDesired(withX);
    c.ann.setDesired({{x, withX[x]}});
    run({&a, &b, &c}, api, now, now + 1s, [](Time) { return false; });
    if (!afterTakeover) {
      a.ann.setDesired(withoutX);  // hands x back...
      run({&a, &b, &c}, api, now, now + 100ms, [](Time) { return false; });
      a.running = false;  // ...and dies
      run({&a, &b, &c}, api, now, now + 5s, [](Time) { return false; });
      EXPECT_EQ(api.leases[x].record.holder, "node-c") << afterTakeover;
      EXPECT_EQ(c.ann.answering(now).size(), 1u);
      EXPECT_EQ(b.ann.answering(now).size(), 200u);
    } else {
      a.partitioned = true;
      run({&a, &b, &c}, api, now, now + kT.leaseDuration + 1s, [](Time) { return false; });
      ASSERT_EQ(api.leases[x].record.holder, "node-a");  // not converted yet
      Node& taker = api.leases[heartbeatLeaseName("node-a")].record.holder == "node-b" ? b : c;
      ASSERT_EQ(answering(taker, now).count(Announcement{*Ipv4::parse("192.168.40.1"), "eth0"}), 1u);
      // a heals with its watch behind (it still believes its heartbeat its own) and withdraws
      // x: the release lands after the takeover.
      a.partitioned = false;
      a.watchStalled = true;
      a.ann.setDesired(withoutX);
      bool otherAnswered = false;
      run({&a, &b, &c}, api, now, now + 5s, [&](Time t) {
        Node& other = &taker == &b ? c : b;
        otherAnswered = otherAnswered || answering(other, t).count(Announcement{*Ipv4::parse("192.168.40.1"), "eth0"});
        return false;
      });
      EXPECT_FALSE(otherAnswered);
      EXPECT_EQ(api.leases[x].record.holder, taker.name);
      EXPECT_EQ(a.conflicts, 0u);  // its release did land after the takeover
      EXPECT_EQ(answering(taker, now).count(Announcement{*Ipv4::parse("192.168.40.1"), "eth0"}), 1u);
    }
  }
}

TEST(L2Announcer, AShortHeartbeatLapseCostsNoRewritesALongOneRewritesEverything) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(100));
  run({&a}, api, now, now + 8s, [](Time) { return false; });
  ASSERT_EQ(a.ann.answering(now).size(), 100u);
  b.ann.setDesired(services(100));
  run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
  // Cut a off right after a renewal, and heal it in time for the renewal at its renew deadline:
  // it was silent (or about to be) but nobody could have judged it dead.
  while (a.hb.leaderUntil() - kT.renewDeadline != now) run({&a, &b}, api, now, now + 50ms, [](Time) { return false; });
  const Time renewed = now;
  const uint64_t writes = api.serviceWrites;
  a.partitioned = true;
  run({&a, &b}, api, now, renewed + kT.renewDeadline - 100ms, [](Time) { return false; });
  a.partitioned = false;
  bool bAnswered = false;
  run({&a, &b}, api, now, now + 2s, [&](Time t) { return bAnswered = bAnswered || !b.ann.answering(t).empty(); });
  EXPECT_FALSE(bAnswered);
  EXPECT_EQ(a.ann.answering(now).size(), 100u);
  EXPECT_EQ(api.serviceWrites, writes);  // no rewrite of the 100 Leases
  // A long lapse (no one else to take over) is not forgiven: a rewrites each Lease first.
  b.running = false;
  a.partitioned = true;
  run({&a}, api, now, now + kT.leaseDuration + 1s, [](Time) { return false; });
  EXPECT_TRUE(a.ann.answering(now).empty());
  a.partitioned = false;
  run({&a}, api, now, now + 10s, [](Time) { return false; });
  EXPECT_EQ(a.ann.answering(now).size(), 100u);
  EXPECT_EQ(api.serviceWrites, writes + 100);
}

// Issue 10: "a holder that cannot renew in time stops answering before the Lease can expire".
// Its agent's loop stops altogether (no renewal, nothing clears the responder's set): the
// responder's own deadline silences it before another node may take over.
TEST(L2Announcer, AHolderWhoseLoopStallsIsSilencedByItsResponderDeadline) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(1));
  run({&a}, api, now, now + 200ms, [](Time) { return false; });
  b.ann.setDesired(services(1));
  run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
  ASSERT_EQ(responding(a, now).size(), 1u);
  const Time validUntil = a.responder.validUntil();
  ASSERT_GT(validUntil, now);
  EXPECT_LE(validUntil, now + kT.renewDeadline);
  a.loopStalled = true;
  const Time stalled = now;
  Time silent{};
  const Time took = run({&a, &b}, api, now, now + 5s, [&](Time t) {
    if (silent == Time{} && responding(a, t).empty()) silent = t;
    return !responding(b, t).empty();
  });
  ASSERT_NE(silent, Time{});
  ASSERT_NE(took, Time{}) << "node-b never took over";
  EXPECT_LE(silent - stalled, kT.renewDeadline + 50ms);
  EXPECT_LT(silent, took);
  // Still the set it was given: only its deadline keeps it quiet.
  EXPECT_EQ(a.responder.addresses().size(), 1u);
  EXPECT_EQ(a.responder.judge(*a.responder.addresses().begin(), now), AnswerSet::Verdict::Stale);
  EXPECT_EQ(api.leases["nodepath-l2announce-default-svc0"].record.holder, "node-b");
}

// The holder's API is cut off (its requests fail) while its loop runs: silent on the wire by
// the renew deadline, before the other node takes over, which it then does.
TEST(L2Announcer, AHolderCutOffFromTheApiGoesSilentOnTheWireBeforeTheLeaseExpires) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  a.ann.setDesired(services(2));
  run({&a}, api, now, now + 200ms, [](Time) { return false; });
  b.ann.setDesired(services(2));
  run({&a, &b}, api, now, now + 1s, [](Time) { return false; });
  ASSERT_EQ(responding(a, now).size(), 2u);
  const Time lastRenewalSent = a.hb.leaderUntil() - kT.renewDeadline;
  a.partitioned = true;
  Time silent{};
  const Time took = run({&a, &b}, api, now, now + 5s, [&](Time t) {
    if (silent == Time{} && responding(a, t).empty()) silent = t;
    return responding(b, t).size() == 2;
  });
  ASSERT_NE(silent, Time{});
  ASSERT_NE(took, Time{});
  EXPECT_LE(silent, lastRenewalSent + kT.renewDeadline);
  // No node may judge a's Lease free before leaseDuration after that renewal.
  EXPECT_LT(silent, lastRenewalSent + kT.leaseDuration);
  EXPECT_GE(took, lastRenewalSent + kT.leaseDuration);
  for (const auto& e : b.ann.entries(now)) EXPECT_EQ(e.holder, "node-b");
}

// A restarted agent finds Leases naming it as holder: the one for a service it no longer
// announces is handed back; the one it still announces is rewritten before it answers.
TEST(L2Announcer, ARestartedAgentReleasesStaleLeasesAndReacquiresTheRest) {
  Api api;
  Time now{};
  const auto svcs = services(2);
  const std::string keep = svcs.begin()->first, drop = std::next(svcs.begin())->first;
  {
    Node a("node-a", kT);
    a.ann.setDesired(svcs);
    run({&a}, api, now, now + 500ms, [](Time) { return false; });
    ASSERT_EQ(a.ann.answering(now).size(), 2u);
  }  // killed: no release
  ASSERT_EQ(api.leases[drop].record.holder, "node-a");
  const std::string keepRv = api.leases[keep].resourceVersion;
  Node a("node-a", kT);
  EXPECT_TRUE(a.ann.answering(now).empty());
  a.ann.setDesired({{keep, svcs.at(keep)}});
  bool answeredBeforeRewrite = false;
  run({&a}, api, now, now + 1s, [&](Time t) {
    if (!a.ann.answering(t).empty() && api.leases[keep].resourceVersion == keepRv) answeredBeforeRewrite = true;
    return false;
  });
  EXPECT_FALSE(answeredBeforeRewrite);
  EXPECT_EQ(api.leases[drop].record.holder, "") << "the stale Lease was not handed back";
  EXPECT_EQ(api.leases[keep].record.holder, "node-a");
  EXPECT_NE(api.leases[keep].resourceVersion, keepRv);
  EXPECT_EQ(a.ann.answering(now), (std::set<Announcement>(svcs.at(keep).begin(), svcs.at(keep).end())));
  EXPECT_EQ(a.ann.entries(now).size(), 1u);

  // Restarted once more, now with nothing to announce at all: every service Lease goes back,
  // and nothing else in the namespace is touched (a Lease that names node-a by chance).
  api.leases["nodepath-operator"] = Lease{lease::Record{"node-a", 15, "t", "t", 0}, std::to_string(++api.rv)};
  Node a2("node-a", kT);
  a2.ann.setDesired({});
  run({&a2}, api, now, now + 1s, [](Time) { return false; });
  EXPECT_EQ(api.leases[keep].record.holder, "");
  EXPECT_EQ(api.leases["nodepath-operator"].record.holder, "node-a");
  EXPECT_TRUE(a2.ann.answering(now).empty());
}

// Nothing is released before the agent knows what it wants: setDesired not yet called.
TEST(L2Announcer, NoStaleReleaseBeforeTheDesiredSetIsKnown) {
  Api api;
  Time now{};
  {
    Node a("node-a", kT);
    a.ann.setDesired(services(1));
    run({&a}, api, now, now + 500ms, [](Time) { return false; });
  }
  const auto before = api.leases["nodepath-l2announce-default-svc0"];
  Node a("node-a", kT);
  run({&a}, api, now, now + 1s, [](Time) { return false; });
  EXPECT_EQ(api.leases["nodepath-l2announce-default-svc0"].resourceVersion, before.resourceVersion);
}

// A withdrawal whose PUT loses on the resourceVersion (the Lease changed behind a stalled watch)
// re-reads it: hands it back when it is still ours, and sends nothing more when it is not.
TEST(L2Announcer, AWithdrawalThatMeetsAConflictReReadsTheLease) {
  for (bool stillOurs : {true, false}) {
    Api api;
    Node a("node-a", kT);
    Time now{};
    a.ann.setDesired(services(1));
    run({&a}, api, now, now + 500ms, [](Time) { return false; });
    const std::string name = "nodepath-l2announce-default-svc0";
    ASSERT_EQ(api.leases[name].record.holder, "node-a");
    a.watchStalled = true;
    // Changed behind a's back: a label added with kubectl, or taken by someone else.
    if (!stillOurs) api.leases[name].record.holder = "node-x";
    api.leases[name].resourceVersion = std::to_string(++api.rv);
    a.ann.setDesired({});
    EXPECT_TRUE(a.ann.answering(now).empty());
    const Time changed = now;
    const uint64_t before = a.requests;
    const Time done = run({&a}, api, now, now + 3s, [&](Time) { return api.leases[name].record.holder != "node-a"; });
    run({&a}, api, now, now + 2s, [](Time) { return false; });
    EXPECT_EQ(a.conflicts, 1u) << stillOurs;
    EXPECT_EQ(a.gets, 1u) << stillOurs;
    if (stillOurs) {
      ASSERT_NE(done, Time{}) << "never handed back";
      EXPECT_EQ(api.leases[name].record.holder, "");
      EXPECT_LE(done - changed, 2 * kT.retryPeriod + 100ms);
      EXPECT_EQ(a.requests - before, 3u);  // PUT (409), GET, PUT
    } else {
      EXPECT_EQ(api.leases[name].record.holder, "node-x");
      EXPECT_EQ(a.requests - before, 2u);  // PUT (409), GET
    }
  }
}

// A node whose heartbeat was handed back (nothing left to announce) is dead to the others at
// once. A write of its own answered after that, and a heartbeat started again soon after, must
// not make it answer on the old state: someone may have taken over meanwhile.
TEST(L2Announcer, AReleasedHeartbeatForgetsWhatWasHeld) {
  Api api;
  Node a("node-a", kT), b("node-b", kT);
  Time now{};
  warmUp({&a, &b}, api, now);
  const std::string name = nameNodeAPrefers("nodepath-l2announce-default-race-");
  const std::map<std::string, std::vector<Announcement>> svc{{name, {Announcement{*Ipv4::parse("192.168.30.7"), "eth0"}}}};
  a.ann.setDesired(svc);
  now += 50ms;
  auto acts = a.ann.poll(now, text(now));
  ASSERT_EQ(acts.size(), 1u);
  ASSERT_EQ(acts[0].kind, Kind::Create);
  // While the POST is on its way the policy drops node-a: the service is withdrawn and the
  // heartbeat handed back (Controller::ensureHeartbeat(false)).
  a.ann.setDesired({});
  auto rel = a.hb.release(text(now));
  ASSERT_TRUE(rel);
  api.leases[heartbeatLeaseName("node-a")] = Lease{rel->record, std::to_string(++api.rv)};
  a.ann.selfReleased();
  EXPECT_TRUE(a.ann.answering(now).empty());
  api.leases[name] = Lease{acts[0].record, std::to_string(++api.rv)};
  a.ann.onWrite(acts[0], now, WriteOutcome::Ok, api.leases[name]);
  // node-b sees the released heartbeat and takes the service over at once.
  b.ann.setDesired(svc);
  const Time took = run({&b}, api, now, now + 1s, [&](Time t) { return !b.ann.answering(t).empty(); });
  ASSERT_NE(took, Time{});
  ASSERT_EQ(api.leases[name].record.holder, "node-b");
  // The policy selects node-a again before it heard of that (its watch is behind): a new
  // heartbeat, and the old write must not count.
  a.watchStalled = true;
  a.hb = lease::Elector("node-a", kT);
  a.ann.setDesired(svc);
  run({&a, &b}, api, now, now + 2s, [](Time) { return false; });
  EXPECT_TRUE(a.ann.answering(now).empty());
  EXPECT_EQ(b.ann.answering(now).size(), 1u);
  EXPECT_EQ(api.leases[name].record.holder, "node-b");
}

// Why a Lease cannot be taken is kept per Lease (agentctl l2 list shows it) until a request
// about it succeeds.
TEST(L2Announcer, AFailedLeaseRequestSaysWhyPerLease) {
  Api api;
  Node a("node-a", kT);
  Time now{};
  const std::string why = "POST Lease nodepath-l2announce-default-svc0: HTTP 403 leases.coordination.k8s.io is forbidden";
  a.failWrites = why;
  a.ann.setDesired(services(1));
  run({&a}, api, now, now + 1s, [](Time) { return false; });
  ASSERT_EQ(a.ann.entries(now).size(), 1u);
  EXPECT_EQ(a.ann.entries(now)[0].error, why);
  EXPECT_FALSE(a.ann.entries(now)[0].answering);
  EXPECT_TRUE(a.ann.answering(now).empty());
  a.failWrites.clear();
  run({&a}, api, now, now + 2s, [](Time) { return false; });
  ASSERT_EQ(a.ann.entries(now).size(), 1u);
  EXPECT_TRUE(a.ann.entries(now)[0].answering);
  EXPECT_EQ(a.ann.entries(now)[0].error, "");
}

}  // namespace
