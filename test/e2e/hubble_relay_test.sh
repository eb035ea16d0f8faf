#!/usr/bin/env bash
# HubbleRelayBothNodes: the real hubble-relay (github.com/cilium/cilium v1.20.2's ./hubble-relay,
# built by scripts/lib/gotools.sh from the same pinned module as the hubble CLI) pointed at ONE
# node's peer service learns both lab nodes from it, dials both nodes' observers, and the real
# hubble CLI talking only to the relay sees the flows of both nodes (by node name, with each
# node's own traffic), `hubble status` counts 2 connected nodes and `hubble list nodes` lists
# both as connected. Plaintext both ways (--disable-client-tls / --disable-server-tls).
#
# Lab: agents on n1 and n2 (Hubble API on :4244 in each node's netns); echo servers in n1-p1
# (10.0.1.10:8080) and n2-p1 (10.0.2.10:8080).
#   n1: default/to-n2 TCP NodePort 30080 -> 10.0.2.10:8080 (remote: n1's flows)
#   n2: default/to-n1 TCP NodePort 30081 -> 10.0.1.10:8080 (remote: n2's flows)
#   relay in the client's netns (192.168.10.200), listening on 127.0.0.1:4245 there, peer service
#   192.168.10.100:4244 (n1 only).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$E2E_REPO/scripts/lib/gotools.sh"

e2e_init HubbleRelayBothNodes npe_rly
HUBBLE=$(np_go_tool hubble) || { fail HubbleRelayBothNodes "no hubble CLI (scripts/setup.sh builds it; needs go)"; exit 1; }
RELAY=$(np_go_tool hubble-relay) || { fail HubbleRelayBothNodes "no hubble-relay (scripts/setup.sh builds it; needs go)"; exit 1; }
e2e_lab_up n1 n2
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
require "service default/to-n2 (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/to-n2 --port 80 --node-port 30080 --backend 10.0.2.10:8080
require "service default/to-n1 (TCP NodePort 30081 -> 10.0.1.10:8080) on n2" \
  lab_agentctl n2 service upsert default/to-n1 --port 80 --node-port 30081 --backend 10.0.1.10:8080

traffic lab_client_exec -- connect 192.168.10.100:30080 --count 2
check "client -> n1 NodePort 30080 (backend on n2): 2/2 connections succeed" expect_ok 2
traffic lab_client_exec -- connect 192.168.10.101:30081 --count 2
check "client -> n2 NodePort 30081 (backend on n1): 2/2 connections succeed" expect_ok 2

RELAY_ADDR=127.0.0.1:4245
require "hubble-relay in the client netns, peer service 192.168.10.100:4244 (n1 only)" \
  lab_bg hubble-relay "$NP_LAB_DIR/logs/relay.log" lab_client_exec "$RELAY" serve \
  --peer-service 192.168.10.100:4244 --listen-address "$RELAY_ADDR" --health-listen-address 127.0.0.1:4222 \
  --disable-client-tls --disable-server-tls --gops=false --retry-timeout 1s --log-level debug

relay_log_tail() {
  echo "hubble-relay's log (last lines):"
  tail -n 15 "$NP_LAB_DIR/logs/relay.log" 2>/dev/null | e2e__indent
}

# hubble status through the relay: healthy, both nodes connected (relay dials both from what
# n1's peer service announced).
expect_relay_status() {
  local out
  out=$(lab_client_exec "$HUBBLE" status --server "$RELAY_ADDR" 2>&1) ||
    { echo "hubble status --server $RELAY_ADDR failed:"; e2e__indent <<<"$out"; relay_log_tail; return 1; }
  if grep -q 'Healthcheck.*Ok' <<<"$out" && grep -Eq 'Connected Nodes: 2/2' <<<"$out" &&
    grep -Eq 'Current/Max Flows: [1-9][0-9,]*/8,?190' <<<"$out"; then
    return 0
  fi
  echo "expected 'Healthcheck ... Ok', 'Connected Nodes: 2/2' and 'Current/Max Flows: N/8190' (two rings of 4095), saw:"
  e2e__indent <<<"$out"
  relay_log_tail
  return 1
}
check "hubble status --server <relay>: healthy, Connected Nodes: 2/2, both nodes' flow rings" \
  eventually 30 expect_relay_status

expect_relay_nodes() {
  local out
  out=$(lab_client_exec "$HUBBLE" list nodes --server "$RELAY_ADDR" 2>&1) ||
    { echo "hubble list nodes failed:"; e2e__indent <<<"$out"; return 1; }
  if grep -Eq '^n1 +Connected' <<<"$out" && grep -Eq '^n2 +Connected' <<<"$out"; then
    return 0
  fi
  echo "expected n1 and n2 Connected in hubble list nodes, saw:"
  e2e__indent <<<"$out"
  return 1
}
check "hubble list nodes --server <relay>: n1 and n2 Connected" eventually 10 expect_relay_nodes

