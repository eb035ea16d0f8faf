// Maglev lookup tables (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4): every backend walks the table from its own offset by its
// own skip, the backends taking turns, until each of the M entries names one. Offset and skip come
// from two hashes of the backend's name ("ip:port/proto"), never from node-local IDs, so every
// node builds the same table for the same backends, whatever order they are listed in; removing
// one of N backends changes little more than the 1/N of entries it held.
//
// Pure code: no kernel, no state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace np::lb::maglev {

// The table sizes --bpf-lb-maglev-table-size accepts: the primes Cilium accepts.
const std::vector<uint32_t>& supportedTableSizes();
bool isPrime(uint32_t n);

struct Member {
  std::string name;  // what the permutation is derived from: "10.0.1.10:8080/TCP"
  uint32_t id = 0;   // what the table holds (the node's backend ID)
};

// A table of m entries (m prime, members non-empty with distinct names); each entry is a member's
// id. Each member holds m / members.size() entries, give or take one round.
std::vector<uint32_t> table(std::vector<Member> members, uint32_t m);

}  // namespace np::lb::maglev
