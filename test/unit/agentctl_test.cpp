// agentctl: argument parsing, table and response formatting, JSON field names, and command
// dispatch against an in-process fake Agent (no socket, no real agent).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "format.h"
#include "table.h"

namespace nodepath::agentctl {
namespace {

namespace pb = nodepath::agent::v1;

ParseOutcome parse(std::vector<std::string> args, std::string_view env = {}) {
  return parseArgs(args, env);
}

std::string parseError(std::vector<std::string> args) {
  ParseOutcome out = parseArgs(args, {});
  EXPECT_FALSE(out.ok()) << "expected a usage error";
  return out.error;
}

// ---------------------------------------------------------------------------------------------
// Argument parsing

TEST(AgentctlArgs, DefaultsToTheStandardSocketAndTableOutput) {
  auto out = parse({"status"});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.invocation.command, Command::kStatus);
  EXPECT_EQ(out.invocation.socketPath, "/var/run/nodepath/agent.sock");
  EXPECT_EQ(out.invocation.output, OutputFormat::kTable);
  EXPECT_EQ(out.invocation.statusDetail, StatusDetail::kNormal);
}

TEST(AgentctlArgs, EnvironmentSocketIsOverriddenByTheFlag) {
  EXPECT_EQ(parse({"status"}, "/run/env.sock").invocation.socketPath, "/run/env.sock");
  EXPECT_EQ(parse({"--socket", "/run/flag.sock", "status"}, "/run/env.sock").invocation.socketPath,
            "/run/flag.sock");
}

TEST(AgentctlArgs, GlobalFlagsMayFollowTheCommandWords) {
  auto out = parse({"service", "list", "-o", "json", "--socket=/tmp/a.sock"});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.invocation.command, Command::kServiceList);
  EXPECT_EQ(out.invocation.output, OutputFormat::kJson);
  EXPECT_EQ(out.invocation.socketPath, "/tmp/a.sock");

  EXPECT_EQ(parse({"-ojson", "node", "list"}).invocation.output, OutputFormat::kJson);
  EXPECT_EQ(parse({"bpf", "--output=json", "lb", "list"}).invocation.command, Command::kBpfLbList);
  EXPECT_EQ(parse({"status", "--verbose"}).invocation.statusDetail, StatusDetail::kVerbose);
  EXPECT_EQ(parse({"--brief", "status"}).invocation.statusDetail, StatusDetail::kBrief);
}

TEST(AgentctlArgs, HelpAnywhereWinsOverErrors) {
  EXPECT_EQ(parse({"--help"}).invocation.command, Command::kHelp);
  EXPECT_EQ(parse({"-h"}).invocation.command, Command::kHelp);
  EXPECT_EQ(parse({"help"}).invocation.command, Command::kHelp);
  EXPECT_EQ(parse({"service", "upsert", "--port", "99999", "--help"}).invocation.command,
            Command::kHelp);
  EXPECT_EQ(parse({"version"}).invocation.command, Command::kVersion);
}

TEST(AgentctlArgs, UsageErrorsNameWhatIsWrong) {
  EXPECT_EQ(parseError({}), "missing command");
  EXPECT_EQ(parseError({"frob"}), "unknown command \"frob\"");
  EXPECT_EQ(parseError({"status", "--frob"}), "unknown flag \"--frob\"");
  EXPECT_EQ(parseError({"-x", "status"}), "unknown flag \"-x\"");
  EXPECT_EQ(parseError({"service", "list", "--port", "80"}),
            "unknown flag \"--port\" for \"service list\"");
  EXPECT_EQ(parseError({"status", "--socket"}), "--socket: missing value");
  EXPECT_EQ(parseError({"status", "--socket="}), "--socket: empty path");
  EXPECT_EQ(parseError({"status", "--brief=yes"}), "--brief: takes no value");
  EXPECT_EQ(parseError({"status", "-o", "yaml"}),
            "-o: unknown output format \"yaml\" (table, json)");
  EXPECT_EQ(parseError({"status", "--brief", "--verbose"}),
            "status: --brief and --verbose cannot be combined");
  EXPECT_EQ(parseError({"status", "now"}), "status: unexpected argument \"now\"");
  EXPECT_EQ(parseError({"service"}), "service: missing subcommand (upsert, apply, list, get, delete)");
  EXPECT_EQ(parseError({"service", "create", "x"}),
            "service: unknown subcommand \"create\" (upsert, apply, list, get, delete)");
  EXPECT_EQ(parseError({"service", "get"}), "service get: missing NAME");
  EXPECT_EQ(parseError({"service", "delete", "a", "b"}),
            "service delete: unexpected argument \"b\"");
  EXPECT_EQ(parseError({"bpf"}), "bpf: missing subcommand (lb, ct, nat)");
  EXPECT_EQ(parseError({"bpf", "lb"}), "bpf lb: missing subcommand (list)");
  EXPECT_EQ(parseError({"bpf", "ipcache", "list"}), "bpf: unknown subcommand \"ipcache\" (lb, ct, nat)");
  EXPECT_EQ(parseError({"bpf", "ct", "flush"}), "bpf ct: unknown subcommand \"flush\" (list)");
  EXPECT_EQ(parseError({"bpf", "ct", "list", "--address", "10.0.0"}),
            "bpf ct list: --address: \"10.0.0\" is not an IPv4 address");
  EXPECT_EQ(parseError({"bpf", "ct", "list", "--table", "nat"}),
            "bpf ct list: --table: unknown table \"nat\" (main, embryonic)");
  EXPECT_EQ(parseError({"bpf", "nat", "list", "--table", "main"}), "unknown flag \"--table\" for \"bpf nat list\"");
  EXPECT_EQ(parseError({"bpf", "ct", "list", "--address", "10.0.0.1", "--address", "10.0.0.2"}),
            "bpf ct list: --address is given twice");
  EXPECT_EQ(parseError({"bpf", "lb", "list", "--address", "10.0.0.1"}), "unknown flag \"--address\" for \"bpf lb list\"");
  EXPECT_EQ(parseError({"node", "get"}), "node: unknown subcommand \"get\" (list)");
}

TEST(AgentctlArgs, UpsertBuildsTheWholeService) {
  auto out = parse({"service", "upsert", "default/web", "--port", "80", "--protocol", "UDP",
                    "--cluster-ip", "10.43.0.10", "--node-port=30080", "--external-ip", "1.2.3.4",
                    "--external-ip", "1.2.3.5", "--lb-ip", "192.168.10.240", "--backend",
                    "10.0.1.5:8080", "--backend", "10.0.2.7:8080,terminating"});
  ASSERT_TRUE(out.ok()) << out.error;
  const pb::Service& svc = out.invocation.service;
  EXPECT_EQ(out.invocation.command, Command::kServiceUpsert);
  EXPECT_EQ(out.invocation.serviceName, "default/web");
  EXPECT_EQ(svc.name(), "default/web");
  EXPECT_EQ(svc.port(), 80u);
  EXPECT_EQ(svc.protocol(), pb::UDP);
  EXPECT_EQ(svc.cluster_ip(), "10.43.0.10");
  EXPECT_EQ(svc.node_port(), 30080u);
  ASSERT_EQ(svc.external_ips_size(), 2);
  EXPECT_EQ(svc.external_ips(1), "1.2.3.5");
  ASSERT_EQ(svc.load_balancer_ips_size(), 1);
  EXPECT_EQ(svc.load_balancer_ips(0), "192.168.10.240");
  ASSERT_EQ(svc.backends_size(), 2);
  EXPECT_EQ(svc.backends(0).address(), "10.0.1.5");
  EXPECT_EQ(svc.backends(0).port(), 8080u);
  EXPECT_EQ(svc.backends(0).state(), pb::ACTIVE);
  EXPECT_EQ(svc.backends(1).address(), "10.0.2.7");
  EXPECT_EQ(svc.backends(1).state(), pb::TERMINATING);
}

