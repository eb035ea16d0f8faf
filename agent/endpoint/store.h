// A pod endpoint as the agent records it, and its persistence: <run-dir>/state/endpoints.json,
// written atomically (temp file, fsync, rename, directory fsync) on every change, read strictly
// (a missing, unknown or mistyped field is an error naming the endpoint and the field). The IPAM
// allocations are the endpoints' addresses: they are saved together, so an address is never
// recorded as free while a pod holds it, or the other way round.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"

namespace np::endpoint {

// A HostPort of the pod (CNI portMappings): hostIp:hostPort (no hostIp: every node address) ->
// <pod IP>:containerPort. Kept with the endpoint: a restarted agent programs them again.
struct PortMapping {
  uint16_t hostPort = 0;
  uint16_t containerPort = 0;
  Protocol protocol = Protocol::Tcp;
  std::optional<Ipv4> hostIp;
  bool operator==(const PortMapping&) const = default;
};

struct Endpoint {
  std::string containerId;
  std::string ifname;         // CNI_IFNAME, inside the pod
  std::string netns;          // CNI_NETNS at ADD
  std::string podNamespace;   // K8S_POD_NAMESPACE ("" when not given)
  std::string podName;        // K8S_POD_NAME
  Ipv4 ip;
  std::string hostIfname;     // lxc...
  int hostIfindex = 0;
  std::array<uint8_t, 6> hostMac{};
  std::array<uint8_t, 6> podMac{};
  uint32_t mtu = 0;
  int64_t createdUnix = 0;
  std::vector<PortMapping> portMappings;

  std::string key() const { return containerId + "/" + ifname; }
  bool operator==(const Endpoint&) const = default;
};

struct EndpointState {
  Cidr podCidr;               // the pool the addresses came from
  Ipv4 lastAllocated;         // IPAM's round-robin position
  std::vector<Endpoint> endpoints;
  // HostPort mappings left out at load, each with why (a bad entry costs only itself: the
  // endpoint and its other mappings load). Never written back as such.
  std::vector<std::string> droppedPortMappings;
};

std::string endpointsToJson(const EndpointState& s);
// Errors name the endpoint (by index and container ID) and the field.
Result<EndpointState> endpointsFromJson(const std::string& text);

class EndpointStore {
 public:
  explicit EndpointStore(std::string dir) : dir_(std::move(dir)) {}
  std::string path() const { return dir_ + "/endpoints.json"; }
  // ENOENT when there is no file yet (a new node).
  Result<EndpointState> load() const;
  Status save(const EndpointState& s) const;

 private:
  std::string dir_;
};

bool parseMac(const std::string& text, std::array<uint8_t, 6>& out);

}  // namespace np::endpoint
