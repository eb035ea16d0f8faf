#include "k8s/watch.h"

#include <boost/json/parse.hpp>

namespace np::k8s {

namespace json = boost::json;

Result<std::vector<std::string>> WatchFramer::feed(std::string_view bytes) {
  std::vector<std::string> out;
  for (char c : bytes) {
    if (depth_ == 0) {
      // Between objects: whitespace and newlines are framing; anything else is not a watch.
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c != '{') return error("watch stream", std::string("unexpected byte '") + c + "' between events");
      buf_.clear();
      depth_ = 1;
      buf_.push_back(c);
      continue;
    }
    buf_.push_back(c);
    if (buf_.size() > kMaxEvent) return error("watch stream", "an event is larger than 64 MiB");
    if (inString_) {
      if (escape_) escape_ = false;
      else if (c == '\\') escape_ = true;
      else if (c == '"') inString_ = false;
      continue;
    }
    if (c == '"') inString_ = true;
    else if (c == '{' || c == '[') ++depth_;
    else if (c == '}' || c == ']') {
      if (--depth_ == 0) {
        out.push_back(std::move(buf_));
        buf_.clear();
      }
    }
  }
  return out;
}

const char* eventTypeName(EventType t) {
  switch (t) {
    case EventType::Added: return "ADDED";
    case EventType::Modified: return "MODIFIED";
    case EventType::Deleted: return "DELETED";
    case EventType::Bookmark: return "BOOKMARK";
    case EventType::Error: return "ERROR";
  }
  return "?";
}

namespace {

std::string str(const json::object& o, std::string_view key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return std::string(v->as_string());
  return {};
}

ApiStatus statusOf(const json::object& o) {
  ApiStatus s;
  if (auto* c = o.if_contains("code"); c && c->is_int64()) s.code = static_cast<int>(c->as_int64());
  s.reason = str(o, "reason");
  s.message = str(o, "message");
  return s;
}

}  // namespace

Result<WatchEvent> parseEvent(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return error("watch event", "not JSON: " + ec.message());
  if (!v.is_object()) return error("watch event", "not an object");
  auto& o = v.as_object();
  const std::string type = str(o, "type");
  WatchEvent ev;
  if (type == "ADDED") ev.type = EventType::Added;
  else if (type == "MODIFIED") ev.type = EventType::Modified;
  else if (type == "DELETED") ev.type = EventType::Deleted;
  else if (type == "BOOKMARK") ev.type = EventType::Bookmark;
  else if (type == "ERROR") ev.type = EventType::Error;
  else return error("watch event", type.empty() ? "has no type" : "unknown type '" + type + "'");
  auto* obj = o.if_contains("object");
  if (!obj || !obj->is_object()) return error("watch event " + type, "has no object");
  ev.object = std::move(obj->as_object());
  if (ev.type == EventType::Error) {
    ApiStatus s = statusOf(ev.object);
    ev.code = s.code;
    ev.reason = std::move(s.reason);
    ev.message = std::move(s.message);
  }
  return ev;
}

std::string resourceVersionOf(const json::object& o) {
  if (auto* m = o.if_contains("metadata"); m && m->is_object()) return str(m->as_object(), "resourceVersion");
  return {};
}

ApiStatus parseStatus(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return ApiStatus{0, {}, std::string(body.substr(0, 200))};
  return statusOf(v.as_object());
}

}  // namespace np::k8s
