#!/usr/bin/env bash
# The nodepath lab (DESIGN.md §7): two nodes, pods, a LAN client, a router and an "internet"
# host, all in network namespaces, with a nodepath agent on each node.
#
#   scripts/lab.sh                 up + demo, then leave the lab running for exploration
#   scripts/lab.sh up              build (unless NP_LAB_NO_BUILD=1), topology, agents (unless NP_LAB_NO_AGENT=1)
#   scripts/lab.sh demo            echo servers, the demo/echo service, traffic, what happened
#   scripts/lab.sh status          is the lab up, its namespaces, its processes
#   scripts/lab.sh exec <n1|n2|n1/p1|client|router|inet|lan> cmd...
#   scripts/lab.sh down            remove everything
#
# Environment: NP_LAB_PREFIX (default nplab), NP_LAB_DIR (default /run/nodepath-lab/$prefix),
# NP_BUILD_DIR (default <repo>/build), NP_LAB_NO_BUILD=1, NP_LAB_NO_AGENT=1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib/lab.sh
source "$here/lib/lab.sh"

die() {
  printf 'lab: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

build() {
  if [[ ${NP_LAB_NO_BUILD:-0} == 1 ]]; then
    echo "lab: NP_LAB_NO_BUILD=1: not building"
    return 0
  fi
  "$LAB_REPO/scripts/setup.sh"
  if [[ ! -f $LAB_BUILD/CMakeCache.txt ]]; then
    cmake -S "$LAB_REPO" -B "$LAB_BUILD" -G Ninja
  fi
  cmake --build "$LAB_BUILD"
}

start_agents() {
  local node
  for node in "${LAB_NODES[@]}"; do
    lab_agent_start "$node" || return 1
  done
  for node in "${LAB_NODES[@]}"; do
    lab_agent_wait "$node" || return 1
    echo "lab: agent on $node is ready (pid $(<"$LAB_DIR/$node/agent.pid"), log $LAB_DIR/$node/agent.log)"
  done
}

cmd_up() {
  lab__vars || exit 1
  [[ $(id -u) -eq 0 ]] || die "the lab needs root"
  if lab_is_up; then
    die "lab $LAB_P is already up (scripts/lab.sh status; scripts/lab.sh down)"
  fi
  build
  local agent=1
  if [[ ${NP_LAB_NO_AGENT:-0} == 1 ]]; then
    agent=0
    echo "lab: NP_LAB_NO_AGENT=1: network only, no agents"
  else
    # Check before making anything, so that a missing binary leaves nothing behind.
    lab__bin agent >/dev/null || die "no agent binary: cannot start the lab's agents (NP_LAB_NO_AGENT=1 brings up the network alone)"
    lab__bin agentctl >/dev/null || die "no agentctl binary"
  fi
  trap 'echo "lab: interrupted; tearing down" >&2; lab_down; exit 130' INT TERM
  lab_up || die "up failed"
  if ((agent)) && ! start_agents; then
    echo "lab: the agents did not start; tearing down" >&2
    lab_down || true
    exit 1
  fi
  trap - INT TERM
}

# "<source IP> x<count>, ..." of the SYNs in a tcpdump -nn -q log, or "none".
syn_sources() {
  awk '$2 == "IP" { n = split($3, a, "."); if (n == 5) c[a[1] "." a[2] "." a[3] "." a[4]]++ }
       END { s = ""; for (ip in c) s = s (s == "" ? "" : ", ") ip " x" c[ip]; print (s == "" ? "none" : s) }' "$1"
}

# run_traffic <title> <target> <exec-helper args...>: 20 TCP connections to target from where the
# helper runs, with a capture of the SYNs that reach each backend pod.
run_traffic() {
  local title=$1 target=$2
  shift 2
  local nptraffic out pod
  nptraffic=$(lab__bin nptraffic) || return 1
  out=$LAB_DIR/logs/demo-$(date +%s%N).out
  echo
  echo "== $title"
  for pod in n1/p1 n2/p1; do
    lab_bg "cap-${pod/\//-}" "$LAB_DIR/logs/cap-${pod/\//-}.log" lab_pod_exec "${pod%/*}" "${pod#*/}" \
      tcpdump -i eth0 -nn -q -l --immediate-mode 'tcp dst port 8080 and tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0' ||
      return 1
  done
  for pod in n1/p1 n2/p1; do
    lab_wait_for_line "$LAB_DIR/logs/cap-${pod/\//-}.log" 'listening on' 10 || return 1
  done
  local rc=0
  "$@" "$nptraffic" connect "$target" --count 20 >"$out" 2>&1 || rc=$?
  for pod in n1/p1 n2/p1; do
    lab_kill "cap-${pod/\//-}" INT || true
  done
  sed 's/^/   /' "$out"
  ((rc == 0)) || echo "   (nptraffic exited with status $rc)"
  if grep -Eq '(^| )fail=[1-9]' "$out" || ! grep -Eq '(^| )ok=[1-9]' "$out"; then
    rc=1
  fi
  echo "   source addresses the backends saw (SYNs captured on each pod's eth0):"
  local ip
  for pod in n1/p1 n2/p1; do
    case $pod in n1/p1) ip=10.0.1.10 ;; n2/p1) ip=10.0.2.10 ;; esac
    printf '     %s (%s): %s\n' "${pod/\//-}" "$ip" "$(syn_sources "$LAB_DIR/logs/cap-${pod/\//-}.log")"
  done
  return "$rc"
}

