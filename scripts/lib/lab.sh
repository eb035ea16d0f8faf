# shellcheck shell=bash
# nodepath network-namespace lab (DESIGN.md §7), as a library: `source scripts/lib/lab.sh`.
#
# Everything is named from the per-run prefix P=${NP_LAB_PREFIX:-nplab} (letters, digits, '_'):
#   network namespaces  $P-lan $P-n1 $P-n2 $P-n1-p1 $P-n1-p2 $P-n2-p1 $P-n2-p2 $P-client $P-router $P-inet
#   cgroups (cgroup2)   <cgroup2>/np-$P/{n1,n2}            node cgroups (the agents' --cgroup-root)
#                       <cgroup2>/np-$P/<node>/pods/<pod>  pod cgroups, children of their node's
#                       <cgroup2>/np-$P/hosts/<host>       client, router, inet, lan
#   state dir           NP_LAB_DIR=${NP_LAB_DIR:-/run/nodepath-lab/$P}
#     .nodepath-lab     marker (lab_down only removes a state dir that carries it)
#     netns             every namespace suffix created, one a line (lab_down deletes them)
#     bpffs/            ONE bpffs mount; bpffs/<node> is each node's --bpf-root
#     <node>/{run,config,agent.log,agent.pid}
#     <node>/cni/{net.d,bin}  the node's --cni-conf-dir and --cni-bin-dir (bin: links to the
#                       build's nodepath-cni and Debian's /usr/lib/cni/loopback)
#     pids/<name>.pid   background processes started by lab_bg (+ <name>.start: start time)
#     logs/             logs of background processes other than the agents
#
# Nothing is created in the root network namespace: every veth pair is created inside a lab
# namespace with its peer placed directly in another one. Processes run in the lab with
# `nsenter --net` (never `ip netns exec`, whose private mount namespace hides bpffs and cgroup
# paths) after joining a lab cgroup. Node processes live in the node cgroup itself and pods in
# cgroups below it: cgroup v2 allows that because no controller is enabled in our subtree
# (cgroup.subtree_control is empty), so socket programs attached at the node cgroup cover both.
# Every lab process therefore sits in a cgroup under np-$P, and lab_down kills whatever is left
# there through cgroup.kill.
#
# The functions return non-zero on failure (they never exit the caller); they work under
# `set -euo pipefail` and without it.

if [[ -n ${_NP_LAB_LIB_LOADED:-} ]]; then
  return 0
fi
_NP_LAB_LIB_LOADED=1

LAB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The fixed topology.
LAB_NODES=(n1 n2)
LAB_PODS=(p1 p2)
LAB_HOSTS=(client router inet lan)
LAB_FIXED_NETNS=(lan n1 n2 n1-p1 n1-p2 n2-p1 n2-p2 client router inet)

lab__log() { printf 'lab: %s\n' "$*" >&2; }

# Sets LAB_P, LAB_DIR, LAB_BUILD, LAB_CG2, LAB_CGROOT from the environment (every public
# function calls it, so a test can change NP_LAB_PREFIX/NP_LAB_DIR between calls).
lab__vars() {
  LAB_P=${NP_LAB_PREFIX:-nplab}
  if [[ ! $LAB_P =~ ^[A-Za-z0-9][A-Za-z0-9_]{0,23}$ ]]; then
    lab__log "bad NP_LAB_PREFIX '$LAB_P': 1-24 letters, digits or '_' (no '-')"
    return 1
  fi
  LAB_DIR=${NP_LAB_DIR:-/run/nodepath-lab/$LAB_P}
  if [[ ! $LAB_DIR =~ ^(/[A-Za-z0-9._-]+){2,}$ || $LAB_DIR =~ (^|/)\.\.?(/|$) ]]; then
    lab__log "bad NP_LAB_DIR '$LAB_DIR': an absolute path of at least two plain components"
    return 1
  fi
  LAB_BUILD=${NP_BUILD_DIR:-$LAB_REPO/build}
  if [[ -z ${LAB_CG2:-} ]]; then
    LAB_CG2=$(lab__find_cgroup2) || {
      lab__log "no cgroup2 mount in /proc/self/mountinfo"
      return 1
    }
  fi
  LAB_CGROOT=$LAB_CG2/np-$LAB_P
}

# The first cgroup2 mount point (here /sys/fs/cgroup/unified; v1 controllers are on /sys/fs/cgroup).
lab__find_cgroup2() {
  local line rest mp
  while IFS= read -r line; do
    rest=${line#* - }
    if [[ ${rest%% *} == cgroup2 ]]; then
      read -r _ _ _ _ mp _ <<<"$line"
      printf '%s\n' "$mp"
      return 0
    fi
  done </proc/self/mountinfo
  return 1
}

lab__netns_path() { printf '/var/run/netns/%s-%s' "$LAB_P" "$1"; }

lab__node_index() {
  case $1 in
    n1) echo 1 ;;
    n2) echo 2 ;;
    *) lab__log "unknown node '$1' (n1 or n2)"; return 1 ;;
  esac
}

