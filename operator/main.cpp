// nodepath-operator: the cluster-wide half of nodepath, in place of cilium-operator. One replica
// acts at a time: the holder of the Lease `cilium-operator-resource-lock` in the operator's
// namespace (`cilium`, Cilium's own lock: a leftover cilium-operator and ours can never both
// allocate). While it leads it runs LB-IPAM and cluster-pool IPAM; when it stops leading it
// exits, as Cilium's operator does, and its supervisor restarts it as a candidate.
// SIGTERM/SIGINT release the Lease so a standby takes over at once.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <unistd.h>

#include "core/log.h"
#include "k8s/client.h"
#include "k8s/kubeconfig.h"
#include "k8s/lease.h"
#include "operator/cluster_pool.h"
#include "operator/lbipam_controller.h"

namespace {

// A Go duration as Cilium's flags take them: 15s, 500ms, 1m30s, 2h.
std::optional<std::chrono::milliseconds> parseDuration(const std::string& s) {
  if (s.empty()) return std::nullopt;
  double total = 0;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
    if (j == i) return std::nullopt;
    double v = std::stod(s.substr(i, j - i));
    size_t k = j;
    while (k < s.size() && std::isalpha(static_cast<unsigned char>(s[k]))) ++k;
    std::string unit = s.substr(j, k - j);
    if (unit == "ms") total += v;
    else if (unit == "s") total += v * 1000;
    else if (unit == "m") total += v * 60000;
    else if (unit == "h") total += v * 3600000;
    else return std::nullopt;
    i = k;
  }
  return std::chrono::milliseconds(static_cast<int64_t>(total));
}

