#!/usr/bin/env bash
# ClusterHelmDaemonSet: nodepath installed the way a user installs it (issue 11): its images
# (scripts/image.sh: the node image and --image hubble-relay) imported into each node's containerd, then `helm install nodepath
# deploy/helm/nodepath --namespace cilium --create-namespace` with the seed's `--set` flags (and
# l2announcements.enabled=true, the API server address, the lab's device, the local image) on real
# kubelets (containerd + runc) on the lab's nodes n1 and n2:
#  - the DaemonSet's pods run on both nodes, their init step installs nodepath-cni and the agent
#    writes the conflist into each node's own CNI dirs; the Nodes go Ready;
#  - the operator Deployment gives each CiliumNode a distinct /24 of 10.0.0.0/16;
#  - an echo Deployment's pods get addresses of their node's /24 through nodepath-cni, reach the
#    `kubernetes` ClusterIP and the other node's pod;
#  - the seed's CiliumLoadBalancerIPPool and CiliumL2AnnouncementPolicy, applied verbatim (the
#    Nodes labelled control-plane, as k3s servers are), give a LoadBalancer Service of the echo pods
#    a 192.168.20.x address: one node answers the LAN client's ARP for it (the Lease holder, which
#    `kubectl get leases -n cilium` and its `agentctl l2 list` name), the client's TCP reaches both
#    pods, and captures on the LAN show each connection's replies leaving its backend's node with
#    the service address as the source (DSR);
#  - hubble-relay (hubble.relay.enabled=true, the seed's): its pod becomes Ready; the real hubble
#    CLI pointed at the Service hubble-relay (its ClusterIP, port 80) counts 2/2 connected nodes
#    and `hubble observe --last N` returns the LAN client's flows of BOTH nodes, by node name;
#  - `kubectl exec` into a nodepath pod runs `agentctl status --verbose` and `agentctl flows`;
#  - `helm upgrade` with a changed value (agent.logLevel=debug) rolls the agents, which log at the
#    new level; a connection through the NodePort held open across the restart still carries data,
#    and the datapath and the announcement keep working;
#  - `helm uninstall` (its pre-delete hook: the uninstall marker) removes the datapath, the
#    conflist and the relay, and the Nodes go NotReady.
# Prints each phase's time (measure: line).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_ORIG=${NP_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
e2e_init ClusterHelmDaemonSet nphelm
CHART=$E2E_REPO/deploy/helm/nodepath
IMAGE_REPO=localhost/nodepath
IMAGE_TAG=cluster-test
RELAY_IMAGE_REPO=localhost/hubble-relay
NS=cilium
# the seed's install line (and its later l2announcements upgrade), verbatim, then the lab's own
SEED=(--set operator.replicas=1 --set ipam.mode=cluster-pool --set ipam.operator.clusterPoolIPv4PodCIDRList=10.0.0.0/16
  --set routingMode=native --set autoDirectNodeRoutes=true --set ipv4NativeRoutingCIDR=10.0.0.0/16
  --set bpf.masquerade=true --set kubeProxyReplacement=true --set loadBalancer.mode=dsr
  --set loadBalancer.acceleration=native --set hubble.relay.enabled=true --set hubble.ui.enabled=true
  --set installNoConntrackIptablesRules=true --set l2announcements.enabled=true)
# /run/nodepath/cgroupv2 is the node's own cgroup2 cgroup in its mount namespace (cluster.sh),
# never the machine's root cgroup.
LAB_VALUES=(--set k8sServiceHost=192.168.10.100 --set k8sServicePort=6443 --set devices=ens192
  --set "image.repository=$IMAGE_REPO" --set "image.tag=$IMAGE_TAG" --set image.pullPolicy=Never
  --set cgroup.hostRoot=/run/nodepath/cgroupv2
  --set "hubble.relay.image.repository=$RELAY_IMAGE_REPO" --set "hubble.relay.image.tag=$IMAGE_TAG"
  --set hubble.relay.image.pullPolicy=Never)

# The cluster's state when something failed (before the teardown).
e2e__postmortem() {
  local p
  echo "--- pods:"
  cluster_kubectl get pods -A -o wide 2>&1 | e2e__indent
  echo "--- services and leases:"
  cluster_kubectl get svc -A -o wide 2>&1 | e2e__indent
  cluster_kubectl get leases -n "$NS" 2>&1 | e2e__indent
  echo "--- events in $NS:"
  cluster_kubectl -n "$NS" get events --sort-by=.lastTimestamp 2>&1 | tail -n 25 | e2e__indent
  for p in $(cluster_kubectl -n "$NS" get pods -o name 2>/dev/null); do
    echo "--- $p, last log lines:"
    cluster_kubectl -n "$NS" logs "$p" --all-containers --tail 15 2>&1 | e2e__indent
  done
}

