#!/usr/bin/env bash
# NodePortSnatRangeClashRefusesStart: the SNAT source ports of NodePort flows stay clear of the
# node's ephemeral ports. An agent configured with --bpf-lb-snat-port-range overlapping the node's
# net.ipv4.ip_local_port_range refuses to start, naming both ranges and the flag; with the node's
# ephemeral ports moved out of the way the same flag starts. The agent's default picks a range
# outside both by itself (the lab's nodes: 49152-65535; a stock 32768-60999 leaves 61000-65535).
#
# Lab: n1 (its own network namespace, so its ip_local_port_range is its own).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init NodePortSnatRangeClashRefusesStart npe_snatr
e2e_lab_up n1
AGENT=$(lab__bin agent)

log_says() { grep -Eq -- "$1" "$NP_LAB_DIR/n1/agent.log" || { echo "agent.log has no /$1/:"; tail -5 "$NP_LAB_DIR/n1/agent.log"; return 1; }; }
check "the default SNAT range leaves the node's ephemeral ports (32768-49151) alone" \
  log_says 'SNAT source ports 49152-65535 \(auto; node-port-range 30000-32767, ip_local_port_range 32768-49151\)'

require "stop n1's agent" lab_agent_stop n1
# agent <flags>: an agent on n1 in the foreground; its output and exit status.
agent() {
  lab_node_exec n1 timeout 30 "$AGENT" --node-name n1 --devices ens192 --bpf-root "$NP_LAB_DIR/bpffs/n1" \
    --cgroup-root "$LAB_CGROOT/n1" --run-dir "$NP_LAB_DIR/n1/run" --config-dir "$NP_LAB_DIR/n1/config" "$@"
}
check "--bpf-lb-snat-port-range 40000-50000 on a node with ip_local_port_range 32768-49151: exit 1, names both and the flag" \
  expect_refused 1 '--bpf-lb-snat-port-range 40000-50000: overlaps the node.s ephemeral ports \(net\.ipv4\.ip_local_port_range 32768-49151\).*set --bpf-lb-snat-port-range' \
  agent --bpf-lb-snat-port-range 40000-50000

require "narrow n1's ephemeral ports to 32768-39999" \
  lab_node_exec n1 sh -c 'echo "32768 39999" > /proc/sys/net/ipv4/ip_local_port_range'
require "the same flag now starts an agent" lab_agent_start n1 --bpf-lb-snat-port-range 40000-50000
require "...that becomes ready" lab_agent_wait n1 30
check "...with SNAT ports 40000-50000" \
  log_says 'SNAT source ports 40000-50000 \(--bpf-lb-snat-port-range; node-port-range 30000-32767, ip_local_port_range 32768-39999\)'

e2e_finish
