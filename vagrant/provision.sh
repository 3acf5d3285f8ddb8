#!/usr/bin/env bash
# The project's node provisioning script: what vagrant/Vagrantfile runs in each VM, and what
# the multi-node tests and `scripts/quickstart.sh --nodes N` run in each namespace node. One
# recipe, so the VM cluster's recipe is the tested one. Needs root.
#
#   provision.sh install [--no-kubeboot]              packages, Kubernetes binaries, kubeboot
#   provision.sh init <addr> [-- <kubeboot init args>]
#       kubeboot init with <addr>:6443 as controlPlaneEndpoint and --upload-certs; writes the
#       join commands to $KUBEBOOT_SHARED_DIR/join-worker.sh and join-control-plane.sh
#   provision.sh join <worker|control-plane> <addr> [-- <kubeboot join args>]
#       kubeboot join with the command that init wrote, this node's kubelet on <addr>
#       (and, for control-plane, its API server advertised on <addr>)
#
# `install` runs scripts/setup.sh (apt packages, the Kubernetes v1.20.2 binaries built from
# Debian's source, kubeboot built and installed to /usr/local/bin; --no-kubeboot skips the
# last); with no cargo on the machine it first installs Rust with rustup. `init` and `join`
# only need what `install` put there, so nodes that share an already set-up machine (the
# namespace nodes of scripts/node.sh) call them alone.
#
# Environment:
#   KUBEBOOT_SHARED_DIR   where init writes and join reads the join commands (/vagrant: the
#                         folder every VM shares)
#   KUBEBOOT              the kubeboot binary (kubeboot on $PATH)
#   KUBEBOOT_CONFIG_DIR   where the node's config files are written (/var/lib/kubeboot)
#   KUBEBOOT_POD_SUBNET   the cluster's pod subnet (10.244.0.0/16)
#   KUBEBOOT_NODE_CGROUP_ROOT
#                         set on nodes that share one machine (namespace nodes): the kubelet's
#                         own cgroup root, eviction thresholds that tolerate the host's shared
#                         disk and kube-proxy leaving the global nf_conntrack_max alone, as
#                         scripts/quickstart.sh has always done
#   KUBEBOOT_JOIN_WAIT    seconds join waits for init's join command file to appear (600)
# Arguments after `--` go to kubeboot unchanged (e.g. --bin-dir DIR, --ignore-preflight-errors).
# Without a --bin-dir there, KUBEBOOT_BIN_DIR from /var/lib/kubeboot-dev/env (setup.sh's
# directory of every component binary) is passed as --bin-dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED_DIR="${KUBEBOOT_SHARED_DIR:-/vagrant}"
KUBEBOOT="${KUBEBOOT:-kubeboot}"
CONFIG_DIR="${KUBEBOOT_CONFIG_DIR:-/var/lib/kubeboot}"
POD_SUBNET="${KUBEBOOT_POD_SUBNET:-10.244.0.0/16}"
CGROUP_ROOT="${KUBEBOOT_NODE_CGROUP_ROOT:-}"
JOIN_WAIT="${KUBEBOOT_JOIN_WAIT:-600}"
DEV_ENV="${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}/env"
readonly API_PORT=6443

