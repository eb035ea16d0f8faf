#include "k8s/lease.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <ctime>

namespace np::k8s {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;
using lease::Clock;

std::string microTime(std::chrono::system_clock::time_point t) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>((us % 1000000 + 1000000) % 1000000));
  return buf;
}

std::string leasePath(const std::string& ns, const std::string& name) {
  std::string p = "/apis/coordination.k8s.io/v1/namespaces/" + ns + "/leases";
  if (!name.empty()) p += "/" + name;
  return p;
}

Result<lease::Lease> decodeLease(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return error("Lease", "not a JSON object");
  const json::object& o = v.as_object();
  lease::Lease out;
  if (const auto* m = o.if_contains("metadata"); m && m->is_object())
    if (const auto* rv = m->as_object().if_contains("resourceVersion"); rv && rv->is_string())
      out.resourceVersion = std::string(rv->as_string());
  const auto* spec = o.if_contains("spec");
  if (!spec || spec->is_null()) return out;
  if (!spec->is_object()) return error("Lease", "spec is not an object");
  const json::object& s = spec->as_object();
  auto str = [&](const char* k, std::string& dst) -> Status {
    const auto* f = s.if_contains(k);
    if (!f || f->is_null()) return {};
    if (!f->is_string()) return error("Lease", std::string("spec.") + k + " is not a string");
    dst = std::string(f->as_string());
    return {};
  };
  auto num = [&](const char* k, int32_t& dst) -> Status {
    const auto* f = s.if_contains(k);
    if (!f || f->is_null()) return {};
    if (!f->is_int64()) return error("Lease", std::string("spec.") + k + " is not an integer");
    dst = static_cast<int32_t>(f->as_int64());
    return {};
  };
  if (Status st = str("holderIdentity", out.record.holder); !st) return st.error();
  if (Status st = str("acquireTime", out.record.acquireTime); !st) return st.error();
  if (Status st = str("renewTime", out.record.renewTime); !st) return st.error();
  if (Status st = num("leaseDurationSeconds", out.record.leaseDurationSeconds); !st) return st.error();
  if (Status st = num("leaseTransitions", out.record.transitions); !st) return st.error();
  return out;
}

std::string encodeLease(const std::string& ns, const std::string& name, const lease::Record& rec,
                        const std::string& resourceVersion) {
  json::object meta{{"name", name}, {"namespace", ns}};
  if (!resourceVersion.empty()) meta["resourceVersion"] = resourceVersion;
  json::object spec{{"holderIdentity", rec.holder},
                    {"leaseDurationSeconds", rec.leaseDurationSeconds},
                    {"leaseTransitions", rec.transitions}};
  if (!rec.acquireTime.empty()) spec["acquireTime"] = rec.acquireTime;
  if (!rec.renewTime.empty()) spec["renewTime"] = rec.renewTime;
  json::object o{{"apiVersion", "coordination.k8s.io/v1"}, {"kind", "Lease"}, {"metadata", std::move(meta)},
                 {"spec", std::move(spec)}};
  return json::serialize(o);
}

struct LeaseRunner::State : std::enable_shared_from_this<State> {
  State(asio::io_context& io, Client& c, Options o, OnChange cb)
      : io(io), client(c), opts(std::move(o)), el(opts.identity, opts.timings), timer(io), onChange(std::move(cb)) {}

  asio::io_context& io;
  Client& client;
  Options opts;
  lease::Elector el;
  asio::steady_timer timer;
  OnChange onChange;
  bool running = false, stopped = false, inFlight = false;
  std::string lastError;
  uint64_t requests = 0;

  std::chrono::seconds requestTimeout() const {
    // A request may take up to the renew deadline: past it the answer no longer matters.
    auto s = std::chrono::ceil<std::chrono::seconds>(el.timings().renewDeadline);
    return std::max(s, std::chrono::seconds(1));
  }

  // Sends one request and feeds the answer back. Runs beside the loop.
  awaitable<void> send(lease::Request req) {
    auto self = shared_from_this();
    const lease::Time sentAt = Clock::now();
    ++requests;
    if (req.kind == lease::RequestKind::Get) {
      std::string path = leasePath(opts.ns, opts.name);
      const auto timeout = requestTimeout();
      auto r = co_await client.get(std::move(path), timeout);
      const lease::Time at = Clock::now();
      if (!r) {
        lastError = r.error().message();
        el.onGet(at, std::nullopt, true);
      } else if (r->status == 404) {
        lastError.clear();
        el.onGet(at, std::nullopt);
      } else if (r->status != 200) {
        lastError = "GET lease " + opts.ns + "/" + opts.name + ": HTTP " + std::to_string(r->status);
        el.onGet(at, std::nullopt, true);
      } else if (auto l = decodeLease(r->body); !l) {
        lastError = l.error().message();
        el.onGet(at, std::nullopt, true);
      } else {
        lastError.clear();
        el.onGet(at, *l);
      }
    } else {
      const bool create = req.kind == lease::RequestKind::Create;
      // Every argument is a named local: GCC 12 destroys temporaries of a conditional expression
      // inside a co_await twice (a double free seen in the k8s tier).
      std::string method = create ? "POST" : "PUT";
      std::string path = create ? leasePath(opts.ns) : leasePath(opts.ns, opts.name);
      std::string precondition = create ? std::string() : req.resourceVersion;
      std::string body = encodeLease(opts.ns, opts.name, req.record, precondition);
      std::string type = "application/json";
      const auto timeout = requestTimeout();
      auto r = co_await client.request(std::move(method), std::move(path), std::move(body), std::move(type), timeout);
      if (!r) {
        lastError = r.error().message();
        el.onWrite(sentAt, lease::WriteOutcome::Failed);
      } else if (r->status == 409 || (create && r->status == 422)) {
        // 409: someone wrote first (Update) or the lease now exists (Create).
        lastError.clear();
        el.onWrite(sentAt, lease::WriteOutcome::Conflict);
      } else if (r->status != 200 && r->status != 201) {
        lastError = std::string(create ? "POST" : "PUT") + " lease " + opts.ns + "/" + opts.name + ": HTTP " +
                    std::to_string(r->status);
        el.onWrite(sentAt, lease::WriteOutcome::Failed);
      } else {
        lastError.clear();
        auto l = decodeLease(r->body);
        el.onWrite(sentAt, lease::WriteOutcome::Ok, l ? std::optional<lease::Lease>(*l) : std::nullopt);
      }
    }
    inFlight = false;
    timer.cancel();
  }

