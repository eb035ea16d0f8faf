# shellcheck shell=bash
# A minimal OCI image writer (image-spec v1.0 layout in a tar), for nodepath's node image and the
# test images, with no registry or container engine: one layer made from a directory.
#
#   source scripts/lib/oci.sh
#   oci_image <out.tar> <name:tag> <rootfs dir> [entrypoint arg...]
#
# The archive is what `ctr -n k8s.io images import` (and `k3s ctr images import`) read: index.json
# names the image with `io.containerd.image.name` (and the tag as
# `org.opencontainers.image.ref.name`). Reproducible: the layer is a tar sorted by name with
# mtime 0, owner 0:0 and numeric ids, gzip without name or time, JSON with a fixed key order and no
# creation time, so the same inputs give the same digests. Prints the manifest digest.
# Hand-written because Debian 12's umoci/skopeo stamp times and need a writable image store, and
# the format is four small JSON files.

oci__blob() { # <layout dir> <file>: moves file into blobs/sha256/, prints "sha256:<hex> <size>"
  local hex size
  hex=$(sha256sum "$2" | cut -d' ' -f1)
  size=$(stat -c %s "$2")
  mv -f "$2" "$1/blobs/sha256/$hex"
  printf 'sha256:%s %s\n' "$hex" "$size"
}

oci__tar() { # <dir> <out> [paths...]: a reproducible tar of dir's contents
  local dir=$1 out=$2
  shift 2
  tar --create --file "$out" --directory "$dir" --sort=name --mtime=@0 --owner=0 --group=0 \
    --numeric-owner --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    "${@:-.}"
}

oci_image() {
  local out=${1:?usage: oci_image <out.tar> <name:tag> <rootfs dir> [entrypoint...]} name=${2:?} root=${3:?}
  shift 3
  [[ -d $root ]] || { echo "oci: $root is not a directory" >&2; return 1; }
  [[ $name == *:* ]] || { echo "oci: image name '$name' has no tag" >&2; return 1; }
  command -v jq >/dev/null || { echo "oci: jq is missing (scripts/setup.sh)" >&2; return 1; }
  local work layout diff layer cfg man entry a
  work=$(mktemp -d "${TMPDIR:-/tmp}/oci.XXXXXX") || return 1
  layout=$work/layout
  mkdir -p "$layout/blobs/sha256"
  (
    set -euo pipefail
    # Every step says `|| exit 1`: set -e does not act in a subshell whose status its caller tests.
    oci__tar "$root" "$work/layer.tar" || exit 1
    diff=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1) || exit 1
    gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz" || exit 1
    read -r layer_digest layer_size < <(oci__blob "$layout" "$work/layer.tar.gz") && [[ -n $layer_size ]] || exit 1
    # Not `jq --args "$@"`: jq 1.6 reads an entrypoint argument like --id as its own option.
    entry='[]'
    # (One argument a line: an entrypoint argument holding a newline is refused.)
    if (($#)); then
      for a in "$@"; do [[ $a != *$'\n'* ]] || { echo "oci: an entrypoint argument holds a newline" >&2; exit 1; }; done
      entry=$(printf '%s\n' "$@" | jq -R . | jq -cs .) || exit 1
    fi
    jq -cnS --argjson entry "$entry" --arg diff "$diff" '{
        architecture: "amd64", os: "linux",
        config: ({Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
                 + (if ($entry | length) > 0 then {Entrypoint: $entry} else {} end)),
        rootfs: {type: "layers", diff_ids: [$diff]}
      }' >"$work/config.json" || exit 1
    read -r cfg_digest cfg_size < <(oci__blob "$layout" "$work/config.json") && [[ -n $cfg_size ]] || exit 1
    jq -cn --arg cd "$cfg_digest" --argjson cs "$cfg_size" --arg ld "$layer_digest" --argjson ls "$layer_size" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
        layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
      }' >"$work/manifest.json" || exit 1
    read -r man_digest man_size < <(oci__blob "$layout" "$work/manifest.json") && [[ -n $man_size ]] || exit 1
    jq -cn --arg md "$man_digest" --argjson ms "$man_size" --arg name "$name" --arg tag "${name##*:}" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
          annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag}}]
      }' >"$layout/index.json" || exit 1
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout" || exit 1
    mkdir -p "$(dirname "$out")" || exit 1
    oci__tar "$layout" "$out.tmp" oci-layout index.json blobs || exit 1
    mv -f "$out.tmp" "$out" || exit 1
    echo "$man_digest"
  )
  local rc=$?
  rm -rf "$work"
  return $rc
}
