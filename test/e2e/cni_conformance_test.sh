#!/usr/bin/env bash
# CniConformance: nodepath-cni driven exactly as a runtime drives it - cnitool (built from its
# pinned Go module, test/tools/go/cnitool) with Debian's loopback plugin chained before ours, and
# the plugin exec'd with the spec's environment variables and stdin - on node 1, into fresh
# namespaces of this test's own.
#   ADD -> CHECK -> DEL -> DEL; VERSION; STATUS with the agent up and down; GC with a
#   valid-attachments list; bad stdin, missing variables, an existing interface name and the
#   agent being down each give the spec's error JSON (code) and exit status, and leave nothing
#   behind; the result has the shape of the reference ptp + host-local plugins' result.
#
# Lab: agent on n1 (pod CIDR 10.0.1.0/24). cnitool runs on n1 in a mount namespace of its own
# whose /var/lib is a directory of this test (libcni's result cache), so nothing is written to
# the machine's /var/lib/cni.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$E2E_REPO/scripts/lib/gotools.sh"

e2e_init CniConformance npe_cni
CNITOOL=$(np_go_tool cnitool) || { fail CniConformance "no cnitool (scripts/setup.sh builds it; needs go)"; exit 1; }
for p in loopback ptp host-local; do
  [[ -x /usr/lib/cni/$p ]] || { fail CniConformance "/usr/lib/cni/$p is missing (Debian containernetworking-plugins)"; exit 1; }
done
e2e_lab_up n1

CNIBIN=$NP_LAB_DIR/n1/cni/bin
SOCK=$NP_LAB_DIR/n1/run/agent.sock
NET=${NP_LAB_PREFIX}net
NETDIR=$E2E_TMP/net.d
VARLIB=$E2E_TMP/varlib
mkdir -p "$NETDIR" "$VARLIB/cni" "$E2E_TMP/hostlocal"
# As containerd 1.7 runs it: cniVersion 1.0.0 (Debian's loopback speaks up to 1.0.0), loopback
# first. STATUS and GC are 1.1.0 operations, which loopback 1.1.1 does not know: a 1.1.0 list of
# ours alone serves them (as does the agent's own conflist).
cat >"$NETDIR/10-chain.conflist" <<EOF
{"cniVersion":"1.0.0","name":"$NET","plugins":[{"type":"loopback"},{"type":"nodepath-cni","socket":"$SOCK"}]}
EOF
cat >"$NETDIR/20-status.conflist" <<EOF
{"cniVersion":"1.1.0","name":"${NET}11","plugins":[{"type":"nodepath-cni","socket":"$SOCK"}]}
EOF
cat >"$NETDIR/30-ref.conflist" <<EOF
{"cniVersion":"1.0.0","name":"${NET}ref","plugins":[{"type":"loopback"},
 {"type":"ptp","ipMasq":false,"ipam":{"type":"host-local","subnet":"10.99.0.0/24","dataDir":"$E2E_TMP/hostlocal"}}]}
EOF

# cnitool <add|check|del|status|gc> <net> <netns suffix>: as a runtime on node 1.
cnitool() {
  local cmd=$1 net=$2 ns=$3
  lab_node_exec n1 env NETCONFPATH="$NETDIR" CNI_PATH="$CNIBIN:/usr/lib/cni" \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-$ns" \
    unshare -m --propagation private sh -c 'mount --bind "$1" /var/lib && shift && exec "$@"' cnitool \
    "$VARLIB" "$CNITOOL" "$cmd" "$net" "/var/run/netns/$NP_LAB_PREFIX-$ns"
}
# plugin <stdin> VAR=value...: nodepath-cni on node 1 with exactly these variables (env -i).
plugin() {
  local in=$1
  shift
  printf '%s' "$in" | lab_node_exec n1 env -i PATH="$PATH" "$@" "$CNIBIN/nodepath-cni"
}
conf() { # [cniVersion] [extra JSON members]
  printf '{"cniVersion":"%s","name":"%s","type":"nodepath-cni","socket":"%s"%s}' "${1:-1.1.0}" "$NET" "$SOCK" "${2:-}"
}
ns_path() { echo "/var/run/netns/$NP_LAB_PREFIX-$1"; }

