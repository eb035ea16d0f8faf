#include "datapath/lxc_endpoints.h"

#include <net/if.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "bpf/attach.h"
#include "core/log.h"

namespace np::datapath {

np_endpoint endpointValue(const endpoint::Endpoint& e) {
  np_endpoint v{};
  v.ifindex = static_cast<uint32_t>(e.hostIfindex);
  v.ep_id = static_cast<uint32_t>(e.hostIfindex);
  std::memcpy(v.pod_mac, e.podMac.data(), sizeof v.pod_mac);
  std::memcpy(v.lxc_mac, e.hostMac.data(), sizeof v.lxc_mac);
  return v;
}

Result<std::unique_ptr<LxcEndpoints>> LxcEndpoints::of(std::unique_ptr<LxcProgram> prog) {
  auto map = bpf::Map<uint32_t, np_endpoint>::of(prog->mapFd(NP_STR(NP_MAP_LXC)));
  if (!map) return map.error();
  return std::unique_ptr<LxcEndpoints>(new LxcEndpoints(std::move(prog), std::move(*map)));
}

Status LxcEndpoints::attach(const endpoint::Endpoint& e) {
  // The entry first: the program on the veth checks the pod's source address against it.
  NP_TRY(map_.update(e.ip.be, endpointValue(e)));
  NP_TRY(bpf::attachTc(e.hostIfindex, bpf::TcDirection::Ingress, prog_->fromContainerFd(), e.hostIfname));
  NP_TRY(bpf::attachTc(e.hostIfindex, bpf::TcDirection::Egress, prog_->toContainerFd(), e.hostIfname));
  return {};
}

Status LxcEndpoints::detach(const endpoint::Endpoint& e) {
  // Only the entry of this endpoint: an address another endpoint took over since stays.
  if (auto cur = map_.lookup(e.ip.be); cur && cur->ifindex == static_cast<uint32_t>(e.hostIfindex))
    NP_TRY(map_.remove(e.ip.be));
  // The filters go with the veth, which the endpoint's removal deletes: taking them off first is
  // best effort (a veth whose qdisc someone removed must not make DEL fail).
  char name[IF_NAMESIZE];
  if (e.hostIfindex > 0 && if_indextoname(static_cast<unsigned>(e.hostIfindex), name) && e.hostIfname == name) {
    for (auto dir : {bpf::TcDirection::Ingress, bpf::TcDirection::Egress})
      if (Status st = bpf::detachTc(e.hostIfindex, dir, e.hostIfname); !st)
        NP_LOG_DEBUG("endpoint", "%s", st.error().message().c_str());
  }
  return {};
}

Status LxcEndpoints::prune(const std::vector<endpoint::Endpoint>& keep) {
  std::set<uint32_t> live;
  for (const auto& e : keep) live.insert(e.ip.be);
  auto all = map_.dump();
  if (!all) return all.error();
  for (const auto& [addr, v] : *all) {
    if (live.count(addr)) continue;
    NP_LOG_INFO("endpoint", "removing the map entry of %s (ifindex %u): no such endpoint", Ipv4{addr}.str().c_str(),
                v.ifindex);
    NP_TRY(map_.remove(addr));
  }
  return {};
}

std::vector<uint64_t> LxcEndpoints::stats() const {
  std::vector<uint64_t> out(NP_LXC_STATS, 0);
  auto all = bpf::sumPerCpuAll<np_lxc_counter>(prog_->mapFd(NP_STR(NP_MAP_LXC_STATS)), NP_LXC_STATS);
  if (all)
    for (size_t i = 0; i < out.size() && i < all->size(); ++i) out[i] = (*all)[i].packets;
  return out;
}

}  // namespace np::datapath
