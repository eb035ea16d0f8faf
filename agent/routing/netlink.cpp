#include "routing/netlink.h"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <openssl/sha.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <thread>

namespace np::routing {

bool Link::up() const { return (flags & IFF_UP) != 0; }

Message::Message() : buf_(MNL_SOCKET_BUFFER_SIZE, 0) {}

namespace {

nlmsghdr* start(Message& m, uint16_t type, uint16_t flags) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(m.header());
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  return nlh;
}

ifinfomsg* putIfinfo(nlmsghdr* nlh, int ifindex) {
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  return ifi;
}

rtmsg* putRoute(nlmsghdr* nlh, const Route& r) {
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = AF_INET;
  rtm->rtm_dst_len = r.dst.prefix;
  rtm->rtm_table = r.table < 256 ? static_cast<uint8_t>(r.table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  rtm->rtm_protocol = r.protocol;
  rtm->rtm_scope = r.scope;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(nlh, RTA_DST, r.dst.addr.be);
  if (r.table >= 256) mnl_attr_put_u32(nlh, RTA_TABLE, r.table);
  if (!r.gateway.isZero()) mnl_attr_put_u32(nlh, RTA_GATEWAY, r.gateway.be);
  if (r.oif) mnl_attr_put_u32(nlh, RTA_OIF, static_cast<uint32_t>(r.oif));
  return rtm;
}

}  // namespace

Message buildVethCreate(const std::string& name, const std::string& peer) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
  putIfinfo(nlh, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  nlattr* info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peerInfo = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  // The peer's attributes follow an ifinfomsg of its own.
  auto* pi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  pi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, peer.c_str());
  mnl_attr_nest_end(nlh, peerInfo);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, info);
  return m;
}

Message buildLinkSetNetns(int ifindex, int netnsFd) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_NEWLINK, NLM_F_ACK);
  putIfinfo(nlh, ifindex);
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, static_cast<uint32_t>(netnsFd));
  return m;
}

Message buildLinkUp(int ifindex) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_NEWLINK, NLM_F_ACK);
  ifinfomsg* ifi = putIfinfo(nlh, ifindex);
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return m;
}

Message buildLinkRename(int ifindex, const std::string& name) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_NEWLINK, NLM_F_ACK);
  putIfinfo(nlh, ifindex);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  return m;
}

Message buildLinkDelete(int ifindex) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_DELLINK, NLM_F_ACK);
  putIfinfo(nlh, ifindex);
  return m;
}

Message buildAddressAdd(const Address& a, bool replace) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_ACK | (replace ? NLM_F_REPLACE : NLM_F_EXCL));
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = a.prefix;
  ifa->ifa_scope = a.scope;
  ifa->ifa_index = static_cast<uint32_t>(a.ifindex);
  mnl_attr_put_u32(nlh, IFA_LOCAL, a.ip.be);
  mnl_attr_put_u32(nlh, IFA_ADDRESS, a.ip.be);
  return m;
}

Message buildRouteReplace(const Route& r) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
  putRoute(nlh, r);
  return m;
}

Message buildRouteDelete(const Route& r) {
  Message m;
  nlmsghdr* nlh = start(m, RTM_DELROUTE, NLM_F_ACK);
  rtmsg* rtm = putRoute(nlh, r);
  rtm->rtm_scope = RT_SCOPE_NOWHERE;  // match any scope
  return m;
}

Message buildDump(uint16_t type) {
  Message m;
  nlmsghdr* nlh = start(m, type, NLM_F_DUMP);
  if (type == RTM_GETLINK) {
    putIfinfo(nlh, 0);
  } else if (type == RTM_GETADDR) {
    auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
    ifa->ifa_family = AF_INET;
  } else {
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = AF_INET;
  }
  return m;
}

namespace {

// Collects the top-level attributes of a message (after its fixed header) by type.
template <size_t N>
struct Attrs {
  std::array<const nlattr*, N + 1> tb{};
  Attrs(const nlmsghdr* nlh, size_t headerLen, uint16_t max) {
    mnl_attr_parse(nlh, static_cast<unsigned>(headerLen),
                   [](const nlattr* a, void* data) -> int {
                     auto* self = static_cast<Attrs*>(data);
                     uint16_t t = mnl_attr_get_type(a);
                     if (t <= N) self->tb[t] = a;
                     return MNL_CB_OK;
                   },
                   this);
    (void)max;
  }
  const nlattr* operator[](size_t i) const { return i <= N ? tb[i] : nullptr; }
};

uint32_t u32(const nlattr* a) { return mnl_attr_get_payload_len(a) >= 4 ? mnl_attr_get_u32(a) : 0; }

}  // namespace