say() { echo "[provision] $*" >&2; }
die() { say "error: $*"; exit 2; }
# This file's opening comment (everything above `set -euo pipefail`).
help_text() { sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d'; }

valid_addr() {
  [[ "$1" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || die "'$1' is not an IPv4 address (the node's own address on the cluster network, e.g. 192.168.56.11)"
}

# kubeboot's arguments: the pass-through ones, plus setup.sh's binary directory when they name
# none. Sets KB_ARGS.
kubeboot_args() {
  KB_ARGS=("$@")
  local a
  for a in "$@"; do
    case "$a" in --bin-dir | --bin-dir=*) return ;; esac
  done
  local bin_dir="${KUBEBOOT_BIN_DIR:-}"
  if [ -z "$bin_dir" ] && [ -r "$DEV_ENV" ]; then
    bin_dir=$(sed -n 's/^KUBEBOOT_BIN_DIR=//p' "$DEV_ENV")
  fi
  [ -n "$bin_dir" ] && KB_ARGS=(--bin-dir "$bin_dir" "${KB_ARGS[@]}")
  return 0
}

# Splits "<positional...> [-- <pass-through...>]": sets POS and PASS.
split_args() {
  POS=()
  PASS=()
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; PASS=("$@"); return; fi
    POS+=("$1")
    shift
  done
}

# The YAML documents a node sharing its machine needs (see KUBEBOOT_NODE_CGROUP_ROOT).
shared_machine_docs() {
  [ -n "$CGROUP_ROOT" ] || return 0
  cat <<CFG
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupRoot: $CGROUP_ROOT
evictionHard:
  imagefs.available: 1%
  nodefs.available: 1%
  nodefs.inodesFree: 1%
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
conntrack:
  maxPerCore: 0
CFG
}

# Writes stdin to $1 readable by root only (it may hold a token or the certificate key).
write_private() {
  local tmp="$1.tmp.$$"
  (umask 077 && cat >"$tmp")
  mv -f "$tmp" "$1"
}

cmd_install() {
  local setup_args=()
  for a in "$@"; do
    case "$a" in
      --no-kubeboot) setup_args+=(--no-kubeboot) ;;
      *) die "install: unknown argument '$a' (only --no-kubeboot)" ;;
    esac
  done
  [ "$(id -u)" = 0 ] || die "install needs root"
  if [ ${#setup_args[@]} = 0 ] && ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
      say "no cargo on this machine: installing Rust with rustup (https://rustup.rs)"
      command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl ca-certificates; }
      curl -sSf --proto '=https' --tlsv1.2 https://sh.rustup.rs | sh -s -- -y --profile minimal
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  "$REPO/scripts/setup.sh" "${setup_args[@]}"
}

cmd_init() {
  split_args "$@"
  [ ${#POS[@]} = 1 ] || die "usage: provision.sh init <addr> [-- <kubeboot init args>]"
  local addr=${POS[0]}
  valid_addr "$addr"
  kubeboot_args "${PASS[@]}"
  [ -d "$SHARED_DIR" ] || die "shared directory $SHARED_DIR does not exist (set KUBEBOOT_SHARED_DIR to a directory every node sees)"

  local key config="$CONFIG_DIR/provision-init.yaml"
  key=$("$KUBEBOOT" certs certificate-key) || die "'$KUBEBOOT certs certificate-key' failed"
  mkdir -p "$CONFIG_DIR"
  # The certificate key goes in the file: kubeadm allows no --certificate-key next to --config.
  # The node's own address is both the endpoint and the kubelet's node-ip: a VM's default
  # route is its NAT interface, the same address on every VM.
  write_private "$config" <<CFG
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
certificateKey: $key
localAPIEndpoint:
  advertiseAddress: $addr
  bindPort: $API_PORT
nodeRegistration:
  kubeletExtraArgs:
    node-ip: $addr
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
controlPlaneEndpoint: $addr:$API_PORT
networking:
  podSubnet: $POD_SUBNET
$(shared_machine_docs)
CFG
  say "$KUBEBOOT init --config $config --upload-certs ${KB_ARGS[*]}"
  "$KUBEBOOT" init --config "$config" --upload-certs "${KB_ARGS[@]}"

  local worker control_plane
  worker=$("$KUBEBOOT" token create --print-join-command) || die "token create failed"
  control_plane=$("$KUBEBOOT" token create --print-join-command --certificate-key "$key") \
    || die "token create --certificate-key failed"
  printf '#!/bin/sh\n%s\n' "$worker" | write_private "$SHARED_DIR/join-worker.sh"
  printf '#!/bin/sh\n%s\n' "$control_plane" | write_private "$SHARED_DIR/join-control-plane.sh"
  say "join commands written to $SHARED_DIR/join-worker.sh and $SHARED_DIR/join-control-plane.sh:"
  printf '  %s\n  %s\n' "$worker" "$control_plane" >&2
}

# The word after $1 in the words $2...
word_after() {
  local flag=$1
  shift
  while [ $# -gt 1 ]; do
    [ "$1" = "$flag" ] && { echo "$2"; return; }
    shift
  done
}

cmd_join() {
  split_args "$@"
  [ ${#POS[@]} = 2 ] || die "usage: provision.sh join <worker|control-plane> <addr> [-- <kubeboot join args>]"
  local role=${POS[0]} addr=${POS[1]}
  case "$role" in
    worker | control-plane) ;;
    *) die "join: role '$role' is neither 'worker' nor 'control-plane'" ;;
  esac
  valid_addr "$addr"
  kubeboot_args "${PASS[@]}"

  local file="$SHARED_DIR/join-$role.sh" waited=0
  while [ ! -s "$file" ]; do
    [ "$waited" -lt "$JOIN_WAIT" ] || die "no $file after ${JOIN_WAIT}s: provision the first control-plane node (provision.sh init <addr>) first, with the same KUBEBOOT_SHARED_DIR"
    [ "$waited" = 0 ] && say "waiting up to ${JOIN_WAIT}s for $file"
    sleep 2
    waited=$((waited + 2))
  done

  local words endpoint token hash key
  # The command as the user would type it; a line continuation is whitespace.
  read -r -a words < <(sed -e 's/\\$//' "$file" | tr '\n' ' ') || true
  endpoint=$(word_after join "${words[@]}")
  token=$(word_after --token "${words[@]}")
  hash=$(word_after --discovery-token-ca-cert-hash "${words[@]}")
  key=$(word_after --certificate-key "${words[@]}")
  [ -n "$endpoint" ] && [ -n "$token" ] && [ -n "$hash" ] \
    || die "$file holds no 'join <endpoint> --token T --discovery-token-ca-cert-hash H' command; provision the first node again"
  [ "$role" = worker ] || [ -n "$key" ] || die "$file has no --certificate-key"

  local control_plane=""
  [ "$role" = control-plane ] && control_plane="controlPlane:
  certificateKey: $key
  localAPIEndpoint:
    advertiseAddress: $addr
    bindPort: $API_PORT"
  local cgroup_arg=""
  [ -n "$CGROUP_ROOT" ] && cgroup_arg="
    cgroup-root: $CGROUP_ROOT"
  local config="$CONFIG_DIR/provision-join.yaml"
  mkdir -p "$CONFIG_DIR"
  # The flags init printed, as a JoinConfiguration: kubeadm allows no discovery flags next to
  # --config, and the kubelet's node-ip (and a shared machine's cgroup root) need the file.
  write_private "$config" <<CFG
apiVersion: kubeadm.k8s.io/v1beta2
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: $endpoint
    token: $token
    caCertHashes:
    - $hash
nodeRegistration:
  kubeletExtraArgs:
    node-ip: $addr$cgroup_arg
$control_plane
CFG
  say "$KUBEBOOT join --config $config ${KB_ARGS[*]}   (from $file)"
  "$KUBEBOOT" join --config "$config" "${KB_ARGS[@]}"
}

[ $# -ge 1 ] || { help_text >&2; exit 2; }
sub=$1
shift
case "$sub" in
  install) cmd_install "$@" ;;
  init) cmd_init "$@" ;;
  join) cmd_join "$@" ;;
  -h | --help | help) help_text ;;
  *) die "unknown command '$sub' (install, init or join)" ;;
esac
