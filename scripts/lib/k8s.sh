# shellcheck shell=bash
# A real kube-apiserver + etcd for the k8s tier, inside a lab (DESIGN.md §7), as a library:
#   source scripts/lib/k8s.sh
#   k8s_up            # certs, etcd, kube-apiserver in node n1's namespace on :6443; waits for /readyz,
#                     # then applies deploy/crds (waiting until Established) and deploy/rbac
#   k8s_kubectl get svc -A
#   k8s_apiserver_restart
#   k8s_down          # apiserver first, then etcd, by PID; the certs go with the lab dir
# The lab must be up (scripts/lib/lab.sh, NP_LAB_PREFIX). Everything lives under
# $NP_LAB_DIR/k8s: ca.{crt,key}, apiserver.{crt,key}, sa.{key,pub}, admin.{crt,key},
# admin.kubeconfig (what agents and kubectl use), etcd/ (data), *.log. Processes are the lab's
# (lab_bg "k8s-etcd" / "k8s-apiserver" in n1's namespace), so lab_down stops them too.
#
# Environment: K8S_NODE (default n1), K8S_ADDR (its LAN address, default 192.168.10.100; the
# apiserver refuses a loopback advertise address), K8S_WATCH_CACHE (default true; false makes an
# `etcdctl compact` answer old watches with 410), K8S_DISABLE_ADMISSION_PLUGINS (default
# ServiceAccount: no controller-manager makes the "default" ServiceAccounts; the cluster tier, which
# runs one, sets it empty).

if [[ -n ${_NP_K8S_LOADED:-} ]]; then
  return 0
fi
_NP_K8S_LOADED=1

K8S_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=SCRIPTDIR/lab.sh
source "$K8S_REPO/scripts/lib/lab.sh"
# shellcheck source=SCRIPTDIR/gotools.sh
source "$K8S_REPO/scripts/lib/gotools.sh"

k8s__log() { printf 'k8s: %s\n' "$*" >&2; }

k8s__vars() {
  lab__vars || return 1
  K8S_NODE=${K8S_NODE:-n1}
  K8S_ADDR=${K8S_ADDR:-192.168.10.100}
  K8S_PORT=${K8S_PORT:-6443}
  K8S_DIR=$LAB_DIR/k8s
  K8S_SERVER=https://$K8S_ADDR:$K8S_PORT
  K8S_KUBECONFIG=$K8S_DIR/admin.kubeconfig
}

# The tools (built on first use; a missing toolchain is a failure, not a skip).
k8s__tools() {
  K8S_ETCD=$(np_go_tool etcd) || return 1
  K8S_ETCDCTL=$(np_go_tool etcdctl) || return 1
  K8S_APISERVER=$(np_go_tool kube-apiserver) || return 1
  K8S_KUBECTL=$(np_go_tool kubectl) || return 1
}

k8s__certs() {
  local d=$K8S_DIR
  mkdir -p "$d" && chmod 700 "$d" || return 1
  [[ -s $d/admin.kubeconfig ]] && return 0
  (
    set -e
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 7 -subj /CN=nodepath-test-ca 2>/dev/null
    cat >apiserver.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$K8S_ADDR,IP:127.0.0.1,IP:10.43.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile apiserver.ext \
      -out apiserver.crt 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile client.ext \
      -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    cat >admin.kubeconfig.tmp <<KC
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: $K8S_SERVER
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 admin.crt)
    client-key-data: $(base64 -w0 admin.key)
contexts:
- name: lab
  context:
    cluster: lab
    user: admin
current-context: lab
KC
    mv admin.kubeconfig.tmp admin.kubeconfig
  ) || { k8s__log "generating certificates in $d failed"; return 1; }
}

# k8s_kubectl args...: kubectl as admin, from the apiserver's node.
k8s_kubectl() {
  k8s__vars || return 1
  [[ -n ${K8S_KUBECTL:-} ]] || K8S_KUBECTL=$(np_go_tool kubectl) || return 1
  # shellcheck disable=SC2086 # K8S_KUBECTL_ARGS: extra flags, split on spaces
  lab_node_exec "$K8S_NODE" "$K8S_KUBECTL" --kubeconfig "$K8S_KUBECONFIG" ${K8S_KUBECTL_ARGS:-} "$@"
}

# k8s_etcdctl args...: etcdctl against the lab's etcd.
k8s_etcdctl() {
  k8s__vars || return 1
  [[ -n ${K8S_ETCDCTL:-} ]] || K8S_ETCDCTL=$(np_go_tool etcdctl) || return 1
  lab_node_exec "$K8S_NODE" "$K8S_ETCDCTL" --endpoints=http://127.0.0.1:2379 "$@"
}

