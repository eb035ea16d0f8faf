#include "operator/lbipam.h"

#include <algorithm>
#include <boost/json.hpp>

namespace np::op::lbipam {

namespace json = boost::json;

namespace {

const json::object* objAt(const json::object& o, const char* k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_object() ? &it->value().as_object() : nullptr;
}
std::string strAt(const json::object& o, const char* k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

Result<Range> parseCidrBlock(const std::string& text, bool allowFirstLast, const std::string& what) {
  auto c = Cidr::parse(text);
  if (!c) return error(what, "\"" + text + "\" is not an IPv4 CIDR");
  uint32_t mask = c->prefix == 0 ? 0 : ~uint32_t(0) << (32 - c->prefix);
  uint32_t net = c->addr.host() & mask;
  Range r{net, net | ~mask};
  if (!allowFirstLast && c->prefix < 31) {
    ++r.first;
    --r.last;
  }
  return r;
}

bool isV6(const std::string& s) { return s.find(':') != std::string::npos; }

}  // namespace

bool Pool::matches(const l2::Labels& labels) const { return !serviceSelector || serviceSelector->matches(labels); }
bool Pool::contains(Ipv4 ip) const {
  uint32_t h = ip.host();
  return std::any_of(ranges.begin(), ranges.end(), [h](const Range& r) { return h >= r.first && h <= r.last; });
}
uint64_t Pool::size() const {
  uint64_t n = 0;
  for (const Range& r : ranges) n += r.size();
  return n;
}

Result<Pool> decodePool(const json::object& obj) {
  Pool p;
  const json::object* meta = objAt(obj, "metadata");
  if (meta) p.name = strAt(*meta, "name");
  std::string ctx = "CiliumLoadBalancerIPPool " + (p.name.empty() ? std::string("(no name)") : p.name);
  if (p.name.empty()) return error(ctx, "metadata.name is missing");
  const json::object* spec = objAt(obj, "spec");
  if (!spec) return error(ctx, "spec is missing");
  if (auto it = spec->find("disabled"); it != spec->end() && !it->value().is_null()) {
    if (!it->value().is_bool()) return error(ctx, "spec.disabled is not a boolean");
    p.disabled = it->value().as_bool();
  }
  bool allowFirstLast = false;
  if (auto it = spec->find("allowFirstLastIPs"); it != spec->end() && !it->value().is_null()) {
    std::string v = it->value().is_string() ? std::string(it->value().as_string()) : "";
    if (v == "Yes") allowFirstLast = true;
    else if (v != "No") return error(ctx, "spec.allowFirstLastIPs must be \"Yes\" or \"No\"");
  }
  if (auto it = spec->find("serviceSelector"); it != spec->end() && !it->value().is_null()) {
    auto sel = l2::LabelSelector::fromJson(it->value());
    if (!sel) return error(ctx, "spec.serviceSelector: " + sel.error().message());
    p.serviceSelector = std::move(*sel);
  }
  for (const char* field : {"blocks", "cidrs"}) {
    auto it = spec->find(field);
    if (it == spec->end() || it->value().is_null()) continue;
    if (!it->value().is_array()) return error(ctx, std::string("spec.") + field + " is not a list");
    size_t i = 0;
    for (const json::value& b : it->value().as_array()) {
      std::string where = std::string("spec.") + field + "[" + std::to_string(i++) + "]";
      if (!b.is_object()) return error(ctx, where + " is not an object");
      const json::object& bo = b.as_object();
      std::string cidr = strAt(bo, "cidr"), start = strAt(bo, "start"), stop = strAt(bo, "stop");
      if (!cidr.empty() && (!start.empty() || !stop.empty()))
        return error(ctx, where + ": cidr and start/stop are exclusive");
      if (!cidr.empty()) {
        if (isV6(cidr)) continue;
        auto r = parseCidrBlock(cidr, allowFirstLast, where);
        if (!r) return error(ctx, r.error().message());
        p.ranges.push_back(*r);
      } else if (!start.empty()) {
        if (isV6(start)) continue;
        auto a = Ipv4::parse(start);
        if (!a) return error(ctx, where + ": start \"" + start + "\" is not an IPv4 address");
        auto b2 = stop.empty() ? a : Ipv4::parse(stop);
        if (!b2) return error(ctx, where + ": stop \"" + stop + "\" is not an IPv4 address");
        if (b2->host() < a->host()) return error(ctx, where + ": stop " + stop + " is before start " + start);
        p.ranges.push_back(Range{a->host(), b2->host()});
      } else {
        return error(ctx, where + ": neither cidr nor start");
      }
    }
  }
  return p;
}

Result<Service> decodeService(const json::object& obj) {
  Service s;
  const json::object* meta = objAt(obj, "metadata");
  if (meta) {
    s.key.ns = strAt(*meta, "namespace");
    s.key.name = strAt(*meta, "name");
    if (auto it = meta->find("generation"); it != meta->end() && it->value().is_int64()) s.generation = it->value().as_int64();
    if (const json::object* l = objAt(*meta, "labels"))
      for (const auto& kv : *l)
        if (kv.value().is_string()) s.labels[std::string(kv.key())] = std::string(kv.value().as_string());
  }
  std::string ctx = "Service " + s.key.str();
  if (s.key.name.empty()) return error(ctx, "metadata.name is missing");
  s.labels["io.kubernetes.service.namespace"] = s.key.ns;
  s.labels["io.kubernetes.service.name"] = s.key.name;
  const json::object* spec = objAt(obj, "spec");
  if (spec && strAt(*spec, "type") == "LoadBalancer") {
    std::string cls = strAt(*spec, "loadBalancerClass");
    s.loadBalancer = cls.empty() || cls == "io.cilium/l2-announcer" || cls == "io.cilium/bgp-control-plane";
  }
  if (const json::object* st = objAt(obj, "status"))
    if (const json::object* lb = objAt(*st, "loadBalancer"))
      if (auto it = lb->find("ingress"); it != lb->end() && it->value().is_array())
        for (const json::value& in : it->value().as_array())
          if (in.is_object())
            if (auto ip = Ipv4::parse(strAt(in.as_object(), "ip"))) s.ingress.push_back(*ip);
  if (!s.loadBalancer) return s;
  // The annotation wins over the deprecated spec.loadBalancerIP, as in Cilium.
  std::string want;
  if (meta)
    if (const json::object* a = objAt(*meta, "annotations")) {
      want = strAt(*a, kAnnotationIps);
      if (want.empty()) want = strAt(*a, kAnnotationIpsOld);
    }
  if (want.empty() && spec) want = strAt(*spec, "loadBalancerIP");
  size_t pos = 0;
  while (pos <= want.size() && !want.empty()) {
    size_t comma = want.find(',', pos);
    std::string one = want.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    one.erase(0, one.find_first_not_of(" \t"));
    one.erase(one.find_last_not_of(" \t") + 1);
    if (!one.empty() && !isV6(one)) {
      auto ip = Ipv4::parse(one);
      if (!ip) return error(ctx, "requested address \"" + one + "\" is not an IPv4 address");
      s.requested.push_back(*ip);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return s;
}

void Allocator::upsertPool(Pool p) {
  std::string n = p.name;
  pools_[n] = std::move(p);
}
void Allocator::removePool(const std::string& name) { pools_.erase(name); }
void Allocator::upsertService(Service s) {
  ServiceKey k = s.key;
  services_[k] = std::move(s);
}
void Allocator::removeService(const ServiceKey& k) {
  services_.erase(k);
  outcomes_.erase(k);
  for (auto it = taken_.begin(); it != taken_.end();) it = it->second == k ? taken_.erase(it) : std::next(it);
}

const Pool* Allocator::poolOf(Ipv4 ip) const {
  for (const auto& [name, p] : pools_)
    if (p.contains(ip)) return &p;
  return nullptr;
}

uint64_t Allocator::used(const std::string& pool) const {
  auto it = pools_.find(pool);
  if (it == pools_.end()) return 0;
  uint64_t n = 0;
  for (const auto& [ip, k] : taken_)
    if (it->second.contains(Ipv4::fromHost(ip))) ++n;
  return n;
}

const std::map<ServiceKey, Outcome>& Allocator::reconcile() {
  std::map<uint32_t, ServiceKey> taken;
  std::map<ServiceKey, Outcome> out;
  // Pass 1: holdings (our earlier grants, else what the status says).
  for (const auto& [k, s] : services_) {
    if (!s.loadBalancer) continue;
    Outcome& o = out[k];
    if (!s.invalid.empty()) continue;
    std::vector<Ipv4> held;
    if (auto prev = outcomes_.find(k); prev != outcomes_.end()) held = prev->second.ips;
    else held = s.ingress;
    for (Ipv4 ip : held) {
      const Pool* p = poolOf(ip);
      if (!p || !p->matches(s.labels)) continue;
      if (!s.requested.empty() && std::find(s.requested.begin(), s.requested.end(), ip) == s.requested.end()) continue;
      if (taken.count(ip.host())) continue;
      taken.emplace(ip.host(), k);
      o.ips.push_back(ip);
    }
  }
  // Pass 2: what is still missing.
  for (const auto& [k, s] : services_) {
    if (!s.loadBalancer) continue;
    Outcome& o = out[k];
    o.satisfied = true;
    if (!s.invalid.empty()) {
      o = Outcome{{}, false, "invalid_request", s.invalid};
      continue;
    }
    if (!s.requested.empty()) {
      for (Ipv4 ip : s.requested) {
        if (std::find(o.ips.begin(), o.ips.end(), ip) != o.ips.end()) continue;
        const Pool* p = poolOf(ip);
        if (!p || p->disabled) {
          o = Outcome{o.ips, false, "no_pool", "No pool exists with a CIDR containing '" + ip.str() + "'"};
          if (p) o.message = "The pool '" + p->name + "' containing '" + ip.str() + "' is disabled";
          continue;
        }
        if (!p->matches(s.labels)) {
          o = Outcome{o.ips, false, "pool_selector_mismatch",
                      "The pool with the CIDR containing '" + ip.str() + "', doesn't select this service"};
          continue;
        }
        if (taken.count(ip.host())) {
          o = Outcome{o.ips, false, "already_allocated",
                      "The IP '" + ip.str() + "' is already allocated to another service"};
          continue;
        }
        taken.emplace(ip.host(), k);
        o.ips.push_back(ip);
      }
    } else if (o.ips.empty()) {
      bool matched = false, got = false;
      for (const auto& [name, p] : pools_) {
        if (p.disabled || !p.matches(s.labels)) continue;
        matched = true;
        for (const Range& r : p.ranges) {
          for (uint64_t a = r.first; a <= r.last && !got; ++a)
            if (!taken.count(uint32_t(a))) {
              taken.emplace(uint32_t(a), k);
              o.ips.push_back(Ipv4::fromHost(uint32_t(a)));
              got = true;
            }
          if (got) break;
        }
        if (got) break;
      }
      if (!got) {
        o.satisfied = false;
        if (matched) {
          o.reason = "out_of_ips";
          o.message = "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs";
        } else {
          o.reason = "no_pool";
          o.message = "There are no enabled CiliumLoadBalancerIPPools that match this service";
        }
      }
    }
    if (o.satisfied) {
      o.reason = "satisfied";
      o.message.clear();
    }
  }
  outcomes_ = std::move(out);
  taken_ = std::move(taken);
  return outcomes_;
}

}  // namespace np::op::lbipam
