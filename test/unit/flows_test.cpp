// Flows, pure parts: the BPF enums (np_trace.h, np_drop.h) agree with our Hubble flow.proto, the
// decoder turns an event into the flow a Hubble client expects, the store keeps the last N, the
// filters select as hubble observe's flags mean, and GetFlows honours number/first/follow/since.
#include <gtest/gtest.h>

#include <google/protobuf/util/time_util.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "flow/flow.pb.h"
#include "flows.h"  // agentctl
#include "flows/decode.h"
#include "flows/filter.h"
#include "flows/hubble_server.h"
#include "flows/peers.h"
#include "flows/services.h"
#include "flows/store.h"
#include "np_drop.h"
#include "np_trace.h"

namespace np::flows {
namespace {

TEST(FlowsProto, DropReasonsTracePointsAndVerdictsMatchFlowProto) {
#define CHECK_DROP_(sym, num, hubble, desc)                                                    \
  {                                                                                             \
    const auto* v = flow::DropReason_descriptor()->FindValueByNumber(num);                      \
    ASSERT_NE(v, nullptr) << "flow.proto has no DropReason " << num << " (NP_DROP_" #sym ")"; \
    EXPECT_EQ(v->name(), hubble) << "NP_DROP_" #sym;                                          \
  }
  NP_DROP_REASONS(CHECK_DROP_)
#undef CHECK_DROP_
#define CHECK_POINT_(sym, num, hubble)                                                \
  {                                                                                    \
    const auto* v = flow::TraceObservationPoint_descriptor()->FindValueByNumber(num);  \
    ASSERT_NE(v, nullptr) << "NP_TRACE_" #sym;                                        \
    EXPECT_EQ(v->name(), hubble) << "NP_TRACE_" #sym;                                 \
  }
  NP_TRACE_POINTS(CHECK_POINT_)
#undef CHECK_POINT_
#define CHECK_VERDICT_(sym, num, hubble)                                    \
  {                                                                          \
    const auto* v = flow::Verdict_descriptor()->FindValueByNumber(num);      \
    ASSERT_NE(v, nullptr) << "NP_VERDICT_" #sym;                            \
    EXPECT_EQ(v->name(), hubble) << "NP_VERDICT_" #sym;                     \
  }
  NP_VERDICTS(CHECK_VERDICT_)
#undef CHECK_VERDICT_
  // Field numbers the hubble CLI reads, as in Hubble's flow.proto.
  const auto* d = flow::Flow::descriptor();
  EXPECT_EQ(d->FindFieldByName("verdict")->number(), 2);
  EXPECT_EQ(d->FindFieldByName("drop_reason_desc")->number(), 25);
  EXPECT_EQ(d->FindFieldByName("trace_observation_point")->number(), 24);
  EXPECT_EQ(d->FindFieldByName("is_reply")->number(), 26);
  EXPECT_EQ(d->FindFieldByName("destination_service")->number(), 21);
}

// A TCP SYN client -> pod, as tc left it after DNAT from 192.168.10.100:30080.
np_trace_event synEvent() {
  np_trace_event ev{};
  ev.ktime = 5'000'000'000ULL;
  ev.type = NP_EVENT_TRACE;
  ev.point = NP_TRACE_TO_STACK;
  ev.verdict = NP_VERDICT_FORWARDED;
  ev.ifindex = 3;
  ev.rev_nat_id = 7;
  ev.tcp_flags = 0x02;
  ev.flags = NP_EVENT_F_XLATED;
  ev.orig_saddr = htonl(0xc0a80ac8);  // 192.168.10.200
  ev.orig_daddr = htonl(0xc0a80a64);  // 192.168.10.100
  ev.orig_sport = htons(40000);
  ev.orig_dport = htons(30080);
  uint8_t pkt[54] = {};
  const uint8_t dmac[6] = {2, 0, 0, 0, 0, 1}, smac[6] = {2, 0, 0, 0, 0, 2};
  std::memcpy(pkt, dmac, 6);
  std::memcpy(pkt + 6, smac, 6);
  pkt[12] = 0x08;
  uint8_t* ip = pkt + 14;
  ip[0] = 0x45;
  ip[3] = 40;
  ip[8] = 64;
  ip[9] = 6;
  const uint8_t src[4] = {192, 168, 10, 200}, dst[4] = {10, 0, 1, 10};
  std::memcpy(ip + 12, src, 4);
  std::memcpy(ip + 16, dst, 4);
  uint8_t* tcp = ip + 20;
  tcp[0] = 40000 >> 8;
  tcp[1] = 40000 & 0xff;
  tcp[2] = 8080 >> 8;
  tcp[3] = 8080 & 0xff;
  tcp[12] = 0x50;
  tcp[13] = 0x02;
  std::memcpy(ev.data, pkt, sizeof pkt);
  ev.cap_len = sizeof pkt;
  ev.len = sizeof pkt;
  return ev;
}

TEST(FlowsDecode, TranslatedSynBecomesHubbleFlow) {
  np_trace_event ev = synEvent();
  DecodeContext ctx;
  ctx.nodeName = "node-1";
  ctx.monoToRealtimeNs = 1'700'000'000LL * 1'000'000'000LL;
  ctx.service = [](uint16_t id) -> std::shared_ptr<const ServiceName> {
    if (id == 7) return std::make_shared<const ServiceName>(ServiceName{"web", "default"});
    return nullptr;
  };
  auto f = decodeEvent(&ev, sizeof ev, ctx);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->time().seconds(), 1'700'000'005);
  EXPECT_EQ(f->verdict(), flow::FORWARDED);
  EXPECT_EQ(f->type(), flow::L3_L4);
  EXPECT_EQ(f->event_type().type(), 4);
  EXPECT_EQ(f->trace_observation_point(), flow::TO_STACK);
  EXPECT_EQ(f->ip().source(), "192.168.10.200");
  EXPECT_EQ(f->ip().destination(), "10.0.1.10");
  EXPECT_EQ(f->ip().source_xlated(), "");  // DNAT only
  EXPECT_EQ(f->l4().tcp().source_port(), 40000u);
  EXPECT_EQ(f->l4().tcp().destination_port(), 8080u);
  EXPECT_TRUE(f->l4().tcp().flags().syn());
  EXPECT_FALSE(f->l4().tcp().flags().ack());
  EXPECT_EQ(f->destination_service().name(), "web");
  EXPECT_EQ(f->destination_service().namespace_(), "default");
  EXPECT_EQ(f->ethernet().source(), "02:00:00:00:00:02");
  EXPECT_EQ(f->node_name(), "node-1");
  EXPECT_EQ(f->interface().index(), 3u);
  EXPECT_FALSE(f->is_reply().value());
}

// A ClusterIP connect() translated by the socket hook: one record, Hubble's two SOCK flows
// (pre-xlate-fwd TRACED to the service, post-xlate-fwd TRANSLATED to the backend), named after
// the service, with the socket cookie and cgroup; agentctl flows prints them as hubble does.
TEST(FlowsDecode, SocketTranslationBecomesPreAndPostSockFlows) {
  np_trace_event ev{};
  ev.ktime = 5'000'000'000ULL;
  ev.type = NP_EVENT_TRACE_SOCK;
  ev.point = NP_TRACE_UNKNOWN;
  ev.verdict = NP_VERDICT_TRANSLATED;
  ev.rev_nat_id = 7;
  ev.flags = NP_EVENT_F_XLATED;
  ev.orig_daddr = htonl(0x0a2b0014);  // 10.43.0.20
  ev.orig_dport = htons(80);
  np_trace_sock sk{};
  sk.xlated_daddr = htonl(0x0a00020a);  // 10.0.2.10
  sk.xlated_dport = htons(8080);
  sk.l4_proto = 6;
  sk.xlate_point = NP_SOCK_XLATE_POST_FWD;
  sk.sock_cookie = 4242;
  sk.cgroup_id = 99;
  std::memcpy(ev.data, &sk, sizeof sk);
  DecodeContext ctx;
  ctx.nodeName = "n1";
  ctx.service = [](uint16_t id) -> std::shared_ptr<const ServiceName> {
    if (id == 7) return std::make_shared<const ServiceName>(ServiceName{"web", "default"});
    return nullptr;
  };
  ctx.pod = [](uint32_t a) -> std::shared_ptr<const PodInfo> {
    if (a == htonl(0x0a00020a)) return std::make_shared<const PodInfo>(PodInfo{"p1", "default", {}});
    return nullptr;
  };
  EXPECT_FALSE(decodeEvent(&ev, sizeof ev, ctx));  // no packet to parse
  auto fs = decodeEvents(&ev, sizeof ev, ctx);
  ASSERT_EQ(fs.size(), 2u);
  const flow::Flow &pre = fs[0], &post = fs[1];
  EXPECT_EQ(pre.type(), flow::SOCK);
  EXPECT_EQ(pre.verdict(), flow::TRACED);
  EXPECT_EQ(pre.sock_xlate_point(), flow::SOCK_XLATE_POINT_PRE_DIRECTION_FWD);
  EXPECT_EQ(pre.event_type().type(), 7);
  EXPECT_EQ(pre.event_type().sub_type(), 1);
  EXPECT_EQ(pre.ip().destination(), "10.43.0.20");
  EXPECT_EQ(pre.l4().tcp().destination_port(), 80u);
  EXPECT_EQ(pre.ip().source(), "");  // the socket is not bound yet
  EXPECT_EQ(post.verdict(), flow::TRANSLATED);
  EXPECT_EQ(post.sock_xlate_point(), flow::SOCK_XLATE_POINT_POST_DIRECTION_FWD);
  EXPECT_EQ(post.ip().destination(), "10.0.2.10");
  EXPECT_EQ(post.l4().tcp().destination_port(), 8080u);
  EXPECT_EQ(post.destination().pod_name(), "p1");
  for (const auto& f : fs) {
    EXPECT_EQ(f.destination_service().name(), "web");
    EXPECT_EQ(f.socket_cookie(), 4242u);
    EXPECT_EQ(f.cgroup_id(), 99u);
    EXPECT_EQ(f.node_name(), "n1");
  }
  std::string line = nodepath::agentctl::formatFlowLine(post);
  EXPECT_NE(line.find(": (unbound) -> default/p1:8080 (svc default/web) post-xlate-fwd TRANSLATED TCP"), std::string::npos)
      << line;
  line = nodepath::agentctl::formatFlowLine(pre);
  EXPECT_NE(line.find(": (unbound) -> 10.43.0.20:80 (svc default/web) pre-xlate-fwd TRACED TCP"), std::string::npos)
      << line;
  // Field numbers hubble reads, as in Hubble's flow.proto.
  const auto* d = flow::Flow::descriptor();
  EXPECT_EQ(d->FindFieldByName("sock_xlate_point")->number(), 31);
  EXPECT_EQ(d->FindFieldByName("socket_cookie")->number(), 32);
  EXPECT_EQ(d->FindFieldByName("cgroup_id")->number(), 33);

  EXPECT_FALSE(pre.has_source()) << "no netns cookie, no address: no source pod";

  // An unknown protocol in the record is no flow (counted as undecodable by the reader).
  sk.l4_proto = 1;
  std::memcpy(ev.data, &sk, sizeof sk);
  EXPECT_TRUE(decodeEvents(&ev, sizeof ev, ctx).empty());
  // A record too short for its socket part is refused too.
  EXPECT_TRUE(decodeEvents(&ev, offsetof(np_trace_event, data) + 4, ctx).empty());
}

TEST(FlowsDecode, DropCarriesReasonAndShortOrForeignRecordsAreRefused) {
  np_trace_event ev = synEvent();
  ev.type = NP_EVENT_DROP;
  ev.verdict = NP_VERDICT_DROPPED;
  ev.reason = NP_DROP_NO_SERVICE_BACKEND;
  ev.flags = 0;
  ev.point = NP_TRACE_FROM_NETWORK;
  auto f = decodeEvent(&ev, sizeof ev, {});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->verdict(), flow::DROPPED);
  EXPECT_EQ(f->drop_reason_desc(), flow::SERVICE_BACKEND_NOT_FOUND);
  EXPECT_EQ(f->drop_reason(), 158u);
  EXPECT_EQ(f->traffic_direction(), flow::INGRESS);

