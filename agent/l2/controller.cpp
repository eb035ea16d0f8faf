#include "l2/controller.h"

#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <ctime>

#include "core/log.h"
#include "core/net.h"
#include "k8s/kubeconfig.h"
#include "k8s/service_cache.h"
#include "k8s/watch.h"

namespace np::l2 {

namespace json = boost::json;
namespace pb = ::nodepath::agent::v1;
using lease::Clock;
using namespace std::chrono_literals;

Service fromK8s(const k8s::K8sService& s) {
  Service out;
  out.ns = s.ns;
  out.name = s.name;
  out.labels = Labels(s.labels.begin(), s.labels.end());
  out.loadBalancerClass = s.loadBalancerClass;
  // The datapath's rule (toModel), not a second copy of it: an address is announced only if
  // the service path behind it exists.
  out.externalIPs = k8s::externalIpsOf(s);
  out.loadBalancerIPs = k8s::loadBalancerIpsOf(s);
  return out;
}

namespace {

std::string durationText(lease::Duration d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

Controller::Controller(boost::asio::io_context& io, const Config& c)
    : io_(io),
      node_(c.nodeName),
      ns_(c.k8sNamespace),
      timings_{c.l2LeaseDuration, c.l2RenewDeadline, c.l2RetryPeriod},
      announcer_(c.nodeName, timings_),
      timer_(io) {}

Result<std::unique_ptr<Controller>> Controller::start(boost::asio::io_context& io, const Config& config) {
  if (!config.k8sEnabled())
    return error("L2 announcements", "need the Kubernetes API (--k8s-api-server or --k8s-kubeconfig-path)");
  if (config.nodeName.empty()) return error("L2 announcements", "the node name is empty");
  std::unique_ptr<Controller> c(new Controller(io, config));
  for (auto* dst : {&c->client_, &c->hbClient_}) {
    auto api = k8s::resolveApiConfig(config.k8sApiServer, config.k8sKubeconfig);
    if (!api) return api.error();
    auto client = k8s::Client::create(io, std::move(*api));
    if (!client) return client.error();
    *dst = std::move(*client);
  }
  Controller* self = c.get();
  std::weak_ptr<bool> alive = c->alive_;

  k8s::Reflector::Handler ph;
  auto decodePolicy = [self](const json::object& o) {
    auto p = Policy::fromJson(json::value(o));
    const std::string name = k8s::objectKey(o).substr(1);  // cluster-scoped: "/<name>"
    if (!p) {
      if (self->policyErrors_[name] != p.error().message())
        NP_LOG_WARN("l2", "CiliumL2AnnouncementPolicy %s refused: %s", name.c_str(), p.error().message().c_str());
      self->policyErrors_[name] = p.error().message();
      self->policies_.erase(name);
      return;
    }
    self->policyErrors_.erase(name);
    self->policies_[name] = std::move(*p);
  };
  ph.replace = [self, alive, decodePolicy](std::vector<json::object> items) -> Status {
    if (alive.expired()) return {};
    self->policies_.clear();
    self->policyErrors_.clear();
    for (const auto& o : items) decodePolicy(o);
    return {};
  };
  ph.event = [self, alive, decodePolicy](k8s::EventType t, json::object o) -> Status {
    if (alive.expired()) return {};
    if (t == k8s::EventType::Deleted) {
      const std::string name = k8s::objectKey(o).substr(1);
      self->policies_.erase(name);
      self->policyErrors_.erase(name);
    } else {
      decodePolicy(o);
    }
    return {};
  };
  ph.flush = [self, alive] {
    if (!alive.expired()) self->recompute();
  };

  k8s::Reflector::Handler nh;
  auto takeNode = [self](const json::object* o) {
    self->nodeLabels_.clear();
    self->nodeKnown_ = o != nullptr;
    if (!o) return;
    if (const auto* m = o->if_contains("metadata"); m && m->is_object())
      if (const auto* l = m->as_object().if_contains("labels"); l && l->is_object())
        for (const auto& [k, v] : l->as_object())
          if (v.is_string()) self->nodeLabels_[std::string(k)] = std::string(v.as_string());
  };
  nh.replace = [self, alive, takeNode](std::vector<json::object> items) -> Status {
    if (alive.expired()) return {};
    takeNode(items.empty() ? nullptr : &items.front());
    return {};
  };
  nh.event = [alive, takeNode](k8s::EventType t, json::object o) -> Status {
    if (alive.expired()) return {};
    takeNode(t == k8s::EventType::Deleted ? nullptr : &o);
    return {};
  };
  nh.flush = [self, alive] {
    if (!alive.expired()) self->recompute();
  };

  c->policiesRef_ = std::make_shared<k8s::Reflector>(*c->client_, "ciliuml2announcementpolicies", kL2PoliciesPath, "", ph);
  k8s::ReflectorOptions nodeOpt;
  nodeOpt.fieldSelector = "metadata.name=" + config.nodeName;
  c->nodeRef_ = std::make_shared<k8s::Reflector>(*c->client_, "node", "/api/v1/nodes", "", nh, nodeOpt);
  boost::asio::co_spawn(io, c->policiesRef_->run(), boost::asio::detached);
  boost::asio::co_spawn(io, c->nodeRef_->run(), boost::asio::detached);
  NP_LOG_INFO("l2", "L2 announcements on: Leases in namespace %s, heartbeat %s (lease %s, renew deadline %s, retry %s)",
              c->ns_.c_str(), heartbeatLeaseName(c->node_).c_str(), durationText(c->announcer_.timings().leaseDuration).c_str(),
              durationText(c->announcer_.timings().renewDeadline).c_str(),
              durationText(c->announcer_.timings().retryPeriod).c_str());
  return c;
}

Controller::~Controller() {
  alive_.reset();
  for (auto* r : {policiesRef_.get(), nodeRef_.get(), leasesRef_.get()})
    if (r) r->stop();
  timer_.cancel();
}

void Controller::setServices(const std::map<std::string, k8s::K8sService>& all) {
  services_.clear();
  for (const auto& [key, s] : all) services_[key] = fromK8s(s);
  servicesSynced_ = true;
  recompute();
}

std::vector<std::string> Controller::candidateDevices() const {
  // The interfaces ARP may be answered on (announceableDevice): a policy without interfaces
  // means "every such device", not the pods' veths, loopback, a down link or a bond's slaves.
  // Flags and hardware type by ioctl, which answers for this process's network namespace.
  std::vector<std::string> out;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return out;
  if (struct if_nameindex* ifs = ::if_nameindex()) {
    for (auto* i = ifs; i->if_index != 0 && i->if_name; ++i) {
      ifreq ifr{};
      std::strncpy(ifr.ifr_name, i->if_name, IFNAMSIZ - 1);
      if (::ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) continue;
      const unsigned flags = static_cast<unsigned short>(ifr.ifr_flags);
      if (::ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) continue;
      if (announceableDevice(i->if_name, flags, ifr.ifr_hwaddr.sa_family)) out.push_back(i->if_name);
    }
    ::if_freenameindex(ifs);
  }
  ::close(fd);
  std::sort(out.begin(), out.end());
  return out;
}

void Controller::recompute() {
  if (stopping_) return;
  const bool synced = policiesRef_->stats().synced && nodeRef_->stats().synced && servicesSynced_;
  std::map<std::string, std::vector<Announcement>> desired;
  std::map<std::string, std::string> serviceOf;
  collisions_.clear();
  collided_.clear();
  if (synced && nodeKnown_ && !policies_.empty()) {
    std::vector<Policy> pols;
    for (const auto& [_, p] : policies_) pols.push_back(p);
    const auto devices = candidateDevices();
    collisions_ = leaseCollisions(pols, services_);
    for (const auto& [key, svc] : services_) {
      auto ann = announcementsFor(pols, svc, nodeLabels_, devices);
      if (ann.empty()) continue;
      if (collisions_.count(key)) {
        collided_[key] = std::move(ann);
        continue;
      }
      const std::string lease = leaseName(svc);
      desired[lease] = std::move(ann);
      serviceOf[lease] = key;
    }
  }
  // Until everything is listed the announcer is told nothing: an empty set then would release
  // what a previous run of this agent holds and is about to be wanted again.
  const bool first = synced && !desiredSent_;
  if ((desired == desired_ && responderErrors_.empty() && !first) || (!synced && !desiredSent_)) {
    kick();
    return;
  }
  desiredSent_ = true;
  desired_ = desired;
  serviceOf_ = std::move(serviceOf);
  announcer_.setDesired(std::move(desired));
  // Responders for the devices some desired announcement names; the others close.
  std::set<std::string> wanted;
  for (const auto& [_, anns] : desired_)
    for (const auto& a : anns) wanted.insert(a.device);
  for (auto it = responders_.begin(); it != responders_.end();)
    it = wanted.count(it->first) ? std::next(it) : responders_.erase(it);
  for (const auto& dev : wanted) {
    if (responders_.count(dev)) continue;
    auto r = Responder::open(io_, dev);
    if (!r) {
      if (responderErrors_[dev] != r.error().message())
        NP_LOG_WARN("l2", "%s (retried when the services or policies change)", r.error().message().c_str());
      responderErrors_[dev] = r.error().message();
      continue;
    }
    responderErrors_.erase(dev);
    NP_LOG_INFO("l2", "ARP responder on %s (%s)", dev.c_str(), formatMac((*r)->mac().data()).c_str());
    responders_[dev] = std::move(*r);
  }
  for (auto it = responderErrors_.begin(); it != responderErrors_.end();)
    it = wanted.count(it->first) ? std::next(it) : responderErrors_.erase(it);
  ensureLeaseWatch();
  kick();
}

// Started once the desired set is first known, even when it is empty: a Lease a previous run
// held for a service this node no longer announces is found in its list and handed back
// (Announcer::setDesired). One list and one watch; no Lease is written for services that
// cannot be announced.
void Controller::ensureLeaseWatch() {
  if (leasesRef_ || !desiredSent_) return;
  Controller* self = this;
  std::weak_ptr<bool> alive = alive_;
  k8s::Reflector::Handler lh;
  lh.replace = [self, alive](std::vector<json::object> items) -> Status {
    if (alive.expired()) return {};
    std::set<std::string> seen;
    for (const auto& o : items) {
      const std::string key = k8s::objectKey(o);
      seen.insert(key.substr(key.find('/') + 1));
      self->observeLeaseObject(o, false);
    }
    const lease::Time now = Clock::now();
    for (const auto& n : self->leaseNames_)
      if (!seen.count(n)) self->announcer_.observe(n, std::nullopt, now);
    self->leaseNames_ = std::move(seen);
    self->announcer_.setCacheSynced();  // acquisitions start from this list, not from GETs
    return {};
  };
  lh.event = [self, alive](k8s::EventType t, json::object o) -> Status {
    if (alive.expired()) return {};
    self->observeLeaseObject(o, t == k8s::EventType::Deleted);
    return {};
  };
  lh.flush = [self, alive] {
    if (!alive.expired()) self->kick();
  };
  leasesRef_ = std::make_shared<k8s::Reflector>(*client_, "leases", k8s::leasePath(ns_), "", lh);
  boost::asio::co_spawn(io_, leasesRef_->run(), boost::asio::detached);
}

void Controller::observeLeaseObject(const json::object& o, bool deleted) {
  const std::string key = k8s::objectKey(o);
  const std::string name = key.substr(key.find('/') + 1);
  const lease::Time now = Clock::now();
  if (deleted) {
    leaseNames_.erase(name);
    announcer_.observe(name, std::nullopt, now);
    return;
  }
  leaseNames_.insert(name);
  auto l = k8s::decodeLease(json::serialize(o));
  if (!l) {
    NP_LOG_WARN("l2", "Lease %s/%s: %s (skipped)", ns_.c_str(), name.c_str(), l.error().message().c_str());
    return;
  }
  announcer_.observe(name, *l, now);
}

void Controller::ensureHeartbeat(bool want) {
  if (want && !heartbeat_ && !stopping_) {
    k8s::LeaseRunner::Options opts{ns_, heartbeatLeaseName(node_), node_, announcer_.timings()};
    std::weak_ptr<bool> alive = alive_;
    heartbeat_ = std::make_unique<k8s::LeaseRunner>(io_, *hbClient_, opts, [this, alive](bool leader) {
      if (alive.expired()) return;
      NP_LOG_INFO("l2", "heartbeat Lease %s/%s %s", ns_.c_str(), heartbeatLeaseName(node_).c_str(),
                  leader ? "held: this node may answer" : "lost: this node stops answering");
      kick();
    });
    heartbeat_->start();
  } else if (!want && heartbeat_) {
    // Nothing left to announce: hand the heartbeat back (no Lease traffic while idle).
    pastHeartbeatRequests_ += heartbeat_->requests() + 1;
    heartbeat_->stop();
    heartbeat_.reset();
    // A released heartbeat is dead to the others at once: forget what was held, so a heartbeat
    // started again soon after does not inherit answering rights from this one.
    announcer_.selfReleased();
  }
}

void Controller::kick() {
  if (stepPosted_) return;
  stepPosted_ = true;
  std::weak_ptr<bool> alive = alive_;
  boost::asio::post(io_, [this, alive] {
    if (alive.expired()) return;
    stepPosted_ = false;
    step();
  });
}

void Controller::step() {
  if (stopping_) return;
  const lease::Time now = Clock::now();
  // Withdrawn services' Leases are handed back without it: a release needs no heartbeat.
  ensureHeartbeat(!desired_.empty());
  // One clock reading for the heartbeat's verdict and the announcer's (leaderUntil() is
  // meaningful only while the runner is leader at `now`).
  const lease::Time until = heartbeat_ && heartbeat_->isLeader(now) ? heartbeat_->leaderUntil() : lease::Time{};
  announcer_.setSelfAliveUntil(until, now);
  for (auto& a : announcer_.poll(now, k8s::microTime(std::chrono::system_clock::now()))) execute(std::move(a));
  if (auto taken = announcer_.takenHeartbeats(); taken != taken_) {
    for (const auto& n : taken)
      if (std::find(taken_.begin(), taken_.end(), n) == taken_.end())
        NP_LOG_INFO("l2", "took over the heartbeat Lease of dead node %s: answering for its services", n.c_str());
    for (const auto& n : taken_)
      if (std::find(taken.begin(), taken.end(), n) == taken.end())
        NP_LOG_INFO("l2", "heartbeat Lease of node %s no longer held by this node", n.c_str());
    taken_ = std::move(taken);
  }
  apply(now);
  timer_.expires_at(announcer_.nextDue(now));
  std::weak_ptr<bool> alive = alive_;
  timer_.async_wait([this, alive](const boost::system::error_code& ec) {
    if (ec || alive.expired()) return;
    kick();
  });
}

void Controller::apply(lease::Time now) {
  std::map<std::string, std::set<Ipv4>> byDevice;
  for (const Announcement& a : announcer_.answering(now)) byDevice[a.device].insert(a.ip);
  // Each set is valid until the heartbeat's renew deadline only: if this loop is late to clear
  // it, the responder falls silent by itself.
  const lease::Time validUntil = announcer_.answeringUntil(now);
  for (auto& [dev, r] : responders_) {
    auto it = byDevice.find(dev);
    r->setAddresses(it == byDevice.end() ? std::set<Ipv4>{} : it->second, validUntil);
  }
  for (const std::string& lease : announcer_.takeNewlyAnswering(now)) {
    auto d = desired_.find(lease);
    if (d == desired_.end()) continue;
    for (const Announcement& a : d->second) {
      auto r = responders_.find(a.device);
      if (r == responders_.end()) continue;
      if (Status st = r->second->announce(a.ip); !st)
        NP_LOG_WARN("l2", "gratuitous ARP for %s on %s: %s", a.ip.str().c_str(), a.device.c_str(),
                    st.error().message().c_str());
    }
    NP_LOG_INFO("l2", "announcing %s (Lease %s) on this node", serviceOf_[lease].c_str(), lease.c_str());
  }
}

void Controller::execute(Announcer::Action a) {
  ++requests_;
  std::weak_ptr<bool> alive = alive_;
  boost::asio::co_spawn(
      io_,
      [this, alive, a = std::move(a)]() -> boost::asio::awaitable<void> {
        const auto timeout = std::max<std::chrono::seconds>(
            1s, std::chrono::ceil<std::chrono::seconds>(announcer_.timings().renewDeadline));
        const lease::Time sentAt = Clock::now();
        const bool get = a.kind == Announcer::Action::Kind::GetHeartbeat || a.kind == Announcer::Action::Kind::GetService;
        if (get) {
          std::string path = k8s::leasePath(ns_, a.lease);
          auto r = co_await client_->get(std::move(path), timeout);
          if (alive.expired()) co_return;
          const lease::Time at = Clock::now();
          if (!r || (r->status != 200 && r->status != 404)) {
            lastError_ = "GET Lease " + a.lease + ": " +
                         (r ? "HTTP " + std::to_string(r->status) + " " + k8s::parseStatus(r->body).message : r.error().message());
            announcer_.onGet(a, at, std::nullopt, true, lastError_);
          } else if (r->status == 404) {
            announcer_.onGet(a, at, std::nullopt);
          } else if (auto l = k8s::decodeLease(r->body); !l) {
            lastError_ = l.error().message();
            announcer_.onGet(a, at, std::nullopt, true, lastError_);
          } else {
            announcer_.onGet(a, at, *l);
          }
        } else {
          const bool create = a.kind == Announcer::Action::Kind::Create;
          // Named locals: GCC 12 and conditional temporaries in co_await arguments (STYLE).
          std::string method = create ? "POST" : "PUT";
          std::string path = create ? k8s::leasePath(ns_) : k8s::leasePath(ns_, a.lease);
          std::string precondition = create ? std::string() : a.resourceVersion;
          std::string body = k8s::encodeLease(ns_, a.lease, a.record, precondition);
          std::string type = "application/json";
          auto r = co_await client_->request(std::move(method), std::move(path), std::move(body), std::move(type), timeout);
          if (alive.expired()) co_return;
          if (!r) {
            lastError_ = (create ? "POST Lease " : "PUT Lease ") + a.lease + ": " + r.error().message();
            announcer_.onWrite(a, sentAt, lease::WriteOutcome::Failed, std::nullopt, lastError_);
          } else if (r->status == 409 || r->status == 404 || (create && r->status == 422)) {
            announcer_.onWrite(a, sentAt, lease::WriteOutcome::Conflict);
          } else if (r->status != 200 && r->status != 201) {
            lastError_ = (create ? "POST Lease " : "PUT Lease ") + a.lease + ": HTTP " + std::to_string(r->status) + " " +
                         k8s::parseStatus(r->body).message;
            announcer_.onWrite(a, sentAt, lease::WriteOutcome::Failed, std::nullopt, lastError_);
          } else {
            auto l = k8s::decodeLease(r->body);
            announcer_.onWrite(a, sentAt, lease::WriteOutcome::Ok, l ? std::optional<lease::Lease>(*l) : std::nullopt);
          }
        }
        kick();
      },
      boost::asio::detached);
}

void Controller::stop(std::function<void()> done) {
  if (stopping_) {
    if (done) done();
    return;
  }
  stopping_ = true;
  timer_.cancel();
  // Silent first, then the Leases back.
  for (auto& [_, r] : responders_) r->setAddresses({}, {});
  auto actions = announcer_.releaseAll(k8s::microTime(std::chrono::system_clock::now()));
  struct Pending {
    size_t left = 0;
    std::function<void()> done;
    boost::asio::steady_timer deadline;
    explicit Pending(boost::asio::io_context& io) : deadline(io) {}
    void one() {
      if (left > 0 && --left == 0) finish();
    }
    void finish() {
      deadline.cancel();
      if (auto d = std::move(done)) {
        done = nullptr;
        d();
      }
    }
  };
  auto p = std::make_shared<Pending>(io_);
  p->done = std::move(done);
  p->left = actions.size() + (heartbeat_ ? 1 : 0);
  if (p->left == 0) {
    p->finish();
    return;
  }
  NP_LOG_INFO("l2", "stopping: handing %zu service Lease(s) back", actions.size());
  p->deadline.expires_after(std::max<lease::Duration>(announcer_.timings().renewDeadline, 1000ms));
  p->deadline.async_wait([p](const boost::system::error_code& ec) {
    if (!ec) p->finish();
  });
  if (heartbeat_) heartbeat_->stop([p] { p->one(); });
  for (auto& a : actions) {
    ++requests_;
    boost::asio::co_spawn(
        io_,
        [this, p, a = std::move(a)]() -> boost::asio::awaitable<void> {
          std::string path = k8s::leasePath(ns_, a.lease);
          std::string body = k8s::encodeLease(ns_, a.lease, a.record, a.resourceVersion);
          std::string method = "PUT", type = "application/json";
          auto r = co_await client_->request(std::move(method), std::move(path), std::move(body), std::move(type), 2s);
          if (!r) NP_LOG_WARN("l2", "release Lease %s: %s", a.lease.c_str(), r.error().message().c_str());
          p->one();
        },
        boost::asio::detached);
  }
}

void Controller::fillStatus(pb::L2Status& out, std::vector<std::string>& problems) const {
  const lease::Time now = Clock::now();
  const auto sysNow = std::chrono::system_clock::now();
  const auto& t = announcer_.timings();
  out.set_enabled(true);
  out.set_namespace_(ns_);
  out.set_timings("lease " + durationText(t.leaseDuration) + ", renew deadline " + durationText(t.renewDeadline) +
                  ", retry " + durationText(t.retryPeriod));
  const bool synced = policiesRef_->stats().synced && nodeRef_->stats().synced && servicesSynced_;
  out.set_synced(synced);
  out.set_policies(static_cast<uint32_t>(policies_.size()));
  out.set_policy_errors(static_cast<uint32_t>(policyErrors_.size()));
  out.set_heartbeat_lease(heartbeatLeaseName(node_));
  out.set_heartbeat_held(heartbeat_ && heartbeat_->isLeader());
  out.set_lease_requests(requests_ + pastHeartbeatRequests_ + (heartbeat_ ? heartbeat_->requests() : 0));
  for (const auto& e : announcer_.entries(now)) {
    auto svc = serviceOf_.find(e.lease);
    for (const auto& a : e.announcements) {
      pb::L2Announcement* x = out.add_announcements();
      x->set_service(svc == serviceOf_.end() ? "" : svc->second);
      x->set_lease(e.lease);
      x->set_ip(a.ip.str());
      x->set_device(a.device);
      x->set_answering(e.answering);
      x->set_holder(e.holder);
      x->set_error(e.error);
      if (e.answering) {
        const auto ago = std::chrono::duration_cast<std::chrono::system_clock::duration>(now - e.since);
        x->set_since(rfc3339(sysNow - ago));
        x->set_since_seconds_ago(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now - e.since).count()));
      }
    }
  }
  for (const auto& [key, anns] : collided_) {
    const auto& why = collisions_.at(key);
    problems.push_back("L2 announcements: service " + key + ": " + why);
    for (const auto& a : anns) {
      pb::L2Announcement* x = out.add_announcements();
      x->set_service(key);
      auto svc = services_.find(key);
      if (svc != services_.end()) x->set_lease(leaseName(svc->second));
      x->set_ip(a.ip.str());
      x->set_device(a.device);
      x->set_error(why);
    }
  }
  for (const auto& [dev, r] : responders_) {
    pb::L2Responder* x = out.add_responders();
    const auto& c = r->counters();
    x->set_device(dev);
    x->set_mac(formatMac(r->mac().data()));
    x->set_addresses(static_cast<uint32_t>(r->liveAddresses().size()));
    x->set_requests(c.requests);
    x->set_replies(c.replies);
    x->set_not_announced(c.notAnnounced);
    x->set_gratuitous(c.gratuitous);
    x->set_send_errors(c.sendErrors);
    x->set_stale(c.stale);
    uint64_t ignored = c.otherInterface;
    for (uint64_t n : c.ignored) ignored += n;
    x->set_ignored(ignored);
  }
  std::string err = lastError_;
  for (const auto& [dev, why] : responderErrors_) {
    problems.push_back("L2 announcements: " + why);
    if (err.empty()) err = why;
  }
  for (const auto& [name, why] : policyErrors_)
    problems.push_back("L2 announcements: CiliumL2AnnouncementPolicy " + name + " refused: " + why);
  if (!synced) {
    std::string what;
    for (auto* r : {policiesRef_.get(), nodeRef_.get()})
      if (!r->stats().synced) what += (what.empty() ? "" : ", ") + r->kind() + (r->stats().lastError.empty() ? "" : " (" + r->stats().lastError + ")");
    if (!servicesSynced_) what += std::string(what.empty() ? "" : ", ") + "services";
    problems.push_back("L2 announcements: waiting for " + what + " to be listed");
  } else if (!nodeKnown_) {
    if (err.empty()) err = "Node " + node_ + " not found: no policy selects this node";
  }
  if (!desired_.empty() && !(heartbeat_ && heartbeat_->isLeader()) && heartbeat_ && !heartbeat_->lastError().empty())
    problems.push_back("L2 announcements: heartbeat Lease " + heartbeatLeaseName(node_) + " not renewed: " +
                       heartbeat_->lastError());
  out.set_error(err);
}

}  // namespace np::l2
