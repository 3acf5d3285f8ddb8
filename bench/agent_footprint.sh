#!/usr/bin/env bash
# The node agent's footprint (`kubeboot agent`) on a fresh control-plane node with every pod
# running, beside the kubelet's on the same node. Not a test: nothing here asserts a size.
#
#   bash bench/agent_footprint.sh [--window SECS] [--settle SECS] [--strace SECS] [--keep]
#
# 1. Builds kubeboot in release mode (`cargo build --release -p kubeboot`, what setup.sh
#    installs and users run) unless KUBEBOOT_EXE names a binary.
# 2. Creates namespace node kb-footprint (10.123.0.61/24, scripts/node.sh) and runs
#    `kubeboot init` in it with vagrant/provision.sh, the recipe scripts/quickstart.sh uses:
#    the agent runs etcd, the API server, controller-manager, scheduler, kube-proxy,
#    containerd and the kubelet, and the bridge pod network. Its wall time is printed. The
#    images of scripts/build-images.sh (pause, kubeboot.local/web:1) are in the node's
#    /var/lib/kubeboot/images, which init imports, and after init a 1-replica Deployment of
#    kubeboot.local/web:1 runs on the (untainted) node: the kubelet runs a workload.
# 3. Waits (bounded) until the node is Ready, every pod of the agent's is running, the web pod
#    and the agent's pods are in the API, and every pod in the API is Running and ready; a pod whose image does not exist on this machine
#    (ErrImagePull / ImagePullBackOff: e.g. CoreDNS, where no image was built) cannot run
#    and is listed as not counted. Then lets the node settle (--settle, 30 s).
# 4. Over --window seconds (60): the agent's CPU (the run time of its threads, schedstat, in ns;
#    utime + stime of /proc/<pid>/stat, in 10 ms ticks, beside it), and at
#    the end its memory: RSS (VmRSS, what `ps` shows) = RssAnon + RssFile + RssShmem, PSS
#    (smaps_rollup), VmHWM (the peak since it started), threads; the same for the kubelet
#    and, summed, for the agent's container shims (`kubeboot agent shim`, one per
#    container, the same executable). Then where the agent's RSS is, per mapping, and the
#    page-cache folios its resident code sits in (a fault maps the cached pages of the
#    64 KiB around it, mm/memory.c do_fault_around), and how much of the hot-code list
#    (cmd/link/agent-hot-code.txt, bench/agent_code_order.sh) the executable links first.
#    With --strace SECS (after the CPU window: tracing slows the agent down), the agent's system
#    calls over SECS seconds, its children's included (`strace -c -f`): a count of what it
#    does at rest that a loaded machine does not blur as it blurs CPU time.
# 5. Destroys the node (--keep leaves it for a closer look: scripts/node.sh destroy
#    kb-footprint).
# Environment: KUBEBOOT_EXE (a kubeboot binary), CARGO_TARGET_DIR (the release build's
# target directory, default ~/.cache/kubeboot/target as setup.sh), BENCH_TIMEOUT (300 s per
# wait).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WINDOW=60
SETTLE=30
KEEP=0
STRACE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --window) WINDOW=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --strace) STRACE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument '$1' (--window SECS, --settle SECS, --strace SECS, --keep)" >&2; exit 2 ;;
  esac
done
[[ "$WINDOW" =~ ^[1-9][0-9]*$ && "$SETTLE" =~ ^[0-9]+$ && "$STRACE" =~ ^[0-9]+$ ]] ||
  { echo "--window, --settle and --strace take whole seconds" >&2; exit 2; }
if [ "$STRACE" -gt 0 ] && ! command -v strace >/dev/null; then
  echo "--strace needs strace (apt-get install strace)" >&2
  exit 2
fi

if [ -z "${KUBEBOOT_EXE:-}" ]; then
  target=${CARGO_TARGET_DIR:-$HOME/.cache/kubeboot/target}
  echo "== cargo build --release -p kubeboot (target $target)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build --release -p kubeboot >&2)
  KUBEBOOT_EXE=$target/release/kubeboot
