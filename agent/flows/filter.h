// Hubble's flow filters (flow.FlowFilter) over our flows: within one filter every field that is
// set must match (any of its values); a flow passes a request when it matches any whitelist
// filter (or there is none) and no blacklist filter. Pure.
#pragma once

#include <google/protobuf/repeated_field.h>

#include "flow/flow.pb.h"

namespace np::flows {

bool matches(const flow::FlowFilter& f, const flow::Flow& fl);
bool allowed(const google::protobuf::RepeatedPtrField<flow::FlowFilter>& whitelist,
             const google::protobuf::RepeatedPtrField<flow::FlowFilter>& blacklist, const flow::Flow& fl);

}  // namespace np::flows
