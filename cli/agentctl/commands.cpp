#include "commands.h"
#include "flows.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "format.h"

#ifndef NP_AGENTCTL_VERSION
#define NP_AGENTCTL_VERSION "unknown"
#endif

namespace nodepath::agentctl {
namespace {

namespace pb = nodepath::agent::v1;

constexpr std::string_view kReachHint = " (is nodepath-agent running? set --socket)";

std::string unreachable(const std::string& path, const std::string& reason) {
  return "cannot reach the agent at " + path + ": " + reason + std::string(kReachHint);
}

const char* codeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "error";
  }
}

// gRPC says "failed to connect to all addresses; last error: UNKNOWN: unix:/p: Connection refused";
// the path is already in our message, so keep only the OS reason at the end.
std::string transportReason(const std::string& message) {
  if (message.empty()) return "unavailable";
  if (message.rfind("failed to connect to all addresses", 0) == 0) {
    if (auto colon = message.rfind(": "); colon != std::string::npos) {
      return message.substr(colon + 2);
    }
  }
  return message;
}

// Turns a failed RPC into the one line the user sees. NOT_FOUND is phrased per command because
// the agent's own wording is not part of the API.
std::string rpcError(const Invocation& inv, const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return unreachable(inv.socketPath, transportReason(status.error_message()));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return unreachable(inv.socketPath,
                         "no answer within " + std::to_string(kCallTimeout.count()) + " s");
    case grpc::StatusCode::NOT_FOUND:
      if (inv.command == Command::kServiceGet || inv.command == Command::kServiceDelete) {
        return "service " + inv.serviceName + " not found";
      }
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      return "the agent does not implement this call (agent and agentctl versions differ?)" +
             (status.error_message().empty() ? std::string() : ": " + status.error_message());
    default:
      break;
  }
  if (status.error_message().empty()) {
    return std::string("agent returned ") + codeName(status.error_code());
  }
  return status.error_message();
}

void setDeadline(grpc::ClientContext& ctx, std::chrono::seconds timeout = kCallTimeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
}

// Calls one unary RPC, printing the error if it fails. Returns whether it succeeded.
template <typename Request, typename Response, typename Method>
bool call(const Invocation& inv, Method method, const Request& request, Response* response,
          std::ostream& err, std::chrono::seconds timeout = kCallTimeout) {
  grpc::ClientContext ctx;
  setDeadline(ctx, timeout);
  grpc::Status status = method(&ctx, request, response);
  if (status.ok()) return true;
  err << "agentctl: " << rpcError(inv, status) << "\n";
  return false;
}

// Reads a server stream to its end, merging the pages into one response.
template <typename Response, typename Open>
bool callStream(const Invocation& inv, Open open, Response* response, std::ostream& err) {
  grpc::ClientContext ctx;
  setDeadline(ctx, kBatchTimeout);
  auto reader = open(&ctx);  // lists get the batch deadline: 65,535 services stream for a while
  Response page;
  while (reader->Read(&page)) {
    response->MergeFrom(page);
    page.Clear();
  }
  grpc::Status status = reader->Finish();
  if (status.ok()) return true;
  err << "agentctl: " << rpcError(inv, status) << "\n";
  return false;
}

// The file `service apply` reads: its path, or "-" for stdin.
bool readInput(const std::string& path, std::string* text, std::ostream& err) {
  std::ostringstream buf;
  if (path == "-") {
    buf << std::cin.rdbuf();
  } else {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      err << "agentctl: service apply: cannot read " << path << ": " << std::strerror(errno) << "\n";
      return false;
    }
    buf << f.rdbuf();
  }
  *text = buf.str();
  return true;
}

}  // namespace

