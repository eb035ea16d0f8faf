#!/usr/bin/env bash
# Installs everything the build, the tests and the lab need. Idempotent; quiet when nothing is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
  libmnl-dev libssl-dev libyaml-cpp-dev libcli11-dev
  libboost1.81-dev libboost-json1.81-dev libboost-system1.81-dev
  libboost-program-options1.81-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus-cpp-dev  # the agent's Prometheus exposition (its core library; we serve HTTP with Beast)
  # tests and lab
  iproute2 iptables tcpdump ethtool iputils-ping jq procps psmisc util-linux
  iputils-arping  # L2 announcements: the LAN client ARPs for LoadBalancer IPs (test/k8s/l2_test.sh)
  nftables conntrack gnuplot-nox  # the kube-proxy comparison (bench/compare)
  containernetworking-plugins  # /usr/lib/cni: loopback, and ptp + host-local as the reference in CNI tests
  python3-yaml  # the chart test reads rendered manifests
  python3-prometheus-client  # the metrics e2e test parses /metrics with the real parser
  shellcheck  # the ShellcheckScripts unit test
  busybox-static  # the node image's shell for its init steps (scripts/image.sh)
  containerd runc  # the cluster tier (scripts/lib/cluster.sh): each lab node runs its own containerd
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: must run as root to install packages" >&2
    exit 1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The cluster tier starts a containerd per lab node, never the machine's: where the package
  # brought a system containerd up (systemd without a policy-rc.d refusing it), stop and disable it.
  if [[ " ${missing[*]} " == *" containerd "* ]] && [[ -d /run/systemd/system ]] &&
    systemctl is-enabled containerd.service >/dev/null 2>&1; then
    echo "setup: stopping and disabling the system containerd.service (the tests run their own)"
    systemctl disable --now containerd.service >/dev/null 2>&1 || true
  fi
fi

# Upstream Go tools the tests drive, built from their pinned modules (test/tools/go/) into a cache
# outside the checkout; a no-op when the pinned version is built already.
source "$(dirname "${BASH_SOURCE[0]}")/lib/gotools.sh"
np_go_tool cnitool >/dev/null
# the k8s tier: a real kube-apiserver + etcd (test/k8s/tools/)
for t in etcd etcdctl kube-apiserver kubectl; do np_go_tool "$t" >/dev/null; done
for t in hubble hubble-relay; do np_go_tool "$t" >/dev/null; done
# the chart tests (deploy/helm/nodepath)
np_go_tool helm >/dev/null
# the cluster tier (test/cluster): real kubelets and the rest of the control plane
for t in kubelet kube-controller-manager kube-scheduler; do np_go_tool "$t" >/dev/null; done
