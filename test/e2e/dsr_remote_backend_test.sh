#!/usr/bin/env bash
# DsrRemoteBackend: bpf-lb-mode=dsr on both nodes. A LAN client's connections to node 1's
# NodePort, whose only backend is a pod on node 2, are forwarded once by node 1 (DNAT, the
# client's address kept, the IPv4 option 0x9a on every TCP SYN and every UDP datagram) and
# answered by node 2 straight to the client with node 1's address and NodePort as the source;
# nothing of the replies leaves node 1. Captures on the LAN bridge's ports show each of these.
#
# Lab: agents on n1 and n2 (bpf-lb-mode from their config dirs: a mounted ConfigMap's key);
# echo server in n2-p1 (10.0.2.10:8080, tcp and udp).
#   n1: default/dsr     TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
#       default/dsr-udp UDP NodePort 30081 -> 10.0.2.10:8080
#       default/dsr-host TCP NodePort 30082 -> 192.168.10.101:9090 (n2's own address: a
#                       host-network server there)
#   n2: nothing configured: it learns each flow from the option.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init "${E2E_ACCELERATION:+Xdp}DsrRemoteBackend" npe_dsr
E2E_LAB_MADE=1
require "lab topology up" lab_up
for node in n1 n2; do
  echo dsr >"$NP_LAB_DIR/$node/config/bpf-lb-mode"
  # XdpDsrRemoteBackend runs this test with XDP acceleration (E2E_ACCELERATION=native).
  if [[ -n ${E2E_ACCELERATION:-} ]]; then echo "$E2E_ACCELERATION" >"$NP_LAB_DIR/$node/config/bpf-lb-acceleration"; fi
  require "agent on $node started (bpf-lb-mode dsr)" lab_agent_start "$node"
done
for node in n1 n2; do
  require "agent on $node ready" lab_agent_wait "$node" 30
done
require "echo server in n2-p1" e2e_serve n2/p1
require "service default/dsr (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/dsr --port 80 --node-port 30080 --backend 10.0.2.10:8080
require "service default/dsr-udp (UDP NodePort 30081 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/dsr-udp --protocol udp --port 81 --node-port 30081 \
  --backend 10.0.2.10:8080

expect_status_mode() {
  local out
  out=$(lab_agentctl "$1" status --verbose) || { echo "agentctl status --verbose failed on $1"; return 1; }
  if grep -Eq '^LB mode: +DSR \(IP Option/Extension\)$' <<<"$out" &&
    grep -Eq '^  Mode: +DSR$' <<<"$out" && grep -Eq '^    DSR Dispatch Mode: +IP Option/Extension$' <<<"$out"; then
    return 0
  fi
  echo "expected the DSR mode lines in agentctl status --verbose on $1, saw:"
  grep -E 'LB mode|Mode' <<<"$out" || echo "$out"
  return 1
}
check "agentctl status on n1 says DSR with the IP option" expect_status_mode n1
check "agentctl status on n2 says DSR with the IP option" expect_status_mode n2

# --- TCP
require "capture of what n1 sends" capture_start n1-tcp n1
require "capture of what n2 sends" capture_start n2-tcp n2
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
require "captures stopped" capture_stop n1-tcp
require "captures stopped" capture_stop n2-tcp
check "client -> 192.168.10.100:30080 (TCP, backend on n2): 20/20 connections succeed" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw the client's own address 192.168.10.200 (no SNAT)" expect_only_peer 192.168.10.200
check "...n1 forwarded each SYN to 10.0.2.10 with the option 9a 08 75 80 c0 a8 0a 64 (30080, 192.168.10.100)" \
  expect_captured n1-tcp ge 20 "SYNs with the option" \
  'dst host 10.0.2.10 and tcp[tcpflags] & tcp-syn != 0 and ip[0] == 0x47 and ip[20:4] == 0x9a087580 and ip[24:4] == 0xc0a80a64'
check "...no SYN without it" expect_captured n1-tcp eq 0 "SYNs to the pod without the option" \
  'dst host 10.0.2.10 and tcp[tcpflags] & tcp-syn != 0 and ip[0] == 0x45'
check "...and the later segments without the option, the client's address kept" \
  expect_captured n1-tcp ge 40 "segments after the SYN, plain header" \
  'src host 192.168.10.200 and dst host 10.0.2.10 and tcp[tcpflags] & tcp-syn == 0 and ip[0] == 0x45'
check "...no later segment with an option" expect_captured n1-tcp eq 0 "segments after the SYN with options" \
  'dst host 10.0.2.10 and tcp[tcpflags] & tcp-syn == 0 and ip[0] != 0x45'
check "replies leave n2 for the client with 192.168.10.100:30080 as the source" \
  expect_captured n2-tcp ge 40 "replies from the NodePort address out of n2" \
  'src host 192.168.10.100 and src port 30080 and dst host 192.168.10.200'
