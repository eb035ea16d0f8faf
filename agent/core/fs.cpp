#include "core/fs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace np::fs {

Result<std::string> readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return sysError("read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status writeFileAtomic(const std::string& path, const std::string& content, int mode) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return sysError("create " + tmp);
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return sysError("write " + tmp, e);
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) < 0 || close(fd) < 0) {
    int e = errno;
    unlink(tmp.c_str());
    return sysError("sync " + tmp, e);
  }
  if (rename(tmp.c_str(), path.c_str()) < 0) {
    int e = errno;
    unlink(tmp.c_str());
    return sysError("rename " + tmp + " to " + path, e);
  }
  auto slash = path.rfind('/');
  return syncDir(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash));
}

Status syncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sysError("open directory " + dir);
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0) return sysError("sync directory " + dir, e);
  return {};
}

Status makeDirs(const std::string& path, int mode) {
  if (path.empty()) return error("mkdir", "empty path");
  for (size_t pos = 1;; ++pos) {
    pos = path.find('/', pos);
    std::string part = path.substr(0, pos);
    if (mkdir(part.c_str(), mode) < 0 && errno != EEXIST) return sysError("mkdir " + part);
    if (pos == std::string::npos) break;
  }
  return {};
}

bool exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

Result<std::string> findCgroup2Mount() {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  while (std::getline(f, line)) {
    // ... <mount point> <options> [optional fields] - <fs type> <source> <super options>
    auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream rest(line.substr(sep + 3));
    std::string type;
    rest >> type;
    if (type != "cgroup2") continue;
    std::istringstream head(line.substr(0, sep));
    std::string id, parent, devno, root, mountPoint;
    head >> id >> parent >> devno >> root >> mountPoint;
    return mountPoint;
  }
  return error("find cgroup2 mount", "no cgroup2 filesystem in /proc/self/mountinfo");
}

bool isCgroup2(const std::string& path) {
  struct statfs st{};
  return statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

bool isBpffs(const std::string& path) {
  struct statfs st{};
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

Status ensureBpffs(const std::string& dir) {
  if (isBpffs(dir)) return {};
  NP_TRY(makeDirs(dir, 0700));
  if (isBpffs(dir)) return {};
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") < 0) return sysError("mount bpffs at " + dir);
  return {};
}

}  // namespace np::fs
