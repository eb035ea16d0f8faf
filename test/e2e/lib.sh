# shellcheck shell=bash
# Shared helpers of the e2e tier (DESIGN.md §7): a lab of its own per test (unique prefix, state
# under /run/nodepath-lab/), torn down by an EXIT trap on success, failure, Ctrl-C, TERM and a
# watchdog; assertions that say what was expected and what was seen.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   e2e_init SocketLbClusterIp npe_slb      # name for the summary, prefix stem (+ $$)
#   e2e_lab_up n1 n2                        # topology + agents on these nodes
#   require "echo servers" e2e_serve n1/p1 n2/p1
#   traffic lab_node_exec n1 -- connect 10.43.0.20:80 --count 40
#   check "40/40 connections succeed" expect_ok 40
#   e2e_finish
#
# Conventions:
# - check <name> <assertion...> prints `PASS name` or `FAIL name: why` and goes on; require does
#   the same but stops the test on failure (for steps the rest depends on). Assertions are
#   functions that return non-zero and print what they expected and what they saw; both run
#   them in the test's shell, so an assertion may also start things (hold_start).
# - traffic runs nptraffic through a lab exec helper and keeps its output for the expect_*
#   assertions that follow (in E2E_OUT/E2E_ERR/E2E_RC/E2E_MS).
# - Held connections (hold_start/hold_send) are `nptraffic hold` processes fed line by line from a
#   fifo: unlike a bash coproc several can be open at once, and their input fds survive into
#   subshells (bash closes coproc fds there).
# - Waiting is polling with a deadline (lab_poll, lab_wait_for_line, eventually), never a bare
#   sleep.
# - Teardown: lab_down, after stopping held connections; then
#   the test reaps its children (this machine's PID 1 does not reap orphans). A signal during the
#   teardown is ignored. Ctrl-C reaches the lab's processes too (they share the terminal's process
#   group): agents and servers stop, so the test may report a failing step before bash acts on
#   the SIGINT (bash runs an INT trap only when the foreground command died of SIGINT); the
#   teardown runs in every case.
#
# Environment: NP_BUILD_DIR (default <repo>/build; its agent, agentctl and nptraffic are copied
# at the start, so a rebuild during the test does not affect it), E2E_TIMEOUT (watchdog, default 240 s: below
# the CTest TIMEOUT so that the EXIT trap still tears the lab down), E2E_KEEP_LAB=1 (leave the lab
# up after a failure, for a post-mortem; `NP_LAB_PREFIX=<prefix> scripts/lab.sh down` removes it).

if [[ -n ${_NP_E2E_LIB_LOADED:-} ]]; then
  return 0
fi
_NP_E2E_LIB_LOADED=1

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(cd "$E2E_DIR/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib/lab.sh
source "$E2E_REPO/scripts/lib/lab.sh"
# shellcheck source=SCRIPTDIR/jq.sh
source "$E2E_DIR/jq.sh"  # jq -e that refuses empty input

E2E_NAME=e2e
E2E_PASSED=0
E2E_FAILED=0
E2E_STARTED=0
E2E_WATCHDOG=
E2E_EXITING=0
E2E_TMP=
E2E_STDOUT_FD=1
E2E_STDERR_FD=2
E2E_LAB_MADE=0
E2E_SEQ=0
E2E_OUT=
E2E_ERR=
E2E_RC=0
E2E_MS=0
declare -A E2E_HOLD_FD=() E2E_HOLD_LOG=() E2E_HOLD_PID=() E2E_HOLD_START=()

# ---------------------------------------------------------------------------------------------
# Reporting

e2e__indent() { sed 's/^/    | /'; }

pass() {
  E2E_PASSED=$((E2E_PASSED + 1))
  printf 'PASS %s\n' "$1"
}

# fail <name> <why>: the first line of why goes on the FAIL line, the rest indented below it.
fail() {
  local name=$1 why=${2:-}
  E2E_FAILED=$((E2E_FAILED + 1))
  [[ -n $why ]] || why="(the assertion gave no reason)"
  printf 'FAIL %s: %s\n' "$name" "${why%%$'\n'*}"
  if [[ $why == *$'\n'* ]]; then
    printf '%s\n' "${why#*$'\n'}" | e2e__indent
  fi
}

# check <name> <cmd...>: one assertion; cmd's output (stdout and stderr) says why it failed. cmd
# runs in this shell (so it may start processes and set variables for later checks). Returns 0
# either way (the test goes on under `set -e`); e2e_finish turns failures into the exit status.
check() {
  local name=$1 log rc=0
  shift
  log=$(mktemp "$E2E_TMP/check.XXXXXX")
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc == 0)); then
    pass "$name"
  else
    fail "$name" "$(tail -n 40 "$log")"
  fi
  rm -f "$log"
  return 0
}

# require <name> <cmd...>: a step the rest of the test depends on: like check, but quiet on
# success ("  ok   name") and a failure ends the test (the EXIT trap tears the lab down).
require() {
  local name=$1 log rc=0
  shift
  log=$(mktemp "$E2E_TMP/require.XXXXXX")
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc == 0)); then
    printf '  ok   %s\n' "$name"
    rm -f "$log"
    return 0
  fi
  fail "$name" "exit status $rc; output:"$'\n'"$(tail -n 30 "$log")"
  rm -f "$log"
  exit 1
}

