// Agent configuration: Cilium keys from flags and a config directory, clear errors.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/nodes.h"

namespace np {
namespace {

Result<Config> parse(std::vector<std::string> args) { return parseConfig(args); }

TEST(Config, DefaultsFollowTheDesign) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->bpfRoot, "/sys/fs/bpf");
  EXPECT_EQ(c->runDir, "/var/run/nodepath");
  EXPECT_EQ(c->nodePortMin, 30000);
  EXPECT_EQ(c->nodePortMax, 32767);
  EXPECT_EQ(c->lbMode, LbMode::Snat);
  EXPECT_TRUE(c->kubeProxyReplacement);
}

TEST(Config, FlagsInBothForms) {
  auto c = parse({"--devices=ens192,eth1", "--node-name", "n1", "--node-port-range", "31000-31999",
                  "--kube-proxy-replacement"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->devices, (std::vector<std::string>{"ens192", "eth1"}));
  EXPECT_EQ(c->nodeName, "n1");
  EXPECT_EQ(c->nodePortMin, 31000);
  EXPECT_EQ(c->nodePortMax, 31999);
}

TEST(Config, DevicesAsCiliumsConfigMapWritesThem) {
  // cilium-config's "devices" key is blank-separated; a flag is comma-separated
  EXPECT_EQ(parse({"--devices=ens192 eth1"})->devices, (std::vector<std::string>{"ens192", "eth1"}));
  EXPECT_EQ(parse({"--devices= ens192,  eth1 ,"})->devices, (std::vector<std::string>{"ens192", "eth1"}));
}

TEST(Config, NodePortRangeAsCiliumsConfigMapWritesIt) {
  auto c = parse({"--node-port-range=30000,32767"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->nodePortMin, 30000);
  EXPECT_EQ(c->nodePortMax, 32767);
  EXPECT_FALSE(parse({"--node-port-range=30000"}));
  EXPECT_FALSE(parse({"--node-port-range=32767,30000"}));
}

TEST(Config, LbModes) {
  EXPECT_EQ(parse({"--bpf-lb-mode=snat"})->lbMode, LbMode::Snat);
  EXPECT_EQ(parse({"--bpf-lb-mode=dsr"})->lbMode, LbMode::Dsr);
  EXPECT_EQ(parse({"--bpf-lb-mode", "hybrid"})->lbMode, LbMode::Hybrid);
  EXPECT_STREQ(lbModeName(LbMode::Dsr), "DSR");
  EXPECT_STREQ(lbModeName(LbMode::Hybrid), "Hybrid");
}

TEST(Config, BadFlagsSayWhatIsWrong) {
  EXPECT_EQ(parse({"--no-such-flag=1"}).error().message(), "--no-such-flag: unknown flag (see --help)");
  EXPECT_EQ(parse({"--node-port-range=32000-31000"}).error().message(),
            "--node-port-range: \"32000-31000\" is not a range MIN-MAX of ports with MIN <= MAX");
  EXPECT_EQ(parse({"--bpf-lb-mode=fast"}).error().message(),
            "--bpf-lb-mode: \"fast\" is not a load-balancing mode (snat, dsr, hybrid)");
  EXPECT_EQ(parse({"--bpf-root=relative"}).error().message(), "--bpf-root: \"relative\" is not an absolute path");
  EXPECT_EQ(parse({"--node-name"}).error().message(), "--node-name: needs a value");
  EXPECT_EQ(parse({"--bpf-lb-map-max=12"}).error().message(),
            "--bpf-lb-map-max: \"12\" is not a number in 1024..16777216");
}

// --bpf-lb-acceleration: Cilium's key and values; generic XDP (slower than tc) and typos are refused
// with what is accepted.
TEST(XdpConfig, AccelerationModes) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->lbAcceleration, LbAcceleration::Disabled);
  for (auto [v, want] : {std::pair{"native", LbAcceleration::Native}, {"best-effort", LbAcceleration::BestEffort},
                         {"disabled", LbAcceleration::Disabled}}) {
    c = parse({std::string("--bpf-lb-acceleration=") + v});
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->lbAcceleration, want) << v;
  }
  EXPECT_STREQ(lbAccelerationName(LbAcceleration::BestEffort), "Best-Effort");
  EXPECT_EQ(parse({"--bpf-lb-acceleration=fast"}).error().message(),
            "--bpf-lb-acceleration: \"fast\" is not an acceleration mode (disabled, native, best-effort)");
  EXPECT_EQ(parse({"--bpf-lb-acceleration=generic"}).error().message(),
            "--bpf-lb-acceleration: \"generic\" is not supported: generic XDP is slower than tc (native, best-effort, "
            "disabled)");
}

