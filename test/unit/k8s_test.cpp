// The Kubernetes client's pure parts: decoders on complete objects as the API server returns
// them (test/unit/k8s_fixtures, with fields this agent does not know), watch framing (events split
// across reads, blank lines, ERROR 410, bookmarks), kube-proxy's slice merging and endpoint
// conditions, and kubeconfig parsing.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "k8s/kubeconfig.h"
#include "k8s/lease.h"
#include "k8s/objects.h"
#include "k8s/reflector.h"
#include "k8s/refused.h"
#include "k8s/service_cache.h"
#include "k8s/watch.h"

namespace np::k8s {
namespace {

namespace json = boost::json;

json::object fixture(const std::string& name) {
  std::ifstream in(std::string(NP_K8S_FIXTURES) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_FALSE(ss.str().empty()) << name;
  return json::parse(ss.str()).as_object();
}

K8sService svc(const std::string& f) {
  auto s = decodeService(fixture(f));
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  return s.ok() ? *s : K8sService{};
}
K8sSlice slice(const std::string& f) {
  auto s = decodeSlice(fixture(f));
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  return s.ok() ? *s : K8sSlice{};
}

TEST(K8sDecode, NodePortServiceWithUnknownFields) {
  K8sService s = svc("service_nodeport.json");
  EXPECT_EQ(s.key(), "default/web");
  EXPECT_FALSE(s.resourceVersion.empty());
  EXPECT_EQ(s.type, "NodePort");
  EXPECT_EQ(s.clusterIp, "10.43.0.20");
  ASSERT_EQ(s.ports.size(), 3u);
  EXPECT_EQ(s.ports[0].name, "http");
  EXPECT_EQ(s.ports[0].port, 80);
  EXPECT_EQ(s.ports[0].nodePort, 30080);
  EXPECT_EQ(s.ports[1].protocol, Protocol::Udp);
  EXPECT_FALSE(s.ports[2].supported);  // SCTP
  EXPECT_EQ(s.externalIps, std::vector<std::string>{"203.0.113.7"});
  EXPECT_EQ(s.sessionAffinity, "ClientIP");
  EXPECT_EQ(s.affinityTimeoutSec, 600u);
  EXPECT_EQ(s.externalTrafficPolicy, "Local");
}

TEST(K8sDecode, FieldsFromNewerServersAreIgnored) {
  json::object o = fixture("service_nodeport.json");
  o["spec"].as_object()["futureField"] = json::object{{"x", 1}};
  o["status"].as_object()["conditions"] = json::array{json::object{{"type", "Something"}}};
  o["spec"].as_object()["ports"].as_array()[0].as_object()["appProtocol"] = "http";
  auto s = decodeService(o);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(s->ports.size(), 3u);
}

TEST(K8sWatch, RealWatchStreamInRandomChunks) {
  // Captured from kube-apiserver v1.36.3 (watch with bookmarks, timeoutSeconds=1): five ADDEDs,
  // then the BOOKMARK the server sends before closing.
  std::ifstream in(std::string(NP_K8S_FIXTURES) + "/watch_services.jsonl");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string stream = ss.str();
  ASSERT_FALSE(stream.empty());
  for (size_t step : {1u, 7u, 100u, 4096u}) {
    WatchFramer f;
    size_t added = 0, bookmarks = 0, decoded = 0;
    for (size_t at = 0; at < stream.size(); at += step) {
      auto objs = f.feed(std::string_view(stream).substr(at, step));
      ASSERT_TRUE(objs.ok());
      for (const std::string& t : *objs) {
        auto e = parseEvent(t);
        ASSERT_TRUE(e.ok()) << e.error().message();
        if (e->type == EventType::Bookmark) {
          ++bookmarks;
          EXPECT_FALSE(resourceVersionOf(e->object).empty());
          continue;
        }
        ++added;
        if (decodeService(e->object).ok()) ++decoded;
      }
    }
    EXPECT_GE(added, 5u) << "step " << step;
    EXPECT_EQ(decoded, added);
    EXPECT_EQ(bookmarks, 1u);
    EXPECT_EQ(f.pending(), 0u);
  }
}

TEST(K8sDecode, LoadBalancerIngressIpsOnly) {
  K8sService s = svc("service_lb.json");
  EXPECT_EQ(s.lbIngressIps, std::vector<std::string>{"198.51.100.10"});  // the hostname entry has no ip
  EXPECT_EQ(s.internalTrafficPolicy, "Local");
}

TEST(K8sDecode, LabelsAndLoadBalancerClassForL2Announcements) {
  json::object o = fixture("service_lb.json");
  o["metadata"].as_object()["labels"] = json::object{{"app", "web"}, {"announce", "yes"}};
  o["spec"].as_object()["loadBalancerClass"] = "io.cilium/l2-announcer";
  auto s = decodeService(o);
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(s->labels, (std::map<std::string, std::string>{{"announce", "yes"}, {"app", "web"}}));
  EXPECT_EQ(s->loadBalancerClass, std::optional<std::string>("io.cilium/l2-announcer"));
  EXPECT_FALSE(svc("service_nodeport.json").loadBalancerClass.has_value());
  o["metadata"].as_object()["labels"].as_object()["app"] = 7;
  auto bad = decodeService(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("metadata.labels[app]"), std::string::npos) << bad.error().message();
}

TEST(K8sDecode, WrongTypeNamesObjectAndField) {
  json::object o = fixture("service_nodeport.json");
  o["spec"].as_object()["ports"].as_array()[0].as_object()["port"] = "eighty";
  auto s = decodeService(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("Service default/web"), std::string::npos) << s.error().message();
  EXPECT_NE(s.error().message().find("spec.ports[0].port"), std::string::npos) << s.error().message();
  o["spec"].as_object()["ports"].as_array()[0].as_object()["port"] = 70000;
  EXPECT_FALSE(decodeService(o).ok());
  json::object noName = fixture("service_lb.json");
  noName["metadata"].as_object().erase("name");
  EXPECT_FALSE(decodeService(noName).ok());
}

TEST(K8sDecode, SliceConditionsDefaults) {
  K8sSlice s = slice("slice_web_a.json");
  EXPECT_EQ(s.serviceKey(), "default/web");
  ASSERT_EQ(s.endpoints.size(), 4u);
  EXPECT_TRUE(s.endpoints[0].ready);
  EXPECT_EQ(s.endpoints[0].nodeName, "n1");
  EXPECT_FALSE(s.endpoints[1].ready);
  EXPECT_TRUE(s.endpoints[1].serving);
  EXPECT_TRUE(s.endpoints[1].terminating);
  // unset conditions: ready (and so serving), not terminating
  EXPECT_TRUE(s.endpoints[3].ready);
  EXPECT_TRUE(s.endpoints[3].serving);
  EXPECT_FALSE(s.endpoints[3].terminating);
  ASSERT_EQ(s.ports.size(), 2u);
  EXPECT_EQ(s.ports[1].protocol, Protocol::Udp);
  EXPECT_EQ(s.ports[1].port, 8053);
}

// ---- watch framing

std::string ev(const std::string& type, const std::string& obj) { return R"({"type":")" + type + R"(","object":)" + obj + "}"; }

TEST(K8sWatch, EventsSplitAcrossReadsAtEveryByte) {
  const std::string a = ev("ADDED", R"({"metadata":{"name":"a","resourceVersion":"1","annotations":{"x":"}{\"\\"}},"s":"é"})");
  const std::string b = ev("MODIFIED", R"({"metadata":{"name":"b","resourceVersion":"2"},"l":[{"a":[1,2]}]})");
  const std::string stream = a + "\n\n" + b + "\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    WatchFramer f;
    auto first = f.feed(std::string_view(stream).substr(0, cut));
    ASSERT_TRUE(first.ok());
    auto second = f.feed(std::string_view(stream).substr(cut));
    ASSERT_TRUE(second.ok());
    std::vector<std::string> all = *first;
    all.insert(all.end(), second->begin(), second->end());
    ASSERT_EQ(all.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(all[0], a);
    EXPECT_EQ(all[1], b);
    EXPECT_EQ(f.pending(), 0u);
  }
}

