#!/usr/bin/env bash
# K8sCiliumNodeClusterPool: cluster-pool IPAM through CiliumNodes against a real kube-apiserver.
#  - agents started with --ipam=cluster-pool create their node's CiliumNode (InternalIP = node
#    IP) and, until the operator assigns a CIDR, refuse pods saying so (agentctl status);
#  - nodepath-operator, once it leads, gives each CiliumNode a distinct /24 of 10.0.0.0/16
#    (its cluster-pool IPAM); each agent's IPAM takes its own, and each
#    node's direct route to the peer follows the peer's CIDR (ip route in the node's netns);
#  - a restarted operator keeps every node's CIDR, and serves a new CiliumNode one nobody holds;
#  - an exhausted pool is reported on the CiliumNode (status.ipam.operator-status.error), and
#    deleting a CiliumNode frees its CIDR, which the waiting node then gets.
#
# Lab: agents on n1 and n2; kube-apiserver + etcd in n1; the operator in n1, admin kubeconfig.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_ORIG=${NP_BUILD_DIR:-$E2E_REPO/build}
e2e_init K8sCiliumNodeClusterPool npk8s_cn
cp -p "$BUILD_ORIG/operator/nodepath-operator" "$E2E_TMP/nodepath-operator" || {
  fail "$E2E_NAME" "nodepath-operator is missing under $BUILD_ORIG/operator (build first)"
  exit 1
}
POOL_BIN=$E2E_TMP/nodepath-operator
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "kube-apiserver and etcd up in n1 (192.168.10.100:6443)" k8s_up
KCFG=$NP_LAB_DIR/k8s/admin.kubeconfig
for n in n1 n2; do
  require "agent on $n started with --ipam=cluster-pool" lab_agent_start "$n" --k8s-kubeconfig-path "$KCFG" \
    --ipam cluster-pool
done
# Not `lab_agent_wait`: until the operator runs, a cluster-pool agent is rightly Degraded.
agent_answers() { # <node>: agentctl status answers (whatever the state)
  local out
  out=$(agentctl_json "$1" status 2>/dev/null) || true
  jq -e '.state' <<<"$out" >/dev/null 2>&1
}
for n in n1 n2; do require "agent on $n answers agentctl status" eventually 30 agent_answers "$n"; done

cn_field() { k8s_kubectl get ciliumnode "$1" -o jsonpath="$2" 2>/dev/null; }
cidr_of() { cn_field "$1" '{.spec.ipam.podCIDRs[0]}'; }
expect_internal_ip() { # <node> <ip>
  local got
  got=$(cn_field "$1" '{.spec.addresses[?(@.type=="InternalIP")].ip}')
  [[ $got == "$2" ]] && return 0
  echo "CiliumNode $1's InternalIP is '$got', not $2"
  return 1
}
expect_problem() { # <node> <text>: agentctl status lists a problem containing text
  local out
  out=$(agentctl_json "$1" status 2>/dev/null) || true
  out=$(jq -r '.problems[]?' <<<"$out") || return 1
  grep -qF -- "$2" <<<"$out" && return 0
  echo "expected a problem with '$2' on $1, saw: ${out//$'\n'/; }"
  return 1
}
expect_cidr() { # <node> <regex>
  local got
  got=$(cidr_of "$1")
  [[ $got =~ $2 ]] && return 0
  echo "CiliumNode $1 has pod CIDR '$got', not /$2/"
  return 1
}
expect_ipam() { # <node> <cidr>: the agent's IPAM serves that CIDR
  local got
  got=$(agentctl_json "$1" status 2>/dev/null) || true
  got=$(jq -r '.ipam.pod_cidr // empty' <<<"$got" 2>/dev/null)
  [[ $got == "$2" ]] && return 0
  echo "$1's IPAM has pod CIDR '$got', not $2"
  return 1
}
expect_route() { # <node> <cidr> <via>: the direct route, of our protocol
  local got
  got=$(lab_node_exec "$1" ip -4 route show "$2" proto 202 2>/dev/null)
  [[ $got == *"via $3 dev ens192"* ]] && return 0
  echo "on $1: expected route $2 via $3 dev ens192 proto 202, saw '$got'; all ours: $(lab_node_exec "$1" ip -4 route show proto 202 | tr '\n' ';')"
  return 1
}
expect_no_route_via() { # <node> <cidr> <via>
  local got
  got=$(lab_node_exec "$1" ip -4 route show "$2" proto 202 2>/dev/null)
  [[ $got != *"via $3 "* ]] && return 0
  echo "on $1: route $2 still goes via $3: $got"
  return 1
}
OP_RUN=0
operator() { # <pool cidr>: nodepath-operator (short leases, so a restart leads at once), /24s
  OP_RUN=$((OP_RUN + 1))
  lab_bg operator "$E2E_TMP/operator-$OP_RUN.log" lab_node_exec n1 "$POOL_BIN" --k8s-kubeconfig-path="$KCFG" \
    --leader-election-lease-duration=3s --leader-election-renew-deadline=2s --leader-election-retry-period=500ms \
    --cluster-pool-ipv4-cidr="$1" --cluster-pool-ipv4-mask-size=24
}
leads() { grep -qx leader "$E2E_TMP/operator-$OP_RUN.log" 2>/dev/null; }
peer_node() { # <name> <ip>: a CiliumNode as another node's agent writes it
  k8s_apply <<YAML
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: $1}
spec: {addresses: [{type: InternalIP, ip: $2}]}
YAML
}

