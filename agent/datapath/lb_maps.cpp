#include "datapath/lb_maps.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/log.h"

namespace np::datapath {

using lb::MapOp;
using K = MapOp::Kind;

namespace {
void setPort(PortBitmap& b, uint16_t portBe) { b[ntohs(portBe) / 64] |= uint64_t{1} << (ntohs(portBe) % 64); }
}  // namespace

Result<BpfLbMaps> BpfLbMaps::of(int servicesFd, int backendsFd, int revNatFd, int affinityMatchFd, int maglevFd,
                                uint32_t maglevTableSize) {
  auto s = bpf::Map<np_svc_key, np_svc_val>::of(servicesFd);
  if (!s) return s.error();
  auto b = bpf::Map<uint32_t, np_backend>::of(backendsFd);
  if (!b) return b.error();
  auto r = bpf::Map<uint16_t, np_revnat>::of(revNatFd);
  if (!r) return r.error();
  auto m = bpf::Map<np_affinity_match, uint8_t>::of(affinityMatchFd);
  if (!m) return m.error();
  auto mi = bpf::mapInfo(maglevFd);
  if (!mi) return mi.error();
  if (mi->keySize != sizeof(np_svc_key) || mi->valueSize != sizeof(uint32_t))
    return error("map " + mi->name, "is not a table of Maglev tables keyed by service entry");
  return BpfLbMaps(std::move(*s), std::move(*b), std::move(*r), std::move(*m), maglevFd, std::move(*mi),
                   maglevTableSize);
}

Status BpfLbMaps::putTable(const np_svc_key& key, const lb::MaglevTable& table) {
  if (!table.ids || table.ids->empty()) return error("write a Maglev table", "the table is empty");
  const auto& ids = *table.ids;
  LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = BPF_F_INNER_MAP);
  bpf::Fd inner(bpf_map_create(BPF_MAP_TYPE_ARRAY, "np_maglev_tab", sizeof(uint32_t), sizeof(uint32_t),
                               static_cast<uint32_t>(ids.size()), &opts));
  if (!inner) return sysError("create a Maglev table of " + std::to_string(ids.size()) + " entries");
  auto info = bpf::mapInfo(inner.get());
  if (!info) return info.error();
  std::vector<uint32_t> idx(ids.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<uint32_t>(i);
  size_t done = 0;
  NP_TRY(bpf::detail::updateBatch(inner.get(), *info, idx.data(), ids.data(), ids.size(), &done));
  // The swap is one update: the datapath sees the old table or the new one, whole.
  const int fd = inner.get();
  if (bpf_map_update_elem(maglevFd_, &key, &fd, BPF_ANY) != 0) {
    const int e = errno;
    if (e == E2BIG || e == ENOSPC || e == ENOMEM)
      return Error{e, "update map " + maglevInfo_.name,
                   "the map is full (" + std::to_string(maglevInfo_.maxEntries) + " tables)"};
    return sysError("update map " + maglevInfo_.name, e);
  }
  return {};
}

PortBitmap portBitmap(const lb::LbImage& img, const std::vector<PortRange>& always) {
  PortBitmap b{};
  for (const PortRange& r : always)
    for (uint32_t p = r.min; r.size() && p <= r.max; ++p) setPort(b, htons(static_cast<uint16_t>(p)));
  for (const auto& [k, v] : img.services) setPort(b, k.dport);
  for (const auto& [id, be] : img.backends) setPort(b, be.port);
  return b;
}

Result<PortBitmap> portsInConntrack(ct::Tables& tables, const std::vector<Ipv4>& addrs) {
  PortBitmap b{};
  const auto local = [&addrs](uint32_t a) {
    return std::any_of(addrs.begin(), addrs.end(), [a](const Ipv4& x) { return x.be == a; });
  };
  for (size_t t = 0; t < ct::kTables; ++t)
    NP_TRY(tables.walk(static_cast<np_ct_table>(t), [&](const np_ct_key* keys, const np_ct_entry*, uint32_t n) {
      for (uint32_t i = 0; i < n; ++i) {
        if (local(keys[i].daddr)) setPort(b, keys[i].dport);
        if (local(keys[i].saddr)) setPort(b, keys[i].sport);
      }
    }));
  return b;
}

Status BpfLbMaps::trackPorts(int portsFd, std::vector<PortRange> always) {
  auto info = bpf::mapInfo(portsFd);
  if (!info) return info.error();
  if (info->keySize != sizeof(uint32_t) || info->valueSize != sizeof(np_ports) ||
      info->maxEntries != NP_PORTS_ENTRIES)
    return error("map " + info->name, "is not a pair of bitmaps of " + std::to_string(NP_PORTS_WORDS * 64) + " ports");
  portsFd_ = portsFd;
  portsAlways_ = std::move(always);
  portsSeed_ = {};
  portsComplete_ = false;
  // Nothing is known of what wrote the maps since the bitmap was last written: all bits set
  // (with `complete` off) until the first dump() writes it.
  PortBitmap all;
  all.fill(~uint64_t{0});
  return writePorts(all, false);
}

Status BpfLbMaps::trackLiveBackends(int liveFd) {
  auto m = bpf::Map<uint32_t, uint64_t>::of(liveFd);
  if (!m) return m.error();
  if (m->info().maxEntries != NP_BELIVE_WORDS)
    return error("map " + m->info().name, "is not a bitmap of " + std::to_string(NP_BELIVE_WORDS * 64) + " backend IDs");
  live_.emplace(std::move(*m));
  liveWords_.clear();
  liveRead_ = false;
  liveDumped_ = false;
  // Cleared before the programs attach: an agent without the bitmap (a downgrade) may have
  // deleted backends since it was written, and until the first dump() writes it again every
  // established flow's backend is looked up.
  return syncLive({}, true);
}

// A set bit must always mean the backend map holds that ID; a clear one only costs the programs
// a lookup. So words are written whole from what this agent wrote (never from a read of the map
// but at a dump): a bit it does not vouch for is left clear. Every word the keys touch is
// written, whatever the mirror says (after a failed write the mirror may not be what the map
// holds), and the mirror follows.
Status BpfLbMaps::markLive(const std::vector<uint32_t>& keys, size_t n, bool on) {
  if (!live_ || n == 0) return {};
  lb::FlatMap<uint32_t, uint64_t> touched;
  for (size_t i = 0; i < n; ++i) {
    if (keys[i] > NP_BACKEND_ID_MAX) continue;  // the programs look such an ID up
    const uint32_t k = keys[i] / 64;
    auto [it, fresh] = touched.try_emplace(k, 0);
    if (fresh)
      if (auto m = liveWords_.find(k); m != liveWords_.end()) it->second = m->second;
    const uint64_t bit = uint64_t{1} << (keys[i] % 64);
    it->second = on ? it->second | bit : it->second & ~bit;
  }
  if (touched.empty()) return {};
  std::vector<uint32_t> words;
  std::vector<uint64_t> vals;
  for (const auto& [k, v] : touched) words.push_back(k), vals.push_back(v);
  size_t done = 0;
  if (Status st = live_->updateBatch(words, vals, &done); !st) {
    liveRead_ = false;  // what it holds is no longer known: the next dump() reads it
    return st;
  }
  for (const auto& [k, v] : touched)
    if (v) liveWords_[k] = v;
    else liveWords_.erase(k);
  return {};
}

Status BpfLbMaps::syncLive(lb::FlatMap<uint32_t, uint64_t> next, bool read) {
  boost::unordered::erase_if(next, [](const auto& kv) { return kv.second == 0; });
  lb::FlatMap<uint32_t, uint64_t> held;
  if (read) {
    auto all = live_->dump();
    if (!all) return all.error();
    for (const auto& [k, v] : *all)
      if (v != 0) held.emplace(k, v);
  }
  const lb::FlatMap<uint32_t, uint64_t>& now = read ? held : liveWords_;
  std::vector<uint32_t> keys;
  std::vector<uint64_t> vals;
  for (const auto& [k, v] : next)
    if (auto it = now.find(k); it == now.end() || it->second != v) keys.push_back(k), vals.push_back(v);
  for (const auto& [k, v] : now)
    if (!next.contains(k)) keys.push_back(k), vals.push_back(0);
  if (!keys.empty()) {
    size_t done = 0;
    if (Status st = live_->updateBatch(keys, vals, &done); !st) {
      liveRead_ = false;  // what it holds is no longer known: the next dump() reads it
      return st;
    }
  }
  liveWords_ = std::move(next);
  // After a read the mirror is what the map holds; the first dump() still writes it from the
  // backend map (liveDumped_).
  if (read) liveRead_ = true;
  return {};
}

void BpfLbMaps::seedPorts(const PortBitmap& ports) {
  for (size_t w = 0; w < portsSeed_.size(); ++w) portsSeed_[w] |= ports[w];
}

// The agent's bitmap is one value (np_ports, entry NP_PORTS_AGENT), written whole: a program
// reading it meanwhile sees each bit either before or after, and every write only adds bits but
// the first one after trackPorts(), which goes from all bits to what the maps, conntrack and
// the ranges use while `complete` is off. `complete` goes on in a write of its own, after the
// bits it vouches for.
Status BpfLbMaps::writePorts(const PortBitmap& next, bool complete) {
  if (portsComplete_ == complete && next == ports_) return {};
  np_ports v{};
  std::copy(next.begin(), next.end(), v.bits);
  const uint32_t k = NP_PORTS_AGENT;
  if (complete && !portsComplete_ && next != ports_) {
    v.complete = 0;
    if (bpf_map_update_elem(portsFd_, &k, &v, BPF_ANY) != 0) return sysError("update map " NP_STR(NP_MAP_PORTS));
  }
  v.complete = complete ? 1 : 0;
  if (bpf_map_update_elem(portsFd_, &k, &v, BPF_ANY) != 0) return sysError("update map " NP_STR(NP_MAP_PORTS));
  ports_ = next;
  portsComplete_ = complete;
  return {};
}

Status BpfLbMaps::addPorts(const std::vector<MapOp>& ops) {
  if (!portsComplete_) return {};  // every packet is looked up until dump() writes the bitmap
  PortBitmap next = ports_;
  for (const MapOp& op : ops) {
    if (op.kind == K::UpsertService || op.kind == K::UpsertSlot) setPort(next, op.svcKey.dport);
    if (op.kind == K::UpsertBackend) setPort(next, op.backend.port);
  }
  return writePorts(next, true);
}

lb::LbMaps::Applied BpfLbMaps::apply(const std::vector<MapOp>& ops) {
  Applied out;
  // Before any entry that uses a port exists, the programs look at packets on it.
  if (Status st = addPorts(ops); !st) {
    out.error = st.error();
    return out;
  }
  size_t i = 0;
  while (i < ops.size()) {
    size_t j = i;
    while (j < ops.size() && ops[j].kind == ops[i].kind) ++j;
    size_t done = 0;
    Status st;
    switch (ops[i].kind) {
      case K::UpsertBackend: {
        std::vector<uint32_t> keys;
        std::vector<np_backend> vals;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].backendId), vals.push_back(ops[k].backend);
        st = backends_.updateBatch(keys, vals, &done);
        // After the backends exist, and for those written even if the batch stopped short. A
        // bit not set only costs the programs a lookup: logged, not failed; the next dump()
        // (the interval's) writes the bitmap again.
        if (Status live = markLive(keys, done, true); !live)
          NP_LOG_WARN("datapath", "%s: established flows of these backends look them up until the next resync",
                      live.error().message().c_str());
        break;
      }
      case K::UpsertSlot:
      case K::UpsertService: {
        std::vector<np_svc_key> keys;
        std::vector<np_svc_val> vals;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].svcKey), vals.push_back(ops[k].svcVal);
        st = services_.updateBatch(keys, vals, &done);
        break;
      }
      case K::UpsertRevNat: {
        std::vector<uint16_t> keys;
        std::vector<np_revnat> vals;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].revNatId), vals.push_back(ops[k].revNat);
        st = revNat_.updateBatch(keys, vals, &done);
        break;
      }
      case K::DeleteSlot:
      case K::DeleteService: {
        std::vector<np_svc_key> keys;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].svcKey);
        st = services_.deleteBatch(keys, &done);
        break;
      }
      case K::DeleteRevNat: {
        std::vector<uint16_t> keys;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].revNatId);
        st = revNat_.deleteBatch(keys, &done);
        break;
      }
      case K::DeleteBackend: {
        std::vector<uint32_t> keys;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].backendId);
        // Before the backends go: a program that sees the bit clear looks the backend up.
        st = markLive(keys, keys.size(), false);
        if (st) st = backends_.deleteBatch(keys, &done);
        break;
      }
      case K::UpsertAffinityMatch: {
        std::vector<np_affinity_match> keys;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].match);
        st = affinityMatch_.updateBatch(keys, std::vector<uint8_t>(keys.size(), 0), &done);
        break;
      }
      case K::DeleteAffinityMatch: {
        std::vector<np_affinity_match> keys;
        for (size_t k = i; k < j; ++k) keys.push_back(ops[k].match);
        st = affinityMatch_.deleteBatch(keys, &done);
        break;
      }
      case K::UpsertMaglev:
        for (size_t k = i; k < j && st; ++k) {
          st = putTable(ops[k].svcKey, ops[k].maglev);
          done += st ? 1 : 0;
        }
        break;
      case K::DeleteMaglev:
        for (size_t k = i; k < j && st; ++k) {
          if (bpf_map_delete_elem(maglevFd_, &ops[k].svcKey) != 0 && errno != ENOENT)
            st = sysError("delete from map " + maglevInfo_.name);
          else
            ++done;
        }
        break;
    }
    out.done += done;
    if (!st) {
      out.error = st.error();
      return out;
    }
    i = j;
  }
  return out;
}