TEST(AgentctlArgs, UpsertCarriesTheLoadBalancingPolicy) {
  auto out = parse({"service", "upsert", "default/web", "--port", "80", "--node-port", "30080",
                    "--session-affinity", "ClientIP", "--session-affinity-timeout", "600",
                    "--external-traffic-policy", "Local", "--internal-traffic-policy=local",
                    "--backend", "10.0.1.5:8080,node=k3s-1", "--backend", "10.0.2.7:8080,terminating,node=k3s-2"});
  ASSERT_TRUE(out.ok()) << out.error;
  const pb::Service& svc = out.invocation.service;
  EXPECT_EQ(svc.session_affinity(), "ClientIP");
  EXPECT_EQ(svc.session_affinity_timeout_seconds(), 600u);
  EXPECT_EQ(svc.external_traffic_policy(), "Local");
  EXPECT_EQ(svc.internal_traffic_policy(), "Local");
  ASSERT_EQ(svc.backends_size(), 2);
  EXPECT_EQ(svc.backends(0).node_name(), "k3s-1");
  EXPECT_EQ(svc.backends(0).state(), pb::ACTIVE);
  EXPECT_EQ(svc.backends(1).node_name(), "k3s-2");
  EXPECT_EQ(svc.backends(1).state(), pb::TERMINATING);

  auto plain = parse({"service", "upsert", "a", "--port", "53"});
  ASSERT_TRUE(plain.ok()) << plain.error;
  EXPECT_EQ(plain.invocation.service.session_affinity(), "") << "the agent applies Kubernetes' defaults";

  auto upsert = [](std::vector<std::string> flags) {
    std::vector<std::string> args{"service", "upsert", "default/web", "--port", "80"};
    args.insert(args.end(), flags.begin(), flags.end());
    return parseError(args);
  };
  EXPECT_EQ(upsert({"--session-affinity", "Sticky"}),
            "--session-affinity: unknown session affinity \"Sticky\" (None, ClientIP)");
  EXPECT_EQ(upsert({"--session-affinity", "ClientIP", "--session-affinity-timeout", "0"}),
            "--session-affinity-timeout: \"0\" is not a number of seconds (1-86400)");
  EXPECT_EQ(upsert({"--session-affinity", "ClientIP", "--session-affinity-timeout", "86401"}),
            "--session-affinity-timeout: \"86401\" is not a number of seconds (1-86400)");
  EXPECT_EQ(upsert({"--session-affinity-timeout", "60"}), "--session-affinity-timeout: needs --session-affinity ClientIP");
  EXPECT_EQ(upsert({"--external-traffic-policy", "Node"}),
            "--external-traffic-policy: unknown traffic policy \"Node\" (Cluster, Local)");
  EXPECT_EQ(upsert({"--external-traffic-policy", "Local", "--external-traffic-policy", "Cluster"}),
            "--external-traffic-policy: given more than once");
  EXPECT_EQ(upsert({"--backend", "10.0.1.5:80,node="}), "--backend: empty node name in \"10.0.1.5:80,node=\"");
  EXPECT_EQ(upsert({"--backend", "10.0.1.5:80,terminating,zone=a"}),
            "--backend: \"10.0.1.5:80,terminating,zone=a\" is not IPv4:PORT[,active|terminating][,node=NAME]");
}

TEST(AgentctlArgs, UpsertDefaultsToTcp) {
  auto out = parse({"service", "upsert", "a", "--port", "53"});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.invocation.service.protocol(), pb::TCP);
  EXPECT_EQ(out.invocation.service.backends_size(), 0);
}

TEST(AgentctlArgs, UpsertValueErrorsAreExact) {
  auto upsert = [](std::vector<std::string> flags) {
    std::vector<std::string> args{"service", "upsert", "default/web"};
    args.insert(args.end(), flags.begin(), flags.end());
    return parseError(args);
  };
  EXPECT_EQ(upsert({"--port", "70000"}), "--port: 70000 is not a port (1-65535)");
  EXPECT_EQ(upsert({"--port", "0"}), "--port: 0 is not a port (1-65535)");
  EXPECT_EQ(upsert({"--port", "http"}), "--port: \"http\" is not a port (1-65535)");
  EXPECT_EQ(upsert({"--port", "80", "--node-port", "-1"}),
            "--node-port: \"-1\" is not a port (1-65535)");
  EXPECT_EQ(upsert({"--port", "80", "--protocol", "sctp"}),
            "--protocol: unknown protocol \"sctp\" (tcp, udp)");
  EXPECT_EQ(upsert({"--port", "80", "--cluster-ip", "10.43.0"}),
            "--cluster-ip: \"10.43.0\" is not an IPv4 address");
  EXPECT_EQ(upsert({"--port", "80", "--lb-ip", "fd00::1"}),
            "--lb-ip: \"fd00::1\" is not an IPv4 address");
  EXPECT_EQ(upsert({"--port", "80", "--backend", "10.0.1.x:80"}),
            "--backend: \"10.0.1.x:80\" is not IPv4:PORT");
  EXPECT_EQ(upsert({"--port", "80", "--backend", "10.0.1.5"}),
            "--backend: \"10.0.1.5\" is not IPv4:PORT");
  EXPECT_EQ(upsert({"--port", "80", "--backend", "10.0.1.5:70000"}),
            "--backend: 70000 in \"10.0.1.5:70000\" is not a port (1-65535)");
  EXPECT_EQ(upsert({"--port", "80", "--backend", "10.0.1.5:80,draining"}),
            "--backend: unknown backend state \"draining\" in \"10.0.1.5:80,draining\" "
            "(active, terminating)");
  EXPECT_EQ(upsert({"--cluster-ip", "10.43.0.1"}), "service upsert: --port is required");
  EXPECT_EQ(upsert({"--port", "80", "--port", "81"}), "--port: given more than once");
  // A forgotten value must not swallow the next flag.
  EXPECT_EQ(upsert({"--cluster-ip", "--port", "80"}), "--cluster-ip: missing value");
}

// ---------------------------------------------------------------------------------------------
// Table printer

TEST(AgentctlTable, AlignsColumnsWithThreeSpacesAndNeverPadsTheLastCell) {
  Table t;
  t.addRow({"NAME", "IP", "LOCAL"});
  t.addRow({"k3s-server-1", "192.168.10.100", "yes"});
  t.addRow({"n2", "10.0.0.2", "a long last cell that widens nothing"});
  EXPECT_EQ(t.render(),
            "NAME           IP               LOCAL\n"
            "k3s-server-1   192.168.10.100   yes\n"
            "n2             10.0.0.2         a long last cell that widens nothing\n");
}