# What the node has that a CNI call could leave behind: links, routes, endpoints, IPAM count.
node_state() {
  ip -n "$NP_LAB_PREFIX-n1" -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort
  ip -n "$NP_LAB_PREFIX-n1" route show
  agentctl_json n1 endpoint list | jq -c '[.endpoints[] | {container_id, ifname, ipv4}]'
  agentctl_json n1 status | jq -c '.ipam'
}
# expect_nothing_left <before>: node_state is what it was.
expect_nothing_left() {
  local now
  now=$(node_state)
  [[ $now == "$1" ]] && return 0
  echo "the node changed:"
  diff <(printf '%s\n' "$1") <(printf '%s\n' "$now") || true
  return 1
}
# expect_cni_error <code> <msg-regex> <plugin args...>: exit 1, error JSON with that code on stdout.
expect_cni_error() {
  local code=$1 re=$2 out rc=0
  shift 2
  out=$(plugin "$@" 2>/dev/null) || rc=$?
  if ((rc == 1)) && jq -e --argjson c "$code" --arg re "$re" \
    '.code == $c and (.msg | test($re)) and (.cniVersion | type == "string")' <<<"$out" >/dev/null 2>&1; then
    return 0
  fi
  echo "expected exit 1 and {code: $code, msg: /$re/}, saw exit $rc and: ${out:-(nothing on stdout)}"
  return 1
}
expect_endpoints() { # <jq condition on the endpoint list>
  local out
  out=$(agentctl_json n1 endpoint list) || { echo "agentctl endpoint list failed"; return 1; }
  jq -e "$1" <<<"$out" >/dev/null && return 0
  echo "expected the endpoints to satisfy $1, saw $(jq -c '[.endpoints[] | {container_id, ifname, ipv4, host_ifname}]' <<<"$out")"
  return 1
}

# --- VERSION and STATUS ---------------------------------------------------------------------
version_ok() {
  local out
  out=$(plugin '{"cniVersion":"1.0.0"}' CNI_COMMAND=VERSION) || { echo "VERSION failed: $out"; return 1; }
  jq -e '.cniVersion == "1.0.0" and .supportedVersions == ["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]' <<<"$out" >/dev/null ||
    { echo "VERSION said $out"; return 1; }
}
check "VERSION lists 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0 in the requested cniVersion" version_ok
check "STATUS (cnitool, agent up) succeeds" cnitool status "${NET}11" n1
agent_conf_status() { # the conflist the agent wrote is one cnitool can use
  lab_node_exec n1 env NETCONFPATH="$NP_LAB_DIR/n1/cni/net.d" CNI_PATH="$CNIBIN" "$CNITOOL" status nodepath /dev/null
}
check "the agent wrote 05-nodepath.conflist, and STATUS through it succeeds" agent_conf_status

