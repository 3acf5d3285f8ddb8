#!/usr/bin/env bash
# Build the real Kubernetes v1.20.2 binaries that kubeboot's integration and end-to-end
# tests run: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# kubectl, kubeadm.
#
# Source: Debian bookworm's `kubernetes` source package (the one release whose full source
# Debian ships), compiled with Debian's Go (1.19). Only apt is used to fetch anything.
#
# Output (cached; a second run only checks the files and exits):
#   ${KUBE_BIN_CACHE:-$HOME/.cache/kube-bin}/v1.20.2/<component>
# The last line printed on stdout is that directory; progress goes to stderr.
#
# --test-build: build the same v1.20.2 source a second time, labelled as the TEST BUILD
#   v1.20.3-test.0, into .../v1.20.3-test.0/<component>. It is not a Kubernetes release:
#   it exists so that `kubeboot upgrade` has a newer version on disk to plan and move to
#   (issue 11). The label goes in through KUBE_GIT_VERSION_FILE, because
#   hack/lib/version.sh replaces a plain KUBE_GIT_VERSION with the tarball's own tag. The
#   version only enters through the linker's -X flags, so with the tree's GOCACHE
#   (_output/local/go/cache) from the first build this mostly relinks.
#
# Usage: scripts/build-kubernetes.sh [--test-build] [component ...]      (root: apt-get)
# A first build takes about 6-15 minutes on 2 cores; the test build after it, a few minutes.
#
# Concurrency: builds are serialised with flock on $KUBE_BIN_CACHE/.build.lock, and the
# script also waits (bounded) while any other process works inside the source tree (for
# example the older shared recipe), so two builds never share one tree.
set -euo pipefail

readonly K8S_VERSION=v1.20.2
# The test build's label: a pre-release of the next patch, so upgrade policy treats it as
# the experimental version it is (kubeadm wants --allow-experimental-upgrades for it).
readonly TEST_BUILD_VERSION=v1.20.3-test.0
readonly CACHE_ROOT="${KUBE_BIN_CACHE:-$HOME/.cache/kube-bin}"
TEST_BUILD=0
if [ "${1:-}" = --test-build ]; then TEST_BUILD=1; shift; fi
readonly TEST_BUILD
if [ $TEST_BUILD = 1 ]; then
  readonly BUILD_VERSION=$TEST_BUILD_VERSION
else
  readonly BUILD_VERSION=$K8S_VERSION
fi
readonly BIN_OUT="$CACHE_ROOT/$BUILD_VERSION"
readonly SRC_DIR="$CACHE_ROOT/src"
readonly TREE="$SRC_DIR/kubernetes-${K8S_VERSION#v}"
readonly WAIT_OTHER_BUILD_SECS="${KUBE_BUILD_WAIT_SECS:-2700}"
ALL_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)

say() { echo "[build-kubernetes] $*" >&2; }
die() { say "error: $*"; exit 1; }

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${ALL_COMPONENTS[@]}")

todo() {
  local c out=()
  for c in "${wanted[@]}"; do [ -x "$BIN_OUT/$c" ] || out+=("$c"); done
  echo "${out[@]:-}"
}

if [ -z "$(todo)" ]; then echo "$BIN_OUT"; exit 0; fi