TEST(AgentctlTable, RaggedRowsIndentAndNoTrailingSpaces) {
  Table t("  ");
  t.addRow({"Section:"});
  t.addRow({"a:", "1", "x"});
  t.addRow({"long key:", ""});
  t.addRow({"", "continued"});
  EXPECT_EQ(t.render(),
            "  Section:\n"
            "  a:          1   x\n"
            "  long key:\n"
            "              continued\n");
  EXPECT_EQ(Table().render(), "");
}

TEST(AgentctlTable, ShorterRowsEndAColumnBlockAsInTabwriter) {
  Table t;
  t.addRow({"KubeProxyReplacement:", "True", "[eth0]"});
  t.addRow({"Host firewall:", "Disabled"});
  t.addRow({"Cilium:", "Ok", "1.15.1"});
  t.addRow({"Services:"});
  t.addRow({"- ClusterIP:", "Enabled"});
  t.addRow({"- NodePort:", "Enabled (Range: 30000-32767)"});
  EXPECT_EQ(t.render(),
            "KubeProxyReplacement:   True   [eth0]\n"
            "Host firewall:          Disabled\n"
            "Cilium:                 Ok   1.15.1\n"
            "Services:\n"
            "- ClusterIP:   Enabled\n"
            "- NodePort:    Enabled (Range: 30000-32767)\n");
}

TEST(AgentctlTable, WidthCountsCodePointsNotBytes) {
  Table t;
  t.addRow({"b\xc3\xa4r", "1"});  // "bär": 4 bytes, 3 columns
  t.addRow({"foo", "2"});
  EXPECT_EQ(t.render(), "b\xc3\xa4r   1\nfoo   2\n");
}

// ---------------------------------------------------------------------------------------------
// Status

pb::StatusResponse cannedStatus() {
  pb::StatusResponse r;
  r.set_state("Ok");
  r.set_version("0.1.0");
  r.set_node_name("k3s-1");
  r.set_uptime_seconds(3723);
  r.set_kube_proxy_replacement("True");
  auto* d = r.add_devices();
  d->set_name("ens192");
  d->set_ifindex(2);
  d->set_ipv4("192.168.10.100");
  d->set_mac("00:50:56:aa:bb:cc");
  d->set_direct_routing(true);
  d->set_tc_ingress(true);
  d->set_tc_egress(true);
  r.set_socket_lb(true);
  r.set_socket_lb_tracing(true);
  r.set_socket_lb_cgroup("/sys/fs/cgroup");
  r.add_socket_lb_hooks("connect4");
  r.add_socket_lb_hooks("sendmsg4");
  r.set_lb_mode("SNAT");
  r.set_backend_selection("Random");
  r.set_node_port_range("30000-32767");
  r.set_services(2);
  r.set_frontends(3);
  r.set_backends(4);
  auto* m = r.add_maps();
  m->set_name("np_lb4_services");
  m->set_max_entries(65536);
  m->set_entries(3);
  m = r.add_maps();
  m->set_name("np_ct4_global");
  m->set_max_entries(262144);
  m->set_entries(1234);
  auto* c = r.add_counters();
  c->set_direction("ingress");
  c->set_reason(0);
  c->set_name("forwarded");
  c->set_packets(123456);
  c->set_bytes(98765432);
  c = r.add_counters();
  c->set_direction("egress");
  c->set_reason(134);
  c->set_name("Unsupported L3 protocol");
  c->set_packets(12);
  c->set_bytes(840);
  r.set_bpf_root("/sys/fs/bpf/nodepath");
  return r;
}

const char* const kCannedSummary =
    "KubeProxyReplacement:   True   [ens192 192.168.10.100 (Direct Routing)]\n"
    "nodepath:               Ok     0.1.0\n"
    "Node:                   k3s-1\n"
    "Uptime:                 1h2m3s\n"
    "Socket LB:              Enabled [cgroup /sys/fs/cgroup]\n"
    "LB mode:                SNAT\n"
    "Services:               2 services, 3 frontends, 4 backends\n"
    "BPF root:               /sys/fs/bpf/nodepath\n";

TEST(AgentctlStatus, DefaultLinesMirrorCiliumStatus) {
  EXPECT_EQ(formatStatus(cannedStatus(), StatusDetail::kNormal), kCannedSummary);
  EXPECT_EQ(statusExitCode(cannedStatus()), 0);
}

TEST(AgentctlStatus, VerboseAddsKprDetailsDevicesMapsAndCounters) {
  std::string expected = kCannedSummary;
  expected +=
      "KubeProxyReplacement Details:\n"
      "  Status:               True\n"
      "  Socket LB:            Enabled\n"
      "  Socket LB Hooks:      connect4, sendmsg4\n"
      "  Socket LB Tracing:    Enabled\n"
      "  Socket LB Coverage:   Full\n"
      "  Devices:              ens192 192.168.10.100 (Direct Routing)\n"
      "  Mode:                 SNAT\n"
      "  Backend Selection:    Random\n"
      "  Session Affinity:     Enabled\n"
      "  Services:\n"
      "  - ClusterIP:      Enabled\n"
      "  - NodePort:       Enabled (Range: 30000-32767)\n"
      "  - LoadBalancer:   Enabled\n"
      "  - externalIPs:    Enabled\n"
      "Device Attachments:\n"
      "  Name     Ifindex   IPv4             MAC                 TC ingress   TC egress   Error\n"
      "  ens192   2         192.168.10.100   00:50:56:aa:bb:cc   yes          yes         -\n"
      "BPF Maps:\n"
      "  Name              Max entries   Entries\n"
      "  np_lb4_services   65536         3\n"
      "  np_ct4_global     262144        1234\n"
      "Datapath counters:\n"
      "  Direction   Reason                          Packets   Bytes\n"
      "  ingress     0 (forwarded)                   123456    98765432\n"
      "  egress      134 (Unsupported L3 protocol)   12        840\n";
  EXPECT_EQ(formatStatus(cannedStatus(), StatusDetail::kVerbose), expected);
}

// How the native device's programs are attached ("tcx" links, or "clsact" filters on kernels
// before 6.6) follows "yes"; a hook without our program stays "no" whatever the device uses.
TEST(AgentctlStatus, DeviceTableSaysHowTcIsAttached) {
  pb::StatusResponse r = cannedStatus();
  r.mutable_devices(0)->set_tc_link("tcx");
  std::string text = formatStatus(r, StatusDetail::kVerbose);
  EXPECT_NE(text.find("  Name     Ifindex   IPv4             MAC                 TC ingress   TC egress   Error\n"
                      "  ens192   2         192.168.10.100   00:50:56:aa:bb:cc   yes (tcx)    yes (tcx)   -\n"),
            std::string::npos)
      << text;
  r.mutable_devices(0)->set_tc_link("clsact");
  r.mutable_devices(0)->set_tc_egress(false);
  text = formatStatus(r, StatusDetail::kVerbose);
  EXPECT_NE(text.find("  ens192   2         192.168.10.100   00:50:56:aa:bb:cc   yes (clsact)   no          "),
            std::string::npos)
      << text;
}

