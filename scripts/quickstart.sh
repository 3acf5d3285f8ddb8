#!/usr/bin/env bash
# README command 1: a kubeboot cluster on this machine, inside test nodes (network + mount +
# UTS namespaces; see scripts/node.sh). Needs root.
#
#   scripts/quickstart.sh [--nodes N] [--control-planes M]
#
# Runs scripts/setup.sh (packages, Kubernetes v1.20.2 binaries, kubeboot), creates node
# kb-quick at 10.123.0.10/24 and runs `kubeboot init` in it through vagrant/provision.sh (the
# script every Vagrant VM runs: its own address as controlPlaneEndpoint, --upload-certs).
# With --nodes N (1..9, default 1) nodes kb-quick-2 .. kb-quick-N (10.123.0.11 ..) join it:
# the first M-1 of them as control-plane nodes (--control-planes M, default 1; 1 or 3 keeps
# etcd's quorum sensible), the rest as workers, each printing its join command as a user
# would type it. Ends with `kubectl get nodes`.
# Environment: KB_QUICK_NODE (kb-quick), KB_QUICK_ADDR (10.123.0.10/24: node i gets the
#   address i-1 above it), KB_QUICK_IGNORE_PREFLIGHT (empty: a namespace node passes every
#   preflight check), KUBEBOOT_EXE (a kubeboot binary to use instead of building and
#   installing one: setup then runs with --no-kubeboot).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE="${KB_QUICK_NODE:-kb-quick}"
ADDR="${KB_QUICK_ADDR:-10.123.0.10/24}"
IGNORE="${KB_QUICK_IGNORE_PREFLIGHT:-}"
NODE_SH="$REPO/scripts/node.sh"
PROVISION="$REPO/vagrant/provision.sh"
NODES=1
CONTROL_PLANES=1

