// Runs the conntrack GC on the agent's io_context: now, then every interval (shorter while a
// table is under pressure, see ct::nextInterval). Runs happen on the io_context's thread, like
// every other agent operation, so status reads Gc::last() without locks.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "ct/gc.h"

namespace np::ct {

class GcLoop {
 public:
  GcLoop(boost::asio::io_context& io, Gc& gc, std::chrono::milliseconds interval);
  // Schedules the first run at once.
  void start();
  void stop() { timer_.cancel(); }

 private:
  void schedule(std::chrono::milliseconds in);
  void runOnce();

  boost::asio::steady_timer timer_;
  Gc& gc_;
  std::chrono::milliseconds interval_;
  bool pressure_ = false;  // the last run found pressure (logged once when it starts and ends)
};

}  // namespace np::ct
