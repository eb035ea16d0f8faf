#include "lb/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/crc.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "core/fs.h"

namespace json = boost::json;

namespace np::lb {
namespace {

const char* typeName(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number with a fraction";
    case json::kind::string: return "a string";
    case json::kind::array: return "a list";
    case json::kind::object: return "an object";
  }
  return "?";
}

// Parses one JSON value; a syntax error says where (line:column of `text`).
Result<json::value> parseJson(std::string_view text, const std::string& what) {
  json::parser p;
  boost::system::error_code ec;
  size_t n = p.write(text.data(), text.size(), ec);
  if (ec) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < n && i < text.size(); ++i) {
      if (text[i] == '\n') ++line, col = 1;
      else ++col;
    }
    return error(what, "not valid JSON at line " + std::to_string(line) + ", column " + std::to_string(col) + ": " +
                           ec.message());
  }
  return p.release();
}

// Refuses keys outside `allowed`: a renamed or misspelt field must not silently drop its value.
Status onlyKeys(const json::object& o, std::initializer_list<std::string_view> allowed, const std::string& ctx) {
  for (const auto& kv : o) {
    bool known = false;
    for (std::string_view a : allowed) known |= kv.key() == a;
    if (known) continue;
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return error(ctx, "unknown field \"" + shown(kv.key()) + "\" (known: " + list + ")");
  }
  return {};
}

Result<std::string> stringField(const json::object& o, std::string_view key, const std::string& ctx, bool required) {
  auto it = o.find(key);
  if (it == o.end()) {
    if (required) return error(ctx, "field \"" + std::string(key) + "\" is missing");
    return std::string();
  }
  if (!it->value().is_string())
    return error(ctx, "field \"" + std::string(key) + "\" must be a string (is " + typeName(it->value()) + ")");
  return std::string(it->value().get_string());
}

Result<int64_t> intField(const json::object& o, std::string_view key, const std::string& ctx, bool required,
                         int64_t min, int64_t max) {
  auto it = o.find(key);
  if (it == o.end()) {
    if (required) return error(ctx, "field \"" + std::string(key) + "\" is missing");
    return int64_t{0};
  }
  const json::value& v = it->value();
  if (!v.is_int64() && !v.is_uint64())
    return error(ctx, "field \"" + std::string(key) + "\" must be an integer (is " + typeName(v) + ")");
  if (v.is_uint64() || v.get_int64() < min || v.get_int64() > max)
    return error(ctx, "field \"" + std::string(key) + "\" is " + shown(json::serialize(v)) + ", outside " +
                          std::to_string(min) + ".." + std::to_string(max));
  return v.get_int64();
}

Result<const json::array*> arrayField(const json::object& o, std::string_view key, const std::string& ctx) {
  auto it = o.find(key);
  if (it == o.end()) return static_cast<const json::array*>(nullptr);
  if (!it->value().is_array())
    return error(ctx, "field \"" + std::string(key) + "\" must be a list (is " + typeName(it->value()) + ")");
  return &it->value().get_array();
}

Result<std::vector<Ipv4>> ipList(const json::object& o, std::string_view key, const std::string& ctx) {
  std::vector<Ipv4> out;
  auto a = arrayField(o, key, ctx);
  if (!a) return a.error();
  if (!*a) return out;
  for (size_t i = 0; i < (*a)->size(); ++i) {
    const json::value& v = (**a)[i];
    const std::string where = "field \"" + std::string(key) + "\" item " + std::to_string(i + 1);
    if (!v.is_string()) return error(ctx, where + " must be a string (is " + typeName(v) + ")");
    auto ip = Ipv4::parse(v.get_string());
    if (!ip) return error(ctx, where + " \"" + shown(v.get_string()) + "\" is not an IPv4 address");
    out.push_back(*ip);
  }
  return out;
}

