// sock_bench: what the socket LB's hooks (sock.bpf.c) add to a connect(), in ns per socket.
//
// BPF_PROG_TEST_RUN cannot run cgroup socket programs, so this times real system calls: a child
// process in a cgroup of the run's own makes sockets in a loop (socket(), connect(), close()) and
// the parent compares cgroups with and without the hooks, in interleaved rounds (order rotated,
// round 0 dropped, differences paired by round). The run is in a private network namespace with
// only lo: every connect() runs the hooks, then fails with ENETUNREACH at the route lookup, so no
// packet is sent and the kernel's work after the hooks is the same in every case.
//
// Cases, TCP and UDP:
//   bare:      a cgroup without the hooks, connect() to a backend's address (what a client that
//              needs no translation pays)
//   miss:      the hooks, connect() to an address that is no service (every other connect() of
//              the node)
//   service:   the hooks, connect() to a ClusterIP with --backends backends: the service and
//              backend lookups, the translation, the reverse record (TCP: the cookie hash, deleted
//              by cgroup/sock_release when the socket goes; UDP: socket storage) and, with
//              --trace, the flow event (read by the agent's own reader, agent/flows)
// Reported: the median ns per socket of each case over the rounds, and each case minus bare.
//
// Usage: sock_bench [--rounds N] [--sockets N] [--backends N] [--trace] [--work-dir DIR]
// Needs root. The cgroups (under the cgroup2 mount, np-sockbench-<pid>-*) and the bpffs go away
// at the end, also on SIGINT/SIGTERM.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench_env.h"
#include "core/fs.h"
#include "datapath/lb_maps.h"
#include "datapath/programs.h"
#include "flows/flows.h"
#include "np_lb.h"
#include "np_trace.h"

using namespace np::bench;

namespace {

constexpr const char* kServiceIp = "10.43.0.10";  // in NodeContext's default service CIDR
constexpr uint16_t kServicePort = 80;
constexpr const char* kOtherIp = "10.44.0.10";  // no service
constexpr uint16_t kBackendPort = 8080;

struct Options {
  int rounds = 8;
  long sockets = 100000;  // per case and round
  int backends = 10;
  bool trace = false;
  std::string workDir = "/tmp";
};

Options parseArgs(int argc, char** argv) {
  Options o;
  CLI::App app{"sock_bench: ns per socket (socket + connect + close) with and without the socket-LB hooks; needs root"};
  app.add_option("--rounds", o.rounds, "rounds, the first dropped")->check(CLI::Range(2, 1000));
  app.add_option("--sockets", o.sockets, "sockets per case and round")->check(CLI::Range(1000L, 100000000L));
  app.add_option("--backends", o.backends, "backends of the service")->check(CLI::Range(1, 200));
  app.add_flag("--trace", o.trace, "flow events on, read by the agent's own reader");
  app.add_option("--work-dir", o.workDir, "where the bpffs and the run directory go");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  return o;
}

template <typename T>
T unwrap(np::Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().message());
  return std::move(r.value());
}

std::string backendIp(int i) { return "10.0." + std::to_string(1 + i / 200) + "." + std::to_string(10 + i % 200); }

void programService(const np::datapath::SockProgram& prog, int backends) {
  auto maps = unwrap(np::datapath::BpfLbMaps::of(prog.mapFd(NP_STR(NP_MAP_SERVICES)), prog.mapFd(NP_STR(NP_MAP_BACKENDS)),
                                                 prog.mapFd(NP_STR(NP_MAP_REVNAT)),
                                                 prog.mapFd(NP_STR(NP_MAP_AFFINITY_MATCH)),
                                                 prog.mapFd(NP_STR(NP_MAP_MAGLEV)), NP_DEFAULT_MAGLEV_TABLE_SIZE),
                     "service maps");
  np::lb::NodeContext node;
  node.nodeIps = {*np::Ipv4::parse("192.0.2.1")};
  np::lb::Reconciler reconciler(maps, node);
  if (auto adopted = reconciler.adopt(); !adopted) throw std::runtime_error("adopt: " + adopted.error().message());
  for (const char* proto : {"TCP", "UDP"}) {
    np::lb::Service svc;
    svc.name = std::string("bench/clusterip-") + (std::string(proto) == "TCP" ? "tcp" : "udp");
    svc.clusterIp = *np::Ipv4::parse(kServiceIp);
    svc.port = kServicePort;
    svc.protocol = std::string(proto) == "TCP" ? np::Protocol::Tcp : np::Protocol::Udp;
    for (int i = 0; i < backends; ++i)
      svc.backends.push_back({np::Endpoint{*np::Ipv4::parse(backendIp(i)), kBackendPort}, np::lb::BackendState::Active});
    auto change = reconciler.upsert(std::move(svc));
    if (!change) throw std::runtime_error("program the service: " + change.error().message());
  }
}