int runCommand(const Invocation& inv, pb::Agent::StubInterface& stub, std::ostream& out,
               std::ostream& err) {
  const bool json = inv.output == OutputFormat::kJson;
  // Each case binds the stub method so call() can stay generic over request/response types.
  switch (inv.command) {
    case Command::kStatus: {
      pb::StatusResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::StatusRequest& r, pb::StatusResponse* s) {
        return stub.Status(c, r, s);
      };
      if (!call(inv, rpc, pb::StatusRequest{}, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatStatus(resp, inv.statusDetail));
      // A liveness probe asks "is the agent there", not "is everything Ok": restarting an agent
      // for a problem it reports (a bad policy, an unreachable peer) would not fix the problem.
      return inv.liveness ? 0 : statusExitCode(resp);
    }
    case Command::kServiceUpsert: {
      pb::UpsertServiceRequest req;
      *req.mutable_service() = inv.service;
      pb::UpsertServiceResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::UpsertServiceRequest& r,
                     pb::UpsertServiceResponse* s) { return stub.UpsertService(c, r, s); };
      if (!call(inv, rpc, req, &resp, err)) return kExitFailure;
      if (json) {
        out << toJson(resp);
      } else {
        const std::string& name = resp.service().name().empty() ? inv.serviceName
                                                                : resp.service().name();
        out << "service " << name << (resp.created() ? " created" : " updated") << "\n";
      }
      return kExitOk;
    }
    case Command::kServiceList: {
      pb::ListServicesResponse resp;
      auto open = [&](grpc::ClientContext* c) { return stub.ListServices(c, pb::ListServicesRequest{}); };
      if (!callStream(inv, open, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatServiceList(resp));
      return kExitOk;
    }
    case Command::kServiceGet: {
      pb::GetServiceRequest req;
      req.set_name(inv.serviceName);
      pb::GetServiceResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::GetServiceRequest& r,
                     pb::GetServiceResponse* s) { return stub.GetService(c, r, s); };
      if (!call(inv, rpc, req, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatService(resp.service()));
      return kExitOk;
    }
    case Command::kServiceDelete: {
      pb::DeleteServiceRequest req;
      req.set_name(inv.serviceName);
      pb::DeleteServiceResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::DeleteServiceRequest& r,
                     pb::DeleteServiceResponse* s) { return stub.DeleteService(c, r, s); };
      if (!call(inv, rpc, req, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : "service " + inv.serviceName + " deleted\n");
      return kExitOk;
    }
    case Command::kBpfLbList: {
      pb::ListLbResponse resp;
      auto open = [&](grpc::ClientContext* c) { return stub.ListLb(c, pb::ListLbRequest{}); };
      if (!callStream(inv, open, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatLbList(resp));
      return kExitOk;
    }
    case Command::kBpfCtList:
    case Command::kBpfNatList: {
      pb::ListConntrackResponse resp;
      auto open = [&](grpc::ClientContext* c) { return stub.ListConntrack(c, inv.ctFilter); };
      if (!callStream(inv, open, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatCtList(resp, inv.command == Command::kBpfNatList));
      return kExitOk;
    }
    case Command::kNodeList: {
      pb::ListNodesResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::ListNodesRequest& r,
                     pb::ListNodesResponse* s) { return stub.ListNodes(c, r, s); };
      if (!call(inv, rpc, pb::ListNodesRequest{}, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatNodeList(resp));
      return kExitOk;
    }
    case Command::kL2List: {
      pb::StatusResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::StatusRequest& r, pb::StatusResponse* s) {
        return stub.Status(c, r, s);
      };
      if (!call(inv, rpc, pb::StatusRequest{}, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp.l2()) : formatL2List(resp.l2()));
      return kExitOk;
    }
    case Command::kEndpointList: {
      pb::ListEndpointsResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::ListEndpointsRequest& r,
                     pb::ListEndpointsResponse* s) { return stub.ListEndpoints(c, r, s); };
      if (!call(inv, rpc, pb::ListEndpointsRequest{}, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatEndpointList(resp));
      return kExitOk;
    }
    case Command::kServiceApply: {
      std::string text;
      if (!readInput(inv.file, &text, err)) return kExitFailure;
      pb::UpsertServicesRequest req;
      google::protobuf::util::JsonParseOptions opts;
      auto parsed = google::protobuf::util::JsonStringToMessage(text, &req, opts);
      if (!parsed.ok()) {
        err << "agentctl: service apply: " << (inv.file == "-" ? std::string("stdin") : inv.file)
            << " is not a {\"services\": [...]} document: " << parsed.message() << "\n";
        return kExitFailure;
      }
      pb::UpsertServicesResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::UpsertServicesRequest& r,
                     pb::UpsertServicesResponse* s) { return stub.UpsertServices(c, r, s); };
      // A batch of tens of thousands of services takes seconds; the agent is busy, not gone.
      if (!call(inv, rpc, req, &resp, err, kBatchTimeout)) return kExitFailure;
      out << (json ? toJson(resp) : std::to_string(resp.count()) + " services applied\n");
      return kExitOk;
    }
    case Command::kReconcile: {
      pb::ReconcileResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::ReconcileRequest& r, pb::ReconcileResponse* s) {
        return stub.Reconcile(c, r, s);
      };
      if (!call(inv, rpc, pb::ReconcileRequest{}, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatReconcile(resp.report()));
      return resp.report().error().empty() ? kExitOk : kExitFailure;
    }
    case Command::kStateShow:
    case Command::kStateReload:
    case Command::kStateAccept:
    case Command::kStateReset: {
      pb::StateRequest req;
      req.set_action(inv.command == Command::kStateShow     ? pb::StateRequest::SHOW
                     : inv.command == Command::kStateReload ? pb::StateRequest::RELOAD
                     : inv.command == Command::kStateAccept ? pb::StateRequest::ACCEPT
                                                            : pb::StateRequest::RESET);
      pb::StateResponse resp;
      auto rpc = [&](grpc::ClientContext* c, const pb::StateRequest& r, pb::StateResponse* s) {
        return stub.State(c, r, s);
      };
      if (!call(inv, rpc, req, &resp, err)) return kExitFailure;
      out << (json ? toJson(resp) : formatState(resp));
      return resp.state().state() == "Ok" ? kExitOk : kExitFailure;
    }
    case Command::kHelp:
    case Command::kVersion:
    case Command::kCleanup:
      break;
  }
  err << "agentctl: internal error: command needs no agent\n";
  return kExitFailure;
}

