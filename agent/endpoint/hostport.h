// HostPorts (the CNI portMappings capability) as services of the service datapath: one service
// per mapping, named hostport/<ns>/<pod>/<tcp|udp>/<hostPort>, source "cni", whose one frontend
// kind is HostPort (hostIP:hostPort, or every node address) and whose one backend is the pod.
// They are kept with the endpoint (endpoints.json), not in the service store.
#pragma once

#include <string>
#include <vector>

#include "endpoint/store.h"
#include "lb/model.h"

namespace np::endpoint {

// The services of e's port mappings.
std::vector<lb::Service> hostPortServices(const Endpoint& e);
std::vector<std::string> hostPortNames(const Endpoint& e);

// Checks each service of e on its own (lb::validate) and against each other (the same
// hostPort/protocol/address twice): a clear error naming the mapping, for the CNI ADD.
Status checkHostPorts(const std::vector<lb::Service>& services, const lb::NodeContext& node);

}  // namespace np::endpoint
