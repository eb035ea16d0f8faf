#include "args.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

namespace nodepath::agentctl {
namespace {

namespace pb = nodepath::agent::v1;

struct FlagSpec {
  std::string_view name;
  bool takesValue;
};

// Every flag of every command in one table, so that a flag can be recognised (and its value
// skipped) before the command words are known: global flags may precede or follow them. Which
// command accepts which flag is checked once the command is known.
constexpr std::array kFlags{
    FlagSpec{"--socket", true},      FlagSpec{"--output", true},     FlagSpec{"-o", true},
    FlagSpec{"--help", false},       FlagSpec{"-h", false},          FlagSpec{"--brief", false},
    FlagSpec{"--verbose", false},    FlagSpec{"--liveness", false},  FlagSpec{"--port", true},       FlagSpec{"--protocol", true},
    FlagSpec{"--cluster-ip", true},  FlagSpec{"--node-port", true},  FlagSpec{"--external-ip", true},
    FlagSpec{"--lb-ip", true},       FlagSpec{"--backend", true},     FlagSpec{"--file", true},
    FlagSpec{"-f", true},            FlagSpec{"--address", true},    FlagSpec{"--table", true},
    FlagSpec{"--cni-conf-dir", true}, FlagSpec{"--force", false},   FlagSpec{"--bpf-root", true},
    FlagSpec{"--session-affinity", true},                           FlagSpec{"--session-affinity-timeout", true},
    FlagSpec{"--external-traffic-policy", true},                    FlagSpec{"--internal-traffic-policy", true},
};

constexpr std::array<std::string_view, 3> kStatusFlags{"--brief", "--verbose", "--liveness"};
constexpr std::array<std::string_view, 11> kUpsertFlags{
    "--port",    "--protocol",         "--cluster-ip",                 "--node-port",
    "--external-ip", "--lb-ip",        "--backend",                    "--session-affinity",
    "--session-affinity-timeout",      "--external-traffic-policy",    "--internal-traffic-policy"};

struct CommandFlag {
  std::string name;
  std::string value;
};

const FlagSpec* findFlag(std::string_view name) {
  for (const auto& spec : kFlags) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool isDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<uint32_t> parsePortNumber(std::string_view s) {
  // Length check first: it keeps the accumulation below from overflowing.
  if (!isDigits(s) || s.size() > 5) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) v = v * 10 + static_cast<uint32_t>(c - '0');
  if (v < 1 || v > 65535) return std::nullopt;
  return v;
}

// "70000 is not a port" reads better than "\"70000\" is not a port", but text must be quoted so
// that an empty or space-containing value is visible.
std::string portError(std::string_view flag, std::string_view value) {
  std::string shown = isDigits(value) ? std::string(value) : quoted(value);
  return std::string(flag) + ": " + shown + " is not a port (1-65535)";
}

bool isIpv4(const std::string& s) {
  in_addr addr{};
  return inet_pton(AF_INET, s.c_str(), &addr) == 1;
}

std::string parseBackend(const std::string& value, pb::Backend* backend) {
  std::string_view rest = value;
  std::string_view state;
  if (auto comma = rest.find(','); comma != std::string_view::npos) {
    state = rest.substr(comma + 1);
    rest = rest.substr(0, comma);
  }
  // ",node=NAME" may follow the address or the state.
  std::string_view node;
  bool haveNode = false;
  auto takeNode = [&](std::string_view& part) {
    if (part.rfind("node=", 0) == 0) {
      node = part.substr(5);
      haveNode = true;
      part = {};
    }
  };
  if (auto comma = state.find(','); comma != std::string_view::npos) {
    std::string_view second = state.substr(comma + 1);
    state = state.substr(0, comma);
    takeNode(second);
    if (!second.empty() || !haveNode)
      return "--backend: " + quoted(value) + " is not IPv4:PORT[,active|terminating][,node=NAME]";
  } else {
    takeNode(state);
  }
  if (haveNode) {
    if (node.empty()) return "--backend: empty node name in " + quoted(value);
    backend->set_node_name(std::string(node));
  }
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) return "--backend: " + quoted(value) + " is not IPv4:PORT";
  std::string ip(rest.substr(0, colon));
  std::string_view port = rest.substr(colon + 1);
  if (!isIpv4(ip) || !isDigits(port)) return "--backend: " + quoted(value) + " is not IPv4:PORT";
  auto portNumber = parsePortNumber(port);
  if (!portNumber) {
    return "--backend: " + std::string(port) + " in " + quoted(value) + " is not a port (1-65535)";
  }
  backend->set_address(ip);
  backend->set_port(*portNumber);
  if (state.empty() && (haveNode || value.find(',') == std::string::npos)) {
    backend->set_state(pb::ACTIVE);
  } else if (state == "terminating") {
    backend->set_state(pb::TERMINATING);
  } else if (state == "active") {
    backend->set_state(pb::ACTIVE);
  } else {
    return "--backend: unknown backend state " + quoted(state) + " in " + quoted(value) +
           " (active, terminating)";
  }
  return {};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string buildService(const std::string& name, const std::vector<CommandFlag>& flags,
                         pb::Service* svc) {
  svc->set_name(name);
  svc->set_protocol(pb::TCP);
  std::vector<std::string> seen;
  bool havePort = false;
  for (const auto& flag : flags) {
    const bool scalar = flag.name == "--port" || flag.name == "--protocol" ||
                        flag.name == "--cluster-ip" || flag.name == "--node-port" ||
                        flag.name == "--session-affinity" || flag.name == "--session-affinity-timeout" ||
                        flag.name == "--external-traffic-policy" || flag.name == "--internal-traffic-policy";
    if (scalar) {
      // A second --port is more likely a mistake than an override; refuse rather than guess.
      if (std::find(seen.begin(), seen.end(), flag.name) != seen.end()) {
        return flag.name + ": given more than once";
      }
      seen.push_back(flag.name);
    }
    if (flag.name == "--port" || flag.name == "--node-port") {
      auto port = parsePortNumber(flag.value);
      if (!port) return portError(flag.name, flag.value);
      if (flag.name == "--port") {
        svc->set_port(*port);
        havePort = true;
      } else {
        svc->set_node_port(*port);
      }
    } else if (flag.name == "--protocol") {
      auto proto = lower(flag.value);
      if (proto == "tcp") {
        svc->set_protocol(pb::TCP);
      } else if (proto == "udp") {
        svc->set_protocol(pb::UDP);
      } else {
        return "--protocol: unknown protocol " + quoted(flag.value) + " (tcp, udp)";
      }
    } else if (flag.name == "--cluster-ip" || flag.name == "--external-ip" ||
               flag.name == "--lb-ip") {
      if (!isIpv4(flag.value)) {
        return flag.name + ": " + quoted(flag.value) + " is not an IPv4 address";
      }
      if (flag.name == "--cluster-ip") {
        svc->set_cluster_ip(flag.value);
      } else if (flag.name == "--external-ip") {
        svc->add_external_ips(flag.value);
      } else {
        svc->add_load_balancer_ips(flag.value);
      }
    } else if (flag.name == "--backend") {
      if (auto err = parseBackend(flag.value, svc->add_backends()); !err.empty()) return err;
    } else if (flag.name == "--session-affinity") {
      const std::string v = lower(flag.value);
      if (v == "none") {
        svc->set_session_affinity("None");
      } else if (v == "clientip") {
        svc->set_session_affinity("ClientIP");
      } else {
        return "--session-affinity: unknown session affinity " + quoted(flag.value) + " (None, ClientIP)";
      }
    } else if (flag.name == "--session-affinity-timeout") {
      // Seconds, as Kubernetes' sessionAffinityConfig.clientIP.timeoutSeconds.
      const std::string_view v = flag.value;
      uint32_t secs = 0;
      bool ok = isDigits(v) && v.size() <= 5;
      for (char c : v) secs = ok ? secs * 10 + static_cast<uint32_t>(c - '0') : 0;
      if (!ok || secs < 1 || secs > 86400)
        return "--session-affinity-timeout: " + quoted(flag.value) + " is not a number of seconds (1-86400)";
      svc->set_session_affinity_timeout_seconds(secs);
    } else if (flag.name == "--external-traffic-policy" || flag.name == "--internal-traffic-policy") {
      const std::string v = lower(flag.value);
      if (v == "cluster") {
        flag.name[2] == 'e' ? svc->set_external_traffic_policy("Cluster") : svc->set_internal_traffic_policy("Cluster");
      } else if (v == "local") {
        flag.name[2] == 'e' ? svc->set_external_traffic_policy("Local") : svc->set_internal_traffic_policy("Local");
      } else {
        return flag.name + ": unknown traffic policy " + quoted(flag.value) + " (Cluster, Local)";
      }
    }
  }
  if (svc->session_affinity_timeout_seconds() != 0 && svc->session_affinity() != "ClientIP")
    return "--session-affinity-timeout: needs --session-affinity ClientIP";
  if (!havePort) return "service upsert: --port is required";
  return {};
}

template <size_t N>
bool contains(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

ParseOutcome parseArgs(const std::vector<std::string>& args, std::string_view envSocket) {
  ParseOutcome out;
  Invocation& inv = out.invocation;
  if (!envSocket.empty()) inv.socketPath = std::string(envSocket);

  std::vector<std::string> words;
  std::vector<CommandFlag> commandFlags;
  std::string firstError;  // reported only if no help flag turns up later
  bool help = false;
  bool flagsEnded = false;
  auto fail = [&](std::string msg) {
    if (firstError.empty()) firstError = std::move(msg);
  };

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flagsEnded || arg.size() < 2 || arg[0] != '-') {
      words.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flagsEnded = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg.size() > 2 && arg[1] != '-' && arg.rfind("-o", 0) == 0) {
      name = "-o";  // -ojson, as getopt allows
      value = arg.substr(2);
    }
    const FlagSpec* spec = findFlag(name);
    if (spec == nullptr) {
      fail("unknown flag " + quoted(name));
      continue;
    }
    if (!spec->takesValue && value) {
      fail(name + ": takes no value");
      continue;
    }
    if (spec->takesValue && !value) {
      // "--cluster-ip --port 80": the user forgot the value; do not swallow the next flag.
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) {
        fail(name + ": missing value");
        continue;
      }
      value = args[++i];
    }
    if (name == "--help" || name == "-h") {
      help = true;
    } else if (name == "--socket") {
      if (value->empty()) fail("--socket: empty path");
      inv.socketPath = *value;
    } else if (name == "--output" || name == "-o") {
      if (*value == "table") {
        inv.output = OutputFormat::kTable;
      } else if (*value == "json") {
        inv.output = OutputFormat::kJson;
      } else {
        fail(name + ": unknown output format " + quoted(*value) + " (table, json)");
      }
    } else {
      commandFlags.push_back({name, value.value_or("")});
    }
  }

