// rtnetlink through libmnl: links (veth pairs, moves to a namespace, up, rename, delete),
// addresses and routes, in the agent's network namespace or in another one (a pod's).
//
// Two layers:
// - Message builders and parsers (build*/parse*): pure functions over a byte buffer, unit-tested
//   without root or a kernel.
// - Netlink: one NETLINK_ROUTE socket and the requests over it. A socket belongs to the network
//   namespace it was created in for its whole life, so Netlink::openIn() creates it on a
//   short-lived thread that joins the target namespace (setns) and ends; the socket is then used
//   from the caller's thread. No thread of the agent ever stays in another namespace.
//
// Thread affinity: a Netlink object is used by one thread at a time (the agent's io_context).
// Errors carry the kernel's errno (EEXIST, ENOENT, ...) and the operation in their context.
#pragma once

#include <linux/netlink.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"

struct mnl_socket;

namespace np::routing {

// The rtm_protocol of every route the agent installs. A value of our own (>= RTPROT_STATIC, so
// the kernel never interprets it, and in neither the kernel's RTPROT_* list nor iproute2's
// rt_protos) marks the routes as ours: `ip route show proto 202` lists exactly them, a sync
// removes only them, and `agentctl cleanup` finds them without any state. Cilium's routes with
// RTPROT_KERNEL look like the kernel's own connected routes; this one cannot be mistaken.
inline constexpr uint8_t kRouteProtocol = 202;

inline constexpr size_t kIfNameMax = 15;  // IFNAMSIZ - 1

struct Link {
  int ifindex = 0;
  std::string name;
  std::array<uint8_t, 6> mac{};
  unsigned flags = 0;  // IFF_*
  uint32_t mtu = 0;
  std::string kind;    // IFLA_INFO_KIND: "veth", "bridge", ... ("" for physical devices)
  bool up() const;
};

struct Address {
  int ifindex = 0;
  Ipv4 ip;
  uint8_t prefix = 0;
  uint8_t scope = 0;  // RT_SCOPE_*
};

struct Route {
  Cidr dst;
  Ipv4 gateway;       // zero: none (a link route)
  int oif = 0;
  uint8_t protocol = kRouteProtocol;
  uint8_t scope = 0;  // RT_SCOPE_UNIVERSE (0) or RT_SCOPE_LINK (253)
  uint32_t table = 254;  // RT_TABLE_MAIN
  bool operator==(const Route&) const = default;
};

// A netlink request being built: a buffer holding one message.
class Message {
 public:
  Message();
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  const nlmsghdr* header() const { return reinterpret_cast<const nlmsghdr*>(buf_.data()); }
  size_t size() const { return header()->nlmsg_len; }

 private:
  std::vector<char> buf_;
};

// Builders. Requests ask for an ACK; creations fail with EEXIST when the object exists unless
// the builder says it replaces.
Message buildVethCreate(const std::string& name, const std::string& peer);
Message buildLinkSetNetns(int ifindex, int netnsFd);
Message buildLinkUp(int ifindex);
Message buildLinkRename(int ifindex, const std::string& name);
Message buildLinkDelete(int ifindex);
// Adds (or, with replace, keeps/updates) an address.
Message buildAddressAdd(const Address& a, bool replace);
// RTM_NEWROUTE with NLM_F_CREATE|NLM_F_REPLACE: installing the same route again is no error.
Message buildRouteReplace(const Route& r);
Message buildRouteDelete(const Route& r);
Message buildDump(uint16_t type);  // RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE (AF_INET)

// Parsers of the kernel's answers (one message each); nullopt for messages of another kind.
std::optional<Link> parseLink(const nlmsghdr* nlh);
std::optional<Address> parseAddress(const nlmsghdr* nlh);
std::optional<Route> parseRoute(const nlmsghdr* nlh);

// The host-side name of a pod's veth: "lxc" + 12 hex digits of SHA-256(containerID "/" ifname),
// 15 characters, as Cilium names its endpoints' devices. `prefix` "tmp" names the peer before it
// moves into the pod.
std::string endpointIfName(const std::string& containerId, const std::string& ifname, const char* prefix = "lxc");
// A name the kernel takes for an interface: 1-15 characters, none of '/', ':', whitespace, not "." or "..".
bool validIfName(const std::string& name);

class Netlink {
 public:
  // A socket in the caller's network namespace.
  static Result<std::unique_ptr<Netlink>> open();
  // A socket in the network namespace at `netnsPath` (e.g. /var/run/netns/x): ENOENT when the
  // namespace does not exist.
  static Result<std::unique_ptr<Netlink>> openIn(const std::string& netnsPath);
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  // Sends one request and waits for its ACK; the error is the kernel's.
  Status request(Message& m, const std::string& what);

  Result<std::vector<Link>> links();
  Result<std::vector<Address>> addresses();
  Result<std::vector<Route>> routes();  // IPv4, main table
  Result<std::optional<Link>> linkByName(const std::string& name);
  Result<std::optional<Link>> linkByIndex(int ifindex);

  Status createVeth(const std::string& name, const std::string& peer);
  Status moveToNetns(int ifindex, int netnsFd, const std::string& what);
  Status setUp(int ifindex, const std::string& what);
  Status rename(int ifindex, const std::string& name);
  Status deleteLink(int ifindex, const std::string& what);
  Status addAddress(const Address& a, bool replace);
  Status replaceRoute(const Route& r);
  // ENOENT (the route is not there) counts as done.
  Status deleteRoute(const Route& r);

 private:
  Netlink() = default;
  template <typename T, typename Parse>
  Result<std::vector<T>> dump(uint16_t type, Parse parse, const char* what);
  mnl_socket* sock_ = nullptr;
  uint32_t portId_ = 0;
  uint32_t seq_ = 1;
};

// An open network namespace (fd of its nsfs file), for IFLA_NET_NS_FD.
class NetnsFd {
 public:
  static Result<NetnsFd> open(const std::string& path);
  NetnsFd(NetnsFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  NetnsFd& operator=(NetnsFd&&) = delete;
  ~NetnsFd();
  int get() const { return fd_; }

 private:
  explicit NetnsFd(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The cookie of the network namespace at netnsPath (SO_NETNS_COOKIE, Linux >= 5.14): what
// bpf_get_netns_cookie() reports for a socket in it. Empty path: the caller's namespace. Blocks for
// a short-lived thread that joins the namespace (the caller's threads stay where they are).
Result<uint64_t> netnsCookie(const std::string& netnsPath);

// Writes a sysctl of the caller's network namespace, e.g. ("net/ipv4/conf/lxc1/rp_filter", "0").
Status writeSysctl(const std::string& key, const std::string& value);

}  // namespace np::routing
