#!/usr/bin/env bash
# API unavailability during `kubeboot upgrade apply` on a single node. Not a test: nothing
# here asserts a time.
#
#   bash bench/upgrade_api_gap.sh [--etcd] [--keep]
#
# 1. Creates namespace node kb-upgap (10.123.0.71/24, scripts/node.sh) and runs `kubeboot init`
#    at v1.20.2 in it (vagrant/provision.sh, the quickstart's recipe).
# 2. Polls the node's own API server (`/readyz` on the node's address, what clients of a
#    single node use) 10 times a second from inside the node, bounded by the upgrade's own
#    run plus 60 s, while `kubeboot upgrade apply v1.20.3-test.0` (the TEST BUILD of
#    scripts/build-kubernetes.sh --test-build, $KUBEBOOT_BIN_DIR_NEXT) runs; with --etcd,
#    etcd also moves to 3.5.16 ($KUBEBOOT_ETCD_NEXT) through etcd.local.imageTag.
# 3. Prints the upgrade's wall time, the longest run of failed polls (the gap) and the total
#    time the API did not answer, and where the gaps fell.
# kubeadm's figure for the same measure is > 20 s (kubernetes/kubeadm#2991); a side-by-side
# kubeadm run needs the test build as images for its kubelet, which build-images.sh does not
# make yet.
# Environment: KUBEBOOT_EXE (default: the debug build in CARGO_TARGET_DIR), the keys of
# /var/lib/kubeboot-dev/env (scripts/setup.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ETCD=0
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --etcd) ETCD=1; shift ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument '$1' (--etcd, --keep)" >&2; exit 2 ;;
  esac
done
set -a
# shellcheck disable=SC1091
. /var/lib/kubeboot-dev/env
set +a
: "${KUBEBOOT_BIN_DIR_NEXT:?run scripts/setup.sh: it builds the test build and writes KUBEBOOT_BIN_DIR_NEXT}"
export KUBEBOOT_EXE=${KUBEBOOT_EXE:-${CARGO_TARGET_DIR:-$HOME/.cache/kubeboot/target}/debug/kubeboot}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
readonly N=kb-upgap N_IP=10.123.0.71
work=$(mktemp -d)
cleanup() {
  if [ "$KEEP" = 1 ]; then
    echo "== node $N kept (bash $NODE_SH destroy $N)"
  else
    bash "$NODE_SH" destroy "$N" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
kc() { in_node "$N" "$KUBECTL" --kubeconfig /etc/kubernetes/admin.conf --request-timeout=10s "$@"; }

bash "$NODE_SH" destroy "$N" >/dev/null 2>&1 || true
bash "$NODE_SH" create "$N" "$N_IP/24" >/dev/null
mkdir -p "$work/shared"
echo "== kubeboot init in $N ($N_IP)"
if ! timeout "$TIMEOUT" bash "$NODE_SH" exec "$N" -- env KUBEBOOT="$KUBEBOOT" \
  KUBEBOOT_SHARED_DIR="$work/shared" KUBEBOOT_NODE_CGROUP_ROOT="/kubeboot-$N" \
  bash "$ROOT/vagrant/provision.sh" init "$N_IP" -- --bin-dir "$KUBEBOOT_BIN_DIR" \
  >"$work/init.log" 2>&1; then
  tail -30 "$work/init.log" >&2
  echo "kubeboot init failed in $N" >&2
  exit 1
fi
deadline=$(( $(date +%s) + TIMEOUT ))
until [ "$(kc get --raw /readyz 2>/dev/null)" = ok ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the API server is not ready" >&2; exit 1; }
  sleep 1
done

args=(upgrade apply v1.20.3-test.0 --allow-experimental-upgrades -y --bin-dir "$KUBEBOOT_BIN_DIR_NEXT")
if [ "$ETCD" = 1 ]; then
  kc -n kube-system get configmap kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' \
    | sed '0,/^  local:$/s//  local:\n    imageTag: 3.5.16-0/' >"$work/cluster.yaml"
  in_node "$N" cp "$work/cluster.yaml" /etc/kubernetes/bench-upgrade.yaml
  args+=(--config /etc/kubernetes/bench-upgrade.yaml --bin-dir "$KUBEBOOT_ETCD_NEXT")
fi

# The poller: one line per poll, "<unix ms> <0|1>", 10 Hz, bounded by the upgrade (it stops
# when the marker file appears) and by 20 minutes.
marker="$work/done"
in_node "$N" bash -c '
  for _ in $(seq 12000); do
    [ -e "$1" ] && break
    t=$(date +%s%3N)
    if [ "$(curl -sk --max-time 0.5 "https://$2:6443/readyz")" = ok ]; then echo "$t 1"; else echo "$t 0"; fi
    sleep 0.1
  done' _ "$marker" "$N_IP" >"$work/polls" &
poller=$!
echo "== kubeboot ${args[*]}"
s=$(now)
# Each line of the upgrade's output gets its unix time in ms, to place the gaps in its steps.
stamp() { while IFS= read -r l; do echo "$(date +%s%3N) $l"; done; }
{ in_node "$N" "$KUBEBOOT" "${args[@]}" 2>&1; echo "$? exit status"; } | stamp >"$work/upgrade.log"
if ! grep -q ' 0 exit status$' "$work/upgrade.log"; then
  touch "$marker"; wait "$poller" || true
  tail -40 "$work/upgrade.log" >&2
  echo "the upgrade failed" >&2
  exit 1
fi
t_upgrade=$(elapsed "$s" "$(now)")
sleep 5
touch "$marker"
wait "$poller" || true
python3 - "$work/polls" "$t_upgrade" "$work/upgrade.log" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 2]
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
print(f"   upgrade apply took {sys.argv[2]}s; {len(rows)} polls")
print(f"   longest API gap: {max((b - a for a, b in gaps), default=0) / 1000:.1f}s; "
      f"total without an answer: {sum(b - a for a, b in gaps) / 1000:.1f}s")
for a, b in gaps:
    print(f"     gap at +{(a - t0) / 1000:.1f}s for {(b - a) / 1000:.1f}s")
print("   the upgrade's steps, on the same clock:")
for line in open(sys.argv[3]):
    t, _, text = line.rstrip("\n").partition(" ")
    if t.isdigit() and text.startswith("["):
        print(f"     +{(int(t) - t0) / 1000:5.1f}s {text}")
EOF