lab__is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# sysctls inside a namespace (a one-shot nsenter: /proc/sys/net follows the opener's netns).
lab__sysctl() {
  local ns=$1; shift
  nsenter --net="$(lab__netns_path "$ns")" -- sysctl -qw "$@"
}

# lab__veth <ns-a> <if-a> <ns-b> <if-b>: a veth pair created inside ns-a, peer placed directly in ns-b.
lab__veth() {
  ip -n "$LAB_P-$1" link add "$2" type veth peer name "$4" netns "$LAB_P-$3"
}

# ---------------------------------------------------------------------------------------------
# Processes

# lab__pid_alive <pid> [start-time]: the process exists, is not a zombie and, when a start time
# is given, is the same process (guards against PID reuse).
lab__pid_alive() {
  local pid=$1 want=${2:-} line rest
  lab__is_uint "$pid" || return 1
  { IFS= read -r line <"/proc/$pid/stat"; } 2>/dev/null || return 1
  rest=${line##*) }
  local -a f
  read -r -a f <<<"$rest"
  [[ ${f[0]} != Z && ${f[0]} != X ]] || return 1
  [[ -z $want || ${f[19]} == "$want" ]]
}

lab__pid_start() {
  local line rest
  { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
  rest=${line##*) }
  local -a f
  read -r -a f <<<"$rest"
  printf '%s\n' "${f[19]}"
}

# lab__bg_pid <name>: prints the pid of a running background process started by lab_bg.
lab__bg_pid() {
  local pidf=$LAB_DIR/pids/$1.pid pid start=
  [[ -s $pidf ]] || return 1
  read -r pid <"$pidf" || return 1
  if [[ -s $LAB_DIR/pids/$1.start ]]; then
    read -r start <"$LAB_DIR/pids/$1.start" || true
  fi
  lab__pid_alive "$pid" "$start" || return 1
  printf '%s\n' "$pid"
}

lab__join_and_exec() { # <cgroup dir> <netns suffix> cmd...
  local cg=$1 ns=$2
  shift 2
  if [[ ! -e $(lab__netns_path "$ns") ]]; then
    lab__log "namespace $LAB_P-$ns does not exist (is the lab up?)"
    return 1
  fi
  [[ -d $cg ]] || mkdir -p "$cg" || return 1
  echo 0 >"$cg/cgroup.procs" || return 1
  # A node of the cluster tier (scripts/lib/cluster.sh) has a mount namespace of its own too.
  local mnt
  if mnt=$(lab__bg_pid "node-mnt-$ns" 2>/dev/null); then
    exec nsenter --mount="/proc/$mnt/ns/mnt" --net="$(lab__netns_path "$ns")" --wd="$PWD" -- "$@"
  fi
  exec nsenter --net="$(lab__netns_path "$ns")" -- "$@"
}

# Runs lab__join_and_exec in a subshell, or in place when lab_bg asked for that (so the
# recorded PID is the command's own).
lab__enter() {
  if [[ ${LAB__INPLACE:-0} == 1 ]]; then
    lab__join_and_exec "$@"
  else
    (lab__join_and_exec "$@")
  fi
}

# lab_node_exec <node> cmd...: run cmd "on the node": in the node's cgroup and netns.
lab_node_exec() {
  lab__vars || return 1
  (($# >= 2)) || { lab__log "usage: lab_node_exec <node> cmd..."; return 2; }
  lab__node_index "$1" >/dev/null || return 1
  local node=$1
  shift
  lab__enter "$LAB_CGROOT/$node" "$node" "$@"
}

# lab_pod_exec <node> <pod> cmd...: run cmd in the pod: its cgroup (under the node's, made on
# first use) and netns $P-<node>-<pod> (a test's own pod: lab_netns_create <node>-<pod> first).
lab_pod_exec() {
  lab__vars || return 1
  (($# >= 3)) || { lab__log "usage: lab_pod_exec <node> <pod> cmd..."; return 2; }
  lab__node_index "$1" >/dev/null || return 1
  [[ $2 =~ ^[a-z0-9][a-z0-9-]*$ ]] || { lab__log "bad pod name '$2'"; return 1; }
  local node=$1 pod=$2
  shift 2
  lab__enter "$LAB_CGROOT/$node/pods/$pod" "$node-$pod" "$@"
}

# lab_host_exec <client|router|inet|lan> cmd...: run cmd on one of the non-node hosts.
lab_host_exec() {
  lab__vars || return 1
  (($# >= 2)) || { lab__log "usage: lab_host_exec <host> cmd..."; return 2; }
  case $1 in
    client | router | inet | lan) ;;
    *) lab__log "unknown host '$1' (client, router, inet, lan)"; return 1 ;;
  esac
  local host=$1
  shift
  lab__enter "$LAB_CGROOT/hosts/$host" "$host" "$@"
}

# lab_client_exec cmd...: run cmd on the LAN client (192.168.10.200).
lab_client_exec() { lab_host_exec client "$@"; }

# lab_bg <name> <logfile> <exec-helper|command> args...: start a background process (stdout and
# stderr to logfile, stdin from /dev/null) and record its PID in $NP_LAB_DIR/pids/<name>.pid.
# With one of the lab_*_exec helpers the recorded PID is the command's own (the helper execs in
# place). Returns at once: the process joins its cgroup and netns a moment later, so wait for a
# log line (lab_wait_for_line) or poll before relying on it.
lab_bg() {
  lab__vars || return 1
  (($# >= 3)) || { lab__log "usage: lab_bg <name> <logfile> <helper> args..."; return 2; }
  local name=$1 log=$2
  shift 2
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || { lab__log "bad process name '$name'"; return 1; }
  [[ -f $LAB_DIR/.nodepath-lab ]] || { lab__log "lab $LAB_P is not up ($LAB_DIR)"; return 1; }
  local pid
  if pid=$(lab__bg_pid "$name"); then
    lab__log "$name is already running (pid $pid)"
    return 1
  fi
  mkdir -p "$LAB_DIR/pids" "$(dirname "$log")" || return 1
  (
    LAB__INPLACE=1
    if declare -F "$1" >/dev/null; then
      "$@"
      exit
    fi
    exec "$@"
  ) >"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$LAB_DIR/pids/$name.pid"
  lab__pid_start "$pid" >"$LAB_DIR/pids/$name.start" 2>/dev/null || : >"$LAB_DIR/pids/$name.start"
}

# lab_kill <name> [signal]: signal a process started by lab_bg (default TERM). For TERM, INT,
# QUIT and KILL it waits until the process is gone (KILL after 10 s) and forgets it; other
# signals are only sent. Succeeds when the process is not running.
lab_kill() {
  lab__vars || return 1
  local name=$1 sig=${2:-TERM} pid
  sig=${sig#SIG}
  if ! pid=$(lab__bg_pid "$name"); then
    rm -f "$LAB_DIR/pids/$name.pid" "$LAB_DIR/pids/$name.start"
    return 0
  fi
  kill -s "$sig" "$pid" 2>/dev/null || true
  case $sig in
    TERM | INT | QUIT | KILL) ;;
    *) return 0 ;;
  esac
  if ! lab_poll 10 lab__not_running "$name"; then
    lab__log "$name (pid $pid) did not stop on $sig; killing it"
    kill -s KILL "$pid" 2>/dev/null || true
    lab_poll 5 lab__not_running "$name" || { lab__log "$name (pid $pid) survives SIGKILL"; return 1; }
  fi
  rm -f "$LAB_DIR/pids/$name.pid" "$LAB_DIR/pids/$name.start"
}

lab__not_running() { ! lab__bg_pid "$1" >/dev/null; }

# lab_poll <timeout-s> cmd...: run cmd every 0.1 s until it succeeds (0) or the deadline passes
# (cmd's last status). The command's output is not redirected.
lab_poll() {
  local timeout=${1:-} rc t deadline
  lab__is_uint "$timeout" || { lab__log "lab_poll: bad timeout '$timeout'"; return 2; }
  shift
  t=${EPOCHREALTIME//[!0-9]/}
  deadline=$((t + timeout * 1000000))
  while :; do
    if "$@"; then
      return 0
    else
      rc=$?
    fi
    t=${EPOCHREALTIME//[!0-9]/}
    ((t < deadline)) || return "$rc"
    sleep "${NP_LAB_POLL_INTERVAL:-0.1}"
  done
}

# lab_wait_for_line <file> <regex> <timeout-s>: wait until a line of file matches the extended
# regex; on timeout print the tail of the file and fail.
lab_wait_for_line() {
  local file=$1 re=$2 timeout=$3
  if lab_poll "$timeout" grep -Eqs -- "$re" "$file"; then
    return 0
  fi
  lab__log "timed out after ${timeout}s waiting for /$re/ in $file; its tail:"
  tail -n 20 "$file" 2>/dev/null | sed 's/^/  | /' >&2 || true
  return 1
}

# ---------------------------------------------------------------------------------------------
# Agents and servers

lab__bin() { # <name>: path of a built binary, or fail saying so
  local p
  case $1 in
    agent) p=$LAB_BUILD/agent/nodepath-agent ;;
    agentctl) p=$LAB_BUILD/cli/agentctl/agentctl ;;
    nptraffic) p=$LAB_BUILD/test/tools/nptraffic ;;
    lease-probe) p=$LAB_BUILD/test/tools/np-lease-probe ;;
    xdp-pass) p=$LAB_BUILD/bpf/xdp_pass.bpf.o ;;
    cni) p=$LAB_BUILD/cli/cni/nodepath-cni ;;
    *) return 1 ;;
  esac
  if [[ ! -x $p && ! ( $1 == xdp-pass && -f $p ) ]]; then
    lab__log "$p does not exist yet: build it first (cmake -S $LAB_REPO -B $LAB_BUILD -G Ninja && cmake --build $LAB_BUILD)"
    return 1
  fi
  printf '%s\n' "$p"
}

# lab_lan_xdp_pass: an XDP program that passes everything (test/tools/xdp_pass.bpf.c) on every
# bridge-side peer of the LAN, so that what a node's XDP sends back out of its LAN device
# (XDP_TX) arrives: a veth hands XDP frames only to a peer with an XDP program of its own (GRO
# on the peer was not enough on this kernel: the frames vanished). Idempotent.
lab_lan_xdp_pass() {
  lab__vars || return 1
  local obj port
  obj=$(lab__bin xdp-pass) || return 1
  for port in n1 n2 client router; do
    if ip -n "$LAB_P-lan" -d link show dev "$port" | grep -q 'prog/xdp'; then
      continue
    fi
    ip -n "$LAB_P-lan" link set dev "$port" xdpdrv obj "$obj" sec xdp || {
      lab__log "cannot attach the XDP pass program to the LAN port $port"
      return 1
    }
  done
}

# lab_agent_start <node> [extra agent flags...]: start nodepath-agent on the node in the
# background (log $NP_LAB_DIR/<node>/agent.log, the previous one kept as agent.log.prev; pid in
# agent.pid and pids/agent-<node>.pid). Does not wait: see lab_agent_wait. With XDP acceleration
# (--bpf-lb-acceleration=native|best-effort, or that key in the node's config dir) the LAN gets
# its XDP pass programs first.
lab_agent_start() {
  lab__vars || return 1
  local node=${1:-} bin arg
  lab__node_index "$node" >/dev/null || return 1
  shift
  bin=$(lab__bin agent) || return 1
  local prev= accel=
  [[ -r $LAB_DIR/$node/config/bpf-lb-acceleration ]] && read -r accel <"$LAB_DIR/$node/config/bpf-lb-acceleration"
  case $accel in
    native | best-effort) lab_lan_xdp_pass || return 1 ;;
  esac
  for arg in "$@"; do
    case $prev:$arg in
      *:--bpf-lb-acceleration=native | *:--bpf-lb-acceleration=best-effort | \
        --bpf-lb-acceleration:native | --bpf-lb-acceleration:best-effort)
        lab_lan_xdp_pass || return 1 ;;
    esac
    prev=$arg
  done
  local dir=$LAB_DIR/$node
  mkdir -p "$dir/run" "$dir/config" "$dir/cni/net.d" "$dir/cni/bin" || return 1
  if [[ -s $dir/agent.log ]]; then
    mv -f "$dir/agent.log" "$dir/agent.log.prev" || return 1
  fi
  lab_bg "agent-$node" "$dir/agent.log" lab_node_exec "$node" "$bin" \
    --node-name "$node" --devices ens192 \
    --bpf-root "$LAB_DIR/bpffs/$node" --cgroup-root "$LAB_CGROOT/$node" \
    --run-dir "$dir/run" --config-dir "$dir/config" \
    --cni-conf-dir "$dir/cni/net.d" --cni-bin-dir "$dir/cni/bin" "$@" || return 1
  cp "$LAB_DIR/pids/agent-$node.pid" "$dir/agent.pid"
  # The node's CNI bin dir, as a runtime would find it: our plugin and Debian's loopback.
  local cni
  if cni=$(lab__bin cni 2>/dev/null); then ln -sfn "$cni" "$dir/cni/bin/nodepath-cni"; fi
  if [[ -x /usr/lib/cni/loopback ]]; then ln -sfn /usr/lib/cni/loopback "$dir/cni/bin/loopback"; fi
}

# lab_agent_stop <node> [TERM|KILL]: stop the node's agent (KILL simulates a crash: pins and
# attachments stay). Succeeds when it was not running.
lab_agent_stop() {
  lab__vars || return 1
  local node=${1:-} sig=${2:-TERM}
  lab__node_index "$node" >/dev/null || return 1
  lab_kill "agent-$node" "$sig" || return 1
  rm -f "$LAB_DIR/$node/agent.pid"
}

# lab_agent_wait <node> [timeout-s=20]: wait until the agent started by lab_agent_start runs and
# `agentctl status --brief` succeeds on the node; fails at once if the agent is not running, and
# on failure prints the tail of agent.log.
lab_agent_wait() {
  lab__vars || return 1
  local node=${1:-} timeout=${2:-20} t deadline
  lab__node_index "$node" >/dev/null || return 1
  lab__bin agentctl >/dev/null || return 1
  t=${EPOCHREALTIME//[!0-9]/}
  deadline=$((t + timeout * 1000000))
  while :; do
    if ! lab__bg_pid "agent-$node" >/dev/null; then
      lab__log "the agent on $node is not running; tail of $LAB_DIR/$node/agent.log:"
      break
    fi
    if lab_agentctl "$node" status --brief >/dev/null 2>&1; then
      return 0
    fi
    t=${EPOCHREALTIME//[!0-9]/}
    if ((t >= deadline)); then
      lab__log "the agent on $node is not ready after ${timeout}s; tail of $LAB_DIR/$node/agent.log:"
      break
    fi
    sleep "${NP_LAB_POLL_INTERVAL:-0.1}"
  done
  tail -n 40 "$LAB_DIR/$node/agent.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
  return 1
}

# lab_agentctl <node> args...: agentctl on the node, talking to that node's agent.
lab_agentctl() {
  lab__vars || return 1
  local node=${1:-} bin
  lab__node_index "$node" >/dev/null || return 1
  shift
  bin=$(lab__bin agentctl) || return 1
  lab_node_exec "$node" "$bin" --socket "$LAB_DIR/$node/run/agent.sock" "$@"
}

# lab_pod_serve <node> <pod> [extra nptraffic serve args...]: start the pod's echo server
# (`nptraffic serve --id <node>-<pod> --tcp 8080 --udp 8080`, log logs/serve-<node>-<pod>.log)
# and wait for its `serving` line. Succeeds at once if it is already running.
lab_pod_serve() {
  lab__vars || return 1
  (($# >= 2)) || { lab__log "usage: lab_pod_serve <node> <pod> [args...]"; return 2; }
  local node=$1 pod=$2 bin
  shift 2
  local name=serve-$node-$pod
  local log=$LAB_DIR/logs/$name.log
  if lab__bg_pid "$name" >/dev/null; then
    return 0
  fi
  bin=$(lab__bin nptraffic) || return 1
  lab_bg "$name" "$log" lab_pod_exec "$node" "$pod" \
    "$bin" serve --id "$node-$pod" --tcp 8080 --udp 8080 "$@" || return 1
  if ! lab_wait_for_line "$log" 'serving' 10; then
    lab_kill "$name" || true
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# Topology

# lab_netns_create <suffix>: a namespace $P-<suffix> (lo up, IPv6 off) that lab_down deletes.
lab_netns_create() {
  lab__vars || return 1
  local s=${1:-}
  [[ $s =~ ^[a-z0-9][a-z0-9-]*$ ]] || { lab__log "bad namespace suffix '$s'"; return 1; }
  [[ -f $LAB_DIR/.nodepath-lab ]] || { lab__log "lab $LAB_P has no state dir ($LAB_DIR)"; return 1; }
  if ! grep -qxF -- "$s" "$LAB_DIR/netns" 2>/dev/null; then
    echo "$s" >>"$LAB_DIR/netns" || return 1
  fi
  ip netns add "$LAB_P-$s" || return 1
  ip -n "$LAB_P-$s" link set lo up || return 1
  # The datapath is IPv4; without IPv6 the links carry no DAD/RS/MLD noise into captures.
  lab__sysctl "$s" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
}

# lab_is_up: the lab of the current prefix exists (its LAN namespace does).
lab_is_up() {
  lab__vars || return 1
  [[ -e $(lab__netns_path lan) ]]
}

lab__up_body() {
  set -eEuo pipefail
  trap 'lab__log "up: failed (status $?): $BASH_COMMAND"' ERR

  mkdir -p "$LAB_DIR"
  echo "$LAB_P" >"$LAB_DIR/.nodepath-lab"
  mkdir -p "$LAB_DIR/pids" "$LAB_DIR/logs"
  : >"$LAB_DIR/netns"
  {
    echo "NP_LAB_PREFIX=$LAB_P"
    echo "NP_LAB_DIR=$LAB_DIR"
    echo "NP_LAB_CGROUP_ROOT=$LAB_CGROOT"
    echo "NP_BUILD_DIR=$LAB_BUILD"
  } >"$LAB_DIR/lab.env"

  local s
  for s in lan n1 n2 client router inet; do
    lab_netns_create "$s"
  done
  for s in n1 n2 router; do
    lab__sysctl "$s" net.ipv4.ip_forward=1
  done
  # rp_filter is max(all, <dev>): zero both before any interface exists.
  for s in n1 n2; do
    lab__sysctl "$s" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  # The nodes' own ephemeral ports end at 49151 (Linux's default range goes to 60999), so the
  # agent's SNAT ports (disjoint from them) are 49152-65535: 16384 per backend, twice the flows
  # the embryonic conntrack table holds, as a SYN flood must leave ports for real clients.
  for s in n1 n2; do
    lab__sysctl "$s" net.ipv4.ip_local_port_range="32768 49151"
  done

  # LAN: bridge br0, one port per host. On the bridge-side peers: GRO on; TX checksumming off, so
  # that the LAN carries complete checksums as a wire does. A veth otherwise hands its peer the
  # sender's CHECKSUM_PARTIAL skbs, whose L4 checksum field holds only the pseudo-header sum: tc's
  # helpers know that from the skb, but XDP sees bytes, and a segment it rewrites and sends on
  # with XDP_TX would arrive with a wrong sum. (XDP_TX itself needs more: lab_lan_xdp_pass.)
  ip -n "$LAB_P-lan" link add br0 type bridge
  ip -n "$LAB_P-lan" link set br0 up
  local port host ifname
  for port in n1:n1:ens192 n2:n2:ens192 client:client:eth0 router:router:eth0; do
    IFS=: read -r port host ifname <<<"$port"
    lab__veth lan "$port" "$host" "$ifname"
    ip -n "$LAB_P-lan" link set "$port" master br0
    ip -n "$LAB_P-lan" link set "$port" up
    nsenter --net="$(lab__netns_path lan)" -- ethtool -K "$port" gro on tx off >/dev/null
  done

  # Nodes.
  local node m other pod k pip
  for node in "${LAB_NODES[@]}"; do
    m=$(lab__node_index "$node")
    other=$((3 - m))
    lab__sysctl "$node" net.ipv4.conf.ens192.rp_filter=0
    ip -n "$LAB_P-$node" addr add "192.168.10.$((99 + m))/24" dev ens192
    ip -n "$LAB_P-$node" link set ens192 up
    # GRO on, as on a real NIC: tc on ens192 then sees bursts of a flow's segments as one skb
    # longer than the MTU, which the datapath must forward as such (a veth does GRO only when
    # asked, or with an XDP program).
    nsenter --net="$(lab__netns_path "$node")" -- ethtool -K ens192 gro on >/dev/null
    ip -n "$LAB_P-$node" route add default via 192.168.10.1
    ip -n "$LAB_P-$node" link add np_host type veth peer name np_net
    ip -n "$LAB_P-$node" addr add "10.0.$m.1/32" dev np_host
    ip -n "$LAB_P-$node" link set np_host up
    ip -n "$LAB_P-$node" link set np_net up
    ip -n "$LAB_P-$node" route add "10.0.$other.0/24" via "192.168.10.$((99 + other))" dev ens192

    # Pods, by hand until the CNI exists.
    for k in "${!LAB_PODS[@]}"; do
      pod=${LAB_PODS[k]}
      pip=10.0.$m.$((10 + k))
      lab_netns_create "$node-$pod"
      lab__veth "$node" "lxc$pod" "$node-$pod" eth0
      ip -n "$LAB_P-$node" link set "lxc$pod" up
      ip -n "$LAB_P-$node-$pod" addr add "$pip/32" dev eth0
      ip -n "$LAB_P-$node-$pod" link set eth0 up
      ip -n "$LAB_P-$node-$pod" route add "10.0.$m.1" dev eth0 scope link
      ip -n "$LAB_P-$node-$pod" route add default via "10.0.$m.1"
      ip -n "$LAB_P-$node" route add "$pip/32" dev "lxc$pod"
    done
  done

  # Client, router, "internet" host.
  ip -n "$LAB_P-client" addr add 192.168.10.200/24 dev eth0
  ip -n "$LAB_P-client" link set eth0 up
  ip -n "$LAB_P-client" route add default via 192.168.10.1
  ip -n "$LAB_P-router" addr add 192.168.10.1/24 dev eth0
  ip -n "$LAB_P-router" link set eth0 up
  lab__veth router eth1 inet eth0
  ip -n "$LAB_P-router" addr add 203.0.113.1/24 dev eth1
  ip -n "$LAB_P-router" link set eth1 up
  ip -n "$LAB_P-inet" addr add 203.0.113.10/24 dev eth0
  ip -n "$LAB_P-inet" link set eth0 up
  ip -n "$LAB_P-inet" route add default via 203.0.113.1

  # cgroups (no controllers are enabled below np-$P, so processes may sit in a node cgroup
  # and in its pods' cgroups at the same time).
  for node in "${LAB_NODES[@]}"; do
    for pod in "${LAB_PODS[@]}"; do
      mkdir -p "$LAB_CGROOT/$node/pods/$pod"
    done
  done
  for host in "${LAB_HOSTS[@]}"; do
    mkdir -p "$LAB_CGROOT/hosts/$host"
  done
  if [[ -s $LAB_CGROOT/cgroup.subtree_control ]]; then
    lab__log "controllers are enabled in $LAB_CGROOT: $(<"$LAB_CGROOT/cgroup.subtree_control")"
    return 1
  fi

  # One bpffs for the lab; each node gets a directory of it as its bpf root.
  mkdir -p "$LAB_DIR/bpffs"
  mount -t bpf bpf "$LAB_DIR/bpffs"
  for node in "${LAB_NODES[@]}"; do
    mkdir -p "$LAB_DIR/bpffs/$node" "$LAB_DIR/$node/run" "$LAB_DIR/$node/config"
    printf '%s\n' "n1 192.168.10.100 10.0.1.0/24" "n2 192.168.10.101 10.0.2.0/24" \
      >"$LAB_DIR/$node/config/nodes"
  done
}

# lab_up: build the topology, cgroups, bpffs and config files (no agents). Refuses when a lab
# (or leftovers of one) with this prefix exists; on failure it tears down what it made.
lab_up() {
  lab__vars || return 1
  if [[ $(id -u) -ne 0 ]]; then
    lab__log "the lab needs root"
    return 1
  fi
  local s
  for s in "${LAB_FIXED_NETNS[@]}"; do
    if [[ -e $(lab__netns_path "$s") ]]; then
      lab__log "namespace $LAB_P-$s already exists: lab $LAB_P is up (or left over); run lab_down / scripts/lab.sh down first"
      return 1
    fi
  done
  if [[ -e $LAB_DIR || -e $LAB_CGROOT ]]; then
    lab__log "leftovers of lab $LAB_P exist ($LAB_DIR or $LAB_CGROOT); run lab_down / scripts/lab.sh down first"
    return 1
  fi
  # The body relies on errexit, which bash ignores in every function and subshell called from
  # a condition (`if ! lab_up`, `lab_up || ...`): run it in a bash process of its own.
  if ! NP_LAB_PREFIX=$LAB_P NP_LAB_DIR=$LAB_DIR NP_BUILD_DIR=$LAB_BUILD LAB_CG2=$LAB_CG2 \
    bash -c 'source "$1" || exit 1; lab__vars || exit 1; lab__up_body' lab-up "$LAB_REPO/scripts/lib/lab.sh"; then
    lab__log "up failed; tearing down what was made"
    lab_down || true
    return 1
  fi
  lab__log "lab $LAB_P is up (state in $LAB_DIR)"
}

# ---------------------------------------------------------------------------------------------
# Teardown

lab__cg_self_inside() { # the calling shell is in one of our cgroups
  local line
  while IFS= read -r line; do
    if [[ $line == 0::* ]]; then
      line=${line#0::}
      # An explicit status: a bare `return` in a trap handler returns the status the trap
      # interrupted (e.g. exit 0), not this test's.
      [[ $line == "/np-$LAB_P" || $line == "/np-$LAB_P/"* ]] && return 0
      return 1
    fi
  done <"/proc/$BASHPID/cgroup"
  return 1
}

lab__cg_empty() { # nothing runs in our cgroup tree any more
  local line
  [[ -r $LAB_CGROOT/cgroup.events ]] || return 0
  while IFS= read -r line; do
    if [[ $line == "populated 1" ]]; then
      return 1
    fi
  done <"$LAB_CGROOT/cgroup.events"
  return 0
}

lab__cg_rmdir_all() {
  local d ok=0
  while IFS= read -r -d '' d; do
    rmdir "$d" 2>/dev/null || ok=1
  done < <(find "$LAB_CGROOT" -depth -type d -print0 2>/dev/null)
  [[ ! -e $LAB_CGROOT ]] && return 0
  return "$ok"
}

# Mount points at or below the state dir, deepest first.
lab__mounts_below() {
  local mp
  while read -r _ _ _ _ mp _; do
    if [[ $mp == "$LAB_DIR" || $mp == "$LAB_DIR/"* ]]; then
      printf '%d %s\n' "${#mp}" "$mp"
    fi
  done </proc/self/mountinfo | sort -rn | cut -d' ' -f2-
}

# lab_down: remove everything lab_up (and the helpers) made: processes from pid files (TERM,
# then KILL), any process left in our cgroups (cgroup.kill), namespaces, cgroups, the bpffs
# mount, the state dir. Idempotent; works after a partial up.
lab_down() {
  lab__vars || return 1
  # Teardown goes on past individual failures whatever the caller's errexit says.
  local errexit=0 rc
  [[ $- == *e* ]] && errexit=1
  set +e
  lab__down_body
  rc=$?
  ((errexit)) && set -e
  return "$rc"
}

lab__down_body() {
  local rc=0 f name pid s mp

  if [[ -d $LAB_CGROOT ]] && lab__cg_self_inside; then
    lab__log "this shell runs inside lab $LAB_P (cgroup np-$LAB_P): run the teardown from outside the lab"
    return 1
  fi

  # 0. The cluster tier's nodes (kubelet, containers, containerd, v1 cgroups) go first.
  if declare -F cluster_down >/dev/null; then
    cluster_down || rc=1
  fi

  # 1. Background processes we recorded: TERM all, wait, then KILL.
  local -a names=()
  if [[ -d $LAB_DIR/pids ]]; then
    for f in "$LAB_DIR"/pids/*.pid; do
      [[ -e $f ]] || continue
      name=${f##*/}
      name=${name%.pid}
      if pid=$(lab__bg_pid "$name"); then
        kill -s TERM "$pid" 2>/dev/null || true
        names+=("$name")
      fi
    done
    for name in "${names[@]}"; do
      if ! lab_poll 10 lab__not_running "$name"; then
        if pid=$(lab__bg_pid "$name"); then kill -s KILL "$pid" 2>/dev/null; fi
      fi
    done
  fi

  # 2. Whatever is still in our cgroups was started by the lab helpers: kill it.
  if [[ -d $LAB_CGROOT ]]; then
    if [[ -e $LAB_CGROOT/cgroup.kill ]]; then
      echo 1 >"$LAB_CGROOT/cgroup.kill" 2>/dev/null || true
    else
      while IFS= read -r -d '' f; do
        while read -r pid; do kill -s KILL "$pid" 2>/dev/null || true; done <"$f"
      done < <(find "$LAB_CGROOT" -name cgroup.procs -print0)
    fi
    lab_poll 10 lab__cg_empty || { lab__log "processes remain in $LAB_CGROOT"; rc=1; }
  fi

  # 3. Namespaces: the fixed ones and every one registered by lab_netns_create.
  local -a all=("${LAB_FIXED_NETNS[@]}")
  if [[ -r $LAB_DIR/netns ]]; then
    while read -r s; do
      if [[ -n $s ]]; then all+=("$s"); fi
    done <"$LAB_DIR/netns"
  fi
  for s in "${all[@]}"; do
    if [[ -e $(lab__netns_path "$s") ]]; then
      ip netns delete "$LAB_P-$s" || { lab__log "cannot delete namespace $LAB_P-$s"; rc=1; }
    fi
  done

  # 4. cgroups, bottom-up (a killed process may need a moment to leave).
  if [[ -d $LAB_CGROOT ]]; then
    lab_poll 5 lab__cg_rmdir_all || { lab__log "cannot remove $LAB_CGROOT"; rc=1; }
  fi

  # 5. Mounts under the state dir (the bpffs), deepest first.
  while IFS= read -r mp; do
    [[ -n $mp ]] || continue
    umount "$mp" 2>/dev/null || umount -l "$mp" || { lab__log "cannot unmount $mp"; rc=1; }
  done < <(lab__mounts_below)

  # 6. The state dir, only if it is ours and nothing is mounted in it any more.
  if [[ -e $LAB_DIR ]]; then
    if [[ ! -f $LAB_DIR/.nodepath-lab ]]; then
      lab__log "$LAB_DIR has no .nodepath-lab marker: not removing it"
      rc=1
    elif [[ -n $(lab__mounts_below) ]]; then
      lab__log "mounts remain under $LAB_DIR: not removing it"
      rc=1
    else
      rm -rf --one-file-system -- "$LAB_DIR" || rc=1
    fi
  fi
  if [[ ${LAB_DIR%/*} == /run/nodepath-lab ]]; then
    rmdir /run/nodepath-lab 2>/dev/null || true
  fi
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Status

# lab_status: what exists of the lab and which recorded processes run; 0 when the lab is up.
lab_status() {
  lab__vars || return 1
  local state=down s f name pid
  if lab_is_up; then
    state=up
  elif [[ -e $LAB_DIR || -e $LAB_CGROOT ]]; then
    state="down, with leftovers (scripts/lab.sh down removes them)"
  fi
  echo "lab $LAB_P: $state"
  echo "  state dir:   $LAB_DIR$([[ -d $LAB_DIR ]] || echo ' (absent)')"
  echo "  cgroup root: $LAB_CGROOT$([[ -d $LAB_CGROOT ]] || echo ' (absent)')"
  if [[ -n $(lab__mounts_below) ]]; then
    echo "  bpffs:       $LAB_DIR/bpffs (mounted)"
  fi
  local -a all=("${LAB_FIXED_NETNS[@]}") present=()
  if [[ -r $LAB_DIR/netns ]]; then
    while read -r s; do
      if [[ -n $s && " ${all[*]} " != *" $s "* ]]; then all+=("$s"); fi
    done <"$LAB_DIR/netns"
  fi
  for s in "${all[@]}"; do
    if [[ -e $(lab__netns_path "$s") ]]; then present+=("$LAB_P-$s"); fi
  done
  echo "  namespaces:  ${present[*]:-none}"
  if [[ -d $LAB_DIR/pids ]]; then
    echo "  processes:"
    for f in "$LAB_DIR"/pids/*.pid; do
      [[ -e $f ]] || { echo "    none"; break; }
      name=${f##*/}
      name=${name%.pid}
      if pid=$(lab__bg_pid "$name"); then
        printf '    %-20s pid %-8s running\n' "$name" "$pid"
      else
        printf '    %-20s pid %-8s exited\n' "$name" "$(head -n1 "$f" 2>/dev/null)"
      fi
    done
  fi
  [[ $state == up ]]
}