std::string defaultIdentity() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::mt19937_64 rng{std::random_device{}()};
  const char* abc = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string suffix;
  for (int i = 0; i < 10; ++i) suffix += abc[rng() % 36];
  return std::string(host) + "-" + suffix;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodepath-operator: leader-elected LB-IPAM and cluster-pool IPAM"};
  std::string kubeconfig, server, ns = "cilium", identity;
  std::string leaseDuration = "15s", renewDeadline = "10s", retryPeriod = "2s";
  std::string clusterPoolCidr = "10.0.0.0/8";
  int clusterPoolMask = 24;
  bool enableLbIpam = true;
  bool enableClusterPool = true;
  app.add_option("--k8s-kubeconfig-path", kubeconfig, "Absolute path of the kubernetes kubeconfig file");
  app.add_option("--k8s-api-server", server, "Kubernetes API server URL");
  app.add_option("--k8s-namespace", ns, "Namespace of the leader-election Lease")->capture_default_str();
  app.add_option("--identity", identity, "Leader-election identity (default: hostname-random)");
  app.add_option("--leader-election-lease-duration", leaseDuration, "Lease duration")->capture_default_str();
  app.add_option("--leader-election-renew-deadline", renewDeadline, "Renew deadline")->capture_default_str();
  app.add_option("--leader-election-retry-period", retryPeriod, "Retry period")->capture_default_str();
  app.add_option("--cluster-pool-ipv4-cidr", clusterPoolCidr, "Cluster-pool IPv4 CIDR")->capture_default_str();
  app.add_option("--cluster-pool-ipv4-mask-size", clusterPoolMask, "Cluster-pool per-node mask size")
      ->capture_default_str();
  app.add_option("--enable-lb-ipam", enableLbIpam, "Run LB-IPAM")->capture_default_str();
  app.add_option("--enable-cluster-pool-ipam", enableClusterPool, "Run cluster-pool IPAM (a CIDR per CiliumNode)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  // Checked before the election: a bad pool is an error at start, not once leading.
  np::op::ClusterPoolConfig poolCfg;
  if (enableClusterPool) {
    auto cidr = np::Cidr::parse(clusterPoolCidr);
    if (!cidr)
      return std::fprintf(stderr, "--cluster-pool-ipv4-cidr: \"%s\" is not an IPv4 CIDR\n", clusterPoolCidr.c_str()), 2;
    if (clusterPoolMask < 1 || clusterPoolMask > 32)
      return std::fprintf(stderr, "--cluster-pool-ipv4-mask-size: %d is not 1..32\n", clusterPoolMask), 2;
    poolCfg.pool = *cidr;
    poolCfg.mask = static_cast<uint8_t>(clusterPoolMask);
    auto check = np::op::ClusterPool::create(poolCfg);
    if (!check)
      return std::fprintf(stderr, "--cluster-pool-ipv4-cidr=%s --cluster-pool-ipv4-mask-size=%d: %s\n",
                          clusterPoolCidr.c_str(), clusterPoolMask, check.error().message().c_str()),
             2;
  }

  np::lease::Timings t;
  for (auto [flag, text, out] : {std::tuple{"--leader-election-lease-duration", &leaseDuration, &t.leaseDuration},
                                 std::tuple{"--leader-election-renew-deadline", &renewDeadline, &t.renewDeadline},
                                 std::tuple{"--leader-election-retry-period", &retryPeriod, &t.retryPeriod}}) {
    auto d = parseDuration(*text);
    if (!d) return std::fprintf(stderr, "%s: \"%s\" is not a duration (15s, 500ms)\n", flag, text->c_str()), 2;
    *out = *d;
  }
  t = np::lease::Timings::sanitise(t);
  if (identity.empty()) identity = defaultIdentity();

  boost::asio::io_context io;
  auto api = np::k8s::resolveApiConfig(server, kubeconfig);
  if (!api) return std::fprintf(stderr, "%s\n", api.error().message().c_str()), 1;
  // The Lease gets its own connections so renewals never queue behind the controllers' traffic.
  auto leaseClient = np::k8s::Client::create(io, *api);
  if (!leaseClient) return std::fprintf(stderr, "%s\n", leaseClient.error().message().c_str()), 1;
  auto client = np::k8s::Client::create(io, std::move(*api));
  if (!client) return std::fprintf(stderr, "%s\n", client.error().message().c_str()), 1;

  std::shared_ptr<np::op::LbIpamController> lbipam;
  std::unique_ptr<np::op::ClusterPoolController> clusterPool;
  bool led = false;
  int rc = 0;
  std::unique_ptr<np::k8s::LeaseRunner> runner;
  auto onChange = [&](bool leader) {
    if (leader) {
      led = true;
      NP_LOG_INFO("operator", "leading as %s: starting controllers", identity.c_str());
      std::printf("leader\n");
      std::fflush(stdout);
      if (enableLbIpam) {
        auto c = np::op::LbIpamController::start(io, **client);
        if (!c) {
          NP_LOG_ERROR("operator", "%s", c.error().message().c_str());
          rc = 1;
          runner->stop([&] { io.stop(); });
          return;
        }
        lbipam = std::move(*c);
      }
      if (enableClusterPool) {
        auto c = np::op::startClusterPool(io, **client, poolCfg);
        if (!c) {
          NP_LOG_ERROR("operator", "cluster-pool IPAM: %s", c.error().message().c_str());
          rc = 1;
          runner->stop([&] { io.stop(); });
          return;
        }
        clusterPool = std::move(*c);
      }
      return;
    }
    if (led) {
      NP_LOG_ERROR("operator", "leader election lost: exiting");
      rc = 1;
      io.stop();
    }
  };
  runner = std::make_unique<np::k8s::LeaseRunner>(
      io, **leaseClient, np::k8s::LeaseRunner::Options{ns, "cilium-operator-resource-lock", identity, t}, onChange);
  runner->start();
  NP_LOG_INFO("operator", "candidate %s for lease %s/cilium-operator-resource-lock", identity.c_str(), ns.c_str());
  std::printf("candidate\n");
  std::fflush(stdout);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    NP_LOG_INFO("operator", "stopping: releasing the lease");
    led = false;  // stepping down on request is not a loss
    runner->stop([&] {
      std::printf("released\n");
      std::fflush(stdout);
      io.stop();
    });
  });
  io.run();
  if (clusterPool) clusterPool->stop();
  return rc;
}
