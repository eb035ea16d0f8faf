// npload: the load tool of the kube-proxy comparison (scripts/bench.sh compare).
//
//   serve  --bind ADDR... --port P      one process, one listener per address. Every connection
//                                       gets one reply line, "<ADDR>\n" (the backend names itself),
//                                       after the client's first line, and the server closes
//                                       first: TIME_WAIT stays on the server side, never on the
//                                       client's, so the client's ports and its netfilter
//                                       conntrack table are not what a slice measures.
//   crr    --targets FILE --duration-ms D
//                                       TCP_CRR: connect, send 1 line, read the reply, close;
//                                       each transaction to a target drawn uniformly at random
//                                       (a service's position in kube-proxy's chains must not
//                                       favour anyone). Prints one JSON object: transactions,
//                                       errors, rate, connect() and transaction latency
//                                       percentiles, and (--cdf FILE) the connect() latency CDF.
//   rr     --targets FILE --duration-ms D
//                                       TCP_RR: one connection per target, 1-line
//                                       request/response on it (the datapath's established path).
//   udprr  --targets FILE --duration-ms D
//                                       UDP_RR: a connected UDP socket per target, 1 datagram each
//                                       way (serve answers UDP on the same port).
//   check  --targets FILE --tries T --expect N [--udp]
//                                       correctness before timing: T connections (datagrams) to every target,
//                                       every one answered, exactly N distinct backends seen per
//                                       target. Exit 1 (and says which target) otherwise.
//
// Targets: one "ADDR:PORT" per line ('#' comments). Exit codes: 0 ok, 1 failure, 2 usage.

#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Target {
  sockaddr_in addr{};
  std::string text;
};

uint64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

sockaddr_in parseAddrPort(const std::string& s) {
  auto colon = s.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, s.substr(0, colon).c_str(), &a.sin_addr) != 1)
    throw std::runtime_error("not ADDR:PORT: '" + s + "'");
  unsigned long port = 0;
  try {
    size_t used = 0;
    port = std::stoul(s.substr(colon + 1), &used);
    if (used != s.size() - colon - 1) port = 0;
  } catch (const std::exception&) {
    port = 0;
  }
  if (port == 0 || port > 65535) throw std::runtime_error("bad port in '" + s + "'");
  a.sin_port = htons(uint16_t(port));
  return a;
}

std::vector<Target> readTargets(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read targets file " + path);
  std::vector<Target> out;
  std::string line;
  while (std::getline(in, line)) {
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    while (!line.empty() && isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    if (line.empty()) continue;
    out.push_back({parseAddrPort(line), line});
  }
  if (out.empty()) throw std::runtime_error("no targets in " + path);
  return out;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Reads until '\n' or EOF into *line (without the newline). False on error or an empty reply.
bool readLine(int fd, std::string* line) {
  line->clear();
  char buf[128];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return !line->empty();
    line->append(buf, size_t(n));
    if (auto nl = line->find('\n'); nl != std::string::npos) {
      line->resize(nl);
      return true;
    }
    if (line->size() > 256) return false;
  }
}

void setTimeouts(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// One TCP transaction: connect, "x\n", reply line, close. Returns the reply (the backend) or
// empty on failure; *connectNs is the connect() time.
std::string transact(const Target& t, uint64_t* connectNs, int timeoutMs) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return {};
  setTimeouts(s.get(), timeoutMs);
  uint64_t t0 = nowNs();
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&t.addr), sizeof t.addr) != 0) return {};
  *connectNs = nowNs() - t0;
  if (::write(s.get(), "c\n", 2) != 2) return {};
  std::string reply;
  if (!readLine(s.get(), &reply)) return {};
  // Wait for the server's FIN before closing: the server is the active closer (TIME_WAIT there).
  char rest[64];
  while (::read(s.get(), rest, sizeof rest) > 0) {
  }
  return reply;
}

// One UDP exchange on a connected socket: the reply must come from the address connected to (the
// kernel drops anything else), so an answer also proves the reverse translation.
std::string transactUdp(const Target& t, int timeoutMs) {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return {};
  setTimeouts(s.get(), timeoutMs);
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&t.addr), sizeof t.addr) != 0) return {};
  if (::send(s.get(), "c\n", 2, 0) != 2) return {};
  char buf[256];
  ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
  if (n <= 0) return {};
  std::string reply(buf, size_t(n));
  if (auto nl = reply.find('\n'); nl != std::string::npos) reply.resize(nl);
  return reply;
}

double pct(std::vector<uint64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, size_t(p / 100.0 * double(v.size())));
  std::nth_element(v.begin(), v.begin() + long(i), v.end());
  return double(v[i]) / 1000.0;  // µs
}

void writeCdf(std::vector<uint64_t> v, const std::string& path) {
  std::sort(v.begin(), v.end());
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << "# connect_us fraction\n";
  if (v.empty()) return;
  // 1000 points are plenty for a plot and keep the file small.
  size_t step = std::max<size_t>(1, v.size() / 1000);
  for (size_t i = 0; i < v.size(); i += step)
    out << double(v[i]) / 1000.0 << ' ' << double(i + 1) / double(v.size()) << '\n';
  out << double(v.back()) / 1000.0 << " 1\n";
}

