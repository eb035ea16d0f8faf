#!/usr/bin/env bash
# ConntrackListAndGcKeepsLiveFlows: what `agentctl bpf ct list` and `bpf nat list` show is the
# kernel's conntrack state of real flows, and the GC removes closed flows' entries (both
# directions) while a live flow keeps its own and keeps working.
#
# Lab: agents on n1 (conntrack GC every second) and n2; echo server in n2-p1.
#   n1: default/web TCP NodePort 30080 -> 10.0.2.10:8080 (remote: SNAT to 192.168.10.100)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

frontend=192.168.10.100:30080
e2e_init ConntrackListAndGcKeepsLiveFlows npe_ctl
e2e_lab_up
require "agent on n1 started (--conntrack-gc-interval 1s)" lab_agent_start n1 --conntrack-gc-interval 1s
require "agent on n2 started" lab_agent_start n2
require "agent on n1 ready" lab_agent_wait n1 30
require "agent on n2 ready" lab_agent_wait n2 30
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --node-port 30080 --backend 10.0.2.10:8080

require "client holds a connection to $frontend" hold_start live lab_client_exec -- "$frontend"
check "held connection carries data" expect_hold_echo live live-1 n2-p1 192.168.10.100
live_port=$(sed -n 's/^connected local=192\.168\.10\.200:\([0-9]*\).*/\1/p' <<<"$HOLD_CONNECTED")
require "the held connection's client port is known (from '$HOLD_CONNECTED')" test -n "$live_port"

traffic lab_client_exec -- connect "$frontend" --count 5
check "5 short connections succeed (and close)" expect_ok 5

# The held flow, both directions, as the user reads them: the client's tuple rewritten to the
# node's SNAT port and the backend; the backend's reply to that port rewritten back.
nat_lines() { lab_agentctl n1 bpf nat list --address 192.168.10.200; }
expect_live_pair() {
  local out fwd rev snat
  out=$(nat_lines) || { printf '%s\n' "$out"; return 1; }
  fwd=$(grep -E "^TCP IN 192\.168\.10\.200:$live_port -> 192\.168\.10\.100:30080 XLATE_SRC 192\.168\.10\.100:[0-9]+ XLATE_DST 10\.0\.2\.10:8080 .*flags=service,snat,redirect" <<<"$out") || {
    echo "no service entry of the held flow (client port $live_port) in:"
    printf '%s\n' "$out"
    return 1
  }
  snat=$(sed -E 's/.*XLATE_SRC 192\.168\.10\.100:([0-9]+) .*/\1/' <<<"$fwd")
  rev=$(grep -E "^TCP IN 10\.0\.2\.10:8080 -> 192\.168\.10\.100:$snat XLATE_SRC 192\.168\.10\.100:30080 XLATE_DST 192\.168\.10\.200:$live_port .*flags=reply,snat" <<<"$out") || {
    echo "no reply entry of the held flow (SNAT port $snat) in:"
    printf '%s\n' "$out"
    return 1
  }
}
check "bpf nat list --address 192.168.10.200 shows the held flow's two entries" expect_live_pair

# Closed flows: entries of the client's other ports, flagged closing (10 s lifetime).
closed_entries() {
  lab_agentctl n1 -o json bpf ct list --address 192.168.10.200 |
    jq --argjson p "$live_port" '[.entries[]? | select(.flags | index("closing")) | select(.sport != $p and .xlate_dport != $p)] | length'
}
expect_closed_at_least() {
  local n
  n=$(closed_entries) || return 1
  ((n >= $1)) || { echo "expected at least $1 entries of closed flows, saw $n"; return 1; }
}
expect_closed_none() {
  local n
  n=$(closed_entries) || return 1
  ((n == 0)) || { echo "expected the GC to have removed every closed flow's entries, $n remain:"; lab_agentctl n1 bpf ct list --address 192.168.10.200; return 1; }
}
check "bpf ct list shows the 5 closed flows' entries (both directions: at least 10)" expect_closed_at_least 10
expect_no_entries_for() {
  local out
  out=$(lab_agentctl n1 bpf ct list --address "$1") || { printf '%s\n' "$out"; return 1; }
  [[ $out == "no conntrack entries" ]] || { echo "expected 'no conntrack entries', saw:"; printf '%s\n' "$out"; return 1; }
}
expect_only_table() {
  local n
  n=$(lab_agentctl n1 -o json bpf ct list --table "$1" |
    jq --arg t "$1" '[.entries[]?] | if length == 0 then -1 else ([.[] | select(.table != $t)] | length) end') || return 1
  ((n == 0)) || { echo "expected entries, all of table $1 (-1: none at all; else the number of others): $n"; return 1; }
}
check "bpf ct list --address 203.0.113.9 (no such flow) says so" expect_no_entries_for 203.0.113.9
check "bpf ct list --table main lists main-table entries only" expect_only_table main

# 10 s closing lifetime + 2 s GC grace + a 1 s interval: well within 30 s.
check "the GC removes every closed flow's entries" eventually 30 expect_closed_none
check "...while the held flow keeps both of its entries" expect_live_pair
check "...and keeps working" expect_hold_echo live live-2 n2-p1 192.168.10.100
expect_gc_deleted() {
  local out
  out=$(lab_agentctl n1 status --verbose) || true
  grep -Eq '^  GC: [0-9]+ runs, the last [0-9]+ s ago took' <<<"$out" || { echo "no GC line in:"; printf '%s\n' "$out"; return 1; }
  grep -Eq '^  np_ct4_v1 +established +[0-9]+ +[0-9]+ ' <<<"$out" || { echo "no main table row in:"; printf '%s\n' "$out"; return 1; }
}
check "status --verbose shows the tables and the last GC run" expect_gc_deleted

e2e_finish
