#!/usr/bin/env bash
# SocketLbClusterIp: socket-level load balancing of ClusterIP services for processes on a node and
# in its pods (the cgroup connect4/sendmsg4/recvmsg4/getpeername4/sock_release hooks), TCP and UDP,
# TCP sockets' reverse records leaving with their sockets, and a
# service without backends refusing connect() at once, and a long-idle UDP socket that keeps
# seeing the service address after 300,000 other connects.
#
# Lab: agent on n1 (n2 runs none: it only routes to its pods); echo servers in n1-p1 and n2-p1.
# Services on n1:
#   default/web   TCP 10.43.0.20:80 -> 10.0.1.10:8080, 10.0.2.10:8080
#   default/dns   UDP 10.43.0.53:53 -> 10.0.1.10:8080, 10.0.2.10:8080
#   default/empty TCP 10.43.0.30:80, no backends
#   default/empty-udp UDP 10.43.0.54:53, no backends
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init SocketLbClusterIp npe_slb
e2e_lab_up n1
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
require "service default/web (TCP ClusterIP 10.43.0.20:80)" lab_agentctl n1 service upsert default/web \
  --port 80 --cluster-ip 10.43.0.20 --backend 10.0.1.10:8080 --backend 10.0.2.10:8080
require "service default/dns (UDP ClusterIP 10.43.0.53:53)" lab_agentctl n1 service upsert default/dns \
  --protocol udp --port 53 --cluster-ip 10.43.0.53 --backend 10.0.1.10:8080 --backend 10.0.2.10:8080
require "service default/empty (TCP ClusterIP 10.43.0.30:80, no backends)" lab_agentctl n1 service upsert \
  default/empty --port 80 --cluster-ip 10.43.0.30
require "service default/empty-udp (UDP ClusterIP 10.43.0.54:53, no backends)" lab_agentctl n1 service upsert \
  default/empty-udp --protocol udp --port 53 --cluster-ip 10.43.0.54

# --- TCP from a process on the node ------------------------------------------------------------
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 40
check "node 1 -> ClusterIP 10.43.0.20:80 (TCP): 40/40 connections succeed" expect_ok 40
check "...backend n1-p1 answers some of them" expect_id n1-p1 +
check "...backend n2-p1 answers some of them" expect_id n2-p1 +
# Those connections' packets to and from n2-p1 crossed ens192 on an ephemeral port of the node's:
# the host programs passed them without looking (np_ports4_v1 has the services' ports, not those).
check "...n1's ports bitmap is complete: frontend 80, backend 8080, SNAT 65535 in it, ephemeral 40000 not" \
  expect_ports n1 80 53 8080 65535 -- 40000 22
check "...n1's backend bitmap (np_belive4_v1): a bit for every backend the backend map holds, none for one it lacks" \
  expect_live_backends n1

# A TCP socket's reverse record (np_sockrev4t_v1, by socket cookie) goes with the socket
# (cgroup/sock_release): the 40 closed connections left none behind; the held one below has one.
sockrev_tcp_entries_are() {
  local got
  got=$(agentctl_json n1 status | jq -r '[.maps[]? | select(.name == "np_sockrev4t_v1") | (.entries // 0)] | first // "no such map"') ||
    return 1
  [[ $got == "$1" ]] && return 0
  echo "expected $1 entries in np_sockrev4t_v1 (status), saw: $got"
  return 1
}
check "...and their 40 sockets' reverse records went with them (np_sockrev4t_v1: 0 entries)" sockrev_tcp_entries_are 0

# getpeername() on a connected socket shows the service, not the backend it was sent to.
peer_is_service() {
  hold_start web lab_node_exec n1 -- 10.43.0.20:80 || return 1
  if [[ $HOLD_CONNECTED != *" peer=10.43.0.20:80" ]]; then
    echo "expected 'peer=10.43.0.20:80' (getpeername shows the service), saw '$HOLD_CONNECTED'"
    return 1
  fi
}
check "node 1: nptraffic hold 10.43.0.20:80 sees peer=10.43.0.20:80 (getpeername)" peer_is_service
check "...and the held connection carries data to a backend" \
  expect_hold_echo web slb-hold-1 '*' 192.168.10.100
check "...and its reverse record is the one in np_sockrev4t_v1" sockrev_tcp_entries_are 1

# --- UDP: connected UDP sockets accept replies only from the address they connected to, so
# success means recvmsg() showed the service address.
traffic lab_node_exec n1 -- connect 10.43.0.53:53 --udp --count 20
check "node 1 -> ClusterIP 10.43.0.53:53 (UDP): 20/20 requests answered from the service address" expect_ok 20
check "...backend n1-p1 answers some of them" expect_id n1-p1 +
check "...backend n2-p1 answers some of them" expect_id n2-p1 +
# A connected UDP socket's record is in the same hash and goes with the socket too: only the
# held TCP connection's is left.
check "...and the 20 UDP sockets' reverse records went with them (np_sockrev4t_v1: 1 entry, the held one)" \
  sockrev_tcp_entries_are 1

# --- a long-idle connected UDP socket keeps its reverse translation however many other sockets
# use the service meanwhile: the state lives with the socket (v1 kept it in a 262,144-entry LRU
# that 300,000 other connects evicted it from: getpeername() and recvfrom() then showed the
# backend).
udp_idle_keeps_service() {
  if [[ $E2E_RC == 0 ]] && grep -q '^udpidle: ok$' "$E2E_OUT"; then
    grep -E '^udpidle: (before|churn|after)' "$E2E_OUT" | e2e__indent
    return 0
  fi
  e2e__seen
  return 1
}
traffic lab_node_exec n1 -- udpidle 10.43.0.53:53 --churn 300000
check "node 1: a connected UDP socket idle while 300,000 other sockets connect() to 10.43.0.53:53 still sees 10.43.0.53:53 as its peer and as its replies' source" \
  udp_idle_keeps_service

# --- from a pod: its cgroup is below the node's, where the hooks are attached.
traffic lab_pod_exec n1 p2 -- connect 10.43.0.20:80 --count 20
check "pod n1-p2 -> ClusterIP 10.43.0.20:80 (TCP): 20/20 connections succeed" expect_ok 20
check "...and the backends see the pod's own address 10.0.1.11 (translated at connect, no SNAT)" \
  expect_only_peer 10.0.1.11
traffic lab_pod_exec n1 p2 -- connect 10.43.0.53:53 --udp --count 10
check "pod n1-p2 -> ClusterIP 10.43.0.53:53 (UDP): 10/10 requests answered" expect_ok 10

# --- no backends: connect() is refused by the hook, at once (not a timeout).
traffic lab_node_exec n1 -- connect 10.43.0.30:80 --count 3 --timeout-ms 5000
check "node 1 -> 10.43.0.30:80 (no backends, TCP): every connect fails with 'No route to host'" \
  expect_all_fail 3 'connect: No route to host'
check "...within 1 s for 3 attempts (refused at connect, not a 5 s timeout)" expect_faster_than 1000
traffic lab_node_exec n1 -- connect 10.43.0.54:53 --udp --count 3 --timeout-ms 5000
check "node 1 -> 10.43.0.54:53 (no backends, UDP): connect fails with 'No route to host'" \
  expect_all_fail 3 'connect: No route to host'
check "...within 1 s for 3 attempts" expect_faster_than 1000

e2e_finish
