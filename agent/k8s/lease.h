// coordination.k8s.io/v1 Leases: the JSON a Lease is on the wire, and LeaseRunner, which drives a
// pure np::lease::Elector against the API server on the agent's io_context.
//
// LeaseRunner sends at most one request at a time (the elector's rule) and never lets a slow
// request delay stepping down: the request runs in its own coroutine while the loop keeps a
// timer on the elector's renew deadline, so `onChange(false)` fires when the deadline passes
// even if the renewal is still waiting for the server. Give the runner its own Client (its own
// connections) when the same process also lists and watches, so renewals never queue behind
// other traffic.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "k8s/client.h"
#include "lease/elector.h"

namespace np::k8s {

// A MicroTime as the API renders it: RFC 3339 in UTC with microseconds, 2026-12-02T21:00:00.123456Z.
std::string microTime(std::chrono::system_clock::time_point t);

// The Lease's spec and resourceVersion; a missing spec field is its zero value.
Result<lease::Lease> decodeLease(std::string_view json);
// A whole Lease object for POST (resourceVersion "") or PUT (resourceVersion = precondition).
std::string encodeLease(const std::string& ns, const std::string& name, const lease::Record& rec,
                        const std::string& resourceVersion);

std::string leasePath(const std::string& ns, const std::string& name = {});

class LeaseRunner {
 public:
  struct Options {
    std::string ns;
    std::string name;
    std::string identity;
    lease::Timings timings;
  };
  // leader: true when this runner became the holder, false when it stopped being one.
  using OnChange = std::function<void(bool leader)>;

  LeaseRunner(boost::asio::io_context& io, Client& client, Options opts, OnChange onChange);
  ~LeaseRunner();  // stops without releasing (the lease then expires)
  LeaseRunner(const LeaseRunner&) = delete;
  LeaseRunner& operator=(const LeaseRunner&) = delete;

  void start();
  // Stops campaigning; a holder hands the lease back (holderIdentity "") so another candidate
  // takes over at once. Leadership ends before the release is sent. `done` runs when the release
  // has been answered (or at once when there was nothing to release).
  void stop(std::function<void()> done = {});

  bool isLeader() const;
  // The same, judged at `now` (a caller that reads the clock once for all its decisions).
  bool isLeader(lease::Time now) const;
  // While isLeader(): when leadership ends unless a renewal succeeds first (Elector::leaderUntil).
  lease::Time leaderUntil() const;
  // Requests sent to the API server so far (GET, POST, PUT, the release included).
  uint64_t requests() const;
  // The holder as last observed ("" when none or not yet known).
  std::string holder() const;
  const Options& options() const;
  // The last request error ("" after a success).
  std::string lastError() const;

 private:
  struct State;
  std::shared_ptr<State> st_;
};

}  // namespace np::k8s
