#!/usr/bin/env bash
# XdpRestartKeepsConnections: with --bpf-lb-acceleration=native the XDP program is a bpf_link
# pinned next to the maps, so it outlives the agent: a held NodePort connection (client -> node 1
# -> n2-p1, SNAT'd, forwarded by XDP_TX) carries data while the agent is dead (SIGKILL), and after
# the restart, when the new agent has replaced the program in the same link (atomically: the
# link ID stays, the program ID changes) and the new program's own counters show it forwarding
# the connection. Restarting with acceleration disabled detaches XDP cleanly (no program on the
# device, no pin) and tc carries on with the same connection.
#
# Lab: agent on n1 (acceleration native); echo server in n2-p1.
#   n1: default/web TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init XdpRestartKeepsConnections npe_xrs
e2e_lab_up
require "agent on n1 started with --bpf-lb-acceleration=native" lab_agent_start n1 --bpf-lb-acceleration=native
require "...and it becomes ready" lab_agent_wait n1 30
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --node-port 30080 --backend 10.0.2.10:8080

PIN=$NP_LAB_DIR/bpffs/n1/nodepath/links/xdp_ens192
link_id() { bpftool -j link show pinned "$PIN" | jq -r '.id'; }
xdp_prog_id() { ip -n "$NP_LAB_PREFIX-n1" -j -d link show dev ens192 | jq -r '.[0].xdp.prog.id // 0'; }

check "ens192 runs XDP in driver mode" expect_xdp_native n1 ens192
require "the XDP link is pinned at $PIN" test -e "$PIN"
link0=$(link_id)
prog0=$(xdp_prog_id)
require "client holds a connection to NodePort 192.168.10.100:30080" \
  hold_start np lab_client_exec -- 192.168.10.100:30080
tx0=$(xdp_counter n1 ens192 tx)
check "held connection carries data (agent running)" expect_hold_echo np np-before n2-p1 192.168.10.100
check "...forwarded by XDP (XDP_TX grew)" expect_xdp_counter_grew n1 ens192 tx "$tx0" 2

old_pid=$(<"$NP_LAB_DIR/n1/agent.pid")
require "kill -9 node 1's agent" lab_agent_stop n1 KILL
check "node 1's agent (pid $old_pid) is gone" expect_pid_gone "$old_pid"
same_prog() {
  local now
  now=$(xdp_prog_id)
  [[ $now == "$1" && $(xdp_mode n1 ens192) == driver ]] && return 0
  echo "expected XDP program $1 in driver mode on ens192, the kernel says program $now, $(xdp_mode n1 ens192)"
  return 1
}
check "XDP stays attached while the agent is dead (program $prog0, driver mode)" same_prog "$prog0"
check "held connection carries data while the agent is dead" expect_hold_echo np np-dead n2-p1 192.168.10.100
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5
check "new connections work while the agent is dead (5/5)" expect_ok 5

require "restart node 1's agent (acceleration native)" lab_agent_start n1 --bpf-lb-acceleration=native
require "...and it becomes ready" lab_agent_wait n1 30
replaced() {
  local link prog
  link=$(link_id)
  prog=$(xdp_prog_id)
  if [[ $link == "$link0" && $prog != "$prog0" && $prog != 0 ]]; then
    return 0
  fi
  echo "expected link $link0 to stay and carry a new program (was $prog0), saw link ${link:-none}, program $prog"
  return 1
}
check "the restarted agent replaced the program in the pinned link (same link, new program)" replaced
check "...which is its own (status: native, attached)" expect_xdp_native n1 ens192
tx0=$(xdp_counter n1 ens192 tx)
check "held connection carries data after the restart" expect_hold_echo np np-after n2-p1 192.168.10.100
check "...forwarded by the new XDP program (its XDP_TX counter grew)" expect_xdp_counter_grew n1 ens192 tx "$tx0" 2
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 10
check "after the restart new connections work (10/10)" expect_ok 10

require "restart node 1's agent with acceleration disabled" lab_agent_stop n1
require "...started with --bpf-lb-acceleration=disabled" lab_agent_start n1 --bpf-lb-acceleration=disabled
require "...and it becomes ready" lab_agent_wait n1 30
check "XDP is detached from ens192" expect_no_xdp n1 ens192
no_pin() {
  [[ ! -e $PIN ]] && return 0
  echo "the link pin $PIN is still there"
  return 1
}
check "...and its link pin is gone" no_pin
check "agentctl status --verbose says 'XDP Acceleration: Disabled'" expect_status_line n1 '^XDP Acceleration: +Disabled$'
check "held connection carries data through tc alone" expect_hold_echo np np-tc n2-p1 192.168.10.100

check "...it is still the same TCP connection (one client port, no error)" expect_hold_one_connection np 5 n2-p1
check "agentctl status is Ok" expect_status_ok n1

e2e_finish