usage() { sed -n '2,17p' "$0" >&2; exit 2; }
die() { echo "quickstart.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) [ $# -ge 2 ] || die "--nodes needs a number"; NODES=$2; shift 2 ;;
    --nodes=*) NODES=${1#*=}; shift ;;
    --control-planes) [ $# -ge 2 ] || die "--control-planes needs a number"; CONTROL_PLANES=$2; shift 2 ;;
    --control-planes=*) CONTROL_PLANES=${1#*=}; shift ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (--nodes N, --control-planes M)" ;;
  esac
done
[[ "$NODES" =~ ^[1-9]$ ]] || die "--nodes $NODES: give a number from 1 to 9"
[[ "$CONTROL_PLANES" =~ ^[1-9]$ ]] && [ "$CONTROL_PLANES" -le "$NODES" ] \
  || die "--control-planes $CONTROL_PLANES: give a number from 1 to --nodes ($NODES)"
[[ "$ADDR" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.([0-9]+)/([0-9]+)$ ]] \
  || die "KB_QUICK_ADDR=$ADDR: give an IPv4 address with its prefix, e.g. 10.123.0.10/24"
NET=${BASH_REMATCH[1]} HOST=${BASH_REMATCH[2]} PREFIX=${BASH_REMATCH[3]}
[ $((HOST + NODES - 1)) -le 254 ] || die "KB_QUICK_ADDR=$ADDR leaves no room for $NODES nodes"
# node i (1-based): its name and address
node_name() { if [ "$1" = 1 ]; then echo "$NODE"; else echo "$NODE-$1"; fi; }
node_ip() { echo "$NET.$((HOST + $1 - 1))"; }

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "setting up the machine (scripts/setup.sh)"
if [ -n "${KUBEBOOT_EXE:-}" ]; then
  [ -x "$KUBEBOOT_EXE" ] || die "KUBEBOOT_EXE=$KUBEBOOT_EXE is not an executable"
  "$REPO/scripts/setup.sh" --no-kubeboot
  KUBEBOOT="$KUBEBOOT_EXE"
else
  "$REPO/scripts/setup.sh"
  KUBEBOOT=/usr/local/bin/kubeboot
fi
set -a
# shellcheck disable=SC1091
. "${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}/env"
set +a
KUBECTL="$KUBEBOOT_BIN_DIR/kubectl"   # v1.20.2; the host's /usr/bin/kubectl is another thing
# Where node1 leaves the join commands for the others: root's, on the host, which every node
# sees (a node's private directories are node.sh's NODE_DIRS; this is not one of them).
SHARED="${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}/quickstart-$NODE"
mkdir -p "$SHARED"
chmod 0700 "$SHARED"

in_node() { local n=$1; shift; "$NODE_SH" exec "$n" -- "$@"; }
# provision.sh's cluster part in node i. A node that is a namespace on a shared machine needs
# three settings a real machine does not (KUBEBOOT_NODE_CGROUP_ROOT): its kubelet gets a
# cgroup root of its own (node.sh creates /kubeboot-<node>), eviction thresholds that tolerate
# the host's shared disk, and kube-proxy must not set the global nf_conntrack_max.
provision() {
  local n=$1
  shift
  # Node1 writes the join commands before any other node runs: no long wait for them.
  in_node "$(node_name "$n")" env KUBEBOOT="$KUBEBOOT" KUBEBOOT_SHARED_DIR="$SHARED" KUBEBOOT_JOIN_WAIT=10 \
    KUBEBOOT_NODE_CGROUP_ROOT="/kubeboot-$(node_name "$n")" \
    bash "$PROVISION" "$@" -- --bin-dir "$KUBEBOOT_BIN_DIR" ${IGNORE:+--ignore-preflight-errors="$IGNORE"}
}

say "creating node $NODE ($ADDR)"
"$NODE_SH" create "$NODE" "$ADDR"

if in_node "$NODE" test -e /etc/kubernetes/admin.conf; then
  say "node $NODE already has a cluster; skipping init (reset: $NODE_SH exec $NODE -- kubeboot reset -f)"
else
  say "kubeboot init in $NODE (vagrant/provision.sh init $(node_ip 1))"
  provision 1 init "$(node_ip 1)"
fi

kc() { in_node "$NODE" "$KUBECTL" --kubeconfig /etc/kubernetes/admin.conf --request-timeout=10s "$@"; }

say "waiting for the API server (up to 120s)"
ok=0
for _ in $(seq 1 60); do
  if kc get --raw /livez >/dev/null 2>&1; then ok=1; break; fi
  sleep 2
done
[ $ok = 1 ] || echo "the API server did not become live within 120s; see below" >&2

if [ "$NODES" -gt 1 ]; then
  for n in $(seq 2 "$NODES"); do
    name=$(node_name "$n") ip=$(node_ip "$n")
    role=worker
    [ "$n" -le "$CONTROL_PLANES" ] && role=control-plane
    say "creating node $name ($ip/$PREFIX)"
    "$NODE_SH" create "$name" "$ip/$PREFIX"
    if in_node "$name" test -e /etc/kubernetes/kubelet.conf; then
      say "node $name already joined a cluster; skipping (reset: $NODE_SH exec $name -- kubeboot reset -f)"
      continue
    fi
    say "$name joins as a $role; the command, as you would type it on $name:"
    sed -n 's/^kubeboot /  kubeboot /p' "$SHARED/join-$role.sh"
    echo "  (vagrant/provision.sh join $role $ip runs it as a JoinConfiguration that adds the"
    echo "   node's address and its own kubelet cgroup root)"
    provision "$n" join "$role" "$ip"
  done
fi

say "kubectl get --raw /livez"
kc get --raw /livez || true
echo
say "kubectl get ns"
kc get ns || true
say "kubectl get nodes (Ready once each kubelet has registered and its CNI config is written; up to 180s)"
ready=0
for _ in $(seq 1 90); do
  ready=$(kc get nodes --no-headers 2>/dev/null | awk '$2 == "Ready"' | wc -l)
  [ "$ready" -ge "$NODES" ] && break
  sleep 2
done
[ "$ready" -ge "$NODES" ] || { echo "only $ready of $NODES nodes are Ready; see below" >&2; ok=0; }
say "kubectl -n kube-system get pods"
kc -n kube-system get pods -o wide || true
say "kubeboot agent status ($NODE)"
in_node "$NODE" "$KUBEBOOT" agent status || true
say "kubectl get nodes"
kc get nodes -o wide || true

others=""
[ "$NODES" -gt 1 ] && others=" (and in $(node_name 2)..$(node_name "$NODES"))"
cat <<MSG

The cluster runs inside node $NODE$others; each agent is a daemon in its node's namespaces.
  enter the node:   $NODE_SH shell $NODE
  kubectl:          $NODE_SH exec $NODE -- $KUBECTL --kubeconfig /etc/kubernetes/admin.conf get pods -A
  join commands:    $SHARED/join-worker.sh, $SHARED/join-control-plane.sh
  reset a node:     $NODE_SH exec $NODE -- kubeboot reset -f
  remove the nodes: $(for n in $(seq 1 "$NODES"); do printf '%s destroy %s; ' "$NODE_SH" "$(node_name "$n")"; done)
MSG
[ $ok = 1 ]
