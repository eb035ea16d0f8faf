// The wire side of a Kubernetes watch, pure: the body of `GET ...?watch=1` is a stream of JSON
// objects {"type":T,"object":{...}}, in practice one per line, but nothing promises that an HTTP
// chunk ends on an object (or a UTF-8 sequence) boundary, and blank lines may come between
// events. WatchFramer splits the byte stream into complete top-level JSON objects with a
// string- and escape-aware brace counter, keeping the incomplete tail for the next read.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace np::k8s {

class WatchFramer {
 public:
  // Appends bytes; returns the complete objects they finish, in order.
  Result<std::vector<std::string>> feed(std::string_view bytes);
  // Bytes held that do not form a complete object yet.
  size_t pending() const { return buf_.size(); }
  // The most a single event may take: a larger one is an error (a broken stream, not a watch).
  static constexpr size_t kMaxEvent = 64u << 20;

 private:
  std::string buf_;   // the incomplete object, from its '{'
  int depth_ = 0;
  bool inString_ = false, escape_ = false;
};

enum class EventType { Added, Modified, Deleted, Bookmark, Error };
const char* eventTypeName(EventType t);

struct WatchEvent {
  EventType type = EventType::Added;
  boost::json::object object;  // the object (or, for ERROR, a Status)
  // ERROR: the Status' code and reason (410 / "Expired" or "Gone": relist).
  int code = 0;
  std::string reason, message;
  bool expired() const { return type == EventType::Error && (code == 410 || reason == "Expired" || reason == "Gone"); }
};

// Decodes one framed event. Unknown fields are ignored; a missing or unknown type is an error.
Result<WatchEvent> parseEvent(std::string_view text);

// metadata.resourceVersion of an object, "" when absent.
std::string resourceVersionOf(const boost::json::object& o);

// A Status object (an HTTP error body or an ERROR event): code, reason, message.
struct ApiStatus {
  int code = 0;
  std::string reason, message;
};
ApiStatus parseStatus(std::string_view body);

}  // namespace np::k8s
