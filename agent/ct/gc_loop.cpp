#include "ct/gc_loop.h"

#include "core/log.h"

namespace np::ct {

GcLoop::GcLoop(boost::asio::io_context& io, Gc& gc, std::chrono::milliseconds interval)
    : timer_(io), gc_(gc), interval_(interval) {}

void GcLoop::start() { schedule(std::chrono::milliseconds(0)); }

void GcLoop::schedule(std::chrono::milliseconds in) {
  timer_.expires_after(in);
  gc_.setNextRun(std::chrono::steady_clock::now() + in);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) runOnce();
  });
}

void GcLoop::runOnce() {
  const auto started = std::chrono::steady_clock::now();
  auto run = gc_.runOnce();
  if (onRun_) onRun_(std::chrono::steady_clock::now() - started, run.ok());
  if (!run) {
    ++totals_.failed;
    NP_LOG_WARN("ct", "conntrack GC failed: %s; retrying in %lld ms", run.error().message().c_str(),
                static_cast<long long>(interval_.count()));
    schedule(interval_);
    return;
  }
  ++totals_.completed;
  for (size_t i = 0; i < run->tables.size(); ++i) totals_.deleted[i] += run->tables[i].gcDeleted;
  const std::chrono::milliseconds next = nextInterval(*run, interval_);
  const bool pressure = underPressure(*run);
  for (const TableStats& t : run->tables) {
    if (t.evicted > 0)
      NP_LOG_WARN("ct", "%s: %llu entries evicted in the last %lld ms (%llu of %u entries live, %llu expired deleted)",
                  t.name.c_str(), static_cast<unsigned long long>(t.evicted),
                  static_cast<long long>(run->covers.count()), static_cast<unsigned long long>(t.entries),
                  t.maxEntries, static_cast<unsigned long long>(t.gcDeleted));
  }
  if (pressure != pressure_)
    NP_LOG_INFO("ct", "conntrack pressure %s: next GC runs in %lld ms", pressure ? "began" : "ended",
                static_cast<long long>(next.count()));
  NP_LOG_DEBUG("ct", "GC run %llu took %lld us", static_cast<unsigned long long>(run->number),
               static_cast<long long>(run->duration.count()));
  pressure_ = pressure;
  schedule(next);
}

}  // namespace np::ct
