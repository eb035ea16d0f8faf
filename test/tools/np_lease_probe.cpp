// np-lease-probe: one candidate for a coordination.k8s.io/v1 Lease, driven by the agent's
// LeaseRunner, for the k8s tier. Prints "leader" or "follower" (flushed) each time its
// leadership changes, and on SIGTERM/SIGINT stops campaigning, releases the lease when it holds
// it, prints "released" and exits 0.
//
//   np-lease-probe --kubeconfig F --namespace NS --name N --identity ID
//                  [--lease-duration-ms 2000] [--renew-deadline-ms 1500] [--retry-period-ms 500]
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <iostream>

#include "k8s/client.h"
#include "k8s/kubeconfig.h"
#include "k8s/lease.h"

int main(int argc, char** argv) {
  CLI::App app{"one candidate for a Kubernetes Lease (LeaseRunner)"};
  std::string kubeconfig, ns, name, identity;
  int64_t durationMs = 2000, renewMs = 1500, retryMs = 500;
  app.add_option("--kubeconfig", kubeconfig)->required();
  app.add_option("--namespace", ns)->required();
  app.add_option("--name", name)->required();
  app.add_option("--identity", identity)->required();
  app.add_option("--lease-duration-ms", durationMs);
  app.add_option("--renew-deadline-ms", renewMs);
  app.add_option("--retry-period-ms", retryMs);
  CLI11_PARSE(app, argc, argv);

  auto cfg = np::k8s::loadKubeconfig(kubeconfig);
  if (!cfg) {
    std::cerr << "np-lease-probe: " << cfg.error().message() << "\n";
    return 1;
  }
  boost::asio::io_context io;
  auto client = np::k8s::Client::create(io, std::move(*cfg));
  if (!client) {
    std::cerr << "np-lease-probe: " << client.error().message() << "\n";
    return 1;
  }
  np::k8s::LeaseRunner::Options opts{ns, name, identity,
                                     np::lease::Timings{np::lease::Duration(durationMs), np::lease::Duration(renewMs),
                                                        np::lease::Duration(retryMs)}};
  np::k8s::LeaseRunner runner(io, **client, opts, [](bool leader) {
    std::printf("%s\n", leader ? "leader" : "follower");
    std::fflush(stdout);
  });
  runner.start();
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (ec) return;
    runner.stop([&] {
      std::printf("released\n");
      std::fflush(stdout);
      io.stop();
    });
  });
  io.run();
  if (!runner.lastError().empty()) std::cerr << "np-lease-probe: last error: " << runner.lastError() << "\n";
  return 0;
}