// Host routing as cilium prints it: "Host Routing: BPF", or "Legacy" with the reason.
TEST(AgentctlStatus, HostRoutingLine) {
  pb::StatusResponse r = cannedStatus();
  r.set_host_routing("BPF");
  std::string text = formatStatus(r, StatusDetail::kNormal);
  EXPECT_NE(text.find("\nHost Routing:           BPF\n"), std::string::npos) << text;
  r.set_host_routing("Legacy");
  r.set_host_routing_reason("--enable-host-legacy-routing");
  text = formatStatus(r, StatusDetail::kNormal);
  EXPECT_NE(text.find("\nHost Routing:           Legacy (--enable-host-legacy-routing)\n"), std::string::npos) << text;
}

// XDP acceleration as cilium prints it ("XDP Acceleration: Native [ens192]"), per device: the
// devices XDP runs on, a best-effort device that fell back to tc with the reason, a device whose
// program is not attached; the device table gains an XDP column and the programs' counters.
TEST(AgentctlStatus, XdpAccelerationPerDevice) {
  pb::StatusResponse r = cannedStatus();
  r.set_xdp_acceleration("Native");
  r.mutable_devices(0)->set_xdp("native");
  r.mutable_devices(0)->set_xdp_attached(true);
  auto* x = r.mutable_devices(0)->mutable_xdp_counters();
  x->set_tx(20);
  x->set_pass(7);
  x->set_skipped(3);
  EXPECT_NE(formatStatus(r, StatusDetail::kNormal).find("\nXDP Acceleration:       Native [ens192]\n"),
            std::string::npos)
      << formatStatus(r, StatusDetail::kNormal);
  std::string text = formatStatus(r, StatusDetail::kVerbose);
  EXPECT_NE(text.find("  XDP Acceleration:     Native [ens192]\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  Name     Ifindex   IPv4             MAC                 TC ingress   TC egress   XDP      Error\n"
                      "  ens192   2         192.168.10.100   00:50:56:aa:bb:cc   yes          yes         native   -\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("XDP packets:\n"
                      "  Device   TX   Redirect   Pass (done)   To tc   Skipped   Drop\n"
                      "  ens192   20   0          7             0       3         0\n"),
            std::string::npos)
      << text;

  r.set_xdp_acceleration("Best-Effort");
  auto* mv = r.add_devices();
  mv->set_name("mv0");
  mv->set_xdp("tc fallback");
  mv->set_xdp_fallback("attach XDP in native (driver) mode to mv0: Operation not supported (driver macvlan has no native XDP)");
  r.mutable_devices(0)->set_xdp_attached(false);
  text = formatStatus(r, StatusDetail::kVerbose);
  EXPECT_NE(text.find("  XDP Acceleration:     Best-Effort [ens192 (not attached)] [mv0: tc fallback, attach XDP in "
                      "native (driver) mode to mv0: Operation not supported (driver macvlan has no native XDP)]\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("native (not attached)"), std::string::npos) << text;
  EXPECT_EQ(text.find("XDP Hand-off"), std::string::npos) << "a line for a limit no device has: " << text;

  // A kernel without bpf_xdp_adjust_meta for XDP: the limit is said under the acceleration line,
  // which stays as cilium prints it.
  r.mutable_devices(0)->set_xdp_limit("new flows and local backends in tc: kernel without bpf_xdp_adjust_meta for XDP");
  text = formatStatus(r, StatusDetail::kVerbose);
  EXPECT_NE(text.find("  XDP Acceleration:     Best-Effort [ens192 (not attached)] [mv0"), std::string::npos) << text;
  EXPECT_NE(text.find("    XDP Hand-off:       none on ens192 (new flows and local backends in tc: kernel without "
                      "bpf_xdp_adjust_meta for XDP)\n"),
            std::string::npos)
      << text;
}

// DSR and Hybrid: the dispatch mode follows the mode, as in Cilium's KubeProxyReplacement Details.
TEST(AgentctlStatus, DsrModeShowsItsDispatchMode) {
  pb::StatusResponse r = cannedStatus();
  r.set_lb_mode("DSR");
  r.set_dsr_dispatch_mode("IP Option/Extension");
  const std::string normal = formatStatus(r, StatusDetail::kNormal);
  EXPECT_NE(normal.find("LB mode:                DSR (IP Option/Extension)\n"), std::string::npos) << normal;
  const std::string verbose = formatStatus(r, StatusDetail::kVerbose);
  // The indented label widens the column by one.
  EXPECT_NE(verbose.find("  Mode:                  DSR\n"
                         "    DSR Dispatch Mode:   IP Option/Extension\n"
                         "  Backend Selection:     Random\n"),
            std::string::npos)
      << verbose;
  r.set_lb_mode("Hybrid");
  EXPECT_NE(formatStatus(r, StatusDetail::kVerbose).find("  Mode:                  Hybrid\n    DSR Dispatch Mode:"),
            std::string::npos);
}

TEST(AgentctlStatus, PrintsOnlyWhatTheResponseCarries) {
  pb::StatusResponse r;
  r.set_state("Degraded");
  r.set_message("ens224: tc ingress not attached");
  EXPECT_EQ(formatStatus(r, StatusDetail::kNormal),
            "nodepath:    Degraded   ens224: tc ingress not attached\n"
            "Socket LB:   Disabled\n"
            "Services:    0 services, 0 frontends, 0 backends\n");
  EXPECT_EQ(statusExitCode(r), 1);
}

TEST(AgentctlStatus, DeviceErrorsAndRestoreAreShown) {
  pb::StatusResponse r = cannedStatus();
  auto* d = r.add_devices();
  d->set_name("ens224");
  d->set_ipv4("10.10.0.5");
  d->set_error("tc ingress not attached");
  r.set_restored(true);
  r.set_restored_services(7);
  std::string text = formatStatus(r, StatusDetail::kNormal);
  EXPECT_NE(text.find("KubeProxyReplacement:   True   "
                      "[ens192 192.168.10.100 (Direct Routing), ens224 10.10.0.5]\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Device errors:          ens224: tc ingress not attached\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Restored:               7 services adopted from pinned maps\n"),
            std::string::npos)
      << text;
}

TEST(AgentctlStatus, BriefIsOkOrTheReason) {
  EXPECT_EQ(formatStatus(cannedStatus(), StatusDetail::kBrief), "OK\n");
  pb::StatusResponse r;
  r.set_state("Degraded");
  r.set_message("ens224: tc ingress not attached");
  EXPECT_EQ(formatStatus(r, StatusDetail::kBrief), "error: ens224: tc ingress not attached\n");
  r.clear_message();
  EXPECT_EQ(formatStatus(r, StatusDetail::kBrief), "error: nodepath is Degraded\n");
  EXPECT_EQ(formatStatus(pb::StatusResponse{}, StatusDetail::kBrief),
            "error: the agent reported no state\n");
}

TEST(AgentctlStatus, ServiceTypesAreDisabledWithoutKubeProxyReplacement) {
  pb::StatusResponse r;
  r.set_state("Ok");
  r.set_kube_proxy_replacement("False");
  r.set_node_port_range("30000-32767");
  std::string text = formatStatus(r, StatusDetail::kVerbose);
  EXPECT_NE(text.find("  - NodePort:       Disabled\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("Socket LB Coverage"), std::string::npos) << text;
  EXPECT_EQ(text.find("BPF Maps:"), std::string::npos) << text;
}

TEST(AgentctlStatus, DurationsReadLikeGo) {
  EXPECT_EQ(formatDuration(0), "0s");
  EXPECT_EQ(formatDuration(42), "42s");
  EXPECT_EQ(formatDuration(300), "5m0s");
  EXPECT_EQ(formatDuration(3723), "1h2m3s");
  EXPECT_EQ(formatDuration(3 * 86400 + 9), "3d0h0m9s");
}

// ---------------------------------------------------------------------------------------------
// Services, nodes, LB map

pb::Service webService() {
  pb::Service s;
  s.set_name("default/web");
  s.set_protocol(pb::TCP);
  s.set_port(80);
  s.set_cluster_ip("10.43.0.10");
  s.set_node_port(30080);
  s.add_external_ips("1.2.3.4");
  s.add_external_ips("1.2.3.5");
  s.set_source("kubernetes");
  auto* b = s.add_backends();
  b->set_address("10.0.1.5");
  b->set_port(8080);
  b = s.add_backends();
  b->set_address("10.0.2.7");
  b->set_port(8080);
  b->set_state(pb::TERMINATING);
  return s;
}

TEST(AgentctlServices, ListIsSortedWithDashesForEmptyFields) {
  pb::ListServicesResponse list;
  *list.add_services() = webService();
  auto* dns = list.add_services();
  dns->set_name("default/dns");
  dns->set_protocol(pb::UDP);
  dns->set_port(53);
  dns->add_load_balancer_ips("192.168.10.240");
  // The web service says its policies (an agent of this version always does), dns does not.
  list.mutable_services(0)->set_session_affinity("ClientIP");
  list.mutable_services(0)->set_session_affinity_timeout_seconds(600);
  list.mutable_services(0)->set_external_traffic_policy("Local");
  list.mutable_services(0)->set_internal_traffic_policy("Cluster");
  list.mutable_services(0)->mutable_backends(0)->set_node_name("k3s-1");
  list.mutable_services(0)->mutable_backends(0)->set_local(true);
  EXPECT_EQ(formatServiceList(list),
            "NAME          PROTOCOL   PORT   CLUSTER-IP   NODE-PORT   EXTERNAL-IPS      LB-IPS"
            "           AFFINITY          ETP/ITP         BACKENDS\n"
            "default/dns   UDP        53     -            -           -                 "
            "192.168.10.240   -                 -               -\n"
            "default/web   TCP        80     10.43.0.10   30080       1.2.3.4,1.2.3.5   -"
            "                ClientIP (600s)   Local/Cluster   10.0.1.5:8080 @k3s-1 (local),10.0.2.7:8080 (terminating)\n");
}

TEST(AgentctlServices, GetIsAKeyValueBlockWithOneBackendPerLine) {
  EXPECT_EQ(formatService(webService()),
            "Name:           default/web\n"
            "Source:         kubernetes\n"
            "Protocol:       TCP\n"
            "Port:           80\n"
            "Cluster IP:     10.43.0.10\n"
            "Node port:      30080\n"
            "External IPs:   1.2.3.4, 1.2.3.5\n"
            "LB IPs:         -\n"
            "Backends:       10.0.1.5:8080\n"
            "                10.0.2.7:8080 (terminating)\n");
}

TEST(AgentctlServices, GetShowsAHostPortAndItsAddress) {
  pb::Service svc;
  svc.set_name("hostport/default/web-1/tcp/9080");
  svc.set_source("cni");
  svc.set_protocol(pb::TCP);
  svc.set_port(9080);
  svc.set_host_port(9080);
  auto* b = svc.add_backends();
  b->set_address("10.0.2.2");
  b->set_port(8080);
  EXPECT_NE(formatService(svc).find("Host port:      (node addresses):9080\n"), std::string::npos) << formatService(svc);
  svc.set_host_ip("192.168.10.101");
  EXPECT_NE(formatService(svc).find("Host port:      192.168.10.101:9080\n"), std::string::npos) << formatService(svc);
  EXPECT_EQ(formatService(webService()).find("Host port"), std::string::npos);
}

TEST(AgentctlNodes, ListIsSortedByName) {
  pb::ListNodesResponse list;
  auto* n = list.add_nodes();
  n->set_name("k3s-2");
  n->set_ip("192.168.10.101");
  n->set_pod_cidr("10.42.1.0/24");
  n = list.add_nodes();
  n->set_name("k3s-1");
  n->set_ip("192.168.10.100");
  n->set_pod_cidr("10.42.0.0/24");
  n->set_local(true);
  EXPECT_EQ(formatNodeList(list),
            "NAME    IP               POD-CIDR       LOCAL\n"
            "k3s-1   192.168.10.100   10.42.0.0/24   yes\n"
            "k3s-2   192.168.10.101   10.42.1.0/24   no\n");
}

TEST(AgentctlBpfLb, ListUsesCiliumLayout) {
  pb::ListLbResponse list;
  // Deliberately out of order: numeric address order puts 10.43.0.9 before 10.43.0.10.
  auto* e = list.add_entries();
  e->set_address("10.43.0.10");
  e->set_port(80);
  e->set_protocol(pb::TCP);
  e->set_service_id(3);
  e->set_count(1);
  e->add_flags("ClusterIP");
  e->add_flags("non-routable");
  auto* s = e->add_slots();
  s->set_slot(2);
  s->set_backend_id(8);
  s->set_address("10.0.2.7");
  s->set_port(8080);
  s->set_state(pb::TERMINATING);
  s = e->add_slots();
  s->set_slot(1);
  s->set_backend_id(7);
  s->set_address("10.0.1.5");
  s->set_port(8080);
  e = list.add_entries();
  e->set_address("10.43.0.9");
  e->set_port(53);
  e->set_protocol(pb::UDP);
  e->set_service_id(5);
  s = e->add_slots();
  s->set_slot(1);
  s->set_backend_id(9);  // backend entry missing from the map
  EXPECT_EQ(formatLbList(list),
            "SERVICE ADDRESS     BACKEND ADDRESS (REVNAT_ID) (SLOT)\n"
            "10.43.0.9:53/UDP    0.0.0.0:0 (5) (0)\n"
            "                    (backend 9 missing) (5) (1)\n"
            "10.43.0.10:80/TCP   0.0.0.0:0 (3) (0) [ClusterIP, non-routable]\n"
            "                    10.0.1.5:8080 (3) (1)\n"
            "                    10.0.2.7:8080 (3) (2) [terminating]\n");
}

// ---------------------------------------------------------------------------------------------
// JSON

TEST(AgentctlArgs, ConntrackListTakesAnAddressAndATable) {
  auto ct = parse({"bpf", "ct", "list", "--address=192.168.10.200", "--table", "embryonic"});
  ASSERT_TRUE(ct.ok()) << ct.error;
  EXPECT_EQ(ct.invocation.command, Command::kBpfCtList);
  EXPECT_EQ(ct.invocation.ctFilter.address(), "192.168.10.200");
  EXPECT_EQ(ct.invocation.ctFilter.table(), "embryonic");
  EXPECT_FALSE(ct.invocation.ctFilter.snat_only());
  auto nat = parse({"bpf", "nat", "list"});
  ASSERT_TRUE(nat.ok()) << nat.error;
  EXPECT_EQ(nat.invocation.command, Command::kBpfNatList);
  EXPECT_TRUE(nat.invocation.ctFilter.snat_only());
}

// One line per entry in tuple order, like `cilium bpf ct list global`: the tuple the hook
// matches, each rewrite, lifetime, counters, flags.
TEST(AgentctlBpfCt, ListIsOneLinePerEntryInTupleOrder) {
  pb::ListConntrackResponse list;
  pb::CtEntry* rev = list.add_entries();
  rev->set_table("main");
  rev->set_hook("ingress");
  rev->set_protocol(pb::TCP);
  rev->set_src("10.0.2.10");
  rev->set_sport(8080);
  rev->set_dst("192.168.10.100");
  rev->set_dport(32768);
  rev->set_xlate_src("192.168.10.100");
  rev->set_xlate_sport(30080);
  rev->set_xlate_dst("192.168.10.200");
  rev->set_xlate_dport(40000);
  rev->set_expires_in_s(7990);
  rev->set_packets(3);
  rev->set_bytes(180);
  rev->set_tcp_flags("SYN|ACK");
  rev->set_service_id(2);
  rev->set_backend_id(5);
  rev->add_flags("reply");
  rev->add_flags("snat");
  pb::CtEntry* fwd = list.add_entries();
  fwd->set_table("embryonic");
  fwd->set_hook("egress");
  fwd->set_protocol(pb::UDP);
  fwd->set_src("10.0.1.10");
  fwd->set_sport(53);
  fwd->set_dst("192.168.10.200");
  fwd->set_dport(5353);
  fwd->set_xlate_sport(81);
  fwd->set_expires_in_s(-2);
  EXPECT_EQ(formatCtList(list, false),
            "UDP OUT 10.0.1.10:53 -> 192.168.10.200:5353 XLATE_SRC 10.0.1.10:81 expires=-2s(expired) packets=0 "
            "bytes=0 table=embryonic\n"
            "TCP IN 10.0.2.10:8080 -> 192.168.10.100:32768 XLATE_SRC 192.168.10.100:30080 XLATE_DST "
            "192.168.10.200:40000 expires=7990s packets=3 bytes=180 tcp=SYN|ACK revnat=2 backend=5 flags=reply,snat "
            "table=main\n");
  EXPECT_EQ(formatCtList(pb::ListConntrackResponse{}, true), "no NAT entries\n");
  EXPECT_EQ(formatCtList(pb::ListConntrackResponse{}, false), "no conntrack entries\n");
}

TEST(AgentctlJson, UsesProtoFieldNamesAndPrintsZeroValues) {
  pb::ListServicesResponse list;
  auto* svc = list.add_services();
  svc->set_name("default/web");
  svc->set_protocol(pb::TCP);
  svc->set_port(80);
  svc->set_cluster_ip("10.43.0.10");
  std::string json = toJson(list);
  EXPECT_NE(json.find("\"cluster_ip\": \"10.43.0.10\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"node_port\": 0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"load_balancer_ips\": []"), std::string::npos) << json;
  EXPECT_NE(json.find("\"protocol\": \"TCP\""), std::string::npos) << json;
  EXPECT_EQ(json.find("clusterIp"), std::string::npos) << json;
  EXPECT_EQ(json.back(), '\n');

  pb::ListServicesResponse back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
  EXPECT_EQ(back.services(0).cluster_ip(), "10.43.0.10");

  std::string status = toJson(cannedStatus());
  EXPECT_NE(status.find("\"kube_proxy_replacement\": \"True\""), std::string::npos) << status;
  EXPECT_NE(status.find("\"restored\": false"), std::string::npos) << status;
  EXPECT_NE(status.find("\"max_entries\": 65536"), std::string::npos) << status;
}

// ---------------------------------------------------------------------------------------------
// Commands against an in-process fake agent

class FakeAgent final : public pb::Agent::Service {
 public:
  grpc::Status UpsertService(grpc::ServerContext*, const pb::UpsertServiceRequest* req,
                             pb::UpsertServiceResponse* resp) override {
    const pb::Service& s = req->service();
    if (s.node_port() != 0 && (s.node_port() < 30000 || s.node_port() > 32767)) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "service " + s.name() + ": node_port " + std::to_string(s.node_port()) +
                  " is outside the NodePort range 30000-32767"};
    }
    const bool created = services_.count(s.name()) == 0;
    services_[s.name()] = s;
    *resp->mutable_service() = s;
    resp->set_created(created);
    return grpc::Status::OK;
  }
  grpc::Status DeleteService(grpc::ServerContext*, const pb::DeleteServiceRequest* req,
                             pb::DeleteServiceResponse*) override {
    if (services_.erase(req->name()) == 0) {
      return {grpc::StatusCode::NOT_FOUND, "the agent's own wording"};
    }
    return grpc::Status::OK;
  }
  grpc::Status GetService(grpc::ServerContext*, const pb::GetServiceRequest* req,
                          pb::GetServiceResponse* resp) override {
    auto it = services_.find(req->name());
    if (it == services_.end()) return {grpc::StatusCode::NOT_FOUND, "nope"};
    *resp->mutable_service() = it->second;
    return grpc::Status::OK;
  }
  // Pages of two by default, so the client has to put pages together.
  grpc::Status ListServices(grpc::ServerContext*, const pb::ListServicesRequest*,
                            grpc::ServerWriter<pb::ListServicesResponse>* writer) override {
    pb::ListServicesResponse page;
    for (const auto& [name, svc] : services_) {
      *page.add_services() = svc;
      if (page.services_size() == pageSize) {
        writer->Write(page);
        page.Clear();
      }
    }
    if (page.services_size() > 0) writer->Write(page);
    return grpc::Status::OK;
  }
  grpc::Status Status(grpc::ServerContext*, const pb::StatusRequest*,
                      pb::StatusResponse* resp) override {
    *resp = status_;
    return grpc::Status::OK;
  }

  pb::StatusResponse status_;
  int pageSize = 2;
  void add(const pb::Service& s) { services_[s.name()] = s; }

 private:
  std::map<std::string, pb::Service> services_;  // gRPC serves calls one at a time in these tests
};

class AgentctlCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&agent_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = pb::Agent::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override { server_->Shutdown(); }

  // Runs a command line against the fake; returns the exit code, output in out_/err_.
  int run(std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    ParseOutcome parsed = parseArgs(args, "/run/test.sock");
    EXPECT_TRUE(parsed.ok()) << parsed.error;
    return runCommand(parsed.invocation, *stub_, out_, err_);
  }

  FakeAgent agent_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pb::Agent::Stub> stub_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(AgentctlCommands, UpsertReportsCreatedThenUpdated) {
  EXPECT_EQ(
      run({"service", "upsert", "default/web", "--port", "80", "--backend", "10.0.1.5:80"}), 0);
  EXPECT_EQ(out_.str(), "service default/web created\n");
  EXPECT_EQ(run({"service", "upsert", "default/web", "--port", "8080"}), 0);
  EXPECT_EQ(out_.str(), "service default/web updated\n");
  EXPECT_EQ(err_.str(), "");
}

TEST_F(AgentctlCommands, ServerValidationErrorIsPrintedVerbatim) {
  EXPECT_EQ(run({"service", "upsert", "default/web", "--port", "80", "--node-port", "80"}), 1);
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(err_.str(),
            "agentctl: service default/web: node_port 80 is outside the NodePort range "
            "30000-32767\n");
}

TEST_F(AgentctlCommands, DeleteAndGetOfAMissingServiceSayNotFound) {
  EXPECT_EQ(run({"service", "delete", "default/gone"}), 1);
  EXPECT_EQ(err_.str(), "agentctl: service default/gone not found\n");
  EXPECT_EQ(run({"service", "get", "default/gone"}), 1);
  EXPECT_EQ(err_.str(), "agentctl: service default/gone not found\n");

  ASSERT_EQ(run({"service", "upsert", "default/web", "--port", "80"}), 0);
  EXPECT_EQ(run({"service", "delete", "default/web"}), 0);
  EXPECT_EQ(out_.str(), "service default/web deleted\n");
}

TEST_F(AgentctlCommands, JsonOutputIsTheResponseMessage) {
  ASSERT_EQ(
      run({"service", "upsert", "default/web", "--port", "80", "--cluster-ip", "10.43.0.10"}), 0);
  EXPECT_EQ(run({"-o", "json", "service", "list"}), 0);
  pb::ListServicesResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_.str(), &list).ok()) << out_.str();
  ASSERT_EQ(list.services_size(), 1);
  EXPECT_EQ(list.services(0).cluster_ip(), "10.43.0.10");
  EXPECT_NE(out_.str().find("\"cluster_ip\""), std::string::npos);

  EXPECT_EQ(run({"service", "delete", "default/web", "-o", "json"}), 0);
  EXPECT_EQ(out_.str(), "{}\n");
}

