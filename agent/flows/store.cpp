#include "flows/store.h"

#include <google/protobuf/util/time_util.h>

namespace np::flows {

void FlowStore::push(flow::Flow f) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (ring_.size() == capacity_) ring_.pop_front();
    ring_.push_back(std::move(f));
    next_++;
  }
  cv_.notify_all();
}

FlowStore::Stats FlowStore::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  Stats s;
  s.seen = next_;
  s.num = ring_.size();
  s.capacity = capacity_;
  auto now = google::protobuf::util::TimeUtil::GetCurrentTime();
  int64_t cutoff = now.seconds() - 60;
  size_t recent = 0;
  for (auto it = ring_.rbegin(); it != ring_.rend() && it->time().seconds() >= cutoff; ++it) recent++;
  s.ratePerSec = static_cast<double>(recent) / 60.0;
  return s;
}

uint64_t FlowStore::read(uint64_t from, std::vector<std::pair<uint64_t, flow::Flow>>& out, size_t max) const {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t oldest = next_ - ring_.size();
  if (from < oldest) from = oldest;
  uint64_t seq = from;
  for (; seq < next_ && max > 0; seq++, max--) out.emplace_back(seq, ring_[seq - oldest]);
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