# eventually <timeout-s> <assertion...>: retries the assertion every 0.1 s until it passes or the
# deadline passes; on failure prints only its last explanation.
eventually() {
  local timeout=$1 log rc=0
  shift
  log=$(mktemp "$E2E_TMP/eventually.XXXXXX")
  lab_poll "$timeout" e2e__quietly "$log" "$@" || rc=$?
  if ((rc != 0)); then
    cat "$log"
    echo "(still failing after ${timeout}s of retries)"
  fi
  rm -f "$log"
  return "$rc"
}
e2e__quietly() { # <log> cmd...: cmd's output replaces log
  local log=$1
  shift
  "$@" >"$log" 2>&1
}

# e2e_finish: the summary line; exits 0 when every check passed.
e2e_finish() {
  local secs=$((SECONDS - E2E_STARTED))
  E2E_EXITING=1
  if ((E2E_FAILED == 0 && E2E_PASSED > 0)); then
    printf 'PASS %s (%d checks, %d s)\n' "$E2E_NAME" "$E2E_PASSED" "$secs"
    exit 0
  fi
  printf 'FAIL %s: %d of %d checks failed (%d s)\n' "$E2E_NAME" "$E2E_FAILED" \
    $((E2E_PASSED + E2E_FAILED)) "$secs"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Set-up and teardown

# e2e_init <TestName> <prefix stem>: checks the preconditions, picks the lab prefix <stem><pid>
# and its state dir, installs the teardown traps and the watchdog.
e2e_init() {
  E2E_NAME=$1
  local stem=$2
  E2E_STARTED=$SECONDS
  export NP_LAB_PREFIX=$stem$$
  export NP_LAB_DIR=/run/nodepath-lab/$NP_LAB_PREFIX
  export NP_BUILD_DIR=${NP_BUILD_DIR:-$E2E_REPO/build}
  # The test's own stdout/stderr: a signal may arrive while check/require have redirected them
  # to a log, and the traps must still be heard.
  exec {E2E_STDOUT_FD}>&1 {E2E_STDERR_FD}>&2
  E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/e2e-$NP_LAB_PREFIX.XXXXXX")
  trap e2e__exit EXIT
  trap 'e2e__signal INT 130' INT
  trap 'e2e__signal TERM 143' TERM
  trap 'e2e__signal HUP 129' HUP

  if [[ $(id -u) -ne 0 ]]; then
    fail "$E2E_NAME" "needs root (network namespaces, cgroups, bpffs)"
    exit 1
  fi
  local b rel tool
  lab__vars || exit 1
  # A snapshot of the binaries: a rebuild during the test (others build in the same tree) can
  # neither make one vanish for a moment nor swap the agent a restart test restarts.
  for b in agent agentctl nptraffic cni xdp-pass lease-probe; do
    if ! rel=$(lab__bin "$b"); then
      fail "$E2E_NAME" "the $b binary is missing under $NP_BUILD_DIR (build first: ninja -C $NP_BUILD_DIR)"
      exit 1
    fi
    rel=${rel#"$NP_BUILD_DIR"/}
    mkdir -p "$E2E_TMP/build/$(dirname "$rel")"
    cp -p "$NP_BUILD_DIR/$rel" "$E2E_TMP/build/$rel" || {
      fail "$E2E_NAME" "cannot copy $NP_BUILD_DIR/$rel"
      exit 1
    }
  done
  export NP_BUILD_DIR=$E2E_TMP/build
  lab__vars || exit 1
  for tool in jq nsenter ip; do
    command -v "$tool" >/dev/null || {
      fail "$E2E_NAME" "$tool is missing (install the Debian package: jq, util-linux, iproute2)"
      exit 1
    }
  done
  # For the tests: the binaries, to run them through a lab exec helper directly.
  NPTRAFFIC=$(lab__bin nptraffic)
  # shellcheck disable=SC2034
  AGENTCTL=$(lab__bin agentctl)

  local limit=${E2E_TIMEOUT:-240}
  mkfifo "$E2E_TMP/watchdog"
  e2e__watchdog "$limit" "$$" "$E2E_TMP/watchdog" &
  E2E_WATCHDOG=$!
  echo "== $E2E_NAME (lab prefix $NP_LAB_PREFIX, state $NP_LAB_DIR, watchdog ${limit}s)"
}

# Sends TERM to the test after <secs>: the TERM trap then exits through the teardown. It waits
# with `read -t` on a fifo nobody writes, so it has no child that could outlive it: stopping it
# is killing it.
e2e__watchdog() {
  local secs=$1 target=$2 fifo=$3
  trap - TERM
  if read -r -t "$secs" _ <>"$fifo"; then
    exit 0
  fi
  echo "FAIL $E2E_NAME: still running after ${secs}s (E2E_TIMEOUT); stopping it" >&"$E2E_STDERR_FD"
  kill -TERM "$target" 2>/dev/null
  exit 0
}

e2e__signal() {
  # A signal handled while the test is already exiting must not cut the teardown short (an exit
  # inside the EXIT trap ends the shell there).
  if ((E2E_EXITING)) || [[ " ${FUNCNAME[*]} " == *" e2e__exit "* ]]; then
    return 0
  fi
  E2E_EXITING=1
  echo "FAIL $E2E_NAME: interrupted by SIG$1" >&"$E2E_STDERR_FD"
  exit "$2"
}

e2e__exit() {
  local rc=$?
  E2E_EXITING=1
  trap '' INT TERM HUP
  set +e
  # Back to the test's own output, whatever redirection the exit happened in.
  exec 1>&"$E2E_STDOUT_FD" 2>&"$E2E_STDERR_FD"
  if [[ -n $E2E_WATCHDOG ]]; then
    kill -TERM "$E2E_WATCHDOG" 2>/dev/null
    wait "$E2E_WATCHDOG" 2>/dev/null
  fi
  if ((rc != 0 || E2E_FAILED > 0)) && ((E2E_LAB_MADE)); then
    e2e__postmortem
  fi
  local name fd pid down_ok=1
  # Held connections first, by their pid (the teardown would SIGKILL them through the cgroup,
  # and bash would report that as if something had crashed).
  for name in "${!E2E_HOLD_PID[@]}"; do
    pid=${E2E_HOLD_PID[$name]}
    if lab__pid_alive "$pid" "${E2E_HOLD_START[$name]:-}"; then
      kill -TERM "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  if ((E2E_LAB_MADE)) && [[ ${E2E_KEEP_LAB:-0} == 1 ]] && ((rc != 0 || E2E_FAILED > 0)); then
    echo "E2E_KEEP_LAB=1: leaving lab $NP_LAB_PREFIX up (NP_LAB_PREFIX=$NP_LAB_PREFIX scripts/lab.sh down)"
    down_ok=0
  else
    local out
    if ! out=$(lab_down 2>&1); then
      echo "FAIL $E2E_NAME: teardown of lab $NP_LAB_PREFIX failed:"
      printf '%s\n' "$out" | e2e__indent
      ((rc != 0)) || rc=1
      down_ok=0
    fi
  fi
  for name in "${!E2E_HOLD_FD[@]}"; do
    fd=${E2E_HOLD_FD[$name]}
    eval "exec $fd>&-"
  done
  # Reap what we started (all of it is dead after a teardown), so nothing lingers as a zombie;
  # after a failed teardown something may still run: do not wait for it forever.
  ((down_ok)) && wait 2>/dev/null
  [[ -n $E2E_TMP && -d $E2E_TMP ]] && rm -rf -- "$E2E_TMP"
  exit "$rc"
}

# What a failed test leaves to look at, before the teardown removes it.
e2e__postmortem() {
  local node log
  for node in n1 n2; do
    log=$NP_LAB_DIR/$node/agent.log
    [[ -s $log ]] || continue
    echo "--- last lines of $node's agent log ($log):"
    tail -n 15 "$log" | e2e__indent
  done
}

# e2e_lab_up [node...]: the topology, then an agent on each node given, ready (agentctl status
# answers). Fails the test when anything does not come up.
e2e_lab_up() {
  E2E_LAB_MADE=1
  require "lab topology up" lab_up
  local node
  for node in "$@"; do
    require "agent on $node started" lab_agent_start "$node"
  done
  for node in "$@"; do
    require "agent on $node ready" lab_agent_wait "$node" 30
  done
}

# e2e_serve <node/pod>...: the echo server (nptraffic serve, tcp and udp 8080) in each pod.
e2e_serve() {
  local np
  for np in "$@"; do
    lab_pod_serve "${np%/*}" "${np#*/}" || return 1
  done
}

# ---------------------------------------------------------------------------------------------
# Traffic

# traffic <exec helper args...> -- <nptraffic args...>: runs nptraffic where the helper says
# (lab_client_exec, lab_node_exec n1, lab_pod_exec n1 p2, ...). Keeps stdout in $E2E_OUT, stderr
# in $E2E_ERR, the exit status in $E2E_RC and how long it took in $E2E_MS, for the expect_*
# assertions; never fails itself.
traffic() {
  local -a helper=()
  while (($#)) && [[ $1 != -- ]]; do
    helper+=("$1")
    shift
  done
  if [[ ${1:-} != -- ]]; then
    echo "traffic: usage: traffic <helper args...> -- <nptraffic args...>" >&2
    return 2
  fi
  shift
  E2E_SEQ=$((E2E_SEQ + 1))
  mkdir -p "$NP_LAB_DIR/logs"
  E2E_OUT=$NP_LAB_DIR/logs/traffic-$E2E_SEQ.out
  E2E_ERR=$NP_LAB_DIR/logs/traffic-$E2E_SEQ.err
  printf '%s\n' "${helper[*]} nptraffic $*" >"$E2E_OUT.cmd"
  E2E_RC=0
  local t0
  t0=$(e2e_now_ms)
  "${helper[@]}" "$NPTRAFFIC" "$@" >"$E2E_OUT" 2>"$E2E_ERR" || E2E_RC=$?
  E2E_MS=$(($(e2e_now_ms) - t0))
  return 0
}

e2e_now_ms() {
  local t=${EPOCHREALTIME//[!0-9]/}
  echo $((t / 1000))
}

# What the last traffic run printed, for a failure message.
e2e__seen() {
  echo "command: $(<"$E2E_OUT.cmd") (exit $E2E_RC)"
  if [[ -s $E2E_OUT ]]; then
    echo "stdout:"
    head -n 10 "$E2E_OUT" | e2e__indent
  fi
  if [[ -s $E2E_ERR ]]; then
    echo "stderr ($(wc -l <"$E2E_ERR") lines, the first ones):"
    head -n 5 "$E2E_ERR" | e2e__indent
  fi
}

# e2e__count <key> <value>: N of the `key=value count=N` line of the last run, 0 without one.
e2e__count() {
  local n
  n=$(sed -n "s/^$1=$2 count=\([0-9]*\)\$/\1/p" "$E2E_OUT" | head -n 1)
  echo "${n:-0}"
}

# The `ok=N fail=M` summary of the last run, or "" when there is none.
e2e__summary() { grep -m1 -E '^ok=[0-9]+ fail=[0-9]+$' "$E2E_OUT" 2>/dev/null || true; }

# expect_ok <N>: all N attempts of the last run succeeded.
expect_ok() {
  local want="ok=$1 fail=0" got
  got=$(e2e__summary)
  if [[ $got == "$want" && $E2E_RC == 0 ]]; then
    return 0
  fi
  echo "expected '$want', saw '${got:-no summary}'"
  e2e__seen
  return 1
}

# expect_all_fail <N> <regex>: every one of N attempts failed, each with an error matching regex.
expect_all_fail() {
  local n=$1 re=$2 want="ok=0 fail=$1" got bad
  got=$(e2e__summary)
  if [[ $got != "$want" ]]; then
    echo "expected '$want' (every attempt refused), saw '${got:-no summary}'"
    e2e__seen
    return 1
  fi
  bad=$(grep -E '^attempt [0-9]+:' "$E2E_ERR" | grep -Ev -- "$re" || true)
  if [[ -n $bad || $(grep -cE '^attempt [0-9]+:' "$E2E_ERR") -ne $n ]]; then
    echo "expected $n errors matching /$re/, saw:"
    grep -E '^attempt [0-9]+:' "$E2E_ERR" | head -n 5
    return 1
  fi
}

# expect_id <id> <N|+>: backend <id> answered N of the last run's attempts ("+": at least one).
expect_id() {
  local id=$1 want=$2 got
  got=$(e2e__count id "$id")
  if [[ $want == + ]] && ((got > 0)); then return 0; fi
  if [[ $want != + ]] && ((got == want)); then return 0; fi
  echo "expected backend $id to answer $([[ $want == + ]] && echo 'at least once' || echo "$want times"), saw $got"
  grep -E '^id=' "$E2E_OUT" | sed 's/^/  backends: /'
  return 1
}

# expect_only_peer <ip>: every reply of the last run says the backend saw the client as <ip>.
expect_only_peer() {
  local ip=$1 ok peers
  ok=$(sed -n 's/^ok=\([0-9]*\) .*/\1/p' "$E2E_OUT")
  peers=$(grep -E '^peer=' "$E2E_OUT" | tr '\n' ' ')
  if [[ ${ok:-0} -gt 0 && $peers == "peer=$ip count=$ok " ]]; then
    return 0
  fi
  echo "expected the backends to see source $ip on all ${ok:-0} replies, saw: ${peers:-no replies}"
  return 1
}

# expect_faster_than <ms>: the last traffic run took less than ms.
expect_faster_than() {
  if ((E2E_MS < $1)); then return 0; fi
  echo "expected an answer within $1 ms, it took $E2E_MS ms"
  e2e__seen
  return 1
}

# ---------------------------------------------------------------------------------------------
# Held connections: `nptraffic hold` fed from a fifo

# hold_start <name> <exec helper args...> -- <addr:port>: one TCP connection, opened now; waits
# for its `connected` line (10 s). HOLD_CONNECTED is that line.
hold_start() {
  local name=$1
  shift
  local -a helper=()
  while (($#)) && [[ $1 != -- ]]; do
    helper+=("$1")
    shift
  done
  [[ ${1:-} == -- && -n ${2:-} ]] || { echo "hold_start: usage: hold_start <name> <helper...> -- <addr:port>" >&2; return 2; }
  local target=$2
  local fifo=$NP_LAB_DIR/hold-$name.in log=$NP_LAB_DIR/logs/hold-$name.log fd
  mkdir -p "$NP_LAB_DIR/logs"
  mkfifo "$fifo" || return 1
  # Read-write, so that neither this open nor the reader's blocks, and writes never SIGPIPE us.
  exec {fd}<>"$fifo"
  E2E_HOLD_FD[$name]=$fd
  E2E_HOLD_LOG[$name]=$log
  # In place: the recorded PID is nptraffic's own (a direct child, reaped by this shell).
  (
    LAB__INPLACE=1
    "${helper[@]}" "$NPTRAFFIC" hold "$target" --timeout-ms 3000
  ) <"$fifo" >"$log" 2>&1 &
  E2E_HOLD_PID[$name]=$!
  E2E_HOLD_START[$name]=$(lab__pid_start "$!" 2>/dev/null || true)
  lab_wait_for_line "$log" '^connected ' 10 || return 1
  # shellcheck disable=SC2034 # for the test
  HOLD_CONNECTED=$(grep -m1 '^connected ' "$log")
}

# hold_send <name> <token>: sends one line on the held connection and waits (5 s) for the echo;
# prints the reply line "<backend-id> <ip>:<port> <token>". Tokens must be unique per test.
hold_send() {
  local name=$1 token=$2 log=${E2E_HOLD_LOG[$1]:-} fd=${E2E_HOLD_FD[$1]:-}
  [[ -n $log && -n $fd ]] || { echo "no held connection '$name'"; return 1; }
  if ! lab__pid_alive "${E2E_HOLD_PID[$name]}" "${E2E_HOLD_START[$name]}"; then
    echo "the held connection '$name' is gone; its log:"
    sed "s/^/  /" "$log"
    return 1
  fi
  printf '%s\n' "$token" >&"$fd"
  if ! lab_poll 5 grep -Eq -- " $token\$" "$log"; then
    echo "no echo of '$token' within 5 s on the held connection '$name'; its log:"
    sed "s/^/  /" "$log"
    return 1
  fi
  grep -E -m1 -- " $token\$" "$log"
}

# expect_hold_echo <name> <token> <backend-id> <client-ip>: the held connection still carries
# data: the echo of token comes back from backend-id, which saw the client as client-ip. Both
# are literal; '*' accepts any.
expect_hold_echo() {
  local name=$1 token=$2 id=$3 ip=$4 reply got_id got_ip got_token
  reply=$(hold_send "$name" "$token") || { printf '%s\n' "$reply"; return 1; }
  read -r got_id got_ip got_token <<<"$reply"
  got_ip=${got_ip%:*}
  if [[ ($id == '*' || $got_id == "$id") && ($ip == '*' || $got_ip == "$ip") && $got_token == "$token" ]]; then
    return 0
  fi
  echo "expected the reply '$id $ip:<port> $token', saw '$reply'"
  return 1
}

# expect_hold_one_connection <name> <lines> <backend-id>: the held connection's log has <lines>
# lines ('connected' and the echoes) and every echo came from backend-id, which saw one client
# address:port: it is still the one TCP connection it opened with.
expect_hold_one_connection() {
  local log=${E2E_HOLD_LOG[$1]:-} ports
  [[ -n $log ]] || { echo "no held connection '$1'"; return 1; }
  ports=$(grep -E "^$3 " "$log" | awk '{ print $2 }' | sort -u)
  if [[ -n $ports && $(wc -l <<<"$ports") -eq 1 && $(grep -c . "$log") -eq $2 &&
    $(grep -c -E "^$3 " "$log") -eq $(($2 - 1)) ]]; then
    return 0
  fi
  echo "expected 'connected' and $(($2 - 1)) echoes all seen by $3 from one client address:port, saw:"
  cat "$log"
  return 1
}

# ---------------------------------------------------------------------------------------------
# The agent

# expect_pid_gone <pid>: the process does not run any more (a zombie counts as gone).
expect_pid_gone() {
  if lab__pid_alive "$1"; then
    echo "expected pid $1 to be gone, it still runs: $(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)"
    return 1
  fi
}

# agentctl_json <node> args...: `agentctl -o json args...` on the node.
agentctl_json() {
  local node=$1
  shift
  lab_agentctl "$node" -o json "$@"
}

# datapath_counter <node> <direction> <reason>: "packets" of that datapath counter (agentctl
# status -o json; 0 when absent).
datapath_counter() {
  agentctl_json "$1" status |
    jq -r --arg d "$2" --argjson r "$3" \
      '[.counters[]? | select(.direction == $d and .reason == $r) | (.packets | tonumber)] | add // 0'
}

# expect_no_drop <node> <reason>: the node's datapath counted no packet under drop reason
# <reason>, in either direction.
expect_no_drop() {
  local in out
  in=$(datapath_counter "$1" ingress "$2") && out=$(datapath_counter "$1" egress "$2") ||
    { echo "agentctl status -o json failed on $1"; return 1; }
  ((in + out == 0)) && return 0
  echo "expected no packet dropped with reason $2 on $1, saw $in in ingress and $out in egress"
  return 1
}

# expect_refused <exit-code> <regex> <cmd...>: cmd fails with that exit status and a message
# matching the extended regex.
expect_refused() {
  local want=$1 re=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if ((rc == want)) && grep -Eq -- "$re" <<<"$out"; then
    return 0
  fi
  echo "expected exit $want and a message matching /$re/, saw exit $rc and:"
  printf '%s\n' "${out:-(no output)}"
  return 1
}

# lb_frontends <node>: the frontends in the kernel's service map, one "address:port/PROTO" a line.
lb_frontends() {
  agentctl_json "$1" bpf lb list | jq -r '.entries[]? | "\(.address):\(.port)/\(.protocol)"' | sort
}

# expect_frontends <node> <frontend>...: the kernel's service map has exactly these frontends
# ("address:port/PROTO").
expect_frontends() {
  local node=$1 got want
  shift
  got=$(lb_frontends "$node") || { echo "agentctl bpf lb list failed on $node"; return 1; }
  want=$(printf '%s\n' "$@" | sed '/^$/d' | sort)
  if [[ $got == "$want" ]]; then
    return 0
  fi
  echo "expected the service map of $node to hold [${want//$'\n'/ }], saw [${got//$'\n'/ }]"
  return 1
}

# expect_status_ok <node>: `agentctl status` exits 0 and says Ok.
expect_status_ok() {
  local out rc=0 state
  out=$(agentctl_json "$1" status 2>&1) || rc=$?
  state=$(jq -r '.state // empty' <<<"$out" 2>/dev/null)
  if ((rc == 0)) && [[ $state == Ok ]]; then
    return 0
  fi
  echo "expected agentctl status on $1 to exit 0 with state Ok, saw exit $rc, state '${state:-?}': $(jq -r '.message // empty' <<<"$out" 2>/dev/null || echo "$out")"
  return 1
}

# expect_service <node> <name> [jq-condition]: `agentctl service list` has the service (and the
# condition holds for its JSON object).
expect_service() {
  local node=$1 name=$2 cond=${3:-true} out
  out=$(agentctl_json "$node" service list) || { echo "agentctl service list failed on $node"; return 1; }
  if jq -e --arg n "$name" "[.services[]? | select(.name == \$n) | select($cond)] | length == 1" \
    <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected service $name${3:+ with $cond} on $node, saw: $(jq -c '[.services[]? | {name, port, cluster_ip, node_port, backends}]' <<<"$out")"
  return 1
}

expect_no_service() {
  local out
  out=$(agentctl_json "$1" service list) || { echo "agentctl service list failed on $1"; return 1; }
  if jq -e --arg n "$2" '[.services[]? | select(.name == $n)] | length == 0' <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected no service $2 on $1, saw: $(jq -c --arg n "$2" '.services[]? | select(.name == $n)' <<<"$out")"
  return 1
}

# expect_one_backend <N>: all N attempts of the last run were answered by one backend (which one
# is in E2E_ONE_ID afterwards).
expect_one_backend() {
  local ids
  ids=$(grep -E '^id=' "$E2E_OUT" || true)
  E2E_ONE_ID=$(sed -n 's/^id=\(.*\) count=.*/\1/p' <<<"$ids" | head -n 1)
  if [[ $(grep -c . <<<"$ids") -eq 1 && $ids == *" count=$1" ]]; then
    return 0
  fi
  echo "expected one backend to answer all $1 attempts, saw: ${ids//$'\n'/, }"
  e2e__seen
  return 1
}

# expect_backends_at_least <K>: the last run was answered by at least K different backends.
expect_backends_at_least() {
  local n
  n=$(grep -cE '^id=' "$E2E_OUT" || true)
  if ((n >= $1)); then
    return 0
  fi
  echo "expected at least $1 backends to answer, saw $n: $(grep -E '^id=' "$E2E_OUT" | tr '\n' ' ')"
  return 1
}

# expect_reconcile_clean <node>: a whole-map reconcile now finds nothing to repair (the maps are
# what the model says: after a restart, what the agent adopted).
expect_reconcile_clean() {
  local out
  out=$(agentctl_json "$1" reconcile) || { echo "agentctl reconcile failed on $1: $out"; return 1; }
  if jq -e '.report | (.missing // 0) == 0 and (.drifted // 0) == 0 and (.orphans // 0) == 0 and (.error // "") == ""' \
    <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected a clean reconcile on $1, saw: $(jq -c .report <<<"$out")"
  return 1
}

# ---------------------------------------------------------------------------------------------
# Captures on the LAN: tcpdump on a bridge port in the lan namespace (n1, n2, client, router:
# the port each host's interface is plugged into), packets the host sends only (-Q in).

# capture_start <name> <port>: starts capturing everything <port>'s host sends to
# $NP_LAB_DIR/logs/capture-<name>.pcap and waits (10 s) until tcpdump listens.
capture_start() {
  local name=$1 port=$2 log=$NP_LAB_DIR/logs/capture-$1.log
  command -v tcpdump >/dev/null || { echo "tcpdump is missing (Debian package tcpdump)"; return 1; }
  mkdir -p "$NP_LAB_DIR/logs"
  lab_bg "capture-$name" "$log" lab_host_exec lan \
    tcpdump -i "$port" -Q in -nn -U --immediate-mode -s 256 -w "$NP_LAB_DIR/logs/capture-$name.pcap" ip || return 1
  lab_wait_for_line "$log" 'listening on' 10
}

# capture_stop <name>: stops the capture (the file stays for capture_count).
capture_stop() { lab_kill "capture-$1" INT; }

# capture_count <name> <pcap filter>: how many captured packets match the filter.
capture_count() {
  tcpdump -r "$NP_LAB_DIR/logs/capture-$1.pcap" -nn "$2" 2>/dev/null | wc -l
}

# expect_captured <name> <op> <N> <what> <pcap filter>: the capture holds <op> N packets matching
# the filter (op: eq, ge); says what it counted, and the first packets captured, otherwise.
expect_captured() {
  local name=$1 op=$2 n=$3 what=$4 filter=$5 got
  got=$(capture_count "$name" "$filter")
  if [[ $op == eq ]] && ((got == n)); then return 0; fi
  if [[ $op == ge ]] && ((got >= n)); then return 0; fi
  echo "expected $([[ $op == eq ]] && echo "exactly" || echo "at least") $n packets ($what) in capture $name, saw $got (filter: $filter); the capture starts:"
  tcpdump -r "$NP_LAB_DIR/logs/capture-$name.pcap" -nn -v 2>/dev/null | head -n 12 | sed 's/^/  /'
  return 1
}

# ---------------------------------------------------------------------------------------------
# XDP acceleration

# xdp_mode <node> <device>: the device's XDP attach mode as the kernel reports it: "driver",
# "generic", "none".
xdp_mode() {
  lab__vars || return 1
  local mode
  mode=$(ip -n "$LAB_P-$1" -j -d link show dev "$2" | jq -r '.[0].xdp.mode // 0') || return 1
  case $mode in
    0) echo none ;;
    1) echo driver ;;
    2) echo generic ;;
    *) echo "mode $mode" ;;
  esac
}

# expect_xdp_native <node> <device>: the device runs an XDP program in driver (native) mode, and
# it is the one the agent says it attached (status: xdp native, attached).
expect_xdp_native() {
  local node=$1 dev=$2 mode out
  mode=$(xdp_mode "$node" "$dev") || { echo "cannot read $dev on $node"; return 1; }
  if [[ $mode != driver ]]; then
    echo "expected $dev on $node to run XDP in driver mode, the kernel says: $mode"
    return 1
  fi
  out=$(agentctl_json "$node" status) || { echo "agentctl status failed: $out"; return 1; }
  if jq -e --arg d "$dev" '.devices[] | select(.name == $d) | .xdp == "native" and .xdp_attached == true' \
    <<<"$out" >/dev/null; then
    return 0
  fi
  echo "expected status to show $dev with xdp native and attached, saw $(jq -c --arg d "$dev" '.devices[] | select(.name == $d) | {xdp, xdp_attached, xdp_fallback, error}' <<<"$out")"
  return 1
}

# expect_no_xdp <node> <device>: no XDP program on the device.
expect_no_xdp() {
  local mode
  mode=$(xdp_mode "$1" "$2") || { echo "cannot read $2 on $1"; return 1; }
  [[ $mode == none ]] && return 0
  echo "expected no XDP program on $2 of $1, the kernel says: $mode"
  ip -n "$LAB_P-$1" -d link show dev "$2" | sed 's/^/  /'
  return 1
}

# xdp_counter <node> <device> <tx|redirect|pass|deferred|skipped|drop>: the XDP program's counter.
xdp_counter() {
  agentctl_json "$1" status | jq -r --arg d "$2" --arg c "$3" \
    '.devices[] | select(.name == $d) | .xdp_counters[$c] // 0 | tonumber'
}

# xdp_hand_off <node> <device>: true when the device's XDP program marks what it passes on for tc
# (false on a kernel without bpf_xdp_adjust_meta for XDP: status says what XDP leaves to tc, and
# XDP defers new flows and flows to local backends instead of passing them on done).
xdp_hand_off() {
  local limit
  limit=$(agentctl_json "$1" status | jq -r --arg d "$2" '.devices[] | select(.name == $d) | .xdp_limit // ""') || return 2
  [[ -z $limit ]]
}

# expect_xdp_counter_grew <node> <device> <counter> <before> <at least>
expect_xdp_counter_grew() {
  local now
  now=$(xdp_counter "$1" "$2" "$3") || { echo "cannot read the XDP counters of $1"; return 1; }
  if ((now - $4 >= $5)); then
    return 0
  fi
  echo "expected XDP counter $3 of $2 on $1 to grow by at least $5 from $4, it is $now"
  agentctl_json "$1" status | jq -c --arg d "$2" '.devices[] | select(.name == $d) | .xdp_counters'
  return 1
}

# expect_xdp_counter <node> <device> <counter> <value>
expect_xdp_counter() {
  local now
  now=$(xdp_counter "$1" "$2" "$3") || { echo "cannot read the XDP counters of $1"; return 1; }
  ((now == $4)) && return 0
  echo "expected XDP counter $3 of $2 on $1 to be $4, it is $now"
  return 1
}

# tcx_prog <pin> [runner...]: the name of the program the tcx link pinned at <pin> runs, empty
# when there is none. runner (e.g. lab_node_exec n1) runs bpftool where the pin is.
tcx_prog() {
  local pin=$1 id
  shift
  id=$("$@" bpftool -j link show pinned "$pin" 2>/dev/null | jq -r '.prog_id // empty') || true
  [[ -n $id ]] && "$@" bpftool -j prog show id "$id" 2>/dev/null | jq -r '.name // empty'
  return 0
}

# tcx_link_id <pin> [runner...]: the ID of the link pinned at <pin>, empty when there is none.
tcx_link_id() {
  local pin=$1
  shift
  "$@" bpftool -j link show pinned "$pin" 2>/dev/null | jq -r '.id // empty' || true
}

# expect_ports <node> <port>... [-- <port>...]: node's np_ports4_v1 (the ports a flow of ours can use at
# its address) is complete and holds every port before "--" and none after it.
expect_ports() {
  local node=$1 pin value p want=1 byte
  shift
  pin=$NP_LAB_DIR/bpffs/$node/nodepath/np_ports4_v1
  value=$(bpftool -j map lookup pinned "$pin" key 0 0 0 0 2>&1 | jq -r '.value | join(" ")') ||
    { echo "cannot read $pin: $value"; return 1; }
  read -r -a value <<<"$value"
  if ((${#value[@]} != 8200)); then echo "$pin: a value of ${#value[@]} bytes, not 8200"; return 1; fi
  (( value[8192] | value[8193] | value[8194] | value[8195] )) || { echo "$pin is not complete"; return 1; }
  for p in "$@"; do
    if [[ $p == -- ]]; then want=0; continue; fi
    byte=${value[p / 64 * 8 + p % 64 / 8]}
    if (( (byte >> (p % 8) & 1) != want )); then
      echo "$pin: port $p is $( ((want)) && echo "not ")in the bitmap"
      return 1
    fi
  done
}

# backend_ids <node>: the backend IDs in node's np_backend4_v1, one a line.
backend_ids() {
  local keys k
  keys=$(bpftool -j map dump pinned "$NP_LAB_DIR/bpffs/$1/nodepath/np_backend4_v1" | jq -r '.[].key | join(" ")') ||
    return 1
  while read -r -a k; do
    ((${#k[@]} == 4)) && echo $((k[0] | k[1] << 8 | k[2] << 16 | k[3] << 24))
  done <<<"$keys"
  return 0
}

# expect_live_backends <node> [<gone id>...]: node's np_belive4_v1 (the bitmap that spares
# established flows the backend lookup) has a bit for every backend ID in np_backend4_v1, and in
# the words those IDs and the given IDs (backends since deleted) fall in, no bit of an ID the
# backend map lacks: a set bit must always name a backend that exists. At least one backend.
expect_live_backends() {
  local dir=$NP_LAB_DIR/bpffs/$1/nodepath ids id w value b i
  local -A have=() words=()
  ids=$(backend_ids "$1" 2>&1) || { echo "cannot read $dir/np_backend4_v1: $ids"; return 1; }
  shift
  for id in ${ids}; do # one ID a word
    have[$id]=1
    words[$((id / 64))]=1
  done
  ((${#have[@]} > 0)) || { echo "$dir/np_backend4_v1 holds no backend"; return 1; }
  for id in "$@"; do words[$((id / 64))]=1; done
  for w in "${!words[@]}"; do
    value=$(bpftool -j map lookup pinned "$dir/np_belive4_v1" key $((w & 255)) $((w >> 8 & 255)) \
      $((w >> 16 & 255)) $((w >> 24 & 255)) 2>&1 | jq -r '.value | join(" ")') ||
      { echo "cannot read $dir/np_belive4_v1: $value"; return 1; }
    read -r -a value <<<"$value"
    for ((i = 0; i < 64; i++)); do
      id=$((w * 64 + i))
      b=$(( value[i / 8] >> (i % 8) & 1 ))
      if ((b == 0)) && [[ -n ${have[$id]:-} ]]; then
        echo "$dir/np_belive4_v1: backend $id is in the backend map but its bit is clear"
        return 1
      fi
      if ((b == 1)) && [[ -z ${have[$id]:-} ]]; then
        echo "$dir/np_belive4_v1: the bit of backend $id is set but the backend map has no such backend"
        return 1
      fi
    done
  done
}

# expect_link_gone <id>: no link has this ID any more (released: its program is off the device).
expect_link_gone() {
  if bpftool link show id "$1" >/dev/null 2>&1; then
    echo "link $1 still exists: $(bpftool link show id "$1" 2>&1 | head -2)"
    return 1
  fi
}

# expect_status_line <node> <extended regex>: a line of `agentctl status --verbose` matches
# (leading spaces ignored).
expect_status_line() {
  local out
  out=$(lab_agentctl "$1" status --verbose 2>&1) || true
  if sed 's/^ *//' <<<"$out" | grep -Eq -- "$2"; then
    return 0
  fi
  echo "expected a line of agentctl status --verbose on $1 to match /$2/, saw:"
  printf '%s\n' "$out" | sed 's/^/  /'
  return 1
}
