#!/usr/bin/env bash
# K8sL2Announcement: L2 announcements (issue 10) against a real kube-apiserver, as a host on the
# seed's LAN sees them.
#  - the seed's pool and L2 policy apply verbatim (fixtures/seed-l2-lb-ipam.yaml); the operator's
#    LB-IPAM gives the LoadBalancer Service default/web an address from 192.168.20.0/24;
#  - `arping` from the LAN client (an on-link route for 192.168.20.0/24 in its netns, as a host on
#    the seed's LAN has) gets one answer per request, all from the Lease holder's ens192 MAC;
#    `kubectl get leases -n cilium` names the holder; TCP to the address reaches the backends
#    (DSR mode); `agentctl l2 list` / `status` on the holder show the announcement;
#  - killing the holder's agent (SIGKILL) moves the announcement: the other node answers (with a
#    gratuitous ARP the client's neighbour entry follows) and the client connects again;
#  - a policy change that no longer selects the service withdraws it: no node answers and the
#    Lease is handed back; selected again, it is announced again;
#  - an agent stopped with SIGTERM hands its Leases back on the way out: the other node answers
#    at once, without waiting for the lease to expire.
#
# Lab: agents on n1 and n2 (--enable-l2-announcements, default timings 2s/1.5s/500ms, DSR);
# kube-apiserver + etcd in n1; the operator in n1; echo servers in n1-p1 and n2-p1. The client
# (192.168.10.200) is on the LAN bridge with both nodes' ens192, so its ARP reaches them.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BUILD_ORIG=${NP_BUILD_DIR:-$E2E_REPO/build}
e2e_init K8sL2Announcement npk8s_l2
cp -p "$BUILD_ORIG/operator/nodepath-operator" "$E2E_TMP/nodepath-operator" || {
  fail "$E2E_NAME" "nodepath-operator is missing under $BUILD_ORIG/operator (build first)"
  exit 1
}
command -v arping >/dev/null || { fail "$E2E_NAME" "arping is missing (scripts/setup.sh installs iputils-arping)"; exit 1; }
E2E_LAB_MADE=1
require "lab topology up" lab_up
require "kube-apiserver and etcd up in n1 (192.168.10.100:6443)" k8s_up
KCFG=$NP_LAB_DIR/k8s/admin.kubeconfig

# The Nodes as a k3s server's: labelled control-plane, so the seed's nodeSelector takes both.
for n in n1 n2; do
  require "Node $n (node-role.kubernetes.io/control-plane)" k8s_apply <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $n
  labels: {kubernetes.io/hostname: $n, node-role.kubernetes.io/control-plane: "true"}
YAML
done
require "the seed's pool and L2 policy apply verbatim" k8s_kubectl apply -f "$K8S_TEST_DIR/fixtures/seed-l2-lb-ipam.yaml"
require "operator (LB-IPAM) started in n1" lab_bg op "$E2E_TMP/op.log" lab_node_exec n1 "$E2E_TMP/nodepath-operator" \
  --k8s-kubeconfig-path "$KCFG" --identity op
require "echo servers in n1-p1 and n2-p1" e2e_serve n1/p1 n2/p1
for n in n1 n2; do
  require "agent on $n started with --enable-l2-announcements" lab_agent_start "$n" --k8s-kubeconfig-path "$KCFG" \
    --enable-l2-announcements --bpf-lb-mode dsr
done
for n in n1 n2; do require "agent on $n ready" lab_agent_wait "$n" 30; done

require "LoadBalancer Service default/web (http 80 -> 8080) and its EndpointSlice" k8s_apply <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
YAML
slice() { web_slice_yaml "$WEB_EP_N1" "$WEB_EP_N2" | k8s_apply; }
require "EndpointSlice default/web-1 with 10.0.1.10 and 10.0.2.10" slice
vip() { k8s_kubectl get svc -n default web -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null; }
expect_vip() {
  [[ $(vip) =~ ^192\.168\.20\.[0-9]+$ ]] || { echo "web has EXTERNAL-IP '$(vip)'"; return 1; }
}
require "web gets an EXTERNAL-IP from 192.168.20.0/24" eventually 20 expect_vip
VIP=$(vip)
echo "  web's address: $VIP"
require "the client's on-link route 192.168.20.0/24 dev eth0 (its netns only)" \
  lab_client_exec ip route add 192.168.20.0/24 dev eth0