# --- ADD -> CHECK -> DEL -> DEL through cnitool, loopback chained before ours ----------------
lab_netns_create n1-c1
before=$(node_state)
add_out=$E2E_TMP/add.json
cni_add() { cnitool add "$NET" n1-c1 >"$add_out"; }
require "ADD (cnitool, loopback + nodepath-cni) into a fresh namespace" cni_add
result_ok() {
  jq -e --arg ns "$(ns_path n1-c1)" '
    .cniVersion == "1.0.0"
    and ([.interfaces[].name] | .[0] == "lo" and (.[1] | startswith("lxc")) and (.[1] | length) == 15 and .[2] == "eth0")
    and .interfaces[2].sandbox == $ns and (.interfaces[1].sandbox // "") == ""
    and (.ips | map(select(.address | startswith("10.0.1."))) | length == 1)
    and (.ips[] | select(.address | startswith("10.0.1.")) | .address | endswith("/32"))
    and (.ips[] | select(.address | startswith("10.0.1.")) | .gateway == "10.0.1.1" and .interface == 2)
    and ([.routes[].dst] | index("0.0.0.0/0") != null and index("10.0.1.1/32") != null)' "$add_out" >/dev/null && return 0
  echo "unexpected ADD result:"
  cat "$add_out"
  return 1
}
check "ADD's result: lo (loopback's), the host lxc device, eth0 in the namespace; one /32 with gateway 10.0.1.1 on eth0; default and router routes" result_ok
POD_IP=$(jq -r '.ips[] | select(.address | startswith("10.0.1.")) | .address | sub("/32$"; "")' "$add_out")
HOST_IF=$(jq -r '.interfaces[1].name' "$add_out")
pod_wired() {
  local a r h
  a=$(ip -n "$NP_LAB_PREFIX-n1-c1" -4 -o addr show dev eth0 | awk '{ print $4 }')
  r=$(ip -n "$NP_LAB_PREFIX-n1-c1" route show)
  h=$(ip -n "$NP_LAB_PREFIX-n1" route show "$POD_IP/32")
  [[ $a == "$POD_IP/32" && $r == *"default via 10.0.1.1 dev eth0"* && $r == *"10.0.1.1 dev eth0 scope link"* &&
    $h == *"dev $HOST_IF proto 202 scope link"* ]] && ip -n "$NP_LAB_PREFIX-n1-c1" link show lo | grep -q 'UP' && return 0
  echo "pod: addr '$a', routes: $r; host route: '$h'"
  return 1
}
check "the kernel has it: $POD_IP/32 on eth0, routes via 10.0.1.1, lo up, host route $POD_IP/32 dev $HOST_IF proto 202" pod_wired
check "agentctl endpoint list shows the pod (default/pod-n1-c1, $POD_IP, $HOST_IF)" \
  expect_endpoints "[.endpoints[] | select(.pod_namespace == \"default\" and .pod_name == \"pod-n1-c1\" and .ipv4 == \"$POD_IP\" and .host_ifname == \"$HOST_IF\" and .ifname == \"eth0\")] | length == 1"
ipam_line() { lab_agentctl n1 status | grep -E '^IPAM: +IPv4: 1/253 allocated from 10.0.1.0/24' || { lab_agentctl n1 status | grep IPAM; return 1; }; }
check "status: IPAM: IPv4: 1/253 allocated from 10.0.1.0/24" ipam_line
ping_router() { lab_pod_exec n1 c1 ping -c1 -W2 10.0.1.1 >/dev/null; }
check "the pod reaches its router 10.0.1.1" ping_router
check "CHECK (cnitool, prevResult from libcni's cache) succeeds" cnitool check "$NET" n1-c1
idempotent_add() {
  local cid out
  cid=$(agentctl_json n1 endpoint list | jq -r '.endpoints[0].container_id')
  out=$(plugin "$(conf)" CNI_COMMAND=ADD CNI_CONTAINERID="$cid" CNI_NETNS="$(ns_path n1-c1)" CNI_IFNAME=eth0) ||
    { echo "ADD again failed: $out"; return 1; }
  jq -e --arg ip "$POD_IP/32" --arg h "$HOST_IF" '.ips[0].address == $ip and .interfaces[0].name == $h' <<<"$out" >/dev/null && return 0
  echo "expected the same address $POD_IP and device $HOST_IF, saw $out"
  return 1
}
check "ADD of the same attachment again (direct) returns the same address and device (idempotent)" idempotent_add
check "DEL (cnitool) succeeds" cnitool del "$NET" n1-c1
check "...and leaves the node as before the ADD (device, route, endpoint, address freed)" expect_nothing_left "$before"
check "...and the pod's eth0 is gone" eval '! ip -n "$NP_LAB_PREFIX-n1-c1" link show eth0 2>/dev/null'
check "a second DEL (cnitool) succeeds too" cnitool del "$NET" n1-c1
check "DEL (direct) of an attachment whose namespace is gone succeeds" \
  plugin "$(conf)" CNI_COMMAND=DEL CNI_CONTAINERID=gone1 CNI_NETNS=/var/run/netns/does-not-exist CNI_IFNAME=eth0

# --- the reference: ptp + host-local give a result of the same shape --------------------------
lab_netns_create n1-r1
lab_netns_create n1-c9
# The shape of a result, leaving out what only one of them has by design: loopback's lo (ptp
# does not pass prevResult through), routes (ptp reports none) and the 1.1.0-only fields.
shape() { jq -c '[.ips[] | select(.address | startswith("127.") | not)][0] as $ip | {
  keys: (keys - ["dns", "routes"]), ip: ($ip | keys), ipOnPodIf: ((.interfaces[$ip.interface].sandbox // "") != ""),
  ifKeys: ([.interfaces[] | select(.name != "lo") | keys[]] | unique - ["mtu", "socketPath", "pciID"]),
  hostIfs: ([.interfaces[] | select((.sandbox // "") == "")] | length),
  podIfs: ([.interfaces[] | select((.sandbox // "") != "" and .name != "lo")] | length), version: .cniVersion}'; }
same_shape() {
  local ours ref
  ours=$(cnitool add "$NET" n1-c9) || { echo "ADD failed: $ours"; return 1; }
  ref=$(cnitool add "${NET}ref" n1-r1) || { echo "reference ADD (ptp + host-local) failed: $ref"; return 1; }
  cnitool del "${NET}ref" n1-r1 >/dev/null || { echo "reference DEL failed"; return 1; }
  cnitool del "$NET" n1-c9 >/dev/null || { echo "DEL failed"; return 1; }
  [[ $(shape <<<"$ours") == "$(shape <<<"$ref")" ]] && return 0
  echo "ours: $(shape <<<"$ours")"
  echo "ref:  $(shape <<<"$ref")"
  echo "ours in full: $ours"
  echo "ref in full:  $ref"
  return 1
}
check "our result has the shape of ptp + host-local's (keys, one host and one pod interface, the address on the pod's)" same_shape

# --- errors leave nothing behind --------------------------------------------------------------
lab_netns_create n1-c2
before=$(node_state)
check "undecodable stdin: code 6" expect_cni_error 6 'not JSON' 'this is not json' \
  CNI_COMMAND=ADD CNI_CONTAINERID=bad1 CNI_NETNS="$(ns_path n1-c2)" CNI_IFNAME=eth0
check "a config without \"name\": code 7" expect_cni_error 7 'name' '{"cniVersion":"1.0.0","type":"nodepath-cni"}' \
  CNI_COMMAND=ADD CNI_CONTAINERID=bad2 CNI_NETNS="$(ns_path n1-c2)" CNI_IFNAME=eth0
check "an unsupported cniVersion: code 1" expect_cni_error 1 'not supported' "$(conf 0.2.0)" \
  CNI_COMMAND=ADD CNI_CONTAINERID=bad3 CNI_NETNS="$(ns_path n1-c2)" CNI_IFNAME=eth0
check "CNI_NETNS missing on ADD: code 4 naming it" expect_cni_error 4 'CNI_NETNS' "$(conf)" \
  CNI_COMMAND=ADD CNI_CONTAINERID=bad4 CNI_IFNAME=eth0
check "CNI_COMMAND missing: code 4" expect_cni_error 4 'CNI_COMMAND' "$(conf)"
check "a namespace that does not exist: code 3" expect_cni_error 3 'unknown container' "$(conf)" \
  CNI_COMMAND=ADD CNI_CONTAINERID=bad5 CNI_NETNS=/var/run/netns/"$NP_LAB_PREFIX"-nope CNI_IFNAME=eth0
ip -n "$NP_LAB_PREFIX-n1-c2" link add eth0 type veth peer name eth0peer
before_exists=$(node_state)
check "CNI_IFNAME that exists in the namespace: code 100 (interface exists)" expect_cni_error 100 'already exists' "$(conf)" \
  CNI_COMMAND=ADD CNI_CONTAINERID=bad6 CNI_NETNS="$(ns_path n1-c2)" CNI_IFNAME=eth0
check "...and the refused ADD left nothing behind (no device, route, endpoint or address)" expect_nothing_left "$before_exists"
own_eth0() { ip -n "$NP_LAB_PREFIX-n1-c2" -o link show eth0 | grep -q 'eth0@eth0peer' || { ip -n "$NP_LAB_PREFIX-n1-c2" -o link; return 1; }; }
check "...and the namespace's own eth0 is untouched" own_eth0
ip -n "$NP_LAB_PREFIX-n1-c2" link del eth0
check "the refused requests left the node as it was" expect_nothing_left "$before"

# --- GC with a valid-attachments list ---------------------------------------------------------
lab_netns_create n1-c3
lab_netns_create n1-c4
gc_setup() {
  plugin "$(conf)" CNI_COMMAND=ADD CNI_CONTAINERID=keep1 CNI_NETNS="$(ns_path n1-c3)" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN" >/dev/null &&
    plugin "$(conf)" CNI_COMMAND=ADD CNI_CONTAINERID=stale1 CNI_NETNS="$(ns_path n1-c4)" CNI_IFNAME=eth0 CNI_PATH="$CNIBIN" >/dev/null
}
require "two attachments (keep1, stale1) added" gc_setup
check "GC listing only keep1 as valid succeeds" plugin \
  "$(conf 1.1.0 ',"cni.dev/valid-attachments":[{"containerID":"keep1","ifname":"eth0"}]')" CNI_COMMAND=GC CNI_PATH="$CNIBIN"
check "...and released stale1 (its endpoint and address) and kept keep1" \
  expect_endpoints '[.endpoints[].container_id] == ["keep1"]'
check "...and stale1's eth0 is gone with its host device" eval '! ip -n "$NP_LAB_PREFIX-n1-c4" link show eth0 2>/dev/null'
check "GC needs cniVersion 1.1.0: code 1 for 1.0.0" expect_cni_error 1 'GC needs' "$(conf 1.0.0)" CNI_COMMAND=GC CNI_PATH="$CNIBIN"

# --- the agent down ---------------------------------------------------------------------------
require "stop node 1's agent" lab_agent_stop n1
check "STATUS (direct) with the agent down: code 50" expect_cni_error 50 'not (running|reachable)' "$(conf)" CNI_COMMAND=STATUS
status_down() {
  local out rc=0
  out=$(cnitool status "${NET}11" n1 2>&1) || rc=$?
  ((rc != 0)) && [[ $out =~ not\ (running|reachable) ]] && return 0
  echo "expected cnitool status to fail naming the agent, saw exit $rc: $out"
  return 1
}
check "STATUS (cnitool) with the agent down fails" status_down
check "ADD with the agent down: code 11 (try again later)" expect_cni_error 11 'not (running|reachable)' "$(conf)" \
  CNI_COMMAND=ADD CNI_CONTAINERID=down1 CNI_NETNS="$(ns_path n1-c2)" CNI_IFNAME=eth0
check "...and it made nothing in the namespace" eval '! ip -n "$NP_LAB_PREFIX-n1-c2" link show eth0 2>/dev/null'
require "start node 1's agent again" lab_agent_start n1
require "...ready" lab_agent_wait n1 30
check "after the restart keep1 still has its endpoint" expect_endpoints '[.endpoints[].container_id] == ["keep1"]'
check "DEL keep1" plugin "$(conf)" CNI_COMMAND=DEL CNI_CONTAINERID=keep1 CNI_NETNS="$(ns_path n1-c3)" CNI_IFNAME=eth0
check "no endpoints are left" expect_endpoints '.endpoints | length == 0'

e2e_finish
