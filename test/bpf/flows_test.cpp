// Flow events (bpf/lib/trace.h) from host.bpf.c under BPF_PROG_TEST_RUN: the events a translated
// and a dropped packet leave in np_events_v1, read back and decoded the way the agent does
// (agent/flows/decode.cpp), the conntrack-held aggregation of established flows, and when an
// event wakes the agent's reader.
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/epoll.h>

#include <vector>

#include "flows.h"
#include "flows/decode.h"
#include "np_trace.h"

namespace np::bpftest {
namespace {

class FlowsTest : public HostTest {
 protected:
  datapath::TraceParams traceParams() const override { return {true, NP_TRACE_AGG_MEDIUM, 5}; }

  flow::Flow decode(const np_trace_event& ev) {
    flows::DecodeContext ctx;
    ctx.nodeName = "node-1";
    ctx.service = [](uint16_t id) -> std::shared_ptr<const flows::ServiceName> {
      if (id == kRevNat) return std::make_shared<const flows::ServiceName>(flows::ServiceName{"web", "default"});
      return nullptr;
    };
    auto f = flows::decodeEvent(&ev, sizeof ev, ctx);
    EXPECT_TRUE(f.has_value());
    return f ? *f : flow::Flow{};
  }
};

TEST_F(FlowsTest, FlowsEventForTranslatedSynHasBothTuplesAndService) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  drainEvents();

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_EQ(r.verdict, TC_ACT_OK);
  auto evs = drainEvents();
  ASSERT_EQ(evs.size(), 1u);
  const np_trace_event& ev = evs[0];
  EXPECT_EQ(ev.type, NP_EVENT_TRACE);
  EXPECT_EQ(ev.point, NP_TRACE_TO_STACK);
  EXPECT_EQ(ev.verdict, NP_VERDICT_FORWARDED);
  EXPECT_EQ(ev.reason, 0);
  EXPECT_EQ(ev.rev_nat_id, kRevNat);
  EXPECT_EQ(ev.tcp_flags, kTcpSyn);
  EXPECT_EQ(ev.flags, NP_EVENT_F_XLATED);
  EXPECT_EQ(ev.ifindex, static_cast<uint32_t>(env().ens192Ifindex));
  EXPECT_EQ(ev.len, r.out.size());
  EXPECT_EQ(ev.orig_saddr, kClientIp);
  EXPECT_EQ(ev.orig_daddr, kNodeIp);
  EXPECT_EQ(ntohs(ev.orig_sport), kClientPort);
  EXPECT_EQ(ntohs(ev.orig_dport), kNodePort);
  // The snippet is the packet as it left: translated to the pod.
  ASSERT_GE(ev.cap_len, 54);
  EXPECT_EQ(0, std::memcmp(ev.data, r.out.data(), ev.cap_len));

  flow::Flow f = decode(ev);
  EXPECT_EQ(f.verdict(), flow::FORWARDED);
  EXPECT_EQ(f.trace_observation_point(), flow::TO_STACK);
  EXPECT_EQ(f.ip().source(), "192.168.10.200");
  EXPECT_EQ(f.ip().destination(), Ipv4{kLocalPodA}.str());
  EXPECT_EQ(f.l4().tcp().source_port(), kClientPort);
  EXPECT_EQ(f.l4().tcp().destination_port(), kBackendPort);
  EXPECT_TRUE(f.l4().tcp().flags().syn());
  EXPECT_EQ(f.destination_service().name(), "web");
  EXPECT_EQ(f.destination_service().namespace_(), "default");
  EXPECT_FALSE(f.is_reply().value());
  EXPECT_EQ(f.node_name(), "node-1");
}

TEST_F(FlowsTest, FlowsEventForSnatedRemoteBackendShowsSourceXlated) {
  addBackend(1, kRemotePodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  drainEvents();

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_EQ(r.verdict, TC_ACT_REDIRECT);
  auto evs = drainEvents();
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].point, NP_TRACE_TO_NETWORK);
  flow::Flow f = decode(evs[0]);
  EXPECT_EQ(f.ip().source(), "192.168.10.200");
  EXPECT_EQ(f.ip().source_xlated(), Ipv4{kNodeIp}.str());
  EXPECT_EQ(f.ip().destination(), Ipv4{kRemotePodA}.str());
  EXPECT_EQ(f.trace_observation_point(), flow::TO_NETWORK);
}

