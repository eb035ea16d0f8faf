// nptraffic: TCP/UDP traffic for end-to-end tests in network namespaces (IPv4 only).
//
//   serve    an echo server that says who answered and whom it saw: every reply is
//            "<id> <client-ip>:<client-port> <request>", so a test can tell which backend took a
//            connection and whether the client address survived (or was SNAT'd) on the way.
//   connect  N independent attempts with a per-attempt timeout and a summary a script can grep.
//   hold     one long-lived connection driven line by line from stdin (a bash coprocess or a
//            fifo), for "established connections survive X" tests.
//   synflood TCP SYNs from spoofed sources (a raw socket, IP_HDRINCL) at a paced rate, for
//            "a SYN flood does not hurt established connections" tests. It refuses to run in the
//            machine's root network namespace, to send from anything but the documentation
//            ranges (RFC 5737), and to send to anything but private lab addresses.
//
// Exit codes: 0 success, 1 a runtime failure (an attempt failed, a socket could not be opened),
// 2 a usage error.

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <time.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <thread>
#include <variant>
#include <vector>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// A peer that sends this much without a newline is not speaking our protocol; dropping it keeps
// one bad client from growing the server without bound.
constexpr std::size_t kMaxLine = 64 * 1024;
constexpr int kDefaultConnectTimeoutMs = 2000;
constexpr int kDefaultHoldTimeoutMs = 3000;
constexpr std::string_view kUsage =
    "usage:\n"
    "  nptraffic serve --id NAME [--tcp PORT]... [--udp PORT]... [--bind ADDR]\n"
    "  nptraffic connect ADDR:PORT [--udp] [--count N] [--timeout-ms T] [--payload STR]\n"
    "                    [--verbose] [--connect-only] [--interval-ms T] [--report-slow-ms T]\n"
    "                    [--source-port P]   (UDP: attempt N from port P+N-1, printed as sport=.. id=..)\n"
    "  nptraffic hold ADDR:PORT [--timeout-ms T]\n"
    "  nptraffic synflood ADDR:PORT --source CIDR --rate N (--duration S | --count N)\n"
    "  nptraffic rate ADDR:PORT (--rr | --crr) --duration-ms T\n"
    "                    (TCP transactions for T ms: --rr request/response on one connection,\n"
    "                     --crr connect + request/response + close each; prints transactions= per_sec=)\n"
    "  nptraffic udpidle ADDR:PORT --churn N [--timeout-ms T]\n"
    "                    (a connected UDP socket asks ADDR:PORT, N other sockets connect() to it and\n"
    "                     getpeername(), then it asks again: replies and its peer must be ADDR:PORT)\n";

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
struct HelpRequested {};

// ---------------------------------------------------------------------------------------------
// Small plumbing: fds, errors, deadlines, addresses.

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// What failed and why, printed as "connect: Connection refused". errnum 0 means `detail` explains.
struct Error {
  std::string context;
  int errnum = 0;
  std::string detail;

  std::string text() const { return context + ": " + (errnum ? std::strerror(errnum) : detail); }
};

Error sysError(std::string context, int errnum = errno) {
  return Error{std::move(context), errnum, ""};
}

// The server keeps going after a per-client failure; it only reports it.
void logErrno(const std::string& what) {
  std::cerr << "nptraffic: " << what << ": " << std::strerror(errno) << "\n";
}

using MaybeError = std::optional<Error>;

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

class Deadline {
 public:
  explicit Deadline(int timeoutMs)
      : timeoutMs_(timeoutMs), end_(Clock::now() + std::chrono::milliseconds(timeoutMs)) {}
  int remainingMs() const {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(end_ - Clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
  }
  Error timeout(std::string context) const {
    return Error{std::move(context), 0, "timed out after " + std::to_string(timeoutMs_) + " ms"};
  }

 private:
  using Clock = std::chrono::steady_clock;
  int timeoutMs_;
  Clock::time_point end_;
};

// Waits until `fd` has one of `events` (or an error/hangup, which the caller's next syscall will
// then report with its errno).
MaybeError waitFor(int fd, short events, const Deadline& deadline, const std::string& context) {
  for (;;) {
    int left = deadline.remainingMs();
    if (left == 0) return deadline.timeout(context);
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, left);
    if (n > 0) return std::nullopt;
    if (n < 0 && errno != EINTR) return sysError("poll");
  }
}

std::string formatIp(in_addr addr) {
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &addr, buf, sizeof buf);
  return buf;
}

std::string formatAddr(const sockaddr_in& addr) {
  return formatIp(addr.sin_addr) + ":" + std::to_string(ntohs(addr.sin_port));
}

template <typename GetName>
std::string socketName(int fd, GetName getName) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  if (getName(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  return formatAddr(addr);
}

// ---------------------------------------------------------------------------------------------
// Command line. Exceptions here are turned into exit code 2 by main().

uint64_t parseNumber(std::string_view text, uint64_t min, uint64_t max, std::string_view what) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    throw UsageError(std::string(what) + " must be a number in " + std::to_string(min) + "-" +
                     std::to_string(max) + ", got '" + std::string(text) + "'");
  }
  return v;
}

uint16_t parsePort(std::string_view text, std::string_view what) {
  return static_cast<uint16_t>(parseNumber(text, 1, 65535, what));
}

in_addr parseIp(std::string_view text) {
  in_addr addr{};
  if (::inet_pton(AF_INET, std::string(text).c_str(), &addr) != 1) {
    throw UsageError("not an IPv4 address: '" + std::string(text) + "'");
  }
  return addr;
}

