// lb::LbMaps over the real service, backend and reverse-NAT maps: each run of same-kind ops in a
// plan becomes one batch syscall.
#pragma once

#include "bpf/map.h"
#include "lb/reconciler.h"

namespace np::datapath {

class BpfLbMaps final : public lb::LbMaps {
 public:
  static Result<BpfLbMaps> of(int servicesFd, int backendsFd, int revNatFd);

  Applied apply(const std::vector<lb::MapOp>& ops) override;
  Result<lb::LbImage> dump() override;
  Capacity capacity() const override {
    return {services_.info().maxEntries, backends_.info().maxEntries, revNat_.info().maxEntries};
  }

  bpf::Map<np_svc_key, np_svc_val>& services() { return services_; }
  bpf::Map<uint32_t, np_backend>& backends() { return backends_; }
  bpf::Map<uint16_t, np_revnat>& revNat() { return revNat_; }

 private:
  BpfLbMaps(bpf::Map<np_svc_key, np_svc_val> s, bpf::Map<uint32_t, np_backend> b, bpf::Map<uint16_t, np_revnat> r)
      : services_(std::move(s)), backends_(std::move(b)), revNat_(std::move(r)) {}
  bpf::Map<np_svc_key, np_svc_val> services_;
  bpf::Map<uint32_t, np_backend> backends_;
  bpf::Map<uint16_t, np_revnat> revNat_;
};

}  // namespace np::datapath
