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
# 10 s of steady state, and from the services' creation until every Lease had a holder: in all,
# on average and the peak over 1 s samples. Failover at scale: the largest number of services,
# all held by n1 (n1's agent alone acquires them, then n2's starts), n1's agent killed with
# SIGKILL: the time to the survivor's first and last answering address (agentctl status), its
# Lease requests per second meanwhile, an ARP check of the first and last address, and the time
# until every service Lease names the survivor (kubectl) with its request rate until then.
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
answer() { # [ip=$VIP]: the MAC of the first reply to one request (1 s), lower case
  lab_client_exec arping -b -I eth0 -c 1 -w 1 "${1:-$VIP}" 2>/dev/null |
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
agent_up() { # <node> timings...
  local n=$1
  shift
  lab_agent_start "$n" --k8s-kubeconfig-path "$KC" --enable-l2-announcements --bpf-lb-mode dsr "$@"
  lab_agent_wait "$n" 60 >/dev/null
}
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

requests() { # [nodes=n1 n2]: the agents' Lease requests so far
  local n sum=0 v
  for n in ${1:-n1 n2}; do
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
held_by() { # <node> <n>: every bench Lease is held by <node>
  local got
  got=$(k8s_kubectl get leases -n cilium -o json | jq --arg h "$1" '[.items[] | select(.metadata.name | startswith("nodepath-l2announce-default-bench-")) | select(.spec.holderIdentity == $h)] | length')
  ((got >= $2))
}
answering() { # <node>: how many addresses its agent answers for
  lab_agentctl "$1" -o json status 2>/dev/null | jq '[.l2.announcements[]? | select(.answering == true)] | length'
}
rate() { awk -v n="$1" -v ms="$2" 'BEGIN {printf "%.1f", (ms > 0 ? n * 1000 / ms : 0)}'; }
secs() { awk -v ms="$1" 'BEGIN {printf "%.1f", ms / 1000}'; }
echo
echo "| announced services | Lease requests to all held (both agents) | time to all held, s | requests/s to all held: mean, peak (1 s samples) | steady state, requests/s (10 s) |"
echo "|---:|---:|---:|---:|---:|"
k8s_kubectl delete svc -n default web >/dev/null
agents_up
have=0
for n in $SIZES; do
  r0=$(requests) t0=$(now_ms)
  svc_yaml "$have" "$n" | apply
  have=$n
  deadline=$((t0 + 300000)) peak=0 rp=$r0 tp=$t0
  until all_held "$n"; do
    (($(now_ms) < deadline)) || { echo "not all $n Leases held after 300 s" >&2; exit 1; }
    sleep 0.2
    t=$(now_ms)
    if ((t - tp >= 1000)); then
      r=$(requests)
      peak=$(awk -v p="$peak" -v x="$(rate $((r - rp)) $((t - tp)))" 'BEGIN {print (x > p ? x : p)}')
      rp=$r tp=$t
    fi
  done
  r1=$(requests) t1=$(now_ms)
  [[ $peak != 0 ]] || peak="-" # held before the first 1 s sample
  sleep 10 # a fixed window to count steady-state requests in, not a synchronisation
  r2=$(requests)
  echo "| $n | $((r1 - r0)) | $(secs $((t1 - t0))) | $(rate $((r1 - r0)) $((t1 - t0))), $peak | $(rate $((r2 - r1)) 10000) |"
done
agents_down

# Failover at scale: every service on n1 (its agent alone), then n2, then n1's agent killed.
echo
echo "| services on the killed holder | kill -> survivor answers the first, s | kill -> survivor answers all, s | survivor's Lease requests to all answered (heartbeat included), mean requests/s | kill -> every Lease held by the survivor, s | survivor's requests to then: in all, mean, peak requests/s (1 s samples) | first and last address answered by the survivor (ARP) |"
echo "|---:|---:|---:|---:|---:|---:|---|"
agent_up n1
wait_for 300 held_by n1 "$have"
agent_up n2
sees_n1_holding_all() { # n2's agent has listed every Lease, held by n1
  local got
  got=$(lab_agentctl n2 -o json status 2>/dev/null | jq '[.l2.announcements[]? | select(.holder == "n1")] | length')
  ((${got:-0} >= have))
}
wait_for 60 sees_n1_holding_all
last=$((have - 1))
first_ip=192.168.24.1 last_ip=192.168.$((24 + last / 250)).$((1 + last % 250))
ip_answered_by() { [[ $(answer "$2") == "${MAC[$1],,}" ]]; }
wait_for 20 ip_answered_by n1 "$last_ip"
r0=$(requests n2) t0=$(now_ms)
lab_agent_stop n1 KILL
tf=0
until [[ $(answering n2) -ge $have ]]; do
  (($(now_ms) < t0 + 300000)) || { echo "the survivor does not answer all $have after 300 s" >&2; exit 1; }
  ((tf > 0)) || { [[ $(answering n2) -gt 0 ]] && tf=$(now_ms); }
  sleep 0.1
done
t1=$(now_ms) r1=$(requests n2)
((tf > 0)) || tf=$t1
arp="no"
[[ $(answer "$first_ip") == "${MAC[n2],,}" && $(answer "$last_ip") == "${MAC[n2],,}" ]] && arp="yes"
# The service Leases rewritten to the survivor (answered meanwhile), and the request rate then.
peak=0 rp=$r1 tp=$t1
until held_by n2 "$have"; do
  (($(now_ms) < t0 + 300000)) || { echo "not every Lease held by the survivor after 300 s" >&2; exit 1; }
  sleep 0.2
  t=$(now_ms)
  if ((t - tp >= 1000)); then
    r=$(requests n2)
    peak=$(awk -v p="$peak" -v x="$(rate $((r - rp)) $((t - tp)))" 'BEGIN {print (x > p ? x : p)}')
    rp=$r tp=$t
  fi
done
t2=$(now_ms) r2=$(requests n2)
echo "| $have | $(secs $((tf - t0))) | $(secs $((t1 - t0))) | $((r1 - r0)), $(rate $((r1 - r0)) $((t1 - t0))) | $(secs $((t2 - t0))) | $((r2 - r0)), $(rate $((r2 - r0)) $((t2 - t0))), $peak | $arp |"
agents_down