sockaddr_in parseEndpoint(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw UsageError("expected ADDR:PORT, got '" + std::string(text) + "'");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr = parseIp(text.substr(0, colon));
  addr.sin_port = htons(parsePort(text.substr(colon + 1), "port"));
  return addr;
}

// Walks the arguments after the subcommand; accepts "--flag value" and "--flag=value".
class ArgCursor {
 public:
  ArgCursor(int argc, char** argv, int first) : args_(argv + first, argv + argc) {}

  bool done() const { return pos_ >= args_.size(); }

  std::string_view next() {
    std::string_view tok = args_[pos_++];
    inline_.reset();
    if (tok.starts_with("--")) {
      if (auto eq = tok.find('='); eq != std::string_view::npos) {
        inline_ = tok.substr(eq + 1);
        tok = tok.substr(0, eq);
      }
    }
    if (tok == "-h" || tok == "--help") throw HelpRequested{};
    return tok;
  }

  std::string_view value(std::string_view flag) {
    if (inline_) return *std::exchange(inline_, std::nullopt);
    if (done()) throw UsageError(std::string(flag) + " needs a value");
    return args_[pos_++];
  }

  void noValue(std::string_view flag) const {
    if (inline_) throw UsageError(std::string(flag) + " takes no value");
  }

 private:
  std::vector<std::string_view> args_;
  std::size_t pos_ = 0;
  std::optional<std::string_view> inline_;
};

[[noreturn]] void unexpected(std::string_view subcommand, std::string_view tok) {
  if (tok.starts_with("-")) {
    throw UsageError("unknown option '" + std::string(tok) + "' for " + std::string(subcommand));
  }
  throw UsageError("unexpected argument '" + std::string(tok) + "' for " + std::string(subcommand));
}

struct ServeOptions {
  std::string id;
  std::vector<uint16_t> tcpPorts;
  std::vector<uint16_t> udpPorts;
  in_addr bind{htonl(INADDR_ANY)};
};

struct ConnectOptions {
  sockaddr_in target{};
  bool udp = false;
  uint64_t count = 1;
  int timeoutMs = kDefaultConnectTimeoutMs;
  std::string payload = "hello";
  bool verbose = false;
  bool connectOnly = false;
  int intervalMs = 0;  // between the starts of two attempts
  int reportSlowMs = 0;  // > 0: print "slow N: T ms" for each attempt that took at least this long
  uint16_t sourcePort = 0;  // UDP: attempt N sends from sourcePort + N - 1 (0: any port)
};

struct HoldOptions {
  sockaddr_in target{};
  int timeoutMs = kDefaultHoldTimeoutMs;
};

struct SynFloodOptions {
  sockaddr_in target{};
  uint32_t sourceNet = 0;  // host order
  int sourceBits = 0;
  uint64_t rate = 0;       // SYNs per second
  uint64_t count = 0;      // 0 = until the duration is over
  uint64_t durationMs = 0; // 0 = until count are sent
};

struct UdpIdleOptions {
  sockaddr_in target{};
  uint64_t churn = 0;
  int timeoutMs = kDefaultConnectTimeoutMs;
};

struct RateOptions {
  sockaddr_in target{};
  bool crr = false;
  uint64_t durationMs = 0;
};

using Command = std::variant<ServeOptions, ConnectOptions, HoldOptions, SynFloodOptions, UdpIdleOptions, RateOptions>;

void addPort(std::vector<uint16_t>& ports, std::string_view text, std::string_view flag) {
  uint16_t port = parsePort(text, flag);
  for (uint16_t p : ports) {
    if (p == port) {
      throw UsageError(std::string(flag) + " " + std::to_string(port) + " given twice");
    }
  }
  ports.push_back(port);
}

int parseTimeout(std::string_view text) {
  return static_cast<int>(parseNumber(text, 1, 3'600'000, "--timeout-ms"));
}

ServeOptions parseServe(ArgCursor& args) {
  ServeOptions o;
  while (!args.done()) {
    std::string_view tok = args.next();
    if (tok == "--id") {
      o.id = args.value(tok);
    } else if (tok == "--tcp") {
      addPort(o.tcpPorts, args.value(tok), tok);
    } else if (tok == "--udp") {
      addPort(o.udpPorts, args.value(tok), tok);
    } else if (tok == "--bind") {
      o.bind = parseIp(args.value(tok));
    } else {
      unexpected("serve", tok);
    }
  }
  // The id is the first word of every reply, so it must be exactly one word.
  if (o.id.empty() || o.id.find_first_of(" \t\r\n") != std::string::npos) {
    throw UsageError("serve needs --id NAME (one word)");
  }
  if (o.tcpPorts.empty() && o.udpPorts.empty()) {
    throw UsageError("serve needs at least one --tcp PORT or --udp PORT");
  }
  return o;
}