LEASE=nodepath-l2announce-default-web
holder() { k8s_kubectl get lease -n cilium "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
mac_of() { lab_node_exec "$1" ip -j link show ens192 | jq -r '.[0].address'; }
other() { [[ $1 == n1 ]] && echo n2 || echo n1; }
MAC_N1=$(mac_of n1)
MAC_N2=$(mac_of n2)
mac_name() {
  if [[ ${1,,} == "${MAC_N1,,}" ]]; then echo n1
  elif [[ ${1,,} == "${MAC_N2,,}" ]]; then echo n2
  else echo "unknown $1"; fi
}

# arp_answers [count]: broadcast requests for $VIP from the client, one a second, until `count`
# (3) replies came or `count` seconds passed (-b: never unicast to a first answerer, so every
# node that answers is heard; two answering nodes show as two MACs among the first replies);
# prints one MAC per reply.
arp_answers() {
  local n=${1:-3}
  lab_client_exec arping -b -I eth0 -c "$n" -w "$n" "$VIP" 2>/dev/null |
    sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' | tr 'A-F' 'a-f'
}
expect_first_answer_from() { # <node>: the first reply to one request (within 1 s) is <node>'s
  local got want
  want=$(mac_of "$1")
  got=$(arp_answers 1)
  [[ $got == "${want,,}" ]] && return 0
  echo "expected an answer from $1 ($want), saw '${got//$'\n'/ }'"
  return 1
}
# expect_only_answerer <node>: 3 replies to 3 requests, every one from <node>'s ens192.
expect_only_answerer() {
  local got want
  want=$(mac_of "$1")
  got=$(arp_answers)
  if [[ $(wc -l <<<"$got") -eq 3 && $(sort -u <<<"$got") == "${want,,}" ]]; then return 0; fi
  echo "expected 3 answers from $1 ($want), saw: [$(while read -r m; do [[ -n $m ]] && printf '%s(%s) ' "$m" "$(mac_name "$m")"; done <<<"$got")]"
  return 1
}
expect_no_answer() {
  local got
  got=$(arp_answers)
  [[ -z $got ]] && return 0
  echo "expected no ARP answer for $VIP, saw: ${got//$'\n'/ }"
  return 1
}
expect_holder_named() { # the Lease names someone, a lab node
  local h
  h=$(holder)
  [[ $h == n1 || $h == n2 ]] && return 0
  echo "Lease cilium/$LEASE holder is '$h'"
  return 1
}
expect_announcing() { # <node>: agentctl l2 list on it says announcing for $VIP on ens192
  local out
  out=$(agentctl_json "$1" l2 list) || { echo "agentctl l2 list failed on $1"; return 1; }
  jq -e --arg ip "$VIP" '.announcements[]? | select(.ip == $ip and .device == "ens192" and .answering == true
    and .service == "default/web" and (.since | length) > 0)' <<<"$out" >/dev/null && return 0
  echo "$1: agentctl l2 list -o json: $(jq -c . <<<"$out")"
  return 1
}

check "the Lease cilium/$LEASE gets a holder" eventually 20 expect_holder_named
H=$(holder)
O=$(other "$H")
check "the holder $H's agentctl l2 list shows $VIP announced on ens192, since when" eventually 10 expect_announcing "$H"
standby_on() { # <node> <holder>: agentctl l2 list on node: not answering, the holder named
  local out
  out=$(agentctl_json "$1" l2 list) || return 1
  jq -e --arg ip "$VIP" --arg h "$2" '.announcements[]? | select(.ip == $ip and .answering == false and .holder == $h)' \
    <<<"$out" >/dev/null && return 0
  echo "$1: $(jq -c . <<<"$out")"
  return 1
}
check "...and $O's shows it standing by, holder $H" eventually 10 standby_on "$O" "$H"
check "arping from the client: one answer per request, all from $H's MAC" eventually 10 expect_only_answerer "$H"
leases_row() {
  local out
  out=$(k8s_kubectl get leases -n cilium 2>&1)
  grep -qE "^$LEASE +$H " <<<"$out" && return 0
  echo "kubectl get leases -n cilium:"
  echo "$out"
  return 1
}
check "kubectl get leases -n cilium shows $LEASE held by $H" leases_row
status_line() {
  local out
  out=$(lab_agentctl "$H" status 2>&1) || true
  grep -qE '^L2 announcements: +1 address announced here, 0 by other nodes' <<<"$out" && return 0
  echo "$out"
  return 1
}
check "agentctl status on $H: 'L2 announcements: 1 address announced here'" eventually 5 status_line
traffic lab_client_exec -- connect "$VIP:80" --count 20
check "client -> $VIP:80 (the LB address, DSR): 20/20 connections succeed" expect_ok 20
check "...answered by both backends" expect_backends_at_least 2