k8s__readyz() {
  lab_node_exec "$K8S_NODE" curl -sf --max-time 2 --cacert "$K8S_DIR/ca.crt" --cert "$K8S_DIR/admin.crt" \
    --key "$K8S_DIR/admin.key" "https://$K8S_ADDR:$K8S_PORT/readyz" >/dev/null 2>&1
}
k8s__etcd_healthy() { k8s_etcdctl endpoint health >/dev/null 2>&1; }

k8s__start_etcd() {
  lab_bg k8s-etcd "$K8S_DIR/etcd.log" lab_node_exec "$K8S_NODE" "$K8S_ETCD" --name default \
    --data-dir "$K8S_DIR/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380 \
    --unsafe-no-fsync --log-level warn || return 1
  lab_poll 30 k8s__etcd_healthy || { k8s__log "etcd is not healthy after 30 s (see $K8S_DIR/etcd.log)"; return 1; }
}

k8s__start_apiserver() { # [name]: a second one needs its own name (and K8S_PORT)
  local t0=$SECONDS name=${1:-k8s-apiserver}
  lab_bg "$name" "$K8S_DIR/$name.log" lab_node_exec "$K8S_NODE" "$K8S_APISERVER" \
    --etcd-servers http://127.0.0.1:2379 --bind-address 0.0.0.0 --advertise-address "$K8S_ADDR" \
    --secure-port "$K8S_PORT" --tls-cert-file "$K8S_DIR/apiserver.crt" \
    --tls-private-key-file "$K8S_DIR/apiserver.key" --client-ca-file "$K8S_DIR/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$K8S_DIR/sa.pub" --service-account-signing-key-file "$K8S_DIR/sa.key" \
    --service-cluster-ip-range 10.43.0.0/16 --authorization-mode RBAC --allow-privileged=true \
    --disable-admission-plugins "${K8S_DISABLE_ADMISSION_PLUGINS-ServiceAccount}" --enable-priority-and-fairness=false --profiling=false \
    --watch-cache="${K8S_WATCH_CACHE:-true}" --kubelet-preferred-address-types InternalIP,Hostname \
    --v 1 || return 1
  lab_poll 90 k8s__readyz || { k8s__log "kube-apiserver not ready after 90 s (see $K8S_DIR/$name.log)"; return 1; }
  k8s__log "kube-apiserver ready at $K8S_SERVER in $((SECONDS - t0)) s"
}

# k8s_up: certificates, etcd and kube-apiserver; stops what it started when a step fails.
k8s_up() {
  k8s__vars || return 1
  lab_is_up || { k8s__log "lab $LAB_P is not up"; return 1; }
  k8s__tools || return 1
  k8s__certs || return 1
  if ! k8s__start_etcd || ! k8s__start_apiserver || ! k8s_deploy_apply; then
    k8s_down
    return 1
  fi
}

# k8s_deploy_apply: nodepath's CRDs (deploy/crds) and RBAC (deploy/rbac), as the cluster would have
# them; waits until the API server reports the CRDs Established (their resources are served).
k8s_deploy_apply() {
  k8s__vars || return 1
  local out
  out=$(k8s_kubectl apply --server-side --force-conflicts -f "$K8S_REPO/deploy/crds" 2>&1) ||
    { k8s__log "applying deploy/crds failed: $out"; return 1; }
  out=$(k8s_kubectl wait --for condition=established --timeout=30s -f "$K8S_REPO/deploy/crds" 2>&1) ||
    { k8s__log "the CRDs are not Established after 30 s: $out"; return 1; }
  out=$(k8s_kubectl apply -f "$K8S_REPO/deploy/rbac" 2>&1) ||
    { k8s__log "applying deploy/rbac failed: $out"; return 1; }
}

# k8s_apiserver_stop / k8s_apiserver_start [name]: for restart tests (etcd keeps running). With a
# name (and another K8S_PORT) a second apiserver on the same etcd, one the agents do not know.
k8s_apiserver_stop() { k8s__vars && lab_kill "${1:-k8s-apiserver}"; }
k8s_apiserver_start() { k8s__vars && k8s__tools && k8s__start_apiserver "${1:-}"; }
k8s_apiserver_restart() { k8s_apiserver_stop && k8s_apiserver_start; }

# k8s_down: the apiserver, then etcd (by PID); the data and certs stay in the lab dir.
k8s_down() {
  k8s__vars || return 1
  local rc=0
  local f
  for f in "$LAB_DIR"/pids/k8s-apiserver*.pid; do
    [[ -e $f ]] || continue
    f=${f##*/}
    lab_kill "${f%.pid}" || rc=1
  done
  lab_kill k8s-etcd || rc=1
  return $rc
}
