#!/usr/bin/env bash
# ClusterPodsThroughNodepathCni: real kubelets (containerd + runc) on the lab's nodes n1 and n2,
# nodepath-agent on each as the e2e lab runs it: the agents' conflist makes the Nodes Ready; a
# Deployment of the local echo image (imagePullPolicy: Never) gets one pod per node, Running with
# an address from its node's pod CIDR through nodepath-cni; the pod on n1 reaches the pod on n2
# (and back) and the `kubernetes` ClusterIP; deleting the Deployment frees the endpoints.
# Prints the bring-up time and the RSS of everything (measure: lines).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init ClusterPodsThroughNodepathCni npc
host_sysctls() { cat /proc/sys/vm/overcommit_memory /proc/sys/kernel/panic /proc/sys/kernel/panic_on_oops | tr '\n' ' '; }
SYSCTLS=$(host_sysctls)
T0=$SECONDS
cluster_lab_up

check "Node n1 goes Ready once its agent wrote the CNI config" eventually 60 expect_node_ready n1
check "Node n2 goes Ready" eventually 60 expect_node_ready n2
conflist_on() { lab_node_exec "$1" cat /etc/cni/net.d/05-nodepath.conflist | jq -e '.plugins[0].type == "nodepath-cni"' >/dev/null; }
check "the node's /etc/cni/net.d (its own mount namespace) holds the agent's conflist" conflist_on n1
READY_S=$((SECONDS - T0))
node_cgroup() { # the node's /run/nodepath/cgroupv2 is its lab cgroup, holding kubelet's kubepods
  local t
  t=$(lab_node_exec "$1" stat -f -c %T /run/nodepath/cgroupv2) || return 1
  [[ $t == cgroup2fs ]] && lab_node_exec "$1" test -d /run/nodepath/cgroupv2/kubepods && return 0
  echo "expected cgroup2fs with kubepods/ at /run/nodepath/cgroupv2 on $1, saw '$t': $(lab_node_exec "$1" ls /run/nodepath/cgroupv2 | tr '\n' ' ')"
  return 1
}
check "n1's /run/nodepath/cgroupv2 is the node's own cgroup2 cgroup (kubepods below it)" node_cgroup n1
same_sysctls() { [[ $(host_sysctls) == "$SYSCTLS" ]] && return 0; echo "the machine's vm.overcommit_memory kernel.panic kernel.panic_on_oops were '$SYSCTLS', now '$(host_sysctls)'"; return 1; }
check "the machine's sysctls kubelet sets are untouched (the nodes see files over them: $SYSCTLS)" same_sysctls

require "the echo Deployment applied (one pod per node, answering with its node's name)" cluster_echo_deployment
T1=$SECONDS
check "the echo Deployment's two pods are Running" eventually 90 expect_pods_running app=echo 2
PODS_S=$((SECONDS - T1))
PODS=$(cluster_pods app=echo)
pod_ip_on() { awk -v n="$1" '$2 == n { print $4; exit }' <<<"$PODS"; }
IP1=$(pod_ip_on n1)
IP2=$(pod_ip_on n2)
in_cidr() { # <ip> <prefix.>
  [[ $1 == "$2"* ]] && return 0
  echo "expected an address in $2""0/24, saw '${1:-none}' (pods: $PODS)"
  return 1
}
check "the pod on n1 has an address of n1's pod CIDR 10.0.1.0/24 ($IP1)" in_cidr "$IP1" 10.0.1.
check "the pod on n2 has an address of n2's pod CIDR 10.0.2.0/24 ($IP2)" in_cidr "$IP2" 10.0.2.
NS1=$(cluster_pod_netns n1 "$IP1")
NS2=$(cluster_pod_netns n2 "$IP2")
has_ns() { [[ $1 == /* ]] && return 0; echo "the agent on $2 has no endpoint for $3 (nodepath-cni did not make it): $(agentctl_json "$2" endpoint list)"; return 1; }
check "n1's agent made the pod's endpoint through nodepath-cni (netns $NS1)" has_ns "$NS1" n1 "$IP1"
check "n2's agent made the pod's endpoint ($NS2)" has_ns "$NS2" n2 "$IP2"

if [[ $NS1 == /* && $NS2 == /* ]]; then
  traffic cluster_pod_exec n1 "$NS1" -- connect "$IP2:8080" --count 10
  check "the pod on n1 reaches the pod on n2 ($IP2:8080) over TCP (10/10)" expect_ok 10
  check "...every reply from the echo pod on n2 (its id is its node's name)" expect_id n2 10
  check "...and the pod on n2 sees the n1 pod's own address" expect_only_peer "$IP1"
  traffic cluster_pod_exec n2 "$NS2" -- connect "$IP1:8080" --count 10
  check "the pod on n2 reaches the pod on n1 ($IP1:8080) over TCP (10/10)" expect_ok 10
  check "...every reply from the echo pod on n1" expect_id n1 10
  traffic cluster_pod_exec n1 "$NS1" -- connect "$IP2:8080" --udp --count 5
  check "the pod on n1 reaches the pod on n2 over UDP (5/5)" expect_ok 5
  traffic cluster_pod_exec n1 "$NS1" -- connect 10.43.0.1:443 --connect-only --count 5
  check "the pod on n1 reaches the kubernetes ClusterIP 10.43.0.1:443 (5/5 connects)" expect_ok 5
  traffic cluster_pod_exec n2 "$NS2" -- connect 10.43.0.1:443 --connect-only --count 5
  check "the pod on n2 reaches the kubernetes ClusterIP (5/5 connects)" expect_ok 5
fi

exec_in_pod() { # kubectl exec (API server -> the kubelet at the node's InternalIP) runs nptraffic in the pod
  local pod out
  pod=$(awk '$2 == "n2" { print $1; exit }' <<<"$PODS")
  out=$(cluster_kubectl exec "$pod" -- /nptraffic connect "$IP1:8080" --count 3 2>&1) || { echo "kubectl exec $pod failed: $out"; return 1; }
  grep -qx 'ok=3 fail=0' <<<"$out" && return 0
  echo "expected ok=3 fail=0 from nptraffic in $pod, saw: $out"
  return 1
}
check "kubectl exec into the pod on n2 runs its nptraffic, which reaches the pod on n1 (3/3)" exec_in_pod

RSS=$(cluster_rss_mib)
echo "measure: bring-up to both Nodes Ready ${READY_S} s (cluster_up ${CLUSTER_UP_SECONDS:-?} s), pods Running ${PODS_S} s after the apply; RSS of everything ${RSS} MiB"
check "everything fits in 1.5 GiB of RSS (${RSS} MiB)" eval '((RSS < 1536))'

cluster_kubectl delete deployment echo --wait=false >/dev/null
no_endpoints() {
  local n
  for n in n1 n2; do
    if [[ $(agentctl_json "$n" endpoint list | jq '.endpoints | length') != 0 ]]; then
      echo "$n still has endpoints: $(agentctl_json "$n" endpoint list | jq -c '[.endpoints[].ipv4]')"
      return 1
    fi
  done
}
check "deleting the Deployment makes kubelet DEL the pods: no endpoints remain on the agents" eventually 60 no_endpoints

e2e_finish