TEST(K8sWatch, ByteByByteAndNoTrailingNewline) {
  const std::string stream = ev("ADDED", R"({"metadata":{"resourceVersion":"7"}})") + ev("DELETED", R"({"metadata":{"resourceVersion":"8"}})");
  WatchFramer f;
  std::vector<std::string> got;
  for (char c : stream) {
    auto r = f.feed(std::string_view(&c, 1));
    ASSERT_TRUE(r.ok());
    got.insert(got.end(), r->begin(), r->end());
  }
  ASSERT_EQ(got.size(), 2u);
  auto e = parseEvent(got[1]);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->type, EventType::Deleted);
  EXPECT_EQ(resourceVersionOf(e->object), "8");
}

TEST(K8sWatch, GarbageBetweenEventsIsAnError) {
  WatchFramer f;
  EXPECT_FALSE(f.feed("<html>").ok());
}

TEST(K8sWatch, Error410IsExpired) {
  auto e = parseEvent(ev("ERROR", R"j({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 1 (8146471)","reason":"Expired","code":410})j"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->type, EventType::Error);
  EXPECT_TRUE(e->expired());
  auto gone = parseEvent(ev("ERROR", R"({"kind":"Status","reason":"Gone","code":410})"));
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->expired());
  auto other = parseEvent(ev("ERROR", R"({"kind":"Status","reason":"InternalError","code":500})"));
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->expired());
}