  if (help) {
    inv.command = Command::kHelp;
    return out;
  }
  if (!firstError.empty()) {
    out.error = firstError;
    return out;
  }
  if (words.empty()) {
    out.error = "missing command";
    return out;
  }

  // Resolve the command words; `used` is how many words the command itself consumed.
  std::string commandName;
  size_t used = 0;
  size_t wantNames = 0;  // positional NAME arguments the command takes
  const std::string& w0 = words[0];
  auto sub = [&](size_t i) -> std::string { return i < words.size() ? words[i] : std::string(); };
  if (w0 == "help") {
    inv.command = Command::kHelp;
    return out;  // "agentctl help service" is still just help
  } else if (w0 == "version") {
    inv.command = Command::kVersion;
    commandName = "version";
    used = 1;
  } else if (w0 == "status") {
    inv.command = Command::kStatus;
    commandName = "status";
    used = 1;
  } else if (w0 == "service") {
    const std::string s = sub(1);
    if (s.empty()) {
      out.error = "service: missing subcommand (upsert, apply, list, get, delete)";
      return out;
    }
    if (s == "list") {
      inv.command = Command::kServiceList;
    } else if (s == "get") {
      inv.command = Command::kServiceGet;
      wantNames = 1;
    } else if (s == "upsert") {
      inv.command = Command::kServiceUpsert;
      wantNames = 1;
    } else if (s == "delete") {
      inv.command = Command::kServiceDelete;
      wantNames = 1;
    } else if (s == "apply") {
      inv.command = Command::kServiceApply;
    } else {
      out.error = "service: unknown subcommand " + quoted(s) + " (upsert, apply, list, get, delete)";
      return out;
    }
    commandName = "service " + s;
    used = 2;
  } else if (w0 == "bpf") {
    const std::string what = sub(1);
    if (what.empty()) {
      out.error = "bpf: missing subcommand (lb, ct, nat)";
      return out;
    }
    if (what != "lb" && what != "ct" && what != "nat") {
      out.error = "bpf: unknown subcommand " + quoted(what) + " (lb, ct, nat)";
      return out;
    }
    if (sub(2).empty()) {
      out.error = "bpf " + what + ": missing subcommand (list)";
      return out;
    }
    if (sub(2) != "list") {
      out.error = "bpf " + what + ": unknown subcommand " + quoted(sub(2)) + " (list)";
      return out;
    }
    inv.command = what == "lb" ? Command::kBpfLbList : what == "ct" ? Command::kBpfCtList : Command::kBpfNatList;
    commandName = "bpf " + what + " list";
    used = 3;
  } else if (w0 == "node") {
    if (sub(1).empty()) {
      out.error = "node: missing subcommand (list)";
      return out;
    }
    if (sub(1) != "list") {
      out.error = "node: unknown subcommand " + quoted(sub(1)) + " (list)";
      return out;
    }
    inv.command = Command::kNodeList;
    commandName = "node list";
    used = 2;
  } else if (w0 == "l2") {
    if (sub(1).empty()) {
      out.error = "l2: missing subcommand (list)";
      return out;
    }
    if (sub(1) != "list") {
      out.error = "l2: unknown subcommand " + quoted(sub(1)) + " (list)";
      return out;
    }
    inv.command = Command::kL2List;
    commandName = "l2 list";
    used = 2;
  } else if (w0 == "endpoint") {
    if (sub(1).empty()) {
      out.error = "endpoint: missing subcommand (list)";
      return out;
    }
    if (sub(1) != "list") {
      out.error = "endpoint: unknown subcommand " + quoted(sub(1)) + " (list)";
      return out;
    }
    inv.command = Command::kEndpointList;
    commandName = "endpoint list";
    used = 2;
  } else if (w0 == "cleanup") {
    inv.command = Command::kCleanup;
    commandName = "cleanup";
    used = 1;
  } else if (w0 == "reconcile") {
    inv.command = Command::kReconcile;
    commandName = "reconcile";
    used = 1;
  } else if (w0 == "state") {
    const std::string s = sub(1);
    if (s.empty()) {
      out.error = "state: missing subcommand (show, reload, accept, reset)";
      return out;
    }
    if (s == "show") inv.command = Command::kStateShow;
    else if (s == "reload") inv.command = Command::kStateReload;
    else if (s == "accept") inv.command = Command::kStateAccept;
    else if (s == "reset") inv.command = Command::kStateReset;
    else {
      out.error = "state: unknown subcommand " + quoted(s) + " (show, reload, accept, reset)";
      return out;
    }
    commandName = "state " + s;
    used = 2;
  } else {
    out.error = "unknown command " + quoted(w0);
    return out;
  }

