// lb::LbMaps over the real service, backend, reverse-NAT, affinity-match and Maglev maps: each
// run of same-kind ops in a plan becomes one batch syscall (Maglev tables: one inner map each,
// filled in one batch and swapped in with one update of the outer map). Beside them it keeps its
// entry of np_ports4_v1, the ports a flow of ours can use at the node's address (lib/ports.h), a
// superset of what the maps and conntrack use: written from them by the first dump() after
// trackPorts() (the reconciler's adopt at start), then the bits of a write's ports are set before
// the write. Bits are cleared only at the next start. And np_belive4_v1, the backend IDs the
// backend map holds (np_lb.h): a backend's bit is set after the backend is written and cleared
// before it is deleted, and the first dump() after trackLiveBackends() rewrites it from the map.
#pragma once

#include <array>
#include <optional>

#include "bpf/map.h"
#include "core/config.h"
#include "ct/gc.h"
#include "lb/reconciler.h"

namespace np::datapath {

using PortBitmap = std::array<uint64_t, NP_PORTS_WORDS>;

// The ports of every service entry's frontend and every backend in img, and the `always` ranges.
PortBitmap portBitmap(const lb::LbImage& img, const std::vector<PortRange>& always);
inline bool hasPort(const PortBitmap& b, uint16_t port) { return b[port / 64] >> (port % 64) & 1; }
// The ports conntrack entries use at any of addrs (the node's addresses): a flow that outlived
// what made it (a SNAT or masquerade range since changed, a deleted service, a DSR flow learned
// from another node's option) keeps being looked up after a restart.
Result<PortBitmap> portsInConntrack(ct::Tables& tables, const std::vector<Ipv4>& addrs);

class BpfLbMaps final : public lb::LbMaps {
 public:
  // maglevFd: the outer map (np_maglev4_v1); tables are made with maglevTableSize entries.
  static Result<BpfLbMaps> of(int servicesFd, int backendsFd, int revNatFd, int affinityMatchFd, int maglevFd,
                              uint32_t maglevTableSize);

  Applied apply(const std::vector<lb::MapOp>& ops) override;
  // The first one after trackPorts() also writes the ports bitmap.
  Result<lb::LbImage> dump() override;
  // Keeps np_ports4_v1's agent entry (portsFd) from now on, with the `always` ranges (SNAT,
  // masquerade) in it. Marks it incomplete at once, so every program looks up every packet until
  // the next dump() writes it (a previous agent's bitmap may lack what it wrote since).
  Status trackPorts(int portsFd, std::vector<PortRange> always);
  // Keeps np_belive4_v1 (liveFd) from now on. Clears it at once (an agent without it may have
  // deleted backends since it was written); the next dump() writes it from the backend map.
  Status trackLiveBackends(int liveFd);
  // Ports the first dump() after trackPorts() adds to what the maps use (portsInConntrack()).
  void seedPorts(const PortBitmap& ports);
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
  // Sets the bits of the ports `ops` write (before they are written).
  Status addPorts(const std::vector<lb::MapOp>& ops);
  Status writePorts(const PortBitmap& next, bool complete);
  // Sets (on) or clears the bits of keys[0..n) in np_belive4_v1.
  Status markLive(const std::vector<uint32_t>& keys, size_t n, bool on);
  // Writes the words of `next` that differ from what the map holds (`words`, or the map itself
  // when `read`), then keeps next as what it holds.
  Status syncLive(lb::FlatMap<uint32_t, uint64_t> next, bool read);

  bpf::Map<np_svc_key, np_svc_val> services_;
  bpf::Map<uint32_t, np_backend> backends_;
  bpf::Map<uint16_t, np_revnat> revNat_;
  bpf::Map<np_affinity_match, uint8_t> affinityMatch_;
  int maglevFd_;
  bpf::MapInfo maglevInfo_;
  uint32_t tableSize_;
  int portsFd_ = -1;
  std::vector<PortRange> portsAlways_;
  PortBitmap ports_{};        // what np_ports4_v1's agent entry holds
  PortBitmap portsSeed_{};
  bool portsComplete_ = false;
  std::optional<bpf::Map<uint32_t, uint64_t>> live_;
  lb::FlatMap<uint32_t, uint64_t> liveWords_;  // np_belive4_v1's nonzero words
  bool liveRead_ = false;                      // liveWords_ is what the map holds
  bool liveDumped_ = false;                    // a dump() wrote it from the backend map
};

}  // namespace np::datapath
