// The agent's CiliumNodes (cluster mode: a k8s API and ipam=cluster-pool): it creates its node's
// CiliumNode (name = node name, spec.addresses InternalIP = the node IP, as Cilium's agent does)
// and keeps that address there; it watches every CiliumNode, and hands the node list they make
// (peers' InternalIP + spec.ipam.podCIDRs[0] for direct routes, this node's pod CIDR for IPAM)
// to the agent whenever it changes, once the first list is in.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/config.h"
#include "k8s/ciliumnode.h"
#include "k8s/client.h"
#include "k8s/reflector.h"

namespace np::k8s {

class CiliumNodeSync {
 public:
  using OnNodes = std::function<void(const ClusterNodes&)>;
  static Result<std::unique_ptr<CiliumNodeSync>> start(boost::asio::io_context& io, const Config& config, Ipv4 nodeIp,
                                                       OnNodes onNodes, ReflectorOptions opt = {});
  CiliumNodeSync(const CiliumNodeSync&) = delete;
  ~CiliumNodeSync();

  bool synced() const { return reflector_->stats().synced; }
  bool registered() const { return registered_; }  // our CiliumNode holds our address
  const ClusterNodes& current() const { return current_; }
  // One line for `status`.
  std::string summary() const;

 private:
  CiliumNodeSync(boost::asio::io_context& io, std::string name, Ipv4 ip) : io_(io), name_(std::move(name)), ip_(ip), timer_(io) {}
  void flush();
  void ensureSoon();
  boost::asio::awaitable<void> ensureLoop();
  boost::asio::awaitable<Status> ensureOnce();

  boost::asio::io_context& io_;
  std::string name_;
  Ipv4 ip_;
  std::unique_ptr<Client> client_;
  std::shared_ptr<Reflector> reflector_;
  std::map<std::string, CiliumNode> all_;
  ClusterNodes current_;
  bool handedOver_ = false;
  OnNodes onNodes_;
  boost::asio::steady_timer timer_;
  bool ensuring_ = false, again_ = false, registered_ = false;
  std::string ensureError_;
  uint64_t decodeErrors_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace np::k8s
