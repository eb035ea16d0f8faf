#include "k8s/ciliumnode_sync.h"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/log.h"
#include "k8s/watch.h"

namespace np::k8s {

namespace json = boost::json;
using namespace std::chrono_literals;

namespace {
bool sameNodes(const ClusterNodes& a, const ClusterNodes& b) {
  if (a.localMissing != b.localMissing || a.nodes.size() != b.nodes.size() || a.skipped != b.skipped ||
      a.addressOnly != b.addressOnly)
    return false;
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    const NodeEntry &x = a.nodes[i], &y = b.nodes[i];
    if (x.name != y.name || x.ip != y.ip || x.podCidr != y.podCidr || x.local != y.local) return false;
  }
  return true;
}
}  // namespace

Result<std::unique_ptr<CiliumNodeSync>> CiliumNodeSync::start(boost::asio::io_context& io, const Config& config,
                                                              Ipv4 nodeIp, OnNodes onNodes, ReflectorOptions opt) {
  if (config.nodeName.empty()) return error("CiliumNode", "the node name is empty");
  if (nodeIp.isZero()) return error("CiliumNode " + config.nodeName, "the node has no IPv4 address");
  auto api = resolveApiConfig(config.k8sApiServer, config.k8sKubeconfig);
  if (!api) return api.error();
  auto client = Client::create(io, std::move(*api));
  if (!client) return client.error();
  std::unique_ptr<CiliumNodeSync> s(new CiliumNodeSync(io, config.nodeName, nodeIp));
  s->client_ = std::move(*client);
  s->onNodes_ = std::move(onNodes);
  s->current_.localMissing = "waiting for the CiliumNodes to be listed";
  CiliumNodeSync* self = s.get();
  std::weak_ptr<bool> alive = s->alive_;
  auto decode = [self](const json::object& o) -> std::optional<CiliumNode> {
    auto n = decodeCiliumNode(o);
    if (!n) {
      ++self->decodeErrors_;
      NP_LOG_WARN("k8s", "%s (skipped)", n.error().message().c_str());
      return std::nullopt;
    }
    return std::move(*n);
  };
  Reflector::Handler h;
  h.replace = [self, alive, decode](std::vector<json::object> items) -> Status {
    if (alive.expired()) return {};
    self->all_.clear();
    for (const json::object& o : items)
      if (auto n = decode(o)) self->all_[n->name] = std::move(*n);
    auto mine = self->all_.find(self->name_);
    if (mine == self->all_.end() || mine->second.internalIp() != self->ip_) self->ensureSoon();
    return {};
  };
  h.event = [self, alive, decode](EventType t, json::object o) -> Status {
    if (alive.expired()) return {};
    auto n = decode(o);
    if (!n) return {};
    const bool mine = n->name == self->name_;
    if (t == EventType::Deleted) {
      self->all_.erase(n->name);
      if (mine) self->ensureSoon();  // deleted by hand: write it again (its CIDR comes anew)
      return {};
    }
    if (mine && n->internalIp() != self->ip_) self->ensureSoon();
    self->all_[n->name] = std::move(*n);
    return {};
  };
  h.flush = [self, alive] {
    if (!alive.expired()) self->flush();
  };
  s->reflector_ = std::make_shared<Reflector>(*s->client_, "ciliumnodes", kCiliumNodesPath, "", h, opt);
  boost::asio::co_spawn(io, s->reflector_->run(), boost::asio::detached);
  s->ensureSoon();
  NP_LOG_INFO("k8s", "CiliumNode %s (InternalIP %s): pod CIDR and peers' routes from the CiliumNodes at %s",
              s->name_.c_str(), nodeIp.str().c_str(), s->client_->config().server.c_str());
  return s;
}

CiliumNodeSync::~CiliumNodeSync() {
  alive_.reset();
  if (reflector_) reflector_->stop();
  timer_.cancel();
}