# Any process (other than us) whose working directory lies in the source tree is a build
# in progress: wait for it, bounded, reporting progress.
others_in_tree() {
  local p cwd
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
    case "$cwd" in "$TREE" | "$TREE"/*) echo "${p#/proc/}"; return 0 ;; esac
  done
  return 1
}

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  say "another build-kubernetes.sh holds $CACHE_ROOT/.build.lock; waiting (max ${WAIT_OTHER_BUILD_SECS}s)"
  flock -w "$WAIT_OTHER_BUILD_SECS" 9 || die "timed out waiting for the other build"
fi
deadline=$(( $(date +%s) + WAIT_OTHER_BUILD_SECS ))
while pid=$(others_in_tree); do
  [ "$(date +%s)" -lt "$deadline" ] || die "process $pid is still working in $TREE after ${WAIT_OTHER_BUILD_SECS}s"
  say "a build is in progress in $TREE (pid $pid); waiting; have: $(ls "$BIN_OUT" 2>/dev/null | tr '\n' ' ')"
  sleep 10
done
if [ -z "$(todo)" ]; then echo "$BIN_OUT"; exit 0; fi
read -r -a missing <<<"$(todo)"

export DEBIAN_FRONTEND=noninteractive
for tool in go make rsync python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh (installs golang-go make rsync python3)"
done

have_deb_src() { [ -n "$(apt-cache showsrc kubernetes 2>/dev/null)" ]; }

prepare_tree() {
  mkdir -p "$SRC_DIR"
  if ! have_deb_src; then
    say "adding a deb-src entry for bookworm main"
    cat >/etc/apt/sources.list.d/kube-bin-debsrc.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq >&2
    have_deb_src || die "apt still knows no source package 'kubernetes'"
  fi
  if ! ls "$SRC_DIR"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
    say "fetching Debian source package 'kubernetes'"
    (cd "$SRC_DIR" && apt-get source --download-only kubernetes >&2)
  fi
  rm -rf "$TREE"
  say "unpacking $(ls "$SRC_DIR"/kubernetes_*.orig.tar.gz)"
  tar -xzf "$SRC_DIR"/kubernetes_*.orig.tar.gz -C "$SRC_DIR"
  [ -d "$TREE" ] || die "the source archive did not unpack to $TREE"

  # The vendored github.com/modern-go/reflect2 v1.0.1 declares runtime.mapiterinit with
  # the pre-Go-1.18 signature (returning *hiter) and a two-field hiter. Go 1.19's runtime
  # fills a whole hiter in the caller's memory, so json-iterator corrupts the stack and
  # crashes as soon as it encodes a map (kubeadm does). Port reflect2 v1.0.2's fix: the
  # caller passes a full-size hiter in.
  local r="$TREE/vendor/github.com/modern-go/reflect2"
  python3 - "$r/unsafe_link.go" "$r/unsafe_map.go" <<'PY'
import re
import sys

link_go, map_go = sys.argv[1], sys.argv[2]

src = open(link_go).read()
src = src.replace(
    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter",
    "func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)",
)
hiter_go119 = """type hiter struct {
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}"""
src = re.sub(r"type hiter struct \{.*?\n\}", hiter_go119, src, count=1, flags=re.S)
open(link_go, "w").write(src)

src = open(map_go).read()
caller_old = """	return &UnsafeMapIterator{
		hiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),"""
caller_new = """	var it hiter
	mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), &it)
	return &UnsafeMapIterator{
		hiter:      &it,"""
if caller_old in src:
    open(map_go, "w").write(src.replace(caller_old, caller_new))
PY
  grep -q "checkBucket uintptr" "$r/unsafe_link.go" || die "reflect2 patch: hiter layout not applied"
  grep -q "it \*hiter)" "$r/unsafe_link.go" || die "reflect2 patch: mapiterinit signature not applied"
  grep -q "mapiterinit(type2.rtype, \*(\*unsafe.Pointer)(obj), &it)" "$r/unsafe_map.go" \
    || die "reflect2 patch: caller in unsafe_map.go not applied"

  # The build scripts expect a GOPATH layout with the tree at k8s.io/kubernetes.
  mkdir -p "$TREE/.go/src/k8s.io"
  ln -sfn ../../.. "$TREE/.go/src/k8s.io/kubernetes"
  touch "$TREE/.kube-bin-ready"
}

[ -f "$TREE/.kube-bin-ready" ] || prepare_tree

mkdir -p "$BIN_OUT" "$CACHE_ROOT/home"
cd "$TREE"
export GOPATH="$TREE/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor
if [ $TEST_BUILD = 1 ]; then
  # hack/lib/version.sh sources this file instead of asking git or the tarball's tag.
  version_file="$CACHE_ROOT/$TEST_BUILD_VERSION.version"
  cat >"$version_file" <<VERSION
KUBE_GIT_VERSION='$TEST_BUILD_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20+'
KUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'
KUBE_GIT_TREE_STATE='clean'
VERSION
  export KUBE_GIT_VERSION_FILE="$version_file"
  say "test build $TEST_BUILD_VERSION (the v1.20.2 source relabelled; not a Kubernetes release)"
else
  export KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
fi
label=$BUILD_VERSION
[ $TEST_BUILD = 0 ] || label="test build $BUILD_VERSION"
t_all=$(date +%s)
for c in "${missing[@]}"; do
  say "building $c ($label)"
  t0=$(date +%s)
  HOME="$CACHE_ROOT/home" make WHAT="cmd/$c" >&2
  # Never let a binary with the wrong label land in the output directory.
  if [ "$c" != kubectl ] && [ "$c" != kubeadm ]; then
    got=$("_output/bin/$c" --version 2>&1) || true
    [ "$got" = "Kubernetes $BUILD_VERSION" ] || die "_output/bin/$c --version says '$got', not 'Kubernetes $BUILD_VERSION'"
  fi
  install -m 0755 "_output/bin/$c" "$BIN_OUT/$c.tmp"
  mv -f "$BIN_OUT/$c.tmp" "$BIN_OUT/$c"
  say "$c built in $(( $(date +%s) - t0 ))s"
done
say "$label: ${missing[*]} built in $(( $(date +%s) - t_all ))s"
echo "$BIN_OUT"
