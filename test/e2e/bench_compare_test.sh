#!/usr/bin/env bash
# BenchCompareChecksEveryVariant: the kube-proxy comparison (bench/compare/compare.sh, run by
# `scripts/bench.sh compare`) runs end to end at a small scale — twin namespaces, real agents (one
# with the socket LB, one without it, whose pod client is translated per packet), kube-proxy's
# iptables (legacy and nft) and nftables rules as npkpgen writes them, and the NodePort-from-the-LAN
# matrix (bench/compare/nodeport.sh: one two-node lab per datapath, tc/XDP x SNAT/DSR and
# kube-proxy's NodePort rules) — checks every variant before it times anything, writes its tables
# and plots, and leaves nothing behind; and its correctness checks fail when one variant's rules
# lose an endpoint, for ClusterIP and for NodePort.
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
leftovers() { # network namespaces, cgroups and lab state dirs of comparison runs (their processes live in the cgroups)
  { ip netns list | grep '^npcmp' || true; ls -d "$cg2"/np-npcmp* /run/nodepath-lab/npcmp* 2>/dev/null || true; } | sort
}
before=$(leftovers)

run_small() {
  "$compare" --out "$out" --scales 10,200 --rounds 1 --slice-ms 200 >"$E2E_TMP/compare.log" 2>&1 ||
    { tail -20 "$E2E_TMP/compare.log"; return 1; }
}
require "compare.sh at 10 and 200 services, every shape and the NodePort matrix, one round" run_small

every_variant_measured() {
  local v shape
  for shape in TCP_CRR TCP_RR UDP_RR; do
    grep -q "^\*\*$shape\*\*" "$out/results.md" || { echo "no $shape table in results.md"; return 1; }
  done
  local cell='[0-9.]+ \([0-9.]+-[0-9.]+\), [0-9]+/s'
  for v in clean nodepath ipt-legacy ipt-nft nftables; do
    # three tables (CRR, RR, UDP_RR), each with a measured ratio at both scales
    [[ $(grep -cE "^\| $v \| $cell \| $cell \|" "$out/results.md") -eq 3 ]] ||
      { echo "variant $v lacks measured rows:"; cat "$out/results.md"; return 1; }
  done
  # nodepath-tc: CRR measured at both scales. Its RR and UDP_RR slices (many sockets open at
  # once) can fail: the kernel may give two sockets to different ClusterIPs the same source
  # port, and per-packet DNAT to the same backend then makes one 5-tuple of two connections (a
  # known datapath limitation, reported). Those cells must then say "failed" and the failure be
  # listed; anything else (no row, a dash) is a broken suite.
  grep -qE "^\| nodepath-tc \| $cell \| $cell \| [0-9.]+ µs \|" "$out/results.md" ||
    { echo "nodepath-tc lacks a measured TCP_CRR row:"; cat "$out/results.md"; return 1; }
  [[ $(grep -cE "^\| nodepath-tc \| ($cell|failed) \| ($cell|failed) \|" "$out/results.md") -eq 3 ]] ||
    { echo "nodepath-tc lacks RR/UDP_RR rows (measured or failed):"; cat "$out/results.md"; return 1; }
  if grep -qE '^\| nodepath-tc \|.* failed \|' "$out/results.md"; then
    grep -qE '^- nodepath-tc, (rr|udprr) at [0-9]+ services: ' "$out/results.md" ||
      { echo "a nodepath-tc cell says failed but no failure is listed"; return 1; }
  fi
}
check "results.md: TCP_CRR, TCP_RR and UDP_RR rows with measured ratios for the ClusterIP datapaths at both scales (nodepath-tc: CRR; RR/UDP_RR measured or a listed failure)" every_variant_measured

