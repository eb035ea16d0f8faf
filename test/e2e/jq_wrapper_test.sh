#!/usr/bin/env bash
# The assertion jq (test/e2e/jq.sh): -e refuses empty input, and is jq otherwise.
set -u
# shellcheck source=SCRIPTDIR/jq.sh
source "$(dirname "${BASH_SOURCE[0]}")/jq.sh"
failed=0
expect() {  # expect <status> <name> <command...>
  local want=$1 name=$2 got
  shift 2
  "$@" >/dev/null 2>&1
  got=$?
  if ((got == want)); then echo "PASS $name"; else echo "FAIL $name: exit $got, expected $want"; failed=1; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/empty.json"
echo '{"a": 1}' >"$tmp/a.json"
expect 4 "empty here-string" eval 'jq -e ".a" <<<""'
expect 4 "whitespace only" eval 'printf "  \n\n" | jq -e ".a"'
expect 4 "no input at all" eval 'jq -e ".a" </dev/null'
expect 4 "slurped raw empty" eval 'jq -R -s -e "[split(\"\n\")[] | fromjson?] | length >= 0" <<<""'
expect 4 "combined short flags" eval 'jq -re ".a" <<<""'
expect 4 "--exit-status" eval 'jq --exit-status ".a" <<<""'
expect 4 "with --arg before the filter" eval 'jq -e --arg x 1 ".a" <<<""'
expect 4 "empty file argument" jq -e '.a' "$tmp/empty.json"
expect 0 "a true result" eval 'jq -e ".a == 1" <<<"{\"a\": 1}"'
expect 1 "a false result" eval 'jq -e ".a == 2" <<<"{\"a\": 1}"'
expect 4 "no match" eval 'jq -e "select(.a == 2)" <<<"{\"a\": 1}"'
expect 0 "file argument" jq -e '.a == 1' "$tmp/a.json"
expect 0 "--arg value looking like a filter" eval 'jq -e --arg x ".b" ".a == 1" <<<"{\"a\": 1}"'
expect 0 "-n needs no input" jq -n -e 'true'
expect 0 "without -e, empty input is jq's" eval 'jq ".a" <<<""'
expect 0 "stream judged by jq" eval 'printf "{\"a\":1}\n{\"a\":1}\n" | jq -e ".a == 1"'
out=$(jq -r '.a' <<<'{"a": "x y"}')
if [[ $out == "x y" ]]; then echo "PASS output passes through"; else echo "FAIL output passes through: '$out'"; failed=1; fi
exit "$failed"
