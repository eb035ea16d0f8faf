#!/usr/bin/env bash
# K8sServicesFromApiServer: with the agents connected to a real kube-apiserver, a ClusterIP +
# NodePort Service whose EndpointSlice points at lab backends is reachable through the datapath;
# scaling, terminating and deleting endpoints moves the maps (agentctl service list); the local
# API refuses to overwrite the Kubernetes-owned service; restarting kube-apiserver keeps a held
# connection and the agents follow changes made after it.
#
# Lab: agents on n1 and n2; echo servers in n1-p1 (10.0.1.10) and n2-p1 (10.0.2.10).
#   default/web: ClusterIP 10.43.0.20:80 (port "http"), NodePort 30080 -> :8080 on both.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sServicesFromApiServer npk8s_svc
k8s_lab_up n1 n2
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
check "n1's kubernetes source syncs" eventually 20 expect_k8s_synced n1
check "n2's kubernetes source syncs" eventually 20 expect_k8s_synced n2

service() {
  k8s_apply <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.43.0.20
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}]
YAML
}
# slice <endpoint json>...: the EndpointSlice default/web-1 with these endpoints
slice() { web_slice_yaml "$@" | k8s_apply; }
ep1=$WEB_EP_N1
ep2=$WEB_EP_N2
ep2term='{"addresses":["10.0.2.10"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"n2"}'

require "Service default/web created through the API server" service
require "EndpointSlice default/web-1 with 10.0.1.10 and 10.0.2.10" slice "$ep1" "$ep2"
for n in n1 n2; do
  check "$n: agentctl service list shows default/web:http from kubernetes with 2 backends" \
    eventually 10 expect_service "$n" default/web:http '.source == "kubernetes" and (.backends | length) == 2'
done
check "n1: the kernel's service map holds its ClusterIP and NodePort frontends" \
  eventually 10 expect_frontends_include n1 10.43.0.20:80/TCP 0.0.0.0:30080/TCP
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
check "client -> NodePort 192.168.10.100:30080: 20/20 connections succeed" expect_ok 20
check "...answered by both backends" expect_backends_at_least 2
traffic lab_node_exec n2 -- connect 10.43.0.20:80 --count 10
check "node 2 -> ClusterIP 10.43.0.20:80: 10/10 connections succeed" expect_ok 10

expect_refused_upsert() {
  local out
  if out=$(lab_agentctl "$1" service upsert "$2" --port 81 --cluster-ip 10.43.0.21 --backend 10.0.1.10:8080 2>&1); then
    echo "the upsert succeeded: $out"
    return 1
  fi
  grep -q 'owned by Kubernetes' <<<"$out" || { echo "refused, but not saying why: $out"; return 1; }
}
check "the local API refuses to overwrite the Kubernetes-owned service" \
  expect_refused_upsert n1 default/web:http

require "scale down: the slice keeps 10.0.1.10 only" slice "$ep1"
for n in n1 n2; do
  check "$n: default/web:http has 1 backend (10.0.1.10:8080)" eventually 10 expect_service "$n" default/web:http \
    '(.backends | length) == 1 and .backends[0].address == "10.0.1.10"'
done
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 10
check "after scaling down: 10/10 connections, one backend" expect_ok 10
check "...all answered by 10.0.1.10" expect_one_backend 10

require "scale up with 10.0.2.10 terminating (serving)" slice "$ep1" "$ep2term"
check "n1: default/web:http has 2 backends, one terminating" eventually 10 expect_service n1 default/web:http \
  '(.backends | length) == 2 and ([.backends[] | tostring | test("(?i)terminating")] | any)'

require "the EndpointSlice deleted" k8s_kubectl delete endpointslice web-1 --wait=false
check "n1: default/web:http has no backends" eventually 10 expect_service n1 default/web:http '(.backends // []) | length == 0'

# Restart: a connection held through the ClusterIP survives the API server going away and coming
# back; the agents relist/re-watch and follow a change made after the restart.
require "the slice back with both endpoints" slice "$ep1" "$ep2"
check "n1: 2 backends again" eventually 10 expect_service n1 default/web:http '(.backends | length) == 2'
require "a connection held from node 1 to the ClusterIP" hold_start web lab_node_exec n1 -- 10.43.0.20:80
check "...it echoes" expect_hold_echo web tok-before '*' '*'
watches_before=$(k8s_count n1 services watches)
require "kube-apiserver restarted" k8s_apiserver_restart
check "the held connection still echoes after the restart" expect_hold_echo web tok-after '*' '*'
check "n1's services watch was re-opened after the restart" \
  eventually 60 expect_k8s_count_above n1 services watches "${watches_before:-0}"
require "after the restart: the slice keeps 10.0.2.10 only" slice "$ep2"
for n in n1 n2; do
  check "$n: follows the change made after the restart (1 backend)" eventually 30 expect_service "$n" default/web:http \
    '(.backends | length) == 1'
done
check "the held connection still echoes at the end" expect_hold_echo web tok-end '*' '*'

e2e_finish
