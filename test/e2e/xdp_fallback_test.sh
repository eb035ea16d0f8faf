#!/usr/bin/env bash
# XdpDeviceWithoutNativeXdp: a native device that cannot take XDP in driver mode - a macvlan, as
# on a VM NIC whose driver has no XDP. Node 1's LAN address moves to mv0, a macvlan on ens192
# (ens192 keeps no address and answers no ARP, so the node's traffic goes through mv0 only).
#   - --bpf-lb-acceleration=native refuses to start, naming the device and the kernel's reason,
#     and leaves no XDP program and no link pin behind;
#   - --bpf-lb-acceleration=best-effort starts, says in status that mv0 fell back to tc and why,
#     and the NodePort works through tc (remote backend, SNAT).
#
# Lab: agent on n1 only (devices mv0); echo server in n2-p1 (10.0.2.10:8080).
#   n1: default/remote TCP NodePort 30080 -> 10.0.2.10:8080 (remote: on n2)
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init XdpDeviceWithoutNativeXdp npe_xfb
e2e_lab_up

macvlan() {
  lab__vars || return 1
  local ns=$LAB_P-n1
  ip -n "$ns" addr flush dev ens192
  # Linux answers ARP for its addresses on any interface: ens192 would hand out its own MAC.
  lab__sysctl n1 net.ipv4.conf.ens192.arp_ignore=1
  ip -n "$ns" link add mv0 link ens192 type macvlan mode bridge
  ip -n "$ns" addr add 192.168.10.100/24 dev mv0
  ip -n "$ns" link set mv0 up
  ip -n "$ns" route replace default via 192.168.10.1 dev mv0
  ip -n "$ns" route replace 10.0.2.0/24 via 192.168.10.101 dev mv0
}
require "node 1's address on mv0, a macvlan over ens192" macvlan
require "echo server in n2-p1" e2e_serve n2/p1

refused() {
  local log=$NP_LAB_DIR/n1/agent.log
  if ! lab_poll 20 lab__not_running agent-n1; then
    echo "the agent still runs with --bpf-lb-acceleration=native on mv0"
    return 1
  fi
  if grep -Eq -- '--bpf-lb-acceleration=native: device mv0 cannot take native XDP: .*Operation not supported \(driver macvlan has no native XDP\)' "$log"; then
    return 0
  fi
  echo "expected the agent to name mv0, the kernel's reason and the driver; its log:"
  tail -n 5 "$log"
  return 1
}
require "agent on n1 started with --devices mv0 --bpf-lb-acceleration=native" \
  lab_agent_start n1 --devices mv0 --bpf-lb-acceleration=native
check "...refuses to start: 'device mv0 cannot take native XDP: ... Operation not supported (driver macvlan has no native XDP)'" refused
check "...and leaves no XDP program on mv0" expect_no_xdp n1 mv0
check "...nor on ens192" expect_no_xdp n1 ens192
no_pin() {
  local pin=$NP_LAB_DIR/bpffs/n1/nodepath/links/xdp_mv0
  [[ ! -e $pin ]] && return 0
  echo "the link pin $pin exists"
  return 1
}
check "...nor a link pin" no_pin
require "forget the refused agent" lab_agent_stop n1

require "agent on n1 started with --devices mv0 --bpf-lb-acceleration=best-effort" \
  lab_agent_start n1 --devices mv0 --bpf-lb-acceleration=best-effort
require "...and it becomes ready" lab_agent_wait n1 30
fallback() {
  local out
  out=$(agentctl_json n1 status) || { echo "agentctl status failed: $out"; return 1; }
  if jq -e '.xdp_acceleration == "Best-Effort" and ([.devices[] | select(.name == "mv0") |
      .xdp == "tc fallback" and (.xdp_fallback | test("Operation not supported \\(driver macvlan has no native XDP\\)"))
      and .tc_ingress and .tc_egress] == [true])' <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected mv0 to fall back to tc with the reason, saw $(jq -c '{xdp_acceleration, devices: [.devices[] | {name, xdp, xdp_fallback, tc_ingress, tc_egress}]}' <<<"$out")"
  return 1
}
check "status: mv0 falls back to tc, with the kernel's reason" fallback
check "agentctl status --verbose: 'XDP Acceleration: Best-Effort [mv0: tc fallback, ...]'" \
  expect_status_line n1 '^XDP Acceleration: +Best-Effort \[mv0: tc fallback, .*driver macvlan has no native XDP\)\]$'
check "agentctl status is Ok (falling back is what best-effort means)" expect_status_ok n1
check "no XDP program on mv0" expect_no_xdp n1 mv0

require "service default/remote (TCP NodePort 30080 -> 10.0.2.10:8080) on n1" \
  lab_agentctl n1 service upsert default/remote --port 80 --node-port 30080 --backend 10.0.2.10:8080
traffic lab_client_exec -- connect 192.168.10.100:30080 --count 20
check "client -> 192.168.10.100:30080 through tc on mv0: 20/20 connections succeed" expect_ok 20
check "...all answered by n2-p1" expect_id n2-p1 20
check "...which saw node 1's address 192.168.10.100 as the source (SNAT)" expect_only_peer 192.168.10.100

e2e_finish
