// L2 announcements in the agent (issue 10): the pure pieces (policy.h, announcer.h) driven
// against the Kubernetes API on the agent's io_context, and the ARP responders they steer.
//
// Inputs: CiliumL2AnnouncementPolicies (a reflector), this node's Node object (a reflector with a
// field selector, for its labels), the services (handed in by the agent from its service
// watcher), the node's interfaces, and the Leases of the agent's namespace (one watch feeding
// Announcer::observe). Outputs: the Announcer's Lease requests, the addresses each responder
// answers for (Announcer::answering), gratuitous ARP when this node becomes a holder.
//
// Only services with an announceable address on a selected node take part: with none, no
// heartbeat Lease is written and no service Lease is read or written, except that a Lease a
// previous run of this agent still holds is handed back (the Lease watch starts once everything
// is listed, to find such Leases, and stays).
// The heartbeat (nodepath-l2-node-<node>) runs on a LeaseRunner with its own Client, so that its
// renewals never wait behind the lists and Lease writes of the rest; the answering set is
// re-judged at the heartbeat's deadline, so a node that cannot renew stops answering before
// another may take over.
//
// Thread affinity: everything on the io_context it was started on.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent.pb.h"
#include "core/config.h"
#include "k8s/client.h"
#include "k8s/lease.h"
#include "k8s/objects.h"
#include "k8s/reflector.h"
#include "l2/announcer.h"
#include "l2/policy.h"
#include "l2/responder.h"

namespace np::l2 {

inline constexpr const char* kL2PoliciesPath = "/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies";

// What of a Kubernetes service the announcer needs (unparseable addresses left out).
Service fromK8s(const k8s::K8sService& s);

class Controller {
 public:
  static Result<std::unique_ptr<Controller>> start(boost::asio::io_context& io, const Config& config);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // The complete set of services, whenever it changed (the first call marks services synced).
  void setServices(const std::map<std::string, k8s::K8sService>& all);
  // The agent is stopping: stop answering at once, hand every held Lease (and the heartbeat)
  // back, then `done` (also after at most the renew deadline when the API server is slow).
  void stop(std::function<void()> done);

  void fillStatus(nodepath::agent::v1::L2Status& out, std::vector<std::string>& problems) const;

 private:
  Controller(boost::asio::io_context& io, const Config& config);
  void recompute();
  void kick();
  void step();
  void apply(lease::Time now);
  void execute(Announcer::Action a);
  void ensureHeartbeat(bool want);
  void ensureLeaseWatch();
  void observeLeaseObject(const boost::json::object& o, bool deleted);
  std::vector<std::string> candidateDevices() const;

  boost::asio::io_context& io_;
  std::string node_, ns_;
  lease::Timings timings_;
  std::unique_ptr<k8s::Client> client_;    // reflectors and the service Leases' requests
  std::unique_ptr<k8s::Client> hbClient_;  // the heartbeat's renewals alone
  std::shared_ptr<k8s::Reflector> policiesRef_, nodeRef_, leasesRef_;
  std::unique_ptr<k8s::LeaseRunner> heartbeat_;
  Announcer announcer_;
  boost::asio::steady_timer timer_;
  bool stepPosted_ = false, stopping_ = false;

  std::map<std::string, Policy> policies_;
  std::map<std::string, std::string> policyErrors_;  // policy name -> why refused
  bool nodeKnown_ = false;
  Labels nodeLabels_;
  std::map<std::string, Service> services_;
  bool servicesSynced_ = false;
  bool desiredSent_ = false;  // the announcer was given the complete desired set at least once
  std::set<std::string> leaseNames_;  // in the last Lease list, to see deletions across relists

  std::map<std::string, std::vector<Announcement>> desired_;  // lease -> what it answers for
  std::map<std::string, std::string> serviceOf_;             // lease -> "<ns>/<name>"
  std::map<std::string, std::string> collisions_;            // "<ns>/<name>" -> why not announced
  std::map<std::string, std::vector<Announcement>> collided_;  // "<ns>/<name>" -> what it would answer for
  std::map<std::string, std::unique_ptr<Responder>> responders_;  // by device
  std::map<std::string, std::string> responderErrors_;            // device -> why it cannot open
  std::vector<std::string> taken_;  // the nodes whose heartbeat this node took (for the log)
  uint64_t requests_ = 0;  // the announcer's Lease requests (the heartbeat counts its own)
  uint64_t pastHeartbeatRequests_ = 0;
  std::string lastError_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace np::l2
