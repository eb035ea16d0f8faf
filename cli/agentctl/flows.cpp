#include "flows.h"

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <ctime>
#include <iostream>
#include <sstream>

#include "observer/observer.grpc.pb.h"

namespace nodepath::agentctl {
namespace {

using google::protobuf::util::TimeUtil;

// "2026-12-02T18:00:00Z" or a duration back from now: "30s", "5m", "2h".
bool parseSince(const std::string& v, google::protobuf::Timestamp* ts) {
  if (!v.empty() && std::isdigit(static_cast<unsigned char>(v[0])) &&
      std::string("smh").find(v.back()) != std::string::npos) {
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    if (end != v.c_str() + v.size() - 1 || n < 0) return false;
    long mult = v.back() == 's' ? 1 : v.back() == 'm' ? 60 : 3600;
    *ts = TimeUtil::GetCurrentTime() - TimeUtil::SecondsToDuration(n * mult);
    return true;
  }
  return TimeUtil::FromString(v, ts);
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string pointName(flow::TraceObservationPoint p) {
  std::string n = flow::TraceObservationPoint_Name(p);
  std::string out;
  for (char c : n) out += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Where the flow was seen, as hubble observe names it: the socket translation point for SOCK
// flows ("pre-xlate-fwd"), the trace observation point ("to-network") for the rest.
std::string pointOf(const flow::Flow& f) {
  if (f.type() != flow::SOCK) return pointName(f.trace_observation_point());
  switch (f.sock_xlate_point()) {
    case flow::SOCK_XLATE_POINT_PRE_DIRECTION_FWD: return "pre-xlate-fwd";
    case flow::SOCK_XLATE_POINT_POST_DIRECTION_FWD: return "post-xlate-fwd";
    case flow::SOCK_XLATE_POINT_PRE_DIRECTION_REV: return "pre-xlate-rev";
    case flow::SOCK_XLATE_POINT_POST_DIRECTION_REV: return "post-xlate-rev";
    default: return "SOCK_XLATE_POINT_UNKNOWN";
  }
}

std::string endpoint(const std::string& ip, uint32_t port, const flow::Endpoint& ep) {
  std::string s = ep.pod_name().empty() ? (ip.empty() ? "(unbound)" : ip) : ep.namespace_() + "/" + ep.pod_name();
  if (port) s += ":" + std::to_string(port);
  return s;
}

}  // namespace

std::string parseFlowsArgs(const std::vector<std::string>& args, const std::string& defaultServer,
                           FlowsInvocation& out) {
  CLI::App app{"agentctl flows: this node's recent flows", "agentctl flows"};
  bool follow = false;
  uint64_t last = 0, first = 0;
  std::string since, until, verdict, dropReason, output = "table";
  std::vector<std::string> fromIp, toIp, ip, fromPod, toPod, pod, port, fromPort, toPort, protocol;
  out.server = defaultServer;
  app.add_flag("-f,--follow", follow, "keep streaming new flows");
  app.add_option("--last", last, "the last N flows (default 20 without --follow)");
  app.add_option("--first", first, "the first N flows still held");
  app.add_option("--since", since, "flows since a time (RFC 3339) or a duration ago (30s, 5m, 2h)");
  app.add_option("--until", until, "flows until a time (RFC 3339) or a duration ago");
  app.add_option("--from-ip", fromIp, "source IP or CIDR");
  app.add_option("--to-ip", toIp, "destination IP or CIDR");
  app.add_option("--ip", ip, "source or destination IP or CIDR");
  app.add_option("--from-pod", fromPod, "source pod ([namespace/]name prefix)");
  app.add_option("--to-pod", toPod, "destination pod ([namespace/]name prefix)");
  app.add_option("--pod", pod, "source or destination pod ([namespace/]name prefix)");
  app.add_option("--port", port, "source or destination port");
  app.add_option("--from-port", fromPort, "source port");
  app.add_option("--to-port", toPort, "destination port");
  app.add_option("--protocol", protocol, "tcp, udp, icmp");
  app.add_option("--verdict", verdict, "FORWARDED, DROPPED, TRANSLATED");
  app.add_option("--drop-reason", dropReason, "a Hubble drop reason name, e.g. SERVICE_BACKEND_NOT_FOUND");
  app.add_option("-o,--output", output, "table, json, jsonpb")->check(CLI::IsMember({"table", "json", "jsonpb"}));
  app.add_option("--server", out.server, "the Hubble API socket (default: hubble.sock next to the agent socket)");
  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    return "help:" + app.help();
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  auto& r = out.request;
  out.output = output;
  r.set_follow(follow);
  if (first) {
    r.set_first(true);
    r.set_number(first);
  } else if (last) {
    r.set_number(last);
  } else if (!follow && since.empty()) {
    r.set_number(20);
  }
  if (!since.empty() && !parseSince(since, r.mutable_since())) return "--since: \"" + since + "\" is not a time or duration";
  if (!until.empty() && !parseSince(until, r.mutable_until())) return "--until: \"" + until + "\" is not a time or duration";

  // Like hubble observe: the fields of one filter are ANDed; --ip, --pod and --port are "either side",
  // which makes two filters (source side, destination side) of the rest.
  flow::FlowFilter base;
  for (auto& v : fromIp) base.add_source_ip(v);
  for (auto& v : toIp) base.add_destination_ip(v);
  for (auto& v : fromPod) base.add_source_pod(v);
  for (auto& v : toPod) base.add_destination_pod(v);
  for (auto& v : fromPort) base.add_source_port(v);
  for (auto& v : toPort) base.add_destination_port(v);
  for (auto& v : protocol) base.add_protocol(v);
  if (!verdict.empty()) {
    flow::Verdict vd;
    if (!flow::Verdict_Parse(upper(verdict), &vd)) return "--verdict: \"" + verdict + "\" is not a verdict";
    base.add_verdict(vd);
  }
  if (!dropReason.empty()) {
    flow::DropReason dr;
    if (!flow::DropReason_Parse(upper(dropReason), &dr)) return "--drop-reason: \"" + dropReason + "\" is not a drop reason";
    base.add_drop_reason_desc(dr);
  }
  bool sided = !ip.empty() || !pod.empty() || !port.empty();
  if (!sided) {
    if (base.ByteSizeLong() > 0) *r.add_whitelist() = base;
    return {};
  }
  flow::FlowFilter src = base, dst = base;
  for (auto& v : ip) {
    src.add_source_ip(v);
    dst.add_destination_ip(v);
  }
  for (auto& v : pod) {
    src.add_source_pod(v);
    dst.add_destination_pod(v);
  }
  for (auto& v : port) {
    src.add_source_port(v);
    dst.add_destination_port(v);
  }
  *r.add_whitelist() = src;
  *r.add_whitelist() = dst;
  return {};
}

std::string formatFlowLine(const flow::Flow& f) {
  std::ostringstream o;
  time_t secs = static_cast<time_t>(f.time().seconds());
  tm t{};
  localtime_r(&secs, &t);
  char buf[32];
  strftime(buf, sizeof buf, "%b %e %H:%M:%S", &t);
  char ms[8];
  snprintf(ms, sizeof ms, ".%03d", f.time().nanos() / 1000000);
  o << buf << ms << ": ";
  uint32_t sp = 0, dp = 0;
  std::string proto;
  if (f.l4().has_tcp()) {
    sp = f.l4().tcp().source_port();
    dp = f.l4().tcp().destination_port();
  } else if (f.l4().has_udp()) {
    sp = f.l4().udp().source_port();
    dp = f.l4().udp().destination_port();
    proto = "UDP";
  } else if (f.l4().has_icmpv4()) {
    proto = "ICMPv4 type " + std::to_string(f.l4().icmpv4().type());
  }
  o << endpoint(f.ip().source(), sp, f.source());
  if (!f.ip().source_xlated().empty()) o << " (as " << f.ip().source_xlated() << ")";
  o << " -> " << endpoint(f.ip().destination(), dp, f.destination());
  if (!f.destination_service().name().empty())
    o << " (svc " << f.destination_service().namespace_() << "/" << f.destination_service().name() << ")";
  if (!f.source_service().name().empty())
    o << " (reply of svc " << f.source_service().namespace_() << "/" << f.source_service().name() << ")";
  o << " " << pointOf(f) << " " << flow::Verdict_Name(f.verdict());
  if (f.verdict() == flow::DROPPED) o << " (" << flow::DropReason_Name(f.drop_reason_desc()) << ")";
  if (f.type() == flow::SOCK) {
    o << (f.l4().has_udp() ? " UDP" : " TCP");  // no packet yet: no flags
  } else if (f.l4().has_tcp()) {
    const auto& fl = f.l4().tcp().flags();
    std::string flags;
    auto add = [&](bool b, const char* n) {
      if (b) flags += flags.empty() ? n : std::string(", ") + n;
    };
    add(fl.syn(), "SYN");
    add(fl.ack(), "ACK");
    add(fl.psh(), "PSH");
    add(fl.fin(), "FIN");
    add(fl.rst(), "RST");
    o << " (TCP Flags: " << flags << ")";
  } else if (!proto.empty()) {
    o << " " << proto;
  }
  return o.str();
}

int runFlows(const std::vector<std::string>& args, const std::string& agentSocket, std::ostream& out,
             std::ostream& err) {
  std::string dir = agentSocket.substr(0, agentSocket.rfind('/') == std::string::npos ? 0 : agentSocket.rfind('/'));
  FlowsInvocation inv;
  std::string e = parseFlowsArgs(args, (dir.empty() ? "." : dir) + "/hubble.sock", inv);
  if (e.rfind("help:", 0) == 0) {
    out << e.substr(5);
    return 0;
  }
  if (!e.empty()) {
    err << "agentctl: flows: " << e << "\nRun 'agentctl flows --help' for usage.\n";
    return 2;
  }
  struct stat st{};
  if (stat(inv.server.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    err << "agentctl: no Hubble API at " << inv.server
        << " (is nodepath-agent running with enable-hubble? --server sets the socket)\n";
    return 1;
  }
  grpc::ChannelArguments ca;
  ca.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  auto stub = observer::Observer::NewStub(
      grpc::CreateCustomChannel("unix:" + inv.server, grpc::InsecureChannelCredentials(), ca));
  grpc::ClientContext ctx;
  if (!inv.request.follow()) ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub->GetFlows(&ctx, inv.request);
  observer::GetFlowsResponse r;
  google::protobuf::util::JsonPrintOptions jo;
  // Field names as in the .proto, as hubble observe -o json prints them.
  jo.preserve_proto_field_names = true;
  while (reader->Read(&r)) {
    if (r.has_lost_events()) {
      err << "agentctl: " << r.lost_events().num_events_lost() << " flows lost (fell behind the ring)\n";
      continue;
    }
    if (!r.has_flow()) continue;
    if (inv.output == "table") {
      out << formatFlowLine(r.flow()) << "\n";
    } else {
      std::string js;
      (void)google::protobuf::util::MessageToJsonString(r, &js, jo);
      out << js << "\n";
    }
    out.flush();
  }
  grpc::Status s = reader->Finish();
  if (!s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
    err << "agentctl: flows: " << s.error_message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace nodepath::agentctl
