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

// The endpoint other than `self` (another sandbox of the same pod: the name carries the pod, not
// the sandbox) whose mappings include the HostPort service `name`, or null. The sandbox that
// programmed a HostPort keeps it until its own DEL, as portmap keys its rules by container ID: a
// new sandbox's ADD is refused meanwhile (the runtime retries it once the old one is gone) and
// the old one's DEL leaves a HostPort another sandbox holds alone.
const Endpoint* hostPortHolder(const std::vector<Endpoint>& endpoints, const std::string& name, const Endpoint& self);

// Checks each service of e on its own (lb::validate) and against each other (the same
// hostPort/protocol/address twice): a clear error naming the mapping, for the CNI ADD.
Status checkHostPorts(const std::vector<lb::Service>& services, const lb::NodeContext& node);

}  // namespace np::endpoint
