// agentctl: the operator's CLI for nodepath-agent. All logic lives in agentctl_lib so it can be
// unit-tested; this file only adapts argv and the environment.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* env = std::getenv(std::string(nodepath::agentctl::kSocketEnv).c_str());
  return nodepath::agentctl::agentctlMain(args, env == nullptr ? "" : env, std::cout, std::cerr);
}
