#!/usr/bin/env bash
# Installs the APISIX Ingress Controller 1.7.0 in composite mode (no etcd of its own), as the seed
# does, and makes its gateway Service a LoadBalancer (an address from the LB IP pool).
# Usage: install-apisix.sh [--dry-run] [--dir DIR]
# The gateway Service's namespace/name (unverified here, no network) can be overridden with
# APISIX_NAMESPACE / APISIX_GATEWAY_SERVICE.
set -euo pipefail

dry_run=0
dir=ingress-apisix-1.7.0
ns="${APISIX_NAMESPACE:-ingress-apisix}"
svc="${APISIX_GATEWAY_SERVICE:-ingress-apisix-gateway}"
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --dir) dir="${2:?--dir needs a path}"; shift ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install-apisix: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

run() {
  if ((dry_run)); then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

if ((!dry_run)) && ! command -v kubectl >/dev/null 2>&1; then
  echo "install-apisix: kubectl not found (k3s provides it: scripts/install-k3s.sh)" >&2
  exit 1
fi

if [[ ! -d $dir ]]; then
  run git clone --depth 1 --branch 1.7.0 https://github.com/apache/apisix-ingress-controller.git "$dir"
fi
# kubectl apply is idempotent.
run kubectl apply -k "$dir/samples/deploy/crd/v1/"
run kubectl apply -f "$dir/samples/deploy/composite.yaml"
run kubectl -n "$ns" patch service "$svc" -p '{"spec":{"type":"LoadBalancer"}}'
echo "install-apisix: done; check with: kubectl -n $ns get svc $svc (EXTERNAL-IP)"
