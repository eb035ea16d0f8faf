#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <bpf/bpf.h>

#include <filesystem>
#include <system_error>

#include "bpf/attach.h"
#include "commands.h"
#include "routing/netlink.h"
#include "routing/notrack.h"

namespace nodepath::agentctl {

int runCleanup(const Invocation& inv, std::ostream& out, std::ostream& err) {
  int rc = kExitOk;
  const std::string conf = inv.cniConfDir + "/05-nodepath.conflist";
  if (unlink(conf.c_str()) == 0) {
    out << "removed " << conf << "\n";
  } else if (errno != ENOENT) {
    err << "agentctl: cleanup: remove " << conf << ": " << std::strerror(errno) << "\n";
    rc = kExitFailure;
  }
  // The NOTRACK rules (--install-no-conntrack-iptables-rules); no iptables at all: nothing of ours.
  if (auto nt = np::routing::removeNoTrack(); nt) {
    if (*nt) out << "removed iptables raw chains " << np::routing::kNoTrackPreChain << ", "
                 << np::routing::kNoTrackOutputChain << "\n";
  } else if (nt.error().message().find("not found") == std::string::npos) {
    err << "agentctl: cleanup: " << nt.error().message() << "\n";
    rc = kExitFailure;
  }
  auto nl = np::routing::Netlink::open();
  if (!nl) {
    err << "agentctl: cleanup: " << nl.error().message() << "\n";
    return kExitFailure;
  }
  auto routes = (*nl)->routes();
  if (!routes) {
    err << "agentctl: cleanup: " << routes.error().message() << "\n";
    return kExitFailure;
  }
  size_t removed = 0;
  for (const np::routing::Route& r : *routes) {
    if (r.protocol != np::routing::kRouteProtocol) continue;
    if (np::Status st = (*nl)->deleteRoute(r); !st) {
      err << "agentctl: cleanup: " << st.error().message() << "\n";
      rc = kExitFailure;
    } else {
      ++removed;
    }
  }
  out << "removed " << removed << " route" << (removed == 1 ? "" : "s") << " of the agent (proto "
      << int(np::routing::kRouteProtocol) << ")\n";
  // np_host and np_net are one veth pair: deleting one end removes both.
  if (auto link = (*nl)->linkByName("np_host"); link && *link) {
    if (np::Status st = (*nl)->deleteLink((*link)->ifindex, "np_host"); st) {
      out << "removed np_host/np_net\n";
    } else {
      err << "agentctl: cleanup: " << st.error().message() << "\n";
      rc = kExitFailure;
    }
  }
  // The datapath. tc filters first (they hold the programs and through them the maps), only the
  // ones at our handle/priority running one of our programs (np_*), so a filter someone else put
  // there stays. Then the pins: unpinning a cgroup, tcx or XDP link detaches it (no agent holds it).
  size_t filters = 0;
  auto links = (*nl)->links();
  if (!links) {
    err << "agentctl: cleanup: " << links.error().message() << "\n";
    return kExitFailure;
  }
  for (const auto& l : *links) {
    for (auto dir : {np::bpf::TcDirection::Ingress, np::bpf::TcDirection::Egress}) {
      auto id = np::bpf::tcProgramId(l.ifindex, dir);
      if (!id || *id == 0) continue;
      int fd = bpf_prog_get_fd_by_id(*id);
      if (fd < 0) continue;
      bpf_prog_info info{};
      uint32_t len = sizeof info;
      const bool ours = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && std::string(info.name).rfind("np_", 0) == 0;
      close(fd);
      if (!ours) continue;
      if (np::Status st = np::bpf::detachTc(l.ifindex, dir, l.name); !st) {
        err << "agentctl: cleanup: " << st.error().message() << "\n";
        rc = kExitFailure;
      } else {
        ++filters;
      }
    }
  }
  out << "removed " << filters << " tc filter" << (filters == 1 ? "" : "s") << " of the agent\n";
  const std::filesystem::path pins = std::filesystem::path(inv.bpfRoot) / "nodepath";
  std::error_code ec;
  if (std::filesystem::exists(pins, ec)) {
    const auto n = std::filesystem::remove_all(pins, ec);
    if (ec) {
      err << "agentctl: cleanup: remove " << pins.string() << ": " << ec.message() << "\n";
      rc = kExitFailure;
    } else {
      out << "removed " << pins.string() << " (" << n << " pins: maps, cgroup, tcx and XDP links)\n";
    }
  }
  size_t pods = 0;
  for (const auto& l : *links) pods += l.name.rfind("lxc", 0) == 0 && l.kind == "veth";
  if (pods)
    out << pods << " pod interface" << (pods == 1 ? "" : "s") << " (lxc...) left: they go with their pods (CNI DEL)\n";
  return rc;
}

}  // namespace nodepath::agentctl