// A cgroup of the run's own, removed by the destructor (its processes have exited by then).
class Cgroup {
 public:
  Cgroup(const std::string& parent, const std::string& name) : path_(parent + "/" + name) {
    if (mkdir(path_.c_str(), 0755) != 0) throw std::runtime_error("mkdir " + path_ + ": " + strerror(errno));
    onSignal::rmdir(path_);
    fd_ = open(path_.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd_ < 0) throw std::runtime_error("open " + path_ + ": " + strerror(errno));
  }
  ~Cgroup() {
    for (bpf_link* l : links_) bpf_link__destroy(l);
    close(fd_);
    rmdir(path_.c_str());
    onSignal::forgetRmdir(path_);
  }
  void attach(bpf_program* prog, const char* what) {
    bpf_link* l = bpf_program__attach_cgroup(prog, fd_);
    if (!l) throw std::runtime_error(std::string("attach ") + what + " to " + path_ + ": " + strerror(errno));
    links_.push_back(l);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<bpf_link*> links_;
};

struct Case {
  std::string name;
  const Cgroup* cg;
  int type;  // SOCK_STREAM / SOCK_DGRAM
  std::string dst;
  uint16_t port;
};

// The loop, in a child moved into the case's cgroup (sockets take the cgroup of the process that
// makes them). Returns ns per socket.
double timeCase(const Case& c, long sockets) {
  int pfd[2];
  if (pipe(pfd) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    close(pfd[0]);
    std::string procs = c.cg->path() + "/cgroup.procs";
    int fd = open(procs.c_str(), O_WRONLY);
    if (fd < 0 || write(fd, "0", 1) != 1) _exit(2);
    close(fd);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(c.port);
    inet_pton(AF_INET, c.dst.c_str(), &sa.sin_addr);
    uint64_t t0 = nowNs();
    for (long i = 0; i < sockets; i++) {
      int s = socket(AF_INET, c.type, 0);
      if (s < 0) _exit(3);
      // ENETUNREACH (no route): the hooks ran, nothing was sent
      if (connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 || errno != ENETUNREACH) _exit(4);
      close(s);
    }
    double ns = static_cast<double>(nowNs() - t0) / static_cast<double>(sockets);
    if (write(pfd[1], &ns, sizeof ns) != sizeof ns) _exit(5);
    _exit(0);
  }
  close(pfd[1]);
  onSignal::killPid(pid);
  double ns = -1;
  ssize_t got = read(pfd[0], &ns, sizeof ns);
  close(pfd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  onSignal::forgetPid(pid);
  if (got != sizeof ns || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("case " + c.name + ": the loop failed (exit " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) +
                             "; 4: connect() did not fail with ENETUNREACH)");
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options opt = parseArgs(argc, argv);
    enterPrivateNamespaces();
    Bpffs bpffs(opt.workDir);
    TempDir runDir(opt.workDir, "np-sockbench-run-");
    np::datapath::routeLibbpfLogs();
    const std::string pinDir = bpffs.path() + "/nodepath";
    if (mkdir(pinDir.c_str(), 0700) != 0) throw std::runtime_error("mkdir " + pinDir);
    np::datapath::SockParams sp;
    sp.nodeIp = *np::Ipv4::parse("192.0.2.1");
    sp.trace = {opt.trace, NP_TRACE_AGG_MEDIUM, NP_DEFAULT_TRACE_INTERVAL_S};
    auto prog = unwrap(np::datapath::SockProgram::load(pinDir, np::datapath::MapSizes{}, sp), "load sock.bpf.o");
    programService(*prog, opt.backends);
    std::unique_ptr<np::flows::Flows> flows;
    if (opt.trace) {
      // The ring buffer is pinned by the host object in the agent; here sock.bpf.o made it.
      np::flows::FlowsConfig fc;
      fc.pinDir = pinDir;
      fc.runDir = runDir.path();
      fc.nodeName = "bench";
      fc.version = "bench";
      flows = unwrap(np::flows::Flows::start(fc), "start the agent's flow reader");
    }

    const std::string root = unwrap(np::fs::findCgroup2Mount(), "cgroup2");
    const std::string tag = "np-sockbench-" + std::to_string(getpid());
    Cgroup bare(root, tag + "-bare"), hooked(root, tag + "-hooks");
    for (const auto& h : prog->hooks()) hooked.attach(h.prog, h.name);

    std::vector<Case> cases;
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
      std::string p = type == SOCK_STREAM ? "TCP" : "UDP";
      cases.push_back({p + " bare (to a backend, no hooks)", &bare, type, backendIp(0), kBackendPort});
      cases.push_back({p + " miss (hooks, no service)", &hooked, type, kOtherIp, kServicePort});
      cases.push_back({p + " service (hooks, translated)", &hooked, type, kServiceIp, kServicePort});
    }
    fprintf(stderr, "sock_bench: %d rounds x %zu cases x %ld sockets, %d backends, flow events %s\n", opt.rounds,
                cases.size(), opt.sockets, opt.backends, opt.trace ? "on (read by agent/flows)" : "off");
    std::vector<std::vector<double>> ns(cases.size());
    for (int r = 0; r < opt.rounds; r++) {
      for (size_t k = 0; k < cases.size(); k++) {
        size_t i = (k + static_cast<size_t>(r)) % cases.size();
        double v = timeCase(cases[i], opt.sockets);
        if (r > 0) ns[i].push_back(v);  // round 0 warms up
      }
    }
    printf("| case | ns per socket, median (min-max) | minus bare, median (min-max) |\n|---|---:|---:|\n");
    for (size_t i = 0; i < cases.size(); i++) {
      size_t base = i - i % 3;
      std::vector<double> diff;
      for (size_t r = 0; r < ns[i].size(); r++) diff.push_back(ns[i][r] - ns[base][r]);
      Summary s = summarize(ns[i]), d = summarize(diff);
      printf("| %s | %s (%s-%s) | %s |\n", cases[i].name.c_str(), fixed(s.median, 0).c_str(), fixed(s.min, 0).c_str(),
             fixed(s.max, 0).c_str(),
             i == base ? "-" : (fixed(d.median, 0) + " (" + fixed(d.min, 0) + "-" + fixed(d.max, 0) + ")").c_str());
    }
    if (flows) {
      auto c = flows->counters();
      fprintf(stderr, "flow events: emitted %llu, lost %llu, read %llu\n",
              static_cast<unsigned long long>(c.datapathEmitted), static_cast<unsigned long long>(c.datapathLost),
              static_cast<unsigned long long>(c.received));
    }
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "sock_bench: %s\n", e.what());
    return 1;
  }
}