TEST_F(AgentctlCommands, StatusExitCodeFollowsTheAgentState) {
  agent_.status_ = cannedStatus();
  EXPECT_EQ(run({"status", "--brief"}), 0);
  EXPECT_EQ(out_.str(), "OK\n");
  agent_.status_.set_state("Degraded");
  agent_.status_.set_message("ens224: tc ingress not attached");
  EXPECT_EQ(run({"status", "--brief"}), 1);
  EXPECT_EQ(out_.str(), "error: ens224: tc ingress not attached\n");
  EXPECT_EQ(run({"status", "-o", "json"}), 1);
  EXPECT_NE(out_.str().find("\"state\": \"Degraded\""), std::string::npos) << out_.str();
  // The chart's startup and liveness probes: a Degraded agent is alive, and says why.
  EXPECT_EQ(run({"status", "--brief", "--liveness"}), 0);
  EXPECT_EQ(out_.str(), "error: ens224: tc ingress not attached\n");
}

TEST_F(AgentctlCommands, ListsArePutTogetherFromStreamedPages) {
  for (const char* n : {"t/a", "t/b", "t/c", "t/d", "t/e"})
    ASSERT_EQ(run({"service", "upsert", n, "--port", "80"}), 0);
  EXPECT_EQ(run({"-o", "json", "service", "list"}), 0);
  pb::ListServicesResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_.str(), &list).ok()) << out_.str();
  EXPECT_EQ(list.services_size(), 5);  // three pages of two, two and one
}

