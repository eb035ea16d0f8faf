#include "operator/cluster_pool.h"

namespace np::op {

Result<ClusterPool> ClusterPool::create(ClusterPoolConfig cfg) {
  const std::string what = "cluster pool " + cfg.pool.str() + " in /" + std::to_string(cfg.mask) + "s";
  if (cfg.pool.prefix > 32) return error(what, "the pool prefix is not 0..32");
  const uint32_t netmask = cfg.pool.prefix == 0 ? 0 : ~uint32_t{0} << (32 - cfg.pool.prefix);
  if ((cfg.pool.addr.host() & ~netmask) != 0)
    return error(what, cfg.pool.addr.str() + " is not the network address of a /" + std::to_string(cfg.pool.prefix));
  if (cfg.mask < cfg.pool.prefix) return error(what, "the mask size is shorter than the pool's prefix");
  if (cfg.mask > 30) return error(what, "a /" + std::to_string(cfg.mask) + " holds no pods (at most /30)");
  if (cfg.mask - cfg.pool.prefix > 24) return error(what, "more than 2^24 blocks");
  return ClusterPool(cfg);
}

ClusterPool::ClusterPool(ClusterPoolConfig cfg) : cfg_(cfg), capacity_(size_t{1} << (cfg.mask - cfg.pool.prefix)) {}

Cidr ClusterPool::block(size_t i) const {
  return Cidr{Ipv4::fromHost(cfg_.pool.addr.host() + static_cast<uint32_t>(i << (32 - cfg_.mask))), cfg_.mask};
}

Status ClusterPool::claim(const std::string& node, Cidr cidr) {
  const std::string what = "node " + node + " keeps " + cidr.str();
  if (cidr.prefix != cfg_.mask) return error(what, "it is not a /" + std::to_string(cfg_.mask));
  if (!cfg_.pool.contains(cidr.addr)) return error(what, "it is outside the cluster pool " + cfg_.pool.str());
  const uint32_t off = cidr.addr.host() - cfg_.pool.addr.host();
  if (off & ((uint32_t{1} << (32 - cfg_.mask)) - 1)) return error(what, "it is not a network address");
  const size_t i = off >> (32 - cfg_.mask);
  if (auto it = byBlock_.find(i); it != byBlock_.end()) {
    if (it->second == node) return {};
    return Error{EEXIST, what, "node " + it->second + " holds it"};
  }
  release(node);
  byBlock_[i] = node;
  byNode_[node] = i;
  return {};
}

Result<Cidr> ClusterPool::allocate(const std::string& node) {
  if (auto it = byNode_.find(node); it != byNode_.end()) return block(it->second);
  for (size_t n = 0; n < capacity_; ++n) {
    const size_t i = (next_ + n) % capacity_;
    if (byBlock_.count(i)) continue;
    byBlock_[i] = node;
    byNode_[node] = i;
    next_ = (i + 1) % capacity_;
    return block(i);
  }
  return Error{ENOSPC, "allocate a pod CIDR for node " + node,
               "the cluster pool " + cfg_.pool.str() + " is exhausted: all " + std::to_string(capacity_) + " /" +
                   std::to_string(cfg_.mask) + "s are in use"};
}

void ClusterPool::release(const std::string& node) {
  auto it = byNode_.find(node);
  if (it == byNode_.end()) return;
  byBlock_.erase(it->second);
  byNode_.erase(it);
}

std::optional<Cidr> ClusterPool::of(const std::string& node) const {
  auto it = byNode_.find(node);
  if (it == byNode_.end()) return std::nullopt;
  return block(it->second);
}

std::optional<std::string> ClusterPool::owner(Cidr cidr) const {
  for (const auto& [node, i] : byNode_)
    if (block(i) == cidr) return node;
  return std::nullopt;
}

}  // namespace np::op
