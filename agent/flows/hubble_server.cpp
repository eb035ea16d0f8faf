#include "flows/hubble_server.h"

#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "core/log.h"
#include "flows/filter.h"
#include "flows/flows.h"

namespace np::flows {
namespace {

using google::protobuf::util::TimeUtil;
constexpr const char* kVersionHeader = "hubble-server-version";

bool before(const google::protobuf::Timestamp& a, const google::protobuf::Timestamp& b) {
  return a.seconds() < b.seconds() || (a.seconds() == b.seconds() && a.nanos() < b.nanos());
}

std::chrono::steady_clock::time_point kStart = std::chrono::steady_clock::now();

uint64_t uptimeNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - kStart).count());
}

std::string tcpAddress(const std::string& a) { return a[0] == ':' ? "0.0.0.0" + a : a; }

}  // namespace

void serveGetFlows(const FlowStore& store, const observer::GetFlowsRequest& req, const std::string& nodeName,
                   const std::function<bool(const observer::GetFlowsResponse&)>& write,
                   const std::function<bool()>& cancelled) {
  bool hasSince = req.has_since(), hasUntil = req.has_until();
  auto selected = [&](const flow::Flow& f) {
    if (hasSince && before(f.time(), req.since())) return false;
    if (hasUntil && before(req.until(), f.time())) return false;
    return allowed(req.whitelist(), req.blacklist(), f);
  };
  bool masked = req.has_field_mask() && req.field_mask().paths_size() > 0;
  auto send = [&](const flow::Flow& f) {
    observer::GetFlowsResponse r;
    *r.mutable_flow() = f;
    if (masked) google::protobuf::util::FieldMaskUtil::TrimMessage(req.field_mask(), r.mutable_flow());
    r.set_node_name(nodeName);
    *r.mutable_time() = f.time();
    return write(r);
  };

  std::vector<std::pair<uint64_t, flow::Flow>> hist;
  uint64_t next = store.read(0, hist);
  std::vector<const flow::Flow*> picked;
  for (const auto& [seq, f] : hist)
    if (selected(f)) picked.push_back(&f);
  // number: the first N (first) or the last N; 0 without follow and without since: all.
  uint64_t n = req.number();
  if (n == 0 && req.follow() && !hasSince) picked.clear();
  if (n > 0 && picked.size() > n) {
    if (req.first()) picked.resize(n);
    else picked.erase(picked.begin(), picked.end() - static_cast<ptrdiff_t>(n));
  }
  for (const flow::Flow* f : picked)
    if (!send(*f)) return;
  if (!req.follow()) return;

  while (!cancelled() && !store.closed()) {
    uint64_t now = store.waitFor(next, std::chrono::milliseconds(200));
    if (now <= next) continue;
    std::vector<std::pair<uint64_t, flow::Flow>> fresh;
    uint64_t oldest = store.oldestSeq();
    if (oldest > next) {  // fell behind the ring
      observer::GetFlowsResponse r;
      r.mutable_lost_events()->set_source(flow::HUBBLE_RING_BUFFER);
      r.mutable_lost_events()->set_num_events_lost(oldest - next);
      r.set_node_name(nodeName);
      if (!write(r)) return;
    }
    next = store.read(next, fresh);
    for (const auto& [seq, f] : fresh) {
      if (hasUntil && before(req.until(), f.time())) return;
      if (selected(f) && !send(f)) return;
    }
  }
}

void servePeers(const PeerSet& set, const std::function<bool(const peer::ChangeNotification&)>& write,
                const std::function<bool()>& cancelled) {
  uint64_t gen = 0;
  std::vector<Peer> shown;
  for (;;) {
    std::vector<Peer> now = set.get(&gen);
    for (const peer::ChangeNotification& n : peerChanges(shown, now))
      if (!write(n)) return;
    shown = std::move(now);
    do {
      if (cancelled() || set.closed()) return;
    } while (set.waitChange(gen, std::chrono::milliseconds(200)) == gen);
  }
}

class HubbleServer::ObserverImpl final : public observer::Observer::Service {
 public:
  explicit ObserverImpl(Flows& flows) : flows_(flows) {}