Result<Service> serviceFromJson(const json::value& v, const std::string& where) {
  if (!v.is_object()) return error(where, "a service must be an object (is " + std::string(typeName(v)) + ")");
  const json::object& o = v.get_object();
  auto name = stringField(o, "name", where + ": a service", true);
  if (!name) return name.error();
  Service s;
  s.name = *name;
  const std::string ctx = where + ": service " + shownName(s.name);
  NP_TRY(onlyKeys(o, {"name", "protocol", "port", "clusterIP", "nodePort", "externalIPs", "loadBalancerIPs", "backends",
                      "sessionAffinity", "sessionAffinityTimeoutSeconds", "externalTrafficPolicy",
                      "internalTrafficPolicy"},
                  ctx));
  auto proto = stringField(o, "protocol", ctx, true);
  if (!proto) return proto.error();
  auto p = parseProtocol(*proto);
  if (!p) return error(ctx, "field \"protocol\" is \"" + shown(*proto) + "\" (TCP or UDP)");
  s.protocol = *p;
  auto port = intField(o, "port", ctx, true, 1, 65535);
  if (!port) return port.error();
  s.port = static_cast<uint16_t>(*port);
  auto nodePort = intField(o, "nodePort", ctx, false, 0, 65535);
  if (!nodePort) return nodePort.error();
  s.nodePort = static_cast<uint16_t>(*nodePort);
  if (o.contains("clusterIP")) {
    auto cip = stringField(o, "clusterIP", ctx, true);
    if (!cip) return cip.error();
    s.clusterIp = Ipv4::parse(*cip);
    if (!s.clusterIp) return error(ctx, "field \"clusterIP\" \"" + shown(*cip) + "\" is not an IPv4 address");
  }
  auto ext = ipList(o, "externalIPs", ctx);
  if (!ext) return ext.error();
  s.externalIps = std::move(*ext);
  auto lbs = ipList(o, "loadBalancerIPs", ctx);
  if (!lbs) return lbs.error();
  s.loadBalancerIps = std::move(*lbs);
  // Optional, with Kubernetes' defaults: files written before these fields existed load as they were.
  if (o.contains("sessionAffinity")) {
    auto a = stringField(o, "sessionAffinity", ctx, true);
    if (!a) return a.error();
    auto parsed = parseSessionAffinity(*a);
    if (!parsed) return error(ctx, "field \"sessionAffinity\" is \"" + shown(*a) + "\" (None or ClientIP)");
    s.sessionAffinity = *parsed;
  }
  if (o.contains("sessionAffinityTimeoutSeconds")) {
    auto t = intField(o, "sessionAffinityTimeoutSeconds", ctx, true, 1, kMaxAffinityTimeoutSec);
    if (!t) return t.error();
    s.affinityTimeoutSec = static_cast<uint32_t>(*t);
  }
  for (auto [key, out] : {std::pair{"externalTrafficPolicy", &s.externalTrafficPolicy},
                          std::pair{"internalTrafficPolicy", &s.internalTrafficPolicy}}) {
    if (!o.contains(key)) continue;
    auto p = stringField(o, key, ctx, true);
    if (!p) return p.error();
    auto parsed = parseTrafficPolicy(*p);
    if (!parsed) return error(ctx, "field \"" + std::string(key) + "\" is \"" + shown(*p) + "\" (Cluster or Local)");
    *out = *parsed;
  }
  auto backends = arrayField(o, "backends", ctx);
  if (!backends) return backends.error();
  if (*backends) {
    for (size_t i = 0; i < (*backends)->size(); ++i) {
      const json::value& bv = (**backends)[i];
      const std::string bctx = ctx + ": backend " + std::to_string(i + 1);
      if (!bv.is_object()) return error(bctx, "must be an object (is " + std::string(typeName(bv)) + ")");
      const json::object& b = bv.get_object();
      NP_TRY(onlyKeys(b, {"address", "state", "nodeName"}, bctx));
      auto addr = stringField(b, "address", bctx, true);
      if (!addr) return addr.error();
      auto ep = Endpoint::parse(*addr);
      if (!ep) return error(bctx, "field \"address\" \"" + shown(*addr) + "\" is not IPv4:PORT");
      auto state = stringField(b, "state", bctx, true);
      if (!state) return state.error();
      BackendState st;
      if (*state == "active") st = BackendState::Active;
      else if (*state == "terminating") st = BackendState::Terminating;
      else return error(bctx, "field \"state\" is \"" + shown(*state) + "\" (active or terminating)");
      auto node = stringField(b, "nodeName", bctx, false);
      if (!node) return node.error();
      s.backends.push_back({*ep, st, *node});
    }
  }
  return s;
}

