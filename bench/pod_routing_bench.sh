#!/usr/bin/env bash
# Pod-to-pod TCP across the lab's two nodes: request/response rate (one connection) and
# connection rate (connect + request/response + close), in one run, as a ratio to the same
# namespaces wired with plain veth + kernel routing (the lab's by-hand pods, no agent, no BPF).
# Cases: baseline; BPF host routing (pods through nodepath-cni, lxc.bpf.c redirects); legacy host
# routing (the same pods, agents with --enable-host-legacy-routing: lxc.bpf.c hands to the stack).
# Each case runs REPS times for DURATION_MS each (medians are printed). Needs root; a lab of its
# own (prefix npb_lxc<pid>), torn down on exit. Prints a Markdown table; never fails on numbers.
#
#   sudo NP_BUILD_DIR=build [BENCH_ORDER=legacy-first] bench/pod_routing_bench.sh [REPS] [DURATION_MS]
# shellcheck disable=SC2317 # functions run indirectly (trap)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NP_BUILD_DIR=${NP_BUILD_DIR:-$repo/build}
export NP_LAB_PREFIX=npb_lxc$$
export NP_LAB_DIR=/run/nodepath-lab/$NP_LAB_PREFIX
# shellcheck source=../scripts/lib/lab.sh
source "$repo/scripts/lib/lab.sh"
REPS=${1:-5}
DURATION_MS=${2:-3000}
NPTRAFFIC=$NP_BUILD_DIR/test/tools/nptraffic

cleanup() { lab_down >/dev/null 2>&1 || true; }
trap cleanup EXIT
lab_up >/dev/null

conf() { printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s"}' "$NP_LAB_DIR/$1/run/agent.sock"; }
cni() { # <node> <command> <container> <ns suffix>
  local bin=$NP_LAB_DIR/$1/cni/bin
  printf '%s' "$(conf "$1")" | lab_node_exec "$1" env -i PATH="$PATH" CNI_COMMAND="$2" CNI_CONTAINERID="$3" \
    CNI_NETNS="/var/run/netns/$NP_LAB_PREFIX-$4" CNI_IFNAME=eth0 CNI_PATH="$bin" \
    CNI_ARGS="K8S_POD_NAMESPACE=bench;K8S_POD_NAME=$3" "$bin/nodepath-cni" >/dev/null
}
agents() { # [agent flags...]: (re)start both agents and wait until they serve
  local n
  for n in n1 n2; do lab_agent_stop "$n" >/dev/null 2>&1 || true; done
  for n in n1 n2; do lab_agent_start "$n" "$@"; done
  for n in n1 n2; do lab_agent_wait "$n" 30; done
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
# A client closes first, so each of its connections leaves a TIME_WAIT socket: without reusing
# them (as netperf users set too) a few seconds of CRR exhaust the client pod's ports.
client_sysctls() { ip netns exec "$NP_LAB_PREFIX-$1" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000"; }
measure() { # <node> <pod> <addr:port> <--rr|--crr>: median transactions per second
  local i
  client_sysctls "$1-$2"
  for ((i = 0; i < REPS; i++)); do
    lab_pod_exec "$1" "$2" "$NPTRAFFIC" rate "$3" "$4" --duration-ms "$DURATION_MS" | sed -n 's/.*per_sec=\([0-9]*\).*/\1/p'
  done | median
}

declare -A rr crr
# Baseline: by-hand pods n1-p1 (10.0.1.10) -> n2-p1 (10.0.2.10) over the lab's static routes.
lab_pod_serve n2 p1 >/dev/null
rr[base]=$(measure n1 p1 10.0.2.10:8080 --rr)
crr[base]=$(measure n1 p1 10.0.2.10:8080 --crr)

# The two datapath cases in the order BENCH_ORDER says (bpf-first or legacy-first): on a loaded
# machine the later case tends to see a different load; swapping the order shows how much.
bpf_case() {
  agents
  lab_netns_create n1-c1
  cni n1 ADD c1 n1-c1
  rr[bpf]=$(measure n1 c1 "$ip2:8080" --rr)
  crr[bpf]=$(measure n1 c1 "$ip2:8080" --crr)
}
# Each case its own client pod: the other case's closed connections would sit in its TIME_WAIT.
legacy_case() {
  agents --enable-host-legacy-routing=true
  lab_netns_create n1-c3
  cni n1 ADD c3 n1-c3
  rr[legacy]=$(measure n1 c3 "$ip2:8080" --rr)
  crr[legacy]=$(measure n1 c3 "$ip2:8080" --crr)
}
agents
lab_netns_create n2-c2
cni n2 ADD c2 n2-c2
ip2=$(lab_agentctl n2 endpoint list -o json | jq -r '.endpoints[] | select(.container_id == "c2") | .ipv4')
lab_pod_serve n2 c2 >/dev/null
if [[ ${BENCH_ORDER:-bpf-first} == legacy-first ]]; then
  legacy_case
  bpf_case
else
  bpf_case
  legacy_case
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", (b > 0) ? a / b : 0 }'; }
echo "_Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, kernel $(uname -r); $REPS runs of $DURATION_MS ms per case, medians; order: baseline, ${BENCH_ORDER:-bpf-first}._"
echo
echo "| case | TCP RR /s | x baseline | TCP CRR /s | x baseline |"
echo "|---|---:|---:|---:|---:|"
echo "| **baseline**: plain veth + kernel routing, no BPF | ${rr[base]} | 1.00x | ${crr[base]} | 1.00x |"
echo "| **BPF host routing** (lxc.bpf.c: redirect_peer / FIB + redirect) | ${rr[bpf]} | $(ratio "${rr[bpf]}" "${rr[base]}") | ${crr[bpf]} | $(ratio "${crr[bpf]}" "${crr[base]}") |"
echo "| legacy host routing (lxc.bpf.c, then the stack) | ${rr[legacy]} | $(ratio "${rr[legacy]}" "${rr[base]}") | ${crr[legacy]} | $(ratio "${crr[legacy]}" "${crr[base]}") |"
cni n1 DEL c1 n1-c1 || true
cni n1 DEL c3 n1-c3 || true
cni n2 DEL c2 n2-c2 || true
