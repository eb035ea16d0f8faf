#!/usr/bin/env bash
# FlowsAgentctlAndHubble: lab traffic through the NodePort path shows up as flows: `agentctl flows`
# lists the translated connection (client -> backend, SNAT'd source, the service's name, verdict
# FORWARDED) and the dropped one (SERVICE_BACKEND_NOT_FOUND); --follow streams a new flow; the
# real hubble CLI (github.com/cilium/cilium v1.20.2, built by scripts/lib/gotools.sh) reads the
# same flows from the agent's unix socket and over TCP :4244, and `hubble status` is healthy.
#
# Lab: agents on n1 and n2; echo server in n2-p1 (10.0.2.10:8080).
#   n1: default/remote TCP NodePort 30080 -> 10.0.2.10:8080 (remote: SNAT)
#       default/empty  TCP NodePort 30090, no backends (drop)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$E2E_REPO/scripts/lib/gotools.sh"

e2e_init FlowsAgentctlAndHubble npe_flw
HUBBLE=$(np_go_tool hubble) || { fail FlowsAgentctlAndHubble "no hubble CLI (scripts/setup.sh builds it; needs go)"; exit 1; }
e2e_lab_up n1 n2
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/remote (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/remote --port 80 --node-port 30080 --backend 10.0.2.10:8080
require "service default/empty (TCP NodePort 30090, no backends) on n1" \
  lab_agentctl n1 service upsert default/empty --port 80 --node-port 30090

traffic lab_client_exec -- connect 192.168.10.100:30080 --count 3
check "client -> 192.168.10.100:30080: 3/3 connections succeed" expect_ok 3
traffic lab_client_exec -- connect 192.168.10.100:30090 --count 1 --connect-only --timeout-ms 500
check "client -> 192.168.10.100:30090 (no backends): the attempt fails" expect_all_fail 1 'connect: timed out'

HSOCK=$NP_LAB_DIR/n1/run/hubble.sock

# expect_flow_line <regex> [agentctl flows args...]: a line of `agentctl flows` on n1 matches.
expect_flow_line() {
  local re=$1 out
  shift
  out=$(lab_agentctl n1 flows --last 200 "$@" 2>&1) || { echo "agentctl flows failed: $out"; return 1; }
  if grep -Eq -- "$re" <<<"$out"; then
    return 0
  fi
  echo "expected a line matching /$re/ in agentctl flows $*, saw:"
  head -n 20 <<<"$out" | e2e__indent
  return 1
}
check "agentctl flows: the SYN to the remote backend, SNAT'd, named after its service, to-network FORWARDED" \
  eventually 5 expect_flow_line \
  '^[A-Z][a-z]{2} [ 0-9]{2} [0-9:.]+: 192\.168\.10\.200:[0-9]+ \(as 192\.168\.10\.100\) -> 10\.0\.2\.10:8080 \(svc default/remote\) to-network FORWARDED \(TCP Flags: SYN\)$'
check "agentctl flows: the reply comes back translated to the client" \
  expect_flow_line '^.*: 10\.0\.2\.10:8080 \(as 192\.168\.10\.100\) -> 192\.168\.10\.200:[0-9]+ \(reply of svc default/remote\) to-network FORWARDED \(TCP Flags: SYN, ACK\)$'
check "agentctl flows --verdict DROPPED: the SYN to the empty service, with its reason" \
  expect_flow_line '^.*: 192\.168\.10\.200:[0-9]+ -> 192\.168\.10\.100:30090 from-network DROPPED \(SERVICE_BACKEND_NOT_FOUND\) \(TCP Flags: SYN\)$' \
  --verdict DROPPED
expect_no_forwarded_in_drop_filter() {
  local out
  out=$(lab_agentctl n1 flows --last 200 --verdict DROPPED 2>&1) || { echo "agentctl flows failed: $out"; return 1; }
  if grep -q FORWARDED <<<"$out"; then
    echo "--verdict DROPPED listed a forwarded flow:"; grep FORWARDED <<<"$out" | head -n 3 | e2e__indent
    return 1
  fi
}
check "...and that filter lists no forwarded flow" expect_no_forwarded_in_drop_filter
check "agentctl flows --to-port 30090 --protocol tcp: only that flow" \
  expect_flow_line '30090 from-network DROPPED' --to-port 30090 --protocol tcp

# The flows as (source, destination, dport, verdict) tuples, sorted, from JSON lines on stdin.
flow_tuples() {
  jq -r '.flow | [.IP.source, .IP.destination, ((.l4.TCP.destination_port // 0)|tostring), .verdict] | join(" ")' | sort
}
expect_hubble_same_flows() {
  local ours theirs
  ours=$(lab_agentctl n1 flows --last 500 -o json | flow_tuples) || { echo "agentctl flows -o json failed"; return 1; }
  theirs=$(lab_node_exec n1 "$HUBBLE" observe --server "unix://$HSOCK" --last 500 -o json 2>&1 | flow_tuples) ||
    { echo "hubble observe failed"; return 1; }
  if [[ -n $ours && $ours == "$theirs" ]]; then
    return 0
  fi
  echo "agentctl flows and hubble observe differ:"
  diff <(echo "$ours") <(echo "$theirs") | head -n 20 | e2e__indent
  return 1
}
check "real hubble observe --server unix://.../hubble.sock gives the same flows as agentctl flows" \
  expect_hubble_same_flows

expect_hubble_observe_tcp() {
  local out
  out=$(lab_client_exec "$HUBBLE" observe --server 192.168.10.100:4244 --last 200 --verdict DROPPED 2>&1) ||
    { echo "hubble observe over TCP failed: $out"; return 1; }
  if grep -q 'SERVICE_BACKEND_NOT_FOUND\|Service backend not found' <<<"$out" && grep -q '192.168.10.100:30090' <<<"$out"; then
    return 0
  fi
  echo "expected the drop to 192.168.10.100:30090 with its reason in hubble observe (TCP :4244), saw:"
  head -n 10 <<<"$out" | e2e__indent
  return 1
}
check "real hubble observe over TCP 192.168.10.100:4244 --verdict DROPPED names the drop reason" expect_hubble_observe_tcp

expect_hubble_status() {
  local out
  out=$(lab_node_exec n1 "$HUBBLE" status --server "unix://$HSOCK" 2>&1) || { echo "hubble status failed: $out"; return 1; }
  if grep -q 'Healthcheck.*Ok' <<<"$out" && grep -Eq 'Current/Max Flows: [1-9][0-9]*/4,?095' <<<"$out"; then
    return 0
  fi
  echo "expected 'Healthcheck ... Ok' and 'Current/Max Flows: N/4095' from hubble status, saw:"
  e2e__indent <<<"$out"
  return 1
}
check "real hubble status: healthy, Current/Max Flows N/4095" expect_hubble_status

# --follow: a flow made after the stream opened arrives on it.
require "agentctl flows --follow on n1" lab_bg flows-follow "$NP_LAB_DIR/logs/follow.out" lab_agentctl n1 flows --follow --to-port 30090
follow_open() { [[ -S $HSOCK ]]; }
check "hubble socket present" follow_open
traffic lab_client_exec -- connect 192.168.10.100:30090 --count 1 --connect-only --timeout-ms 300
expect_followed() {
  if grep -q '30090 from-network DROPPED' "$NP_LAB_DIR/logs/follow.out" 2>/dev/null; then
    return 0
  fi
  echo "no new drop on the --follow stream; it printed:"
  e2e__indent <"$NP_LAB_DIR/logs/follow.out"
  return 1
}
# The follower may have opened after the packet: send again until one arrives or the deadline.
resend_and_expect_followed() {
  expect_followed >/dev/null && return 0
  traffic lab_client_exec -- connect 192.168.10.100:30090 --count 1 --connect-only --timeout-ms 200
  expect_followed
}
check "agentctl flows --follow streams a flow made after it started" eventually 10 resend_and_expect_followed
lab_kill flows-follow

e2e_finish