// 100,000 services are more than one node can program (65,535 service IDs), so the agent-side
// e2e test lists 50,000; this shows agentctl prints a list of any length, page by page.
TEST_F(AgentctlCommands, PrintsAHundredThousandServices) {
  agent_.pageSize = 1000;
  pb::Service s;
  s.set_protocol(pb::TCP);
  s.set_port(80);
  for (int i = 0; i < 100000; ++i) {
    s.set_name("t/s" + std::to_string(i));
    agent_.add(s);
  }
  EXPECT_EQ(run({"service", "list"}), 0) << err_.str();
  const std::string text = out_.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 100001);  // header + 100,000 rows
}

TEST_F(AgentctlCommands, UnimplementedCallSaysVersionsDiffer) {
  // FakeAgent leaves ListLb to the generated base class, which answers UNIMPLEMENTED.
  EXPECT_EQ(run({"bpf", "lb", "list"}), 1);
  EXPECT_EQ(err_.str(),
            "agentctl: the agent does not implement this call (agent and agentctl versions "
            "differ?)\n");
}

// ---------------------------------------------------------------------------------------------
// The whole program, including reaching the socket

int runMain(std::vector<std::string> args, std::string* out, std::string* err) {
  std::ostringstream o;
  std::ostringstream e;
  int rc = agentctlMain(args, "", o, e);
  *out = o.str();
  *err = e.str();
  return rc;
}

