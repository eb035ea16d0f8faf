#!/usr/bin/env bash
# RestartKeepsEstablishedConnections: the datapath outlives its agent. Two held TCP connections -
# client -> node 1 NodePort -> n2-p1 (tc path, SNAT + conntrack) and node 1 -> ClusterIP (socket
# LB) - carry data before node 1's agent is killed with SIGKILL, while it is dead, and after it
# restarted; new connections work in both states; the restarted agent still has the service
# (persisted) and reports Ok.
#
# Lab: agents on n1 and n2; echo server in n2-p1.
#   n1: default/web TCP ClusterIP 10.43.0.20:80, NodePort 30080 -> 10.0.2.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init RestartKeepsEstablishedConnections npe_rst
e2e_lab_up n1 n2
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (ClusterIP 10.43.0.20:80, NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --node-port 30080 \
  --backend 10.0.2.10:8080

# The backend sees the NodePort connection SNAT'd to node 1, and the socket-LB one from node 1
# itself: both arrive from 192.168.10.100.
require "client holds a connection to NodePort 192.168.10.100:30080" \
  hold_start np lab_client_exec -- 192.168.10.100:30080
require "node 1 holds a connection to ClusterIP 10.43.0.20:80" \
  hold_start cip lab_node_exec n1 -- 10.43.0.20:80
check "held NodePort connection carries data (agent running)" \
  expect_hold_echo np np-before n2-p1 192.168.10.100
check "held ClusterIP connection carries data (agent running)" \
  expect_hold_echo cip cip-before n2-p1 192.168.10.100

old_pid=$(<"$NP_LAB_DIR/n1/agent.pid")
require "kill -9 node 1's agent" lab_agent_stop n1 KILL
check "node 1's agent (pid $old_pid) is gone" expect_pid_gone "$old_pid"
check "held NodePort connection carries data while the agent is dead" \
  expect_hold_echo np np-dead n2-p1 192.168.10.100
check "held ClusterIP connection carries data while the agent is dead" \
  expect_hold_echo cip cip-dead n2-p1 192.168.10.100
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5
check "new NodePort connections work while the agent is dead (5/5)" expect_ok 5
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 5
check "new ClusterIP connections work while the agent is dead (5/5)" expect_ok 5

require "restart node 1's agent" lab_agent_start n1
require "...and it becomes ready" lab_agent_wait n1 30
check "held NodePort connection carries data after the restart" \
  expect_hold_echo np np-after n2-p1 192.168.10.100
check "held ClusterIP connection carries data after the restart" \
  expect_hold_echo cip cip-after n2-p1 192.168.10.100

check "...the NodePort one is still the same TCP connection (one client port, no error)" expect_hold_one_connection np 4 n2-p1
check "...the ClusterIP one is still the same TCP connection (one client port, no error)" expect_hold_one_connection cip 4 n2-p1

check "after the restart agentctl service list still shows default/web (persisted)" \
  expect_service n1 default/web '.port == 80 and .cluster_ip == "10.43.0.20" and .node_port == 30080 and ([.backends[].address] == ["10.0.2.10"])'
check "after the restart agentctl status is Ok" expect_status_ok n1
restored() {
  local out
  out=$(agentctl_json n1 status) || { echo "agentctl status failed: $out"; return 1; }
  if jq -e '.restored == true and .restored_services == 1' <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected status to say restored=true, restored_services=1 (adopted the pinned state), saw $(jq -c '{restored, restored_services}' <<<"$out")"
  return 1
}
check "...and says it adopted the pinned state (restored, 1 service)" restored
check "...and the kernel's service map holds the service's frontends" \
  expect_frontends n1 10.43.0.20:80/TCP 0.0.0.0:30080/TCP 192.168.10.100:30080/TCP
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 10
check "after the restart new NodePort connections work (10/10)" expect_ok 10
check "...through SNAT to n2-p1" expect_only_peer 192.168.10.100
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 10
check "after the restart new ClusterIP connections work (10/10)" expect_ok 10

e2e_finish
