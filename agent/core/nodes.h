// The standalone node list: the `nodes` file of the config directory, one node per line,
// `<name> <node IP> <pod CIDR>` (this node included). Blank lines and # comments are ignored.
#pragma once

#include <string>
#include <vector>

#include "core/net.h"
#include "core/result.h"

namespace np {

struct NodeEntry {
  std::string name;
  Ipv4 ip;
  Cidr podCidr;
  bool local = false;  // name == this node's name
};

Result<std::vector<NodeEntry>> parseNodes(const std::string& text, const std::string& localName);

}  // namespace np
