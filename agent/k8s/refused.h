// Kubernetes service ports the model refused (their name is a local-API service's, a frontend
// another service holds, a map is full, ...) and when each is tried again. A refusal is not
// final: the reason can go away without the Kubernetes service changing (the local service is
// deleted, capacity frees up), so a refused port is retried on its own, with backoff per name
// (1 s, doubling, at most 60 s), and at once when the agent's other sources change.
// Pure and single-threaded (the agent's loop): the agent feeds refusals and successes in and
// asks what is due.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace np::k8s {

class RefusedServices {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kFirstRetry{1000};
  static constexpr std::chrono::milliseconds kMaxRetry{60000};

  struct Entry {
    std::string reason;
    uint32_t attempts = 0;  // refusals in a row
    Clock::time_point due;  // the next try
  };

  // The model refused `name` (again): the next try waits one backoff step longer. Returns
  // whether the reason is new (worth a log line).
  bool refuse(const std::string& name, const std::string& reason, Clock::time_point now);
  // Applied, or deleted from Kubernetes: nothing to retry.
  void forget(const std::string& name) { entries_.erase(name); }
  // Something that may have been in the way changed (a local-API or HostPort service): every
  // refused name is due now. Backoff steps are kept, so a name that stays refused is not retried
  // in a tight loop by a busy local API.
  void retryAllNow(Clock::time_point now);
  // Names whose try is due at `now`, in name order.
  std::vector<std::string> due(Clock::time_point now) const;
  // The earliest next try, if anything is refused.
  std::optional<Clock::time_point> nextDue() const;

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  const std::map<std::string, Entry>& entries() const { return entries_; }

  // The wait after `attempts` refusals in a row.
  static std::chrono::milliseconds backoff(uint32_t attempts);

 private:
  std::map<std::string, Entry> entries_;
};

}  // namespace np::k8s
