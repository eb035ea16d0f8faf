#!/usr/bin/env bash
# K8sCompactionForcesRelist: with the API server's watch cache off, `etcdctl compact` +
# `defrag` of the revisions the agents' watches started from makes the re-opened watches answer
# 410 Gone: the agents relist (410s counted in status), keep a held connection, and follow the
# change made meanwhile. Then an agent restarted while the API server is down keeps serving (held
# and new connections), `status` says why Kubernetes is not synced, and it syncs when the API
# server is back.
#
# Lab: agent on n1; echo servers in n1-p1 (10.0.1.10) and n2-p1 (10.0.2.10).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init K8sCompactionForcesRelist npk8s_410
export K8S_WATCH_CACHE=false
k8s_lab_up n1
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
check "n1's kubernetes source syncs" eventually 20 expect_k8s_synced n1

objects() { # <endpoint json>...: Service default/web and its EndpointSlice with these endpoints
  {
    cat <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.43.0.30
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
---
YAML
    web_slice_yaml "$@"
  } | k8s_apply
}
ep1=$WEB_EP_N1
ep2=$WEB_EP_N2

require "Service default/web + EndpointSlice (10.0.1.10, 10.0.2.10)" objects "$ep1" "$ep2"
check "n1: default/web:http with 2 backends" eventually 10 expect_service n1 default/web:http '(.backends | length) == 2'
require "a connection held from node 1 to the ClusterIP 10.43.0.30:80" hold_start web lab_node_exec n1 -- 10.43.0.30:80
check "...it echoes" expect_hold_echo web tok-1 '*' '*'

# The agents' watches hold the resourceVersion of their last event. Take the API server away
# (the agents retry), change the slice through a second API server on the same etcd that the
# agents do not know (port 6444), compact etcd past the agents' revision, then bring the first
# back: their watches re-open from a compacted revision.
require "kube-apiserver stopped" k8s_apiserver_stop
require "a second kube-apiserver on :6444 (unknown to the agents)" eval 'K8S_PORT=6444 k8s_apiserver_start k8s-apiserver2'
objects_via2() { K8S_KUBECTL_ARGS="--server https://192.168.10.100:6444" objects "$@"; }
require "the slice changed to 10.0.2.10 only, through the second API server" objects_via2 "$ep2"
rev() { k8s_etcdctl endpoint status -w json | jq -r '.[0].Status.header.revision'; }
require "etcd compacted to its current revision and defragmented" \
  eval 'r=$(rev) && k8s_etcdctl compact "$r" >/dev/null && k8s_etcdctl defrag >/dev/null'
require "the second kube-apiserver stopped" k8s_apiserver_stop k8s-apiserver2
require "the first kube-apiserver back (watch cache off)" k8s_apiserver_start
check "n1 saw 410 Gone and relisted" eventually 60 expect_k8s_count_above n1 services 410s 0
check "n1: follows the change (1 backend, 10.0.2.10)" eventually 30 expect_service n1 default/web:http \
  '(.backends | length) == 1 and .backends[0].address == "10.0.2.10"'
check "the held connection still echoes" expect_hold_echo web tok-2 '*' '*'
check "n1's kubernetes source is synced" expect_k8s_synced n1

# An agent restarted while the API server is down keeps serving what its maps hold (the restore
# barrier: nothing is pruned before Kubernetes has synced), says why it is not synced, and syncs
# once the API server is back.
expect_k8s_not_synced_because() { # <node> <regex>: not synced, the status detail or problems say why
  local out
  out=$(agentctl_json "$1" status 2>/dev/null) || true  # exits 1 while Degraded, as it should be here
  if ! jq -e '.sources[]? | select(.name == "kubernetes") | .synced == false' <<<"$out" >/dev/null 2>&1; then
    echo "expected the kubernetes source of $1 not to be synced, saw: $(jq -c '.sources' <<<"$out")"
    return 1
  fi
  jq -r '(.sources[]? | select(.name == "kubernetes") | .detail // empty), (.problems[]? // empty)' <<<"$out" |
    grep -qE -- "$2" && return 0
  echo "expected the status of $1 to say '$2', saw: $(jq -c '{sources, problems}' <<<"$out")"
  return 1
}
require "kube-apiserver stopped again" k8s_apiserver_stop
require "n1's agent stopped" lab_agent_stop n1
require "n1's agent started again, the API server still down" lab_agent_start n1 \
  --k8s-kubeconfig-path "$NP_LAB_DIR/k8s/admin.kubeconfig"
# Not `lab_agent_wait`: with Kubernetes not synced the agent is rightly Degraded (status exits 1).
agent_answers() { # <node>: agentctl status answers, whatever the state
  local out
  out=$(agentctl_json "$1" status 2>/dev/null) || true
  jq -e '.state' <<<"$out" >/dev/null 2>&1
}
require "n1's agent answers agentctl status" eventually 30 agent_answers n1
check "n1 says Kubernetes is not synced, and why (the API server refuses connections)" \
  eventually 20 expect_k8s_not_synced_because n1 "waiting for kubernetes to sync"
check "...naming the list that fails and its error" eventually 20 expect_k8s_not_synced_because n1 \
  'services not synced \(lists 0, [^)]*\): [^;]*(refused|connect)'
check "the held connection still echoes across the restart" expect_hold_echo web tok-3 '*' '*'
traffic lab_node_exec n1 -- connect 10.43.0.30:80 --count 10
check "new connections from node 1 to the ClusterIP 10.43.0.30:80: 10/10 (the pinned maps serve)" expect_ok 10
check "n1's service map still holds 10.43.0.30:80 (adopted, not pruned)" expect_frontends_include n1 10.43.0.30:80/TCP
require "kube-apiserver back" k8s_apiserver_start
check "n1's kubernetes source syncs once the API server is back" eventually 60 expect_k8s_synced n1
check "n1: default/web:http as the cluster has it" expect_service n1 default/web:http \
  '(.backends | length) == 1 and .backends[0].address == "10.0.2.10"'
check "the held connection still echoes" expect_hold_echo web tok-4 '*' '*'

e2e_finish
