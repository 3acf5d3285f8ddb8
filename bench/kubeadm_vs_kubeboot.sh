#!/usr/bin/env bash
# Upstream `kubeadm init` vs `kubeboot init`, side by side on this machine, one namespace node
# each (scripts/node.sh). Not a test: nothing here asserts a time.
#
#   bash bench/kubeadm_vs_kubeboot.sh
#
# Both nodes get the same prerequisites before the clock starts, as an operator would have
# them: containerd running in the node (the same config as kubeboot writes for its own:
# restrict_oom_score_adj, CNI from $KUBEBOOT_CNI_BIN_DIR) with every image of
# `scripts/build-images.sh --control-plane` imported (kubeadm's `config images pull`), and one
# config file (kubeadm v1beta2 + a KubeletConfiguration with the node's own cgroupRoot + a
# KubeProxyConfiguration with `conntrack.maxPerCore: 0`).
#   kubeadm node: `kubeadm init --skip-phases=preflight` (upstream v1.20 insists on crictl
#     otherwise); no systemd, so a supervisor loop in the node starts the kubelet exactly as
#     kubeadm's systemd drop-in (10-kubeadm.conf) would, once kubeadm has written
#     /var/lib/kubelet/{config.yaml,kubeadm-flags.env}, and restarts it 1 s after it exits
#     (systemd's unit says 10 s: kubeadm gets the benefit). kubeadm installs no pod network,
#     so a bridge CNI conflist for the first podCIDR (10.244.0.0/24) is written beforehand.
#     CoreDNS has no image here (Debian packages none); neither measurement needs it.
#   kubeboot node: `kubeboot init` (the agent runs the control plane, kubelet, kube-proxy and
#     writes the CNI conflist itself).
#   kubeboot kubelet node: `kubeboot init --static-pod-runner kubelet` (the kubelet runs the
#     control plane from the same images; kube-proxy from the DaemonSet; the agent runs the
#     kubelet and writes the CNI conflist).
# Measured from the start of init (wall clock): node Ready, and a Running pod of a 1-replica
# Deployment of kubeboot.local/web:1 created right after init returns (after untainting).
# Every wait is bounded; both nodes are destroyed on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
readonly KA=kb-vs-kubeadm KA_IP=10.123.0.45 KB=kb-vs-kubeboot KB_IP=10.123.0.46
readonly KK=kb-vs-kubelet KK_IP=10.123.0.47
work=$(mktemp -d)
cleanup() {
  bash "$NODE_SH" destroy "$KA" >/dev/null 2>&1 || true
  bash "$NODE_SH" destroy "$KB" >/dev/null 2>&1 || true
  bash "$NODE_SH" destroy "$KK" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

kc() { local n=$1; shift; in_node "$n" "$KUBECTL" --kubeconfig /etc/kubernetes/admin.conf "$@"; }

echo "== images (scripts/build-images.sh --control-plane)"
images=$(bash "$ROOT/scripts/build-images.sh" --control-plane)
echo "$images" | sed 's/^/   /'

config() { # <node name> <ip>
  cat <<CFG
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $2
nodeRegistration:
  name: $1
  criSocket: /run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupRoot: /kubeboot-$1
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

cat >"$work/10-bridge.conflist" <<'JSON'
{
  "cniVersion": "0.4.0",
  "name": "bench",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON

prepare() { # <node> <ip>: node, config, containerd running with every image imported
  local n=$1 ip=$2
  bash "$NODE_SH" destroy "$n" >/dev/null 2>&1 || true
  bash "$NODE_SH" create "$n" "$ip/24" >/dev/null
  config "$n" "$ip" >"$work/$n.yaml"
  in_node "$n" sh -c "mkdir -p /var/lib/kubeboot && cp '$work/$n.yaml' /var/lib/kubeboot/bench.yaml"
  kubeadm_containerd "$n" "$work" "$images"
}

# measure <node> <init log> <init command...>: prints "<to init end> <to Ready> <to Running pod>"
measure() {
  local n=$1 log=$2; shift 2
  local s e_init e_ready="" e_pod="" t
  s=$(now)
  if ! timeout "$TIMEOUT" bash "$NODE_SH" exec "$n" -- "$@" >"$log" 2>&1; then
    echo "init failed in $n:" >&2; tail -30 "$log" >&2; return 1
  fi
  e_init=$(now)
  kc "$n" taint nodes --all node-role.kubernetes.io/master- >/dev/null 2>&1 || true
  kc "$n" create deployment web --image=kubeboot.local/web:1 >/dev/null
  local deadline=$(( $(date +%s) + TIMEOUT ))
  while [ -z "$e_ready" ] || [ -z "$e_pod" ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "timed out in $n (ready=${e_ready:-no} pod=${e_pod:-no})" >&2
      kc "$n" get nodes,pods -A -o wide >&2 || true
      return 1
    fi
    t=$(now)
    if [ -z "$e_ready" ] && kc "$n" get node "$n" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True; then
      e_ready=$t
    fi
    if [ -z "$e_pod" ] && kc "$n" get pods -l app=web \
      -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' 2>/dev/null | grep -qx Running; then
      e_pod=$t
    fi
    sleep 0.2
  done
  echo "$(elapsed "$s" "$e_init") $(elapsed "$s" "$e_ready") $(elapsed "$s" "$e_pod")"
}

echo "== kubeadm v1.20.2 (node $KA, $KA_IP)"
prepare "$KA" "$KA_IP"
in_node "$KA" cp "$work/10-bridge.conflist" /etc/cni/net.d/10-bridge.conflist
kubeadm_kubelet_unit "$KA" "$work"
read -r ka_init ka_ready ka_pod < <(measure "$KA" "$work/kubeadm-init.log" \
  "$KUBEADM" init --config /var/lib/kubeboot/bench.yaml --skip-phases=preflight) \
  || { echo "kubelet log tail:" >&2; tail -20 "$work/$KA-kubelet.log" >&2; exit 1; }
echo "   init returned ${ka_init}s   node Ready ${ka_ready}s   web pod Running ${ka_pod}s"
bash "$NODE_SH" destroy "$KA" >/dev/null

echo "== kubeboot (node $KB, $KB_IP)"
prepare "$KB" "$KB_IP"
read -r kb_init kb_ready kb_pod < <(measure "$KB" "$work/kubeboot-init.log" \
  "$KUBEBOOT" init --config /var/lib/kubeboot/bench.yaml \
  --bin-dir "$KUBEBOOT_BIN_DIR" --bin-dir /usr/bin)
echo "   init returned ${kb_init}s   node Ready ${kb_ready}s   web pod Running ${kb_pod}s"
bash "$NODE_SH" destroy "$KB" >/dev/null

echo "== kubeboot --static-pod-runner kubelet (node $KK, $KK_IP)"
prepare "$KK" "$KK_IP"
read -r kk_init kk_ready kk_pod < <(measure "$KK" "$work/kubeboot-kubelet-init.log" \
  "$KUBEBOOT" init --config /var/lib/kubeboot/bench.yaml --static-pod-runner kubelet \
  --bin-dir "$KUBEBOOT_BIN_DIR" --bin-dir /usr/bin)
echo "   init returned ${kk_init}s   node Ready ${kk_ready}s   web pod Running ${kk_pod}s"
bash "$NODE_SH" destroy "$KK" >/dev/null

echo "== wall time from the start of init (ratio: kubeadm / kubeboot)"
printf '   %-16s %9s %15s %8s %17s %8s\n' "" kubeadm "kubeboot agent" ratio "kubeboot kubelet" ratio
row() {
  printf '   %-16s %8ss %14ss %8s %16ss %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" "$4" "$(ratio "$2" "$4")"
}
row "init returned" "$ka_init" "$kb_init" "$kk_init"
row "node Ready" "$ka_ready" "$kb_ready" "$kk_ready"
row "pod Running" "$ka_pod" "$kb_pod" "$kk_pod"
