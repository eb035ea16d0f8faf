#include "host_fixture.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "flows.h"
#include "np_abi.h"

namespace np::bpftest {

np_ct_key ctKey(uint32_t saddr, uint16_t sport, uint32_t daddr, uint16_t dport, uint8_t proto, uint8_t dir) {
  np_ct_key k{};
  k.saddr = saddr;
  k.daddr = daddr;
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = proto;
  k.dir = dir;
  return k;
}

::testing::AssertionResult samePacket(const Bytes& expected, const Bytes& actual) {
  if (expected == actual) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "output packet differs from the expected one:\n"
                                       << np::test::diff(expected, actual);
}

::testing::AssertionResult checksumsOk(const Bytes& frame) {
  auto st = np::test::checkChecksums(frame);
  if (st.ip && st.l4) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "checksums: ip " << (st.ip ? "ok" : "BAD") << ", l4 "
                                       << (st.l4 ? "ok" : "BAD") << "\n"
                                       << np::test::hexdump(frame);
}

uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kSec + static_cast<uint64_t>(ts.tv_nsec);
}

void HostTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // bpffs refuses names with dots in them; parameterized tests have slashes in theirs.
  std::string name = std::string(info->test_suite_name()) + "_" + info->name();
  std::replace(name.begin(), name.end(), '/', '_');
  pinDir_ = env().bpffs + "/" + name;
  std::filesystem::remove_all(pinDir_);  // a leftover of an earlier --gtest_repeat iteration
  ASSERT_EQ(::mkdir(pinDir_.c_str(), 0700), 0) << pinDir_ << ": " << std::strerror(errno);

  sizes_ = {};  // small maps load fast; the cases need a few hundred entries at most
  sizes_.services = 1024;
  sizes_.backends = 1024;
  sizes_.revNat = 1024;
  sizes_.ct = kCtMainMax;
  sizes_.ctEmbryonic = kCtSynMax;
  sizes_.nodes = 64;
  sizes_.affinity = 1024;
  sizes_.affinityMatch = 1024;
  sizes_.maglev = 64;
  sizes_.events = eventsSize();
  datapath::HostParams p;
  p.device = "ens192";
  p.ifindex = env().ens192Ifindex;
  p.nodeIp = Ipv4{kNodeIp};
  p.lb = lbParams();
  p.lbMode = lbMode_;
  p.masquerade = masq_;
  if (masq_) {
    p.masqPortMin = masqPortMin_;
    p.masqPortMax = masqPortMax_;
  }
  p.bpfHostRouting = bpfHostRouting_;
  p.trace = traceParams();
  auto prog = datapath::HostProgram::load(pinDir_, sizes_, p);
  ASSERT_TRUE(prog.ok()) << prog.error().message();
  prog_ = std::move(prog.value());

  auto svc = bpf::Map<np_svc_key, np_svc_val>::of(prog_->mapFd(NP_STR(NP_MAP_SERVICES)));
  ASSERT_TRUE(svc.ok()) << svc.error().message();
  services_.emplace(svc.value());
  auto be = bpf::Map<uint32_t, np_backend>::of(prog_->mapFd(NP_STR(NP_MAP_BACKENDS)));
  ASSERT_TRUE(be.ok()) << be.error().message();
  backends_.emplace(be.value());
  auto rn = bpf::Map<uint16_t, np_revnat>::of(prog_->mapFd(NP_STR(NP_MAP_REVNAT)));
  ASSERT_TRUE(rn.ok()) << rn.error().message();
  revNat_.emplace(rn.value());
  auto ct = bpf::Map<np_ct_key, np_ct_entry>::of(prog_->mapFd(NP_STR(NP_MAP_CT)));
  ASSERT_TRUE(ct.ok()) << ct.error().message();
  ctMain_.emplace(ct.value());
  auto syn = bpf::Map<np_ct_key, np_ct_entry>::of(prog_->mapFd(NP_STR(NP_MAP_CT_EMBRYONIC)));
  ASSERT_TRUE(syn.ok()) << syn.error().message();
  ctSyn_.emplace(syn.value());
  ctStatFd_ = prog_->mapFd(NP_STR(NP_MAP_CT_STATS));
  ASSERT_GE(ctStatFd_, 0);
  metricsFd_ = prog_->mapFd(NP_STR(NP_MAP_METRICS));
  ASSERT_GE(metricsFd_, 0);
}

void HostTest::TearDown() {
  services_.reset();
  backends_.reset();
  revNat_.reset();
  ctMain_.reset();
  ctSyn_.reset();
  prog_.reset();  // closes the program and map fds; the pins keep the maps until removed here
  std::error_code ec;
  std::filesystem::remove_all(pinDir_, ec);
  EXPECT_FALSE(ec) << "remove " << pinDir_ << ": " << ec.message();
}

