// Decoders for the Kubernetes objects the agent watches (core/v1 Service, discovery/v1
// EndpointSlice) into the fields kube-proxy uses. Unknown fields are ignored (the API grows);
// a field of the wrong type is an error naming the object and the field.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/net.h"
#include "core/result.h"

namespace np::k8s {

struct ServicePort {
  std::string name;
  Protocol protocol = Protocol::Tcp;
  uint16_t port = 0;
  uint16_t nodePort = 0;
  bool supported = true;  // SCTP and unknown protocols: not supported by the datapath
  bool operator==(const ServicePort&) const = default;
};

struct K8sService {
  std::string ns, name, resourceVersion;
  std::string type = "ClusterIP";  // ClusterIP, NodePort, LoadBalancer, ExternalName
  std::string clusterIp;           // "None" for headless, "" when unset
  std::vector<ServicePort> ports;
  std::vector<std::string> externalIps;
  std::vector<std::string> lbIngressIps;  // status.loadBalancer.ingress[].ip
  std::string sessionAffinity = "None";
  std::optional<uint32_t> affinityTimeoutSec;
  std::string externalTrafficPolicy = "Cluster";
  std::string internalTrafficPolicy = "Cluster";
  std::map<std::string, std::string> labels;   // metadata.labels (L2 announcement policies select by them)
  std::optional<std::string> loadBalancerClass;  // spec.loadBalancerClass
  std::string key() const { return ns + "/" + name; }
  bool operator==(const K8sService&) const = default;
};

struct SlicePort {
  std::string name;  // "" when unnamed
  Protocol protocol = Protocol::Tcp;
  std::optional<uint16_t> port;  // unset: the port is not known (such a port serves nothing)
  bool supported = true;
  bool operator==(const SlicePort&) const = default;
};

// A node name held once however many endpoints name it (100,000 endpoints, a few nodes): a
// pointer into a process-wide pool that only grows (by the cluster's distinct node names).
class NodeName {
 public:
  NodeName() = default;
  explicit NodeName(std::string_view name);
  const std::string& str() const;
  bool empty() const { return p_ == nullptr; }
  bool operator==(const NodeName& o) const { return p_ == o.p_; }
  bool operator==(std::string_view s) const { return str() == s; }

 private:
  const std::string* p_ = nullptr;  // nullptr: ""
};

// Compact (a cluster has 100,000s of these): kube-proxy uses only an endpoint's first address
// (the API calls them fungible), so that is all that is kept.
struct SliceEndpoint {
  // addresses[0] when it is an IPv4 address; unset otherwise (the endpoint serves nothing here).
  std::optional<Ipv4> address;
  // conditions as the API defines them: ready unset means ready; serving unset means ready's
  // value; terminating unset means false.
  bool ready = true, serving = true, terminating = false;
  NodeName nodeName;
  bool operator==(const SliceEndpoint&) const = default;
};

struct K8sSlice {
  std::string ns, name, resourceVersion;
  std::string serviceName;  // label kubernetes.io/service-name ("" = belongs to no service)
  std::string addressType = "IPv4";
  std::vector<SlicePort> ports;
  std::vector<SliceEndpoint> endpoints;
  std::string key() const { return ns + "/" + name; }
  std::string serviceKey() const { return ns + "/" + serviceName; }
  bool operator==(const K8sSlice&) const = default;
};

Result<K8sService> decodeService(const boost::json::object& o);
Result<K8sSlice> decodeSlice(const boost::json::object& o);

// "namespace/name" of any object's metadata ("" when it has none).
std::string objectKey(const boost::json::object& o);

}  // namespace np::k8s
