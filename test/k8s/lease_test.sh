#!/usr/bin/env bash
# K8sLeaseElection: the agent's LeaseRunner (agent/k8s/lease.*, driving agent/lease/elector)
# against a real kube-apiserver, through np-lease-probe (one candidate each):
#  - of two candidates for one Lease exactly one leads, and `kubectl get lease` names it;
#  - a leader stopped gracefully releases the Lease and the other takes over at once (well
#    before the lease duration);
#  - a leader killed with SIGKILL is replaced only after its Lease expires, by a new candidate,
#    and the Lease's transitions count moves.
#
# Lab: no agents; kube-apiserver + etcd in n1; probes in n1 with the admin kubeconfig.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sLeaseElection npk8s_lease
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "kube-apiserver and etcd up in n1" k8s_up
PROBE=$(lab__bin lease-probe)
LEASE=np-test-election
# 3 s leases, 2 s renew deadline, 0.5 s retry period
probe() { # <identity>
  lab_bg "probe-$1" "$E2E_TMP/probe-$1.log" lab_node_exec n1 "$PROBE" --kubeconfig "$K8S_KUBECONFIG" \
    --namespace cilium --name "$LEASE" --identity "$1" --lease-duration-ms 3000 --renew-deadline-ms 2000 \
    --retry-period-ms 500
}
state() { tail -n1 "$E2E_TMP/probe-$1.log" 2>/dev/null; } # leader | follower | released | ""
holder() { k8s_kubectl get lease -n cilium "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
transitions() { k8s_kubectl get lease -n cilium "$LEASE" -o jsonpath='{.spec.leaseTransitions}' 2>/dev/null; }
expect_leader() { # <identity> [other...]: it leads, the API says so, the others do not lead
  local who=$1 h o
  shift
  [[ $(state "$who") == leader ]] || { echo "$who: '$(state "$who")', not leader"; return 1; }
  h=$(holder)
  [[ $h == "$who" ]] || { echo "the Lease's holder is '$h', not $who"; return 1; }
  for o in "$@"; do
    [[ $(state "$o") != leader ]] || { echo "$o leads too"; return 1; }
  done
}
one_leader() { # a b: exactly one of them
  if [[ $(state a) == leader ]]; then expect_leader a b; else expect_leader b a; fi
}

require "candidate a started" probe a
require "candidate b started" probe b
check "exactly one of a and b leads, and the Lease names it" eventually 15 one_leader
first=a second=b
[[ $(state b) == leader ]] && first=b second=a

t0=$(e2e_now_ms)
require "the leader ($first) stopped with SIGTERM" lab_kill "probe-$first"
check "...it released the Lease on the way out" grep -qx released "$E2E_TMP/probe-$first.log"
check "$second takes over" eventually 10 expect_leader "$second"
took=$(($(e2e_now_ms) - t0))
check "...in less than the 3 s lease duration after a release (took ${took} ms)" test "$took" -lt 3000

tr0=$(transitions)
require "candidate c started" probe c
check "c does not take a Lease that is held and renewed" eventually 5 expect_leader "$second" c
t0=$(e2e_now_ms)
require "the leader ($second) killed with SIGKILL (no release)" lab_kill "probe-$second" KILL
check "c takes over once the Lease expires" eventually 15 expect_leader c
took=$(($(e2e_now_ms) - t0))
check "...not before the lease has gone unrenewed for its duration (took ${took} ms, lease 3000 ms, renewed every 500)" \
  test "$took" -ge 2400
check "the Lease's transitions moved ($tr0 -> $(transitions))" test "$(transitions)" -gt "$tr0"
require "candidate c stopped" lab_kill probe-c
check "the Lease is released (no holder)" test -z "$(holder)"

e2e_finish