// Written by hand rather than through a json::value tree: with 10,000 services the tree cost
// more time and memory than everything else a change does.
void quoted(std::string& out, std::string_view v) {
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

void appendService(std::string& out, const Service& s) {
  auto ipList = [&](const char* key, const std::vector<Ipv4>& ips) {
    if (ips.empty()) return;
    out += ",\"";
    out += key;
    out += "\":[";
    for (size_t i = 0; i < ips.size(); ++i) {
      if (i) out += ',';
      quoted(out, ips[i].str());
    }
    out += ']';
  };
  out += "{\"name\":";
  quoted(out, s.name);
  out += ",\"protocol\":\"";
  out += protocolName(s.protocol);
  out += "\",\"port\":" + std::to_string(s.port);
  if (s.clusterIp) {
    out += ",\"clusterIP\":";
    quoted(out, s.clusterIp->str());
  }
  if (s.nodePort) out += ",\"nodePort\":" + std::to_string(s.nodePort);
  ipList("externalIPs", s.externalIps);
  ipList("loadBalancerIPs", s.loadBalancerIps);
  out += ",\"backends\":[";
  for (size_t i = 0; i < s.backends.size(); ++i) {
    if (i) out += ',';
    out += "{\"address\":";
    quoted(out, s.backends[i].addr.str());
    out += s.backends[i].state == BackendState::Active ? ",\"state\":\"active\"" : ",\"state\":\"terminating\"";
    if (!s.backends[i].nodeName.empty()) {
      out += ",\"nodeName\":";
      quoted(out, s.backends[i].nodeName);
    }
    out += '}';
  }
  out += ']';
  // Only what differs from Kubernetes' defaults: a service without these is written as before.
  if (s.sessionAffinity != SessionAffinity::None) {
    out += ",\"sessionAffinity\":\"";
    out += sessionAffinityName(s.sessionAffinity);
    out += "\",\"sessionAffinityTimeoutSeconds\":" + std::to_string(s.affinityTimeoutSec);
  }
  if (s.externalTrafficPolicy != TrafficPolicy::Cluster) out += ",\"externalTrafficPolicy\":\"Local\"";
  if (s.internalTrafficPolicy != TrafficPolicy::Cluster) out += ",\"internalTrafficPolicy\":\"Local\"";
  out += '}';
}

uint32_t crc32(std::string_view s) {
  boost::crc_32_type crc;
  crc.process_bytes(s.data(), s.size());
  return crc.checksum();
}

struct Record {
  uint64_t seq = 0;
  std::vector<Service> upserts;
  std::vector<std::string> deletes;
};

Result<Record> recordFromJson(std::string_view text, const std::string& where) {
  auto v = parseJson(text, where);
  if (!v) return v.error();
  if (!v->is_object()) return error(where, "a record must be an object");
  const json::object& o = v->get_object();
  NP_TRY(onlyKeys(o, {"seq", "upsert", "delete"}, where));
  Record r;
  auto seq = intField(o, "seq", where, true, 1, INT64_MAX);
  if (!seq) return seq.error();
  r.seq = static_cast<uint64_t>(*seq);
  auto ups = arrayField(o, "upsert", where);
  if (!ups) return ups.error();
  if (*ups)
    for (const json::value& sv : **ups) {
      auto s = serviceFromJson(sv, where);
      if (!s) return s.error();
      r.upserts.push_back(std::move(*s));
    }
  auto dels = arrayField(o, "delete", where);
  if (!dels) return dels.error();
  if (*dels)
    for (const json::value& d : **dels) {
      if (!d.is_string()) return error(where, "field \"delete\" holds " + std::string(typeName(d)) + ", not a name");
      r.deletes.emplace_back(d.get_string());
    }
  return r;
}

std::string base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

}  // namespace

std::string servicesToJson(const std::map<std::string, Service>& services, uint64_t seq) {
  std::string out;
  out.reserve(services.size() * 256 + 64);
  out += "{\"version\":2,\"seq\":" + std::to_string(seq) + ",\"services\":[";
  bool first = true;
  for (const auto& [name, s] : services) {
    if (s.source != "local") continue;
    out += first ? "\n" : ",\n";
    first = false;
    appendService(out, s);
  }
  out += "\n]}\n";
  return out;
}

Result<Snapshot> servicesFromJson(const std::string& text) {
  auto root = parseJson(text, "parse");
  if (!root) return root.error();
  if (!root->is_object()) return error("parse", "the file must hold an object (holds " + std::string(typeName(*root)) + ")");
  const json::object& top = root->get_object();
  auto version = intField(top, "version", "parse", true, 1, 2);
  if (!version) return error("parse", version.error().detail + " (this agent reads versions 1 and 2)");
  NP_TRY(*version == 1 ? onlyKeys(top, {"version", "services"}, "parse")
                       : onlyKeys(top, {"version", "seq", "services"}, "parse"));
  Snapshot snap;
  if (*version == 2) {
    auto seq = intField(top, "seq", "parse", true, 0, INT64_MAX);
    if (!seq) return seq.error();
    snap.seq = static_cast<uint64_t>(*seq);
  }
  auto list = arrayField(top, "services", "parse");
  if (!list) return list.error();
  if (!*list) return error("parse", "field \"services\" is missing");
  std::set<std::string> names;
  for (size_t i = 0; i < (*list)->size(); ++i) {
    auto s = serviceFromJson((**list)[i], "parse: entry " + std::to_string(i + 1));
    if (!s) return s.error();
    if (!names.insert(s->name).second) return error("parse", "service " + shownName(s->name) + " is stored twice");
    snap.services.push_back(std::move(*s));
  }
  return snap;
}

