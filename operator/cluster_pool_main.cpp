// np-cluster-pool: cluster-pool IPAM alone, for the tests until nodepath-operator's main (with
// its leader election) starts it. Runs until SIGINT/SIGTERM.
//   np-cluster-pool --k8s-kubeconfig-path=PATH [--k8s-api-server=URL]
//                   [--cluster-pool-ipv4-cidr=10.0.0.0/16] [--cluster-pool-ipv4-mask-size=24]
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <string>

#include "core/log.h"
#include "k8s/client.h"
#include "k8s/kubeconfig.h"
#include "operator/cluster_pool.h"

int main(int argc, char** argv) {
  std::string server, kubeconfig;
  np::op::ClusterPoolConfig cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto eq = a.find('=');
    std::string k = a.substr(0, eq), v = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (k == "--k8s-api-server") {
      server = v;
    } else if (k == "--k8s-kubeconfig-path") {
      kubeconfig = v;
    } else if (k == "--cluster-pool-ipv4-cidr") {
      auto c = np::Cidr::parse(v);
      if (!c) return std::fprintf(stderr, "--cluster-pool-ipv4-cidr: \"%s\" is not a CIDR\n", v.c_str()), 2;
      cfg.pool = *c;
    } else if (k == "--cluster-pool-ipv4-mask-size") {
      char* end = nullptr;
      long m = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || m < 1 || m > 32)
        return std::fprintf(stderr, "--cluster-pool-ipv4-mask-size: \"%s\" is not 1..32\n", v.c_str()), 2;
      cfg.mask = static_cast<uint8_t>(m);
    } else {
      return std::fprintf(stderr, "%s: unknown flag\n", a.c_str()), 2;
    }
  }
  boost::asio::io_context io;
  auto api = np::k8s::resolveApiConfig(server, kubeconfig);
  if (!api) return std::fprintf(stderr, "%s\n", api.error().message().c_str()), 1;
  auto client = np::k8s::Client::create(io, std::move(*api));
  if (!client) return std::fprintf(stderr, "%s\n", client.error().message().c_str()), 1;
  auto pool = np::op::startClusterPool(io, **client, cfg);
  if (!pool) return std::fprintf(stderr, "%s\n", pool.error().message().c_str()), 1;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    (*pool)->stop();
    io.stop();
  });
  io.run();
  return 0;
}
