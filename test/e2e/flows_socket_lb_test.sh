#!/usr/bin/env bash
# FlowsSocketLbClusterIp: the socket-level translation point. A ClusterIP connect() translated by
# the cgroup connect4 hook (no packet is ever NATed, so the tc programs see only backend traffic)
# is a flow pair, as Hubble's SOCK trace shows it: pre-xlate-fwd TRACED to the service address and
# post-xlate-fwd TRANSLATED to the chosen backend, named after the service, in `agentctl flows`
# and through the real hubble CLI; one pair per socket (data on a connected socket adds none);
# `agentctl status --verbose` says `Socket LB Tracing: Enabled`, and with --enable-hubble=false
# `Disabled` and no flows. A pod the agent made (CNI ADD, default/client-1) that connects is the
# source of its pair: the socket's network namespace names it, though its socket has no address yet.
#
# Lab: agent on n1; echo servers in n1-p1 (10.0.1.10:8080) and n2-p1 (10.0.2.10:8080); pod n1-c1
# (CNI on n1, default/client-1), whose processes run in a pod cgroup under the agent's.
#   n1: default/web TCP ClusterIP 10.43.0.20:80 -> 10.0.1.10:8080, 10.0.2.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$E2E_REPO/scripts/lib/gotools.sh"

e2e_init FlowsSocketLbClusterIp npe_fsl
HUBBLE=$(np_go_tool hubble) || { fail FlowsSocketLbClusterIp "no hubble CLI (scripts/setup.sh builds it; needs go)"; exit 1; }
e2e_lab_up n1
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
require "service default/web (TCP ClusterIP 10.43.0.20:80, two backends) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 \
  --backend 10.0.1.10:8080 --backend 10.0.2.10:8080

check "agentctl status --verbose: Socket LB Tracing: Enabled" expect_status_line n1 '^Socket LB Tracing: +Enabled$'

# 11 + 1 random choices between two backends: both are chosen but with probability 2^-11.
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 11
check "node n1 -> ClusterIP 10.43.0.20:80: 11/11 connections succeed" expect_ok 11
traffic lab_pod_exec n1 p1 -- connect 10.43.0.20:80 --count 1
check "pod n1-p1 -> ClusterIP 10.43.0.20:80: 1/1 connection succeeds" expect_ok 1

# sock_count <regex>: lines of agentctl flows on n1 matching it.
sock_count() {
  lab_agentctl n1 flows --last 1000 2>/dev/null | grep -Ec -- "$1" || true
}
PRE_RE='-> 10\.43\.0\.20:80 \(svc default/web\) pre-xlate-fwd TRACED TCP$'
POST_RE='-> (10\.0\.[12]\.10|default/p1):8080 \(svc default/web\) post-xlate-fwd TRANSLATED TCP$'
expect_sock_pairs() {
  local want=$1 pre post
  pre=$(sock_count "$PRE_RE")
  post=$(sock_count "$POST_RE")
  if [[ $pre == "$want" && $post == "$want" ]]; then
    return 0
  fi
  echo "expected $want pre-xlate-fwd and $want post-xlate-fwd flows of default/web (one pair per connect()), saw $pre and $post:"
  lab_agentctl n1 flows --last 40 2>&1 | grep -- 'xlate' | head -n 14 | e2e__indent
  return 1
}
# expect_unnamed_sources <n>: n pre-xlate-fwd flows of default/web without a source pod.
expect_unnamed_sources() {
  local n
  n=$(sock_count ": \(unbound\) $PRE_RE")
  ((n == $1)) && return 0
  echo "expected $1 pre-xlate-fwd flows of default/web from an unnamed (unbound) source, saw $n"
  return 1
}
check "agentctl flows: 12 connects are 12 pre-xlate-fwd TRACED + 12 post-xlate-fwd TRANSLATED flows of svc default/web" \
  eventually 5 expect_sock_pairs 12

expect_both_backends_in_flows() {
  local out
  out=$(lab_agentctl n1 flows --last 1000 2>&1)
  if grep -Eq -- '-> (10\.0\.1\.10|default/p1):8080 .*post-xlate-fwd' <<<"$out" &&
    grep -Eq -- '-> 10\.0\.2\.10:8080 .*post-xlate-fwd' <<<"$out"; then
    return 0
  fi
  echo "expected post-xlate-fwd flows to both backends (10.0.1.10 and 10.0.2.10), saw:"
  grep -- 'post-xlate' <<<"$out" | head -n 8 | e2e__indent
  return 1
}
check "...the post-translation side names the backend each connect() got (both appear)" expect_both_backends_in_flows

# Per socket, not per packet: a connection that then carries data adds exactly one pair.
require "a held connection to 10.43.0.20:80 from n1" hold_start web lab_node_exec n1 -- 10.43.0.20:80
check "...it carries data (1)" expect_hold_echo web tok-a '*' '*'
check "...it carries data (2)" expect_hold_echo web tok-b '*' '*'
check "...it carries data (3)" expect_hold_echo web tok-c '*' '*'
check "agentctl flows: the held connection and its data add one pair (13), not one per packet" \
  eventually 5 expect_sock_pairs 13

