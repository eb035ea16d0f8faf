#!/usr/bin/env bash
# A real kube-apiserver + etcd in a lab (scripts/lib/k8s.sh): `up` brings the lab topology up if
# needed, generates the CA, serving certificate, service-account keys and the admin kubeconfig,
# and starts etcd and kube-apiserver in node n1's namespace on 192.168.10.100:6443, then
# applies nodepath's CRDs (deploy/crds, waiting until Established) and RBAC (deploy/rbac); `down`
# stops them (apiserver first) and, when `up` made the lab, the lab too.
#   NP_LAB_PREFIX=k8s1 scripts/k8s-env.sh up
#   NP_LAB_PREFIX=k8s1 scripts/k8s-env.sh kubectl get svc -A
#   NP_LAB_PREFIX=k8s1 scripts/k8s-env.sh down
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib/k8s.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s.sh"

cmd=${1:-}
shift || true
k8s__vars
case $cmd in
  up)
    if ! lab_is_up; then
      lab_up
      touch "$LAB_DIR/.k8s-env-made-lab"
    fi
    if ! k8s_up; then
      [[ -e $LAB_DIR/.k8s-env-made-lab ]] && lab_down
      exit 1
    fi
    echo "kube-apiserver: $K8S_SERVER  kubeconfig: $K8S_KUBECONFIG"
    ;;
  down)
    rc=0
    k8s_down || rc=1
    if [[ -e $LAB_DIR/.k8s-env-made-lab ]]; then lab_down || rc=1; fi
    exit $rc
    ;;
  kubectl) k8s_kubectl "$@" ;;
  etcdctl) k8s_etcdctl "$@" ;;
  *)
    echo "usage: $0 up|down|kubectl args...|etcdctl args..." >&2
    exit 2
    ;;
esac
