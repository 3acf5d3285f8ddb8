# shellcheck shell=bash
# What the kubeadm-vs-kubeboot benchmarks share (bench/kubeadm_vs_kubeboot.sh, bench/join.sh):
# timing helpers, running commands in namespace nodes, and the prerequisites a kubeadm user has
# on a node before running kubeadm (containerd with the images imported, a kubelet "unit").
# Source it with ROOT set to the repository; it reads setup.sh's environment
# (/var/lib/kubeboot-dev/env) and sets the binaries' paths (KUBEBOOT_EXE overrides kubeboot's).

set -a; . /var/lib/kubeboot-dev/env; set +a
KUBEBOOT=${KUBEBOOT_EXE:-$(command -v kubeboot || echo "${CARGO_TARGET_DIR:-$ROOT/target}/debug/kubeboot")}
[ -x "$KUBEBOOT" ] || { echo "kubeboot binary not found (set KUBEBOOT_EXE)" >&2; exit 1; }
KUBEADM=$KUBEBOOT_BIN_DIR/kubeadm
KUBELET=$KUBEBOOT_BIN_DIR/kubelet
KUBECTL=${KUBECTL:-$KUBEBOOT_BIN_DIR/kubectl}
CNI_BIN=${KUBEBOOT_CNI_BIN_DIR:-/usr/lib/cni}
NODE_SH="$ROOT/scripts/node.sh"
TIMEOUT=${BENCH_TIMEOUT:-300}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}x' if b > 0 else 'n/a')" "$1" "$2"; }
in_node() { local n=$1; shift; bash "$NODE_SH" exec "$n" -- "$@"; }
# Runs a command in the node in the background, detached; it dies with the node.
in_node_bg() { local n=$1 log=$2; shift 2; setsid bash "$NODE_SH" exec "$n" -- "$@" >"$log" 2>&1 </dev/null & disown; }

# kubeadm_containerd <node> <work dir> <images>: containerd running in the node with the same
# config as kubeboot writes for its own (restrict_oom_score_adj, CNI from $CNI_BIN), every
# image of <images> ("<image> <tar>" lines, scripts/build-images.sh's output) imported.
kubeadm_containerd() {
  local n=$1 work=$2 images=$3 i img tar
  cat >"$work/containerd.toml" <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$CNI_BIN"
  conf_dir = "/etc/cni/net.d"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
TOML
  in_node_bg "$n" "$work/$n-containerd.log" containerd --config "$work/containerd.toml"
  for i in $(seq 1 60); do
    in_node "$n" ctr version >/dev/null 2>&1 && break
    [ "$i" -lt 60 ] || { cat "$work/$n-containerd.log"; echo "containerd did not answer in $n" >&2; exit 1; }
    sleep 0.5
  done
  while read -r img tar; do
    in_node "$n" ctr -n k8s.io images import "$tar" >/dev/null
  done <<<"$images"
}

# kubeadm_kubelet_unit <node> <work dir> [extra kubelet flags...]: starts, in the node, the
# kubelet as kubeadm's systemd drop-in would (10-kubeadm.conf) once kubeadm has written
# /var/lib/kubelet/{config.yaml,kubeadm-flags.env}, restarting it 1 s after it exits
# (systemd's unit says 10 s: kubeadm gets the benefit). Bounded: 10 min of waiting for
# kubeadm, 100 restarts. Log: <work dir>/<node>-kubelet.log.
kubeadm_kubelet_unit() {
  local n=$1 work=$2
  shift 2
  cat >"$work/kubelet-unit.sh" <<SH
#!/bin/sh
i=0
while [ ! -s /var/lib/kubelet/kubeadm-flags.env ] || [ ! -s /var/lib/kubelet/config.yaml ]; do
  i=\$((i + 1)); [ "\$i" -lt 6000 ] || { echo "[kubelet-unit] kubeadm wrote no kubelet configuration"; exit 1; }
  sleep 0.1
done
for run in \$(seq 1 100); do
  KUBELET_KUBEADM_ARGS=
  . /var/lib/kubelet/kubeadm-flags.env
  echo "[kubelet-unit] starting kubelet \$KUBELET_KUBEADM_ARGS \$*"
  $KUBELET --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \\
    --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \\
    \$KUBELET_KUBEADM_ARGS "\$@"
  echo "[kubelet-unit] kubelet exited (\$?); restarting in 1 s"
  sleep 1
done
SH
  chmod +x "$work/kubelet-unit.sh"
  in_node_bg "$n" "$work/$n-kubelet.log" "$work/kubelet-unit.sh" "$@"
}

# kubeadm_init_config <node name> <ip>: the kubeadm-vs-kubeboot benchmarks' one config file, on
# stdout: kubeadm v1beta2 at v1.20.2 + a KubeletConfiguration with the node's own cgroupRoot + a
# KubeProxyConfiguration with `conntrack.maxPerCore: 0` (both tools read it); with
# BENCH_KCM_CONTROLLERS set, the controller-manager's `--controllers`, and with BENCH_KCM_ARGS
# ("name=value ...") more of its flags (controllerManager.extraArgs).
kubeadm_init_config() {
  local kcm='' a
  [ -z "${BENCH_KCM_CONTROLLERS:-}" ] ||
    kcm+=$(printf '    controllers: "%s"' "$BENCH_KCM_CONTROLLERS")$'\n'
  for a in ${BENCH_KCM_ARGS:-}; do
    kcm+=$(printf '    %s: "%s"' "${a%%=*}" "${a#*=}")$'\n'
  done
  [ -z "$kcm" ] || kcm=$'controllerManager:\n  extraArgs:\n'"$kcm"
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
$kcm---
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

# kubeadm_bridge_conflist <file>: a bridge CNI conflist for the first podCIDR (10.244.0.0/24),
# written into a kubeadm node beforehand: kubeadm installs no pod network.
kubeadm_bridge_conflist() {
  cat >"$1" <<'JSON'
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
}
