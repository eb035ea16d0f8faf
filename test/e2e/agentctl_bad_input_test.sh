#!/usr/bin/env bash
# AgentctlRefusesBadInput: agentctl and the agent refuse bad service definitions with a message
# that names the problem and a non-zero exit (2: usage error caught by agentctl, 1: refused by
# the agent or agent unreachable, as `agentctl --help` documents), and nothing of a refused
# request reaches the kernel's maps or the agent's model.
#
# Lab: agent on n1 with one service default/web: TCP ClusterIP 10.43.0.20:80, NodePort 30080 ->
# 10.0.1.10:8080 (the frontends a duplicate would collide with).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init AgentctlRefusesBadInput npe_bad
e2e_lab_up n1
require "service default/web (ClusterIP 10.43.0.20:80, NodePort 30080)" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --node-port 30080 \
  --backend 10.0.1.10:8080
lb_before=$(agentctl_json n1 bpf lb list)
svc_before=$(agentctl_json n1 service list)
require "the kernel's service map holds default/web's frontends" \
  expect_frontends n1 10.43.0.20:80/TCP 0.0.0.0:30080/TCP 192.168.10.100:30080/TCP

up() { lab_agentctl n1 service upsert "$@"; }

check "invalid ClusterIP 10.43.0.300: exit 2, names the address" \
  expect_refused 2 '--cluster-ip: "10\.43\.0\.300" is not an IPv4 address' \
  up t/bad-ip --port 80 --cluster-ip 10.43.0.300
check "invalid backend address 10.0.1.999:8080: exit 2, names the backend" \
  expect_refused 2 '--backend: "10\.0\.1\.999:8080" is not IPv4:PORT' \
  up t/bad-backend --port 80 --cluster-ip 10.43.0.41 --backend 10.0.1.999:8080
check "port 0: exit 2, says it is not a port" \
  expect_refused 2 '--port: 0 is not a port \(1-65535\)' \
  up t/port0 --port 0 --cluster-ip 10.43.0.42
check "port 70000: exit 2, says it is not a port" \
  expect_refused 2 '--port: 70000 is not a port \(1-65535\)' \
  up t/port70000 --port 70000 --cluster-ip 10.43.0.43
check "backend port 0: exit 2, names the backend" \
  expect_refused 2 '--backend: 0 in "10\.0\.1\.10:0" is not a port' \
  up t/bport0 --port 80 --cluster-ip 10.43.0.44 --backend 10.0.1.10:0
check "unknown protocol sctp: exit 2, names the protocol" \
  expect_refused 2 '--protocol: unknown protocol "sctp"' \
  up t/sctp --protocol sctp --port 80 --cluster-ip 10.43.0.45
check "duplicate frontend 10.43.0.20:80 in a second service: exit 1, names the frontend and its owner" \
  expect_refused 1 '10\.43\.0\.20:80/TCP is already used by service default/web' \
  up t/dup --port 80 --cluster-ip 10.43.0.20 --backend 10.0.1.11:8080
check "duplicate NodePort 30080 in a second service: exit 1, names the port and its owner" \
  expect_refused 1 '30080/TCP is already used by service default/web' \
  up t/dup-np --port 81 --node-port 30080
check "NodePort 29999 (below the range): exit 1, names the port and the range" \
  expect_refused 1 'NodePort 29999 is outside the NodePort range 30000-32767' \
  up t/np-low --port 80 --node-port 29999
check "NodePort 40000 (above the range): exit 1, names the port and the range" \
  expect_refused 1 'NodePort 40000 is outside the NodePort range 30000-32767' \
  up t/np-high --port 80 --node-port 40000
check "replacing default/web with an out-of-range NodePort: exit 1 (refused as a whole)" \
  expect_refused 1 'NodePort 40000 is outside the NodePort range 30000-32767' \
  up default/web --port 80 --cluster-ip 10.43.0.20 --node-port 40000 --backend 10.0.1.11:8080
check "external IP = the node's own address (port 22): exit 1, says it would take the node's port" \
  expect_refused 1 "external IP: 192\.168\.10\.100 is a node's own address; a frontend there would take that port from the node" \
  up t/ssh --port 22 --external-ip 192.168.10.100 --backend 10.0.1.10:22
check "LoadBalancer IP inside the pod CIDR: exit 1, says it would capture a pod's traffic" \
  expect_refused 1 "LoadBalancer IP: 10\.0\.1\.11 is inside the pod CIDR 10\.0\.0\.0/16" \
  up t/podip --port 80 --lb-ip 10.0.1.11 --backend 10.0.1.10:8080
check "ClusterIP equal to a pod's address (outside the service CIDR): exit 1" \
  expect_refused 1 'cluster IP: 10\.0\.1\.11 is outside the service CIDR 10\.43\.0\.0/16' \
  up t/podcip --port 80 --cluster-ip 10.0.1.11 --backend 10.0.1.10:8080
check "a name Kubernetes would not accept (Web_1): exit 1, says what a name is" \
  expect_refused 1 'service "t/Web_1": name must be <namespace>/<name>.*DNS-1123 label' \
  up t/Web_1 --port 80 --cluster-ip 10.43.0.47
nosocket() { lab_node_exec n1 "$AGENTCTL" --socket /nonexistent "$@"; }
check "missing socket (--socket /nonexistent), upsert: exit 1, names the socket" \
  expect_refused 1 'cannot reach the agent at /nonexistent' \
  nosocket service upsert t/nosock --port 80 --cluster-ip 10.43.0.46
check "missing socket (--socket /nonexistent), status: exit 1, names the socket" \
  expect_refused 1 'cannot reach the agent at /nonexistent' nosocket status

unchanged() { # <what> <before> <args for agentctl_json>
  local what=$1 before=$2 now
  shift 2
  now=$(agentctl_json n1 "$@") || { echo "agentctl $* failed"; return 1; }
  if [[ $now == "$before" ]]; then
    return 0
  fi
  echo "expected $what to be unchanged; diff before -> after:"
  diff <(printf '%s\n' "$before") <(printf '%s\n' "$now") | head -n 30
  return 1
}
check "agentctl bpf lb list -o json is unchanged (nothing reached the maps)" \
  unchanged "the kernel's service map" "$lb_before" bpf lb list
check "agentctl service list -o json is unchanged (nothing reached the model)" \
  unchanged "the agent's services" "$svc_before" service list
check "the agent is still Ok" expect_status_ok n1

e2e_finish
