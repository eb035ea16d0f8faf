#include "k8s/watcher.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "core/log.h"

namespace np::k8s {

namespace json = boost::json;

Result<std::unique_ptr<ServiceWatcher>> ServiceWatcher::start(boost::asio::io_context& io, const Config& config,
                                                              Apply apply, std::function<void()> onSynced,
                                                              ReflectorOptions opt) {
  auto api = resolveApiConfig(config.k8sApiServer, config.k8sKubeconfig);
  if (!api) return api.error();
  auto client = Client::create(io, std::move(*api));
  if (!client) return client.error();
  std::unique_ptr<ServiceWatcher> w(new ServiceWatcher());
  w->client_ = std::move(*client);
  w->apply_ = std::move(apply);
  w->onSynced_ = std::move(onSynced);
  ServiceWatcher* self = w.get();

  Reflector::Handler svc;
  // Lists are streamed into the cache object by object (k8s/reflector.h): a relist never holds a
  // kind's objects as JSON, decoded and cached all at once.
  svc.listBegin = [self] { self->listed_.clear(); };
  svc.listItem = [self](const json::object& o) -> Status {
    auto s = decodeService(o);
    if (!s) {
      ++self->decodeErrors_;
      NP_LOG_WARN("k8s", "%s (skipped)", s.error().message().c_str());
      return {};
    }
    self->listed_.insert(s->key());
    self->cache_.upsertService(std::move(*s));
    return {};
  };
  svc.listEnd = [self]() -> Status {
    self->cache_.retainServices(self->listed_);
    self->servicesTouched_ = true;
    self->listed_ = {};
    return {};
  };
  svc.event = [self](EventType t, json::object o) -> Status {
    self->servicesTouched_ = true;
    if (t == EventType::Deleted) {
      self->cache_.deleteService(objectKey(o));
      return {};
    }
    auto s = decodeService(o);
    if (!s) {
      ++self->decodeErrors_;
      return s.error();
    }
    self->cache_.upsertService(std::move(*s));
    return {};
  };
  svc.flush = [self] { self->flush(); };

  Reflector::Handler sl;
  sl.listBegin = [self] { self->listedSlices_.clear(); };
  sl.listItem = [self](const json::object& o) -> Status {
    auto s = decodeSlice(o);
    if (!s) {
      ++self->decodeErrors_;
      NP_LOG_WARN("k8s", "%s (skipped)", s.error().message().c_str());
      return {};
    }
    self->listedSlices_.insert(s->key());
    self->cache_.upsertSlice(std::move(*s));
    return {};
  };
  sl.listEnd = [self]() -> Status {
    self->cache_.retainSlices(self->listedSlices_);
    self->listedSlices_ = {};
    return {};
  };
  sl.event = [self](EventType t, json::object o) -> Status {
    if (t == EventType::Deleted) {
      self->cache_.deleteSlice(objectKey(o));
      return {};
    }
    auto s = decodeSlice(o);
    if (!s) {
      ++self->decodeErrors_;
      return s.error();
    }
    self->cache_.upsertSlice(std::move(*s));
    return {};
  };
  sl.flush = [self] { self->flush(); };

  w->services_ = std::make_shared<Reflector>(*w->client_, "services", "/api/v1/services", kProxySelector, svc, opt);
  w->slices_ = std::make_shared<Reflector>(*w->client_, "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices",
                                           kProxySelector, sl, opt);
  boost::asio::co_spawn(io, w->services_->run(), boost::asio::detached);
  boost::asio::co_spawn(io, w->slices_->run(), boost::asio::detached);
  NP_LOG_INFO("k8s", "watching services and endpointslices at %s (%s)", w->client_->config().server.c_str(),
              w->client_->config().origin.c_str());
  return w;
}

ServiceWatcher::~ServiceWatcher() {
  // The reflectors' coroutines hold them; they call back into this object only while it lives.
  for (auto* r : {services_.get(), slices_.get()})
    if (r) r->stop();
}

void ServiceWatcher::flush() {
  if (servicesTouched_ && onServices_ && services_->stats().synced) {
    servicesTouched_ = false;
    onServices_();
  }
  if (!services_->stats().synced || !slices_->stats().synced) return;  // the first change is the whole state
  if (!cache_.dirty() && synced_) return;
  apply_(cache_.takeChange());
  if (!synced_) {
    synced_ = true;
    if (onSynced_) onSynced_();
  }
}

void ServiceWatcher::retry(const std::vector<std::string>& modelNames) {
  for (const std::string& n : modelNames) cache_.markDirty(ServiceCache::serviceKeyOf(n));
  flush();
}

std::string ServiceWatcher::summary() const {
  auto one = [](const Reflector& r) {
    const auto& s = r.stats();
    std::string out = r.kind() + " " + (s.synced ? "synced" : "not synced") + " (lists " + std::to_string(s.lists) +
                      ", watches " + std::to_string(s.watches) + ", 410s " + std::to_string(s.expired) + ", errors " +
                      std::to_string(s.errors) + ")";
    if (!s.synced && !s.lastError.empty()) out += ": " + s.lastError;
    return out;
  };
  return client_->config().server + ": " + one(*services_) + "; " + one(*slices_) + "; " +
         std::to_string(cache_.modelServices()) + " service ports; topology hints ignored";
}

}  // namespace np::k8s
