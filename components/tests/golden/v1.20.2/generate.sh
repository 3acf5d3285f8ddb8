#!/bin/sh
# Regenerates the goldens beside this script from the real kubeadm v1.20.2 (needs root and
# the binaries from scripts/setup.sh):
# - join-defaults.yaml: `kubeadm config print join-defaults`, run in a UTS namespace whose
#   host name is `node` (kubeadm 1.20 prints the host name there; kubeboot prints kubeadm
#   1.22's placeholder `node`, so this makes the two comparable byte for byte).
# - kubeadm-config-cluster-configuration.yaml, kubeadm-config-cluster-status.yaml: the two
#   keys of the kube-system/kubeadm-config ConfigMap that `kubeadm init --dry-run` with
#   init-config.yaml would upload. Runs inside a throwaway test node (scripts/node.sh), so
#   nothing on the host changes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
bin=${KUBEBOOT_BIN_DIR:-/var/lib/kubeboot-dev/bin}
unshare --uts sh -c "hostname node && '$bin/kubeadm' config print join-defaults" >"$here/join-defaults.yaml"

node=golden-cfgread
out=$(mktemp)
trap 'bash "$repo/scripts/node.sh" destroy $node >/dev/null 2>&1 || true; rm -f "$out"' EXIT
bash "$repo/scripts/node.sh" create $node 10.123.0.78/24
bash "$repo/scripts/node.sh" exec $node -- env -i PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  kubeadm init --dry-run --skip-phases=preflight --ignore-preflight-errors=all \
  --config "$here/init-config.yaml" >"$out"
# The ConfigMap's data block: each key's literal block, tab-and-4-space indented.
extract() {
  awk -v key="$1" '
    $0 ~ "^\t  " key ": \\|$" { on = 1; next }
    on && $0 !~ "^\t    " { exit }
    on { sub("^\t    ", ""); print }
  ' "$out"
}
extract ClusterConfiguration >"$here/kubeadm-config-cluster-configuration.yaml"
extract ClusterStatus >"$here/kubeadm-config-cluster-status.yaml"
test -s "$here/kubeadm-config-cluster-configuration.yaml"
test -s "$here/kubeadm-config-cluster-status.yaml"