  if (wantNames == 1) {
    if (words.size() <= used) {
      out.error = commandName + ": missing NAME";
      return out;
    }
    if (words[used].empty()) {
      out.error = commandName + ": empty NAME";
      return out;
    }
    inv.serviceName = words[used];
    ++used;
  }
  if (words.size() > used) {
    out.error = commandName + ": unexpected argument " + quoted(words[used]);
    return out;
  }

  for (const auto& flag : commandFlags) {
    bool allowed = (inv.command == Command::kStatus && contains(kStatusFlags, flag.name)) ||
                   (inv.command == Command::kServiceUpsert && contains(kUpsertFlags, flag.name)) ||
                   (inv.command == Command::kServiceApply && (flag.name == "--file" || flag.name == "-f")) ||
                   ((inv.command == Command::kBpfCtList || inv.command == Command::kBpfNatList) &&
                    flag.name == "--address") ||
                   (inv.command == Command::kBpfCtList && flag.name == "--table") ||
                   (inv.command == Command::kCleanup &&
                    (flag.name == "--cni-conf-dir" || flag.name == "--force" || flag.name == "--bpf-root"));
    if (!allowed) {
      out.error = "unknown flag " + quoted(flag.name) + " for " + quoted(commandName);
      return out;
    }
  }

  if (inv.command == Command::kStatus) {
    bool brief = false;
    bool verbose = false;
    for (const auto& flag : commandFlags) {
      brief |= flag.name == "--brief";
      verbose |= flag.name == "--verbose";
      inv.liveness |= flag.name == "--liveness";
    }
    if (brief && verbose) {
      out.error = "status: --brief and --verbose cannot be combined";
      return out;
    }
    inv.statusDetail = brief     ? StatusDetail::kBrief
                       : verbose ? StatusDetail::kVerbose
                                 : StatusDetail::kNormal;
  } else if (inv.command == Command::kCleanup) {
    for (const auto& flag : commandFlags) {
      if (flag.name == "--force") {
        inv.force = true;
      } else if (flag.value.empty() || flag.value[0] != '/') {
        out.error = "cleanup: " + flag.name + ": " + quoted(flag.value) + " is not an absolute path";
        return out;
      } else if (flag.name == "--bpf-root") {
        inv.bpfRoot = flag.value;
      } else {
        inv.cniConfDir = flag.value;
      }
    }
  } else if (inv.command == Command::kServiceUpsert) {
    out.error = buildService(inv.serviceName, commandFlags, &inv.service);
  } else if (inv.command == Command::kServiceApply) {
    for (const auto& flag : commandFlags) {
      if (!inv.file.empty()) {
        out.error = "service apply: --file is given twice";
        return out;
      }
      if (flag.value.empty()) {
        out.error = "service apply: --file needs a path (or - for stdin)";
        return out;
      }
      inv.file = flag.value;
    }
    if (inv.file.empty()) out.error = "service apply: --file is required (a JSON {\"services\": [...]} file, or -)";
  } else if (inv.command == Command::kBpfCtList || inv.command == Command::kBpfNatList) {
    inv.ctFilter.set_snat_only(inv.command == Command::kBpfNatList);
    std::vector<std::string> seen;
    for (const auto& flag : commandFlags) {
      if (std::find(seen.begin(), seen.end(), flag.name) != seen.end()) {
        out.error = commandName + ": " + flag.name + " is given twice";
        return out;
      }
      seen.push_back(flag.name);
      if (flag.name == "--address") {
        if (!isIpv4(flag.value)) {
          out.error = commandName + ": --address: " + quoted(flag.value) + " is not an IPv4 address";
          return out;
        }
        inv.ctFilter.set_address(flag.value);
      } else if (flag.value == "main" || flag.value == "embryonic") {
        inv.ctFilter.set_table(flag.value);
      } else {
        out.error = commandName + ": --table: unknown table " + quoted(flag.value) + " (main, embryonic)";
        return out;
      }
    }
  }
  return out;
}

