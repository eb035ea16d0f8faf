#include "l2/policy.h"

#include <net/if.h>
#include <net/if_arp.h>

#include <algorithm>

#include <boost/json.hpp>

namespace np::l2 {
namespace json = boost::json;
namespace {

Result<std::vector<std::string>> stringArray(const json::value& v, const std::string& what) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (!v.is_array()) return error(what, "must be a list of strings");
  for (const auto& e : v.as_array()) {
    if (!e.is_string()) return error(what, "must be a list of strings");
    out.emplace_back(e.as_string());
  }
  return out;
}

Result<std::optional<LabelSelector>> optionalSelector(const json::object& spec, const char* key,
                                                      const char* condition) {
  const json::value* v = spec.if_contains(key);
  if (!v || v->is_null()) return std::optional<LabelSelector>{};
  auto sel = LabelSelector::fromJson(*v);
  if (!sel) return error(condition, std::string(key) + ": " + sel.error().message());
  return std::optional<LabelSelector>{std::move(*sel)};
}

}  // namespace

Result<LabelSelector> LabelSelector::fromJson(const json::value& v) {
  LabelSelector s;
  if (v.is_null()) return s;
  if (!v.is_object()) return error("label selector", "must be an object");
  const auto& o = v.as_object();
  if (const auto* ml = o.if_contains("matchLabels"); ml && !ml->is_null()) {
    if (!ml->is_object()) return error("matchLabels", "must be a map of strings");
    for (const auto& [k, val] : ml->as_object()) {
      if (!val.is_string()) return error("matchLabels", "value of " + std::string(k) + " is not a string");
      s.matchLabels.emplace(std::string(k), std::string(val.as_string()));
    }
  }
  if (const auto* me = o.if_contains("matchExpressions"); me && !me->is_null()) {
    if (!me->is_array()) return error("matchExpressions", "must be a list");
    for (const auto& e : me->as_array()) {
      if (!e.is_object()) return error("matchExpressions", "entries must be objects");
      const auto& eo = e.as_object();
      Requirement r;
      const auto* key = eo.if_contains("key");
      const auto* op = eo.if_contains("operator");
      if (!key || !key->is_string() || key->as_string().empty())
        return error("matchExpressions", "key is required");
      r.key = std::string(key->as_string());
      if (!op || !op->is_string()) return error("matchExpressions", "operator is required for " + r.key);
      const std::string ops(op->as_string());
      if (ops == "In") r.op = Op::In;
      else if (ops == "NotIn") r.op = Op::NotIn;
      else if (ops == "Exists") r.op = Op::Exists;
      else if (ops == "DoesNotExist") r.op = Op::DoesNotExist;
      else return error("matchExpressions", "\"" + ops + "\" is not a valid label selector operator");
      auto values = stringArray(eo.if_contains("values") ? eo.at("values") : json::value{},
                                "matchExpressions values of " + r.key);
      if (!values) return values.error();
      r.values = std::move(*values);
      const bool set = r.op == Op::In || r.op == Op::NotIn;
      if (set && r.values.empty())
        return error("matchExpressions", "for 'in', 'notin' operators, values set can't be empty (key " + r.key + ")");
      if (!set && !r.values.empty())
        return error("matchExpressions", "values set must be empty for exists and does not exist (key " + r.key + ")");
      s.expressions.push_back(std::move(r));
    }
  }
  return s;
}

bool LabelSelector::matches(const Labels& labels) const {
  for (const auto& [k, v] : matchLabels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const auto& r : expressions) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const bool inValues = has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    switch (r.op) {
      case Op::In: if (!inValues) return false; break;
      case Op::NotIn: if (inValues) return false; break;  // absent key satisfies NotIn
      case Op::Exists: if (!has) return false; break;
      case Op::DoesNotExist: if (has) return false; break;
    }
  }
  return true;
}

