#include "k8s/service_cache.h"

#include <algorithm>

namespace np::k8s {

namespace {

lb::TrafficPolicy policy(const std::string& s) {
  return s == "Local" ? lb::TrafficPolicy::Local : lb::TrafficPolicy::Cluster;
}

void addIps(const std::vector<std::string>& in, std::vector<Ipv4>& out) {
  for (const std::string& t : in)
    if (auto ip = Ipv4::parse(t); ip && std::find(out.begin(), out.end(), *ip) == out.end()) out.push_back(*ip);
}

bool skipped(const K8sService& svc) {
  return svc.type == "ExternalName" || svc.clusterIp == "None" || !Ipv4::parse(svc.clusterIp);
}

}  // namespace

std::vector<Ipv4> externalIpsOf(const K8sService& svc) {
  std::vector<Ipv4> out;
  if (!skipped(svc)) addIps(svc.externalIps, out);
  return out;
}

std::vector<Ipv4> loadBalancerIpsOf(const K8sService& svc) {
  std::vector<Ipv4> out;
  if (!skipped(svc) && svc.type == "LoadBalancer") addIps(svc.lbIngressIps, out);
  return out;
}

std::vector<lb::Service> toModel(const K8sService& svc, const std::vector<const K8sSlice*>& slices) {
  std::vector<lb::Service> out;
  if (skipped(svc)) return out;  // ExternalName, headless, unset or IPv6: not ours
  const Ipv4 cip = *Ipv4::parse(svc.clusterIp);
  const bool nodePorts = svc.type == "NodePort" || svc.type == "LoadBalancer";
  for (const ServicePort& p : svc.ports) {
    if (!p.supported) continue;
    lb::Service s;
    s.name = svc.key() + (p.name.empty() ? "" : ":" + p.name);
    s.protocol = p.protocol;
    s.port = p.port;
    s.clusterIp = cip;
    if (nodePorts) s.nodePort = p.nodePort;
    s.externalIps = externalIpsOf(svc);
    s.loadBalancerIps = loadBalancerIpsOf(svc);
    if (svc.sessionAffinity == "ClientIP") {
      s.sessionAffinity = lb::SessionAffinity::ClientIp;
      s.affinityTimeoutSec = svc.affinityTimeoutSec.value_or(lb::kDefaultAffinityTimeoutSec);
    }
    s.externalTrafficPolicy = policy(svc.externalTrafficPolicy);
    s.internalTrafficPolicy = policy(svc.internalTrafficPolicy);
    s.source = kSourceKubernetes;
    std::map<Endpoint, lb::Backend> backends;  // an address in two slices counts once, ready first
    for (const K8sSlice* sl : slices) {
      if (sl->addressType != "IPv4") continue;
      const SlicePort* sp = nullptr;
      for (const SlicePort& x : sl->ports)
        if (x.name == p.name && x.protocol == p.protocol && x.supported && x.port) sp = &x;
      if (!sp) continue;
      for (const SliceEndpoint& e : sl->endpoints) {
        lb::BackendState state;
        if (e.ready) state = lb::BackendState::Active;
        else if (e.serving && e.terminating) state = lb::BackendState::Terminating;
        else continue;
        if (!e.address) continue;
        Endpoint ep{*e.address, *sp->port};
        auto [it, added] = backends.try_emplace(ep, lb::Backend{ep, state, e.nodeName.str()});
        if (!added && state == lb::BackendState::Active) it->second = lb::Backend{ep, state, e.nodeName.str()};
      }
    }
    for (auto& [ep, b] : backends) s.backends.push_back(std::move(b));
    lb::normalize(s);
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// Equal but for the resourceVersion (which changes on writes of fields nobody here reads).
template <typename T>
bool sameContent(const T& held, T& next) {
  if (held.resourceVersion == next.resourceVersion) return held == next;
  std::string rv = std::move(next.resourceVersion);
  next.resourceVersion = held.resourceVersion;
  const bool same = held == next;
  next.resourceVersion = std::move(rv);
  return same;
}

}  // namespace

void ServiceCache::upsertService(K8sService s) {
  std::string key = s.key();
  auto it = services_.find(key);
  if (it != services_.end()) {
    const bool same = sameContent(it->second, s);
    it->second = std::move(s);
    if (same) return;
  } else {
    services_.emplace(key, std::move(s));
  }
  dirty_.insert(std::move(key));
}

void ServiceCache::deleteService(const std::string& key) {
  if (services_.erase(key)) dirty_.insert(key);
}

void ServiceCache::upsertSlice(K8sSlice s) {
  std::string key = s.key();
  if (auto it = slices_.find(key); it != slices_.end() && sameContent(it->second, s)) {
    it->second.resourceVersion = std::move(s.resourceVersion);
    return;
  }
  if (auto it = slices_.find(key); it != slices_.end() && it->second.serviceKey() != s.serviceKey()) {
    slicesOf_[it->second.serviceKey()].erase(key);
    dirty_.insert(it->second.serviceKey());
  }
  if (!s.serviceName.empty()) {
    slicesOf_[s.serviceKey()].insert(key);
    dirty_.insert(s.serviceKey());
  }
  slices_[key] = std::move(s);
}

void ServiceCache::deleteSlice(const std::string& key) {
  auto it = slices_.find(key);
  if (it == slices_.end()) return;
  const std::string svc = it->second.serviceKey();
  if (!it->second.serviceName.empty()) {
    slicesOf_[svc].erase(key);
    if (slicesOf_[svc].empty()) slicesOf_.erase(svc);
    dirty_.insert(svc);
  }
  slices_.erase(it);
}

void ServiceCache::replaceServices(std::vector<K8sService> all) {
  std::set<std::string> keep;
  for (const K8sService& s : all) keep.insert(s.key());
  for (auto it = services_.begin(); it != services_.end();) {
    if (!keep.count(it->first)) {
      dirty_.insert(it->first);
      it = services_.erase(it);
    } else {
      ++it;
    }
  }
  for (K8sService& s : all) upsertService(std::move(s));
}

void ServiceCache::replaceSlices(std::vector<K8sSlice> all) {
  std::set<std::string> keep;
  for (const K8sSlice& s : all) keep.insert(s.key());
  std::vector<std::string> gone;
  for (const auto& [k, s] : slices_)
    if (!keep.count(k)) gone.push_back(k);
  for (const std::string& k : gone) deleteSlice(k);
  for (K8sSlice& s : all) upsertSlice(std::move(s));
}

void ServiceCache::retainServices(const std::set<std::string>& listed) {
  for (auto it = services_.begin(); it != services_.end();) {
    if (!listed.count(it->first)) {
      dirty_.insert(it->first);
      it = services_.erase(it);
    } else {
      ++it;
    }
  }
}

void ServiceCache::retainSlices(const std::set<std::string>& listed) {
  std::vector<std::string> gone;
  for (const auto& [k, s] : slices_)
    if (!listed.count(k)) gone.push_back(k);
  for (const std::string& k : gone) deleteSlice(k);
}

std::vector<lb::Service> ServiceCache::modelOf(const std::string& key) const {
  auto it = services_.find(key);
  if (it == services_.end()) return {};
  std::vector<const K8sSlice*> sl;
  if (auto s = slicesOf_.find(key); s != slicesOf_.end())
    for (const std::string& k : s->second) sl.push_back(&slices_.at(k));
  return toModel(it->second, sl);
}

lb::Change ServiceCache::takeChange() {
  lb::Change c;
  for (const std::string& key : dirty_) {
    std::vector<lb::Service> now = modelOf(key);
    std::vector<std::string> names;
    for (const lb::Service& s : now) names.push_back(s.name);
    for (const std::string& old : emitted_[key])
      if (std::find(names.begin(), names.end(), old) == names.end()) c.deletes.push_back(old);
    if (names.empty()) emitted_.erase(key);
    else emitted_[key] = std::move(names);
    for (lb::Service& s : now) c.upserts.push_back(std::move(s));
  }
  dirty_.clear();
  return c;
}

size_t ServiceCache::modelServices() const {
  size_t n = 0;
  for (const auto& [k, names] : emitted_) n += names.size();
  return n;
}

std::string ServiceCache::serviceKeyOf(const std::string& modelName) {
  return modelName.substr(0, modelName.find(':'));
}

}  // namespace np::k8s
