#!/usr/bin/env bash
# L2 announcements (issue 10's bench): failover time and Lease request rate, in a lab of its own
# (namespaces only) with the k8s tier's real kube-apiserver + etcd. Prints Markdown tables.
#
#   bench/l2_failover.sh [RUNS=3] [SIZES="1 100 1000"]
#
# Failover, per timing set (default 2s/1.5s/500ms, short 1s/800ms/250ms, Cilium's 15s/5s/2s):
# agents on n1 and n2 with --enable-l2-announcements, the seed's policy, one Service with the
# externalIP 192.168.20.50 and backends in n1-p1 and n2-p1; the LAN client (on-link route for
# 192.168.20.0/24) checks who answers; the holder's agent is killed with SIGKILL and the time is
# taken to the first ARP reply from the other node (arping, one request a poll, 1 s timeout) and
# to the first successful TCP connect to the address (nptraffic, 300 ms timeout a try), on one
# clock. Request rate, per number of announced services (externalIPs from 192.168.24.0/21): the
# Lease requests both agents sent (agentctl status: l2.lease_requests, heartbeat included) over
# 10 s of steady state, and in all from the services' creation until every Lease had a holder.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NP_BUILD_DIR=${NP_BUILD_DIR:-$repo/build}
export NP_LAB_PREFIX=npb_l2$$
export NP_LAB_DIR=/run/nodepath-lab/$NP_LAB_PREFIX
# shellcheck source=../scripts/lib/k8s.sh
source "$repo/scripts/lib/k8s.sh"
RUNS=${1:-3}
SIZES=${2:-1 100 1000}
command -v arping >/dev/null || { echo "arping is missing (scripts/setup.sh)" >&2; exit 1; }

cleanup() { k8s_down >/dev/null 2>&1 || true; lab_down >/dev/null 2>&1 || true; }
trap cleanup EXIT
lab_up >/dev/null
k8s_up >/dev/null
KC=$K8S_KUBECONFIG
NPTRAFFIC=$(lab__bin nptraffic)
VIP=192.168.20.50
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
apply() { k8s_kubectl apply -f - >/dev/null; }
for n in n1 n2; do
  apply <<YAML
apiVersion: v1
kind: Node
metadata: {name: $n, labels: {node-role.kubernetes.io/control-plane: "true"}}
YAML
done
k8s_kubectl apply -f "$repo/test/k8s/fixtures/seed-l2-lb-ipam.yaml" >/dev/null
lab_pod_serve n1 p1 >/dev/null
lab_pod_serve n2 p1 >/dev/null
apply <<YAML
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
  externalIPs: [$VIP]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, protocol: TCP, port: 8080}]
endpoints:
  - {addresses: [10.0.1.10], conditions: {ready: true}, nodeName: n1}
  - {addresses: [10.0.2.10], conditions: {ready: true}, nodeName: n2}
YAML
lab_client_exec ip route add 192.168.20.0/24 dev eth0
mac_of() { lab_node_exec "$1" ip -j link show ens192 | jq -r '.[0].address'; }
declare -A MAC=([n1]=$(mac_of n1) [n2]=$(mac_of n2))
holder() { k8s_kubectl get lease -n cilium "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
answer() { # the MAC of the first reply to one request for $VIP (1 s), lower case
  lab_client_exec arping -b -I eth0 -c 1 -w 1 "$VIP" 2>/dev/null |
    sed -n 's/.*reply from [0-9.]* \[\([0-9A-Fa-f:]*\)\].*/\1/p' | tr 'A-F' 'a-f' | head -n 1
}
agents_up() { # timings...
  local n
  for n in n1 n2; do
    lab_agent_start "$n" --k8s-kubeconfig-path "$KC" --enable-l2-announcements --bpf-lb-mode dsr "$@"
  done
  for n in n1 n2; do lab_agent_wait "$n" 60 >/dev/null; done
}
agents_down() { lab_agent_stop n1 >/dev/null 2>&1 || true; lab_agent_stop n2 >/dev/null 2>&1 || true; }
wait_for() { # <timeout-s> cmd...: poll cmd every 20 ms
  local deadline=$(($(now_ms) + $1 * 1000))
  shift
  until "$@"; do
    (($(now_ms) < deadline)) || return 1
    sleep 0.02
  done
}
held() { [[ $(holder nodepath-l2announce-default-web) == n[12] ]]; }
answers_from() { [[ $(answer) == "${MAC[$1],,}" ]]; }
connects() { lab_client_exec "$NPTRAFFIC" connect "$VIP:80" --count 1 --timeout-ms 300 >/dev/null 2>&1; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "-")}'; }

