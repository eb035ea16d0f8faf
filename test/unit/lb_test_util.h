// Helpers shared by the lb unit tests.
#pragma once

#include <arpa/inet.h>

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "lb/model.h"
#include "lb/planner.h"
#include "lb/reconciler.h"

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

// The maps hold exactly the expansion of the model: every service's frontends with
// count/total/slots in order, backends with their address and state, reverse NAT, and nothing
// else. Written independently of the reconciler's own expansion.
inline ::testing::AssertionResult mapsMatchModel(const LbImage& img, const Reconciler& r) {
  size_t services = 0, backends = 0, revNat = 0;
  std::set<uint32_t> usedBackends;
  // A backend entry is shared: terminating when any service lists that endpoint as terminating.
  std::set<std::pair<Endpoint, Protocol>> anyTerminating;
  for (const auto& [name, s] : r.services())
    for (const Backend& b : s.backends)
      if (b.state == BackendState::Terminating) anyTerminating.insert({b.addr, s.protocol});
  for (const auto& [name, s] : r.services()) {
    std::vector<Backend> active, terminating;
    for (const Backend& b : s.backends) (b.state == BackendState::Active ? active : terminating).push_back(b);
    const bool onlyTerm = active.empty();
    for (const Frontend& f : frontendsOf(s, r.node())) {
      auto mk = svcKey(f.addr.be, htons(f.port), static_cast<uint8_t>(f.protocol), 0);
      auto m = img.services.find(mk);
      if (m == img.services.end()) return ::testing::AssertionFailure() << name << ": no entry for " << f.str();
      ++services;
      if (m->second.total != s.backends.size() || m->second.count != (onlyTerm ? terminating.size() : active.size()))
        return ::testing::AssertionFailure() << name << " " << f.str() << ": count " << m->second.count << " total "
                                             << m->second.total;
      std::multiset<Endpoint> want, got;
      for (const Backend& b : s.backends) want.insert(b.addr);
      for (uint16_t slot = 1; slot <= m->second.total; ++slot) {
        auto k = mk;
        k.slot = slot;
        auto sl = img.services.find(k);
        if (sl == img.services.end()) return ::testing::AssertionFailure() << name << ": slot " << slot << " missing";
        ++services;
        auto be = img.backends.find(sl->second.backend_id);
        if (be == img.backends.end())
          return ::testing::AssertionFailure() << name << ": slot " << slot << " names a missing backend";
        usedBackends.insert(sl->second.backend_id);
        Endpoint e{Ipv4{be->second.addr}, ntohs(be->second.port)};
        got.insert(e);
        const bool term = be->second.state == NP_BACKEND_TERMINATING;
        if (term != anyTerminating.count({e, s.protocol}))
          return ::testing::AssertionFailure() << name << ": backend " << e.str() << " has state " << int(term)
                                               << " in the map";
        // The service's own view orders its slots: its active backends first.
        bool ownTerm = false;
        for (const Backend& b : s.backends)
          if (b.addr == e) ownTerm = b.state == BackendState::Terminating;
        if (slot <= m->second.count && !onlyTerm && ownTerm)
          return ::testing::AssertionFailure() << name << ": terminating backend in a selectable slot";
      }
      if (want != got) return ::testing::AssertionFailure() << name << " " << f.str() << ": slots hold other backends";
      auto rn = img.revNat.find(m->second.rev_nat_id);
      if (rn == img.revNat.end() || rn->second.addr != f.addr.be || rn->second.port != htons(f.port))
        return ::testing::AssertionFailure() << name << " " << f.str() << ": reverse NAT missing or wrong";
      ++revNat;
    }
  }
  backends = usedBackends.size();
  if (img.services.size() != services || img.backends.size() != backends || img.revNat.size() != revNat)
    return ::testing::AssertionFailure() << "leftovers: maps hold " << img.services.size() << "/" << img.backends.size()
                                         << "/" << img.revNat.size() << " service/backend/rev-NAT entries, the model "
                                         << services << "/" << backends << "/" << revNat;
  return ::testing::AssertionSuccess();
}

}  // namespace np::lb::test
