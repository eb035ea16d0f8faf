#!/usr/bin/env bash
# LabNetwork: smoke test of the lab's network part (no agents): reachability through the LAN
# bridge, the nodes' static pod routes and the router; the run-on-node / run-in-pod helpers;
# background process bookkeeping; and a teardown that leaves nothing behind (also after a failed
# up, and when lab_down runs from an EXIT trap as the e2e tests use it).
# Needs root; uses its own prefix and state dir; tears down in an EXIT trap.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib/lab.sh
source "$repo/scripts/lib/lab.sh"

export NP_LAB_PREFIX=npt$$
export NP_LAB_DIR=/run/nodepath-lab/$NP_LAB_PREFIX
export NP_LAB_NO_AGENT=1
P=$NP_LAB_PREFIX

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  echo "PASS $*"
}
fail() { # <description> [why]: the first line of why on the FAIL line, the rest indented below
  failed=$((failed + 1))
  local why=${2:-}
  echo "FAIL $1${why:+: ${why%%$'\n'*}}"
  if [[ $why == *$'\n'* ]]; then
    printf '%s\n' "${why#*$'\n'}" | tail -n 15 | sed 's/^/    | /'
  fi
}
# check <description> cmd...: one assertion (the command's output is kept for a failure).
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$desc"
  else
    fail "$desc" "${out:-(no output)}"
  fi
}
finish() {
  if ((failed == 0)); then
    echo "PASS LabNetwork ($passed checks)"
    exit 0
  fi
  echo "FAIL LabNetwork: $failed of $((passed + failed)) checks failed"
  exit 1
}

if [[ $(id -u) -ne 0 ]]; then
  echo "FAIL this test needs root (network namespaces, cgroups, bpffs)"
  exit 1
fi
command -v ping >/dev/null || {
  echo "FAIL ping is missing (Debian package iputils-ping)"
  exit 1
}

