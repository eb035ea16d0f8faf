#include "core/net.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>

namespace np {

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  // inet_pton accepts exactly the dotted-quad form (no octal, no short forms).
  if (text.empty() || text.size() > 15) return std::nullopt;
  std::string s(text);
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return std::nullopt;
  return Ipv4{a.s_addr};
}

std::string Ipv4::str() const {
  char buf[INET_ADDRSTRLEN];
  in_addr a{be};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = Ipv4::parse(text.substr(0, slash));
  auto bits = text.substr(slash + 1);
  unsigned prefix = 0;
  auto [ptr, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
  if (!ip || ec != std::errc() || ptr != bits.data() + bits.size() || bits.empty() || prefix > 32)
    return std::nullopt;
  uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
  if ((ip->host() & ~mask) != 0) return std::nullopt;  // host bits set: ambiguous, refuse
  return Cidr{*ip, static_cast<uint8_t>(prefix)};
}

bool Cidr::contains(Ipv4 ip) const {
  uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
  return (ip.host() & mask) == addr.host();
}

std::string Cidr::str() const { return addr.str() + "/" + std::to_string(prefix); }

std::optional<Protocol> parseProtocol(std::string_view text) {
  if (text == "tcp" || text == "TCP") return Protocol::Tcp;
  if (text == "udp" || text == "UDP") return Protocol::Udp;
  return std::nullopt;
}

const char* protocolName(Protocol p) { return p == Protocol::Tcp ? "TCP" : "UDP"; }

std::optional<uint16_t> parsePort(std::string_view text) {
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v == 0 || v > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(v);
}

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto ip = Ipv4::parse(text.substr(0, colon));
  auto port = parsePort(text.substr(colon + 1));
  if (!ip || !port) return std::nullopt;
  return Endpoint{*ip, *port};
}

std::string Endpoint::str() const { return ip.str() + ":" + std::to_string(port); }

std::string formatMac(const uint8_t mac[6]) {
  char buf[18];
  snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
           mac[5]);
  return buf;
}

}  // namespace np