TEST(K8sWatch, BookmarkCarriesResourceVersion) {
  auto e = parseEvent(ev("BOOKMARK", R"({"kind":"Service","apiVersion":"v1","metadata":{"resourceVersion":"12345","creationTimestamp":null}})"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->type, EventType::Bookmark);
  EXPECT_EQ(resourceVersionOf(e->object), "12345");
}

TEST(K8sWatch, BadEvents) {
  EXPECT_FALSE(parseEvent(R"({"type":"SOMETHING","object":{}})").ok());
  EXPECT_FALSE(parseEvent(R"({"object":{}})").ok());
  EXPECT_FALSE(parseEvent(R"({"type":"ADDED"})").ok());
  EXPECT_FALSE(parseEvent("{").ok());
}

TEST(K8sWatch, StatusBody) {
  ApiStatus s = parseStatus(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the resourceVersion for the provided list is too old","reason":"Expired","code":410})");
  EXPECT_EQ(s.code, 410);
  EXPECT_EQ(s.reason, "Expired");
}

// ---- kube-proxy semantics

const lb::Service* find(const std::vector<lb::Service>& v, const std::string& name) {
  for (const auto& s : v)
    if (s.name == name) return &s;
  return nullptr;
}

TEST(K8sMerge, SlicesMergedPerServicePortByNameAndProtocol) {
  K8sService s = svc("service_nodeport.json");
  K8sSlice a = slice("slice_web_a.json"), b = slice("slice_web_b.json");
  auto m = toModel(s, {&a, &b});
  ASSERT_EQ(m.size(), 2u);  // http/TCP, dns/UDP; SCTP skipped
  const lb::Service* http = find(m, "default/web:http");
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->source, "kubernetes");
  EXPECT_EQ(http->port, 80);
  EXPECT_EQ(http->nodePort, 30080);
  EXPECT_EQ(http->clusterIp, Ipv4::parse("10.43.0.20"));
  EXPECT_EQ(http->externalIps.size(), 1u);
  EXPECT_EQ(http->sessionAffinity, lb::SessionAffinity::ClientIp);
  EXPECT_EQ(http->affinityTimeoutSec, 600u);
  EXPECT_EQ(http->externalTrafficPolicy, lb::TrafficPolicy::Local);
  // 10.0.1.10 (in both slices, once), 10.0.1.20, 10.0.2.12 (no conditions: ready) active;
  // 10.0.2.10 serving+terminating kept as terminating; 10.0.2.11 not serving: out.
  ASSERT_EQ(http->backends.size(), 4u);
  std::map<std::string, lb::BackendState> st;
  for (const auto& be : http->backends) st[be.addr.str()] = be.state;
  EXPECT_EQ(st.at("10.0.1.10:8080"), lb::BackendState::Active);
  EXPECT_EQ(st.at("10.0.1.20:8080"), lb::BackendState::Active);
  EXPECT_EQ(st.at("10.0.2.12:8080"), lb::BackendState::Active);
  EXPECT_EQ(st.at("10.0.2.10:8080"), lb::BackendState::Terminating);
  EXPECT_EQ(st.count("10.0.2.11:8080"), 0u);
  // dns/UDP matches slice a's dns/UDP port only (slice b's UDP port is "metrics")
  const lb::Service* dns = find(m, "default/web:dns");
  ASSERT_NE(dns, nullptr);
  EXPECT_EQ(dns->protocol, Protocol::Udp);
  for (const auto& be : dns->backends) EXPECT_EQ(be.addr.port, 8053);
  EXPECT_EQ(dns->backends.size(), 3u);
  // node names come along (traffic policy Local)
  for (const auto& be : http->backends)
    if (be.addr.str() == "10.0.1.20:8080") {
      EXPECT_EQ(be.nodeName, "n1");
    }
}

TEST(K8sMerge, LoadBalancerFrontendsAndUnnamedPort) {
  K8sService s = svc("service_lb.json");
  auto m = toModel(s, {});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].name, "default/api");
  EXPECT_EQ(m[0].nodePort, 31443);
  ASSERT_EQ(m[0].loadBalancerIps.size(), 1u);
  EXPECT_EQ(m[0].loadBalancerIps[0], *Ipv4::parse("198.51.100.10"));
  EXPECT_EQ(m[0].internalTrafficPolicy, lb::TrafficPolicy::Local);
  EXPECT_TRUE(m[0].backends.empty());
}

