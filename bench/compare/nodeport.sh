#!/usr/bin/env bash
# The kube-proxy comparison, NodePort from the LAN: a client on the LAN connects to node 1's
# NodePort; the service's backends are on node 2 (remote endpoints), so node 1 forwards every
# connection. Run by compare.sh (--nodeport-variants), or alone (root):
#
#   nodeport.sh --out DIR [--scales 10,1000,10000] [--rounds 5] [--slice-ms 2000]
#               [--backends 10] [--cpu N] [--variants LIST] [--node-ports 2500]
#
# Topology: one test/e2e lab (scripts/lib/lab.sh: LAN bridge, client 192.168.10.200, n1
# 192.168.10.100, n2 192.168.10.101, pods) per variant, each with its own prefix npcmp<pid>n<k>;
# nothing in the root namespace. Every lab's LAN ports carry the XDP pass program (as the XDP
# variants need), so all variants cross the same LAN. The backends are 10.0.2.100.. on lo of n2's pod p1 (n2 routes
# them to the pod), one `npload serve` (TCP :8080; a reply names the backend address). Variants:
#   np-clean       no service: the client connects to a backend itself, through n1 and n2 by plain
#                  routing (client -> n1 -> n2 -> pod; replies pod -> n2 -> client)
#   np-tc-snat     nodepath on n1 and n2, bpf-lb-mode snat, tc only
#   np-tc-dsr      ...bpf-lb-mode dsr (n1 forwards with the IP option, n2 replies to the client)
#   np-xdp-snat    ...snat with bpf-lb-acceleration native (n1's NodePort path in XDP)
#   np-xdp-dsr     ...dsr with XDP
#   np-ipt-legacy  kube-proxy iptables mode on n1 and n2 (iptables-legacy-restore): KUBE-NODEPORTS
#                  -> KUBE-EXT (masquerade mark) -> KUBE-SVC -> KUBE-SEP DNAT, MASQUERADE
#   np-ipt-nft     the same rules through iptables-nft-restore
#   np-nftables    kube-proxy nftables mode on n1 and n2 (service-nodeports map -> external chain)
# Both nodes get the same set (as in a cluster, where node 2 runs the same kube-proxy or nodepath
# and its rules see the forwarded packets). N services x --backends endpoints; the first
# --node-ports of them (at most the default NodePort range, 30000-32767) have NodePort 30000+i,
# the rest are ClusterIP only (they still fill the maps and the chains a NodePort packet walks).
# The client and the server are pinned to one CPU (--cpu); veth delivery keeps the nodes'
# softirq work on that CPU, so a slice measures the whole path's cost on it. Before timing, each
# variant is checked: 20 sampled NodePorts each answered by exactly all their backends. TCP_CRR
# in rounds, every variant once a round, order rotated; round 0 dropped; each rate divided by
# np-clean's in the same round. Between slices the nodes' netfilter conntrack tables are flushed.
#
# NP_NODEPORT_AGENT_KEYS="key=value ..." writes more config keys for the nodepath agents (e.g.
# enable-hubble=false, to see what flow recording costs).
# NP_COMPARE_FAULT=drop-endpoint: np-ipt-legacy's rules lose the DNAT of service 0's first
# endpoint (the check must then stop the run).
#
# Writes DIR/nodeport.md, DIR/nodeport-rate-vs-services.png and DIR/raw/np-*.
# shellcheck disable=SC2317  # cleanup runs from the trap
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${NP_BUILD_DIR:-$repo/build}
scales=10,1000,10000
rounds=5
slice_ms=2000
backends=10
node_ports=2500
cpu=$(($(nproc) - 1))
all_variants=np-clean,np-tc-snat,np-tc-dsr,np-xdp-snat,np-xdp-dsr,np-ipt-legacy,np-ipt-nft,np-nftables
variants=$all_variants
out=

