// Node-local IPAM: addresses for pods from this node's pod CIDR (a /24 of the cluster's pod
// range). The network address, the first host address (the node's router, on np_host) and the
// broadcast address are never handed out: a /24 has 253 addresses for pods.
//
// Pure: the allocations are restored from the persisted endpoints (restore) and saved with them
// by the caller; nothing here touches the disk. Allocation goes round from the address after the
// last one handed out, so an address just released is the last to be reused (a restarted pod
// does not inherit the previous one's conntrack and neighbour entries).
#pragma once

#include <map>
#include <optional>
#include <string>

#include "core/net.h"
#include "core/result.h"

namespace np::endpoint {

class Ipam {
 public:
  // EINVAL-like errors (err 0) for a CIDR too small to hold a router and one pod (/31, /32).
  static Result<Ipam> create(Cidr pool);

  const Cidr& pool() const { return pool_; }
  Ipv4 router() const { return Ipv4::fromHost(pool_.addr.host() + 1); }
  size_t capacity() const { return capacity_; }
  size_t allocated() const { return owners_.size(); }
  bool reserved(Ipv4 ip) const;  // network, router, broadcast

  // The next free address for `owner`; ENOSPC when none is left.
  Result<Ipv4> allocate(const std::string& owner);
  // Marks `ip` as `owner`'s (restore): EEXIST when someone else has it, EINVAL (err 0) when it is
  // outside the pool or reserved.
  Status restore(Ipv4 ip, const std::string& owner);
  void release(Ipv4 ip);
  std::optional<std::string> owner(Ipv4 ip) const;

  Ipv4 last() const { return last_; }
  void setLast(Ipv4 ip) { last_ = ip; }

 private:
  explicit Ipam(Cidr pool);
  Cidr pool_;
  size_t capacity_ = 0;
  Ipv4 last_;  // the last address handed out (zero: none yet)
  std::map<uint32_t, std::string> owners_;  // host-order address -> owner
};

}  // namespace np::endpoint
