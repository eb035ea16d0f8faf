#include "bpf/attach.h"

#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/fs.h"

namespace np::bpf {

const char* tcDirectionName(TcDirection d) { return d == TcDirection::Ingress ? "ingress" : "egress"; }

namespace {
bpf_tc_attach_point point(TcDirection d) { return d == TcDirection::Ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS; }

// Detaches the link pinned at linkPath (if there is one) and removes the pin. Idempotent. what:
// the error's context ("detach XDP from ens192").
Status detachLinkPinned(const std::string& linkPath, const std::string& what) {
  if (!fs::exists(linkPath)) return {};
  int fd = bpf_obj_get(linkPath.c_str());
  if (fd >= 0) {
    // Explicitly, in case something else holds the link too; a defunct link (its device is
    // gone) has nothing to detach (ENOLINK).
    if (bpf_link_detach(fd) != 0 && errno != ENOLINK && errno != EINVAL) {
      Error e = sysError(what);
      close(fd);
      return e;
    }
    close(fd);
  }
  if (unlink(linkPath.c_str()) != 0 && errno != ENOENT) return sysError("remove pin " + linkPath);
  return {};
}
}  // namespace

Status attachTc(int ifindex, TcDirection dir, int progFd, const std::string& device) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point(dir));
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST)
    return sysError(std::string("create clsact qdisc on ") + device, -rc);
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = progFd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
              .priority = kTcPriority);
  rc = bpf_tc_attach(&hook, &opts);
  if (rc != 0) return sysError(std::string("attach tc ") + tcDirectionName(dir) + " to " + device, -rc);
  return {};
}

Result<uint32_t> tcProgramId(int ifindex, TcDirection dir) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point(dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  int rc = bpf_tc_query(&hook, &opts);
  if (rc == -ENOENT || rc == -EINVAL) return 0u;
  if (rc != 0) return sysError("query tc filter", -rc);
  return opts.prog_id;
}

Status detachTc(int ifindex, TcDirection dir, const std::string& device) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point(dir));
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
  int rc = bpf_tc_detach(&hook, &opts);
  // ENOENT: no such filter; EINVAL: no clsact qdisc at all. Either way nothing to detach.
  if (rc != 0 && rc != -ENOENT && rc != -EINVAL) return sysError(std::string("detach tc ") + tcDirectionName(dir) + " from " + device, -rc);
  return {};
}

const char* tcLinkName(TcLink l) { return l == TcLink::Tcx ? "tcx" : "clsact"; }

namespace {
// Linux 6.6's tcx, which Debian 12's UAPI header (6.1) and libbpf 1.1 do not know: the attach
// types and link type of include/uapi/linux/bpf.h. libbpf's bpf_link_create() and
// bpf_prog_query() pass them through unchanged (the tcx-only attributes, relative_fd and
// expected_revision, stay zero: with BPF_F_BEFORE, first in the chain, at any revision).
constexpr auto kTcxIngress = static_cast<bpf_attach_type>(46);  // BPF_TCX_INGRESS
constexpr auto kTcxEgress = static_cast<bpf_attach_type>(47);   // BPF_TCX_EGRESS
constexpr uint32_t kLinkTypeTcx = 11;                           // BPF_LINK_TYPE_TCX
constexpr uint32_t kTcxBefore = 1U << 3;                        // BPF_F_BEFORE: no anchor = first
bpf_attach_type tcxType(TcDirection d) { return d == TcDirection::Ingress ? kTcxIngress : kTcxEgress; }

// Whether the link behind linkFd is a tcx link on ifindex in direction dir. A tcx link's info is
// { ifindex, attach_type } at the start of bpf_link_info's union (where xdp.ifindex is).
bool tcxLinkOn(int linkFd, int ifindex, TcDirection dir) {
  bpf_link_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(linkFd, &info, &len) != 0 || info.type != kLinkTypeTcx) return false;
  uint32_t tcx[2];
  std::memcpy(tcx, &info.xdp, sizeof tcx);
  return tcx[0] == static_cast<uint32_t>(ifindex) && tcx[1] == static_cast<uint32_t>(tcxType(dir));
}
}  // namespace

