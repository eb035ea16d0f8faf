#!/usr/bin/env bash
# BenchCompareChecksEveryVariant: the kube-proxy comparison (bench/compare/compare.sh, run by
# `scripts/bench.sh compare`) runs end to end at a small scale — twin namespaces, a real agent,
# kube-proxy's iptables (legacy and nft) and nftables rules as npkpgen writes them — checks every
# variant before it times anything, writes its tables and plots, and leaves nothing behind; and its
# correctness check fails when one variant's rules lose an endpoint.
# shellcheck disable=SC2317 # functions run indirectly, through check/require
set -euo pipefail
build_dir=${NP_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init BenchCompareChecksEveryVariant npe_cmp
# e2e_init snapshots the agent's binaries; the comparison's own tools come along.
mkdir -p "$NP_BUILD_DIR/bench"
cp -p "$build_dir/bench/npload" "$build_dir/bench/npkpgen" "$NP_BUILD_DIR/bench/"
compare=$E2E_REPO/bench/compare/compare.sh
out=$E2E_TMP/compare
cg2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
leftovers() { # network namespaces and cgroups of comparison runs (their processes live in the cgroups)
  { ip netns list | grep '^npcmp' || true; ls -d "$cg2"/np-npcmp* 2>/dev/null || true; } | sort
}
before=$(leftovers)

run_small() {
  "$compare" --out "$out" --scales 10,200 --rounds 1 --slice-ms 200 >"$E2E_TMP/compare.log" 2>&1 ||
    { tail -20 "$E2E_TMP/compare.log"; return 1; }
}
require "compare.sh at 10 and 200 services, every shape, one round" run_small

every_variant_measured() {
  local v shape
  for shape in TCP_CRR TCP_RR UDP_RR; do
    grep -q "^\*\*$shape\*\*" "$out/results.md" || { echo "no $shape table in results.md"; return 1; }
  done
  for v in clean nodepath ipt-legacy ipt-nft nftables; do
    # three tables (CRR, RR, UDP_RR), each with a measured ratio at both scales
    [[ $(grep -cE "^\| $v \| [0-9.]+ \([0-9.]+-[0-9.]+\), [0-9]+/s \| [0-9.]+ \([0-9.]+-[0-9.]+\), [0-9]+/s \|" "$out/results.md") -eq 3 ]] ||
      { echo "variant $v lacks measured rows:"; cat "$out/results.md"; return 1; }
  done
}
check "results.md: TCP_CRR, TCP_RR and UDP_RR rows with measured ratios for all five datapaths at both scales" every_variant_measured

programming_rows() {
  local v n
  for v in nodepath ipt-legacy ipt-nft nftables; do
    for n in 10 200; do
      grep -qE "^\| $v \| $n \| [0-9]+ \| [0-9]+ \|" "$out/results.md" ||
        { echo "no programming row for $v at $n services"; return 1; }
    done
  done
  grep -qE "^\| nodepath \| 200 \| [0-9]+ \| [0-9]+ \| [0-9.]+ MiB \|" "$out/results.md" ||
    { echo "no agent RSS for nodepath"; return 1; }
}
check "...programming time (full set, one added service) for every datapath, and the agent's RSS" programming_rows

plots_are_png() {
  local f
  for f in rate-vs-services.png connect-cdf.png; do
    [[ $(head -c 8 "$out/$f" 2>/dev/null | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
      { echo "$out/$f is not a PNG"; return 1; }
  done
}
check "...and both plots are PNG files" plots_are_png

nothing_left() {
  local now
  now=$(leftovers)
  [[ $now == "$before" ]] || { echo "left behind: $(comm -13 <(echo "$before") <(echo "$now"))"; return 1; }
}
check "...and it leaves no namespace or cgroup (so no process) behind" nothing_left

fault_is_caught() {
  local rc=0
  NP_COMPARE_FAULT=drop-endpoint "$compare" --out "$E2E_TMP/fault" --scales 10 --rounds 1 --slice-ms 100 \
    --shapes crr --variants clean,ipt-legacy >"$E2E_TMP/fault.log" 2>&1 || rc=$?
  ((rc != 0)) || { echo "compare.sh succeeded although ipt-legacy lost an endpoint's DNAT"; return 1; }
  grep -q "ipt-legacy at 10 services: a sampled service is not answered by exactly its 10 backends" "$E2E_TMP/fault.log" ||
    { echo "unexpected failure:"; tail -5 "$E2E_TMP/fault.log"; return 1; }
}
check "an ipt-legacy rule set missing one endpoint's DNAT stops the run before timing (the check can fail)" fault_is_caught
check "...and that failed run leaves no namespace behind either" nothing_left

e2e_finish
