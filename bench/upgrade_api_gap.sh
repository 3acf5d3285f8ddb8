#!/usr/bin/env bash
# API unavailability during `upgrade apply` on a single node: upstream kubeadm v1.20 and
# kubeboot, one after the other in the same invocation, on the same measure. Not a test:
# nothing here asserts a time.
#
#   bash bench/upgrade_api_gap.sh [--etcd] [--runs N] [--only kubeboot,kubeadm] [--keep]
#
# --runs N (default 1) rounds, each one upgrade per tool, never two at once, the order
# reversed every other round (a drift in the machine's load hits both alike); --only picks the
# tools; --keep leaves the last round's nodes up (bash scripts/node.sh destroy <node>).
#
# Per tool and round, a fresh namespace node (scripts/node.sh: a hub with no uplink) gets a
# v1.20.2 control plane, then `upgrade apply v1.20.3-test.0 --allow-experimental-upgrades -y`
# runs to the TEST BUILD (the v1.20.2 source relabelled by scripts/build-kubernetes.sh
# --test-build: $KUBEBOOT_BIN_DIR_NEXT; not a Kubernetes release):
#   kubeboot (kb-upgap-kb, 10.123.0.73): `kubeboot init` (vagrant/provision.sh, the quickstart's
#     recipe), then `kubeboot upgrade apply ... --bin-dir $KUBEBOOT_BIN_DIR_NEXT`. With --etcd,
#     etcd also moves to 3.5.16 ($KUBEBOOT_ETCD_NEXT) through etcd.local.imageTag.
#   kubeadm (kb-upgap-ka, 10.123.0.72): the node of bench/kubeadm_vs_kubeboot.sh (containerd
#     with the images of `scripts/build-images.sh --control-plane --test-build` imported, the
#     kubelet started as kubeadm's systemd drop-in would, a bridge CNI conflist, the same config
#     file), `kubeadm init --skip-phases=preflight,addon/coredns` at v1.20.2, then the test build's kubeadm
#     (the upstream procedure upgrades kubeadm first): `kubeadm upgrade apply ...
#     --ignore-preflight-errors=ImagePull`. What its node needs for that, beyond init:
#     - crictl: v1.20 checks its images through it and has no way to skip that. This machine
#       has none, so a shim answers `crictl -r <socket> inspecti <image>` from containerd
#       (`ctr images ls`) and fails everything else (a `pull`: there is no registry).
#     - no CoreDNS: it has no image here (as in kubeadm_vs_kubeboot.sh), and v1.20's apply waits
#       for a ready CoreDNS Deployment, backing off up to about 85 min (postupgrade.go,
#       removeOldDNSDeploymentIfAnotherDNSIsUsed), unless the cluster has no DNS addon: hence
#       init skips addon/coredns, and apply then skips the DNS upgrade ("Assuming that a DNS
#       server was not deployed"). Its CoreDNS preflight checks fail without CoreDNS ("start
#       version '' not supported"): CoreDNSUnsupportedPlugins and CoreDNSMigration are ignored.
#       Every image of the target is present (checked through that shim) but CoreDNS's, which
#       v1.20 lists anyway: ImagePull is ignored for it alone (the run fails if kubeadm warns
#       about any other image).
#     - its health check's Job (pause with args ["-v"], run as uid 999 in the pod network)
#       must complete: build-images.sh's pause exits 0 on -v as the real one does.
#     kubeadm v1.20's etcd target for v1.20.3 is 3.4.13-0, what init runs: it writes the same
#     etcd manifest and skips etcd ("Current and new manifests of etcd are equal"). --etcd does
#     not change kubeadm's run: it moves no etcd; the output says which etcd step each ran.
# Then, for each: a poller inside the node GETs the node's own API server (`/readyz` on the
# node's address, what clients of a single node use) 10 times a second (curl, 0.5 s timeout),
# from before the upgrade starts until 5 s after it returns; the upgrade must succeed and the
# API server then report the test build's version. Printed per run: the upgrade's wall time,
# the longest run of failed polls (the gap), the total time without an answer, where the gaps
# fell and the upgrade's steps on the same clock; at the end the median (min..max) per tool and
# the ratios kubeadm / kubeboot. kubeadm's figure reported upstream is > 20 s with an etcd
# restart (kubernetes/kubeadm#2991).
# Every wait is bounded (BENCH_TIMEOUT, default 300 s; an upgrade 3x that); nodes are destroyed
# on exit unless --keep.
# Environment: KUBEBOOT_EXE (default: the debug build in CARGO_TARGET_DIR), the keys of
# /var/lib/kubeboot-dev/env (scripts/setup.sh), KUBEBOOT_IMAGE_DIR (build-images.sh's output).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ETCD=0
KEEP=0
RUNS=1
VARIANTS=(kubeboot kubeadm)
while [ $# -gt 0 ]; do
  case "$1" in
    --etcd) ETCD=1; shift ;;
    --keep) KEEP=1; shift ;;
    --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
    --only) IFS=, read -r -a VARIANTS <<<"${2:?--only needs kubeboot,kubeadm}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument '$1' (--etcd, --runs N, --only kubeboot,kubeadm, --keep; see --help)" >&2; exit 2 ;;
  esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs: '$RUNS' is not a positive number" >&2; exit 2; }
