#include "uninstall.h"

#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/log.h"
#include "k8s/client.h"
#include "k8s/kubeconfig.h"
#include "k8s/reflector.h"

namespace np {
namespace {

// One request on a private io_context: at shutdown (the agent's loop has stopped) and at start
// (before it runs). Returns the HTTP status, 0 when the request failed.
unsigned oneRequest(const Config& c, const std::string& method, const std::string& target) {
  auto cfg = k8s::resolveApiConfig(c.k8sApiServer, c.k8sKubeconfig);
  if (!cfg) {
    NP_LOG_WARN("uninstall", "%s", cfg.error().message().c_str());
    return 0;
  }
  boost::asio::io_context io;
  auto client = k8s::Client::create(io, std::move(*cfg));
  if (!client) {
    NP_LOG_WARN("uninstall", "%s", client.error().message().c_str());
    return 0;
  }
  unsigned status = 0;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        std::string m = method, t = target, body, type = "application/json";
        const auto timeout = std::chrono::seconds(3);
        auto r = co_await (*client)->request(std::move(m), std::move(t), std::move(body), std::move(type), timeout);
        if (r) status = r->status;
        else NP_LOG_WARN("uninstall", "%s", r.error().message().c_str());
      },
      boost::asio::detached);
  io.run_for(std::chrono::seconds(5));
  return status;
}

std::string configMapPath(const std::string& marker) {
  const auto slash = marker.find('/');
  return "/api/v1/namespaces/" + marker.substr(0, slash) + "/configmaps/" + marker.substr(slash + 1);
}

}  // namespace

std::string uninstallMarker() {
  const char* m = std::getenv("NODEPATH_UNINSTALL_MARKER");
  if (!m) return {};
  std::string s = m;
  const auto slash = s.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == s.size()) {
    if (!s.empty()) NP_LOG_WARN("uninstall", "NODEPATH_UNINSTALL_MARKER=%s is not <namespace>/<name>: ignored", m);
    return {};
  }
  return s;
}

bool uninstallRequested(const Config& c, const std::string& marker) {
  if (marker.empty() || !c.k8sEnabled()) return false;
  return oneRequest(c, "GET", configMapPath(marker)) == 200;
}

namespace {

class MarkerWatchImpl final : public MarkerWatch {
 public:
  ~MarkerWatchImpl() override {
    if (reflector) reflector->stop();
  }
  bool seen() const override { return *present; }

  std::unique_ptr<k8s::Client> client;
  std::shared_ptr<k8s::Reflector> reflector;
  std::shared_ptr<bool> present = std::make_shared<bool>(false);
};

std::string nameOf(const boost::json::object& o) {
  const auto* md = o.if_contains("metadata");
  const auto* n = md && md->is_object() ? md->as_object().if_contains("name") : nullptr;
  return n && n->is_string() ? std::string(n->as_string()) : std::string();
}

}  // namespace

std::unique_ptr<MarkerWatch> watchUninstallMarker(boost::asio::io_context& io, const Config& c,
                                                  const std::string& marker) {
  if (marker.empty() || !c.k8sEnabled()) return nullptr;
  auto cfg = k8s::resolveApiConfig(c.k8sApiServer, c.k8sKubeconfig);
  if (!cfg) {
    NP_LOG_WARN("uninstall", "not watching %s: %s", marker.c_str(), cfg.error().message().c_str());
    return nullptr;
  }
  auto client = k8s::Client::create(io, std::move(*cfg));
  if (!client) {
    NP_LOG_WARN("uninstall", "not watching %s: %s", marker.c_str(), client.error().message().c_str());
    return nullptr;
  }
  auto w = std::make_unique<MarkerWatchImpl>();
  w->client = std::move(*client);
  const auto slash = marker.find('/');
  const std::string ns = marker.substr(0, slash), name = marker.substr(slash + 1);
  std::weak_ptr<bool> present = w->present;
  k8s::Reflector::Handler h;
  h.replace = [present, name](std::vector<boost::json::object> items) -> Status {
    auto p = present.lock();
    if (!p) return {};
    bool found = false;
    for (const auto& o : items) found |= nameOf(o) == name;
    if (found && !*p) NP_LOG_INFO("uninstall", "the uninstall marker is there: stopping will remove the datapath");
    *p = found;
    return {};
  };
  h.event = [present, name](k8s::EventType t, boost::json::object o) -> Status {
    auto p = present.lock();
    if (!p || nameOf(o) != name) return {};
    const bool now = t != k8s::EventType::Deleted;
    if (now && !*p) NP_LOG_INFO("uninstall", "the uninstall marker appeared: stopping will remove the datapath");
    *p = now;
    return {};
  };
  h.flush = [] {};
  k8s::ReflectorOptions opt;
  opt.fieldSelector = "metadata.name=" + name;
  w->reflector = std::make_shared<k8s::Reflector>(*w->client, "uninstall-marker",
                                                  "/api/v1/namespaces/" + ns + "/configmaps", "", h, opt);
  boost::asio::co_spawn(io, w->reflector->run(), boost::asio::detached);
  return w;
}

void clearUninstallMarker(const Config& c, const std::string& marker) {
  if (marker.empty() || !c.k8sEnabled()) return;
  const unsigned st = oneRequest(c, "DELETE", configMapPath(marker));
  if (st == 200 || st == 202) NP_LOG_INFO("uninstall", "deleted %s, left by an earlier uninstall", marker.c_str());
}

int runUninstallCleanup(const Config& c) {
  // agentctl next to this executable (the image's /usr/bin), or NODEPATH_AGENTCTL (a build tree).
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::string agentctl = (ec ? std::filesystem::path("/usr/bin") : self.parent_path()) / "agentctl";
  if (const char* e = std::getenv("NODEPATH_AGENTCTL"); e && *e) agentctl = e;
  std::vector<std::string> args{agentctl, "cleanup", "--force", "--cni-conf-dir", c.cniConfDir, "--bpf-root", c.bpfRoot};
  NP_LOG_INFO("uninstall", "nodepath is being uninstalled: removing the datapath (%s cleanup)", agentctl.c_str());
  const pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return 1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

}  // namespace np
