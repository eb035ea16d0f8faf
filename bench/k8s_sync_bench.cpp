// k8s_sync_bench: how fast Kubernetes changes reach a nodepath agent's maps (issue 9's bench).
//
//   k8s_sync_bench load    --kubeconfig F --services N [--endpoints 10] [--from K]
//       creates Services svc-K..N-1 (ClusterIP 10.43.x.y, port 80 "http") and one EndpointSlice
//       each with E ready endpoints, 16 requests in flight; prints the time it took.
//   k8s_sync_bench synced  --socket S --services N [--timeout 600]
//       waits until the agent's kubernetes source has synced and it holds N services from it;
//       prints when (seconds since this command started) and the agent's service count.
//   k8s_sync_bench latency --kubeconfig F --socket S --services N [--changes 200]
//       changes one endpoint address of a random service's slice (merge PATCH), one change at a
//       time, and polls the agent (GetService, no sleep) until that backend is there: the time
//       from just before the PATCH is sent to the agent answering with it. Prints p50/p90/p99/max.
// The clock is this process's steady clock on both ends; the agent's own work, the API server's
// watch fan-out and the network are all inside the measured time.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent.grpc.pb.h"
#include "k8s/client.h"
#include "k8s/kubeconfig.h"

namespace {

namespace asio = boost::asio;
namespace pb = ::nodepath::agent::v1;
using Clock = std::chrono::steady_clock;

std::string clusterIp(int i) { return "10.43." + std::to_string(1 + i / 250) + "." + std::to_string(1 + i % 250); }
std::string endpointIp(int svc, int j) {
  // 10.0.(2 + j).x: node 2's pod CIDR and beyond; never reached, only programmed
  return "10.0." + std::to_string(2 + j) + "." + std::to_string(1 + svc % 250);
}

std::string serviceJson(int i) {
  return R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"svc-)" + std::to_string(i) +
         R"(","namespace":"default"},"spec":{"clusterIP":")" + clusterIp(i) +
         R"(","ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":8080}]}})";
}
std::string endpointsJson(int svc, int n, int changed = -1, const std::string& changedIp = {}) {
  std::string out = "[";
  for (int j = 0; j < n; ++j) {
    if (j) out += ",";
    const std::string ip = j == changed ? changedIp : endpointIp(svc, j);
    out += R"({"addresses":[")" + ip + R"("],"conditions":{"ready":true}})";
  }
  return out + "]";
}
std::string sliceJson(int i, int n) {
  return R"({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"svc-)" +
         std::to_string(i) + R"(-1","namespace":"default","labels":{"kubernetes.io/service-name":"svc-)" +
         std::to_string(i) + R"("}},"addressType":"IPv4","ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":)" +
         endpointsJson(i, n) + "}";
}

std::unique_ptr<np::k8s::Client> client(asio::io_context& io, const std::string& kubeconfig) {
  auto cfg = np::k8s::loadKubeconfig(kubeconfig);
  if (!cfg) throw std::runtime_error(cfg.error().message());
  auto c = np::k8s::Client::create(io, std::move(*cfg));
  if (!c) throw std::runtime_error(c.error().message());
  return std::move(*c);
}