for v in "${VARIANTS[@]}"; do
  case $v in kubeboot|kubeadm) ;; *) echo "--only: unknown tool '$v' (kubeboot, kubeadm)" >&2; exit 2 ;; esac
done
set -a
# shellcheck disable=SC1091
. /var/lib/kubeboot-dev/env
set +a
: "${KUBEBOOT_BIN_DIR_NEXT:?run scripts/setup.sh: it builds the test build and writes KUBEBOOT_BIN_DIR_NEXT}"
export KUBEBOOT_EXE=${KUBEBOOT_EXE:-${CARGO_TARGET_DIR:-$HOME/.cache/kubeboot/target}/debug/kubeboot}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
readonly N=kb-upgap-kb N_IP=10.123.0.73 KA=kb-upgap-ka KA_IP=10.123.0.72
readonly TARGET=v1.20.3-test.0
readonly KUBEADM_NEXT=$KUBEBOOT_BIN_DIR_NEXT/kubeadm
work=$(mktemp -d)
created= # the nodes this run created
cleanup() {
  local n
  for n in "$N" "$KA"; do
    if [ "$KEEP" = 1 ]; then
      [[ " $created " != *" $n "* ]] || echo "== node $n kept (bash $NODE_SH destroy $n)"
    else
      bash "$NODE_SH" destroy "$n" >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
kc() { local n=$1; shift; in_node "$n" "$KUBECTL" --kubeconfig /etc/kubernetes/admin.conf --request-timeout=10s "$@"; }
# Each line of a command's output gets its unix time in ms, to place the gaps in its steps.
stamp() { while IFS= read -r l; do echo "$(date +%s%3N) $l"; done; }

# wait_ready <node>: the node's API server answers /readyz and its Node is Ready (bounded).
wait_ready() {
  local n=$1 deadline=$(( $(date +%s) + TIMEOUT ))
  until [ "$(kc "$n" get --raw /readyz 2>/dev/null)" = ok ] \
    && [ "$(kc "$n" get node "$n" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$n: the API server or the Node is not ready after ${TIMEOUT}s" >&2; return 1; }
    sleep 1
  done
}

# measure <tool> <run> <node> <ip> <etcd step> <command...>: runs the upgrade command in the
# node (bounded) while a 10 Hz poller GETs https://<ip>:6443/readyz from inside the node;
# prints the report and appends "<tool> <wall s> <longest gap s> <dark s>" to $results.
# Fails when the command fails or the API server does not then report $TARGET.
measure() {
  local v=$1 r=$2 n=$3 ip=$4 etcd=$5
  shift 5
  local shown=("$@")
  [ "$1" != env ] || shown=("${@:3}") # not the crictl shim's PATH
  local polls="$work/$v-$r.polls" log="$work/$v-$r.upgrade.log" marker="$work/$v-$r.done" poller s t
  # One line per poll, "<unix ms> <0|1>", 10 Hz, bounded by the upgrade (it stops when the
  # marker file appears) and by 20 minutes.
  in_node "$n" bash -c '
    for _ in $(seq 12000); do
      [ -e "$1" ] && break
      t=$(date +%s%3N)
      if [ "$(curl -sk --max-time 0.5 "https://$2:6443/readyz")" = ok ]; then echo "$t 1"; else echo "$t 0"; fi
      sleep 0.1
    done' _ "$marker" "$ip" >"$polls" &
  poller=$!
  echo "== $v run $r: ${shown[*]}"
  s=$(now)
  { timeout $((TIMEOUT * 3)) bash "$NODE_SH" exec "$n" -- "$@" 2>&1; echo "$? exit status"; } | stamp >"$log"
  t=$(elapsed "$s" "$(now)")
  if ! grep -q ' 0 exit status$' "$log"; then
    touch "$marker"; wait "$poller" || true
    tail -40 "$log" >&2
    echo "$v run $r: the upgrade failed" >&2
    return 1
  fi
  sleep 5
  touch "$marker"
  wait "$poller" || true
  local got
  got=$(kc "$n" version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' || true)
  [ "$got" = "$TARGET" ] || { echo "$v run $r: the API server reports '$got' after the upgrade, not $TARGET" >&2; return 1; }
  echo "   API server now at $got; etcd step: $etcd"
  python3 - "$polls" "$t" "$log" "$v" "$results" <<'EOF'
import sys
polls, wall, log, tool, results = sys.argv[1:]
rows = [l.split() for l in open(polls) if len(l.split()) == 2]
rows = [(int(t), v == "1") for t, v in rows]
gaps, start = [], None
for t, ok in rows:
    if not ok and start is None:
        start = t
    if ok and start is not None:
        gaps.append((start, t))
        start = None
if start is not None:
    gaps.append((start, rows[-1][0]))
t0 = rows[0][0] if rows else 0
longest = max((b - a for a, b in gaps), default=0) / 1000
dark = sum(b - a for a, b in gaps) / 1000
print(f"   upgrade apply took {wall}s; {len(rows)} polls")
print(f"   longest API gap: {longest:.1f}s; total without an answer: {dark:.1f}s")
for a, b in gaps:
    print(f"     gap at +{(a - t0) / 1000:.1f}s for {(b - a) / 1000:.1f}s")
print("   the upgrade's steps, on the same clock:")
for line in open(log):
    t, _, text = line.rstrip("\n").partition(" ")
    if t.isdigit() and text.startswith("["):
        print(f"     +{(int(t) - t0) / 1000:5.1f}s {text}")
with open(results, "a") as f:
    print(tool, wall, f"{longest:.1f}", f"{dark:.1f}", file=f)
EOF
}

run_kubeboot() { # <run>
  local r=$1
  bash "$NODE_SH" destroy "$N" >/dev/null 2>&1 || true
  bash "$NODE_SH" create "$N" "$N_IP/24" >/dev/null || return 1
  created+=" $N"
  mkdir -p "$work/shared"
  echo "== kubeboot run $r: kubeboot init in $N ($N_IP)"
  if ! timeout "$TIMEOUT" bash "$NODE_SH" exec "$N" -- env KUBEBOOT="$KUBEBOOT" \
    KUBEBOOT_SHARED_DIR="$work/shared" KUBEBOOT_NODE_CGROUP_ROOT="/kubeboot-$N" \
    bash "$ROOT/vagrant/provision.sh" init "$N_IP" -- --bin-dir "$KUBEBOOT_BIN_DIR" \
    >"$work/kubeboot-$r.init.log" 2>&1; then
    tail -30 "$work/kubeboot-$r.init.log" >&2
    echo "kubeboot init failed in $N" >&2
    return 1
  fi
  wait_ready "$N" || return 1
  local args=(upgrade apply "$TARGET" --allow-experimental-upgrades -y --bin-dir "$KUBEBOOT_BIN_DIR_NEXT")
  local etcd="no etcd change asked (kubeboot's target etcd: the one it runs)"
  if [ "$ETCD" = 1 ]; then
    kc "$N" -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' \
      | sed '0,/^  local:$/s//  local:\n    imageTag: 3.5.16-0/' >"$work/cluster.yaml" || return 1
    in_node "$N" cp "$work/cluster.yaml" /etc/kubernetes/bench-upgrade.yaml || return 1
    args+=(--config /etc/kubernetes/bench-upgrade.yaml --bin-dir "$KUBEBOOT_ETCD_NEXT")
    etcd="etcd -> 3.5.16 (etcd.local.imageTag 3.5.16-0, --etcd)"
  fi
  measure kubeboot "$r" "$N" "$N_IP" "$etcd" "$KUBEBOOT" "${args[@]}" || return 1
  [ "$KEEP" = 1 ] || bash "$NODE_SH" destroy "$N" >/dev/null
}

# The crictl shim of the kubeadm node (see the header): image checks answered by containerd.
mkdir -p "$work/bin"
cat >"$work/bin/crictl" <<'SH'
#!/bin/sh
# bench/upgrade_api_gap.sh's crictl: kubeadm v1.20 runs `crictl -r <endpoint> inspecti <image>`
# (cmd/kubeadm/app/util/runtime/runtime.go, ImageExists) before an upgrade; containerd answers.
sock=/run/containerd/containerd.sock
if [ "${1:-}" = -r ]; then sock=${2#unix://}; shift 2; fi
case "${1:-}" in
  inspecti)
    [ $# -eq 2 ] || { echo "crictl (bench shim): inspecti takes one image" >&2; exit 2; }
    ctr -a "$sock" -n k8s.io images ls -q | grep -qxF "$2" ;;
  *) echo "crictl (bench shim): '$*' is not implemented (no registry to pull from here)" >&2; exit 1 ;;
esac
SH
chmod +x "$work/bin/crictl"

run_kubeadm() { # <run>
  local r=$1
  bash "$NODE_SH" destroy "$KA" >/dev/null 2>&1 || true
  bash "$NODE_SH" create "$KA" "$KA_IP/24" >/dev/null || return 1
  created+=" $KA"
  kubeadm_init_config "$KA" "$KA_IP" >"$work/$KA.yaml"
  in_node "$KA" sh -c "mkdir -p /var/lib/kubeboot && cp '$work/$KA.yaml' /var/lib/kubeboot/bench.yaml" || return 1
  kubeadm_containerd "$KA" "$work" "$images" # exits on failure
  in_node "$KA" cp "$work/10-bridge.conflist" /etc/cni/net.d/10-bridge.conflist || return 1
  kubeadm_kubelet_unit "$KA" "$work"
  echo "== kubeadm run $r: kubeadm init (v1.20.2) in $KA ($KA_IP)"
  if ! timeout "$TIMEOUT" bash "$NODE_SH" exec "$KA" -- "$KUBEADM" init \
    --config /var/lib/kubeboot/bench.yaml --skip-phases=preflight,addon/coredns >"$work/kubeadm-$r.init.log" 2>&1; then
    tail -30 "$work/kubeadm-$r.init.log" >&2
    tail -20 "$work/$KA-kubelet.log" >&2 || true
    echo "kubeadm init failed in $KA" >&2
    return 1
  fi
  wait_ready "$KA" || return 1
  # The control plane's mirror Pods, which kubeadm's apply reads first (the API server's
  # advertised endpoint, retried 30 x 1 s; the static Pods' hashes): a settled cluster.
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until [ "$(kc "$KA" -n kube-system get pods -l tier=control-plane --field-selector "spec.nodeName=$KA" \
    -o name 2>/dev/null | wc -l)" -ge 4 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$KA: no 4 control-plane mirror Pods after ${TIMEOUT}s" >&2; return 1; }
    sleep 1
  done
  local etcd="none: kubeadm v1.20's etcd target for $TARGET is 3.4.13-0, what init runs"
  [ "$ETCD" = 0 ] || etcd="$etcd (--etcd is kubeboot's: kubeadm moves no etcd here)"
  if ! measure kubeadm "$r" "$KA" "$KA_IP" "$etcd" env PATH="$work/bin:$PATH" "$KUBEADM_NEXT" upgrade apply \
    "$TARGET" --allow-experimental-upgrades -y \
    --ignore-preflight-errors=ImagePull,CoreDNSUnsupportedPlugins,CoreDNSMigration; then
    tail -20 "$work/$KA-kubelet.log" >&2 || true
    return 1
  fi
  local log="$work/kubeadm-$r.upgrade.log"
  # Only CoreDNS's image may be missing: any other ImagePull warning means the run is not the
  # upgrade it claims to be.
  if grep 'WARNING ImagePull' "$log" | grep -v 'k8s.gcr.io/coredns:' | grep -q .; then
    grep 'WARNING ImagePull' "$log" >&2
    echo "kubeadm run $r: an image of the target was missing (see above)" >&2
    sed -i '$d' "$results"
    return 1
  fi
  if grep -q 'Current and new manifests of etcd are equal' "$log"; then
    echo "   kubeadm: \"Current and new manifests of etcd are equal, skipping upgrade\": etcd not restarted"
  else
    echo "   kubeadm: etcd's manifest changed: etcd restarted (see the steps above)"
  fi
  [ "$KEEP" = 1 ] || bash "$NODE_SH" destroy "$KA" >/dev/null
}

images=
if [[ " ${VARIANTS[*]} " == *" kubeadm "* ]]; then
  [ -x "$KUBEADM_NEXT" ] || { echo "$KUBEADM_NEXT not found: build the test build (scripts/build-kubernetes.sh --test-build)" >&2; exit 1; }
  echo "== images (scripts/build-images.sh --control-plane --test-build)"
  images=$(bash "$ROOT/scripts/build-images.sh" --control-plane --test-build)
  echo "$images" | sed 's/^/   /'
  kubeadm_bridge_conflist "$work/10-bridge.conflist"
fi

results="$work/results"
: >"$results"
echo "== $RUNS run(s) of: ${VARIANTS[*]}, one after the other$([ "$ETCD" = 0 ] || echo ', --etcd'); load: $(uptime | sed 's/.*load average/load average/')"
failed=0
for r in $(seq 1 "$RUNS"); do
  order=("${VARIANTS[@]}")
  if [ $((r % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#VARIANTS[@]} - 1; i >= 0; i--)); do order+=("${VARIANTS[i]}"); done
  fi
  for v in "${order[@]}"; do
    # Called in a condition, so errexit is off inside: each step there says `|| return 1`.
    "run_$v" "$r" || failed=$((failed + 1))
  done
done
echo "== upgrade apply to $TARGET, median (min..max) over the runs; load now: $(uptime | sed 's/.*load average/load average/')"
python3 - "$results" "${VARIANTS[@]}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 4]
tools = sys.argv[2:]
names = ["upgrade wall time", "longest API gap", "total dark time"]
vals = {t: [[float(r[i + 1]) for r in rows if r[0] == t] for i in range(3)] for t in tools}
print(f"   {'':18}" + "".join(f"{t:>22}" for t in tools)
      + (f"{'kubeadm/kubeboot':>18}" if len(tools) == 2 else ""))
for i, name in enumerate(names):
    line = f"   {name:18}"
    med = {}
    for t in tools:
        xs = vals[t][i]
        if xs:
            med[t] = statistics.median(xs)
            cell = f"{med[t]:.1f}s" + (f" ({min(xs):.1f}..{max(xs):.1f})" if len(xs) > 1 else "")
        else:
            cell = "-"
        line += f"{cell:>22}"
    if len(tools) == 2:
        a, b = med.get("kubeadm"), med.get("kubeboot")
        line += f"{(f'{a / b:.2f}x' if a is not None and b else ('n/a (kubeboot 0)' if b == 0 else '-')):>18}"
    print(line)
for t in tools:
    print(f"   {t}: {len(vals[t][0])} successful run(s)")
EOF
[ "$failed" = 0 ] || { echo "$failed run(s) failed (see above)" >&2; exit 1; }
