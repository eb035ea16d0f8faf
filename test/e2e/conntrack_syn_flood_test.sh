#!/usr/bin/env bash
# ConntrackSynFloodKeepsEstablished: a spoofed SYN flood (10,000 SYN/s from 198.51.100.0/24,
# random source ports, for 26 s) at a NodePort whose backend is on the other node (SNAT path)
# must not cost an idle established connection, nor more than 1 % of the real connections made
# during it; status says Degraded, naming the embryonic table, while the flood overflows it, and
# Ok again by itself afterwards.
#
# Node 1's main conntrack table is small (65,536 entries), so that without the embryonic table
# the flood both churns it (the idle connections' entries are pushed out) and holds every SNAT
# port of the backend (32,768 flows of 2 entries), the two ways the issue's flood hurt.
#
# Lab: agents on n1 (small main conntrack, GC every 2 s) and n2; echo server in n2-p1.
#   n1: default/web TCP NodePort 30080 -> 10.0.2.10:8080 (remote: SNAT'd to 192.168.10.100)
#
# E2E_FLOOD_RATE / E2E_FLOOD_SECONDS change the flood; E2E_CT_FLOOD_AGENT_FLAGS replaces node 1's
# extra agent flags (to run this test against an agent that predates them).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rate=${E2E_FLOOD_RATE:-10000}
seconds=${E2E_FLOOD_SECONDS:-26}
read -r -a n1_flags <<<"${E2E_CT_FLOOD_AGENT_FLAGS:---bpf-ct-global-max 65536 --conntrack-gc-interval 2s}"
# Real connections: 160 in 4 streams of 40, each one every 50 ms (2 s), while the flood runs for
# 26 s: up to 3 s to notice that the flood arrived, and ~20 s of room for the attempts whose SYN or
# SYN-ACK is lost to wait for their SYN retransmissions. A stream makes its attempts one after the
# other, so each slow one delays all after it: in one stream, on a slow day, 12-18 of 160 waited
# (1-4 s each), up to ~24 s in all, past the end of the flood. A real handshake whose unconfirmed entries the flood evicts
# between its SYN and its SYN-ACK or ACK loses that packet: the client's retransmitted SYN opens
# the flow again. A client here gives up after 4 s, i.e. after two retransmissions (at 1 s and
# 3 s), as a real client would not (Linux retries a SYN 6 times): measured with 2 s (one
# retransmission) 1-4 of 160 attempts failed (about 1 %, which made a 98 % threshold fail one run
# in ten); with 4 s, 0 of 480.
interval_ms=50
streams=4
legit=$((${E2E_FLOOD_CONNECTIONS:-160} / streams * streams))
frontend=192.168.10.100:30080

