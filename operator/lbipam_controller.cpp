#include "operator/lbipam_controller.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>
#include <map>

#include "core/log.h"
#include "k8s/lease.h"
#include "k8s/reflector.h"
#include "operator/lbipam.h"

namespace np::op {

namespace json = boost::json;
using namespace std::chrono_literals;

struct LbIpamController::State : std::enable_shared_from_this<LbIpamController::State> {
  boost::asio::io_context* io = nullptr;
  k8s::Client* client = nullptr;
  lbipam::Allocator alloc;
  std::map<lbipam::ServiceKey, json::object> objects;  // the services as last seen
  std::shared_ptr<k8s::Reflector> pools, services;
  std::map<std::string, std::string> poolStatusSent;  // pool -> the conditions last written
  bool busy = false, dirty = false;
  Stats stats;

  static lbipam::ServiceKey keyOf(const json::object& o) {
    lbipam::ServiceKey k;
    if (auto m = o.if_contains("metadata"); m && m->is_object()) {
      if (auto n = m->as_object().if_contains("namespace"); n && n->is_string()) k.ns = n->as_string();
      if (auto n = m->as_object().if_contains("name"); n && n->is_string()) k.name = n->as_string();
    }
    return k;
  }
  static std::string poolName(const json::object& o) {
    if (auto m = o.if_contains("metadata"); m && m->is_object())
      if (auto n = m->as_object().if_contains("name"); n && n->is_string()) return std::string(n->as_string());
    return {};
  }

  void upsertPool(const json::object& o) {
    auto p = lbipam::decodePool(o);
    if (!p) {
      // A malformed pool gives nothing: drop what an earlier good version of it offered.
      ++stats.badPools;
      NP_LOG_WARN("lbipam", "%s (ignored)", p.error().message().c_str());
      alloc.removePool(poolName(o));
      return;
    }
    alloc.upsertPool(std::move(*p));
  }
  void upsertService(json::object o) {
    auto s = lbipam::decodeService(o);
    lbipam::ServiceKey k = keyOf(o);
    if (!s) {
      ++stats.badServices;
      NP_LOG_WARN("lbipam", "%s", s.error().message().c_str());
      // It is told why on its condition (invalid_request), and holds nothing meanwhile.
      lbipam::Service bad;
      bad.key = k;
      bad.loadBalancer = true;
      bad.invalid = s.error().message();
      alloc.upsertService(std::move(bad));
      objects[k] = std::move(o);
      return;
    }
    alloc.upsertService(std::move(*s));
    objects[k] = std::move(o);
  }
  void removeService(const json::object& o) {
    auto k = keyOf(o);
    alloc.removeService(k);
    objects.erase(k);
  }

  void kick() {
    if (!pools->stats().synced || !services->stats().synced) return;
    if (busy) {
      dirty = true;
      return;
    }
    busy = true;
    boost::asio::co_spawn(*io, run(shared_from_this()), boost::asio::detached);
  }

  static boost::asio::awaitable<void> run(std::shared_ptr<State> self) {
    do {
      self->dirty = false;
      co_await self->pass();
    } while (self->dirty);
    self->busy = false;
  }

  static const json::object* condition(const json::object& svc) {
    auto st = svc.if_contains("status");
    if (!st || !st->is_object()) return nullptr;
    auto cs = st->as_object().if_contains("conditions");
    if (!cs || !cs->is_array()) return nullptr;
    for (const json::value& c : cs->as_array())
      if (c.is_object())
        if (auto t = c.as_object().if_contains("type"); t && t->is_string() && t->as_string() == lbipam::kConditionSatisfied)
          return &c.as_object();
    return nullptr;
  }
  static std::string str(const json::object* o, const char* k) {
    if (!o) return {};
    auto v = o->if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  }
  static std::vector<std::string> ingressIps(const json::object& svc) {
    std::vector<std::string> out;
    if (auto st = svc.if_contains("status"); st && st->is_object())
      if (auto lb = st->as_object().if_contains("loadBalancer"); lb && lb->is_object())
        if (auto in = lb->as_object().if_contains("ingress"); in && in->is_array())
          for (const json::value& e : in->as_array())
            if (e.is_object()) out.push_back(str(&e.as_object(), "ip"));
    return out;
  }
  static int64_t generation(const json::object& svc) {
    if (auto m = svc.if_contains("metadata"); m && m->is_object())
      if (auto g = m->as_object().if_contains("generation"); g && g->is_int64()) return g->as_int64();
    return 0;
  }