// L2 announcements take their addresses from the same rule (l2::fromK8s): what the datapath
// has no frontend for is never announced.
TEST(K8sMerge, AnnouncedAddressesAreTheDatapathsFrontends) {
  K8sService s = svc("service_lb.json");
  s.externalIps = {"203.0.113.9", "203.0.113.9", "not-an-ip"};
  auto m = toModel(s, {});
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(loadBalancerIpsOf(s), m[0].loadBalancerIps);
  EXPECT_EQ(externalIpsOf(s), m[0].externalIps);
  EXPECT_EQ(externalIpsOf(s), std::vector<Ipv4>{*Ipv4::parse("203.0.113.9")});
  // Changed to ClusterIP with the old status still there: no LoadBalancer address any more.
  s.type = "ClusterIP";
  EXPECT_TRUE(loadBalancerIpsOf(s).empty());
  EXPECT_TRUE(toModel(s, {})[0].loadBalancerIps.empty());
  // Skipped services have none at all.
  for (const char* f : {"service_headless.json", "service_externalname.json"}) {
    K8sService x = svc(f);
    x.lbIngressIps = {"198.51.100.10"};
    x.externalIps = {"203.0.113.9"};
    EXPECT_TRUE(loadBalancerIpsOf(x).empty()) << f;
    EXPECT_TRUE(externalIpsOf(x).empty()) << f;
  }
}

TEST(K8sMerge, HeadlessAndExternalNameSkipped) {
  EXPECT_TRUE(toModel(svc("service_headless.json"), {}).empty());
  EXPECT_TRUE(toModel(svc("service_externalname.json"), {}).empty());
}

TEST(K8sMerge, ClusterIpServiceHasNoNodePort) {
  K8sService s = svc("service_nodeport.json");
  s.type = "ClusterIP";
  auto m = toModel(s, {});
  for (const auto& x : m) EXPECT_EQ(x.nodePort, 0);
}

// kube-proxy uses only addresses[0] (the API calls an endpoint's addresses fungible); a first
// address that is not IPv4 makes the endpoint serve nothing here.
TEST(K8sDecode, OnlyAnEndpointsFirstAddressCounts) {
  json::object o = fixture("slice_web_b.json");
  json::array& eps = o["endpoints"].as_array();
  eps[0].as_object()["addresses"] = json::array{"10.0.1.11", "10.0.1.12"};
  eps[1].as_object()["addresses"] = json::array{"not-an-ip", "10.0.1.21"};
  auto sl = decodeSlice(o);
  ASSERT_TRUE(sl.ok()) << sl.error().message();
  EXPECT_EQ(sl->endpoints[0].address, Ipv4::parse("10.0.1.11"));
  EXPECT_FALSE(sl->endpoints[1].address.has_value());
  EXPECT_EQ(sl->endpoints[1].nodeName, "n1");
  EXPECT_TRUE(sl->endpoints[0].nodeName.empty());
  auto m = toModel(svc("service_nodeport.json"), {&*sl});
  const lb::Service* http = find(m, "default/web:http");
  ASSERT_NE(http, nullptr);
  ASSERT_EQ(http->backends.size(), 1u);
  EXPECT_EQ(http->backends[0].addr.str(), "10.0.1.11:8080");
  // still a string array or an error
  eps[0].as_object()["addresses"] = json::array{"10.0.1.11", 7};
  EXPECT_FALSE(decodeSlice(o).ok());
}

TEST(K8sDecode, NodeNamesAreHeldOnce) {
  K8sSlice a = slice("slice_web_a.json");
  K8sSlice b = slice("slice_web_a.json");
  EXPECT_EQ(a.endpoints[1].nodeName, b.endpoints[1].nodeName);
  EXPECT_EQ(&a.endpoints[1].nodeName.str(), &b.endpoints[2].nodeName.str());  // one "n2" for all
  EXPECT_EQ(a.endpoints[1].nodeName.str(), "n2");
  EXPECT_FALSE(a.endpoints[0].nodeName == a.endpoints[1].nodeName);
}

