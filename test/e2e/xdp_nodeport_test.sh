#!/usr/bin/env bash
# XdpNodePortRemoteBackend: the NodePort cases of NodePortRemoteBackend with
# --bpf-lb-acceleration=native on both nodes, and proof that XDP (not tc) handled them: the
# devices run our program in driver mode, status says "XDP Acceleration: Native [ens192]", and
# the XDP programs' own counters grew by the traffic (node 1: sent back out with XDP_TX, SNAT'd
# both ways; node 2: DNAT'd to its local pod and passed on marked done). The lab's bridge-side
# peers have GRO on, without which XDP_TX on a veth is dropped (DESIGN.md §7).
#
# Lab: agents on n1 and n2 (acceleration native); echo server in n2-p1 (10.0.2.10:8080).
#   n1: default/remote     TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
#       default/remote-udp UDP NodePort 30081 -> 10.0.2.10:8080
#   n2: default/remote     TCP NodePort 30080 -> 10.0.2.10:8080 (local)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init XdpNodePortRemoteBackend npe_xnp
e2e_lab_up
for node in n1 n2; do
  require "agent on $node started with --bpf-lb-acceleration=native" \
    lab_agent_start "$node" --bpf-lb-acceleration=native
done
for node in n1 n2; do
  require "agent on $node ready" lab_agent_wait "$node" 30
done
require "echo server in n2-p1" e2e_serve n2/p1
for node in n1 n2; do
  require "service default/remote (TCP NodePort 30080 -> 10.0.2.10:8080) on $node" \
    lab_agentctl "$node" service upsert default/remote --port 80 --node-port 30080 --backend 10.0.2.10:8080
done
require "service default/remote-udp (UDP NodePort 30081 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/remote-udp --protocol udp --port 81 --node-port 30081 \
  --backend 10.0.2.10:8080

for node in n1 n2; do
  check "$node: ens192 runs an XDP program in driver mode" expect_xdp_native "$node" ens192
  check "$node: agentctl status --verbose says 'XDP Acceleration: Native [ens192]'" \
    expect_status_line "$node" 'XDP Acceleration: +Native \[ens192\]$'
  check "$node: agentctl status is Ok" expect_status_ok "$node"
done

# Without the XDP -> tc hand-off (a kernel without bpf_xdp_adjust_meta for XDP) a new flow's first
# packet and flows to local backends are tc's: XDP sends one packet fewer per flow and defers
# the local ones.
if xdp_hand_off n1 ens192; then per_conn=6 per_dgram=2 local_counter=pass; else per_conn=5 per_dgram=1 local_counter=deferred; fi
tx0=$(xdp_counter n1 ens192 tx)
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
check "client -> 192.168.10.100:30080 (TCP, backend on n2): 20/20 connections succeed" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw node 1's address 192.168.10.100 as the source (SNAT)" expect_only_peer 192.168.10.100
# Each connection is at least SYN, ACK, data, FIN out and SYN-ACK, data, FIN back: 6 XDP_TX.
check "...and n1's XDP program sent them on itself (XDP_TX grew by >= $((per_conn * 20)))" \
  expect_xdp_counter_grew n1 ens192 tx "$tx0" $((per_conn * 20))

pass0=$(xdp_counter n2 ens192 "$local_counter")
traffic lab_client_exec -- connect 192.168.10.101:30080 --count 20
check "client -> 192.168.10.101:30080 (TCP, backend local to n2): 20/20 connections succeed" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw the client's own address 192.168.10.200 (no SNAT)" expect_only_peer 192.168.10.200
check "...and n2's XDP program DNAT'd them to the pod and passed them on done, or left them to tc (>= 60 $local_counter)" \
  expect_xdp_counter_grew n2 ens192 "$local_counter" "$pass0" 60

tx0=$(xdp_counter n1 ens192 tx)
traffic lab_client_exec -- connect 192.168.10.100:30081 --udp --count 20
check "client -> 192.168.10.100:30081 (UDP, backend on n2): 20/20 answered from the NodePort address" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw node 1's address 192.168.10.100 as the source (SNAT)" expect_only_peer 192.168.10.100
check "...and n1's XDP program sent request and reply on itself (XDP_TX grew by >= $((per_dgram * 20)))" \
  expect_xdp_counter_grew n1 ens192 tx "$tx0" $((per_dgram * 20))
check "n1: XDP dropped nothing" expect_xdp_counter n1 ens192 drop 0

e2e_finish