TEST(Config, TrustKeys) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->serviceCidr.str(), "10.43.0.0/16");
  EXPECT_EQ(c->podCidr.str(), "10.0.0.0/16");
  EXPECT_FALSE(c->lbAllowUnsafeFrontends);
  EXPECT_FALSE(c->enableHostLegacyRouting);
  EXPECT_EQ(c->lbReconcileIntervalSec, 60u);
  c = parse({"--service-cidr=10.96.0.0/12", "--lb-reconcile-interval", "5m", "--lb-allow-unsafe-frontends"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->serviceCidr.str(), "10.96.0.0/12");
  EXPECT_EQ(c->lbReconcileIntervalSec, 300u);
  EXPECT_TRUE(c->lbAllowUnsafeFrontends);
  EXPECT_EQ(parse({"--lb-reconcile-interval=0"})->lbReconcileIntervalSec, 0u);
  EXPECT_TRUE(parse({"--enable-host-legacy-routing"})->enableHostLegacyRouting);
  EXPECT_FALSE(parse({"--enable-host-legacy-routing=false"})->enableHostLegacyRouting);
  EXPECT_EQ(parse({"--service-cidr=10.43.0.1/16"}).error().message(),
            "--service-cidr: \"10.43.0.1/16\" is not an IPv4 CIDR (like 10.43.0.0/16, host bits zero)");
  EXPECT_EQ(parse({"--lb-reconcile-interval=soon"}).error().message(),
            "--lb-reconcile-interval: \"soon\" is not a duration in 1000ms..86400s (e.g. 30s, 1m30s, 500ms)");
  EXPECT_EQ(parse({"--service-cidr=10.0.0.0/8"}).error().message(),
            "--service-cidr 10.0.0.0/8: overlaps --cluster-pool-ipv4-cidr 10.0.0.0/16");
}

TEST(Config, ConfigDirectoryIsReadAndFlagsWin) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("np-config-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "node-name") << "from-dir\n";
  std::ofstream(dir / "bpf-lb-map-max") << "65536";
  std::ofstream(dir / "enable-hubble") << "true";  // a cilium-config key we do not use: ignored
  std::filesystem::create_directories(dir / "..data");
  auto c = parse({"--config-dir", dir.string(), "--bpf-lb-map-max=131072"});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->nodeName, "from-dir");
  EXPECT_EQ(c->lbMapMax, 131072u);
  EXPECT_EQ(c->origin["node-name"], "config-dir");
  EXPECT_EQ(c->origin["bpf-lb-map-max"], "flag");
}

TEST(Config, BadValueInConfigDirectoryNamesTheFile) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("np-config-bad-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "bpf-lb-mode") << "fast";
  auto c = parse({"--config-dir", dir.string()});
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("bpf-lb-mode: \"fast\""), std::string::npos) << c.error().message();
  EXPECT_NE(c.error().message().find(dir.string()), std::string::npos) << c.error().message();
}

// The SNAT source ports stay clear of the node's ephemeral ports (ip_local_port_range) and the
// NodePorts: auto picks the largest free range above the NodePorts, a configured range that
// collides is refused naming both ranges and the flag.
TEST(SnatPortRange, AutoLeavesTheEphemeralPortsAlone) {
  auto c = parse({});
  ASSERT_TRUE(c);
  // Linux's default ephemeral range: what is left above it.
  auto r = snatPortRange(*c, {32768, 60999});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, (PortRange{61000, 65535}));
  // A node that moved its ephemeral ports up: the gap below them is larger.
  r = snatPortRange(*c, {49152, 65535});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, (PortRange{32768, 49151}));
  // Ephemeral ports below the NodePorts: everything above the NodePorts.
  r = snatPortRange(*c, {10000, 29999});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, (PortRange{32768, 65535}));
}

TEST(SnatPortRange, NoRoomIsAnErrorNamingTheRanges) {
  auto c = parse({});
  ASSERT_TRUE(c);
  auto r = snatPortRange(*c, {1024, 65000});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "choose SNAT ports: node-port-range 30000-32767 and the node's ephemeral ports "
            "(net.ipv4.ip_local_port_range 1024-65000) leave 535 ports above the NodePorts, fewer than 1024; "
            "set --bpf-lb-snat-port-range to a range outside node-port-range 30000-32767 and ip_local_port_range "
            "1024-65000, or narrow the node's net.ipv4.ip_local_port_range");
}

