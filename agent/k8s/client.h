// HTTPS to the Kubernetes API over Boost.Beast + OpenSSL, as C++20 coroutines on the agent's
// io_context. HTTP/1.1 has no multiplexing: every request (a LIST page, a WATCH stream) gets its
// own TLS connection. The server certificate is verified against the configured CA and the
// server's host name or IP; authentication is a client certificate or a bearer token (a token
// file is re-read after a 401 and the request retried once).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "k8s/kubeconfig.h"

namespace np::k8s {

struct HttpResponse {
  unsigned status = 0;
  std::string body;  // the whole body (get), or the body of a non-200 answer (stream)
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> create(boost::asio::io_context& io, ApiConfig cfg);

  // GET `target` (path and query); the whole response. Errors are transport errors (connect,
  // TLS, timeout); an HTTP error status is a response.
  boost::asio::awaitable<Result<HttpResponse>> get(std::string target, std::chrono::seconds timeout);
  // GET `target` as a stream: on 200 every body read goes to onBytes until the server ends the
  // response, onBytes fails, or nothing arrives for `idle`. A non-200 answer is returned with its
  // body. A clean end (the server's timeout) returns status 200.
  using OnBytes = std::function<Status(std::string_view)>;
  boost::asio::awaitable<Result<HttpResponse>> stream(std::string target, OnBytes onBytes, std::chrono::seconds idle);

  // A request with a body (POST, PUT, PATCH, DELETE): the whole response, as `get`. contentType
  // is the body's type: application/json, or for PATCH application/merge-patch+json,
  // application/strategic-merge-patch+json, application/json-patch+json.
  boost::asio::awaitable<Result<HttpResponse>> request(std::string method, std::string target, std::string body,
                                                       std::string contentType, std::chrono::seconds timeout);

  const ApiConfig& config() const { return cfg_; }

 private:
  Client(boost::asio::io_context& io, ApiConfig cfg);
  struct Req {
    std::string method = "GET";
    const std::string* target = nullptr;
    const std::string* body = nullptr;  // nullptr: no body
    const std::string* contentType = nullptr;
  };
  boost::asio::awaitable<Result<HttpResponse>> once(Req req, const OnBytes* onBytes, std::chrono::seconds timeout,
                                                    bool forceToken);
  boost::asio::io_context& io_;
  ApiConfig cfg_;
  boost::asio::ssl::context ssl_;
  TokenSource token_;
};

// Percent-encodes a query value (label selectors hold '!' and ',').
std::string queryEscape(std::string_view v);

}  // namespace np::k8s
