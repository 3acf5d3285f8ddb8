#!/usr/bin/env bash
# Test nodes on one machine: each node is a network namespace + a persistent mount
# namespace + a UTS namespace, with its own hostname, address, /etc/hosts, resolv.conf and
# private copies of every directory a Kubernetes node writes (/etc/kubernetes,
# /var/lib/etcd, /var/lib/kubelet, /run/netns, ...). The README quickstart and the Rust
# end-to-end harness (tests/src) both use this script; there is no second implementation.
#
# Usage (root):
#   node.sh create <name> <ip/prefix>   create the node if absent (e.g. n1 10.123.0.11/24)
#   node.sh exec <name> -- <cmd...>     run a command inside the node (exit status passes through)
#   node.sh shell <name>                interactive shell inside the node
#   node.sh destroy <name>              kill the node's processes, unmount, delete (idempotent)
#   node.sh destroy-all                 destroy every node and the hub
#   node.sh list                        name, address, process count per node
#   node.sh paths <name>                print NETNS=, MNTNS=, UTSNS=, STATE= for the node
#
# Network: all nodes hang off a bridge in the namespace `kb-hub`, which has no uplink and
# no route off the machine. The hub holds the first address of each node's subnet
# (10.123.0.1 for 10.123.0.11/24) and every node's default route points there, so a node
# can reach other nodes and nothing else. The host's own network namespace is never
# changed and cannot reach the nodes.
#
# Filesystem: the node's state lives in /var/lib/kubeboot-nodes/<name>/<dir>, bind-mounted
# over the real paths inside the node's mount namespace only. Where the host lacks a mount
# point (e.g. /etc/kubernetes) an empty directory is created on the host; nothing is ever
# written into the host's copies. The namespace files live on a private bind mount under
# /run/kubeboot-nodes/<name>/{mnt,uts}.
#
# Enter a node with nsenter (what `exec` does), never `ip netns exec`: the latter mounts a
# fresh /sys that hides /sys/fs/cgroup and breaks runc.
set -euo pipefail

readonly HUB=kb-hub
readonly HUB_BRIDGE=kb-br0
readonly STATE_ROOT=/var/lib/kubeboot-nodes
readonly RUN_ROOT=/run/kubeboot-nodes
readonly LOCK_FILE=/run/kubeboot-nodes.lock
readonly LOCK_WAIT_SECS=120
# <state dir name>:<path inside the node>
readonly NODE_DIRS=(
  etc-kubernetes:/etc/kubernetes
  etc-kubeboot:/etc/kubeboot
  var-lib-etcd:/var/lib/etcd
  var-lib-kubeboot:/var/lib/kubeboot
  run-kubeboot:/run/kubeboot
  var-log-pods:/var/log/pods
  var-log-containers:/var/log/containers
  var-log-kubeboot:/var/log/kubeboot
  var-lib-kubelet:/var/lib/kubelet
  var-lib-kube-proxy:/var/lib/kube-proxy
  run-netns:/run/netns
  run-kubernetes:/run/kubernetes
  etc-cni-net.d:/etc/cni/net.d
  var-lib-cni:/var/lib/cni
  etc-containerd:/etc/containerd
  var-lib-containerd:/var/lib/containerd
  run-containerd:/run/containerd
)
# <state file name>:<file inside the node>
readonly NODE_FILES=(hosts:/etc/hosts resolv.conf:/etc/resolv.conf hostname:/etc/hostname)

say() { echo "[node.sh] $*" >&2; }
die() { say "error: $*"; exit 1; }
usage() { sed -n '8,16p' "$0" >&2; exit 2; }

valid_name() {
  [[ "$1" =~ ^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$ ]] && [ "$1" != "$HUB" ] \
    || die "bad node name '$1' (lowercase letters, digits, '-', at most 42 chars, not $HUB)"
}

netns_path() { echo "/run/netns/$1"; }
# The node's kubelet cgroupRoot: nodes share the host's cgroup tree, so each kubelet gets its
# own hierarchy (the harness passes `cgroupRoot: /kubeboot-<name>` in its KubeletConfiguration).
cgroup_root() { echo "/kubeboot-$1"; }
# Every mounted cgroup hierarchy (v1 controllers, name=systemd, the v2 unified one).
cgroup_mounts() { findmnt -rn -t cgroup,cgroup2 -o TARGET; }

