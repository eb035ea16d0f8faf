// One agent per node: an exclusive flock(2) held for the life of the process. The kernel drops
// it when the process dies (kill -9 included), so a crashed agent never blocks its successor.
#pragma once

#include <string>

#include "core/result.h"

namespace np {

class InstanceLock {
 public:
  // Locks `path` (created if missing; a directory is locked as it is, a file gets our PID
  // written into it for people reading it). When another process holds the lock the error names
  // its PID (read from /proc/locks) and the path, with EWOULDBLOCK.
  static Result<InstanceLock> acquire(const std::string& path);

  InstanceLock(InstanceLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  InstanceLock& operator=(InstanceLock&&) = delete;
  InstanceLock(const InstanceLock&) = delete;
  ~InstanceLock();

  const std::string& path() const { return path_; }

 private:
  InstanceLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// The PID holding a flock on the file open as `fd`, from /proc/locks; 0 when none is found.
int flockHolder(int fd);

}  // namespace np