struct Result {
  uint64_t txns = 0, errors = 0, elapsedNs = 0;
  std::vector<uint64_t> connectNs, txnNs;
  std::string firstError;
};

void printResult(const std::string& shape, Result& r) {
  double secs = double(r.elapsedNs) / 1e9;
  std::printf(
      "{\"shape\":\"%s\",\"transactions\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"rate\":%.1f,"
      "\"connect_p50_us\":%.2f,\"connect_p99_us\":%.2f,\"txn_p50_us\":%.2f,\"txn_p99_us\":%.2f}\n",
      shape.c_str(), static_cast<unsigned long long>(r.txns),
      static_cast<unsigned long long>(r.errors), secs, secs > 0 ? double(r.txns) / secs : 0.0,
      pct(r.connectNs, 50), pct(r.connectNs, 99), pct(r.txnNs, 50), pct(r.txnNs, 99));
  if (!r.firstError.empty()) std::fprintf(stderr, "npload: first error: %s\n", r.firstError.c_str());
}

int runCrr(const std::vector<Target>& targets, int durationMs, int timeoutMs, const std::string& cdf,
           uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, targets.size() - 1);
  Result r;
  r.connectNs.reserve(1 << 20);
  r.txnNs.reserve(1 << 20);
  uint64_t start = nowNs(), end = start + uint64_t(durationMs) * 1000000ull, now = start;
  while (now < end) {
    const Target& t = targets[pick(rng)];
    uint64_t c = 0;
    std::string reply = transact(t, &c, timeoutMs);
    uint64_t after = nowNs();
    if (reply.empty()) {
      ++r.errors;
      if (r.firstError.empty()) r.firstError = t.text + ": " + std::strerror(errno);
    } else {
      ++r.txns;
      r.connectNs.push_back(c);
      r.txnNs.push_back(after - now);
    }
    now = after;
  }
  r.elapsedNs = now - start;
  if (!cdf.empty()) writeCdf(r.connectNs, cdf);
  printResult("tcp_crr", r);
  return r.errors ? 1 : 0;
}

// RR shapes: one socket per target (up to 1024 of them, drawn at random), requests round-robin.
int runRr(const std::vector<Target>& all, int durationMs, int timeoutMs, bool udp, uint64_t seed) {
  std::vector<Target> targets = all;
  std::mt19937_64 rng(seed);
  std::shuffle(targets.begin(), targets.end(), rng);
  if (targets.size() > 1024) targets.resize(1024);
  std::vector<Fd> socks;
  for (const auto& t : targets) {
    Fd s(::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
    if (s.get() < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    setTimeouts(s.get(), timeoutMs);
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&t.addr), sizeof t.addr) != 0)
      throw std::runtime_error("connect " + t.text + ": " + std::strerror(errno));
    if (!udp) {
      int one = 1;
      setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    socks.push_back(std::move(s));
  }
  Result r;
  r.txnNs.reserve(1 << 20);
  char buf[256];
  uint64_t start = nowNs(), end = start + uint64_t(durationMs) * 1000000ull, now = start;
  for (size_t i = 0; now < end; i = (i + 1) % socks.size()) {
    int fd = socks[i].get();
    bool ok = ::send(fd, "x\n", 2, 0) == 2;
    ssize_t n = ok ? ::recv(fd, buf, sizeof buf, 0) : -1;
    uint64_t after = nowNs();
    if (n <= 0) {
      ++r.errors;
      if (r.firstError.empty()) r.firstError = targets[i].text + ": " + std::strerror(errno);
      if (!udp) break;  // a dead TCP connection stays dead
    } else {
      ++r.txns;
      r.txnNs.push_back(after - now);
    }
    now = after;
  }
  r.elapsedNs = now - start;
  printResult(udp ? "udp_rr" : "tcp_rr", r);
  return r.errors ? 1 : 0;
}

int runCheck(const std::vector<Target>& targets, int tries, size_t expect, int timeoutMs, bool udp) {
  size_t bad = 0;
  for (const auto& t : targets) {
    std::set<std::string> seen;
    int failed = 0;
    for (int i = 0; i < tries; ++i) {
      uint64_t c = 0;
      std::string reply = udp ? transactUdp(t, timeoutMs) : transact(t, &c, timeoutMs);
      if (reply.empty())
        ++failed;
      else
        seen.insert(reply);
    }
    if (failed || seen.size() != expect) {
      if (bad++ < 5) {
        std::fprintf(stderr, "npload check: %s: %d/%d failed, %zu distinct backends (want %zu):",
                     t.text.c_str(), failed, tries, seen.size(), expect);
        for (const auto& s : seen) std::fprintf(stderr, " %s", s.c_str());
        std::fprintf(stderr, "\n");
      }
    }
  }
  std::printf("{\"checked\":%zu,\"bad\":%zu,\"tries\":%d,\"expect\":%zu}\n", targets.size(), bad,
              tries, expect);
  return bad ? 1 : 0;
}

