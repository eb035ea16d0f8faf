#!/usr/bin/env bash
# Builds if needed and runs the benchmarks (root), prints their tables and records them in
# bench/README.md: one section per benchmark, replaced on every run (the run before is kept below
# it, to show the spread). Benchmarks report numbers; they never fail on them.
#
#   scripts/bench.sh                 the datapath and program benchmarks
#   scripts/bench.sh datapath        ns per packet of the NodePort path (BPF_PROG_TEST_RUN)
#   scripts/bench.sh program         10,000 services x 10 backends through a real agent
#   scripts/bench.sh compare         nodepath vs kube-proxy (iptables legacy/nft, nftables) and a
#                                    clean path at 10 / 1,000 / 10,000 services (~15 min; writes
#                                    bench/compare/plots/*.png too)
#   --no-readme                      print only, leave bench/README.md (and the plots) alone
#
# NP_BUILD_DIR picks the build directory; NP_BENCH_DATAPATH_ARGS / NP_BENCH_PROGRAM_ARGS /
# NP_BENCH_COMPARE_ARGS replace the default arguments of the programs (see their --help);
# NP_BENCH_COMPARE_OUT=DIR records an earlier `bench/compare/compare.sh --out DIR` run instead.
# shellcheck disable=SC2317  # functions are called indirectly ("run_$b", the EXIT trap)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NP_BUILD_DIR:-$repo/build}
readme=$repo/bench/README.md
datapath_args=${NP_BENCH_DATAPATH_ARGS:---runs 7 --repeat 1000000}
program_args=${NP_BENCH_PROGRAM_ARGS:---reps 3 --baseline-reps 5}
compare_args=${NP_BENCH_COMPARE_ARGS:-}

which=()
update_readme=1
for a in "$@"; do
  case $a in
    datapath|program|compare) which+=("$a") ;;
    --no-readme) update_readme=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $a (datapath, program, compare, --no-readme)" >&2; exit 2 ;;
  esac