TEST(SnatPortRange, ConfiguredRangeMustBeDisjoint) {
  auto c = parse({"--bpf-lb-snat-port-range=40000-50000"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->snatPorts, (PortRange{40000, 50000}));
  auto r = snatPortRange(*c, {32768, 60999});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "--bpf-lb-snat-port-range 40000-50000: overlaps the node's ephemeral ports (net.ipv4.ip_local_port_range "
            "32768-60999): host connections and SNAT'd flows would compete for ports; set --bpf-lb-snat-port-range "
            "to a range outside node-port-range 30000-32767 and ip_local_port_range 32768-60999, or narrow the "
            "node's net.ipv4.ip_local_port_range");
  r = snatPortRange(*c, {32768, 39999});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, (PortRange{40000, 50000}));

  EXPECT_EQ(parse({"--bpf-lb-snat-port-range=31000-40000"}).error().message(),
            "--bpf-lb-snat-port-range 31000-40000: overlaps --node-port-range 30000-32767");
  EXPECT_EQ(parse({"--bpf-lb-snat-port-range=40000-40100"}).error().message(),
            "--bpf-lb-snat-port-range: \"40000-40100\" holds fewer than 1024 ports");
  EXPECT_EQ(parse({"--bpf-lb-snat-port-range=5-4"}).error().message(),
            "--bpf-lb-snat-port-range: \"5-4\" is not a range MIN-MAX of ports with MIN <= MAX");
}

TEST(SnatPortRange, ReadsTheKernelsFormat) {
  std::filesystem::path f = std::filesystem::temp_directory_path() / ("np-portrange-" + std::to_string(getpid()));
  std::ofstream(f) << "32768\t60999\n";
  auto r = readLocalPortRange(f.string());
  std::ofstream(f) << "garbage\n";
  auto bad = readLocalPortRange(f.string());
  std::filesystem::remove(f);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, (PortRange{32768, 60999}));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("no \"MIN MAX\" port range"), std::string::npos) << bad.error().message();
}

// BPF masquerade and NOTRACK: Cilium's keys, off by default (Cilium's agent defaults; the Helm
// chart turns them on as the seed's values say), from flags and from the config directory.
TEST(MasqueradeConfig, KeysAndDefaults) {
  auto d = parse({});
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->enableBpfMasquerade);
  EXPECT_FALSE(d->installNoConntrackRules);
  EXPECT_EQ(d->nativeRoutingCidr.str(), "10.0.0.0/16");
  EXPECT_EQ(d->masqPorts.size(), 0u);

  auto c = parse({"--enable-bpf-masquerade", "--ipv4-native-routing-cidr=10.1.0.0/16",
                  "--bpf-masquerade-port-range", "61000-62999", "--install-no-conntrack-iptables-rules=true"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_TRUE(c->enableBpfMasquerade);
  EXPECT_TRUE(c->installNoConntrackRules);
  EXPECT_EQ(c->nativeRoutingCidr.str(), "10.1.0.0/16");
  EXPECT_EQ(c->masqPorts, (PortRange{61000, 62999}));

  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("np-config-masq-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "enable-bpf-masquerade") << "true\n";
  std::ofstream(dir / "install-no-conntrack-iptables-rules") << "true";
  auto fromDir = parse({"--config-dir", dir.string()});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(fromDir) << fromDir.error().message();
  EXPECT_TRUE(fromDir->enableBpfMasquerade);
  EXPECT_TRUE(fromDir->installNoConntrackRules);
  EXPECT_EQ(fromDir->origin["enable-bpf-masquerade"], "config-dir");
}

TEST(SocketLbConfig, OnByDefaultOffByFlagOrConfigDir) {
  auto d = parse({});
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->sockLb);
  auto off = parse({"--bpf-lb-sock=false"});
  ASSERT_TRUE(off) << off.error().message();
  EXPECT_FALSE(off->sockLb);
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("np-config-socklb-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "bpf-lb-sock") << "false\n";
  auto fromDir = parse({"--config-dir", dir.string()});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(fromDir) << fromDir.error().message();
  EXPECT_FALSE(fromDir->sockLb);
  auto bad = parse({"--bpf-lb-sock=perhaps"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("bpf-lb-sock"), std::string::npos) << bad.error().message();
}

TEST(MasqueradeConfig, BadValuesSayWhatIsWrong) {
  auto a = parse({"--enable-bpf-masquerade=maybe"});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message().find("enable-bpf-masquerade"), std::string::npos) << a.error().message();
  auto b = parse({"--ipv4-native-routing-cidr=10.0.0.0/33"});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message().find("ipv4-native-routing-cidr"), std::string::npos) << b.error().message();
  auto c = parse({"--bpf-masquerade-port-range=30500-40000"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("overlaps --node-port-range"), std::string::npos) << c.error().message();
}

// Masquerade shares the SNAT ports unless told otherwise; a configured range must stay clear of
// the node's ephemeral ports.
TEST(MasqueradeConfig, PortRange) {
  const PortRange snat{61000, 65535}, ephemeral{32768, 60999};
  auto c = parse({});
  ASSERT_TRUE(c);
  auto shared = masqPortRange(*c, ephemeral, snat);
  ASSERT_TRUE(shared);
  EXPECT_EQ(*shared, snat);
  auto own = parse({"--bpf-masquerade-port-range=61000-61999"});
  ASSERT_TRUE(own);
  auto ownRange = masqPortRange(*own, ephemeral, snat);
  ASSERT_TRUE(ownRange);
  EXPECT_EQ(*ownRange, (PortRange{61000, 61999}));
  auto bad = parse({"--bpf-masquerade-port-range=50000-60000"});
  ASSERT_TRUE(bad);
  auto r = masqPortRange(*bad, ephemeral, snat);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("ephemeral"), std::string::npos) << r.error().message();
}

TEST(MasqueradeConfig, StatusLineAsCiliumPrintsIt) {
  const Cidr cidr{Ipv4::fromHost(0x0a000000), 16};
  EXPECT_EQ(masqueradingLine(true, {"ens192"}, cidr), "BPF [ens192] 10.0.0.0/16 [IPv4: Enabled, IPv6: Disabled]");
  EXPECT_EQ(masqueradingLine(true, {"ens192", "eth1"}, cidr),
            "BPF [ens192, eth1] 10.0.0.0/16 [IPv4: Enabled, IPv6: Disabled]");
  EXPECT_EQ(masqueradingLine(false, {"ens192"}, cidr), "Disabled");
}

TEST(Config, FragmentsMapSize) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->fragMapMax, uint32_t{NP_DEFAULT_FRAG_MAX});
  c = parse({"--bpf-fragments-map-max=16384"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->fragMapMax, 16384u);
}

