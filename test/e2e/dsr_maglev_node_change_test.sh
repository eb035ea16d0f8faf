#!/usr/bin/env bash
# DsrMaglevConnectionSurvivesNodeChange: bpf-lb-mode=dsr and --bpf-lb-algorithm=maglev on both
# nodes, the same service on both. A LAN client holds TCP connections to an external IP it routes
# via node 1; then its route to that address moves to node 2 (what an L2 announcement failover or
# an ECMP rehash does). Node 2 never saw the connections' SYNs, yet every held connection keeps
# carrying data, answered by the backend it had before (Maglev: every node picks the same backend
# for a flow), and node 2 keeps no conntrack entry for the connections it carries that way.
#
# Lab: agents on n1 and n2 (dsr from their config dirs, maglev by flag); echo servers in n1-p1
# (10.0.1.10:8080) and n2-p1 (10.0.2.10:8080).
#   both: default/vip TCP external IP 172.16.0.50:80 -> 10.0.1.10:8080, 10.0.2.10:8080
#   client: 172.16.0.50/32 via 192.168.10.100 (n1), then via 192.168.10.101 (n2)
# With E2E_ACCELERATION=native (XdpDsrMaglevConnectionSurvivesNodeChange) XDP runs on both
# nodes. E2E_LB_MODE=snat (by hand) is the control: the moved connections must then fail their
# "still carries data" checks.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init "${E2E_ACCELERATION:+Xdp}DsrMaglevConnectionSurvivesNodeChange" npe_dsrmv
E2E_LAB_MADE=1
require "lab topology up" lab_up
for node in n1 n2; do
  echo "${E2E_LB_MODE:-dsr}" >"$NP_LAB_DIR/$node/config/bpf-lb-mode"
  if [[ -n ${E2E_ACCELERATION:-} ]]; then echo "$E2E_ACCELERATION" >"$NP_LAB_DIR/$node/config/bpf-lb-acceleration"; fi
  require "agent on $node started (dsr, maglev)" lab_agent_start "$node" --bpf-lb-algorithm maglev
done
for node in n1 n2; do
  require "agent on $node ready" lab_agent_wait "$node" 30
done
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
for node in n1 n2; do
  require "service default/vip (external IP 172.16.0.50:80, 2 backends) on $node" \
    lab_agentctl "$node" service upsert default/vip --port 80 --external-ip 172.16.0.50 \
    --backend 10.0.1.10:8080 --backend 10.0.2.10:8080
done
require "client routes 172.16.0.50 via n1" lab_client_exec ip route replace 172.16.0.50/32 via 192.168.10.100

# Eight connections: Maglev spreads them over both backends, so both ways a moved connection can
# go are taken (its backend on the new node: DNAT to the local pod; on the old one: DSR back to it).
declare -A backend_of=()
conns=(c1 c2 c3 c4 c5 c6 c7 c8)
for c in "${conns[@]}"; do
  require "client holds connection $c to 172.16.0.50:80 (via n1)" hold_start "$c" lab_client_exec -- 172.16.0.50:80
done
first_echo() { # <conn>: the connection echoes; remembers its backend
  local reply id ip
  reply=$(hold_send "$1" "$1-before") || { printf '%s\n' "$reply"; return 1; }
  read -r id ip _ <<<"$reply"
  [[ $ip == 192.168.10.200:* ]] || { echo "the backend saw $ip, not the client (DSR keeps its address)"; return 1; }
  backend_of[$1]=$id
}
for c in "${conns[@]}"; do
  check "$c echoes via n1" first_echo "$c"
done
echo "backends before the move: $(for c in "${conns[@]}"; do printf '%s=%s ' "$c" "${backend_of[$c]:-?}"; done)"

n2_mac=$(lab_node_exec n2 ip -o link show ens192 | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p')
[[ -n $n2_mac ]] || { echo "no MAC for n2's ens192"; n2_mac=unknown; }
require "capture of what the client sends" capture_start moved client
require "client's route to 172.16.0.50 moves to n2" lab_client_exec ip route replace 172.16.0.50/32 via 192.168.10.101
for c in "${conns[@]}"; do
  check "$c still carries data after the move, answered by the same backend (${backend_of[$c]:-?})" \
    expect_hold_echo "$c" "$c-after" "${backend_of[$c]:-none}" 192.168.10.200
done
require "capture stopped" capture_stop moved
check "the client's segments after the move went to n2 ($n2_mac)" \
  expect_captured moved ge 8 "segments to 172.16.0.50 sent to n2's MAC" "ether dst $n2_mac and dst host 172.16.0.50"
# n2 holds no entry keyed client -> 172.16.0.50 (its own DSR backend-side entries for n2-p1's
# connections, client -> 10.0.2.10 and back, are from the SYNs n1 forwarded, and stay).
no_ct_on_n2() {
  local out n
  out=$(agentctl_json n2 bpf ct list) || { echo "agentctl bpf ct list failed on n2: $out"; return 1; }
  n=$(jq '[.entries[]? | select(.dst == "172.16.0.50")] | length' <<<"$out") || return 1
  ((n == 0)) && return 0
  echo "expected no conntrack entry to 172.16.0.50 on n2, saw $n:"
  jq -c '.entries[]? | select(.dst == "172.16.0.50")' <<<"$out" | head -n 5
  return 1
}
check "n2 keeps no conntrack entry for the moved connections" no_ct_on_n2

if [[ -n ${E2E_ACCELERATION:-} ]]; then
  for node in n1 n2; do
    check "$node: ens192 runs XDP in driver mode" expect_xdp_native "$node" ens192
  done
  # After the move n2's XDP sends n1-p1's connections back to n1 itself (it did no XDP_TX
  # before): at least their one data segment each.
  on_n1=0
  for c in "${conns[@]}"; do [[ ${backend_of[$c]:-} == n1-p1 ]] && on_n1=$((on_n1 + 1)); done
  # Without the XDP -> tc hand-off (a kernel without bpf_xdp_adjust_meta for XDP) segments n2 has
  # no flow for are tc's: XDP defers them.
  if xdp_hand_off n2 ens192; then n2_counter=tx; else n2_counter=deferred; fi
  check "n2's XDP program forwarded the segments of the $on_n1 moved connections to n1-p1, or left them to tc (>= $on_n1 $n2_counter)" \
    expect_xdp_counter_grew n2 ens192 "$n2_counter" 0 "$on_n1"
fi

e2e_finish