# Phase 1: the image, from a snapshot of the binaries (others may rebuild the tree meanwhile).
T=$SECONDS
SNAP=$E2E_TMP/snap
for rel in agent/nodepath-agent operator/nodepath-operator cli/agentctl/agentctl cli/cni/nodepath-cni; do
  mkdir -p "$SNAP/$(dirname "$rel")"
  cp -p "$BUILD_ORIG/$rel" "$SNAP/$rel" || { fail "$E2E_NAME" "$BUILD_ORIG/$rel is missing (build first)"; exit 1; }
done
# The archive is reproducible, so it is cached by its inputs (a warm run with the same build
# skips the ~1 min of stripping and gzip -9).
image_build() {
  local cache=${NP_CLUSTER_IMAGE_CACHE:-/var/cache/nodepath/cluster-images} key
  key=$(cat "$SNAP"/agent/nodepath-agent "$SNAP"/operator/nodepath-operator "$SNAP"/cli/agentctl/agentctl \
    "$SNAP"/cli/cni/nodepath-cni "$E2E_REPO"/scripts/image.sh "$E2E_REPO"/scripts/lib/oci.sh \
    "$E2E_REPO"/deploy/image/nodepath-install-cni /usr/lib/cni/loopback /bin/busybox /usr/sbin/xtables-nft-multi |
    sha256sum | cut -c1-16) || return 1
  IMAGE_TAR=$cache/nodepath-$IMAGE_TAG-$key.tar
  [[ -s $IMAGE_TAR ]] && return 0
  mkdir -p "$cache" || return 1
  "$E2E_REPO/scripts/image.sh" --build-dir "$SNAP" --out "$E2E_TMP/nodepath.tar" --name "$IMAGE_REPO:$IMAGE_TAG" || return 1
  # only the newest stays: each build of the tree makes another
  rm -f "$cache"/nodepath-"$IMAGE_TAG"-*.tar
  mv -f "$E2E_TMP/nodepath.tar" "$IMAGE_TAR.$$" && mv -f "$IMAGE_TAR.$$" "$IMAGE_TAR"
}
IMAGE_TAR=
require "nodepath's image built (scripts/image.sh; cached by its inputs)" image_build
HUBBLE=$(np_go_tool hubble) || { fail "$E2E_NAME" "no hubble CLI (scripts/setup.sh builds it; needs go)"; exit 1; }
RELAY_BIN=$(np_go_tool hubble-relay) || { fail "$E2E_NAME" "no hubble-relay (scripts/setup.sh builds it; needs go)"; exit 1; }
relay_image_build() { # the same, for scripts/image.sh --image hubble-relay
  local cache=${NP_CLUSTER_IMAGE_CACHE:-/var/cache/nodepath/cluster-images} key
  key=$(cat "$RELAY_BIN" "$E2E_REPO"/scripts/image.sh "$E2E_REPO"/scripts/lib/oci.sh /bin/busybox | sha256sum | cut -c1-16) || return 1
  RELAY_TAR=$cache/hubble-relay-$IMAGE_TAG-$key.tar
  [[ -s $RELAY_TAR ]] && return 0
  mkdir -p "$cache" || return 1
  "$E2E_REPO/scripts/image.sh" --image hubble-relay --relay-bin "$RELAY_BIN" --out "$E2E_TMP/relay.tar" \
    --name "$RELAY_IMAGE_REPO:$IMAGE_TAG" || return 1
  rm -f "$cache"/hubble-relay-"$IMAGE_TAG"-*.tar
  mv -f "$E2E_TMP/relay.tar" "$RELAY_TAR.$$" && mv -f "$RELAY_TAR.$$" "$RELAY_TAR"
}
RELAY_TAR=
require "the hubble-relay image built (scripts/image.sh --image hubble-relay; cached by its inputs)" relay_image_build
IMAGE_S=$((SECONDS - T))

# Phase 2: the lab, the control plane and the two kubelet nodes.
T=$SECONDS
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "control plane and kubelet + containerd on n1, n2" cluster_up n1 n2
# loadBalancer.acceleration=native: on the lab's veth LAN, XDP_TX/redirect toward a port needs an
# XDP program on its peer (lab.sh's pass program), as the e2e XDP tests do.
require "the LAN ports carry the XDP pass program (veth native XDP)" lab_lan_xdp_pass
for n in n1 n2; do
  require "nodepath's image imported into $n's containerd (ctr -n k8s.io images import)" \
    cluster_image_import "$n" "$IMAGE_TAR"
  require "...and the hubble-relay image" cluster_image_import "$n" "$RELAY_TAR"