die() { echo "nodeport: $*" >&2; exit 1; }
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --scales) scales=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --slice-ms) slice_ms=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --variants) variants=$2; shift 2 ;;
    --node-ports) node_ports=$2; shift 2 ;;
    -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "nodeport: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "nodeport: --out DIR is required" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ && $slice_ms =~ ^[1-9][0-9]*$ && $backends =~ ^[1-9][0-9]*$ && $cpu =~ ^[0-9]+$ &&
  $node_ports =~ ^[1-9][0-9]*$ ]] ||
  { echo "nodeport: --rounds, --slice-ms, --backends, --cpu and --node-ports take positive integers" >&2; exit 2; }
((backends <= 100)) || die "--backends: at most 100 (10.0.2.100..199)"
((node_ports <= 2768)) || die "--node-ports: at most 2768 (the NodePort range 30000-32767)"
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, cgroups, bpffs, netfilter)"
IFS=, read -r -a scale_list <<<"$scales"
IFS=, read -r -a variant_list <<<"$variants"
[[ " ${variant_list[*]} " == *" np-clean "* ]] || die "--variants must include np-clean (the baseline)"
for v in "${variant_list[@]}"; do
  [[ ,$all_variants, == *",$v,"* ]] || die "unknown variant $v ($all_variants)"
done
for n in "${scale_list[@]}"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "bad scale $n"; done
for tool in iptables-legacy-restore iptables-nft-restore nft conntrack gnuplot nsenter taskset jq ethtool; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
done
npload=$build/bench/npload
npkpgen=$build/bench/npkpgen
agentctl=$build/cli/agentctl/agentctl
for b in "$npload" "$npkpgen" "$build/agent/nodepath-agent" "$agentctl" "$build/bpf/xdp_pass.bpf.o" \
  "$build/test/tools/nptraffic"; do
  [[ -e $b ]] || die "$b is not built"
done
export NP_BUILD_DIR=$build
# shellcheck source=/dev/null
source "$repo/scripts/lib/lab.sh"
# shellcheck source=lib.sh
source "$repo/bench/compare/lib.sh"

work=$(mktemp -d /tmp/np-nodeport.XXXXXX)
declare -A prefix
labs=()
k=0
for v in "${variant_list[@]}"; do
  prefix[$v]=npcmp$$n$k
  k=$((k + 1))
done

# in_lab <variant> <lab function> args...: a lab helper against that variant's lab.
in_lab() {
  local v=$1
  shift
  NP_LAB_PREFIX=${prefix[$v]} NP_LAB_DIR=/run/nodepath-lab/${prefix[$v]} "$@"
}

cleanup() {
  local p rc=0
  for p in "${labs[@]}"; do
    in_lab "$p" lab_down >>"$work/down.log" 2>&1 || { echo "nodeport: teardown of ${prefix[$p]} failed:" >&2; tail -5 "$work/down.log" >&2; rc=1; }
  done
  rm -rf "$work"
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$out/raw"

# --- labs --------------------------------------------------------------------------------------
be_ips=()
for ((b = 0; b < backends; b++)); do be_ips+=("10.0.2.$((100 + b))"); done

lab_for() { # <variant>: the lab, the backends and their server, the variant's datapath
  local v=$1 ip binds=() mode accel
  in_lab "$v" lab_up >>"$work/up.log" 2>&1 || { tail -5 "$work/up.log" >&2; die "$v: lab_up failed"; }
  labs+=("$v")
  local P=${prefix[$v]}
  for ip in "${be_ips[@]}"; do
    ip -n "$P-n2-p1" addr add "$ip/32" dev lo
    ip -n "$P-n2" route add "$ip/32" dev lxcp1
    binds+=(--bind "$ip")
  done
  # No TIME_WAIT at the server (it closes first): see compare.sh.
  nsenter --net="/run/netns/$P-n2-p1" -- sysctl -qw net.ipv4.tcp_max_tw_buckets=0
  in_lab "$v" lab_bg serve "$work/serve-$v.log" lab_pod_exec n2 p1 taskset -c "$cpu" "$npload" serve \
    "${binds[@]}" --port 8080 || die "$v: cannot start the server"
  # The same LAN for every variant: XDP variants need a program on the bridge-side veth peers
  # (XDP_TX frames reach only a peer with one), so every lab gets the pass program there.
  in_lab "$v" lab_lan_xdp_pass || die "$v: cannot attach the LAN's XDP pass programs"
  case $v in
    np-clean)
      # Plain routing: the client reaches the backends through n1, which routes them to n2.
      ip -n "$P-client" route add 10.0.2.0/24 via 192.168.10.100 ;;
    np-tc-* | np-xdp-*)
      mode=${v##*-}
      accel=
      [[ $v == np-xdp-* ]] && accel=native
      local node dir
      for node in n1 n2; do
        dir=/run/nodepath-lab/$P/$node/config
        echo "$mode" >"$dir/bpf-lb-mode"
        [[ -n $accel ]] && echo "$accel" >"$dir/bpf-lb-acceleration"
        # NP_NODEPORT_AGENT_KEYS="key=value ...": more agent config keys (an experiment's knob).
        for kv in ${NP_NODEPORT_AGENT_KEYS:-}; do echo "${kv#*=}" >"$dir/${kv%%=*}"; done
        in_lab "$v" lab_agent_start "$node" || die "$v: the agent on $node did not start"
      done
      for node in n1 n2; do
        in_lab "$v" lab_agent_wait "$node" 30 || die "$v: the agent on $node is not ready"
      done ;;
  esac
}
for v in "${variant_list[@]}"; do lab_for "$v"; done
echo "nodeport: ${#variant_list[@]} labs up" >&2

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
node_ns() { echo "${prefix[$1]}-$2"; }