std::string usageText() {
  std::string socket(kDefaultSocket);
  std::string env(kSocketEnv);
  return "Usage: agentctl [--socket PATH] [-o table|json] <command> [flags]\n"
         "\n"
         "Inspect and drive nodepath-agent on this node over its unix socket.\n"
         "\n"
         "Commands:\n"
         "  status [--brief|--verbose]           agent and datapath health; exit 1 unless Ok\n"
         "         [--liveness]                 ...exit 0 whenever the agent answers (a probe that must not\n"
         "                                      restart an agent for a problem it reports)\n"
         "  service list                         services in the agent's model\n"
         "  service get NAME                     one service\n"
         "  service upsert NAME --port P [...]   create or replace a service (all fields at once)\n"
         "      --protocol tcp|udp                 default tcp\n"
         "      --cluster-ip IP\n"
         "      --node-port P\n"
         "      --external-ip IP                   repeatable\n"
         "      --lb-ip IP                         repeatable\n"
         "      --backend IP:PORT[,terminating][,node=NAME]\n"
         "                                         repeatable; node: where it runs (default: local when\n"
         "                                         in this node's pod CIDR or at its address)\n"
         "      --session-affinity None|ClientIP   default None\n"
         "      --session-affinity-timeout SECS    ClientIP: 1-86400, default 10800\n"
         "      --external-traffic-policy Cluster|Local  NodePort/LB/external IPs: Local = this node's backends only\n"
         "      --internal-traffic-policy Cluster|Local  ClusterIP from this node: Local = its backends only\n"
         "  service delete NAME                  remove a service\n"
         "  service apply -f FILE                create or replace many services in one change\n"
         "                                         (JSON {\"services\": [...]} as service list -o json prints;\n"
         "                                         - reads stdin); all or nothing\n"
         "  bpf lb list                          service map entries as the kernel holds them\n"
         "  bpf ct list [--address IP] [--table main|embryonic]\n"
         "                                       conntrack entries (both directions of every translated flow)\n"
         "  bpf nat list [--address IP]          conntrack entries of SNAT'd flows (the NAT state)\n"
         "  node list                            nodes the agent knows\n"
         "  endpoint list                        pod endpoints (CNI attachments): pod, address, interfaces\n"
         "  l2 list                              L2 announcements: the addresses this node announces (interface,\n"
         "                                         since when) and the Lease holder of the others\n"
         "  cleanup [--cni-conf-dir DIR] [--bpf-root DIR] [--force]\n"
         "                                       remove what the agent installed on this node: the CNI config\n"
         "                                         (DIR/05-nodepath.conflist, default /etc/cni/net.d), its routes,\n"
         "                                         np_host/np_net; refused while the agent runs (--force: anyway)\n"
         "  reconcile                            compare every service map with the model now, repair drift\n"
         "  state show                           the stored state of the local API: loaded, missing or unreadable\n"
         "  state reload                         read the state files again (after fixing them by hand)\n"
         "  state accept                         take the best state that loads (services.json, else its\n"
         "                                         last-good copy), dropping services that do not validate\n"
         "  state reset                          start with no stored services (removes their map entries)\n"
         "  version                              print the agentctl version\n"
         "  help                                 print this text\n"
         "\n"
         "Global flags (before or after the command):\n"
         "  --socket PATH      agent socket (default $" + env + ", else " + socket + ")\n"
         "  -o, --output FMT   table (default) or json (the API response, proto field names)\n"
         "  -h, --help         print this text\n"
         "\n"
         "Exit status: 0 success; 1 the agent refused, could not be reached, or is not Ok;\n"
         "2 usage error.\n";
}

}  // namespace nodepath::agentctl
