// npkpgen: one service set, written the way each datapath of the kube-proxy comparison is
// programmed (scripts/bench.sh compare):
//
//   iptables.rules      kube-proxy's iptables mode, as `iptables-restore` input (legacy and nft
//                       backends load the same file): nat KUBE-SERVICES -> KUBE-SVC-<hash> with
//                       the masquerade mark for off-cluster sources and `statistic mode random`
//                       1/(n-i) -> KUBE-SEP-<hash> (mark hairpin, DNAT); KUBE-POSTROUTING
//                       masquerade; KUBE-NODEPORTS last; the filter chains (KUBE-SERVICES,
//                       KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-PROXY-FIREWALL, KUBE-NODEPORTS)
//                       with kube-proxy's conntrack matches and jumps from INPUT/FORWARD/OUTPUT.
//   iptables-add.rules  the partial sync kube-proxy does when one service is added:
//                       `iptables-restore --noflush` input that redeclares (flushes) and rewrites
//                       KUBE-SERVICES in full and adds the new service's chains.
//   nftables.nft        kube-proxy's nftables mode, as `nft -f` input: table ip kube-proxy with
//                       the service-ips verdict map -> service-<hash>-<ns>/<name>/<proto>/<port>
//                       chains (mark-for-masquerade, `numgen random mod n` vmap) ->
//                       endpoint-<hash>-... chains (hairpin mark, dnat); the masquerading, filter,
//                       endpoints-check and cluster-ips-check chains with their hooks.
//   nftables-add.nft    one added service, as one nft transaction.
//   services.json       the same services for `agentctl service apply -f` (nodepath).
//   service-add.json    the added service, for the same.
//   targets.txt         every service's ClusterIP:port (npload --targets).
//   nodeport-targets.txt  with --node-ports K: <--node-ip>:<NodePort> of the first K services, the
//                       ones that have a NodePort (30000 + i; the iptables rules then carry
//                       KUBE-NODEPORTS -> KUBE-EXT-<hash> (mark masquerade, jump KUBE-SVC-<hash>)
//                       and nftables the service-nodeports map -> external-<hash>-... chains,
//                       as kube-proxy writes them for externalTrafficPolicy: Cluster).
//   backends.txt        every backend address:port (the clean path's check).
//   clean-targets.txt   per service, the backend the clean path's client picks itself (service i:
//                       endpoint i mod n), so the clean path's RR shapes open as many sockets as
//                       the others (one per service, up to npload's 1,024).
//
// Written from kube-proxy's documented behaviour and the rule shapes it produces (chain names:
// base32 of SHA-256 over the service port name and protocol, as kube-proxy derives them).
// Service i is bench/svc-<i>:http, TCP (--protocol udp: UDP), ClusterIP = 10.43.0.16 + i, port 80; every service has
// the same --backends endpoints (10.0.1.1.., port 8080), each its own KUBE-SEP/endpoint chain as
// kube-proxy makes one per service endpoint.

#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::string sha256(const std::string& in) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(in.data(), in.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("EVP_Digest failed");
  return std::string(reinterpret_cast<char*>(md), len);
}