# lab_down in a bash process of its own: called from the EXIT trap after a successful exit,
# lab_down misjudges "this shell runs inside the lab" (see the last check) and refuses.
down_fresh() { # [prefix]
  local p=${1:-$NP_LAB_PREFIX}
  NP_LAB_PREFIX=$p NP_LAB_DIR=/run/nodepath-lab/$p bash -c 'source "$1" && lab_down' down "$repo/scripts/lib/lab.sh"
}
cleanup() {
  trap '' INT TERM HUP
  down_fresh >/dev/null 2>&1 || echo "FAIL LabNetwork: teardown of lab $NP_LAB_PREFIX failed"
  down_fresh "${P}t" >/dev/null 2>&1 || echo "FAIL LabNetwork: teardown of lab ${P}t failed"
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "FAIL LabNetwork: interrupted"; exit 130' INT
trap 'echo "FAIL LabNetwork: terminated"; exit 143' TERM

root_links() { ip -o link show | awk -F': ' '{ print $2 }' | sort; }
root_state() { root_links; ip -4 route show table all; ip -4 addr show; }
before=$(root_state)

# ping_from <exec-helper args...> <dst>: one echo answered, retrying for up to 5 s (ARP, bridge learning).
ping_from() {
  local dst=${*: -1}
  lab_poll 5 "${@:1:$#-1}" ping -c 1 -W 1 -q "$dst"
}
not() { ! "$@"; }
env_path() { # <dir> cmd...: cmd (a function too) with dir first in PATH
  local PATH=$1:$PATH
  shift
  "$@"
}

netns_inode() { stat -L -c %i "$1"; }
in_cgroup() { # <pid> <cgroup path relative to the cgroup2 mount>
  grep -qxF "0::$2" "/proc/$1/cgroup"
}
in_netns() { # <pid> <netns name>
  [[ $(netns_inode "/proc/$1/ns/net") == "$(netns_inode "/var/run/netns/$2")" ]]
}
pid_gone() { # not running (or a zombie waiting to be reaped)
  local line
  { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
  line=${line##*) }
  [[ ${line%% *} == Z ]]
}
all_gone() {
  local p
  for p in "$@"; do
    if ! pid_gone "$p"; then
      echo "pid $p still runs"
      return 1
    fi
  done
}
mounted_below() { # <dir>: something is mounted at or below dir
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}
nothing_left() {
  local leftovers=() ns
  while read -r ns _; do
    if [[ $ns == "$P-"* ]]; then leftovers+=("netns $ns"); fi
  done < <(ip netns list)
  if [[ -e $LAB_CGROOT ]]; then leftovers+=("cgroup $LAB_CGROOT"); fi
  if mounted_below "$NP_LAB_DIR"; then leftovers+=("a mount under $NP_LAB_DIR"); fi
  if [[ -e $NP_LAB_DIR ]]; then leftovers+=("state dir $NP_LAB_DIR"); fi
  if ((${#leftovers[@]})); then
    printf 'left over: %s\n' "${leftovers[@]}"
    return 1
  fi
}
sysctls_are() { # <netns> <expected values, space separated> <keys...>
  local ns=$1 want=$2 got
  shift 2
  got=$(nsenter --net="/var/run/netns/$ns" -- sysctl -n "$@" | tr '\n' ' ')
  [[ $got == "$want " ]] || { echo "got '$got'"; return 1; }
}

# --- up -----------------------------------------------------------------------------------
if ! lab_up; then
  fail "lab_up"
  finish
fi
lab__vars
pass "lab_up"

# --- reachability ----------------------------------------------------------------------------
check "client pings node 1 (192.168.10.100)" ping_from lab_client_exec 192.168.10.100
check "client pings node 2 (192.168.10.101)" ping_from lab_client_exec 192.168.10.101
check "pod n1-p1 pings its node's router address 10.0.1.1" ping_from lab_pod_exec n1 p1 10.0.1.1
check "pod n1-p1 pings pod n2-p1 (10.0.2.10) across nodes" ping_from lab_pod_exec n1 p1 10.0.2.10
check "pod n2-p2 pings pod n1-p2 (10.0.1.11) across nodes" ping_from lab_pod_exec n2 p2 10.0.1.11
check "pod n1-p1 pings pod n1-p2 (10.0.1.11) on its node" ping_from lab_pod_exec n1 p1 10.0.1.11
check "node 1 pings pod n2-p1 (10.0.2.10) through the static route" ping_from lab_node_exec n1 10.0.2.10
check "router forwards client -> inet host 203.0.113.10" ping_from lab_client_exec 203.0.113.10
check "router forwards node 2 -> inet host 203.0.113.10" ping_from lab_node_exec n2 203.0.113.10
check "node 1 routes 10.0.2.0/24 via node 2 on ens192" \
  grep -q 'via 192.168.10.101 dev ens192' <(ip -n "$P-n1" route show 10.0.2.0/24)
check "nodes have rp_filter 0 and ip_forward 1" \
  sysctls_are "$P-n2" "0 0 0 1" net.ipv4.conf.ens192.rp_filter net.ipv4.conf.all.rp_filter \
  net.ipv4.conf.default.rp_filter net.ipv4.ip_forward
check "GRO is on for the bridge-side peers" \
  grep -qx 'generic-receive-offload: on' <(nsenter --net="/var/run/netns/$P-lan" -- ethtool -k n1)

# --- the rest of up's products -----------------------------------------------------------
check "bpffs mounted at \$NP_LAB_DIR/bpffs" grep -qx bpf_fs <(stat -f -c %T "$NP_LAB_DIR/bpffs")
check "...with a bpf root for each node" test -d "$NP_LAB_DIR/bpffs/n1" -a -d "$NP_LAB_DIR/bpffs/n2"
check "node 1's config has the nodes file" \
  diff <(printf '%s\n' "n1 192.168.10.100 10.0.1.0/24" "n2 192.168.10.101 10.0.2.0/24") "$NP_LAB_DIR/n1/config/nodes"
check "node and pod cgroups exist under the cgroup2 mount" \
  test -d "$LAB_CGROOT/n1/pods/p1" -a -d "$LAB_CGROOT/n2/pods/p2"
check "a second lab_up with the same prefix refuses" not lab_up
check "...and leaves the running lab alone" test -e "/var/run/netns/$P-lan" -a -d "$NP_LAB_DIR/bpffs/n1"
check "the root namespace's links, addresses and routes are unchanged" \
  diff <(printf '%s\n' "$before") <(root_state)

# --- helpers: background processes, cgroups, namespaces ---------------------------------------
log=$NP_LAB_DIR/logs/podsleep.log
lab_bg podsleep "$log" lab_pod_exec n1 p1 sh -c 'echo started; exec sleep 600'
check "lab_wait_for_line sees the pod process's line" lab_wait_for_line "$log" '^started$' 5
podpid=$(<"$NP_LAB_DIR/pids/podsleep.pid")
check "the recorded pid is the command itself" grep -q sleep "/proc/$podpid/cmdline"
check "the pod process runs in the pod's cgroup" in_cgroup "$podpid" "/np-$P/n1/pods/p1"
check "the pod process runs in the pod's netns" in_netns "$podpid" "$P-n1-p1"
lab_bg nodesleep "$NP_LAB_DIR/logs/nodesleep.log" lab_node_exec n2 sleep 600
nodepid=$(<"$NP_LAB_DIR/pids/nodesleep.pid")
# lab_bg returns at once: the process joins its cgroup and netns a moment later.
check "the node process runs in the node's cgroup" lab_poll 5 in_cgroup "$nodepid" "/np-$P/n2"
check "the node process runs in the node's netns" lab_poll 5 in_netns "$nodepid" "$P-n2"
lab_bg killme "$NP_LAB_DIR/logs/killme.log" lab_client_exec sleep 600
killpid=$(<"$NP_LAB_DIR/pids/killme.pid")
check "lab_kill stops a process" lab_kill killme
check "...it is gone" pid_gone "$killpid"
check "...and forgotten" not test -e "$NP_LAB_DIR/pids/killme.pid"
check "lab_bg refuses a second process of the same name" not lab_bg podsleep /dev/null sleep 1
# A process started without lab_bg: lab_down must still find it through the cgroup.
lab_pod_exec n2 p1 sleep 600 &
disown
check "a stray pod process shows up in the pod's cgroup" \
  lab_poll 5 grep -q . "$LAB_CGROOT/n2/pods/p1/cgroup.procs"
straypid=$(head -n1 "$LAB_CGROOT/n2/pods/p1/cgroup.procs")
check "lab_poll gives up at its deadline" not lab_poll 1 false
check "lab_wait_for_line fails on timeout" not lab_wait_for_line "$log" '^never$' 1

# --- down ---------------------------------------------------------------------------------
check "lab_down" lab_down
check "after down no namespace, cgroup, mount or state dir remains" nothing_left
check "after down the lab's processes are dead (also the one without a pid file)" \
  all_gone "$podpid" "$nodepid" "$straypid"
check "the root namespace is still unchanged" diff <(printf '%s\n' "$before") <(root_state)
check "lab_down again succeeds (idempotent)" lab_down

# --- a failed up tears itself down -------------------------------------------------------------
# An ethtool that fails makes lab_up fail half-way, with namespaces, links and the state dir made.
fakebin=$(mktemp -d)
printf '#!/bin/sh\necho "fake ethtool: failing on purpose" >&2\nexit 1\n' >"$fakebin/ethtool"
chmod +x "$fakebin/ethtool"
check "lab_up fails when a step fails half-way" not env_path "$fakebin" lab_up
check "...and leaves nothing behind" nothing_left
rm -rf "$fakebin"

# --- teardown from an EXIT trap --------------------------------------------------------------
# The e2e tests tear their lab down from an EXIT trap; it must work after `exit 0` too (bash runs
# the trap with $? = 0 then, and a bare `return` in a function called by a trap returns that).
trap_down_leaves_nothing() {
  local p=${P}t out rc=0
  out=$(NP_LAB_PREFIX=$p NP_LAB_DIR=/run/nodepath-lab/$p bash -c '
      source "$1"
      trap "lab_down" EXIT
      lab_up || exit 1
      exit 0' trapdown "$repo/scripts/lib/lab.sh" 2>&1) || rc=$?
  local -a left=()
  local ns
  while read -r ns _; do
    if [[ $ns == "$p-"* ]]; then left+=("$ns"); fi
  done < <(ip netns list)
  [[ -e /run/nodepath-lab/$p ]] && left+=("/run/nodepath-lab/$p")
  [[ -e $LAB_CG2/np-$p ]] && left+=("$LAB_CG2/np-$p")
  if ((rc == 0 && ${#left[@]} == 0)); then
    return 0
  fi
  echo "expected a script doing 'trap lab_down EXIT; lab_up; exit 0' to leave nothing behind;"
  echo "it exited $rc and left ${#left[@]} things (e.g. ${left[*]:0:3}); its output:"
  printf '%s\n' "$out"
  down_fresh "$p" >/dev/null 2>&1 || true
  return 1
}
check "lab_down from an EXIT trap after 'exit 0' tears the lab down" trap_down_leaves_nothing

finish
