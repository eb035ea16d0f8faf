# shellcheck shell=bash
# jq for assertions. jq 1.6's -e (exit status from the last output) exits 0 when its input holds
# no JSON value at all, so `jq -e '.ready' <<<"$out"` passed on an empty "$out": a check that
# could not fail whenever the command under test printed nothing. With -e (or --exit-status) and
# without -n, this wrapper refuses input that is empty or only whitespace, on stdin or in a file
# argument, with exit status 4 (jq's own "no valid result was ever produced") and a message on
# stderr. Everything else is jq's. Every tier's lib.sh sources this file through test/e2e/lib.sh.
#
# Options taking values (--arg, --argjson, --slurpfile, --rawfile, -L, -f) are skipped when
# looking for the filter; what follows the filter are input files; --args/--jsonargs end the
# files.
jq() {
  local arg exit_status=0 null_input=0 filter_seen=0 skip=0 from_file=0
  local -a files=()
  for arg in "$@"; do
    if ((skip > 0)); then skip=$((skip - 1)); continue; fi
    if ((filter_seen)); then
      case $arg in --args|--jsonargs) break ;; esac
      files+=("$arg")
      continue
    fi
    case $arg in
      --arg|--argjson|--slurpfile|--rawfile) skip=2 ;;
      --args|--jsonargs) break ;;
      --exit-status) exit_status=1 ;;
      --null-input) null_input=1 ;;
      --from-file) from_file=1; skip=1 ;;
      --*) ;;
      -L) skip=1 ;;
      -f) from_file=1; skip=1 ;;
      -?*)
        [[ $arg == *e* ]] && exit_status=1
        [[ $arg == *n* ]] && null_input=1
        ;;
      *) filter_seen=1 ;;
    esac
  done
  ((from_file)) && filter_seen=1  # not used by the tests; judged like the plain form below
  if ((!exit_status || null_input)); then
    command jq "$@"
    return
  fi
  if ((${#files[@]} == 0)); then
    local input
    input=$(cat; printf x)
    input=${input%x}
    if [[ -z ${input//[[:space:]]/} ]]; then
      echo "jq -e: empty input, nothing to judge" >&2
      return 4
    fi
    command jq "$@" < <(printf '%s' "$input")
    return
  fi
  local f
  for f in "${files[@]}"; do
    if [[ -r $f && -z $(tr -d '[:space:]' <"$f" | head -c1) ]]; then
      echo "jq -e: $f is empty, nothing to judge" >&2
      return 4
    fi
  done
  command jq "$@"
}