std::string socketError(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return unreachable(path, errno == ENOENT ? "no such socket" : std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) return unreachable(path, "not a socket");
  // connect(2) on a unix socket needs write permission on it; the agent creates it 0600.
  if (access(path.c_str(), W_OK) != 0) {
    if (errno == EACCES) {
      return "permission denied on " + path + ": the agent socket is root-only; run as root";
    }
    return unreachable(path, std::strerror(errno));
  }
  return {};
}

int agentctlMain(const std::vector<std::string>& args, std::string_view envSocket,
                 std::ostream& out, std::ostream& err) {
  // `flows` has its own parser (CLI11) and talks to the Hubble API, not the agent API.
  {
    std::string sock = envSocket.empty() ? std::string(kDefaultSocket) : std::string(envSocket);
    std::vector<std::string> rest;
    bool isFlows = false;
    for (size_t i = 0; i < args.size(); i++) {
      if (args[i] == "--socket" && i + 1 < args.size()) {
        sock = args[++i];
      } else if (args[i].rfind("--socket=", 0) == 0) {
        sock = args[i].substr(9);
      } else if (!isFlows && rest.empty() && args[i] == "flows") {
        isFlows = true;
      } else {
        rest.push_back(args[i]);
      }
    }
    if (isFlows) return runFlows(rest, sock, out, err);
  }
  ParseOutcome parsed = parseArgs(args, envSocket);
  if (!parsed.ok()) {
    err << "agentctl: " << parsed.error << "\nRun 'agentctl --help' for usage.\n";
    return kExitUsage;
  }
  const Invocation& inv = parsed.invocation;
  if (inv.command == Command::kHelp) {
    out << usageText();
    return kExitOk;
  }
  if (inv.command == Command::kVersion) {
    if (inv.output == OutputFormat::kJson) {
      out << "{\n \"version\": \"" NP_AGENTCTL_VERSION "\"\n}\n";
    } else {
      out << "agentctl " NP_AGENTCTL_VERSION "\n";
    }
    return kExitOk;
  }
  if (inv.command == Command::kCleanup) {
    // Local: it must work with the agent stopped, and refuses while one runs (it would put
    // back what cleanup removes).
    if (!inv.force && socketError(inv.socketPath).empty()) {
      grpc::ChannelArguments a;
      a.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
      auto stub = pb::Agent::NewStub(
          grpc::CreateCustomChannel("unix:" + inv.socketPath, grpc::InsecureChannelCredentials(), a));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      pb::StatusResponse st;
      if (stub->Status(&ctx, pb::StatusRequest{}, &st).ok()) {
        err << "agentctl: cleanup: the agent at " << inv.socketPath
            << " is running and would put back what cleanup removes: stop it first (or --force)\n";
        return kExitFailure;
      }
    }
    return runCleanup(inv, out, err);
  }
  if (std::string problem = socketError(inv.socketPath); !problem.empty()) {
    err << "agentctl: " << problem << "\n";
    return kExitFailure;
  }

  grpc::ChannelArguments channelArgs;
  // An http_proxy in the environment must not capture a local unix-socket connection.
  channelArgs.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  auto channel = grpc::CreateCustomChannel("unix:" + inv.socketPath,
                                           grpc::InsecureChannelCredentials(), channelArgs);
  auto stub = pb::Agent::NewStub(channel);
  return runCommand(inv, *stub, out, err);
}

}  // namespace nodepath::agentctl
