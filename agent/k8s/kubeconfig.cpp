#include "k8s/kubeconfig.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>

#include "core/fs.h"

namespace np::k8s {

namespace {

Result<std::string> base64(const std::string& in, const std::string& what) {
  std::string clean;
  for (char c : in)
    if (c != '\n' && c != '\r' && c != ' ') clean.push_back(c);
  if (clean.size() % 4) return error("kubeconfig " + what, "is not base64");
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return error("kubeconfig " + what, "is not base64");
  size_t pad = 0;
  if (!clean.empty() && clean.back() == '=') ++pad;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string resolve(const std::string& p, const std::string& base) {
  if (p.empty() || p[0] == '/' || base.empty()) return p;
  return base + "/" + p;
}

// "<key>-data" inline (base64) or "<key>" as a file.
Result<std::string> pem(const YAML::Node& n, const std::string& key, const std::string& base, const std::string& what) {
  if (n[key + "-data"]) return base64(n[key + "-data"].as<std::string>(), what + " " + key + "-data");
  if (n[key]) {
    auto t = fs::readFile(resolve(n[key].as<std::string>(), base));
    if (!t) return Error{t.error().err, "kubeconfig " + what + " " + key, t.error().message()};
    return *t;
  }
  return std::string();
}

YAML::Node named(const YAML::Node& list, const std::string& name, const char* field) {
  if (list && list.IsSequence())
    for (const YAML::Node& e : list)
      if (e["name"] && e["name"].as<std::string>() == name) return e[field];
  return YAML::Node();
}

}  // namespace

Status splitServer(ApiConfig& c, const std::string& server) {
  std::string s = server;
  if (s.rfind("https://", 0) != 0) return error("API server " + server, "is not an https:// URL");
  s = s.substr(8);
  if (auto slash = s.find('/'); slash != std::string::npos) {
    if (s.substr(slash) != "/") return error("API server " + server, "has a path (not supported)");
    s.resize(slash);
  }
  std::string host = s, port = "443";
  if (!s.empty() && s[0] == '[') {
    auto end = s.find(']');
    if (end == std::string::npos) return error("API server " + server, "has an unclosed [");
    host = s.substr(1, end - 1);
    if (end + 1 < s.size() && s[end + 1] == ':') port = s.substr(end + 2);
  } else if (auto colon = s.rfind(':'); colon != std::string::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.find_first_not_of("0123456789") != std::string::npos)
    return error("API server " + server, "is not https://host[:port]");
  c.server = server;
  c.host = host;
  c.port = port;
  return {};
}

Result<ApiConfig> parseKubeconfig(const std::string& text, const std::string& baseDir) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return error("kubeconfig", std::string("not YAML: ") + e.what());
  }
  try {
    if (!root.IsMap()) return error("kubeconfig", "is not a map");
    std::string ctxName = root["current-context"] ? root["current-context"].as<std::string>() : "";
    if (ctxName.empty()) return error("kubeconfig", "has no current-context");
    YAML::Node ctx = named(root["contexts"], ctxName, "context");
    if (!ctx) return error("kubeconfig", "context '" + ctxName + "' is not defined");
    const std::string clusterName = ctx["cluster"] ? ctx["cluster"].as<std::string>() : "";
    const std::string userName = ctx["user"] ? ctx["user"].as<std::string>() : "";
    YAML::Node cluster = named(root["clusters"], clusterName, "cluster");
    if (!cluster) return error("kubeconfig", "cluster '" + clusterName + "' is not defined");
    ApiConfig c;
    c.origin = "kubeconfig (context " + ctxName + ")";
    if (!cluster["server"]) return error("kubeconfig cluster " + clusterName, "has no server");
    NP_TRY(splitServer(c, cluster["server"].as<std::string>()));
    auto ca = pem(cluster, "certificate-authority", baseDir, "cluster " + clusterName);
    if (!ca) return ca.error();
    c.caPem = *ca;
    c.insecureSkipVerify = cluster["insecure-skip-tls-verify"] && cluster["insecure-skip-tls-verify"].as<bool>();
    if (YAML::Node user = named(root["users"], userName, "user")) {
      auto cert = pem(user, "client-certificate", baseDir, "user " + userName);
      if (!cert) return cert.error();
      auto key = pem(user, "client-key", baseDir, "user " + userName);
      if (!key) return key.error();
      c.clientCertPem = *cert;
      c.clientKeyPem = *key;
      if (c.clientCertPem.empty() != c.clientKeyPem.empty())
        return error("kubeconfig user " + userName, "has a client certificate without its key or the other way round");
      if (user["token"]) c.token = user["token"].as<std::string>();
      if (user["tokenFile"]) c.tokenFile = resolve(user["tokenFile"].as<std::string>(), baseDir);
      if (user["exec"] || user["auth-provider"])
        return error("kubeconfig user " + userName, "uses an exec or auth-provider plugin (not supported)");
    } else if (!userName.empty()) {
      return error("kubeconfig", "user '" + userName + "' is not defined");
    }
    return c;
  } catch (const YAML::Exception& e) {
    return error("kubeconfig", std::string("malformed: ") + e.what());
  }
}