  EXPECT_FALSE(decodeEvent(&ev, 10, {}));  // shorter than the header
  np_trace_event arp = synEvent();
  arp.data[12] = 0x08;
  arp.data[13] = 0x06;
  EXPECT_FALSE(decodeEvent(&arp, sizeof arp, {}));
  np_trace_event bad = synEvent();
  bad.cap_len = 200;  // more than the snippet holds
  EXPECT_FALSE(decodeEvent(&bad, sizeof bad, {}));
}

flow::Flow mkFlow(const std::string& src, const std::string& dst, uint32_t dport, flow::Verdict v, int64_t sec = 0) {
  flow::Flow f;
  f.mutable_ip()->set_source(src);
  f.mutable_ip()->set_destination(dst);
  f.mutable_l4()->mutable_tcp()->set_source_port(40000);
  f.mutable_l4()->mutable_tcp()->set_destination_port(dport);
  f.set_verdict(v);
  f.mutable_time()->set_seconds(sec);
  return f;
}

TEST(FlowsStore, KeepsTheLastCapacityFlows) {
  FlowStore s(3);
  for (int i = 0; i < 5; i++) s.push(mkFlow("1.1.1.1", "2.2.2.2", 80 + i, flow::FORWARDED));
  auto st = s.stats();
  EXPECT_EQ(st.seen, 5u);
  EXPECT_EQ(st.num, 3u);
  std::vector<std::pair<uint64_t, flow::Flow>> out;
  EXPECT_EQ(s.read(0, out), 5u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, 2u);
  EXPECT_EQ(out[0].second.l4().tcp().destination_port(), 82u);
}

// The reader keeps records, not messages: a record is rendered when it is read, with the node's
// name and the pod and service names it had when the event came, even if they have gone since.
TEST(FlowsStore, RecordsAreRenderedWhenReadWithTheNamesTheyCameWith) {
  std::unordered_map<uint32_t, std::shared_ptr<const PodInfo>> pods = {
      {htonl(0x0a00010a), std::make_shared<const PodInfo>(PodInfo{"web-1", "default", {}, htonl(0x0a00010a)})}};
  DecodeContext ctx;
  ctx.pod = [&](uint32_t a) -> std::shared_ptr<const PodInfo> {
    auto it = pods.find(a);
    return it == pods.end() ? nullptr : it->second;
  };
  const int64_t offset = 1700000000LL * 1000000000LL;
  FlowStore s(3, "n1", offset);
  FlowRecord recs[2];
  for (int i = 0; i < 5; i++) {
    np_trace_event ev = synEvent();
    ev.ktime = static_cast<uint64_t>(i) * 1000000000ULL;
    const int port = 9000 + i;  // the TCP destination port in the snippet
    ev.data[14 + 20 + 2] = static_cast<uint8_t>(port >> 8);
    ev.data[14 + 20 + 3] = static_cast<uint8_t>(port & 0xff);
    ASSERT_EQ(captureEvent(&ev, sizeof ev, ctx, recs), 1u);
    s.push(recs, 1);
    if (i == 3) pods.clear();  // the pod goes: the last record has no name, the others keep it
  }
  s.push(mkFlow("1.1.1.1", "2.2.2.2", 9999, flow::FORWARDED, 1700000010));  // a message beside them
  std::vector<std::pair<uint64_t, flow::Flow>> out;
  EXPECT_EQ(s.read(0, out), 6u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, 3u);
  EXPECT_EQ(out[0].second.node_name(), "n1");
  EXPECT_EQ(out[0].second.time().seconds(), 1700000003);
  EXPECT_EQ(out[0].second.l4().tcp().destination_port(), 9003u);
  EXPECT_EQ(out[0].second.destination().pod_name(), "web-1");
  EXPECT_EQ(out[1].second.destination().pod_name(), "");
  EXPECT_EQ(out[1].second.ip().destination(), "10.0.1.10");
  EXPECT_EQ(out[2].second.l4().tcp().destination_port(), 9999u);
  auto st = s.stats();
  EXPECT_EQ(st.seen, 6u);
  EXPECT_EQ(st.num, 3u);
  // a read from the middle and a bounded one
  out.clear();
  EXPECT_EQ(s.read(4, out, 1), 5u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, 4u);
  EXPECT_EQ(out[0].second.time().seconds(), 1700000004);
}

TEST(FlowsFilter, IpPortProtocolVerdictAndBlacklist) {
  flow::Flow f = mkFlow("192.168.10.200", "10.0.1.10", 8080, flow::FORWARDED);
  flow::FlowFilter ff;
  ff.add_source_ip("192.168.10.0/24");
  EXPECT_TRUE(matches(ff, f));
  ff.add_destination_port("8080");
  EXPECT_TRUE(matches(ff, f));
  ff.add_verdict(flow::DROPPED);
  EXPECT_FALSE(matches(ff, f));
  flow::FlowFilter p;
  p.add_protocol("udp");
  EXPECT_FALSE(matches(p, f));
  p.add_protocol("TCP");
  EXPECT_TRUE(matches(p, f));
  google::protobuf::RepeatedPtrField<flow::FlowFilter> wl, bl;
  EXPECT_TRUE(allowed(wl, bl, f));
  bl.Add()->add_destination_ip("10.0.1.10");
  EXPECT_FALSE(allowed(wl, bl, f));
}

TEST(FlowsGetFlows, NumberFirstSinceAndFollow) {
  FlowStore s(100);
  for (int i = 0; i < 10; i++) s.push(mkFlow("1.1.1.1", "2.2.2.2", 1000 + i, flow::FORWARDED, 100 + i));
  auto ports = [&](const observer::GetFlowsRequest& req) {
    std::vector<uint32_t> got;
    serveGetFlows(
        s, req, "n1",
        [&](const observer::GetFlowsResponse& r) {
          got.push_back(r.flow().l4().tcp().destination_port());
          EXPECT_EQ(r.node_name(), "n1");
          return true;
        },
        [] { return false; });
    return got;
  };
  observer::GetFlowsRequest last3;
  last3.set_number(3);
  EXPECT_EQ(ports(last3), (std::vector<uint32_t>{1007, 1008, 1009}));
  observer::GetFlowsRequest first2;
  first2.set_number(2);
  first2.set_first(true);
  EXPECT_EQ(ports(first2), (std::vector<uint32_t>{1000, 1001}));
  observer::GetFlowsRequest since;
  since.mutable_since()->set_seconds(108);
  EXPECT_EQ(ports(since), (std::vector<uint32_t>{1008, 1009}));
  observer::GetFlowsRequest filtered;
  filtered.set_number(100);
  filtered.add_whitelist()->add_destination_port("1004");
  EXPECT_EQ(ports(filtered), (std::vector<uint32_t>{1004}));

  // follow: the last 1, then flows pushed while the stream is open, until the client goes.
  observer::GetFlowsRequest follow;
  follow.set_number(1);
  follow.set_follow(true);
  std::atomic<bool> gone{false};
  std::vector<uint32_t> got;
  std::mutex mu;
  std::thread t([&] {
    serveGetFlows(
        s, follow, "n1",
        [&](const observer::GetFlowsResponse& r) {
          std::lock_guard<std::mutex> l(mu);
          got.push_back(r.flow().l4().tcp().destination_port());
          return true;
        },
        [&] { return gone.load(); });
  });
  auto waitFor = [&](size_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> l(mu);
        if (got.size() >= n) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  waitFor(1);  // the history part is out: what comes next is followed
  s.push(mkFlow("1.1.1.1", "2.2.2.2", 2000, flow::FORWARDED, 200));
  waitFor(2);
  gone = true;
  t.join();
  EXPECT_EQ(got, (std::vector<uint32_t>{1009, 2000}));
}

// hubble-relay learns the nodes from one node's peer service: every node is announced with the
// address relay dials, then deletions, additions and address changes as they happen.
TEST(HubblePeers, NotifyAnnouncesEveryNodeThenChanges) {
  auto str = [](const std::vector<peer::ChangeNotification>& v) {
    std::string out;
    for (const auto& n : v)
      out += peer::ChangeNotificationType_Name(n.type()) + " " + n.name() + " " + n.address() + ";";
    return out;
  };
  EXPECT_EQ(str(peerChanges({}, {{"n2", "192.168.10.101:4244"}, {"n1", "192.168.10.100:4244"}})),
            "PEER_ADDED n1 192.168.10.100:4244;PEER_ADDED n2 192.168.10.101:4244;");
  EXPECT_EQ(str(peerChanges({{"n1", "a:1"}, {"n2", "b:1"}}, {{"n1", "a:2"}, {"n3", "c:1"}})),
            "PEER_DELETED n2 b:1;PEER_ADDED n3 c:1;PEER_UPDATED n1 a:2;");
  EXPECT_EQ(str(peerChanges({{"n1", "a:1"}}, {{"n1", "a:1"}})), "");

  PeerSet set;
  uint64_t g0 = 0;
  set.get(&g0);
  set.set({{"n2", "192.168.10.101:4244"}, {"n1", "192.168.10.100:4244"}, {"n1", "dup:1"}});
  uint64_t g1 = 0;
  auto now = set.get(&g1);
  ASSERT_EQ(now.size(), 2u);  // sorted, the duplicate name dropped
  EXPECT_EQ(now[0], (Peer{"n1", "192.168.10.100:4244"}));
  EXPECT_NE(g0, g1);
  set.set(now);  // unchanged: no wake-up
  uint64_t g2 = 0;
  set.get(&g2);
  EXPECT_EQ(g1, g2);

  std::atomic<bool> gone{false};
  std::mutex mu;
  std::vector<peer::ChangeNotification> got;
  std::thread t([&] {
    servePeers(
        set,
        [&](const peer::ChangeNotification& n) {
          std::lock_guard<std::mutex> l(mu);
          got.push_back(n);
          return true;
        },
        [&] { return gone.load(); });
  });
  auto waitFor = [&](size_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> l(mu);
        if (got.size() >= n) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  waitFor(2);
  set.set({{"n1", "192.168.10.100:4244"}});  // n2 left the cluster
  waitFor(3);
  gone = true;
  t.join();
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(str(got), "PEER_ADDED n1 192.168.10.100:4244;PEER_ADDED n2 192.168.10.101:4244;"
                      "PEER_DELETED n2 192.168.10.101:4244;");

  // A closed set (agent shutdown) ends the stream even while the client stays.
  PeerSet closing;
  closing.set({{"n1", "a:1"}});
  std::thread t2([&] { servePeers(closing, [](const peer::ChangeNotification&) { return true; }, [] { return false; }); });
  closing.close();
  t2.join();
}

TEST(FlowsServices, EveryIdOfAServiceNamesIt) {
  std::map<std::string, lb::Service> svcs;
  lb::Service web;
  web.name = "default/web:http";
  web.port = 80;
  web.clusterIp = Ipv4::parse("10.43.0.20");
  web.nodePort = 30080;
  svcs[web.name] = web;
  lb::Service db = web;
  db.name = "shop/db";
  svcs[db.name] = db;
  lb::Service unapplied = web;
  unapplied.name = "default/pending";
  svcs[unapplied.name] = unapplied;
  // The IDs the reconciler gave their frontends (Reconciler::serviceIds, tested with it).
  auto ids = [](const lb::Service& s) {
    if (s.name == "default/web:http") return std::vector<uint16_t>{3, 4};
    if (s.name == "shop/db") return std::vector<uint16_t>{5};
    return std::vector<uint16_t>{};
  };
  auto names = serviceNames(svcs, ids);
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[3].name, "web");
  EXPECT_EQ(names[3].ns, "default");
  EXPECT_EQ(names[4].name, "web");
  EXPECT_EQ(names[5].name, "db");
  EXPECT_EQ(names[5].ns, "shop");
}

TEST(FlowsServices, HostPortsAreNamedInThePodsNamespace) {
  EXPECT_EQ(splitServiceName("hostport/default/web-1/tcp/9080").name, "hostport/web-1/tcp/9080");
  EXPECT_EQ(splitServiceName("hostport/default/web-1/tcp/9080").ns, "default");
  EXPECT_EQ(splitServiceName("hostport/shop/cart-0/tcp/9081").name, "hostport/cart-0/tcp/9081");
  EXPECT_EQ(splitServiceName("hostport/shop/cart-0/tcp/9081").ns, "shop");
  EXPECT_EQ(splitServiceName("default/web:http").name, "web");
  EXPECT_EQ(splitServiceName("web").name, "web");
  EXPECT_EQ(splitServiceName("web").ns, "");
}

struct FakeEndpoint {
  std::string podName, podNamespace;
  Ipv4 ip;
};

TEST(FlowsDecode, PodsAreNamedOnBothSidesAndThePodFiltersSelectThem) {
  std::vector<FakeEndpoint> eps = {{"web-1", "default", *Ipv4::parse("10.0.1.10")},
                                   {"", "", *Ipv4::parse("10.0.1.11")},  // no pod name given: not named
                                   {"client", "shop", *Ipv4::parse("192.168.10.200")}};
  auto pods = podsByAddress(eps);
  ASSERT_EQ(pods.size(), 2u);
  DecodeContext ctx;
  ctx.pod = [&](uint32_t a) -> std::shared_ptr<const PodInfo> {
    auto it = pods.find(a);
    if (it == pods.end()) return nullptr;
    return std::make_shared<const PodInfo>(it->second);
  };
  np_trace_event ev = synEvent();
  auto f = decodeEvent(&ev, sizeof ev, ctx);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->source().pod_name(), "client");
  EXPECT_EQ(f->source().namespace_(), "shop");
  EXPECT_EQ(f->destination().pod_name(), "web-1");
  EXPECT_EQ(f->destination().namespace_(), "default");
  ASSERT_EQ(f->destination().labels_size(), 1);
  EXPECT_EQ(f->destination().labels(0), "k8s:io.kubernetes.pod.namespace=default");

  flow::FlowFilter to;
  to.add_destination_pod("default/web");
  EXPECT_TRUE(matches(to, *f));
  flow::FlowFilter from;
  from.add_source_pod("default/web-1");
  EXPECT_FALSE(matches(from, *f));
  from.set_source_pod(0, "shop/client");
  EXPECT_TRUE(matches(from, *f));
  flow::FlowFilter otherNs;
  otherNs.add_destination_pod("kube-system/web-1");
  EXPECT_FALSE(matches(otherNs, *f));

  // A SNAT'd source is named by its address before translation.
  ev.flags = NP_EVENT_F_XLATED;
  ev.orig_saddr = Ipv4::parse("10.0.1.11")->be;  // unnamed
  f = decodeEvent(&ev, sizeof ev, ctx);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->source().pod_name(), "");
  ev.orig_saddr = Ipv4::parse("10.0.1.10")->be;
  f = decodeEvent(&ev, sizeof ev, ctx);
  EXPECT_EQ(f->source().pod_name(), "web-1");
  EXPECT_EQ(nodepath::agentctl::formatFlowLine(*f).find("default/web-1:40000 (as 192.168.10.200)") != std::string::npos,
            true)
      << nodepath::agentctl::formatFlowLine(*f);
}