// A relist streams every object into the cache again: the unchanged ones (a resourceVersion bump
// alone included) touch no service, the gone ones are deleted.
TEST(K8sCache, ARelistOfAnUnchangedClusterChangesNothing) {
  ServiceCache c;
  c.upsertService(svc("service_nodeport.json"));
  c.upsertService(svc("service_lb.json"));
  c.upsertSlice(slice("slice_web_a.json"));
  c.upsertSlice(slice("slice_web_b.json"));
  EXPECT_EQ(c.takeChange().upserts.size(), 3u);
  // the relist: the same objects, one with only its resourceVersion moved
  K8sService web = svc("service_nodeport.json");
  web.resourceVersion = "999999";
  c.upsertService(web);
  c.upsertService(svc("service_lb.json"));
  K8sSlice a = slice("slice_web_a.json");
  a.resourceVersion = "999998";
  c.upsertSlice(a);
  c.upsertSlice(slice("slice_web_b.json"));
  c.retainServices({"default/web", "default/api"});
  c.retainSlices({a.key(), slice("slice_web_b.json").key()});
  EXPECT_FALSE(c.dirty());
  lb::Change ch = c.takeChange();
  EXPECT_TRUE(ch.upserts.empty());
  EXPECT_TRUE(ch.deletes.empty());
  // a real change in a relist, and a slice and a service gone
  a.endpoints[0].ready = false;
  a.endpoints[0].serving = false;
  c.upsertSlice(a);
  c.retainSlices({a.key()});
  c.retainServices({"default/web"});
  ch = c.takeChange();
  ASSERT_EQ(ch.upserts.size(), 2u);  // web's two ports
  std::set<std::string> backends;
  for (const auto& be : find(ch.upserts, "default/web:http")->backends) backends.insert(be.addr.str());
  EXPECT_EQ(backends, (std::set<std::string>{"10.0.2.10:8080", "10.0.2.12:8080"}));
  EXPECT_EQ(ch.deletes, std::vector<std::string>{"default/api"});
  EXPECT_EQ(c.services(), 1u);
  EXPECT_EQ(c.slices(), 1u);
}

TEST(K8sCache, ChangesFollowSlicesAndServices) {
  ServiceCache c;
  c.upsertSlice(slice("slice_web_a.json"));  // before its service: nothing to emit yet
  lb::Change ch = c.takeChange();
  EXPECT_TRUE(ch.upserts.empty());
  c.upsertService(svc("service_nodeport.json"));
  ch = c.takeChange();
  EXPECT_EQ(ch.upserts.size(), 2u);
  EXPECT_EQ(c.modelServices(), 2u);
  // scale: slice b adds 10.0.1.20
  c.upsertSlice(slice("slice_web_b.json"));
  ch = c.takeChange();
  ASSERT_EQ(ch.upserts.size(), 2u);
  const lb::Service* http = find(ch.upserts, "default/web:http");
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->backends.size(), 4u);
  // slices deleted: no backends
  c.deleteSlice("default/web-abcde");
  c.deleteSlice("default/web-fghij");
  ch = c.takeChange();
  http = find(ch.upserts, "default/web:http");
  ASSERT_NE(http, nullptr);
  EXPECT_TRUE(http->backends.empty());
  // a port removed: its model service is deleted
  K8sService s = svc("service_nodeport.json");
  s.ports.erase(s.ports.begin() + 1);
  c.upsertService(s);
  ch = c.takeChange();
  EXPECT_EQ(ch.deletes, std::vector<std::string>{"default/web:dns"});
  // the service deleted
  c.deleteService("default/web");
  ch = c.takeChange();
  EXPECT_TRUE(ch.upserts.empty());
  EXPECT_EQ(ch.deletes, std::vector<std::string>{"default/web:http"});
  EXPECT_EQ(c.modelServices(), 0u);
  EXPECT_FALSE(c.dirty());
}

TEST(K8sCache, RelistDeletesWhatVanished) {
  ServiceCache c;
  c.upsertService(svc("service_nodeport.json"));
  c.upsertService(svc("service_lb.json"));
  (void)c.takeChange();
  std::vector<K8sService> now{svc("service_lb.json")};
  c.replaceServices(now);
  lb::Change ch = c.takeChange();
  std::sort(ch.deletes.begin(), ch.deletes.end());
  EXPECT_EQ(ch.deletes, (std::vector<std::string>{"default/web:dns", "default/web:http"}));
  EXPECT_TRUE(ch.upserts.empty());  // default/api is unchanged: not re-emitted
  // a slice relist that drops a slice
  c.upsertSlice(slice("slice_web_a.json"));
  (void)c.takeChange();
  c.replaceSlices({});
  EXPECT_EQ(c.slices(), 0u);
}

// ---- ListParser: a LIST body parsed as it arrives, one item at a time