done
# k8s_up applied deploy/rbac for the tiers that run agents directly; the release owns them here.
require "deploy/rbac's agent and operator objects deleted (the release will own them)" \
  eval 'cluster_kubectl delete -f "$E2E_REPO/deploy/rbac/agent.yaml" -f "$E2E_REPO/deploy/rbac/operator.yaml" >/dev/null'
UP_S=$((SECONDS - T))

HELM=$(np_go_tool helm)
helm_() { lab_node_exec n1 env HOME="$E2E_TMP" "$HELM" --kubeconfig "$K8S_KUBECONFIG" "$@"; }

# Phase 3: helm install, until the nodes are Ready with their CIDRs.
T=$SECONDS
require "helm install nodepath with the seed's flags" helm_ install nodepath "$CHART" --namespace "$NS" \
  --create-namespace "${SEED[@]}" "${LAB_VALUES[@]}"

np_pods() { # "name node phase ready uid" of the DaemonSet's pods, one a line
  cluster_kubectl -n "$NS" get pods -l k8s-app=nodepath -o json |
    jq -r '.items[] | select(.metadata.deletionTimestamp == null) | "\(.metadata.name) \(.spec.nodeName // "-") \(.status.phase) \(all(.status.containerStatuses[]?; .ready) and ((.status.containerStatuses // []) | length) > 0) \(.metadata.uid)"'
}
expect_agents_ready() { # one Running, ready nodepath pod on each of n1 and n2 [not among uids]
  local got n
  got=$(np_pods) || { echo "kubectl get pods failed"; return 1; }
  for n in n1 n2; do
    if ! awk -v n="$n" -v old="${1:-}" '$2 == n && $3 == "Running" && $4 == "true" && index(old, $5) == 0 { ok = 1 } END { exit !ok }' <<<"$got"; then
      echo "expected a Running, ready nodepath pod on $n${1:+ (a new one)}, saw:"
      printf '%s\n' "${got:-none}"
      return 1
    fi
  done
}
check "the DaemonSet's pods are Running and ready on n1 and n2" eventually 150 expect_agents_ready
AGENTS_S=$((SECONDS - T))
cni_installed() { # <node>: the init step's plugin and the agent's conflist in the node's own dirs
  lab_node_exec "$1" test -x /opt/cni/bin/nodepath-cni || { echo "no executable /opt/cni/bin/nodepath-cni on $1: $(lab_node_exec "$1" ls -l /opt/cni/bin)"; return 1; }
  lab_node_exec "$1" test -x /opt/cni/bin/loopback || { echo "no loopback plugin on $1"; return 1; }
  lab_node_exec "$1" cat /etc/cni/net.d/05-nodepath.conflist 2>/dev/null | jq -e '.plugins[0].type == "nodepath-cni"' >/dev/null && return 0
  echo "no nodepath conflist in $1's /etc/cni/net.d: $(lab_node_exec "$1" ls /etc/cni/net.d | tr '\n' ' ')"
  return 1
}
check "n1's CNI bin dir has nodepath-cni and loopback (init step), its net.d the agent's conflist" eventually 30 cni_installed n1
check "...and n2's" eventually 30 cni_installed n2
check "Node n1 goes Ready" eventually 60 expect_node_ready n1
check "Node n2 goes Ready" eventually 60 expect_node_ready n2
READY_S=$((SECONDS - T))
has_datapath() { # <node>: the agent's tc programs and (acceleration native) XDP on ens192
  local tc xdp
  tc=$(tcx_prog /sys/fs/bpf/nodepath/links/tcx_ens192_ingress lab_node_exec "$1")
  xdp=$(lab_node_exec "$1" ip -d link show dev ens192 | grep -o 'prog/xdp' || true)
  [[ $tc == np_from_netdev && -n $xdp ]] && return 0
  echo "on $1's ens192: tcx ingress link runs '${tc:-nothing}', xdp '${xdp:-none}'"
  return 1
}
check "the agent's datapath is on n1's ens192 (tc and native XDP)" eventually 30 has_datapath n1
check "...and on n2's" eventually 30 has_datapath n2

cidr_of() { cluster_kubectl get ciliumnode "$1" -o jsonpath='{.spec.ipam.podCIDRs[0]}' 2>/dev/null; }
expect_cidr() { # <node>
  local got
  got=$(cidr_of "$1")
  [[ $got =~ ^10\.0\.[0-9]+\.0/24$ ]] && return 0
  echo "CiliumNode $1 has pod CIDR '$got', not a /24 of 10.0.0.0/16"
  return 1
}
check "the operator gives CiliumNode n1 a /24 of 10.0.0.0/16" eventually 60 expect_cidr n1
check "...and CiliumNode n2" eventually 60 expect_cidr n2
C1=$(cidr_of n1) C2=$(cidr_of n2)
check "...distinct ones ($C1, $C2)" test "$C1" != "$C2"