ServiceStore::ServiceStore(std::string dir) : dir_(std::move(dir)) {}

ServiceStore::~ServiceStore() {
  if (journalFd_ >= 0) close(journalFd_);
}

Result<ServiceStore::Loaded> ServiceStore::read(const std::string& snapshotPath, Journal journal) const {
  if (!fs::exists(snapshotPath)) return Error{ENOENT, base(snapshotPath), "does not exist"};
  auto text = fs::readFile(snapshotPath);
  if (!text) return text.error();
  auto snap = servicesFromJson(*text);
  if (!snap) {
    Error e = snap.error();
    e.context = base(snapshotPath) + (e.context == "parse" ? "" : e.context.substr(5));
    return e;
  }
  std::map<std::string, Service> model;
  for (Service& s : snap->services) {
    std::string name = s.name;
    model.emplace(std::move(name), std::move(s));
  }
  Loaded out;
  out.seq = snap->seq;

  size_t valid = 0;
  if (fs::exists(journalPath())) {
    auto jtext = fs::readFile(journalPath());
    if (!jtext) return jtext.error();
    std::string_view rest = *jtext;
    size_t line = 0;
    while (!rest.empty()) {
      ++line;
      const size_t nl = rest.find('\n');
      const std::string where = "services.journal line " + std::to_string(line);
      if (nl == std::string_view::npos) {
        out.droppedTailBytes = rest.size();  // an append that did not finish: never acknowledged
        break;
      }
      std::string_view rec = rest.substr(0, nl);
      const size_t lineBytes = nl + 1;
      rest.remove_prefix(lineBytes);
      // Decodes one record; in Prefix mode the first damaged one ends the journal there.
      auto damaged = [&](Error e) -> std::optional<Error> {
        if (journal != Journal::Prefix) return e;
        out.droppedRecords = 1 + static_cast<size_t>(std::count(rest.begin(), rest.end(), '\n'));
        rest = {};
        return std::nullopt;
      };
      unsigned crc = 0;
      if (rec.size() < 10 || rec[8] != ' ') {
        if (auto e = damaged(error(where, "is not \"<crc32> <record>\""))) return *e;
        break;
      }
      if (std::sscanf(std::string(rec.substr(0, 8)).c_str(), "%8x", &crc) != 1 || crc != crc32(rec.substr(9))) {
        if (auto e = damaged(error(where, "fails its checksum: the journal is damaged"))) return *e;
        break;
      }
      auto r = recordFromJson(rec.substr(9), where);
      if (!r) {
        if (auto e = damaged(r.error())) return *e;
        break;
      }
      if (r->seq <= out.seq) {
        valid = jtext->size() - rest.size();
        continue;  // folded into the snapshot already (compaction stopped before emptying the journal)
      }
      if (r->seq != out.seq + 1) {
        if (auto e = damaged(error(where, "has change " + std::to_string(r->seq) + " where " +
                                              std::to_string(out.seq + 1) + " was expected: changes are missing")))
          return *e;
        break;
      }
      bool bad = false;
      for (const std::string& name : r->deletes) {
        if (model.count(name)) continue;
        if (auto e = damaged(error(where, "deletes service " + shownName(name) + ", which does not exist at that point")))
          return *e;
        bad = true;
      }
      if (bad) break;
      for (const std::string& name : r->deletes) model.erase(name);
      for (Service& s : r->upserts) {
        std::string name = s.name;
        model[name] = std::move(s);
      }
      out.seq = r->seq;
      ++out.journalRecords;
      valid = jtext->size() - rest.size();
    }
  }
  out.services.reserve(model.size());
  for (auto& [name, s] : model) out.services.push_back(std::move(s));
  out.journalValidBytes = valid;
  out.snapshotBytes = text->size();
  return out;
}