RunResult HostTest::run(int progFd, const Bytes& in, bool mustRun, int ifindex, uint32_t gsoSize) {
  RunResult r;
  r.out.resize(in.size() + 256);
  __sk_buff ctxIn{};
  ctxIn.ifindex = static_cast<uint32_t>(ifindex ? ifindex : env().ens192Ifindex);  // the program sees the device
  if (gsoSize) {
    ctxIn.gso_size = gsoSize;
    ctxIn.gso_segs = static_cast<uint32_t>((in.size() + gsoSize - 1) / gsoSize);
  }
  __sk_buff ctxOut{};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<uint32_t>(in.size()),
              .data_size_out = static_cast<uint32_t>(r.out.size()), .ctx_in = &ctxIn, .ctx_out = &ctxOut,
              .ctx_size_in = sizeof(ctxIn), .ctx_size_out = sizeof(ctxOut), .repeat = 1);
  int rc = bpf_prog_test_run_opts(progFd, &opts);
  if (rc != 0) {
    r.error = rc < 0 ? rc : -errno;
    if (mustRun) ADD_FAILURE() << "BPF_PROG_TEST_RUN: " << std::strerror(-r.error) << "\n" << np::test::hexdump(in);
    r.out.clear();
    return r;
  }
  r.verdict = static_cast<int>(opts.retval);
  r.out.resize(opts.data_size_out);
  return r;
}

void HostTest::addBackend(uint32_t id, uint32_t addr, uint16_t port, uint8_t proto, uint8_t state) {
  np_backend b{};
  b.addr = addr;
  b.port = htons(port);
  b.proto = proto;
  b.state = state;
  auto st = backends_->update(id, b);
  ASSERT_TRUE(st.ok()) << st.error().message();
}

lb::Service webService(const std::vector<uint32_t>& pods) {
  lb::Service s;
  s.name = "default/web";
  s.port = 80;
  s.clusterIp = Ipv4{kClusterIp};
  s.nodePort = kNodePort;
  for (uint32_t a : pods) s.backends.push_back({Endpoint{Ipv4{a}, kBackendPort}});
  return s;
}

std::optional<datapath::BpfLbMaps> HostTest::agentLbMaps() const {
  auto maps = datapath::BpfLbMaps::of(mapFd(NP_STR(NP_MAP_SERVICES)), mapFd(NP_STR(NP_MAP_BACKENDS)),
                                      mapFd(NP_STR(NP_MAP_REVNAT)), mapFd(NP_STR(NP_MAP_AFFINITY_MATCH)),
                                      mapFd(NP_STR(NP_MAP_MAGLEV)), lbParams().maglevTableSize);
  if (!maps) {
    ADD_FAILURE() << maps.error().message();
    return std::nullopt;
  }
  return std::move(*maps);
}

void HostTest::removeBackend(uint32_t id) {
  auto st = backends_->remove(id);
  ASSERT_TRUE(st.ok()) << st.error().message();
}

void HostTest::setService(const Frontend& f, uint8_t flags, uint16_t revNatId,
                          const std::vector<uint32_t>& selectable, const std::vector<uint32_t>& terminating) {
  np_svc_key master{};
  master.addr = f.addr;
  master.dport = htons(f.port);
  master.proto = f.proto;
  master.scope = NP_LB_SCOPE_EXT;
  master.slot = 0;

  std::vector<uint32_t> slots = selectable;
  slots.insert(slots.end(), terminating.begin(), terminating.end());
  const uint16_t oldTotal = [&] {
    auto old = services_->lookup(master);
    return old ? old->total : uint16_t{0};
  }();

  for (size_t i = 0; i < slots.size(); ++i) {
    np_svc_key k = master;
    k.slot = static_cast<uint16_t>(i + 1);
    np_svc_val v{};
    v.backend_id = slots[i];
    v.rev_nat_id = revNatId;
    v.flags = flags;
    auto st = services_->update(k, v);
    ASSERT_TRUE(st.ok()) << st.error().message();
  }
  np_svc_val mv{};
  mv.count = static_cast<uint16_t>(selectable.size());
  mv.total = static_cast<uint16_t>(slots.size());
  mv.rev_nat_id = revNatId;
  mv.flags = flags;
  auto st = services_->update(master, mv);
  ASSERT_TRUE(st.ok()) << st.error().message();
  for (uint16_t s = static_cast<uint16_t>(slots.size() + 1); s <= oldTotal; ++s) {
    np_svc_key k = master;
    k.slot = s;
    auto rm = services_->remove(k);
    ASSERT_TRUE(rm.ok()) << rm.error().message();
  }
  np_revnat rv{};
  rv.addr = f.addr;
  rv.port = htons(f.port);
  auto rs = revNat_->update(revNatId, rv);
  ASSERT_TRUE(rs.ok()) << rs.error().message();
}

std::optional<np_ct_entry> HostTest::ct(const np_ct_key& k) const {
  if (auto e = ctMain_->lookup(k)) return e;
  return ctSyn_->lookup(k);
}

