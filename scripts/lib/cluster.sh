# shellcheck shell=bash
# The real-node tier (issue 11, DESIGN.md §7): kubelet + containerd + runc on the lab's nodes, as a
# library:
#   source scripts/lib/cluster.sh
#   cluster_up        # k8s_up (etcd, kube-apiserver in n1) + kube-controller-manager and
#                     # kube-scheduler; on n1 and n2: a private mount namespace, containerd with the
#                     # local pause and echo images imported, kubelet (Node registered)
#   cluster_kubectl get nodes
#   cluster_down      # kubelets, containers, containerd, the mount namespaces, the v1 cgroups
#
# Each node runs in its lab netns AND a mount namespace of its own, held by a `sleep` process
# (lab_bg "node-mnt-<node>") and entered with nsenter --mount --net: lab_node_exec enters it too
# once it exists, so agents, kubectl and agentctl on a node see what its kubelet sees. (`ip netns
# exec` would remount /sys and lose the cgroup mounts.) In it, per node:
#   /run/netns, /run/containerd   tmpfs (containerd's pod netns, shim sockets)
#   /var/lib/cni, /var/log, /var/lib/kubelet
#                                 $LAB_DIR/cluster/<node>/{cni-state,log,kubelet-var} (kubelet
#                                 hard-codes /var/log/pods and /var/lib/kubelet/device-plugins)
#   /etc/cni/net.d, /opt/cni/bin  the lab's $LAB_DIR/<node>/cni/{net.d,bin} (the agent's conflist,
#                                 nodepath-cni and loopback)
#   /sys/fs/bpf                   a bpffs of its own
#   /run/nodepath                 $LAB_DIR/cluster/<node>/run-nodepath (a DaemonSet agent's run dir:
#                                 its socket, lock and state, one per node)
#   /run/nodepath/cgroupv2        the node's cgroup2 cgroup (np-$P/<node>, where its pods' cgroups
#                                 are): a DaemonSet's cgroup.hostRoot that is never the machine's root
#   /proc/sys/{vm/overcommit_memory,kernel/panic,kernel/panic_on_oops}
#                                 files holding the values kubelet wants, so it never writes the
#                                 machine's own
# kubelet: cgroupfs driver, cgroupRoot /np-$P/<node> (created in every v1 hierarchy; on cgroup2 it is
# the lab's node cgroup, so runc puts the containers below it and lab_down's cgroup.kill reaches
# them), failCgroupV1 false, failSwapOn false, --node-ip = the node's LAN address, the admin
# kubeconfig (no node bootstrap). containerd: its own root/state/sockets under
# $LAB_DIR/cluster/<node>/containerd, sandbox_image = the local pause image, runc with cgroupfs,
# restrict_oom_score_adj (root here lacks CAP_SYS_RESOURCE).
#
# Images (built once per source hash into ${NP_CLUSTER_IMAGE_CACHE:-/var/cache/nodepath/cluster-images},
# with scripts/lib/oci.sh):
#   localhost/np-pause:1  a static C pause
#   localhost/np-echo:1   a static nptraffic: `nptraffic serve --tcp 8080 --udp 8080`
# Pods use them with imagePullPolicy: Never. cluster_image_import <node> <archive> adds another
# (nodepath's own, scripts/image.sh).
#
# Once mounted, the node's mount namespace is made rshared (its own peer groups: the machine's
# mounts were made private first, so nothing propagates to or from them): containerd refuses a
# Bidirectional hostPath (the chart's bpffs) on a mount that is not shared, and a HostToContainer
# one on a mount that is neither shared nor slave.
#
# The API server runs the ServiceAccount admission plugin here (K8S_DISABLE_ADMISSION_PLUGINS
# empty): kube-controller-manager's serviceaccount and root-ca-cert-publisher controllers make the
# "default" ServiceAccounts and kube-root-ca.crt, so pods get their projected token and CA (a
# DaemonSet's agent uses them, in-cluster).

if [[ -n ${_NP_CLUSTER_LOADED:-} ]]; then
  return 0
fi
_NP_CLUSTER_LOADED=1

CLUSTER_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=SCRIPTDIR/k8s.sh
source "$CLUSTER_REPO/scripts/lib/k8s.sh"
# shellcheck source=SCRIPTDIR/oci.sh
source "$CLUSTER_REPO/scripts/lib/oci.sh"

