#include "bpf/attach.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include "core/fs.h"

namespace np::bpf {

const char* tcDirectionName(TcDirection d) { return d == TcDirection::Ingress ? "ingress" : "egress"; }

namespace {
bpf_tc_attach_point point(TcDirection d) { return d == TcDirection::Ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS; }
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
  if (rc != 0 && rc != -ENOENT) return sysError(std::string("detach tc ") + tcDirectionName(dir) + " from " + device, -rc);
  return {};
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

uint32_t programId(int progFd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) != 0) return 0;
  return info.id;
}

}  // namespace np::bpf
