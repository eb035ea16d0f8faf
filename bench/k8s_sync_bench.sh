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
#
# A/B: NP_AB_BUILDS="dirA dirB" [NP_AB_ROUNDS=3] bench/k8s_sync_bench.sh 10000 200 runs the agents
# of two (or more) build directories against the same lab and the same loaded objects, interleaved
# (round 1: A B, round 2: B A, ...), each from empty maps (its pins removed before it starts), so
# each build is measured against the others in the same run under the same load. One row per run,
# then the medians per build and their ratio to the first build. The bench tool itself is always
# $NP_BUILD_DIR's. NP_BENCH_PERF=PREFIX records a perf profile of each agent during its changes.
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
# CPU time (user + system) the process used so far, in clock ticks.
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
HZ=$(getconf CLK_TCK)

read -r -a builds <<<"${NP_AB_BUILDS:-$NP_BUILD_DIR}"
ROUNDS=${NP_AB_ROUNDS:-1}
ab=0
[[ -n ${NP_AB_BUILDS:-} ]] && ab=1
for b in "${builds[@]}"; do
  [[ -x $b/agent/nodepath-agent ]] || { echo "no agent in build $b" >&2; exit 1; }
done
v() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# One agent run of build $1 at size $2: prints "seconds=.. rss_kib=.. hwm_kib=.. p50_ms=.. ...".
measure() {
  local build=$1 n=$2 synced pid rss hwm lat
  NP_BUILD_DIR=$build lab_agent_start n1 --k8s-kubeconfig-path "$KC" --bpf-lb-map-max 262144
  synced=$(lab_node_exec n1 "$BENCH" synced --socket "$SOCK" --services "$n" --timeout 900)
  pid=$(cat "$NP_LAB_DIR/n1/agent.pid")
  rss=$(kib "$pid" VmRSS) hwm=$(kib "$pid" VmHWM)
  local t0 t1 perf=
  # NP_BENCH_PERF=PREFIX: a CPU profile of the agent during the changes, PREFIX.<build>.<n>.data.
  if [[ -n ${NP_BENCH_PERF:-} ]]; then
    perf record -q -F 999 -g -p "$pid" -o "$NP_BENCH_PERF.${build##*/}.$n.data" >/dev/null 2>&1 &
    perf=$!
  fi
  t0=$(ticks "$pid")
  lat=$(lab_node_exec n1 "$BENCH" latency --kubeconfig "$KC" --socket "$SOCK" --services "$n" --endpoints 10 \
    --changes "$CHANGES")
  t1=$(ticks "$pid")
  if [[ -n $perf ]]; then
    kill -INT "$perf" && wait "$perf" || true
  fi
  lab_agent_stop n1
  # The agent's CPU per change includes answering the bench's GetService polls.
  echo "$synced rss_kib=$rss hwm_kib=$hwm; $lat agent_cpu_ms=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$CHANGES" 'BEGIN { printf "%.1f", d * 1000 / hz / n }')"
}

rows=()
summary=()
made=0
for n in $SIZES; do
  echo "k8s_sync_bench: $n services x 10 endpoints" >&2
  load=$(lab_node_exec n1 "$BENCH" load --kubeconfig "$KC" --from "$made" --services "$n" --endpoints 10)
  made=$n
  echo "  $load" >&2
  declare -A p50s=() p99s=() rsss=() syncs=()
  for ((r = 1; r <= ROUNDS; r++)); do
    order=("${builds[@]}")
    if ((r % 2 == 0)); then
      order=()
      for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("${builds[i]}"); done
    fi
    for b in "${order[@]}"; do
      # A/B: every run starts from empty maps, so no build adopts what another programmed.
      ((ab)) && rm -rf "$NP_LAB_DIR/bpffs/n1/nodepath"
      out=$(measure "$b" "$n")
      echo "  ${b##*/} round $r: $out" >&2
      rss=$(v rss_kib "$out") hwm=$(v hwm_kib "$out")
      label=
      ((ab)) && label="${b##*/} (round $r) | "
      rows+=("| $label$n | $((n * 10)) | $(v seconds "$out") s | $((rss / 1024)) MiB (peak $((hwm / 1024))) | $(v p50_ms "$out") | $(v p90_ms "$out") | $(v p99_ms "$out") | $(v max_ms "$out") | $(v agent_cpu_ms "$out") |")
      p50s[$b]+="$(v p50_ms "$out") " p99s[$b]+="$(v p99_ms "$out") " rsss[$b]+="$((rss / 1024)) "
      syncs[$b]+="$(v seconds "$out") "
    done
  done
  if ((ab)); then
    base=${builds[0]}
    b50=$(tr ' ' '\n' <<<"${p50s[$base]}" | grep . | median) b99=$(tr ' ' '\n' <<<"${p99s[$base]}" | grep . | median)
    for b in "${builds[@]}"; do
      m50=$(tr ' ' '\n' <<<"${p50s[$b]}" | grep . | median) m99=$(tr ' ' '\n' <<<"${p99s[$b]}" | grep . | median)
      ms=$(tr ' ' '\n' <<<"${syncs[$b]}" | grep . | median) mr=$(tr ' ' '\n' <<<"${rsss[$b]}" | grep . | median)
      summary+=("| ${b##*/} | $n | $ROUNDS | $ms s | $mr MiB | $m50 | $(awk -v a="$m50" -v b="$b50" 'BEGIN { printf "%.2f", a / b }') | $m99 | $(awk -v a="$m99" -v b="$b99" 'BEGIN { printf "%.2f", a / b }') |")
    done
  fi
  unset p50s p99s rsss syncs
done
echo "_Measured $(date -u '+%Y-%m-%d %H:%M') UTC on $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $CHANGES changes per run._"
echo
if ((ab)); then
  echo "| build (round) | services | endpoints | full resync (agent start -> synced) | agent RSS after | write->map p50 ms | p90 | p99 | max | agent CPU ms/change |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
else
  echo "| services | endpoints | full resync (agent start -> synced) | agent RSS after | write->map p50 ms | p90 | p99 | max | agent CPU ms/change |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
fi
printf '%s\n' "${rows[@]}"
if ((ab)); then
  echo
  echo "Medians per build (ratio: against ${builds[0]##*/}, the same run):"
  echo
  echo "| build | services | runs | full resync | RSS after | p50 ms | p50 ratio | p99 ms | p99 ratio |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${summary[@]}"
fi