// serve: epoll over one TCP listener and one UDP socket per address.
int runServe(const std::vector<std::string>& binds, int port) {
  Fd ep(epoll_create1(EPOLL_CLOEXEC));
  struct Sock {
    Fd fd;
    std::string name;
    bool udp;
    bool listener;
  };
  std::map<int, Sock> socks;
  auto watch = [&](int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
      throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
  };
  for (const auto& b : binds) {
    sockaddr_in a = parseAddrPort(b + ":" + std::to_string(port));
    for (bool udp : {false, true}) {
      Fd s(::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      int one = 1;
      setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw std::runtime_error("bind " + b + ": " + std::strerror(errno));
      if (!udp && ::listen(s.get(), 4096) != 0)
        throw std::runtime_error("listen " + b + ": " + std::strerror(errno));
      int fd = s.get();
      watch(fd);
      socks.emplace(fd, Sock{std::move(s), b, udp, true});
    }
  }
  std::fprintf(stderr, "npload serve: %zu addresses on port %d\n", binds.size(), port);
  epoll_event evs[64];
  char buf[512];
  for (;;) {
    int n = epoll_wait(ep.get(), evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      auto it = socks.find(evs[i].data.fd);
      if (it == socks.end()) continue;
      Sock& s = it->second;
      if (s.udp) {
        sockaddr_in peer{};
        socklen_t len = sizeof peer;
        ssize_t got = recvfrom(s.fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
        if (got > 0) {
          std::string reply = s.name + "\n";
          sendto(s.fd.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
        }
      } else if (s.listener) {
        for (;;) {
          int c = accept4(s.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (c < 0) break;
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          watch(c);
          socks.emplace(c, Sock{Fd(c), s.name, false, false});
        }
      } else {
        ssize_t got = ::read(s.fd.get(), buf, sizeof buf);
        if (got > 0) {
          std::string reply = s.name + "\n";
          (void)!::write(s.fd.get(), reply.data(), reply.size());
          // "c\n" (CRR) asks for one reply and the server's close: the server closes first, so
          // TIME_WAIT stays on this side. "x\n" (RR) keeps the connection.
          if (buf[0] != 'c') continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        socks.erase(it);  // closes
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"npload: load and correctness tool of scripts/bench.sh compare"};
  app.require_subcommand(1);
  std::string targetsPath, cdf;
  int durationMs = 2000, timeoutMs = 2000, tries = 100, port = 8080;
  size_t expect = 1;
  uint64_t seed = 1;
  std::vector<std::string> binds;

  auto* serve = app.add_subcommand("serve", "answer every connection/datagram with the address it reached");
  serve->add_option("--bind", binds, "address to listen on (repeatable)")->required();
  serve->add_option("--port", port, "TCP and UDP port")->check(CLI::Range(1, 65535));
  auto addLoad = [&](CLI::App* c) {
    c->add_option("--targets", targetsPath, "file of ADDR:PORT lines")->required();
    c->add_option("--duration-ms", durationMs, "slice length")->check(CLI::Range(1, 3600000));
    c->add_option("--timeout-ms", timeoutMs, "per-operation timeout")->check(CLI::Range(1, 60000));
    c->add_option("--seed", seed, "target choice seed");
  };
  auto* crr = app.add_subcommand("crr", "TCP connect/request/response/close transactions");
  addLoad(crr);
  crr->add_option("--cdf", cdf, "write the connect() latency CDF here");
  auto* rr = app.add_subcommand("rr", "TCP request/response on long-lived connections");
  addLoad(rr);
  auto* udprr = app.add_subcommand("udprr", "UDP request/response on connected sockets");
  addLoad(udprr);
  auto* check = app.add_subcommand("check", "every target answers, with exactly N backends");
  check->add_option("--targets", targetsPath, "file of ADDR:PORT lines")->required();
  check->add_option("--tries", tries, "connections per target")->check(CLI::Range(1, 100000));
  check->add_option("--expect", expect, "distinct backends per target")->required();
  check->add_option("--timeout-ms", timeoutMs, "per-connection timeout")->check(CLI::Range(1, 60000));
  bool checkUdp = false;
  check->add_flag("--udp", checkUdp, "UDP datagrams on connected sockets instead of TCP connections");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (serve->parsed()) return runServe(binds, port);
    auto targets = readTargets(targetsPath);
    if (crr->parsed()) return runCrr(targets, durationMs, timeoutMs, cdf, seed);
    if (rr->parsed()) return runRr(targets, durationMs, timeoutMs, false, seed);
    if (udprr->parsed()) return runRr(targets, durationMs, timeoutMs, true, seed);
    return runCheck(targets, tries, expect, timeoutMs, checkUdp);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npload: %s\n", e.what());
    return 1;
  }
}
