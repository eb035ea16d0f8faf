#!/usr/bin/env bash
# NodePortRemoteBackend: the NodePort path (tc on ens192) from a LAN client. A backend on another
# node is reached through SNAT to the node's address (the backend sees 192.168.10.100); a backend
# on the node that took the connection sees the client's own address. TCP and UDP.
#
# Lab: agents on n1 and n2; echo server in n2-p1 (10.0.2.10:8080, tcp and udp).
#   n1: default/remote     TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
#       default/remote-udp UDP NodePort 30081 -> 10.0.2.10:8080
#   n2: default/remote     TCP NodePort 30080 -> 10.0.2.10:8080 (local)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init NodePortRemoteBackend npe_npr
e2e_lab_up n1 n2
require "echo server in n2-p1" e2e_serve n2/p1
for node in n1 n2; do
  require "service default/remote (TCP NodePort 30080 -> 10.0.2.10:8080) on $node" \
    lab_agentctl "$node" service upsert default/remote --port 80 --node-port 30080 --backend 10.0.2.10:8080
done
require "service default/remote-udp (UDP NodePort 30081 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/remote-udp --protocol udp --port 81 --node-port 30081 \
  --backend 10.0.2.10:8080

traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
check "client -> 192.168.10.100:30080 (TCP, backend on n2): 20/20 connections succeed" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw node 1's address 192.168.10.100 as the source (SNAT)" expect_only_peer 192.168.10.100

traffic lab_client_exec -- connect 192.168.10.101:30080 --count 20
check "client -> 192.168.10.101:30080 (TCP, backend local to n2): 20/20 connections succeed" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw the client's own address 192.168.10.200 (no SNAT)" expect_only_peer 192.168.10.200

# The lab's ens192 has GRO on, as a real NIC: a request of many segments reaches tc on n1 as
# skbs longer than the MTU, which go on to n2 as the segments they are.
big=$(head -c 40000 /dev/zero | tr '\0' x)
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5 --payload "$big"
check "client -> 192.168.10.100:30080 (TCP, backend on n2), a 40 kB request (GRO on n1's ens192): 5/5 echoed whole" expect_ok 5
check "...no packet dropped on n1 for want of a route (reason 169)" expect_no_drop n1 169

traffic lab_client_exec -- connect 192.168.10.100:30081 --udp --count 20
check "client -> 192.168.10.100:30081 (UDP, backend on n2): 20/20 answered from the NodePort address" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw node 1's address 192.168.10.100 as the source (SNAT)" expect_only_peer 192.168.10.100

e2e_finish