# hubble observe through the relay: each node's own translated connection, under its node name.
expect_relay_flows() {
  local out n1 n2
  out=$(lab_client_exec "$HUBBLE" observe --server "$RELAY_ADDR" --last 500 -o json 2>&1) ||
    { echo "hubble observe --server $RELAY_ADDR failed:"; head -n 10 <<<"$out" | e2e__indent; return 1; }
  n1=$(jq -r 'select(.flow.node_name == "n1" and .flow.IP.destination == "10.0.2.10"
             and .flow.l4.TCP.destination_port == 8080) | .node_name' <<<"$out" 2>/dev/null | head -n 1)
  n2=$(jq -r 'select(.flow.node_name == "n2" and .flow.IP.destination == "10.0.1.10"
             and .flow.l4.TCP.destination_port == 8080) | .node_name' <<<"$out" 2>/dev/null | head -n 1)
  if [[ $n1 == n1 && $n2 == n2 ]]; then
    return 0
  fi
  echo "expected n1's flow to 10.0.2.10:8080 and n2's flow to 10.0.1.10:8080 (node_name n1/n2), saw (node, dst):"
  jq -r '[.node_name // "-", .flow.node_name // "-", .flow.IP.destination // "-", ((.flow.l4.TCP.destination_port // 0)|tostring)] | join(" ")' \
    <<<"$out" 2>/dev/null | sort | uniq -c | head -n 10 | e2e__indent
  return 1
}
check "hubble observe --server <relay> -o json: n1's flows and n2's flows, each by its node name" \
  eventually 10 expect_relay_flows

# A relay is one view of many nodes: the node filter of hubble observe selects one of them.
expect_relay_node_filter() {
  local out names
  out=$(lab_client_exec "$HUBBLE" observe --server "$RELAY_ADDR" --last 500 --node-name n2 -o json 2>&1) ||
    { echo "hubble observe --node-name n2 failed:"; head -n 10 <<<"$out" | e2e__indent; return 1; }
  names=$(jq -r '.flow.node_name // empty' <<<"$out" 2>/dev/null | sort -u | tr '\n' ' ')
  if [[ $names == "n2 " ]]; then
    return 0
  fi
  echo "expected only n2's flows from --node-name n2, saw node names: '${names}'"
  return 1
}
check "hubble observe --server <relay> --node-name n2: only n2's flows" expect_relay_node_filter

# --follow through the relay: a flow made on n2 after the stream opened arrives. Filtered on the
# backends' port: a NodePort flow is recorded as it left, translated (-> default/to-n1:8080), so
# the NodePort itself (30081) is in none of its ports.
require "hubble observe --follow through the relay" lab_bg relay-follow "$NP_LAB_DIR/logs/relay-follow.out" \
  lab_client_exec "$HUBBLE" observe --server "$RELAY_ADDR" --follow --port 8080 -o json
expect_followed() {
  # Every line judged (jq 1.6's -e over a stream looks only at the last input), a half-written
  # last line skipped.
  if jq -R -s -e '[split("\n")[] | fromjson? | select(.flow.node_name == "n2")] | length > 0' \
    "$NP_LAB_DIR/logs/relay-follow.out" >/dev/null 2>&1; then
    return 0
  fi
  echo "no n2 flow on port 8080 on the relay's --follow stream; it printed:"
  head -n 5 "$NP_LAB_DIR/logs/relay-follow.out" | e2e__indent
  return 1
}
# The follower may have connected after the connection: connect again until one arrives.
reconnect_and_expect_followed() {
  expect_followed >/dev/null && return 0
  traffic lab_client_exec -- connect 192.168.10.101:30081 --count 1
  expect_followed
}
check "hubble observe --follow --server <relay> streams n2's new flow" eventually 20 reconnect_and_expect_followed
lab_kill relay-follow

# n2's agent goes: relay sees it unavailable (the observers are per node, not one merged store).
require "agent on n2 stopped" lab_agent_stop n2
expect_relay_one_node() {
  local out
  out=$(lab_client_exec "$HUBBLE" status --server "$RELAY_ADDR" 2>&1) || true
  if grep -Eq 'Connected Nodes: 1/2' <<<"$out"; then
    return 0
  fi
  echo "expected 'Connected Nodes: 1/2' with n2's agent stopped, saw:"
  e2e__indent <<<"$out"
  return 1
}
check "n2's agent stopped: hubble status --server <relay> shows Connected Nodes: 1/2" eventually 30 expect_relay_one_node

lab_kill hubble-relay
e2e_finish
