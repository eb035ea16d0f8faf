// lb::LbMaps over the real service, backend, reverse-NAT, affinity-match and Maglev maps: each
// run of same-kind ops in a plan becomes one batch syscall (Maglev tables: one inner map each,
// filled in one batch and swapped in with one update of the outer map).
#pragma once

#include "bpf/map.h"
#include "lb/reconciler.h"

namespace np::datapath {

class BpfLbMaps final : public lb::LbMaps {
 public:
  // maglevFd: the outer map (np_maglev4_v1); tables are made with maglevTableSize entries.
  static Result<BpfLbMaps> of(int servicesFd, int backendsFd, int revNatFd, int affinityMatchFd, int maglevFd,
                              uint32_t maglevTableSize);

  Applied apply(const std::vector<lb::MapOp>& ops) override;
  Result<lb::LbImage> dump() override;
  Capacity capacity() const override {
    return {services_.info().maxEntries, backends_.info().maxEntries, revNat_.info().maxEntries,
            affinityMatch_.info().maxEntries, maglevInfo_.maxEntries};
  }

  bpf::Map<np_svc_key, np_svc_val>& services() { return services_; }
  bpf::Map<uint32_t, np_backend>& backends() { return backends_; }
  bpf::Map<uint16_t, np_revnat>& revNat() { return revNat_; }
  bpf::Map<np_affinity_match, uint8_t>& affinityMatch() { return affinityMatch_; }
  int maglevFd() const { return maglevFd_; }

 private:
  BpfLbMaps(bpf::Map<np_svc_key, np_svc_val> s, bpf::Map<uint32_t, np_backend> b, bpf::Map<uint16_t, np_revnat> r,
            bpf::Map<np_affinity_match, uint8_t> m, int maglevFd, bpf::MapInfo maglevInfo, uint32_t tableSize)
      : services_(std::move(s)), backends_(std::move(b)), revNat_(std::move(r)), affinityMatch_(std::move(m)),
        maglevFd_(maglevFd), maglevInfo_(std::move(maglevInfo)), tableSize_(tableSize) {}
  // Makes a table's inner map and points the outer map's entry at it.
  Status putTable(const np_svc_key& key, const lb::MaglevTable& table);

  bpf::Map<np_svc_key, np_svc_val> services_;
  bpf::Map<uint32_t, np_backend> backends_;
  bpf::Map<uint16_t, np_revnat> revNat_;
  bpf::Map<np_affinity_match, uint8_t> affinityMatch_;
  int maglevFd_;
  bpf::MapInfo maglevInfo_;
  uint32_t tableSize_;
};

}  // namespace np::datapath