ConnectOptions parseConnect(ArgCursor& args) {
  ConnectOptions o;
  std::optional<sockaddr_in> target;
  while (!args.done()) {
    std::string_view tok = args.next();
    if (tok == "--udp") {
      args.noValue(tok);
      o.udp = true;
    } else if (tok == "--count") {
      o.count = parseNumber(args.value(tok), 1, 1'000'000, "--count");
    } else if (tok == "--timeout-ms") {
      o.timeoutMs = parseTimeout(args.value(tok));
    } else if (tok == "--payload") {
      o.payload = args.value(tok);
    } else if (tok == "--verbose") {
      args.noValue(tok);
      o.verbose = true;
    } else if (tok == "--connect-only") {
      args.noValue(tok);
      o.connectOnly = true;
    } else if (tok == "--interval-ms") {
      o.intervalMs = static_cast<int>(parseNumber(args.value(tok), 0, 60'000, "--interval-ms"));
    } else if (tok == "--report-slow-ms") {
      o.reportSlowMs = static_cast<int>(parseNumber(args.value(tok), 1, 60'000, "--report-slow-ms"));
    } else if (tok == "--source-port") {
      o.sourcePort = static_cast<uint16_t>(parseNumber(args.value(tok), 1024, 65535, "--source-port"));
    } else if (!tok.starts_with("-") && !target) {
      target = parseEndpoint(tok);
    } else {
      unexpected("connect", tok);
    }
  }
  if (!target) throw UsageError("connect needs ADDR:PORT");
  o.target = *target;
  // One request is one line on TCP; a line break inside the payload would make it two.
  if (o.payload.find_first_of("\r\n") != std::string::npos) {
    throw UsageError("--payload must not contain CR or LF");
  }
  if (o.connectOnly && o.udp) throw UsageError("--connect-only is TCP only");
  if (o.sourcePort && !o.udp) throw UsageError("--source-port is UDP only");
  if (o.sourcePort && o.sourcePort + o.count - 1 > 65535) throw UsageError("--source-port + --count passes 65535");
  return o;
}

HoldOptions parseHold(ArgCursor& args) {
  HoldOptions o;
  std::optional<sockaddr_in> target;
  while (!args.done()) {
    std::string_view tok = args.next();
    if (tok == "--timeout-ms") {
      o.timeoutMs = parseTimeout(args.value(tok));
    } else if (!tok.starts_with("-") && !target) {
      target = parseEndpoint(tok);
    } else {
      unexpected("hold", tok);
    }
  }
  if (!target) throw UsageError("hold needs ADDR:PORT");
  o.target = *target;
  return o;
}

RateOptions parseRate(ArgCursor& args) {
  RateOptions o;
  std::optional<sockaddr_in> target;
  bool mode = false;
  while (!args.done()) {
    std::string_view tok = args.next();
    if (tok == "--rr" || tok == "--crr") {
      args.noValue(tok);
      o.crr = tok == "--crr";
      mode = true;
    } else if (tok == "--duration-ms") {
      o.durationMs = parseNumber(args.value(tok), 1, 3600000, "--duration-ms");
    } else if (!tok.starts_with("-") && !target) {
      target = parseEndpoint(tok);
    } else {
      unexpected("rate", tok);
    }
  }
  if (!target) throw UsageError("rate needs ADDR:PORT");
  if (!mode) throw UsageError("rate needs --rr or --crr");
  if (!o.durationMs) throw UsageError("rate needs --duration-ms");
  o.target = *target;
  return o;
}

// Where a spoofed flood may come from: the documentation ranges of RFC 5737 only, which no real
// host uses.
bool isDocumentationRange(uint32_t net, int bits) {
  const uint32_t ranges[] = {0xc0000200u /* 192.0.2.0/24 */, 0xc6336400u /* 198.51.100.0/24 */,
                             0xcb007100u /* 203.0.113.0/24 */};
  if (bits < 24) return false;
  for (uint32_t r : ranges)
    if ((net & 0xffffff00u) == r) return true;
  return false;
}

// Where it may go: private addresses (the lab's LAN and pod networks), never a public one.
bool isPrivate(uint32_t a) {
  return (a >> 24) == 10 || (a >> 20) == (0xac10u >> 4) /* 172.16/12 */ || (a >> 16) == 0xc0a8 /* 192.168/16 */;
}

SynFloodOptions parseSynFlood(ArgCursor& args) {
  SynFloodOptions o;
  std::optional<sockaddr_in> target;
  bool haveSource = false;
  while (!args.done()) {
    std::string_view tok = args.next();
    if (tok == "--source") {
      std::string_view cidr = args.value(tok);
      auto slash = cidr.find('/');
      if (slash == std::string_view::npos) throw UsageError("--source must be a CIDR, got '" + std::string(cidr) + "'");
      o.sourceBits = static_cast<int>(parseNumber(cidr.substr(slash + 1), 0, 32, "--source prefix length"));
      o.sourceNet = ntohl(parseIp(cidr.substr(0, slash)).s_addr);
      if (o.sourceBits < 32) o.sourceNet &= ~((uint32_t{1} << (32 - o.sourceBits)) - 1);
      haveSource = true;
    } else if (tok == "--rate") {
      o.rate = parseNumber(args.value(tok), 1, 1'000'000, "--rate");
    } else if (tok == "--count") {
      o.count = parseNumber(args.value(tok), 1, 1'000'000'000, "--count");
    } else if (tok == "--duration") {
      o.durationMs = parseNumber(args.value(tok), 1, 3600, "--duration") * 1000;
    } else if (!tok.starts_with("-") && !target) {
      target = parseEndpoint(tok);
    } else {
      unexpected("synflood", tok);
    }
  }
  if (!target) throw UsageError("synflood needs ADDR:PORT");
  o.target = *target;
  if (!haveSource) throw UsageError("synflood needs --source CIDR");
  if (!isDocumentationRange(o.sourceNet, o.sourceBits)) {
    throw UsageError("--source must lie in 192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24 (RFC 5737)");
  }
  if (!isPrivate(ntohl(o.target.sin_addr.s_addr))) {
    throw UsageError("synflood sends only to private (lab) addresses");
  }
  if (o.rate == 0) throw UsageError("synflood needs --rate N");
  if ((o.count == 0) == (o.durationMs == 0)) throw UsageError("synflood needs one of --duration S or --count N");
  return o;
}

UdpIdleOptions parseUdpIdle(ArgCursor& args) {
  UdpIdleOptions o;
  std::optional<sockaddr_in> target;
  while (!args.done()) {
    std::string_view tok = args.next();
    if (tok == "--churn") {
      o.churn = parseNumber(args.value(tok), 1, 10'000'000, "--churn");
    } else if (tok == "--timeout-ms") {
      o.timeoutMs = parseTimeout(args.value(tok));
    } else if (!tok.starts_with("-") && !target) {
      target = parseEndpoint(tok);
    } else {
      unexpected("udpidle", tok);
    }
  }
  if (!target) throw UsageError("udpidle needs ADDR:PORT");
  if (o.churn == 0) throw UsageError("udpidle needs --churn N");
  o.target = *target;
  return o;
}

Command parseCommandLine(int argc, char** argv) {
  if (argc < 2) throw UsageError("missing subcommand");
  std::string_view sub = argv[1];
  if (sub == "-h" || sub == "--help" || sub == "help") throw HelpRequested{};
  ArgCursor args(argc, argv, 2);
  if (sub == "serve") return parseServe(args);
  if (sub == "connect") return parseConnect(args);
  if (sub == "hold") return parseHold(args);
  if (sub == "synflood") return parseSynFlood(args);
  if (sub == "udpidle") return parseUdpIdle(args);
  if (sub == "rate") return parseRate(args);
  throw UsageError("unknown subcommand '" + std::string(sub) + "'");
}

// ---------------------------------------------------------------------------------------------
// Client side: connect with a deadline, send everything, read one line.

Result<Fd> connectTcp(const sockaddr_in& target, const Deadline& deadline) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket");
  auto* addr = reinterpret_cast<const sockaddr*>(&target);
  if (::connect(fd.get(), addr, sizeof target) == 0) return fd;
  if (errno != EINPROGRESS) return sysError("connect");
  if (auto err = waitFor(fd.get(), POLLOUT, deadline, "connect")) return *err;
  int soError = 0;
  socklen_t len = sizeof soError;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soError, &len) != 0) {
    return sysError("getsockopt");
  }
  if (soError != 0) return sysError("connect", soError);
  return fd;
}

MaybeError sendAll(int fd, std::string_view data, const Deadline& deadline) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto err = waitFor(fd, POLLOUT, deadline, "send")) return err;
    } else if (errno != EINTR) {
      return sysError("send");
    }
  }
  return std::nullopt;
}

