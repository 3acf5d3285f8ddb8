#!/usr/bin/env bash
# README command 1: a one-node kubeboot cluster on this machine, inside a test node
# (network + mount + UTS namespaces; see scripts/node.sh). Needs root.
#
#   scripts/quickstart.sh
#
# Runs scripts/setup.sh (packages, Kubernetes v1.20.2 binaries, kubeboot), creates node
# kb-quick at 10.123.0.10/24, runs `kubeboot init` in it and shows the cluster.
# Environment: KB_QUICK_NODE (kb-quick), KB_QUICK_ADDR (10.123.0.10/24),
#   KB_QUICK_IGNORE_PREFLIGHT (empty: a namespace node passes every preflight check).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE="${KB_QUICK_NODE:-kb-quick}"
ADDR="${KB_QUICK_ADDR:-10.123.0.10/24}"
IGNORE="${KB_QUICK_IGNORE_PREFLIGHT:-}"
NODE_SH="$REPO/scripts/node.sh"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "setting up the machine (scripts/setup.sh)"
"$REPO/scripts/setup.sh"
set -a
# shellcheck disable=SC1091
. "${KUBEBOOT_DEV_DIR:-/var/lib/kubeboot-dev}/env"
set +a
KUBECTL="$KUBEBOOT_BIN_DIR/kubectl"   # v1.20.2; the host's /usr/bin/kubectl is another thing

say "creating node $NODE ($ADDR)"
"$NODE_SH" create "$NODE" "$ADDR"
in_node() { "$NODE_SH" exec "$NODE" -- "$@"; }

if in_node test -e /etc/kubernetes/admin.conf; then
  say "node $NODE already has a cluster; skipping init (reset: $NODE_SH exec $NODE -- kubeboot reset -f)"
else
  # A node that is a namespace on a shared machine needs three settings a real machine does
  # not: its kubelet gets a cgroup root of its own (node.sh creates /kubeboot-<node>), eviction
  # thresholds that tolerate the host's shared disk, and kube-proxy must not set the global
  # nf_conntrack_max (it cannot from a network namespace).
  say "writing the node's init config (/var/lib/kubeboot/quickstart.yaml)"
  in_node sh -c 'mkdir -p /var/lib/kubeboot && cat > /var/lib/kubeboot/quickstart.yaml' <<CFG
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupRoot: /kubeboot-$NODE
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
  say "kubeboot init in $NODE"
  in_node kubeboot init --config /var/lib/kubeboot/quickstart.yaml --bin-dir "$KUBEBOOT_BIN_DIR" \
    ${IGNORE:+--ignore-preflight-errors="$IGNORE"}
fi

kc() { in_node "$KUBECTL" --kubeconfig /etc/kubernetes/admin.conf --request-timeout=10s "$@"; }

say "waiting for the API server (up to 120s)"
ok=0
for _ in $(seq 1 60); do
  if kc get --raw /livez >/dev/null 2>&1; then ok=1; break; fi
  sleep 2
done
[ $ok = 1 ] || echo "the API server did not become live within 120s; see below" >&2

say "kubectl get --raw /livez"
kc get --raw /livez || true
echo
say "kubectl get ns"
kc get ns || true
say "kubectl get nodes (Ready once the kubelet has registered and the CNI config is written)"
for _ in $(seq 1 45); do
  kc get nodes 2>/dev/null | grep -q ' Ready ' && break
  sleep 2
done
kc get nodes -o wide || true
say "kubectl -n kube-system get pods"
kc -n kube-system get pods -o wide || true
say "kubeboot agent status"
in_node kubeboot agent status || true

cat <<MSG

The cluster runs inside node $NODE (its agent is a daemon in the node's namespaces).
  enter the node:   $NODE_SH shell $NODE
  kubectl:          $NODE_SH exec $NODE -- $KUBECTL --kubeconfig /etc/kubernetes/admin.conf get pods -A
  reset the node:   $NODE_SH exec $NODE -- kubeboot reset -f
  remove the node:  $NODE_SH destroy $NODE
MSG
[ $ok = 1 ]
