// Runs the conntrack GC on the agent's io_context: now, then every interval (shorter while a
// table is under pressure, see ct::nextInterval). Runs happen on the io_context's thread, like
// every other agent operation, so status reads Gc::last() without locks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <chrono>
#include <functional>

#include "ct/gc.h"

namespace np::ct {

class GcLoop {
 public:
  GcLoop(boost::asio::io_context& io, Gc& gc, std::chrono::milliseconds interval);
  // Schedules the first run at once.
  void start();
  void stop() { timer_.cancel(); }

  // Runs since start, for the metrics: completed and failed, and entries each table's runs
  // deleted (in TableStats order).
  struct Totals {
    uint64_t completed = 0;
    uint64_t failed = 0;
    std::array<uint64_t, kTables> deleted{};
  };
  const Totals& totals() const { return totals_; }
  // Called after every run with its wall time and whether it completed.
  void onRun(std::function<void(std::chrono::nanoseconds took, bool ok)> f) { onRun_ = std::move(f); }

 private:
  void schedule(std::chrono::milliseconds in);
  void runOnce();

  boost::asio::steady_timer timer_;
  Gc& gc_;
  std::chrono::milliseconds interval_;
  Totals totals_;
  std::function<void(std::chrono::nanoseconds, bool)> onRun_;
  bool pressure_ = false;  // the last run found pressure (logged once when it starts and ends)
};

}  // namespace np::ct
