#!/usr/bin/env bash
# LargeStateFitsOrIsRefused: big requests and big lists. A change that cannot fit the maps is
# refused as a whole, before anything is written, saying what it needs and what is free - and the
# next one that fits works (a refused batch used to leak entries until a restart). Lists of tens
# of thousands of services stream past gRPC's 4 MiB message limit. A refused 300,000-service
# request leaves the agent's memory where it was. Errors never echo an unbounded name back.
#
# Lab: agent on n1 only, default map sizes (262,144 service entries, 65,535 service IDs).
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

e2e_init LargeStateFitsOrIsRefused npe_big
e2e_lab_up n1
GEN=$NP_LAB_DIR/gen
mkdir -p "$GEN"

# gen <file> <services> <backends each> [first]: an `agentctl service apply` document of ClusterIP
# services t/s<i> (10.43.x.y:80), each with its own run of backends 10.0.a.b:8080.
gen() {
  awk -v n="$2" -v b="$3" -v first="${4:-0}" 'BEGIN {
    printf "{\"services\":["
    for (i = first; i < first + n; i++) {
      ip = i + 1
      printf "%s{\"name\":\"t/s%d\",\"protocol\":\"TCP\",\"port\":80,\"clusterIp\":\"10.43.%d.%d\",\"backends\":[", (i > first ? "," : ""), i, int(ip / 256), ip % 256
      for (j = 0; j < b; j++) {
        k = (i * b + j) % 60000
        printf "%s{\"address\":\"10.0.%d.%d\",\"port\":8080}", (j ? "," : ""), int(k / 250) + 1, k % 250 + 1
      }
      printf "]}"
    }
    printf "]}\n"
  }' >"$1"
}
apply() { lab_agentctl n1 service apply -f "$1"; }
count() { # <jq path> <args...>: the length of that list in agentctl -o json <args>
  local path=$1
  shift
  agentctl_json n1 "$@" | jq "$path | length"
}
expect_count() { # <want> <jq path> <args...>
  local want=$1 got
  shift
  got=$(count "$@") || { echo "agentctl -o json ${*:2} failed"; return 1; }
  ((got == want)) && return 0
  echo "expected $want items from agentctl ${*:2}, saw $got"
  return 1
}
map_entries() { agentctl_json n1 status | jq -r --arg m "$1" '.maps[] | select(.name == $m) | .entries'; }
expect_map() { # <map> <entries>
  local got
  got=$(map_entries "$1")
  [[ $got == "$2" ]] && return 0
  echo "expected map $1 to hold $2 entries, it holds ${got:-?}"
  return 1
}

# --- finding 2: more backends than a service can have
huge_backends() {
  awk 'BEGIN { printf "{\"services\":[{\"name\":\"t/huge\",\"protocol\":\"TCP\",\"port\":80,\"clusterIp\":\"10.43.200.1\",\"backends\":["
    for (j = 0; j < 70000; j++) printf "%s{\"address\":\"10.%d.%d.%d\",\"port\":8080}", (j ? "," : ""), 1 + int(j / 62500), int(j / 250) % 250, j % 250 + 1
    printf "]}]}\n" }' >"$GEN/huge.json"
}
require "generate a service with 70,000 backends" huge_backends
check "a service with 70,000 backends is refused, naming the limit" \
  expect_refused 1 'service t/huge: has 70000 backends; a service can have at most 65535' apply "$GEN/huge.json"
check "...and nothing reached the maps" expect_map np_svc4_v1 0

# --- finding 1: a batch that does not fit is refused whole; the next one that fits works
require "generate 50,000 services x 5 backends (300,000 service-map entries)" gen "$GEN/big.json" 50000 5
check "a batch needing 300,000 entries of a 262,144-entry map is refused, saying what it needs" \
  expect_refused 1 'does not fit the service map: needs 300,000 new entries, 262,144 free \(262,144 max\); nothing was changed' \
  apply "$GEN/big.json"
check "...nothing reached the service map" expect_map np_svc4_v1 0
check "...nor the backend map" expect_map np_backend4_v1 0
check "...the agent is Ok" expect_status_ok n1
require "generate 50,000 services x 1 backend" gen "$GEN/fits.json" 50000 1
check "the next batch, which fits, is applied (50,000 services)" \
  expect_refused 0 '^50000 services applied$' apply "$GEN/fits.json"
check "the service map holds exactly 100,000 entries (50,000 x entry + slot)" expect_map np_svc4_v1 100000
check "status is Ok (no map over 90 %)" expect_status_ok n1

# --- finding 5: lists stream
check "agentctl service list prints all 50,000 services (past the 4 MiB message limit)" \
  expect_count 50000 .services service list
table_rows() {
  local n
  n=$(lab_agentctl n1 service list | wc -l)
  ((n == 50001)) && return 0
  echo "expected 50,001 lines (header + 50,000), saw $n"
  return 1
}
check "...also as a table" table_rows
check "agentctl bpf lb list prints all 50,000 frontends" expect_count 50000 .entries bpf lb list

# --- honest health: the service-ID map over 90 %
require "generate 10,000 more services" gen "$GEN/more.json" 10000 1 50000
check "10,000 more services are applied" expect_refused 0 '^10000 services applied$' apply "$GEN/more.json"
degraded_revnat() {
  local out
  out=$(agentctl_json n1 status || true)
  jq -e '.state == "Degraded" and (.message | test("map np_revnat4_v1 is 91% full \\(60000 of 65535\\)"))' <<<"$out" >/dev/null &&
    return 0
  echo "expected Degraded naming np_revnat4_v1 at 91 %, saw $(jq -c '{state, message}' <<<"$out")"
  return 1
}
check "status is Degraded: the reverse-NAT map is 91 % full" degraded_revnat

# --- finding 8: a refused huge request leaves memory where it was
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$(<"$NP_LAB_DIR/n1/agent.pid")/status"; }
require "generate 300,000 services" gen "$GEN/300k.json" 300000 1
rss_before=$(rss_kib)
check "300,000 services in one call are refused at once" \
  expect_refused 1 'a node holds at most 65,535 frontends .*nothing was changed' apply "$GEN/300k.json"
rss_back() {
  local now
  now=$(rss_kib)
  ((now <= rss_before + 20480)) && return 0
  echo "agent RSS $((now / 1024)) MiB, was $((rss_before / 1024)) MiB before the refused request"
  return 1
}
check "the agent's memory returns to within 20 MiB of before ($((rss_before / 1024)) MiB)" eventually 10 rss_back
check "...and it still holds its 60,000 services" expect_count 60000 .services service list

# --- errors never echo an unbounded name
long_name() {
  local name out rc=0
  name="t/$(head -c 100000 /dev/zero | tr '\0' x)"
  out=$(lab_agentctl n1 service get "$name" 2>&1) || rc=$?
  ((rc == 1 && ${#out} < 600)) && grep -q 'DNS-1123 label' <<<"$out" && grep -q '(100002 bytes)' <<<"$out" && return 0
  echo "expected exit 1 and a short message about the name, saw exit $rc and ${#out} bytes: ${out:0:300}"
  return 1
}
check "service get with a 100,000-byte name: refused with a short message" long_name

e2e_finish
