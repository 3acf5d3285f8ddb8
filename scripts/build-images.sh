#!/usr/bin/env bash
# Builds the container images a test cluster needs from local files, as docker-archive tars
# (manifest.json with RepoTags, the config JSON, one layer.tar) that
# `ctr -n k8s.io images import <tar>` accepts. There is no registry: nothing is pulled.
#
#   k8s.gcr.io/pause:3.2    busybox-static; sleeps until SIGTERM, then exits 0
#   kubeboot.local/web:1    busybox-static `httpd -f -p 80` serving "hello from <hostname>"
#
# Usage: build-images.sh [output dir]   (default $KUBEBOOT_IMAGE_DIR or
#                                        /var/lib/kubeboot-dev/images)
# Prints one "<image> <tar>" line per image. Cached: an image is rebuilt only when this
# script or busybox changed since its tar was written.
set -euo pipefail

readonly OUT=${1:-${KUBEBOOT_IMAGE_DIR:-/var/lib/kubeboot-dev/images}}
readonly BUSYBOX=${BUSYBOX:-/bin/busybox}
readonly SELF=$(readlink -f "$0")

die() { echo "[build-images] error: $*" >&2; exit 1; }

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install busybox-static"
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' \
  || die "$BUSYBOX is not statically linked: install busybox-static"
mkdir -p "$OUT"

# build <tag> <file name> <json array: entrypoint>
build() {
  local tag=$1 name=$2 entrypoint=$3
  local tar="$OUT/$name.tar"
  if [ -s "$tar" ] && [ "$tar" -nt "$SELF" ] && [ "$tar" -nt "$BUSYBOX" ]; then
    echo "$tag $tar"
    return 0
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/www" \
    "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"
  chmod 1777 "$work/rootfs/tmp"
  cp "$BUSYBOX" "$work/rootfs/bin/busybox"
  local applet
  for applet in sh sleep httpd hostname mkdir cat ls echo wget ip ps kill; do
    ln -s busybox "$work/rootfs/bin/$applet"
  done
  tar --create --file "$work/layer.tar" --directory "$work/rootfs" \
    --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 .
  local diff_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mkdir -p "$work/img/$diff_id"
  mv "$work/layer.tar" "$work/img/$diff_id/layer.tar"
  cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":$entrypoint,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"kubeboot scripts/build-images.sh"}]}
EOF
  local config_id
  config_id=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/img/$config_id.json"
  cat >"$work/img/manifest.json" <<EOF
[{"Config":"$config_id.json","RepoTags":["$tag"],"Layers":["$diff_id/layer.tar"]}]
EOF
  # Member names without "./": importers look for "manifest.json" by name.
  tar --create --file "$tar.tmp" --directory "$work/img" \
    --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    manifest.json "$config_id.json" "$diff_id"
  mv "$tar.tmp" "$tar"
  echo "$tag $tar"
}

# pause: PID 1 of the sandbox ignores signals it has no handler for, hence the trap.
build k8s.gcr.io/pause:3.2 pause-3.2 \
  '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
build kubeboot.local/web:1 web-1 \
  '["/bin/sh","-c","echo \"hello from $(hostname)\" >/www/index.html && exec httpd -f -p 80 -h /www"]'
