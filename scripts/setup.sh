#!/usr/bin/env bash
# Prepare this machine for kubeboot development and tests. Idempotent, non-interactive,
# quick when everything is already in place. Needs root.
#
#   1. Debian packages: etcd (server, and etcdctl for snapshot restore), containerd, runc, CNI plugins, iproute2, iptables, strace
#      (the crash-safety scenario kills kubeboot inside its syscalls), vagrant (vagrant/test.sh
#      validates vagrant/Vagrantfile; no VM runs), ...
#      (package scripts are not allowed to start daemons on the host)
#   2. Kubernetes v1.20.2 binaries, built from Debian's source (scripts/build-kubernetes.sh),
#      and the versions `kubeboot upgrade` moves to: the TEST BUILD v1.20.3-test.0 (the same
#      source relabelled; build-kubernetes.sh --test-build) and etcd 3.5.16 from Debian
#      trixie (scripts/fetch-etcd-next.sh; the system's apt sources stay bookworm-only)
#   3. kubeboot in release mode, installed to /usr/local/bin/kubeboot
#   4. /var/lib/kubeboot-dev/env, which tests and scripts source (see the end of the file)
#
# Usage: scripts/setup.sh [--no-kubeboot]
#   --no-kubeboot   skip step 3 (scripts/test.sh uses it: tests run the workspace build)
# Environment: KUBE_BIN_CACHE (default ~/.cache/kube-bin), KUBEBOOT_TARGET_DIR (default
#   ~/.cache/kubeboot/target), KUBEBOOT_DEV_DIR (default /var/lib/kubeboot-dev).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV_DIR="${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}"
ENV_FILE="$DEV_DIR/env"
TARGET_DIR="${KUBEBOOT_TARGET_DIR:-$HOME/.cache/kubeboot/target}"
BUILD_KUBEBOOT=1

for arg in "$@"; do
  case "$arg" in
    --no-kubeboot) BUILD_KUBEBOOT=0 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*" >&2; }
die() { say "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get, /usr/local/bin)"

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(etcd-server etcd-client iproute2 containerd runc containernetworking-plugins util-linux procps
  iptables conntrack busybox-static golang-go rsync make python3 strace vagrant
  dnsperf dnsmasq-base)
command -v curl >/dev/null || PACKAGES+=(curl)

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = 'install ok installed' ]; }

# PIDs of host daemons a package may start; compared before and after installing.
daemon_pids() { { pgrep -x etcd || true; pgrep -x containerd || true; } | sort; }

apt_lists_fresh() {
  # Fresh enough: a Packages index newer than one day.
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n1)" ]
}

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then say "Debian packages: all present"; return; fi
  say "installing: ${missing[*]}"

  local before policy_ours=0
  before=$(daemon_pids)
  # Keep package maintainer scripts from starting etcd/containerd on the host.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# kubeboot setup.sh: no daemon starts during installs\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    policy_ours=1
  fi
  # shellcheck disable=SC2064
  trap "[ $policy_ours = 1 ] && rm -f /usr/sbin/policy-rc.d" EXIT

  local apt_opts=(-y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  apt_lists_fresh || { say "apt-get update"; apt-get update -qq >&2; }
  if ! apt-get install "${apt_opts[@]}" "${missing[@]}" >&2; then
    say "install failed with the current lists; apt-get update and retry"
    apt-get update -qq >&2
    apt-get install "${apt_opts[@]}" "${missing[@]}" >&2
  fi

  [ $policy_ours = 1 ] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT

  # Anything named etcd/containerd that appeared during the install was started by it.
  local after pid
  after=$(daemon_pids)
  for pid in $(comm -13 <(echo "$before") <(echo "$after")); do
    say "stopping $(cat "/proc/$pid/comm" 2>/dev/null || echo '?') (pid $pid) started by a package script"
    kill "$pid" 2>/dev/null || true
  done
  for p in "${missing[@]}"; do installed "$p" || die "package $p did not install"; done
}

install_packages

