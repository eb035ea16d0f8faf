// Hubble's gRPC API over the flow store: observer.Observer (GetFlows, ServerStatus, GetNodes),
// peer.Peer (Notify: this node), grpc.health.v1.Health ("hubble.server.Observer" serving).
// Plaintext, on <run-dir>/hubble.sock and the TCP listen address. gRPC's synchronous server runs
// each call on its own thread pool; streams poll the store with a deadline so a cancelled client
// or a shutdown ends them.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "core/result.h"
#include "flows/peers.h"
#include "observer/observer.grpc.pb.h"
#include "peer/peer.grpc.pb.h"

namespace np::flows {

class Flows;
class FlowStore;

// GetFlows over a store, for the server and for tests: sends what the request selects through
// write (false from write ends the call); returns when done, when the client is gone (cancelled)
// or the store is closed.
void serveGetFlows(const FlowStore& store, const observer::GetFlowsRequest& req, const std::string& nodeName,
                   const std::function<bool(const observer::GetFlowsResponse&)>& write,
                   const std::function<bool()>& cancelled);

// Notify over a peer set: every peer as PEER_ADDED, then each change as it happens, until the
// client is gone (cancelled), write fails or the set is closed.
void servePeers(const PeerSet& set, const std::function<bool(const peer::ChangeNotification&)>& write,
                const std::function<bool()>& cancelled);

class HubbleServer {
 public:
  static Result<std::unique_ptr<HubbleServer>> start(Flows& flows);
  ~HubbleServer();

 private:
  class ObserverImpl;
  class PeerImpl;
  HubbleServer() = default;
  std::unique_ptr<ObserverImpl> observer_;
  std::unique_ptr<PeerImpl> peer_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace np::flows
