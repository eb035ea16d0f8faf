// Running agentctl commands against the agent's gRPC API.
#pragma once

#include <chrono>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "agent.grpc.pb.h"
#include "args.h"

namespace nodepath::agentctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the agent refused, is unreachable, or is not Ok
inline constexpr int kExitUsage = 2;

// Every RPC gets this deadline so that a wedged agent never hangs the shell.
inline constexpr std::chrono::seconds kCallTimeout{10};
// ...but `service apply` and the lists, which move tens of thousands of services, get this long.
inline constexpr std::chrono::seconds kBatchTimeout{300};

// Runs one command that talks to the agent (anything but help/version) over `stub` and returns
// the exit code. Results go to `out`; errors go to `err` as "agentctl: <message>\n".
// `inv.socketPath` is used only to name the agent in "cannot reach" errors.
int runCommand(const Invocation& inv, nodepath::agent::v1::Agent::StubInterface& stub,
               std::ostream& out, std::ostream& err);

// `agentctl cleanup`, done here without the agent: removes the conflist from inv.cniConfDir, the
// routes of the agent's protocol, the router device np_host/np_net, the NOTRACK rules, and the
// datapath: nodepath's tc filters on every device and everything pinned in <bpf-root>/nodepath
// (maps, and the cgroup and XDP links, which detach with their pins) (cleanup.cpp).
int runCleanup(const Invocation& inv, std::ostream& out, std::ostream& err);

// Why the socket cannot be used, judged from the file system before connecting so that the
// common mistakes (agent not running, wrong path, not root) get a precise message rather than a
// gRPC transport error. Empty if the path is a socket we may connect to; otherwise the message
// without the "agentctl: " prefix.
std::string socketError(const std::string& path);

// The whole program: parse `args` (argv without argv[0]), print help/version or connect to the
// socket and run the command. envSocket is $NODEPATH_SOCKET or empty.
int agentctlMain(const std::vector<std::string>& args, std::string_view envSocket,
                 std::ostream& out, std::ostream& err);

}  // namespace nodepath::agentctl
