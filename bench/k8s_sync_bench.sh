#!/usr/bin/env bash
# Kubernetes -> agent: full resync time, agent RSS and API write -> map latency (p50/p99) at
# 1,000 and 10,000 services of 10 endpoints each (issue 9's bench), against the k8s tier's real
# kube-apiserver + etcd in a lab of its own (namespaces only). Prints a Markdown table.
#
#   bench/k8s_sync_bench.sh [SIZES="1000 10000"] [CHANGES=200]
#
# For each size: the objects are created (bench k8s_sync_bench load; kept for the next size),
# an agent starts on node n1 with the admin kubeconfig, and `synced` times from its start until its
# kubernetes source has synced and the last service has its backends (the full resync); then RSS
# (VmRSS, VmHWM); then CHANGES one-at-a-time endpoint changes, each timed from just before the
# PATCH is sent until the agent's GetService shows it (one clock, both ends).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export NP_BUILD_DIR=${NP_BUILD_DIR:-$repo/build}
export NP_LAB_PREFIX=npb_k8s$$
export NP_LAB_DIR=/run/nodepath-lab/$NP_LAB_PREFIX
# shellcheck source=../scripts/lib/k8s.sh
source "$repo/scripts/lib/k8s.sh"
SIZES=${1:-1000 10000}
CHANGES=${2:-200}
BENCH=$NP_BUILD_DIR/bench/k8s_sync_bench
[[ -x $BENCH ]] || { echo "build first: $BENCH is missing" >&2; exit 1; }

cleanup() { k8s_down >/dev/null 2>&1 || true; lab_down >/dev/null 2>&1 || true; }
trap cleanup EXIT
lab_up >/dev/null
k8s_up >/dev/null
KC=$K8S_KUBECONFIG
SOCK=$NP_LAB_DIR/n1/run/agent.sock
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

rows=()
made=0
for n in $SIZES; do
  echo "k8s_sync_bench: $n services x 10 endpoints" >&2
  load=$(lab_node_exec n1 "$BENCH" load --kubeconfig "$KC" --from "$made" --services "$n" --endpoints 10)
  made=$n
  echo "  $load" >&2
  lab_agent_start n1 --k8s-kubeconfig-path "$KC" --bpf-lb-map-max 262144
  synced=$(lab_node_exec n1 "$BENCH" synced --socket "$SOCK" --services "$n" --timeout 900)
  pid=$(cat "$NP_LAB_DIR/n1/agent.pid")
  rss=$(kib "$pid" VmRSS) hwm=$(kib "$pid" VmHWM)
  lat=$(lab_node_exec n1 "$BENCH" latency --kubeconfig "$KC" --socket "$SOCK" --services "$n" --endpoints 10 \
    --changes "$CHANGES")
  echo "  $synced rss_kib=$rss hwm_kib=$hwm; $lat" >&2
  lab_agent_stop n1
  v() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
  rows+=("| $n | $((n * 10)) | $(v seconds "$synced") s | $((rss / 1024)) MiB (peak $((hwm / 1024))) | $(v p50_ms "$lat") | $(v p90_ms "$lat") | $(v p99_ms "$lat") | $(v max_ms "$lat") |")
done
echo "_Measured $(date -u '+%Y-%m-%d %H:%M') UTC on $(nproc) cores, kernel $(uname -r); $CHANGES changes per size._"
echo
echo "| services | endpoints | full resync (agent start -> synced) | agent RSS after | write->map p50 ms | p90 | p99 | max |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