TEST(AgentctlMain, UsageErrorsExitTwo) {
  std::string out;
  std::string err;
  EXPECT_EQ(runMain({"service", "upsert", "x", "--port", "70000"}, &out, &err), 2);
  EXPECT_EQ(out, "");
  EXPECT_EQ(err,
            "agentctl: --port: 70000 is not a port (1-65535)\n"
            "Run 'agentctl --help' for usage.\n");
}

TEST(AgentctlArgs, TrustCommands) {
  ParseOutcome p = parseArgs({"state", "accept"});
  ASSERT_TRUE(p.ok()) << p.error;
  EXPECT_EQ(p.invocation.command, Command::kStateAccept);
  EXPECT_EQ(parseArgs({"state", "reset"}).invocation.command, Command::kStateReset);
  EXPECT_EQ(parseArgs({"state", "show"}).invocation.command, Command::kStateShow);
  EXPECT_EQ(parseArgs({"state", "reload"}).invocation.command, Command::kStateReload);
  EXPECT_EQ(parseArgs({"reconcile"}).invocation.command, Command::kReconcile);
  EXPECT_EQ(parseArgs({"state"}).error, "state: missing subcommand (show, reload, accept, reset)");
  EXPECT_EQ(parseArgs({"state", "fix"}).error, "state: unknown subcommand \"fix\" (show, reload, accept, reset)");
  EXPECT_EQ(parseArgs({"reconcile", "now"}).error, "reconcile: unexpected argument \"now\"");
  p = parseArgs({"service", "apply", "-f", "/tmp/x.json"});
  ASSERT_TRUE(p.ok()) << p.error;
  EXPECT_EQ(p.invocation.file, "/tmp/x.json");
  EXPECT_EQ(parseArgs({"service", "apply"}).error,
            "service apply: --file is required (a JSON {\"services\": [...]} file, or -)");
  EXPECT_EQ(parseArgs({"service", "apply", "-f", "a", "--file", "b"}).error, "service apply: --file is given twice");
  EXPECT_EQ(parseArgs({"service", "list", "-f", "a"}).error, "unknown flag \"-f\" for \"service list\"");
}