std::string_view stripLineEnd(std::string_view s) {
  if (s.ends_with('\n')) s.remove_suffix(1);
  if (s.ends_with('\r')) s.remove_suffix(1);
  return s;
}

// Keeps bytes past the first newline for the next call, so `hold` never loses a reply that
// arrived together with the previous one.
class LineReader {
 public:
  Result<std::string> readLine(int fd, const Deadline& deadline) {
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line(stripLineEnd(std::string_view(buffer_).substr(0, nl + 1)));
        buffer_.erase(0, nl + 1);
        return line;
      }
      if (buffer_.size() > kMaxLine) return Error{"recv", 0, "reply line longer than 64 KiB"};
      char chunk[4096];
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0) {
        return Error{"recv", 0, "connection closed by peer"};
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (auto err = waitFor(fd, POLLIN, deadline, "recv")) return *err;
      } else if (errno != EINTR) {
        return sysError("recv");
      }
    }
  }

 private:
  std::string buffer_;
};

// One attempt of `connect`: the reply line, or "" for --connect-only.
Result<std::string> tcpAttempt(const ConnectOptions& o) {
  Deadline deadline(o.timeoutMs);
  Result<Fd> conn = connectTcp(o.target, deadline);
  if (!conn.ok()) return conn.error();
  if (o.connectOnly) return std::string();
  int fd = conn.value().get();
  if (auto err = sendAll(fd, o.payload + "\n", deadline)) return *err;
  LineReader reader;
  return reader.readLine(fd, deadline);
}

// A connected UDP socket only accepts datagrams from the address it sent to, so a reply that
// comes back from the backend address instead of the service address (missing reverse NAT)
// counts as no reply, exactly as it would for a real client. It also turns an ICMP port
// unreachable into ECONNREFUSED.
Result<std::string> udpAttempt(const ConnectOptions& o, uint16_t sourcePort) {
  Deadline deadline(o.timeoutMs);
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket");
  if (sourcePort) {
    // The same flow (5-tuple) on every run: what a flow-hash choice must map the same way.
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_port = htons(sourcePort);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) return sysError("bind");
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&o.target), sizeof o.target) != 0) {
    return sysError("connect");
  }
  if (::send(fd.get(), o.payload.data(), o.payload.size(), MSG_NOSIGNAL) < 0) {
    return sysError("send");
  }
  std::vector<char> buf(65536);
  for (;;) {
    if (auto err = waitFor(fd.get(), POLLIN, deadline, "recv")) return *err;
    ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n >= 0) {
      return std::string(stripLineEnd({buf.data(), static_cast<std::size_t>(n)}));
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return sysError("recv");
  }
}

struct Reply {
  std::string_view id;
  std::string_view peer;  // ip:port as the server saw the client
  std::string_view text;  // the echoed payload
};

std::optional<Reply> parseReply(std::string_view line) {
  auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return std::nullopt;
  auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return std::nullopt;
  Reply r{line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1), line.substr(sp2 + 1)};
  if (r.id.empty() || r.peer.find(':') == std::string_view::npos) return std::nullopt;
  return r;
}

