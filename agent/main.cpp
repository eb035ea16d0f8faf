// nodepath-agent: loads and attaches the datapath, reconciles services into its maps and serves
// the agent API. Exits 2 on bad configuration, 1 when the datapath cannot start.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <thread>

#include "agent.h"
#include "api/server.h"
#include "core/log.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto config = np::parseConfig(args);
  if (!config) {
    if (config.error().context == "help") {
      fputs(np::configUsage().c_str(), stdout);
      return 0;
    }
    fprintf(stderr, "nodepath-agent: %s\n", config.error().message().c_str());
    return 2;
  }
  const std::string& level = config->logLevel;
  np::log::setLevel(level == "debug"  ? np::log::Level::Debug
                    : level == "warn" ? np::log::Level::Warn
                    : level == "error" ? np::log::Level::Error
                                       : np::log::Level::Info);

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

  auto work = boost::asio::make_work_guard(io);
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    NP_LOG_INFO("agent", "signal %d: stopping; the datapath keeps running", sig);
    // Shutdown waits for in-flight handlers, which need the loop: run it off the loop thread.
    std::thread([&] {
      (*server)->shutdown();
      io.stop();
    }).detach();
  });
  io.run();
  return 0;
}
