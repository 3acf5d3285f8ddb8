#!/usr/bin/env bash
# Upstream `kubeadm init` vs `kubeboot init`, side by side on this machine, one namespace node
# each (scripts/node.sh). Not a test: nothing here asserts a time.
#
#   bash bench/kubeadm_vs_kubeboot.sh [--runs N] [--only kubeadm,kubeboot,kubelet]
#
# --runs N (default 5) rounds, each one init per variant, the variants alternating (every other
# round in reverse order, so a drift in the machine's load hits each alike); --only picks the
# variants (e.g. `--only kubeboot` for quick iteration). BENCH_KEEP_LOGS=1 keeps each init's
# time-stamped output and kubeboot's agent log. BENCH_KCM_CONTROLLERS sets the controller-manager's
# `--controllers` for every variant alike (controllerManager.extraArgs of the config below), and
# BENCH_KCM_ARGS="name=value ..." any other of its flags (e.g. "kube-api-qps=20
# kube-api-burst=30"). Without them each tool keeps its own defaults: kubeboot's init runs the
# controller-manager without node IPAM (`*,bootstrapsigner,tokencleaner,-nodeipam`: v1.20 lists
# Nodes with wait.Poll(10 s), which waits 10 s before its first try, while every controller's
# informers wait for it) and with qps 100 / burst 200; its agents give the podCIDRs. So
# BENCH_KCM_CONTROLLERS='*,bootstrapsigner,tokencleaner' BENCH_KCM_ARGS='kube-api-qps=20
# kube-api-burst=30' measures kubeboot with kubeadm's controller-manager.
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
# Each init runs under bench/timeline.py inside its node, which records on one clock, from the
# start of init: certs done, the API server's /readyz, init returned, the Node registered, its
# podCIDR, the CNI config written (file mtime; kubeadm's is written beforehand), node Ready,
# and the first / both pods Running of a 2-replica Deployment of kubeboot.local/web:1 created
# right after init returns (after untainting); the API polled at 10 Hz. Printed per run, then
# the median and spread (min..max) per milestone with ratios kubeadm / kubeboot.
# Every wait is bounded; every node is destroyed on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=5
VARIANTS=(kubeadm kubeboot kubelet)
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
    --only) IFS=, read -r -a VARIANTS <<<"${2:?--only needs kubeadm,kubeboot,kubelet}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for v in "${VARIANTS[@]}"; do
  case $v in kubeadm|kubeboot|kubelet) ;; *) echo "--only: unknown variant $v (kubeadm, kubeboot, kubelet)" >&2; exit 2 ;; esac
done
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

kubeadm_bridge_conflist "$work/10-bridge.conflist"

prepare() { # <node> <ip>: node, config, containerd running with every image imported
  local n=$1 ip=$2
  bash "$NODE_SH" destroy "$n" >/dev/null 2>&1 || true
  bash "$NODE_SH" create "$n" "$ip/24" >/dev/null
  kubeadm_init_config "$n" "$ip" >"$work/$n.yaml"
  in_node "$n" sh -c "mkdir -p /var/lib/kubeboot && cp '$work/$n.yaml' /var/lib/kubeboot/bench.yaml"
  kubeadm_containerd "$n" "$work" "$images"
}

# keep_logs <node> <name> <init log>: the init output, the agent's log and every pod's log
# (the agent's and the kubelet's), and the kubeadm node's kubelet, into $keep.
keep_logs() {
  local n=$1 name=$2
  cp "$3" "$keep/$name-init.log" 2>/dev/null || true
  cp "$work/$n-kubelet.log" "$keep/$name-kubelet-unit.log" 2>/dev/null || true
  in_node "$n" sh -c 'tar -C /var/log -czf - kubeboot pods 2>/dev/null' >"$keep/$name-logs.tgz" || true
}

