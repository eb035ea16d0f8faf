#include "datapath/lb_maps.h"

namespace np::datapath {

using lb::MapOp;
using K = MapOp::Kind;

Result<BpfLbMaps> BpfLbMaps::of(int servicesFd, int backendsFd, int revNatFd) {
  auto s = bpf::Map<np_svc_key, np_svc_val>::of(servicesFd);
  if (!s) return s.error();
  auto b = bpf::Map<uint32_t, np_backend>::of(backendsFd);
  if (!b) return b.error();
  auto r = bpf::Map<uint16_t, np_revnat>::of(revNatFd);
  if (!r) return r.error();
  return BpfLbMaps(std::move(*s), std::move(*b), std::move(*r));
}

lb::LbMaps::Applied BpfLbMaps::apply(const std::vector<MapOp>& ops) {
  Applied out;
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
        st = backends_.deleteBatch(keys, &done);
        break;
      }
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
  return img;
}

}  // namespace np::datapath
