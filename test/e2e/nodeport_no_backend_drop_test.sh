#!/usr/bin/env bash
# NodePortNoBackendCountsDrop: a NodePort service without backends drops the client's packets in
# tc ingress (the connection attempts time out: no RST from the node's stack) and the drop is
# counted: `agentctl status -o json` shows reason 158 (SERVICE_BACKEND_NOT_FOUND), direction
# ingress, with at least one packet per attempt.
#
# Lab: agent on n1.
#   n1: default/empty TCP NodePort 30090, no backends
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init NodePortNoBackendCountsDrop npe_nbd
e2e_lab_up n1
require "service default/empty (TCP NodePort 30090, no backends)" \
  lab_agentctl n1 service upsert default/empty --port 80 --node-port 30090

before=$(datapath_counter n1 ingress 158) || before=0

traffic lab_client_exec -- connect 192.168.10.100:30090 --count 3 --connect-only --timeout-ms 1000
check "client -> 192.168.10.100:30090 (no backends): every connection attempt fails (dropped: times out)" \
  expect_all_fail 3 'connect: timed out'

# expect_drop_counted <min>: the ingress/158 counter grew by at least min packets.
expect_drop_counted() {
  local min=$1 now all
  now=$(datapath_counter n1 ingress 158) || { echo "agentctl status -o json failed"; return 1; }
  if ((now - before >= min)); then
    return 0
  fi
  all=$(agentctl_json n1 status | jq -c '.counters')
  echo "expected the ingress counter of reason 158 to grow by >= $min packets (from $before), saw $now; all counters: $all"
  return 1
}
check "agentctl status -o json counts the drops: reason 158, direction ingress, >= 3 packets" \
  eventually 5 expect_drop_counted 3

table_shows_drop() {
  local out
  out=$(lab_agentctl n1 status --verbose) || { echo "agentctl status --verbose failed: $out"; return 1; }
  if grep -Eq '^ *ingress +158 ' <<<"$out"; then
    return 0
  fi
  echo "expected a counter row 'ingress 158 ...' in agentctl status --verbose, saw:"
  sed -n '/Datapath counters/,$p' <<<"$out" | head -n 15
  grep -q 'Datapath counters' <<<"$out" || echo "(no 'Datapath counters' table at all)"
  return 1
}
check "...and agentctl status --verbose shows them in its counter table" table_shows_drop

e2e_finish