Result<ServiceStore::Loaded> ServiceStore::load() {
  // Leftovers of a write the agent did not finish (killed inside writeFileAtomic or replaceAll).
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("services.json", 0) == 0 &&
        (name.find(".tmp.") != std::string::npos || (name.size() > 4 && name.compare(name.size() - 4, 4, ".new") == 0)))
      std::filesystem::remove(e.path(), ec);
  }
  auto loaded = read(snapshotPath(), Journal::All);
  if (!loaded) return loaded;
  seq_ = loaded->seq;
  journalBytes_ = loaded->journalValidBytes;
  snapshotBytes_ = loaded->snapshotBytes;
  base_ = true;
  closeJournal();
  return loaded;
}

bool ServiceStore::anyFiles() const {
  return fs::exists(snapshotPath()) || fs::exists(journalPath()) || fs::exists(lastGoodPath());
}

void ServiceStore::closeJournal() {
  if (journalFd_ >= 0) close(journalFd_);
  journalFd_ = -1;
}

const char* ServiceStore::sourceName(Source s) {
  switch (s) {
    case Source::Snapshot: return "services.json with its journal";
    case Source::LastGood: return "services.json.last-good with the journal";
    case Source::SnapshotPrefix: return "services.json with the journal up to its first damaged record";
    case Source::LastGoodPrefix: return "services.json.last-good with the journal up to its first damaged record";
  }
  return "?";
}

Result<ServiceStore::Loaded> ServiceStore::peek(Source s) const {
  const bool lastGood = s == Source::LastGood || s == Source::LastGoodPrefix;
  return read(lastGood ? lastGoodPath() : snapshotPath(),
              s == Source::Snapshot || s == Source::LastGood ? Journal::All : Journal::Prefix);
}

Status ServiceStore::openJournal() {
  if (journalFd_ >= 0) return {};
  const bool existed = fs::exists(journalPath());
  int fd = open(journalPath().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sysError("open " + journalPath());
  // Cut an incomplete last record off before appending after it.
  if (ftruncate(fd, static_cast<off_t>(journalBytes_)) != 0 || lseek(fd, 0, SEEK_END) < 0) {
    int e = errno;
    close(fd);
    return sysError("prepare " + journalPath(), e);
  }
  if (!existed) {
    if (Status st = fs::syncDir(dir_); !st) {
      close(fd);
      return st;
    }
  }
  journalFd_ = fd;
  return {};
}

Status ServiceStore::append(const std::vector<const Service*>& upserts, const std::vector<std::string>& deletes) {
  if (!base_) return error("persist a change to " + journalPath(), "the stored state was not loaded");
  if (!broken_.empty()) return error("persist a change to " + journalPath(), broken_);
  if (Status st = checkFiles(); !st) {
    broken_ = st.error().message();
    closeJournal();
    return st;
  }
  NP_TRY(openJournal());
  std::string rec = "{\"seq\":" + std::to_string(seq_ + 1) + ",\"upsert\":[";
  bool first = true;
  for (const Service* s : upserts) {
    if (s->source != "local") continue;
    if (!first) rec += ',';
    first = false;
    appendService(rec, *s);
  }
  rec += "],\"delete\":[";
  for (size_t i = 0; i < deletes.size(); ++i) {
    if (i) rec += ',';
    quoted(rec, deletes[i]);
  }
  rec += "]}";
  char crc[10];
  std::snprintf(crc, sizeof crc, "%08x ", crc32(rec));
  std::string line = crc + rec + "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(journalFd_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      // Leave no partial record behind for the next append to follow.
      if (ftruncate(journalFd_, static_cast<off_t>(journalBytes_)) != 0 || lseek(journalFd_, 0, SEEK_END) < 0) {
        broken_ = "a failed write left part of a refused change in " + journalPath() + " that could not be cut off";
        closeJournal();
      }
      return sysError("write " + journalPath(), e);
    }
    off += static_cast<size_t>(n);
  }
  if (fdatasync(journalFd_) != 0) {
    int e = errno;
    // The whole record may sit in the page cache and reach the disk later: the caller is told
    // nothing was changed, so the record must go. If it cannot be cut off for sure, the journal
    // is not trusted until a snapshot replaces it.
    if (ftruncate(journalFd_, static_cast<off_t>(journalBytes_)) != 0 || fdatasync(journalFd_) != 0 ||
        lseek(journalFd_, 0, SEEK_END) < 0)
      broken_ = "a refused change may still be in " + journalPath() + " (a failed sync could not cut it off)";
    closeJournal();
    return sysError("sync " + journalPath(), e);
  }
  journalBytes_ += line.size();
  ++seq_;
  return {};
}

