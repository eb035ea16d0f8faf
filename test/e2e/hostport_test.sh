#!/usr/bin/env bash
# HostPortThroughCni: a pod made through nodepath-cni on node 2 with runtimeConfig.portMappings
# (hostPort 9080 -> containerPort 8080, TCP and UDP; 9081/TCP on hostIP 192.168.10.101) is reachable from the lab client at node 2's
# address:9080; the mappings show in `agentctl service list` as HostPort services (source cni); a
# second pod asking for the same hostPort/protocol is refused (exit 1, CNI error code 7) and leaves no
# endpoint behind, as is one asking for a port a NodePort holds; the mappings survive a kill -9 and restart of the agent; DEL removes them
# (the client's connections then fail), and so does GC of an attachment the runtime no longer lists.
#
# Lab: agents on n1 and n2; pods: n2-c1 (CNI, default/web-1), n2-c2 (CNI, refused).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init HostPortThroughCni npe_hpt
e2e_lab_up n1 n2
SOCK=$NP_LAB_DIR/n2/run/agent.sock
CNIBIN=$NP_LAB_DIR/n2/cni/bin
NODE2=192.168.10.101
MAPPINGS='[{"hostPort":9080,"containerPort":8080,"protocol":"tcp"},{"hostPort":9080,"containerPort":8080,"protocol":"udp"},{"hostPort":9081,"containerPort":8080,"protocol":"tcp","hostIP":"192.168.10.101"}]'
conf() {
  printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s","runtimeConfig":{"portMappings":%s}}' \
    "$SOCK" "$MAPPINGS"
}
cni() { # <command> <container> <ns suffix>: the plugin on n2 as a runtime runs it
  printf '%s' "$(conf)" | lab_node_exec n2 env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$3" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN" \
    CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=${POD:-web-${2#c}}" "$CNIBIN/nodepath-cni"
}
endpoint_ip() { agentctl_json n2 endpoint list | jq -r --arg c "$1" '.endpoints[] | select(.container_id == $c) | .ipv4'; }
TCP=hostport/default/web-1/tcp/9080
UDP=hostport/default/web-1/udp/9080
ONEIP=hostport/default/web-1/tcp/9081

lab_netns_create n2-c1
require "ADD pod default/web-1 on n2 with portMappings 9080->8080 TCP and UDP" cni ADD c1 n2-c1
IP1=$(endpoint_ip c1)
require "echo server in n2-c1" e2e_serve n2/c1
hostport_listed() {
  expect_service n2 "$1" "(.source == \"cni\") and (.host_port == 9080) and (.backends[0].address == \"$IP1\") and (.backends[0].port == 8080)"
}
check "agentctl service list shows $TCP (source cni, -> $IP1:8080)" hostport_listed "$TCP"
check "...and $UDP" hostport_listed "$UDP"
with_host_ip() {
  expect_service n2 "$ONEIP" '(.source == "cni") and (.host_port == 9081) and (.host_ip == "192.168.10.101")'
}
check "...and $ONEIP on hostIP 192.168.10.101 only" with_host_ip
get_one() {
  local out
  out=$(lab_agentctl n2 service get "$TCP" 2>&1) || { echo "agentctl service get $TCP failed: $out"; return 1; }
  grep -q "$IP1:8080" <<<"$out" || { echo "service get $TCP does not show the backend $IP1:8080:"; echo "$out"; return 1; }
}
check "agentctl service get $TCP shows it (with its backend)" get_one
served() {
  traffic lab_client_exec -- connect "$NODE2:9080" --count 5
  expect_ok 5 || return 1
  traffic lab_client_exec -- connect "$NODE2:9080" --udp --count 5
  expect_ok 5
}
check "the lab client reaches the pod at $NODE2:9080 over TCP and UDP (5/5 each)" served

# --- a clash is refused whole --------------------------------------------------------------
lab_netns_create n2-c2
check "a second pod asking for 9080/TCP too is refused with CNI code 7 naming the clash" \
  expect_refused 1 "\"code\":7,.*already used by service $TCP" cni ADD c2 n2-c2
check "...and leaves no endpoint behind" eval '[[ -z $(endpoint_ip c2) ]]'
check "...nor a service of its own" expect_no_service n2 hostport/default/web-2/tcp/9080
check "the first pod is still served" served
# A second sandbox of the same pod (a restarted sandbox whose old one is not deleted yet) names
# the same HostPort services: it may not take them over, and its DEL may not remove them.
sandbox2() { POD=web-1 cni "$1" c1b n2-c1b; }
lab_netns_create n2-c1b
check "a second sandbox of pod web-1 asking for the same HostPorts is refused with CNI code 7 naming c1" \
  expect_refused 1 "\"code\":7,.*held by sandbox c1 of the same pod" sandbox2 ADD
check "...and leaves no endpoint behind" eval '[[ -z $(endpoint_ip c1b) ]]'
require "DEL of the refused sandbox, as the runtime follows a failed ADD" sandbox2 DEL
check "$TCP still goes to the first sandbox ($IP1)" hostport_listed "$TCP"
check "...which is still served" served
require "a local NodePort service default/np on 30080" \
  lab_agentctl n2 service upsert default/np --port 80 --cluster-ip 10.43.0.80 --node-port 30080 --backend 10.0.2.10:8080
MAPPINGS='[{"hostPort":30080,"containerPort":8080,"protocol":"tcp"}]'
check "a pod asking for hostPort 30080/TCP is refused: the NodePort has it" \
  expect_refused 1 "\"code\":7,.*already used by service default/np" cni ADD c2 n2-c2
check "...and leaves no endpoint behind" eval '[[ -z $(endpoint_ip c2) ]]'
require "delete default/np" lab_agentctl n2 service delete default/np
MAPPINGS='[{"hostPort":9080,"containerPort":8080,"protocol":"tcp"},{"hostPort":9080,"containerPort":8080,"protocol":"udp"},{"hostPort":9081,"containerPort":8080,"protocol":"tcp","hostIP":"192.168.10.101"}]'

# --- an agent restart keeps them -----------------------------------------------------------
# ...each on its own: while the agent is down, web-1's record gains a mapping whose port a local
# NodePort holds now and one that is not a mapping at all (hostPort 0); neither may cost the
# others.
require "a local NodePort service default/np2 on 30081" \
  lab_agentctl n2 service upsert default/np2 --port 80 --cluster-ip 10.43.0.81 --node-port 30081 --backend 10.0.2.10:8080
require "kill -9 node 2's agent" lab_agent_stop n2 KILL
EPS=$NP_LAB_DIR/n2/run/state/endpoints.json
spoil_record() {
  local t
  t=$(jq '(.endpoints[] | select(.containerId == "c1") | .portMappings) +=
        [{"hostPort":30081,"containerPort":8080,"protocol":"tcp","hostIP":""},
         {"hostPort":0,"containerPort":8080,"protocol":"tcp","hostIP":""}]' "$EPS") || return 1
  printf '%s\n' "$t" >"$EPS"
}
require "web-1's stored record gains a 30081/TCP mapping (the NodePort's) and a hostPort 0" spoil_record
require "restart node 2's agent" lab_agent_start n2
require "...ready" lab_agent_wait n2 30
not_restored_logged() {
  local n
  n=$(grep -c 'a stored HostPort is not restored' "$NP_LAB_DIR/n2/agent.log" || true)
  ((n == 2)) && return 0
  echo "expected 2 'a stored HostPort is not restored' lines in n2's agent log, saw $n:"
  grep 'HostPort' "$NP_LAB_DIR/n2/agent.log" | sed 's/^/  /'
  return 1
}
check "the two spoiled mappings are reported, one line each" not_restored_logged
check "...and the NodePort's 30081 is not taken over" expect_no_service n2 hostport/default/web-1/tcp/30081
check "after the restart $TCP is still listed" hostport_listed "$TCP"
check "...and $UDP" hostport_listed "$UDP"
check "...and $ONEIP keeps its hostIP" with_host_ip
check "...and the client still reaches $NODE2:9080 (TCP and UDP)" served
check "...and $NODE2:9081 (the hostIP mapping)" eval 'traffic lab_client_exec -- connect "$NODE2:9081" --count 3; expect_ok 3'
check "a whole-map reconcile leaves them in place" eval 'lab_agentctl n2 reconcile >/dev/null && served'

# --- DEL removes them ----------------------------------------------------------------------
require "DEL default/web-1" cni DEL c1 n2-c1
check "after DEL $TCP is gone" expect_no_service n2 "$TCP"
check "...and $UDP" expect_no_service n2 "$UDP"
check "...and $ONEIP" expect_no_service n2 "$ONEIP"
refused_after() {
  traffic lab_client_exec -- connect "$NODE2:9080" --count 3 --timeout-ms 500
  expect_all_fail 3 '.'
}
check "...and the client's connections to $NODE2:9080 fail" refused_after

# --- GC releases the HostPorts of attachments the runtime no longer lists ------------------
MAPPINGS='[{"hostPort":9082,"containerPort":8080,"protocol":"tcp"}]'
lab_netns_create n2-c3
require "ADD pod default/web-3 with hostPort 9082" cni ADD c3 n2-c3
check "hostport/default/web-3/tcp/9082 is listed" expect_service n2 hostport/default/web-3/tcp/9082
gc_none() { # GC with an empty valid-attachments list: the runtime has no pods left
  printf '{"cniVersion":"1.1.0","name":"nodepath","type":"nodepath-cni","socket":"%s","cni.dev/valid-attachments":[]}' "$SOCK" |
    lab_node_exec n2 env -i PATH="$PATH" CNI_COMMAND=GC CNI_PATH="$CNIBIN" "$CNIBIN/nodepath-cni"
}
require "GC with no valid attachments" gc_none
check "after GC hostport/default/web-3/tcp/9082 is gone" expect_no_service n2 hostport/default/web-3/tcp/9082
check "...and so is the endpoint" eval '[[ -z $(endpoint_ip c3) ]]'
e2e_finish
