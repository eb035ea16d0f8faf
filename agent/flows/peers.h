// The Hubble peers this node announces through peer.Peer/Notify: every node of the cluster (the
// nodes file or the CiliumNodes; this node included), each with the address of its Hubble API
// (node IP + the --hubble-listen-address port), so hubble-relay pointed at any one node's peer
// service dials the observers of all of them. Thread-safe: the agent's io_context sets the list,
// gRPC's threads stream it and wait for changes.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "peer/peer.pb.h"

namespace np::flows {

struct Peer {
  std::string name;
  std::string address;  // "IP:port" as hubble-relay parses it; empty: no TCP API to dial
  bool operator==(const Peer&) const = default;
};

// What a Notify stream that showed `from` sends to show `to`: PEER_DELETED for names gone,
// PEER_ADDED for new names, PEER_UPDATED for names whose address changed (relay reconnects),
// in that order, each group by name. Duplicate names in `to`: the first wins.
std::vector<peer::ChangeNotification> peerChanges(const std::vector<Peer>& from, const std::vector<Peer>& to);

class PeerSet {
 public:
  // Replaces the list (sorted by name, duplicates dropped); wakes the streams when it changed.
  void set(std::vector<Peer> peers);
  // The list now and its generation (bumped by every change).
  std::vector<Peer> get(uint64_t* generation = nullptr) const;
  // Blocks until the generation differs from `seen`, close() or the timeout; returns the
  // generation then.
  uint64_t waitChange(uint64_t seen, std::chrono::milliseconds timeout) const;
  void close();
  bool closed() const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<Peer> peers_;
  uint64_t gen_ = 0;
  bool closed_ = false;
};

}  // namespace np::flows
