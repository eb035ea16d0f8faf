#!/usr/bin/env bash
# K8sCrdsAndRbac: nodepath's CRDs and RBAC (deploy/crds, deploy/rbac, applied by k8s_up as
# `scripts/k8s-env.sh up` does) in a real kube-apiserver:
#  - the seed's CiliumL2AnnouncementPolicy and CiliumLoadBalancerIPPool (fixtures/, the seed's
#    YAML) apply verbatim with `kubectl apply -f` and read back with their fields, Cilium's short
#    names and printer columns; a second apply changes nothing;
#  - the structural schemas refuse malformed objects with a message naming the field: a CIDR that
#    is not one, wrong types, a missing required field, an enum value out of range, and (with
#    --validate=strict) an unknown field;
#  - `kubectl auth can-i` as the agent's and the operator's service accounts allows what they use
#    and refuses what they must not do; the API server itself refuses the agent deleting a Service
#    and the operator writing a Service's spec, and lets the operator write a pool's status.
#
# Lab: no agents; kube-apiserver + etcd in n1.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sCrdsAndRbac npk8s_crd
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "kube-apiserver and etcd up in n1, nodepath's CRDs Established and RBAC applied" k8s_up

FIX=$K8S_TEST_DIR/fixtures
AGENT=system:serviceaccount:cilium:nodepath-agent
OPERATOR=system:serviceaccount:cilium:nodepath-operator

# --- the seed's YAML, verbatim -----------------------------------------------------------------
expect_applied() { # <file> <regex>...: kubectl apply -f <file> succeeds and says each regex
  local out re
  out=$(k8s_kubectl apply -f "$1" 2>&1) || { echo "kubectl apply -f $1 failed: $out"; return 1; }
  shift
  for re in "$@"; do
    grep -Eq -- "$re" <<<"$out" || { echo "expected /$re/ in: $out"; return 1; }
  done
}
check "the seed's policy and pool apply verbatim (kubectl apply -f fixtures/seed-l2-lb-ipam.yaml)" \
  expect_applied "$FIX/seed-l2-lb-ipam.yaml" \
  '^ciliuml2announcementpolicy.cilium.io/policy created$' '^ciliumloadbalancerippool.cilium.io/lb-ip-pool created$'
check "applying them again changes nothing" expect_applied "$FIX/seed-l2-lb-ipam.yaml" \
  '^ciliuml2announcementpolicy.cilium.io/policy unchanged$' '^ciliumloadbalancerippool.cilium.io/lb-ip-pool unchanged$'

expect_json() { # <jq expr> <kubectl get args...>: the object, as JSON, satisfies the expression
  local expr=$1 out
  shift
  out=$(k8s_kubectl get "$@" -o json 2>&1) || { echo "kubectl get $* failed: $out"; return 1; }
  jq -e "$expr" <<<"$out" >/dev/null && return 0
  echo "expected $expr of $*, saw: $(jq -c '.spec // .' <<<"$out" 2>/dev/null || echo "$out")"
  return 1
}
check "the pool reads back: cidrs [192.168.20.0/24], disabled defaulted to false" \
  expect_json '.apiVersion == "cilium.io/v2alpha1" and .spec.cidrs == [{"cidr": "192.168.20.0/24"}]
    and .spec.disabled == false' ciliumloadbalancerippool lb-ip-pool
check "the policy reads back: control-plane nodes, interfaces [ens192], externalIPs and loadBalancerIPs" \
  expect_json '.spec.nodeSelector.matchExpressions == [{"key": "node-role.kubernetes.io/control-plane",
    "operator": "Exists"}] and .spec.interfaces == ["ens192"] and .spec.externalIPs == true
    and .spec.loadBalancerIPs == true' ciliuml2announcementpolicy policy

