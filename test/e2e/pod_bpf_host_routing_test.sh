#!/usr/bin/env bash
# PodBpfHostRouting: pods made through nodepath-cni on node 1 and node 2 talk TCP and UDP across
# the nodes through lxc.bpf.c (BPF host routing: redirect_peer into the pod, FIB + redirect out of
# it), both see each other's real pod addresses and so does the LAN (capture); a pod process
# outside the socket-LB cgroup reaches a ClusterIP through lxc.bpf.c's per-packet translation
# (TCP, UDP, and a service whose backend is the pod itself: hairpin);
# status says `Host Routing: BPF`; a killed and restarted agent keeps pod connectivity; with
# --enable-host-legacy-routing status says Legacy and pods still talk through the stack.
#
# Lab: agents on n1 and n2; pods n1-c1 and n2-c2 through the CNI plugin of their node.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init "${E2E_ACCELERATION:+Xdp}PodBpfHostRouting" npe_lxc
if [[ -n ${E2E_ACCELERATION:-} ]]; then
  # XdpPodBpfHostRouting: the same with XDP acceleration on both nodes, where XDP runs the
  # NodePort path first and tc only delivers (its packets into pods must still be redirected).
  E2E_LAB_MADE=1
  require "lab topology up" lab_up
  for node in n1 n2; do
    echo "$E2E_ACCELERATION" >"$NP_LAB_DIR/$node/config/bpf-lb-acceleration"
    require "agent on $node started (bpf-lb-acceleration $E2E_ACCELERATION)" lab_agent_start "$node"
  done
  for node in n1 n2; do require "agent on $node ready" lab_agent_wait "$node" 30; done
else
  e2e_lab_up n1 n2
fi

