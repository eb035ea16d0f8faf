#include "endpoint/ipam.h"

#include <cerrno>

namespace np::endpoint {

Ipam::Ipam(Cidr pool) : pool_(pool) { capacity_ = (size_t{1} << (32 - pool.prefix)) - 3; }

Result<Ipam> Ipam::create(Cidr pool) {
  if (pool.prefix > 30) return error("pod CIDR " + pool.str(), "is too small: it needs a router address and pods (at most /30)");
  if (pool.prefix < 16) return error("pod CIDR " + pool.str(), "is larger than a node's share should be (at least /16)");
  return Ipam(pool);
}

bool Ipam::reserved(Ipv4 ip) const {
  const uint32_t base = pool_.addr.host();
  const uint32_t bcast = base + static_cast<uint32_t>((uint64_t{1} << (32 - pool_.prefix)) - 1);
  return ip.host() == base || ip.host() == base + 1 || ip.host() == bcast;
}

Result<Ipv4> Ipam::allocate(const std::string& owner) {
  if (owners_.size() >= capacity_)
    return Error{ENOSPC, "allocate a pod address", "all " + std::to_string(capacity_) + " addresses of " + pool_.str() + " are in use"};
  const uint32_t base = pool_.addr.host();
  const uint32_t size = static_cast<uint32_t>(uint64_t{1} << (32 - pool_.prefix));
  uint32_t start = last_.isZero() || !pool_.contains(last_) ? 1 : last_.host() - base;
  for (uint32_t i = 1; i <= size; ++i) {
    const uint32_t off = (start + i) % size;
    const Ipv4 ip = Ipv4::fromHost(base + off);
    if (reserved(ip) || owners_.count(ip.host())) continue;
    owners_[ip.host()] = owner;
    last_ = ip;
    return ip;
  }
  return Error{ENOSPC, "allocate a pod address", "no free address in " + pool_.str()};
}

Status Ipam::restore(Ipv4 ip, const std::string& owner) {
  if (!pool_.contains(ip)) return error("restore address " + ip.str() + " of " + owner, "is outside the pod CIDR " + pool_.str());
  if (reserved(ip)) return error("restore address " + ip.str() + " of " + owner, "is reserved in " + pool_.str());
  auto it = owners_.find(ip.host());
  if (it != owners_.end() && it->second != owner)
    return Error{EEXIST, "restore address " + ip.str() + " of " + owner, "is also " + it->second + "'s"};
  owners_[ip.host()] = owner;
  return {};
}

void Ipam::release(Ipv4 ip) { owners_.erase(ip.host()); }

std::optional<std::string> Ipam::owner(Ipv4 ip) const {
  auto it = owners_.find(ip.host());
  if (it == owners_.end()) return std::nullopt;
  return it->second;
}

}  // namespace np::endpoint
