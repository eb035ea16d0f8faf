// Kubernetes Services and their EndpointSlices, merged as kube-proxy merges them, turned into the
// agent's service model (one lb::Service per service port, source "kubernetes"). Pure: the
// watchers feed objects in, the agent takes the changes out.
//
// Semantics (kube-proxy's pkg/proxy/endpointslicecache.go and servicechangetracker.go):
// - A service port becomes "<ns>/<name>:<port name>" ("<ns>/<name>" when the port is unnamed).
// - Its backends are the endpoints of every IPv4 slice labelled kubernetes.io/service-name=<name>
//   in the namespace, at the slice port with the same name and protocol; an address listed by two
//   slices counts once (ready wins).
// - ready endpoints serve; serving+terminating ones are kept as terminating (they take new
//   connections only when no endpoint is ready); the others are left out.
// - ExternalName and headless (clusterIP None) services, SCTP ports and non-IPv4 ClusterIPs are
//   skipped. NodePorts, externalIPs and status.loadBalancer.ingress IPs are frontends.
// - Topology hints are ignored.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "k8s/objects.h"
#include "lb/model.h"
#include "lb/reconciler.h"

namespace np::k8s {

inline constexpr const char* kSourceKubernetes = "kubernetes";

// The model services of one Kubernetes service and its slices (empty when it is skipped).
std::vector<lb::Service> toModel(const K8sService& svc, const std::vector<const K8sSlice*>& slices);
// The addresses toModel makes frontends of, for whoever else needs the same answer (L2
// announcements): none for a service it skips (ExternalName, headless, no IPv4 ClusterIP);
// spec.externalIPs; the status.loadBalancer.ingress IPs of a type LoadBalancer service only
// (LB-IPAM and spec.loadBalancerIP land there). Parsed, IPv4, without duplicates.
std::vector<Ipv4> externalIpsOf(const K8sService& svc);
std::vector<Ipv4> loadBalancerIpsOf(const K8sService& svc);

class ServiceCache {
 public:
  // An upsert of an object the cache holds unchanged (a relist, a no-op update: equal but for its
  // resourceVersion) touches no service.
  void upsertService(K8sService s);
  void deleteService(const std::string& key);
  void upsertSlice(K8sSlice s);
  void deleteSlice(const std::string& key);
  // A relist: the complete current set replaces what the cache held (objects gone are deleted).
  void replaceServices(std::vector<K8sService> all);
  void replaceSlices(std::vector<K8sSlice> all);
  // The end of a relist that upserted object by object: everything not in `listed` is deleted.
  // (With upserts of unchanged objects being no-ops, a relist of an unchanged cluster changes
  // nothing and never holds a second copy of the state.)
  void retainServices(const std::set<std::string>& listed);
  void retainSlices(const std::set<std::string>& listed);

  // What changed in the model since the last take: new versions of the services of every touched
  // Kubernetes service and the names that went away.
  lb::Change takeChange();
  bool dirty() const { return !dirty_.empty(); }
  // The model services of one Kubernetes service ("<ns>/<name>") as the cache holds it now;
  // nothing is taken (for a caller that consumed a change and needs its services again).
  std::vector<lb::Service> modelOf(const std::string& serviceKey) const;
  // Every model service the cache stands for now (after the last takeChange()).
  size_t modelServices() const;
  // Undoes a take whose change the agent could not apply: its services count as changed again.
  void markDirty(const std::string& serviceKey) { dirty_.insert(serviceKey); }
  // The Kubernetes service ("<ns>/<name>") a model service name belongs to.
  static std::string serviceKeyOf(const std::string& modelName);

  size_t services() const { return services_.size(); }
  // Every Kubernetes service as last seen, by "<ns>/<name>" (L2 announcements read them).
  const std::map<std::string, K8sService>& allServices() const { return services_; }
  size_t slices() const { return slices_.size(); }

 private:
  std::map<std::string, K8sService> services_;
  std::map<std::string, K8sSlice> slices_;
  std::map<std::string, std::set<std::string>> slicesOf_;  // service key -> slice keys
  std::map<std::string, std::vector<std::string>> emitted_;  // service key -> model names
  std::set<std::string> dirty_;
};

}  // namespace np::k8s