conf() { printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s"}' "$NP_LAB_DIR/$1/run/agent.sock"; }
cni() { # <node> <command> <container> <ns suffix>: the node's plugin as a runtime runs it
  local bin=$NP_LAB_DIR/$1/cni/bin
  printf '%s' "$(conf "$1")" | lab_node_exec "$1" env -i PATH="$PATH" CNI_COMMAND="$2" CNI_CONTAINERID="$3" \
    CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$4" CNI_IFNAME=eth0 CNI_PATH="$bin" \
    CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-$3" "$bin/nodepath-cni"
}
endpoint_ip() { agentctl_json "$1" endpoint list | jq -r --arg c "$2" '.endpoints[] | select(.container_id == $c) | .ipv4'; }
# lxc_stat <node> <index>: np_lxcstat_v1[index] summed over CPUs (enum np_lxc_stat).
lxc_stat() {
  bpftool -j map lookup pinned "$NP_LAB_DIR/bpffs/$1/nodepath/np_lxcstat_v1" key "$2" 0 0 0 |
    jq '[.formatted.values[].value.packets] | add'
}
grew() { # <before> <after> <what>
  (($2 > $1)) && return 0
  echo "$3: expected the counter to grow, it stayed at $1"
  return 1
}

check "status on n1 says Host Routing: BPF" expect_status_line n1 '^Host Routing: +BPF$'

lab_netns_create n1-c1
lab_netns_create n2-c2
require "ADD pod default/web-c1 on n1 through nodepath-cni" cni n1 ADD c1 n1-c1
require "ADD pod default/web-c2 on n2 through nodepath-cni" cni n2 ADD c2 n2-c2
IP1=$(endpoint_ip n1 c1)
IP2=$(endpoint_ip n2 c2)
attached() { # <node> <container>: our program is tc ingress and egress of the pod's veth
  local dev
  dev=$(agentctl_json "$1" endpoint list | jq -r --arg c "$2" '.endpoints[] | select(.container_id == $c) | .host_ifname')
  # tc shows kernel program names: at most 15 characters (np_from_contain...)
  lab_node_exec "$1" tc filter show dev "$dev" ingress | grep -q np_from_contain &&
    lab_node_exec "$1" tc filter show dev "$dev" egress | grep -q np_to_container && return 0
  echo "lxc.bpf.c is not attached to $dev on $1:"
  lab_node_exec "$1" tc filter show dev "$dev" ingress
  return 1
}
check "lxc.bpf.c is attached to the host veth of c1 (n1) and c2 (n2)" eval 'attached n1 c1 && attached n2 c2'
require "echo servers in both pods" e2e_serve n1/c1 n2/c2

peer0=$(lxc_stat n1 0)
fib0=$(lxc_stat n1 1)
neigh0=$(lxc_stat n1 2)
arp0=$(lxc_stat n1 3)
require "capture of what n1 sends on the LAN" capture_start n1-pods n1
traffic lab_pod_exec n1 c1 -- connect "$IP2:8080" --count 10
check "c1 ($IP1, node 1) reaches c2 ($IP2, node 2) over TCP (10/10)" expect_ok 10
check "...and c2 sees c1's own address" expect_only_peer "$IP1"
traffic lab_pod_exec n1 c1 -- connect "$IP2:8080" --udp --count 5
check "c1 reaches c2 over UDP (5/5)" expect_ok 5
check "...and c2 sees c1's own address" expect_only_peer "$IP1"
traffic lab_pod_exec n2 c2 -- connect "$IP1:8080" --count 10
check "c2 reaches c1 over TCP (10/10)" expect_ok 10
check "...and c1 sees c2's own address" expect_only_peer "$IP2"
capture_stop n1-pods
check "the LAN carries c1's packets from $IP1 to $IP2 unchanged (no masquerade)" \
  expect_captured n1-pods ge 20 "c1 -> c2" "src host $IP1 and dst host $IP2"
check "c1's ARP for its router was answered by lxc.bpf.c" grew "$arp0" "$(lxc_stat n1 3)" "np_lxcstat_v1 ARP"
fwd_now=$(($(lxc_stat n1 1) + $(lxc_stat n1 2)))
check "n1 forwarded c1's packets with bpf_fib_lookup + redirect" grew $((fib0 + neigh0)) "$fwd_now" "np_lxcstat_v1 FIB+NEIGH"
check "n1 delivered c2's packets into c1 with bpf_redirect_peer" grew "$peer0" "$(lxc_stat n1 0)" "np_lxcstat_v1 PEER"

# A pod's TCP send leaves its eth0 as GSO packets (TSO on a veth), longer than the MTU: they are
# routed by the FIB too, none handed to the stack as too big (np_lxcstat_v1[STACK + FRAG_NEEDED]).
frag0=$(lxc_stat n1 $((8 + 8)))
big=$(head -c 40000 /dev/zero | tr '\0' x)
traffic lab_pod_exec n1 c1 -- connect "$IP2:8080" --count 5 --payload "$big"
check "c1 sends c2 a 40 kB request (5/5 echoed whole)" expect_ok 5
stayed() { # <before> <after> <what>
  (($2 == $1)) && return 0
  echo "$3: expected the counter to stay at $1, it is $2"
  return 1
}
check "...its GSO packets routed by the FIB, none handed to the stack as too big" \
  stayed "$frag0" "$(lxc_stat n1 $((8 + 8)))" "np_lxcstat_v1 STACK+FRAG_NEEDED"

# --- a ClusterIP through the per-packet translation --------------------------------------------
require "service default/pods (ClusterIP 10.43.0.70:80 -> c2)" \
  lab_agentctl n1 service upsert default/pods --port 80 --cluster-ip 10.43.0.70 --backend "$IP2:8080"
xlate0=$(lxc_stat n1 4)
# nsenter from the test's own cgroup: outside the node's cgroup, so no socket hook translates.
outside() { nsenter --net="/var/run/netns/$NP_LAB_PREFIX-n1-c1" "$@"; }
traffic outside -- connect 10.43.0.70:80 --count 10
check "c1, outside the socket-LB cgroup, reaches ClusterIP 10.43.0.70 (10/10)" expect_ok 10
check "...c2 sees c1's own address" expect_only_peer "$IP1"
check "...translated per packet by lxc.bpf.c" grew "$xlate0" "$(lxc_stat n1 4)" "np_lxcstat_v1 XLATE"
require "service default/pods-udp (ClusterIP 10.43.0.71:53/UDP -> c2)" \
  lab_agentctl n1 service upsert default/pods-udp --protocol udp --port 53 --cluster-ip 10.43.0.71 --backend "$IP2:8080"
traffic outside -- connect 10.43.0.71:53 --udp --count 5
check "...and a UDP ClusterIP (5/5)" expect_ok 5
check "...c2 sees c1's own address" expect_only_peer "$IP1"

require "service default/self (ClusterIP 10.43.0.72:80 -> c1 itself)" \
  lab_agentctl n1 service upsert default/self --port 80 --cluster-ip 10.43.0.72 --backend "$IP1:8080"
traffic outside -- connect 10.43.0.72:80 --count 5
check "c1 reaches a ClusterIP whose backend is c1 itself (hairpin, 5/5)" expect_ok 5
check "...and sees that connection come from the hairpin address 169.254.42.1" expect_only_peer 169.254.42.1

# --- restart -------------------------------------------------------------------------------------
prog_id() { # <node> <container>: the ID of the program on the pod veth's tc ingress
  local dev
  dev=$(agentctl_json "$1" endpoint list | jq -r --arg c "$2" '.endpoints[] | select(.container_id == $c) | .host_ifname')
  lab_node_exec "$1" tc filter show dev "$dev" ingress | sed -n 's/.* id \([0-9]*\) name .*/\1/p' | head -n 1
}
id_before=$(prog_id n1 c1)
require "kill -9 node 1's agent" lab_agent_stop n1 KILL
traffic lab_pod_exec n2 c2 -- connect "$IP1:8080" --count 5
check "while node 1's agent is dead c2 still reaches c1 (5/5)" expect_ok 5
traffic outside -- connect 10.43.0.70:80 --count 5
check "...and c1 still reaches the ClusterIP (5/5)" expect_ok 5
require "restart node 1's agent" lab_agent_start n1
require "...ready" lab_agent_wait n1 30
check "after the restart c1 still has $IP1" eval '[[ $(endpoint_ip n1 c1) == "$IP1" ]]'
check "...lxc.bpf.c is attached again" attached n1 c1
check "...the restarted agent's own program took over the veth (was $id_before)" \
  eval '[[ -n $id_before && -n $(prog_id n1 c1) && $(prog_id n1 c1) != "$id_before" ]]'
traffic lab_pod_exec n1 c1 -- connect "$IP2:8080" --count 10
check "after the restart c1 reaches c2 (10/10)" expect_ok 10
traffic lab_pod_exec n2 c2 -- connect "$IP1:8080" --count 10
check "...and c2 reaches c1 (10/10)" expect_ok 10
check "status still says Host Routing: BPF" expect_status_line n1 '^Host Routing: +BPF$'

# --- legacy host routing -----------------------------------------------------------------------
require "stop node 1's agent" lab_agent_stop n1
require "start node 1's agent with --enable-host-legacy-routing" lab_agent_start n1 --enable-host-legacy-routing=true
require "...ready" lab_agent_wait n1 30
check "status says Host Routing: Legacy with the reason" \
  expect_status_line n1 '^Host Routing: +Legacy \(--enable-host-legacy-routing\)$'
legacy0=$(lxc_stat n1 5)
traffic lab_pod_exec n1 c1 -- connect "$IP2:8080" --count 10
check "with legacy routing c1 reaches c2 through the stack (10/10)" expect_ok 10
check "...handed to the stack by lxc.bpf.c" grew "$legacy0" "$(lxc_stat n1 5)" "np_lxcstat_v1 LEGACY"

require "DEL default/web-c1" cni n1 DEL c1 n1-c1
require "DEL default/web-c2" cni n2 DEL c2 n2-c2
gone() {
  local left
  left=$(bpftool -j map dump pinned "$NP_LAB_DIR/bpffs/n1/nodepath/np_lxc4_v1" | jq length)
  ((left == 0)) && return 0
  echo "np_lxc4_v1 on n1 still holds $left entries after DEL"
  return 1
}
check "after DEL node 1's endpoint map is empty" gone

e2e_finish
