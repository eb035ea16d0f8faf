#include "flows/peers.h"

#include <algorithm>
#include <map>

namespace np::flows {
namespace {

std::map<std::string, std::string> byName(const std::vector<Peer>& peers) {
  std::map<std::string, std::string> m;
  for (const Peer& p : peers) m.emplace(p.name, p.address);
  return m;
}

peer::ChangeNotification note(const std::string& name, const std::string& address, peer::ChangeNotificationType t) {
  peer::ChangeNotification n;
  n.set_name(name);
  n.set_address(address);
  n.set_type(t);
  return n;
}

}  // namespace

std::vector<peer::ChangeNotification> peerChanges(const std::vector<Peer>& from, const std::vector<Peer>& to) {
  auto a = byName(from), b = byName(to);
  std::vector<peer::ChangeNotification> out;
  for (const auto& [name, addr] : a)
    if (!b.count(name)) out.push_back(note(name, addr, peer::PEER_DELETED));
  for (const auto& [name, addr] : b)
    if (!a.count(name)) out.push_back(note(name, addr, peer::PEER_ADDED));
  for (const auto& [name, addr] : b)
    if (auto it = a.find(name); it != a.end() && it->second != addr) out.push_back(note(name, addr, peer::PEER_UPDATED));
  return out;
}

void PeerSet::set(std::vector<Peer> peers) {
  std::stable_sort(peers.begin(), peers.end(), [](const Peer& x, const Peer& y) { return x.name < y.name; });
  peers.erase(std::unique(peers.begin(), peers.end(), [](const Peer& x, const Peer& y) { return x.name == y.name; }),
              peers.end());
  {
    std::lock_guard lk(mu_);
    if (peers == peers_) return;
    peers_ = std::move(peers);
    ++gen_;
  }
  cv_.notify_all();
}

std::vector<Peer> PeerSet::get(uint64_t* generation) const {
  std::lock_guard lk(mu_);
  if (generation) *generation = gen_;
  return peers_;
}

uint64_t PeerSet::waitChange(uint64_t seen, std::chrono::milliseconds timeout) const {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return gen_ != seen || closed_; });
  return gen_;
}

void PeerSet::close() {
  {
    std::lock_guard lk(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool PeerSet::closed() const {
  std::lock_guard lk(mu_);
  return closed_;
}

}  // namespace np::flows