  // The status patch for one service, or "" when its status already says this.
  static std::string statusPatch(const json::object& svc, const lbipam::Outcome* o) {
    std::vector<std::string> want;
    if (o)
      for (Ipv4 ip : o->ips) want.push_back(ip.str());
    const json::object* cur = condition(svc);
    std::string status = o ? (o->satisfied ? "True" : "False") : "";
    if (!o && !cur) return {};  // not ours and never was
    if (o && cur && str(cur, "status") == status && str(cur, "reason") == o->reason &&
        str(cur, "message") == o->message && ingressIps(svc) == want) {
      auto g = cur->if_contains("observedGeneration");
      if (g && g->is_int64() && g->as_int64() == generation(svc)) return {};
    }
    json::array conds;
    if (auto st = svc.if_contains("status"); st && st->is_object())
      if (auto cs = st->as_object().if_contains("conditions"); cs && cs->is_array())
        for (const json::value& c : cs->as_array())
          if (c.is_object() && &c.as_object() != cur) conds.push_back(c);
    if (o) {
      std::string since = cur && str(cur, "status") == status ? str(cur, "lastTransitionTime")
                                                              : k8s::microTime(std::chrono::system_clock::now());
      conds.push_back(json::object{{"type", lbipam::kConditionSatisfied},
                                   {"status", status},
                                   {"observedGeneration", generation(svc)},
                                   {"lastTransitionTime", since},
                                   {"reason", o->reason},
                                   {"message", o->message}});
    }
    json::array ingress;
    for (const std::string& ip : want) ingress.push_back(json::object{{"ip", ip}});
    json::object st{{"conditions", conds}, {"loadBalancer", json::object{{"ingress", ingress}}}};
    return json::serialize(json::object{{"status", st}});
  }

  boost::asio::awaitable<void> pass() {
    const auto& outcomes = alloc.reconcile();
    // Copy what to send first: the maps may change while a request is out.
    struct Job {
      lbipam::ServiceKey key;
      std::string patch;
      std::string uid;
      std::optional<lbipam::Outcome> warn;
    };
    std::vector<Job> jobs;
    for (const auto& [k, svc] : objects) {
      auto it = outcomes.find(k);
      const lbipam::Outcome* o = it == outcomes.end() ? nullptr : &it->second;
      std::string patch = statusPatch(svc, o);
      if (patch.empty()) continue;
      Job j{k, std::move(patch), {}, {}};
      const json::object* cur = condition(svc);
      if (o && !o->satisfied && (str(cur, "status") != "False" || str(cur, "reason") != o->reason ||
                                 str(cur, "message") != o->message))
        j.warn = *o;
      if (auto m = svc.if_contains("metadata"); m && m->is_object()) j.uid = str(&m->as_object(), "uid");
      jobs.push_back(std::move(j));
    }
    for (Job& j : jobs) {
      std::string path = "/api/v1/namespaces/" + j.key.ns + "/services/" + j.key.name + "/status";
      auto r = co_await client->request("PATCH", path, j.patch, "application/merge-patch+json", 10s);
      if (!r || r->status / 100 != 2) {
        ++stats.patchErrors;
        NP_LOG_WARN("lbipam", "patch %s status: %s", j.key.str().c_str(),
                    r ? (std::to_string(r->status) + " " + r->body.substr(0, 200)).c_str() : r.error().message().c_str());
        dirty = true;  // the watch brings the current object; try again on the next pass
        continue;
      }
      ++stats.patches;
      // What the server now holds: later passes compare against it, not the stale copy.
      if (auto it = objects.find(j.key); it != objects.end()) {
        auto v = json::parse(r->body);
        if (v.is_object()) it->second = std::move(v.as_object());
      }
      auto it = outcomes.find(j.key);
      if (it != outcomes.end() && it->second.satisfied)
        NP_LOG_INFO("lbipam", "%s: %s", j.key.str().c_str(), it->second.ips.empty() ? "-" : it->second.ips[0].str().c_str());
      if (j.warn) co_await event(j.key, j.uid, *j.warn);
    }
    co_await poolStatus();
  }

  // Each pool's status as Cilium 1.15 writes it: cilium.io/IPsTotal, IPsAvailable, IPsUsed
  // (Unknown, reason noreason, the count as the message: `kubectl get ippools` shows IPS
  // AVAILABLE) and cilium.io/PoolConflict (False resolved, or True cidr_overlap naming the other
  // pool). Written when the numbers change.
  boost::asio::awaitable<void> poolStatus() {
    std::vector<std::pair<std::string, std::string>> jobs;
    for (const auto& [name, p] : alloc.pools()) {
      uint64_t total = p.size(), used = alloc.used(name);
      std::string other;
      for (const auto& [n2, p2] : alloc.pools()) {
        if (n2 == name) continue;
        for (const auto& a : p.ranges)
          for (const auto& b : p2.ranges)
            if (a.first <= b.last && b.first <= a.last) other = n2;
      }
      std::string now = k8s::microTime(std::chrono::system_clock::now()).substr(0, 19) + "Z";
      auto cnt = [&](const char* type, uint64_t n) {
        return json::object{{"type", type}, {"status", "Unknown"}, {"reason", "noreason"},
                            {"message", std::to_string(n)}, {"lastTransitionTime", now}};
      };
      json::object conflict{{"type", "cilium.io/PoolConflict"},
                            {"status", other.empty() ? "False" : "True"},
                            {"reason", other.empty() ? "resolved" : "cidr_overlap"},
                            {"message", other.empty() ? "" : "Pool overlaps with the CIDRs of pool '" + other + "'"},
                            {"lastTransitionTime", now}};
      std::string key = std::to_string(total) + "/" + std::to_string(used) + "/" + other;
      if (poolStatusSent[name] == key) continue;
      poolStatusSent[name] = key;
      json::array conds{cnt("cilium.io/IPsTotal", total), cnt("cilium.io/IPsAvailable", total - used),
                        cnt("cilium.io/IPsUsed", used), conflict};
      jobs.emplace_back(name, json::serialize(json::object{{"status", json::object{{"conditions", conds}}}}));
    }
    for (auto& [name, body] : jobs) {
      auto r = co_await client->request("PATCH", "/apis/cilium.io/v2alpha1/ciliumloadbalancerippools/" + name + "/status",
                                        body, "application/merge-patch+json", 10s);
      if (!r || r->status / 100 != 2) {
        ++stats.patchErrors;
        poolStatusSent.erase(name);
        NP_LOG_WARN("lbipam", "patch pool %s status: %s", name.c_str(),
                    r ? (std::to_string(r->status) + " " + r->body.substr(0, 200)).c_str() : r.error().message().c_str());
      }
    }
  }