fi
export KUBEBOOT_EXE
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
PY="$ROOT/bench/agent_footprint.py"
readonly N=kb-footprint N_IP=10.123.0.61
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
mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1024:.1f}')" "$1"; }

echo "== kubeboot: $KUBEBOOT ($(mb $(( $(stat -c %s "$KUBEBOOT") / 1024 ))) MB)"
bash "$NODE_SH" destroy "$N" >/dev/null 2>&1 || true
bash "$NODE_SH" create "$N" "$N_IP/24" >/dev/null
mkdir -p "$work/shared"
images=$(bash "$ROOT/scripts/build-images.sh")
in_node "$N" mkdir -p /var/lib/kubeboot/images
while read -r _ tar; do in_node "$N" cp "$tar" /var/lib/kubeboot/images/; done <<<"$images"
echo "== kubeboot init in $N ($N_IP) via vagrant/provision.sh"
s=$(now)
if ! timeout "$TIMEOUT" bash "$NODE_SH" exec "$N" -- env KUBEBOOT="$KUBEBOOT" \
  KUBEBOOT_SHARED_DIR="$work/shared" KUBEBOOT_NODE_CGROUP_ROOT="/kubeboot-$N" \
  bash "$ROOT/vagrant/provision.sh" init "$N_IP" -- --bin-dir "$KUBEBOOT_BIN_DIR" \
  >"$work/init.log" 2>&1; then
  tail -30 "$work/init.log" >&2
  echo "kubeboot init failed in $N" >&2
  exit 1
fi
t_init=$(elapsed "$s" "$(now)")
echo "   init returned after ${t_init}s"
kc taint nodes --all node-role.kubernetes.io/master- >/dev/null 2>&1 || true
kc create deployment web --image=kubeboot.local/web:1 >/dev/null

# Every pod of the agent's running, the node Ready, every API pod Running and ready or
# unable to run for want of its image. Prints the pods not counted.
all_running() {
  local status pods
  status=$(in_node "$N" "$KUBEBOOT" agent status -o json 2>/dev/null) || return 1
  python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["pods"] and all(p["phase"] == "Running" for p in s["pods"]) else 1)' <<<"$status" || return 1
  kc get node "$N" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null \
    | grep -qx True || return 1
  pods=$(kc get pods -A -o json 2>/dev/null) || return 1
  python3 -c '
import json, sys
no_image = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull")
waiting, missing = [], []
items = json.load(sys.stdin)["items"]
# The workload and the agent'"'"'s published pods must be there at all: an API that lists no pod
# yet is not "every pod running".
if not any(p["metadata"]["name"].startswith("web-") for p in items) or not any(
        (p["metadata"].get("annotations") or {}).get("kubernetes.io/config.source") == "kubeboot-agent"
        for p in items):
    sys.exit(1)
for p in items:
    name = p["metadata"]["namespace"] + "/" + p["metadata"]["name"]
    st = p.get("status", {})
    cs = st.get("containerStatuses") or []
    if st.get("phase") == "Running" and cs and all(c.get("ready") for c in cs):
        continue
    reasons = {(c.get("state", {}).get("waiting") or {}).get("reason") for c in cs}
    (missing if reasons & set(no_image) else waiting).append(name)
for m in missing:
    print(f"   not counted (no image on this machine): {m}")
sys.exit(1 if waiting else 0)' <<<"$pods" >"$work/not-counted" || return 1
}
echo "== waiting for every pod to run (up to ${TIMEOUT}s)"
deadline=$(( $(date +%s) + TIMEOUT ))
until all_running; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "not every pod runs after ${TIMEOUT}s:" >&2
    kc get pods -A -o wide >&2 || true
    in_node "$N" "$KUBEBOOT" agent status >&2 || true
    exit 1
  fi
  sleep 2
done
t_running=$(elapsed "$s" "$(now)")
echo "   every pod running ${t_running}s after init started"
cat "$work/not-counted"
kc get pods -A -o wide | sed 's/^/   /'

