// A reflector as client-go's (tools/cache/reflector.go): LIST in pages, then WATCH from the
// list's resourceVersion with bookmarks and a random timeout, forever.
// - The first LIST asks for resourceVersion=0 (the watch cache's copy); a relist after a watch
//   failure asks for the last resourceVersion seen; when that answers 410 the next list is a
//   consistent read (resourceVersion unset).
// - 410 Gone on a watch, as the HTTP status or as an ERROR event, relists (NotOlderThan the last
//   resourceVersion; a second 410 in a row makes it a consistent read). Other watch failures
//   (connection refused, the server restarting, 429, 5xx) re-watch from the last resourceVersion
//   after a backoff, without relisting.
// - Backoff 0.8 s doubling to 30 s, with full jitter; reset after a good list or watch.
// - A watch that ends cleanly (its timeoutSeconds ran out) is re-opened at once; one that ends
//   within a second with no event counts as a failure. A watch quiet for longer than its timeout
//   (plus a grace) is abandoned and re-opened.
// - Synthetic ADDEDs of a watch are applied; the last-seen resourceVersion follows every event
//   and bookmark.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "k8s/client.h"
#include "k8s/watch.h"

namespace np::k8s {

// The body of a LIST answer parsed as it arrives: each element of `items` goes to onItem as soon
// as it is complete and is dropped after it, so a list is never held whole, as text or as JSON
// (an API server answers resourceVersion=0 from its watch cache in one page whatever the limit:
// 10,000 EndpointSlices are ~20 MB of text and ~60 MB as one boost::json value).
// metadata.continue and metadata.resourceVersion are kept. Pure.
class ListParser {
 public:
  using OnItem = std::function<Status(const boost::json::object&)>;
  explicit ListParser(OnItem onItem);
  ~ListParser();
  ListParser(const ListParser&) = delete;
  ListParser& operator=(const ListParser&) = delete;
  // Any split of the body; fails on malformed JSON, on a body that is not an object, and with
  // onItem's error.
  Status feed(std::string_view bytes);
  // The body has ended: it must have been exactly one JSON object.
  Status finish();
  const std::string& continueToken() const;
  const std::string& resourceVersion() const;
  size_t items() const;  // handed to onItem so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ReflectorOptions {
  std::chrono::seconds minWatchTimeout{300};  // timeoutSeconds is random in [min, 2*min]
  size_t pageSize = 500;
  std::chrono::milliseconds backoffInitial{800}, backoffMax{30000};
  // e.g. metadata.name=<name>: one object, which RBAC resourceNames can then allow list/watch of
  std::string fieldSelector;
};

class Reflector : public std::enable_shared_from_this<Reflector> {
 public:
  struct Handler {
    // A complete list: replaces everything the consumer holds.
    std::function<Status(std::vector<boost::json::object>)> replace;
    // Instead of `replace` (when listItem is set): a list handed over as it comes, so a kind's
    // objects are never all held as JSON at once. listBegin() before the first page; listItem(o)
    // for every object as its page is parsed (the page is dropped after it); listEnd() after the
    // last page: what the consumer holds becomes exactly what listItem got since listBegin(). A
    // list that fails part-way starts over with listBegin(). A failing listItem fails the list.
    std::function<void()> listBegin;
    std::function<Status(const boost::json::object&)> listItem;
    std::function<Status()> listEnd;
    // One ADDED/MODIFIED/DELETED event.
    std::function<Status(EventType, boost::json::object)> event;
    // After a list or after the events of one read: a good moment to act on them.
    std::function<void()> flush;
  };
  struct Stats {
    uint64_t lists = 0, watches = 0, events = 0, bookmarks = 0, expired = 0, errors = 0;
    bool synced = false;        // a list has completed
    std::string resourceVersion;  // the last seen
    std::string lastError;
  };

  Reflector(Client& client, std::string kind, std::string path, std::string labelSelector, Handler h,
            ReflectorOptions opt = {});
  // Runs until stop(). Spawn it on the client's io_context.
  boost::asio::awaitable<void> run();
  void stop() { stopped_ = true; }
  const Stats& stats() const { return stats_; }
  const std::string& kind() const { return kind_; }

 private:
  enum class Outcome { Relist, Rewatch, Backoff };
  boost::asio::awaitable<Result<std::string>> list(const std::string& rv);  // the list's RV
  Error listError(const HttpResponse& r) const;  // a non-200 answer to a list
  boost::asio::awaitable<Outcome> watch();
  boost::asio::awaitable<void> sleep(std::chrono::milliseconds d);
  std::chrono::milliseconds nextBackoff();
  void fail(const std::string& why);

  Client& client_;
  std::string kind_, path_, selector_;
  Handler h_;
  ReflectorOptions opt_;
  Stats stats_;
  bool stopped_ = false;
  bool rvUnavailable_ = false;  // the last RV answered 410: relist with a consistent read
  uint64_t expiredInARow_ = 0;  // watches that expired with no event since
  std::chrono::milliseconds backoff_{0};
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace np::k8s
