#include "flows/store.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

namespace np::flows {

void FlowStore::pushLocked(Entry&& e) {
  if (capacity_ == 0) {
    next_++;
    return;
  }
  if (ring_.size() < capacity_) {
    ring_.push_back(std::move(e));
  } else {
    ring_[head_] = std::move(e);
    head_ = (head_ + 1) % capacity_;
  }
  next_++;
}

void FlowStore::push(flow::Flow f) {
  {
    std::lock_guard<std::mutex> l(mu_);
    pushLocked(Entry{std::move(f)});
  }
  cv_.notify_all();
}

void FlowStore::push(FlowRecord* recs, size_t n) {
  if (n == 0) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < n; i++) pushLocked(Entry{std::move(recs[i])});
  }
  cv_.notify_all();
}

const FlowStore::Entry& FlowStore::at(uint64_t seq) const {
  uint64_t oldest = next_ - ring_.size();
  return ring_[(head_ + (seq - oldest)) % ring_.size()];
}

int64_t FlowStore::seconds(const Entry& e) const {
  if (const auto* r = std::get_if<FlowRecord>(&e)) return recordSeconds(*r, monoToRealtimeNs_);
  return std::get<flow::Flow>(e).time().seconds();
}

FlowStore::Stats FlowStore::stats() const {
  auto now = google::protobuf::util::TimeUtil::GetCurrentTime();
  int64_t cutoff = now.seconds() - 60;
  std::lock_guard<std::mutex> l(mu_);
  Stats s;
  s.seen = next_;
  s.num = ring_.size();
  s.capacity = capacity_;
  size_t recent = 0;
  for (uint64_t seq = next_; seq > next_ - ring_.size() && seconds(at(seq - 1)) >= cutoff; seq--) recent++;
  s.ratePerSec = static_cast<double>(recent) / 60.0;
  return s;
}

uint64_t FlowStore::read(uint64_t from, std::vector<std::pair<uint64_t, flow::Flow>>& out, size_t max) const {
  // Copied out under the lock (a record is its bytes and a few references), rendered after it:
  // the reader thread never waits for a client's flows to be built.
  std::vector<std::pair<uint64_t, Entry>> taken;
  uint64_t seq;
  {
    std::lock_guard<std::mutex> l(mu_);
    uint64_t oldest = next_ - ring_.size();
    if (from < oldest) from = oldest;
    seq = from;
    taken.reserve(static_cast<size_t>(std::min<uint64_t>(next_ - from, max)));
    for (; seq < next_ && max > 0; seq++, max--) taken.emplace_back(seq, at(seq));
  }
  out.reserve(out.size() + taken.size());
  for (auto& [s, e] : taken) {
    if (auto* r = std::get_if<FlowRecord>(&e)) out.emplace_back(s, renderFlow(*r, nodeName_, monoToRealtimeNs_));
    else out.emplace_back(s, std::move(std::get<flow::Flow>(e)));
  }
  return seq;
}

uint64_t FlowStore::oldestSeq() const {
  std::lock_guard<std::mutex> l(mu_);
  return next_ - ring_.size();
}

uint64_t FlowStore::nextSeq() const {
  std::lock_guard<std::mutex> l(mu_);
  return next_;
}

uint64_t FlowStore::waitFor(uint64_t seq, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, timeout, [&] { return next_ > seq || closed_; });
  return next_;
}

void FlowStore::close() {
  {
    std::lock_guard<std::mutex> l(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool FlowStore::closed() const {
  std::lock_guard<std::mutex> l(mu_);
  return closed_;
}

}  // namespace np::flows
