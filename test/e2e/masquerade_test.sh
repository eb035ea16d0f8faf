#!/usr/bin/env bash
# MasqueradePodToInternet: with --enable-bpf-masquerade a pod made through nodepath-cni on node 1
# reaches 203.0.113.10 behind the LAN router over TCP, UDP and ping, and that host sees node 1's
# address only (its own capture); the router has no route to the pods, so every answer proves the
# reverse translation. Pod-to-pod traffic to node 2 keeps the pod's address. Status says
# "Masquerading: BPF [ens192] 10.0.0.0/16 [IPv4: Enabled, IPv6: Disabled]" on node 1 and
# "Disabled" on node 2. With --install-no-conntrack-iptables-rules node 1's raw table holds the
# NOTRACK chains (once, across a restart) and agentctl cleanup removes them. With a one-port
# --bpf-masquerade-port-range a second flow to the same host and port is a counted drop in status.
#
# Lab: agents on n1 (masquerade, NOTRACK, from its config dir) and n2 (defaults); pods: n1-c1
# (CNI), n2-p1 (by hand); servers on n2-p1 and on the inet host.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init MasqueradePodToInternet npe_msq
E2E_LAB_MADE=1
require "lab topology up" lab_up
echo true >"$NP_LAB_DIR/n1/config/enable-bpf-masquerade"
echo true >"$NP_LAB_DIR/n1/config/install-no-conntrack-iptables-rules"
require "agent on n1 started (masquerade, NOTRACK)" lab_agent_start n1
require "agent on n2 started" lab_agent_start n2
require "agent on n1 ready" lab_agent_wait n1 30
require "agent on n2 ready" lab_agent_wait n2 30
N1=$NP_LAB_PREFIX-n1
SOCK=$NP_LAB_DIR/n1/run/agent.sock
CNIBIN=$NP_LAB_DIR/n1/cni/bin
NODE1=192.168.10.100
INET=203.0.113.10
conf() { printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s"}' "$SOCK"; }
cni() { # <command> <container> <ns suffix>: the plugin on n1 as a runtime runs it
  printf '%s' "$(conf)" | lab_node_exec n1 env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$3" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN" \
    CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-${2#c}" "$CNIBIN/nodepath-cni"
}
endpoint_ip() { agentctl_json n1 endpoint list | jq -r --arg c "$1" '.endpoints[] | select(.container_id == $c) | .ipv4'; }

lab_netns_create n1-c1
require "ADD pod default/web-1 on n1 through nodepath-cni" cni ADD c1 n1-c1
IP1=$(endpoint_ip c1)
require "echo server in n2-p1" e2e_serve n2/p1
inet_serve() {
  lab_bg serve-inet "$NP_LAB_DIR/logs/serve-inet.log" lab_host_exec inet \
    "$(lab__bin nptraffic)" serve --id inet --tcp 8080 --udp 8080 || return 1
  lab_wait_for_line "$NP_LAB_DIR/logs/serve-inet.log" 'serving' 10
}
mkdir -p "$NP_LAB_DIR/logs"
require "echo server on the internet host $INET" inet_serve
PCAP=$NP_LAB_DIR/logs/capture-inet.pcap
inet_capture() {
  lab_bg capture-inet "$NP_LAB_DIR/logs/capture-inet.log" lab_host_exec inet \
    tcpdump -i eth0 -Q in -nn -U --immediate-mode -s 128 -w "$PCAP" ip || return 1
  lab_wait_for_line "$NP_LAB_DIR/logs/capture-inet.log" 'listening on' 10
}
require "capture on the internet host's eth0" inet_capture

# --- out through node 1's address, back to the pod ------------------------------------------
traffic lab_pod_exec n1 c1 -- connect "$INET:8080" --count 10
check "the CNI pod ($IP1) reaches $INET over TCP (10/10)" expect_ok 10
check "...and $INET sees node 1's address ($NODE1), never the pod's" expect_only_peer "$NODE1"
traffic lab_pod_exec n1 c1 -- connect "$INET:8080" --udp --count 5
check "the pod reaches $INET over UDP (5/5)" expect_ok 5
check "...as $NODE1" expect_only_peer "$NODE1"
check "the pod pings $INET (3/3 answered)" lab_pod_exec n1 c1 ping -n -c 3 -i 0.2 -W 2 "$INET"
require "stop the capture" lab_kill capture-inet INT
seen() { tcpdump -r "$PCAP" -nn "$1" 2>/dev/null | wc -l; }
captured() {
  local from_node from_pod echo_req
  from_node=$(seen "src host $NODE1 and dst host $INET")
  from_pod=$(seen "src net 10.0.0.0/16")
  echo_req=$(seen "src host $NODE1 and icmp[icmptype] == icmp-echo")
  ((from_node >= 15 && from_pod == 0 && echo_req == 3)) && return 0
  echo "capture on $INET: $from_node packets from $NODE1 (want >= 15), $from_pod from pod addresses (want 0), $echo_req echo requests from $NODE1 (want 3)"
  tcpdump -r "$PCAP" -nn 2>/dev/null | head -n 8 | sed 's/^/  /'
  return 1
}
check "the capture on $INET shows node 1's address on TCP, UDP and ICMP, no pod address" captured

# --- never masqueraded: pod to pod ----------------------------------------------------------
traffic lab_pod_exec n1 c1 -- connect 10.0.2.10:8080 --count 5
check "the pod reaches n2-p1 (5/5)" expect_ok 5
check "...which sees the pod's own address $IP1" expect_only_peer "$IP1"

# --- status ---------------------------------------------------------------------------------
check "n1 status: Masquerading: BPF [ens192] 10.0.0.0/16 [IPv4: Enabled, IPv6: Disabled]" \
  expect_status_line n1 '^Masquerading: +BPF \[ens192\] 10\.0\.0\.0/16 \[IPv4: Enabled, IPv6: Disabled\]$'
check "n2 status: Masquerading: Disabled" expect_status_line n2 '^Masquerading: +Disabled$'

# --- NOTRACK rules --------------------------------------------------------------------------
raw() { ip netns exec "$N1" iptables -t raw -S; }
notrack_rules() {
  local out
  out=$(raw)
  [[ $(grep -c -- '-A PREROUTING -j NODEPATH_PRE_raw' <<<"$out") == 1 &&
    $(grep -c -- '-A OUTPUT -j NODEPATH_OUTPUT_raw' <<<"$out") == 1 &&
    $(grep -Ec -- '-A NODEPATH_(PRE|OUTPUT)_raw -[sd] 10\.0\.0\.0/16 .*-j CT --notrack' <<<"$out") == 4 ]] && return 0
  echo "iptables -t raw -S on n1:"
  sed 's/^/  /' <<<"$out"
  return 1
}
check "n1's raw table jumps once to NODEPATH_PRE_raw/NODEPATH_OUTPUT_raw with NOTRACK for 10.0.0.0/16" notrack_rules
check "n2 (flag off) has no NODEPATH chain" eval '! ip netns exec "$NP_LAB_PREFIX-n2" iptables -t raw -S | grep -q NODEPATH'
require "restart node 1's agent" lab_agent_stop n1
require "...start" lab_agent_start n1
require "...ready" lab_agent_wait n1 30
check "after the restart the rules are there once (idempotent)" notrack_rules
traffic lab_pod_exec n1 c1 -- connect "$INET:8080" --count 3
check "after the restart the pod still reaches $INET as $NODE1" eval 'expect_ok 3 && expect_only_peer "$NODE1"'

# --- exhaustion: one masquerade port, three flows to one host:port ---------------------------
require "restart node 1's agent with --bpf-masquerade-port-range 61000-61000" lab_agent_stop n1
echo 61000-61000 >"$NP_LAB_DIR/n1/config/bpf-masquerade-port-range"
require "...start" lab_agent_start n1
require "...ready" lab_agent_wait n1 30
traffic lab_pod_exec n1 c1 -- connect "$INET:9999" --udp --count 3 --source-port 50000 --timeout-ms 300
exhausted() {
  local out n
  out=$(lab_agentctl n1 status --verbose 2>&1) || true
  n=$(sed -nE 's/^ *egress +167 \(No mapping for NAT masquerade\) +([0-9]+) .*/\1/p' <<<"$out")
  [[ ${n:-0} == 2 ]] && return 0
  echo "expected 2 egress drops 167 (No mapping for NAT masquerade) in status, saw '${n:-none}':"
  grep -A12 'Datapath counters' <<<"$out" | sed 's/^/  /'
  return 1
}
check "the 2nd and 3rd flow find no port: 2 drops 167 (No mapping for NAT masquerade) in status" exhausted

restart_n1() { lab_agent_stop n1 && lab_agent_start n1 && lab_agent_wait n1 30; }
echo false >"$NP_LAB_DIR/n1/config/install-no-conntrack-iptables-rules"
require "restart node 1's agent with install-no-conntrack-iptables-rules false" restart_n1
check "...and n1's raw table no longer holds the NODEPATH chains" eval '! raw | grep -q NODEPATH'
echo true >"$NP_LAB_DIR/n1/config/install-no-conntrack-iptables-rules"
require "restart node 1's agent with the flag on again" restart_n1
check "...and the rules are back" notrack_rules

require "DEL default/web-1" cni DEL c1 n1-c1
require "stop node 1's agent" lab_agent_stop n1
check "agentctl cleanup (agent stopped) succeeds" lab_agentctl n1 cleanup --cni-conf-dir "$NP_LAB_DIR/n1/cni/net.d" \
  --bpf-root "$NP_LAB_DIR/bpffs/n1"
check "...and n1's raw table holds nothing of ours" eval '! raw | grep -q NODEPATH'

e2e_finish