# program <variant> <set dir>: the full set on n1 and n2; prints n1's time in ms.
program() {
  local v=$1 d=$2 node t0 ms=- ns name restore rules
  [[ $v == np-clean ]] && { echo -; return 0; }
  for node in n1 n2; do
    ns=/run/netns/$(node_ns "$v" "$node")
    t0=$(date +%s%N)
    case $v in
      np-ipt-legacy | np-ipt-nft)
        restore=iptables-legacy-restore rules=$d/iptables-legacy.rules
        [[ $v == np-ipt-nft ]] && restore=iptables-nft-restore rules=$d/iptables.rules
        nsenter --net="$ns" -- "$restore" <"$rules" || die "$v: $restore refused $(basename "$rules") on $node" ;;
      np-nftables)
        nsenter --net="$ns" -- nft delete table ip kube-proxy 2>/dev/null || true
        nsenter --net="$ns" -- nft -f "$d/nftables.nft" || die "$v: nft refused nftables.nft on $node" ;;
      *)
        in_lab "$v" lab_agentctl "$node" -o json service list | jq -r '.services[]?.name' |
          while read -r name; do
            in_lab "$v" lab_agentctl "$node" service delete "$name" >/dev/null || die "$v: service delete $name on $node failed"
          done
        # The previous scale's services are deleted one command each (1,000 agentctl runs take
        # ~25 s): not part of programming the set into an empty datapath, so not timed.
        t0=$(date +%s%N)
        in_lab "$v" lab_agentctl "$node" service apply -f "$d/services.json" >/dev/null ||
          die "$v: agentctl service apply refused services.json on $node" ;;
    esac
    [[ $node == n1 ]] && ms=$(ms_since "$t0")
  done
  echo "$ms"
}

sample() { # at most 20 lines of a file, spread over it (first and last included)
  awk -v n="$(wc -l <"$1")" 'BEGIN { k = n < 20 ? n : 20; for (i = 0; i < k; i++) want[int(i * (n - 1) / (k > 1 ? k - 1 : 1)) + 1] = 1 } want[NR]' "$1"
}

flush_ct() { # <variant>: the nodes' netfilter conntrack tables
  local node
  for node in n1 n2; do nsenter --net="/run/netns/$(node_ns "$1" "$node")" -- conntrack -F >/dev/null 2>&1 || true; done
}