Result<TcLink> attachTcPinned(int ifindex, TcDirection dir, int progFd, const std::string& device,
                              const std::string& linkPath) {
  const std::string what = std::string("attach tc ") + tcDirectionName(dir) + " to " + device;
  if (fs::exists(linkPath)) {
    int fd = bpf_obj_get(linkPath.c_str());
    if (fd >= 0) {
      int rc = tcxLinkOn(fd, ifindex, dir) ? bpf_link_update(fd, progFd, nullptr) : -1;
      close(fd);
      if (rc == 0) {
        // A clsact filter an older agent added after this link was made (a rollback, then this
        // upgrade again), or one a crash left before it was removed: it goes now.
        NP_TRY(detachTc(ifindex, dir, device));
        return TcLink::Tcx;
      }
    }
    // Stale: the device went away (or was recreated), or the pin is not our tcx link. Removing
    // the pin releases the old link and whatever it ran.
    unlink(linkPath.c_str());
  }
  // First on the hook, as a clsact filter at priority 1 was: a program another tool appends
  // runs after ours. libbpf passes the flags through for these attach types.
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = kTcxBefore);
  int fd = bpf_link_create(progFd, ifindex, tcxType(dir), &opts);
  if (fd < 0 && errno == EINVAL) {
    // No tcx in this kernel (before 6.6): the attach type is unknown to it.
    NP_TRY(attachTc(ifindex, dir, progFd, device));
    return TcLink::Clsact;
  }
  if (fd < 0) return sysError(what + " (tcx link)");
  if (bpf_obj_pin(fd, linkPath.c_str()) != 0) {
    Error e = sysError("pin link " + linkPath);
    close(fd);  // the last reference: detaches again
    return e;
  }
  close(fd);
  // tcx runs before clsact and our programs never hand a packet on (TCX_NEXT), so an older
  // agent's filter no longer sees any: it goes now, after the link took over.
  NP_TRY(detachTc(ifindex, dir, device));
  return TcLink::Tcx;
}

Result<std::vector<uint32_t>> tcxProgramIds(int ifindex, TcDirection dir) {
  uint32_t ids[64];
  uint32_t count = 64;
  if (bpf_prog_query(ifindex, tcxType(dir), 0, nullptr, ids, &count) != 0) {
    if (errno == EINVAL) return std::vector<uint32_t>{};  // no tcx in this kernel
    return sysError("query tcx programs on ifindex " + std::to_string(ifindex));
  }
  return std::vector<uint32_t>(ids, ids + std::min<uint32_t>(count, 64));
}

Status detachTcxPinned(const std::string& linkPath, const std::string& device) {
  return detachLinkPinned(linkPath, "detach tcx from " + device);
}

Status attachCgroupPinned(bpf_program* prog, int cgroupFd, const std::string& linkPath) {
  if (fs::exists(linkPath)) {
    bpf_link* link = bpf_link__open(linkPath.c_str());
    if (link) {
      int rc = bpf_link__update_program(link, prog);
      bpf_link__disconnect(link);  // keep the pinned link when our handle goes
      bpf_link__destroy(link);
      if (rc == 0) return {};
    }
    // A stale pin (its cgroup is gone, or it is not a link): replace it.
    unlink(linkPath.c_str());
  }
  bpf_link* link = bpf_program__attach_cgroup(prog, cgroupFd);
  if (!link) return sysError(std::string("attach ") + bpf_program__name(prog) + " to cgroup");
  int rc = bpf_link__pin(link, linkPath.c_str());
  if (rc != 0) {
    bpf_link__destroy(link);
    return sysError("pin link " + linkPath, -rc);
  }
  bpf_link__disconnect(link);
  bpf_link__destroy(link);
  return {};
}

namespace {
// The device a pinned XDP link is attached to (0: defunct, its device is gone), or an error when
// the pin is not an XDP link.
Result<uint32_t> xdpLinkIfindex(int linkFd) {
  bpf_link_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(linkFd, &info, &len) != 0) return sysError("read link info");
  if (info.type != BPF_LINK_TYPE_XDP) return error("read link info", "not an XDP link");
  return info.xdp.ifindex;
}
}  // namespace

Status attachXdpPinned(int progFd, int ifindex, const std::string& device, const std::string& linkPath) {
  if (fs::exists(linkPath)) {
    int fd = bpf_obj_get(linkPath.c_str());
    if (fd >= 0) {
      auto on = xdpLinkIfindex(fd);
      int rc = on.ok() && *on == static_cast<uint32_t>(ifindex) ? bpf_link_update(fd, progFd, nullptr) : -1;
      close(fd);
      if (rc == 0) return {};
    }
    // Stale: the device went away (or was recreated), or the pin is not an XDP link. Removing
    // the pin releases the old link, and with it any XDP it still holds.
    unlink(linkPath.c_str());
  }
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
  int fd = bpf_link_create(progFd, ifindex, BPF_XDP, &opts);
  if (fd < 0) return sysError("attach XDP in native (driver) mode to " + device);
  if (bpf_obj_pin(fd, linkPath.c_str()) != 0) {
    Error e = sysError("pin link " + linkPath);
    close(fd);  // the last reference: detaches again
    return e;
  }
  close(fd);
  return {};
}

Status detachXdpPinned(const std::string& linkPath, const std::string& device) {
  return detachLinkPinned(linkPath, "detach XDP from " + device);
}

Result<XdpAttached> xdpAttached(int ifindex) {
  LIBBPF_OPTS(bpf_xdp_query_opts, opts);
  int rc = bpf_xdp_query(ifindex, 0, &opts);
  if (rc != 0) return sysError("query XDP on ifindex " + std::to_string(ifindex), -rc);
  XdpAttached a;
  a.driverProgId = opts.drv_prog_id;
  a.genericProgId = opts.skb_prog_id;
  return a;
}

uint32_t programId(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return 0;
  return info.id;
}

}  // namespace np::bpf