expect_table() { # <regex> <kubectl get args...>: the table output matches
  local re=$1 out
  shift
  out=$(k8s_kubectl get "$@" 2>&1) || { echo "kubectl get $* failed: $out"; return 1; }
  grep -Eq -- "$re" <<<"$out" && return 0
  echo "expected /$re/ in:"$'\n'"$out"
  return 1
}
check "Cilium's short names and columns: kubectl get ippools (NAME DISABLED CONFLICTING IPS AVAILABLE AGE)" \
  expect_table '^NAME +DISABLED +CONFLICTING +IPS AVAILABLE +AGE' ippools
check "kubectl get l2announcement lists the policy" expect_table '^policy ' l2announcement

# --- malformed objects are refused, naming the field -----------------------------------------
expect_rejected() { # <regex> <extra kubectl apply flags...>: the manifest on stdin is refused so
  local re=$1 out
  shift
  if out=$(k8s_kubectl apply "$@" -f - 2>&1); then
    echo "the API server accepted it: $out"
    return 1
  fi
  grep -Eq -- "$re" <<<"$out" && return 0
  echo "refused, but expected /$re/ in: $out"
  return 1
}
check "a pool block whose cidr is not a CIDR (192.168.20.0/33) is refused" \
  expect_rejected 'spec.blocks\[0\].cidr in body must be of type cidr: "192.168.20.0/33"' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: bad-cidr}
spec:
  blocks: [{cidr: 192.168.20.0/33}]
YAML
check "the deprecated cidrs form is checked the same way (cidr: not-a-cidr)" \
  expect_rejected 'spec.cidrs\[0\].cidr in body must be of type cidr' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: bad-cidrs}
spec:
  cidrs: [{cidr: not-a-cidr}]
YAML
check "a policy with loadBalancerIPs: \"yes\" and interfaces: ens192 (wrong types) is refused" \
  expect_rejected 'spec.interfaces in body must be of type array.*' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: bad-types}
spec:
  loadBalancerIPs: "yes"
  interfaces: ens192
YAML
check "...naming both fields" \
  expect_rejected 'spec.loadBalancerIPs in body must be of type boolean' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: bad-types}
spec:
  loadBalancerIPs: "yes"
  interfaces: ens192
YAML
check "a node selector expression without an operator is refused (required field)" \
  expect_rejected 'spec.nodeSelector.matchExpressions\[0\].operator: Required value' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: {name: bad-required}
spec:
  nodeSelector:
    matchExpressions: [{key: node-role.kubernetes.io/control-plane}]
YAML
check "a pool without a spec is refused (required field)" \
  expect_rejected 'spec: Required value' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: bad-nospec}
YAML
check "allowFirstLastIPs: maybe is refused (Yes or No)" \
  expect_rejected 'spec.allowFirstLastIPs: Unsupported value: "maybe": supported values: "Yes", "No"' <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: bad-enum}
spec:
  allowFirstLastIPs: maybe
  blocks: [{start: 192.168.30.1, stop: 192.168.30.9}]
YAML
check "an unknown field (spec.cidr) is refused with kubectl apply --validate=strict" \
  expect_rejected 'strict decoding error: unknown field "spec.cidr"' --validate=strict <<'YAML'
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: bad-unknown}
spec:
  cidr: 192.168.20.0/24
YAML
check "a CiliumNode whose pod CIDRs are not a list is refused" \
  expect_rejected 'spec.ipam.podCIDRs in body must be of type array' <<'YAML'
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: bad-node}
spec:
  ipam: {podCIDRs: 10.0.1.0/24}
YAML
expect_none_stored() {
  local out
  out=$(k8s_kubectl get ippools,l2announcement,ciliumnodes -o name 2>&1) || { echo "$out"; return 1; }
  [[ $(sort <<<"$out") == $'ciliuml2announcementpolicy.cilium.io/policy\nciliumloadbalancerippool.cilium.io/lb-ip-pool' ]] &&
    return 0
  echo "expected only the seed's policy and pool, saw: ${out//$'\n'/ }"
  return 1
}
check "none of the refused objects was stored" expect_none_stored

