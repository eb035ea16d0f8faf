// nodepath-cni: the CNI plugin the container runtime execs (CNI spec 1.0.0/1.1.0). Thin: it
// parses the request (cni.h) and asks nodepath-agent over its unix socket, which does the work.
// Result or error JSON on stdout, logs on stderr; exit 0 on success, 1 on any error.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>

#include "agent.grpc.pb.h"
#include "cni.h"

namespace pb = nodepath::agent::v1;
using namespace nodepath::cni;

namespace {

int fail(const CniError& e, const std::string& version) {
  std::cout << encodeError(e, version);
  std::cerr << "nodepath-cni: " << e.msg << (e.details.empty() ? "" : ": " + e.details) << "\n";
  return 1;
}

// An RPC's failure as the CNI error the runtime acts on: the agent unreachable is "try again
// later" (11), the agent's refusals keep their meaning.
CniError fromGrpc(const grpc::Status& st, const std::string& socket) {
  const std::string m = st.error_message();
  switch (st.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {kTryAgainLater, "nodepath-agent is not reachable at " + socket, m};
    case grpc::StatusCode::FAILED_PRECONDITION:
      return {kTryAgainLater, "nodepath-agent cannot serve pods yet", m};
    case grpc::StatusCode::ALREADY_EXISTS: return {kInterfaceExists, "the interface already exists", m};
    case grpc::StatusCode::NOT_FOUND: return {kUnknownContainer, "unknown container or network namespace", m};
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return {kNoAddress, "no pod address left on this node", m};
    case grpc::StatusCode::INVALID_ARGUMENT: return {kInvalidConfig, "nodepath-agent refused the request", m};
    default: return {kInternal, "nodepath-agent failed", m};
  }
}

Attached attached(const pb::Endpoint& e) {
  return {e.host_ifname(), e.host_mac(), e.ifname(), e.pod_mac(), e.netns(), e.ipv4(), e.gateway(), e.mtu()};
}

}  // namespace

int main() {
  auto parsedEnv = parseEnv([](const char* k) -> std::optional<std::string> {
    const char* v = getenv(k);
    return v ? std::optional<std::string>(v) : std::nullopt;
  });
  std::string input;
  {
    std::ostringstream buf;
    buf << std::cin.rdbuf();
    if (std::cin.bad()) return fail({kIoFailure, "cannot read the network configuration from stdin", {}}, "1.1.0");
    input = buf.str();
  }
  // The version to answer in, as soon as it is known (errors before that say 1.1.0).
  std::string version = "1.1.0";
  {
    boost::system::error_code ec;
    auto v = boost::json::parse(input, ec);
    if (!ec && v.is_object())
      if (auto* cv = v.get_object().if_contains("cniVersion"); cv && cv->is_string()) version = std::string(cv->get_string());
  }
  if (auto* e = std::get_if<CniError>(&parsedEnv)) return fail(*e, version);
  const Env& env = std::get<Env>(parsedEnv);

  if (env.command == Command::kVersion) {
    auto v = parseVersionRequest(input);
    if (auto* e = std::get_if<CniError>(&v)) return fail(*e, version);
    std::cout << encodeVersion(std::get<std::string>(v));
    return 0;
  }
  auto parsedConf = parseConf(input, env.command);
  if (auto* e = std::get_if<CniError>(&parsedConf)) return fail(*e, version);
  const NetConf& conf = std::get<NetConf>(parsedConf);
  version = conf.cniVersion;

  // The agent: a missing socket is the agent being down (11; STATUS: 50), said without waiting.
  struct stat st{};
  const bool socketThere = stat(conf.socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  if (!socketThere) {
    CniError down{kTryAgainLater, "nodepath-agent is not running (no socket at " + conf.socket + ")", {}};
    if (env.command == Command::kStatus) down.code = kNotAvailable;
    return fail(down, version);
  }
  grpc::ChannelArguments channelArgs;
  channelArgs.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  auto channel = grpc::CreateCustomChannel("unix:" + conf.socket, grpc::InsecureChannelCredentials(), channelArgs);
  auto stub = pb::Agent::NewStub(channel);
  grpc::ClientContext ctx;
  // ADD waits on veth and routes (milliseconds); the runtime's own timeout is minutes.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));

  switch (env.command) {
    case Command::kAdd: {
      pb::CniAddRequest req;
      req.set_container_id(env.containerId);
      req.set_ifname(env.ifname);
      req.set_netns(env.netns);
      req.set_pod_namespace(env.podNamespace());
      req.set_pod_name(env.podName());
      for (const PortMapping& m : conf.portMappings) {
        pb::PortMapping* out = req.add_port_mappings();
        out->set_host_port(m.hostPort);
        out->set_container_port(m.containerPort);
        out->set_protocol(m.protocol == "udp" ? pb::UDP : pb::TCP);
        out->set_host_ip(m.hostIp);
      }
      pb::CniAddResponse resp;
      grpc::Status s = stub->CniAdd(&ctx, req, &resp);
      if (!s.ok()) return fail(fromGrpc(s, conf.socket), version);
      std::cout << encodeResult(attached(resp.endpoint()), conf.prevResult, version);
      return 0;
    }
    case Command::kDel: {
      pb::CniDelRequest req;
      req.set_container_id(env.containerId);
      req.set_ifname(env.ifname);
      req.set_netns(env.netns);
      pb::CniDelResponse resp;
      grpc::Status s = stub->CniDel(&ctx, req, &resp);
      if (!s.ok()) return fail(fromGrpc(s, conf.socket), version);
      return 0;
    }
    case Command::kCheck: {
      pb::CniCheckRequest req;
      req.set_container_id(env.containerId);
      req.set_ifname(env.ifname);
      req.set_netns(env.netns);
      pb::CniCheckResponse resp;
      grpc::Status s = stub->CniCheck(&ctx, req, &resp);
      if (!s.ok()) {
        CniError e = fromGrpc(s, conf.socket);
        if (s.error_code() == grpc::StatusCode::INTERNAL) e.code = kCheckFailed;
        return fail(e, version);
      }
      if (auto e = checkPrevResult(*conf.prevResult, attached(resp.endpoint()))) return fail(*e, version);
      return 0;
    }
    case Command::kStatus: {
      pb::CniStatusResponse resp;
      grpc::Status s = stub->CniStatus(&ctx, pb::CniStatusRequest{}, &resp);
      if (!s.ok()) {
        CniError e = fromGrpc(s, conf.socket);
        e.code = kNotAvailable;
        return fail(e, version);
      }
      if (!resp.ready()) return fail({kNotAvailable, "nodepath-agent cannot serve pods", resp.reason()}, version);
      return 0;
    }
    case Command::kGc: {
      pb::CniGcRequest req;
      for (const Attachment& a : conf.validAttachments) {
        pb::CniAttachment* at = req.add_valid_attachments();
        at->set_container_id(a.containerId);
        at->set_ifname(a.ifname);
      }
      pb::CniGcResponse resp;
      grpc::Status s = stub->CniGc(&ctx, req, &resp);
      if (!s.ok()) return fail(fromGrpc(s, conf.socket), version);
      for (const pb::Endpoint& e : resp.released())
        std::cerr << "nodepath-cni: GC released " << e.container_id() << "/" << e.ifname() << " (" << e.ipv4() << ")\n";
      return 0;
    }
    case Command::kVersion: break;
  }
  return fail({kInternal, "unhandled command", {}}, version);
}