results=$work/summary.tsv
: >"$results"
for n in "${scale_list[@]}"; do
  d=$work/set-$n
  mkdir -p "$d"
  k=$((n < node_ports ? n : node_ports))
  "$npkpgen" --services "$n" --backends "$backends" --backend-base 10.0.2.100 --node-ports "$k" \
    --node-ip 192.168.10.100 --out-dir "$d"
  if [[ ${NP_COMPARE_FAULT:-} == drop-endpoint ]]; then
    sed '0,/-j DNAT/{/-j DNAT/d}' "$d/iptables.rules" >"$d/iptables-legacy.rules"
  else
    cp "$d/iptables.rules" "$d/iptables-legacy.rules"
  fi
  sample "$d/nodeport-targets.txt" >"$d/sample.txt"
  for v in "${variant_list[@]}"; do
    ms=$(program "$v" "$d")
    printf 'prog\t%s\t%s\t%s\t%s\n' "$n" "$v" "$ms" "$k" >>"$results"
    flush_ct "$v"
    if [[ $v == np-clean ]]; then
      in_lab "$v" lab_client_exec "$npload" check --targets "$d/backends.txt" --tries 3 --expect 1 >/dev/null ||
        die "$v: the backends do not all answer through n1"
    else
      in_lab "$v" lab_client_exec "$npload" check --targets "$d/sample.txt" --tries 150 --expect "$backends" >"$work/check.log" 2>&1 ||
        die "$v at $n services: a sampled NodePort is not answered by exactly its $backends backends ($(tail -3 "$work/check.log"))"
    fi
  done
  echo "nodeport: $n services ($k NodePorts) programmed and checked in every variant" >&2
  for ((r = 0; r <= rounds; r++)); do
    order=("${variant_list[@]:r % ${#variant_list[@]}}" "${variant_list[@]:0:r % ${#variant_list[@]}}")
    for v in "${order[@]}"; do
      flush_ct "$v"
      targets=$d/nodeport-targets.txt
      [[ $v == np-clean ]] && targets=$d/backends.txt
      cdf=()
      [[ $r == "$rounds" ]] && cdf=(--cdf "$out/raw/np-cdf-$n-$v.txt")
      raw=$out/raw/np-crr-$n-$v-$r.json
      in_lab "$v" lab_client_exec taskset -c "$cpu" "$npload" crr --targets "$targets" \
        --duration-ms "$slice_ms" --seed "$r" "${cdf[@]}" >"$raw" 2>"$raw.err" || true
      # More than 1 in 1,000 failed: a broken datapath, not noise. As in compare.sh, the variant
      # gets no rate at this scale ("failed", first error listed) and the others go on.
      if ! jq -e '.transactions > 0 and .errors * 1000 <= .transactions' "$raw" >/dev/null 2>&1; then
        echo "nodeport: $v: crr slice at $n services failed ($(cat "$raw" "$raw.err" 2>/dev/null | tr '\n' ' '))" >&2
        printf 'fail\t%s\t%s\t%s\n' "$n" "$v" \
          "$(jq -r '"\(.errors) errors after \(.transactions) transactions, connect p99 \(.connect_p99_us) µs"' "$raw" 2>/dev/null || echo "no result"); $(tail -1 "$raw.err" 2>/dev/null)" >>"$results"
        continue
      fi
      printf 'err\t%s\t%s\t%s\t%s\n' "$n" "$v" "$(jq -r .errors "$raw")" "$(jq -r .transactions "$raw")" >>"$results"
      ((r == 0)) && continue
      printf 'run\t%s\t%s\t%s\t%s\t%s\n' "$n" "$v" "$r" "$(jq -r .rate "$raw")" "$(jq -r .connect_p99_us "$raw")" >>"$results"
    done
  done
  echo "nodeport: crr at $n services: $rounds rounds done" >&2
done

# --- table and plot ----------------------------------------------------------------------------
ratios=$work/ratios.tsv
awk -F'\t' '$1 == "run" { rate[$2 FS $3 FS $4] = $5; p99[$2 FS $3 FS $4] = $6; key[$2 FS $3] = 1; r[$4] = 1 }
  END { for (k in key) { split(k, a, FS); for (x in r) { c = rate[a[1] FS "np-clean" FS x]; v = rate[k FS x];
        if (c > 0 && v != "") print a[1] "\t" a[2] "\t" v / c "\t" v "\t" p99[k FS x] } } }' "$results" >"$ratios"
