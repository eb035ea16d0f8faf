// IPv4 addresses, ports, CIDRs and protocols: parsing with messages that say what is wrong, and
// formatting. Addresses are kept in network byte order (as the BPF maps hold them).
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace np {

struct Ipv4 {
  uint32_t be = 0;  // network byte order

  static std::optional<Ipv4> parse(std::string_view text);
  static Ipv4 fromHost(uint32_t host) { return Ipv4{htonl(host)}; }
  uint32_t host() const { return ntohl(be); }
  bool isZero() const { return be == 0; }
  bool isLoopback() const { return (host() >> 24) == 127; }
  bool isMulticastOrBroadcast() const { return (host() >> 28) == 0xe || host() == 0xffffffffu; }
  std::string str() const;
  auto operator<=>(const Ipv4&) const = default;
};

struct Cidr {
  Ipv4 addr;
  uint8_t prefix = 0;

  static std::optional<Cidr> parse(std::string_view text);
  bool contains(Ipv4 ip) const;
  std::string str() const;
  auto operator<=>(const Cidr&) const = default;
};

enum class Protocol : uint8_t { Tcp = IPPROTO_TCP, Udp = IPPROTO_UDP };

std::optional<Protocol> parseProtocol(std::string_view text);  // "tcp"/"TCP"/"udp"/"UDP"
const char* protocolName(Protocol p);                           // "TCP" / "UDP"

// "1".."65535"; nullopt otherwise.
std::optional<uint16_t> parsePort(std::string_view text);

struct Endpoint {
  Ipv4 ip;
  uint16_t port = 0;

  static std::optional<Endpoint> parse(std::string_view text);  // "a.b.c.d:port"
  std::string str() const;
  auto operator<=>(const Endpoint&) const = default;
};

std::string formatMac(const uint8_t mac[6]);

}  // namespace np
