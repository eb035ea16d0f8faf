// Pod endpoints for the CNI plugin: the veth pair, the pod's address and routes, the host route,
// the node's router device, and the endpoint records with their IPAM allocations (persisted).
//
// Pod wiring (DESIGN §3, native routing): host side `lxc<12 hex>`, pod side CNI_IFNAME with
// <pod IP>/32, `<router>/32 scope link` and `default via <router>`; on the host
// `<pod IP>/32 dev lxc... scope link proto 202`. The router is the .1 of the node's pod CIDR, on
// np_host (veth np_host/np_net, created when missing).
//
// Every operation is all-or-nothing: a failed ADD removes what it made (links, route, address)
// before it returns. ADD of an attachment (container ID + ifname) that has an endpoint returns
// that endpoint; DEL of an unknown attachment, or of one whose namespace is gone, succeeds.
//
// Errors, by errno (the API maps them): EEXIST the interface name exists in the pod's namespace;
// ENOENT the namespace does not exist (ADD/CHECK) or the attachment is unknown (CHECK);
// ENOSPC no address left; ENOTRECOVERABLE not ready (no pod CIDR, unreadable state: reason()
// says); EIO anything the kernel refused. Single-threaded: the agent's io_context.
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "endpoint/ipam.h"
#include "endpoint/store.h"
#include "routing/netlink.h"

namespace np::endpoint {

struct AddRequest {
  std::string containerId;
  std::string ifname;
  std::string netns;
  std::string podNamespace;
  std::string podName;
  std::vector<PortMapping> portMappings;  // kept with the endpoint
};

class Manager {
 public:
  // Reads <stateDir>/endpoints.json. An unreadable file does not fail this: the manager stays
  // not ready, with the reason, and never overwrites the file.
  Manager(std::string stateDir, routing::Netlink& host);

  // The node's pod CIDR (from the node list; nullopt: this node is not listed). Creates the
  // router device when needed. Refused while endpoints hold addresses of another CIDR.
  // `missing`: why there is none, for the refusals (default: the node list has no entry).
  void setPodCidr(std::optional<Cidr> cidr, const std::string& missing = {});

  Result<Endpoint> add(const AddRequest& req, bool* existed = nullptr);
  Status del(const std::string& containerId, const std::string& ifname, const std::string& netns);
  Result<Endpoint> check(const std::string& containerId, const std::string& ifname, const std::string& netns);
  // Deletes every endpoint whose attachment is not in `valid`; returns those released.
  std::vector<Endpoint> gc(const std::set<std::pair<std::string, std::string>>& valid);

  const std::vector<Endpoint>& endpoints() const { return state_.endpoints; }
  bool ready() const { return reason_.empty(); }
  // Not ready only because the node list gives this node no pod CIDR: the CNI is not offered
  // here, which is no fault (a node without pods, a test without a node list).
  bool unconfigured() const { return stateLoaded_ && !wanted_ && !ipam_; }
  const std::string& reason() const { return reason_; }  // why not ready
  const Ipam* ipam() const { return ipam_ ? &*ipam_ : nullptr; }
  const std::string& statePath() const { return path_; }

 private:
  Status saveWith(const std::vector<Endpoint>& eps);
  void removeHostSide(const Endpoint& e);
  Status ensureRouter();
  void setReason(std::string why);

  EndpointStore store_;
  std::string path_;
  routing::Netlink& host_;
  EndpointState state_;
  bool stateLoaded_ = false;   // the file was read (or there was none)
  std::string stateError_;     // why it could not be read
  std::optional<Cidr> wanted_; // the pod CIDR the node list gives
  std::optional<Ipam> ipam_;
  std::string reason_ = "starting";
};

}  // namespace np::endpoint
