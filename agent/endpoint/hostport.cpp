#include "endpoint/hostport.h"

#include <cctype>

namespace np::endpoint {

namespace {

// The pod's parts of the name: its namespace and name as CNI_ARGS gave them; without them
// (a runtime that sends no K8S_ args) "default" and the container ID's first 12 characters.
std::pair<std::string, std::string> podParts(const Endpoint& e) {
  std::string ns = e.podNamespace.empty() ? "default" : e.podNamespace;
  std::string pod = e.podName;
  if (pod.empty()) {
    for (char c : e.containerId.substr(0, 12)) pod += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return {ns, pod};
}

}  // namespace

std::vector<lb::Service> hostPortServices(const Endpoint& e) {
  std::vector<lb::Service> out;
  const auto [ns, pod] = podParts(e);
  for (const PortMapping& m : e.portMappings) {
    lb::Service s;
    s.name = lb::hostPortName(ns, pod, m.protocol, m.hostPort);
    s.protocol = m.protocol;
    s.port = m.hostPort;
    s.hostPort = m.hostPort;
    s.hostIp = m.hostIp;
    s.source = lb::kHostPortSource;
    s.backends.push_back({np::Endpoint{e.ip, m.containerPort}, lb::BackendState::Active, {}});
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> hostPortNames(const Endpoint& e) {
  std::vector<std::string> out;
  for (const lb::Service& s : hostPortServices(e)) out.push_back(s.name);
  return out;
}

const Endpoint* hostPortHolder(const std::vector<Endpoint>& endpoints, const std::string& name, const Endpoint& self) {
  for (const Endpoint& o : endpoints) {
    if (o.key() == self.key()) continue;
    for (const std::string& n : hostPortNames(o))
      if (n == name) return &o;
  }
  return nullptr;
}

Status checkHostPorts(const std::vector<lb::Service>& services, const lb::NodeContext& node) {
  lb::FrontendOwners owners;
  for (const lb::Service& s : services) {
    NP_TRY(lb::validate(s, node));
    for (const lb::Service& o : services)
      if (&o != &s && o.name == s.name)
        return error("HostPort " + s.name, "is given twice (the same host port and protocol on two host IPs)");
    NP_TRY(lb::checkConflicts(s, node, owners));
    lb::addOwner(owners, s, node);
  }
  return {};
}

}  // namespace np::endpoint
