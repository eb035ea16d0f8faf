#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/log.h"
#include "k8s/ciliumnode.h"
#include "k8s/client.h"
#include "k8s/reflector.h"
#include "k8s/watch.h"
#include "operator/cluster_pool.h"

namespace np::op {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {
std::string nameOf(const json::object& o) {
  const json::value* m = o.if_contains("metadata");
  const json::value* n = m && m->is_object() ? m->as_object().if_contains("name") : nullptr;
  return n && n->is_string() ? std::string(n->as_string()) : std::string();
}
}  // namespace

Result<std::unique_ptr<ClusterPoolController>> startClusterPool(boost::asio::io_context& io, k8s::Client& client,
                                                                ClusterPoolConfig cfg) {
  return ClusterPoolController::start(io, client, cfg);
}

ClusterPoolController::ClusterPoolController(boost::asio::io_context& io, k8s::Client& client, ClusterPool pool)
    : io_(io), client_(client), pool_(std::move(pool)), retry_(io) {}

Result<std::unique_ptr<ClusterPoolController>> ClusterPoolController::start(boost::asio::io_context& io,
                                                                            k8s::Client& client,
                                                                            ClusterPoolConfig cfg) {
  auto pool = ClusterPool::create(cfg);
  if (!pool) return pool.error();
  std::unique_ptr<ClusterPoolController> c(new ClusterPoolController(io, client, std::move(*pool)));
  ClusterPoolController* self = c.get();
  std::weak_ptr<bool> alive = c->alive_;
  k8s::Reflector::Handler h;
  h.replace = [self, alive](std::vector<json::object> items) -> Status {
    if (alive.expired()) return {};
    self->replace(std::move(items));
    return {};
  };
  h.event = [self, alive](k8s::EventType t, json::object o) -> Status {
    if (alive.expired()) return {};
    if (t == k8s::EventType::Deleted)
      self->remove(nameOf(o));
    else
      self->upsert(std::move(o));
    return {};
  };
  h.flush = [self, alive] {
    if (!alive.expired()) self->kick();
  };
  c->reflector_ = std::make_shared<k8s::Reflector>(client, "ciliumnodes", k8s::kCiliumNodesPath, "", h);
  boost::asio::co_spawn(io, c->reflector_->run(), boost::asio::detached);
  NP_LOG_INFO("ipam", "cluster-pool IPAM: %s", c->summary().c_str());
  return c;
}

ClusterPoolController::~ClusterPoolController() { stop(); }

void ClusterPoolController::stop() {
  if (stopped_) return;
  stopped_ = true;
  *alive_ = false;
  alive_.reset();
  if (reflector_) reflector_->stop();
  retry_.cancel();
}

std::string ClusterPoolController::summary() const {
  return pool_.config().pool.str() + " in /" + std::to_string(pool_.config().mask) + "s: " +
         std::to_string(pool_.allocated()) + " of " + std::to_string(pool_.capacity()) + " allocated" +
         (synced_ ? "" : " (CiliumNodes not listed yet)");
}

void ClusterPoolController::replace(std::vector<json::object> list) {
  // A (re)list is the whole truth: rebuild from it. Every node keeps the valid CIDR it holds
  // before any node gets a new one, so a restart moves no node.
  ClusterPool fresh = ClusterPool::create(pool_.config()).value();
  objects_.clear();
  dirty_.clear();
  for (json::object& o : list) {
    const std::string name = nameOf(o);
    if (name.empty()) continue;
    objects_[name] = std::move(o);
    dirty_.insert(name);
  }
  for (const auto& [name, o] : objects_) {
    auto n = k8s::decodeCiliumNode(o);
    if (!n || !n->podCidr()) continue;
    if (Status st = fresh.claim(name, *n->podCidr()); !st)
      NP_LOG_WARN("ipam", "%s; it gets another", st.error().message().c_str());
  }
  pool_ = std::move(fresh);
  synced_ = true;
}

void ClusterPoolController::upsert(json::object o) {
  const std::string name = nameOf(o);
  if (name.empty()) return;
  objects_[name] = std::move(o);
  dirty_.insert(name);
}

void ClusterPoolController::remove(const std::string& name) {
  objects_.erase(name);
  dirty_.erase(name);
  if (auto had = pool_.of(name)) {
    pool_.release(name);
    NP_LOG_INFO("ipam", "CiliumNode %s deleted: %s freed (%s)", name.c_str(), had->str().c_str(), summary().c_str());
    // A node the exhausted pool could not serve may be served now.
    for (const auto& [n, o] : objects_)
      if (!pool_.of(n)) dirty_.insert(n);
  }
}

void ClusterPoolController::kick() {
  if (!synced_ || pumping_ || stopped_ || dirty_.empty()) return;
  pumping_ = true;
  std::weak_ptr<bool> alive = alive_;
  boost::asio::co_spawn(
      io_,
      [this, alive]() -> boost::asio::awaitable<void> {
        co_await pump();
        if (!alive.expired()) pumping_ = false;
      },
      boost::asio::detached);
}

boost::asio::awaitable<void> ClusterPoolController::pump() {
  std::weak_ptr<bool> alive = alive_;
  while (!alive.expired() && !dirty_.empty()) {
    const std::string name = *dirty_.begin();
    dirty_.erase(dirty_.begin());
    const bool ok = co_await serve(name);
    if (alive.expired()) co_return;
    if (!ok) {
      // Transport errors and 5xx: try this node again after a pause (the others meanwhile too).
      dirty_.insert(name);
      retry_.expires_after(1s);
      boost::system::error_code ec;
      co_await retry_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;
    }
  }
}

boost::asio::awaitable<bool> ClusterPoolController::serve(const std::string& name) {
  auto it = objects_.find(name);
  if (it == objects_.end()) co_return true;
  json::object o = it->second;
  auto n = k8s::decodeCiliumNode(o);
  if (!n) {
    NP_LOG_WARN("ipam", "%s (not served)", n.error().message().c_str());
    co_return true;
  }
  // The node's CIDR: the one the pool holds for it, else the one it has when that is free and
  // ours, else the next free.
  std::optional<Cidr> cidr = pool_.of(name);
  std::string why;
  if (!cidr && n->podCidr()) {
    if (Status st = pool_.claim(name, *n->podCidr()); st)
      cidr = n->podCidr();
    else
      NP_LOG_WARN("ipam", "%s; it gets another", st.error().message().c_str());
  }
  if (!cidr) {
    auto a = pool_.allocate(name);
    if (a) {
      cidr = *a;
      NP_LOG_INFO("ipam", "CiliumNode %s gets %s (%s)", name.c_str(), cidr->str().c_str(), summary().c_str());
    } else {
      why = a.error().message();
    }
  }
  std::string target = std::string(k8s::kCiliumNodesPath) + "/" + name;
  json::object want = o;
  if (cidr) {
    if (!k8s::setPodCidrs(want, {cidr->str()})) {
      if (!n->operatorError.empty()) {
        // Served now: clear the old complaint.
        k8s::setOperatorError(want, "");
        target += "/status";
      } else {
        co_return true;
      }
    }
  } else {
    if (n->operatorError == why) co_return true;
    NP_LOG_ERROR("ipam", "CiliumNode %s: %s", name.c_str(), why.c_str());
    k8s::setOperatorError(want, why);
    target += "/status";
  }
  auto r = co_await client_.request("PUT", target, json::serialize(want), "application/json", 10s);
  if (!r) {
    ++writeErrors_;
    NP_LOG_WARN("ipam", "update CiliumNode %s: %s", name.c_str(), r.error().message().c_str());
    co_return false;
  }
  if (r->status == 200 || r->status == 201) {
    ++writes_;
    json::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (!ec && v.is_object() && objects_.count(name)) objects_[name] = std::move(v.as_object());
    // An error cleared on the status; the spec may still want its CIDR.
    if (target.ends_with("/status") && cidr) dirty_.insert(name);
    co_return true;
  }
  if (r->status == 409 || r->status == 404) co_return true;  // a newer version (or its deletion) is on its way
  ++writeErrors_;
  auto st = k8s::parseStatus(r->body);
  NP_LOG_WARN("ipam", "update CiliumNode %s: HTTP %u %s", name.c_str(), r->status, st.message.c_str());
  co_return r->status < 500 && r->status != 429 ? true : false;
}

}  // namespace np::op
