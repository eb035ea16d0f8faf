#!/usr/bin/env bash
# nodepath's images, built without a registry or a container engine, written as OCI image archives
# that `ctr -n k8s.io images import` and `k3s ctr images import` accept.
# Same inputs, same digest: the layer is a tar sorted by name with mtime 0 and owner 0.
#
#   --image nodepath (default): the node image the DaemonSet and the operator run: the agent,
#     operator, agentctl, nodepath-cni (+ the loopback plugin), iptables for the NOTRACK rules, a
#     static busybox for the init steps, and exactly the shared libraries those need (from ldd).
#   --image hubble-relay: the upstream hubble-relay (github.com/cilium/cilium's ./hubble-relay at
#     the version test/tools/go/hubble pins, built by scripts/lib/gotools.sh; --relay-bin FILE
#     takes a built one) and a static busybox for the chart's start line; the chart's Deployment
#     runs it when hubble.relay.enabled=true.
#
#   scripts/image.sh [--image nodepath|hubble-relay] [--build-dir DIR] [--out FILE]
#                    [--name REPO:TAG] [--relay-bin FILE]
#   -> writes the archive (--out) and prints the image's manifest digest
#   Defaults: nodepath: $build/nodepath-image.tar, localhost/nodepath:<chart appVersion>;
#   hubble-relay: $build/hubble-relay-image.tar, localhost/hubble-relay:<pinned cilium version>
#   (the chart's hubble.relay.image default).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/oci.sh
source "$REPO/scripts/lib/oci.sh"

build=$REPO/build
out=
name=
image=nodepath
relay_bin=
while (($#)); do
  case $1 in
    --image) image=${2:?--image needs nodepath or hubble-relay}; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --relay-bin) relay_bin=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "image: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $image in
  nodepath | hubble-relay) ;;
  *) echo "image: unknown image '$image' (nodepath or hubble-relay)" >&2; exit 2 ;;
esac
[[ -z $relay_bin || $image == hubble-relay ]] || { echo "image: --relay-bin is for --image hubble-relay" >&2; exit 2; }

need() { [[ -x $1 ]] || { echo "image: $1 is missing (${2:-build first: cmake --build $build})" >&2; exit 1; }; }
need /bin/busybox "install busybox-static: scripts/setup.sh"
command -v ldd >/dev/null || { echo "image: ldd is missing" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/nodepath-image.XXXXXX")
trap 'rm -rf "$root"' EXIT

put() { # <src> <dest in image> [mode]
  install -D -m "${3:-0755}" "$1" "$root$2"
}
# Shared libraries the ELF files need, at the paths the loader looks them up by (their real
# files, so a symlinked lib dir on the build host does not matter).
libs() {
  local f lib
  for f in "$@"; do
    # (ldd fails on a static file, "not a dynamic executable": nothing to add for it)
    { ldd "$f" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}'
  done | sort -u | while read -r lib; do
    [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}
# busybox for the images' sh, and the applets named (links into /bin).
busybox() {
  put /bin/busybox /bin/busybox
  local a
  for a in "$@"; do ln -s busybox "$root/bin/$a"; done
}

if [[ $image == hubble-relay ]]; then
  # The relay's version is the pinned cilium module's; the chart's hubble.relay.image.tag says it.
  relay_version=$(awk '$1 == "require" && $2 == "github.com/cilium/cilium" { print $3 }' "$REPO/test/tools/go/hubble/go.mod")
  name=${name:-localhost/hubble-relay:$relay_version}
  out=${out:-$build/hubble-relay-image.tar}
  if [[ -z $relay_bin ]]; then
    # shellcheck source=SCRIPTDIR/lib/gotools.sh
    source "$REPO/scripts/lib/gotools.sh"
    relay_bin=$(np_go_tool hubble-relay) || { echo "image: no hubble-relay (scripts/lib/gotools.sh builds it; needs go)" >&2; exit 1; }
  fi
  need "$relay_bin" "pass a built hubble-relay with --relay-bin"
  # Go's own binary, static (CGO_ENABLED=0); its DWARF is a third of it.
  put "$relay_bin" /usr/local/bin/hubble-relay && strip --strip-debug "$root/usr/local/bin/hubble-relay"
  busybox sh
  libs "$root/usr/local/bin/hubble-relay"
  # Cilium's relay runs as 65532 (nonroot), the chart's securityContext too; it writes nothing.
  # The layer's root entry is the mktemp dir (0700): a non-root process could open nothing.
  chmod 0755 "$root"
  mkdir -p "$root/tmp" "$root/etc/hubble-relay"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  oci_image "$out" "$name" "$root" /usr/local/bin/hubble-relay
  exit
fi

version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/deploy/helm/nodepath/Chart.yaml")
name=${name:-localhost/nodepath:$version}
out=${out:-$build/nodepath-image.tar}
need "$build/agent/nodepath-agent"
need "$build/operator/nodepath-operator"
need "$build/cli/agentctl/agentctl"
need "$build/cli/cni/nodepath-cni"
need /usr/lib/cni/loopback "install containernetworking-plugins: scripts/setup.sh"
need /usr/sbin/xtables-nft-multi "install iptables: scripts/setup.sh"

# nodepath's own binaries without their debug info (a RelWithDebInfo build is 4x larger).
ours() { put "$1" "$2" && strip --strip-debug "$root$2"; }
ours "$build/agent/nodepath-agent" /usr/bin/nodepath-agent
ours "$build/operator/nodepath-operator" /usr/bin/nodepath-operator
ours "$build/cli/agentctl/agentctl" /usr/bin/agentctl
ours "$build/cli/cni/nodepath-cni" /usr/libexec/nodepath/cni/nodepath-cni
put /usr/lib/cni/loopback /usr/libexec/nodepath/cni/loopback
put "$REPO/deploy/image/nodepath-install-cni" /usr/bin/nodepath-install-cni
# iptables (the agent runs `iptables` for the NOTRACK rules): the nft backend, as Debian's and
# k3s's default, and legacy for hosts that still use it; their extensions are dlopen()ed.
put /usr/sbin/xtables-nft-multi /usr/sbin/xtables-nft-multi
put /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-legacy-multi
for t in iptables iptables-save iptables-restore; do
  ln -s xtables-nft-multi "$root/usr/sbin/$t"
  ln -s xtables-legacy-multi "$root/usr/sbin/$t-legacy"
done
mkdir -p "$root/usr/lib/x86_64-linux-gnu/xtables"
cp -a /usr/lib/x86_64-linux-gnu/xtables/. "$root/usr/lib/x86_64-linux-gnu/xtables/"
# busybox for the init steps' sh, mount, grep, cp, mv, ...
busybox sh cat cp grep head ln ls mkdir mount mv rm sed sleep chmod umount
libs "$root/usr/bin/nodepath-agent" "$root/usr/bin/nodepath-operator" "$root/usr/bin/agentctl" \
  "$root/usr/libexec/nodepath/cni/nodepath-cni" "$root/usr/libexec/nodepath/cni/loopback" \
  "$root/usr/sbin/xtables-nft-multi" "$root/usr/sbin/xtables-legacy-multi" "$root"/usr/lib/x86_64-linux-gnu/xtables/*.so
mkdir -p "$root/tmp" "$root/var/run/nodepath" "$root/etc"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

oci_image "$out" "$name" "$root" /usr/bin/nodepath-agent
