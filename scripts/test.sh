#!/usr/bin/env bash
# Sets up the machine if needed, builds, and runs every test tier: unit (no root), bpf
# (BPF_PROG_TEST_RUN, root), e2e (the netns lab with real agents, root), k8s (the lab with a
# real kube-apiserver + etcd built by setup.sh, root) and cluster (real kubelets + containerd on
# the lab's nodes, root). Exits non-zero on any
# failure. NP_TEST_LABELS=unit (or "unit|bpf") runs a subset; NP_BUILD_DIR picks the build dir.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${NP_BUILD_DIR:-$repo/build}
labels=${NP_TEST_LABELS:-unit|bpf|e2e|k8s|cluster}

if [[ $(id -u) -ne 0 && $labels != unit ]]; then
  echo "test: the bpf, e2e, k8s and cluster tiers need root (run as root, or NP_TEST_LABELS=unit)" >&2
  exit 1
fi

start=$SECONDS
"$repo/scripts/setup.sh"
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build"

# Every test must belong to a tier: a test without a label would silently never run.
unlabelled=$(ctest --test-dir "$build" -N -LE '^(unit|bpf|e2e|k8s|cluster)$' | sed -n 's/^ *Test *#[0-9]*: //p')
if [[ -n $unlabelled ]]; then
  echo "test: tests without a tier label: $unlabelled" >&2
  exit 1
fi

status=0
ctest --test-dir "$build" --output-on-failure --no-tests=error -L "^($labels)$" || status=$?
echo "test: labels ${labels}: $([[ $status -eq 0 ]] && echo passed || echo FAILED) in $((SECONDS - start)) s"
exit "$status"