for tool in etcd containerd runc ip nsenter unshare iptables conntrack busybox go strace vagrant; do
  command -v "$tool" >/dev/null || die "$tool not found after installing packages"
done
CNI_BIN_DIR=/usr/lib/cni
[ -x "$CNI_BIN_DIR/bridge" ] || die "CNI plugins missing in $CNI_BIN_DIR"

say "Kubernetes v1.20.2 binaries"
KUBE_DIR=$("$REPO/scripts/build-kubernetes.sh" | tail -n1)
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm; do
  [ -x "$KUBE_DIR/$c" ] || die "$KUBE_DIR/$c missing after build-kubernetes.sh"
done
[ "$("$KUBE_DIR/kube-apiserver" --version)" = 'Kubernetes v1.20.2' ] \
  || die "$KUBE_DIR/kube-apiserver is not v1.20.2"

# One directory with every binary a node runs: the Kubernetes components and etcd
# (Debian's). Symlinks, so rebuilding either side needs nothing here.
BIN_DIR="$DEV_DIR/bin"
mkdir -p "$BIN_DIR"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm; do
  ln -sfn "$KUBE_DIR/$c" "$BIN_DIR/$c"
done
ln -sfn "$(command -v etcd)" "$BIN_DIR/etcd"
command -v etcdctl >/dev/null && ln -sfn "$(command -v etcdctl)" "$BIN_DIR/etcdctl"

# The versions upgrade tests move to. KUBEBOOT_BIN_DIR_NEXT holds the test build of every
# Kubernetes component plus etcd 3.4 (an upgrade that keeps etcd); KUBEBOOT_ETCD_NEXT is the
# directory with etcd 3.5.16, for upgrades that move etcd too.
say "Kubernetes test build v1.20.3-test.0 (upgrade target; not a Kubernetes release)"
KUBE_DIR_NEXT=$("$REPO/scripts/build-kubernetes.sh" --test-build | tail -n1)
[ "$("$KUBE_DIR_NEXT/kube-apiserver" --version)" = 'Kubernetes v1.20.3-test.0' ] \
  || die "$KUBE_DIR_NEXT/kube-apiserver is not the test build v1.20.3-test.0"
say "etcd 3.5.16 from Debian trixie (upgrade target)"
ETCD_NEXT=$("$REPO/scripts/fetch-etcd-next.sh" | tail -n1)
BIN_DIR_NEXT="$DEV_DIR/bin-next"
mkdir -p "$BIN_DIR_NEXT"
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm; do
  ln -sfn "$KUBE_DIR_NEXT/$c" "$BIN_DIR_NEXT/$c"
done
ln -sfn "$(command -v etcd)" "$BIN_DIR_NEXT/etcd"

if [ $BUILD_KUBEBOOT = 1 ]; then
  say "building kubeboot (release) in $TARGET_DIR"
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p kubeboot >&2)
  built="$TARGET_DIR/release/kubeboot"
  if ! cmp -s "$built" /usr/local/bin/kubeboot; then
    install -m 0755 "$built" /usr/local/bin/kubeboot.tmp
    mv -f /usr/local/bin/kubeboot.tmp /usr/local/bin/kubeboot
    say "installed /usr/local/bin/kubeboot"
  fi
fi

cat >"$ENV_FILE.tmp" <<ENV
# Written by scripts/setup.sh; source it (set -a; . $ENV_FILE; set +a).
KUBEBOOT_BIN_DIR=$BIN_DIR
KUBE_BIN_DIR=$KUBE_DIR
KUBEBOOT_CNI_BIN_DIR=$CNI_BIN_DIR
KUBEBOOT_TARGET_DIR=$TARGET_DIR
KUBECTL=$BIN_DIR/kubectl
KUBEBOOT_BIN_DIR_NEXT=$BIN_DIR_NEXT
KUBEBOOT_ETCD_NEXT=$ETCD_NEXT
ENV
mv -f "$ENV_FILE.tmp" "$ENV_FILE"
say "ready; environment in $ENV_FILE:"
cat "$ENV_FILE"
