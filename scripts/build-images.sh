#!/usr/bin/env bash
# Builds the container images a test cluster needs from local files, as docker-archive tars
# (manifest.json with RepoTags, the config JSON, one layer.tar) that
# `ctr -n k8s.io images import <tar>` accepts. There is no registry: nothing is pulled.
#
#   k8s.gcr.io/pause:3.2    busybox-static; sleeps until SIGTERM, then exits 0
#   kubeboot.local/web:1    busybox-static `httpd -f -p 80` serving "hello from <hostname>"
#   kubeboot.local/dnsutils:1  busybox-static (nslookup for SRV) + glibc's /usr/bin/getent, its
#                           libraries and loader, /etc/nsswitch.conf "hosts: files dns" (glibc
#                           2.34+ has the dns and files NSS modules inside libc); sleeps
#
# With --control-plane, also the images kubeadm v1.20 names, from the binaries on this host
# (busybox in /bin, the binary in /usr/local/bin, its shared libraries and the real loader file):
#   k8s.gcr.io/kube-apiserver:v1.20.2, kube-controller-manager, kube-scheduler
#   k8s.gcr.io/kube-proxy:v1.20.2      + iptables-nft (xtables-nft-multi), conntrack, their
#                                        libraries and /usr/lib/x86_64-linux-gnu/xtables
#   k8s.gcr.io/etcd:3.4.13-0           Debian's etcd 3.4 (dynamically linked)
# The Kubernetes binaries come from $KUBEBOOT_BIN_DIR (default /var/lib/kubeboot-dev/bin),
# etcd from $ETCD (default: $KUBEBOOT_BIN_DIR/etcd, else /usr/bin/etcd).
#
# With --test-build, also the control-plane images of the TEST BUILD (the v1.20.2 source
# relabelled v1.20.3-test.0 by scripts/build-kubernetes.sh --test-build; not a Kubernetes
# release), for `kubeadm upgrade apply v1.20.3-test.0`: kube-apiserver, kube-controller-manager,
# kube-scheduler and kube-proxy at the version its kube-apiserver reports, from
# $KUBEBOOT_BIN_DIR_NEXT (default /var/lib/kubeboot-dev/bin-next). Its etcd target is the
# same 3.4.13-0 (--control-plane builds it).
#
# Usage: build-images.sh [--control-plane] [--test-build] [output dir]
#                               (default output dir: $KUBEBOOT_IMAGE_DIR or /var/lib/kubeboot-dev/images)
# Prints one "<image> <tar>" line per image. Cached: an image is rebuilt only when this
# script, busybox or one of the files copied into it changed since its tar was written.
# Concurrent runs on one output directory take turns (flock).
set -euo pipefail

CONTROL_PLANE=
TEST_BUILD=
while [ $# -gt 0 ]; do
  case $1 in
    --control-plane) CONTROL_PLANE=1; shift ;;
    --test-build) TEST_BUILD=1; shift ;;
    *) break ;;
  esac
done
readonly CONTROL_PLANE TEST_BUILD
readonly OUT=${1:-${KUBEBOOT_IMAGE_DIR:-/var/lib/kubeboot-dev/images}}
readonly BUSYBOX=${BUSYBOX:-/bin/busybox}
readonly SELF=$(readlink -f "$0")
readonly K8S_BIN=${KUBEBOOT_BIN_DIR:-/var/lib/kubeboot-dev/bin}
readonly K8S_VERSION=v1.20.2
readonly K8S_BIN_NEXT=${KUBEBOOT_BIN_DIR_NEXT:-/var/lib/kubeboot-dev/bin-next}

die() { echo "[build-images] error: $*" >&2; exit 1; }

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: install busybox-static"
file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' \
  || die "$BUSYBOX is not statically linked: install busybox-static"
mkdir -p "$OUT"
# One build at a time per output directory (parallel tests call this script).
exec 9>"$OUT/.build.lock"
flock -w 600 9 || die "another build-images.sh holds $OUT/.build.lock for over 10 minutes"

