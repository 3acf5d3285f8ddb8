#!/usr/bin/env bash
# Fetch the second etcd version that `kubeboot upgrade` moves to: Debian trixie's
# etcd-server 3.5.16 (bookworm ships 3.4.23). It runs on bookworm: it depends only on
# libc6 >= 2.34. An etcd 3.4 -> 3.5 upgrade migrates the data for real (issue 11).
#
# Only apt is used, through a sources list and state directory of this script's own, so the
# system's apt sources stay bookworm-only: the one .deb is downloaded with
# `apt-get download` and unpacked with `dpkg-deb -x`; nothing is installed.
#
# Output (cached; a second run only checks the binary and exits):
#   ${KUBE_BIN_CACHE:-$HOME/.cache/kube-bin}/etcd-3.5.16/usr/bin/etcd
# The last line printed on stdout is that directory (.../usr/bin); progress goes to stderr.
#
# Usage: scripts/fetch-etcd-next.sh      (no root needed for the cache; apt-get download
#        runs as the calling user)
set -euo pipefail

readonly ETCD_DEB_VERSION=3.5.16-4
readonly ETCD_VERSION=3.5.16
readonly CACHE_ROOT="${KUBE_BIN_CACHE:-$HOME/.cache/kube-bin}"
readonly OUT="$CACHE_ROOT/etcd-$ETCD_VERSION"
readonly APT_DIR="$CACHE_ROOT/apt-trixie"

say() { echo "[fetch-etcd-next] $*" >&2; }
die() { say "error: $*"; exit 1; }

etcd_ok() {
  [ -x "$OUT/usr/bin/etcd" ] && "$OUT/usr/bin/etcd" --version 2>/dev/null | grep -q "^etcd Version: $ETCD_VERSION\$"
}

if etcd_ok; then echo "$OUT/usr/bin"; exit 0; fi

mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  >"$APT_DIR/trixie.list"
# SourceList: only trixie; SourceParts=/dev/null: ignore /etc/apt/sources.list.d;
# Dir::State::Lists: the trixie index lands here, never in /var/lib/apt/lists; no pkgcache:
# the system's bookworm view of apt stays exactly as it is.
apt_opts=(
  -o "Dir::Etc::SourceList=$APT_DIR/trixie.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
)
# The cache lives in root's home, which apt's _apt sandbox user cannot write.
[ "$(id -u)" != 0 ] || apt_opts+=(-o "APT::Sandbox::User=root")

say "apt-get update (trixie, private lists in $APT_DIR/lists)"
apt-get "${apt_opts[@]}" update -qq >&2 || die "apt-get update for trixie failed"

say "apt-get download etcd-server=$ETCD_DEB_VERSION"
(cd "$APT_DIR/archives" && apt-get "${apt_opts[@]}" download "etcd-server=$ETCD_DEB_VERSION" >&2) \
  || die "could not download etcd-server=$ETCD_DEB_VERSION from trixie"
deb=$(ls "$APT_DIR/archives"/etcd-server_"${ETCD_DEB_VERSION}"_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "no etcd-server_${ETCD_DEB_VERSION}_*.deb in $APT_DIR/archives"

tmp=$(mktemp -d "$CACHE_ROOT/.etcd-$ETCD_VERSION.XXXXXX")
dpkg-deb -x "$deb" "$tmp"
[ -x "$tmp/usr/bin/etcd" ] || { rm -rf "$tmp"; die "$deb has no usr/bin/etcd"; }
rm -rf "$OUT"
mv "$tmp" "$OUT"
etcd_ok || die "$OUT/usr/bin/etcd --version does not say etcd Version: $ETCD_VERSION"
say "etcd $ETCD_VERSION in $OUT/usr/bin"
echo "$OUT/usr/bin"
