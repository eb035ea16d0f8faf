# shellcheck shell=bash
# The k8s tier (DESIGN.md §7): the e2e lab plus a real kube-apiserver + etcd in node n1
# (scripts/lib/k8s.sh), agents connected to it with the admin kubeconfig. There is no
# controller-manager: tests write Services and EndpointSlices themselves, as it would.
K8S_TEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/../e2e/lib.sh
source "$K8S_TEST_DIR/../e2e/lib.sh"
# shellcheck source=SCRIPTDIR/../../scripts/lib/k8s.sh
source "$K8S_TEST_DIR/../../scripts/lib/k8s.sh"

# k8s_lab_up <node>...: the lab, the API server, echo servers in every node's p1, and an agent on
# each node given, watching the API server.
k8s_lab_up() {
  E2E_LAB_MADE=1
  require "lab topology up" lab_up
  require "kube-apiserver and etcd up in n1 (192.168.10.100:6443)" k8s_up
  local node
  for node in "$@"; do
    require "agent on $node started with --k8s-kubeconfig-path" lab_agent_start "$node" \
      --k8s-kubeconfig-path "$NP_LAB_DIR/k8s/admin.kubeconfig"
  done
  for node in "$@"; do
    require "agent on $node ready" lab_agent_wait "$node" 30
  done
}

# k8s_apply: kubectl apply -f - (the manifest on stdin).
k8s_apply() { k8s_kubectl apply -f - >/dev/null; }

# k8s_source_detail <node>: the kubernetes source line of `agentctl status`.
k8s_source_detail() {
  agentctl_json "$1" status | jq -r '.sources[]? | select(.name == "kubernetes") | .detail // empty'
}

# expect_k8s_synced <node>: the agent's kubernetes source has synced.
expect_k8s_synced() {
  local out
  out=$(agentctl_json "$1" status) || { echo "agentctl status failed on $1"; return 1; }
  if jq -e '.sources[]? | select(.name == "kubernetes") | .synced == true' <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected the kubernetes source of $1 to be synced, saw: $(jq -c '.sources' <<<"$out")"
  return 1
}

# k8s_count <node> <kind> <field>: a counter of the source line, e.g. services lists.
k8s_count() {
  k8s_source_detail "$1" | sed -n "s/.*$2 [a-z ]*synced (lists \([0-9]*\), watches \([0-9]*\), 410s \([0-9]*\).*/\1 \2 \3/p" |
    awk -v f="$3" '{ print (f == "lists" ? $1 : f == "watches" ? $2 : $3) }'
}

# expect_k8s_count_above <node> <kind> <field> <n>
expect_k8s_count_above() {
  local got
  got=$(k8s_count "$1" "$2" "$3")
  if [[ -n $got ]] && ((got > $4)); then
    return 0
  fi
  echo "expected $2 $3 on $1 above $4, saw '${got:-?}': $(k8s_source_detail "$1")"
  return 1
}

# expect_frontends_include <node> <frontend>...: the kernel's service map holds at least these.
expect_frontends_include() {
  local node=$1 got f missing=()
  shift
  got=$(lb_frontends "$node") || { echo "agentctl bpf lb list failed on $node"; return 1; }
  for f in "$@"; do
    grep -qxF -- "$f" <<<"$got" || missing+=("$f")
  done
  ((${#missing[@]} == 0)) && return 0
  echo "expected the service map of $node to hold ${missing[*]}, saw [${got//$'\n'/ }]"
  return 1
}

# web_slice_yaml <endpoint json>...: the EndpointSlice default/web-1 of service default/web (port
# http, 8080/TCP) with these endpoints, as YAML for k8s_apply.
web_slice_yaml() {
  local eps
  eps=$(IFS=,; echo "$*")
  cat <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints: [$eps]
YAML
}
# The lab's pod backends n1-p1 and n2-p1 as ready EndpointSlice endpoints.
WEB_EP_N1='{"addresses":["10.0.1.10"],"conditions":{"ready":true},"nodeName":"n1"}'
WEB_EP_N2='{"addresses":["10.0.2.10"],"conditions":{"ready":true},"nodeName":"n2"}'