# Copies the file $2 (symlinks resolved) to the same path under rootfs $1.
copy_in() {
  local root=$1 src=$2
  mkdir -p "$root$(dirname "$src")"
  cp -L "$src" "$root$src"
}

# Copies each ELF file given (already in rootfs $1 at the path given) 's shared libraries from
# the host into rootfs $1, at the paths ldd names; the loader as a real file, not a symlink.
copy_libs() {
  local root=$1 f lib
  shift
  for f in "$@"; do
    # ldd: "libx.so => /path (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)", or "not a dynamic".
    for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [ -e "$root$lib" ] || copy_in "$root" "$lib"
    done
  done
}

# rootfs fillers: fill_<kind> <rootfs> [args]; each prints nothing.
fill_busybox() { :; }
fill_binary() { # <rootfs> <host binary>: copied to /usr/local/bin/<its name>
  local root=$1 src=$2
  mkdir -p "$root/usr/local/bin"
  cp -L "$src" "$root/usr/local/bin/$(basename "$src")"
  copy_libs "$root" "$src"
}
fill_kube_proxy() { # <rootfs> <host kube-proxy>
  local root=$1 f
  fill_binary "$root" "$2"
  copy_in "$root" /usr/sbin/xtables-nft-multi
  copy_in "$root" /usr/sbin/conntrack
  copy_libs "$root" /usr/sbin/xtables-nft-multi /usr/sbin/conntrack
  for f in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
    iptables-nft iptables-nft-save iptables-nft-restore \
    ip6tables-nft ip6tables-nft-save ip6tables-nft-restore; do
    ln -s xtables-nft-multi "$root/usr/sbin/$f"
  done
  mkdir -p "$root/usr/lib/x86_64-linux-gnu"
  cp -a /usr/lib/x86_64-linux-gnu/xtables "$root/usr/lib/x86_64-linux-gnu/xtables"
  copy_libs "$root" /usr/lib/x86_64-linux-gnu/xtables/*.so
  mkdir -p "$root/run" "$root/var/run" "$root/lib/modules"
}

fill_getent() { # <rootfs> <host getent>: glibc's resolver through the search path
  local root=$1
  copy_in "$root" "$2"
  copy_libs "$root" "$2"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# build <tag> <file name> <json array: entrypoint> [<filler> [filler args...]]
# A filler's args are the host files it copies in; the tar is rebuilt when any of them (or
# busybox, or this script) is newer than it. (Shared libraries are not tracked: delete the tar
# after a libc upgrade.)
build() {
  local tag=$1 name=$2 entrypoint=$3
  local filler=${4:-busybox}
  shift 3; [ $# -gt 0 ] && shift
  local tar="$OUT/$name.tar" fresh=1 dep
  for dep in "$SELF" "$BUSYBOX" "$@"; do
    [ -e "$dep" ] || continue
    [ -s "$tar" ] && [ "$tar" -nt "$(readlink -f "$dep")" ] || fresh=
  done
  if [ -n "$fresh" ]; then
    echo "$tag $tar"
    return 0
  fi
  local work
  work=$(mktemp -d)
  # Cleared when it fires: a RETURN trap set in a function stays set for the caller's returns.
  trap 'rm -rf "$work"; trap - RETURN' RETURN
  mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/www" \
    "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"
  "fill_${filler//-/_}" "$work/rootfs" "$@"
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
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":$entrypoint,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"kubeboot scripts/build-images.sh"}]}
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

# pause: PID 1 of the sandbox ignores signals it has no handler for, hence the trap. `-v`
# (the argument is $0 of `sh -c`) prints a version and exits 0, as the real pause does: kubeadm
# v1.20's upgrade health check runs a Job of it with args ["-v"] and waits for it to complete
# (cmd/kubeadm/app/phases/upgrade/health.go, createJob).
build k8s.gcr.io/pause:3.2 pause-3.2 \
  '["/bin/sh","-c","[ \"$0\" != -v ] || { echo pause 3.2 kubeboot; exit 0; }; trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]'
build kubeboot.local/web:1 web-1 \
  '["/bin/sh","-c","echo \"hello from $(hostname)\" >/www/index.html && exec httpd -f -p 80 -h /www"]'
[ -x /usr/bin/getent ] || die "/usr/bin/getent not found: install libc-bin"
build kubeboot.local/dnsutils:1 dnsutils-1 \
  '["/bin/sh","-c","trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]' \
  getent /usr/bin/getent

# build_kubernetes <bin dir> <version> <env var naming the dir>: the images of kube-apiserver,
# kube-controller-manager, kube-scheduler and kube-proxy at <version>, from <bin dir>.
build_kubernetes() {
  local bin=$1 version=$2 var=$3 c f
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$bin/$c" ] || die "$bin/$c not found (set $var)"
    build "k8s.gcr.io/$c:$version" "$c-$version" "[\"/usr/local/bin/$c\"]" \
      binary "$bin/$c"
  done
  [ -x "$bin/kube-proxy" ] || die "$bin/kube-proxy not found (set $var)"
  for f in /usr/sbin/xtables-nft-multi /usr/sbin/conntrack /usr/lib/x86_64-linux-gnu/xtables; do
    [ -e "$f" ] || die "$f not found: install iptables and conntrack"
  done
  build "k8s.gcr.io/kube-proxy:$version" "kube-proxy-$version" \
    '["/usr/local/bin/kube-proxy"]' kube-proxy "$bin/kube-proxy" \
    /usr/sbin/xtables-nft-multi /usr/sbin/conntrack
}

if [ -n "$CONTROL_PLANE" ]; then
  build_kubernetes "$K8S_BIN" "$K8S_VERSION" KUBEBOOT_BIN_DIR
  etcd_bin=${ETCD:-}
  if [ -z "$etcd_bin" ]; then
    etcd_bin=/usr/bin/etcd
    [ -x "$K8S_BIN/etcd" ] && etcd_bin=$K8S_BIN/etcd
  fi
  [ -x "$etcd_bin" ] || die "etcd not found (install etcd-server or set ETCD)"
  # Captured first: `etcd --version | grep -q` fails under pipefail when grep exits before
  # etcd has written its last line (SIGPIPE).
  etcd_version=$("$etcd_bin" --version 2>/dev/null || true)
  grep -q '^etcd Version: 3\.4\.' <<<"$etcd_version" \
    || die "$etcd_bin is not etcd 3.4 (kubeadm v1.20 runs etcd 3.4.13)"
  [ "$(basename "$etcd_bin")" = etcd ] || die "$etcd_bin: the etcd binary must be named etcd"
  build k8s.gcr.io/etcd:3.4.13-0 etcd-3.4.13-0 '["/usr/local/bin/etcd"]' binary "$etcd_bin"
fi

if [ -n "$TEST_BUILD" ]; then
  [ -x "$K8S_BIN_NEXT/kube-apiserver" ] \
    || die "$K8S_BIN_NEXT/kube-apiserver not found: build the test build (scripts/build-kubernetes.sh --test-build) or set KUBEBOOT_BIN_DIR_NEXT"
  # "Kubernetes v1.20.3-test.0": the tag kubeadm names for the version it upgrades to.
  next_version=$("$K8S_BIN_NEXT/kube-apiserver" --version 2>/dev/null || true)
  next_version=${next_version#Kubernetes }
  [[ $next_version =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] \
    || die "$K8S_BIN_NEXT/kube-apiserver --version printed '$next_version', not a Kubernetes version: rebuild the test build (scripts/build-kubernetes.sh --test-build)"
  [ "$next_version" != "$K8S_VERSION" ] \
    || die "$K8S_BIN_NEXT holds $K8S_VERSION, not the test build: set KUBEBOOT_BIN_DIR_NEXT to the test build's directory"
  build_kubernetes "$K8S_BIN_NEXT" "$next_version" KUBEBOOT_BIN_DIR_NEXT
fi
