// Conversions between the agent API's protobuf messages and the service model. Parsing says
// exactly which field is wrong; nothing half-parsed escapes.
#pragma once

#include "agent.pb.h"
#include "core/result.h"
#include "lb/model.h"
#include "np_ct.h"

namespace np::api {

namespace pb = ::nodepath::agent::v1;

Result<lb::Service> serviceFromProto(const pb::Service& in);
pb::Service serviceToProto(const lb::Service& s);

// One conntrack entry of table t as `bpf ct list` shows it; nowNs is CLOCK_MONOTONIC_COARSE (the
// clock of np_ct_entry.expires).
pb::CtEntry ctEntryToProto(np_ct_table t, const np_ct_key& k, const np_ct_entry& e, uint64_t nowNs);

}  // namespace np::api
