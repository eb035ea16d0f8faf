#!/usr/bin/env bash
# ServiceDeleteStopsNewConnections: `agentctl service delete` takes a service out of the datapath:
# new connections to its NodePort (tc path) and to its ClusterIP (socket LB) fail, the kernel's
# service map no longer holds it; upserting it again brings both paths back.
#
# Lab: agent on n1; echo servers in n1-p1 and n2-p1.
#   n1: default/web TCP ClusterIP 10.43.0.20:80, NodePort 30080 -> 10.0.1.10:8080, 10.0.2.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init ServiceDeleteStopsNewConnections npe_del
e2e_lab_up n1
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1

upsert_web() {
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --node-port 30080 \
    --backend 10.0.1.10:8080 --backend 10.0.2.10:8080
}
web_frontends=(10.43.0.20:80/TCP 0.0.0.0:30080/TCP 192.168.10.100:30080/TCP)

require "service default/web (ClusterIP 10.43.0.20:80, NodePort 30080)" upsert_web
check "the kernel's service map holds its ClusterIP and NodePort frontends" \
  expect_frontends n1 "${web_frontends[@]}"
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 10
check "before delete: client -> NodePort 192.168.10.100:30080: 10/10 connections succeed" expect_ok 10
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 10
check "before delete: node 1 -> ClusterIP 10.43.0.20:80: 10/10 connections succeed" expect_ok 10

check "agentctl service delete default/web succeeds" lab_agentctl n1 service delete default/web
check "...agentctl service list no longer shows it" expect_no_service n1 default/web
check "...agentctl bpf lb list no longer shows any of its frontends" expect_frontends n1
# Nothing listens on node 1's :30080 and nobody routes 10.43.0.0/16: without the service the
# attempts are refused (RST, ICMP unreachable) or time out; none may reach a backend.
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 3 --connect-only --timeout-ms 1000
check "after delete: client -> NodePort 192.168.10.100:30080: every new connection fails" \
  expect_all_fail 3 'connect: (Connection refused|timed out|No route to host)'
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 3 --connect-only --timeout-ms 1000
check "after delete: node 1 -> ClusterIP 10.43.0.20:80: every new connection fails" \
  expect_all_fail 3 'connect: (Connection refused|timed out|No route to host|Network is unreachable)'

check "upserting default/web again succeeds" upsert_web
check "...the kernel's service map holds its frontends again" expect_frontends n1 "${web_frontends[@]}"
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 10
check "after re-adding: client -> NodePort 192.168.10.100:30080: 10/10 connections succeed" expect_ok 10
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 10
check "after re-adding: node 1 -> ClusterIP 10.43.0.20:80: 10/10 connections succeed" expect_ok 10

e2e_finish