# The real hubble CLI sees the same SOCK flows, with Hubble's fields.
expect_hubble_sock() {
  local out n
  out=$(lab_node_exec n1 "$HUBBLE" observe --server "unix://$NP_LAB_DIR/n1/run/hubble.sock" --last 1000 -o json 2>&1) ||
    { echo "hubble observe failed:"; head -n 5 <<<"$out" | e2e__indent; return 1; }
  n=$(jq -r 'select(.flow.Type == "SOCK" and .flow.verdict == "TRANSLATED"
         and .flow.sock_xlate_point == "SOCK_XLATE_POINT_POST_DIRECTION_FWD"
         and .flow.destination_service.name == "web" and .flow.l4.TCP.destination_port == 8080
         and (.flow.socket_cookie | tonumber) > 0 and .flow.node_name == "n1") | .flow.IP.destination' <<<"$out" 2>/dev/null | wc -l)
  if ((n == 13)); then
    return 0
  fi
  echo "expected 13 SOCK TRANSLATED post-xlate-fwd flows of service web to :8080 with a socket cookie in hubble observe -o json, saw $n; SOCK flows:"
  jq -c 'select(.flow.Type == "SOCK") | .flow | {verdict, sock_xlate_point, dst: .IP.destination, svc: .destination_service.name}' \
    <<<"$out" 2>/dev/null | head -n 6 | e2e__indent
  return 1
}
check "real hubble observe -o json: the same 13 SOCK post-xlate-fwd TRANSLATED flows, socket cookie set" expect_hubble_sock

expect_hubble_compact() {
  local out
  out=$(lab_node_exec n1 "$HUBBLE" observe --server "unix://$NP_LAB_DIR/n1/run/hubble.sock" --last 1000 2>&1) || true
  if grep -Eq 'pre-xlate-fwd +TRACED' <<<"$out" && grep -Eq 'post-xlate-fwd +TRANSLATED' <<<"$out"; then
    return 0
  fi
  echo "expected hubble's compact output to show 'pre-xlate-fwd TRACED' and 'post-xlate-fwd TRANSLATED', saw:"
  grep -i 'xlate' <<<"$out" | head -n 4 | e2e__indent
  head -n 4 <<<"$out" | e2e__indent
  return 1
}
check "real hubble observe: pre-xlate-fwd TRACED and post-xlate-fwd TRANSLATED lines" expect_hubble_compact

# The source pod: a pod the agent knows (CNI ADD) connects; both sides of its pair name it.
SOCK1=$NP_LAB_DIR/n1/run/agent.sock
CNIBIN1=$NP_LAB_DIR/n1/cni/bin
cni_n1() { # <command> <container> <ns suffix>: the plugin on n1 as a runtime runs it
  printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s"}' "$SOCK1" |
    lab_node_exec n1 env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
      CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$3" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN1" \
      CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=client-${2#c}" "$CNIBIN1/nodepath-cni"
}
lab_netns_create n1-c1
require "ADD pod default/client-1 on n1" cni_n1 ADD c1 n1-c1
traffic lab_pod_exec n1 c1 -- connect 10.43.0.20:80 --count 1
check "pod default/client-1 -> ClusterIP 10.43.0.20:80: 1/1 connection succeeds" expect_ok 1
expect_sock_source() { # <pre|post>: one flow of that side whose source is default/client-1
  local re n
  if [[ $1 == pre ]]; then re="^.*: default/client-1 -> 10\.43\.0\.20:80 \(svc default/web\) pre-xlate-fwd TRACED TCP\$"
  else re="^.*: default/client-1 -> (10\.0\.[12]\.10|default/p1):8080 \(svc default/web\) post-xlate-fwd TRANSLATED TCP\$"; fi
  n=$(sock_count "$re")
  ((n == 1)) && return 0
  echo "expected 1 $1-xlate-fwd flow from default/client-1, saw $n; socket flows:"
  lab_agentctl n1 flows --last 40 2>&1 | grep -- 'xlate' | tail -n 6 | e2e__indent
  return 1
}
check "agentctl flows: the pod's pre-xlate-fwd TRACED flow names its source pod default/client-1" \
  eventually 5 expect_sock_source pre
check "...and so does its post-xlate-fwd TRANSLATED flow" expect_sock_source post
check "...the other 13 connects (the node's, lab pod n1-p1's: no endpoints) name no source pod" \
  expect_unnamed_sources 13
expect_hubble_sock_source() {
  local out n
  out=$(lab_node_exec n1 "$HUBBLE" observe --server "unix://$NP_LAB_DIR/n1/run/hubble.sock" --last 1000 \
    --from-pod default/client-1 -o json 2>&1) ||
    { echo "hubble observe failed:"; head -n 5 <<<"$out" | e2e__indent; return 1; }
  n=$(jq -r 'select(.flow.Type == "SOCK" and .flow.source.pod_name == "client-1"
         and .flow.source.namespace == "default"
         and any(.flow.source.labels[]?; . == "k8s:io.kubernetes.pod.namespace=default")) | .flow.verdict' \
    <<<"$out" 2>/dev/null | sort | tr '\n' ' ')
  [[ $n == "TRACED TRANSLATED " ]] && return 0
  echo "expected hubble observe --from-pod default/client-1 to give its TRACED and TRANSLATED SOCK flows with the pod's name, namespace and label, saw verdicts: '$n'"
  head -n 3 <<<"$out" | e2e__indent
  return 1
}
check "real hubble observe --from-pod default/client-1: its two SOCK flows, with name, namespace and label" \
  expect_hubble_sock_source
require "DEL pod default/client-1 on n1" cni_n1 DEL c1 n1-c1

# Hubble off: the socket programs are loaded without tracing, and status says so.
require "agent on n1 stopped" lab_agent_stop n1
require "agent on n1 started with --enable-hubble=false" lab_agent_start n1 --enable-hubble=false
require "agent on n1 ready" lab_agent_wait n1 30
check "--enable-hubble=false: Socket LB Tracing: Disabled" expect_status_line n1 '^Socket LB Tracing: +Disabled$'
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 2
check "...ClusterIP still works: 2/2 connections succeed" expect_ok 2

e2e_finish