TEST(FlowsAgentctl, FlagsBecomeHubbleFiltersAndLinesReadLikeHubble) {
  nodepath::agentctl::FlowsInvocation inv;
  EXPECT_EQ(nodepath::agentctl::parseFlowsArgs({"--last", "5", "--ip", "10.0.1.10", "--protocol", "tcp", "--verdict",
                                                "dropped"},
                                               "/run/x/hubble.sock", inv),
            "");
  EXPECT_EQ(inv.request.number(), 5u);
  ASSERT_EQ(inv.request.whitelist_size(), 2);
  EXPECT_EQ(inv.request.whitelist(0).source_ip(0), "10.0.1.10");
  EXPECT_EQ(inv.request.whitelist(1).destination_ip(0), "10.0.1.10");
  EXPECT_EQ(inv.request.whitelist(1).verdict(0), flow::DROPPED);
  EXPECT_EQ(inv.server, "/run/x/hubble.sock");
  nodepath::agentctl::FlowsInvocation bad;
  EXPECT_NE(nodepath::agentctl::parseFlowsArgs({"--verdict", "maybe"}, "s", bad), "");
  EXPECT_NE(nodepath::agentctl::parseFlowsArgs({"--frob"}, "s", bad), "");
  nodepath::agentctl::FlowsInvocation pods;
  EXPECT_EQ(nodepath::agentctl::parseFlowsArgs({"--pod", "default/web-1"}, "s", pods), "");
  ASSERT_EQ(pods.request.whitelist_size(), 2);
  EXPECT_EQ(pods.request.whitelist(0).source_pod(0), "default/web-1");
  EXPECT_EQ(pods.request.whitelist(1).destination_pod(0), "default/web-1");
  nodepath::agentctl::FlowsInvocation from;
  EXPECT_EQ(nodepath::agentctl::parseFlowsArgs({"--from-pod", "default/web-1"}, "s", from), "");
  ASSERT_EQ(from.request.whitelist_size(), 1);
  EXPECT_EQ(from.request.whitelist(0).source_pod(0), "default/web-1");

  flow::Flow f = mkFlow("192.168.10.200", "10.0.1.10", 8080, flow::DROPPED);
  f.set_drop_reason_desc(flow::SERVICE_BACKEND_NOT_FOUND);
  f.set_trace_observation_point(flow::FROM_NETWORK);
  f.mutable_l4()->mutable_tcp()->mutable_flags()->set_syn(true);
  std::string line = nodepath::agentctl::formatFlowLine(f);
  EXPECT_NE(line.find("192.168.10.200:40000 -> 10.0.1.10:8080"), std::string::npos) << line;
  EXPECT_NE(line.find("from-network DROPPED (SERVICE_BACKEND_NOT_FOUND) (TCP Flags: SYN)"), std::string::npos) << line;
}


