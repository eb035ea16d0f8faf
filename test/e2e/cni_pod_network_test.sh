#!/usr/bin/env bash
# CniPodNetworkAndNodeRoutes: a pod made through nodepath-cni on node 1 talks to the lab's pod on
# node 2 (made by hand) both ways over the agents' direct node routes; an agent restart keeps the
# pod's address and never hands it out twice; DEL frees the address and the routes; the node
# routes follow the nodes file (a node leaving it loses its route, a node behind a router is
# refused with a status line); agentctl cleanup removes the datapath, the conflist, the agent's routes and
# np_host/np_net, and is refused while the agent runs.
#
# Lab: agents on n1 and n2; pods: n1-c1 (CNI, default/web-1), n2-p1 (by hand, 10.0.2.10).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init CniPodNetworkAndNodeRoutes npe_cnr
e2e_lab_up n1 n2
N1=$NP_LAB_PREFIX-n1
SOCK=$NP_LAB_DIR/n1/run/agent.sock
CNIBIN=$NP_LAB_DIR/n1/cni/bin
conf() { printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s"}' "$SOCK"; }
cni() { # <command> <container> <ns suffix>: the plugin on n1 as a runtime runs it
  printf '%s' "$(conf)" | lab_node_exec n1 env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$3" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN" \
    CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-${2#c}" "$CNIBIN/nodepath-cni"
}
endpoint_ip() { agentctl_json n1 endpoint list | jq -r --arg c "$1" '.endpoints[] | select(.container_id == $c) | .ipv4'; }
route_on() { ip -n "$NP_LAB_PREFIX-$1" route show "$2"; }

# --- node routes replace the lab's static ones ------------------------------------------------
ours() { # <node> <dst> <via>: the route is there, with the agent's protocol
  local r
  r=$(route_on "$1" "$2")
  [[ $r == "$2 via $3 dev ens192 proto 202"* ]] && return 0
  echo "expected '$2 via $3 dev ens192 proto 202' on $1, saw '${r:-no route}'"
  return 1
}
check "n1 routes 10.0.2.0/24 via node 2 (installed by the agent: proto 202, over the lab's identical route)" \
  ours n1 10.0.2.0/24 192.168.10.101
check "n2 routes 10.0.1.0/24 via node 1 (proto 202)" ours n2 10.0.1.0/24 192.168.10.100

# --- a CNI pod on n1 <-> the by-hand pod on n2 ------------------------------------------------
lab_netns_create n1-c1
require "ADD pod default/web-1 on n1 through nodepath-cni" cni ADD c1 n1-c1
IP1=$(endpoint_ip c1)
require "echo servers in n1-c1 (CNI) and n2-p1 (by hand)" e2e_serve n1/c1 n2/p1
traffic lab_pod_exec n1 c1 -- connect 10.0.2.10:8080 --count 10
check "the CNI pod ($IP1) reaches n2-p1 over TCP (10/10)" expect_ok 10
check "...and n2-p1 sees the pod's own address" expect_only_peer "$IP1"
traffic lab_pod_exec n2 p1 -- connect "$IP1:8080" --count 10
check "n2-p1 reaches the CNI pod at $IP1 over TCP (10/10)" expect_ok 10
check "...and the pod sees n2-p1's own address" expect_only_peer 10.0.2.10
traffic lab_pod_exec n1 c1 -- connect 10.0.2.10:8080 --udp --count 5
check "the CNI pod reaches n2-p1 over UDP (5/5)" expect_ok 5

# --- an agent restart keeps the address -------------------------------------------------------
require "kill -9 node 1's agent" lab_agent_stop n1 KILL
traffic lab_pod_exec n2 p1 -- connect "$IP1:8080" --count 5
check "while the agent is dead the pod is still reached (5/5)" expect_ok 5
require "restart node 1's agent" lab_agent_start n1
require "...ready" lab_agent_wait n1 30
check "after the restart the endpoint still has $IP1" eval '[[ $(endpoint_ip c1) == "$IP1" ]]'
ipam_one() {
  local got
  got=$(agentctl_json n1 status | jq -c '.ipam | {allocated, capacity, pod_cidr}')
  [[ $got == '{"allocated":1,"capacity":253,"pod_cidr":"10.0.1.0/24"}' ]] && return 0
  echo "expected 1/253 allocated from 10.0.1.0/24, saw $got"
  return 1
}
check "...and IPAM says 1/253 allocated from 10.0.1.0/24" ipam_one
lab_netns_create n1-c2
require "ADD a second pod default/web-2 after the restart" cni ADD c2 n1-c2
IP2=$(endpoint_ip c2)
check "...it gets a different address ($IP2, not $IP1)" eval '[[ -n $IP2 && $IP2 != "$IP1" ]]'
traffic lab_pod_exec n2 p1 -- connect "$IP1:8080" --count 5
check "after the restart the first pod is still reached (5/5)" expect_ok 5

# --- DEL frees address and routes -------------------------------------------------------------
require "DEL default/web-2" cni DEL c2 n1-c2
gone() {
  local r
  r=$(route_on n1 "$IP2/32")
  [[ -z $r && -z $(endpoint_ip c2) ]] && return 0
  echo "after DEL: route '$r', endpoint '$(endpoint_ip c2)'"
  return 1
}
check "after DEL the host route to $IP2 and the endpoint are gone" gone
check "...and its address is free again (IPAM 1/253)" ipam_one

# --- node routes follow the nodes file --------------------------------------------------------
nodes=$NP_LAB_DIR/n1/config/nodes
printf '%s\n' "n1 192.168.10.100 10.0.1.0/24" >"$nodes.new" && mv "$nodes.new" "$nodes"
no_route() { local r; r=$(route_on n1 10.0.2.0/24); [[ -z $r ]] || { echo "still: $r"; return 1; }; }
check "node 2 leaves n1's nodes file: n1's route to 10.0.2.0/24 goes" eventually 10 no_route
printf '%s\n' "n1 192.168.10.100 10.0.1.0/24" "n2 192.168.10.101 10.0.2.0/24" "n3 203.0.113.50 10.0.3.0/24" \
  >"$nodes.new" && mv "$nodes.new" "$nodes"
check "node 2 back in the file: its route returns" eventually 10 ours n1 10.0.2.0/24 192.168.10.101
refused() {
  local out table
  out=$(agentctl_json n1 status || true)
  table=$(lab_agentctl n1 status || true)  # exit 1: Degraded, as it should be
  jq -e '.node_routes[] | select(.node == "n3") | .installed == false and (.error | test("not on a directly connected subnet of ens192"))' \
    <<<"$out" >/dev/null && [[ -z $(route_on n1 10.0.3.0/24) ]] &&
    grep -q 'Node routes: .*1/2 installed (n3: node n3 (203.0.113.50) is not on a directly connected subnet' <<<"$table" &&
    return 0
  echo "expected n3 refused in status, saw $(jq -c '.node_routes' <<<"$out"); route: $(route_on n1 10.0.3.0/24)"
  grep 'Node routes' <<<"$table"
  return 1
}
check "a node behind the router (n3, 203.0.113.50) gets no route and a status line saying why" eventually 10 refused
check "the pods still talk across nodes" eval 'traffic lab_pod_exec n1 c1 -- connect 10.0.2.10:8080 --count 3; expect_ok 3'
bad_nodes_reported() {
  local out
  out=$(agentctl_json n1 status || true)  # Degraded: exit 1
  jq -e '[.problems[] | select(test("nodes: .*keeping the previous node list"))] | length == 1' <<<"$out" >/dev/null ||
    { echo "no problem line about the nodes file: $(jq -c '.problems' <<<"$out")"; return 1; }
}
# Written as a ConfigMap update writes it (a new file renamed over the old): a truncate-then-write
# could be polled empty in between, and an empty nodes file is a valid "no peers".
echo "n1 not-an-ip 10.0.1.0/24" >"$nodes.new" && mv "$nodes.new" "$nodes"
check "an invalid nodes file is refused with a status line..." eventually 10 bad_nodes_reported
check "...and the last good list stays: the route to node 2 is kept" ours n1 10.0.2.0/24 192.168.10.101
printf '%s\n' "n1 192.168.10.100 10.0.1.0/24" "n2 192.168.10.101 10.0.2.0/24" >"$nodes.new" && mv "$nodes.new" "$nodes"

# --- cleanup ----------------------------------------------------------------------------------
CONF=$NP_LAB_DIR/n1/cni/net.d/05-nodepath.conflist
check "the conflist exists while the agent is ready" test -s "$CONF"
check "agentctl cleanup is refused while the agent runs" \
  expect_refused 1 'is running' lab_agentctl n1 cleanup --cni-conf-dir "$NP_LAB_DIR/n1/cni/net.d"
require "DEL default/web-1" cni DEL c1 n1-c1
require "stop node 1's agent" lab_agent_stop n1
datapath_kept() {
  local in
  in=$(tcx_prog "$NP_LAB_DIR/bpffs/n1/nodepath/links/tcx_ens192_ingress")
  [[ $in == np_from_netdev ]] && return 0
  echo "the pinned tcx ingress link on ens192 runs '${in:-nothing}'; pins: $(ls "$NP_LAB_DIR/bpffs/n1/nodepath" 2>&1 | head -3)"
  return 1
}
check "the datapath is in place while the agent is stopped (a tcx link on ens192, pinned)" datapath_kept
IN_LINK=$(tcx_link_id "$NP_LAB_DIR/bpffs/n1/nodepath/links/tcx_ens192_ingress")
EG_LINK=$(tcx_link_id "$NP_LAB_DIR/bpffs/n1/nodepath/links/tcx_ens192_egress")
require "...both tcx links of ens192 are pinned (ingress ${IN_LINK:-none}, egress ${EG_LINK:-none})" \
  test -n "$IN_LINK" -a -n "$EG_LINK"
check "agentctl cleanup (agent stopped) succeeds" lab_agentctl n1 cleanup --cni-conf-dir "$NP_LAB_DIR/n1/cni/net.d" \
  --bpf-root "$NP_LAB_DIR/bpffs/n1"
datapath_gone() {
  local tcs
  tcs=$(tc -n "$N1" filter show dev ens192 ingress; tc -n "$N1" filter show dev ens192 egress)
  [[ -z $tcs && ! -e $NP_LAB_DIR/bpffs/n1/nodepath ]] && return 0
  echo "after cleanup: tc on ens192: '$tcs'; pins: $(ls "$NP_LAB_DIR/bpffs/n1/nodepath" 2>&1 | head -3)"
  return 1
}
check "...and removed the datapath: no tc filter on ens192, no pins (tcx links go with theirs) under <bpf-root>/nodepath" datapath_gone
check "...the tcx links are released: ingress (link $IN_LINK) is off ens192" eventually 10 expect_link_gone "$IN_LINK"
check "...and egress (link $EG_LINK)" eventually 10 expect_link_gone "$EG_LINK"
cleaned() {
  local left
  left=$(ip -n "$N1" route show proto 202)
  [[ ! -e $CONF && -z $left ]] && ! ip -n "$N1" link show np_host >/dev/null 2>&1 && return 0
  echo "after cleanup: conflist $([[ -e $CONF ]] && echo present || echo gone), proto 202 routes: '${left}', np_host: $(ip -n "$N1" -br link show np_host 2>&1)"
  return 1
}
check "...and removed the conflist, every route of proto 202 and np_host/np_net" cleaned

e2e_finish
