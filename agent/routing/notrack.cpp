#include "routing/notrack.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace np::routing {

namespace {

struct Run {
  int status = -1;  // exit code, or -1 when it did not run to an exit
  std::string output;
};

// Runs iptables with args (no shell), collecting its stdout and stderr.
Result<Run> runIptables(const std::string& bin, const std::vector<std::string>& args) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return sysError("pipe for " + bin);
  std::vector<std::string> all{bin, "-w"};  // wait for the xtables lock instead of failing
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(pipefd[0]);
    close(pipefd[1]);
    return Error{e, "fork " + bin, ""};
  }
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(pipefd[1]);
  Run r;
  char buf[512];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n > 0) {
      r.output.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  close(pipefd[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st)) r.status = WEXITSTATUS(st);
  if (r.status == 127) return error("run " + bin, "not found (install iptables)");
  return r;
}

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

Status must(const std::string& bin, const std::vector<std::string>& args) {
  auto r = runIptables(bin, args);
  if (!r) return r.error();
  if (r->status != 0) {
    std::string out = r->output;
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
    return error(bin + " " + joined(args), "exit " + std::to_string(r->status) + ": " + out);
  }
  return {};
}

// True when the command succeeds (a -C check, a -L of a chain that may not exist).
Result<bool> holds(const std::string& bin, const std::vector<std::string>& args) {
  auto r = runIptables(bin, args);
  if (!r) return r.error();
  return r->status == 0;
}

const char* parentOf(const std::string& chain) {
  return chain == kNoTrackPreChain ? "PREROUTING" : "OUTPUT";
}

}  // namespace

std::vector<std::vector<std::string>> noTrackRules(const Cidr& cidr) {
  std::vector<std::vector<std::string>> rules;
  for (const char* chain : {kNoTrackPreChain, kNoTrackOutputChain}) {
    for (const char* match : {"-s", "-d"}) {
      rules.push_back({"-t", "raw", "-A", chain, match, cidr.str(), "-m", "comment", "--comment",
                       "nodepath: NOTRACK for pod traffic", "-j", "CT", "--notrack"});
    }
  }
  return rules;
}

Status installNoTrack(const Cidr& cidr, const std::string& bin) {
  for (const std::string chain : {kNoTrackPreChain, kNoTrackOutputChain}) {
    auto exists = holds(bin, {"-t", "raw", "-S", chain});
    if (!exists) return exists.error();
    // Refilled from empty: a changed CIDR leaves no stale rule behind.
    NP_TRY(must(bin, {"-t", "raw", *exists ? "-F" : "-N", chain}));
  }
  for (const auto& rule : noTrackRules(cidr)) NP_TRY(must(bin, rule));
  for (const std::string chain : {kNoTrackPreChain, kNoTrackOutputChain}) {
    auto jumps = holds(bin, {"-t", "raw", "-C", parentOf(chain), "-j", chain});
    if (!jumps) return jumps.error();
    if (!*jumps) NP_TRY(must(bin, {"-t", "raw", "-I", parentOf(chain), "1", "-j", chain}));
  }
  return {};
}

Result<int> removeNoTrack(const std::string& bin) {
  int found = 0;
  for (const std::string chain : {kNoTrackPreChain, kNoTrackOutputChain}) {
    auto exists = holds(bin, {"-t", "raw", "-S", chain});
    if (!exists) return exists.error();
    if (!*exists) continue;
    ++found;
    for (;;) {  // a jump added twice by hand goes too
      auto jumps = holds(bin, {"-t", "raw", "-C", parentOf(chain), "-j", chain});
      if (!jumps) return jumps.error();
      if (!*jumps) break;
      NP_TRY(must(bin, {"-t", "raw", "-D", parentOf(chain), "-j", chain}));
    }
    NP_TRY(must(bin, {"-t", "raw", "-F", chain}));
    NP_TRY(must(bin, {"-t", "raw", "-X", chain}));
  }
  return found;
}

}  // namespace np::routing
