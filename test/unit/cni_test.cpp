// nodepath-cni's protocol: environment, stdin configuration, results in every version, errors.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>

#include "cni.h"

using namespace nodepath::cni;
namespace json = boost::json;

namespace {

Getenv envOf(std::map<std::string, std::string> vars) {
  return [vars](const char* k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::map<std::string, std::string> addVars() {
  return {{"CNI_COMMAND", "ADD"}, {"CNI_CONTAINERID", "abc123"}, {"CNI_NETNS", "/var/run/netns/p1"},
          {"CNI_IFNAME", "eth0"}, {"CNI_PATH", "/opt/cni/bin"},
          {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"}};
}

CniError envErr(std::map<std::string, std::string> vars) {
  auto r = parseEnv(envOf(std::move(vars)));
  EXPECT_TRUE(std::holds_alternative<CniError>(r));
  return std::holds_alternative<CniError>(r) ? std::get<CniError>(r) : CniError{};
}

Attached attached() {
  return {"lxc0123456789ab", "aa:bb:cc:00:00:01", "eth0", "aa:bb:cc:00:00:02", "/var/run/netns/p1",
          "10.0.1.7", "10.0.1.1", 1500};
}

json::object parse(const std::string& s) { return json::parse(s).as_object(); }

}  // namespace

TEST(CniEnv, AddReadsEveryVariableAndThePodFromCniArgs) {
  auto r = parseEnv(envOf(addVars()));
  ASSERT_TRUE(std::holds_alternative<Env>(r));
  const Env& e = std::get<Env>(r);
  EXPECT_EQ(e.command, Command::kAdd);
  EXPECT_EQ(e.containerId, "abc123");
  EXPECT_EQ(e.netns, "/var/run/netns/p1");
  EXPECT_EQ(e.ifname, "eth0");
  EXPECT_EQ(e.podNamespace(), "default");
  EXPECT_EQ(e.podName(), "web-0");
}

TEST(CniEnv, MissingVariablesAreCode4NamingThem) {
  auto vars = addVars();
  vars.erase("CNI_NETNS");
  vars.erase("CNI_IFNAME");
  CniError e = envErr(vars);
  EXPECT_EQ(e.code, kInvalidEnvironment);
  EXPECT_NE(e.msg.find("CNI_NETNS"), std::string::npos) << e.msg;
  EXPECT_NE(e.msg.find("CNI_IFNAME"), std::string::npos) << e.msg;
  EXPECT_EQ(envErr({}).code, kInvalidEnvironment);
  EXPECT_EQ(envErr({{"CNI_COMMAND", "FROB"}}).code, kInvalidEnvironment);
}

TEST(CniEnv, DelNeedsNoNetnsAndStatusNeedsNothing) {
  auto vars = addVars();
  vars["CNI_COMMAND"] = "DEL";
  vars.erase("CNI_NETNS");
  EXPECT_TRUE(std::holds_alternative<Env>(parseEnv(envOf(vars))));
  EXPECT_TRUE(std::holds_alternative<Env>(parseEnv(envOf({{"CNI_COMMAND", "STATUS"}}))));
  EXPECT_TRUE(std::holds_alternative<Env>(parseEnv(envOf({{"CNI_COMMAND", "VERSION"}}))));
  EXPECT_EQ(envErr({{"CNI_COMMAND", "GC"}}).code, kInvalidEnvironment);  // GC needs CNI_PATH
}

TEST(CniEnv, BadContainerIdIfnameOrArgsAreCode4) {
  auto vars = addVars();
  vars["CNI_CONTAINERID"] = "-starts-with-dash";
  EXPECT_NE(envErr(vars).msg.find("CNI_CONTAINERID"), std::string::npos);
  vars = addVars();
  vars["CNI_IFNAME"] = "a/b";
  EXPECT_NE(envErr(vars).msg.find("CNI_IFNAME"), std::string::npos);
  vars["CNI_IFNAME"] = "sixteen-chars-xx";
  EXPECT_NE(envErr(vars).msg.find("CNI_IFNAME"), std::string::npos);
  vars = addVars();
  vars["CNI_ARGS"] = "K8S_POD_NAME";
  EXPECT_NE(envErr(vars).msg.find("CNI_ARGS"), std::string::npos);
}

TEST(CniConf, UndecodableStdinIsCode6BadConfigCode7) {
  EXPECT_EQ(std::get<CniError>(parseConf("not json", Command::kAdd)).code, kDecodeFailure);
  EXPECT_EQ(std::get<CniError>(parseConf("[1]", Command::kAdd)).code, kDecodeFailure);
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"1.0.0","type":"nodepath-cni"})", Command::kAdd)).code,
            kInvalidConfig);  // no name
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"1.0.0","name":"n","type":"t","socket":"rel"})",
                                         Command::kAdd)).code,
            kInvalidConfig);
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"1.0.0","name":"n","type":"t"})", Command::kCheck)).code,
            kInvalidConfig);  // CHECK without prevResult
}

