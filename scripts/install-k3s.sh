#!/usr/bin/env bash
# Installs k3s on etcd for nodepath, as the seed does for Cilium: etcd from Debian, k3s without
# flannel, network policy, kube-proxy, servicelb, traefik and metrics-server; optionally a docker.io
# mirror; then imports nodepath's image archives (made by scripts/image.sh: the node image, and
# `--image hubble-relay` for hubble.relay.enabled) into k3s's containerd.
# Usage: install-k3s.sh [--dry-run] [--mirror URL] [--image ARCHIVE]...
set -euo pipefail

dry_run=0
mirror=""
images=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --mirror) mirror="${2:?--mirror needs a URL}"; shift ;;
    --image) images+=("${2:?--image needs an archive path}"); shift ;;
    -h | --help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install-k3s: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

INSTALL_K3S_EXEC='--datastore-endpoint=http://127.0.0.1:2379 --disable-network-policy --flannel-backend=none --disable-kube-proxy --disable=traefik --disable=servicelb --disable=metrics-server --prefer-bundled-bin'

run() {
  if ((dry_run)); then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

if ((!dry_run)) && [[ $(id -u) -ne 0 ]]; then
  echo "install-k3s: must run as root" >&2
  exit 1
fi
for image in "${images[@]}"; do
  if [[ ! -f $image ]]; then
    echo "install-k3s: image archive '$image' not found (build it with scripts/image.sh)" >&2
    exit 1
  fi
done

# 1. etcd from Debian (idempotent: apt skips what is installed).
run apt-get install -y etcd-server etcd-client
run systemctl enable --now etcd

# 2. The docker.io mirror, before k3s starts so its first pulls use it.
if [[ -n $mirror ]]; then
  if ((dry_run)); then
    echo "+ write /etc/rancher/k3s/registries.yaml (docker.io -> $mirror)"
  else
    mkdir -p /etc/rancher/k3s
    printf 'mirrors:\n  docker.io:\n    endpoint:\n      - "%s"\n' "$mirror" >/etc/rancher/k3s/registries.yaml
  fi
fi

# 3. k3s (skipped when it is already installed and running).
if command -v k3s >/dev/null 2>&1 && systemctl is-active --quiet k3s 2>/dev/null; then
  echo "install-k3s: k3s already installed and active"
  [[ -n $mirror ]] && run systemctl restart k3s
else
  if ((dry_run)); then
    echo "+ curl -sfL https://get.k3s.io | INSTALL_K3S_EXEC='$INSTALL_K3S_EXEC' sh -"
  else
    curl -sfL https://get.k3s.io | INSTALL_K3S_EXEC="$INSTALL_K3S_EXEC" sh -
  fi
fi

# 4. nodepath's images into k3s's containerd (no registry needed).
for image in "${images[@]}"; do
  run k3s ctr -n k8s.io images import "$image"
done

echo "install-k3s: done; check with: kubectl get nodes (NotReady until nodepath's conflist appears)"