done
[[ ${#which[@]} -gt 0 ]] || which=(datapath program)

if [[ $(id -u) -ne 0 ]]; then
  echo "bench: needs root (network namespaces, bpffs, BPF programs, a cgroup)" >&2
  exit 1
fi

[[ -f $build/build.ninja ]] || cmake -S "$repo" -B "$build" -G Ninja >/dev/null
cmake --build "$build" --target datapath_bench program_bench nodepath-agent agentctl npload npkpgen nodepath-cni nptraffic \
  np_lab_xdp_pass

# Everything the programs create lives in their own network + mount namespace or under $work and
# one cgroup; they remove it themselves, this trap is the second line.
work=$(mktemp -d /tmp/np-bench.XXXXXX)
cgroup2=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
  /proc/self/mountinfo)
cgroup_name=np-bench-$$
cleanup() {
  if [[ -n $cgroup2 && -d $cgroup2/$cgroup_name ]]; then rmdir "$cgroup2/$cgroup_name" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

machine="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r), a shared noisy VM"

# Replaces the section <!-- bench:NAME --> .. <!-- bench:NAME:end --> of the README (appends it
# when missing); the results it held become the "previous run" of the new section.
update_section() {
  local name=$1 intro=$2 results=$3 section=$work/$1.section
  # shellcheck disable=SC2016  # the backquotes are Markdown
  [[ -f $readme ]] || printf '# nodepath benchmarks\n\nWritten by `scripts/bench.sh` (run it as root). Every number is from a real run on the machine named in its section; ratios are against a baseline measured in the same run. Benchmarks report, they never assert.\n' >"$readme"
  local previous
  previous=$(awk -v b="<!-- bench:$name:results -->" -v e="<!-- bench:$name:results:end -->" \
    '$0 == e { f = 0 } f { print } $0 == b { f = 1 }' "$readme")
  {
    echo "<!-- bench:$name -->"
    cat "$intro"
    echo
    echo "<!-- bench:$name:results -->"
    cat "$results"
    echo "<!-- bench:$name:results:end -->"
    if [[ -n $previous ]]; then
      echo
      echo "<details><summary>The run before</summary>"
      echo
      echo "$previous"
      echo
      echo "</details>"
    fi
    echo "<!-- bench:$name:end -->"
  } >"$section"
  if grep -qF "<!-- bench:$name -->" "$readme"; then
    awk -v b="<!-- bench:$name -->" -v e="<!-- bench:$name:end -->" -v file="$section" '
      $0 == b { while ((getline line < file) > 0) print line; skip = 1; next }
      $0 == e { skip = 0; next }
      !skip { print }' "$readme" >"$readme.tmp"
    mv "$readme.tmp" "$readme"
  else
    { echo; cat "$section"; } >>"$readme"
  fi
}

run_datapath() {
  local out=$work/datapath.md
  echo "== datapath: ns per packet of the NodePort path (BPF_PROG_TEST_RUN) =="
  # shellcheck disable=SC2086
  "$build/bench/datapath_bench" $datapath_args --work-dir "$work" >"$out"
  cat "$out"
  {
    echo "_Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $machine._"
    echo
    cat "$out"
  } >"$work/datapath.results"
  cat >"$work/datapath.intro" <<EOF
## NodePort datapath: ns per packet (BPF_PROG_TEST_RUN)

**What.** The tc ingress program of \`bpf/host.bpf.c\` (\`np_from_netdev\`, the path of \`bpf/lib/nodeport.h\`), loaded by the agent's
loader (\`HostProgram::load\`) with the default map sizes, run with \`BPF_PROG_TEST_RUN\` in a private
network namespace (veth \`ens192\` 192.168.10.100/24, backends routed via a second veth, forwarding
on). One NodePort service, programmed by the agent's own reconciler (\`lb::Reconciler\` over the real maps), with 10 local backends (DNAT +
\`TC_ACT_OK\`). With \`repeat\` > 1 the kernel does not restore the packet between iterations, so each
iteration goes through a wrapper (\`bench/bench.bpf.c\`) that writes the 54 original header bytes back
and tail-calls the program under test; the wrapper's cost is measured by tail-calling a no-op and
stated. Cases: **established** (same tuple every time, confirmed by a SYN/SYN-ACK/ACK handshake
first: main conntrack table hit + rewrite), **new flow** (the wrapper also writes a new source
address/port from a per-CPU counter, each CPU in its own address block so no flow ever repeats,
and fixes both checksums: service lookup, backend selection, FIB lookup, two inserts into the
embryonic conntrack table, rewrite), once with that LRU full (steady state: every insert evicts)
and once with it emptied before each run, and **not a service** (a packet to the node's port 22:
both conntrack tables and the service map miss, passed untouched). **Baseline**: a
minimal tc program (parse Ethernet/IPv4/TCP, one hash lookup) through the same wrapper. **Floor**:
the baseline's parse and one bare insert of each new flow's tuple into a full LRU of the main /
embryonic conntrack table's size. **XDP**: the established, new-flow and not-a-service cases through
\`bpf/xdp.bpf.c\`'s \`np_xdp_entry\` (loaded by \`XdpProgram::load\` on the same maps) and XDP
wrappers of its own, whose no-op cost is subtracted from the XDP rows. **Remote**: established and
new flow, tc and XDP, to a second NodePort whose 10 backends are node 2's pods (routed back out of
ens192): SNAT, and DSR through both programs loaded again in lb mode dsr (the SYN leaves with the
8-byte option, through wrappers that also take the 8 bytes out again); verdicts \`TC_ACT_REDIRECT\` /
\`XDP_TX\`. After every run the verdict, the last output packet (the translated one, byte-exact for
the remote rows) and the forwarded/drop counters are checked. Below the table: the x-baseline
ratios over Katran's figures from issue 6 and which of its targets hold in the run.

**Command.** \`sudo scripts/bench.sh datapath\` (runs \`build/bench/datapath_bench $datapath_args\`).
EOF
  [[ $update_readme -eq 1 ]] && update_section datapath "$work/datapath.intro" "$work/datapath.results"
  return 0
}

run_program() {
  local out=$work/program.md
  echo "== program: 10,000 services x 10 backends through nodepath-agent =="
  # shellcheck disable=SC2086
  "$build/bench/program_bench" $program_args --work-dir "$work" --cgroup-name "$cgroup_name" \
    --agent "$build/agent/nodepath-agent" --agentctl "$build/cli/agentctl/agentctl" >"$out"
  cat "$out"
  {
    echo "_Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $machine._"
    echo
    cat "$out"
  } >"$work/program.results"
  cat >"$work/program.intro" <<EOF
## Programming 10,000 services x 10 backends through the agent

**What.** A real \`nodepath-agent\` in a private network + mount namespace (veth \`ens192\`, its own
bpffs, run dir and a cgroup under the cgroup2 mount), started fresh for each repetition and polled
with \`agentctl status --brief\` until OK. A gRPC client (\`bench/program_bench.cpp\`) then sends
10,000 ClusterIP services (10.43.0.0/16, port 80/TCP) x 10 distinct backends (10.0.0.0/16) in one
\`UpsertServices\` call and times it (client wall time: serialisation, transfer, the agent's
validation, planning, map writes and persistence, the reply), reads the agent's VmRSS/VmHWM from
\`/proc/<pid>/status\`, and reads the pinned maps back to check every entry is there. Then, with the
10,000 services in place: 100 one-service changes and 100 single deletes per start (p50/p99; each is
one journal append + fdatasync before the map writes), an unchanged re-send of all 10,000, 5
whole-map reconciles (\`Reconcile\` RPC: every entry of the three maps compared with the model; each
must find nothing to repair), and a 300,000-service request the agent must refuse, with its RSS
before and 1 s after. **Baselines** (measured in the same run): for the big call, the kernel's floor
- the same number of entries with the same key/value sizes written into fresh hash maps of the
agent's shape with one \`bpf_map_update_batch\` per map; for a one-service change, the durability
floor - appending a record of the same size to a file in the same directory and \`fdatasync\`ing
it. Targets (reported, not asserted): the big call under 1 s and 50 MiB, a one-service change
under 5 ms, RSS back to where it was after the refused request.

**Command.** \`sudo scripts/bench.sh program\` (runs \`build/bench/program_bench $program_args\`).
EOF
  [[ $update_readme -eq 1 ]] && update_section program "$work/program.intro" "$work/program.results"
  return 0
}

run_compare() {
  local out=$work/compare
  echo "== compare: nodepath vs kube-proxy (iptables legacy/nft, nftables) and a clean path =="
  if [[ -n ${NP_BENCH_COMPARE_OUT:-} ]]; then
    # The output of a compare.sh run made before (e.g. from a snapshot of the binaries while the
    # tree was being rebuilt): record it instead of running again.
    [[ -f $NP_BENCH_COMPARE_OUT/results.md ]] || { echo "bench: no results.md in $NP_BENCH_COMPARE_OUT" >&2; exit 1; }
    out=$NP_BENCH_COMPARE_OUT
  else
    # shellcheck disable=SC2086
    NP_BUILD_DIR=$build "$repo/bench/compare/compare.sh" --out "$out" $compare_args
  fi
  {
    echo "_Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $machine._"
    echo
    cat "$out/results.md"
    echo
    echo '![TCP_CRR rate vs services](compare/plots/rate-vs-services.png)'
    echo '![connect() latency CDF](compare/plots/connect-cdf.png)'
    [[ -f $out/nodeport-rate-vs-services.png ]] &&
      echo '![NodePort TCP_CRR rate vs services](compare/plots/nodeport-rate-vs-services.png)'
  } >"$work/compare.results"
  cat >"$work/compare.intro" <<EOF
## nodepath against kube-proxy: ClusterIP from the node and NodePort from the LAN

**What.** \`bench/compare/compare.sh\`: six twin network namespaces, one per datapath, each
wired by a veth to one backend namespace (10 backends on lo, one \`npload serve\`): **clean**
(no translation; the client picks a backend itself, one per service, so the RR shapes open as many sockets), **nodepath** (a real \`nodepath-agent\`, socket
LB on the variant's cgroup), **nodepath-tc** (an agent with \`--bpf-lb-sock=false\`; the client
runs in a pod made by \`nodepath-cni\`, so \`lxc.bpf.c\` translates every packet), **ipt-legacy** / **ipt-nft** (kube-proxy's iptables mode as
\`bench/compare/npkpgen\` writes it, loaded with \`iptables-legacy-restore\` / \`iptables-nft-restore\`)
and **nftables** (kube-proxy's nftables mode, \`nft -f\`). Every variant gets the same N services x 10
endpoints. The load tool (\`npload\`) and the server run pinned to one CPU. Shapes: TCP_CRR
(connect, 1-line request, reply, close), TCP_RR and UDP_RR (up to 1,024 long-lived sockets, one per
service; UDP_RR runs on the same set reprogrammed as UDP services). Each variant is first checked
(20 sampled services, 150 connections each, must be answered by exactly their 10 backends), then
timed in rounds (every variant once a round, order rotated, round 0 dropped); ratios are to the
clean path in the same round. Between slices the variant's netfilter conntrack table is flushed
(\`conntrack -F\`); the server closes first and keeps no TIME_WAIT (\`tcp_max_tw_buckets=0\` in its
namespace), so no variant carries old connections into the next slice.
Programming: one restore / \`nft -f\` / \`agentctl service apply\` of the full set into an empty
datapath, then one added service (kube-proxy's partial sync; nodepath through the CLI, whose own
start-up is included).

**NodePort from the LAN** (\`bench/compare/nodeport.sh\`, run by compare.sh after the ClusterIP
matrix): one test/e2e lab per datapath (LAN bridge, client, node 1, node 2 with a pod holding the
10 backends on lo; \`scripts/lib/lab.sh\`); the client connects to node 1's NodePort and node 1
forwards to node 2. **np-clean** (the client routes to a backend through node 1 itself),
**np-tc-snat** / **np-tc-dsr** / **np-xdp-snat** / **np-xdp-dsr** (agents on both nodes; DSR: node
2 decodes the IP option and replies to the client directly), **np-ipt-legacy** / **np-ipt-nft** /
**np-nftables** (kube-proxy's NodePort rules, KUBE-NODEPORTS -> KUBE-EXT -> masquerade mark ->
KUBE-SVC, or the service-nodeports map, on both nodes). Both nodes get the whole set; the first
2,500 services have a NodePort (30000+i: the default NodePort range holds 2,768, so at 10,000
services the rest are ClusterIP only and still fill the maps and the chains a NodePort packet walks
through). TCP_CRR, the same check first (20 sampled NodePorts, each answered by exactly its 10
backends), the same rounds; ratios to np-clean in the same round.

**Command.** \`sudo scripts/bench.sh compare\` (runs \`bench/compare/compare.sh $compare_args\`).
EOF
  if [[ $update_readme -eq 1 ]]; then
    mkdir -p "$repo/bench/compare/plots"
    cp "$out/rate-vs-services.png" "$out/connect-cdf.png" "$repo/bench/compare/plots/"
    [[ -f $out/nodeport-rate-vs-services.png ]] && cp "$out/nodeport-rate-vs-services.png" "$repo/bench/compare/plots/"
    update_section compare "$work/compare.intro" "$work/compare.results"
  fi
  return 0
}

for b in "${which[@]}"; do
  "run_$b"
  echo
done
[[ $update_readme -eq 1 ]] && echo "bench: results written to ${readme#"$repo"/}"
exit 0
