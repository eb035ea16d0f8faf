#!/usr/bin/env bash
# SecondAgentIsRefused: one agent per node. A second nodepath-agent started on a node whose agent
# runs - with the same run dir, or with its own run dir but the same pinned maps - refuses to
# start, names the running agent's PID, and leaves the first agent, its socket and its maps as
# they were. After the first agent is killed (-9), a new one starts at once: the lock dies with
# its holder.
#
# Lab: agent on n1 with default/web (ClusterIP 10.43.0.20:80 -> 10.0.1.10:8080).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init SecondAgentIsRefused npe_lock
e2e_lab_up n1
require "service default/web on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --backend 10.0.1.10:8080
AGENT=$(lab__bin agent)
first=$(<"$NP_LAB_DIR/n1/agent.pid")
lb_before=$(agentctl_json n1 bpf lb list)

# second <run-dir> <bpf-root>: a second agent on n1 in the foreground; its output and exit status.
second() {
  lab_node_exec n1 timeout 30 "$AGENT" --node-name n1 --devices ens192 --bpf-root "$2" \
    --cgroup-root "$LAB_CGROOT/n1" --run-dir "$1" --config-dir "$NP_LAB_DIR/n1/config"
}
check "a second agent with the same run dir exits 1, naming the running agent (pid $first)" \
  expect_refused 1 "another nodepath-agent \\(pid $first\\) is running on this node" \
  second "$NP_LAB_DIR/n1/run" "$NP_LAB_DIR/bpffs/n1"
mkdir -p "$NP_LAB_DIR/n1/run2"
check "a second agent with its own run dir but the same pinned maps exits 1, naming the pin dir and pid $first" \
  expect_refused 1 "lock $NP_LAB_DIR/bpffs/n1/nodepath: another nodepath-agent \\(pid $first\\)" \
  second "$NP_LAB_DIR/n1/run2" "$NP_LAB_DIR/bpffs/n1"

socket_kept() {
  [[ -S $NP_LAB_DIR/n1/run/agent.sock ]] || { echo "the agent socket is gone"; return 1; }
  [[ ! -e $NP_LAB_DIR/n1/run2/agent.sock ]] || { echo "the refused agent created a socket"; return 1; }
}
check "the first agent's socket is still there (and the refused one made none)" socket_kept
check "the first agent (pid $first) still runs" lab__pid_alive "$first"
check "...and answers: status Ok" expect_status_ok n1
same_maps() {
  local now
  now=$(agentctl_json n1 bpf lb list) || return 1
  [[ $now == "$lb_before" ]] || { echo "the service map changed"; return 1; }
}
check "...and its maps are unchanged" same_maps
require "echo server in n1-p1" e2e_serve n1/p1
traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 5
check "the datapath still serves default/web (5/5)" expect_ok 5

require "kill -9 the first agent" lab_agent_stop n1 KILL
require "a new agent starts in its place" lab_agent_start n1
require "...and becomes ready" lab_agent_wait n1 30
check "...with default/web restored" expect_service n1 default/web '.cluster_ip == "10.43.0.20"'

e2e_finish
