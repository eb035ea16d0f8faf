#!/usr/bin/env bash
# RestartStormKeepsConnections: 20 x `kill -9` of node 1's agent, each followed by a restart,
# while 100 held TCP connections go through its NodePort (tc path, SNAT to a backend on node 2)
# and new connections keep arriving: none of the held connections breaks and none of the new
# ones is refused. Every restart adopts the pinned maps and writes nothing to them.
#
# Lab: agents on n1 and n2; echo server in n2-p1.
#   n1: default/web TCP NodePort 30080 -> 10.0.2.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELD=${E2E_STORM_HELD:-100}
RESTARTS=${E2E_STORM_RESTARTS:-20}

e2e_init RestartStormKeepsConnections npe_storm
e2e_lab_up n1 n2
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --node-port 30080 \
  --backend 10.0.2.10:8080

open_all() {
  local i
  for ((i = 1; i <= HELD; i++)); do
    hold_start "c$i" lab_client_exec -- 192.168.10.100:30080 || { echo "held connection $i did not open"; return 1; }
  done
}
require "client opens $HELD held connections to NodePort 192.168.10.100:30080" open_all

# New connections all along: batches of 5 until the stop file appears; one summary line each.
CHURN_LOG=$NP_LAB_DIR/logs/churn.log
CHURN_STOP=$NP_LAB_DIR/churn.stop
churn() {
  while [[ ! -e $CHURN_STOP ]]; do
    lab_client_exec "$NPTRAFFIC" connect 192.168.10.100:30080 --count 5 --timeout-ms 3000 2>&1 |
      grep -E '^(ok=|attempt )' || true
  done
}
require "new connections start arriving" lab_bg churn "$CHURN_LOG" churn

lb_before=$(agentctl_json n1 bpf lb list)
storm() {
  local i pid
  for ((i = 1; i <= RESTARTS; i++)); do
    pid=$(<"$NP_LAB_DIR/n1/agent.pid")
    lab_agent_stop n1 KILL || { echo "restart $i: kill -9 failed"; return 1; }
    expect_pid_gone "$pid" || return 1
    lab_agent_start n1 || { echo "restart $i: the agent did not start"; return 1; }
    lab_agent_wait n1 30 || { echo "restart $i: the agent did not become ready (Ok)"; return 1; }
    # Some held connections carry data between restarts, so traffic is live throughout.
    expect_hold_echo "c$i" "r$i" n2-p1 192.168.10.100 || { echo "restart $i: held connection c$i broke"; return 1; }
  done
}
check "$RESTARTS x kill -9 and restart of node 1's agent, each ready again" storm

stop_churn() {
  touch "$CHURN_STOP"
  lab_poll 30 lab__not_running churn
}
require "stop the new connections" stop_churn

all_held_echo() {
  local i broken=0
  for ((i = 1; i <= HELD; i++)); do
    expect_hold_echo "c$i" "end$i" n2-p1 192.168.10.100 >/dev/null || { broken=$((broken + 1)); echo "c$i broke"; }
  done
  echo "$((HELD - broken)) of $HELD held connections carry data"
  ((broken == 0))
}
check "all $HELD held connections still carry data after the storm (0 broken)" all_held_echo

no_refused() {
  local ok fail
  read -r ok fail < <(awk -F'[= ]' '/^ok=/ { ok += $2; fail += $4 } END { print ok + 0, fail + 0 }' "$CHURN_LOG")
  echo "new connections during the storm: ${ok:-0} succeeded, ${fail:-0} failed"
  grep -E '^attempt ' "$CHURN_LOG" | head -n 5
  ((${ok:-0} >= 50 && ${fail:-1} == 0))
}
check "every new connection during the storm succeeded (0 refused, at least 50 made)" no_refused

unchanged_maps() {
  local now
  now=$(agentctl_json n1 bpf lb list) || return 1
  [[ $now == "$lb_before" ]] && return 0
  echo "the service map changed across the restarts:"
  diff <(printf '%s\n' "$lb_before") <(printf '%s\n' "$now") | head -n 20
  return 1
}
check "the kernel's service map is what it was before the storm (restarts adopt, never rebuild)" unchanged_maps
check "node 1's agent is Ok" expect_status_ok n1

e2e_finish