TEST(FlowsDecode, SocketTranslationNamesItsSourcePodByNetnsCookie) {
  np_trace_event ev{};
  ev.type = NP_EVENT_TRACE_SOCK;
  ev.verdict = NP_VERDICT_TRANSLATED;
  ev.flags = NP_EVENT_F_XLATED;
  ev.orig_daddr = htonl(0x0a2b0014);  // 10.43.0.20, unbound socket: no source address
  ev.orig_dport = htons(80);
  np_trace_sock sk{};
  sk.xlated_daddr = htonl(0x0a00020a);
  sk.xlated_dport = htons(8080);
  sk.l4_proto = 17;
  sk.netns_cookie = 0x1234;
  std::memcpy(ev.data, &sk, sizeof sk);
  DecodeContext ctx;
  ctx.podByNetns = [](uint64_t c) -> std::shared_ptr<const PodInfo> {
    if (c == 0x1234)
      return std::make_shared<const PodInfo>(PodInfo{"client", "team-a", {"k8s:io.kubernetes.pod.namespace=team-a"}, htonl(0x0a000105)});
    return nullptr;
  };
  auto fs = decodeEvents(&ev, sizeof ev, ctx);
  ASSERT_EQ(fs.size(), 2u);
  for (const auto& f : fs) {
    EXPECT_EQ(f.source().pod_name(), "client");
    EXPECT_EQ(f.source().namespace_(), "team-a");
    ASSERT_EQ(f.source().labels_size(), 1);
    EXPECT_EQ(f.source().labels(0), "k8s:io.kubernetes.pod.namespace=team-a");
    EXPECT_EQ(f.ip().source(), "10.0.1.5") << "an unbound socket's source is its pod's address";
  }
  EXPECT_EQ(fs[1].l4().udp().destination_port(), 8080u);
  std::string line = nodepath::agentctl::formatFlowLine(fs[1]);
  EXPECT_NE(line.find("team-a/client"), std::string::npos) << line;

  // A cookie no pod has (the host's): no source pod, and the address stays unknown.
  sk.netns_cookie = 0x9999;
  std::memcpy(ev.data, &sk, sizeof sk);
  fs = decodeEvents(&ev, sizeof ev, ctx);
  ASSERT_EQ(fs.size(), 2u);
  EXPECT_FALSE(fs[0].has_source());
  EXPECT_EQ(fs[0].ip().source(), "");
}

}  // namespace
}  // namespace np::flows