# Phase 4: pods through nodepath-cni.
T=$SECONDS
require "the echo Deployment applied (one pod per node, answering with its node's name)" cluster_echo_deployment
check "the echo Deployment's two pods are Running" eventually 90 expect_pods_running app=echo 2
PODS_S=$((SECONDS - T))
PODS=$(cluster_pods app=echo)
pod_on() { awk -v n="$1" '$2 == n { print $'"$2"'; exit }' <<<"$PODS"; }
P1=$(pod_on n1 1) P2=$(pod_on n2 1) IP1=$(pod_on n1 4) IP2=$(pod_on n2 4)
in_cidr() { # <ip> <cidr>: a.b.c.x in a.b.c.0/24
  [[ -n $1 && ${1%.*} == "${2%.*}" && $2 == */24 ]] && return 0
  echo "expected an address of $2, saw '${1:-none}' (pods: $PODS)"
  return 1
}
check "the echo pod on n1 has an address of n1's $C1 ($IP1)" in_cidr "$IP1" "$C1"
check "the echo pod on n2 has an address of n2's $C2 ($IP2)" in_cidr "$IP2" "$C2"

in_pod() { # <pod> <expected ok count> nptraffic args...: kubectl exec runs nptraffic in the pod
  local pod=$1 want=$2 out
  shift 2
  out=$(cluster_kubectl exec "$pod" -- /nptraffic "$@" 2>&1) || { echo "kubectl exec $pod -- /nptraffic $*: $out"; return 1; }
  grep -qx "ok=$want fail=0" <<<"$out" && return 0
  echo "expected ok=$want fail=0 from nptraffic $* in $pod, saw: $out"
  return 1
}
datapath_works() { # [label]
  check "the pod on n1 reaches the kubernetes ClusterIP 10.43.0.1:443${1:-} (5/5 connects)" \
    in_pod "$P1" 5 connect 10.43.0.1:443 --connect-only --count 5
  check "the pod on n2 reaches the kubernetes ClusterIP${1:-} (5/5 connects)" \
    in_pod "$P2" 5 connect 10.43.0.1:443 --connect-only --count 5
  check "the pod on n1 reaches the pod on n2 ($IP2:8080)${1:-} over TCP (10/10)" in_pod "$P1" 10 connect "$IP2:8080" --count 10
  check "the pod on n2 reaches the pod on n1 ($IP1:8080)${1:-} over TCP (10/10)" in_pod "$P2" 10 connect "$IP1:8080" --count 10
}
if [[ -n $P1 && -n $P2 ]]; then
  datapath_works
fi

# A NodePort Service of the echo pods: the lab's LAN client reaches it at n1 (the agents took it
# from the API server; its translation is what `agentctl flows` shows below).
require "a NodePort Service (30080) of the echo pods applied" cluster_apply <<YAML
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: tcp, port: 8080, targetPort: 8080, nodePort: 30080, protocol: TCP}]
YAML
client_reaches_nodeport() {
  traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5
  expect_ok 5
}
check "the LAN client reaches the NodePort at n1 (192.168.10.100:30080, 5/5)" eventually 30 client_reaches_nodeport