Result<Policy> Policy::fromJson(const json::value& object) {
  if (!object.is_object()) return error("CiliumL2AnnouncementPolicy", "not an object");
  const auto& o = object.as_object();
  Policy p;
  if (const auto* md = o.if_contains("metadata"); md && md->is_object()) {
    if (const auto* n = md->as_object().if_contains("name"); n && n->is_string())
      p.name = std::string(n->as_string());
  }
  const json::value* specv = o.if_contains("spec");
  if (!specv || !specv->is_object()) return error("CiliumL2AnnouncementPolicy " + p.name, "spec is missing");
  const auto& spec = specv->as_object();
  auto svc = optionalSelector(spec, "serviceSelector", "io.cilium/bad-service-selector");
  if (!svc) return svc.error();
  p.serviceSelector = std::move(*svc);
  auto node = optionalSelector(spec, "nodeSelector", "io.cilium/bad-node-selector");
  if (!node) return node.error();
  p.nodeSelector = std::move(*node);
  auto ifs = stringArray(spec.if_contains("interfaces") ? spec.at("interfaces") : json::value{}, "interfaces");
  if (!ifs) return error("io.cilium/bad-interface-regex", ifs.error().message());
  for (const auto& pat : *ifs) {
    try {
      p.interfaces.emplace_back(pat, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return error("io.cilium/bad-interface-regex", "\"" + pat + "\": " + e.what());
    }
  }
  p.interfacePatterns = std::move(*ifs);
  auto flag = [&](const char* k) {
    const auto* v = spec.if_contains(k);
    return v && v->is_bool() && v->as_bool();
  };
  p.externalIPs = flag("externalIPs");
  p.loadBalancerIPs = flag("loadBalancerIPs");
  return p;
}

bool Policy::matchesDevice(const std::string& device) const {
  if (interfaces.empty()) return true;
  return std::any_of(interfaces.begin(), interfaces.end(),
                     [&](const std::regex& re) { return std::regex_search(device, re); });
}

std::vector<Announcement> announcementsFor(const std::vector<Policy>& policies, const Service& svc,
                                           const Labels& nodeLabels,
                                           const std::vector<std::string>& devices) {
  std::vector<Announcement> out;
  if (svc.loadBalancerClass && *svc.loadBalancerClass != kL2LoadBalancerClass) return out;
  if (svc.externalIPs.empty() && svc.loadBalancerIPs.empty()) return out;
  Labels svcLabels = svc.labels;
  svcLabels["io.kubernetes.service.namespace"] = svc.ns;
  svcLabels["io.kubernetes.service.name"] = svc.name;
  for (const auto& p : policies) {
    if (p.nodeSelector && !p.nodeSelector->matches(nodeLabels)) continue;
    if (p.serviceSelector && !p.serviceSelector->matches(svcLabels)) continue;
    std::vector<Ipv4> ips;
    if (p.loadBalancerIPs) ips.insert(ips.end(), svc.loadBalancerIPs.begin(), svc.loadBalancerIPs.end());
    if (p.externalIPs) ips.insert(ips.end(), svc.externalIPs.begin(), svc.externalIPs.end());
    for (const auto& dev : devices) {
      if (!p.matchesDevice(dev)) continue;
      for (Ipv4 ip : ips) out.push_back({ip, dev});
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool announceableDevice(const std::string& name, unsigned flags, int hwType) {
  if (name == "np_host" || name == "np_net" || name.rfind("lxc", 0) == 0) return false;
  if (!(flags & IFF_UP) || (flags & IFF_LOOPBACK) || (flags & IFF_SLAVE)) return false;
  return hwType == ARPHRD_ETHER;
}

std::string leaseName(const Service& svc) { return "nodepath-l2announce-" + svc.ns + "-" + svc.name; }

std::map<std::string, std::string> leaseCollisions(const std::vector<Policy>& policies,
                                                   const std::map<std::string, Service>& services) {
  std::vector<Policy> anywhere = policies;
  for (auto& p : anywhere) {
    p.nodeSelector.reset();
    p.interfaces.clear();
  }
  const std::vector<std::string> anyDevice{"any"};
  std::map<std::string, std::string> owner;  // lease -> the service that keeps it
  std::map<std::string, std::string> out;
  for (const auto& [key, svc] : services) {
    if (announcementsFor(anywhere, svc, {}, anyDevice).empty()) continue;
    const std::string lease = leaseName(svc);
    auto [it, fresh] = owner.emplace(lease, key);
    if (!fresh)
      out[key] = "Lease " + lease + " is already the Lease of service " + it->second +
                 " (the names collide); not announced";
  }
  return out;
}

}  // namespace np::l2
