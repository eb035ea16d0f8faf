#include "api/server.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <future>

#include "agent.grpc.pb.h"
#include "api/convert.h"
#include "core/log.h"
#include "ct/gc.h"
#include "ct/list.h"

namespace np::api {

grpc::Status toGrpc(const Error& e) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (e.err) {
    case 0: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case ENOENT: code = grpc::StatusCode::NOT_FOUND; break;
    case ENOTRECOVERABLE: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case EEXIST: code = grpc::StatusCode::ALREADY_EXISTS; break;
    case E2BIG:
    case ENOSPC:
    case ENOMEM: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    default: break;
  }
  // Whatever the message echoes, it travels in gRPC metadata (limited to 8 KiB by default).
  std::string msg = e.message();
  if (msg.size() > 2048) msg = msg.substr(0, 2000) + "... (" + std::to_string(msg.size()) + " bytes)";
  return grpc::Status(code, msg);
}

class Server::Service final : public pb::Agent::Service {
  static constexpr size_t kPageServices = 1000;
  static constexpr size_t kPageBytes = 1 << 20;

 public:
  Service(Agent& agent, boost::asio::io_context& io) : agent_(agent), io_(io) {}

  grpc::Status UpsertService(grpc::ServerContext*, const pb::UpsertServiceRequest* req,
                             pb::UpsertServiceResponse* resp) override {
    return reply(resp, [&] { return agent_.upsertService(*req); });
  }
  grpc::Status UpsertServices(grpc::ServerContext*, const pb::UpsertServicesRequest* req,
                              pb::UpsertServicesResponse* resp) override {
    grpc::Status st = reply(resp, [&] { return agent_.upsertServices(*req); });
    // The request is freed when this returns; give that memory back a moment later.
    boost::asio::post(io_, [this] { agent_.scheduleTrim(); });
    return st;
  }
  grpc::Status DeleteService(grpc::ServerContext*, const pb::DeleteServiceRequest* req,
                             pb::DeleteServiceResponse*) override {
    np::Status st = onLoop([&] { return agent_.deleteService(req->name()); });
    return st ? grpc::Status::OK : toGrpc(st.error());
  }
  grpc::Status GetService(grpc::ServerContext*, const pb::GetServiceRequest* req, pb::GetServiceResponse* resp) override {
    return reply(resp, [&] { return agent_.getService(req->name()); });
  }
  // Every page comes from one look at the model (one task on the agent's thread), so a list never
  // mixes two versions of a change; pages keep each message under the size limit.
  grpc::Status ListServices(grpc::ServerContext* ctx, const pb::ListServicesRequest*,
                            grpc::ServerWriter<pb::ListServicesResponse>* writer) override {
    std::vector<pb::ListServicesResponse> pages = onLoop([&] { return agent_.listServices(kPageServices); });
    for (const pb::ListServicesResponse& page : pages)
      if (ctx->IsCancelled() || !writer->Write(page)) return grpc::Status::CANCELLED;
    pages.clear();
    boost::asio::post(io_, [this] { agent_.scheduleTrim(); });
    return grpc::Status::OK;
  }
  grpc::Status ListLb(grpc::ServerContext*, const pb::ListLbRequest*,
                      grpc::ServerWriter<pb::ListLbResponse>* writer) override {
    auto all = onLoop([&] { return agent_.listLb(); });
    if (!all) return toGrpc(all.error());
    // Pages of about kPageBytes: one entry with many slots is large, many small ones are not.
    pb::ListLbResponse page;
    size_t bytes = 0;
    for (pb::LbEntry& e : *all->mutable_entries()) {
      bytes += e.ByteSizeLong();
      *page.add_entries() = std::move(e);
      if (bytes >= kPageBytes) {
        if (!writer->Write(page)) return grpc::Status::CANCELLED;
        page.Clear();
        bytes = 0;
      }
    }
    if (page.entries_size() > 0 && !writer->Write(page)) return grpc::Status::CANCELLED;
    return grpc::Status::OK;
  }
  // Streams while walking the kernel's tables, on this (gRPC) thread: a full table is hundreds of
  // thousands of entries, and the agent's loop has no part in reading them.
  grpc::Status ListConntrack(grpc::ServerContext* ctx, const pb::ListConntrackRequest* req,
                             grpc::ServerWriter<pb::ListConntrackResponse>* writer) override {
    ct::ListFilter filter;
    filter.snatOnly = req->snat_only();
    if (!req->address().empty()) {
      auto a = Ipv4::parse(req->address());
      if (!a) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "address \"" + lb::shown(req->address()) + "\" is not an IPv4 address");
      filter.address = a->be;
    }
    if (req->table() == "main") filter.table = NP_CT_TABLE_MAIN;
    else if (req->table() == "embryonic") filter.table = NP_CT_TABLE_EMBRYONIC;
    else if (!req->table().empty())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "unknown table \"" + lb::shown(req->table()) + "\" (main, embryonic)");
    ct::Tables& tables = *onLoop([&] { return &agent_.conntrackTables(); });
    const uint64_t now = ct::monotonicCoarseNs();
    pb::ListConntrackResponse page;
    size_t bytes = 0;
    bool cancelled = false;
    auto flush = [&] {
      if (page.entries_size() == 0 || cancelled) return;
      if (ctx->IsCancelled() || !writer->Write(page)) cancelled = true;
      page.Clear();
      bytes = 0;
    };
    for (np_ct_table t : {NP_CT_TABLE_MAIN, NP_CT_TABLE_EMBRYONIC}) {
      if (filter.table && *filter.table != t) continue;
      np::Status st = tables.walk(t, [&](const np_ct_key* keys, const np_ct_entry* entries, uint32_t n) {
        for (uint32_t i = 0; i < n && !cancelled; ++i) {
          if (!ct::matches(filter, t, keys[i], entries[i])) continue;
          pb::CtEntry* e = page.add_entries();
          *e = ctEntryToProto(t, keys[i], entries[i], now);
          bytes += e->ByteSizeLong();
          if (bytes >= kPageBytes) flush();
        }
      });
      if (cancelled) return grpc::Status::CANCELLED;
      if (!st) return toGrpc(st.error());
    }
    flush();
    return cancelled ? grpc::Status::CANCELLED : grpc::Status::OK;
  }
  grpc::Status Reconcile(grpc::ServerContext*, const pb::ReconcileRequest*, pb::ReconcileResponse* resp) override {
    return reply(resp, [&] { return agent_.reconcile(); });
  }
  grpc::Status State(grpc::ServerContext*, const pb::StateRequest* req, pb::StateResponse* resp) override {
    return reply(resp, [&] { return agent_.state(req->action()); });
  }
  grpc::Status ListNodes(grpc::ServerContext*, const pb::ListNodesRequest*, pb::ListNodesResponse* resp) override {
    *resp = onLoop([&] { return agent_.listNodes(); });
    return grpc::Status::OK;
  }
  grpc::Status CniAdd(grpc::ServerContext*, const pb::CniAddRequest* req, pb::CniAddResponse* resp) override {
    return reply(resp, [&] { return agent_.cniAdd(*req); });
  }
  grpc::Status CniDel(grpc::ServerContext*, const pb::CniDelRequest* req, pb::CniDelResponse*) override {
    np::Status st = onLoop([&] { return agent_.cniDel(*req); });
    return st ? grpc::Status::OK : toGrpc(st.error());
  }
  grpc::Status CniCheck(grpc::ServerContext*, const pb::CniCheckRequest* req, pb::CniCheckResponse* resp) override {
    return reply(resp, [&] { return agent_.podNetwork().check(*req); });
  }
  grpc::Status CniGc(grpc::ServerContext*, const pb::CniGcRequest* req, pb::CniGcResponse* resp) override {
    *resp = onLoop([&] { return agent_.cniGc(*req); });
    return grpc::Status::OK;
  }
  grpc::Status CniStatus(grpc::ServerContext*, const pb::CniStatusRequest*, pb::CniStatusResponse* resp) override {
    *resp = onLoop([&] { return agent_.podNetwork().cniStatus(); });
    return grpc::Status::OK;
  }
  grpc::Status ListEndpoints(grpc::ServerContext*, const pb::ListEndpointsRequest*,
                             pb::ListEndpointsResponse* resp) override {
    *resp = onLoop([&] { return agent_.podNetwork().listEndpoints(); });
    return grpc::Status::OK;
  }
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*, pb::StatusResponse* resp) override {
    *resp = onLoop([&] { return agent_.status(); });
    return grpc::Status::OK;
  }

 private:
  // Runs f on the agent's thread and waits for its result.
  template <typename F>
  auto onLoop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }

  template <typename Resp, typename F>
  grpc::Status reply(Resp* resp, F f) {
    auto r = onLoop(std::move(f));
    if (!r) return toGrpc(r.error());
    *resp = std::move(r.value());
    return grpc::Status::OK;
  }

  Agent& agent_;
  boost::asio::io_context& io_;
};

Result<std::unique_ptr<Server>> Server::start(Agent& agent, boost::asio::io_context& io, const std::string& socketPath) {
  std::unique_ptr<Server> s(new Server());
  s->service_ = std::make_unique<Service>(agent, io);
  // The caller holds the agent's instance lock: a socket file here belongs to a dead agent.
  if (unlink(socketPath.c_str()) != 0 && errno != ENOENT) return sysError("remove stale socket " + socketPath);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socketPath, grpc::InsecureServerCredentials());
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(256 << 20);  // a 10,000-service batch is tens of MB
  // The socket is created 0600 from the start: no window in which others could connect.
  mode_t old = umask(0177);
  s->server_ = builder.BuildAndStart();
  umask(old);
  if (!s->server_) return error("serve the agent API on " + socketPath, "gRPC could not listen (see its log above)");
  chmod(socketPath.c_str(), 0600);
  return s;
}

void Server::shutdown() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

Server::~Server() { shutdown(); }

}  // namespace np::api