# Phase 4a: hubble-relay (the seed's hubble.relay.enabled=true), one view of both nodes' flows.
T=$SECONDS
relay_ready() {
  local got
  got=$(cluster_kubectl -n "$NS" get pods -l k8s-app=hubble-relay -o json | jq -r '.items[] |
    "\(.metadata.name) \(.status.phase) \(all(.status.containerStatuses[]?; .ready) and ((.status.containerStatuses // []) | length) > 0)"') ||
    { echo "kubectl get pods failed"; return 1; }
  [[ $(awk '$2 == "Running" && $3 == "true"' <<<"$got" | wc -l) == 1 ]] && return 0
  echo "expected one Running, ready hubble-relay pod, saw: ${got:-none}"
  return 1
}
check "the hubble-relay pod is Running and ready (its gRPC health probe)" eventually 60 relay_ready
RELAY_IP=$(cluster_kubectl -n "$NS" get svc hubble-relay -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
RELAY_ADDR=$RELAY_IP:80
# Flows are what a node's NodePort path translates: the LAN client through each node's NodePort.
client_reaches_nodeport_n2() {
  traffic lab_client_exec -- connect 192.168.10.101:30080 --count 5
  expect_ok 5
}
check "the LAN client reaches the NodePort at n2 too (192.168.10.101:30080, 5/5)" eventually 30 client_reaches_nodeport_n2
hubble_() { lab_node_exec n1 "$HUBBLE" "$@" --server "$RELAY_ADDR"; }
relay_status() {
  local out
  out=$(hubble_ status 2>&1) || { echo "hubble status --server $RELAY_ADDR failed:"; e2e__indent <<<"$out"; return 1; }
  grep -q 'Healthcheck.*Ok' <<<"$out" && grep -q 'Connected Nodes: 2/2' <<<"$out" && return 0
  echo "expected 'Healthcheck ... Ok' and 'Connected Nodes: 2/2', saw:"
  e2e__indent <<<"$out"
  return 1
}
check "hubble status --server <Service hubble-relay> ($RELAY_ADDR): healthy, Connected Nodes: 2/2" eventually 30 relay_status
relay_flows() { # the LAN client's flows of each node, under that node's name
  local out n
  # Filtered on the client as a user would ask (--ip): the relay merges every node's last N flows
  # and keeps the newest N, and both nodes' agents open connections of their own all the time
  # (socket LB flows to the API server), which would crowd the client's out of an unfiltered --last.
  out=$(hubble_ observe --ip 192.168.10.200 --last 1000 -o json 2>"$E2E_TMP/observe.err") ||
    { echo "hubble observe failed:"; head -n 10 "$E2E_TMP/observe.err" | e2e__indent; return 1; }
  for n in n1 n2; do
    # Line by line, skipping what is not JSON: one stray line must not hide the rest.
    jq -R -s -e --arg n "$n" '[split("\n")[] | fromjson? | select(.flow.node_name == $n and
      (.flow.IP.source == "192.168.10.200" or .flow.IP.destination == "192.168.10.200"))] | length > 0' \
      <<<"$out" >/dev/null 2>&1 && continue
    echo "no flow of the LAN client 192.168.10.200 from $n through the relay; flows by (node, source, destination):"
    jq -R -r 'fromjson? | [.flow.node_name // "-", .flow.IP.source // "-", .flow.IP.destination // "-"] | join(" ")' <<<"$out" 2>/dev/null |
      sort | uniq -c | head -n 10 | e2e__indent
    echo "lines that are not JSON: $(jq -R 'fromjson? // "x" | select(. == "x")' <<<"$out" 2>/dev/null | wc -l); the first lines:"
    head -c 600 <<<"$out" | e2e__indent
    return 1
  done
}
check "hubble observe --server <Service hubble-relay> --ip 192.168.10.200: the LAN client's flows of n1 AND n2, by node name" \
  eventually 20 relay_flows
RELAY_S=$((SECONDS - T))

VIP=
# Phase 4b: a LoadBalancer Service announced on the LAN (l2announcements.enabled=true). The seed's
# pool and L2 policy, verbatim; its nodeSelector takes nodes labelled control-plane, as k3s servers
# are (the lab's kubelets register plain Nodes: the label is the one thing added).
T=$SECONDS
for n in n1 n2; do
  require "Node $n labelled node-role.kubernetes.io/control-plane (a k3s server's label)" \
    eval 'cluster_kubectl label node "$n" node-role.kubernetes.io/control-plane=true --overwrite >/dev/null'
done
require "the seed's CiliumLoadBalancerIPPool and CiliumL2AnnouncementPolicy applied verbatim" \
  cluster_apply <"$E2E_REPO/test/k8s/fixtures/seed-l2-lb-ipam.yaml"