void CiliumNodeSync::flush() {
  if (!reflector_->stats().synced) return;
  ClusterNodes next = clusterNodes(all_, name_);
  if (handedOver_ && sameNodes(next, current_)) return;
  for (const std::string& why : next.skipped)
    if (std::find(current_.skipped.begin(), current_.skipped.end(), why) == current_.skipped.end())
      NP_LOG_WARN("k8s", "%s: no route to it", why.c_str());
  current_ = std::move(next);
  handedOver_ = true;
  if (onNodes_) onNodes_(current_);
}

void CiliumNodeSync::ensureSoon() {
  if (ensuring_) {
    again_ = true;
    return;
  }
  ensuring_ = true;
  boost::asio::co_spawn(io_, ensureLoop(), boost::asio::detached);
}

boost::asio::awaitable<void> CiliumNodeSync::ensureLoop() {
  std::weak_ptr<bool> alive = alive_;
  auto delay = 500ms;
  for (;;) {
    again_ = false;
    Status st = co_await ensureOnce();
    if (alive.expired()) co_return;
    if (st) {
      if (!registered_) NP_LOG_INFO("k8s", "CiliumNode %s holds InternalIP %s", name_.c_str(), ip_.str().c_str());
      registered_ = true;
      ensureError_.clear();
      if (!again_) break;
      continue;
    }
    if (st.error().message() != ensureError_) NP_LOG_WARN("k8s", "%s (retrying)", st.error().message().c_str());
    ensureError_ = st.error().message();
    timer_.expires_after(delay);
    delay = std::min<std::chrono::milliseconds>(delay * 2, 30s);
    boost::system::error_code ec;
    co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec || alive.expired()) co_return;
  }
  ensuring_ = false;
}

boost::asio::awaitable<Status> CiliumNodeSync::ensureOnce() {
  const std::string what = "CiliumNode " + name_;
  const std::string path = std::string(kCiliumNodesPath) + "/" + name_;
  auto got = co_await client_->get(path, 10s);
  if (!got) co_return Error{got.error().err, "get " + what, got.error().message()};
  if (got->status == 404) {
    auto r = co_await client_->request("POST", kCiliumNodesPath, json::serialize(newCiliumNode(name_, ip_)),
                                       "application/json", 10s);
    if (!r) co_return Error{r.error().err, "create " + what, r.error().message()};
    if (r->status == 201 || r->status == 200) co_return Status{};
    // 409: someone created it in between; the next round updates it.
    co_return error("create " + what, "HTTP " + std::to_string(r->status) + " " + parseStatus(r->body).message);
  }
  if (got->status != 200)
    co_return error("get " + what, "HTTP " + std::to_string(got->status) + " " + parseStatus(got->body).message);
  json::error_code ec;
  json::value v = json::parse(got->body, ec);
  if (ec || !v.is_object()) co_return error("get " + what, "the answer is not a JSON object");
  json::object& o = v.as_object();
  if (!setInternalIp(o, ip_)) co_return Status{};
  auto r = co_await client_->request("PUT", path, json::serialize(o), "application/json", 10s);
  if (!r) co_return Error{r.error().err, "update " + what, r.error().message()};
  if (r->status == 200) co_return Status{};
  co_return error("update " + what, "HTTP " + std::to_string(r->status) + " " + parseStatus(r->body).message);
}

std::string CiliumNodeSync::summary() const {
  const auto& st = reflector_->stats();
  std::string out = "CiliumNode " + name_ + (registered_ ? " registered" : " not registered");
  if (!ensureError_.empty()) out += " (" + ensureError_ + ")";
  out += "; ciliumnodes " + std::string(st.synced ? "synced" : "not synced") + " (" + std::to_string(all_.size()) +
         " nodes, " + std::to_string(current_.nodes.size()) + " routable";
  if (!current_.addressOnly.empty()) out += ", " + std::to_string(current_.addressOnly.size()) + " in the node map only (not routed)";
  if (!current_.skipped.empty()) out += ", " + std::to_string(current_.skipped.size()) + " skipped: " + current_.skipped.front();
  out += ")";
  if (!st.synced && !st.lastError.empty()) out += ": " + st.lastError;
  if (!current_.localMissing.empty()) out += "; " + current_.localMissing;
  return out;
}

}  // namespace np::k8s
