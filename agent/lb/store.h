// Persistence of services created through the local API (<run-dir>/state/services.json), so a
// restarted agent restores them. Services from Kubernetes are not stored: the API server has them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/result.h"
#include "lb/model.h"

namespace np::lb {

class ServiceStore {
 public:
  explicit ServiceStore(std::string path) : path_(std::move(path)) {}

  // The stored services; an empty list when nothing was stored yet. A corrupt file is an error
  // (the agent refuses to start rather than silently forget services).
  Result<std::vector<Service>> load() const;
  // Stores every service whose source is "local", atomically.
  Status save(const std::map<std::string, Service>& services) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string servicesToJson(const std::map<std::string, Service>& services);
Result<std::vector<Service>> servicesFromJson(const std::string& text);

}  // namespace np::lb