std::optional<Link> parseLink(const nlmsghdr* nlh) {
  if (nlh->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(nlh) < sizeof(ifinfomsg)) return std::nullopt;
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  Attrs<IFLA_MAX> at(nlh, sizeof(ifinfomsg), IFLA_MAX);
  Link l;
  l.ifindex = ifi->ifi_index;
  l.flags = ifi->ifi_flags;
  if (at[IFLA_IFNAME]) l.name = mnl_attr_get_str(at[IFLA_IFNAME]);
  if (at[IFLA_MTU]) l.mtu = u32(at[IFLA_MTU]);
  if (const nlattr* a = at[IFLA_ADDRESS]; a && mnl_attr_get_payload_len(a) == 6)
    std::memcpy(l.mac.data(), mnl_attr_get_payload(a), 6);
  if (const nlattr* info = at[IFLA_LINKINFO]) {
    // mnl_attr_for_each_nested is C (void* arithmetic): walk the nest by hand.
    const char* end = static_cast<const char*>(mnl_attr_get_payload(info)) + mnl_attr_get_payload_len(info);
    for (auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(info));
         mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a)));
         a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + MNL_ALIGN(a->nla_len))) {
      if (mnl_attr_get_type(a) == IFLA_INFO_KIND) l.kind = mnl_attr_get_str(a);
    }
  }
  return l;
}

std::optional<Address> parseAddress(const nlmsghdr* nlh) {
  if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(ifaddrmsg)) return std::nullopt;
  const auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
  if (ifa->ifa_family != AF_INET) return std::nullopt;
  Attrs<IFA_MAX> at(nlh, sizeof(ifaddrmsg), IFA_MAX);
  const nlattr* ip = at[IFA_LOCAL] ? at[IFA_LOCAL] : at[IFA_ADDRESS];
  if (!ip) return std::nullopt;
  return Address{static_cast<int>(ifa->ifa_index), Ipv4{u32(ip)}, ifa->ifa_prefixlen, ifa->ifa_scope};
}

std::optional<Route> parseRoute(const nlmsghdr* nlh) {
  if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(rtmsg)) return std::nullopt;
  const auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
  if (rtm->rtm_family != AF_INET || rtm->rtm_type != RTN_UNICAST) return std::nullopt;
  Attrs<RTA_MAX> at(nlh, sizeof(rtmsg), RTA_MAX);
  Route r;
  r.dst.prefix = rtm->rtm_dst_len;
  if (at[RTA_DST]) r.dst.addr = Ipv4{u32(at[RTA_DST])};
  if (at[RTA_GATEWAY]) r.gateway = Ipv4{u32(at[RTA_GATEWAY])};
  if (at[RTA_OIF]) r.oif = static_cast<int>(u32(at[RTA_OIF]));
  r.protocol = rtm->rtm_protocol;
  r.scope = rtm->rtm_scope;
  r.table = at[RTA_TABLE] ? u32(at[RTA_TABLE]) : rtm->rtm_table;
  return r;
}

std::string endpointIfName(const std::string& containerId, const std::string& ifname, const char* prefix) {
  const std::string id = containerId + "/" + ifname;
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(id.data()), id.size(), md);
  static const char* hex = "0123456789abcdef";
  std::string out = prefix;
  for (size_t i = 0; out.size() < kIfNameMax; ++i) {
    out += hex[md[i / 2] >> ((i % 2) ? 0 : 4) & 0xf];
  }
  return out;
}

bool validIfName(const std::string& name) {
  if (name.empty() || name.size() > kIfNameMax || name == "." || name == "..") return false;
  for (char c : name)
    if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0') return false;
  return true;
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<Netlink>> Netlink::open() {
  std::unique_ptr<Netlink> nl(new Netlink());
  nl->sock_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (!nl->sock_) return sysError("open a netlink socket");
  if (mnl_socket_bind(nl->sock_, 0, MNL_SOCKET_AUTOPID) < 0) return sysError("bind the netlink socket");
  nl->portId_ = mnl_socket_get_portid(nl->sock_);
  nl->seq_ = static_cast<uint32_t>(time(nullptr));
  return nl;
}

namespace {

// Runs f() in the network namespace at netnsPath: a socket is created in the namespace of the
// thread that creates it and stays there, so a thread of its own joins the namespace, runs f and
// ends (the caller's thread never changes namespace).
template <class T, class F>
Result<T> inNetns(const std::string& netnsPath, F f) {
  auto ns = NetnsFd::open(netnsPath);
  if (!ns) return ns.error();
  std::optional<Result<T>> out;
  std::thread([&] {
    if (setns(ns->get(), CLONE_NEWNET) != 0) {
      out.emplace(sysError("enter network namespace " + netnsPath));
      return;
    }
    out.emplace(f());
  }).join();
  return std::move(*out);
}

}  // namespace

Result<std::unique_ptr<Netlink>> Netlink::openIn(const std::string& netnsPath) {
  return inNetns<std::unique_ptr<Netlink>>(netnsPath, [] { return open(); });
}

namespace {

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // asm-generic/socket.h, Linux 5.14; Debian 12's glibc headers lack it
#endif

Result<uint64_t> ownNetnsCookie() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return sysError("socket for SO_NETNS_COOKIE");
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  int err = errno;
  close(fd);
  if (rc != 0) {
    errno = err;
    return sysError("getsockopt SO_NETNS_COOKIE (Linux >= 5.14)");
  }
  return cookie;
}

}  // namespace