Status ServiceStore::checkFiles() const {
  struct stat atPath {}, open {};
  if (!fs::exists(snapshotPath()))
    return error("persist a change", snapshotPath() + " went away behind the agent; the next change rewrites it");
  if (journalFd_ >= 0 &&
      (fstat(journalFd_, &open) != 0 || open.st_nlink == 0 || stat(journalPath().c_str(), &atPath) != 0 ||
       atPath.st_ino != open.st_ino || atPath.st_dev != open.st_dev))
    return error("persist a change", journalPath() + " was removed or replaced behind the agent; the next change "
                                                     "rewrites the state files");
  return {};
}

Status ServiceStore::compact(const std::map<std::string, Service>& services) {
  NP_TRY(fs::makeDirs(dir_, 0700));
  std::string text = servicesToJson(services, seq_);
  NP_TRY(fs::writeFileAtomic(snapshotPath(), text, 0600));
  NP_TRY(fs::writeFileAtomic(lastGoodPath(), text, 0600));
  // The snapshot holds every record now; records left behind by a crash here are skipped (seq).
  journalBytes_ = 0;
  closeJournal();
  base_ = true;
  snapshotBytes_ = text.size();
  if (fs::exists(journalPath())) {
    if (truncate(journalPath().c_str(), 0) != 0) return sysError("empty " + journalPath());
    NP_TRY(openJournal());
    if (fsync(journalFd_) != 0) return sysError("sync " + journalPath());
  }
  broken_.clear();
  return {};
}

bool ServiceStore::compactionDue() const {
  return journalBytes_ > std::max<size_t>(snapshotBytes_, 1u << 20);
}

Result<std::vector<std::string>> ServiceStore::replaceAll(const std::map<std::string, Service>& services) {
  NP_TRY(fs::makeDirs(dir_, 0700));
  const std::string text = servicesToJson(services, seq_);
  // Unique even for two replacements within one second.
  std::string suffix = ".broken-" + std::to_string(::time(nullptr));
  for (int n = 2; fs::exists(snapshotPath() + suffix) || fs::exists(lastGoodPath() + suffix) ||
                  fs::exists(journalPath() + suffix);
       ++n)
    suffix = ".broken-" + std::to_string(::time(nullptr)) + "-" + std::to_string(n);
  const std::string newSnap = snapshotPath() + ".new", newGood = lastGoodPath() + ".new";
  std::vector<std::string> kept;  // the .broken copies made so far
  bool journalMoved = false;
  auto undo = [&](Error e) -> Result<std::vector<std::string>> {
    if (journalMoved) rename((journalPath() + suffix).c_str(), journalPath().c_str());
    for (const std::string& k : kept)
      if (k != journalPath() + suffix) unlink(k.c_str());
    unlink(newSnap.c_str());
    unlink(newGood.c_str());
    return Error{e.err, "replace the stored state", e.message() + "; the old files are kept as they were"};
  };
  // 1. The new content, complete and synced, beside the old.
  if (Status st = fs::writeFileAtomic(newSnap, text, 0600); !st) return undo(st.error());
  if (Status st = fs::writeFileAtomic(newGood, text, 0600); !st) return undo(st.error());
  // 2. The old files stay readable as .broken copies: hard links for the snapshots (their names
  //    are replaced next), a rename for the journal (it starts empty).
  for (const std::string& path : {snapshotPath(), lastGoodPath()}) {
    if (!fs::exists(path)) continue;
    if (link(path.c_str(), (path + suffix).c_str()) != 0) return undo(sysError("keep a copy of " + path));
    kept.push_back(path + suffix);
  }
  if (fs::exists(journalPath())) {
    if (rename(journalPath().c_str(), (journalPath() + suffix).c_str()) != 0)
      return undo(sysError("move " + journalPath() + " aside"));
    journalMoved = true;
    kept.push_back(journalPath() + suffix);
  }
  // 3. The new files take the names (each rename is atomic).
  if (rename(newSnap.c_str(), snapshotPath().c_str()) != 0) return undo(sysError("rename " + newSnap));
  if (rename(newGood.c_str(), lastGoodPath().c_str()) != 0 || !fs::syncDir(dir_))
    return Error{errno, "replace the stored state",
                 "services.json is replaced but its last-good copy is not: " + std::string(std::strerror(errno))};
  closeJournal();
  journalBytes_ = 0;
  snapshotBytes_ = text.size();
  base_ = true;
  broken_.clear();
  return kept;
}

}  // namespace np::lb