  boost::asio::awaitable<void> event(const lbipam::ServiceKey& k, const std::string& uid, const lbipam::Outcome& o) {
    std::string now = k8s::microTime(std::chrono::system_clock::now());
    std::string nowSec = now.substr(0, 19) + "Z";
    json::object ev{
        {"apiVersion", "v1"},
        {"kind", "Event"},
        {"metadata", json::object{{"generateName", k.name + "."}, {"namespace", k.ns}}},
        {"involvedObject", json::object{{"apiVersion", "v1"}, {"kind", "Service"}, {"namespace", k.ns}, {"name", k.name}, {"uid", uid}}},
        {"reason", o.reason},
        {"message", o.message},
        {"type", "Warning"},
        {"count", 1},
        {"firstTimestamp", nowSec},
        {"lastTimestamp", nowSec},
        {"source", json::object{{"component", "nodepath-operator"}}},
        {"reportingComponent", "nodepath-operator"},
    };
    auto r = co_await client->request("POST", "/api/v1/namespaces/" + k.ns + "/events", json::serialize(ev),
                                      "application/json", 10s);
    if (!r || r->status / 100 != 2) {
      NP_LOG_WARN("lbipam", "event for %s: %s", k.str().c_str(),
                  r ? (std::to_string(r->status) + " " + r->body.substr(0, 200)).c_str() : r.error().message().c_str());
      co_return;
    }
    ++stats.events;
    NP_LOG_INFO("lbipam", "%s: %s: %s", k.str().c_str(), o.reason.c_str(), o.message.c_str());
  }
};

Result<std::shared_ptr<LbIpamController>> LbIpamController::start(boost::asio::io_context& io, k8s::Client& client) {
  auto c = std::shared_ptr<LbIpamController>(new LbIpamController());
  auto st = std::make_shared<State>();
  c->st_ = st;
  st->io = &io;
  st->client = &client;
  std::weak_ptr<State> w = st;

  k8s::Reflector::Handler ph;
  ph.replace = [w](std::vector<json::object> items) -> Status {
    auto s = w.lock();
    if (!s) return {};
    std::vector<std::string> names;
    for (const auto& [n, p] : s->alloc.pools()) names.push_back(n);
    for (const auto& n : names) s->alloc.removePool(n);
    for (const json::object& o : items) s->upsertPool(o);
    return {};
  };
  ph.event = [w](k8s::EventType t, json::object o) -> Status {
    auto s = w.lock();
    if (!s) return {};
    if (t == k8s::EventType::Deleted) s->alloc.removePool(State::poolName(o));
    else s->upsertPool(o);
    return {};
  };
  ph.flush = [w] {
    if (auto s = w.lock()) s->kick();
  };
  k8s::Reflector::Handler sh;
  sh.replace = [w](std::vector<json::object> items) -> Status {
    auto s = w.lock();
    if (!s) return {};
    std::vector<json::object> old;
    for (auto& [k, o] : s->objects) old.push_back(o);
    for (const auto& o : old) s->removeService(o);
    for (json::object& o : items) s->upsertService(std::move(o));
    return {};
  };
  sh.event = [w](k8s::EventType t, json::object o) -> Status {
    auto s = w.lock();
    if (!s) return {};
    if (t == k8s::EventType::Deleted) s->removeService(o);
    else s->upsertService(std::move(o));
    return {};
  };
  sh.flush = ph.flush;
  st->pools = std::make_shared<k8s::Reflector>(client, "ciliumloadbalancerippools",
                                               "/apis/cilium.io/v2alpha1/ciliumloadbalancerippools", "", ph);
  st->services = std::make_shared<k8s::Reflector>(client, "services", "/api/v1/services", "", sh);
  boost::asio::co_spawn(io, st->pools->run(), boost::asio::detached);
  boost::asio::co_spawn(io, st->services->run(), boost::asio::detached);
  NP_LOG_INFO("lbipam", "watching CiliumLoadBalancerIPPools and Services at %s", client.config().server.c_str());
  return c;
}

const LbIpamController::Stats& LbIpamController::stats() const { return st_->stats; }

}  // namespace np::op
