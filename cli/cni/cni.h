// The CNI protocol of nodepath-cni, as pure functions (no I/O, no environment access) so the
// unit tests drive every case: the environment variables, the request configuration on stdin,
// and the JSON the plugin prints (results in each supported version, VERSION, errors).
//
// Spec: containernetworking/cni SPEC.md, versions 1.0.0 and 1.1.0 (STATUS, GC); results are also
// printed in 0.3.0, 0.3.1 and 0.4.0 for runtimes that ask for those.
#pragma once

#include <boost/json.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nodepath::cni {

inline const std::vector<std::string> kSupportedVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
inline constexpr std::string_view kDefaultSocket = "/var/run/nodepath/agent.sock";

// Error codes: the spec's (1-99) and ours (100+).
enum Code : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnvironment = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kNotAvailable = 50,          // STATUS: cannot serve ADD
  kLimitedConnectivity = 51,   // STATUS: ... and existing pods may be affected
  kInterfaceExists = 100,      // CNI_IFNAME exists in the namespace
  kNoAddress = 101,            // the node's pod CIDR is exhausted
  kCheckFailed = 102,          // CHECK found the attachment not as ADD left it
  kInternal = 999,
};

struct CniError {
  int code = kInternal;
  std::string msg;
  std::string details;
};

enum class Command { kAdd, kDel, kCheck, kVersion, kStatus, kGc };
const char* commandName(Command c);

struct Env {
  Command command = Command::kVersion;
  std::string containerId;
  std::string netns;
  std::string ifname;
  std::string path;
  std::map<std::string, std::string> args;  // CNI_ARGS
  std::string podNamespace() const;         // K8S_POD_NAMESPACE
  std::string podName() const;              // K8S_POD_NAME
};

using Getenv = std::function<std::optional<std::string>(const char*)>;
// The variables each command needs (SPEC.md, "Parameters" and each operation's "Input"); code 4
// naming the variable when one is missing or invalid.
std::variant<Env, CniError> parseEnv(const Getenv& get);
// "K=V;K2=V2" (empty: none); error text when a pair is not K=V.
std::variant<std::map<std::string, std::string>, std::string> parseCniArgs(std::string_view text);

struct Attachment {
  std::string containerId;
  std::string ifname;
};

// One entry of runtimeConfig.portMappings (the portMappings capability).
struct PortMapping {
  unsigned hostPort = 0;
  unsigned containerPort = 0;
  std::string protocol = "tcp";  // "tcp" or "udp", lowercase
  std::string hostIp;            // "" when not given
  bool operator==(const PortMapping&) const = default;
};

struct NetConf {
  std::string cniVersion;
  std::string name;
  std::string type;
  std::string socket{kDefaultSocket};
  std::optional<boost::json::object> prevResult;
  std::vector<Attachment> validAttachments;  // GC: cni.dev/valid-attachments
  std::vector<PortMapping> portMappings;     // ADD: runtimeConfig.portMappings
};

// The request configuration for `command`: code 6 when it is not JSON (an object), 7 when a key
// is missing or of the wrong type, 1 when cniVersion is not supported or too old for the command
// (CHECK needs 0.4.0, STATUS and GC 1.1.0).
std::variant<NetConf, CniError> parseConf(std::string_view text, Command command);
// The cniVersion a VERSION request names (default "0.1.0", as libcni's decoder has it).
std::variant<std::string, CniError> parseVersionRequest(std::string_view text);

// -1, 0, 1 like strcmp, for "X.Y.Z" versions (a missing part counts as 0).
int compareVersions(std::string_view a, std::string_view b);

// What the agent made for the attachment.
struct Attached {
  std::string hostIfname;
  std::string hostMac;
  std::string podIfname;
  std::string podMac;
  std::string sandbox;  // CNI_NETNS
  std::string ipv4;     // the pod's address, without prefix
  std::string gateway;  // the router
  unsigned mtu = 0;
};

// The ADD result in `version`: prevResult (a chained plugin's, e.g. loopback's) passed through
// with ours appended: interfaces host lxc + pod ifname, one /32 address on the pod interface with
// the router as gateway, routes <router>/32 (link) and the default via the router.
std::string encodeResult(const Attached& a, const std::optional<boost::json::object>& prevResult,
                         const std::string& version);
std::string encodeError(const CniError& e, const std::string& version);
std::string encodeVersion(const std::string& version);

// CHECK against prevResult: our pod interface (named CNI_IFNAME, in CNI_NETNS) and its address
// are listed as the agent has them. nullopt when it all agrees.
std::optional<CniError> checkPrevResult(const boost::json::object& prevResult, const Attached& a);

}  // namespace nodepath::cni