# A well-formed CiliumNode and a pool in the blocks form with a start/stop range are accepted.
good_objects() {
  k8s_kubectl apply --validate=strict -f - <<'YAML'
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: n1}
spec:
  addresses: [{type: InternalIP, ip: 192.168.10.100}, {type: CiliumInternalIP, ip: 10.0.1.1}]
  ipam: {podCIDRs: [10.0.1.0/24]}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: blocks-pool}
spec:
  blocks: [{cidr: "198.51.100.0/28"}, {start: 203.0.113.10, stop: 203.0.113.20}]
  serviceSelector: {matchLabels: {color: blue}}
  allowFirstLastIPs: "Yes"
  disabled: true
YAML
}
check "a CiliumNode (addresses, podCIDRs) and a pool with blocks, a range and a selector apply strictly" good_objects
check "kubectl get cn shows the node's CiliumInternalIP and InternalIP columns" \
  expect_table '^n1 +10\.0\.1\.1 +192\.168\.10\.100 ' cn

# --- RBAC ----------------------------------------------------------------------------------------
expect_can() { # <yes|no> <user> <can-i args...>
  local want=$1 user=$2 got
  shift 2
  got=$(k8s_kubectl auth can-i --as="$user" "$@" 2>/dev/null) || true
  [[ $got == "$want" ]] && return 0
  echo "kubectl auth can-i --as=$user $*: expected $want, got '${got}'"
  return 1
}
for v in "list services" "watch services" "watch endpointslices.discovery.k8s.io" "watch nodes" \
  "list ciliumnodes.cilium.io" "create ciliumnodes.cilium.io" "patch ciliumnodes.cilium.io" \
  "watch ciliuml2announcementpolicies.cilium.io" "list ciliumloadbalancerippools.cilium.io" \
  "get leases.coordination.k8s.io -n cilium" "create leases.coordination.k8s.io -n cilium" \
  "update leases.coordination.k8s.io -n cilium" "watch leases.coordination.k8s.io -n cilium" \
  "list leases.coordination.k8s.io -n cilium" "get configmaps/nodepath-uninstall -n cilium" \
  "delete configmaps/nodepath-uninstall -n cilium"; do
  check "the agent may: $v" expect_can yes "$AGENT" $v
done
for v in "delete services" "create secrets" "get secrets" "delete ciliumnodes.cilium.io" \
  "update ciliumnodes.cilium.io --subresource=status" \
  "patch ciliumloadbalancerippools.cilium.io" "create leases.coordination.k8s.io -n default" \
  "watch leases.coordination.k8s.io -n default" \
  "delete leases.coordination.k8s.io -n cilium" "get configmaps/nodepath-config -n cilium" \
  "delete configmaps/nodepath-uninstall -n default"; do
  check "the agent may not: $v" expect_can no "$AGENT" $v
done
for v in "list ciliumnodes.cilium.io" "watch ciliumnodes.cilium.io" "update ciliumnodes.cilium.io" \
  "get ciliumnodes.cilium.io" "update ciliumnodes.cilium.io --subresource=status" \
  "watch ciliumloadbalancerippools.cilium.io" "patch ciliumloadbalancerippools.cilium.io --subresource=status" \
  "watch services" "patch services --subresource=status" "create events -n default" \
  "create events.events.k8s.io -n default" "get leases.coordination.k8s.io -n cilium" \
  "create leases.coordination.k8s.io -n cilium"; do
  check "the operator may: $v" expect_can yes "$OPERATOR" $v
done
for v in "patch services" "delete services" "get secrets" "delete ciliumnodes.cilium.io" \
  "patch ciliumloadbalancerippools.cilium.io" "create ciliumloadbalancerippools.cilium.io" \
  "update leases.coordination.k8s.io -n default"; do
  check "the operator may not: $v" expect_can no "$OPERATOR" $v
done

