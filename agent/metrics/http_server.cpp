#include "metrics/http_server.h"

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/log.h"
#include "metrics/exposition.h"

namespace np::metrics {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class HttpServer::Conn : public std::enable_shared_from_this<HttpServer::Conn> {
 public:
  Conn(HttpServer* server, tcp::socket socket) : server_(server), alive_(server->alive_), stream_(std::move(socket)) {}
  ~Conn() {
    if (*alive_) --server_->open_;
  }

  void read() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(0);
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buf_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->onRead(ec);
    });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec || !*alive_) return;  // closed, timed out, malformed or too large: drop the connection
    const auto& req = parser_->get();
    res_ = {};
    res_.version(req.version());
    res_.keep_alive(req.keep_alive());
    res_.set(http::field::server, "nodepath-agent");
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    if (path != "/metrics") {
      res_.result(http::status::not_found);
      res_.set(http::field::content_type, "text/plain");
      res_.body() = "404 not found: the metrics are at /metrics\n";
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res_.result(http::status::method_not_allowed);
      res_.set(http::field::allow, "GET, HEAD");
      res_.set(http::field::content_type, "text/plain");
      res_.body() = "405 method not allowed: GET /metrics\n";
    } else {
      res_.result(http::status::ok);
      res_.set(http::field::content_type, kContentType);
      ++server_->scrapes_;
      if (req.method() == http::verb::get) res_.body() = server_->render_();
    }
    res_.prepare_payload();
    if (req.method() == http::verb::head) res_.body().clear();
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code wec, size_t) {
      if (wec) return;
      if (!self->res_.keep_alive()) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->read();
    });
  }

  HttpServer* server_;
  std::shared_ptr<bool> alive_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  http::response<http::string_body> res_;
};

HttpServer::HttpServer(asio::io_context& io, Render render) : io_(io), acceptor_(io), render_(std::move(render)) {}

HttpServer::~HttpServer() {
  *alive_ = false;
  beast::error_code ignored;
  acceptor_.close(ignored);
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(asio::io_context& io, const ListenAddress& addr, Render render) {
  std::unique_ptr<HttpServer> s(new HttpServer(io, std::move(render)));
  const tcp::endpoint ep(asio::ip::address_v4(addr.ip.host()), addr.port);
  const std::string where = "serve metrics on " + addr.ip.str() + ":" + std::to_string(addr.port);
  beast::error_code ec;
  s->acceptor_.open(ep.protocol(), ec);
  if (!ec) s->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s->acceptor_.bind(ep, ec);
  if (!ec) s->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Error{ec.value(), where, ec.message() + " (--prometheus-serve-addr; empty disables metrics)"};
  s->acceptor_.non_blocking(true, ec);
  s->port_ = s->acceptor_.local_endpoint(ec).port();
  s->accept();
  return s;
}

void HttpServer::accept() {
  acceptor_.async_accept([this, alive = alive_](beast::error_code ec, tcp::socket socket) {
    if (!*alive) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // EMFILE and friends: say so in status and try again shortly rather than spinning.
      state_ = "Failure: accept: " + ec.message();
      NP_LOG_WARN("metrics", "%s", state_.c_str());
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::seconds(1));
      timer->async_wait([this, alive, timer](beast::error_code) {
        if (*alive) accept();
      });
      return;
    }
    state_ = "Ok";
    if (open_ >= kMaxConnections) {
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      ++open_;
      std::make_shared<Conn>(this, std::move(socket))->read();
    }
    accept();
  });
}

}  // namespace np::metrics