Result<ApiConfig> loadKubeconfig(const std::string& path) {
  auto text = fs::readFile(path);
  if (!text) return Error{text.error().err, "read kubeconfig " + path, text.error().detail};
  auto slash = path.rfind('/');
  auto c = parseKubeconfig(*text, slash == std::string::npos ? "." : path.substr(0, slash));
  if (!c) return Error{c.error().err, path + ": " + c.error().context, c.error().detail};
  c->origin = "kubeconfig " + path + " " + c->origin.substr(std::string("kubeconfig ").size());
  return c;
}

Result<ApiConfig> inClusterConfig(const std::string& server, const std::string& saDir) {
  ApiConfig c;
  c.origin = "in-cluster service account " + saDir;
  std::string s = server;
  if (s.empty()) {
    const char* h = std::getenv("KUBERNETES_SERVICE_HOST");
    const char* p = std::getenv("KUBERNETES_SERVICE_PORT");
    if (!h || !*h || !p || !*p)
      return error("in-cluster config", "KUBERNETES_SERVICE_HOST/PORT are not set and --k8s-api-server is not given");
    const std::string host = h;
    s = "https://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + p;
  }
  NP_TRY(splitServer(c, s));
  auto ca = fs::readFile(saDir + "/ca.crt");
  if (!ca) return Error{ca.error().err, "in-cluster config: read " + saDir + "/ca.crt", ca.error().detail};
  c.caPem = *ca;
  c.tokenFile = saDir + "/token";
  if (!fs::exists(c.tokenFile)) return Error{ENOENT, "in-cluster config: " + c.tokenFile, "does not exist"};
  return c;
}

Result<ApiConfig> resolveApiConfig(const std::string& server, const std::string& kubeconfigPath) {
  if (kubeconfigPath.empty()) return inClusterConfig(server);
  auto c = loadKubeconfig(kubeconfigPath);
  if (!c) return c;
  if (!server.empty()) NP_TRY(splitServer(*c, server));
  return c;
}

Result<std::string> TokenSource::get(bool force) {
  if (file_.empty()) return token_;
  const auto now = std::chrono::steady_clock::now();
  if (!force && !token_.empty() && now - readAt_ < std::chrono::minutes(1)) return token_;
  auto t = fs::readFile(file_);
  if (!t) return Error{t.error().err, "read token " + file_, t.error().detail};
  std::string tok = *t;
  while (!tok.empty() && (tok.back() == '\n' || tok.back() == '\r' || tok.back() == ' ')) tok.pop_back();
  token_ = std::move(tok);
  readAt_ = now;
  return token_;
}

}  // namespace np::k8s
