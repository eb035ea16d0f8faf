#!/usr/bin/env bash
# StateFileLossKeepsDatapath: a missing or unreadable state file never empties the datapath. The
# agent starts anyway (no crash loop), keeps the pinned service entries serving held and new
# connections, says Degraded with the reason, refuses changes, and `agentctl state` gets it out:
# accept (from the last-good copy), reload (after a fix by hand), reset (start empty).
#
# Lab: agents on n1 and n2; echo server in n2-p1.
#   n1: default/web TCP ClusterIP 10.43.0.20:80, NodePort 30080 -> 10.0.2.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init StateFileLossKeepsDatapath npe_state
e2e_lab_up n1 n2
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (ClusterIP 10.43.0.20:80, NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --node-port 30080 \
  --backend 10.0.2.10:8080
require "client holds a connection to NodePort 192.168.10.100:30080" \
  hold_start np lab_client_exec -- 192.168.10.100:30080
STATE=$NP_LAB_DIR/n1/run/state
lb_before=$(agentctl_json n1 bpf lb list)

answers() { # the agent runs and answers status (Ok or not)
  local out
  out=$(agentctl_json n1 status 2>/dev/null) || true
  [[ -n $out ]] && jq -e '.state | type == "string"' <<<"$out" >/dev/null 2>&1
}
# restart_after <cmd...>: kill -9 node 1's agent, run cmd on its files, start it, wait until it answers.
restart_after() {
  lab_agent_stop n1 KILL || return 1
  "$@" || return 1
  lab_agent_start n1 || return 1
  lab_poll 30 answers || { echo "the agent does not answer"; tail -n 20 "$NP_LAB_DIR/n1/agent.log"; return 1; }
}
expect_degraded() { # <regex>: status exits 1, Degraded, with a message matching regex
  local out rc=0
  out=$(agentctl_json n1 status 2>&1) || rc=$?
  if ((rc == 1)) && jq -e --arg re "$1" '.state == "Degraded" and (.message | test($re))' <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected status to exit 1, Degraded, with a message matching /$1/; saw exit $rc: $(jq -c '{state, message}' <<<"$out" 2>/dev/null || echo "$out")"
  return 1
}
same_maps() {
  local now
  now=$(agentctl_json n1 bpf lb list) || { echo "bpf lb list failed"; return 1; }
  [[ $now == "$lb_before" ]] && return 0
  echo "the kernel's service map changed:"
  diff <(printf '%s\n' "$lb_before") <(printf '%s\n' "$now") | head -n 20
  return 1
}
serving() { # <tag>: the held connection and 5 new NodePort connections work
  expect_hold_echo np "$1" n2-p1 192.168.10.100 || return 1
  traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5
  expect_ok 5
}
new_ok() { # 5 new NodePort connections work
  traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5
  expect_ok 5
}
still_up() {
  local pid
  pid=$(<"$NP_LAB_DIR/n1/agent.pid")
  lab__pid_alive "$pid" || { echo "the agent exited: $(tail -n 5 "$NP_LAB_DIR/n1/agent.log")"; return 1; }
}

# --- 1. services.json is gone (the journal and the last-good copy are not)
require "kill -9 node 1's agent, remove state/services.json, start it" \
  restart_after rm -f "$STATE/services.json"
check "the agent keeps running (no crash loop)" still_up
check "status: Degraded, the state file is missing while the maps hold 3 frontends" \
  expect_degraded 'stored services missing: .*services.json is missing while the pinned maps hold 3 frontends'
check "the kernel's service map is unchanged (nothing pruned)" same_maps
check "the held NodePort connection and new ones work" serving missing
check "a change is refused, pointing at agentctl state" \
  expect_refused 1 'changes are refused until it is resolved: see agentctl state show' \
  lab_agentctl n1 service upsert default/other --port 80 --cluster-ip 10.43.0.21
check "agentctl state show exits 1 and says Missing" \
  expect_refused 1 'State: +Missing' lab_agentctl n1 state show
check "agentctl state accept restores default/web from the last-good copy and the journal" \
  expect_refused 0 'accepted 1 service from services.json.last-good with the journal' lab_agentctl n1 state accept
check "status is Ok again" expect_status_ok n1
check "default/web is back in the model" expect_service n1 default/web '.node_port == 30080'
check "the kernel's service map is still what it was (same entries, same IDs)" same_maps
check "the held connection still works" serving accepted

# --- 2. services.json has a wrong-typed field; fixed by hand, then reloaded
corrupt_port() { sed -i 's/"port":80,/"port":"80",/' "$STATE/services.json" && grep -q '"port":"80"' "$STATE/services.json"; }
require "kill -9 the agent, make services.json say \"port\":\"80\", start it" restart_after corrupt_port
check "the agent keeps running" still_up
check "status: Degraded, naming the file, the service and the field" \
  expect_degraded 'stored services unreadable: services.json: entry 1: service default/web: field "port" must be an integer \(is a string\)'
check "the kernel's service map is unchanged" same_maps
check "the held connection and new ones work" serving corrupt
fix_port() { sed -i 's/"port":"80",/"port":80,/' "$STATE/services.json"; }
require "fix the file by hand" fix_port
check "agentctl state reload loads it" expect_refused 0 'reloaded 1 services' lab_agentctl n1 state reload
check "status is Ok again" expect_status_ok n1
check "the kernel's service map is unchanged" same_maps

# --- 3. services.json unreadable again: accept moves it aside and takes the last-good copy
require "kill -9 the agent, make services.json unreadable, start it" restart_after corrupt_port
check "agentctl state accept takes the last-good copy" \
  expect_refused 0 'accepted 1 service from services.json.last-good' lab_agentctl n1 state accept
broken_kept() {
  compgen -G "$STATE/services.json.broken-*" >/dev/null || { echo "no services.json.broken-* in $STATE: $(ls "$STATE")"; return 1; }
}
check "the unreadable file is kept aside as services.json.broken-<time>" broken_kept
check "status is Ok, the maps unchanged" expect_status_ok n1
check "...and the map entries are the same" same_maps

# --- 4. nothing loads: reset starts empty and removes the entries
garbage() { echo '{"version":' >"$STATE/services.json" && echo 'not json' >"$STATE/services.json.last-good"; }
require "kill -9 the agent, make both copies unreadable, start it" restart_after garbage
check "agentctl state accept says nothing loads and points at reset" \
  expect_refused 1 'nothing loads .*agentctl state reset starts empty' lab_agentctl n1 state accept
check "the datapath still serves meanwhile" serving nothing
check "agentctl state reset starts empty" expect_refused 0 'started with no stored services' lab_agentctl n1 state reset
check "status is Ok" expect_status_ok n1
check "the service map is empty" expect_frontends n1
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 3 --timeout-ms 1000
check "NodePort 30080 no longer answers (3/3 refused)" expect_all_fail 3 'refused|timed out'

# --- 5. a reboot: the maps are gone and services.json too, but the journal is not
require "service default/web again" \
  lab_agentctl n1 service upsert default/web --port 80 --cluster-ip 10.43.0.20 --node-port 30080 --backend 10.0.2.10:8080
reboot() { rm -rf "$NP_LAB_DIR/bpffs/n1/nodepath" && rm -f "$STATE/services.json"; }
require "kill -9 the agent, remove its pins and services.json (the journal stays), start it" restart_after reboot
check "status: Degraded, the state is missing (not a new node: the journal is there)" \
  expect_degraded 'stored services missing: .*services.json is missing while its journal or last-good copy is still there'
journal_kept() { [[ -s $STATE/services.journal ]] || { echo "the journal was emptied"; return 1; }; }
check "...and the journal was left alone" journal_kept
check "agentctl state show says what accept would do" \
  expect_refused 1 'state accept would take services.json.last-good with the journal: 1 service, 0 dropped' \
  lab_agentctl n1 state show
check "agentctl state accept brings default/web back" expect_refused 0 'accepted 1 service' lab_agentctl n1 state accept
check "...and it serves again (the held connection died with the maps: a reboot)" new_ok

# --- 6. the settings changed: a stored service no longer validates; the others keep serving
require "a second service default/other (ClusterIP 10.43.200.1)" \
  lab_agentctl n1 service upsert default/other --port 80 --cluster-ip 10.43.200.1 --backend 10.0.2.10:8080
narrow() { echo 10.43.0.0/24 >"$NP_LAB_DIR/n1/config/service-cidr"; }
require "kill -9 the agent, narrow its --service-cidr to 10.43.0.0/24, start it" restart_after narrow
check "status: Degraded, naming the service that does not validate" \
  expect_degraded '1 stored service does not validate .*default/other.*outside the service CIDR 10\.43\.0\.0/24.*the other 1 are applied'
check "the service that still validates serves" new_ok
check "agentctl state accept drops the one that does not validate" \
  expect_refused 0 'accepted 1 service .*dropped 1' lab_agentctl n1 state accept
check "status is Ok" expect_status_ok n1
check "...with default/other gone from the model" expect_no_service n1 default/other

e2e_finish
