// Command-line parsing for agentctl: turns argv into an Invocation or a usage error.
//
// Parsing is pure (no I/O, no environment access) so the unit test can drive it directly; the
// caller passes $NODEPATH_SOCKET in. Every flag value is validated here so that a typo is reported
// with the flag's name before any connection is attempted; the agent validates again.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent.pb.h"

namespace nodepath::agentctl {

inline constexpr std::string_view kDefaultSocket = "/var/run/nodepath/agent.sock";
inline constexpr std::string_view kSocketEnv = "NODEPATH_SOCKET";

enum class Command {
  kHelp,
  kVersion,
  kStatus,
  kServiceUpsert,
  kServiceList,
  kServiceGet,
  kServiceDelete,
  kServiceApply,
  kBpfLbList,
  kBpfCtList,
  kBpfNatList,
  kNodeList,
  kReconcile,
  kStateShow,
  kStateReload,
  kStateAccept,
  kStateReset,
  kEndpointList,
  kL2List,
  kCleanup,
};

enum class OutputFormat { kTable, kJson };

enum class StatusDetail { kNormal, kBrief, kVerbose };

struct Invocation {
  Command command = Command::kHelp;
  std::string socketPath{kDefaultSocket};
  OutputFormat output = OutputFormat::kTable;
  StatusDetail statusDetail = StatusDetail::kNormal;  // kStatus only
  bool liveness = false;                              // kStatus: exit 0 whenever the agent answers
  std::string serviceName;                            // kServiceGet, kServiceDelete, kServiceUpsert
  nodepath::agent::v1::Service service;               // kServiceUpsert: fully built, name included
  std::string file;                                   // kServiceApply: path, or "-" for stdin
  nodepath::agent::v1::ListConntrackRequest ctFilter; // kBpfCtList, kBpfNatList
  std::string cniConfDir{"/etc/cni/net.d"};           // kCleanup: where the agent wrote its conflist
  std::string bpfRoot{"/sys/fs/bpf"};                 // kCleanup: the agent's --bpf-root (pins in <it>/nodepath)
  bool force = false;                                 // kCleanup: even while an agent answers
};

// Either an invocation or the reason the command line is unusable (exit 2); never both.
struct ParseOutcome {
  Invocation invocation;
  std::string error;  // without the "agentctl: " prefix, e.g. `unknown flag "--frob"`

  bool ok() const { return error.empty(); }
};

// args excludes argv[0]. envSocket is the value of $NODEPATH_SOCKET, or empty when unset.
// Global flags (--socket, -o/--output, -h/--help) may appear anywhere; a help flag anywhere wins
// over every other error so that `agentctl service upsert --help` always prints usage.
ParseOutcome parseArgs(const std::vector<std::string>& args, std::string_view envSocket = {});

// The full usage text, ending in a newline.
std::string usageText();

}  // namespace nodepath::agentctl
