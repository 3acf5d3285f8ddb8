#!/usr/bin/env bash
# `kubeboot join` vs upstream `kubeadm join`, side by side in one run, on namespace nodes
# (scripts/node.sh). Not a test: nothing here asserts a time.
#
#   bash bench/join.sh
#
# One kubeboot cluster: node kb-jb-cp runs `vagrant/provision.sh init` (the Vagrant recipe:
# controlPlaneEndpoint = its address, --upload-certs; the join commands land in a private
# temporary directory). Once it is Ready, from the same join command:
#   (a) worker join, measured from the start of join to "join returned" and to the Node Ready
#       as the control plane sees it:
#       - kubeboot: `provision.sh join worker` in kb-jb-w (kubeboot join: the agent starts
#         containerd and the kubelet, writes the CNI config once the podCIDR is assigned);
#       - kubeadm v1.20.2: `kubeadm join --skip-phases=preflight` (upstream v1.20 insists on
#         crictl there, and pulls images with it for a control-plane join) in kb-jb-kadm, with the same prerequisites a kubeadm
#         user has before joining, set up before the clock starts: containerd running with the
#         images of `scripts/build-images.sh --control-plane` imported, a bridge CNI conflist
#         (a kubeadm user installs their CNI; its subnet does not affect Ready), and a
#         supervisor loop that starts the kubelet as kubeadm's systemd drop-in would
#         (10-kubeadm.conf) once kubeadm has written its files, restarting it 1 s after it
#         exits (systemd's unit says 10 s: kubeadm gets the benefit). Its JoinConfiguration
#         carries the same token and CA pin, and the node's own cgroup root as a kubelet flag.
#   (b) control-plane join, measured to "join returned" and to both a healthy, voting etcd
#       member on the node (its /health, and not a learner in the member list) and its API
#       server answering /readyz:
#       - kubeboot: `provision.sh join control-plane` in kb-jb-cp2 (etcd joins as a learner and
#         is promoted);
#       - kubeadm v1.20.2: `kubeadm join --control-plane` in kb-jb-kadm-cp, prepared as the
#         kubeadm worker (its kubelet runs etcd and the control plane from the local image
#         archives), joining after kubeboot's node: etcd then has two voting members, so a
#         kubeadm member that never starts cannot cost the quorum (kubeadm 1.20 adds a voter
#         at once). The issue quotes 77 s for it into a kubeadm cluster on this kind of machine.
# Every wait is bounded (BENCH_TIMEOUT, 300 s); every node is destroyed on exit; the logs
# (each join's output, the kubeadm node's kubelet and containerd) are kept with
# BENCH_KEEP_LOGS=1.
set -eEuo pipefail
# A failed command ends the run: say which one.
trap 'echo "bench/join.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
PROVISION="$ROOT/vagrant/provision.sh"
readonly CP=kb-jb-cp CP_IP=10.123.0.51 KBW=kb-jb-w KBW_IP=10.123.0.52
readonly KAW=kb-jb-kadm KAW_IP=10.123.0.53 CP2=kb-jb-cp2 CP2_IP=10.123.0.54
readonly KAC=kb-jb-kadm-cp KAC_IP=10.123.0.55
work=$(mktemp -d)
cleanup() {
  local n
  for n in "$CP" "$KBW" "$KAW" "$CP2" "$KAC"; do bash "$NODE_SH" destroy "$n" >/dev/null 2>&1 || true; done
  if [ -n "${BENCH_KEEP_LOGS:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work/shared"

kc() { in_node "$CP" "$KUBECTL" --kubeconfig /etc/kubernetes/admin.conf --request-timeout=5s "$@"; }
create() { bash "$NODE_SH" destroy "$1" >/dev/null 2>&1 || true; bash "$NODE_SH" create "$1" "$2/24" >/dev/null; }
# provision.sh's cluster part in node $1, as scripts/quickstart.sh runs it.
provision() {
  local n=$1
  shift
  in_node "$n" env KUBEBOOT="$KUBEBOOT" KUBEBOOT_SHARED_DIR="$work/shared" \
    KUBEBOOT_NODE_CGROUP_ROOT="/kubeboot-$n" bash "$PROVISION" "$@" -- --bin-dir "$KUBEBOOT_BIN_DIR" --bin-dir /usr/bin
}
# Prefixes each line with the wall clock ($EPOCHREALTIME: no process per line).
stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
# timeline <start> <stamped log>: its "[phase] message" lines, seconds after <start>.
timeline() {
  python3 - "$1" "$2" <<'PY'
import sys
start = float(sys.argv[1])
for line in open(sys.argv[2]):
    t, _, msg = line.rstrip("\n").partition(" ")
    if msg.startswith("[") and not msg.startswith("[provision]"):
        print(f"   {float(t) - start:7.2f}s  {msg[:110]}")
PY
}
node_ready() {
  kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}
# wait_for <what> <command...>: polls every 0.2 s up to TIMEOUT; prints the time it held.
wait_for() {
  local what=$1 deadline=$(( $(date +%s) + TIMEOUT ))
  shift
  until "$@"; do
    [ "$(date +%s)" -le "$deadline" ] || { echo "timed out after ${TIMEOUT}s waiting for $what" >&2; return 1; }
    sleep 0.2
  done
  now
}
# A member of $CP's etcd answers /health on $1 and is a voting member.
etcd_voting() {
  local ip=$1 list
  in_node "$CP" curl -sf -m 3 --cacert /etc/kubernetes/pki/etcd/ca.crt \
    --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key \
    "https://$ip:2379/health" 2>/dev/null | grep -q '"health":"true"' || return 1
  list=$(in_node "$CP" curl -sf -m 3 --cacert /etc/kubernetes/pki/etcd/ca.crt \
    --cert /etc/kubernetes/pki/etcd/healthcheck-client.crt --key /etc/kubernetes/pki/etcd/healthcheck-client.key \
    -X POST -d '{}' https://127.0.0.1:2379/v3/cluster/member/list 2>/dev/null) || return 1
  python3 -c '
import json, sys
ms = json.loads(sys.argv[1]).get("members", [])
ok = [m for m in ms if any(sys.argv[2] + ":2379" in u for u in m.get("clientURLs", []))]
sys.exit(0 if ok and not ok[0].get("isLearner", False) else 1)' "$list" "$ip"
}
apiserver_ready() { in_node "$CP" curl -skf -m 3 "https://$1:6443/readyz" 2>/dev/null | grep -qx ok; }

echo "== images (scripts/build-images.sh --control-plane), for the kubeadm node's containerd"
images=$(bash "$ROOT/scripts/build-images.sh" --control-plane)
echo "$images" | sed 's/^/   /'

echo "== cluster: provision.sh init in $CP ($CP_IP)"
create "$CP" "$CP_IP"
provision "$CP" init "$CP_IP" >"$work/init.log" 2>&1 || { tail -30 "$work/init.log"; exit 1; }
wait_for "$CP Ready" node_ready "$CP" >/dev/null || exit 1
sed -n 's/^kubeboot /   kubeboot /p' "$work/shared/join-worker.sh"
# The token is fresh: the controller-manager signs cluster-info for it within seconds. Wait for
# that before any clock starts, so neither side pays for it.
token_id=$(sed -n 's/.*--token \([a-z0-9]*\)\..*/\1/p' "$work/shared/join-worker.sh")
signed() { kc -n kube-public get configmap cluster-info -o jsonpath="{.data.jws-kubeconfig-$token_id}" 2>/dev/null | grep -q .; }
wait_for "cluster-info signed for token $token_id" signed >/dev/null || exit 1

echo "== (a) kubeboot worker join ($KBW, $KBW_IP)"
create "$KBW" "$KBW_IP"
s=$(now)
provision "$KBW" join worker "$KBW_IP" 2>&1 | stamp >"$work/kbw.log" || { tail -30 "$work/kbw.log"; exit 1; }
kbw_start=$s
e_join=$(now)
e_ready=$(wait_for "$KBW Ready" node_ready "$KBW") || exit 1
kb_join=$(elapsed "$s" "$e_join") kb_ready=$(elapsed "$s" "$e_ready")
echo "   join returned ${kb_join}s   Node Ready ${kb_ready}s"

# kubeadm_node <node> <ip>: the node with what a kubeadm user has before joining (above).
kubeadm_node() {
  local n=$1
  create "$n" "$2"
  kubeadm_containerd "$n" "$work" "$images"
  in_node "$n" sh -c 'cat > /etc/cni/net.d/10-bridge.conflist' <<'JSON'
{"cniVersion": "0.4.0", "name": "bench", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.200.0/24"}]]}}]}
JSON
  kubeadm_kubelet_unit "$n" "$work"
}
# kubeadm_join_config <node> <ip> <join command file>: kubeadm's JoinConfiguration with that
# command's token, CA pin and (for a control-plane join) certificate key, in the node.
kubeadm_join_config() {
  local n=$1 ip=$2 words control_plane=""
  read -r -a words < <(sed -e 's/\\$//' "$3" | tr '\n' ' ') || true
  word_after() {
    local i
    for i in "${!words[@]}"; do
      if [ "${words[$i]}" = "$1" ]; then echo "${words[$((i + 1))]:-}"; fi
    done
  }
  [ -n "$(word_after --certificate-key)" ] && control_plane="controlPlane:
  certificateKey: $(word_after --certificate-key)
  localAPIEndpoint:
    advertiseAddress: $ip
    bindPort: 6443"
  in_node "$n" sh -c 'mkdir -p /var/lib/kubeboot && cat > /var/lib/kubeboot/kubeadm-join.yaml' <<CFG
apiVersion: kubeadm.k8s.io/v1beta2
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: $(word_after join)
    token: $(word_after --token)
    caCertHashes:
    - $(word_after --discovery-token-ca-cert-hash)
nodeRegistration:
  criSocket: /run/containerd/containerd.sock
  kubeletExtraArgs:
    node-ip: $ip
    cgroup-root: /kubeboot-$n
$control_plane
CFG
}
# kubeadm_join <node> <log>: runs kubeadm join in the node (bounded), its output stamped.
# Without its preflight phase, as bench/kubeadm_vs_kubeboot.sh runs kubeadm init: upstream
# v1.20 insists on crictl there, and a control-plane join's preflight pulls images with it.
kubeadm_join() {
  timeout "$TIMEOUT" bash "$NODE_SH" exec "$1" -- "$KUBEADM" join --config /var/lib/kubeboot/kubeadm-join.yaml \
    --skip-phases=preflight 2>&1 | stamp >"$2"
}

echo "== (a) kubeadm v1.20.2 worker join ($KAW, $KAW_IP)"
kubeadm_node "$KAW" "$KAW_IP"
kubeadm_join_config "$KAW" "$KAW_IP" "$work/shared/join-worker.sh"
ka_join=n/a ka_ready=n/a
s=$(now)
kaw_start=$s
if kubeadm_join "$KAW" "$work/kadm.log"; then
  e_join=$(now)
  ka_join=$(elapsed "$s" "$e_join")
  if e_ready=$(wait_for "$KAW Ready" node_ready "$KAW"); then
    ka_ready=$(elapsed "$s" "$e_ready")
  else
    echo "   kubelet log tail:" >&2; tail -15 "$work/$KAW-kubelet.log" >&2
  fi
else
  echo "   kubeadm join failed:" >&2; tail -20 "$work/kadm.log" >&2
fi
echo "   join returned ${ka_join}s   Node Ready ${ka_ready}s"

echo "== (b) kubeboot control-plane join ($CP2, $CP2_IP)"
create "$CP2" "$CP2_IP"
s=$(now)
provision "$CP2" join control-plane "$CP2_IP" 2>&1 | stamp >"$work/cp2.log" || { tail -30 "$work/cp2.log"; exit 1; }
cp2_start=$s
e_join=$(now)
e_etcd=$(wait_for "a voting etcd member on $CP2" etcd_voting "$CP2_IP") || exit 1
e_api=$(wait_for "$CP2's API server /readyz" apiserver_ready "$CP2_IP") || exit 1
cp_join=$(elapsed "$s" "$e_join") cp_etcd=$(elapsed "$s" "$e_etcd") cp_api=$(elapsed "$s" "$e_api")
echo "   join returned ${cp_join}s   etcd voting+healthy ${cp_etcd}s   API server ready ${cp_api}s"

# After kubeboot's: etcd then has two voting members, so a kubeadm member that never comes up
# (kubeadm 1.20 adds it as a voter at once) leaves 2 of 3, still a quorum.
echo "== (b) kubeadm v1.20.2 control-plane join ($KAC, $KAC_IP; etcd has 2 members already)"
kubeadm_node "$KAC" "$KAC_IP"
kubeadm_join_config "$KAC" "$KAC_IP" "$work/shared/join-control-plane.sh"
kc_join=n/a kc_etcd=n/a kc_api=n/a
s=$(now)
kac_start=$s
if kubeadm_join "$KAC" "$work/kac.log"; then
  e_join=$(now)
  kc_join=$(elapsed "$s" "$e_join")
  e_etcd=$(wait_for "a voting etcd member on $KAC" etcd_voting "$KAC_IP") && kc_etcd=$(elapsed "$s" "$e_etcd")
  e_api=$(wait_for "$KAC's API server /readyz" apiserver_ready "$KAC_IP") && kc_api=$(elapsed "$s" "$e_api")
else
  echo "   kubeadm join --control-plane failed:" >&2; tail -20 "$work/kac.log" >&2
  echo "   kubelet log tail:" >&2; tail -10 "$work/$KAC-kubelet.log" >&2
fi
echo "   join returned ${kc_join}s   etcd voting+healthy ${kc_etcd}s   API server ready ${kc_api}s"

echo "== wall time from the start of join (ratio: kubeadm / kubeboot)"
printf '   %-34s %9s %9s %8s\n' "" kubeadm kubeboot ratio
row() {
  local r=n/a
  [[ "$2" =~ ^[0-9.]+$ ]] && r=$(ratio "$2" "$3")
  printf '   %-34s %9s %9s %8s\n' "$1" "$2" "$3" "$r"
}
row "worker: join returned (s)" "$ka_join" "$kb_join"
row "worker: Node Ready (s)" "$ka_ready" "$kb_ready"
row "control plane: join returned (s)" "$kc_join" "$cp_join"
row "control plane: etcd voting (s)" "$kc_etcd" "$cp_etcd"
row "control plane: API ready (s)" "$kc_api" "$cp_api"

echo "== where the time went (seconds after the start of each join)"
echo "   kubeboot worker join:"
timeline "$kbw_start" "$work/kbw.log"
echo "   kubeadm worker join:"
timeline "$kaw_start" "$work/kadm.log"
echo "   kubeboot control-plane join:"
timeline "$cp2_start" "$work/cp2.log"
echo "   kubeadm control-plane join:"
timeline "$kac_start" "$work/kac.log"
