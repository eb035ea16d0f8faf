// Conversions between the agent API's protobuf messages and the service model. Parsing says
// exactly which field is wrong; nothing half-parsed escapes.
#pragma once

#include "agent.pb.h"
#include "core/result.h"
#include "lb/model.h"

namespace np::api {

namespace pb = ::nodepath::agent::v1;

Result<lb::Service> serviceFromProto(const pb::Service& in);
// With `node`, each backend says whether this node counts it as local.
pb::Service serviceToProto(const lb::Service& s, const lb::NodeContext* node = nullptr);

}  // namespace np::api