TEST(L2Config, DefaultsMeetTheFailoverTarget) {
  ::unsetenv("POD_NAMESPACE");
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->enableL2Announcements);
  EXPECT_EQ(c->l2LeaseDuration, std::chrono::milliseconds(2000));
  EXPECT_EQ(c->l2RenewDeadline, std::chrono::milliseconds(1500));
  EXPECT_EQ(c->l2RetryPeriod, std::chrono::milliseconds(500));
  EXPECT_EQ(c->k8sNamespace, "cilium");
}

TEST(L2Config, CiliumsKeysAndTheirTimings) {
  auto c = parse({"--enable-l2-announcements", "--l2-announcements-lease-duration=15s",
                  "--l2-announcements-renew-deadline", "5s", "--l2-announcements-retry-period", "2s",
                  "--k8s-namespace", "kube-system"});
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_TRUE(c->enableL2Announcements);
  EXPECT_EQ(c->l2LeaseDuration, std::chrono::seconds(15));
  EXPECT_EQ(c->l2RenewDeadline, std::chrono::seconds(5));
  EXPECT_EQ(c->l2RetryPeriod, std::chrono::seconds(2));
  EXPECT_EQ(c->k8sNamespace, "kube-system");
}

TEST(L2Config, NamespaceFromPodNamespaceAndFlagsWin) {
  ::setenv("POD_NAMESPACE", "nodepath", 1);
  EXPECT_EQ(parse({})->k8sNamespace, "nodepath");
  EXPECT_EQ(parse({"--k8s-namespace=other"})->k8sNamespace, "other");
  ::unsetenv("POD_NAMESPACE");
  auto bad = parse({"--k8s-namespace=Bad_NS"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("--k8s-namespace"), std::string::npos) << bad.error().message();
}

TEST(L2Config, ContradictoryTimingsAreRefusedNamingBothFlags) {
  auto r = parse({"--l2-announcements-lease-duration=1s"});  // the 1500ms renew deadline is longer
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("--l2-announcements-renew-deadline 1500ms"), std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find("--l2-announcements-lease-duration 1000ms"), std::string::npos);
  auto retry = parse({"--l2-announcements-retry-period=1300ms"});
  ASSERT_FALSE(retry);
  EXPECT_NE(retry.error().message().find("--l2-announcements-retry-period 1300ms"), std::string::npos)
      << retry.error().message();
  auto unit = parse({"--l2-announcements-lease-duration=2"});
  ASSERT_FALSE(unit);
  EXPECT_NE(unit.error().message().find("is not a duration"), std::string::npos) << unit.error().message();
  auto flag = parse({"--enable-l2-announcements=maybe"});
  ASSERT_FALSE(flag);
  EXPECT_NE(flag.error().message().find("is not a boolean"), std::string::npos);
}