check "...none with the pod's own address" expect_captured n2-tcp eq 0 "untranslated replies" \
  'src host 10.0.2.10'
check "nothing of the replies leaves n1" expect_captured n1-tcp eq 0 "packets to the client out of n1" \
  'dst host 192.168.10.200'

# The lab's ens192 has GRO on, as a real NIC: a request of many segments reaches n1 as skbs
# longer than the MTU, which go on to n2 as the segments they are.
big=$(head -c 40000 /dev/zero | tr '\0' x)
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 5 --payload "$big"
check "client -> 192.168.10.100:30080 (TCP, backend on n2), a 40 kB request (GRO on n1's ens192): 5/5 echoed whole" expect_ok 5
check "...no packet dropped on n1 for want of a route (reason 169)" expect_no_drop n1 169

# --- UDP
require "capture of what n1 sends" capture_start n1-udp n1
require "capture of what n2 sends" capture_start n2-udp n2
traffic lab_client_exec -- connect 192.168.10.100:30081 --udp --count 20
require "captures stopped" capture_stop n1-udp
require "captures stopped" capture_stop n2-udp
check "client -> 192.168.10.100:30081 (UDP, backend on n2): 20/20 answered from the NodePort address" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw the client's own address 192.168.10.200 (no SNAT)" expect_only_peer 192.168.10.200
check "...n1 forwarded every datagram with the option 9a 08 75 81 c0 a8 0a 64 (30081, 192.168.10.100)" \
  expect_captured n1-udp ge 20 "datagrams with the option" \
  'udp and dst host 10.0.2.10 and ip[0] == 0x47 and ip[20:4] == 0x9a087581 and ip[24:4] == 0xc0a80a64'
check "...none without it" expect_captured n1-udp eq 0 "datagrams to the pod without the option" \
  'udp and dst host 10.0.2.10 and ip[0] == 0x45'
check "replies leave n2 for the client with 192.168.10.100:30081 as the source" \
  expect_captured n2-udp ge 20 "replies from the NodePort address out of n2" \
  'udp and src host 192.168.10.100 and src port 30081 and dst host 192.168.10.200'
check "nothing of the replies leaves n1" expect_captured n1-udp eq 0 "packets to the client out of n1" \
  'dst host 192.168.10.200'

# --- A host-network backend on n2: its own address, on a port no map of n2's has. n2 learns the
# flow's port from the option, so the client's later segments and the server's replies, to and
# from n2's address on that port, are still looked up and translated.
serve_on_n2_itself() {
  lab_bg serve-n2-host "$NP_LAB_DIR/logs/serve-n2-host.log" lab_node_exec n2 "$NPTRAFFIC" serve --id n2-host \
    --tcp 9090 || return 1
  lab_wait_for_line "$NP_LAB_DIR/logs/serve-n2-host.log" 'serving' 10
}
require "echo server on n2's own address (192.168.10.101:9090, host network)" serve_on_n2_itself
require "service default/dsr-host (TCP NodePort 30082 -> 192.168.10.101:9090) on n1" \
  lab_agentctl n1 service upsert default/dsr-host --port 82 --node-port 30082 --backend 192.168.10.101:9090
require "capture of what n2 sends" capture_start n2-host n2
traffic lab_client_exec -- connect 192.168.10.100:30082 --count 20
require "captures stopped" capture_stop n2-host
check "client -> 192.168.10.100:30082 (TCP, host-network backend on n2): 20/20 connections succeed" expect_ok 20
check "...all answered by n2's host-network server" expect_id n2-host 20
check "replies leave n2 for the client with 192.168.10.100:30082 as the source" \
  expect_captured n2-host ge 40 "replies from the NodePort address out of n2" \
  'src host 192.168.10.100 and src port 30082 and dst host 192.168.10.200'
check "...none with n2's own address and port" expect_captured n2-host eq 0 "untranslated replies" \
  'src host 192.168.10.101 and src port 9090'

if [[ -n ${E2E_ACCELERATION:-} ]]; then
  for node in n1 n2; do
    check "$node: ens192 runs XDP in driver mode" expect_xdp_native "$node" ens192
  done
  # 20 connections (SYN, ACK, data, FIN at least) and 20 datagrams, each sent on by XDP_TX.
  # Without the XDP -> tc hand-off (a kernel without bpf_xdp_adjust_meta for XDP) each flow's
  # first packet is tc's, and n2's flows (to its local backend) are all tc's.
  if xdp_hand_off n1 ens192; then min_tx=100 n2_counter=pass; else min_tx=60 n2_counter=deferred; fi
  check "n1's XDP program forwarded the client's packets itself (XDP_TX >= $min_tx)" expect_xdp_counter_grew n1 ens192 tx 0 "$min_tx"
  check "n2's XDP program recorded the flows from the option and passed them on done, or left them to tc (>= 100 $n2_counter)" \
    expect_xdp_counter_grew n2 ens192 "$n2_counter" 0 100
fi

e2e_finish
