// Cluster-pool IPAM, as Cilium's operator does it: each CiliumNode gets a /mask (24) of
// --cluster-pool-ipv4-cidr (10.0.0.0/16) in spec.ipam.podCIDRs.
//
// ClusterPool is the pure allocator: no two nodes ever hold the same CIDR; a node keeps the CIDR
// it already has (claim: a restarted operator rebuilds itself from the CiliumNodes it lists, so
// every node keeps its CIDR); a deleted node's CIDR is freed; allocation goes round from after
// the last one handed out, so a CIDR just freed is the last to be reused (its routes may still be
// on peers). ENOSPC when the pool is exhausted.
//
// ClusterPoolController is the shell on the operator's io_context: a reflector on all
// CiliumNodes; every node without a valid CIDR of ours gets one written (PUT of the object as
// read, only spec.ipam.podCIDRs changed); a node the pool cannot serve gets
// status.ipam.operator-status.error (and a log line) instead, and is served once a CIDR is freed.
// Run it only in the elected leader: startClusterPool(io, client, cfg).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"

namespace np::k8s {
class Client;
class Reflector;
struct ReflectorOptions;
}  // namespace np::k8s

namespace np::op {

struct ClusterPoolConfig {
  Cidr pool{Ipv4::fromHost(0x0a000000), 16};  // cluster-pool-ipv4-cidr
  uint8_t mask = 24;                          // cluster-pool-ipv4-mask-size
};

class ClusterPool {
 public:
  // The pool must be a network address, mask in [pool prefix, 30].
  static Result<ClusterPool> create(ClusterPoolConfig cfg);

  const ClusterPoolConfig& config() const { return cfg_; }
  size_t capacity() const { return capacity_; }
  size_t allocated() const { return byNode_.size(); }

  // `node` keeps `cidr`: EEXIST when another node holds it, EINVAL (err 0) when it is not one of
  // the pool's /mask blocks. A node that holds another CIDR gives that one up.
  Status claim(const std::string& node, Cidr cidr);
  // The node's CIDR: the one it holds, else the next free; ENOSPC when none is left.
  Result<Cidr> allocate(const std::string& node);
  void release(const std::string& node);
  std::optional<Cidr> of(const std::string& node) const;
  std::optional<std::string> owner(Cidr cidr) const;

 private:
  explicit ClusterPool(ClusterPoolConfig cfg);
  Cidr block(size_t i) const;
  ClusterPoolConfig cfg_;
  size_t capacity_ = 0;
  size_t next_ = 0;  // the block after the last one handed out
  std::map<std::string, size_t> byNode_;
  std::map<size_t, std::string> byBlock_;
};

class ClusterPoolController {
 public:
  static Result<std::unique_ptr<ClusterPoolController>> start(boost::asio::io_context& io, k8s::Client& client,
                                                              ClusterPoolConfig cfg);
  ClusterPoolController(const ClusterPoolController&) = delete;
  ~ClusterPoolController();
  void stop();

  const ClusterPool& pool() const { return pool_; }
  bool synced() const { return synced_; }
  uint64_t writes() const { return writes_; }
  uint64_t writeErrors() const { return writeErrors_; }
  // One line for status/logs: "10.0.0.0/16 in /24s: 2 of 256 allocated".
  std::string summary() const;

 private:
  ClusterPoolController(boost::asio::io_context& io, k8s::Client& client, ClusterPool pool);
  void replace(std::vector<boost::json::object> list);
  void upsert(boost::json::object o);
  void remove(const std::string& name);
  void kick();
  boost::asio::awaitable<void> pump();
  boost::asio::awaitable<bool> serve(const std::string& name);  // false: retry later

  boost::asio::io_context& io_;
  k8s::Client& client_;
  ClusterPool pool_;
  std::shared_ptr<k8s::Reflector> reflector_;
  std::map<std::string, boost::json::object> objects_;
  std::set<std::string> dirty_;
  boost::asio::steady_timer retry_;
  bool synced_ = false, pumping_ = false, stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t writes_ = 0, writeErrors_ = 0;
};

// What the operator's main calls once it leads: watches CiliumNodes until stop()/destruction.
Result<std::unique_ptr<ClusterPoolController>> startClusterPool(boost::asio::io_context& io, k8s::Client& client,
                                                                ClusterPoolConfig cfg);

}  // namespace np::op
