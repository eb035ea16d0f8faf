# shellcheck shell=bash
# Upstream Go test tools built from their Go modules (DESIGN.md §7), as a library:
# `source scripts/lib/gotools.sh; np_go_tool cnitool` prints the path of the built binary,
# building it first when the cache has none.
#
# Each tool has a pinned module under test/tools/go/<tool>/ (go.mod + go.sum committed, a
# tools.go importing the tool's main package). Binaries go to a cache outside the checkout,
# keyed by the tool, its version and the hash of go.sum:
#   ${NP_TOOLS_CACHE:-/var/cache/nodepath/tools}/<tool>-<version>-<go.sum hash>/<tool>
# with the module and build caches next to them (gomod/, gobuild/), so a pin change builds anew
# and an unchanged pin never rebuilds. -mod=readonly: the build refuses a go.sum that does not
# match what it downloads.

if [[ -n ${_NP_GOTOOLS_LOADED:-} ]]; then
  return 0
fi
_NP_GOTOOLS_LOADED=1

NP_GOTOOLS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# tool -> main package, module whose version keys the cache
declare -A NP_GO_TOOL_PKG=([cnitool]=github.com/containernetworking/cni/cnitool [hubble]=./hubble [hubble-relay]=./hubble-relay
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [kubelet]=k8s.io/kubernetes/cmd/kubelet [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler [helm]=helm.sh/helm/v4/cmd/helm
  [etcd]=go.etcd.io/etcd/server/v3 [etcdctl]=go.etcd.io/etcd/etcdctl/v3)
declare -A NP_GO_TOOL_MOD=([cnitool]=github.com/containernetworking/cni [hubble]=github.com/cilium/cilium
  [hubble-relay]=github.com/cilium/cilium
  [kube-apiserver]=k8s.io/kubernetes [kubectl]=k8s.io/kubernetes [kubelet]=k8s.io/kubernetes
  [kube-controller-manager]=k8s.io/kubernetes [kube-scheduler]=k8s.io/kubernetes [helm]=helm.sh/helm/v4
  [etcd]=go.etcd.io/etcd/server/v3 [etcdctl]=go.etcd.io/etcd/etcdctl/v3)
# tool -> pinned module dir (relative to the repo) when it is not test/tools/go/<tool>: the k8s
# tier's tools share one module per upstream repository (test/k8s/tools/); hubble-relay is built
# from the same pinned cilium module as the hubble CLI.
declare -A NP_GO_TOOL_SRC=([hubble-relay]=test/tools/go/hubble [kube-apiserver]=test/k8s/tools/kube [kubectl]=test/k8s/tools/kube
  [kubelet]=test/k8s/tools/kube [kube-controller-manager]=test/k8s/tools/kube [kube-scheduler]=test/k8s/tools/kube
  [etcd]=test/k8s/tools/etcd [etcdctl]=test/k8s/tools/etcd)
# Tools whose module cannot be built as a dependency (replace lines in its go.mod): the module is
# downloaded (checked against the pin's go.sum), copied out of the module cache and the package
# (relative to the module root) is built there with -mod=mod.
declare -A NP_GO_TOOL_INMOD=([hubble]=1 [hubble-relay]=1)

np__go_tool_src() { # <tool>: the pinned module's directory
  printf '%s/%s\n' "$NP_GOTOOLS_REPO" "${NP_GO_TOOL_SRC[$1]:-test/tools/go/$1}"
}

np__go_tool_dir() { # <tool>: the cache dir for the pinned version
  local tool=$1 src ver sum
  src=$(np__go_tool_src "$tool")
  [[ -f $src/go.mod && -f $src/go.sum ]] || { echo "gotools: no pinned module for $tool in $src" >&2; return 1; }
  ver=$(awk -v m="${NP_GO_TOOL_MOD[$tool]}" '$1 == m || ($1 == "require" && $2 == m) { print ($1 == "require" ? $3 : $2); exit }' "$src/go.mod")
  [[ -n $ver ]] || { echo "gotools: $src/go.mod does not require ${NP_GO_TOOL_MOD[$tool]}" >&2; return 1; }
  sum=$(sha256sum "$src/go.sum" | cut -c1-12)
  printf '%s/%s-%s-%s\n' "${NP_TOOLS_CACHE:-/var/cache/nodepath/tools}" "$tool" "$ver" "$sum"
}

np__go_build_in_module() { # <tool> <dir> <src>: build inside a copy of the pinned module
  local tool=$1 dir=$2 src=$3 mod=${NP_GO_TOOL_MOD[$1]} ver moddir work rc
  ver=$(basename "$dir" | sed -E "s/^$tool-(.*)-[0-9a-f]{12}\$/\1/")
  moddir=$(cd "$src" && GOFLAGS="-mod=readonly" GOMODCACHE="$dir/../gomod" GOCACHE="$dir/../gobuild" GOTOOLCHAIN=local \
    go mod download -json "$mod@$ver" | awk -F'"' '$2 == "Dir" { print $4 }') || return 1
  [[ -d $moddir ]] || { echo "gotools: no module dir for $mod@$ver" >&2; return 1; }
  work=$(mktemp -d "$dir/../build-$tool.XXXXXX") || return 1
  cp -r "$moddir/." "$work/" && chmod -R u+w "$work"
  (cd "$work" && GOFLAGS="-mod=mod -buildvcs=false" GOMODCACHE="$dir/../gomod" GOCACHE="$dir/../gobuild" \
    GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -o "$dir/$tool.tmp.$$" "${NP_GO_TOOL_PKG[$tool]}") >&2
  rc=$?
  rm -rf "$work"
  return $rc
}

# np_go_tool <tool>: path of the built tool (builds it when missing).
np_go_tool() {
  local tool=${1:-} dir src
  [[ -n ${NP_GO_TOOL_PKG[$tool]:-} ]] || { echo "gotools: unknown tool '$tool' (${!NP_GO_TOOL_PKG[*]})" >&2; return 1; }
  dir=$(np__go_tool_dir "$tool") || return 1
  if [[ -x $dir/$tool ]]; then
    printf '%s\n' "$dir/$tool"
    return 0
  fi
  command -v go >/dev/null || { echo "gotools: building $tool needs the Go toolchain (go) in PATH" >&2; return 1; }
  src=$(np__go_tool_src "$tool")
  mkdir -p "$dir" || return 1
  echo "gotools: building $tool into $dir" >&2
  if [[ -n ${NP_GO_TOOL_INMOD[$tool]:-} ]]; then
    if ! np__go_build_in_module "$tool" "$dir" "$src"; then
      rm -f "$dir/$tool.tmp.$$"
      echo "gotools: building $tool failed" >&2
      return 1
    fi
  elif ! (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" GOMODCACHE="$dir/../gomod" GOCACHE="$dir/../gobuild" \
    GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$dir/$tool.tmp.$$" "${NP_GO_TOOL_PKG[$tool]}") >&2; then
    rm -f "$dir/$tool.tmp.$$"
    echo "gotools: building $tool failed" >&2
    return 1
  fi
  mv -f "$dir/$tool.tmp.$$" "$dir/$tool" || return 1
  printf '%s\n' "$dir/$tool"
}