TEST(AgentctlFormat, StateSaysTheWayOutWhenNotOk) {
  pb::StateResponse r;
  r.mutable_state()->set_state("Unreadable");
  r.mutable_state()->set_reason("services.json: entry 1: service default/web: field \"port\" must be an integer");
  std::string text = formatState(r);
  EXPECT_NE(text.find("Reason:"), std::string::npos) << text;
  EXPECT_NE(text.find("agentctl state accept"), std::string::npos) << text;
  r.mutable_state()->set_state("Ok");
  r.mutable_state()->clear_reason();
  EXPECT_EQ(formatState(r).find("Ways out"), std::string::npos);
  pb::ReconcileReport rep;
  rep.set_services(3);
  rep.set_entries(9);
  rep.set_missing(1);
  rep.set_took_us(2500);
  EXPECT_EQ(formatReconcile(rep), "reconciled 3 services (9 service-map entries) in 2 ms: 1 missing, 0 drifted, 0 orphaned\n");
}

TEST(AgentctlMain, HelpListsEveryCommand) {
  std::string out;
  std::string err;
  EXPECT_EQ(runMain({"--help"}, &out, &err), 0);
  for (const char* cmd : {"status [--brief|--verbose]", "service list", "service get NAME",
                          "service upsert NAME", "service delete NAME", "bpf lb list",
                          "bpf ct list [--address IP] [--table main|embryonic]", "bpf nat list [--address IP]",
                          "node list", "version", "help", "--socket PATH", "-o, --output FMT",
                          "service apply -f FILE", "reconcile", "state show", "state reload", "state accept",
                          "state reset",
                          "--backend IP:PORT[,terminating]", "NODEPATH_SOCKET"}) {
    EXPECT_NE(out.find(cmd), std::string::npos) << "usage lacks " << cmd << ":\n" << out;
  }
  EXPECT_EQ(runMain({"version"}, &out, &err), 0);
  EXPECT_EQ(out.rfind("agentctl ", 0), 0u) << out;
}

TEST(AgentctlMain, MissingSocketFailsFastWithAHint) {
  std::string out;
  std::string err;
  EXPECT_EQ(runMain({"--socket", "/nonexistent/agent.sock", "status"}, &out, &err), 1);
  EXPECT_EQ(err,
            "agentctl: cannot reach the agent at /nonexistent/agent.sock: no such socket "
            "(is nodepath-agent running? set --socket)\n");
}

TEST(AgentctlMain, StaleSocketFailsFastWithAHint) {
  // A socket file nobody listens on: what a crashed agent leaves behind.
  std::string path = ::testing::TempDir() + "agentctl_stale_" + std::to_string(getpid()) + ".sock";
  unlink(path.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  path.copy(addr.sun_path, path.size());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);

  std::string out;
  std::string err;
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(runMain({"--socket", path, "service", "list"}, &out, &err), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(err, "agentctl: cannot reach the agent at " + path +
                     ": Connection refused (is nodepath-agent running? set --socket)\n");
  unlink(path.c_str());
}

// ---------------------------------------------------------------------------------------------
// l2 list and the L2 announcements status line

TEST(AgentctlL2, ParsesL2ListAndRefusesOtherSubcommands) {
  ParseOutcome out = parse({"l2", "list", "-o", "json"});
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(out.invocation.command, Command::kL2List);
  EXPECT_EQ(out.invocation.output, OutputFormat::kJson);
  EXPECT_EQ(parseError({"l2"}), "l2: missing subcommand (list)");
  EXPECT_EQ(parseError({"l2", "show"}), "l2: unknown subcommand \"show\" (list)");
}

pb::L2Status cannedL2() {
  pb::L2Status l2;
  l2.set_enabled(true);
  l2.set_synced(true);
  l2.set_namespace_("cilium");
  l2.set_policies(1);
  l2.set_heartbeat_lease("nodepath-l2-node-n1");
  l2.set_heartbeat_held(true);
  l2.set_lease_requests(42);
  l2.set_timings("lease 2s, renew deadline 1500ms, retry 500ms");
  auto* a = l2.add_announcements();
  a->set_service("default/web");
  a->set_lease("nodepath-l2announce-default-web");
  a->set_ip("192.168.20.1");
  a->set_device("ens192");
  a->set_answering(true);
  a->set_holder("n1");
  a->set_since("2026-12-03T05:40:00Z");
  a->set_since_seconds_ago(65);
  a = l2.add_announcements();
  a->set_service("default/api");
  a->set_lease("nodepath-l2announce-default-api");
  a->set_ip("192.168.20.2");
  a->set_device("ens192");
  a->set_holder("n2");
  return l2;
}

TEST(AgentctlL2, ListShowsWhatThisNodeAnnouncesAndWhoHoldsTheRest) {
  EXPECT_EQ(formatL2List(cannedL2()),
            "SERVICE       IP             INTERFACE   STATE        HOLDER   SINCE\n"
            "default/api   192.168.20.2   ens192      standby      n2       -\n"
            "default/web   192.168.20.1   ens192      announcing   n1       2026-12-03T05:40:00Z (1m5s ago)\n");
  pb::L2Status off;
  EXPECT_EQ(formatL2List(off), "L2 announcements: disabled (--enable-l2-announcements)\n");
  // Why a Lease could not be taken, once per Lease under the table.
  pb::L2Status bad = cannedL2();
  bad.mutable_announcements(1)->set_holder("");
  bad.mutable_announcements(1)->set_error("PUT Lease nodepath-l2announce-default-api: HTTP 403 forbidden");
  *bad.add_announcements() = bad.announcements(1);
  bad.mutable_announcements(2)->set_ip("192.168.20.3");
  EXPECT_EQ(formatL2List(bad),
            "SERVICE       IP             INTERFACE   STATE        HOLDER   SINCE\n"
            "default/api   192.168.20.2   ens192      no holder    -        -\n"
            "default/api   192.168.20.3   ens192      no holder    -        -\n"
            "default/web   192.168.20.1   ens192      announcing   n1       2026-12-03T05:40:00Z (1m5s ago)\n"
            "default/api (Lease nodepath-l2announce-default-api): PUT Lease nodepath-l2announce-default-api: HTTP 403 forbidden\n");
}

TEST(AgentctlL2, StatusLineCountsAndOnlyWhenTheAgentSaysSo) {
  EXPECT_EQ(l2Line(cannedL2()),
            "1 address announced here, 1 by other nodes (1 policy, heartbeat held, 42 Lease requests)");
  pb::StatusResponse st;
  EXPECT_EQ(formatStatus(st, StatusDetail::kNormal).find("L2 announcements"), std::string::npos);
  st.mutable_l2()->set_enabled(false);
  EXPECT_NE(formatStatus(st, StatusDetail::kNormal).find("L2 announcements:   Disabled\n"), std::string::npos)
      << formatStatus(st, StatusDetail::kNormal);
  *st.mutable_l2() = cannedL2();
  const std::string verbose = formatStatus(st, StatusDetail::kVerbose);
  EXPECT_NE(verbose.find("L2 announcements (lease 2s, renew deadline 1500ms, retry 500ms; heartbeat Lease "
                         "cilium/nodepath-l2-node-n1 held):\n"),
            std::string::npos)
      << verbose;
  EXPECT_NE(verbose.find("  default/web   192.168.20.1"), std::string::npos) << verbose;
}

}  // namespace
}  // namespace nodepath::agentctl