Result<lb::LbImage> BpfLbMaps::dump() {
  lb::LbImage img;
  auto s = services_.dump();
  if (!s) return s.error();
  for (auto& [k, v] : *s) img.services.emplace(k, v);
  auto b = backends_.dump();
  if (!b) return b.error();
  for (auto& [k, v] : *b) img.backends.emplace(k, v);
  auto r = revNat_.dump();
  if (!r) return r.error();
  for (auto& [k, v] : *r) img.revNat.emplace(k, v);
  auto m = affinityMatch_.dump();
  if (!m) return m.error();
  for (auto& [k, v] : *m) img.affinityMatch.emplace(k, v);
  // The first dump after trackPorts() (the reconciler's adopt at start) writes the bitmap from
  // what the maps hold, the ranges and the conntrack seed; from then on writes only add bits (a
  // flow of a deleted service keeps its port while its entry lives, as it did before).
  if (portsFd_ >= 0 && !portsComplete_) {
    PortBitmap next = portBitmap(img, portsAlways_);
    for (size_t w = 0; w < next.size(); ++w) next[w] |= portsSeed_[w];
    NP_TRY(writePorts(next, true));
  }
  // The first dump after trackLiveBackends() (and the first after a failed write) writes the
  // backend bitmap from the map where it differs; later ones (`lb list`, the interval's) leave it
  // to apply().
  if (live_ && (!liveRead_ || !liveDumped_)) {
    lb::FlatMap<uint32_t, uint64_t> next;
    for (const auto& [id, be] : img.backends)
      if (id <= NP_BACKEND_ID_MAX) next[id / 64] |= uint64_t{1} << (id % 64);
    NP_TRY(syncLive(std::move(next), !liveRead_));
    liveDumped_ = true;
  }
  // Maglev: the outer map names each table by its map ID (a few thousand at most: one syscall a
  // key is fine); each table is read in batches.
  np_svc_key key{}, next{};
  bool first = true;
  for (;;) {
    if (bpf_map_get_next_key(maglevFd_, first ? nullptr : &key, &next) != 0) {
      if (errno == ENOENT) break;
      return sysError("read map " + maglevInfo_.name);
    }
    first = false;
    key = next;
    uint32_t id = 0;
    if (bpf_map_lookup_elem(maglevFd_, &key, &id) != 0) {
      if (errno == ENOENT) continue;  // deleted meanwhile
      return sysError("read map " + maglevInfo_.name);
    }
    bpf::Fd inner(bpf_map_get_fd_by_id(id));
    if (!inner) {
      if (errno == ENOENT) continue;
      return sysError("open Maglev table " + std::to_string(id));
    }
    auto info = bpf::mapInfo(inner.get());
    if (!info) return info.error();
    std::vector<uint8_t> kb, vb;
    NP_TRY(bpf::detail::dumpAll(inner.get(), *info, kb, vb));
    auto ids = std::make_shared<std::vector<uint32_t>>(info->maxEntries, 0);
    for (size_t i = 0; i < kb.size() / sizeof(uint32_t); ++i) {
      uint32_t idx = 0, be = 0;
      std::memcpy(&idx, kb.data() + i * sizeof(uint32_t), sizeof idx);
      std::memcpy(&be, vb.data() + i * sizeof(uint32_t), sizeof be);
      if (idx < ids->size()) (*ids)[idx] = be;
    }
    img.maglev[key] = lb::MaglevTable{std::move(ids)};
  }
  return img;
}

}  // namespace np::datapath
