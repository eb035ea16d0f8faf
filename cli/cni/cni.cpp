#include "cni.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace nodepath::cni {

namespace json = boost::json;

const char* commandName(Command c) {
  switch (c) {
    case Command::kAdd: return "ADD";
    case Command::kDel: return "DEL";
    case Command::kCheck: return "CHECK";
    case Command::kVersion: return "VERSION";
    case Command::kStatus: return "STATUS";
    case Command::kGc: return "GC";
  }
  return "?";
}

std::string Env::podNamespace() const {
  auto it = args.find("K8S_POD_NAMESPACE");
  return it == args.end() ? std::string() : it->second;
}
std::string Env::podName() const {
  auto it = args.find("K8S_POD_NAME");
  return it == args.end() ? std::string() : it->second;
}

namespace {

CniError envError(const std::string& msg, const std::string& details = {}) {
  return {kInvalidEnvironment, msg, details};
}

bool validContainerId(const std::string& id) {
  if (id.empty() || !std::isalnum(static_cast<unsigned char>(id[0]))) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

bool validIfName(const std::string& n) {
  if (n.empty() || n.size() > 15 || n == "." || n == "..") return false;
  return std::none_of(n.begin(), n.end(), [](char c) { return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)); });
}

}  // namespace

std::variant<std::map<std::string, std::string>, std::string> parseCniArgs(std::string_view text) {
  std::map<std::string, std::string> out;
  if (text.empty()) return out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(';', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view pair = text.substr(pos, end - pos);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0 || pair.find('=', eq + 1) != std::string_view::npos)
      return "CNI_ARGS pair \"" + std::string(pair) + "\" is not KEY=VALUE";
    out[std::string(pair.substr(0, eq))] = std::string(pair.substr(eq + 1));
    pos = end + 1;
    if (end == text.size()) break;
  }
  return out;
}

std::variant<Env, CniError> parseEnv(const Getenv& get) {
  Env env;
  auto cmd = get("CNI_COMMAND");
  if (!cmd || cmd->empty()) return envError("CNI_COMMAND is not set", "one of ADD, DEL, CHECK, VERSION, STATUS, GC");
  static const std::map<std::string, Command> commands = {{"ADD", Command::kAdd},         {"DEL", Command::kDel},
                                                          {"CHECK", Command::kCheck},     {"VERSION", Command::kVersion},
                                                          {"STATUS", Command::kStatus},   {"GC", Command::kGc}};
  auto it = commands.find(*cmd);
  if (it == commands.end()) return envError("unknown CNI_COMMAND \"" + *cmd + "\"", "one of ADD, DEL, CHECK, VERSION, STATUS, GC");
  env.command = it->second;
  const Command c = env.command;
  const bool attach = c == Command::kAdd || c == Command::kDel || c == Command::kCheck;

  std::vector<std::string> missing;
  auto need = [&](const char* name, bool required, std::string& into) {
    auto v = get(name);
    if (v) into = *v;
    if (required && into.empty()) missing.push_back(name);
  };
  need("CNI_CONTAINERID", attach, env.containerId);
  need("CNI_NETNS", c == Command::kAdd || c == Command::kCheck, env.netns);
  need("CNI_IFNAME", attach, env.ifname);
  need("CNI_PATH", c == Command::kGc, env.path);
  if (!missing.empty()) {
    std::string names;
    for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
    return envError("required environment variables missing: " + names,
                    std::string("CNI_COMMAND=") + commandName(c) + " needs them");
  }
  if (attach && !validContainerId(env.containerId))
    return envError("CNI_CONTAINERID \"" + env.containerId + "\" is not a container ID",
                    "it must start with a letter or digit, followed by letters, digits, '_', '.' or '-'");
  if (attach && !validIfName(env.ifname))
    return envError("CNI_IFNAME \"" + env.ifname + "\" is not an interface name",
                    "1-15 characters, none of '/', ':' or whitespace");
  if (!env.netns.empty() && env.netns[0] != '/')
    return envError("CNI_NETNS \"" + env.netns + "\" is not an absolute path");
  std::string rawArgs;
  need("CNI_ARGS", false, rawArgs);
  auto args = parseCniArgs(rawArgs);
  if (auto* why = std::get_if<std::string>(&args)) return envError("CNI_ARGS is malformed", *why);
  env.args = std::get<0>(std::move(args));
  return env;
}

