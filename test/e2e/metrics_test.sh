#!/usr/bin/env bash
# MetricsPrometheusAndStatus: the agent's Prometheus endpoint (--prometheus-serve-addr, default
# :9962) as a scraper on the LAN sees it, parsed by the real Prometheus text parser
# (prometheus_client): the families exist with their types; forwarded and dropped packets move
# with NodePort traffic and a counted drop; flows, reconcile durations and services show. Other
# paths are 404, other methods 405. `agentctl status` has the Hubble line with "Metrics: Ok"
# (brief and verbose views, and -o json); with --prometheus-serve-addr="" nothing listens and it
# says "Metrics: Disabled"; a bad address stops the agent at start with a clear error.
#
# Lab: agent on n1; echo server in n1-p1 (10.0.1.10:8080).
#   n1: default/web   TCP NodePort 30080 -> 10.0.1.10:8080
#       default/empty TCP NodePort 30090, no backends (drops: SERVICE_BACKEND_NOT_FOUND)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCRAPE=$E2E_DIR/metrics_scrape.py
PYTHON=/usr/bin/python3  # Debian's, with python3-prometheus-client (scripts/setup.sh)
URL=http://192.168.10.100:9962

e2e_init MetricsPrometheusAndStatus npe_met
e2e_lab_up n1
require "echo server in n1-p1" e2e_serve n1/p1
require "service default/web (TCP NodePort 30080 -> 10.0.1.10:8080)" \
  lab_agentctl n1 service upsert default/web --port 80 --node-port 30080 --backend 10.0.1.10:8080
require "service default/empty (TCP NodePort 30090, no backends)" \
  lab_agentctl n1 service upsert default/empty --port 81 --node-port 30090

SNAP=
# scrape <file>: the endpoint, from the LAN client, as JSON (metrics_scrape.py) into file.
scrape() {
  local err
  if ! err=$(lab_client_exec "$PYTHON" "$SCRAPE" "$URL" 2>&1 >"$1"); then
    echo "scraping $URL/metrics from the client failed: $err"
    return 1
  fi
}
# value <file> <sample name> [jq label condition]: the sum of the matching samples' values.
value() {
  jq -r --arg n "$2" "[.families[].samples[] | select(.name == \$n) | select(${3:-true}) | .value] | add // 0" "$1"
}

expect_parses() {
  SNAP=$E2E_TMP/scrape-1.json
  scrape "$SNAP" || return 1
  local ctype
  ctype=$(jq -r '.content_type' "$SNAP")
  if [[ $ctype != "text/plain; version=0.0.4"* ]]; then
    echo "expected Content-Type text/plain; version=0.0.4, saw '$ctype'"
    return 1
  fi
}
require "GET $URL/metrics from the LAN client answers and parses as Prometheus text (prometheus_client)" \
  expect_parses

