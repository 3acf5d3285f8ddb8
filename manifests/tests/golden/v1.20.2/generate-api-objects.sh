#!/bin/sh
# Regenerates init-dryrun-api-objects.txt: the API objects the real kubeadm v1.20.2 would
# create during `init` (upload-config, mark-control-plane, bootstrap-token), from its
# `--dry-run` output. Runs inside a throwaway test node (scripts/node.sh), so nothing on the
# host changes. Needs root and the binaries from scripts/setup.sh.
#
# The capture keeps kubeadm's text between "[upload-config] Storing ..." and the cluster-info
# RoleBinding; manifests/tests/cluster_objects.rs parses the attached objects out of it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
bin=${KUBEBOOT_BIN_DIR:-/var/lib/kubeboot-dev/bin}
node=golden-dryrun
out=$(mktemp)
trap 'bash "$repo/scripts/node.sh" destroy $node >/dev/null 2>&1 || true; rm -f "$out"' EXIT
bash "$repo/scripts/node.sh" create $node 10.123.0.77/24
bash "$repo/scripts/node.sh" exec $node -- env -i PATH="$bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  kubeadm init --dry-run --skip-phases=preflight --ignore-preflight-errors=all \
  --kubernetes-version v1.20.2 --node-name dryref --apiserver-advertise-address 10.123.0.77 \
  --token abcdef.0123456789abcdef >"$out"
start=$(grep -n '^\[upload-config\] Storing' "$out" | cut -d: -f1)
end=$(grep -n '^\[dryrun\] Would perform action LIST on resource "deployments"' "$out" | cut -d: -f1)
sed -n "${start},$((end - 1))p" "$out" >"$here/init-dryrun-api-objects.txt"