require "a LoadBalancer Service default/echo-lb (80 -> the echo pods' 8080) applied" cluster_apply <<YAML
apiVersion: v1
kind: Service
metadata: {name: echo-lb, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports: [{name: tcp, port: 80, targetPort: 8080, protocol: TCP}]
YAML
lb_vip() { cluster_kubectl get svc -n default echo-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null; }
expect_lb_vip() {
  [[ $(lb_vip) =~ ^192\.168\.20\.[0-9]+$ ]] && return 0
  echo "echo-lb has EXTERNAL-IP '$(lb_vip)': $(cluster_kubectl get svc -n default echo-lb 2>&1 | tail -n 1)"
  return 1
}
check "echo-lb gets an EXTERNAL-IP of the seed's pool 192.168.20.0/24 (the operator's LB-IPAM)" eventually 30 expect_lb_vip
VIP=$(lb_vip)
echo "  echo-lb's address: ${VIP:-none}"
if [[ $VIP =~ ^192\.168\.20\.[0-9]+$ ]]; then
  # A host on the seed's LAN reaches 192.168.20.0/24 on-link, by ARP (the client's netns only).
  require "the LAN client's on-link route 192.168.20.0/24 dev eth0" lab_client_exec ip route add 192.168.20.0/24 dev eth0
  LEASE=nodepath-l2announce-default-echo-lb
  lease_holder() { cluster_kubectl get lease -n "$NS" "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
  expect_lease_held() {
    local h
    h=$(lease_holder)
    [[ $h == n1 || $h == n2 ]] && return 0
    echo "Lease $NS/$LEASE holder is '$h'; leases: $(cluster_kubectl get leases -n "$NS" 2>&1 | tr '\n' ';')"
    return 1
  }
  check "the Lease $NS/$LEASE gets a holder, n1 or n2" eventually 30 expect_lease_held
  H=$(lease_holder)
  leases_row() {
    local out
    out=$(cluster_kubectl get leases -n "$NS" 2>&1)
    grep -qE "^$LEASE +$H " <<<"$out" && return 0
    echo "kubectl get leases -n $NS:"
    printf '%s\n' "$out"
    return 1
  }
  check "kubectl get leases -n $NS shows $LEASE held by ${H:-?}" leases_row
  l2_listed_on() { # <node>: agentctl l2 list in its nodepath pod shows $VIP answered on ens192
    local pod out
    pod=$(np_pods | awk -v n="$1" '$2 == n { print $1; exit }')
    out=$(cluster_kubectl -n "$NS" exec "$pod" -c nodepath-agent -- agentctl -o json l2 list 2>&1) ||
      { echo "kubectl exec $pod -- agentctl l2 list: $out"; return 1; }
    jq -e --arg ip "$VIP" '.announcements[]? | select(.ip == $ip and .device == "ens192" and .answering == true)' \
      <<<"$out" >/dev/null && return 0
    echo "$pod: agentctl -o json l2 list: $(jq -c . <<<"$out" 2>/dev/null || echo "$out")"
    return 1
  }
  check "kubectl exec into ${H:-?}'s nodepath pod -- agentctl l2 list: $VIP answered on ens192" eventually 20 l2_listed_on "$H"
  check "arping from the LAN client: one answer per request, all from ${H:-?}'s ens192 MAC" eventually 15 expect_only_arp_answerer "$VIP" "$H"

  # TCP from the client; the echo pods answer with their node's name, and a capture of what each
  # node sends on the LAN shows each connection's replies leaving its backend's node, with the
  # service address as the source (DSR: the holder forwards, the backend's node answers).
  require "capture of what n1 sends on the LAN" capture_start lb-n1 n1
  require "capture of what n2 sends on the LAN" capture_start lb-n2 n2
  traffic lab_client_exec -- connect "$VIP:80" --count 20 --verbose
  require "captures stopped" capture_stop lb-n1
  require "captures stopped" capture_stop lb-n2
  check "the LAN client -> $VIP:80 (LoadBalancer, DSR): 20/20 connections answered" expect_ok 20
  check "...by both echo pods (on n1 and n2)" eval 'expect_id n1 + && expect_id n2 +'
  check "...which saw the client's own address 192.168.10.200 (no SNAT)" expect_only_peer 192.168.10.200
  check "every connection's replies leave its backend's node with $VIP:80 as the source, none the other node" \
    expect_dsr_replies "$VIP" 80 lb-n1 lb-n2
  check "no reply with a pod's own address reaches the LAN" eval \
    'expect_captured lb-n1 eq 0 "untranslated replies" "src net 10.0.0.0/16 and dst host 192.168.10.200" &&
     expect_captured lb-n2 eq 0 "untranslated replies" "src net 10.0.0.0/16 and dst host 192.168.10.200"'
fi
LB_S=$((SECONDS - T))

# Phase 5: agentctl in a nodepath pod.
AGENT1=$(np_pods | awk '$2 == "n1" { print $1; exit }')
agentctl_in_pod() { # <expected ERE> agentctl args...
  local want=$1 out
  shift
  out=$(cluster_kubectl -n "$NS" exec "$AGENT1" -c nodepath-agent -- agentctl "$@" 2>&1) ||
    { echo "kubectl exec $AGENT1 -- agentctl $*: exit $?: $out"; return 1; }
  grep -qE -- "$want" <<<"$out" && return 0
  echo "expected /$want/ in the output of agentctl $*, saw:"
  printf '%s\n' "$out" | head -n 40
  return 1
}
check "kubectl exec $AGENT1 -- agentctl status --verbose: Ok, with the KubeProxyReplacement details" \
  agentctl_in_pod "KubeProxyReplacement Details:" status --verbose
# (Flows are what the NodePort path translates, and drops: not pod-to-pod or socket-LB traffic.)
check "kubectl exec $AGENT1 -- agentctl flows: the LAN client's NodePort flows to the echo pods" \
  agentctl_in_pod '192\.168\.10\.200:[0-9]+ -> ' flows --last 200

# Phase 6: helm upgrade with a changed value rolls the agents; the datapath keeps working.
T=$SECONDS
OLD_UIDS=$(np_pods | awk '{ print $5 }' | tr '\n' ' ')
agent_debug_lines() { # <node>: how many debug lines the log of its (current) nodepath agent has
  local pod log
  pod=$(np_pods | awk -v n="$1" '$2 == n { print $1; exit }')
  log=$(cluster_kubectl -n "$NS" logs "$pod" -c nodepath-agent 2>&1) || { echo "kubectl logs $pod: $log"; return 1; }
  [[ -n $log ]] || { echo "kubectl logs $pod: empty"; return 1; }
  grep -cE '^[0-9TZ:.-]+ debug ' <<<"$log" || true
}
no_debug_lines() {
  local got
  got=$(agent_debug_lines "$1") || { echo "$got"; return 1; }
  [[ $got == 0 ]] && return 0
  echo "the log-level info agent on $1 logged $got debug lines"
  return 1
}
check "before the upgrade, n1's agent (log-level info) logs no debug lines" no_debug_lines n1
# A connection from the LAN client through n1's NodePort, held open across the agents' restart.
HELD=0
if require "a TCP connection from the LAN client to the NodePort 192.168.10.100:30080, held open" \
  hold_start upgrade lab_client_exec -- 192.168.10.100:30080; then
  HELD_REPLY=$(hold_send upgrade before-upgrade) || true
  HELD_ID=${HELD_REPLY%% *}
  check "...carries data before the upgrade (answered by the echo pod on ${HELD_ID:-?})" \
    eval '[[ $HELD_ID == n1 || $HELD_ID == n2 ]] || { echo "reply: $HELD_REPLY"; false; }'
  HELD=1
fi
RELAY_UID_BEFORE=$(cluster_kubectl -n "$NS" get pods -l k8s-app=hubble-relay -o jsonpath='{.items[*].metadata.uid}' 2>/dev/null || true)
require "helm upgrade --reuse-values --set agent.logLevel=debug" helm_ upgrade nodepath "$CHART" \
  --namespace "$NS" --reuse-values --set agent.logLevel=debug
config_debug() {
  local got
  got=$(cluster_kubectl -n "$NS" get configmap nodepath-config -o jsonpath='{.data.log-level}')
  [[ $got == debug ]] && return 0
  echo "nodepath-config's log-level is '$got'"
  return 1
}
check "the ConfigMap carries the changed value (log-level debug)" config_debug
check "the DaemonSet rolled: new nodepath pods, Running and ready, on n1 and n2" eventually 150 expect_agents_ready "$OLD_UIDS"
UPGRADE_S=$((SECONDS - T))
same_pods() {
  local now
  now=$(cluster_pods app=echo)
  [[ $now == "$PODS" ]] && return 0
  echo "the echo pods changed across the upgrade: before '$PODS', after '$now'"
  return 1
}
check "the echo pods kept running with their addresses across the upgrade" same_pods
debug_lines() {
  local got
  got=$(agent_debug_lines "$1") || { echo "$got"; return 1; }
  ((got > 0)) && return 0
  echo "the new agent on $1 logged no debug line (log-level debug did not reach it?)"
  return 1
}
check "the new agents run with the changed value: n1's logs debug lines (kubectl logs)" eventually 30 debug_lines n1
check "...and n2's" eventually 30 debug_lines n2
if ((HELD)); then
  check "the connection held open across the upgrade still carries data, to the same echo pod ($HELD_ID)" \
    expect_hold_echo upgrade after-upgrade "${HELD_ID:-?}" 192.168.10.200
fi
if [[ $VIP =~ ^192\.168\.20\.[0-9]+$ ]]; then
  arp_one_node() { # exactly one node answers for $VIP (the Lease's holder, which may have moved)
    local h
    h=$(lease_holder)
    [[ $h == n1 || $h == n2 ]] || { echo "Lease $NS/$LEASE holder is '$h'"; return 1; }
    expect_only_arp_answerer "$VIP" "$h"
  }
  check "after the upgrade, one node (the Lease's holder) answers ARP for $VIP" eventually 30 arp_one_node
  lb_reachable() {
    traffic lab_client_exec -- connect "$VIP:80" --count 5 --timeout-ms 1000
    expect_ok 5
  }
  check "...and the LAN client connects to $VIP:80 (5/5)" eventually 20 lb_reachable
fi
if [[ -n $P1 && -n $P2 ]]; then
  datapath_works " after the upgrade"
fi
# The relay across the agents' roll: it keeps its own pod (the upgrade changed an agent value) and
# must find the new agents through the peer service and read their rings, which hold only flows
# made after the roll (an agent's flow ring is in memory).
if [[ -n $RELAY_IP ]]; then
  relay_pod() { cluster_kubectl -n "$NS" get pods -l k8s-app=hubble-relay -o jsonpath='{.items[*].metadata.uid}' 2>/dev/null; }
  RELAY_UID_AFTER=$(relay_pod)
  if [[ -n $RELAY_UID_BEFORE && $RELAY_UID_AFTER == "$RELAY_UID_BEFORE" ]]; then
    RELAY_ROLL="the same relay pod"
  else
    RELAY_ROLL="relay pod ${RELAY_UID_BEFORE:-?} -> ${RELAY_UID_AFTER:-?}"
  fi
  check "after the upgrade ($RELAY_ROLL), hubble status through the relay: healthy, Connected Nodes: 2/2" \
    eventually 60 relay_status
  check "the LAN client reaches the NodePorts of n1 and n2 after the upgrade (5/5 each)" \
    eventually 30 eval 'client_reaches_nodeport && client_reaches_nodeport_n2'
  check "hubble observe through the relay after the upgrade: the client's flows of n1 AND n2, from the new agents" \
    eventually 30 relay_flows
fi

# Phase 7: helm uninstall removes the datapath and the CNI config; the Nodes go NotReady.
T=$SECONDS
require "the echo Deployment deleted" cluster_kubectl delete deployment echo --wait=false
no_echo() { [[ -z $(cluster_pods app=echo) ]] || { echo "echo pods left: $(cluster_pods app=echo)"; return 1; }; }
check "its pods are gone (kubelet DEL through nodepath-cni)" eventually 60 no_echo
require "helm uninstall nodepath" helm_ uninstall nodepath --namespace "$NS"
no_agents() { [[ -z $(np_pods) ]] || { echo "nodepath pods left: $(np_pods)"; return 1; }; }
check "the nodepath pods are gone" eventually 60 no_agents
no_relay() {
  local out
  # (not its pod: with the agents and the conflist gone, kubelet cannot tear down its network)
  out=$(cluster_kubectl -n "$NS" get deploy,svc,cm -l k8s-app=hubble-relay -o name 2>&1) || { echo "$out"; return 1; }
  [[ -z $out ]] && return 0
  echo "hubble-relay objects left: $out"
  return 1
}
check "...and hubble-relay (Deployment, Service, ConfigMap)" eventually 60 no_relay
no_conflist() { # <node>
  lab_node_exec "$1" test ! -e /etc/cni/net.d/05-nodepath.conflist && return 0
  echo "$1's /etc/cni/net.d still holds 05-nodepath.conflist"
  return 1
}
no_datapath() { # <node>: no tc or XDP program on ens192 (tcx links go with their pins)
  local tc xdp pins
  tc=$(lab_node_exec "$1" tc filter show dev ens192 ingress 2>&1; lab_node_exec "$1" tc filter show dev ens192 egress 2>&1)
  xdp=$(lab_node_exec "$1" ip -d link show dev ens192 | grep -o 'prog/xdp.*' || true)
  pins=$(lab_node_exec "$1" ls /sys/fs/bpf/nodepath/links 2>/dev/null || true)
  [[ $tc != *bpf* && -z $xdp && -z $pins ]] && return 0
  echo "programs left on $1's ens192: tc '$tc' xdp '$xdp'; link pins: '$pins'"
  return 1
}
for n in n1 n2; do
  check "the agent's uninstall path removed the conflist on $n" eventually 30 no_conflist "$n"
  check "...and the datapath (no tc/XDP program on $n's ens192)" eventually 30 no_datapath "$n"
done
not_ready() { # <node>
  cluster_node_ready "$1" || return 0
  echo "Node $1 is still Ready"
  return 1
}
check "Node n1 goes NotReady (no CNI config)" eventually 60 not_ready n1
check "Node n2 goes NotReady" eventually 60 not_ready n2
UNINSTALL_S=$((SECONDS - T))

echo "measure: image ${IMAGE_S} s, lab + control plane + nodes + image import ${UP_S} s (cluster_up ${CLUSTER_UP_SECONDS:-?} s), helm install to agents ready ${AGENTS_S} s, to Nodes Ready ${READY_S} s, echo pods Running ${PODS_S} s, relay checked ${RELAY_S:-?} s, LoadBalancer announced and checked ${LB_S} s, upgrade rolled ${UPGRADE_S} s, uninstall to NotReady ${UNINSTALL_S} s; RSS of everything $(cluster_rss_mib) MiB"
e2e_finish
