#!/usr/bin/env bash
# The kube-proxy comparison: nodepath's socket LB against kube-proxy's iptables mode (legacy and
# nft backends) and nftables mode, and a clean path straight to the backends, for ClusterIP
# traffic from a process on the node. Run by `scripts/bench.sh compare` (root).
#
#   compare.sh --out DIR [--scales 10,1000,10000] [--rounds 5] [--slice-ms 2000]
#              [--shapes crr,rr,udprr] [--backends 10] [--cpu N] [--variants LIST]
#              [--nodeport-variants LIST|none] [--node-ports 2500]
#
# Topology (all in namespaces and cgroups this run creates; nothing in the root namespace):
#   $P-be         the backends: 10.0.1.1..N on lo, one `npload serve` (TCP+UDP :8080, replies
#                 name the backend address)
#   $P-<variant>  one twin namespace per datapath, eth0 192.168.(100+i).2/24 <-> be<i> in $P-be,
#                 default route via .1. Variants:
#                   clean       no service translation: the client picks a backend itself (service
#                               i: backend i mod n, so RR opens as many sockets as the others)
#                   nodepath    nodepath-agent with its socket LB on the variant's cgroup
#                   nodepath-tc nodepath-agent with the socket LB off (--bpf-lb-sock=false); the
#                               client runs in a pod made by nodepath-cni ($P-nodepath-tc-pod,
#                               10.0.100.0/24), so every packet is translated by lxc.bpf.c
#                   ipt-legacy  kube-proxy iptables mode, iptables-legacy-restore
#                   ipt-nft     kube-proxy iptables mode, iptables-nft-restore
#                   nftables    kube-proxy nftables mode, nft -f
# Every variant gets the same services (npkpgen: N services x --backends endpoints). The load
# tool and the server are pinned to one CPU (--cpu, default the last), so a slice measures the
# whole cost of a transaction on that CPU. Before timing, every variant is checked: sampled
# services answered by exactly all their backends. Rounds run every variant once, in an order
# rotated each round; round 0 is a warm-up and dropped; each variant's rate is divided by the
# clean path's rate in the same round, and the median and min-max of those ratios are reported.
# Between slices the netfilter conntrack table of the variant's namespace is flushed
# (`conntrack -F`); the server closes every CRR connection first and its namespace keeps no
# TIME_WAIT (tcp_max_tw_buckets=0), so no variant carries old connections into the next slice.
#
# NP_COMPARE_FAULT=drop-endpoint (for the e2e test that proves the check can fail): the
# ipt-legacy variant's rules lose the DNAT of service 0's first endpoint.
#
# Then the NodePort-from-the-LAN matrix (bench/compare/nodeport.sh, same scales, rounds, slices,
# backends and CPU; --nodeport-variants picks its variants, default all of them, `none` skips it;
# --node-ports how many services have a NodePort): its tables are appended to results.md and its
# plot is DIR/nodeport-rate-vs-services.png.
#
# Writes DIR/results.md (tables), DIR/rate-vs-services.png and DIR/connect-cdf.png (gnuplot),
# and the raw JSON of every slice under DIR/raw/.
# shellcheck disable=SC2317  # cleanup runs from the trap
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
source "$repo/bench/compare/lib.sh"
build=${NP_BUILD_DIR:-$repo/build}
scales=10,1000,10000
rounds=5
slice_ms=2000
shapes=crr,rr,udprr
backends=10
cpu=$(($(nproc) - 1))
variants=clean,nodepath,nodepath-tc,ipt-legacy,ipt-nft,nftables
nodeport_variants=all
node_ports=2500
out=

die() { echo "compare: $*" >&2; exit 1; }
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --scales) scales=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --slice-ms) slice_ms=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --nodeport-variants) nodeport_variants=$2; shift 2 ;;
    --node-ports) node_ports=$2; shift 2 ;;
    -h|--help) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "compare: --out DIR is required" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ && $slice_ms =~ ^[1-9][0-9]*$ && $backends =~ ^[1-9][0-9]*$ && $cpu =~ ^[0-9]+$ ]] ||
  { echo "compare: --rounds, --slice-ms, --backends and --cpu take positive integers" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, cgroups, bpffs, netfilter)"