// RFC 4648 base32 (Go's base32.StdEncoding), no padding needed for the prefixes we take.
std::string base32(const std::string& in) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (unsigned char c : in) {
    buf = (buf << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(buf >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(buf << (5 - bits)) & 31];
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string ipv4(uint32_t hostOrder) {
  in_addr a{htonl(hostOrder)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

uint32_t parseIp(const std::string& s) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) throw std::runtime_error("not an IPv4 address: " + s);
  return ntohl(a.s_addr);
}

struct Endpoint {
  std::string ip;
  int port;
  std::string text() const { return ip + ":" + std::to_string(port); }
};

struct Svc {
  std::string ns = "bench", name, portName = "http";
  std::string clusterIp;
  std::string proto = "tcp";  // kube-proxy's lower-case spelling, as hashed and matched
  int port = 80;
  int nodePort = 0;  // 0: ClusterIP only
  std::vector<Endpoint> endpoints;

  std::string portNameFull() const { return ns + "/" + name + ":" + portName; }  // ServicePortName.String()
  // kube-proxy iptables: "KUBE-SVC-" + base32(sha256(spn + protocol))[:16]
  std::string svcChain() const { return "KUBE-SVC-" + base32(sha256(portNameFull() + proto)).substr(0, 16); }
  // kube-proxy iptables, externalTrafficPolicy Cluster: "KUBE-EXT-" + the same hash
  std::string extChain() const { return "KUBE-EXT-" + base32(sha256(portNameFull() + proto)).substr(0, 16); }
  std::string sepChain(const Endpoint& e) const {
    return "KUBE-SEP-" + base32(sha256(portNameFull() + proto + e.text())).substr(0, 16);
  }
  // kube-proxy nftables: lower(base32(sha256(spn + protocol))[:8]) + "-" + ns/name/proto/port
  std::string nftBase() const {
    return lower(base32(sha256(portNameFull() + proto)).substr(0, 8)) + "-" + ns + "/" + name + "/" + proto + "/" + portName;
  }
  std::string nftSvcChain() const { return "service-" + nftBase(); }
  std::string nftExtChain() const { return "external-" + nftBase(); }
  std::string nftEpChain(const Endpoint& e) const {
    std::string base = ns + "/" + name + "/" + proto + "/" + portName + "__" + e.ip + "/" + std::to_string(e.port);
    return "endpoint-" + lower(base32(sha256(portNameFull() + proto + e.text())).substr(0, 8)) + "-" + base;
  }
};

std::ofstream open(const std::string& dir, const std::string& name) {
  std::ofstream f(dir + "/" + name);
  if (!f) throw std::runtime_error("cannot write " + dir + "/" + name);
  return f;
}

std::string svcComment(const Svc& s) { return "\"" + s.portNameFull() + " cluster IP\""; }

void iptServicesRule(std::ostream& o, const Svc& s) {
  o << "-A KUBE-SERVICES -m comment --comment " << svcComment(s) << " -m " << s.proto << " -p " << s.proto << " -d " << s.clusterIp
    << "/32 --dport " << s.port << " -j " << s.svcChain() << "\n";
}

void iptServiceChains(std::ostream& o, const Svc& s, const std::string& clusterCidr) {
  o << "-A " << s.svcChain() << " -m comment --comment " << svcComment(s) << " -m " << s.proto << " -p " << s.proto << " -d "
    << s.clusterIp << "/32 --dport " << s.port << " ! -s " << clusterCidr << " -j KUBE-MARK-MASQ\n";
  size_t n = s.endpoints.size();
  for (size_t i = 0; i < n; ++i) {
    const auto& e = s.endpoints[i];
    o << "-A " << s.svcChain() << " -m comment --comment \"" << s.portNameFull() << " -> " << e.text() << "\"";
    if (i + 1 < n) {
      char prob[32];
      std::snprintf(prob, sizeof prob, "%0.10f", 1.0 / double(n - i));
      o << " -m statistic --mode random --probability " << prob;
    }
    o << " -j " << s.sepChain(e) << "\n";
  }
  for (const auto& e : s.endpoints) {
    o << "-A " << s.sepChain(e) << " -m comment --comment " << s.portNameFull() << " -s " << e.ip
      << "/32 -j KUBE-MARK-MASQ\n";
    o << "-A " << s.sepChain(e) << " -m comment --comment " << s.portNameFull()
      << " -m " << s.proto << " -p " << s.proto << " -j DNAT --to-destination " << e.text() << "\n";
  }
}

// NodePort, externalTrafficPolicy Cluster: every external packet is masqueraded (its endpoints
// may be on other nodes), then load-balanced by the service's own chain.
void iptNodePortRules(std::ostream& o, const Svc& s) {
  if (!s.nodePort) return;
  o << "-A KUBE-NODEPORTS -m comment --comment " << s.portNameFull() << " -m " << s.proto << " -p " << s.proto
    << " --dport " << s.nodePort << " -j " << s.extChain() << "\n";
  o << "-A " << s.extChain() << " -m comment --comment \"masquerade traffic for " << s.portNameFull()
    << " external destinations\" -j KUBE-MARK-MASQ\n";
  o << "-A " << s.extChain() << " -j " << s.svcChain() << "\n";
}

void iptChainDecls(std::ostream& o, const Svc& s) {
  o << ":" << s.svcChain() << " - [0:0]\n";
  if (s.nodePort) o << ":" << s.extChain() << " - [0:0]\n";
  for (const auto& e : s.endpoints) o << ":" << s.sepChain(e) << " - [0:0]\n";
}

constexpr const char* kNodePortsLast =
    "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last "
    "rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";

void writeIptables(const std::string& dir, const std::vector<Svc>& svcs, const Svc& added,
                   const std::string& clusterCidr) {
  auto o = open(dir, "iptables.rules");
  o << "*filter\n"
       ":KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n"
       ":KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-NODEPORTS - [0:0]\n"
       "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
       "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS\n"
       "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
       "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
       "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n"
       "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
       "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
       "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL\n"
       "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
       "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
       "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n"
       "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
       "COMMIT\n";
  o << "*nat\n"
       ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n";
  for (const auto& s : svcs) iptChainDecls(o, s);
  o << "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
       "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
       "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n"
       "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
       "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n"
       "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n"
       "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n";
  for (const auto& s : svcs) iptServicesRule(o, s);
  o << kNodePortsLast;
  for (const auto& s : svcs) iptServiceChains(o, s, clusterCidr);
  for (const auto& s : svcs) iptNodePortRules(o, s);
  o << "COMMIT\n";

  // The partial sync for one added service: KUBE-SERVICES is always rewritten whole.
  auto a = open(dir, "iptables-add.rules");
  a << "*nat\n:KUBE-SERVICES - [0:0]\n";
  iptChainDecls(a, added);
  for (const auto& s : svcs) iptServicesRule(a, s);
  iptServicesRule(a, added);
  a << kNodePortsLast;
  iptServiceChains(a, added, clusterCidr);
  a << "COMMIT\n";
}

void nftService(std::ostream& o, const Svc& s, const std::string& clusterCidr) {
  const std::string t = "ip kube-proxy";
  // Chains first: the service chain's vmap jumps to the endpoint chains.
  o << "add chain " << t << " " << s.nftSvcChain() << "\n";
  for (const auto& e : s.endpoints) o << "add chain " << t << " " << s.nftEpChain(e) << "\n";
  o << "add rule " << t << " " << s.nftSvcChain() << " ip daddr " << s.clusterIp << " " << s.proto << " dport " << s.port
    << " ip saddr != " << clusterCidr << " jump mark-for-masquerade\n";
  o << "add rule " << t << " " << s.nftSvcChain() << " numgen random mod " << s.endpoints.size() << " vmap { ";
  for (size_t i = 0; i < s.endpoints.size(); ++i)
    o << (i ? ", " : "") << i << " : goto " << s.nftEpChain(s.endpoints[i]);
  o << " }\n";
  for (const auto& e : s.endpoints) {
    o << "add rule " << t << " " << s.nftEpChain(e) << " ip saddr " << e.ip << " jump mark-for-masquerade\n";
    o << "add rule " << t << " " << s.nftEpChain(e) << " meta l4proto " << s.proto << " dnat to " << e.text() << "\n";
  }
  o << "add element " << t << " service-ips { " << s.clusterIp << " . " << s.proto << " . " << s.port << " : goto "
    << s.nftSvcChain() << " }\n";
  o << "add element " << t << " cluster-ips { " << s.clusterIp << " }\n";
  if (s.nodePort) {
    o << "add chain " << t << " " << s.nftExtChain() << "\n";
    o << "add rule " << t << " " << s.nftExtChain() << " jump mark-for-masquerade\n";
    o << "add rule " << t << " " << s.nftExtChain() << " goto " << s.nftSvcChain() << "\n";
    o << "add element " << t << " service-nodeports { " << s.proto << " . " << s.nodePort << " : goto "
      << s.nftExtChain() << " }\n";
  }
}

void writeNftables(const std::string& dir, const std::vector<Svc>& svcs, const Svc& added,
                   const std::string& clusterCidr) {
  auto o = open(dir, "nftables.nft");
  o << "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n"
       "flush table ip kube-proxy\n"
       "table ip kube-proxy {\n"
       "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }\n"
       "  map service-nodeports { type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }\n"
       "  map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to services with no endpoints\" ; }\n"
       "  map no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ; }\n"
       "  map firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ; }\n"
       "  set cluster-ips { type ipv4_addr ; comment \"Active ClusterIPs\" ; }\n"
       "  chain mark-for-masquerade { mark set mark or 0x4000 ; }\n"
       "  chain masquerading { meta mark & 0x4000 == 0 return ; meta mark set meta mark xor 0x4000 ; masquerade fully-random ; }\n"
       "  chain services { ip daddr . meta l4proto . th dport vmap @service-ips ; fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports ; }\n"
       "  chain firewall-check { ip daddr . meta l4proto . th dport vmap @firewall-ips ; }\n"
       "  chain service-endpoints-check { ip daddr . meta l4proto . th dport vmap @no-endpoint-services ; }\n"
       "  chain nodeport-endpoints-check { fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports ; }\n"
       "  chain cluster-ips-check { ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\" ; }\n"
       "  chain nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; jump services ; }\n"
       "  chain nat-output { type nat hook output priority -100 ; policy accept ; jump services ; }\n"
       "  chain nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; jump masquerading ; }\n"
       "  chain filter-prerouting { type filter hook prerouting priority -110 ; policy accept ; ct state new jump firewall-check ; }\n"
       "  chain filter-input { type filter hook input priority -110 ; policy accept ; ct state new jump nodeport-endpoints-check ; ct state new jump service-endpoints-check ; }\n"
       "  chain filter-forward { type filter hook forward priority -110 ; policy accept ; ct state new jump service-endpoints-check ; ct state new jump cluster-ips-check ; }\n"
       "  chain filter-output { type filter hook output priority -110 ; policy accept ; ct state new jump service-endpoints-check ; ct state new jump firewall-check ; }\n"
       "  chain filter-output-post-dnat { type filter hook output priority -90 ; policy accept ; ct state new jump cluster-ips-check ; }\n"
       "}\n";
  for (const auto& s : svcs) nftService(o, s, clusterCidr);
  auto a = open(dir, "nftables-add.nft");
  nftService(a, added, clusterCidr);
}

std::string svcJson(const Svc& s) {
  std::string j = "{\"name\":\"" + s.portNameFull() + "\",\"protocol\":\"" + std::string(s.proto == "udp" ? "UDP" : "TCP") + "\",\"port\":" +
                  std::to_string(s.port) + ",\"cluster_ip\":\"" + s.clusterIp + "\"," +
                  (s.nodePort ? "\"node_port\":" + std::to_string(s.nodePort) + "," : "") + "\"backends\":[";
  for (size_t i = 0; i < s.endpoints.size(); ++i)
    j += std::string(i ? "," : "") + "{\"address\":\"" + s.endpoints[i].ip + "\",\"port\":" +
         std::to_string(s.endpoints[i].port) + "}";
  return j + "]}";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"npkpgen: a service set as kube-proxy (iptables, nftables) and nodepath program it"};
  int services = 10, backends = 10;
  std::string outDir, backendBase = "10.0.1.1", clusterCidr = "10.0.0.0/16", vipBase = "10.43.0.16";
  app.add_option("--services", services, "number of services")->check(CLI::Range(1, 60000));
  app.add_option("--backends", backends, "endpoints per service (the same addresses for each)")
      ->check(CLI::Range(1, 250));
  app.add_option("--backend-base", backendBase, "first backend address (the rest follow)");
  app.add_option("--cluster-cidr", clusterCidr, "kube-proxy --cluster-cidr (sources outside are masqueraded)");
  app.add_option("--vip-base", vipBase, "ClusterIP of service 0 (the rest follow)");
  std::string protocol = "tcp";
  app.add_option("--protocol", protocol, "tcp or udp")->check(CLI::IsMember({"tcp", "udp"}));
  app.add_option("--out-dir", outDir, "where to write the files")->required();
  int nodePorts = 0;
  std::string nodeIp = "192.168.10.100";
  app.add_option("--node-ports", nodePorts, "the first K services get NodePort 30000+i (the default range holds 2768)")
      ->check(CLI::Range(0, 2768));
  app.add_option("--node-ip", nodeIp, "the node address the NodePort targets name");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    uint32_t be0 = parseIp(backendBase), vip0 = parseIp(vipBase);
    std::vector<Endpoint> eps;
    for (int b = 0; b < backends; ++b) eps.push_back({ipv4(be0 + uint32_t(b)), 8080});
    auto make = [&](int i) {
      Svc s;
      char name[32];
      std::snprintf(name, sizeof name, "svc-%05d", i);
      s.name = name;
      s.clusterIp = ipv4(vip0 + uint32_t(i));
      s.endpoints = eps;
      s.proto = protocol;
      if (i < nodePorts) s.nodePort = 30000 + i;
      return s;
    };
    std::vector<Svc> svcs;
    for (int i = 0; i < services; ++i) svcs.push_back(make(i));
    Svc added = make(services);

    writeIptables(outDir, svcs, added, clusterCidr);
    writeNftables(outDir, svcs, added, clusterCidr);
    auto j = open(outDir, "services.json");
    j << "{\"services\":[";
    for (size_t i = 0; i < svcs.size(); ++i) j << (i ? ",\n" : "\n") << svcJson(svcs[i]);
    j << "\n]}\n";
    open(outDir, "service-add.json") << "{\"services\":[" << svcJson(added) << "]}\n";
    auto t = open(outDir, "targets.txt");
    for (const auto& s : svcs) t << s.clusterIp << ":" << s.port << "\n";
    open(outDir, "target-add.txt") << added.clusterIp << ":" << added.port << "\n";
    if (nodePorts > 0) {
      parseIp(nodeIp);
      auto np = open(outDir, "nodeport-targets.txt");
      for (const auto& s : svcs)
        if (s.nodePort) np << nodeIp << ":" << s.nodePort << "\n";
    }
    auto b = open(outDir, "backends.txt");
    for (const auto& e : eps) b << e.text() << "\n";
    auto c = open(outDir, "clean-targets.txt");
    for (size_t i = 0; i < svcs.size(); ++i) c << svcs[i].endpoints[i % svcs[i].endpoints.size()].text() << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npkpgen: %s\n", e.what());
    return 1;
  }
  return 0;
}
