// nodepath-agent: loads and attaches the datapath, reconciles services into its maps and serves
// the agent API. Exits 2 on bad configuration, 1 when the datapath cannot start.
#include <malloc.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <algorithm>
#include <cstdio>
#include <thread>

#include "agent.h"
#include "api/server.h"
#include "core/log.h"
#include "uninstall.h"

int main(int argc, char** argv) {
  // One malloc arena for every thread: gRPC's threads parse requests of hundreds of MB, and in
  // arenas of their own that memory stayed with the process after the request was freed and
  // trimmed (LargeStateFitsOrIsRefused: +50 MiB after a refused 300,000-service batch in about
  // half the runs; none with one arena). The agent's threads are few and mostly idle.
  mallopt(M_ARENA_MAX, 1);
  std::vector<std::string> args(argv + 1, argv + argc);
  // --check-config: parse the flags and --config-dir (a ConfigMap), say what each key came from,
  // and exit (0 valid, 2 not) without touching the node: for charts and for "why did it not start".
  const auto check = std::find(args.begin(), args.end(), "--check-config");
  const bool checkOnly = check != args.end();
  if (checkOnly) args.erase(check);
  auto config = np::parseConfig(args);
  if (!config) {
    if (config.error().context == "help") {
      fputs(np::configUsage().c_str(), stdout);
      return 0;
    }
    fprintf(stderr, "nodepath-agent: %s\n", config.error().message().c_str());
    return 2;
  }
  if (checkOnly) {
    for (const auto& [key, origin] : config->origin) printf("%s (from %s)\n", key.c_str(), origin.c_str());
    printf("configuration ok\n");
    return 0;
  }
  const std::string& level = config->logLevel;
  np::log::setLevel(level == "debug"  ? np::log::Level::Debug
                    : level == "warn" ? np::log::Level::Warn
                    : level == "error" ? np::log::Level::Error
                                       : np::log::Level::Info);

  const std::string uninstallMarker = np::uninstallMarker();
  np::clearUninstallMarker(*config, uninstallMarker);
  const np::Config keep = *config;  // for the uninstall check after the agent is gone

  boost::asio::io_context io;
  auto agent = np::Agent::start(std::move(*config), io);
  if (!agent) {
    NP_LOG_ERROR("agent", "%s", agent.error().message().c_str());
    return 1;
  }
  auto server = np::api::Server::start(**agent, io, (*agent)->socketPath());
  if (!server) {
    NP_LOG_ERROR("agent", "%s", server.error().message().c_str());
    return 1;
  }
  NP_LOG_INFO("agent", "serving the agent API on %s", (*agent)->socketPath().c_str());
  (*agent)->apiReady();
  const auto markerWatch = np::watchUninstallMarker(io, keep, uninstallMarker);

  auto work = boost::asio::make_work_guard(io);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    NP_LOG_INFO("agent", "signal %d: stopping; the datapath keeps running", sig);
    // L2 announcements hand their Leases back first (bounded by the renew deadline).
    (*agent)->stopAnnouncing([&] {
      // Shutdown waits for in-flight handlers, which need the loop: run it off the loop thread.
      std::thread([&] {
        (*server)->shutdown();
        io.stop();
      }).detach();
    });
  });
  io.run();
  // Our own map and link handles may stay open: unpinned, they go when this process exits.
  // The watched marker first: by now helm uninstall may have deleted our credentials.
  const bool uninstalling = (markerWatch && markerWatch->seen()) || np::uninstallRequested(keep, uninstallMarker);
  if (uninstalling) return np::runUninstallCleanup(keep) == 0 ? 0 : 1;
  return 0;
}