# The API server enforces it, not only can-i: real requests under the accounts' names.
require "Service cilium/hubble-ui (the seed's, type LoadBalancer, port 8081)" k8s_apply <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: hubble-ui, namespace: cilium}
spec:
  type: LoadBalancer
  selector: {k8s-app: hubble-ui}
  ports: [{port: 8081, targetPort: 8081}]
YAML
# patch_as <user> <api path> <merge patch>: one PATCH request under the account's name, as the
# operator sends it (kubectl patch --subresource GETs the subresource first, a verb the operator
# has no need for); the admin certificate impersonates the account.
patch_as() {
  local out
  out=$(lab_node_exec "$K8S_NODE" curl -sS --max-time 5 --cacert "$K8S_DIR/ca.crt" --cert "$K8S_DIR/admin.crt" \
    --key "$K8S_DIR/admin.key" -H "Impersonate-User: $1" -H 'Content-Type: application/merge-patch+json' \
    -X PATCH --data "$3" -w '\nHTTP %{http_code}' "$K8S_SERVER$2" 2>&1) || { echo "curl failed: $out"; return 1; }
  [[ $out == *$'\nHTTP 200' ]] && return 0
  echo "PATCH $2 as $1: $out"
  return 1
}
expect_forbidden() { # <user> <kubectl args...>: refused with 403 Forbidden naming the account
  local user=$1 out
  shift
  if out=$(k8s_kubectl --as="$user" "$@" 2>&1); then
    echo "allowed: $out"
    return 1
  fi
  grep -q "is forbidden: User \"$user\" cannot" <<<"$out" && return 0
  echo "refused, but not as forbidden for $user: $out"
  return 1
}
check "the agent deleting Service cilium/hubble-ui is forbidden" \
  expect_forbidden "$AGENT" delete service -n cilium hubble-ui
check "the operator changing Service cilium/hubble-ui's spec is forbidden" \
  expect_forbidden "$OPERATOR" patch service -n cilium hubble-ui --type merge -p '{"spec":{"ports":[{"port":81}]}}'
check "the agent writing a Secret is forbidden" \
  expect_forbidden "$AGENT" create secret generic -n cilium np-test --from-literal=k=v
expect_patch_forbidden() { # <user> <path> <patch>: the PATCH is answered 403
  local out
  if out=$(patch_as "$@"); then
    echo "the PATCH of $2 as $1 was allowed"
    return 1
  fi
  [[ $out == *$'\nHTTP 403' ]] && return 0
  echo "expected 403 Forbidden: $out"
  return 1
}
check "the agent writing the pool's status is forbidden (403)" expect_patch_forbidden "$AGENT" \
  /apis/cilium.io/v2alpha1/ciliumloadbalancerippools/lb-ip-pool/status '{"status":{"conditions":[]}}'
pool_status='{"status":{"conditions":[{"type":"cilium.io/PoolConflict","status":"False","reason":"NoConflict",
"message":"","lastTransitionTime":"2026-01-01T00:00:00Z"},{"type":"cilium.io/IPsAvailable","status":"True",
"reason":"IPsAvailable","message":"254","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}'
check "the operator writes the pool's status conditions (PATCH .../ciliumloadbalancerippools/lb-ip-pool/status)" \
  patch_as "$OPERATOR" /apis/cilium.io/v2alpha1/ciliumloadbalancerippools/lb-ip-pool/status "$pool_status"
check "kubectl get ippools shows them: DISABLED false, CONFLICTING False, IPS AVAILABLE 254" \
  expect_table '^lb-ip-pool +false +False +254 ' ippools
check "the operator writes the Service's status.loadBalancer.ingress (services/status)" \
  patch_as "$OPERATOR" /api/v1/namespaces/cilium/services/hubble-ui/status \
  '{"status":{"loadBalancer":{"ingress":[{"ip":"192.168.20.1"}]}}}'
check "kubectl get svc shows EXTERNAL-IP 192.168.20.1" \
  expect_table '^hubble-ui +LoadBalancer +[0-9.]+ +192\.168\.20\.1 ' service -n cilium hubble-ui

e2e_finish
