#!/usr/bin/env bash
# Prints what the verifier says about each program of BPF objects: stack depth (of 512 bytes)
# and instructions processed (of 1,000,000). Loads them with `bpftool prog loadall` in a private
# mount namespace on a private bpffs (pinned maps go there and vanish with it); the machine's
# /sys/fs/bpf, network namespaces and devices are not touched. Needs root.
#
#   bench/bpf_stack.sh build/bpf/host.bpf.o [more.bpf.o ...]
set -euo pipefail
[[ $# -gt 0 ]] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "bpf_stack: needs root (bpftool prog loadall)" >&2; exit 1; }
for obj in "$@"; do
  [[ -f $obj ]] || { echo "bpf_stack: no such object $obj" >&2; exit 1; }
  echo "== $obj"
  unshare -m --propagation private bash -c '
    set -e
    mount -t bpf bpf /sys/fs/bpf
    bpftool -d prog loadall "$1" /sys/fs/bpf/progs 2>&1 |
      awk "/-- BEGIN PROG LOAD LOG --/ { prog = \$3; gsub(/[:\x27]/, \"\", prog) }
           /^stack depth/ { stack = \$3 }
           /^processed [0-9]+ insns/ { printf \"%-24s stack %4s  insns %8s\n\", prog, stack, \$2 }
           /failed to load/ { print; failed = 1 }
           END { exit failed }"
  ' bash "$obj"
done
