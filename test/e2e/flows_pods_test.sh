#!/usr/bin/env bash
# FlowsNamePods: flows to and from a pod made through nodepath-cni carry the pod's name and
# namespace (from the agent's endpoint records): `agentctl flows` shows default/web-1 on both sides
# of the connection and names the HostPort service it came in through; --to-pod / --from-pod /
# --pod select exactly those flows (and a pod that does not exist selects none); the real hubble
# CLI's `observe --from-pod` / `--to-pod` gives the same flows, and the pod carries its namespace
# label.
#
# Lab: agents on n1 and n2; pod n2-c1 (CNI, default/web-1) with hostPort 9080 -> 8080/TCP.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$E2E_REPO/scripts/lib/gotools.sh"

e2e_init FlowsNamePods npe_fpd
HUBBLE=$(np_go_tool hubble) || { fail FlowsNamePods "no hubble CLI (scripts/setup.sh builds it; needs go)"; exit 1; }
e2e_lab_up n1 n2
SOCK=$NP_LAB_DIR/n2/run/agent.sock
HSOCK=$NP_LAB_DIR/n2/run/hubble.sock
CNIBIN=$NP_LAB_DIR/n2/cni/bin
NODE2=192.168.10.101
cni() { # <command> <container> <ns suffix>: the plugin on n2 as a runtime runs it
  printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s","runtimeConfig":{"portMappings":[{"hostPort":9080,"containerPort":8080,"protocol":"tcp"}]}}' "$SOCK" |
    lab_node_exec n2 env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
      CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$3" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN" \
      CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-${2#c}" "$CNIBIN/nodepath-cni"
}
endpoint_ip() { agentctl_json n2 endpoint list | jq -r --arg c "$1" '.endpoints[] | select(.container_id == $c) | .ipv4'; }

lab_netns_create n2-c1
require "ADD pod default/web-1 on n2 with hostPort 9080 -> 8080/TCP" cni ADD c1 n2-c1
IP1=$(endpoint_ip c1)
require "echo server in n2-c1 ($IP1)" e2e_serve n2/c1
traffic lab_client_exec -- connect "$NODE2:9080" --count 3
check "the lab client reaches the pod at $NODE2:9080 (3/3)" expect_ok 3

# flows_n2 <agentctl flows args...>: the table on n2 (last 500) in $FLOWS.
flows_n2() { FLOWS=$(lab_agentctl n2 flows --last 500 "$@" 2>&1) || { echo "agentctl flows $* failed: $FLOWS"; return 1; }; }
expect_line() { # <regex> [agentctl flows args...]
  local re=$1
  shift
  flows_n2 "$@" || return 1
  grep -Eq -- "$re" <<<"$FLOWS" && return 0
  echo "expected a line matching /$re/ in agentctl flows $*, saw:"
  head -n 20 <<<"$FLOWS" | e2e__indent
  return 1
}
check "agentctl flows: the client's SYN goes to default/web-1:8080, named after its HostPort service" \
  eventually 5 expect_line \
  '^.*: 192\.168\.10\.200:[0-9]+ -> default/web-1:8080 \(svc default/hostport/web-1/tcp/9080\) .* FORWARDED \(TCP Flags: SYN\)$'
check "...and the pod's SYN-ACK comes from default/web-1:8080" \
  expect_line '^.*: default/web-1:8080 .*-> 192\.168\.10\.200:[0-9]+ .*FORWARDED \(TCP Flags: SYN, ACK\)$'

# only_pod <side regex> <agentctl flows args...>: every line has the pod where the filter says,
# and there is at least one line.
only_pod() {
  local re=$1 n bad
  shift
  flows_n2 "$@" || return 1
  n=$(grep -c ': ' <<<"$FLOWS" || true)
  bad=$(grep ': ' <<<"$FLOWS" | grep -Ev -- "$re" || true)
  if ((n > 0)) && [[ -z $bad ]]; then
    return 0
  fi
  echo "agentctl flows $*: $n lines, expected all to match /$re/; the others:"
  head -n 10 <<<"${bad:-$FLOWS}" | e2e__indent
  return 1
}
check "agentctl flows --to-pod default/web-1: only flows to the pod" only_pod ': .* -> default/web-1:8080 ' --to-pod default/web-1
check "agentctl flows --from-pod default/web-1: only flows from the pod" only_pod ': default/web-1:8080 .*-> ' --from-pod default/web-1
check "agentctl flows --pod default/web: either side, by name prefix" only_pod 'default/web-1:8080' --pod default/web
no_flows() {
  flows_n2 "$@" || return 1
  [[ -z $FLOWS ]] && return 0
  echo "agentctl flows $* listed flows:"; head -n 5 <<<"$FLOWS" | e2e__indent
  return 1
}
check "agentctl flows --from-pod kube-system/web-1 (another namespace): none" no_flows --from-pod kube-system/web-1

# The flows as (source, source pod, destination, destination pod, dport) tuples, sorted, from JSON.
pod_tuples() {
  jq -r '.flow | [.IP.source, (.source.namespace // "") + "/" + (.source.pod_name // ""), .IP.destination,
    (.destination.namespace // "") + "/" + (.destination.pod_name // ""), ((.l4.TCP.destination_port // 0)|tostring)] | join(" ")' | sort
}
same_as_hubble() { # <agentctl flag> <hubble flag>
  local ours theirs
  ours=$(lab_agentctl n2 flows --last 500 "$1" default/web-1 -o json | pod_tuples) || { echo "agentctl flows -o json failed"; return 1; }
  theirs=$(lab_node_exec n2 "$HUBBLE" observe --server "unix://$HSOCK" --last 500 "$2" default/web-1 -o json 2>&1 | pod_tuples) ||
    { echo "hubble observe failed"; return 1; }
  if [[ -n $ours && $ours == "$theirs" ]] && grep -q 'default/web-1' <<<"$theirs"; then
    return 0
  fi
  echo "agentctl flows $1 and hubble observe $2 differ (or are empty):"
  diff <(echo "$ours") <(echo "$theirs") | head -n 20 | e2e__indent
  return 1
}
check "real hubble observe --from-pod default/web-1 gives the same flows as agentctl flows --from-pod" \
  same_as_hubble --from-pod --from-pod
check "real hubble observe --to-pod default/web-1 gives the same flows as agentctl flows --to-pod" \
  same_as_hubble --to-pod --to-pod
hubble_labels() {
  local out
  out=$(lab_node_exec n2 "$HUBBLE" observe --server "unix://$HSOCK" --last 50 --to-pod default/web-1 -o json 2>&1) ||
    { echo "hubble observe failed: $out"; return 1; }
  jq -e -s 'length > 0 and all(.[]; .flow.destination.labels | index("k8s:io.kubernetes.pod.namespace=default"))' <<<"$out" >/dev/null &&
    return 0
  echo "expected the namespace label on every destination, saw:"; head -c 2000 <<<"$out" | e2e__indent
  return 1
}
check "...and the pod carries the label k8s:io.kubernetes.pod.namespace=default" hubble_labels

e2e_finish
