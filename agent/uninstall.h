// `helm uninstall` removes the datapath, not only the DaemonSet. Kubernetes gives a terminating
// pod no way to tell an uninstall from an upgrade, so the chart says it: its pre-delete hook
// creates the ConfigMap named by NODEPATH_UNINSTALL_MARKER ("<namespace>/<name>") before Helm
// deletes the DaemonSet. An agent stopping on SIGTERM looks for it once; when it is there the
// agent runs `agentctl cleanup` (the datapath, conflist, routes, NOTRACK rules) after it stopped.
// An upgrade has no marker, so its agents leave the datapath running for their successors. A
// starting agent deletes a marker left by an earlier uninstall (it means a new install).
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>

#include "core/config.h"

namespace np {

// The marker's "<namespace>/<name>" from the environment, or "" when the chart did not ask.
std::string uninstallMarker();
// Whether the marker ConfigMap exists now (false when the API cannot be asked within timeout).
bool uninstallRequested(const Config& c, const std::string& marker);

// Watches the marker while the agent runs (a Reflector on its own Client, on io): `helm
// uninstall` deletes the agent's ServiceAccount and RBAC right after the pre-delete hook made the
// marker, before the pod is stopped, so the GET at shutdown is then refused (401: the API server
// rejects a bound token whose ServiceAccount is gone). seen() says whether the marker exists as
// last watched. Null when there is no marker to watch or no API.
class MarkerWatch {
 public:
  virtual ~MarkerWatch() = default;
  virtual bool seen() const = 0;
};
std::unique_ptr<MarkerWatch> watchUninstallMarker(boost::asio::io_context& io, const Config& c,
                                                  const std::string& marker);
// Deletes a stale marker; failures are logged, never fatal.
void clearUninstallMarker(const Config& c, const std::string& marker);
// Runs `agentctl cleanup --force` (next to this executable) for the agent's directories; its
// exit code.
int runUninstallCleanup(const Config& c);

}  // namespace np