echo "== settling for ${SETTLE}s, then measuring over ${WINDOW}s"
sleep "$SETTLE"
status=$(in_node "$N" "$KUBEBOOT" agent status -o json)
agent=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["agent_pid"])' <<<"$status")
kubelet=$(python3 -c '
import json, sys
for p in json.load(sys.stdin)["pods"]:
    for c in p["containers"]:
        if c["name"] == "kubelet" and c.get("pid"):
            print(c["pid"])' <<<"$status")
[ -n "$kubelet" ] || { echo "the agent's status names no kubelet process" >&2; exit 1; }
# The status names the container's shim; the kubelet is its child.
kubelet=$(python3 "$PY" child "$kubelet")
shims=$(python3 "$PY" shims "$agent" "$KUBEBOOT")
# shellcheck disable=SC2086
python3 "$PY" sample "$agent" "$kubelet" $shims >"$work/before"
sleep "$WINDOW"
# shellcheck disable=SC2086
python3 "$PY" sample "$agent" "$kubelet" $shims >"$work/after"

python3 - "$work/before" "$work/after" "$WINDOW" "$(getconf CLK_TCK)" "$agent" "$kubelet" <<'PY'
import json, sys
before = {s["pid"]: s for s in map(json.loads, open(sys.argv[1]))}
after = {s["pid"]: s for s in map(json.loads, open(sys.argv[2]))}
window, tck, agent, kubelet = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
shims = [p for p in after if p not in (agent, kubelet) and p in before]

def cpu(pids):
    """Run time (schedstat, ns) over the wall time between the samples, in % of one core."""
    return sum((after[p]["run_ns"] - before[p]["run_ns"]) / 1e9
               / (after[p]["at"] - before[p]["at"]) for p in pids) * 100

def cpu_ticks(pids):
    return sum(after[p]["ticks"] - before[p]["ticks"] for p in pids) / tck / window * 100

def row(name, pids):
    t = lambda k: sum(after[p].get(k, 0) for p in pids) / 1024
    print(f"   {name:<22} {t('VmRSS'):>7.1f} {t('Pss'):>7.1f} {t('RssAnon'):>8.1f} {t('RssFile'):>8.1f}"
          f" {t('VmHWM'):>7.1f} {sum(after[p].get('Threads', 0) for p in pids):>7} {cpu(pids):>7.3f}"
          f" {cpu_ticks(pids):>7.3f}")

print(f"   {'MB, CPU % of one core':<22} {'RSS':>7} {'PSS':>7} {'RssAnon':>8} {'RssFile':>8} {'VmHWM':>7} {'threads':>7} {'CPU %':>7} {'(ticks)':>7}")
row(f"agent (pid {agent})", [agent])
row(f"kubelet (pid {kubelet})", [kubelet])
if shims:
    row(f"{len(shims)} container shims", shims)
# Both run on the same node at the same time: their ratio moves far less with the machine's
# load than either figure alone.
if cpu([kubelet]) > 0:
    print(f"   agent CPU = {cpu([agent]) / cpu([kubelet]):.3f} x the kubelet's")
PY
echo "   (CPU over ${WINDOW}s: run time from schedstat, in ns; (ticks): utime + stime, in 10 ms ticks; RSS = RssAnon + RssFile + RssShmem)"
echo "== where the agent's RSS is (/proc/$agent/smaps)"
python3 "$PY" smaps "$agent"
python3 "$PY" folios "$agent"
python3 "$PY" order "$KUBEBOOT" "$ROOT/cmd/link/agent-hot-code.txt"
if [ "$STRACE" -gt 0 ]; then
  echo "== the agent's system calls over ${STRACE}s (strace -c -f -p $agent; load average $(cut -d' ' -f1-3 /proc/loadavg))"
  # SIGINT: strace detaches and writes its summary.
  timeout --signal=INT "$STRACE" strace -c -f -p "$agent" -o "$work/strace" >/dev/null 2>&1 || true
  # The busiest calls and the total.
  awk 'NR <= 27 || / total$/' "$work/strace" | sed 's/^/   /'
fi