CLUSTER_PAUSE_IMAGE=localhost/np-pause:1
CLUSTER_ECHO_IMAGE=localhost/np-echo:1
# Host directories a node's mount namespace mounts over: created (empty) when missing, removed on
# down when still empty (rmdir fails harmlessly while another run's node uses them).
CLUSTER_MOUNTPOINTS=(/var/lib/cni /etc/cni/net.d /opt/cni/bin /run/containerd /var/lib/kubelet
  /run/nodepath/cgroupv2)

cluster__log() { printf 'cluster: %s\n' "$*" >&2; }

cluster__vars() {
  k8s__vars || return 1
  CLUSTER_DIR=$LAB_DIR/cluster
  CLUSTER_IMAGES=${NP_CLUSTER_IMAGE_CACHE:-/var/cache/nodepath/cluster-images}
}

cluster__node_ip() { echo "192.168.10.$((99 + $(lab__node_index "$1")))"; }

# The v1 hierarchies (mount points of type cgroup), one a line.
cluster__v1_mounts() {
  local line rest mp
  while IFS= read -r line; do
    rest=${line#* - }
    if [[ ${rest%% *} == cgroup ]]; then
      read -r _ _ _ _ mp _ <<<"$line"
      printf '%s\n' "$mp"
    fi
  done </proc/self/mountinfo
}

# ---------------------------------------------------------------------------------------------
# Images

cluster__images() {
  local key out=$CLUSTER_IMAGES
  key=$(cat "$CLUSTER_REPO/test/tools/nptraffic.cpp" "$CLUSTER_REPO/test/cluster/pause.c" \
    "$CLUSTER_REPO/scripts/lib/oci.sh" | sha256sum | cut -c1-16)
  if [[ -s $out/$key/pause.tar && -s $out/$key/echo.tar ]]; then
    CLUSTER_PAUSE_TAR=$out/$key/pause.tar CLUSTER_ECHO_TAR=$out/$key/echo.tar
    return 0
  fi
  local t0=$SECONDS work
  work=$(mktemp -d "${TMPDIR:-/tmp}/cluster-img.XXXXXX") || return 1
  # && rather than set -e: errexit is off in a subshell whose status is tested.
  if ! { mkdir -p "$work/pause" "$work/echo" "$out/$key" &&
    cc -static -O2 -Wall -Werror -o "$work/pause/pause" "$CLUSTER_REPO/test/cluster/pause.c" &&
    c++ -static -O2 -std=c++20 -pthread -o "$work/echo/nptraffic" "$CLUSTER_REPO/test/tools/nptraffic.cpp" &&
    strip "$work/pause/pause" "$work/echo/nptraffic" &&
    oci_image "$out/$key/pause.tar" "$CLUSTER_PAUSE_IMAGE" "$work/pause" /pause >/dev/null &&
    oci_image "$out/$key/echo.tar" "$CLUSTER_ECHO_IMAGE" "$work/echo" /nptraffic serve --id echo --tcp 8080 --udp 8080 >/dev/null; }; then
    rm -rf "$work" "${out:?}/$key"
    cluster__log "building the pause and echo images failed"
    return 1
  fi
  rm -rf "$work"
  cluster__log "images built in $((SECONDS - t0)) s ($out/$key)"
  CLUSTER_PAUSE_TAR=$out/$key/pause.tar CLUSTER_ECHO_TAR=$out/$key/echo.tar
}

# ---------------------------------------------------------------------------------------------
# Control plane: kube-controller-manager and kube-scheduler next to the apiserver (n1's netns).

cluster__control_plane() {
  local kcm ksched
  kcm=$(np_go_tool kube-controller-manager) || return 1
  ksched=$(np_go_tool kube-scheduler) || return 1
  lab_bg k8s-controller-manager "$K8S_DIR/k8s-controller-manager.log" lab_node_exec "$K8S_NODE" "$kcm" \
    --kubeconfig "$K8S_KUBECONFIG" --authentication-kubeconfig "$K8S_KUBECONFIG" \
    --authorization-kubeconfig "$K8S_KUBECONFIG" --leader-elect=false --bind-address 127.0.0.1 \
    --service-account-private-key-file "$K8S_DIR/sa.key" --root-ca-file "$K8S_DIR/ca.crt" \
    --use-service-account-credentials=false --service-cluster-ip-range 10.43.0.0/16 \
    --allocate-node-cidrs=false --controllers '*,-nodeipam,-cloud-node-lifecycle' --profiling=false --v 1 || return 1
  lab_bg k8s-scheduler "$K8S_DIR/k8s-scheduler.log" lab_node_exec "$K8S_NODE" "$ksched" \
    --kubeconfig "$K8S_KUBECONFIG" --authentication-kubeconfig "$K8S_KUBECONFIG" \
    --authorization-kubeconfig "$K8S_KUBECONFIG" --leader-elect=false --bind-address 127.0.0.1 \
    --profiling=false --v 1 || return 1
  lab_poll 30 cluster__healthz 10257 || { cluster__log "kube-controller-manager is not healthy after 30 s (see $K8S_DIR/k8s-controller-manager.log)"; return 1; }
  lab_poll 30 cluster__healthz 10259 || { cluster__log "kube-scheduler is not healthy after 30 s (see $K8S_DIR/k8s-scheduler.log)"; return 1; }
}
cluster__healthz() { lab_node_exec "$K8S_NODE" curl -skf --max-time 2 "https://127.0.0.1:$1/healthz" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# Nodes

# The v1 cgroups of the node: /np-$P/<node> in every hierarchy (cpuset: cpus and mems copied
# down, or nothing could join it).
cluster__cgroups_v1() {
  local node=$1 mp d
  while IFS= read -r mp; do
    for d in "$mp/np-$LAB_P" "$mp/np-$LAB_P/$node"; do
      [[ -d $d ]] || mkdir "$d" || return 1
      if [[ -e $d/cpuset.cpus ]]; then
        [[ -n $(<"$d/cpuset.cpus") ]] || cat "${d%/*}/cpuset.cpus" >"$d/cpuset.cpus" || return 1
        [[ -n $(<"$d/cpuset.mems") ]] || cat "${d%/*}/cpuset.mems" >"$d/cpuset.mems" || return 1
      fi
    done
  done < <(cluster__v1_mounts)
}

cluster__configs() { # <node>
  local node=$1 nd=$CLUSTER_DIR/$1 ip
  ip=$(cluster__node_ip "$node")
  mkdir -p "$nd"/{containerd/root,containerd/state,containerd/opt,kubelet/pki,kubelet-var,cni-state,log,sysctl,run-nodepath/cgroupv2} || return 1
  printf '1\n' >"$nd/sysctl/overcommit_memory"
  printf '10\n' >"$nd/sysctl/panic"
  printf '1\n' >"$nd/sysctl/panic_on_oops"
  printf 'nameserver 192.0.2.53\n' >"$nd/resolv.conf"
  cat >"$nd/containerd/config.toml" <<TOML
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$nd/containerd/containerd.sock"
[ttrpc]
  address = "$nd/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CLUSTER_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
TOML
  cat >"$nd/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $K8S_DIR/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$nd/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /np-$LAB_P/$node
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
resolvConf: $nd/resolv.conf
clusterDomain: cluster.local
clusterDNS: []
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
serializeImagePulls: false
registerNode: true
maxPods: 50
YAML
}

# The mount namespace holder: mounts the node's private view, then sleeps.
cluster__mntns_script() { # <node>
  local node=$1 nd=$CLUSTER_DIR/$1 ln=$LAB_DIR/$1
  cat <<SH
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs /run/netns
mount -t tmpfs -o mode=711 tmpfs /run/containerd
mount --bind '$nd/cni-state' /var/lib/cni
mount --bind '$ln/cni/net.d' /etc/cni/net.d
mount --bind '$ln/cni/bin' /opt/cni/bin
mount --bind '$nd/log' /var/log
mount --bind '$nd/kubelet-var' /var/lib/kubelet
mount -t bpf bpf /sys/fs/bpf
mount --bind '$nd/run-nodepath' /run/nodepath
mount --bind '$LAB_CGROOT/$node' /run/nodepath/cgroupv2
mount --bind '$nd/sysctl/overcommit_memory' /proc/sys/vm/overcommit_memory
mount --bind '$nd/sysctl/panic' /proc/sys/kernel/panic
mount --bind '$nd/sysctl/panic_on_oops' /proc/sys/kernel/panic_on_oops
mount --make-rshared /
echo mounted
exec sleep infinity
SH
}

cluster__mntns_up() { # <node>
  local node=$1 d
  for d in "${CLUSTER_MOUNTPOINTS[@]}"; do
    cluster__mkdir_recorded "$d" || return 1
  done
  mkdir -p "$LAB_DIR/$node/cni/net.d" "$LAB_DIR/$node/cni/bin" || return 1
  lab_bg "node-mnt-$node" "$CLUSTER_DIR/$node/mntns.log" lab_node_exec "$node" \
    unshare --mount --propagation private -- bash -c "$(cluster__mntns_script "$node")" || return 1
  lab_wait_for_line "$CLUSTER_DIR/$node/mntns.log" '^mounted$' 10
}

# mkdir -p that records every directory it made (deepest last) in $CLUSTER_DIR/made-dirs.
cluster__mkdir_recorded() {
  local d=$1 parent=${1%/*}
  [[ -d $d ]] && return 0
  [[ -z $parent ]] || cluster__mkdir_recorded "$parent" || return 1
  mkdir "$d" || return 1
  echo "$d" >>"$CLUSTER_DIR/made-dirs"
}

cluster__containerd_up() { # <node>
  local node=$1 nd=$CLUSTER_DIR/$1
  lab_bg "containerd-$node" "$nd/containerd.log" lab_node_exec "$node" \
    containerd --config "$nd/containerd/config.toml" || return 1
  lab_poll 20 cluster_ctr "$node" version >/dev/null 2>&1 ||
    { cluster__log "containerd on $node does not answer after 20 s (see $nd/containerd.log)"; return 1; }
  local tar out
  for tar in "$CLUSTER_PAUSE_TAR" "$CLUSTER_ECHO_TAR"; do
    out=$(cluster_ctr "$node" -n k8s.io images import "$tar" 2>&1) ||
      { cluster__log "importing $tar on $node failed: $out"; return 1; }
  done
}

cluster__kubelet_up() { # <node>
  local node=$1 nd=$CLUSTER_DIR/$1 kubelet
  kubelet=$(np_go_tool kubelet) || return 1
  lab_bg "kubelet-$node" "$nd/kubelet.log" lab_node_exec "$node" "$kubelet" \
    --config "$nd/kubelet/config.yaml" --kubeconfig "$K8S_KUBECONFIG" --hostname-override "$node" \
    --node-ip "$(cluster__node_ip "$node")" --root-dir "$nd/kubelet" --cert-dir "$nd/kubelet/pki" --v 1
}

# cluster_image_import <node> <archive>: an OCI archive into the node's containerd (namespace k8s.io,
# where its CRI looks), for pods with imagePullPolicy: Never.
cluster_image_import() {
  cluster__vars || return 1
  local out
  out=$(cluster_ctr "$1" -n k8s.io images import "$2" 2>&1) ||
    { cluster__log "importing $2 on $1 failed: $out"; return 1; }
}

cluster__node_registered() { cluster_kubectl get node "$1" >/dev/null 2>&1; }

# cluster_ctr <node> args...: ctr against the node's containerd.
cluster_ctr() {
  cluster__vars || return 1
  local node=$1
  shift
  lab_node_exec "$node" ctr --address "$CLUSTER_DIR/$node/containerd/containerd.sock" "$@"
}

# cluster_kubectl args...: kubectl as admin (from n1, where the API server is).
cluster_kubectl() { k8s_kubectl "$@"; }

# cluster_node_ready <node>: the Node's Ready condition is True.
cluster_node_ready() {
  [[ $(cluster_kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

# cluster_up [node...] (default n1 n2): the control plane and kubelet + containerd on the nodes,
# each Node registered (Ready needs a CNI config: start the agents, lab_agent_start, after this).
# Stops what it started when a step fails. CLUSTER_UP_SECONDS: how long it took.
cluster_up() {
  cluster__vars || return 1
  local t0=$SECONDS nodes=("$@") node
  ((${#nodes[@]})) || nodes=(n1 n2)
  lab_is_up || { cluster__log "lab $LAB_P is not up"; return 1; }
  command -v containerd >/dev/null && command -v runc >/dev/null && command -v ctr >/dev/null ||
    { cluster__log "containerd, ctr and runc are missing (scripts/setup.sh installs them)"; return 1; }
  mkdir -p "$CLUSTER_DIR" || return 1
  K8S_DISABLE_ADMISSION_PLUGINS=${K8S_DISABLE_ADMISSION_PLUGINS-}
  if ! {
    cluster__images && np_go_tool kubelet >/dev/null && k8s_up && cluster__control_plane
  }; then
    cluster_down
    return 1
  fi
  for node in "${nodes[@]}"; do
    if ! { cluster__cgroups_v1 "$node" && cluster__configs "$node" && cluster__mntns_up "$node" &&
      cluster__containerd_up "$node" && cluster__kubelet_up "$node"; }; then
      cluster__log "bringing up $node failed"
      cluster_down
      return 1
    fi
  done
  for node in "${nodes[@]}"; do
    if ! lab_poll 60 cluster__node_registered "$node"; then
      cluster__log "Node $node is not registered after 60 s; tail of its kubelet log:"
      tail -n 20 "$CLUSTER_DIR/$node/kubelet.log" | sed 's/^/  | /' >&2
      cluster_down
      return 1
    fi
  done
  CLUSTER_UP_SECONDS=$((SECONDS - t0))
  cluster__log "control plane and nodes ${nodes[*]} up in $CLUSTER_UP_SECONDS s"
}

# cluster__v1_down: SIGKILL whatever is still in the v1 cgroups (containers that
# outlived their shims), then remove them bottom-up.
cluster__v1_down() {
  local rc=0 mp root f pid
  while IFS= read -r mp; do
    root=$mp/np-$LAB_P
    [[ -d $root ]] || continue
    while IFS= read -r -d '' f; do
      while read -r pid; do kill -s KILL "$pid" 2>/dev/null || true; done <"$f"
    done < <(find "$root" -name cgroup.procs -print0 2>/dev/null)
  done < <(cluster__v1_mounts)
  while IFS= read -r mp; do
    root=$mp/np-$LAB_P
    [[ -d $root ]] || continue
    lab_poll 10 cluster__rmdir_tree "$root" || { cluster__log "cannot remove $root"; rc=1; }
  done < <(cluster__v1_mounts)
  return $rc
}
cluster__rmdir_tree() {
  local d
  while IFS= read -r -d '' d; do rmdir "$d" 2>/dev/null || true; done < <(find "$1" -depth -type d -print0 2>/dev/null)
  [[ ! -e $1 ]]
}

# cluster_down: kubelets, then the pods' containers and shims, containerd, the control plane's
# extra parts, the mount namespaces (their mounts go with them), the v1 cgroups, the mount point
# dirs we made. Idempotent; lab_down calls it first when this library is loaded.
cluster_down() {
  cluster__vars || return 1
  [[ -d $CLUSTER_DIR ]] || return 0
  local rc=0 node f name
  for node in n1 n2; do lab_kill "kubelet-$node" || rc=1; done
  # The shims (in the node's cgroup2 cgroup, outside containerd's) and the containers: kill what
  # runs in the v1 pod cgroups, then stop containerd.
  for node in n1 n2; do
    for f in "$LAB_DIR"/pids/containerd-"$node".pid; do
      [[ -e $f ]] || continue
      cluster__kill_shims "$node"
    done
  done
  cluster__v1_down || rc=1
  for node in n1 n2; do lab_kill "containerd-$node" || rc=1; done
  for name in k8s-scheduler k8s-controller-manager; do lab_kill "$name" || rc=1; done
  for node in n1 n2; do lab_kill "node-mnt-$node" || rc=1; done
  # The mount point dirs we made, unless another run's nodes may mount on them: rmdir succeeds on
  # a dir that is a mount point only in another mount namespace, and detaches those mounts.
  if [[ -s $CLUSTER_DIR/made-dirs ]] && ! cluster__other_runs; then
    while read -r f; do rmdir "$f" 2>/dev/null || true; done < <(tac "$CLUSTER_DIR/made-dirs")
    : >"$CLUSTER_DIR/made-dirs"
  fi
  return $rc
}

cluster__other_runs() { # another lab's cluster has a node mount namespace holder running
  local f
  for f in /run/nodepath-lab/*/pids/node-mnt-*.pid; do
    [[ -e $f && $f != "$LAB_DIR/pids/"* ]] || continue
    lab__pid_alive "$(head -n1 "$f")" && return 0
  done
  return 1
}

# The node's containerd-shim processes: children of init whose cgroup2 cgroup is the node's.
cluster__kill_shims() {
  local node=$1 p cg
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/exe" 2>/dev/null) == */containerd-shim-runc-v2 ]] || continue
    cg=$(grep -m1 '^0::' "$p/cgroup" 2>/dev/null) || continue
    [[ ${cg#0::} == "/np-$LAB_P/$node" ]] || continue
    kill -s KILL "${p#/proc/}" 2>/dev/null || true
  done
}