e2e_init ConntrackSynFloodKeepsEstablished npe_ctf
e2e_lab_up
require "agent on n1 started (${n1_flags[*]})" lab_agent_start n1 "${n1_flags[@]}"
require "agent on n2 started" lab_agent_start n2
require "agent on n1 ready" lab_agent_wait n1 30
require "agent on n2 ready" lab_agent_wait n2 30
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/web (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/web --port 80 --node-port 30080 --backend 10.0.2.10:8080

traffic lab_client_exec -- connect "$frontend" --count 5
require "before the flood: 5/5 connections to $frontend" expect_ok 5
for i in $(seq 1 10); do
  require "client holds connection h$i to $frontend" hold_start "h$i" lab_client_exec -- "$frontend"
  check "held connection h$i carries data before the flood" expect_hold_echo "h$i" "h$i-before" n2-p1 192.168.10.100
done
# The GC has run (status shows the tables) and found nothing wrong.
gc_ran() {
  local out
  out=$(agentctl_json n1 status) || [[ -n $out ]] || { echo "agentctl status on n1 gave no answer"; return 1; }
  jq -e '.conntrack_gc.runs >= 1 and (.conntrack_tables | length) == 2' <<<"$out" >/dev/null || {
    echo "expected the conntrack GC to have run, saw $(jq -c '.conntrack_gc' <<<"$out")"
    return 1
  }
}
check "before the flood: the conntrack GC reports both tables" eventually 10 gc_ran
check "before the flood: agentctl status on n1 is Ok" expect_status_ok n1

# ---------------------------------------------------------------------------------------------
# The flood, and real connections while it runs

# Seconds since the flood started (the timeline printed after it, to tell a slow start from slow
# connections when the real connections outlast the flood).
e2e_now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
since_flood() { local t=$1; printf '%d.%01d' $(((t - t_flood) / 1000000)) $((((t - t_flood) / 100000) % 10)); }
t_flood=$(e2e_now_us)
require "flood: $rate SYN/s for ${seconds}s from 198.51.100.0/24 to $frontend" \
  lab_bg flood "$NP_LAB_DIR/logs/flood.log" lab_client_exec "$NPTRAFFIC" synflood "$frontend" \
  --source 198.51.100.0/24 --rate "$rate" --duration "$seconds"

# The flood has reached node 1 once its unconfirmed flows fill the embryonic table (or, on an
# agent without one, the main table grows past what the held connections use).
flood_arrived() {
  local out
  # agentctl status exits 1 while the agent is Degraded, which the flood may already have made it.
  out=$(agentctl_json n1 status) || [[ -n $out ]] || { echo "agentctl status on n1 gave no answer"; return 1; }
  jq -e '([.conntrack_tables[]? | select(.kind == "embryonic") | .entries] | max // 0) > 1000
         or ([.maps[]? | select(.name == "np_ct4_v1") | .entries] | max // 0) > 1000' <<<"$out" >/dev/null || {
    echo "the flood has not reached n1's conntrack yet: $(jq -c '[.conntrack_tables[]? | {name, entries}], [.maps[]? | select(.name | startswith("np_ct")) | {name, entries}]' <<<"$out")"
    return 1
  }
}
require "the flood reaches node 1's conntrack" eventually 10 flood_arrived
t_arrived=$(e2e_now_us)

for ((s = 1; s <= streams; s++)); do
  require "real connections during the flood, stream $s: $((legit / streams)), one every ${interval_ms} ms" \
    lab_bg "legit$s" "$NP_LAB_DIR/logs/legit$s.log" lab_client_exec "$NPTRAFFIC" connect "$frontend" \
    --count $((legit / streams)) --interval-ms "$interval_ms" --timeout-ms 4000 --report-slow-ms 500
done

degraded_msg=
degraded_embryonic() {
  local out state msg
  out=$(agentctl_json n1 status 2>/dev/null) || true
  state=$(jq -r '.state // empty' <<<"$out" 2>/dev/null)
  msg=$(jq -r '.message // empty' <<<"$out" 2>/dev/null)
  if [[ $state == Degraded && $msg =~ embryonic\ conntrack\ table\ full:\ [0-9]+\ entries\ of\ unconfirmed\ flows\ evicted\ in\ the\ last\ [0-9]+s\ \(SYN\ flood\?\) ]]; then
    degraded_msg=$msg
    return 0
  fi
  echo "expected status Degraded with 'embryonic conntrack table full: N entries of unconfirmed flows evicted in the last Ns (SYN flood?)', saw '${state:-?}': ${msg:-(no message)}"
  return 1
}
check "during the flood: status on n1 is Degraded, naming the embryonic table" eventually 10 degraded_embryonic
[[ -n $degraded_msg ]] && echo "  n1 said: $degraded_msg"

bg_done() { ! lab__bg_pid "$1" >/dev/null; }
legit_done() { local s; for ((s = 1; s <= streams; s++)); do bg_done "legit$s" || return 1; done; }
require "the real connections finish" lab_poll $((seconds + 60)) legit_done
cat "$NP_LAB_DIR"/logs/legit[0-9]*.log >"$NP_LAB_DIR/logs/legit.log"
t_legit_done=$(e2e_now_us)
flood_running_after_legit=0
lab__bg_pid flood >/dev/null && flood_running_after_legit=1
require "the flood finishes" lab_poll $((seconds + 30)) bg_done flood
t_flood_done=$(e2e_now_us)
echo "  timeline (s after the flood started): reached n1's conntrack $(since_flood "$t_arrived")," \
  "real connections done $(since_flood "$t_legit_done"), flood done $(since_flood "$t_flood_done")"
slow=$(grep -cE '^slow [0-9]+:' "$NP_LAB_DIR/logs/legit.log" || true)
echo "  real connections that took >= 500 ms: $slow$( ((slow)) && grep -E '^slow [0-9]+:' "$NP_LAB_DIR/logs/legit.log" | head -n 10 | awk '{printf " [%s %s %s]", $2, $3, $4}')"

flood_line=$(grep -m1 '^synflood ' "$NP_LAB_DIR/logs/flood.log" || true)
echo "  flood: ${flood_line:-(no summary; log: $(tail -n 3 "$NP_LAB_DIR/logs/flood.log"))}"
# The flood must be big enough to matter: at 80 % of its rate it still sends 3.2x the main table's
# 65,536 entries in 26 s (the Degraded check above proves the embryonic table overflowed). 90 %
# was too strict for a generator sharing 2 loaded cores with the build (it reached 85 % there).
flood_rate_held() {
  local sent r
  sent=$(sed -n 's/.* sent=\([0-9]*\) .*/\1/p' <<<"$flood_line")
  r=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$flood_line")
  if [[ -n $sent && -n $r ]] && ((r * 10 >= rate * 8 && sent * 10 >= rate * seconds * 8)); then
    return 0
  fi
  echo "expected at least 80% of $rate SYN/s for ${seconds}s to go out, saw: ${flood_line:-nothing}"
  return 1
}
check "the flood went out at >= 80% of $rate SYN/s" flood_rate_held

# One summary line per stream, summed.
legit_line=$(grep -E '^ok=[0-9]+ fail=[0-9]+$' "$NP_LAB_DIR/logs/legit.log" | tr '\n' ' ' || true)
legit_ok='' legit_fail=''
if (($(grep -cE '^ok=[0-9]+ fail=[0-9]+$' "$NP_LAB_DIR/logs/legit.log" || true) == streams)); then
  legit_ok=$(($(grep -E '^ok=' "$NP_LAB_DIR/logs/legit.log" | sed 's/^ok=\([0-9]*\) .*/\1/' | paste -sd+)))
  legit_fail=$(($(grep -E '^ok=' "$NP_LAB_DIR/logs/legit.log" | sed 's/.* fail=\([0-9]*\)$/\1/' | paste -sd+)))
fi
echo "  real connections during the flood: ${legit_ok:-?} ok, ${legit_fail:-?} failed of $legit"
legit_ok_enough() {
  if [[ -z $legit_ok || -z $legit_fail ]] || ((legit_ok + legit_fail != legit)); then
    echo "no complete summary from the real connections: ${legit_line:-none}; log tail:"
    tail -n 5 "$NP_LAB_DIR/logs/legit.log"
    return 1
  fi
  # Measured: none lost with two SYN retransmissions (see the top of this file). 98 % keeps a few
  # losses in hand on a busy machine; a datapath that lets the flood evict real flows loses far more.
  if ((legit_ok * 100 >= legit * 98)); then
    return 0
  fi
  echo "expected >= 98% of $legit connections to succeed, $legit_ok did ($legit_fail failed); the first errors:"
  grep -E '^attempt ' "$NP_LAB_DIR/logs/legit.log" | head -n 5
  return 1
}
check ">= 98% of the real connections during the flood succeeded" legit_ok_enough
all_during_flood() {
  ((flood_running_after_legit)) && return 0
  echo "the flood had already ended when the real connections were done: some ran after it"
  return 1
}
check "...all of them while the flood was running" all_during_flood

# ---------------------------------------------------------------------------------------------
# After the flood

held_ok=0
for i in $(seq 1 10); do
  if hold_send "h$i" "h$i-after" >/dev/null 2>&1; then held_ok=$((held_ok + 1)); fi
done
echo "  held connections that still carry data after the flood: $held_ok/10"
same_connection() {
  local name=$1 log=${E2E_HOLD_LOG[$1]} ports
  ports=$(grep -E '^n2-p1 ' "$log" | awk '{ print $2 }' | sort -u)
  if [[ $(grep -c -E " $name-(before|after)\$" "$log") -eq 2 && $(wc -l <<<"$ports") -eq 1 ]] &&
    ! grep -q '^error' "$log"; then
    return 0
  fi
  echo "expected 'connected' and both echoes on one connection (one client address:port), saw:"
  cat "$log"
  return 1
}
for i in $(seq 1 10); do
  check "held connection h$i still carries data on the same TCP connection" same_connection "h$i"
done

check "after the flood: agentctl status on n1 returns to Ok by itself" eventually 60 expect_status_ok n1
traffic lab_client_exec -- connect "$frontend" --count 20
check "after the flood: 20/20 new connections" expect_ok 20

echo "  n1's conntrack after the flood:"
lab_agentctl n1 status --verbose 2>&1 | sed -n '/^Conntrack (/,/GC:/p' | sed 's/^/    /' || true
e2e_finish
