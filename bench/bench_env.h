// What both benchmarks need around the thing they measure: a private network + mount namespace
// with its own bpffs, commands run without a shell, cleanup that also happens on SIGINT/SIGTERM,
// and the statistics every reported number goes through.
//
// Errors are std::runtime_error: a benchmark either sets up completely or stops, and RAII undoes
// what was set up on the way out. Single-threaded; the signal path is async-signal-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace np::bench {

// Runs argv[0] (found in PATH) with its arguments, waits for it. Returns the exit status (or 128 +
// signal). Stdout is captured into *out when given, else inherited; stderr is inherited, or
// discarded when quiet.
int run(const std::vector<std::string>& argv, std::string* out = nullptr, bool quiet = false);
// run(), throwing when the status is not 0.
void must(const std::vector<std::string>& argv);

// Moves this process into a new network and mount namespace: every mount is made private (nothing
// mounted here is seen outside, and everything goes away with the process), and lo is brought up.
// Throws when not root or when unshare fails.
void enterPrivateNamespaces();

// Brings up a veth pair in the current namespace; `addr` ("192.168.10.100/24") goes on `name`.
void addVeth(const std::string& name, const std::string& peer, const std::string& addr = {});

// Process-wide list of things to undo if SIGINT/SIGTERM arrives before the normal cleanup runs.
// Everything is kept in fixed buffers so the handler stays async-signal-safe. Installs the
// handlers on first use.
namespace onSignal {
void killPid(pid_t pid);  // SIGKILL it
void forgetPid(pid_t pid);
void unmount(const std::string& path);  // umount2(MNT_DETACH) then rmdir
void forgetUnmount(const std::string& path);
void unlink(const std::string& path);  // files, removed before the directories below
void forgetUnlink(const std::string& path);
void rmdir(const std::string& path);  // in the order registered: children first
void forgetRmdir(const std::string& path);
}  // namespace onSignal

// A bpffs instance on a fresh directory (mkdtemp under `parent`), unmounted and removed again by
// the destructor. Mount it after enterPrivateNamespaces() so no other namespace ever sees it.
class Bpffs {
 public:
  explicit Bpffs(const std::string& parent);
  ~Bpffs();
  Bpffs(const Bpffs&) = delete;
  Bpffs& operator=(const Bpffs&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A directory made with mkdtemp under `parent`, removed recursively by the destructor.
class TempDir {
 public:
  TempDir(const std::string& parent, const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct Summary {
  double median = 0, min = 0, max = 0;
  size_t n = 0;
};
Summary summarize(std::vector<double> v);

// "12.3" style formatting for tables.
std::string fixed(double v, int decimals);

// Monotonic clock in nanoseconds.
uint64_t nowNs();

// Fields of /proc/<pid>/status in KiB ("VmRSS", "VmHWM"); -1 when missing.
long procStatusKib(pid_t pid, const std::string& field);

// "memlock:" of an fd's /proc/self/fdinfo entry (bytes charged for a BPF map); -1 when missing.
long long fdMemlock(int fd);

}  // namespace np::bench