IFS=, read -r -a scale_list <<<"$scales"
IFS=, read -r -a shape_list <<<"$shapes"
IFS=, read -r -a variant_list <<<"$variants"
[[ " ${variant_list[*]} " == *" clean "* ]] || die "--variants must include clean (the baseline)"
for v in "${variant_list[@]}"; do
  case $v in clean|nodepath|nodepath-tc|ipt-legacy|ipt-nft|nftables) ;; *) die "unknown variant $v" ;; esac
done
for s in "${shape_list[@]}"; do
  case $s in crr|rr|udprr) ;; *) die "unknown shape $s (crr, rr, udprr)" ;; esac
done
for n in "${scale_list[@]}"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "bad scale $n"; done
for tool in iptables-legacy-restore iptables-nft-restore nft conntrack gnuplot nsenter taskset jq; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
done
npload=$build/bench/npload
npkpgen=$build/bench/npkpgen
agent=$build/agent/nodepath-agent
agentctl=$build/cli/agentctl/agentctl
cni=$build/cli/cni/nodepath-cni
for b in "$npload" "$npkpgen" "$agent" "$agentctl" "$cni"; do [[ -x $b ]] || die "$b is not built"; done

P=npcmp$$
work=$(mktemp -d /tmp/np-compare.XXXXXX)
cg2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[[ -n $cg2 ]] || die "no cgroup2 mount"
cg=$cg2/np-$P
pids=()
netns=()

cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -d $cg ]]; then
    # Whatever is left in the run's cgroups (the agent, servers) dies; cgroup.kill is
    # asynchronous, so wait until the tree is empty before removing it (rmdir fails before).
    [[ -f $cg/cgroup.kill ]] && echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
    local t d
    for ((t = 0; t < 100; t++)); do
      grep -q '^populated 0' "$cg/cgroup.events" 2>/dev/null && break
      sleep 0.05
    done
    for d in "$cg"/*/; do [[ -d $d ]] && rmdir "$d" 2>/dev/null || true; done
    rmdir "$cg" 2>/dev/null || echo "compare: could not remove $cg" >&2
  fi
  for p in "${netns[@]}"; do ip netns del "$p" 2>/dev/null || true; done
  mountpoint -q "$work/bpffs" 2>/dev/null && umount "$work/bpffs"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$out/raw" "$cg"
# Runs a command in a variant's namespace and cgroup: cg_exec <cgroup> <netns> cmd...
cg_exec() ( # a subshell: it execs the command (so a backgrounded cg_exec's $! is the command)
  local c=$1 ns=$2
  shift 2
  mkdir -p "$cg/$c"
  exec bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg/$c" \
    nsenter --net="/run/netns/$ns" -- "$@"
)
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" -- "$@"; }

add_ns() { ip netns add "$1"; netns+=("$1"); ip -n "$1" link set lo up; }

# --- topology --------------------------------------------------------------------------------
be=$P-be
add_ns "$be"
# No TIME_WAIT anywhere: the server closes first, and its namespace keeps no TIME_WAIT sockets
# (tcp_max_tw_buckets=0: a closed connection is gone at once). Otherwise the backends' TIME_WAIT,
# shared by every variant, piles up over the rounds until new SYNs (whose source ports a
# netfilter variant's random-fully SNAT picks at random) hit old tuples and stall for a
# retransmission.
ip netns exec "$be" sysctl -qw net.ipv4.tcp_max_tw_buckets=0
binds=()
for ((b = 1; b <= backends; b++)); do
  ip -n "$be" addr add "10.0.1.$b/32" dev lo
  binds+=(--bind "10.0.1.$b")
done
i=0
declare -A vidx
for v in "${variant_list[@]}"; do
  vidx[$v]=$i
  add_ns "$P-$v"
  ip -n "$be" link add "be$i" type veth peer name eth0 netns "$P-$v"
  ip -n "$be" addr add "192.168.$((100 + i)).1/24" dev "be$i"
  ip -n "$be" link set "be$i" up
  ip -n "$P-$v" addr add "192.168.$((100 + i)).2/24" dev eth0
  ip -n "$P-$v" link set eth0 up
  ip -n "$P-$v" route add default via "192.168.$((100 + i)).1"
  i=$((i + 1))
done
cg_exec be "$be" taskset -c "$cpu" "$npload" serve "${binds[@]}" --port 8080 2>"$work/serve.log" &
pids+=($!)

# start_agent <variant> [agent flags...]: a nodepath-agent in the variant's namespace, its state
# under $work/<variant>, its bpffs directory $work/bpffs/<variant>; waits until it answers.
declare -A agent_sock
bpffs_mounted=0
start_agent() {
  local v=$1 dir=$work/$1 t pid
  shift
  if ((!bpffs_mounted)); then
    mkdir -p "$work/bpffs"
    mount -t bpf bpf "$work/bpffs"
    bpffs_mounted=1
  fi
  mkdir -p "$dir/run" "$dir/config" "$dir/cni/net.d" "$dir/cni/bin" "$cg/$v"
  agent_sock[$v]=$dir/run/agent.sock
  cg_exec "agent-$v" "$P-$v" "$agent" --node-name "cmp-$v" --devices eth0 --bpf-root "$work/bpffs/$v" \
    --cgroup-root "$cg/$v" --run-dir "$dir/run" --config-dir "$dir/config" \
    --cni-conf-dir "$dir/cni/net.d" --cni-bin-dir "$dir/cni/bin" "$@" >"$work/agent-$v.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for ((t = 0; t < 200; t++)); do
    "$agentctl" --socket "${agent_sock[$v]}" status --brief >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$work/agent-$v.log" >&2; die "the agent of $v exited"; }
    sleep 0.1
  done
  "$agentctl" --socket "${agent_sock[$v]}" status --brief >/dev/null || { tail -20 "$work/agent-$v.log" >&2; die "the agent of $v is not ready"; }
}
if [[ -n ${vidx[nodepath]+x} ]]; then
  start_agent nodepath
fi
if [[ -n ${vidx[nodepath-tc]+x} ]]; then
  # The node's pod CIDR (IPAM from the config dir's nodes file); the backends route it back.
  i=${vidx[nodepath-tc]}
  mkdir -p "$work/nodepath-tc/config"
  echo "cmp-nodepath-tc 192.168.$((100 + i)).2 10.0.100.0/24" >"$work/nodepath-tc/config/nodes"
  ip netns exec "$P-nodepath-tc" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$be" route add 10.0.100.0/24 via "192.168.$((100 + i)).2"
  start_agent nodepath-tc --bpf-lb-sock=false
  "$agentctl" --socket "${agent_sock[nodepath-tc]}" status --verbose | grep -Eq '^Socket LB: +Disabled' ||
    die "nodepath-tc: agentctl status does not say the socket LB is off"
  # The client's pod, made the way a runtime makes one.
  add_ns "$P-nodepath-tc-pod"
  printf '{"cniVersion":"1.0.0","name":"nodepath","type":"nodepath-cni","socket":"%s"}' "${agent_sock[nodepath-tc]}" |
    in_ns "$P-nodepath-tc" env -i PATH="$PATH" CNI_COMMAND=ADD CNI_CONTAINERID=cmpclient \
      CNI_NETNS="/run/netns/$P-nodepath-tc-pod" CNI_IFNAME=eth0 CNI_PATH="$work/nodepath-tc/cni/bin" \
      CNI_ARGS="K8S_POD_NAMESPACE=bench;K8S_POD_NAME=client" "$cni" >"$work/cni-add.json" ||
    die "nodepath-cni ADD of the client pod failed: $(cat "$work/cni-add.json")"
fi
# The namespace a variant's client runs in.
client_ns() { if [[ $1 == nodepath-tc ]]; then echo "$P-nodepath-tc-pod"; else echo "$P-$1"; fi; }

# Wait for the server: the clean path answers.
for ((t = 0; t < 100; t++)); do
  printf '10.0.1.1:8080\n' >"$work/one.txt"
  in_ns "$P-clean" "$npload" check --targets "$work/one.txt" --tries 1 --expect 1 >/dev/null 2>&1 && break
  sleep 0.05
done

# CPU time (user + system, ms) the agent has used so far; 0 without an agent.
agent_cpu_ms() { # <variant>
  local pid
  pid=$(head -1 "$cg/agent-$1/cgroup.procs" 2>/dev/null) || true
  [[ -n $pid ]] || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print int(($12 + $13) * 1000 / hz) }' "/proc/$pid/stat"
}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# --- programming -------------------------------------------------------------------------------
# program <variant> <dir>: loads the full set, then the one added service; prints "full_ms add_ms".
program() {
  local v=$1 d=$2 t0 full add
  case $v in
    clean) echo "- -"; return ;;
    ipt-legacy | ipt-nft)
      local restore=iptables-legacy-restore rules=$d/iptables-legacy.rules
      [[ $v == ipt-nft ]] && restore=iptables-nft-restore rules=$d/iptables.rules
      [[ -f $rules ]] || rules=$d/iptables.rules
      t0=$(date +%s%N)
      in_ns "$P-$v" "$restore" <"$rules" || die "$restore refused $(basename "$rules")"
      full=$(ms_since "$t0")
      t0=$(date +%s%N)
      in_ns "$P-$v" "$restore" --noflush <"$d/iptables-add.rules" || die "$restore refused iptables-add.rules"
      add=$(ms_since "$t0") ;;
    nftables)
      in_ns "$P-$v" nft delete table ip kube-proxy 2>/dev/null || true
      t0=$(date +%s%N)
      in_ns "$P-$v" nft -f "$d/nftables.nft" || die "nft refused nftables.nft"
      full=$(ms_since "$t0")
      t0=$(date +%s%N)
      in_ns "$P-$v" nft -f "$d/nftables-add.nft" || die "nft refused nftables-add.nft"
      add=$(ms_since "$t0") ;;
    nodepath | nodepath-tc)
      # Start from an empty datapath, as the restores do: remove what the previous scale left.
      local name sock=${agent_sock[$v]}
      "$agentctl" --socket "$sock" -o json service list | jq -r '.services[]?.name' |
        while read -r name; do
          "$agentctl" --socket "$sock" service delete "$name" >/dev/null || die "agentctl service delete $name failed"
        done
      t0=$(date +%s%N)
      "$agentctl" --socket "$sock" service apply -f "$d/services.json" >/dev/null || die "agentctl service apply refused services.json"
      full=$(ms_since "$t0")
      t0=$(date +%s%N)
      "$agentctl" --socket "$sock" service apply -f "$d/service-add.json" >/dev/null || die "agentctl refused service-add.json"
      add=$(ms_since "$t0") ;;
  esac
  echo "$full $add"
}

# A sample of at most 20 services, spread over the set (first and last included).
sample() {
  awk -v n="$(wc -l <"$1")" 'BEGIN { k = n < 20 ? n : 20; for (i = 0; i < k; i++) want[int(i * (n - 1) / (k > 1 ? k - 1 : 1)) + 1] = 1 } want[NR]' "$1"
}

results=$work/summary.tsv
: >"$results"
# run_shape <shape> <n> <set dir>: rounds of slices, every variant once a round, rotated.
run_shape() {
  local shape=$1 n=$2 d=$3 r v targets raw
  local -a order cdf
  for ((r = 0; r <= rounds; r++)); do
    order=("${variant_list[@]:r % ${#variant_list[@]}}" "${variant_list[@]:0:r % ${#variant_list[@]}}")
    for v in "${order[@]}"; do
      in_ns "$P-$v" conntrack -F >/dev/null 2>&1 || true
      [[ $v == nodepath-tc ]] && { in_ns "$(client_ns "$v")" conntrack -F >/dev/null 2>&1 || true; }
      targets=$d/targets.txt
      [[ $v == clean ]] && targets=$d/clean-targets.txt
      cdf=()
      [[ $shape == crr && $r == "$rounds" ]] && cdf=(--cdf "$out/raw/cdf-$n-$v.txt")
      raw=$out/raw/$shape-$n-$v-$r.json
      local a0
      a0=$(agent_cpu_ms "$v")
      # A transaction that fails (a connect timed out: a SYN lost to a port clash in a netfilter
      # variant's random-fully SNAT with a server TIME_WAIT, say) is counted and reported. A slice
      # with more than 1 in 1,000 failed is a broken datapath, not noise: the variant gets no rate
      # for that shape and scale ("failed", with the first error under the tables) and the run
      # goes on, so one broken variant does not hide the others.
      cg_exec "$v" "$(client_ns "$v")" taskset -c "$cpu" "$npload" "$shape" --targets "$targets" \
        --duration-ms "$slice_ms" --seed "$r" "${cdf[@]}" >"$raw" 2>"$raw.err" || true
      if ! jq -e '.transactions > 0 and .errors * 1000 <= .transactions' "$raw" >/dev/null 2>&1; then
        echo "compare: $v: $shape slice at $n services failed ($(cat "$raw" "$raw.err" 2>/dev/null | tr '\n' ' '))" >&2
        printf 'fail\t%s\t%s\t%s\t%s\n' "$shape" "$n" "$v" \
          "$(jq -r '"\(.errors) errors after \(.transactions) transactions"' "$raw" 2>/dev/null || echo "no result"); $(tail -1 "$raw.err" 2>/dev/null)" >>"$results"
        continue
      fi
      printf 'err\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$n" "$v" "$(jq -r .errors "$raw")" "$(jq -r .transactions "$raw")" >>"$results"
      # The agent's own CPU while the slice ran (it is not pinned; work it does in the
      # background, e.g. a periodic sweep that grows with the service count, shows here).
      [[ $v == nodepath* ]] && printf 'agentcpu\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$n" "$r" \
        "$(($(agent_cpu_ms "$v") - a0))" "$v" >>"$results"
      ((r == 0)) && continue
      printf 'run\t%s\t%s\t%s\t%s\t%s\t%s\n' "$shape" "$n" "$v" "$r" "$(jq -r .rate "$raw")" \
        "$(jq -r .connect_p99_us "$raw")" >>"$results"
    done
  done
  echo "compare: $shape at $n services: $rounds rounds done" >&2
}

# program_and_check <n> <set dir> <record: 1|0> [--udp]
program_and_check() {
  local n=$1 d=$2 record=$3 udp=${4:-} v full add rss
  for v in "${variant_list[@]}"; do
    read -r full add < <(program "$v" "$d")
    rss=-
    # The agent is the only process of its cgroup.
    [[ $v == nodepath* ]] && rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$(head -1 "$cg/agent-$v/cgroup.procs")/status")
    ((record)) && printf 'prog\t%s\t%s\t%s\t%s\t%s\n' "$n" "$v" "$full" "$add" "$rss" >>"$results"
    # Correctness before timing: every sampled service answered by each of its backends.
    if [[ $v == clean ]]; then
      cg_exec "$v" "$P-$v" "$npload" check $udp --targets "$d/backends.txt" --tries 3 --expect 1 >/dev/null ||
        die "$v: the backends do not all answer"
    else
      cg_exec "$v" "$(client_ns "$v")" "$npload" check $udp --targets "$d/sample.txt" --tries 150 --expect "$backends" >/dev/null ||
        die "$v at $n services${udp:+ (UDP)}: a sampled service is not answered by exactly its $backends backends"
    fi
  done
  echo "compare: $n ${udp:+UDP }services programmed and checked in every variant" >&2
}

for n in "${scale_list[@]}"; do
  d=$work/set-$n
  mkdir -p "$d" "$d-udp"
  "$npkpgen" --services "$n" --backends "$backends" --out-dir "$d"
  if [[ ${NP_COMPARE_FAULT:-} == drop-endpoint ]]; then
    # Only ipt-legacy reads this copy; the first DNAT in the file is service 0's first endpoint's.
    sed '0,/-j DNAT/{/-j DNAT/d}' "$d/iptables.rules" >"$d/iptables-legacy.rules"
  else
    cp "$d/iptables.rules" "$d/iptables-legacy.rules"
  fi
  sample "$d/targets.txt" >"$d/sample.txt"
  tcp_shapes=()
  for shape in "${shape_list[@]}"; do [[ $shape != udprr ]] && tcp_shapes+=("$shape"); done
  if ((${#tcp_shapes[@]})); then
    program_and_check "$n" "$d" 1
    for shape in "${tcp_shapes[@]}"; do run_shape "$shape" "$n" "$d"; done
  fi
  if [[ " ${shape_list[*]} " == *" udprr "* ]]; then
    # The same set as UDP services (kube-proxy matches the protocol; so does the socket LB).
    "$npkpgen" --services "$n" --backends "$backends" --protocol udp --out-dir "$d-udp"
    sample "$d-udp/targets.txt" >"$d-udp/sample.txt"
    program_and_check "$n" "$d-udp" "$((${#tcp_shapes[@]} == 0))" --udp
    run_shape udprr "$n" "$d-udp"
  fi
done

# --- tables ------------------------------------------------------------------------------------
# Ratio of each run to the clean run of the same shape, scale and round; median and min-max.
ratios=$work/ratios.tsv
awk -F'\t' '$1 == "run" { rate[$2 FS $3 FS $4 FS $5] = $6; p99[$2 FS $3 FS $4 FS $5] = $7; key[$2 FS $3 FS $4] = 1; r[$5] = 1 }
  END { for (k in key) { split(k, a, FS); for (x in r) { c = rate[a[1] FS a[2] FS "clean" FS x]; v = rate[k FS x];
        if (c > 0 && v != "") print a[1] "\t" a[2] "\t" a[3] "\t" v / c "\t" v "\t" p99[k FS x] } } }' "$results" >"$ratios"
md=$out/results.md
{
  for shape in "${shape_list[@]}"; do
    case $shape in
      crr) echo "**TCP_CRR** (connect, 1-line request, reply, close): transactions/s as a ratio to the clean path in the same round, median (min-max) of $rounds rounds; connect() p99 in µs, median over rounds." ;;
      rr) echo "**TCP_RR** (1-line request/response on up to 1,024 open connections, one per service): ratio to clean, median (min-max)." ;;
      udprr) echo "**UDP_RR** (1 datagram each way on up to 1,024 connected UDP sockets, one per service): ratio to clean, median (min-max)." ;;
    esac
    echo
    printf '| datapath |'
    for n in "${scale_list[@]}"; do printf ' %s services x %s |' "$(printf "%'d" "$n")" "$backends"; done
    [[ $shape == crr ]] && printf ' connect() p99 at %s |' "$(printf "%'d" "${scale_list[-1]}")"
    echo
    printf '|---|'
    for _ in "${scale_list[@]}"; do printf -- '---:|'; done
    [[ $shape == crr ]] && printf -- '---:|'
    echo
    for v in "${variant_list[@]}"; do
      printf '| %s |' "$v"
      for n in "${scale_list[@]}"; do
        read -r m lo hi < <(awk -F'\t' -v s="$shape" -v n="$n" -v v="$v" '$1 == s && $2 == n && $3 == v { print $4 }' "$ratios" | stat)
        rate=$(awk -F'\t' -v s="$shape" -v n="$n" -v v="$v" '$1 == s && $2 == n && $3 == v { print $5 }' "$ratios" | stat | cut -d' ' -f1)
        if grep -qP "^fail\t$shape\t$n\t$v\t" "$results"; then printf ' failed |'
        elif [[ $m == - ]]; then printf ' - |'; else printf ' %.2f (%.2f-%.2f), %.0f/s |' "$m" "$lo" "$hi" "$rate"; fi
      done
      if [[ $shape == crr ]]; then
        p=$(awk -F'\t' -v n="${scale_list[-1]}" -v v="$v" '$1 == "crr" && $2 == n && $3 == v { print $6 }' "$ratios" | stat | cut -d' ' -f1)
        printf ' %s µs |' "$p"
      fi
      echo
    done
    echo
  done
  if grep -q '^agentcpu' "$results"; then
    echo "**nodepath-agent's own CPU** while each nodepath variant's slices ran (ms of CPU per second of slice, median over rounds; it is not pinned, so this is work it does beside the datapath):"
    echo
    for v in nodepath nodepath-tc; do
      [[ -n ${vidx[$v]+x} ]] || continue
      for shape in "${shape_list[@]}"; do
        printf -- '- %s, %s:' "$v" "$shape"
        for n in "${scale_list[@]}"; do
          m=$(awk -F'\t' -v s="$shape" -v n="$n" -v ms="$slice_ms" -v v="$v" '$1 == "agentcpu" && $2 == s && $3 == n && $4 > 0 && $6 == v { print $5 * 1000 / ms }' "$results" | stat | cut -d' ' -f1)
          printf ' %s at %s services;' "$m" "$n"
        done
        echo
      done
    done
    echo
  fi
  if grep -q '^fail' "$results"; then
    echo "**Failed slices** (more than 1 transaction in 1,000 failed: no rate for that variant, shape and scale; first error of each failed slice):"
    echo
    awk -F'\t' '$1 == "fail" { printf "- %s, %s at %s services: %s\n", $4, $2, $3, $5 }' "$results" | sort | uniq
    echo
  fi
  if awk -F'\t' '$1 == "err" && $5 > 0 { found = 1 } END { exit !found }' "$results"; then
    echo "**Failed transactions** (counted, excluded from the rates; at most 1 in 1,000 is accepted):"
    echo
    awk -F'\t' '$1 == "err" { e[$2 " at " $3 " services, " $4] += $5; t[$2 " at " $3 " services, " $4] += $6 }
      END { for (k in e) if (e[k] > 0) printf "- %s: %d of %d\n", k, e[k], t[k] + e[k] }' "$results" | sort
    echo
  fi
  echo "**Programming** the full set (one restore / one \`nft -f\` / one \`agentctl service apply\`) and then one added service (kube-proxy's partial sync: KUBE-SERVICES rewritten, the new chains added; nftables: one transaction; nodepath: one apply), in ms; nodepath-agent's VmRSS after programming."
  echo
  echo "| datapath | services | full set (ms) | one added service (ms) | agent RSS |"
  echo "|---|---:|---:|---:|---:|"
  awk -F'\t' '$1 == "prog" && $3 != "clean" { rss = $6 == "-" ? "-" : sprintf("%.1f MiB", $6 / 1024); printf "| %s | %s | %s | %s | %s |\n", $3, $2, $4, $5, rss }' "$results"
} >"$md"

# --- plots -------------------------------------------------------------------------------------
if [[ " ${shape_list[*]} " == *" crr "* ]]; then
  crr_ratios() { awk -F'\t' -v n="$1" -v v="$2" '$1 == "crr" && $2 == n && $3 == v { print $4 }' "$ratios"; }
  rate_plot "$out/rate-vs-services.png" 'TCP\_CRR to a ClusterIP: transactions/s as a ratio to the clean path' \
    'ratio to clean' 1.1 crr_ratios "${scale_list[*]}" "${variant_list[@]}"
  last=${scale_list[-1]}
  cmds="set terminal pngcairo size 900,540; set output '$out/connect-cdf.png';"
  cmds+="set title 'connect() latency at $(printf "%'d" "$last") services (last round, TCP\\_CRR)'; set logscale x; set xlabel 'connect() µs'; set ylabel 'fraction of connects'; set key bottom right; set grid;"
  cmds+="plot"
  sep=
  for v in "${variant_list[@]}"; do
    [[ -f $out/raw/cdf-$last-$v.txt ]] || continue
    cmds+="$sep '$out/raw/cdf-$last-$v.txt' using 1:2 with lines title '$v'"
    sep=,
  done
  gnuplot -e "$cmds"
fi
if [[ $nodeport_variants != none ]]; then
  np_args=()
  [[ $nodeport_variants != all ]] && np_args=(--variants "$nodeport_variants")
  NP_BUILD_DIR=$build "$repo/bench/compare/nodeport.sh" --out "$out" --scales "$scales" --rounds "$rounds" \
    --slice-ms "$slice_ms" --backends "$backends" --cpu "$cpu" --node-ports "$node_ports" "${np_args[@]}" >/dev/null ||
    die "the NodePort matrix (nodeport.sh) failed"
  { echo; cat "$out/nodeport.md"; } >>"$md"
fi
cat "$md"
