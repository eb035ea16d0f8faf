#include "k8s/client.h"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace np::k8s {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string queryEscape(std::string_view v) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

Client::Client(asio::io_context& io, ApiConfig cfg)
    : io_(io), cfg_(std::move(cfg)), ssl_(asio::ssl::context::tls_client), token_(cfg_) {}

Result<std::unique_ptr<Client>> Client::create(asio::io_context& io, ApiConfig cfg) {
  std::unique_ptr<Client> c(new Client(io, std::move(cfg)));
  boost::system::error_code ec;
  c->ssl_.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1);
  if (!c->cfg_.caPem.empty()) {
    c->ssl_.add_certificate_authority(asio::buffer(c->cfg_.caPem), ec);
    if (ec) return error("Kubernetes API CA", "not a PEM certificate: " + ec.message());
  } else {
    c->ssl_.set_default_verify_paths(ec);
  }
  c->ssl_.set_verify_mode(c->cfg_.insecureSkipVerify ? asio::ssl::verify_none : asio::ssl::verify_peer);
  if (!c->cfg_.clientCertPem.empty()) {
    c->ssl_.use_certificate_chain(asio::buffer(c->cfg_.clientCertPem), ec);
    if (ec) return error("Kubernetes API client certificate", ec.message());
    c->ssl_.use_private_key(asio::buffer(c->cfg_.clientKeyPem), asio::ssl::context::pem, ec);
    if (ec) return error("Kubernetes API client key", ec.message());
  }
  return c;
}

awaitable<Result<HttpResponse>> Client::get(std::string target, std::chrono::seconds timeout) {
  Req req{"GET", &target};
  auto r = co_await once(req, nullptr, timeout, false);
  if (r && r->status == 401 && !cfg_.tokenFile.empty()) r = co_await once(req, nullptr, timeout, true);
  co_return r;
}

awaitable<Result<HttpResponse>> Client::stream(std::string target, OnBytes onBytes, std::chrono::seconds idle) {
  Req req{"GET", &target};
  auto r = co_await once(req, &onBytes, idle, false);
  if (r && r->status == 401 && !cfg_.tokenFile.empty()) r = co_await once(req, &onBytes, idle, true);
  co_return r;
}

awaitable<Result<HttpResponse>> Client::request(std::string method, std::string target, std::string body,
                                                std::string contentType, std::chrono::seconds timeout) {
  Req req{std::move(method), &target, &body, &contentType};
  // A 401 answers before the server acts, so resending after a token re-read cannot apply twice.
  auto r = co_await once(req, nullptr, timeout, false);
  if (r && r->status == 401 && !cfg_.tokenFile.empty()) r = co_await once(req, nullptr, timeout, true);
  co_return r;
}

awaitable<Result<HttpResponse>> Client::once(Req rq, const OnBytes* onBytes, std::chrono::seconds timeout,
                                             bool forceToken) {
  const std::string& target = *rq.target;
  const std::string what = rq.method + " " + cfg_.server + target.substr(0, target.find('?'));
  const http::verb verb = http::string_to_verb(rq.method);
  if (verb == http::verb::unknown) co_return Error{EINVAL, what, "not an HTTP method"};
  std::string bearer;
  if (!cfg_.token.empty() || !cfg_.tokenFile.empty()) {
    auto t = token_.get(forceToken);
    if (!t) co_return t.error();
    bearer = std::move(*t);
  }
  asio::ip::tcp::resolver resolver(io_);
  auto [rec, endpoints] = co_await resolver.async_resolve(cfg_.host, cfg_.port, use_tuple);
  if (rec) co_return Error{0, what, "resolve " + cfg_.host + ": " + rec.message()};
  beast::ssl_stream<beast::tcp_stream> stream(io_, ssl_);
  boost::system::error_code addrEc;
  (void)asio::ip::make_address(cfg_.host, addrEc);
  if (addrEc) SSL_set_tlsext_host_name(stream.native_handle(), cfg_.host.c_str());  // SNI for names only
  if (!cfg_.insecureSkipVerify) stream.set_verify_callback(asio::ssl::host_name_verification(cfg_.host));
  auto& tcp = beast::get_lowest_layer(stream);
  tcp.expires_after(std::chrono::seconds(10));
  auto [cec, ep] = co_await tcp.async_connect(endpoints, use_tuple);
  if (cec) co_return Error{cec.value(), what, "connect: " + cec.message()};
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
  if (hec) co_return Error{0, what, "TLS handshake: " + hec.message()};

  http::request<http::string_body> req{verb, target, 11};
  if (rq.body) {
    req.body() = *rq.body;
    req.set(http::field::content_type, *rq.contentType);
    req.prepare_payload();
  }
  req.set(http::field::host, cfg_.host);
  req.set(http::field::user_agent, "nodepath-agent");
  req.set(http::field::accept, "application/json");
  if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
  tcp.expires_after(onBytes ? std::chrono::seconds(10) : timeout);
  auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
  if (wec) co_return Error{0, what, "send: " + wec.message()};

  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> p;
  p.body_limit(boost::none);
  tcp.expires_after(timeout);
  auto [rhec, rhn] = co_await http::async_read_header(stream, buf, p, use_tuple);
  if (rhec) co_return Error{0, what, "read the response: " + rhec.message()};
  HttpResponse out;
  out.status = p.get().result_int();
  const bool streaming = onBytes && out.status == 200;
  std::vector<char> chunk(64 * 1024);
  while (!p.is_done()) {
    p.get().body().data = chunk.data();
    p.get().body().size = chunk.size();
    tcp.expires_after(timeout);
    // read_some: a watch event must not wait for the buffer to fill
    auto [ec, n] = co_await http::async_read_some(stream, buf, p, use_tuple);
    if (ec == http::error::need_buffer) ec = {};
    const size_t got = chunk.size() - p.get().body().size;
    if (got) {
      if (streaming) {
        if (Status st = (*onBytes)(std::string_view(chunk.data(), got)); !st) co_return st.error();
      } else {
        if (out.body.size() + got > (512u << 20)) co_return Error{0, what, "response larger than 512 MiB"};
        out.body.append(chunk.data(), got);
      }
    }
    if (ec == beast::error::timeout)
      co_return Error{ETIMEDOUT, what, streaming ? "the stream went quiet past its timeout" : "timed out"};
    if (ec) co_return Error{0, what, "read the response: " + ec.message()};
  }
  // No TLS shutdown: the connection is dropped either way; the server sees a reset at worst.
  co_return out;
}

}  // namespace np::k8s