create_cgroups() {
  local name=$1 m dir
  for m in $(cgroup_mounts); do
    dir="$m$(cgroup_root "$name")"
    mkdir -p "$dir"
    # A new v1 cpuset starts with no CPUs or memory nodes; give it its parent's.
    if [ -f "$dir/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus")" ]; then
      cat "$m/cpuset.cpus" >"$dir/cpuset.cpus"
      cat "$m/cpuset.mems" >"$dir/cpuset.mems"
    fi
  done
}

# PIDs in the node's cgroup hierarchy: CRI containers live in namespaces of their own, but
# always under the node's kubelet cgroupRoot.
cgroup_pids() {
  local name=$1 m dir
  for m in $(cgroup_mounts); do
    dir="$m$(cgroup_root "$name")"
    [ -d "$dir" ] || continue
    find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done
}

remove_cgroups() {
  local name=$1 m dir
  for m in $(cgroup_mounts); do
    dir="$m$(cgroup_root "$name")"
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
run_dir() { echo "$RUN_ROOT/$1"; }
state_dir() { echo "$STATE_ROOT/$1"; }
# Hub-side veth name: interface names are at most 15 bytes, node names may be longer.
hub_veth() { echo "kbv$(printf '%s' "$1" | sha1sum | cut -c1-10)"; }

lock() {
  mkdir -p "$(dirname "$LOCK_FILE")"
  exec 8>"$LOCK_FILE"
  flock -w "$LOCK_WAIT_SECS" 8 || die "could not lock $LOCK_FILE within ${LOCK_WAIT_SECS}s"
}

is_mountpoint() { mountpoint -q "$1" 2>/dev/null; }

# The namespace files must sit on a mount that is not shared, or the kernel refuses the
# bind mount (and a shared one would loop the namespace into itself).
ensure_run_root() {
  mkdir -p "$RUN_ROOT"
  if ! is_mountpoint "$RUN_ROOT"; then
    mount --bind "$RUN_ROOT" "$RUN_ROOT"
  fi
  mount --make-private "$RUN_ROOT"
}

hub_addr_for() {
  python3 - "$1" <<'PY'
import ipaddress, sys
iface = ipaddress.ip_interface(sys.argv[1])
net = iface.network
if net.version != 4 or net.prefixlen > 30:
    sys.exit(f"need an IPv4 address with prefix <= /30, got {sys.argv[1]}")
gw = net.network_address + 1
if iface.ip == gw:
    sys.exit(f"{iface.ip} is reserved for the hub ({gw}/{net.prefixlen})")
if iface.ip in (net.network_address, net.broadcast_address):
    sys.exit(f"{iface.ip} is not a host address of {net}")
print(f"{gw}/{net.prefixlen}")
PY
}

ensure_hub() {
  if [ ! -e "$(netns_path "$HUB")" ]; then
    say "creating hub namespace $HUB (bridge $HUB_BRIDGE, no uplink)"
    ip netns add "$HUB"
  fi
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link show "$HUB_BRIDGE" >/dev/null 2>&1 \
    || ip -n "$HUB" link add "$HUB_BRIDGE" type bridge
  ip -n "$HUB" link set "$HUB_BRIDGE" up
  # Forwarding among nodes only (routes to pod networks behind nodes); there is no uplink.
  nsenter --net="$(netns_path "$HUB")" sysctl -qw net.ipv4.ip_forward=1
}

node_exists() { [ -e "$(netns_path "$1")" ] && is_mountpoint "$(run_dir "$1")/mnt"; }

cmd_create() {
  [ $# -eq 2 ] || usage
  local name=$1 addr=$2
  valid_name "$name"
  local hub_addr
  hub_addr=$(hub_addr_for "$addr") || die "bad address '$addr'"
  lock
  local st rd ns
  st=$(state_dir "$name"); rd=$(run_dir "$name"); ns=$(netns_path "$name")
  if node_exists "$name"; then
    [ "$(cat "$st/address" 2>/dev/null)" = "$addr" ] \
      || die "node $name exists with address $(cat "$st/address" 2>/dev/null || echo '?')"
    say "node $name already exists ($addr)"
    return 0
  fi
  local other
  for other in "$STATE_ROOT"/*/address; do
    [ -f "$other" ] || continue
    [ "${addr%/*}" != "$(cut -d/ -f1 "$other")" ] \
      || die "address ${addr%/*} is already used by node $(basename "$(dirname "$other")")"
  done
  # Leftovers of a half-created node with this name go first.
  destroy_locked "$name" quiet
  CREATING=$name
  trap 'if [ -n "${CREATING:-}" ]; then say "create $CREATING failed; cleaning up"; destroy_locked "$CREATING" quiet; fi' EXIT

  ensure_hub
  # (Output captured first: `ip ... | grep -q` fails under pipefail when grep exits early.)
  local hub_addrs
  hub_addrs=$(ip -n "$HUB" -4 -o addr show dev "$HUB_BRIDGE")
  [[ "$hub_addrs" == *" inet $hub_addr "* ]] || ip -n "$HUB" addr add "$hub_addr" dev "$HUB_BRIDGE"

  # Network namespace, veth into the hub bridge, address, default route via the hub.
  ip netns add "$name"
  local veth
  veth=$(hub_veth "$name")
  ip -n "$HUB" link add "$veth" type veth peer name eth0 netns "$name"
  ip -n "$HUB" link set "$veth" master "$HUB_BRIDGE" up
  ip -n "$name" link set lo up
  ip -n "$name" addr add "$addr" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" route add default via "${hub_addr%/*}"
  nsenter --net="$ns" sysctl -qw net.ipv4.ip_forward=1
  create_cgroups "$name"

  # State directories and files.
  mkdir -p "$st"
  echo "$addr" >"$st/address"
  local entry
  for entry in "${NODE_DIRS[@]}"; do
    mkdir -p "$st/${entry%%:*}"
    [ -d "${entry#*:}" ] || mkdir -p "${entry#*:}"   # empty mount point on the host
  done
  if [ -d /etc/containerd ]; then cp -a /etc/containerd/. "$st/etc-containerd/"; fi
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n' \
    "${addr%/*}" "$name" >"$st/hosts"
  printf '# kubeboot test node %s: no upstream nameserver, no lookup leaves the node\n' \
    "$name" >"$st/resolv.conf"
  echo "$name" >"$st/hostname"

  # Persistent mount + UTS namespaces with the private state mounted inside.
  ensure_run_root
  mkdir -p "$rd"
  : >"$rd/mnt"
  : >"$rd/uts"
  local script="set -e; hostname '$name'"
  for entry in "${NODE_DIRS[@]}"; do
    script+="; mount --bind '$st/${entry%%:*}' '${entry#*:}'"
  done
  for entry in "${NODE_FILES[@]}"; do
    script+="; mount --bind '$st/${entry%%:*}' '${entry#*:}'"
  done
  unshare --mount="$rd/mnt" --uts="$rd/uts" --propagation private -- /bin/sh -c "$script"
  CREATING=
  say "node $name: $addr, gateway ${hub_addr%/*} (hub $HUB)"
}

# PIDs whose namespace of type $1 (net, mnt, uts) is the one in file $2.
pids_in_ns() {
  local type=$1 file=$2 ino p
  [ -e "$file" ] || return 0
  ino=$(stat -L -c %i "$file" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/$type" 2>/dev/null)" = "$type:[$ino]" ] && echo "${p#/proc/}"
  done
  return 0
}

node_pids() {
  local name=$1 rd
  rd=$(run_dir "$name")
  {
    pids_in_ns net "$(netns_path "$name")"
    if is_mountpoint "$rd/mnt"; then pids_in_ns mnt "$rd/mnt"; fi
    if is_mountpoint "$rd/uts"; then pids_in_ns uts "$rd/uts"; fi
    cgroup_pids "$name"
  } | { grep -vx "$$" || true; } | sort -un
}

kill_node_processes() {
  local name=$1 round pids
  for round in $(seq 1 50); do
    pids=$(node_pids "$name")
    [ -n "$pids" ] || return 0
    [ "$round" -gt 1 ] || say "killing $(echo "$pids" | wc -w) process(es) of node $name"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  die "processes of node $name survive SIGKILL: $(node_pids "$name" | tr '\n' ' ')"
}

destroy_locked() {
  local name=$1 quiet=${2:-} st rd ns
  st=$(state_dir "$name"); rd=$(run_dir "$name"); ns=$(netns_path "$name")
  if [ ! -e "$ns" ] && [ ! -e "$rd" ] && [ ! -e "$st" ]; then
    [ -n "$quiet" ] || say "node $name does not exist"
    return 0
  fi
  kill_node_processes "$name"
  local f
  for f in "$rd/mnt" "$rd/uts"; do
    if is_mountpoint "$f"; then umount "$f" || umount -l "$f"; fi
  done
  if [ -e "$ns" ]; then ip netns delete "$name"; fi
  if [ -e "$(netns_path "$HUB")" ]; then
    ip -n "$HUB" link del "$(hub_veth "$name")" 2>/dev/null || true
  fi
  remove_cgroups "$name"
  rm -rf "$rd"
  if [ -e "$st" ]; then
    # Nothing may be mounted below the state dir on the host; never delete through a mount.
    local mounts
    mounts=$(findmnt -rn -o TARGET)
    if grep -q "^$st/" <<<"$mounts"; then
      die "something is mounted under $st on the host; not deleting it"
    fi
    rm -rf --one-file-system "$st"
  fi
  [ -n "$quiet" ] || say "node $name destroyed"
}

remove_hub_if_unused() {
  local d
  for d in "$RUN_ROOT"/*/; do [ -d "$d" ] && return 0; done
  if [ -e "$(netns_path "$HUB")" ]; then
    ip netns delete "$HUB"
    say "hub $HUB removed"
  fi
}

cmd_destroy() {
  [ $# -eq 1 ] || usage
  valid_name "$1"
  lock
  destroy_locked "$1"
  remove_hub_if_unused
}

cmd_destroy_all() {
  lock
  local d names=()
  for d in "$RUN_ROOT"/*/ "$STATE_ROOT"/*/; do [ -d "$d" ] && names+=("$(basename "$d")"); done
  if [ ${#names[@]} -gt 0 ]; then
    for d in $(printf '%s\n' "${names[@]}" | sort -u); do destroy_locked "$d"; done
  fi
  remove_hub_if_unused
}

cmd_list() {
  local d name
  printf '%-24s %-20s %s\n' NAME ADDRESS PROCESSES
  for d in "$RUN_ROOT"/*/; do
    [ -d "$d" ] || continue
    name=$(basename "$d")
    printf '%-24s %-20s %s\n' "$name" "$(cat "$(state_dir "$name")/address" 2>/dev/null || echo '?')" \
      "$(node_pids "$name" | wc -l)"
  done
}

require_node() {
  valid_name "$1"
  node_exists "$1" || die "no node '$1' (scripts/node.sh create $1 <ip/prefix>)"
}

enter() {
  local name=$1 rd
  shift
  rd=$(run_dir "$name")
  local wd=/
  [ -d "$PWD" ] && wd=$PWD
  exec nsenter --net="$(netns_path "$name")" --mount="$rd/mnt" --uts="$rd/uts" --wd="$wd" -- "$@"
}

cmd_exec() {
  [ $# -ge 1 ] || usage
  local name=$1
  shift
  [ "${1:-}" = "--" ] && shift
  [ $# -ge 1 ] || usage
  require_node "$name"
  enter "$name" "$@"
}

cmd_shell() {
  [ $# -eq 1 ] || usage
  require_node "$1"
  # kubectl v1.20.2 (from the dev env's bin dir, when set up) first on PATH, admin.conf as the
  # default kubeconfig: what a kubeadm user has on a control-plane node.
  local bin="" env_file="${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}/env"
  [ -r "$env_file" ] && bin=$(sed -n 's/^KUBEBOOT_BIN_DIR=//p' "$env_file")
  enter "$1" env PS1="[$1] \\w# " KUBECONFIG=/etc/kubernetes/admin.conf \
    PATH="${bin:+$bin:}$PATH" bash --norc -i
}

cmd_paths() {
  [ $# -eq 1 ] || usage
  require_node "$1"
  echo "NETNS=$(netns_path "$1")"
  echo "MNTNS=$(run_dir "$1")/mnt"
  echo "UTSNS=$(run_dir "$1")/uts"
  echo "STATE=$(state_dir "$1")"
}

[ $# -ge 1 ] || usage
[ "$(id -u)" = 0 ] || die "run as root"
sub=$1
shift
case "$sub" in
  create) cmd_create "$@" ;;
  exec) cmd_exec "$@" ;;
  shell) cmd_shell "$@" ;;
  destroy) cmd_destroy "$@" ;;
  destroy-all) cmd_destroy_all "$@" ;;
  list) cmd_list "$@" ;;
  paths) cmd_paths "$@" ;;
  -h | --help | help) usage ;;
  *) die "unknown command '$sub'" ;;
esac