md=$out/nodeport.md
{
  echo "**NodePort from the LAN, TCP_CRR** (a LAN client connects to node 1's NodePort, the backends are on node 2; connect, 1-line request, reply, close): transactions/s as a ratio to np-clean (the client straight to a backend, routed through node 1) in the same round, median (min-max) of $rounds rounds; connect() p99 in µs, median over rounds. NodePorts: one per service up to $node_ports (the default range holds 2,768), the rest ClusterIP only."
  echo
  printf '| datapath |'
  for n in "${scale_list[@]}"; do
    k=$((n < node_ports ? n : node_ports))
    printf ' %s services x %s (%s NodePorts) |' "$(printf "%'d" "$n")" "$backends" "$(printf "%'d" "$k")"
  done
  printf ' connect() p99 at %s |\n' "$(printf "%'d" "${scale_list[-1]}")"
  printf '|---|'
  for _ in "${scale_list[@]}"; do printf -- '---:|'; done
  printf -- '---:|\n'
  for v in "${variant_list[@]}"; do
    printf '| %s |' "$v"
    for n in "${scale_list[@]}"; do
      read -r m lo hi < <(awk -F'\t' -v n="$n" -v v="$v" '$1 == n && $2 == v { print $3 }' "$ratios" | stat)
      rate=$(awk -F'\t' -v n="$n" -v v="$v" '$1 == n && $2 == v { print $4 }' "$ratios" | stat | cut -d' ' -f1)
      if grep -qP "^fail\t$n\t$v\t" "$results"; then printf ' failed |'
      elif [[ $m == - ]]; then printf ' - |'; else printf ' %.2f (%.2f-%.2f), %.0f/s |' "$m" "$lo" "$hi" "$rate"; fi
    done
    p=$(awk -F'\t' -v n="${scale_list[-1]}" -v v="$v" '$1 == n && $2 == v { print $5 }' "$ratios" | stat | cut -d' ' -f1)
    printf ' %s µs |\n' "$p"
  done
  echo
  if grep -q '^fail' "$results"; then
    echo "**Failed NodePort slices** (more than 1 transaction in 1,000 failed: no rate for that variant and scale; first error of each):"
    echo
    awk -F'\t' '$1 == "fail" { printf "- %s at %s services: %s\n", $3, $2, $4 }' "$results" | sort
    echo
  fi
  if awk -F'\t' '$1 == "err" && $4 > 0 { found = 1 } END { exit !found }' "$results"; then
    echo "**Failed NodePort transactions** (counted, excluded from the rates; at most 1 in 1,000 is accepted):"
    echo
    awk -F'\t' '$1 == "err" { e[$3 " at " $2 " services"] += $4; t[$3 " at " $2 " services"] += $5 }
      END { for (k in e) if (e[k] > 0) printf "- %s: %d of %d\n", k, e[k], t[k] + e[k] }' "$results" | sort
    echo
  fi
  echo "**Programming node 1** for the NodePort matrix (the full set into an empty datapath, ms; node 2 gets the same afterwards):"
  echo
  echo "| datapath | services | NodePorts | full set (ms) |"
  echo "|---|---:|---:|---:|"
  awk -F'\t' '$1 == "prog" && $3 != "np-clean" { printf "| %s | %s | %s | %s |\n", $3, $2, $5, $4 }' "$results"
} >"$md"

nodeport_ratios() { awk -F'\t' -v n="$1" -v v="$2" '$1 == n && $2 == v { print $3 }' "$ratios"; }
rate_plot "$out/nodeport-rate-vs-services.png" 'TCP\_CRR to a NodePort from the LAN (backends on another node): ratio to plain routing' \
  'ratio to np-clean' 1.3 nodeport_ratios "${scale_list[*]}" "${variant_list[@]}"
cat "$md"
