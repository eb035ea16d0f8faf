#!/usr/bin/env bash
# AffinityKeepsClientOnOneBackend: sessionAffinity ClientIP through real connections. Every new
# connection of a client lands on one backend, on the NodePort path (tc, keyed by the client's
# address) and through the socket LB (ClusterIP from the node and from a pod, keyed by the
# network namespace); a second client IP has an affinity of its own; the same service without
# affinity spreads the same connections; a client whose backend is removed from the service
# sticks to a remaining one.
#
# Lab: agent on n1; echo servers in n1-p1, n1-p2 and n2-p1.
#   n1: default/sticky TCP ClusterIP 10.43.0.60:80, NodePort 30100 ->
#       10.0.1.10:8080, 10.0.1.11:8080, 10.0.2.10:8080, sessionAffinity ClientIP (600 s)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init AffinityKeepsClientOnOneBackend npe_aff
e2e_lab_up n1
require "echo servers in n1-p1, n1-p2 and n2-p1" e2e_serve n1/p1 n1/p2 n2/p1
backends=(--backend 10.0.1.10:8080 --backend 10.0.1.11:8080 --backend 10.0.2.10:8080)
require "service default/sticky (ClusterIP 10.43.0.60:80, NodePort 30100, 3 backends, ClientIP 600 s)" \
  lab_agentctl n1 service upsert default/sticky --port 80 --cluster-ip 10.43.0.60 --node-port 30100 \
  "${backends[@]}" --session-affinity ClientIP --session-affinity-timeout 600
check "agentctl service list shows the affinity" \
  expect_service n1 default/sticky '.session_affinity == "ClientIP" and .session_affinity_timeout_seconds == 600'

# --- NodePort (tc): keyed by the client's address.
traffic lab_client_exec -- connect 192.168.10.100:30100 --count 30
check "client 192.168.10.200 -> NodePort 30100: 30/30 connections succeed" expect_ok 30
check "...all answered by one backend" expect_one_backend 30
client_backend=$E2E_ONE_ID
traffic lab_host_exec router -- connect 192.168.10.100:30100 --count 30
check "a second client (the router, 192.168.10.1) -> NodePort 30100: 30/30 succeed, all on one backend" \
  expect_one_backend 30
echo "  affinity: client 192.168.10.200 -> $client_backend, client 192.168.10.1 -> $E2E_ONE_ID"

# --- socket LB: keyed by the network namespace of the caller.
traffic lab_node_exec n1 -- connect 10.43.0.60:80 --count 30
check "node 1 -> ClusterIP 10.43.0.60:80: 30/30 connections succeed, all on one backend" expect_one_backend 30
traffic lab_pod_exec n1 p2 -- connect 10.43.0.60:80 --count 20
check "pod n1-p2 -> ClusterIP 10.43.0.60:80: 20/20 succeed, all on one backend" expect_one_backend 20

# --- without affinity the same connections spread: the checks above can fail.
require "default/sticky without session affinity" \
  lab_agentctl n1 service upsert default/sticky --port 80 --cluster-ip 10.43.0.60 --node-port 30100 "${backends[@]}"
traffic lab_client_exec -- connect 192.168.10.100:30100 --count 30
check "without affinity: client -> NodePort 30100 reaches at least 2 of the 3 backends" expect_backends_at_least 2
traffic lab_node_exec n1 -- connect 10.43.0.60:80 --count 30
check "without affinity: node 1 -> ClusterIP reaches at least 2 of the 3 backends" expect_backends_at_least 2

# --- the client's backend goes away: it sticks to one of the others.
require "default/sticky with affinity again" \
  lab_agentctl n1 service upsert default/sticky --port 80 --cluster-ip 10.43.0.60 --node-port 30100 \
  "${backends[@]}" --session-affinity ClientIP --session-affinity-timeout 600
traffic lab_client_exec -- connect 192.168.10.100:30100 --count 10
check "with affinity again: client -> NodePort 30100 on one backend" expect_one_backend 10
declare -A addr_of=([n1-p1]=10.0.1.10:8080 [n1-p2]=10.0.1.11:8080 [n2-p1]=10.0.2.10:8080)
gone=$E2E_ONE_ID
remaining=()
for id in "${!addr_of[@]}"; do
  [[ $id == "$gone" ]] || remaining+=(--backend "${addr_of[$id]}")
done
require "remove the client's backend $gone from default/sticky" \
  lab_agentctl n1 service upsert default/sticky --port 80 --cluster-ip 10.43.0.60 --node-port 30100 \
  "${remaining[@]}" --session-affinity ClientIP --session-affinity-timeout 600
traffic lab_client_exec -- connect 192.168.10.100:30100 --count 20
check "after removing $gone: client -> NodePort 30100: 20/20 succeed, all on one remaining backend" \
  expect_one_backend 20
not_gone() {
  if [[ $E2E_ONE_ID != "$gone" ]]; then return 0; fi
  echo "the client still reaches the removed backend $gone"
  return 1
}
check "...which is not the removed one" not_gone

e2e_finish
