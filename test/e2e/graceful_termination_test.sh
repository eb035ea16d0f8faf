#!/usr/bin/env bash
# GracefulTerminationDrainsTerminatingBackend: a backend marked terminating keeps its existing
# connections (they drain) while new connections go to the others; with only terminating
# backends left they are used (Kubernetes' rule); after its removal new connections avoid it.
#
# Lab: agent on n1; echo servers in n1-p1 and n1-p2.
#   n1: default/drain TCP NodePort 30400 -> 10.0.1.10:8080, 10.0.1.11:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init GracefulTerminationDrainsTerminatingBackend npe_gt
e2e_lab_up n1
require "echo servers in n1-p1 and n1-p2" e2e_serve n1/p1 n1/p2
require "service default/drain (NodePort 30400 -> n1-p1, n1-p2)" \
  lab_agentctl n1 service upsert default/drain --port 80 --node-port 30400 \
  --backend 10.0.1.10:8080 --backend 10.0.1.11:8080

# Held connections until one of them is on n1-p1 (each picks at random).
held=
for i in 1 2 3 4 5 6 7 8; do
  require "client holds connection $i to NodePort 30400" hold_start "c$i" lab_client_exec -- 192.168.10.100:30400
  reply=$(hold_send "c$i" "probe-$i") || { fail "held connection $i answers" "$reply"; e2e_finish; }
  if [[ $reply == n1-p1\ * ]]; then
    held=c$i
    break
  fi
done
require "one held connection is on n1-p1" test -n "$held"

require "mark n1-p1 (10.0.1.10) terminating" \
  lab_agentctl n1 service upsert default/drain --port 80 --node-port 30400 \
  --backend 10.0.1.10:8080,terminating --backend 10.0.1.11:8080
check "bpf lb list: n1-p1 is terminating and not selectable" \
  eval 'agentctl_json n1 bpf lb list | jq -e "[.entries[] | select(.port == 30400 and .address == \"192.168.10.100\")][0] | .count == 1 and ([.slots[] | select(.address == \"10.0.1.10\")][0].state == \"TERMINATING\")" >/dev/null'
check "the held connection to n1-p1 still carries data (it drains)" expect_hold_echo "$held" drain-1 n1-p1 192.168.10.200
traffic lab_client_exec -- connect 192.168.10.100:30400 --count 20
check "new connections: 20/20 succeed" expect_ok 20
check "...all on n1-p2, none on the terminating n1-p1" expect_id n1-p2 20
check "the held connection to n1-p1 still carries data after them" expect_hold_echo "$held" drain-2 n1-p1 192.168.10.200

require "mark n1-p2 terminating too (only terminating backends left)" \
  lab_agentctl n1 service upsert default/drain --port 80 --node-port 30400 \
  --backend 10.0.1.10:8080,terminating --backend 10.0.1.11:8080,terminating
traffic lab_client_exec -- connect 192.168.10.100:30400 --count 20
check "only terminating backends: new connections still succeed (20/20), served by them" expect_ok 20

mapfile -t ids_before < <(backend_ids n1)
require "remove n1-p1 from the service" \
  lab_agentctl n1 service upsert default/drain --port 80 --node-port 30400 --backend 10.0.1.11:8080
traffic lab_client_exec -- connect 192.168.10.100:30400 --count 10
check "after the removal new connections go to n1-p2 (10/10)" expect_id n1-p2 10
check "n1's backend bitmap: the bits of the backends left set, the removed n1-p1's cleared" expect_live_backends n1 "${ids_before[@]}"

e2e_finish