int runConnect(const ConnectOptions& o) {
  uint64_t ok = 0;
  uint64_t fail = 0;
  std::map<std::string, uint64_t> byId;
  std::map<std::string, uint64_t> byPeerIp;
  auto next = std::chrono::steady_clock::now();
  for (uint64_t attempt = 1; attempt <= o.count; ++attempt) {
    if (o.intervalMs > 0) {
      std::this_thread::sleep_until(next);
      next += std::chrono::milliseconds(o.intervalMs);
    }
    const uint16_t sport = o.sourcePort ? static_cast<uint16_t>(o.sourcePort + attempt - 1) : 0;
    const auto started = std::chrono::steady_clock::now();
    Result<std::string> result = o.udp ? udpAttempt(o, sport) : tcpAttempt(o);
    if (o.reportSlowMs > 0) {
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
      if (took.count() >= o.reportSlowMs) std::cerr << "slow " << attempt << ": " << took.count() << " ms\n";
    }
    if (!result.ok()) {
      ++fail;
      std::cerr << "attempt " << attempt << ": " << result.error().text() << "\n";
      continue;
    }
    if (o.connectOnly) {
      ++ok;
      continue;
    }
    const std::string& line = result.value();
    if (o.verbose) std::cout << line << "\n";
    // The echo must come back intact: a reply that does not carry our payload is not success.
    std::optional<Reply> reply = parseReply(line);
    if (!reply || reply->text != o.payload) {
      ++fail;
      std::cerr << "attempt " << attempt << ": unexpected reply: '" << line << "'\n";
      continue;
    }
    ++ok;
    if (sport) std::cout << "sport=" << sport << " id=" << reply->id << "\n";
    ++byId[std::string(reply->id)];
    ++byPeerIp[std::string(reply->peer.substr(0, reply->peer.rfind(':')))];
  }
  std::cout << "ok=" << ok << " fail=" << fail << "\n";
  for (const auto& [id, count] : byId) std::cout << "id=" << id << " count=" << count << "\n";
  for (const auto& [ip, count] : byPeerIp) std::cout << "peer=" << ip << " count=" << count << "\n";
  std::cout.flush();
  return fail == 0 ? kExitOk : kExitFailure;
}

int runHold(const HoldOptions& o) {
  Result<Fd> conn = connectTcp(o.target, Deadline(o.timeoutMs));
  if (!conn.ok()) {
    std::cerr << "error: " << conn.error().text() << "\n";
    return kExitFailure;
  }
  int fd = conn.value().get();
  // getpeername is what a socket-LB hook rewrites: the test checks it shows the service address.
  std::cout << "connected local=" << socketName(fd, ::getsockname)
            << " peer=" << socketName(fd, ::getpeername) << std::endl;
  LineReader reader;
  std::string line;
  while (std::getline(std::cin, line)) {
    Deadline deadline(o.timeoutMs);
    if (auto err = sendAll(fd, line + "\n", deadline)) {
      std::cerr << "error: " << err->text() << "\n";
      return kExitFailure;
    }
    Result<std::string> reply = reader.readLine(fd, deadline);
    if (!reply.ok()) {
      std::cerr << "error: " << reply.error().text() << "\n";
      return kExitFailure;
    }
    std::cout << reply.value() << std::endl;
  }
  return kExitOk;
}