  grpc::Status GetFlows(grpc::ServerContext* ctx, const observer::GetFlowsRequest* req,
                        grpc::ServerWriter<observer::GetFlowsResponse>* w) override {
    ctx->AddInitialMetadata(kVersionHeader, flows_.config().version);
    serveGetFlows(
        flows_.store(), *req, flows_.config().nodeName,
        [w](const observer::GetFlowsResponse& r) { return w->Write(r); }, [ctx] { return ctx->IsCancelled(); });
    return grpc::Status::OK;
  }

  grpc::Status ServerStatus(grpc::ServerContext* ctx, const observer::ServerStatusRequest*,
                            observer::ServerStatusResponse* out) override {
    ctx->AddInitialMetadata(kVersionHeader, flows_.config().version);
    auto s = flows_.store().stats();
    out->set_num_flows(s.num);
    out->set_max_flows(s.capacity);
    out->set_seen_flows(s.seen);
    out->set_uptime_ns(uptimeNs());
    out->mutable_num_connected_nodes()->set_value(1);
    out->mutable_num_unavailable_nodes()->set_value(0);
    out->set_version(flows_.config().version);
    out->set_flows_rate(s.ratePerSec);
    return grpc::Status::OK;
  }

  grpc::Status GetNodes(grpc::ServerContext* ctx, const observer::GetNodesRequest*,
                        observer::GetNodesResponse* out) override {
    ctx->AddInitialMetadata(kVersionHeader, flows_.config().version);
    auto s = flows_.store().stats();
    auto* n = out->add_nodes();
    n->set_name(flows_.config().nodeName);
    n->set_version(flows_.config().version);
    n->set_address(flows_.config().nodeAddress);
    n->set_state(relay::NODE_CONNECTED);
    n->set_uptime_ns(uptimeNs());
    n->set_num_flows(s.num);
    n->set_max_flows(s.capacity);
    n->set_seen_flows(s.seen);
    return grpc::Status::OK;
  }

 private:
  Flows& flows_;
};

class HubbleServer::PeerImpl final : public peer::Peer::Service {
 public:
  explicit PeerImpl(Flows& flows) : flows_(flows) {}

  grpc::Status Notify(grpc::ServerContext* ctx, const peer::NotifyRequest*,
                      grpc::ServerWriter<peer::ChangeNotification>* w) override {
    ctx->AddInitialMetadata(kVersionHeader, flows_.config().version);
    servePeers(
        flows_.peers(), [w](const peer::ChangeNotification& n) { return w->Write(n); },
        [ctx] { return ctx->IsCancelled(); });
    return grpc::Status::OK;
  }

 private:
  Flows& flows_;
};

Result<std::unique_ptr<HubbleServer>> HubbleServer::start(Flows& flows) {
  std::unique_ptr<HubbleServer> s(new HubbleServer());
  s->observer_ = std::make_unique<ObserverImpl>(flows);
  s->peer_ = std::make_unique<PeerImpl>(flows);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  std::string sock = flows.config().runDir + "/hubble.sock";
  unlink(sock.c_str());
  b.AddListeningPort("unix:" + sock, grpc::InsecureServerCredentials());
  int tcpPort = 0;
  if (!flows.config().listenAddress.empty())
    b.AddListeningPort(tcpAddress(flows.config().listenAddress), grpc::InsecureServerCredentials(), &tcpPort);
  b.RegisterService(s->observer_.get());
  b.RegisterService(s->peer_.get());
  s->server_ = b.BuildAndStart();
  if (!s->server_) return error("start the Hubble API", "cannot listen on " + sock +
                                (flows.config().listenAddress.empty() ? "" : " and " + flows.config().listenAddress));
  if (!flows.config().listenAddress.empty() && tcpPort == 0) {
    s->server_->Shutdown();
    return error("start the Hubble API", "cannot listen on " + flows.config().listenAddress);
  }
  chmod(sock.c_str(), 0600);
  if (auto* h = s->server_->GetHealthCheckService()) {
    h->SetServingStatus("hubble.server.Observer", true);
    h->SetServingStatus("", true);
  }
  return s;
}

HubbleServer::~HubbleServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace np::flows
