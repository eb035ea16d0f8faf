#include "k8s/objects.h"

#include <mutex>
#include <unordered_set>

namespace np::k8s {

namespace json = boost::json;

namespace {

struct Ctx {
  std::string what;  // "Service default/web"
  Error bad(const std::string& field, const std::string& why) const { return error("decode " + what, field + " " + why); }
};

// Optional fields of a given type: absent or null is "unset", the wrong type is an error.
Result<std::optional<std::string>> optString(const json::object& o, std::string_view k, const Ctx& c, const std::string& path) {
  auto* v = o.if_contains(k);
  if (!v || v->is_null()) return std::optional<std::string>{};
  if (!v->is_string()) return c.bad(path, "is not a string");
  return std::optional<std::string>{std::string(v->as_string())};
}

Result<std::optional<bool>> optBool(const json::object& o, std::string_view k, const Ctx& c, const std::string& path) {
  auto* v = o.if_contains(k);
  if (!v || v->is_null()) return std::optional<bool>{};
  if (!v->is_bool()) return c.bad(path, "is not a boolean");
  return std::optional<bool>{v->as_bool()};
}

Result<std::optional<int64_t>> optInt(const json::object& o, std::string_view k, const Ctx& c, const std::string& path) {
  auto* v = o.if_contains(k);
  if (!v || v->is_null()) return std::optional<int64_t>{};
  if (v->is_int64()) return std::optional<int64_t>{v->as_int64()};
  if (v->is_uint64()) return std::optional<int64_t>{static_cast<int64_t>(v->as_uint64())};
  return c.bad(path, "is not an integer");
}

const json::object* optObject(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_object() ? &v->as_object() : nullptr;
}

Result<const json::array*> optArray(const json::object& o, std::string_view k, const Ctx& c, const std::string& path) {
  auto* v = o.if_contains(k);
  if (!v || v->is_null()) return static_cast<const json::array*>(nullptr);
  if (!v->is_array()) return c.bad(path, "is not a list");
  return &v->as_array();
}

Result<uint16_t> portNumber(std::optional<int64_t> v, const Ctx& c, const std::string& path, bool zeroOk) {
  if (!v) return uint16_t{0};
  if (*v < (zeroOk ? 0 : 1) || *v > 65535) return c.bad(path, std::to_string(*v) + " is not a port");
  return static_cast<uint16_t>(*v);
}

std::pair<Protocol, bool> protocolOf(const std::optional<std::string>& p) {
  if (!p || *p == "TCP") return {Protocol::Tcp, true};
  if (*p == "UDP") return {Protocol::Udp, true};
  return {Protocol::Tcp, false};  // SCTP or something newer
}

Status meta(const json::object& o, std::string& ns, std::string& name, std::string& rv, Ctx& c, const char* kind) {
  const json::object* m = optObject(o, "metadata");
  if (!m) return error(std::string("decode ") + kind, "has no metadata");
  auto n = optString(*m, "name", c, "metadata.name");
  if (!n) return n.error();
  auto s = optString(*m, "namespace", c, "metadata.namespace");
  if (!s) return s.error();
  auto r = optString(*m, "resourceVersion", c, "metadata.resourceVersion");
  if (!r) return r.error();
  if (!*n || n->value().empty()) return error(std::string("decode ") + kind, "metadata.name is missing");
  ns = s->value_or("");
  name = **n;
  rv = r->value_or("");
  c.what = std::string(kind) + " " + ns + "/" + name;
  return {};
}

}  // namespace

std::string objectKey(const json::object& o) {
  const json::object* m = optObject(o, "metadata");
  if (!m) return {};
  auto get = [&](std::string_view k) {
    auto* v = m->if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  return get("namespace") + "/" + get("name");
}

Result<K8sService> decodeService(const json::object& o) {
  K8sService s;
  Ctx c{"Service"};
  NP_TRY(meta(o, s.ns, s.name, s.resourceVersion, c, "Service"));
  if (const json::object* m = optObject(o, "metadata"))
    if (const json::object* labels = optObject(*m, "labels"))
      for (const auto& [k, v] : *labels) {
        if (!v.is_string()) return c.bad("metadata.labels[" + std::string(k) + "]", "is not a string");
        s.labels[std::string(k)] = std::string(v.as_string());
      }
  if (const json::object* spec = optObject(o, "spec")) {
    auto type = optString(*spec, "type", c, "spec.type");
    if (!type) return type.error();
    if (*type) s.type = **type;
    auto ip = optString(*spec, "clusterIP", c, "spec.clusterIP");
    if (!ip) return ip.error();
    s.clusterIp = ip->value_or("");
    auto ports = optArray(*spec, "ports", c, "spec.ports");
    if (!ports) return ports.error();
    if (*ports) {
      for (size_t i = 0; i < (*ports)->size(); ++i) {
        const std::string at = "spec.ports[" + std::to_string(i) + "]";
        const json::value& pv = (**ports)[i];
        if (!pv.is_object()) return c.bad(at, "is not an object");
        const json::object& p = pv.as_object();
        ServicePort sp;
        auto name = optString(p, "name", c, at + ".name");
        if (!name) return name.error();
        sp.name = name->value_or("");
        auto proto = optString(p, "protocol", c, at + ".protocol");
        if (!proto) return proto.error();
        std::tie(sp.protocol, sp.supported) = protocolOf(*proto);
        auto port = optInt(p, "port", c, at + ".port");
        if (!port) return port.error();
        auto pn = portNumber(*port, c, at + ".port", false);
        if (!pn) return pn.error();
        sp.port = *pn;
        auto np = optInt(p, "nodePort", c, at + ".nodePort");
        if (!np) return np.error();
        auto npn = portNumber(*np, c, at + ".nodePort", true);
        if (!npn) return npn.error();
        sp.nodePort = *npn;
        s.ports.push_back(std::move(sp));
      }
    }
    auto ext = optArray(*spec, "externalIPs", c, "spec.externalIPs");
    if (!ext) return ext.error();
    if (*ext)
      for (const json::value& v : **ext) {
        if (!v.is_string()) return c.bad("spec.externalIPs", "holds a non-string");
        s.externalIps.emplace_back(v.as_string());
      }
    auto aff = optString(*spec, "sessionAffinity", c, "spec.sessionAffinity");
    if (!aff) return aff.error();
    if (*aff) s.sessionAffinity = **aff;
    if (const json::object* ac = optObject(*spec, "sessionAffinityConfig"))
      if (const json::object* cip = optObject(*ac, "clientIP")) {
        auto t = optInt(*cip, "timeoutSeconds", c, "spec.sessionAffinityConfig.clientIP.timeoutSeconds");
        if (!t) return t.error();
        if (*t) {
          if (**t < 1 || **t > 86400)
            return c.bad("spec.sessionAffinityConfig.clientIP.timeoutSeconds", std::to_string(**t) + " is out of 1-86400");
          s.affinityTimeoutSec = static_cast<uint32_t>(**t);
        }
      }
    auto etp = optString(*spec, "externalTrafficPolicy", c, "spec.externalTrafficPolicy");
    if (!etp) return etp.error();
    if (*etp && !(*etp)->empty()) s.externalTrafficPolicy = **etp;
    auto lbc = optString(*spec, "loadBalancerClass", c, "spec.loadBalancerClass");
    if (!lbc) return lbc.error();
    if (*lbc) s.loadBalancerClass = **lbc;
    auto itp = optString(*spec, "internalTrafficPolicy", c, "spec.internalTrafficPolicy");
    if (!itp) return itp.error();
    if (*itp && !(*itp)->empty()) s.internalTrafficPolicy = **itp;
  }
  if (const json::object* st = optObject(o, "status"))
    if (const json::object* lb = optObject(*st, "loadBalancer")) {
      auto ing = optArray(*lb, "ingress", c, "status.loadBalancer.ingress");
      if (!ing) return ing.error();
      if (*ing)
        for (const json::value& v : **ing) {
          if (!v.is_object()) return c.bad("status.loadBalancer.ingress", "holds a non-object");
          auto ip = optString(v.as_object(), "ip", c, "status.loadBalancer.ingress[].ip");
          if (!ip) return ip.error();
          if (*ip && !(*ip)->empty()) s.lbIngressIps.push_back(**ip);
        }
    }
  return s;
}

NodeName::NodeName(std::string_view name) {
  if (name.empty()) return;
  static std::mutex mu;
  static std::unordered_set<std::string> pool;  // node-based: the strings never move
  std::lock_guard lock(mu);
  p_ = &*pool.emplace(name).first;
}

const std::string& NodeName::str() const {
  static const std::string none;
  return p_ ? *p_ : none;
}

Result<K8sSlice> decodeSlice(const json::object& o) {
  K8sSlice s;
  Ctx c{"EndpointSlice"};
  NP_TRY(meta(o, s.ns, s.name, s.resourceVersion, c, "EndpointSlice"));
  if (const json::object* m = optObject(o, "metadata"))
    if (const json::object* labels = optObject(*m, "labels")) {
      auto sn = optString(*labels, "kubernetes.io/service-name", c, "metadata.labels[kubernetes.io/service-name]");
      if (!sn) return sn.error();
      s.serviceName = sn->value_or("");
    }
  auto at = optString(o, "addressType", c, "addressType");
  if (!at) return at.error();
  if (*at) s.addressType = **at;
  auto ports = optArray(o, "ports", c, "ports");
  if (!ports) return ports.error();
  if (*ports)
    for (size_t i = 0; i < (*ports)->size(); ++i) {
      const std::string path = "ports[" + std::to_string(i) + "]";
      const json::value& pv = (**ports)[i];
      if (!pv.is_object()) return c.bad(path, "is not an object");
      SlicePort sp;
      auto name = optString(pv.as_object(), "name", c, path + ".name");
      if (!name) return name.error();
      sp.name = name->value_or("");
      auto proto = optString(pv.as_object(), "protocol", c, path + ".protocol");
      if (!proto) return proto.error();
      std::tie(sp.protocol, sp.supported) = protocolOf(*proto);
      auto port = optInt(pv.as_object(), "port", c, path + ".port");
      if (!port) return port.error();
      if (*port) {
        auto pn = portNumber(*port, c, path + ".port", false);
        if (!pn) return pn.error();
        sp.port = *pn;
      }
      s.ports.push_back(std::move(sp));
    }
  auto eps = optArray(o, "endpoints", c, "endpoints");
  if (!eps) return eps.error();
  if (*eps)
    for (size_t i = 0; i < (*eps)->size(); ++i) {
      const std::string path = "endpoints[" + std::to_string(i) + "]";
      const json::value& ev = (**eps)[i];
      if (!ev.is_object()) return c.bad(path, "is not an object");
      const json::object& e = ev.as_object();
      SliceEndpoint ep;
      auto addrs = optArray(e, "addresses", c, path + ".addresses");
      if (!addrs) return addrs.error();
      if (*addrs)
        for (const json::value& a : **addrs)
          if (!a.is_string()) return c.bad(path + ".addresses", "holds a non-string");
      if (*addrs && !(*addrs)->empty()) ep.address = Ipv4::parse(std::string_view((**addrs)[0].as_string()));
      if (const json::object* cond = optObject(e, "conditions")) {
        auto ready = optBool(*cond, "ready", c, path + ".conditions.ready");
        if (!ready) return ready.error();
        auto serving = optBool(*cond, "serving", c, path + ".conditions.serving");
        if (!serving) return serving.error();
        auto term = optBool(*cond, "terminating", c, path + ".conditions.terminating");
        if (!term) return term.error();
        ep.ready = ready->value_or(true);
        ep.serving = serving->value_or(ep.ready);
        ep.terminating = term->value_or(false);
      }
      auto node = optString(e, "nodeName", c, path + ".nodeName");
      if (!node) return node.error();
      if (*node && !(*node)->empty()) ep.nodeName = NodeName(**node);
      s.endpoints.push_back(std::move(ep));
    }
  return s;
}

}  // namespace np::k8s