check "n1's CiliumNode was created with InternalIP 192.168.10.100" eventually 20 expect_internal_ip n1 192.168.10.100
check "n2's CiliumNode was created with InternalIP 192.168.10.101" eventually 20 expect_internal_ip n2 192.168.10.101
check "without an operator n1 refuses pods, saying it waits for a pod CIDR" eventually 10 \
  expect_problem n1 "waiting for the operator to assign a pod CIDR to CiliumNode n1"
node_map_has() { # <node> <ip> <flags>: the node's np_nodes4_v1 holds ip (network order) with these flags
  local key map=$NP_LAB_DIR/bpffs/$1/nodepath/np_nodes4_v1
  key=$(awk -F. '{printf "[\"0x%02x\",\"0x%02x\",\"0x%02x\",\"0x%02x\"]", $1, $2, $3, $4}' <<<"$2")
  bpftool -j map dump pinned "$map" 2>/dev/null |
    jq -e --argjson k "$key" --argjson f "$3" 'any(.[]; .key == $k and .formatted.value.flags == $f)' >/dev/null &&
    return 0
  echo "expected $1's node map to hold $2 with flags $3, saw: $(bpftool -j map dump pinned "$map" 2>&1 | jq -c '[.[].formatted]' 2>&1)"
  return 1
}
# Not routed to before they have a pod CIDR, but nodes all the same (host-to-node traffic,
# masquerade exemption, NodePort on node addresses).
check "before any pod CIDR, n1's node map holds n2's 192.168.10.101" eventually 10 node_map_has n1 192.168.10.101 0
check "...and n1's own 192.168.10.100, flagged local" eventually 10 node_map_has n1 192.168.10.100 1

require "the operator (cluster-pool IPAM, 10.0.0.0/16 in /24s) started" operator 10.0.0.0/16
require "...and leads (Lease cilium/cilium-operator-resource-lock)" eventually 20 leads
re24='^10\.0\.[0-9]+\.0/24$'
check "n1's CiliumNode gets a /24 of 10.0.0.0/16" eventually 20 expect_cidr n1 "$re24"
check "n2's CiliumNode gets a /24 of 10.0.0.0/16" eventually 20 expect_cidr n2 "$re24"
c1=$(cidr_of n1) c2=$(cidr_of n2)
check "...distinct ones ($c1, $c2)" test "$c1" != "$c2"
check "n1's IPAM takes $c1" eventually 20 expect_ipam n1 "$c1"
check "n2's IPAM takes $c2" eventually 20 expect_ipam n2 "$c2"
check "n1 routes n2's $c2 via 192.168.10.101" eventually 20 expect_route n1 "$c2" 192.168.10.101
check "n2 routes n1's $c1 via 192.168.10.100" eventually 20 expect_route n2 "$c1" 192.168.10.100

# n0 (sorting before n1) joins while the operator runs: a restarted operator that handed out
# CIDRs afresh in name order would move every node.
require "CiliumNode n0 (192.168.10.110) created" peer_node n0 192.168.10.110
check "n0 gets a third /24" eventually 20 expect_cidr n0 "$re24"
c0=$(cidr_of n0)
check "...distinct from n1's and n2's ($c0)" eval '[[ $c0 != "$c1" && $c0 != "$c2" ]]'
# Restart with a pool of four /24s (10.0.0.0/22, which holds the first three): all keep theirs.
require "the operator stopped" lab_kill operator
require "the operator restarted with --cluster-pool-ipv4-cidr=10.0.0.0/22" operator 10.0.0.0/22
require "...and leads again" eventually 20 leads
require "CiliumNode n3 (192.168.10.103) created" peer_node n3 192.168.10.103
check "the restarted operator serves n3" eventually 20 expect_cidr n3 '^10\.0\.[0-3]\.0/24$'
c3=$(cidr_of n3)
for n in n0 n1 n2; do
  v=c${n#n}
  check "$n kept ${!v} across the restart" expect_cidr "$n" "^${!v//./\\.}\$"
done
check "n3's $c3 is none of theirs" eval '[[ $c3 != "$c0" && $c3 != "$c1" && $c3 != "$c2" ]]'
check "n1 routes n3's $c3 via 192.168.10.103" eventually 20 expect_route n1 "$c3" 192.168.10.103
require "CiliumNode n5 (192.168.10.105) created" peer_node n5 192.168.10.105
expect_exhausted() {
  local e
  e=$(cn_field n5 '{.status.ipam.operator-status.error}')
  [[ $e == *"10.0.0.0/22 is exhausted"* && -z $(cidr_of n5) ]] && return 0
  echo "n5: pod CIDR '$(cidr_of n5)', operator error '$e'"
  return 1
}
check "the exhausted pool shows on CiliumNode n5 (status.ipam.operator-status.error), no CIDR" eventually 20 expect_exhausted
require "CiliumNode n3 deleted" k8s_kubectl delete ciliumnode n3
check "n1 no longer routes $c3 to the deleted n3" eventually 20 expect_no_route_via n1 "$c3" 192.168.10.103
check "the freed $c3 goes to n5" eventually 20 expect_cidr n5 "^${c3//./\\.}\$"
check "...and n5's error is cleared" eventually 20 eval '[[ -z $(cn_field n5 "{.status.ipam.operator-status.error}") ]]'
check "n2 routes n5's $c3 via 192.168.10.105" eventually 20 expect_route n2 "$c3" 192.168.10.105
require "the operator stopped" lab_kill operator

e2e_finish
