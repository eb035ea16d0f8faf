#!/usr/bin/env bash
# NodeImageReproducibleAndImportable: scripts/image.sh, the node image the chart's DaemonSet runs.
#  - built twice from the same binaries it gives the same manifest digest and the same bytes;
#  - the archive is an OCI layout whose index, manifest and config parse, whose blobs are what
#    their digests say, and whose index names the image for containerd (io.containerd.image.name);
#  - the layer holds the agent, operator, agentctl, nodepath-cni, loopback and
#    nodepath-install-cni, and each of them runs from the image's root alone (chroot: its shared
#    libraries are all in the layer), and the install script installs the plugins;
#  - `scripts/image.sh --image hubble-relay` (the chart's hubble.relay image): the same digest twice,
#    its entrypoint the upstream hubble-relay, which runs from the image's root alone (static), with
#    the sh of the chart's start line;
#  - `ctr -n k8s.io images import` into a throwaway containerd (its own root, state and socket,
#    in a mount namespace of its own in the lab's n1) accepts both, under the names and digests built.
# Label e2e: it needs the built binaries and root, no Kubernetes.
# shellcheck disable=SC2317 # functions run indirectly, through check/require/trap
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"
source "$E2E_REPO/scripts/lib/gotools.sh"

BUILD_ORIG=${NP_BUILD_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
e2e_init NodeImageReproducibleAndImportable npimg
NAME=localhost/nodepath:image-test
RELAY_NAME=localhost/hubble-relay:image-test

# A snapshot of the four binaries laid out as a build dir: a rebuild while the test runs (others
# build in the same tree) cannot make the two builds differ.
SNAP=$E2E_TMP/snap
for rel in agent/nodepath-agent operator/nodepath-operator cli/agentctl/agentctl cli/cni/nodepath-cni; do
  mkdir -p "$SNAP/$(dirname "$rel")"
  cp -p "$BUILD_ORIG/$rel" "$SNAP/$rel" || { fail "$E2E_NAME" "$BUILD_ORIG/$rel is missing (build first)"; exit 1; }
done

build_image() { # <out>: prints the digest image.sh printed
  "$E2E_REPO/scripts/image.sh" --build-dir "$SNAP" --out "$1" --name "$NAME" | tail -n1
}
T0=$SECONDS
require "scripts/image.sh builds the image" eval 'D1=$(build_image "$E2E_TMP/a.tar")'
BUILD_S=$((SECONDS - T0))
require "scripts/image.sh builds it again" eval 'D2=$(build_image "$E2E_TMP/b.tar")'
same_digest() {
  [[ $D1 =~ ^sha256:[0-9a-f]{64}$ && $D1 == "$D2" ]] && return 0
  echo "first build: '$D1', second: '$D2'"
  return 1
}
check "same inputs, same manifest digest ($D1)" same_digest
check "...and the same archive bytes" cmp "$E2E_TMP/a.tar" "$E2E_TMP/b.tar"

LAYOUT=$E2E_TMP/layout
mkdir -p "$LAYOUT"
require "the archive is a tar" tar -xf "$E2E_TMP/a.tar" -C "$LAYOUT"
blob() { echo "$LAYOUT/blobs/sha256/${1#sha256:}"; }
blob_ok() { # <digest>: the blob exists and hashes to its name
  local f
  f=$(blob "$1")
  [[ -s $f && sha256:$(sha256sum "$f" | cut -d' ' -f1) == "$1" ]] && return 0
  echo "blob $1 is missing or does not hash to its name"
  return 1
}
expect_index() {
  jq -e '.imageLayoutVersion == "1.0.0"' "$LAYOUT/oci-layout" >/dev/null || { echo "oci-layout: $(cat "$LAYOUT/oci-layout")"; return 1; }
  jq -e --arg n "$NAME" --arg d "$D1" '.schemaVersion == 2 and (.manifests | length) == 1 and
      .manifests[0].digest == $d and .manifests[0].annotations["io.containerd.image.name"] == $n and
      .manifests[0].annotations["org.opencontainers.image.ref.name"] == "image-test"' "$LAYOUT/index.json" >/dev/null && return 0
  echo "index.json: $(cat "$LAYOUT/index.json")"
  return 1
}
check "index.json parses: one manifest, the digest image.sh printed, named $NAME for containerd" expect_index
check "the manifest blob is what its digest says" blob_ok "$D1"
MANIFEST=$(blob "$D1")
CFG=$(jq -r '.config.digest' "$MANIFEST" 2>/dev/null || true)
LAYER=$(jq -r '.layers[0].digest' "$MANIFEST" 2>/dev/null || true)
expect_manifest() {
  jq -e '.mediaType == "application/vnd.oci.image.manifest.v1+json" and
      .config.mediaType == "application/vnd.oci.image.config.v1+json" and (.layers | length) == 1 and
      .layers[0].mediaType == "application/vnd.oci.image.layer.v1.tar+gzip"' "$MANIFEST" >/dev/null && return 0
  echo "manifest: $(cat "$MANIFEST")"
  return 1
}
check "the manifest parses: a config and one gzip layer" expect_manifest
check "the config blob is what its digest says" blob_ok "$CFG"
check "the layer blob is what its digest says" blob_ok "$LAYER"
expect_config() { # the config's diff_id is the uncompressed layer's digest; the entrypoint is the agent
  local diff
  diff=sha256:$(gzip -dc "$(blob "$LAYER")" | sha256sum | cut -d' ' -f1)
  jq -e --arg diff "$diff" '.architecture == "amd64" and .os == "linux" and .rootfs.diff_ids == [$diff] and
      .config.Entrypoint == ["/usr/bin/nodepath-agent"]' "$(blob "$CFG")" >/dev/null && return 0
  echo "config (layer diff_id $diff): $(cat "$(blob "$CFG")")"
  return 1
}
check "the config parses: amd64/linux, diff_id of the layer, entrypoint nodepath-agent" expect_config

ROOT=$E2E_TMP/rootfs
mkdir -p "$ROOT"
require "the layer unpacks" tar -xzf "$(blob "$LAYER")" -C "$ROOT"
has_files() {
  local f missing=()
  for f in /usr/bin/nodepath-agent /usr/bin/nodepath-operator /usr/bin/agentctl /usr/bin/nodepath-install-cni \
    /usr/libexec/nodepath/cni/nodepath-cni /usr/libexec/nodepath/cni/loopback /bin/busybox /usr/sbin/iptables; do
    [[ -x $ROOT$f ]] || missing+=("$f")
  done
  ((${#missing[@]} == 0)) && return 0
  echo "missing or not executable in the layer: ${missing[*]}"
  return 1
}
check "the layer holds the agent, operator, agentctl, nodepath-cni, loopback, the install script, busybox, iptables" has_files
# The ldd closure: the loader of the image resolves every library from the image alone.
closure() {
  local f out bad=()
  for f in /usr/bin/nodepath-agent /usr/bin/nodepath-operator /usr/bin/agentctl \
    /usr/libexec/nodepath/cni/nodepath-cni /usr/libexec/nodepath/cni/loopback /usr/sbin/xtables-nft-multi; do
    out=$(chroot "$ROOT" /lib64/ld-linux-x86-64.so.2 --list "$f" 2>&1) || { bad+=("$f: $out"); continue; }
    if grep -q 'not found' <<<"$out"; then bad+=("$f: $(grep 'not found' <<<"$out" | tr '\n' ' ')"); fi
  done
  ((${#bad[@]} == 0)) && return 0
  printf '%s\n' "${bad[@]}"
  return 1
}
check "every binary's shared libraries are in the layer (the image's loader finds them all)" closure
runs_in_image() { # <cmd...>: runs in the image's root alone
  local out
  out=$(chroot "$ROOT" "$@" 2>&1) && return 0
  echo "chroot $ROOT $*: $out"
  return 1
}
check "nodepath-agent --help runs from the image alone" runs_in_image /usr/bin/nodepath-agent --help
check "nodepath-operator --help runs from the image alone" runs_in_image /usr/bin/nodepath-operator --help
check "agentctl --help runs from the image alone" runs_in_image /usr/bin/agentctl --help
check "iptables --version runs from the image alone" runs_in_image /usr/sbin/iptables --version
install_cni() { # the init step, in the image: installs nodepath-cni and loopback, executable
  local out
  out=$(chroot "$ROOT" /usr/bin/nodepath-install-cni /tmp/cni-dest 2>&1) || { echo "nodepath-install-cni failed: $out"; return 1; }
  [[ -x $ROOT/tmp/cni-dest/nodepath-cni && -x $ROOT/tmp/cni-dest/loopback ]] && \
    cmp -s "$ROOT/tmp/cni-dest/nodepath-cni" "$ROOT/usr/libexec/nodepath/cni/nodepath-cni" && return 0
  echo "after nodepath-install-cni: $(ls -l "$ROOT/tmp/cni-dest" 2>&1) ($out)"
  return 1
}
check "nodepath-install-cni (the DaemonSet's init step) installs nodepath-cni and loopback" install_cni

# The hubble-relay image, from a snapshot of the built relay.
RELAY_SRC=$(np_go_tool hubble-relay) || { fail "$E2E_NAME" "no hubble-relay (scripts/setup.sh builds it; needs go)"; exit 1; }
cp -p "$RELAY_SRC" "$SNAP/hubble-relay"
build_relay() { # <out>
  "$E2E_REPO/scripts/image.sh" --image hubble-relay --relay-bin "$SNAP/hubble-relay" --out "$1" --name "$RELAY_NAME" | tail -n1
}
require "scripts/image.sh --image hubble-relay builds the relay image" eval 'R1=$(build_relay "$E2E_TMP/r1.tar")'
require "...and again" eval 'R2=$(build_relay "$E2E_TMP/r2.tar")'
check "same relay binary, same manifest digest ($R1), same bytes" \
  eval '[[ $R1 =~ ^sha256:[0-9a-f]{64}$ && $R1 == "$R2" ]] && cmp "$E2E_TMP/r1.tar" "$E2E_TMP/r2.tar"'
RLAYOUT=$E2E_TMP/rlayout RROOT=$E2E_TMP/rroot
mkdir -p "$RLAYOUT" "$RROOT"
require "the relay archive is a tar" tar -xf "$E2E_TMP/r1.tar" -C "$RLAYOUT"
relay_image_ok() { # index names it; the config's entrypoint is hubble-relay; the layer unpacks
  local man cfg layer
  jq -e --arg n "$RELAY_NAME" --arg d "$R1" '.manifests[0].digest == $d and .manifests[0].annotations["io.containerd.image.name"] == $n' \
    "$RLAYOUT/index.json" >/dev/null || { echo "index.json: $(cat "$RLAYOUT/index.json")"; return 1; }
  man=$RLAYOUT/blobs/sha256/${R1#sha256:}
  cfg=$RLAYOUT/blobs/sha256/$(jq -r '.config.digest | sub("sha256:"; "")' "$man")
  layer=$RLAYOUT/blobs/sha256/$(jq -r '.layers[0].digest | sub("sha256:"; "")' "$man")
  jq -e '.config.Entrypoint == ["/usr/local/bin/hubble-relay"]' "$cfg" >/dev/null || { echo "config: $(cat "$cfg")"; return 1; }
  tar -xzf "$layer" -C "$RROOT" || { echo "the layer does not unpack"; return 1; }
}
check "the relay archive names $RELAY_NAME for containerd; its entrypoint is /usr/local/bin/hubble-relay" relay_image_ok
relay_runs() { # the upstream binary, from the image's root alone, and the sh of the chart's start line
  local out
  out=$(chroot "$RROOT" /bin/sh -c 'exec /usr/local/bin/hubble-relay version' 2>&1) || { echo "hubble-relay version in the image: $out"; return 1; }
  grep -q '^Hubble-relay: ' <<<"$out" && return 0
  echo "hubble-relay version in the image says: $out"
  return 1
}
check "sh -c 'exec hubble-relay version' runs from the relay image alone (the binary is static)" relay_runs

# A throwaway containerd: no CRI plugin (nothing but the content store and the snapshotter), its
# own root/state/socket under the lab dir, in a mount namespace of its own (the unpack's overlay
# mounts stay there).
E2E_LAB_MADE=1
require "lab topology up" lab_up
CD=$NP_LAB_DIR/img-containerd
mkdir -p "$CD"
cat >"$CD/config.toml" <<TOML
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CD/containerd.sock"
[ttrpc]
  address = "$CD/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
TOML
ctr_() { lab_node_exec n1 ctr --address "$CD/containerd.sock" "$@"; }
require "a throwaway containerd started" lab_bg containerd-img "$CD/containerd.log" lab_node_exec n1 \
  unshare --mount --propagation private -- containerd --config "$CD/config.toml"
require "...and answers" eventually 20 eval 'ctr_ version >/dev/null 2>&1'
check "ctr -n k8s.io images import accepts the archive" ctr_ -n k8s.io images import "$E2E_TMP/a.tar"
imported() {
  local out
  out=$(ctr_ -n k8s.io images ls 2>&1) || { echo "$out"; return 1; }
  awk -v n="$NAME" -v d="$D1" '$1 == n && $3 == d { ok = 1 } END { exit !ok }' <<<"$out" && return 0
  echo "expected $NAME at $D1 in: $out"
  return 1
}
check "containerd lists $NAME at the digest image.sh printed" imported
unpacked() { # the import unpacked it into the overlayfs snapshotter: the image is usable as is
  local out
  out=$(ctr_ -n k8s.io images check 2>&1) || { echo "$out"; return 1; }
  grep "^$NAME " <<<"$out" | grep -q 'complete' && return 0
  echo "ctr images check: $out"
  return 1
}
check "...complete (every blob present)" unpacked
check "ctr -n k8s.io images import accepts the relay archive" ctr_ -n k8s.io images import "$E2E_TMP/r1.tar"
check "containerd lists $RELAY_NAME at the digest image.sh printed" \
  eval 'ctr_ -n k8s.io images ls | awk -v n="$RELAY_NAME" -v d="$R1" '"'"'$1 == n && $3 == d { ok = 1 } END { exit !ok }'"'"''
require "the throwaway containerd stopped" lab_kill containerd-img
echo "measure: image build ${BUILD_S} s, archive $(($(stat -c %s "$E2E_TMP/a.tar") / 1024 / 1024)) MiB"

e2e_finish
