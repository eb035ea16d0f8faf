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
