#include "core/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace np {

int flockHolder(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return 0;
  // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:9978270 0 EOF"; blocked waiters are "1: -> FLOCK ...".
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream in(line);
    std::string id, type, mode, rw, where;
    int pid = 0;
    in >> id >> type;
    if (type == "->") continue;
    in >> mode >> rw >> pid >> where;  // where: "<major hex>:<minor hex>:<inode>"
    unsigned maj = 0, min = 0;
    unsigned long long inode = 0;
    if (type != "FLOCK" || std::sscanf(where.c_str(), "%x:%x:%llu", &maj, &min, &inode) != 3) continue;
    if (inode == st.st_ino && maj == major(st.st_dev) && min == minor(st.st_dev)) return pid;
  }
  return 0;
}

Result<InstanceLock> InstanceLock::acquire(const std::string& path) {
  struct stat st {};
  const bool dir = stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  int fd = dir ? open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
               : open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sysError("open lock " + path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    int holder = e == EWOULDBLOCK ? flockHolder(fd) : 0;
    close(fd);
    if (e != EWOULDBLOCK) return sysError("lock " + path, e);
    std::string who = holder > 0 ? "another nodepath-agent (pid " + std::to_string(holder) + ")"
                                 : "another nodepath-agent";
    return Error{EWOULDBLOCK, "lock " + path,
                 who + " is running on this node and holds it; stop that agent first (one agent per node)"};
  }
  if (!dir) {
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      int e = errno;
      close(fd);
      return sysError("write " + path, e);
    }
  }
  return InstanceLock(fd, path);
}

InstanceLock::~InstanceLock() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace np