TEST_F(FlowsTest, FlowsEventForDropCarriesReason) {
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {});  // no backend
  drainEvents();

  RunResult r = fromNetdev(clientTcp(kClientPort, kTcpSyn).build());
  ASSERT_EQ(r.verdict, TC_ACT_SHOT);
  auto evs = drainEvents();
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].type, NP_EVENT_DROP);
  EXPECT_EQ(evs[0].verdict, NP_VERDICT_DROPPED);
  EXPECT_EQ(evs[0].reason, NP_DROP_NO_SERVICE_BACKEND);
  EXPECT_EQ(evs[0].point, NP_TRACE_FROM_NETWORK);
  flow::Flow f = decode(evs[0]);
  EXPECT_EQ(f.verdict(), flow::DROPPED);
  EXPECT_EQ(f.drop_reason_desc(), flow::SERVICE_BACKEND_NOT_FOUND);
  EXPECT_EQ(f.ip().destination(), Ipv4{kNodeIp}.str());
  EXPECT_EQ(f.l4().tcp().destination_port(), kNodePort);
}

TEST_F(FlowsTest, FlowsAggregationSuppressesRepeatsAndReportsFlagChange) {
  addBackend(1, kLocalPodA, kBackendPort, IPPROTO_TCP);
  setService(kTcpNodePort, kNodePortFlags, kRevNat, {1});
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpSyn).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpSyn | kTcpAck).build()).verdict, TC_ACT_OK);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);  // confirms
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck | kTcpPsh).build()).verdict, TC_ACT_OK);
  auto opening = drainEvents();
  EXPECT_GE(opening.size(), 2u) << "the SYN and the reply's SYN-ACK are reported";

  for (int i = 0; i < 20; i++)
    ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck | kTcpPsh).build()).verdict, TC_ACT_OK);
  EXPECT_EQ(drainEvents().size(), 0u) << "repeats of an established flow within the interval are aggregated";

  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpFin | kTcpAck).build()).verdict, TC_ACT_OK);
  auto fin = drainEvents();
  ASSERT_EQ(fin.size(), 1u) << "a FIN is a flag change: reported";
  EXPECT_EQ(fin[0].tcp_flags, kTcpFin | kTcpAck);
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpFin | kTcpAck).build()).verdict, TC_ACT_OK);
  EXPECT_EQ(drainEvents().size(), 0u) << "a FIN already reported is not reported again";

  // The record of what was reported lives in the flow's conntrack entry (no map of its own).
  auto key = clientKey(kClientPort);
  auto e = ctMain(key);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->trace_flags & (kTcpFin | kTcpRst), kTcpFin) << "the FIN is recorded as reported";
  EXPECT_NE(e->trace_time, 0) << "the last report's time is recorded";

  // A reply direction flag change (the backend's FIN, on egress) is reported once too.
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpFin | kTcpAck).build()).verdict, TC_ACT_OK);
  auto replyFin = drainEvents();
  ASSERT_EQ(replyFin.size(), 1u) << "the reply's FIN is a flag change of its direction: reported";
  EXPECT_TRUE(replyFin[0].flags & NP_EVENT_F_REPLY);
  ASSERT_EQ(toNetdev(localPodTcp(kLocalPodA, kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  EXPECT_EQ(drainEvents().size(), 0u) << "the reply direction's repeats are aggregated";

  // The interval: as if it passed (the entry's record of the last report moved back).
  e->trace_time = static_cast<uint16_t>(e->trace_time - 10);
  ASSERT_TRUE(ctMainMap().update(key, *e).ok());
  ASSERT_EQ(fromNetdev(clientTcp(kClientPort, kTcpAck).build()).verdict, TC_ACT_OK);
  EXPECT_EQ(drainEvents().size(), 1u) << "an established flow is reported again once the interval passed";
}

// The agent's flow reader as the kernel sees it (agent/flows/flows.cpp): a libbpf ring_buffer on
// np_events_v1, created while the ring is empty. Its epoll fd turns readable only when a submit
// wakes it; ring_buffer__consume() reads whatever waits, woken or not (the reader's 20 ms poll).
class EventsReader {
 public:
  explicit EventsReader(int mapFd) : rb_(ring_buffer__new(mapFd, &EventsReader::count, &read_, nullptr)) {}
  ~EventsReader() {
    if (rb_) ring_buffer__free(rb_);
  }
  EventsReader(const EventsReader&) = delete;
  EventsReader& operator=(const EventsReader&) = delete;
  bool ok() const { return rb_ != nullptr; }
  // Whether epoll reports the ring readable within timeoutMs.
  bool woken(int timeoutMs) {
    epoll_event ev{};
    return epoll_wait(ring_buffer__epoll_fd(rb_), &ev, 1, timeoutMs) == 1;
  }
  // Reads every waiting event; how many there were.
  size_t consume() {
    read_ = 0;
    EXPECT_GE(ring_buffer__consume(rb_), 0);
    return read_;
  }

 private:
  static int count(void* ctx, void*, size_t) {
    ++*static_cast<size_t*>(ctx);
    return 0;
  }
  size_t read_ = 0;
  ring_buffer* rb_;
};

// The wakeup policy (lib/trace.h np_trace_wakeup): an event wakes the reader only when a quarter of
// the ring waits, counting itself. A small ring, so the quarter is a few dozen drop events.
class FlowsWakeupTest : public FlowsTest {
 protected:
  static constexpr uint32_t kRing = 64 << 10;
  uint32_t eventsSize() const override { return kRing; }
  // One event's bytes in the ring: the kernel's record header, 8-byte aligned.
  static constexpr uint32_t kRecord = (BPF_RINGBUF_HDR_SZ + sizeof(np_trace_event) + 7) / 8 * 8;
  // The first event whose submit finds a quarter of the ring waiting.
  static constexpr uint32_t kWakingEvent = (kRing / 4 + kRecord - 1) / kRecord;
  // A non-waking submit is checked over one reader poll period: a wakeup that should not come
  // (irq_work, run after the submit) has that long to show up.
  static constexpr int kQuietMs = NP_EVENTS_POLL_MS;
  static constexpr int kWokenMs = 1000;  // a deadline: epoll_wait returns as soon as it is readable

  void SetUp() override {
    FlowsTest::SetUp();
    if (HasFatalFailure()) return;
    setService(kTcpNodePort, kNodePortFlags, kRevNat, {});  // no backend: every SYN is a drop event
    drainEvents();
  }
  // n dropped SYNs through prog (each one flow event).
  void drops(int progFd, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i)
      ASSERT_EQ(runOn(progFd, clientTcp(kClientPort, kTcpSyn).build(), env().ens192Ifindex).verdict, TC_ACT_SHOT);
  }
  // The policy through prog, from an empty ring: quiet until the quarter, then woken.
  void expectWakeAtQuarter(int progFd) {
    static_assert(kWakingEvent > 2 && kWakingEvent * kRecord < kRing);
    EventsReader reader(mapFd(NP_STR(NP_MAP_EVENTS)));
    ASSERT_TRUE(reader.ok());
    ASSERT_FALSE(reader.woken(0)) << "the ring starts empty";

    drops(progFd, 1);
    EXPECT_FALSE(reader.woken(kQuietMs)) << "one event into an empty ring does not wake the reader";
    EXPECT_EQ(reader.consume(), 1u) << "but the reader's poll reads it";

    drops(progFd, kWakingEvent - 1);
    EXPECT_FALSE(reader.woken(kQuietMs)) << kWakingEvent - 1 << " events (" << (kWakingEvent - 1) * kRecord
                                         << " bytes) wait: less than a quarter of " << kRing;
    drops(progFd, 1);
    EXPECT_TRUE(reader.woken(kWokenMs)) << "event " << kWakingEvent << " fills a quarter of the ring: it wakes";
    EXPECT_EQ(reader.consume(), kWakingEvent);

    // The reader caught up: the next event waits for its poll again.
    EXPECT_FALSE(reader.woken(0)) << "a drained ring is not readable";
    drops(progFd, 1);
    EXPECT_FALSE(reader.woken(kQuietMs)) << "after a drain, one event does not wake the reader";
    EXPECT_EQ(reader.consume(), 1u);
  }
};

TEST_F(FlowsWakeupTest, FlowsEventWakesReaderOnlyOnceAQuarterOfTheRingWaits) {
  expectWakeAtQuarter(tcFromNetdevFd());
}

// A second program adopting the pinned ring (another device, a restarted agent) keeps the ring's
// size, not its own configured one; the quarter is of the ring it writes.
TEST_F(FlowsWakeupTest, FlowsWakeupThresholdFollowsAdoptedRingSize) {
  datapath::MapSizes sizes = mapSizes();
  sizes.events = NP_DEFAULT_EVENTS_SIZE;  // configured: 4 MiB; pinned: kRing
  ASSERT_NE(sizes.events, kRing);
  datapath::HostParams p;
  p.device = "ens192";
  p.ifindex = env().ens192Ifindex;
  p.nodeIp = Ipv4{kNodeIp};
  p.trace = traceParams();
  auto second = datapath::HostProgram::load(pinDir(), sizes, p);
  ASSERT_TRUE(second.ok()) << second.error().message();
  expectWakeAtQuarter((*second)->fromNetdevFd());
}

}  // namespace
}  // namespace np::bpftest