cmd_demo() {
  lab__vars || exit 1
  lab_is_up || die "lab $LAB_P is not up (scripts/lab.sh up)"
  lab__bin nptraffic >/dev/null || die "no nptraffic binary"
  lab__bin agentctl >/dev/null || die "no agentctl binary"
  local node
  for node in "${LAB_NODES[@]}"; do
    lab__bg_pid "agent-$node" >/dev/null || die "no agent runs on $node (scripts/lab.sh status)"
  done

  echo "== echo servers: n1-p1 (10.0.1.10:8080) and n2-p1 (10.0.2.10:8080)"
  lab_pod_serve n1 p1 || return 1
  lab_pod_serve n2 p1 || return 1
  echo "== service demo/echo: ClusterIP 10.43.0.20:80, NodePort 30080 -> 10.0.1.10:8080, 10.0.2.10:8080 (on both nodes)"
  for node in "${LAB_NODES[@]}"; do
    lab_agentctl "$node" service upsert demo/echo --protocol tcp --port 80 --cluster-ip 10.43.0.20 \
      --node-port 30080 --backend 10.0.1.10:8080 --backend 10.0.2.10:8080 || return 1
  done

  local rc=0
  run_traffic "client 192.168.10.200 -> NodePort 192.168.10.100:30080, 20 connections" \
    192.168.10.100:30080 lab_client_exec || rc=1
  echo "   (a backend on node 2 sees node 1's 192.168.10.100 when node 1 SNATs, the client's"
  echo "    192.168.10.200 in DSR mode; the local backend on node 1 sees the client)"
  run_traffic "a process on node 1 -> ClusterIP 10.43.0.20:80, 20 connections (socket LB)" \
    10.43.0.20:80 lab_node_exec n1 || rc=1
  echo "   (socket LB rewrites connect() to a backend's address: no NAT on the wire, both"
  echo "    backends see node 1's own source address)"

  echo
  echo "== node 1: agentctl status"
  lab_agentctl n1 status || rc=1
  echo
  echo "== node 1: agentctl service list"
  lab_agentctl n1 service list || rc=1
  echo
  echo "== node 1: agentctl bpf lb list"
  lab_agentctl n1 bpf lb list || rc=1
  return "$rc"
}

cmd_exec() {
  lab__vars || exit 1
  (($# >= 2)) || die "usage: scripts/lab.sh exec <n1|n2|n1/p1|client|router|inet|lan> cmd..."
  local target=$1
  shift
  # The lab's binaries by name; agentctl talks to that node's agent.
  PATH=$LAB_BUILD/cli/agentctl:$LAB_BUILD/agent:$LAB_BUILD/test/tools:$PATH
  export PATH
  case $target in
    n1 | n2)
      if [[ $1 == agentctl ]]; then
        shift
        lab_agentctl "$target" "$@"
      else
        lab_node_exec "$target" "$@"
      fi
      ;;
    n[12]/*) lab_pod_exec "${target%%/*}" "${target#*/}" "$@" ;;
    client | router | inet | lan) lab_host_exec "$target" "$@" ;;
    *) die "unknown target '$target' (n1, n2, n1/p1, client, router, inet, lan)" ;;
  esac
}

explore_hints() {
  local pfx=""
  [[ -n ${NP_LAB_PREFIX:-} ]] && pfx="NP_LAB_PREFIX=$NP_LAB_PREFIX "
  cat <<EOF

The lab $LAB_P is left running. Explore it with:
  ${pfx}scripts/lab.sh status
  ${pfx}scripts/lab.sh exec n1 agentctl status --verbose
  ${pfx}scripts/lab.sh exec n1 agentctl service list
  ${pfx}scripts/lab.sh exec n1 agentctl bpf lb list
  ${pfx}scripts/lab.sh exec client nptraffic connect 192.168.10.100:30080 --count 20
  ${pfx}scripts/lab.sh exec n1/p2 nptraffic connect 10.43.0.20:80 --count 5
  ${pfx}scripts/lab.sh exec n1 bash          (a shell on node 1: its cgroup and netns)
Logs: $LAB_DIR/n1/agent.log, $LAB_DIR/n2/agent.log, $LAB_DIR/logs/
Tear it down with:
  ${pfx}scripts/lab.sh down
EOF
}

main() {
  local cmd=${1:-all}
  (($# == 0)) || shift
  case $cmd in
    up) cmd_up ;;
    down) lab_down ;;
    status) lab_status ;;
    demo) cmd_demo ;;
    exec) cmd_exec "$@" ;;
    all)
      cmd_up
      if [[ ${NP_LAB_NO_AGENT:-0} == 1 ]]; then
        echo "lab: NP_LAB_NO_AGENT=1: no demo"
      elif ! cmd_demo; then
        echo "lab: the demo did not go through; the lab stays up for a look" >&2
        explore_hints
        exit 1
      fi
      explore_hints
      ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