std::string listBody() {
  std::string body = R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1",)"
                     R"("metadata":{"resourceVersion":"4242","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDI0Mn0",)"
                     R"("remainingItemCount":2,"nested":{"resourceVersion":"not-this-one"}},"items":[)";
  std::ifstream a(std::string(NP_K8S_FIXTURES) + "/slice_web_a.json"), b(std::string(NP_K8S_FIXTURES) + "/slice_web_b.json");
  std::stringstream sa, sb;
  sa << a.rdbuf();
  sb << b.rdbuf();
  std::string ta = sa.str(), tb = sb.str();
  while (!ta.empty() && ta.back() == '\n') ta.pop_back();
  while (!tb.empty() && tb.back() == '\n') tb.pop_back();
  return body + ta + "," + tb + R"(],"trailing":[1,2.5,true,null,"x"]})";
}

TEST(K8sListParser, ItemsAndMetadataWhateverTheSplit) {
  const std::string body = listBody();
  std::vector<std::string> want;
  const json::value whole = json::parse(body);
  for (const json::value& v : whole.as_object().at("items").as_array()) want.push_back(json::serialize(v));
  // every split point, and byte by byte
  std::vector<size_t> steps{1, 7, 64, body.size()};
  for (size_t cut = 1; cut < body.size(); cut += 97) steps.push_back(cut);
  for (size_t step : steps) {
    std::vector<std::string> got;
    std::vector<std::string> names;
    ListParser p([&](const json::object& o) -> Status {
      got.push_back(json::serialize(o));
      auto sl = decodeSlice(o);
      if (!sl) return sl.error();
      names.push_back(sl->key());
      return {};
    });
    for (size_t at = 0; at < body.size(); at += step) ASSERT_TRUE(p.feed(std::string_view(body).substr(at, step))) << step;
    ASSERT_TRUE(p.finish()) << step;
    EXPECT_EQ(got, want) << "step " << step;
    EXPECT_EQ(names, (std::vector<std::string>{"default/web-abcde", "default/web-fghij"}));
    EXPECT_EQ(p.items(), 2u);
    EXPECT_EQ(p.resourceVersion(), "4242");
    EXPECT_EQ(p.continueToken(), "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDI0Mn0");
  }
}

TEST(K8sListParser, AnItemIsHandedOverBeforeTheNextArrives) {
  const std::string body = listBody();
  size_t seen = 0;
  ListParser p([&](const json::object&) -> Status {
    ++seen;
    return {};
  });
  const size_t second = body.find(R"({"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"name":"web-fghij")");
  ASSERT_NE(second, std::string::npos);
  ASSERT_TRUE(p.feed(std::string_view(body).substr(0, second)));
  EXPECT_EQ(seen, 1u);  // the first item is out; nothing of it need be kept
  ASSERT_TRUE(p.feed(std::string_view(body).substr(second)));
  ASSERT_TRUE(p.finish());
  EXPECT_EQ(seen, 2u);
}

TEST(K8sListParser, EmptyListsAndBadAnswers) {
  {
    ListParser p([](const json::object&) -> Status { return error("test", "no item expected"); });
    ASSERT_TRUE(p.feed(R"({"kind":"ServiceList","metadata":{"resourceVersion":"7"},"items":[]})"));
    ASSERT_TRUE(p.finish());
    EXPECT_EQ(p.resourceVersion(), "7");
    EXPECT_EQ(p.continueToken(), "");
  }
  {
    ListParser p([](const json::object&) -> Status { return {}; });
    ASSERT_TRUE(p.feed(R"({"items":[{"a":1})"));
    Status st = p.finish();  // cut short
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message().find("not valid JSON"), std::string::npos) << st.error().message();
  }
  for (const char* bad : {"[1,2]", "\"text\"", "42", "{\"items\":[}"}) {
    ListParser p([](const json::object&) -> Status { return {}; });
    Status st = p.feed(bad);
    if (st) st = p.finish();
    EXPECT_FALSE(st) << bad;
  }
  {
    // the consumer's error stops the list and is the list's error
    size_t calls = 0;
    ListParser p([&](const json::object&) -> Status {
      ++calls;
      return error("decode", "refused");
    });
    Status st = p.feed(listBody());
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message().find("refused"), std::string::npos) << st.error().message();
    EXPECT_EQ(calls, 1u);
    EXPECT_FALSE(p.feed("more"));
  }
}

// ---- kubeconfig

