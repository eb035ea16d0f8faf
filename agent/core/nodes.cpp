#include "core/nodes.h"

#include <set>
#include <sstream>

namespace np {

Result<std::vector<NodeEntry>> parseNodes(const std::string& text, const std::string& localName) {
  std::vector<NodeEntry> out;
  std::set<std::string> names;
  std::set<Ipv4> ips;
  std::istringstream in(text);
  std::string line;
  for (int lineNo = 1; std::getline(in, line); ++lineNo) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string name, ip, cidr, extra;
    if (!(fields >> name)) continue;
    const std::string ctx = "nodes line " + std::to_string(lineNo);
    if (!(fields >> ip >> cidr) || (fields >> extra)) return error(ctx, "expected \"<name> <node IP> <pod CIDR>\"");
    auto addr = Ipv4::parse(ip);
    if (!addr || addr->isZero()) return error(ctx, "\"" + ip + "\" is not an IPv4 address");
    auto pod = Cidr::parse(cidr);
    if (!pod) return error(ctx, "\"" + cidr + "\" is not a CIDR (like 10.0.1.0/24)");
    if (!names.insert(name).second) return error(ctx, "node " + name + " is listed twice");
    if (!ips.insert(*addr).second) return error(ctx, "address " + ip + " is listed twice");
    out.push_back({name, *addr, *pod, name == localName});
  }
  return out;
}

}  // namespace np
