// The gRPC agent API on a unix socket (mode 0600). Handlers run on gRPC's threads and post each
// request onto the agent's io_context, so the agent's state is only ever touched by one thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "agent.h"
#include "core/result.h"

namespace np::api {

class Server {
 public:
  // Serves `agent` on `socketPath` (a stale socket file is replaced: call it only while holding
  // the agent's instance lock).
  static Result<std::unique_ptr<Server>> start(Agent& agent, boost::asio::io_context& io, const std::string& socketPath);
  ~Server();
  void shutdown();

 private:
  Server() = default;
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

// How an agent error is reported over gRPC: ENOENT -> NOT_FOUND, EEXIST -> ALREADY_EXISTS,
// a full map -> RESOURCE_EXHAUSTED, ENOTRECOVERABLE (state not loaded) -> FAILED_PRECONDITION,
// no errno (validation) -> INVALID_ARGUMENT, else INTERNAL.
grpc::Status toGrpc(const Error& e);

}  // namespace np::api