// TCP transactions per second for a benchmark: one request line and its reply is a transaction.
int runRate(const RateOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto end = start + std::chrono::milliseconds(o.durationMs);
  uint64_t n = 0;
  Fd conn;
  LineReader reader;
  while (Clock::now() < end) {
    Deadline deadline(kDefaultConnectTimeoutMs);
    if (!conn) {
      Result<Fd> c = connectTcp(o.target, deadline);
      if (!c.ok()) {
        std::cerr << "error: " << c.error().text() << "\n";
        return kExitFailure;
      }
      conn = std::move(c.value());
      reader = LineReader();
    }
    if (auto err = sendAll(conn.get(), "r\n", deadline)) {
      std::cerr << "error: " << err->text() << "\n";
      return kExitFailure;
    }
    Result<std::string> reply = reader.readLine(conn.get(), deadline);
    if (!reply.ok()) {
      std::cerr << "error: " << reply.error().text() << "\n";
      return kExitFailure;
    }
    ++n;
    if (o.crr) conn.reset();
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::cout << "transactions=" << n << " per_sec=" << static_cast<uint64_t>(n / secs) << "\n";
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// SYN flood: raw IPv4 + TCP SYN segments with spoofed sources.

uint16_t checksum(const void* data, std::size_t len, uint32_t sum = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (std::size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += static_cast<uint32_t>(p[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// IPv4 header, TCP header with an MSS option: what a real client's SYN looks like to the
// datapath (and to the backend, which answers it).
struct SynPacket {
  iphdr ip;
  tcphdr tcp;
  uint8_t mss[4];
};
static_assert(sizeof(SynPacket) == 44);

void buildSyn(SynPacket& pkt, uint32_t saddr, uint16_t sport, const sockaddr_in& target, uint32_t seq, uint16_t id) {
  std::memset(&pkt, 0, sizeof pkt);
  pkt.ip.version = 4;
  pkt.ip.ihl = 5;
  pkt.ip.tot_len = htons(sizeof pkt);
  pkt.ip.id = htons(id);
  pkt.ip.frag_off = htons(IP_DF);
  pkt.ip.ttl = 64;
  pkt.ip.protocol = IPPROTO_TCP;
  pkt.ip.saddr = htonl(saddr);
  pkt.ip.daddr = target.sin_addr.s_addr;
  pkt.ip.check = htons(checksum(&pkt.ip, sizeof pkt.ip));
  pkt.tcp.source = htons(sport);
  pkt.tcp.dest = target.sin_port;
  pkt.tcp.seq = htonl(seq);
  pkt.tcp.doff = (sizeof pkt.tcp + sizeof pkt.mss) / 4;
  pkt.tcp.syn = 1;
  pkt.tcp.window = htons(64240);
  pkt.mss[0] = 2;  // MSS, length 4, 1460
  pkt.mss[1] = 4;
  pkt.mss[2] = 1460 >> 8;
  pkt.mss[3] = 1460 & 0xff;
  // Pseudo header: source, destination, protocol, TCP length.
  const uint16_t tcpLen = sizeof pkt.tcp + sizeof pkt.mss;
  uint32_t sum = (saddr >> 16) + (saddr & 0xffff);
  const uint32_t daddr = ntohl(target.sin_addr.s_addr);
  sum += (daddr >> 16) + (daddr & 0xffff) + IPPROTO_TCP + tcpLen;
  pkt.tcp.check = htons(checksum(&pkt.tcp, tcpLen, sum));
}

// A flood runs only in a named network namespace (`ip netns add`, as the lab makes them), never
// in the namespace the machine's own interfaces live in, which is not one of those.
bool inNamedNetns() {
  struct stat self{};
  if (::stat("/proc/self/ns/net", &self) != 0) return false;
  DIR* dir = ::opendir("/var/run/netns");
  if (!dir) return false;
  bool found = false;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    struct stat ns{};
    const std::string path = std::string("/var/run/netns/") + e->d_name;
    if (::stat(path.c_str(), &ns) == 0 && ns.st_dev == self.st_dev && ns.st_ino == self.st_ino) found = true;
  }
  ::closedir(dir);
  return found;
}

int runSynFlood(const SynFloodOptions& o) {
  if (!inNamedNetns()) {
    std::cerr << "nptraffic: synflood runs only in a named network namespace (/var/run/netns, e.g. the lab's)\n";
    return kExitFailure;
  }
  Fd fd(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));  // IPPROTO_RAW implies IP_HDRINCL
  if (!fd) {
    std::cerr << "nptraffic: " << sysError("raw socket").text() << "\n";
    return kExitFailure;
  }
  int on = 1;
  if (::setsockopt(fd.get(), IPPROTO_IP, IP_HDRINCL, &on, sizeof on) != 0) {
    std::cerr << "nptraffic: " << sysError("setsockopt IP_HDRINCL").text() << "\n";
    return kExitFailure;
  }
  std::mt19937_64 rng(std::random_device{}());
  const uint32_t hosts = o.sourceBits >= 32 ? 1 : (uint32_t{1} << (32 - o.sourceBits));
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  uint64_t sent = 0, failed = 0;
  SynPacket pkt;
  for (;;) {
    const auto elapsedNs = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
    if (o.durationMs && static_cast<uint64_t>(elapsedNs) >= o.durationMs * 1'000'000) break;
    if (o.count && sent + failed >= o.count) break;
    // Paced against the start: what is due by now goes out now, then a 1 ms pause.
    uint64_t due = static_cast<uint64_t>(static_cast<double>(elapsedNs) * static_cast<double>(o.rate) / 1e9) + 1;
    if (o.count) due = std::min(due, o.count);
    while (sent + failed < due) {
      const uint64_t r = rng();
      const uint32_t host = static_cast<uint32_t>(r % hosts);
      const uint16_t sport = static_cast<uint16_t>(1024 + (r >> 20) % (65536 - 1024));
      buildSyn(pkt, o.sourceNet + host, sport, o.target, static_cast<uint32_t>(r >> 32), static_cast<uint16_t>(r >> 8));
      if (::sendto(fd.get(), &pkt, sizeof pkt, 0, reinterpret_cast<const sockaddr*>(&o.target), sizeof o.target) ==
          static_cast<ssize_t>(sizeof pkt)) {
        ++sent;
      } else {
        if (failed == 0) std::cerr << "nptraffic: " << sysError("sendto").text() << "\n";
        ++failed;
      }
    }
    timespec pause{0, 1'000'000};
    ::nanosleep(&pause, nullptr);
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  char net[INET_ADDRSTRLEN];
  const in_addr n{htonl(o.sourceNet)};
  ::inet_ntop(AF_INET, &n, net, sizeof net);
  std::cout << "synflood target=" << formatAddr(o.target) << " source=" << net << "/" << o.sourceBits
            << " sent=" << sent << " failed=" << failed << " seconds=" << secs
            << " rate=" << static_cast<uint64_t>(secs > 0 ? static_cast<double>(sent) / secs : 0) << std::endl;
  return failed == 0 ? kExitOk : kExitFailure;
}

// ---------------------------------------------------------------------------------------------
// Server: one epoll loop over listeners, UDP sockets, connections and a signalfd.

std::string joinPorts(const std::vector<uint16_t>& ports) {
  if (ports.empty()) return "-";
  std::string s;
  for (uint16_t p : ports) s += (s.empty() ? "" : ",") + std::to_string(p);
  return s;
}

class EchoServer {
 public:
  explicit EchoServer(ServeOptions opts) : opts_(std::move(opts)) {}

  // Blocks SIGTERM/SIGINT into a signalfd (so a stop request is just another epoll event, and
  // works even when the launching shell left SIGINT ignored), then binds every port.
  MaybeError open() {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &stop, nullptr) != 0) return sysError("sigprocmask");
    signals_ = Fd(::signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signals_) return sysError("signalfd");
    epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return sysError("epoll_create1");
    if (auto err = watch(signals_.get(), EPOLLIN, Kind::kSignal, EPOLL_CTL_ADD)) return err;

    for (uint16_t port : opts_.tcpPorts) {
      Result<Fd> fd = bindSocket(SOCK_STREAM, port);
      if (!fd.ok()) return fd.error();
      int listener = fd.value().get();
      if (::listen(listener, SOMAXCONN) != 0) {
        return sysError("listen tcp port " + std::to_string(port));
      }
      if (auto err = watch(listener, EPOLLIN, Kind::kTcpListener, EPOLL_CTL_ADD)) return err;
      sockets_.push_back(std::move(fd.value()));
    }
    for (uint16_t port : opts_.udpPorts) {
      Result<Fd> fd = bindSocket(SOCK_DGRAM, port);
      if (!fd.ok()) return fd.error();
      // Lets the reply leave from the address the request was sent to, even when bound to
      // 0.0.0.0 on a host with several addresses.
      int on = 1;
      if (::setsockopt(fd.value().get(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on) != 0) {
        return sysError("setsockopt IP_PKTINFO");
      }
      if (auto err = watch(fd.value().get(), EPOLLIN, Kind::kUdp, EPOLL_CTL_ADD)) return err;
      sockets_.push_back(std::move(fd.value()));
    }
    return std::nullopt;
  }

  // Serves until SIGTERM/SIGINT.
  MaybeError run() {
    std::cout << "serving " << opts_.id << " tcp=" << joinPorts(opts_.tcpPorts)
              << " udp=" << joinPorts(opts_.udpPorts) << std::endl;
    epoll_event events[64];
    for (;;) {
      int n = ::epoll_wait(epoll_.get(), events, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return sysError("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        auto kind = static_cast<Kind>(events[i].data.u64 >> 32);
        int fd = static_cast<int>(events[i].data.u64 & 0xffffffff);
        switch (kind) {
          case Kind::kSignal: {
            signalfd_siginfo info{};
            if (::read(fd, &info, sizeof info) == sizeof info) {
              std::cerr << "nptraffic: " << opts_.id << " stopping on signal " << info.ssi_signo
                        << "\n";
              return std::nullopt;
            }
            break;
          }
          case Kind::kTcpListener:
            acceptAll(fd);
            break;
          case Kind::kUdp:
            serveUdp(fd);
            break;
          case Kind::kConnection:
            onConnection(fd, events[i].events);
            break;
        }
      }
    }
  }

 private:
  enum class Kind : uint32_t { kSignal, kTcpListener, kUdp, kConnection };

  struct Connection {
    Fd fd;
    std::string peer;  // ip:port from getpeername
    std::string in;
    std::string out;
    bool peerClosed = false;
    uint32_t events = 0;  // what epoll currently watches for
  };

  MaybeError watch(int fd, uint32_t events, Kind kind, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (uint64_t{static_cast<uint32_t>(kind)} << 32) | static_cast<uint32_t>(fd);
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0) return sysError("epoll_ctl");
    return std::nullopt;
  }

  Result<Fd> bindSocket(int type, uint16_t port) {
    const char* proto = type == SOCK_STREAM ? "tcp" : "udp";
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr = opts_.bind;
    addr.sin_port = htons(port);
    Fd fd(::socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return sysError("socket");
    int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
      return sysError("setsockopt SO_REUSEADDR");
    }
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      return sysError(std::string("bind ") + proto + " " + formatAddr(addr));
    }
    return fd;
  }

  std::string reply(std::string_view peer, std::string_view text) const {
    std::string r;
    r.reserve(opts_.id.size() + peer.size() + text.size() + 3);
    r.append(opts_.id).append(" ").append(peer).append(" ").append(text);
    return r;
  }

  void acceptAll(int listener) {
    for (;;) {
      Fd fd(::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) logErrno("accept");
        return;
      }
      // Replies are small request/response lines; do not let Nagle hold one back.
      int on = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      std::string peer = socketName(fd.get(), ::getpeername);
      if (peer == "?") continue;  // already reset by the client
      int raw = fd.get();
      if (watch(raw, EPOLLIN, Kind::kConnection, EPOLL_CTL_ADD)) continue;
      connections_[raw] = Connection{std::move(fd), std::move(peer), {}, {}, false, EPOLLIN};
    }
  }

  void onConnection(int fd, uint32_t events) {
    auto it = connections_.find(fd);
    if (it == connections_.end()) return;
    Connection& c = it->second;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c.peerClosed) {
      // One read per wakeup: epoll is level-triggered, so a chatty client cannot starve others.
      char chunk[16384];
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n > 0) {
        c.in.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0) {
        c.peerClosed = true;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        connections_.erase(it);  // closing the fd also removes it from epoll
        return;
      }
      std::size_t start = 0;
      for (auto nl = c.in.find('\n'); nl != std::string::npos; nl = c.in.find('\n', start)) {
        std::string_view line = stripLineEnd(std::string_view(c.in).substr(start, nl + 1 - start));
        c.out += reply(c.peer, line) + "\n";
        start = nl + 1;
      }
      c.in.erase(0, start);
      if (c.in.size() > kMaxLine) {
        std::cerr << "nptraffic: " << c.peer << ": line longer than 64 KiB, closing\n";
        connections_.erase(it);
        return;
      }
    }
    while (!c.out.empty()) {
      ssize_t n = ::send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n >= 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else if (errno != EINTR) {
        connections_.erase(it);
        return;
      }
    }
    if (c.peerClosed && c.out.empty()) {
      connections_.erase(it);
      return;
    }
    uint32_t want = (c.peerClosed ? 0u : uint32_t{EPOLLIN}) |
                    (c.out.empty() ? 0u : uint32_t{EPOLLOUT});
    if (want != c.events) {
      c.events = want;
      if (watch(fd, want, Kind::kConnection, EPOLL_CTL_MOD)) connections_.erase(it);
    }
  }

  void serveUdp(int fd) {
    // Bounded per wakeup so one busy UDP port cannot starve TCP clients.
    for (int i = 0; i < 64; ++i) {
      sockaddr_in peer{};
      iovec iov{udpBuffer_.data(), udpBuffer_.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in_pktinfo))];
      msghdr msg{};
      msg.msg_name = &peer;
      msg.msg_namelen = sizeof peer;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = ::recvmsg(fd, &msg, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) logErrno("recvmsg");
        return;
      }
      std::optional<in_pktinfo> local;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
          in_pktinfo info;
          std::memcpy(&info, CMSG_DATA(c), sizeof info);
          local = info;
        }
      }
      std::string_view payload(udpBuffer_.data(), static_cast<std::size_t>(n));
      std::string out = reply(formatAddr(peer), stripLineEnd(payload));
      iovec outIov{out.data(), out.size()};
      msghdr outMsg{};
      outMsg.msg_name = &peer;
      outMsg.msg_namelen = sizeof peer;
      outMsg.msg_iov = &outIov;
      outMsg.msg_iovlen = 1;
      alignas(cmsghdr) char outControl[CMSG_SPACE(sizeof(in_pktinfo))] = {};
      if (local) {
        outMsg.msg_control = outControl;
        outMsg.msg_controllen = sizeof outControl;
        cmsghdr* c = CMSG_FIRSTHDR(&outMsg);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
        in_pktinfo info{};
        info.ipi_spec_dst = local->ipi_spec_dst;
        std::memcpy(CMSG_DATA(c), &info, sizeof info);
      }
      if (::sendmsg(fd, &outMsg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        logErrno("sendmsg to " + formatAddr(peer));
      }
    }
  }

  ServeOptions opts_;
  Fd signals_;
  Fd epoll_;
  std::vector<Fd> sockets_;  // listeners and UDP sockets, closed on exit
  std::unordered_map<int, Connection> connections_;
  std::vector<char> udpBuffer_ = std::vector<char>(65536);
};

