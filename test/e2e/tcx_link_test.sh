#!/usr/bin/env bash
# TcxLinkKeepsConnections: on a kernel with tcx (6.6+) the native device's tc programs are tcx
# links pinned next to the maps, not clsact filters: `agentctl status` says so, `tc filter show`
# lists nothing of ours, and the links outlive the agent. A held NodePort connection (client ->
# node 1 -> n2-p1, SNAT'd by tc) carries data while the agent is dead (SIGKILL) and after the
# restart, when the new agent has replaced the programs in the same links (atomically: link IDs
# stay, program IDs change). An older agent's clsact filters (one in place of a link, one beside
# a link that stayed, at our handle and priority, set up while no agent runs) are taken over by
# the next agent: the links are there and the filters gone, with the connection carried
# throughout.
#
# Lab: agent on n1; echo server in n2-p1.
#   n1: default/web TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init TcxLinkKeepsConnections npe_tcx
e2e_lab_up
require "agent on n1 started" lab_agent_start n1
require "...and it becomes ready" lab_agent_wait n1 30
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --node-port 30080 --backend 10.0.2.10:8080

N1=$NP_LAB_PREFIX-n1
LINKS=$NP_LAB_DIR/bpffs/n1/nodepath/links
link_id() { bpftool -j link show pinned "$LINKS/tcx_ens192_$1" 2>/dev/null | jq -r '.id // empty'; }
link_prog() { bpftool -j link show pinned "$LINKS/tcx_ens192_$1" 2>/dev/null | jq -r '.prog_id // empty'; }
tc_filters() { tc -n "$N1" filter show dev ens192 ingress; tc -n "$N1" filter show dev ens192 egress; }

on_tcx() { # the programs run from tcx links: status, pins, no clsact filter of ours
  local st dev in eg
  st=$(lab_agentctl n1 -o json status 2>&1) || { echo "agentctl status: $st"; return 1; }
  dev=$(jq -c '.devices[] | select(.name == "ens192") | {tc_ingress, tc_egress, tc_link}' <<<"$st")
  in=$(tcx_prog "$LINKS/tcx_ens192_ingress")
  eg=$(tcx_prog "$LINKS/tcx_ens192_egress")
  if [[ $dev == '{"tc_ingress":true,"tc_egress":true,"tc_link":"tcx"}' && $in == np_from_netdev &&
    $eg == np_to_netdev && -z $(tc_filters) ]]; then
    return 0
  fi
  echo "status: $dev; pinned links run '${in:-none}' and '${eg:-none}'; tc filters: '$(tc_filters)'"
  return 1
}
check "ens192's tc programs are tcx links (status 'tcx', pinned, no clsact filter)" on_tcx
check "agentctl status --verbose shows the device attached through tcx" \
  expect_status_line n1 '^ens192 .* yes \(tcx\) +yes \(tcx\) '
in0=$(link_id ingress) eg0=$(link_id egress)
pin0=$(link_prog ingress) pout0=$(link_prog egress)

require "client holds a connection to NodePort 192.168.10.100:30080" \
  hold_start np lab_client_exec -- 192.168.10.100:30080
check "held connection carries data (agent running)" expect_hold_echo np np-before n2-p1 192.168.10.100

old_pid=$(<"$NP_LAB_DIR/n1/agent.pid")
require "kill -9 node 1's agent" lab_agent_stop n1 KILL
check "node 1's agent (pid $old_pid) is gone" expect_pid_gone "$old_pid"
check "held connection carries data while the agent is dead" expect_hold_echo np np-dead n2-p1 192.168.10.100

require "restart node 1's agent" lab_agent_start n1
require "...and it becomes ready" lab_agent_wait n1 30
replaced() {
  local in eg pin pout
  in=$(link_id ingress) eg=$(link_id egress) pin=$(link_prog ingress) pout=$(link_prog egress)
  if [[ $in == "$in0" && $eg == "$eg0" && -n $pin && $pin != "$pin0" && -n $pout && $pout != "$pout0" ]]; then
    return 0
  fi
  echo "expected links $in0/$eg0 to stay with new programs (were $pin0/$pout0), saw links ${in:-none}/${eg:-none} running ${pin:-none}/${pout:-none}"
  return 1
}
check "the restarted agent replaced the programs in the pinned links (same links, new programs)" replaced
check "...still tcx, no clsact filter" on_tcx
check "held connection carries data after the restart" expect_hold_echo np np-after n2-p1 192.168.10.100

# An older agent's datapath: the same programs as a clsact filter at handle 1, priority 1.
OLD=$NP_LAB_DIR/bpffs/n1/old_from_netdev
require "kill -9 node 1's agent again" lab_agent_stop n1 KILL
to_clsact() { # <direction> <tcx link kept: yes|no>
  bpftool prog pin id "$(link_prog "$1")" "$OLD" &&
    { tc -n "$N1" qdisc show dev ens192 | grep -q clsact || tc -n "$N1" qdisc add dev ens192 clsact; } &&
    tc -n "$N1" filter add dev ens192 "$1" pref 1 handle 1 bpf da object-pinned "$OLD" &&
    rm -f "$OLD" && { [[ $2 == yes ]] || rm -f "$LINKS/tcx_ens192_$1"; }
}
require "ens192's ingress program moved from its tcx link to a clsact filter (as an older agent left it)" \
  to_clsact ingress no
require "...and a clsact filter beside the egress link (a rollback's, while the link stayed)" to_clsact egress yes
on_clsact() {
  local f
  f=$(tc_filters)
  [[ $f == *np_from_netdev* && $f == *np_to_netdev* && ! -e $LINKS/tcx_ens192_ingress &&
    -e $LINKS/tcx_ens192_egress ]] && return 0
  echo "tc filters: '$f'; link pins: $(ls "$LINKS" 2>&1)"
  return 1
}
check "...tc shows both filters, only the egress pin is left" on_clsact
check "held connection carries data through the clsact filter" expect_hold_echo np np-clsact n2-p1 192.168.10.100
require "restart node 1's agent" lab_agent_start n1
require "...and it becomes ready" lab_agent_wait n1 30
check "the new agent took over: tcx links again (a new one for ingress, egress's updated), both clsact filters removed" on_tcx
check "held connection carries data after the take-over" expect_hold_echo np np-taken n2-p1 192.168.10.100

check "...it is still the same TCP connection (one client port, no error)" expect_hold_one_connection np 6 n2-p1
check "agentctl status is Ok" expect_status_ok n1

e2e_finish
