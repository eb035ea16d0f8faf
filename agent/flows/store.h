// The bounded store of the last N flows (--hubble-event-buffer-capacity), shared by the reader
// thread (push) and the Hubble API's streams (read, wait). Thread-safe; every flow gets a
// sequence number so a follower never misses or repeats one while it keeps up, and learns how
// many it lost when it falls behind the ring. The reader pushes records (decode.h: the event and
// the names it had), which read() renders into flows outside the lock: the store holds each
// flow's ~250 bytes instead of its message, and a flow nobody reads is never built.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "flow/flow.pb.h"
#include "flows/decode.h"

namespace np::flows {

class FlowStore {
 public:
  // nodeName, monoToRealtimeNs: what records are rendered with (the node's flows carry its name).
  explicit FlowStore(size_t capacity, std::string nodeName = {}, int64_t monoToRealtimeNs = 0)
      : capacity_(capacity), nodeName_(std::move(nodeName)), monoToRealtimeNs_(monoToRealtimeNs) {}

  void push(flow::Flow f);
  // n records (one event's: a socket translation is two flows) under one lock.
  void push(FlowRecord* recs, size_t n);

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
  int64_t monoToRealtimeNs() const { return monoToRealtimeNs_; }
  uint64_t nextSeq() const;
  // Blocks until a flow with sequence >= seq exists, the store is closed or the timeout passes.
  // Returns nextSeq().
  uint64_t waitFor(uint64_t seq, std::chrono::milliseconds timeout) const;
  // Wakes every waiter for good (agent shutdown).
  void close();
  bool closed() const;

 private:
  using Entry = std::variant<FlowRecord, flow::Flow>;
  void pushLocked(Entry&& e);
  int64_t seconds(const Entry& e) const;
  const Entry& at(uint64_t seq) const;  // seq in [oldest, next_)

  size_t capacity_;
  std::string nodeName_;
  int64_t monoToRealtimeNs_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  // A ring of capacity_ entries once full (grown to it as flows come): the oldest at head_.
  std::vector<Entry> ring_;
  size_t head_ = 0;
  uint64_t next_ = 0;  // sequence of the next flow pushed
  bool closed_ = false;
};

}  // namespace np::flows
