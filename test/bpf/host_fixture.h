// Fixture for host.bpf.c under BPF_PROG_TEST_RUN: a freshly loaded program with its own pinned
// maps per test, typed access to those maps, and the helpers the cases share (running a packet
// through a hook, writing services the way the agent does, reading conntrack and metrics).
#pragma once

#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bpf/map.h"
#include "datapath/lb_maps.h"
#include "datapath/programs.h"
#include "env.h"
#include "np_ct.h"
#include "np_drop.h"
#include "np_lb.h"
#include "np_trace.h"
#include "packet.h"

namespace np::bpftest {

using np::test::Bytes;
using np::test::PacketBuilder;

// What BPF_PROG_TEST_RUN gave back.
struct RunResult {
  int error = 0;     // 0, or the -errno of BPF_PROG_TEST_RUN itself (the kernel refused the input)
  int verdict = -1;  // the program's return value: TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT
  Bytes out;         // data_out, exactly data_size_out bytes
};

// What an XDP program gave back through BPF_PROG_TEST_RUN.
struct XdpRun {
  int verdict = -1;
  Bytes out;                     // the packet, without the metadata
  std::optional<uint32_t> meta;  // the 4-byte metadata word XDP left, if any
};

// One run of the XDP program progFd on `in`, as if it arrived on ifindex. A kernel refusal is a
// test failure (out empty); metadata other than none or one 4-byte word is one too.
XdpRun runXdp(int progFd, const Bytes& in, int ifindex);

struct Frontend {
  uint32_t addr;   // network order
  uint16_t port;   // host order
  uint8_t proto;   // IPPROTO_TCP / IPPROTO_UDP
};

// Conntrack key as the program builds it (ports in host order here, network order in the key).
np_ct_key ctKey(uint32_t saddr, uint16_t sport, uint32_t daddr, uint16_t dport, uint8_t proto, uint8_t dir);

// Byte-exact frame comparison whose failure message is np::test::diff(): the fields that differ,
// then both hex dumps.
::testing::AssertionResult samePacket(const Bytes& expected, const Bytes& actual);
// Both checksums of the frame are right; on failure, the frame's hex dump.
::testing::AssertionResult checksumsOk(const Bytes& frame);

// CLOCK_MONOTONIC_COARSE, the clock of bpf_ktime_get_coarse_ns() and of np_ct_entry.expires.
uint64_t monotonicNs();

inline constexpr uint64_t kSec = 1000000000ULL;

class HostTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // One packet through tc ingress / egress of ens192; a refused test run is a test failure.
  RunResult fromNetdev(const Bytes& in) { return run(prog_->fromNetdevFd(), in, true); }
  RunResult toNetdev(const Bytes& in) { return run(prog_->toNetdevFd(), in, true); }
  // The same, leaving a refused run (RunResult::error) to the caller.
  RunResult tryFromNetdev(const Bytes& in) { return run(prog_->fromNetdevFd(), in, false); }
  // tc ingress of ens192 with `in` as a GSO packet of gsoSize-byte segments (what GRO on the
  // device hands tc for a burst of segments).
  RunResult fromNetdevGso(const Bytes& in, uint32_t gsoSize) {
    return run(prog_->fromNetdevFd(), in, true, 0, gsoSize);
  }
  // The loaded tc ingress program (to attach it for a test that runs real traffic through it).
  int tcFromNetdevFd() const { return prog_->fromNetdevFd(); }

  // Map set-up in the agent's order and layout (agent/lb/reconciler.cpp expandInto): backends,
  // then slots 1..n (selectable first, then terminating), then the master entry (slot 0, count =
  // selectable, total = all slots), then reverse NAT. Slots above the new total are removed.
  // The TCP NodePort of flows.h with one backend on node 2 (kRemotePodA) and the client's SYN
  // through tc ingress: the SNAT port the flow got, 0 (and a test failure) if it was not SNAT'd
  // and redirected. Defined in flows.h.
  uint16_t startRemoteFlow();
  void addBackend(uint32_t id, uint32_t addr, uint16_t port, uint8_t proto,
                  uint8_t state = NP_BACKEND_ACTIVE);
  void removeBackend(uint32_t id);
  void setService(const Frontend& f, uint8_t flags, uint16_t revNatId, const std::vector<uint32_t>& selectable,
                  const std::vector<uint32_t>& terminating = {});

