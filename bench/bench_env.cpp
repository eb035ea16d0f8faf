#include "bench_env.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace np::bench {
namespace {

std::string joined(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// Fixed-size, signal-safe registry (see bench_env.h).
constexpr int kSlots = 8;
constexpr size_t kPathMax = 512;
volatile pid_t gPids[kSlots];
char gUnmounts[kSlots][kPathMax];
char gUnlinks[kSlots][kPathMax];
char gRmdirs[kSlots][kPathMax];
bool gInstalled = false;

void handler(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (gPids[i] > 0) ::kill(gPids[i], SIGKILL);
  for (int i = 0; i < kSlots; ++i)
    if (gUnmounts[i][0]) {
      ::umount2(gUnmounts[i], MNT_DETACH);
      ::rmdir(gUnmounts[i]);
    }
  for (int i = 0; i < kSlots; ++i)
    if (gUnlinks[i][0]) ::unlink(gUnlinks[i]);
  for (int i = 0; i < kSlots; ++i)
    if (gRmdirs[i][0]) ::rmdir(gRmdirs[i]);
  ::_exit(128 + sig);
}

void install() {
  if (gInstalled) return;
  struct sigaction sa{};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  gInstalled = true;
}

void addPath(char (*slots)[kPathMax], const std::string& path) {
  install();
  if (path.size() >= kPathMax) return;
  for (int i = 0; i < kSlots; ++i)
    if (!slots[i][0]) {
      std::memcpy(slots[i], path.c_str(), path.size() + 1);
      return;
    }
}

void removePath(char (*slots)[kPathMax], const std::string& path) {
  for (int i = 0; i < kSlots; ++i)
    if (path == slots[i]) slots[i][0] = '\0';
}

}  // namespace

namespace onSignal {
void killPid(pid_t pid) {
  install();
  for (int i = 0; i < kSlots; ++i)
    if (gPids[i] <= 0) {
      gPids[i] = pid;
      return;
    }
}
void forgetPid(pid_t pid) {
  for (int i = 0; i < kSlots; ++i)
    if (gPids[i] == pid) gPids[i] = 0;
}
void unmount(const std::string& path) { addPath(gUnmounts, path); }
void forgetUnmount(const std::string& path) { removePath(gUnmounts, path); }
void unlink(const std::string& path) { addPath(gUnlinks, path); }
void forgetUnlink(const std::string& path) { removePath(gUnlinks, path); }
void rmdir(const std::string& path) { addPath(gRmdirs, path); }
void forgetRmdir(const std::string& path) { removePath(gRmdirs, path); }
}  // namespace onSignal

int run(const std::vector<std::string>& argv, std::string* out, bool quiet) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipeFds[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out) {
    if (pipe2(pipeFds, O_CLOEXEC) != 0) fail("pipe");
    posix_spawn_file_actions_adddup2(&fa, pipeFds[1], STDOUT_FILENO);
  }
  if (quiet) posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (out) close(pipeFds[1]);
  if (rc != 0) {
    if (out) close(pipeFds[0]);
    errno = rc;
    fail("run " + joined(argv));
  }
  if (out) {
    out->clear();
    char buf[4096];
    ssize_t n;
    while ((n = read(pipeFds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) out->append(buf, static_cast<size_t>(n));
    close(pipeFds[0]);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail("wait for " + joined(argv));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void must(const std::vector<std::string>& argv) {
  int rc = run(argv);
  if (rc != 0) throw std::runtime_error(joined(argv) + ": exit status " + std::to_string(rc));
}

void enterPrivateNamespaces() {
  if (geteuid() != 0) throw std::runtime_error("must run as root (network namespace, bpffs, BPF programs)");
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNET | CLONE_NEWNS)");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("make mounts private");
  must({"ip", "link", "set", "lo", "up"});
}

void addVeth(const std::string& name, const std::string& peer, const std::string& addr) {
  must({"ip", "link", "add", name, "type", "veth", "peer", "name", peer});
  if (!addr.empty()) must({"ip", "addr", "add", addr, "dev", name});
  must({"ip", "link", "set", name, "up"});
  must({"ip", "link", "set", peer, "up"});
}

Bpffs::Bpffs(const std::string& parent) {
  std::string tmpl = parent + "/bpffs-XXXXXX";
  if (!mkdtemp(tmpl.data())) fail("mkdtemp " + tmpl);
  path_ = tmpl;
  onSignal::unmount(path_);
  if (mount("bpf", path_.c_str(), "bpf", 0, "mode=0700") != 0) {
    int e = errno;
    ::rmdir(path_.c_str());
    onSignal::forgetUnmount(path_);
    errno = e;
    fail("mount bpffs at " + path_);
  }
}

Bpffs::~Bpffs() {
  umount2(path_.c_str(), MNT_DETACH);
  ::rmdir(path_.c_str());
  onSignal::forgetUnmount(path_);
}

TempDir::TempDir(const std::string& parent, const std::string& prefix) {
  std::string tmpl = parent + "/" + prefix + "XXXXXX";
  if (!mkdtemp(tmpl.data())) fail("mkdtemp " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Summary summarize(std::vector<double> v) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  return s;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

uint64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

long procStatusKib(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream in(line.substr(field.size() + 1));
    long kib = -1;
    in >> kib;
    return kib;
  }
  return -1;
}

long long fdMemlock(int fd) {
  std::ifstream f("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("memlock:", 0) != 0) continue;
    return std::stoll(line.substr(8));
  }
  return -1;
}

}  // namespace np::bench
