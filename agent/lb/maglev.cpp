#include "lb/maglev.h"

#include <algorithm>

namespace np::lb::maglev {
namespace {

// FNV-1a from a seeded basis, then murmur3's 64-bit finalizer for the avalanche FNV lacks.
uint64_t hash64(const std::string& s, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace

const std::vector<uint32_t>& supportedTableSizes() {
  static const std::vector<uint32_t> sizes = {251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071};
  return sizes;
}

bool isPrime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; uint64_t{d} * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

std::vector<uint32_t> table(std::vector<Member> members, uint32_t m) {
  std::vector<uint32_t> out;
  if (members.empty() || m == 0) return out;
  // The order of the turns is part of the result: fix it by name.
  std::sort(members.begin(), members.end(), [](const Member& a, const Member& b) { return a.name < b.name; });
  const size_t n = members.size();
  std::vector<uint64_t> pos(n), skip(n);
  for (size_t i = 0; i < n; ++i) {
    pos[i] = hash64(members[i].name, 0) % m;
    skip[i] = m == 1 ? 1 : hash64(members[i].name, 0x5bd1e9955bd1e995ull) % (m - 1) + 1;
  }
  constexpr int32_t kFree = -1;
  std::vector<int32_t> owner(m, kFree);
  uint32_t filled = 0;
  while (filled < m) {
    for (size_t i = 0; i < n && filled < m; ++i) {
      // m is prime and 0 < skip < m, so the walk visits every entry: a free one turns up.
      while (owner[pos[i]] != kFree) pos[i] = (pos[i] + skip[i]) % m;
      owner[pos[i]] = static_cast<int32_t>(i);
      pos[i] = (pos[i] + skip[i]) % m;
      ++filled;
    }
  }
  out.resize(m);
  for (uint32_t j = 0; j < m; ++j) out[j] = members[static_cast<size_t>(owner[j])].id;
  return out;
}

}  // namespace np::lb::maglev
