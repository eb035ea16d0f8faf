#include "k8s/refused.h"

#include <algorithm>

namespace np::k8s {

std::chrono::milliseconds RefusedServices::backoff(uint32_t attempts) {
  if (attempts == 0) return std::chrono::milliseconds(0);
  std::chrono::milliseconds d = kFirstRetry;
  for (uint32_t i = 1; i < attempts && d < kMaxRetry; ++i) d *= 2;
  return std::min(d, kMaxRetry);
}

bool RefusedServices::refuse(const std::string& name, const std::string& reason, Clock::time_point now) {
  Entry& e = entries_[name];
  const bool changed = e.reason != reason;
  e.reason = reason;
  ++e.attempts;
  e.due = now + backoff(e.attempts);
  return changed;
}

void RefusedServices::retryAllNow(Clock::time_point now) {
  for (auto& [name, e] : entries_) e.due = std::min(e.due, now);
}

std::vector<std::string> RefusedServices::due(Clock::time_point now) const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_)
    if (e.due <= now) out.push_back(name);
  return out;
}

std::optional<RefusedServices::Clock::time_point> RefusedServices::nextDue() const {
  std::optional<Clock::time_point> out;
  for (const auto& [name, e] : entries_)
    if (!out || e.due < *out) out = e.due;
  return out;
}

}  // namespace np::k8s
