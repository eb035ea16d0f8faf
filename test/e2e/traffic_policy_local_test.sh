#!/usr/bin/env bash
# ExternalTrafficPolicyLocal: externalTrafficPolicy Local and internalTrafficPolicy Local through
# real connections.
#   - A NodePort with its only backend on node 2: through node 1 (no local backend) the client's
#     connections are dropped, counted as reason 158 (SERVICE_BACKEND_NOT_FOUND); through node 2
#     they work and the backend sees the client's own address (no SNAT).
#   - In-cluster clients are not limited by it: a process on node 1 reaches the same NodePort
#     through the socket LB (the internal scope has every backend).
#   - internalTrafficPolicy Local: a ClusterIP with backends on both nodes is served to node 1's
#     processes by node 1's backend only.
#
# Lab: agents on n1 and n2; echo servers in n1-p1 and n2-p1.
#   both: default/local TCP NodePort 30300 -> 10.0.2.10:8080 (on n2), externalTrafficPolicy Local
#   n1:   default/itp   TCP ClusterIP 10.43.0.70:80 -> 10.0.1.10:8080, 10.0.2.10:8080, internalTrafficPolicy Local
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init ExternalTrafficPolicyLocal npe_etp
e2e_lab_up n1 n2
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
for node in n1 n2; do
  require "service default/local (NodePort 30300 -> 10.0.2.10:8080 on n2, externalTrafficPolicy Local) on $node" \
    lab_agentctl "$node" service upsert default/local --port 80 --node-port 30300 \
    --backend 10.0.2.10:8080,node=n2 --external-traffic-policy Local
done
check "agentctl service list on n2 shows the policy and the backend as local" \
  expect_service n2 default/local '.external_traffic_policy == "Local" and .backends[0].local == true'
check "...and on n1 as not local" expect_service n1 default/local '.backends[0].local == false'

before=$(datapath_counter n1 ingress 158) || before=0
traffic lab_client_exec -- connect 192.168.10.100:30300 --count 3 --connect-only --timeout-ms 1000
check "client -> node 1:30300 (no local backend): every connection attempt is dropped (times out)" \
  expect_all_fail 3 'connect: timed out'
drops_counted() {
  local now
  now=$(datapath_counter n1 ingress 158) || { echo "agentctl status failed"; return 1; }
  if ((now - before >= 3)); then return 0; fi
  echo "expected node 1's ingress counter of reason 158 to grow by >= 3 (from $before), saw $now"
  return 1
}
check "...counted on node 1 as reason 158 (SERVICE_BACKEND_NOT_FOUND)" eventually 5 drops_counted

traffic lab_client_exec -- connect 192.168.10.101:30300 --count 20
check "client -> node 2:30300 (local backend): 20/20 connections succeed" expect_ok 20
check "...answered by n2-p1" expect_id n2-p1 20
check "...which saw the client's own address 192.168.10.200" expect_only_peer 192.168.10.200

traffic lab_node_exec n1 -- connect 192.168.10.100:30300 --count 10
check "node 1's own process -> 192.168.10.100:30300 (socket LB, in-cluster): 10/10 succeed via n2-p1" \
  expect_id n2-p1 10

# A restarted agent adopts both scopes: nothing to repair, the policy still holds.
require "restart node 1's agent" lab_agent_stop n1 TERM
require "...start it again" lab_agent_start n1
require "...ready" lab_agent_wait n1 30
check "the restarted agent's whole-map reconcile finds nothing to repair" expect_reconcile_clean n1
traffic lab_client_exec -- connect 192.168.10.100:30300 --count 2 --connect-only --timeout-ms 1000
check "after the restart: client -> node 1:30300 is still dropped" expect_all_fail 2 'connect: timed out'
traffic lab_node_exec n1 -- connect 192.168.10.100:30300 --count 5
check "...and node 1's own process still reaches it (5/5)" expect_id n2-p1 5

# The same NodePort with externalTrafficPolicy Cluster on node 1 works there, SNAT'd: the drop
# above came from the policy.
require "default/local with externalTrafficPolicy Cluster on n1" \
  lab_agentctl n1 service upsert default/local --port 80 --node-port 30300 --backend 10.0.2.10:8080,node=n2
traffic lab_client_exec -- connect 192.168.10.100:30300 --count 10
check "externalTrafficPolicy Cluster: client -> node 1:30300: 10/10 succeed" expect_ok 10
check "...SNAT'd to node 1 (the backend sees 192.168.10.100)" expect_only_peer 192.168.10.100

# --- internalTrafficPolicy Local
require "service default/itp (ClusterIP 10.43.0.70, backends on both nodes, internalTrafficPolicy Local) on n1" \
  lab_agentctl n1 service upsert default/itp --port 80 --cluster-ip 10.43.0.70 \
  --backend 10.0.1.10:8080 --backend 10.0.2.10:8080 --internal-traffic-policy Local
traffic lab_node_exec n1 -- connect 10.43.0.70:80 --count 20
check "internalTrafficPolicy Local: node 1 -> 10.43.0.70:80: 20/20 answered by node 1's n1-p1 only" expect_id n1-p1 20
require "default/itp with internalTrafficPolicy Cluster" \
  lab_agentctl n1 service upsert default/itp --port 80 --cluster-ip 10.43.0.70 \
  --backend 10.0.1.10:8080 --backend 10.0.2.10:8080
traffic lab_node_exec n1 -- connect 10.43.0.70:80 --count 30
check "internalTrafficPolicy Cluster: node 1 -> 10.43.0.70:80 reaches both backends" expect_backends_at_least 2

e2e_finish