TEST(L2Config, FromTheChartsConfigMap) {
  const auto dir = std::filesystem::temp_directory_path() / ("np-l2cfg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto put = [&](const char* k, const char* v) { std::ofstream(dir / k) << v << "\n"; };
  put("enable-l2-announcements", "true");
  put("l2-announcements-lease-duration", "3s");
  put("l2-announcements-renew-deadline", "1.5s");
  put("l2-announcements-retry-period", "500ms");
  auto c = parse({"--config-dir", dir.string()});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_TRUE(c->enableL2Announcements);
  EXPECT_EQ(c->l2LeaseDuration, std::chrono::seconds(3));
  EXPECT_EQ(c->l2RenewDeadline, std::chrono::milliseconds(1500));  // Go's fractions
  EXPECT_EQ(c->origin.at("enable-l2-announcements"), "config-dir");
}

TEST(NodesFile, ParsesNodesAndMarksTheLocalOne) {
  auto n = parseNodes("# lab\nn1 192.168.10.100 10.0.1.0/24\n\nn2 192.168.10.101 10.0.2.0/24  # peer\n", "n2");
  ASSERT_TRUE(n) << n.error().message();
  ASSERT_EQ(n->size(), 2u);
  EXPECT_FALSE((*n)[0].local);
  EXPECT_TRUE((*n)[1].local);
  EXPECT_EQ((*n)[1].podCidr.str(), "10.0.2.0/24");
}

TEST(NodesFile, RefusesMalformedLines) {
  EXPECT_EQ(parseNodes("n1 192.168.10.100\n", "n1").error().message(),
            "nodes line 1: expected \"<name> <node IP> <pod CIDR>\"");
  EXPECT_EQ(parseNodes("n1 192.168.10.300 10.0.1.0/24\n", "n1").error().message(),
            "nodes line 1: \"192.168.10.300\" is not an IPv4 address");
  EXPECT_EQ(parseNodes("n1 1.2.3.4 10.0.1.0/24\nn1 1.2.3.5 10.0.2.0/24\n", "n1").error().message(),
            "nodes line 2: node n1 is listed twice");
}

}  // namespace
}  // namespace np

namespace np {
namespace {

TEST(MetricsConfig, PrometheusServeAddrAsCiliumTakesIt) {
  EXPECT_EQ(parse({})->prometheusServeAddr, ":9962");
  EXPECT_EQ(parse({"--prometheus-serve-addr=:9090"})->prometheusServeAddr, ":9090");
  EXPECT_EQ(parse({"--prometheus-serve-addr=192.168.10.100:9962"})->prometheusServeAddr, "192.168.10.100:9962");
  EXPECT_EQ(parse({"--prometheus-serve-addr="})->prometheusServeAddr, "");  // disabled
  for (const char* bad : {"9962", ":0", ":65536", ":port", "localhost:9962", "10.0.0.300:1", ":"}) {
    auto c = parse({std::string("--prometheus-serve-addr=") + bad});
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().message(), std::string("--prometheus-serve-addr: \"") + bad +
                                       "\" is not :port or IPv4:port (port 1-65535; empty disables metrics)");
  }
  auto a = np::parseListenAddress("10.1.2.3:9962");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->ip.str(), "10.1.2.3");
  EXPECT_EQ(a->port, 9962);
  EXPECT_TRUE(np::parseListenAddress(":1")->ip.isZero());
}

TEST(MetricsConfig, ConfigMapKeyIsRead) {
  // The chart renders prometheus-serve-addr into the ConfigMap: ":9962", or "" when disabled.
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("np-config-prom-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "prometheus-serve-addr") << ":19962\n";
  auto c = parse({"--config-dir", dir.string()});
  std::ofstream(dir / "prometheus-serve-addr", std::ios::trunc) << "";
  auto off = parse({"--config-dir", dir.string()});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->prometheusServeAddr, ":19962");
  EXPECT_EQ(c->origin["prometheus-serve-addr"], "config-dir");
  ASSERT_TRUE(off) << off.error().message();
  EXPECT_EQ(off->prometheusServeAddr, "");
}

}  // namespace
}  // namespace np
