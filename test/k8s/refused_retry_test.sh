#!/usr/bin/env bash
# K8sRefusedServiceRetried: a Kubernetes service port the agent refused is not refused for good.
# A local-API service holds the name default/api:http, so the Kubernetes service default/api is
# refused (status says why); once the local service is deleted the Kubernetes one is applied
# without any change to it in the API server, answers on its ClusterIP, and status no longer
# lists it as refused.
#
# Lab: an agent on n1; the echo server in n1-p1 (10.0.1.10).
#   local default/api:http: ClusterIP 10.43.0.31:80 -> 10.0.1.10:8080
#   Kubernetes default/api: ClusterIP 10.43.0.30:80 (port "http") -> 10.0.1.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sRefusedServiceRetried npk8s_ref
k8s_lab_up n1
require "echo server in n1-p1" e2e_serve n1/p1
check "n1's kubernetes source syncs" eventually 20 expect_k8s_synced n1

local_api() {
  lab_agentctl n1 service upsert default/api:http --port 80 --cluster-ip 10.43.0.31 --backend 10.0.1.10:8080 >/dev/null
}
require "a local-API service named default/api:http" local_api

k8s_api() {
  k8s_apply <<YAML
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  type: ClusterIP
  clusterIP: 10.43.0.30
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: default, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints: [$WEB_EP_N1]
YAML
}
require "Service default/api and its EndpointSlice created through the API server" k8s_api

# expect_refused_listed <yes|no>: status's message names default/api:http as refused, or not.
expect_refused_listed() {
  local out msg
  out=$(agentctl_json n1 status) || true  # exits 1 while something is refused (Degraded)
  msg=$(jq -r '.message // empty' <<<"$out") || { echo "agentctl status gave no JSON: $out"; return 1; }
  if [[ $1 == yes ]]; then
    grep -q "refused (default/api:http: the name is a local service's" <<<"$msg" && return 0
    echo "expected status to list default/api:http as refused, saw: $msg"
  else
    ! grep -q 'refused (default/api' <<<"$msg" && return 0
    echo "expected status to list nothing refused, saw: $msg"
  fi
  return 1
}
check "status lists default/api:http as refused (the name is the local service's)" \
  eventually 10 expect_refused_listed yes
check "...and the local service keeps it" expect_service n1 default/api:http '.source == "local" and .cluster_ip == "10.43.0.31"'

require "the local service default/api:http deleted" lab_agentctl n1 service delete default/api:http
check "the refused Kubernetes service is applied now (source kubernetes, ClusterIP 10.43.0.30)" \
  eventually 10 expect_service n1 default/api:http '.source == "kubernetes" and .cluster_ip == "10.43.0.30"'
check "status no longer lists it as refused" eventually 5 expect_refused_listed no
check "n1's kernel service map holds 10.43.0.30:80" eventually 5 expect_frontends_include n1 10.43.0.30:80/TCP
traffic lab_node_exec n1 -- connect 10.43.0.30:80 --count 5
check "n1 -> ClusterIP 10.43.0.30:80: 5/5 connections succeed" expect_ok 5

e2e_finish
