#include "env.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace np::bpftest {
namespace {

Env gEnv;

bool fail(const std::string& what) {
  std::fprintf(stderr, "bpf test environment: %s: %s\n", what.c_str(), std::strerror(errno));
  return false;
}

// Netlink through iproute2: this runs once per process, inside the private namespace, so the
// simplest tool is fine. Every command's status is checked; the first failure stops the set-up.
bool run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::fprintf(stderr, "bpf test environment: `%s` failed (status %d)\n", cmd.c_str(), rc);
    return false;
  }
  return true;
}

bool writeFile(const char* path, const char* value) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::string("open ") + path);
  bool ok = ::write(fd, value, std::strlen(value)) == static_cast<ssize_t>(std::strlen(value));
  ::close(fd);
  return ok || fail(std::string("write ") + path);
}

bool readMac(const char* dev, MacAddr& out) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  int rc = ::ioctl(s, SIOCGIFHWADDR, &ifr);
  ::close(s);
  if (rc != 0) return fail(std::string("SIOCGIFHWADDR ") + dev);
  std::memcpy(out.data(), ifr.ifr_hwaddr.sa_data, out.size());
  return true;
}

}  // namespace

const Env& env() { return gEnv; }

bool setUpEnv(const std::string& bpffsDir) {
  // From here on nothing this process does to links, routes, sysctls or mounts is visible
  // outside it, and all of it disappears when it exits (or crashes).
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return fail("unshare(CLONE_NEWNET|CLONE_NEWNS)");
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return fail("make mounts private");
  if (::mount("bpffs", bpffsDir.c_str(), "bpf", 0, "mode=0700") != 0) return fail("mount bpffs on " + bpffsDir);

  using namespace np::test;
  const std::string ens192Mac = macToString(kEns192Mac);
  const std::vector<std::string> cmds = {
      "ip link set lo up",
      "ip link add ens192 address " + ens192Mac + " type veth peer name peer0",
      "ip addr add 192.168.10.100/24 dev ens192",
      "ip link set ens192 up",
      "ip link set peer0 up",
      "ip neigh replace 192.168.10.101 lladdr " + macToString(kNode2Mac) + " dev ens192 nud permanent",
      "ip neigh replace 192.168.10.200 lladdr " + macToString(kClientMac) + " dev ens192 nud permanent",
      "ip route add 10.0.2.0/24 via 192.168.10.101 dev ens192",
      "ip route add 10.0.3.0/24 via 192.168.10.102 dev ens192",
      "ip route add 198.51.100.0/24 via 192.168.10.1 dev ens192",
      "ip route add unreachable 10.0.9.0/24",
      "ip route add blackhole 10.0.8.0/24",
      "ip route add prohibit 10.0.7.0/24",
      "ip link add lxcp1 type veth peer name p1peer",
      "ip link set lxcp1 up",
      "ip link set p1peer up",
      "ip route add 10.0.1.10/32 dev lxcp1",
      "ip route add 10.0.1.11/32 dev lxcp1",
  };
  for (const auto& c : cmds)
    if (!run(c)) return false;
  // /proc/sys/net is the opener's network namespace: this is the private one.
  if (!writeFile("/proc/sys/net/ipv4/ip_forward", "1")) return false;

  gEnv.bpffs = bpffsDir;
  gEnv.ens192Ifindex = static_cast<int>(::if_nametoindex("ens192"));
  if (gEnv.ens192Ifindex == 0) return fail("if_nametoindex(ens192)");
  if (!readMac("ens192", gEnv.ens192Mac)) return false;
  return true;
}

}  // namespace np::bpftest