Result<uint64_t> netnsCookie(const std::string& netnsPath) {
  if (netnsPath.empty()) return ownNetnsCookie();
  return inNetns<uint64_t>(netnsPath, [] { return ownNetnsCookie(); });
}

Netlink::~Netlink() {
  if (sock_) mnl_socket_close(sock_);
}

Status Netlink::request(Message& m, const std::string& what) {
  nlmsghdr* nlh = m.header();
  nlh->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) return sysError(what);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  while (true) {
    ssize_t n = mnl_socket_recvfrom(sock_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError(what);
    }
    int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq_, portId_, nullptr, nullptr);
    if (rc == MNL_CB_ERROR) return sysError(what);
    if (rc == MNL_CB_STOP) return {};
  }
}

template <typename T, typename Parse>
Result<std::vector<T>> Netlink::dump(uint16_t type, Parse parse, const char* what) {
  Message m = buildDump(type);
  nlmsghdr* nlh = m.header();
  nlh->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(sock_, nlh, nlh->nlmsg_len) < 0) return sysError(what);
  struct Ctx {
    std::vector<T> out;
    Parse* parse;
  } ctx{{}, &parse};
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  while (true) {
    ssize_t n = mnl_socket_recvfrom(sock_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError(what);
    }
    int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq_, portId_,
                        [](const nlmsghdr* h, void* data) -> int {
                          auto* c = static_cast<Ctx*>(data);
                          if (auto v = (*c->parse)(h)) c->out.push_back(std::move(*v));
                          return MNL_CB_OK;
                        },
                        &ctx);
    if (rc == MNL_CB_ERROR) return sysError(what);
    if (rc == MNL_CB_STOP) return std::move(ctx.out);
  }
}

Result<std::vector<Link>> Netlink::links() { return dump<Link>(RTM_GETLINK, parseLink, "list links"); }
Result<std::vector<Address>> Netlink::addresses() {
  return dump<Address>(RTM_GETADDR, parseAddress, "list addresses");
}
Result<std::vector<Route>> Netlink::routes() {
  auto all = dump<Route>(RTM_GETROUTE, parseRoute, "list routes");
  if (!all) return all;
  std::vector<Route> main;
  for (Route& r : *all)
    if (r.table == RT_TABLE_MAIN) main.push_back(r);
  return main;
}

Result<std::optional<Link>> Netlink::linkByName(const std::string& name) {
  auto all = links();
  if (!all) return all.error();
  for (Link& l : *all)
    if (l.name == name) return std::optional<Link>(std::move(l));
  return std::optional<Link>();
}

Result<std::optional<Link>> Netlink::linkByIndex(int ifindex) {
  auto all = links();
  if (!all) return all.error();
  for (Link& l : *all)
    if (l.ifindex == ifindex) return std::optional<Link>(std::move(l));
  return std::optional<Link>();
}

Status Netlink::createVeth(const std::string& name, const std::string& peer) {
  Message m = buildVethCreate(name, peer);
  return request(m, "create veth pair " + name + "/" + peer);
}
Status Netlink::moveToNetns(int ifindex, int netnsFd, const std::string& what) {
  Message m = buildLinkSetNetns(ifindex, netnsFd);
  return request(m, "move " + what + " to its network namespace");
}
Status Netlink::setUp(int ifindex, const std::string& what) {
  Message m = buildLinkUp(ifindex);
  return request(m, "set " + what + " up");
}
Status Netlink::rename(int ifindex, const std::string& name) {
  Message m = buildLinkRename(ifindex, name);
  return request(m, "rename interface " + std::to_string(ifindex) + " to " + name);
}
Status Netlink::deleteLink(int ifindex, const std::string& what) {
  Message m = buildLinkDelete(ifindex);
  return request(m, "delete " + what);
}
Status Netlink::addAddress(const Address& a, bool replace) {
  Message m = buildAddressAdd(a, replace);
  return request(m, "add address " + a.ip.str() + "/" + std::to_string(a.prefix) + " to interface " +
                        std::to_string(a.ifindex));
}
Status Netlink::replaceRoute(const Route& r) {
  Message m = buildRouteReplace(r);
  return request(m, "install route " + r.dst.str() + (r.gateway.isZero() ? "" : " via " + r.gateway.str()));
}
Status Netlink::deleteRoute(const Route& r) {
  Message m = buildRouteDelete(r);
  Status st = request(m, "remove route " + r.dst.str() + (r.gateway.isZero() ? "" : " via " + r.gateway.str()));
  if (!st && st.error().err == ESRCH) return {};  // not there (the kernel says ESRCH for routes)
  if (!st && st.error().err == ENOENT) return {};
  return st;
}

Result<NetnsFd> NetnsFd::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sysError("open network namespace " + path);
  return NetnsFd(fd);
}

NetnsFd::~NetnsFd() {
  if (fd_ >= 0) close(fd_);
}

Status writeSysctl(const std::string& key, const std::string& value) {
  const std::string path = "/proc/sys/" + key;
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return sysError("open " + path);
  ssize_t n = write(fd, value.data(), value.size());
  int e = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) return sysError("write " + path, e);
  return {};
}

}  // namespace np::routing
