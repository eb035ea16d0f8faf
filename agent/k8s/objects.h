// Decoders for the Kubernetes objects the agent watches (core/v1 Service, discovery/v1
// EndpointSlice) into the fields kube-proxy uses. Unknown fields are ignored (the API grows);
// a field of the wrong type is an error naming the object and the field.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
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
};

struct SlicePort {
  std::string name;  // "" when unnamed
  Protocol protocol = Protocol::Tcp;
  std::optional<uint16_t> port;  // unset: the port is not known (such a port serves nothing)
  bool supported = true;
};

struct SliceEndpoint {
  std::vector<std::string> addresses;
  // conditions as the API defines them: ready unset means ready; serving unset means ready's
  // value; terminating unset means false.
  bool ready = true, serving = true, terminating = false;
  std::string nodeName;
};

struct K8sSlice {
  std::string ns, name, resourceVersion;
  std::string serviceName;  // label kubernetes.io/service-name ("" = belongs to no service)
  std::string addressType = "IPv4";
  std::vector<SlicePort> ports;
  std::vector<SliceEndpoint> endpoints;
  std::string key() const { return ns + "/" + name; }
  std::string serviceKey() const { return ns + "/" + serviceName; }
};

Result<K8sService> decodeService(const boost::json::object& o);
Result<K8sSlice> decodeSlice(const boost::json::object& o);

// "namespace/name" of any object's metadata ("" when it has none).
std::string objectKey(const boost::json::object& o);

}  // namespace np::k8s