TEST(CniConf, PortMappingsFromRuntimeConfigAreParsedOnAdd) {
  const char* conf = R"({"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"portMappings":[
      {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
      {"hostPort":5353,"containerPort":53,"protocol":"UDP","hostIP":"10.99.0.2"},
      {"hostPort":9090,"containerPort":90}]}})";
  auto c = std::get<NetConf>(parseConf(conf, Command::kAdd));
  ASSERT_EQ(c.portMappings.size(), 3u);
  EXPECT_EQ(c.portMappings[0], (PortMapping{8080, 80, "tcp", ""}));
  EXPECT_EQ(c.portMappings[1], (PortMapping{5353, 53, "udp", "10.99.0.2"}));
  EXPECT_EQ(c.portMappings[2], (PortMapping{9090, 90, "tcp", ""}));  // protocol defaults to tcp
  // DEL carries them too, but only ADD uses them.
  EXPECT_TRUE(std::get<NetConf>(parseConf(conf, Command::kDel)).portMappings.empty());
  EXPECT_TRUE(std::get<NetConf>(parseConf(R"({"cniVersion":"1.0.0","name":"n","type":"t"})", Command::kAdd))
                  .portMappings.empty());
}

TEST(CniConf, BadPortMappingsAreCode7NamingTheEntry) {
  auto err = [](const std::string& pm) {
    return std::get<CniError>(
        parseConf(R"({"cniVersion":"1.0.0","name":"n","type":"t","runtimeConfig":{"portMappings":)" + pm + "}}",
                  Command::kAdd));
  };
  EXPECT_EQ(err("{}").code, kInvalidConfig);
  auto e = err(R"([{"hostPort":80,"containerPort":80},{"containerPort":80}])");
  EXPECT_EQ(e.code, kInvalidConfig);
  EXPECT_NE(e.msg.find("portMappings[1]"), std::string::npos) << e.msg;
  EXPECT_NE(e.msg.find("hostPort"), std::string::npos) << e.msg;
  EXPECT_EQ(err(R"([{"hostPort":70000,"containerPort":80}])").code, kInvalidConfig);
  EXPECT_EQ(err(R"([{"hostPort":0,"containerPort":80}])").code, kInvalidConfig);
  EXPECT_NE(err(R"([{"hostPort":80,"containerPort":80,"protocol":"sctp"}])").msg.find("sctp"), std::string::npos);
  EXPECT_EQ(err(R"([{"hostPort":80,"containerPort":80,"hostIP":5}])").code, kInvalidConfig);
}

TEST(CniConf, VersionsOutsideTheListOrTooOldForTheCommandAreCode1) {
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"0.2.0","name":"n","type":"t"})", Command::kAdd)).code,
            kIncompatibleVersion);
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"1.0.0","name":"n","type":"t"})", Command::kStatus)).code,
            kIncompatibleVersion);
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"0.3.1","name":"n","type":"t","prevResult":{}})",
                                         Command::kCheck)).code,
            kIncompatibleVersion);
  auto ok = parseConf(R"({"cniVersion":"1.1.0","name":"n","type":"nodepath-cni","socket":"/run/x.sock","extra":1})",
                      Command::kStatus);
  ASSERT_TRUE(std::holds_alternative<NetConf>(ok));
  EXPECT_EQ(std::get<NetConf>(ok).socket, "/run/x.sock");
}

TEST(CniConf, GcReadsValidAttachmentsUnderBothNames) {
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    std::string text = std::string(R"({"cniVersion":"1.1.0","name":"n","type":"t",")") + key +
                       R"(":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}]})";
    auto r = parseConf(text, Command::kGc);
    ASSERT_TRUE(std::holds_alternative<NetConf>(r)) << key;
    const auto& a = std::get<NetConf>(r).validAttachments;
    ASSERT_EQ(a.size(), 2u);
    EXPECT_EQ(a[1].containerId, "c2");
    EXPECT_EQ(a[1].ifname, "net1");
  }
  EXPECT_EQ(std::get<CniError>(parseConf(R"({"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":[{"ifname":"e"}]})",
                                         Command::kGc)).code,
            kInvalidConfig);
}

