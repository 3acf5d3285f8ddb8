#!/usr/bin/env bash
# The cluster DNS server (`kubeboot dns`) under load, against a real API server holding 1,000
# Services, beside CoreDNS's published figures. Not a test: nothing here asserts a number.
#
#   cargo build --release -p kubeboot && bash bench/dns.sh
#
# Everything runs on loopback of this machine, nothing else is contacted:
# - etcd and kube-apiserver v1.20.2 (setup.sh's binaries) on free 127.0.0.1 ports, a temporary
#   directory for their data; the API server's self-signed serving certificate (not verified:
#   loopback only) and a static token of group system:masters for the kubeconfig;
# - N Services (DNS_BENCH_SERVICES, 1000) with one named port each, and their Endpoints (no
#   controller-manager runs: the script writes them), in namespace `bench`;
# - `kubeboot dns` (the release build, or KUBEBOOT_EXE) on 127.0.0.1:<port>, with an empty
#   resolv.conf (no upstream: nothing is forwarded anywhere), pinned to CPU 0;
# - dnsperf (Debian's, setup.sh installs it) pinned to CPU 1, etcd and the API server on CPU 1
#   too (idle while dnsperf runs). The machine has 2 cores: this is the split.
# Measured: QPS and latency at the highest rate dnsperf reaches (-Q DNS_BENCH_MAX_QPS, 10 s),
# then p50/p99 latency at half that rate (dnsperf -v, per-query latencies; 10 s); the time
# from a Service's creation (the API server's reply to the POST) to the first answer naming it
# (5 Services, a query every 1 ms, each wait bounded at 10 s); the server's RSS, anonymous
# memory (RssAnon) and smaps_rollup (Pss, Anonymous) after sync and after the load.
# Every wait is bounded; every process started here is stopped on exit, by its PID.
set -eEuo pipefail
trap 'echo "bench/dns.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
ROOT=$(cd "$(dirname "$0")/.." && pwd)
set -a; . /var/lib/kubeboot-dev/env; set +a
KUBEBOOT=${KUBEBOOT_EXE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/kubeboot}
SERVICES=${DNS_BENCH_SERVICES:-1000}
MAX_QPS=${DNS_BENCH_MAX_QPS:-200000}
SECONDS_LOAD=10
for tool in dnsperf etcd taskset openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/setup.sh" >&2; exit 1; }
done
[ -x "$KUBEBOOT" ] || { echo "$KUBEBOOT not found: cargo build --release -p kubeboot (or set KUBEBOOT_EXE)" >&2; exit 1; }
APISERVER=$KUBEBOOT_BIN_DIR/kube-apiserver
[ -x "$APISERVER" ] || { echo "$APISERVER not found: run scripts/setup.sh" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Free loopback ports (bound once, released, then used: a race only with other binders).
read -r ETCD_PORT PEER_PORT API_PORT DNS_PORT HEALTH_PORT READY_PORT < <(python3 - <<'PY'
import socket
socks = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
# The DNS port must be free for UDP too.
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
API=https://127.0.0.1:$API_PORT
TOKEN=$(openssl rand -hex 16)
api_get() { curl -fsSk -H "Authorization: Bearer $TOKEN" "$API$1"; }

wait_for() { # <what> <seconds> <command...>: polls every 0.1 s
  local what=$1 limit=$2 i
  shift 2
  for i in $(seq 1 $((limit * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$what did not come up within ${limit} s; logs in $work (BENCH_KEEP_LOGS=1 keeps them)" >&2
  BENCH_KEEP_LOGS=1
  exit 1
}

echo "[dns-bench] etcd and kube-apiserver on 127.0.0.1 (CPU 1)"
taskset -c 1 etcd --name=bench --data-dir="$work/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-cluster="bench=http://127.0.0.1:$PEER_PORT" >"$work/etcd.log" 2>&1 &
pids+=($!)
openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
echo "$TOKEN,bench-admin,bench-admin,system:masters" >"$work/tokens.csv"
taskset -c 1 "$APISERVER" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --insecure-port=0 --cert-dir="$work/apiserver" --token-auth-file="$work/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-key-file="$work/sa.pub" --service-account-signing-key-file="$work/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/12 >"$work/apiserver.log" 2>&1 &
pids+=($!)
wait_for "kube-apiserver" 90 api_get /readyz
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {server: "$API", insecure-skip-tls-verify: true}
users:
- name: bench
  user: {token: "$TOKEN"}
contexts:
- name: bench
  context: {cluster: bench, user: bench}
current-context: bench
EOF

echo "[dns-bench] creating $SERVICES Services and their Endpoints in namespace bench"
python3 - "$API" "$SERVICES" "$TOKEN" <<'PY'
import http.client, json, ssl, sys, threading, urllib.parse
api, n, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = urllib.parse.urlparse(api).netloc
ctx = ssl._create_unverified_context()
def post(conn, path, obj):
    conn.request("POST", path, json.dumps(obj), {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    r = conn.getresponse(); body = r.read()
    if r.status not in (200, 201, 409):
        sys.exit(f"POST {path}: {r.status} {body[:300]!r}")
c = http.client.HTTPSConnection(host, timeout=30, context=ctx)
post(c, "/api/v1/namespaces", {"metadata": {"name": "bench"}})
def work(lo, hi):
    conn = http.client.HTTPSConnection(host, timeout=30, context=ctx)
    for i in range(lo, hi):
        name = f"svc-{i}"
        post(conn, "/api/v1/namespaces/bench/services", {"metadata": {"name": name},
             "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        post(conn, "/api/v1/namespaces/bench/endpoints", {"metadata": {"name": name},
             "subsets": [{"addresses": [{"ip": f"10.244.{i // 250}.{i % 250 + 1}"}],
                          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
ts = [threading.Thread(target=work, args=(k * n // 4, (k + 1) * n // 4)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
PY

: >"$work/resolv.conf"
echo "[dns-bench] kubeboot dns on 127.0.0.1:$DNS_PORT (CPU 0): $KUBEBOOT"
started=$(date +%s.%N)
taskset -c 0 "$KUBEBOOT" dns --kubeconfig "$work/kubeconfig" --listen "127.0.0.1:$DNS_PORT" \
  --health-listen "127.0.0.1:$HEALTH_PORT" --ready-listen "127.0.0.1:$READY_PORT" \
  --resolv-conf "$work/resolv.conf" --cluster-dns-ip 10.96.0.10 >"$work/dns.log" 2>&1 &
DNS_PID=$!
pids+=("$DNS_PID")
wait_for "kubeboot dns /ready" 60 curl -fsS "http://127.0.0.1:$READY_PORT/ready"
ready=$(date +%s.%N)
sync_s=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$started" "$ready")
echo "[dns-bench] ready (Services and Endpoints synced) ${sync_s} s after start"

memory() { # <label>
  python3 - "$DNS_PID" "$1" <<'PY'
import sys
pid, label = sys.argv[1], sys.argv[2]
def kv(path, keys):
    out = {}
    for line in open(path):
        k, _, v = line.partition(":")
        if k in keys:
            out[k] = int(v.split()[0])
    return out
st = kv(f"/proc/{pid}/status", {"VmRSS", "RssAnon", "RssFile", "VmHWM"})
sm = kv(f"/proc/{pid}/smaps_rollup", {"Pss", "Anonymous"})
mb = lambda k: k / 1024
print(f"[dns-bench] memory {label}: RSS {mb(st['VmRSS']):.1f} MB (RssAnon {mb(st['RssAnon']):.1f} MB, "
      f"RssFile {mb(st['RssFile']):.1f} MB, peak {mb(st['VmHWM']):.1f} MB); "
      f"smaps_rollup Pss {mb(sm['Pss']):.1f} MB, Anonymous {mb(sm['Anonymous']):.1f} MB")
PY
}
memory "after sync, $SERVICES Services"

# The query mix: every Service's A record, and its SRV record for one in ten.
for i in $(seq 0 $((SERVICES - 1))); do
  echo "svc-$i.bench.svc.cluster.local A"
  [ $((i % 10)) -ne 0 ] || echo "_http._tcp.svc-$i.bench.svc.cluster.local SRV"
done >"$work/queries.txt"

echo "[dns-bench] dnsperf on CPU 1, server on CPU 0: ${SECONDS_LOAD} s, at most $MAX_QPS queries/s"
taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$work/queries.txt" -l "$SECONDS_LOAD" \
  -Q "$MAX_QPS" -c 4 -q 500 -t 2 >"$work/dnsperf-max.txt" 2>&1 || true
grep -E "Queries (sent|completed|lost)|Response codes|Queries per second|Average Latency|Latency StdDev" \
  "$work/dnsperf-max.txt" | sed 's/^ */[dns-bench]   /'
qps=$(awk '/Queries per second/ {print int($4)}' "$work/dnsperf-max.txt")
[ -n "$qps" ] && [ "$qps" -gt 0 ] || { cat "$work/dnsperf-max.txt" >&2; echo "dnsperf measured nothing" >&2; exit 1; }
memory "after ${SECONDS_LOAD} s at full load"

half=$((qps / 2))
echo "[dns-bench] latency at half that rate ($half queries/s, ${SECONDS_LOAD} s, per-query latencies from dnsperf -v)"
taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$work/queries.txt" -l "$SECONDS_LOAD" \
  -Q "$half" -c 4 -q 500 -t 2 -v >"$work/dnsperf-half.txt" 2>&1 || true
python3 - "$work/dnsperf-half.txt" <<'PY'
import sys
lat, codes = [], {}
for line in open(sys.argv[1]):
    # "> NOERROR svc-1.bench.svc.cluster.local A 0.000123"
    w = line.split()
    if len(w) >= 5 and w[0] == ">":
        codes[w[1]] = codes.get(w[1], 0) + 1
        try:
            lat.append(float(w[-1]))
        except ValueError:
            pass
if not lat:
    sys.exit("no per-query latencies in dnsperf -v output")
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3
print(f"[dns-bench]   {len(lat)} answers {codes}: p50 {p(0.50):.3f} ms, p99 {p(0.99):.3f} ms, "
      f"p99.9 {p(0.999):.3f} ms, max {lat[-1] * 1e3:.3f} ms")
PY

echo "[dns-bench] time from a Service's creation to its first answer (5 Services, a query every 1 ms)"
python3 - "$API" "$DNS_PORT" "$TOKEN" <<'PY'
import http.client, json, socket, ssl, struct, sys, time, urllib.parse
api, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPSConnection(urllib.parse.urlparse(api).netloc, timeout=30,
                                   context=ssl._create_unverified_context())
def query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.001)
times = []
qid = 0
for k in range(5):
    name = f"fresh-{k}-{int(time.time())}"
    body = json.dumps({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}})
    conn.request("POST", "/api/v1/namespaces/bench/services", body,
                 {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    r = conn.getresponse(); r.read()
    if r.status != 201:
        sys.exit(f"could not create Service {name}: {r.status}")
    created = time.monotonic()
    fqdn = f"{name}.bench.svc.cluster.local"
    answered = None
    # The IDs of this name's queries: an answer may arrive after the next query went out.
    ids = set()
    while answered is None and time.monotonic() - created < 10:
        qid = (qid + 1) & 0xFFFF
        ids.add(qid)
        s.sendto(query(qid, fqdn), ("127.0.0.1", port))
        try:
            resp, _ = s.recvfrom(4096)
        except socket.timeout:
            continue
        rid, flags, _, ancount = struct.unpack(">HHHH", resp[:8])
        if rid in ids and flags & 0xF == 0 and ancount > 0:
            answered = time.monotonic() - created
    if answered is None:
        sys.exit(f"{fqdn} not answered within 10 s")
    times.append(answered * 1e3)
    time.sleep(0.2)
times.sort()
print("[dns-bench]   " + ", ".join(f"{t:.1f}" for t in times) + f" ms (median {times[len(times) // 2]:.1f} ms)")
PY
memory "at the end"

pods=$(api_get "/api/v1/pods?limit=1" | python3 -c "import json,sys; d=json.load(sys.stdin); print(len(d['items']) + int(d['metadata'].get('remainingItemCount') or 0))")
svcs=$(api_get /api/v1/services | python3 -c "import json,sys; print(len(json.load(sys.stdin)['items']))")
python3 - "$pods" "$svcs" <<'PY'
import sys
pods, svcs = int(sys.argv[1]), int(sys.argv[2])
print(f"[dns-bench] CoreDNS's published figures for this cluster ({pods} Pods, {svcs} Services): memory "
      f"(Pods + Services)/1000 + 54 MB = {(pods + svcs) / 1000 + 54:.1f} MB (its scaling guide, "
      f"default settings); ~30k QPS per replica (its performance tests).")
PY
echo "[dns-bench] machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); server pinned to CPU 0, dnsperf (and etcd, kube-apiserver) to CPU 1; other work on the machine shares both"
