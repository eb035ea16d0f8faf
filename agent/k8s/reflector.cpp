#include "k8s/reflector.h"

#include <malloc.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>

#include "core/log.h"

namespace np::k8s {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;

Reflector::Reflector(Client& client, std::string kind, std::string path, std::string labelSelector, Handler h,
                     ReflectorOptions opt)
    : client_(client), kind_(std::move(kind)), path_(std::move(path)), selector_(std::move(labelSelector)),
      h_(std::move(h)), opt_(opt) {}

void Reflector::fail(const std::string& why) {
  ++stats_.errors;
  if (why != stats_.lastError) NP_LOG_WARN("k8s", "%s: %s", kind_.c_str(), why.c_str());
  stats_.lastError = why;
}

std::chrono::milliseconds Reflector::nextBackoff() {
  backoff_ = backoff_.count() == 0 ? opt_.backoffInitial : std::min(backoff_ * 2, opt_.backoffMax);
  // jitter 1.0 as client-go: a wait in [d, 2d)
  std::uniform_int_distribution<int64_t> j(0, backoff_.count());
  return std::min(backoff_ + std::chrono::milliseconds(j(rng_)), opt_.backoffMax);
}

awaitable<void> Reflector::sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

namespace {

// What no watcher reads and every object carries, dropped as soon as an object is parsed (as
// kube-proxy's informers do with a transform): managedFields is often half of an object, and a
// relist holds every object of a kind at once (at 10,000 EndpointSlices: tens of MiB).
void trim(json::object& o) {
  auto* m = o.if_contains("metadata");
  if (!m || !m->is_object()) return;
  json::object& meta = m->as_object();
  meta.erase("managedFields");
  if (auto* a = meta.if_contains("annotations"); a && a->is_object())
    a->as_object().erase("kubectl.kubernetes.io/last-applied-configuration");
}

}  // namespace

awaitable<Result<std::string>> Reflector::list(const std::string& rv) {
  std::vector<json::object> items;
  std::string cont, listRv;
  for (;;) {
    std::string q = path_ + "?limit=" + std::to_string(opt_.pageSize);
    if (!selector_.empty()) q += "&labelSelector=" + queryEscape(selector_);
    if (!opt_.fieldSelector.empty()) q += "&fieldSelector=" + queryEscape(opt_.fieldSelector);
    if (!cont.empty()) q += "&continue=" + queryEscape(cont);
    else if (!rv.empty())
      // With a limit and no resourceVersionMatch a list at N is served at exactly N (legacy
      // semantics): from etcd, and the watch that follows would start as old as the one that
      // expired. NotOlderThan lets the server answer with its current state.
      q += "&resourceVersion=" + queryEscape(rv) + (rv == "0" ? "" : "&resourceVersionMatch=NotOlderThan");
    auto r = co_await client_.get(q, std::chrono::seconds(60));
    if (!r) co_return r.error();
    if (r->status != 200) {
      ApiStatus s = parseStatus(r->body);
      co_return Error{r->status == 410 ? ENOENT : 0, "list " + kind_,
                      "HTTP " + std::to_string(r->status) + (s.reason.empty() ? "" : " " + s.reason) +
                          (s.message.empty() ? "" : ": " + s.message)};
    }
    boost::system::error_code ec;
    json::value v = json::parse(r->body, ec);
    if (ec || !v.is_object()) co_return error("list " + kind_, "the answer is not a JSON object");
    json::object& o = v.as_object();
    if (auto* its = o.if_contains("items"); its && its->is_array())
      for (json::value& it : its->as_array())
        if (it.is_object()) {
          trim(it.as_object());
          items.push_back(std::move(it.as_object()));
        }
    cont.clear();
    if (auto* m = o.if_contains("metadata"); m && m->is_object()) {
      if (auto* c = m->as_object().if_contains("continue"); c && c->is_string()) cont = c->as_string();
      if (auto* x = m->as_object().if_contains("resourceVersion"); x && x->is_string()) listRv = x->as_string();
    }
    if (cont.empty()) break;
  }
  const Status replaced = h_.replace(std::move(items));
  // A relist held every object twice for a moment (JSON and decoded); give that back to the
  // system rather than keep it as the process's high-water mark.
  malloc_trim(0);
  if (!replaced) co_return replaced.error();
  co_return listRv;
}

awaitable<Reflector::Outcome> Reflector::watch() {
  std::uniform_int_distribution<int64_t> d(opt_.minWatchTimeout.count(), 2 * opt_.minWatchTimeout.count());
  const auto timeout = std::chrono::seconds(d(rng_));
  std::string q = path_ + "?watch=1&allowWatchBookmarks=true&resourceVersion=" + queryEscape(stats_.resourceVersion) +
                  "&timeoutSeconds=" + std::to_string(timeout.count());
  if (!selector_.empty()) q += "&labelSelector=" + queryEscape(selector_);
  if (!opt_.fieldSelector.empty()) q += "&fieldSelector=" + queryEscape(opt_.fieldSelector);
  ++stats_.watches;
  WatchFramer framer;
  uint64_t events = 0;
  bool expired = false;
  std::string eventError;
  const auto started = std::chrono::steady_clock::now();
  auto onBytes = [&](std::string_view bytes) -> Status {
    auto objs = framer.feed(bytes);
    if (!objs) return objs.error();
    for (const std::string& text : *objs) {
      auto ev = parseEvent(text);
      if (!ev) return ev.error();
      if (ev->type == EventType::Error) {
        if (ev->expired()) {
          expired = true;
          return error("watch " + kind_, "410 " + ev->reason + ": " + ev->message);
        }
        eventError = "ERROR event " + std::to_string(ev->code) + " " + ev->reason + ": " + ev->message;
        return error("watch " + kind_, eventError);
      }
      const std::string rv = resourceVersionOf(ev->object);
      if (ev->type == EventType::Bookmark) {
        ++stats_.bookmarks;
      } else {
        ++stats_.events;
        ++events;
        trim(ev->object);
        if (Status st = h_.event(ev->type, std::move(ev->object)); !st) NP_LOG_WARN("k8s", "%s: %s", kind_.c_str(), st.error().message().c_str());
      }
      if (!rv.empty()) stats_.resourceVersion = rv;
    }
    if (!objs->empty() && h_.flush) h_.flush();
    return {};
  };
  auto r = co_await client_.stream(q, onBytes, timeout + std::chrono::seconds(30));
  if (expired) {
    ++stats_.expired;
    NP_LOG_INFO("k8s", "%s: watch from resourceVersion %s expired (410): relisting", kind_.c_str(),
                stats_.resourceVersion.c_str());
    co_return Outcome::Relist;
  }
  if (!r) {
    fail(r.error().message());
    co_return Outcome::Backoff;
  }
  if (r->status == 410) {
    ++stats_.expired;
    NP_LOG_INFO("k8s", "%s: watch answered 410 Gone: relisting", kind_.c_str());
    co_return Outcome::Relist;
  }
  if (r->status != 200) {
    ApiStatus s = parseStatus(r->body);
    fail("watch: HTTP " + std::to_string(r->status) + " " + s.reason + ": " + s.message);
    co_return Outcome::Backoff;
  }
  if (events == 0 && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
    fail("watch closed within a second without an event");
    co_return Outcome::Backoff;
  }
  co_return Outcome::Rewatch;
}

awaitable<void> Reflector::run() {
  auto self = shared_from_this();  // the coroutine keeps the reflector alive
  bool first = true;
  while (!stopped_) {
    const std::string rv = first ? "0" : rvUnavailable_ ? "" : stats_.resourceVersion;
    auto listed = co_await list(rv);
    if (stopped_) break;
    if (!listed) {
      if (listed.error().err == ENOENT) {
        // 410 on a list at a resourceVersion: the next one is a consistent read.
        rvUnavailable_ = true;
        fail(listed.error().message() + " (relisting with a consistent read)");
        continue;
      }
      fail(listed.error().message());
      co_await sleep(nextBackoff());
      continue;
    }
    ++stats_.lists;
    first = false;
    rvUnavailable_ = false;
    stats_.resourceVersion = *listed;
    if (!stats_.synced) NP_LOG_INFO("k8s", "%s: synced (resourceVersion %s)", kind_.c_str(), listed->c_str());
    stats_.synced = true;
    backoff_ = {};
    if (h_.flush) h_.flush();
    while (!stopped_) {
      const uint64_t eventsBefore = stats_.events;
      Outcome o = co_await watch();
      if (o == Outcome::Relist) {
        // Two expiries in a row without an event between them: the server cannot serve from
        // the last resourceVersion: the next list is a consistent read, after a backoff.
        if (++expiredInARow_ >= 2) {
          rvUnavailable_ = true;
          co_await sleep(nextBackoff());
        }
      } else if (stats_.events != eventsBefore) {
        expiredInARow_ = 0;
      }
      if (stopped_ || o == Outcome::Relist) break;
      if (o == Outcome::Backoff) co_await sleep(nextBackoff());
      else backoff_ = {};
    }
  }
}

}  // namespace np::k8s
