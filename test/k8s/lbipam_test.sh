#!/usr/bin/env bash
# K8sLbIpam: nodepath-operator's LB-IPAM (operator/lbipam*) and leader election against a real
# kube-apiserver:
#  - the seed's pool and policy (fixtures/seed-l2-lb-ipam.yaml) apply verbatim; a LoadBalancer
#    Service gets an EXTERNAL-IP from 192.168.20.0/24 and cilium.io/IPAMRequestSatisfied True;
#  - a Service asking for that taken address gets the condition False (already_allocated) and a
#    Warning Event, and gets the address once the holder is deleted (delete frees);
#  - of two operators only one acts; killing the leader hands over within the lease duration and
#    the new leader allocates (and keeps the addresses already handed out, from their status).
#
# Lab: no agents; kube-apiserver + etcd in n1; operators in n1 with the admin kubeconfig.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
OP_BIN=${NP_BUILD_DIR:-$(dirname "${BASH_SOURCE[0]}")/../../build}/operator/nodepath-operator
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sLbIpam nplbipam
[[ -x $OP_BIN ]] || { fail K8sLbIpam "$OP_BIN is missing (build the nodepath-operator target)"; exit 1; }
cp -p "$OP_BIN" "$E2E_TMP/nodepath-operator"
OP=$E2E_TMP/nodepath-operator
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "kube-apiserver and etcd up in n1" k8s_up

operator() { # <identity>: 3 s leases, 2 s renew deadline, 0.5 s retry period
  lab_bg "op-$1" "$E2E_TMP/op-$1.log" lab_node_exec n1 "$OP" --k8s-kubeconfig-path "$K8S_KUBECONFIG" \
    --identity "$1" --leader-election-lease-duration 3s --leader-election-renew-deadline 2s \
    --leader-election-retry-period 500ms
}
leads() { grep -qx leader "$E2E_TMP/op-$1.log" 2>/dev/null; }
holder() { k8s_kubectl get lease -n cilium cilium-operator-resource-lock -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
lb_svc() { # <name> [loadBalancerIP]
  local ip=${2:+"  loadBalancerIP: $2"}
  k8s_apply <<YAML
apiVersion: v1
kind: Service
metadata: {name: $1, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80, protocol: TCP}]
$ip
YAML
}
external_ip() { k8s_kubectl get svc -n default "$1" -o jsonpath='{.status.loadBalancer.ingress[*].ip}' 2>/dev/null; }
expect_ip_in_pool() { # <svc>: kubectl get svc shows an EXTERNAL-IP from 192.168.20.0/24
  local out
  out=$(k8s_kubectl get svc -n default "$1" --no-headers 2>&1) || { echo "$out"; return 1; }
  [[ $(awk '{print $4}' <<<"$out") =~ ^192\.168\.20\.([1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-4])$ ]] ||
    { echo "kubectl get svc $1: $out"; return 1; }
}
cond() { # <svc> <field>: of the cilium.io/IPAMRequestSatisfied condition
  k8s_kubectl get svc -n default "$1" \
    -o jsonpath="{.status.conditions[?(@.type==\"cilium.io/IPAMRequestSatisfied\")].$2}" 2>/dev/null
}
expect_cond() { # <svc> <status> <reason>
  local s r
  s=$(cond "$1" status) r=$(cond "$1" reason)
  [[ $s == "$2" && $r == "$3" ]] || { echo "$1: condition status '$s' reason '$r', want $2 $3 ($(cond "$1" message))"; return 1; }
}
expect_event() { # <svc> <reason>
  local out
  out=$(k8s_kubectl get events -n default --field-selector "involvedObject.name=$1,type=Warning" \
    -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' 2>&1)
  grep -q "^$2: " <<<"$out" || { echo "events of $1: $out"; return 1; }
}

check "the seed's pool and policy apply verbatim" k8s_kubectl apply -f "$K8S_TEST_DIR/fixtures/seed-l2-lb-ipam.yaml"
require "operator a started" operator a
check "a leads (the only candidate)" eventually 15 leads a
check "...and the Lease cilium/cilium-operator-resource-lock names it" test "$(holder)" = a
require "LoadBalancer Service web created" lb_svc web
check "kubectl get svc web shows an EXTERNAL-IP from 192.168.20.0/24" eventually 15 expect_ip_in_pool web
check "...with cilium.io/IPAMRequestSatisfied True (satisfied)" eventually 5 expect_cond web True satisfied
taken=$(external_ip web)

require "Service thief asks for web's address $taken" lb_svc thief "$taken"
check "thief gets IPAMRequestSatisfied False, already_allocated" eventually 15 expect_cond thief False already_allocated
check "...and a Warning Event already_allocated" eventually 10 expect_event thief already_allocated
check "...and no address" test -z "$(external_ip thief)"
require "Service web deleted" k8s_kubectl delete svc -n default web --wait=false
got_thief() { [[ $(external_ip thief) == "$taken" ]] || { echo "thief holds '$(external_ip thief)'"; return 1; }; }
check "thief now holds $taken (deleting web freed it)" eventually 15 got_thief
check "...satisfied" eventually 5 expect_cond thief True satisfied
pool_row() { # kubectl get ippools: DISABLED false, CONFLICTING False, IPS AVAILABLE 253 (one of 254 used)
  local out
  out=$(k8s_kubectl get ippools lb-ip-pool --no-headers 2>&1)
  [[ $out =~ ^lb-ip-pool\ +false\ +False\ +253\  ]] || { echo "kubectl get ippools: $out"; return 1; }
}
check "kubectl get ippools shows the pool's status: 253 available, no conflict" eventually 10 pool_row

require "operator b started" operator b
renew() { k8s_kubectl get lease -n cilium cilium-operator-resource-lock -o jsonpath='{.spec.renewTime}' 2>/dev/null; }
check "b is a candidate" eventually 10 grep -qx candidate "$E2E_TMP/op-b.log"
rt0=$(renew)
a_renewed_b_waits() { [[ $(renew) != "$rt0" ]] && ! leads b; }
check "b does not act while a leads and renews" eventually 10 a_renewed_b_waits
check "...and the Lease still names a" test "$(holder)" = a
t0=$(e2e_now_ms)
require "the leader a killed with SIGKILL" lab_kill op-a KILL
check "b takes over once the Lease expires" eventually 15 leads b
took=$(($(e2e_now_ms) - t0))
check "...within 3 s lease + retry slack (took ${took} ms)" test "$took" -lt 6000
check "...and the Lease names b" test "$(holder)" = b
require "LoadBalancer Service web2 created" lb_svc web2
check "b allocates: web2 gets an address from the pool" eventually 15 expect_ip_in_pool web2
check "...not thief's $taken (b rebuilt its holdings from status)" test "$(external_ip web2)" != "$taken"
check "thief keeps $taken" test "$(external_ip thief)" = "$taken"
require "operator b stopped" lab_kill op-b
check "b released the Lease on the way out" grep -qx released "$E2E_TMP/op-b.log"

e2e_finish
