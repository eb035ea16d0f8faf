// The flows subsystem: a reader thread on the datapath's event ring buffer (np_events_v1), the
// decoder, the bounded flow store and the Hubble API server (observer.Observer, peer.Peer,
// grpc.health.v1.Health) on <run-dir>/hubble.sock and --hubble-listen-address. Everything here
// runs on its own threads (the reader, gRPC's): nothing blocks the agent's io_context, which
// only hands in what it knows (services by rev-NAT ID, pods by address) through setServices() and
// setPods().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/result.h"
#include "flows/decode.h"
#include "flows/peers.h"
#include "flows/store.h"

struct ring_buffer;

namespace np::flows {

class HubbleServer;

struct FlowsConfig {
  std::string pinDir;          // where np_events_v1 / np_evstat_v1 are pinned
  std::string runDir;          // hubble.sock goes here
  std::string listenAddress;   // TCP (":4244", "10.0.0.1:4244"); empty = none
  std::string nodeName;
  std::string nodeAddress;     // this node's Hubble API as peers (hubble-relay) dial it, "IP:port"
  std::string version;
  size_t capacity = 4095;
};

struct FlowCounters {
  uint64_t datapathEmitted = 0;  // events the programs wrote (np_evstat_v1)
  uint64_t datapathLost = 0;     // events the full ring buffer refused
  uint64_t received = 0;         // records the reader took off the ring buffer
  uint64_t undecodable = 0;      // records that were no flow of ours
};

class Flows {
 public:
  // Opens the pinned ring buffer (the datapath must be loaded), starts the reader and the API.
  static Result<std::unique_ptr<Flows>> start(const FlowsConfig& cfg);
  ~Flows();

  // Any thread: the services flows are named after, by rev-NAT ID.
  void setServices(std::map<uint16_t, ServiceName> services);
  // Any thread: names these IDs (replacing what they had) and forgets `gone`, leaving the others
  // as they are: a change of a few services costs O(their IDs), not O(every service).
  void updateServices(const std::vector<uint16_t>& gone, std::vector<std::pair<uint16_t, ServiceName>> named);
  // Any thread: the pods flows are named after, by IPv4 address (network order).
  void setPods(std::unordered_map<uint32_t, PodInfo> pods);
  // Any thread: the pods socket-level flows are named after, by network namespace cookie.
  void setPodsByNetns(std::unordered_map<uint64_t, PodInfo> pods);

  // Any thread: the cluster's nodes as peer.Peer/Notify announces them (this node is added when
  // missing). Until the first call: this node alone.
  void setPeers(std::vector<Peer> peers);
  const PeerSet& peers() const { return peers_; }

  FlowStore& store() { return store_; }
  FlowCounters counters() const;
  const FlowsConfig& config() const { return cfg_; }

 private:
  explicit Flows(const FlowsConfig& cfg);
  static int onEvent(void* self, void* data, size_t size);
  void run();

  FlowsConfig cfg_;
  FlowStore store_;
  PeerSet peers_;
  DecodeContext decodeCtx_;
  int eventsFd_ = -1;
  int statsFd_ = -1;
  ring_buffer* rb_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> undecodable_{0};
  mutable std::mutex svcMu_;
  // Shared with the records that name them, so a record keeps a name after it changes or goes.
  std::map<uint16_t, std::shared_ptr<const ServiceName>> services_;
  std::unordered_map<uint32_t, std::shared_ptr<const PodInfo>> pods_;  // under svcMu_ too
  std::unordered_map<uint64_t, std::shared_ptr<const PodInfo>> podsByNetns_;  // under svcMu_ too
  FlowRecord recs_[2];  // the reader thread's: one event's records
  // Interface names by ifindex, with when they were read: the reader thread's alone.
  std::unordered_map<uint32_t, std::pair<std::string, std::chrono::steady_clock::time_point>> ifnames_;
  std::thread reader_;
  std::unique_ptr<HubbleServer> server_;
};

}  // namespace np::flows