  awaitable<void> loop() {
    auto self = shared_from_this();
    while (!stopped) {
      const lease::Time now = Clock::now();
      if (!inFlight) {
        if (auto req = el.poll(now, microTime(std::chrono::system_clock::now()))) {
          inFlight = true;
          asio::co_spawn(io, send(std::move(*req)), asio::detached);
        }
      }
      // Leadership as time judges it, so a renewal still waiting for the server cannot keep a
      // holder acting past its deadline.
      (void)el.takeTransition();
      const bool lead = el.isLeader(now);
      if (lead != wasLeader) {
        wasLeader = lead;
        if (onChange && !stopped) onChange(lead);
      }
      lease::Time wake = inFlight ? now + std::chrono::hours(1) : el.nextDue();
      if (wasLeader) wake = std::min(wake, el.leaderUntil());
      if (wake <= now) wake = now + std::chrono::milliseconds(1);
      timer.expires_at(wake);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    running = false;
  }
  bool wasLeader = false;
};

LeaseRunner::LeaseRunner(asio::io_context& io, Client& client, Options opts, OnChange onChange)
    : st_(std::make_shared<State>(io, client, std::move(opts), std::move(onChange))) {}

LeaseRunner::~LeaseRunner() {
  st_->stopped = true;
  st_->onChange = nullptr;
  st_->timer.cancel();
}

void LeaseRunner::start() {
  if (st_->running || st_->stopped) return;
  st_->running = true;
  asio::co_spawn(st_->io, st_->loop(), asio::detached);
}

void LeaseRunner::stop(std::function<void()> done) {
  auto st = st_;
  const bool wasLeader = st->wasLeader;
  st->stopped = true;
  st->timer.cancel();
  auto req = st->el.release(microTime(std::chrono::system_clock::now()));
  if (wasLeader && st->onChange) st->onChange(false);
  st->wasLeader = false;
  st->onChange = nullptr;
  if (!req) {
    if (done) done();
    return;
  }
  asio::co_spawn(
      st->io,
      [st, r = std::move(*req), done = std::move(done)]() mutable -> awaitable<void> {
        // A renewal still in flight when stop() came may land first and move the Lease's
        // resourceVersion: the release then conflicts (409), and the Lease would stay ours until
        // it expires. Read it again and release it while it still names us (a few tries).
        for (int attempt = 0; attempt < 3; ++attempt) {
          auto body = encodeLease(st->opts.ns, st->opts.name, r.record, r.resourceVersion);
          ++st->requests;
          std::string method = "PUT", path = leasePath(st->opts.ns, st->opts.name), type = "application/json";
          const auto timeout = st->requestTimeout();
          auto res = co_await st->client.request(std::move(method), std::move(path), std::move(body),
                                                 std::move(type), timeout);
          if (!res) {
            st->lastError = res.error().message();
            break;
          }
          if (res->status != 409) {
            if (res->status != 200) st->lastError = "release lease: HTTP " + std::to_string(res->status);
            break;
          }
          std::string getPath = leasePath(st->opts.ns, st->opts.name);
          ++st->requests;
          auto cur = co_await st->client.get(std::move(getPath), timeout);
          if (!cur || cur->status != 200) break;
          auto l = decodeLease(cur->body);
          if (!l || l->record.holder != st->opts.identity) break;  // not ours any more: nothing to release
          std::string renewTime = r.record.renewTime;
          r.record = l->record;
          r.record.holder.clear();
          r.record.leaseDurationSeconds = 1;
          r.record.renewTime = renewTime;
          r.resourceVersion = l->resourceVersion;
        }
        if (done) done();
      },
      asio::detached);
}

bool LeaseRunner::isLeader() const { return isLeader(Clock::now()); }
bool LeaseRunner::isLeader(lease::Time now) const { return !st_->stopped && st_->el.isLeader(now); }
lease::Time LeaseRunner::leaderUntil() const { return st_->el.leaderUntil(); }
uint64_t LeaseRunner::requests() const { return st_->requests; }
std::string LeaseRunner::holder() const { return st_->el.observedHolder(); }
const LeaseRunner::Options& LeaseRunner::options() const { return st_->opts; }
std::string LeaseRunner::lastError() const { return st_->lastError; }

}  // namespace np::k8s