// One request; throws on a transport error or an unexpected status.
asio::awaitable<void> send(np::k8s::Client& c, std::string method, std::string path, std::string body,
                           std::string type, unsigned okA, unsigned okB) {
  const auto timeout = std::chrono::seconds(30);
  auto r = co_await c.request(std::move(method), std::move(path), std::move(body), std::move(type), timeout);
  if (!r) throw std::runtime_error(r.error().message());
  if (r->status != okA && r->status != okB)
    throw std::runtime_error("HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 300));
}

int load(const std::string& kubeconfig, int from, int services, int endpoints) {
  asio::io_context io;
  auto c = client(io, kubeconfig);
  const auto t0 = Clock::now();
  int next = from, done = 0;
  std::string failure;
  auto worker = [&]() -> asio::awaitable<void> {
    while (next < services && failure.empty()) {
      const int i = next++;
      try {
        // 409: already there from an earlier run with the same N
        co_await send(*c, "POST", "/api/v1/namespaces/default/services", serviceJson(i), "application/json", 201, 409);
        co_await send(*c, "POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", sliceJson(i, endpoints),
                      "application/json", 201, 409);
      } catch (const std::exception& e) {
        failure = "svc-" + std::to_string(i) + ": " + e.what();
      }
      ++done;
    }
  };
  for (int w = 0; w < 16; ++w) asio::co_spawn(io, worker(), asio::detached);
  io.run();
  if (!failure.empty()) {
    std::fprintf(stderr, "k8s_sync_bench: %s\n", failure.c_str());
    return 1;
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("loaded services=%d endpoints=%d seconds=%.1f\n", services, services * endpoints, s);
  return 0;
}

std::unique_ptr<pb::Agent::Stub> agent(const std::string& socket) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // The agent is starting: retry the socket every 50 ms, not with gRPC's 1 s+ backoff (which made
  // every resync look like 5 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  return pb::Agent::NewStub(grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args));
}

int synced(const std::string& socket, int services, int timeoutS) {
  const auto t0 = Clock::now();
  while (Clock::now() - t0 < std::chrono::seconds(timeoutS)) {
    // A fresh channel each time until the agent answers: a channel made while the agent starts
    // waits out gRPC's reconnect backoff (seconds), which is not the agent's time.
    auto stub = agent(socket);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    pb::StatusRequest req;
    pb::StatusResponse resp;
    if (stub->Status(&ctx, req, &resp).ok()) {
      for (const auto& src : resp.sources())
        if (src.name() == "kubernetes" && src.synced()) {
          // every service there: the last one's backends are programmed
          grpc::ClientContext gctx;
          pb::GetServiceRequest g;
          g.set_name("default/svc-" + std::to_string(services - 1) + ":http");
          pb::GetServiceResponse gr;
          if (stub->GetService(&gctx, g, &gr).ok() && gr.service().backends_size() > 0) {
            std::printf("synced seconds=%.2f\n", std::chrono::duration<double>(Clock::now() - t0).count());
            return 0;
          }
        }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::fprintf(stderr, "k8s_sync_bench: the agent did not sync %d services in %d s\n", services, timeoutS);
  return 1;
}

int latency(const std::string& kubeconfig, const std::string& socket, int services, int endpoints, int changes) {
  asio::io_context io;
  auto c = client(io, kubeconfig);
  auto stub = agent(socket);
  std::mt19937 rng(7);
  std::vector<double> ms;
  for (int k = 0; k < changes; ++k) {
    const int svc = static_cast<int>(rng() % services);
    const std::string ip = "10.0.200." + std::to_string(1 + k % 250);
    const std::string patch = R"({"endpoints":)" + endpointsJson(svc, endpoints, 0, ip) + "}";
    const auto t0 = Clock::now();
    std::string failure;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          try {
            co_await send(*c, "PATCH", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/svc-" +
                                           std::to_string(svc) + "-1",
                          patch, "application/merge-patch+json", 200, 200);
          } catch (const std::exception& e) {
            failure = e.what();
          }
        },
        asio::detached);
    io.restart();
    io.run();
    if (!failure.empty()) {
      std::fprintf(stderr, "k8s_sync_bench: PATCH svc-%d-1: %s\n", svc, failure.c_str());
      return 1;
    }
    for (;;) {
      grpc::ClientContext ctx;
      pb::GetServiceRequest g;
      g.set_name("default/svc-" + std::to_string(svc) + ":http");
      pb::GetServiceResponse gr;
      if (stub->GetService(&ctx, g, &gr).ok()) {
        const auto& b = gr.service().backends();
        if (std::any_of(b.begin(), b.end(), [&](const pb::Backend& x) { return x.address() == ip; })) break;
      }
      if (Clock::now() - t0 > std::chrono::seconds(30)) {
        std::fprintf(stderr, "k8s_sync_bench: svc-%d never showed %s\n", svc, ip.c_str());
        return 1;
      }
    }
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    // restore the original address so the next change of this service is a change again
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  std::printf("latency changes=%zu p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f\n", ms.size(), pct(0.50), pct(0.90),
              pct(0.99), ms.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Kubernetes -> agent map latency and resync (issue 9)"};
  app.require_subcommand(1);
  std::string kubeconfig, socket;
  int services = 1000, endpoints = 10, changes = 200, timeout = 600;
  auto* l = app.add_subcommand("load", "create the Services and EndpointSlices");
  l->add_option("--kubeconfig", kubeconfig)->required();
  l->add_option("--services", services);
  l->add_option("--endpoints", endpoints);
  int from = 0;
  l->add_option("--from", from, "first index to create (the ones below exist from a smaller size)");
  auto* s = app.add_subcommand("synced", "wait until the agent holds them");
  s->add_option("--socket", socket)->required();
  s->add_option("--services", services);
  s->add_option("--timeout", timeout);
  auto* t = app.add_subcommand("latency", "API write -> agent latency");
  t->add_option("--kubeconfig", kubeconfig)->required();
  t->add_option("--socket", socket)->required();
  t->add_option("--services", services);
  t->add_option("--endpoints", endpoints);
  t->add_option("--changes", changes);
  CLI11_PARSE(app, argc, argv);
  try {
    if (*l) return load(kubeconfig, from, services, endpoints);
    if (*s) return synced(socket, services, timeout);
    return latency(kubeconfig, socket, services, endpoints, changes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "k8s_sync_bench: %s\n", e.what());
    return 1;
  }
}