int compareVersions(std::string_view a, std::string_view b) {
  auto part = [](std::string_view& s) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    (void)ec;
    s.remove_prefix(static_cast<size_t>(p - s.data()));
    if (!s.empty() && s[0] == '.') s.remove_prefix(1);
    return v;
  };
  for (int i = 0; i < 3; ++i) {
    unsigned x = part(a), y = part(b);
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

namespace {

std::variant<json::object, CniError> parseObject(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return CniError{kDecodeFailure, "the network configuration on stdin is not JSON", ec.message()};
  if (!v.is_object()) return CniError{kDecodeFailure, "the network configuration on stdin is not a JSON object", {}};
  return std::move(v.get_object());
}

bool supported(const std::string& v) {
  return std::find(kSupportedVersions.begin(), kSupportedVersions.end(), v) != kSupportedVersions.end();
}

std::string supportedList() {
  std::string s;
  for (const auto& v : kSupportedVersions) s += (s.empty() ? "" : ", ") + v;
  return s;
}

std::optional<CniError> stringField(const json::object& o, const char* key, bool required, std::string& out) {
  const json::value* v = o.if_contains(key);
  if (!v) {
    if (required) return CniError{kInvalidConfig, "the network configuration has no \"" + std::string(key) + "\"", {}};
    return std::nullopt;
  }
  if (!v->is_string())
    return CniError{kInvalidConfig, "\"" + std::string(key) + "\" in the network configuration is not a string", {}};
  out = std::string(v->get_string());
  return std::nullopt;
}

}  // namespace

std::variant<std::string, CniError> parseVersionRequest(std::string_view text) {
  std::string_view trimmed = text;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.remove_prefix(1);
  if (trimmed.empty()) return std::string("0.1.0");
  auto obj = parseObject(text);
  if (auto* e = std::get_if<CniError>(&obj)) return *e;
  std::string version = "0.1.0";
  if (auto e = stringField(std::get<json::object>(obj), "cniVersion", false, version)) {
    e->code = kDecodeFailure;
    return *e;
  }
  return version;
}

namespace {

// runtimeConfig.portMappings as containerd and CRI-O send it (the portmap plugin's format):
// [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "10.1.2.3"}].
std::optional<CniError> parsePortMappings(const json::object& conf, std::vector<PortMapping>& out) {
  const json::value* rc = conf.if_contains("runtimeConfig");
  if (!rc) return std::nullopt;
  if (!rc->is_object()) return CniError{kInvalidConfig, "\"runtimeConfig\" is not an object", {}};
  const json::value* list = rc->get_object().if_contains("portMappings");
  if (!list || list->is_null()) return std::nullopt;
  if (!list->is_array()) return CniError{kInvalidConfig, "\"runtimeConfig.portMappings\" is not a list", {}};
  size_t i = 0;
  for (const json::value& v : list->get_array()) {
    const std::string where = "runtimeConfig.portMappings[" + std::to_string(i++) + "]";
    if (!v.is_object()) return CniError{kInvalidConfig, where + " is not an object", {}};
    const json::object& m = v.get_object();
    PortMapping pm;
    auto port = [&](const char* key, bool required, unsigned& dst) -> std::optional<CniError> {
      const json::value* p = m.if_contains(key);
      if (!p) {
        if (required) return CniError{kInvalidConfig, where + ": \"" + key + "\" is missing", {}};
        return std::nullopt;
      }
      int64_t n = -1;
      if (p->is_int64()) n = p->get_int64();
      else if (p->is_uint64() && p->get_uint64() <= 65535) n = static_cast<int64_t>(p->get_uint64());
      else if (p->is_double() && p->get_double() == static_cast<double>(static_cast<int64_t>(p->get_double())))
        n = static_cast<int64_t>(p->get_double());
      if (n < 1 || n > 65535) return CniError{kInvalidConfig, where + ": \"" + key + "\" is not a port (1-65535)", {}};
      dst = static_cast<unsigned>(n);
      return std::nullopt;
    };
    if (auto e = port("hostPort", true, pm.hostPort)) return e;
    if (auto e = port("containerPort", true, pm.containerPort)) return e;
    std::string proto;
    if (auto e = stringField(m, "protocol", false, proto)) return CniError{kInvalidConfig, where + ": " + e->msg, {}};
    for (char& c : proto) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (proto.empty()) proto = "tcp";
    if (proto != "tcp" && proto != "udp")
      return CniError{kInvalidConfig, where + ": protocol \"" + proto + "\" is not tcp or udp", {}};
    pm.protocol = proto;
    if (auto e = stringField(m, "hostIP", false, pm.hostIp)) return CniError{kInvalidConfig, where + ": " + e->msg, {}};
    out.push_back(std::move(pm));
  }
  return std::nullopt;
}

}  // namespace

std::variant<NetConf, CniError> parseConf(std::string_view text, Command command) {
  auto parsed = parseObject(text);
  if (auto* e = std::get_if<CniError>(&parsed)) return *e;
  const json::object& o = std::get<json::object>(parsed);
  NetConf conf;
  if (auto e = stringField(o, "cniVersion", true, conf.cniVersion)) return *e;
  if (!supported(conf.cniVersion))
    return CniError{kIncompatibleVersion, "cniVersion \"" + conf.cniVersion + "\" is not supported",
                    "nodepath-cni supports " + supportedList()};
  if (command == Command::kCheck && compareVersions(conf.cniVersion, "0.4.0") < 0)
    return CniError{kIncompatibleVersion, "CHECK needs cniVersion 0.4.0 or later, the configuration has " + conf.cniVersion, {}};
  if ((command == Command::kStatus || command == Command::kGc) && compareVersions(conf.cniVersion, "1.1.0") < 0)
    return CniError{kIncompatibleVersion,
                    std::string(commandName(command)) + " needs cniVersion 1.1.0 or later, the configuration has " +
                        conf.cniVersion,
                    {}};
  if (auto e = stringField(o, "name", true, conf.name)) return *e;
  if (auto e = stringField(o, "type", true, conf.type)) return *e;
  if (auto e = stringField(o, "socket", false, conf.socket)) return *e;
  if (conf.socket.empty() || conf.socket[0] != '/')
    return CniError{kInvalidConfig, "\"socket\" in the network configuration is not an absolute path", conf.socket};
  if (const json::value* prev = o.if_contains("prevResult")) {
    if (!prev->is_object()) return CniError{kInvalidConfig, "\"prevResult\" is not an object", {}};
    conf.prevResult = prev->get_object();
  }
  if (command == Command::kCheck && !conf.prevResult)
    return CniError{kInvalidConfig, "CHECK needs \"prevResult\" (the result of the ADD) in the network configuration", {}};
  if (command == Command::kAdd) {
    if (auto e = parsePortMappings(o, conf.portMappings)) return *e;
  }
  if (command == Command::kGc) {
    // Spec 1.1.0 names it cni.dev/valid-attachments; libcni also sends the older misspelling.
    const json::value* list = o.if_contains("cni.dev/valid-attachments");
    if (!list) list = o.if_contains("cni.dev/attachments");
    if (list) {
      if (!list->is_array()) return CniError{kInvalidConfig, "\"cni.dev/valid-attachments\" is not a list", {}};
      for (const json::value& a : list->get_array()) {
        if (!a.is_object()) return CniError{kInvalidConfig, "an entry of \"cni.dev/valid-attachments\" is not an object", {}};
        Attachment at;
        if (auto e = stringField(a.get_object(), "containerID", true, at.containerId)) return *e;
        if (auto e = stringField(a.get_object(), "ifname", true, at.ifname)) return *e;
        conf.validAttachments.push_back(std::move(at));
      }
    }
  }
  return conf;
}

namespace {

bool legacy(const std::string& version) { return compareVersions(version, "1.0.0") < 0; }

// An ips[] entry as the version has it: 0.3.x/0.4.0 carry "version" ("4"/"6"), 1.x does not.
json::object ipEntry(json::object ip, const std::string& version) {
  if (legacy(version)) {
    if (!ip.contains("version")) {
      const json::value* addr = ip.if_contains("address");
      const bool v6 = addr && addr->is_string() && std::string_view(addr->get_string()).find(':') != std::string_view::npos;
      ip["version"] = v6 ? "6" : "4";
    }
  } else {
    ip.erase("version");
  }
  return ip;
}

}  // namespace

std::string encodeResult(const Attached& a, const std::optional<json::object>& prevResult, const std::string& version) {
  json::array interfaces, ips, routes;
  json::value dns = json::object{};
  if (prevResult) {
    if (const json::value* v = prevResult->if_contains("interfaces"); v && v->is_array()) interfaces = v->get_array();
    if (const json::value* v = prevResult->if_contains("ips"); v && v->is_array())
      for (const json::value& ip : v->get_array())
        if (ip.is_object()) ips.push_back(ipEntry(ip.get_object(), version));
    if (const json::value* v = prevResult->if_contains("routes"); v && v->is_array()) routes = v->get_array();
    if (const json::value* v = prevResult->if_contains("dns"); v && v->is_object()) dns = *v;
  }
  const bool v11 = compareVersions(version, "1.1.0") >= 0;
  json::object host{{"name", a.hostIfname}, {"mac", a.hostMac}};
  json::object pod{{"name", a.podIfname}, {"mac", a.podMac}, {"sandbox", a.sandbox}};
  if (v11 && a.mtu) {
    host["mtu"] = a.mtu;
    pod["mtu"] = a.mtu;
  }
  interfaces.push_back(std::move(host));
  const size_t podIndex = interfaces.size();
  interfaces.push_back(std::move(pod));
  ips.push_back(ipEntry(json::object{{"address", a.ipv4 + "/32"}, {"gateway", a.gateway}, {"interface", podIndex}}, version));
  json::object link{{"dst", a.gateway + "/32"}};
  if (v11) link["scope"] = 253;  // RT_SCOPE_LINK
  routes.push_back(std::move(link));
  routes.push_back(json::object{{"dst", "0.0.0.0/0"}, {"gw", a.gateway}});
  json::object out{{"cniVersion", version}, {"interfaces", std::move(interfaces)}, {"ips", std::move(ips)},
                   {"routes", std::move(routes)}, {"dns", std::move(dns)}};
  return json::serialize(out) + "\n";
}

std::string encodeError(const CniError& e, const std::string& version) {
  json::object out{{"cniVersion", version.empty() ? std::string("1.1.0") : version}, {"code", e.code}, {"msg", e.msg}};
  if (!e.details.empty()) out["details"] = e.details;
  return json::serialize(out) + "\n";
}

std::string encodeVersion(const std::string& version) {
  json::array list;
  for (const auto& v : kSupportedVersions) list.push_back(json::value(v));
  return json::serialize(json::object{{"cniVersion", version}, {"supportedVersions", std::move(list)}}) + "\n";
}

std::optional<CniError> checkPrevResult(const json::object& prev, const Attached& a) {
  const json::value* ifs = prev.if_contains("interfaces");
  if (!ifs || !ifs->is_array())
    return CniError{kCheckFailed, "prevResult lists no interfaces", "expected " + a.podIfname + " in " + a.sandbox};
  std::optional<size_t> index;
  const json::array& list = ifs->get_array();
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_object()) continue;
    const json::object& o = list[i].get_object();
    const json::value* name = o.if_contains("name");
    const json::value* sandbox = o.if_contains("sandbox");
    if (name && name->is_string() && name->get_string() == a.podIfname && sandbox && sandbox->is_string() &&
        sandbox->get_string() == a.sandbox) {
      index = i;
      const json::value* mac = o.if_contains("mac");
      if (mac && mac->is_string() && mac->get_string() != a.podMac)
        return CniError{kCheckFailed, "interface " + a.podIfname + " has MAC " + a.podMac,
                        "prevResult says " + std::string(mac->get_string())};
    }
  }
  if (!index) return CniError{kCheckFailed, "prevResult has no interface " + a.podIfname + " in " + a.sandbox, {}};
  const json::value* ips = prev.if_contains("ips");
  if (ips && ips->is_array()) {
    for (const json::value& ip : ips->get_array()) {
      if (!ip.is_object()) continue;
      const json::value* addr = ip.get_object().if_contains("address");
      if (addr && addr->is_string() && addr->get_string() == a.ipv4 + "/32") return std::nullopt;
    }
  }
  return CniError{kCheckFailed, "prevResult does not list the pod's address " + a.ipv4 + "/32", {}};
}

}  // namespace nodepath::cni
