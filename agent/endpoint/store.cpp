#include "endpoint/store.h"

#include <boost/json.hpp>
#include <cstdio>

#include "core/fs.h"

namespace np::endpoint {

namespace json = boost::json;

bool parseMac(const std::string& text, std::array<uint8_t, 6>& out) {
  unsigned b[6];
  char tail;
  if (text.size() != 17 ||
      sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
    return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(b[i]);
  return true;
}

std::string endpointsToJson(const EndpointState& s) {
  json::array eps;
  for (const Endpoint& e : s.endpoints) {
    json::array pms;
    for (const PortMapping& m : e.portMappings)
      pms.push_back(json::object{{"hostPort", m.hostPort},
                                 {"containerPort", m.containerPort},
                                 {"protocol", m.protocol == Protocol::Udp ? "udp" : "tcp"},
                                 {"hostIP", m.hostIp ? m.hostIp->str() : std::string()}});
    eps.push_back(json::object{
        {"containerId", e.containerId},
        {"ifname", e.ifname},
        {"netns", e.netns},
        {"podNamespace", e.podNamespace},
        {"podName", e.podName},
        {"ipv4", e.ip.str()},
        {"hostIfname", e.hostIfname},
        {"hostIfindex", e.hostIfindex},
        {"hostMac", formatMac(e.hostMac.data())},
        {"podMac", formatMac(e.podMac.data())},
        {"mtu", e.mtu},
        {"createdUnix", e.createdUnix},
        {"portMappings", std::move(pms)},
    });
  }
  json::object root{
      {"version", 2},
      {"podCidr", s.podCidr.str()},
      {"lastAllocated", s.lastAllocated.isZero() ? std::string() : s.lastAllocated.str()},
      {"endpoints", std::move(eps)},
  };
  return json::serialize(root) + "\n";
}

namespace {

// Strict field access: the object must have exactly the expected keys.
struct Fields {
  const json::object& obj;
  std::string where;
  Status keys(std::initializer_list<const char*> want) const {
    for (const auto& kv : obj) {
      bool known = false;
      for (const char* k : want) known |= kv.key() == k;
      if (!known) return error(where, "unknown field \"" + std::string(kv.key()) + "\"");
    }
    for (const char* k : want)
      if (!obj.contains(k)) return error(where, "field \"" + std::string(k) + "\" is missing");
    return {};
  }
  Result<std::string> str(const char* k) const {
    const json::value& v = obj.at(k);
    if (!v.is_string()) return error(where, "field \"" + std::string(k) + "\" is not a string");
    return std::string(v.get_string());
  }
  Result<int64_t> num(const char* k, int64_t min, int64_t max) const {
    const json::value& v = obj.at(k);
    int64_t n = 0;
    if (v.is_int64()) n = v.get_int64();
    else if (v.is_uint64() && v.get_uint64() <= uint64_t(INT64_MAX)) n = static_cast<int64_t>(v.get_uint64());
    else return error(where, "field \"" + std::string(k) + "\" is not an integer");
    if (n < min || n > max) return error(where, "field \"" + std::string(k) + "\" is out of range");
    return n;
  }
};

#define NP_FIELD(var, expr)              \
  auto var##_r = (expr);                 \
  if (!var##_r) return var##_r.error();  \
  auto var = std::move(*var##_r)

}  // namespace

namespace {

Result<PortMapping> portMappingFromJson(const json::value& pv, const std::string& pwhere) {
  if (!pv.is_object()) return error(pwhere, "is not an object");
  Fields pf{pv.get_object(), pwhere};
  NP_TRY(pf.keys({"hostPort", "containerPort", "protocol", "hostIP"}));
  NP_FIELD(hp, pf.num("hostPort", 1, 65535));
  NP_FIELD(cp, pf.num("containerPort", 1, 65535));
  NP_FIELD(proto, pf.str("protocol"));
  NP_FIELD(hip, pf.str("hostIP"));
  PortMapping m;
  m.hostPort = static_cast<uint16_t>(hp);
  m.containerPort = static_cast<uint16_t>(cp);
  if (proto == "tcp") m.protocol = Protocol::Tcp;
  else if (proto == "udp") m.protocol = Protocol::Udp;
  else return error(pwhere, "protocol \"" + proto + "\" is not tcp or udp");
  if (!hip.empty()) {
    m.hostIp = Ipv4::parse(hip);
    if (!m.hostIp) return error(pwhere, "hostIP \"" + hip + "\" is not an IPv4 address");
  }
  return m;
}

}  // namespace

Result<EndpointState> endpointsFromJson(const std::string& text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return error("endpoints", "not JSON: " + ec.message());
  if (!root.is_object()) return error("endpoints", "not a JSON object");
  Fields top{root.get_object(), "endpoints"};
  NP_TRY(top.keys({"version", "podCidr", "lastAllocated", "endpoints"}));
  NP_FIELD(version, top.num("version", 0, 1000));
  // Version 2 added portMappings (HostPorts); a version 1 file has none.
  if (version != 1 && version != 2)
    return error("endpoints", "version " + std::to_string(version) + " is not one this agent reads (1, 2)");
  EndpointState s;
  NP_FIELD(cidr, top.str("podCidr"));
  auto c = Cidr::parse(cidr);
  if (!c) return error("endpoints", "podCidr \"" + cidr + "\" is not a CIDR");
  s.podCidr = *c;
  NP_FIELD(last, top.str("lastAllocated"));
  if (!last.empty()) {
    auto ip = Ipv4::parse(last);
    if (!ip) return error("endpoints", "lastAllocated \"" + last + "\" is not an IPv4 address");
    s.lastAllocated = *ip;
  }
  const json::value& list = root.get_object().at("endpoints");
  if (!list.is_array()) return error("endpoints", "field \"endpoints\" is not a list");
  size_t i = 0;
  for (const json::value& v : list.get_array()) {
    const std::string where = "endpoint " + std::to_string(i++);
    if (!v.is_object()) return error(where, "is not an object");
    Fields f{v.get_object(), where};
    if (auto id = v.get_object().if_contains("containerId"); id && id->is_string())
      f.where += " (" + std::string(id->get_string()) + ")";
    if (version == 1)
      NP_TRY(f.keys({"containerId", "ifname", "netns", "podNamespace", "podName", "ipv4", "hostIfname", "hostIfindex",
                     "hostMac", "podMac", "mtu", "createdUnix"}));
    else
      NP_TRY(f.keys({"containerId", "ifname", "netns", "podNamespace", "podName", "ipv4", "hostIfname", "hostIfindex",
                     "hostMac", "podMac", "mtu", "createdUnix", "portMappings"}));
    Endpoint e;
    NP_FIELD(cid, f.str("containerId"));
    NP_FIELD(ifname, f.str("ifname"));
    NP_FIELD(netns, f.str("netns"));
    NP_FIELD(pns, f.str("podNamespace"));
    NP_FIELD(pname, f.str("podName"));
    NP_FIELD(ip, f.str("ipv4"));
    NP_FIELD(hif, f.str("hostIfname"));
    NP_FIELD(hidx, f.num("hostIfindex", 0, INT32_MAX));
    NP_FIELD(hmac, f.str("hostMac"));
    NP_FIELD(pmac, f.str("podMac"));
    NP_FIELD(mtu, f.num("mtu", 0, 65535));
    NP_FIELD(created, f.num("createdUnix", 0, INT64_MAX));
    if (cid.empty() || ifname.empty() || hif.empty()) return error(f.where, "containerId, ifname and hostIfname must not be empty");
    auto addr = Ipv4::parse(ip);
    if (!addr) return error(f.where, "ipv4 \"" + ip + "\" is not an IPv4 address");
    if (!parseMac(hmac, e.hostMac)) return error(f.where, "hostMac \"" + hmac + "\" is not a MAC address");
    if (!parseMac(pmac, e.podMac)) return error(f.where, "podMac \"" + pmac + "\" is not a MAC address");
    e.containerId = cid;
    e.ifname = ifname;
    e.netns = netns;
    e.podNamespace = pns;
    e.podName = pname;
    e.ip = *addr;
    e.hostIfname = hif;
    e.hostIfindex = static_cast<int>(hidx);
    e.mtu = static_cast<uint32_t>(mtu);
    e.createdUnix = created;
    if (version >= 2) {
      const json::value& pl = v.get_object().at("portMappings");
      if (!pl.is_array()) return error(f.where, "field \"portMappings\" is not a list");
      size_t j = 0;
      for (const json::value& pv : pl.get_array()) {
        const std::string pwhere = f.where + ": portMappings[" + std::to_string(j++) + "]";
        // One bad mapping is dropped (and said so), not the endpoint or the file.
        auto m = portMappingFromJson(pv, pwhere);
        if (!m) {
          s.droppedPortMappings.push_back(m.error().message());
          continue;
        }
        e.portMappings.push_back(*m);
      }
    }
    for (const Endpoint& o : s.endpoints) {
      if (o.key() == e.key()) return error(f.where, "attachment " + e.key() + " is listed twice");
      if (o.ip == e.ip) return error(f.where, "address " + ip + " is also " + o.key() + "'s");
    }
    s.endpoints.push_back(std::move(e));
  }
  return s;
}

Result<EndpointState> EndpointStore::load() const {
  auto text = fs::readFile(path());
  if (!text) {
    if (!fs::exists(path())) return Error{ENOENT, "read " + path(), {}};
    return text.error();
  }
  auto s = endpointsFromJson(*text);
  if (!s) return Error{0, path() + ": " + s.error().context, s.error().detail};
  return s;
}

Status EndpointStore::save(const EndpointState& s) const {
  NP_TRY(fs::makeDirs(dir_, 0700));
  return fs::writeFileAtomic(path(), endpointsToJson(s));
}

}  // namespace np::endpoint