TEST(K8sKubeconfig, InlineDataAndCurrentContext) {
  const std::string text = R"(apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: "https://10.9.9.9:1"}
- name: lab
  cluster:
    server: https://192.168.10.100:6443
    certificate-authority-data: LS0tLS1CRUdJTg==
users:
- name: admin
  user:
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
preferences: {}
)";
  auto c = parseKubeconfig(text, "/tmp");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->host, "192.168.10.100");
  EXPECT_EQ(c->port, "6443");
  EXPECT_EQ(c->caPem, "-----BEGIN");
  EXPECT_EQ(c->clientCertPem, "cert");
  EXPECT_EQ(c->clientKeyPem, "key");
}

TEST(K8sKubeconfig, Errors) {
  EXPECT_FALSE(parseKubeconfig("current-context: x\n", "/").ok());
  EXPECT_FALSE(parseKubeconfig("[1, 2", "/").ok());
  auto exec = parseKubeconfig(R"(clusters: [{name: c, cluster: {server: "https://a"}}]
users: [{name: u, user: {exec: {command: x}}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
)", "/");
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.error().message().find("exec"), std::string::npos);
  auto http = parseKubeconfig(R"(clusters: [{name: c, cluster: {server: "http://a"}}]
contexts: [{name: x, context: {cluster: c}}]
current-context: x
)", "/");
  EXPECT_FALSE(http.ok());
}

TEST(K8sKubeconfig, ServerSplitting) {
  ApiConfig c;
  ASSERT_TRUE(splitServer(c, "https://[fd00::1]:6443").ok());
  EXPECT_EQ(c.host, "fd00::1");
  EXPECT_EQ(c.port, "6443");
  ASSERT_TRUE(splitServer(c, "https://api.example/").ok());
  EXPECT_EQ(c.port, "443");
  EXPECT_FALSE(splitServer(c, "https://a:6443/k8s").ok());
  EXPECT_FALSE(splitServer(c, "https://a:x").ok());
}

TEST(K8sKubeconfig, TokenFileReReadWhenForced) {
  const std::string path = ::testing::TempDir() + "/np-k8s-token";
  { std::ofstream(path) << "one\n"; }
  ApiConfig cfg;
  cfg.tokenFile = path;
  TokenSource t(cfg);
  EXPECT_EQ(t.get().value(), "one");
  { std::ofstream(path) << "two"; }
  EXPECT_EQ(t.get().value(), "one");      // cached for a minute
  EXPECT_EQ(t.get(true).value(), "two");  // after a 401
  std::remove(path.c_str());
}

// --- coordination.k8s.io/v1 Lease on the wire ---

TEST(LeaseCodec, MicroTimeIsRfc3339UtcWithMicroseconds) {
  using namespace std::chrono;
  const system_clock::time_point t = sys_days{year{2026} / 12 / 2} + hours(21) + minutes(3) + seconds(4) +
                                     microseconds(56);
  EXPECT_EQ(microTime(t), "2026-12-02T21:03:04.000056Z");
}

TEST(LeaseCodec, DecodesALeaseAsTheApiServerReturnsIt) {
  // as kube-apiserver v1.36.3 answered a GET (managedFields trimmed)
  auto l = decodeLease(R"({"kind":"Lease","apiVersion":"coordination.k8s.io/v1",
    "metadata":{"name":"op","namespace":"cilium","uid":"5d1c","resourceVersion":"812",
      "creationTimestamp":"2026-12-02T21:00:00Z"},
    "spec":{"holderIdentity":"node-1","leaseDurationSeconds":15,
      "acquireTime":"2026-12-02T21:00:00.000000Z","renewTime":"2026-12-02T21:00:04.500000Z",
      "leaseTransitions":3,"strategy":"OldestEmulationVersion"}})");
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->resourceVersion, "812");
  EXPECT_EQ(l->record.holder, "node-1");
  EXPECT_EQ(l->record.leaseDurationSeconds, 15);
  EXPECT_EQ(l->record.acquireTime, "2026-12-02T21:00:00.000000Z");
  EXPECT_EQ(l->record.renewTime, "2026-12-02T21:00:04.500000Z");
  EXPECT_EQ(l->record.transitions, 3);
}

TEST(LeaseCodec, AReleasedOrEmptyLeaseHasNoHolder) {
  auto l = decodeLease(R"({"metadata":{"resourceVersion":"9"},"spec":{}})");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->record.holder, "");
  EXPECT_EQ(l->record.transitions, 0);
  auto n = decodeLease(R"({"metadata":{"resourceVersion":"9"}})");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->record.holder, "");
}

