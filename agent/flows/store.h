// The bounded store of the last N flows (--hubble-event-buffer-capacity), shared by the reader
// thread (push) and the Hubble API's streams (read, wait). Thread-safe; every flow gets a
// sequence number so a follower never misses or repeats one while it keeps up, and learns how
// many it lost when it falls behind the ring.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "flow/flow.pb.h"

namespace np::flows {

class FlowStore {
 public:
  explicit FlowStore(size_t capacity) : capacity_(capacity) {}

  void push(flow::Flow f);

  struct Stats {
    uint64_t seen = 0;       // flows ever pushed
    size_t num = 0;          // flows held now
    size_t capacity = 0;
    double ratePerSec = 0;   // flows of the last minute / 60, as Hubble computes it
  };
  Stats stats() const;

  // Flows with sequence >= from, oldest first (at most max); returns the sequence after the last
  // one returned. A from older than the ring's oldest starts at the oldest.
  uint64_t read(uint64_t from, std::vector<std::pair<uint64_t, flow::Flow>>& out, size_t max = SIZE_MAX) const;
  uint64_t oldestSeq() const;
  uint64_t nextSeq() const;
  // Blocks until a flow with sequence >= seq exists, the store is closed or the timeout passes.
  // Returns nextSeq().
  uint64_t waitFor(uint64_t seq, std::chrono::milliseconds timeout) const;
  // Wakes every waiter for good (agent shutdown).
  void close();
  bool closed() const;

 private:
  size_t capacity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::deque<flow::Flow> ring_;
  uint64_t next_ = 0;  // sequence of the next flow pushed
  bool closed_ = false;
};

}  // namespace np::flows
