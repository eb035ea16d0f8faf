#include "lb/store.h"

#include <boost/json.hpp>

#include "core/fs.h"

namespace json = boost::json;

namespace np::lb {
namespace {

Result<std::vector<Ipv4>> parseIpList(const json::object& o, const char* key, const std::string& ctx) {
  std::vector<Ipv4> out;
  if (!o.contains(key)) return out;
  const json::array* a = o.at(key).if_array();
  if (!a) return error(ctx, std::string(key) + " is not a list");
  for (const json::value& v : *a) {
    const json::string* s = v.if_string();
    auto ip = s ? Ipv4::parse(*s) : std::nullopt;
    if (!ip) return error(ctx, std::string(key) + " holds something that is not an IPv4 address");
    out.push_back(*ip);
  }
  return out;
}

}  // namespace

// Written by hand rather than through a json::value tree: with 10,000 services the tree cost
// more time and memory than everything else a change does.
std::string servicesToJson(const std::map<std::string, Service>& services) {
  std::string out;
  out.reserve(services.size() * 256 + 64);
  auto quoted = [&out](std::string_view v) {
    out += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  };
  auto ipList = [&](const char* key, const std::vector<Ipv4>& ips) {
    if (ips.empty()) return;
    out += ",\"";
    out += key;
    out += "\":[";
    for (size_t i = 0; i < ips.size(); ++i) {
      if (i) out += ',';
      quoted(ips[i].str());
    }
    out += ']';
  };
  out += "{\"version\":1,\"services\":[";
  bool first = true;
  for (const auto& [name, s] : services) {
    if (s.source != "local") continue;
    out += first ? "\n{" : ",\n{";
    first = false;
    out += "\"name\":";
    quoted(s.name);
    out += ",\"protocol\":\"";
    out += protocolName(s.protocol);
    out += "\",\"port\":" + std::to_string(s.port);
    if (s.clusterIp) {
      out += ",\"clusterIP\":";
      quoted(s.clusterIp->str());
    }
    if (s.nodePort) out += ",\"nodePort\":" + std::to_string(s.nodePort);
    ipList("externalIPs", s.externalIps);
    ipList("loadBalancerIPs", s.loadBalancerIps);
    out += ",\"backends\":[";
    for (size_t i = 0; i < s.backends.size(); ++i) {
      if (i) out += ',';
      out += "{\"address\":";
      quoted(s.backends[i].addr.str());
      out += s.backends[i].state == BackendState::Active ? ",\"state\":\"active\"}" : ",\"state\":\"terminating\"}";
    }
    out += "]}";
  }
  out += "\n]}\n";
  return out;
}

Result<std::vector<Service>> servicesFromJson(const std::string& text) {
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return error("parse", ec.message());
  const json::object* top = root.if_object();
  if (!top || !top->contains("services") || !top->at("services").is_array())
    return error("parse", "no \"services\" list");
  if (!top->contains("version") || top->at("version") != json::value(1))
    return error("parse", "unknown version (this agent reads version 1)");
  std::vector<Service> out;
  for (const json::value& v : top->at("services").as_array()) {
    const json::object* o = v.if_object();
    if (!o || !o->contains("name") || !o->at("name").is_string()) return error("parse", "a service without a name");
    Service s;
    s.name = json::value_to<std::string>(o->at("name"));
    const std::string ctx = "service " + s.name;
    auto str = [&](const char* key) -> std::string {
      return o->contains(key) && o->at(key).is_string() ? json::value_to<std::string>(o->at(key)) : "";
    };
    auto num = [&](const char* key) -> int64_t {
      return o->contains(key) && o->at(key).is_int64() ? o->at(key).as_int64() : 0;
    };
    auto proto = parseProtocol(str("protocol"));
    if (!proto) return error(ctx, "unknown protocol \"" + str("protocol") + "\"");
    s.protocol = *proto;
    if (num("port") < 0 || num("port") > 65535 || num("nodePort") < 0 || num("nodePort") > 65535)
      return error(ctx, "port out of range");
    s.port = static_cast<uint16_t>(num("port"));
    s.nodePort = static_cast<uint16_t>(num("nodePort"));
    if (!str("clusterIP").empty()) {
      s.clusterIp = Ipv4::parse(str("clusterIP"));
      if (!s.clusterIp) return error(ctx, "clusterIP is not an IPv4 address");
    }
    auto ext = parseIpList(*o, "externalIPs", ctx);
    if (!ext) return ext.error();
    s.externalIps = std::move(*ext);
    auto lbs = parseIpList(*o, "loadBalancerIPs", ctx);
    if (!lbs) return lbs.error();
    s.loadBalancerIps = std::move(*lbs);
    if (o->contains("backends")) {
      const json::array* a = o->at("backends").if_array();
      if (!a) return error(ctx, "backends is not a list");
      for (const json::value& bv : *a) {
        const json::object* b = bv.if_object();
        const json::string* addr = b && b->contains("address") ? b->at("address").if_string() : nullptr;
        auto ep = addr ? Endpoint::parse(*addr) : std::nullopt;
        if (!ep) return error(ctx, "a backend address is not IPv4:PORT");
        const json::string* state = b->contains("state") ? b->at("state").if_string() : nullptr;
        BackendState st = BackendState::Active;
        if (state && *state == "terminating") st = BackendState::Terminating;
        else if (state && *state != "active") return error(ctx, "backend state must be active or terminating");
        s.backends.push_back({*ep, st});
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<std::vector<Service>> ServiceStore::load() const {
  if (!fs::exists(path_)) return std::vector<Service>{};
  auto text = fs::readFile(path_);
  if (!text) return text.error();
  auto services = servicesFromJson(*text);
  if (!services) {
    Error e = services.error();
    e.context = "read " + path_ + ": " + e.context;
    return e;
  }
  return services;
}

Status ServiceStore::save(const std::map<std::string, Service>& services) const {
  return fs::writeFileAtomic(path_, servicesToJson(services), 0600);
}

}  // namespace np::lb
