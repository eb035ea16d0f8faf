#include "flows/flows.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "core/log.h"
#include "flows/hubble_server.h"
#include "np_abi.h"
#include "np_trace.h"

namespace np::flows {

Flows::Flows(const FlowsConfig& cfg) : cfg_(cfg), store_(cfg.capacity, cfg.nodeName, monoToRealtimeOffsetNs()) {
  peers_.set({Peer{cfg.nodeName, cfg.nodeAddress}});
}

Result<std::unique_ptr<Flows>> Flows::start(const FlowsConfig& cfg) {
  std::unique_ptr<Flows> f(new Flows(cfg));
  std::string evPin = cfg.pinDir + "/" NP_STR(NP_MAP_EVENTS);
  f->eventsFd_ = bpf_obj_get(evPin.c_str());
  if (f->eventsFd_ < 0) return sysError("open " + evPin);
  std::string stPin = cfg.pinDir + "/" NP_STR(NP_MAP_EVENT_STATS);
  f->statsFd_ = bpf_obj_get(stPin.c_str());  // counters only: missing is not fatal
  f->rb_ = ring_buffer__new(f->eventsFd_, &Flows::onEvent, f.get(), nullptr);
  if (!f->rb_) return sysError("ring buffer on " + evPin);
  f->decodeCtx_.nodeName = cfg.nodeName;
  f->decodeCtx_.monoToRealtimeNs = f->store_.monoToRealtimeNs();
  Flows* self = f.get();
  f->decodeCtx_.service = [self](uint16_t id) -> std::shared_ptr<const ServiceName> {
    std::lock_guard<std::mutex> l(self->svcMu_);
    auto it = self->services_.find(id);
    if (it == self->services_.end()) return nullptr;
    return it->second;
  };
  f->decodeCtx_.pod = [self](uint32_t addr) -> std::shared_ptr<const PodInfo> {
    std::lock_guard<std::mutex> l(self->svcMu_);
    auto it = self->pods_.find(addr);
    if (it == self->pods_.end()) return nullptr;
    return it->second;
  };
  f->decodeCtx_.podByNetns = [self](uint64_t cookie) -> std::shared_ptr<const PodInfo> {
    std::lock_guard<std::mutex> l(self->svcMu_);
    auto it = self->podsByNetns_.find(cookie);
    if (it == self->podsByNetns_.end()) return nullptr;
    return it->second;
  };
  // if_indextoname() opens a socket and asks the kernel on every call (a few µs: at 100k
  // events/s the reader's biggest cost); names change rarely, so each is kept for a second.
  f->decodeCtx_.ifname = [self](uint32_t ifindex) -> std::string {
    const auto now = std::chrono::steady_clock::now();
    auto it = self->ifnames_.find(ifindex);
    if (it != self->ifnames_.end() && now - it->second.second < std::chrono::seconds(1)) return it->second.first;
    char buf[IF_NAMESIZE] = {};
    std::string name = if_indextoname(ifindex, buf) ? buf : "";
    if (self->ifnames_.size() > 4096) self->ifnames_.clear();  // bounded: pods' devices come and go
    self->ifnames_[ifindex] = {name, now};
    return name;
  };
  auto srv = HubbleServer::start(*f);
  if (!srv) return srv.error();
  f->server_ = std::move(*srv);
  f->reader_ = std::thread([self] { self->run(); });
  NP_LOG_INFO("flows", "flow events from %s, %zu flows kept, Hubble API on %s/hubble.sock%s%s", evPin.c_str(),
              cfg.capacity, cfg.runDir.c_str(), cfg.listenAddress.empty() ? "" : " and ",
              cfg.listenAddress.c_str());
  return f;
}

Flows::~Flows() {
  stop_ = true;
  if (reader_.joinable()) reader_.join();
  store_.close();
  peers_.close();
  server_.reset();
  if (rb_) ring_buffer__free(rb_);
  if (eventsFd_ >= 0) close(eventsFd_);
  if (statsFd_ >= 0) close(statsFd_);
}

int Flows::onEvent(void* ctx, void* data, size_t size) {
  auto* self = static_cast<Flows*>(ctx);
  self->received_++;
  size_t n = captureEvent(data, size, self->decodeCtx_, self->recs_);
  if (n == 0) {
    self->undecodable_++;
    return 0;
  }
  self->store_.push(self->recs_, n);
  return 0;
}

void Flows::run() {
  while (!stop_) {
    // Events are submitted without a wakeup until a quarter of the ring waits (lib/trace.h,
    // np_trace_wakeup): poll() returns early only for such a burst, so drain after every wait.
    int rc = ring_buffer__poll(rb_, NP_EVENTS_POLL_MS);
    if (rc >= 0 || rc == -EINTR) rc = ring_buffer__consume(rb_);
    if (rc < 0 && rc != -EINTR) {
      NP_LOG_WARN("flows", "ring buffer poll: %s", strerror(-rc));
      usleep(100000);
    }
  }
}

void Flows::setServices(std::map<uint16_t, ServiceName> services) {
  std::map<uint16_t, std::shared_ptr<const ServiceName>> named;
  for (auto& [id, n] : services) named.emplace(id, std::make_shared<const ServiceName>(std::move(n)));
  std::lock_guard<std::mutex> l(svcMu_);
  services_.swap(named);
}

void Flows::updateServices(const std::vector<uint16_t>& gone, std::vector<std::pair<uint16_t, ServiceName>> named) {
  std::vector<std::pair<uint16_t, std::shared_ptr<const ServiceName>>> made;
  made.reserve(named.size());
  for (auto& [id, n] : named) made.emplace_back(id, std::make_shared<const ServiceName>(std::move(n)));
  std::lock_guard<std::mutex> l(svcMu_);
  for (uint16_t id : gone) services_.erase(id);
  for (auto& [id, n] : made) services_[id] = std::move(n);
}

void Flows::setPeers(std::vector<Peer> peers) {
  bool self = false;
  for (const Peer& p : peers) self = self || p.name == cfg_.nodeName;
  if (!self) peers.push_back(Peer{cfg_.nodeName, cfg_.nodeAddress});
  peers_.set(std::move(peers));
}

namespace {
template <typename K>
std::unordered_map<K, std::shared_ptr<const PodInfo>> shared(std::unordered_map<K, PodInfo>& pods) {
  std::unordered_map<K, std::shared_ptr<const PodInfo>> out;
  out.reserve(pods.size());
  for (auto& [k, p] : pods) out.emplace(k, std::make_shared<const PodInfo>(std::move(p)));
  return out;
}
}  // namespace

void Flows::setPods(std::unordered_map<uint32_t, PodInfo> pods) {
  auto byAddr = shared(pods);
  {
    std::lock_guard<std::mutex> l(svcMu_);
    pods_.swap(byAddr);
  }
  // the old map is freed here, outside the lock the reader takes (records keep the pods they name)
}

void Flows::setPodsByNetns(std::unordered_map<uint64_t, PodInfo> pods) {
  auto byNetns = shared(pods);
  {
    std::lock_guard<std::mutex> l(svcMu_);
    podsByNetns_.swap(byNetns);
  }
}

FlowCounters Flows::counters() const {
  FlowCounters c;
  c.received = received_;
  c.undecodable = undecodable_;
  if (statsFd_ >= 0) {
    int n = libbpf_num_possible_cpus();
    if (n > 0) {
      std::vector<np_trace_stat> v(static_cast<size_t>(n));
      uint32_t zero = 0;
      if (bpf_map_lookup_elem(statsFd_, &zero, v.data()) == 0)
        for (const auto& s : v) {
          c.datapathEmitted += s.emitted;
          c.datapathLost += s.lost;
        }
    }
  }
  return c;
}

}  // namespace np::flows
