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
// else; for the policies: an EXT entry with the node's backends only and an INT entry with all
// of them for a routable frontend of an externalTrafficPolicy=Local service, local backends only
// for the ClusterIP of an internalTrafficPolicy=Local one, the affinity timeout and one affinity
// match per selectable slot, a Maglev table over the selectable backends for routable frontends
// when the node uses Maglev. Written independently of the reconciler's own expansion.
inline ::testing::AssertionResult mapsMatchModel(const LbImage& img, const Reconciler& r) {
  size_t services = 0, backends = 0, revNat = 0, matches = 0, tables = 0;
  std::set<uint32_t> usedBackends;
  // A backend entry is shared: terminating when any service lists that endpoint as terminating.
  std::set<std::pair<Endpoint, Protocol>> anyTerminating;
  for (const auto& [name, s] : r.services())
    for (const Backend& b : s.backends)
      if (b.state == BackendState::Terminating) anyTerminating.insert({b.addr, s.protocol});
  const NodeContext& node = r.node();
  for (const auto& [name, s] : r.services()) {
    for (const Frontend& f : frontendsOf(s, node)) {
      const bool routable = f.type == FrontendType::NodePort || f.type == FrontendType::ExternalIp ||
                            f.type == FrontendType::LoadBalancer;
      const bool extLocal = routable && s.externalTrafficPolicy == TrafficPolicy::Local;
      const bool intLocal = f.type == FrontendType::ClusterIp && s.internalTrafficPolicy == TrafficPolicy::Local;
      struct Scope {
        uint8_t scope;
        bool localOnly;
      };
      std::vector<Scope> scopes{{NP_LB_SCOPE_EXT, extLocal || intLocal}};
      if (extLocal) scopes.push_back({NP_LB_SCOPE_INT, false});
      for (const Scope& sc : scopes) {
        std::vector<Backend> view, active, terminating;
        for (const Backend& b : s.backends)
          if (!sc.localOnly || isLocal(b, node)) view.push_back(b);
        for (const Backend& b : view) (b.state == BackendState::Active ? active : terminating).push_back(b);
        const bool onlyTerm = active.empty();
        const std::string where = name + " " + f.str() + (sc.scope == NP_LB_SCOPE_INT ? " (internal)" : "");
        auto mk = svcKey(f.addr.be, htons(f.port), static_cast<uint8_t>(f.protocol), 0, sc.scope);
        auto m = img.services.find(mk);
        if (m == img.services.end()) return ::testing::AssertionFailure() << where << ": no entry";
        ++services;
        if (m->second.total != view.size() || m->second.count != (onlyTerm ? terminating.size() : active.size()))
          return ::testing::AssertionFailure() << where << ": count " << m->second.count << " total " << m->second.total;
        const bool affinity = s.sessionAffinity == SessionAffinity::ClientIp;
        if (bool(m->second.flags & NP_SVC_F_AFFINITY) != affinity ||
            (affinity && m->second.backend_id != s.affinityTimeoutSec))
          return ::testing::AssertionFailure() << where << ": affinity flag or timeout wrong";
        if (bool(m->second.flags2 & NP_SVC_F2_TWO_SCOPES) != (extLocal && sc.scope == NP_LB_SCOPE_EXT))
          return ::testing::AssertionFailure() << where << ": two-scopes flag wrong";
        std::multiset<Endpoint> want, got;
        for (const Backend& b : view) want.insert(b.addr);
        std::set<uint32_t> selectable;
        for (uint16_t slot = 1; slot <= m->second.total; ++slot) {
          auto k = mk;
          k.slot = slot;
          auto sl = img.services.find(k);
          if (sl == img.services.end()) return ::testing::AssertionFailure() << where << ": slot " << slot << " missing";
          ++services;
          auto be = img.backends.find(sl->second.backend_id);
          if (be == img.backends.end())
            return ::testing::AssertionFailure() << where << ": slot " << slot << " names a missing backend";
          usedBackends.insert(sl->second.backend_id);
          if (slot <= m->second.count) selectable.insert(sl->second.backend_id);
          Endpoint e{Ipv4{be->second.addr}, ntohs(be->second.port)};
          got.insert(e);
          const bool term = be->second.state == NP_BACKEND_TERMINATING;
          if (term != anyTerminating.count({e, s.protocol}))
            return ::testing::AssertionFailure() << where << ": backend " << e.str() << " has state " << int(term)
                                                 << " in the map";
          // The service's own view orders its slots: its active backends first.
          bool ownTerm = false;
          for (const Backend& b : s.backends)
            if (b.addr == e) ownTerm = b.state == BackendState::Terminating;
          if (slot <= m->second.count && !onlyTerm && ownTerm)
            return ::testing::AssertionFailure() << where << ": terminating backend in a selectable slot";
        }
        if (want != got) return ::testing::AssertionFailure() << where << ": slots hold other backends";
        if (affinity) {
          for (uint32_t id : selectable) {
            np_affinity_match am{};
            am.backend_id = id;
            am.rev_nat_id = m->second.rev_nat_id;
            am.scope = sc.scope;
            if (!img.affinityMatch.contains(am))
              return ::testing::AssertionFailure() << where << ": no affinity match for backend " << id;
            ++matches;
          }
        }
        const bool wantTable = node.maglev && routable && sc.scope == NP_LB_SCOPE_EXT && !selectable.empty();
        auto t = img.maglev.find(mk);
        if (wantTable != (t != img.maglev.end()) || wantTable != bool(m->second.flags2 & NP_SVC_F2_MAGLEV))
          return ::testing::AssertionFailure() << where << ": Maglev table " << (wantTable ? "missing" : "unexpected");
        if (wantTable) {
          ++tables;
          if (!t->second.ids || t->second.ids->size() != node.maglevTableSize ||
              std::set<uint32_t>(t->second.ids->begin(), t->second.ids->end()) != selectable)
            return ::testing::AssertionFailure() << where << ": the Maglev table is not over the selectable backends";
        }
        if (sc.scope == NP_LB_SCOPE_EXT) {
          auto rn = img.revNat.find(m->second.rev_nat_id);
          if (rn == img.revNat.end() || rn->second.addr != f.addr.be || rn->second.port != htons(f.port))
            return ::testing::AssertionFailure() << where << ": reverse NAT missing or wrong";
          ++revNat;
        }
      }
    }
  }
  backends = usedBackends.size();
  if (img.services.size() != services || img.backends.size() != backends || img.revNat.size() != revNat ||
      img.affinityMatch.size() != matches || img.maglev.size() != tables)
    return ::testing::AssertionFailure() << "leftovers: maps hold " << img.services.size() << "/" << img.backends.size()
                                         << "/" << img.revNat.size() << "/" << img.affinityMatch.size() << "/"
                                         << img.maglev.size()
                                         << " service/backend/rev-NAT/affinity-match/Maglev entries, the model "
                                         << services << "/" << backends << "/" << revNat << "/" << matches << "/"
                                         << tables;
  return ::testing::AssertionSuccess();
}

}  // namespace np::lb::test
