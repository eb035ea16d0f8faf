#include "k8s/reflector.h"

#include <malloc.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>
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

// ---- ListParser: a SAX handler that builds one item at a time (boost::json::value_stack, as the
// library's own parser does for a whole document) and records the list's metadata.
namespace {

struct ListHandler {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  ListParser::OnItem onItem;
  json::value_stack st;
  int depth = 0;             // containers open: the list object is 1, `items` 2, an item 3
  bool inItems = false;      // the `items` array is open
  bool inItem = false;       // an item (an object in `items`) is being built
  bool inMeta = false;       // the list's `metadata` object is open
  bool topIsObject = false;
  std::string key1, key2;    // the last key at depth 1 / 2
  std::string part;          // a string or key outside items, arriving in parts
  std::string cont, rv;
  size_t items = 0;
  std::optional<Error> failed;  // onItem's error

  static bool fail(boost::system::error_code& ec) {
    ec = json::error::exception;  // stops the parser; the reason is in `failed`
    return false;
  }
  bool on_document_begin(boost::system::error_code&) { return true; }
  bool on_document_end(boost::system::error_code&) { return true; }
  bool on_object_begin(boost::system::error_code&) {
    ++depth;
    if (depth == 1) topIsObject = true;
    if (inItem) return true;
    if (inItems && depth == 3) {
      st.reset();
      inItem = true;
      return true;
    }
    if (depth == 2 && key1 == "metadata") inMeta = true;
    return true;
  }
  bool on_object_end(std::size_t n, boost::system::error_code& ec) {
    --depth;
    if (inItem) {
      st.push_object(n);
      if (depth > 2) return true;
      inItem = false;
      json::value v = st.release();
      ++items;
      if (Status s = onItem(v.as_object()); !s) {
        failed = s.error();
        return fail(ec);
      }
      return true;
    }
    if (depth == 1) inMeta = false;
    return true;
  }
  bool notAnObject(boost::system::error_code& ec) {
    failed = error("list", "the answer is not a JSON object");
    return fail(ec);
  }
  bool on_array_begin(boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    ++depth;
    if (inItem) return true;
    if (depth == 2 && key1 == "items") inItems = true;
    return true;
  }
  bool on_array_end(std::size_t n, boost::system::error_code&) {
    --depth;
    if (inItem) {
      st.push_array(n);
      return true;
    }
    if (depth == 1) inItems = false;
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
    if (inItem) st.push_chars(s);
    else part.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, boost::system::error_code&) {
    if (inItem) {
      st.push_key(s);
      return true;
    }
    part.append(s.data(), s.size());
    if (depth == 1) key1 = std::move(part);
    else if (depth == 2) key2 = std::move(part);
    part.clear();
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) st.push_chars(s);
    else part.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) {
      st.push_string(s);
      return true;
    }
    part.append(s.data(), s.size());
    if (inMeta && depth == 2) {
      if (key2 == "continue") cont = part;
      else if (key2 == "resourceVersion") rv = part;
    }
    part.clear();
    return true;
  }
  bool on_number_part(json::string_view, boost::system::error_code& ec) { return depth == 0 ? notAnObject(ec) : true; }
  bool on_int64(std::int64_t i, json::string_view, boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) st.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) st.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view, boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) st.push_double(d);
    return true;
  }
  bool on_bool(bool b, boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) st.push_bool(b);
    return true;
  }
  bool on_null(boost::system::error_code& ec) {
    if (depth == 0) return notAnObject(ec);
    if (inItem) st.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
  bool on_comment(json::string_view, boost::system::error_code&) { return true; }
};

}  // namespace

struct ListParser::Impl {
  explicit Impl(OnItem f) : p(json::parse_options{}) { p.handler().onItem = std::move(f); }
  json::basic_parser<ListHandler> p;
  Status check(const boost::system::error_code& ec) {
    if (p.handler().failed) return *p.handler().failed;
    if (ec) return error("list", "the answer is not valid JSON: " + ec.message());
    return {};
  }
};

ListParser::ListParser(OnItem onItem) : impl_(std::make_unique<Impl>(std::move(onItem))) {}
ListParser::~ListParser() = default;

Status ListParser::feed(std::string_view bytes) {
  if (impl_->p.handler().failed) return *impl_->p.handler().failed;
  if (bytes.empty()) return {};
  if (impl_->p.done()) return error("list", "data after the end of the JSON answer");
  boost::system::error_code ec;
  impl_->p.write_some(true, bytes.data(), bytes.size(), ec);
  return impl_->check(ec);
}

Status ListParser::finish() {
  boost::system::error_code ec;
  impl_->p.write_some(false, nullptr, 0, ec);
  NP_TRY(impl_->check(ec));
  if (!impl_->p.done() || !impl_->p.handler().topIsObject) return error("list", "the answer is not a JSON object");
  return {};
}

const std::string& ListParser::continueToken() const { return impl_->p.handler().cont; }
const std::string& ListParser::resourceVersion() const { return impl_->p.handler().rv; }
size_t ListParser::items() const { return impl_->p.handler().items; }

Error Reflector::listError(const HttpResponse& r) const {
  ApiStatus s = parseStatus(r.body);
  return Error{r.status == 410 ? ENOENT : 0, "list " + kind_,
               "HTTP " + std::to_string(r.status) + (s.reason.empty() ? "" : " " + s.reason) +
                   (s.message.empty() ? "" : ": " + s.message)};
}

awaitable<Result<std::string>> Reflector::list(const std::string& rv) {
  std::vector<json::object> items;
  std::string cont, listRv;
  const bool streamed = static_cast<bool>(h_.listItem);
  if (streamed && h_.listBegin) h_.listBegin();
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
    if (streamed) {
      // Parsed as it arrives; every item goes to the consumer at once (ListParser).
      ListParser parser([this](const json::object& o) { return h_.listItem(o); });
      Status parsed;
      auto onBytes = [&](std::string_view bytes) -> Status {
        parsed = parser.feed(bytes);
        return parsed;
      };
      auto r = co_await client_.stream(q, onBytes, std::chrono::seconds(60));
      if (!parsed) co_return Error{0, "list " + kind_, parsed.error().message()};
      if (!r) co_return r.error();
      if (r->status != 200) co_return listError(*r);
      if (Status st = parser.finish(); !st) co_return Error{0, "list " + kind_, st.error().message()};
      cont = parser.continueToken();
      if (!parser.resourceVersion().empty()) listRv = parser.resourceVersion();
    } else {
      auto r = co_await client_.get(q, std::chrono::seconds(60));
      if (!r) co_return r.error();
      if (r->status != 200) co_return listError(*r);
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
    }
    if (cont.empty()) break;
  }
  const Status replaced = streamed ? (h_.listEnd ? h_.listEnd() : Status{}) : h_.replace(std::move(items));
  // A relist held every object twice for a moment (JSON and decoded; a streamed one a page's
  // worth at most); give that back to the system rather than keep it as the process's
  // high-water mark.
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
