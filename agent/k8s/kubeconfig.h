// How the agent reaches and logs in to the Kubernetes API: a kubeconfig file (its current
// context; CA, client certificate or bearer token, inline or as files) or the in-cluster service
// account (token and CA files, KUBERNETES_SERVICE_HOST/PORT). --k8s-api-server overrides the
// server either way: a kube-proxy replacement must not reach the API through the ClusterIP it
// implements.
#pragma once

#include <chrono>
#include <string>

#include "core/result.h"

namespace np::k8s {

struct ApiConfig {
  std::string server;  // https://host[:port]
  std::string host, port;  // from server
  std::string caPem;       // empty: the system's trust store
  bool insecureSkipVerify = false;
  std::string clientCertPem, clientKeyPem;
  std::string token;      // static token (kubeconfig "token")
  std::string tokenFile;  // read on every use at most once a minute, and again after a 401
  std::string origin;     // "kubeconfig /path (context x)" or "in-cluster"
};

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// Parses kubeconfig text; relative file paths resolve against `baseDir`.
Result<ApiConfig> parseKubeconfig(const std::string& text, const std::string& baseDir);
Result<ApiConfig> loadKubeconfig(const std::string& path);
// The in-cluster config from `saDir` (token, ca.crt) and the environment's
// KUBERNETES_SERVICE_HOST/PORT (unless `server` is given).
Result<ApiConfig> inClusterConfig(const std::string& server, const std::string& saDir = kServiceAccountDir);
// The config the agent uses: the kubeconfig if given, else in-cluster; `server` (if not empty)
// replaces the server.
Result<ApiConfig> resolveApiConfig(const std::string& server, const std::string& kubeconfigPath);

// Splits "https://host[:port][/]" into host and port (443 by default); brackets of IPv6 removed.
Status splitServer(ApiConfig& c, const std::string& server);

// The bearer token to send now: the static one, or the token file's content (cached for a minute;
// `force` re-reads it, after a 401).
class TokenSource {
 public:
  explicit TokenSource(const ApiConfig& c) : token_(c.token), file_(c.tokenFile) {}
  Result<std::string> get(bool force = false);

 private:
  std::string token_, file_;
  std::chrono::steady_clock::time_point readAt_{};
};

}  // namespace np::k8s