expect_families() {
  local want fam type got bad=()
  for want in nodepath_forward_count:counter nodepath_forward_bytes:counter nodepath_drop_count:counter \
    nodepath_drop_bytes:counter nodepath_bpf_map_entries:gauge nodepath_bpf_map_capacity:gauge \
    nodepath_reconcile_duration_seconds:histogram nodepath_reconcile_errors:counter \
    nodepath_hubble_flows_processed:counter nodepath_hubble_lost_events:counter \
    nodepath_endpoint_count:gauge nodepath_services:gauge nodepath_datapath_conntrack_gc_runs:counter \
    nodepath_datapath_conntrack_gc_deleted:counter; do
    fam=${want%:*} type=${want#*:}
    got=$(jq -r --arg f "$fam" '.families[$f].type // "missing"' "$SNAP")
    [[ $got == "$type" ]] || bad+=("$fam: expected $type, saw $got")
  done
  if ((${#bad[@]})); then
    printf '%s\n' "${bad[@]}"
    echo "families seen: $(jq -r '.families | keys | join(" ")' "$SNAP")"
    return 1
  fi
  local other
  other=$(jq -r '.families | keys[] | select(startswith("nodepath_") | not)' "$SNAP")
  if [[ -n $other ]]; then
    echo "expected every family to start with nodepath_, saw: $other"
    return 1
  fi
}
check "...with every family of the design and its type, all prefixed nodepath_" expect_families

expect_live_values() {
  local svc cap ent runs lb
  svc=$(value "$SNAP" nodepath_services)
  cap=$(value "$SNAP" nodepath_bpf_map_capacity '.labels.map == "np_svc4_v1"')
  ent=$(value "$SNAP" nodepath_bpf_map_entries '.labels.map == "np_svc4_v1"')
  runs=$(value "$SNAP" nodepath_datapath_conntrack_gc_runs_total '.labels.status == "completed"')
  lb=$(value "$SNAP" nodepath_reconcile_duration_seconds_count '.labels.reconciler == "lb-apply"')
  if [[ ${svc%.0} == 2 ]] && [[ ${cap%.0} -gt 0 ]] && [[ ${ent%.0} -gt 0 ]] && [[ ${runs%.0} -ge 1 ]] &&
    [[ ${lb%.0} -ge 2 ]]; then
    return 0
  fi
  echo "expected nodepath_services 2, np_svc4_v1 capacity > 0 and entries > 0, >= 1 completed GC run," \
    ">= 2 lb-apply reconciles (the two upserts); saw services=$svc capacity=$cap entries=$ent gc_runs=$runs lb_apply=$lb"
  echo "maps: $(jq -c '[.families.nodepath_bpf_map_entries.samples[].labels.map]' "$SNAP")"
  return 1
}
check "...with live values: 2 services, np_svc4_v1 entries and capacity, a GC run, the upserts' reconcile durations" \
  expect_live_values

expect_inf_bucket() {
  local inf count
  inf=$(value "$SNAP" nodepath_reconcile_duration_seconds_bucket '.labels.reconciler == "lb-apply" and .labels.le == "+Inf"')
  count=$(value "$SNAP" nodepath_reconcile_duration_seconds_count '.labels.reconciler == "lb-apply"')
  if [[ $inf == "$count" && ${count%.0} -gt 0 ]]; then
    return 0
  fi
  echo "expected the le=\"+Inf\" bucket of lb-apply to equal its _count (> 0), saw +Inf=$inf count=$count"
  return 1
}
check "...the reconcile histogram's +Inf bucket equals its count" expect_inf_bucket

# Traffic: 20 connections through the NodePort to n1-p1, 3 attempts at the NodePort without backends.
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
check "client -> 192.168.10.100:30080 (NodePort -> n1-p1): 20/20 connections succeed" expect_ok 20
traffic lab_client_exec -- connect 192.168.10.100:30090 --count 3 --connect-only --timeout-ms 1000
check "client -> 192.168.10.100:30090 (no backends): every attempt is dropped (times out)" \
  expect_all_fail 3 'connect: timed out'

NEXT=$E2E_TMP/scrape-2.json
expect_counters_moved() {
  scrape "$NEXT" || return 1
  local f0 f1 d0 d1 h0 h1 drop='.labels.reason == "Service backend not found" and .labels.direction == "INGRESS"'
  f0=$(value "$SNAP" nodepath_forward_count_total) f1=$(value "$NEXT" nodepath_forward_count_total)
  d0=$(value "$SNAP" nodepath_drop_count_total "$drop") d1=$(value "$NEXT" nodepath_drop_count_total "$drop")
  h0=$(value "$SNAP" nodepath_hubble_flows_processed_total) h1=$(value "$NEXT" nodepath_hubble_flows_processed_total)
  if awk -v f0="$f0" -v f1="$f1" -v d0="$d0" -v d1="$d1" -v h0="$h0" -v h1="$h1" \
    'BEGIN { exit !(f1 - f0 >= 20 && d1 - d0 >= 3 && h1 > h0) }'; then
    return 0
  fi
  echo "expected forwarded packets +>= 20, drops {reason='Service backend not found',direction=INGRESS} +>= 3, flows" \
    "processed to grow; saw forward $f0 -> $f1, drop $d0 -> $d1, flows $h0 -> $h1"
  echo "drop samples now: $(jq -c '[.families.nodepath_drop_count.samples[] | select(.name == "nodepath_drop_count_total")]' "$NEXT")"
  return 1
}
check "a second scrape: forward_count_total grew by >= 20, drop_count_total{reason='Service backend not found',direction=INGRESS} by >= 3, hubble flows processed grew" \
  eventually 10 expect_counters_moved

expect_http() { # <method> <path> <status>
  local out got
  out=$(lab_client_exec "$PYTHON" "$SCRAPE" "$URL" --method "$1" --path "$2" 2>&1) || {
    echo "request failed: $out"
    return 1
  }
  got=$(jq -r '.status' <<<"$out")
  [[ $got == "$3" ]] && return 0
  echo "expected HTTP $3 for $1 $2, saw $got"
  return 1
}
check "GET /other is 404" expect_http GET /other 404
check "POST /metrics is 405" expect_http POST /metrics 405

HUBBLE_OK='^Hubble: +Ok +Current/Max Flows: [0-9]+/4095 \([0-9]+\.[0-9]{2}%\), Flows/s: [0-9]+\.[0-9]{2} +Metrics: Ok$'
expect_default_status_line() { # <regex>: the default (non-verbose) view
  local out
  out=$(lab_agentctl n1 status 2>&1) || true
  sed 's/^ *//' <<<"$out" | grep -Eq -- "$1" && return 0
  echo "expected a line of agentctl status on n1 to match /$1/, saw:"
  printf '%s\n' "$out" | sed 's/^/  /'
  return 1
}
check "agentctl status: 'Hubble: Ok   Current/Max Flows: N/4095 (x%), Flows/s: r   Metrics: Ok'" \
  expect_default_status_line "$HUBBLE_OK"
check "agentctl status --verbose: the same Hubble line" expect_status_line n1 "$HUBBLE_OK"

expect_json() { # <jq condition> <what>
  local out
  out=$(agentctl_json n1 status 2>&1) || true
  jq -e "$1" <<<"$out" >/dev/null 2>&1 && return 0
  echo "expected agentctl -o json status to have $2, saw hubble=$(jq -c '.hubble' <<<"$out" 2>/dev/null) metrics=$(jq -c '.metrics' <<<"$out" 2>/dev/null)"
  return 1
}
check "agentctl -o json status: hubble Ok with max_flows 4095 and flows seen, metrics Ok on :9962 with scrapes counted" \
  expect_json '.hubble.state == "Ok" and (.hubble.max_flows | tonumber) == 4095 and (.hubble.seen_flows | tonumber) > 0
    and .metrics.state == "Ok" and .metrics.address == ":9962" and (.metrics.scrapes | tonumber) >= 2' \
  'hubble {state Ok, max_flows 4095, seen_flows > 0} and metrics {state Ok, address :9962, scrapes >= 2}'

# Metrics off: the agent again with an empty address.
require "agent on n1 stopped" lab_agent_stop n1
require "agent on n1 started with --prometheus-serve-addr=\"\"" lab_agent_start n1 --prometheus-serve-addr=
require "...ready" lab_agent_wait n1 30
expect_not_listening() {
  local err
  if err=$(lab_client_exec "$PYTHON" "$SCRAPE" "$URL" 2>&1 >/dev/null); then
    echo "expected nothing to answer on $URL/metrics, it answered"
    return 1
  fi
  grep -q 'refused' <<<"$err" && return 0
  echo "expected 'connection refused', saw: $err"
  return 1
}
check "nothing listens on :9962 (connection refused)" expect_not_listening
check "agentctl status --verbose: 'Hubble: Ok ... Metrics: Disabled'" \
  expect_status_line n1 '^Hubble: +Ok +Current/Max Flows: .* +Metrics: Disabled$'
check "agentctl -o json status: metrics Disabled" expect_json '.metrics.state == "Disabled"' 'metrics.state Disabled'

# Bad addresses: refused at start, saying which flag and why. The agent is stopped first (one agent
# per node); the malformed one fails while parsing flags (exit 2), the unusable one before the
# datapath is touched (exit 1).
require "agent on n1 stopped" lab_agent_stop n1
AGENT=$(lab__bin agent)
run_agent() {
  lab__vars || return 1
  lab_node_exec n1 "$AGENT" --node-name n1 --devices ens192 --bpf-root "$LAB_DIR/bpffs/n1" \
    --cgroup-root "$LAB_CGROOT/n1" --run-dir "$LAB_DIR/n1/run" --config-dir "$LAB_DIR/n1/config" \
    --cni-conf-dir "$LAB_DIR/n1/cni/net.d" --cni-bin-dir "$LAB_DIR/n1/cni/bin" "$@"
}
check "--prometheus-serve-addr=9962 (no colon): exit 2 naming the flag" \
  expect_refused 2 'prometheus-serve-addr: "9962" is not :port or IPv4:port' run_agent --prometheus-serve-addr=9962
check "--prometheus-serve-addr=192.168.10.250:9962 (not the node's address): exit 1, cannot serve metrics there" \
  expect_refused 1 'serve metrics on 192.168.10.250:9962: Cannot assign requested address' \
  run_agent --prometheus-serve-addr=192.168.10.250:9962

e2e_finish