echo "| timings (lease / renew deadline / retry) | kill -> first ARP answer from the new holder, ms (median, min-max of $RUNS) | kill -> first TCP connect, ms |"
echo "|---|---:|---:|"
for t in "2s 1500ms 500ms default" "1s 800ms 250ms short" "15s 5s 2s Cilium's"; do
  read -r d r p name <<<"$t"
  arps=() tcps=()
  for ((i = 0; i < RUNS; i++)); do
    agents_up --l2-announcements-lease-duration "$d" --l2-announcements-renew-deadline "$r" \
      --l2-announcements-retry-period "$p"
    wait_for 60 held
    h=$(holder nodepath-l2announce-default-web)
    o=$([[ $h == n1 ]] && echo n2 || echo n1)
    wait_for 20 answers_from "$h"
    t0=$(now_ms)
    lab_agent_stop "$h" KILL
    wait_for 60 answers_from "$o"
    arps+=($(($(now_ms) - t0)))
    wait_for 60 connects
    tcps+=($(($(now_ms) - t0)))
    agents_down
  done
  a=$(printf '%s\n' "${arps[@]}") c=$(printf '%s\n' "${tcps[@]}")
  echo "| $name ($d / $r / $p) | $(median <<<"$a") ($(sort -n <<<"$a" | head -1)-$(sort -n <<<"$a" | tail -1)) | $(median <<<"$c") ($(sort -n <<<"$c" | head -1)-$(sort -n <<<"$c" | tail -1)) |"
done

requests() { # both agents' Lease requests so far
  local n sum=0 v
  for n in n1 n2; do
    v=$(lab_agentctl "$n" -o json status 2>/dev/null | jq -r '.l2.lease_requests // 0')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
svc_yaml() { # <from> <to>: services bench-<i> with one externalIP each
  local i
  for ((i = $1; i < $2; i++)); do
    printf -- '---\napiVersion: v1\nkind: Service\nmetadata: {name: bench-%d, namespace: default}\nspec:\n  ports: [{port: 80}]\n  externalIPs: [192.168.%d.%d]\n' \
      "$i" $((24 + i / 250)) $((1 + i % 250))
  done
}
all_held() { # <n>: every bench Lease has a holder
  local got
  got=$(k8s_kubectl get leases -n cilium -o json | jq '[.items[] | select(.metadata.name | startswith("nodepath-l2announce-default-bench-")) | select(.spec.holderIdentity // "" | length > 0)] | length')
  ((got >= $1))
}
echo
echo "| announced services | Lease requests to all held (both agents) | time to all held, s | steady state, requests/s (10 s) |"
echo "|---:|---:|---:|---:|"
k8s_kubectl delete svc -n default web >/dev/null
agents_up
have=0
for n in $SIZES; do
  r0=$(requests) t0=$(now_ms)
  svc_yaml "$have" "$n" | apply
  have=$n
  wait_for 300 all_held "$n"
  r1=$(requests) t1=$(now_ms)
  sleep 10 # a fixed window to count steady-state requests in, not a synchronisation
  r2=$(requests)
  echo "| $n | $((r1 - r0)) | $(awk -v ms=$((t1 - t0)) 'BEGIN {printf "%.1f", ms / 1000}') | $(awk -v n=$((r2 - r1)) 'BEGIN {printf "%.1f", n / 10}') |"
done
agents_down