int runServe(const ServeOptions& o) {
  EchoServer server(o);
  MaybeError err = server.open();
  if (!err) err = server.run();
  if (err) {
    std::cerr << "nptraffic: " << err->text() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// udpidle: does a long-idle connected UDP socket still see the service address - as its peer
// (getpeername) and as the source of replies (recvfrom) - after many other sockets used the
// service? Reverse translation state that other sockets can evict would show the backend's
// address instead. (An unconnected socket would not show it: each sendto() translates afresh.)

// One request on connected fd; the source address of the reply as recvfrom() shows it.
Result<sockaddr_in> askFrom(int fd, int timeoutMs) {
  Deadline deadline(timeoutMs);
  const std::string_view msg = "idle";
  if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) return sysError("send");
  std::vector<char> buf(65536);
  for (;;) {
    if (auto err = waitFor(fd, POLLIN, deadline, "recvfrom")) return *err;
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n >= 0) return from;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return sysError("recvfrom");
  }
}

bool sameEndpoint(const sockaddr_in& a, const sockaddr_in& b) {
  return a.sin_addr.s_addr == b.sin_addr.s_addr && a.sin_port == b.sin_port;
}

// "reply from A, peer B"; sets ok=false when either is not the target.
std::string idleCheck(int fd, const sockaddr_in& target, int timeoutMs, bool& ok) {
  auto from = askFrom(fd, timeoutMs);
  if (!from.ok()) {
    ok = false;
    return from.error().text();
  }
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    ok = false;
    return "getpeername: " + std::string(std::strerror(errno));
  }
  ok = sameEndpoint(from.value(), target) && sameEndpoint(peer, target);
  return "reply from " + formatAddr(from.value()) + ", peer " + formatAddr(peer);
}