  // Conntrack, as the datapath looks it up: the main table first, then the embryonic one.
  std::optional<np_ct_entry> ct(const np_ct_key& k) const;
  // One table: confirmed flows (np_ct4_v1) or unconfirmed ones (np_ctsyn4_v1).
  std::optional<np_ct_entry> ctMain(const np_ct_key& k) const { return ctMain_->lookup(k); }
  std::optional<np_ct_entry> ctSyn(const np_ct_key& k) const { return ctSyn_->lookup(k); }
  // Entries of both tables.
  std::vector<std::pair<np_ct_key, np_ct_entry>> ctAll() const;
  std::vector<std::pair<np_ct_key, np_ct_entry>> ctMainAll() const { return dumpOf(*ctMain_); }
  std::vector<std::pair<np_ct_key, np_ct_entry>> ctSynAll() const { return dumpOf(*ctSyn_); }
  size_t ctCount() const { return ctAll().size(); }
  size_t ctMainCount() const { return ctMainAll().size(); }
  size_t ctSynCount() const { return ctSynAll().size(); }
  // np_ctstat_v1 row of a table, summed over CPUs here (the agent's sum is checked against it).
  np_ct_stat ctStat(uint32_t table) const;
  int ctMainFd() const { return ctMain_->fd(); }
  int ctSynFd() const { return ctSyn_->fd(); }
  int ctStatFd() const { return ctStatFd_; }
  bpf::Map<np_ct_key, np_ct_entry>& ctMainMap() { return *ctMain_; }
  bpf::Map<np_ct_key, np_ct_entry>& ctSynMap() { return *ctSyn_; }
  // Metrics slot (dir << 8) | reason, summed over CPUs here (not with bpf::sumPerCpu, which is
  // checked against this by MetricsAgentSumMatchesProgramCounters).
  np_metric metric(uint32_t dir, uint32_t reason) const;
  std::vector<np_metric> metricPerCpu(uint32_t index) const;
  int metricsFd() const { return metricsFd_; }
  // As if `seconds` passed: moves every conntrack entry's expiry (both tables) that much closer
  // (the programs compare expiry with bpf_ktime_get_ns(), which a test cannot move).
  void advanceClock(uint64_t seconds);

  // Where this test's maps are pinned, and the sizes they were created with: another object
  // loaded with both (datapath::sizeMaps) shares the program's maps.
  const std::string& pinDir() const { return pinDir_; }
  // fd of one of the program's maps by name (NP_MAP_*), for cases that program it another way
  // (the agent's own reconciler, say).
  int mapFd(const std::string& name) const { return prog_->mapFd(name); }
  // The agent's view of the program's service maps (how it programs them); a test failure and
  // nullopt if it cannot be made.
  std::optional<datapath::BpfLbMaps> agentLbMaps() const;
  // Backend selection the program is loaded with (np_lb_config); a fixture may override it.
  virtual datapath::LbParams lbParams() const { return {}; }
  // Flow events the program is loaded with (off unless a fixture turns them on).
  virtual datapath::TraceParams traceParams() const { return {}; }
  // Bytes of np_events_v1 the program is loaded with; a fixture may override it.
  virtual uint32_t eventsSize() const { return NP_DEFAULT_EVENTS_SIZE; }
  // Every flow event written to np_events_v1 since the last call (events on: traceParams()).
  std::vector<np_trace_event> drainEvents();
  const datapath::MapSizes& mapSizes() const { return sizes_; }

  // The bpf-lb-mode the program is loaded with; a derived fixture sets it in its constructor.
  void setLbMode(LbMode m) { lbMode_ = m; }
  LbMode lbMode() const { return lbMode_; }
  // BPF masquerade of 10.0.0.0/16 with these ports; a derived fixture calls it in its constructor.
  void setMasquerade(uint16_t portMin, uint16_t portMax) {
    masq_ = true;
    masqPortMin_ = portMin;
    masqPortMax_ = portMax;
  }
  // BPF host routing (lib/pod.h's delivery to local pods) in the loaded program; off by default.
  void setBpfHostRouting(bool on) { bpfHostRouting_ = on; }

  // One packet through a program as if it arrived on device ifindex (a pod's veth, say).
  RunResult runOn(int progFd, const Bytes& in, int ifindex) { return run(progFd, in, true, ifindex); }

  // The embryonic table's size in this fixture (small, so a test can overflow it).
  static constexpr uint32_t kCtSynMax = 1024;
  static constexpr uint32_t kCtMainMax = 4096;

 private:
  RunResult run(int progFd, const Bytes& in, bool mustRun, int ifindex = 0, uint32_t gsoSize = 0);
  static std::vector<std::pair<np_ct_key, np_ct_entry>> dumpOf(const bpf::Map<np_ct_key, np_ct_entry>& m);

  std::string pinDir_;
  LbMode lbMode_ = LbMode::Snat;
  bool masq_ = false;
  uint16_t masqPortMin_ = 0;
  uint16_t masqPortMax_ = 0;
  bool bpfHostRouting_ = false;
  datapath::MapSizes sizes_;
  std::unique_ptr<datapath::HostProgram> prog_;
  std::optional<bpf::Map<np_svc_key, np_svc_val>> services_;
  std::optional<bpf::Map<uint32_t, np_backend>> backends_;
  std::optional<bpf::Map<uint16_t, np_revnat>> revNat_;
  std::optional<bpf::Map<np_ct_key, np_ct_entry>> ctMain_;
  std::optional<bpf::Map<np_ct_key, np_ct_entry>> ctSyn_;
  int ctStatFd_ = -1;
  int metricsFd_ = -1;
};

}  // namespace np::bpftest
