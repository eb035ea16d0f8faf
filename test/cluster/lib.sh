# shellcheck shell=bash
# The real-node tier (issue 11): the e2e lab, the control plane in n1 and kubelet + containerd on
# n1 and n2 (scripts/lib/cluster.sh); the agents run on the nodes the way the e2e lab runs them
# and give the nodes their CNI.
CLUSTER_TEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../e2e/lib.sh
source "$CLUSTER_TEST_DIR/../e2e/lib.sh"
# shellcheck source=SCRIPTDIR/../../scripts/lib/cluster.sh
source "$CLUSTER_TEST_DIR/../../scripts/lib/cluster.sh"

# cluster_lab_up: lab, control plane, nodes n1 and n2, an agent on each (watching the API server).
cluster_lab_up() {
  E2E_LAB_MADE=1
  require "lab topology up" lab_up
  require "control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and kubelet + containerd on n1, n2" cluster_up n1 n2
  local node
  for node in n1 n2; do
    require "agent on $node started with --k8s-kubeconfig-path" lab_agent_start "$node" \
      --k8s-kubeconfig-path "$NP_LAB_DIR/k8s/admin.kubeconfig"
  done
  for node in n1 n2; do
    require "agent on $node ready" lab_agent_wait "$node" 30
  done
}

# expect_node_ready <node>
expect_node_ready() {
  cluster_node_ready "$1" && return 0
  echo "expected Node $1 Ready, saw: $(cluster_kubectl get node "$1" -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.message}){"\n"}{end}' 2>&1 | grep -E '^Ready=')"
  return 1
}

# cluster_pods <selector>: "name node phase ip" of the pods, one a line.
cluster_pods() {
  cluster_kubectl get pods -l "$1" -o json | jq -r '.items[] | "\(.metadata.name) \(.spec.nodeName // "-") \(.status.phase) \(.status.podIP // "-")"'
}

# expect_pods_running <selector> <n>
expect_pods_running() {
  local got
  got=$(cluster_pods "$1") || { echo "kubectl get pods failed"; return 1; }
  if (($(awk '$3 == "Running" && $4 != "-"' <<<"$got" | wc -l) == $2)); then
    return 0
  fi
  echo "expected $2 pods Running with an address, saw:"
  printf '%s\n' "${got:-none}"
  return 1
}

# cluster_pod_netns <node> <ip>: the pod's netns path on the node (the agent's endpoint record).
cluster_pod_netns() {
  agentctl_json "$1" endpoint list | jq -r --arg ip "$2" '.endpoints[] | select(.ipv4 == $ip) | .netns'
}

# cluster_pod_exec <node> <netns path> cmd...: cmd in the pod's network namespace on the node.
cluster_pod_exec() {
  local node=$1 ns=$2
  shift 2
  lab_node_exec "$node" nsenter --net="$ns" -- "$@"
}

# cluster_rss_mib: the resident memory of every process of the run (the lab's cgroup tree, which
# holds the control plane, kubelets, containerd, shims, agents and the pods' containers), MiB.
cluster_rss_mib() {
  local f pid kb=0 v
  while IFS= read -r -d '' f; do
    while read -r pid; do
      v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
      kb=$((kb + ${v:-0}))
    done <"$f"
  done < <(find "$LAB_CGROOT" -name cgroup.procs -print0 2>/dev/null)
  echo $((kb / 1024))
}

# cluster_apply: kubectl apply -f - (the manifest on stdin).
cluster_apply() { cluster_kubectl apply -f - >/dev/null; }

# cluster_echo_deployment: the echo Deployment default/echo (label app=echo): two pods of the
# local echo image, one per node (anti-affinity), each answering with its node's name as its id
# (`nptraffic serve --id <node>`), so a test can tell which node's backend took a connection.
cluster_echo_deployment() {
  cluster_apply <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: echo}}, topologyKey: kubernetes.io/hostname}
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: $CLUSTER_ECHO_IMAGE
        imagePullPolicy: Never
        command: [/nptraffic, serve, --id, \$(NODE_NAME), --tcp, "8080", --udp, "8080"]
        env:
        - name: NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
        ports: [{containerPort: 8080}]
YAML
}

# cluster_lan_mac <node>: the MAC of the node's LAN device ens192.
cluster_lan_mac() { lab_node_exec "$1" ip -j link show ens192 | jq -r '.[0].address'; }

# cluster_arp_answers <ip> [count]: broadcast ARP requests for ip from the LAN client, one a
# second, until count (3) replies came or count seconds passed (-b: every answering node is
# heard, never only a first one); one MAC a reply, lower case.
cluster_arp_answers() {
  local n=${2:-3}
  lab_client_exec arping -b -I eth0 -c "$n" -w "$n" "$1" 2>/dev/null |
    sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' | tr 'A-F' 'a-f'
}

# expect_only_arp_answerer <ip> <node>: 3 replies to 3 requests, every one from the node's ens192.
expect_only_arp_answerer() {
  local got want m1 m2
  want=$(cluster_lan_mac "$2")
  got=$(cluster_arp_answers "$1")
  if [[ -n $got && $(wc -l <<<"$got") -eq 3 && $(sort -u <<<"$got") == "${want,,}" ]]; then return 0; fi
  m1=$(cluster_lan_mac n1) m2=$(cluster_lan_mac n2)
  echo "expected 3 ARP answers for $1 from $2 ($want); n1 is $m1, n2 $m2; saw: [${got//$'\n'/ }]"
  return 1
}

# expect_dsr_replies <vip> <port> <capture of n1> <capture of n2>: after `traffic ... connect
# <vip>:<port> --verbose` to backends whose id is their node's name (cluster_echo_deployment),
# every connection's replies (<vip>:<port> -> the client's port) are in the capture of its
# backend's node and none in the other node's.
expect_dsr_replies() {
  local vip=$1 port=$2 id peer cport n=0 bad=0 own other filter
  declare -A cap=([n1]=$3 [n2]=$4)
  while read -r id peer _; do
    cport=${peer##*:}
    own=${cap[$id]} other=${cap[n1]}
    [[ $id == n1 ]] && other=${cap[n2]}
    filter="src host $vip and src port $port and dst host 192.168.10.200 and dst port $cport"
    n=$((n + 1))
    if (($(capture_count "$own" "$filter") == 0)); then
      echo "connection from port $cport (backend on $id): no reply from $vip:$port in what $id sent"
      bad=$((bad + 1))
    fi
    if (($(capture_count "$other" "$filter") != 0)); then
      echo "connection from port $cport (backend on $id): replies from $vip:$port left the other node too"
      bad=$((bad + 1))
    fi
  done < <(grep -E '^n[12] [0-9.]+:[0-9]+ ' "$E2E_OUT")
  ((n > 0 && bad == 0)) && return 0
  ((n > 0)) || echo "no replies of backends n1/n2 in the connect output: $(head -n 5 "$E2E_OUT" | tr '\n' ';')"
  return 1
}