t0=$(e2e_now_ms)
require "the holder $H's agent killed (SIGKILL)" lab_agent_stop "$H" KILL
check "the other node $O answers the client's ARP for $VIP" eventually 15 expect_first_answer_from "$O"
moved=$(($(e2e_now_ms) - t0))
check "...within 4 s of the kill (took ${moved} ms: heartbeat lease 2 s, a PUT on $H's heartbeat, up to 1 s of arping)" \
  test "$moved" -lt 4000
check "...alone: one answer per request, all from $O's MAC" expect_only_answerer "$O"
lease_names_o() { [[ $(holder) == "$O" ]]; }
check "...and the Lease names $O (rewritten after the takeover)" eventually 5 lease_names_o
hb_handed_back() { # the dead node's heartbeat: taken by O, then handed back once nothing names H
  local h
  h=$(k8s_kubectl get lease -n cilium "nodepath-l2-node-$H" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) || return 1
  [[ -z $h ]] && return 0
  echo "Lease cilium/nodepath-l2-node-$H holder is '$h'"
  return 1
}
check "...and $O handed $H's heartbeat Lease back" eventually 10 hb_handed_back
client_connects() {
  traffic lab_client_exec -- connect "$VIP:80" --count 5 --timeout-ms 1000
  expect_ok 5
}
check "the client connects to $VIP:80 again" eventually 10 client_connects

require "the policy's serviceSelector no longer matches web (announce=yes)" k8s_kubectl patch \
  ciliuml2announcementpolicy policy --type merge -p '{"spec":{"serviceSelector":{"matchLabels":{"announce":"yes"}}}}'
check "no node answers ARP for $VIP any more" eventually 10 expect_no_answer
released() {
  local h
  h=$(holder)
  [[ -z $h ]] && return 0
  echo "Lease cilium/$LEASE still names '$h'"
  return 1
}
check "...and $O handed the Lease back (holderIdentity empty)" eventually 10 released
none_listed() {
  local out
  out=$(agentctl_json "$O" l2 list) || return 1
  jq -e '(.announcements // []) | length == 0' <<<"$out" >/dev/null && return 0
  echo "$(jq -c . <<<"$out")"
  return 1
}
check "...and agentctl l2 list on $O lists nothing" eventually 5 none_listed
require "web labelled announce=yes" k8s_kubectl label svc -n default web announce=yes
check "selected again: $O announces $VIP (the only agent left)" eventually 15 expect_only_answerer "$O"

require "$H's agent started again" lab_agent_start "$H" --k8s-kubeconfig-path "$KCFG" --enable-l2-announcements \
  --bpf-lb-mode dsr
require "$H's agent ready" lab_agent_wait "$H" 30
check "...it stands by: $O keeps answering alone" eventually 10 standby_on "$H" "$O"
t0=$(e2e_now_ms)
require "$O's agent stopped gracefully (SIGTERM)" lab_agent_stop "$O" TERM
check "$O handed its Lease back on the way out: $H answers" eventually 10 expect_first_answer_from "$H"
handover=$(($(e2e_now_ms) - t0))
check "...sooner than a crash's lease expiry (took ${handover} ms, under 2 s)" test "$handover" -lt 2000
check "...alone" expect_only_answerer "$H"

e2e_finish
