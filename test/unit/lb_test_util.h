// Helpers shared by the lb unit tests.
#pragma once

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "lb/model.h"
#include "lb/planner.h"

namespace np::lb::test {

inline Ipv4 ip(const char* s) { return *Ipv4::parse(s); }
inline Endpoint ep(const char* s) { return *Endpoint::parse(s); }

inline Service clusterIpService(const std::string& name, const char* vip, uint16_t port,
                                std::vector<const char*> backends) {
  Service s;
  s.name = name;
  s.port = port;
  s.clusterIp = ip(vip);
  for (const char* b : backends) s.backends.push_back({ep(b), BackendState::Active});
  return s;
}

inline std::vector<MapOp::Kind> kinds(const std::vector<MapOp>& ops) {
  std::vector<MapOp::Kind> k;
  for (const auto& op : ops) k.push_back(op.kind);
  return k;
}

inline std::string describe(const std::vector<MapOp>& ops) {
  std::string s;
  for (const auto& op : ops) s += "  " + op.str() + "\n";
  return s;
}

}  // namespace np::lb::test
