// The agent's Kubernetes source of services: reflectors on Services and EndpointSlices (with
// kube-proxy's server-side label selectors) feeding a ServiceCache, whose changes go to the agent
// once both have listed. The first change handed over is the complete cluster state; `onSynced`
// runs right after it (the agent's restore barrier).
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "core/config.h"
#include "k8s/client.h"
#include "k8s/reflector.h"
#include "k8s/service_cache.h"

namespace np::k8s {

// kube-proxy's selector for both watches: services another proxy owns and headless ones are not
// ours (pkg/proxy/apis; cmd/kube-proxy/app/server.go).
inline constexpr const char* kProxySelector = "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

class ServiceWatcher {
 public:
  using Apply = std::function<void(lb::Change)>;
  static Result<std::unique_ptr<ServiceWatcher>> start(boost::asio::io_context& io, const Config& config, Apply apply,
                                                       std::function<void()> onSynced, ReflectorOptions opt = {});
  ~ServiceWatcher();

  bool synced() const { return synced_; }
  ServiceCache& cache() { return cache_; }
  const Reflector& services() const { return *services_; }
  const Reflector& slices() const { return *slices_; }
  const ApiConfig& api() const { return client_->config(); }
  // Hands the current version of these model services' Kubernetes services to the agent again
  // (ones it refused, to retry them), with whatever else changed meanwhile.
  void retry(const std::vector<std::string>& modelNames);
  // One line for `status`.
  std::string summary() const;
  uint64_t decodeErrors() const { return decodeErrors_; }
  // Runs after services changed (once listed; at most once per read of the watch), with the
  // cache's allServices() current. One observer.
  void onServicesChanged(std::function<void()> f) {
    onServices_ = std::move(f);
    servicesTouched_ = true;
  }

 private:
  ServiceWatcher() = default;
  void flush();

  std::unique_ptr<Client> client_;
  std::shared_ptr<Reflector> services_, slices_;
  ServiceCache cache_;
  Apply apply_;
  std::function<void()> onSynced_;
  bool synced_ = false;
  uint64_t decodeErrors_ = 0;
  std::function<void()> onServices_;
  bool servicesTouched_ = false;
  std::set<std::string> listed_, listedSlices_;  // keys of the list in progress
};

}  // namespace np::k8s
