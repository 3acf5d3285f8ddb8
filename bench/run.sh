#!/usr/bin/env bash
# Benchmarks kubeboot against kubeadm and against a hand-started control plane, side by side in
# one run, and prints ratios. Not a test: nothing here asserts a time.
#
#   bash bench/run.sh [rounds]
#
# 1. `kubeboot init phase certs all` vs `kubeadm init phase certs all` (same config), best of N.
# 2. `kubeboot init` to a healthy control plane (the health URLs polled from just before it
#    starts; its wall time beside), in a namespace node, vs starting
#    etcd + kube-apiserver + kube-controller-manager + kube-scheduler by hand with the same
#    flags (taken from the manifests kubeboot wrote) in a second node, until the same health
#    endpoints answer.
# 3. The agent's idle RSS and CPU with the four control-plane pods running.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-5}
set -a; . /var/lib/kubeboot-dev/env; set +a
KUBEBOOT=${KUBEBOOT_EXE:-$(command -v kubeboot)}
NODE_SH="$ROOT/scripts/node.sh"
work=$(mktemp -d)
trap 'bash "$NODE_SH" destroy kb-bench-a >/dev/null 2>&1 || true; bash "$NODE_SH" destroy kb-bench-b >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.1f}x' if b > 0 else 'n/a')" "$1" "$2"; }
best_of() { # best_of N cmd... -> seconds of the fastest run
  local n=$1; shift; local best=""
  for _ in $(seq "$n"); do
    local s e t; s=$(now); "$@" >/dev/null 2>&1; e=$(now); t=$(elapsed "$s" "$e")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$t" "$best"; then best=$t; fi
  done
  echo "$best"
}

cat > "$work/config.yaml" <<CFG
apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.123.0.2
nodeRegistration:
  name: node1
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  podSubnet: 10.244.0.0/16
CFG

echo "== 1. certs: kubeboot init phase certs all vs kubeadm init phase certs all (best of $ROUNDS)"
# --cert-dir cannot be mixed with --config in kubeadm; put it in the file instead.
sed -i '/^kind: ClusterConfiguration/a certificatesDir: CERTDIR' "$work/config.yaml"
sed "s#CERTDIR#$work/kb-pki#" "$work/config.yaml" > "$work/kb.yaml"
sed "s#CERTDIR#$work/ka-pki#" "$work/config.yaml" > "$work/ka.yaml"
kb_certs() { rm -rf "$work/kb-pki"; "$KUBEBOOT" init phase certs all --config "$work/kb.yaml"; }
ka_certs() { rm -rf "$work/ka-pki"; "$KUBEBOOT_BIN_DIR/kubeadm" init phase certs all --config "$work/ka.yaml"; }
kb=$(best_of "$ROUNDS" kb_certs); ka=$(best_of "$ROUNDS" ka_certs)
echo "kubeboot ${kb}s   kubeadm ${ka}s   kubeboot is $(ratio "$ka" "$kb") faster"

echo "== 2. init to a healthy control plane vs a hand-started control plane"
bash "$NODE_SH" create kb-bench-a 10.123.0.41/24 >/dev/null
# The same URLs as by hand, polled from just before init starts.
bash "$NODE_SH" exec kb-bench-a -- python3 "$ROOT/bench/manual_control_plane.py" --watch \
  > "$work/watch.out" &
watcher=$!
s=$(now)
bash "$NODE_SH" exec kb-bench-a -- "$KUBEBOOT" init --bin-dir "$KUBEBOOT_BIN_DIR" --bin-dir /usr/bin \
  --pod-network-cidr 10.244.0.0/16 > "$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }
e=$(now); t_init=$(elapsed "$s" "$e")
wait "$watcher" || { echo "the control plane kubeboot started never answered" >&2; exit 1; }
t_healthy=$(tail -1 "$work/watch.out")
grep -E "healthy after" "$work/init.log" || true
# The same flags by hand, in node b: kubeboot writes the same PKI and manifests there but
# starts nothing; the script then starts the four processes itself and polls the same URLs.
bash "$NODE_SH" create kb-bench-b 10.123.0.42/24 >/dev/null
# The phases that write them, one by one, as with kubeadm: `init --skip-phases` would go on
# to phases that need the API server this node does not start.
version=$("$KUBEBOOT_BIN_DIR/kube-apiserver" --version | awk '{print $2}')
printf 'apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: %s\nnetworking:\n  podSubnet: 10.244.0.0/16\n' \
  "$version" | bash "$NODE_SH" exec kb-bench-b -- sh -c 'mkdir -p /etc/kubernetes && cat >/etc/kubernetes/bench-config.yaml'
for phase in "certs all" "kubeconfig all" "control-plane all" "etcd local"; do
  # shellcheck disable=SC2086
  bash "$NODE_SH" exec kb-bench-b -- "$KUBEBOOT" init phase $phase \
    --config /etc/kubernetes/bench-config.yaml >>"$work/manual-prep.log" 2>&1 ||
    { cat "$work/manual-prep.log"; exit 1; }
done
bash "$NODE_SH" exec kb-bench-b -- python3 "$ROOT/bench/manual_control_plane.py" \
  --bin-dir "$KUBEBOOT_BIN_DIR" > "$work/manual.out"
t_manual=$(tail -1 "$work/manual.out")
echo "control plane healthy: kubeboot init ${t_healthy}s after it started (init returned after ${t_init}s)   by hand ${t_manual}s   difference $(python3 -c "print(f'{$t_healthy - $t_manual:+.2f}s')")"

echo "== 3. agent idle footprint (4 pods running)"
pid=$(bash "$NODE_SH" exec kb-bench-a -- cat /run/kubeboot/agent.pid | cut -d' ' -f1)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
tick=$(getconf CLK_TCK)
c1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); sleep 20; c2=$(awk '{print $14 + $15}' "/proc/$pid/stat")
cpu=$(python3 -c "print(f'{($c2 - $c1) / $tick / 20 * 100:.3f}')")
echo "agent pid $pid: RSS $((rss / 1024)) MB ($rss kB), CPU ${cpu}% over 20 s"
