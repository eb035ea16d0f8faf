#include "k8s/ciliumnode.h"

#include <boost/json/array.hpp>
#include <set>

namespace np::k8s {

namespace json = boost::json;

namespace {

Error bad(const std::string& what, const std::string& field, const std::string& why) {
  return error("decode CiliumNode " + what, field + " " + why);
}

const json::object* child(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_object() ? &v->as_object() : nullptr;
}

json::object& ensure(json::object& o, std::string_view k) {
  json::value& v = o[k];
  if (!v.is_object()) v = json::object{};
  return v.as_object();
}

Result<std::string> str(const json::object& o, std::string_view k, const std::string& what, const std::string& path) {
  auto* v = o.if_contains(k);
  if (!v || v->is_null()) return std::string();
  if (!v->is_string()) return bad(what, path, "is not a string");
  return std::string(v->as_string());
}

}  // namespace

std::optional<Ipv4> CiliumNode::internalIp() const {
  for (const NodeAddress& a : addresses)
    if (a.type == "InternalIP")
      if (auto ip = Ipv4::parse(a.ip); ip && !ip->isZero()) return ip;
  return std::nullopt;
}

std::optional<Cidr> CiliumNode::podCidr() const {
  if (podCidrs.empty()) return std::nullopt;
  return Cidr::parse(podCidrs.front());
}

Result<CiliumNode> decodeCiliumNode(const json::object& o) {
  CiliumNode n;
  const json::object* m = child(o, "metadata");
  if (!m) return error("decode CiliumNode", "has no metadata");
  auto name = str(*m, "name", "", "metadata.name");
  if (!name) return name.error();
  if (name->empty()) return error("decode CiliumNode", "metadata.name is missing");
  n.name = *name;
  auto rv = str(*m, "resourceVersion", n.name, "metadata.resourceVersion");
  if (!rv) return rv.error();
  n.resourceVersion = *rv;
  auto uid = str(*m, "uid", n.name, "metadata.uid");
  if (!uid) return uid.error();
  n.uid = *uid;
  if (auto* sv = o.if_contains("spec"); sv && !sv->is_null()) {
    if (!sv->is_object()) return bad(n.name, "spec", "is not an object");
    const json::object& spec = sv->as_object();
    if (auto* av = spec.if_contains("addresses"); av && !av->is_null()) {
      if (!av->is_array()) return bad(n.name, "spec.addresses", "is not a list");
      for (size_t i = 0; i < av->as_array().size(); ++i) {
        const std::string at = "spec.addresses[" + std::to_string(i) + "]";
        const json::value& e = av->as_array()[i];
        if (!e.is_object()) return bad(n.name, at, "is not an object");
        auto t = str(e.as_object(), "type", n.name, at + ".type");
        if (!t) return t.error();
        auto ip = str(e.as_object(), "ip", n.name, at + ".ip");
        if (!ip) return ip.error();
        n.addresses.push_back({*t, *ip});
      }
    }
    if (auto* iv = spec.if_contains("ipam"); iv && !iv->is_null()) {
      if (!iv->is_object()) return bad(n.name, "spec.ipam", "is not an object");
      if (auto* pv = iv->as_object().if_contains("podCIDRs"); pv && !pv->is_null()) {
        if (!pv->is_array()) return bad(n.name, "spec.ipam.podCIDRs", "is not a list");
        for (const json::value& c : pv->as_array()) {
          if (!c.is_string()) return bad(n.name, "spec.ipam.podCIDRs", "holds a non-string");
          n.podCidrs.emplace_back(c.as_string());
        }
      }
    }
  }
  if (const json::object* st = child(o, "status"))
    if (const json::object* ipam = child(*st, "ipam"))
      if (const json::object* os = child(*ipam, "operator-status")) {
        auto e = str(*os, "error", n.name, "status.ipam.operator-status.error");
        if (!e) return e.error();
        n.operatorError = *e;
      }
  return n;
}

json::object newCiliumNode(const std::string& name, Ipv4 nodeIp) {
  json::object o;
  o["apiVersion"] = "cilium.io/v2";
  o["kind"] = "CiliumNode";
  o["metadata"] = json::object{{"name", name}, {"labels", json::object{{"app.kubernetes.io/managed-by", "nodepath-agent"}}}};
  o["spec"] = json::object{};
  setInternalIp(o, nodeIp);
  return o;
}

bool setInternalIp(json::object& o, Ipv4 nodeIp) {
  json::object& spec = ensure(o, "spec");
  json::array next;
  bool seen = false;
  if (auto* av = spec.if_contains("addresses"); av && av->is_array())
    for (const json::value& e : av->as_array()) {
      const json::object* a = e.is_object() ? &e.as_object() : nullptr;
      const json::value* t = a ? a->if_contains("type") : nullptr;
      if (t && t->is_string() && t->as_string() == "InternalIP") {
        if (seen) continue;
        seen = true;
        next.push_back(json::object{{"type", "InternalIP"}, {"ip", nodeIp.str()}});
      } else {
        next.push_back(e);
      }
    }
  if (!seen) next.insert(next.begin(), json::object{{"type", "InternalIP"}, {"ip", nodeIp.str()}});
  auto* cur = spec.if_contains("addresses");
  if (cur && *cur == json::value(next)) return false;
  spec["addresses"] = std::move(next);
  return true;
}

bool setPodCidrs(json::object& o, const std::vector<std::string>& cidrs) {
  json::array want;
  for (const std::string& c : cidrs) want.emplace_back(c);
  json::object& ipam = ensure(ensure(o, "spec"), "ipam");
  auto* cur = ipam.if_contains("podCIDRs");
  if (cur && *cur == json::value(want)) return false;
  ipam["podCIDRs"] = std::move(want);
  return true;
}

bool setOperatorError(json::object& o, const std::string& why) {
  const json::object* st = child(o, "status");
  const json::object* ipam = st ? child(*st, "ipam") : nullptr;
  const json::object* os = ipam ? child(*ipam, "operator-status") : nullptr;
  const json::value* e = os ? os->if_contains("error") : nullptr;
  const std::string cur = e && e->is_string() ? std::string(e->as_string()) : std::string();
  if (cur == why) return false;
  json::object& out = ensure(ensure(ensure(o, "status"), "ipam"), "operator-status");
  if (why.empty())
    out.erase("error");
  else
    out["error"] = why;
  return true;
}

ClusterNodes clusterNodes(const std::map<std::string, CiliumNode>& all, const std::string& localName) {
  ClusterNodes out;
  std::set<Ipv4> ips;
  std::set<Cidr> cidrs;
  // This node first: its entry wins a clash with a peer's.
  auto local = all.find(localName);
  if (local == all.end()) {
    out.localMissing = "waiting for CiliumNode " + localName + " to be created";
  } else if (const auto ip = local->second.internalIp(); !local->second.podCidr()) {
    out.localMissing = local->second.podCidrs.empty()
                           ? "waiting for the operator to assign a pod CIDR to CiliumNode " + localName
                           : "CiliumNode " + localName + " has pod CIDR \"" + local->second.podCidrs.front() +
                                 "\", which is not a CIDR";
    if (!local->second.operatorError.empty()) out.localMissing += " (operator: " + local->second.operatorError + ")";
    if (ip) {
      out.addressOnly.push_back({localName, *ip, true});
      ips.insert(*ip);
    }
  } else if (!ip) {
    out.localMissing = "CiliumNode " + localName + " has no InternalIP address";
  } else {
    out.nodes.push_back({localName, *ip, *local->second.podCidr(), true});
    ips.insert(*ip);
    cidrs.insert(out.nodes.back().podCidr);
  }
  for (const auto& [name, n] : all) {
    if (name == localName) continue;
    auto ip = n.internalIp();
    auto cidr = n.podCidr();
    std::string why;
    if (!ip) {
      out.skipped.push_back("CiliumNode " + name + " has no InternalIP address");
      continue;
    }
    if (ips.count(*ip)) {
      out.skipped.push_back("CiliumNode " + name + " has InternalIP " + ip->str() + ", which another node has");
      continue;
    }
    ips.insert(*ip);
    if (!cidr)
      why = n.podCidrs.empty() ? "has no pod CIDR yet" : "has pod CIDR \"" + n.podCidrs.front() + "\", which is not a CIDR";
    else if (cidrs.count(*cidr))
      why = "has pod CIDR " + cidr->str() + ", which another node has";
    if (!why.empty()) {
      // Not routed to, but still a node: its address goes to the node map.
      out.skipped.push_back("CiliumNode " + name + " " + why);
      out.addressOnly.push_back({name, *ip, false});
      continue;
    }
    cidrs.insert(*cidr);
    out.nodes.push_back({name, *ip, *cidr, false});
  }
  return out;
}

std::vector<Ipv4> ClusterNodes::nodeIps() const {
  std::vector<Ipv4> out;
  for (const NodeAddressEntry& a : addressOnly)
    if (a.local) out.push_back(a.ip);
  for (const NodeEntry& n : nodes) out.push_back(n.ip);
  for (const NodeAddressEntry& a : addressOnly)
    if (!a.local) out.push_back(a.ip);
  return out;
}

std::vector<NodeEntry> ClusterNodes::nodeMapEntries() const {
  std::vector<NodeEntry> out = nodes;
  for (const NodeAddressEntry& a : addressOnly) out.push_back({a.name, a.ip, Cidr{}, a.local});
  return out;
}

}  // namespace np::k8s