TEST(LeaseCodec, MalformedLeasesAreErrorsNamingTheField) {
  EXPECT_FALSE(decodeLease("not json"));
  EXPECT_FALSE(decodeLease("[1]"));
  auto bad = decodeLease(R"({"spec":{"leaseDurationSeconds":"15"}})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("leaseDurationSeconds"), std::string::npos);
  EXPECT_FALSE(decodeLease(R"({"spec":{"holderIdentity":7}})"));
}

TEST(LeaseCodec, EncodeRoundTripsAndCarriesThePrecondition) {
  lease::Record r{"node-2", 2, "2026-12-02T21:00:00.000001Z", "2026-12-02T21:00:01.000002Z", 4};
  const std::string put = encodeLease("cilium", "x", r, "77");
  auto back = decodeLease(put);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->record, r);
  EXPECT_EQ(back->resourceVersion, "77");
  auto o = json::parse(put).as_object();
  EXPECT_EQ(o.at("apiVersion").as_string(), "coordination.k8s.io/v1");
  EXPECT_EQ(o.at("kind").as_string(), "Lease");
  EXPECT_EQ(o.at("metadata").as_object().at("namespace").as_string(), "cilium");
  // a create carries no resourceVersion (the server would refuse one)
  auto post = json::parse(encodeLease("cilium", "x", r, "")).as_object();
  EXPECT_FALSE(post.at("metadata").as_object().contains("resourceVersion"));
  EXPECT_EQ(leasePath("cilium", "x"), "/apis/coordination.k8s.io/v1/namespaces/cilium/leases/x");
}

// A refused service port is tried again on its own: 1 s after the first refusal, doubling, at
// most 60 s; retryAllNow() (a local service changed) makes every one due at once without
// resetting its backoff; an applied or deleted name is forgotten.
TEST(K8sRefused, RefusedServiceRetriedWithBackoff) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  RefusedServices r;
  const auto t0 = RefusedServices::Clock::time_point{} + seconds(1000);
  EXPECT_FALSE(r.nextDue());
  EXPECT_TRUE(r.refuse("default/web:http", "the name is a local service's", t0));
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(*r.nextDue(), t0 + seconds(1));
  EXPECT_TRUE(r.due(t0).empty());
  EXPECT_EQ(r.due(t0 + seconds(1)), std::vector<std::string>{"default/web:http"});

  // Refused again at each try: 2 s, 4 s, ... never more than 60 s; the same reason is no news.
  auto t = t0 + seconds(1);
  EXPECT_FALSE(r.refuse("default/web:http", "the name is a local service's", t));
  EXPECT_EQ(*r.nextDue(), t + seconds(2));
  for (int i = 0; i < 10; ++i) r.refuse("default/web:http", "the name is a local service's", t);
  EXPECT_EQ(*r.nextDue(), t + seconds(60));
  EXPECT_EQ(RefusedServices::backoff(1), milliseconds(1000));
  EXPECT_EQ(RefusedServices::backoff(3), milliseconds(4000));
  EXPECT_EQ(RefusedServices::backoff(100), milliseconds(60000));

  // Another one, and the local service in the way goes: both are due now.
  r.refuse("default/api:grpc", "frontend 10.43.0.9:443/TCP is held by local-svc", t);
  EXPECT_EQ(r.due(t).size(), 0u);
  r.retryAllNow(t);
  EXPECT_EQ(r.due(t), (std::vector<std::string>{"default/api:grpc", "default/web:http"}));
  EXPECT_EQ(r.entries().at("default/web:http").attempts, 12u) << "backoff kept";

  // Applied on the retry: gone from the list status shows.
  r.forget("default/web:http");
  r.forget("default/api:grpc");
  EXPECT_TRUE(r.empty());
  EXPECT_FALSE(r.nextDue());
}

// The retry goes through the cache: marking a refused model service's Kubernetes service dirty
// hands its current version over again (ServiceWatcher::retry), nothing else.
TEST(K8sRefused, RetryReemitsTheRefusedServicesKubernetesService) {
  ServiceCache c;
  c.upsertService(svc("service_nodeport.json"));
  c.upsertSlice(slice("slice_web_a.json"));
  lb::Change ch = c.takeChange();
  ASSERT_EQ(ch.upserts.size(), 2u);
  EXPECT_FALSE(c.dirty());
  c.markDirty(ServiceCache::serviceKeyOf("default/web:http"));
  ch = c.takeChange();
  EXPECT_TRUE(ch.deletes.empty());
  ASSERT_EQ(ch.upserts.size(), 2u);
  const lb::Service* http = find(ch.upserts, "default/web:http");
  ASSERT_NE(http, nullptr);
  EXPECT_FALSE(http->backends.empty());
}

}  // namespace
}  // namespace np::k8s