int runUdpIdle(const UdpIdleOptions& o) {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&o.target), sizeof o.target) != 0) {
    logErrno("udpidle connect");
    return kExitFailure;
  }
  bool okBefore = false, okAfter = false;
  std::cout << "udpidle: before: " << idleCheck(fd.get(), o.target, o.timeoutMs, okBefore) << "\n";
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < o.churn; ++i) {
    Fd other(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!other || ::connect(other.get(), reinterpret_cast<const sockaddr*>(&o.target), sizeof o.target) != 0) {
      logErrno("churn connect");
      return kExitFailure;
    }
    // Use the translation as a live client would (getpeername() reads it back), so reverse
    // state shared between sockets sees every other socket as recently used.
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(other.get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
      logErrno("churn getpeername");
      return kExitFailure;
    }
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  std::cout << "udpidle: churn: " << o.churn << " other sockets connected in " << ms.count() << " ms\n";
  std::cout << "udpidle: after: " << idleCheck(fd.get(), o.target, o.timeoutMs, okAfter) << "\n";
  if (!okBefore || !okAfter) {
    std::cout << "udpidle: FAIL: expected replies from and a peer of " << formatAddr(o.target) << "\n";
    return kExitFailure;
  }
  std::cout << "udpidle: ok\n";
  return kExitOk;
}

int main(int argc, char** argv) {
  // Writes to a reader that went away must be an error return, not a silent death.
  ::signal(SIGPIPE, SIG_IGN);
  Command command;
  try {
    command = parseCommandLine(argc, argv);
  } catch (const HelpRequested&) {
    std::cout << kUsage;
    return kExitOk;
  } catch (const UsageError& e) {
    std::cerr << "nptraffic: " << e.what() << "\n" << kUsage;
    return kExitUsage;
  }
  if (auto* o = std::get_if<ServeOptions>(&command)) return runServe(*o);
  if (auto* o = std::get_if<ConnectOptions>(&command)) return runConnect(*o);
  if (auto* o = std::get_if<SynFloodOptions>(&command)) return runSynFlood(*o);
  if (auto* o = std::get_if<UdpIdleOptions>(&command)) return runUdpIdle(*o);
  if (auto* o = std::get_if<RateOptions>(&command)) return runRate(*o);
  return runHold(std::get<HoldOptions>(command));
}