std::vector<std::pair<np_ct_key, np_ct_entry>> HostTest::dumpOf(const bpf::Map<np_ct_key, np_ct_entry>& m) {
  auto all = m.dump();
  EXPECT_TRUE(all.ok()) << all.error().message();
  return all.ok() ? all.value() : std::vector<std::pair<np_ct_key, np_ct_entry>>{};
}

std::vector<std::pair<np_ct_key, np_ct_entry>> HostTest::ctAll() const {
  auto all = ctMainAll();
  auto syn = ctSynAll();
  all.insert(all.end(), syn.begin(), syn.end());
  return all;
}

np_ct_stat HostTest::ctStat(uint32_t table) const {
  const int ncpus = libbpf_num_possible_cpus();
  EXPECT_GT(ncpus, 0);
  if (ncpus <= 0) return {};
  static_assert(sizeof(np_ct_stat) % 8 == 0);
  std::vector<np_ct_stat> perCpu(static_cast<size_t>(ncpus));
  EXPECT_EQ(bpf_map_lookup_elem(ctStatFd_, &table, perCpu.data()), 0)
      << "read conntrack counters of table " << table << ": " << std::strerror(errno);
  np_ct_stat sum{};
  for (const np_ct_stat& c : perCpu) {
    sum.created += c.created;
    sum.deleted += c.deleted;
    sum.promoted += c.promoted;
  }
  return sum;
}

std::vector<np_metric> HostTest::metricPerCpu(uint32_t index) const {
  const int ncpus = libbpf_num_possible_cpus();
  EXPECT_GT(ncpus, 0);
  if (ncpus <= 0) return {};
  // The kernel copies one value per possible CPU at an 8-byte stride (16 bytes here).
  static_assert(sizeof(np_metric) % 8 == 0);
  std::vector<np_metric> perCpu(static_cast<size_t>(ncpus));
  int rc = bpf_map_lookup_elem(metricsFd_, &index, perCpu.data());
  EXPECT_EQ(rc, 0) << "read metrics slot " << index << ": " << std::strerror(errno);
  return perCpu;
}

np_metric HostTest::metric(uint32_t dir, uint32_t reason) const {
  np_metric sum{};
  for (const np_metric& m : metricPerCpu((dir << 8) | reason)) {
    sum.packets += m.packets;
    sum.bytes += m.bytes;
  }
  return sum;
}

void HostTest::advanceClock(uint64_t seconds) {
  for (auto* m : {&*ctMain_, &*ctSyn_}) {
    for (auto [k, e] : dumpOf(*m)) {
      e.expires -= seconds * kSec;
      auto st = m->update(k, e, BPF_EXIST);
      ASSERT_TRUE(st.ok()) << st.error().message();
    }
  }
}

std::vector<np_trace_event> HostTest::drainEvents() {
  std::vector<np_trace_event> out;
  ring_buffer* rb = ring_buffer__new(
      mapFd(NP_STR(NP_MAP_EVENTS)),
      [](void* ctx, void* data, size_t size) -> int {
        np_trace_event ev{};
        std::memcpy(&ev, data, size < sizeof ev ? size : sizeof ev);
        static_cast<std::vector<np_trace_event>*>(ctx)->push_back(ev);
        return 0;
      },
      &out, nullptr);
  EXPECT_NE(rb, nullptr);
  if (rb) {
    ring_buffer__consume(rb);
    ring_buffer__free(rb);
  }
  return out;
}

XdpRun runXdp(int progFd, const Bytes& in, int ifindex) {
  XdpRun r;
  r.out.resize(in.size() + 256);
  xdp_md ctxIn{};
  ctxIn.data_end = static_cast<uint32_t>(in.size());
  ctxIn.ingress_ifindex = static_cast<uint32_t>(ifindex);
  xdp_md ctxOut{};
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<uint32_t>(in.size()),
              .data_size_out = static_cast<uint32_t>(r.out.size()), .ctx_in = &ctxIn, .ctx_out = &ctxOut,
              .ctx_size_in = sizeof(ctxIn), .ctx_size_out = sizeof(ctxOut), .repeat = 1);
  if (bpf_prog_test_run_opts(progFd, &opts) != 0) {
    ADD_FAILURE() << "BPF_PROG_TEST_RUN (xdp): " << std::strerror(errno) << "\n" << np::test::hexdump(in);
    r.out.clear();
    return r;
  }
  r.verdict = static_cast<int>(opts.retval);
  r.out.resize(opts.data_size_out);
  // data_out starts at data_meta; ctx_out.data is the metadata's length.
  const uint32_t metaLen = ctxOut.data;
  if (metaLen == 4) {
    uint32_t word;
    std::memcpy(&word, r.out.data(), 4);
    r.meta = word;
  }
  EXPECT_TRUE(metaLen == 0 || metaLen == 4) << "unexpected metadata length " << metaLen;
  r.out.erase(r.out.begin(), r.out.begin() + std::min<size_t>(metaLen, r.out.size()));
  return r;
}

}  // namespace np::bpftest
