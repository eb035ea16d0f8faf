// The Prometheus endpoint: HTTP/1.1 on --prometheus-serve-addr, GET /metrics only (404 for other
// paths, 405 for other methods), on the agent's io_context. Nothing blocks the loop: the socket
// work is asynchronous, and the text is produced by `render` on the loop between other handlers
// (a scrape costs what `agentctl status` costs). Requests are bounded (8 KiB of headers, no
// body), connections are bounded (kMaxConnections; more are closed at once) and time out after
// 10 s of silence.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <optional>
#include <memory>
#include <string>

#include "core/config.h"
#include "core/result.h"

namespace np::metrics {

class HttpServer {
 public:
  using Render = std::function<std::string()>;
  static constexpr size_t kMaxConnections = 16;

  // Binds and listens now: a taken or unusable address is an error naming it.
  static Result<std::unique_ptr<HttpServer>> start(boost::asio::io_context& io, const ListenAddress& addr,
                                                   Render render);
  ~HttpServer();

  // "Ok" while the listener accepts; else why not.
  std::string state() const { return state_; }
  uint16_t port() const { return port_; }
  uint64_t scrapes() const { return scrapes_; }

 private:
  class Conn;
  HttpServer(boost::asio::io_context& io, Render render);
  void accept();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Render render_;
  std::string state_ = "Ok";
  uint16_t port_ = 0;
  uint64_t scrapes_ = 0;
  size_t open_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // connections outliving the server
};

}  // namespace np::metrics