# run_variant <variant> <run>: one init in a fresh node, its timeline appended to $results as
# "<variant> <milestone> <seconds>" lines and printed on one line.
run_variant() {
  local v=$1 r=$2 n ip json
  case $v in
    kubeadm) n=$KA ip=$KA_IP ;;
    kubeboot) n=$KB ip=$KB_IP ;;
    kubelet) n=$KK ip=$KK_IP ;;
  esac
  prepare "$n" "$ip"
  local cmd=()
  case $v in
    kubeadm)
      in_node "$n" cp "$work/10-bridge.conflist" /etc/cni/net.d/10-bridge.conflist
      kubeadm_kubelet_unit "$n" "$work"
      cmd=("$KUBEADM" init --config /var/lib/kubeboot/bench.yaml --skip-phases=preflight) ;;
    kubeboot)
      cmd=("$KUBEBOOT" init --config /var/lib/kubeboot/bench.yaml
        --bin-dir "$KUBEBOOT_BIN_DIR" --bin-dir /usr/bin) ;;
    kubelet)
      cmd=("$KUBEBOOT" init --config /var/lib/kubeboot/bench.yaml --static-pod-runner kubelet
        --bin-dir "$KUBEBOOT_BIN_DIR" --bin-dir /usr/bin) ;;
  esac
  local log="$work/$v-$r-init.log"
  if ! json=$(in_node "$n" python3 "$ROOT/bench/timeline.py" --node "$n" --kubectl "$KUBECTL" \
      --timeout "$TIMEOUT" --log "$log" -- "${cmd[@]}" | tail -1); then
    echo "   $v run $r failed: $json" >&2
    tail -20 "$log" >&2 || true
    [ "$v" != kubeadm ] || tail -20 "$work/$n-kubelet.log" >&2 || true
    kc "$n" get nodes,pods -A -o wide >&2 || true
    [ -z "${BENCH_KEEP_LOGS:-}" ] || keep_logs "$n" "$v-$r" "$log"
    bash "$NODE_SH" destroy "$n" >/dev/null
    return 0
  fi
  [ -z "${BENCH_KEEP_LOGS:-}" ] || keep_logs "$n" "$v-$r" "$log"
  python3 - "$v" "$json" >>"$results" <<'PY'
import json, sys
for k, t in json.loads(sys.argv[2]).items():
    print(sys.argv[1], k, "-" if t is None else t)
PY
  printf '   %-9s run %s: %s\n' "$v" "$r" "$(python3 -c 'import json,sys; print("  ".join(f"{k} {chr(45) if v is None else v}" for k, v in json.loads(sys.argv[1]).items()))' "$json")"
  bash "$NODE_SH" destroy "$n" >/dev/null
}

results="$work/results"
: >"$results"
keep=${BENCH_KEEP_LOGS:+$(mktemp -d /tmp/bench-logs.XXXXXX)}
[ -z "$keep" ] || echo "== logs kept in $keep"
echo "== $RUNS run(s) of: ${VARIANTS[*]} (alternating; times in seconds from the start of init)"
for r in $(seq 1 "$RUNS"); do
  order=("${VARIANTS[@]}")
  # Every other round backwards, so a drift in the machine's load hits both sides alike.
  if [ $((r % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#VARIANTS[@]} - 1; i >= 0; i--)); do order+=("${VARIANTS[i]}"); done
  fi
  for v in "${order[@]}"; do run_variant "$v" "$r"; done
done

echo "== timeline of init, median (min..max) over the runs; ratio: kubeadm's median / this one's"
python3 - "$results" "${VARIANTS[@]}" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
variants = sys.argv[2:]
names = {"kubeadm": "kubeadm", "kubeboot": "kubeboot agent", "kubelet": "kubeboot kubelet"}
order = ["certs", "api-readyz", "init-returned", "registered", "pod-cidr", "cni-config", "ready", "pod-1", "pod-2"]
label = {"certs": "certs done", "api-readyz": "API /readyz", "init-returned": "init returned",
         "registered": "Node registered", "pod-cidr": "podCIDR", "cni-config": "CNI config",
         "ready": "node Ready", "pod-1": "1st pod Running", "pod-2": "2 pods Running"}
vals = {}
for v, k, t in rows:
    if t != "-":
        vals.setdefault((v, k), []).append(float(t))
med = {key: statistics.median(ts) for key, ts in vals.items()}
head = f"   {'':16}" + "".join(f"{names[v]:>24}" + ("" if v == "kubeadm" or "kubeadm" not in variants else f"{'ratio':>7}") for v in variants)
print(head)
runs = {v: len({i for i, r in enumerate(rows) if r[0] == v}) for v in variants}
for k in order:
    line = f"   {label[k]:16}"
    for v in variants:
        ts = vals.get((v, k))
        cell = f"{med[(v, k)]:.2f} ({min(ts):.1f}..{max(ts):.1f})" if ts else "-"
        line += f"{cell:>24}"
        if v != "kubeadm" and "kubeadm" in variants:
            a, b = med.get(("kubeadm", k)), med.get((v, k))
            line += f"{(f'{a / b:.2f}x' if a and b else '-'):>7}"
    print(line)
for v in variants:
    n = len(vals.get((v, "init-returned"), []))
    print(f"   {names[v]}: {n} successful run(s)")
PY
