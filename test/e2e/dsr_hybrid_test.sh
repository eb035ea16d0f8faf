#!/usr/bin/env bash
# DsrHybridUdpIsSnated: bpf-lb-mode=hybrid on both nodes: TCP to a remote backend goes by DSR
# (node 2 answers the client itself, the backend sees the client), UDP through SNAT (node 1
# forwards without the option, from its own address, and the replies come back through it).
#
# Lab: agents on n1 and n2 (bpf-lb-mode hybrid from the config dir); echo server in n2-p1.
#   n1: default/hy     TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
#       default/hy-udp UDP NodePort 30081 -> 10.0.2.10:8080
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init DsrHybridUdpIsSnated npe_dsh
E2E_LAB_MADE=1
require "lab topology up" lab_up
for node in n1 n2; do
  echo hybrid >"$NP_LAB_DIR/$node/config/bpf-lb-mode"
  require "agent on $node started (bpf-lb-mode hybrid)" lab_agent_start "$node"
done
for node in n1 n2; do
  require "agent on $node ready" lab_agent_wait "$node" 30
done
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/hy (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/hy --port 80 --node-port 30080 --backend 10.0.2.10:8080
require "service default/hy-udp (UDP NodePort 30081 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/hy-udp --protocol udp --port 81 --node-port 30081 \
  --backend 10.0.2.10:8080

expect_hybrid_status() {
  local out
  out=$(lab_agentctl n1 status --verbose) || { echo "agentctl status --verbose failed"; return 1; }
  if grep -Eq '^  Mode: +Hybrid$' <<<"$out" && grep -Eq '^    DSR Dispatch Mode: +IP Option/Extension$' <<<"$out"; then
    return 0
  fi
  echo "expected 'Mode: Hybrid' and its DSR dispatch mode, saw:"
  grep -E 'Mode' <<<"$out" || echo "$out"
  return 1
}
check "agentctl status --verbose on n1 says Hybrid, DSR by IP option" expect_hybrid_status

require "capture of what n1 sends" capture_start n1-tcp n1
require "capture of what n2 sends" capture_start n2-tcp n2
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
require "captures stopped" capture_stop n1-tcp
require "captures stopped" capture_stop n2-tcp
check "client -> 192.168.10.100:30080 (TCP, backend on n2): 20/20 connections succeed" expect_ok 20
check "...which saw the client's own address 192.168.10.200 (DSR)" expect_only_peer 192.168.10.200
check "...n1 forwarded the SYNs with the option" expect_captured n1-tcp ge 20 "SYNs with the option" \
  'dst host 10.0.2.10 and tcp[tcpflags] & tcp-syn != 0 and ip[0] == 0x47 and ip[20:4] == 0x9a087580 and ip[24:4] == 0xc0a80a64'
check "...replies left n2 with 192.168.10.100:30080 as the source" \
  expect_captured n2-tcp ge 40 "replies from the NodePort address out of n2" \
  'src host 192.168.10.100 and src port 30080 and dst host 192.168.10.200'
check "...none left n1" expect_captured n1-tcp eq 0 "packets to the client out of n1" 'dst host 192.168.10.200'

require "capture of what n1 sends" capture_start n1-udp n1
require "capture of what n2 sends" capture_start n2-udp n2
traffic lab_client_exec -- connect 192.168.10.100:30081 --udp --count 20
require "captures stopped" capture_stop n1-udp
require "captures stopped" capture_stop n2-udp
check "client -> 192.168.10.100:30081 (UDP, backend on n2): 20/20 answered" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw node 1's address 192.168.10.100 as the source (SNAT)" expect_only_peer 192.168.10.100
check "...n1 forwarded the datagrams from its own address without an option" \
  expect_captured n1-udp ge 20 "SNAT'd datagrams, plain header" 'udp and src host 192.168.10.100 and dst host 10.0.2.10 and ip[0] == 0x45'
check "...none with an option" expect_captured n1-udp eq 0 "datagrams with options" 'udp and dst host 10.0.2.10 and ip[0] != 0x45'
check "...the replies came back through n1, from 192.168.10.100:30081" \
  expect_captured n1-udp ge 20 "replies out of n1" 'udp and src host 192.168.10.100 and src port 30081 and dst host 192.168.10.200'
check "...none went from n2 to the client" expect_captured n2-udp eq 0 "packets to the client out of n2" 'dst host 192.168.10.200'

e2e_finish