nodeport_measured() {
  local v
  grep -q '^\*\*NodePort from the LAN, TCP_CRR\*\*' "$out/results.md" || { echo "no NodePort table in results.md"; return 1; }
  for v in np-clean np-tc-snat np-tc-dsr np-xdp-snat np-xdp-dsr np-ipt-legacy np-ipt-nft np-nftables; do
    grep -qE "^\| $v \| [0-9.]+ \([0-9.]+-[0-9.]+\), [0-9]+/s \| [0-9.]+ \([0-9.]+-[0-9.]+\), [0-9]+/s \| [0-9.]+ µs \|" "$out/results.md" ||
      { echo "NodePort variant $v lacks a measured row:"; grep -A12 '^\*\*NodePort' "$out/results.md"; return 1; }
  done
}
check "...and NodePort TCP_CRR rows with measured ratios for all eight NodePort datapaths at both scales" nodeport_measured

socket_lb_off() {
  # nodepath-tc's ratio says nothing if its client went through the socket LB after all: the
  # agent reports the hooks it attached, and compare.sh refuses to run unless it says Disabled.
  grep -q 'nodepath-tc: agentctl status does not say the socket LB is off' "$E2E_TMP/compare.log" &&
    { echo "compare.sh saw the socket LB on in nodepath-tc"; return 1; }
  grep -qE '^\| nodepath-tc \| 200 \| [0-9]+ \| [0-9]+ \| [0-9.]+ MiB \|' "$out/results.md" ||
    { echo "no programming row for nodepath-tc"; return 1; }
}
check "...nodepath-tc ran with its socket LB off and was programmed like the others" socket_lb_off

programming_rows() {
  local v n
  for v in nodepath nodepath-tc ipt-legacy ipt-nft nftables; do
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
  for f in rate-vs-services.png connect-cdf.png nodeport-rate-vs-services.png; do
    [[ $(head -c 8 "$out/$f" 2>/dev/null | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
      { echo "$out/$f is not a PNG"; return 1; }
  done
}
check "...and the three plots are PNG files" plots_are_png

nothing_left() {
  local now
  now=$(leftovers)
  [[ $now == "$before" ]] || { echo "left behind: $(comm -13 <(echo "$before") <(echo "$now"))"; return 1; }
}
check "...and it leaves no namespace or cgroup (so no process) behind" nothing_left

fault_is_caught() {
  local rc=0
  NP_COMPARE_FAULT=drop-endpoint "$compare" --out "$E2E_TMP/fault" --scales 10 --rounds 1 --slice-ms 100 \
    --shapes crr --variants clean,ipt-legacy --nodeport-variants none >"$E2E_TMP/fault.log" 2>&1 || rc=$?
  ((rc != 0)) || { echo "compare.sh succeeded although ipt-legacy lost an endpoint's DNAT"; return 1; }
  grep -q "ipt-legacy at 10 services: a sampled service is not answered by exactly its 10 backends" "$E2E_TMP/fault.log" ||
    { echo "unexpected failure:"; tail -5 "$E2E_TMP/fault.log"; return 1; }
}
check "an ipt-legacy rule set missing one endpoint's DNAT stops the run before timing (the check can fail)" fault_is_caught
check "...and that failed run leaves no namespace behind either" nothing_left

nodeport_fault_is_caught() {
  local rc=0
  NP_COMPARE_FAULT=drop-endpoint "$compare" --out "$E2E_TMP/fault-np" --scales 10 --rounds 1 --slice-ms 100 \
    --shapes crr --variants clean --nodeport-variants np-clean,np-ipt-legacy >"$E2E_TMP/fault-np.log" 2>&1 || rc=$?
  ((rc != 0)) || { echo "compare.sh succeeded although np-ipt-legacy lost an endpoint's DNAT"; return 1; }
  grep -q "np-ipt-legacy at 10 services: a sampled NodePort is not answered by exactly its 10 backends" "$E2E_TMP/fault-np.log" ||
    { echo "unexpected failure:"; tail -5 "$E2E_TMP/fault-np.log"; return 1; }
}
check "an np-ipt-legacy NodePort rule set missing one endpoint's DNAT stops the run before timing" nodeport_fault_is_caught
check "...and that failed run leaves no lab behind" nothing_left

e2e_finish