TEST(CniVersion, ListsEveryVersionAndEchoesTheRequest) {
  auto v = parse(encodeVersion("1.0.0"));
  EXPECT_EQ(v.at("cniVersion").as_string(), "1.0.0");
  json::array want{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  EXPECT_EQ(v.at("supportedVersions").as_array(), want);
  EXPECT_EQ(std::get<std::string>(parseVersionRequest(R"({"cniVersion":"0.4.0"})")), "0.4.0");
  EXPECT_EQ(std::get<CniError>(parseVersionRequest("{")).code, kDecodeFailure);
}

TEST(CniResult, Version1HasTwoInterfacesOneAddressAndTheRouterRoutes) {
  auto r = parse(encodeResult(attached(), std::nullopt, "1.0.0"));
  EXPECT_EQ(r.at("cniVersion").as_string(), "1.0.0");
  const auto& ifs = r.at("interfaces").as_array();
  ASSERT_EQ(ifs.size(), 2u);
  EXPECT_EQ(ifs[0].as_object().at("name").as_string(), "lxc0123456789ab");
  EXPECT_FALSE(ifs[0].as_object().contains("sandbox"));
  EXPECT_EQ(ifs[1].as_object().at("sandbox").as_string(), "/var/run/netns/p1");
  EXPECT_FALSE(ifs[1].as_object().contains("mtu"));  // 1.1.0 only
  const auto& ip = r.at("ips").as_array().at(0).as_object();
  EXPECT_EQ(ip.at("address").as_string(), "10.0.1.7/32");
  EXPECT_EQ(ip.at("gateway").as_string(), "10.0.1.1");
  EXPECT_EQ(ip.at("interface").as_int64(), 1);
  EXPECT_FALSE(ip.contains("version"));
  const auto& routes = r.at("routes").as_array();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].as_object().at("dst").as_string(), "10.0.1.1/32");
  EXPECT_EQ(routes[1].as_object().at("dst").as_string(), "0.0.0.0/0");
  EXPECT_EQ(routes[1].as_object().at("gw").as_string(), "10.0.1.1");
}

TEST(CniResult, Version11AddsMtuAndScope) {
  auto r = parse(encodeResult(attached(), std::nullopt, "1.1.0"));
  EXPECT_EQ(r.at("interfaces").as_array()[1].as_object().at("mtu").as_int64(), 1500);
  EXPECT_EQ(r.at("routes").as_array()[0].as_object().at("scope").as_int64(), 253);
}

TEST(CniResult, LegacyVersionsCarryTheIpVersionField) {
  for (const char* v : {"0.3.0", "0.3.1", "0.4.0"}) {
    auto r = parse(encodeResult(attached(), std::nullopt, v));
    EXPECT_EQ(r.at("cniVersion").as_string(), v);
    EXPECT_EQ(r.at("ips").as_array()[0].as_object().at("version").as_string(), "4") << v;
  }
}

TEST(CniResult, PrevResultOfLoopbackIsPassedThroughWithOursAppended) {
  json::object prev = parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"lo","mac":"00:00:00:00:00:00","sandbox":"/var/run/netns/p1"}],
    "ips":[{"address":"127.0.0.1/8","interface":0}],"dns":{"nameservers":["10.43.0.10"]}})");
  auto r = parse(encodeResult(attached(), prev, "1.0.0"));
  const auto& ifs = r.at("interfaces").as_array();
  ASSERT_EQ(ifs.size(), 3u);
  EXPECT_EQ(ifs[0].as_object().at("name").as_string(), "lo");
  EXPECT_EQ(ifs[2].as_object().at("name").as_string(), "eth0");
  const auto& ips = r.at("ips").as_array();
  ASSERT_EQ(ips.size(), 2u);
  EXPECT_EQ(ips[0].as_object().at("address").as_string(), "127.0.0.1/8");
  EXPECT_EQ(ips[1].as_object().at("interface").as_int64(), 2);  // index shifted past lo
  EXPECT_EQ(r.at("dns").as_object().at("nameservers").as_array()[0].as_string(), "10.43.0.10");
}

TEST(CniResult, ErrorJsonHasCodeMsgDetailsInTheRequestedVersion) {
  auto e = parse(encodeError({kTryAgainLater, "agent down", "no socket"}, "1.0.0"));
  EXPECT_EQ(e.at("cniVersion").as_string(), "1.0.0");
  EXPECT_EQ(e.at("code").as_int64(), 11);
  EXPECT_EQ(e.at("msg").as_string(), "agent down");
  EXPECT_EQ(e.at("details").as_string(), "no socket");
  EXPECT_FALSE(parse(encodeError({kInvalidConfig, "bad", ""}, "1.1.0")).contains("details"));
}

TEST(CniCheck, PrevResultMustListOurInterfaceAndAddress) {
  auto good = parse(encodeResult(attached(), std::nullopt, "1.0.0"));
  EXPECT_FALSE(checkPrevResult(good, attached()));
  Attached moved = attached();
  moved.ipv4 = "10.0.1.8";
  auto e = checkPrevResult(good, moved);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, kCheckFailed);
  Attached otherNs = attached();
  otherNs.sandbox = "/var/run/netns/p2";
  EXPECT_TRUE(checkPrevResult(good, otherNs));
}

TEST(CniVersion, CompareVersions) {
  EXPECT_LT(compareVersions("0.4.0", "1.0.0"), 0);
  EXPECT_EQ(compareVersions("1.1.0", "1.1.0"), 0);
  EXPECT_GT(compareVersions("1.1.0", "1.0.9"), 0);
  EXPECT_LT(compareVersions("0.3", "0.3.1"), 0);
}
