// `agentctl flows`: the node's recent flows from the agent's Hubble API (<run-dir>/hubble.sock),
// one line a flow like `hubble observe`. Parsing (CLI11) and formatting are separate from the
// call so the unit test drives them without an agent.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "observer/observer.pb.h"

namespace nodepath::agentctl {

struct FlowsInvocation {
  std::string server;  // hubble.sock path
  observer::GetFlowsRequest request;
  std::string output = "table";  // table | json | jsonpb
};

// args: what follows "flows". defaultServer: hubble.sock next to the agent socket. Returns an
// error text (usage error, exit 2) or empty.
std::string parseFlowsArgs(const std::vector<std::string>& args, const std::string& defaultServer,
                           FlowsInvocation& out);

// One line: "Dec  2 18:55:01.123: 192.168.10.200:40000 -> 10.0.1.5:8080 (svc default/web) to-stack
// FORWARDED (TCP Flags: SYN)".
std::string formatFlowLine(const flow::Flow& f);

int runFlows(const std::vector<std::string>& args, const std::string& agentSocket, std::ostream& out,
             std::ostream& err);

}  // namespace nodepath::agentctl
