#!/bin/sh
# Regenerates the golden addon objects with the real kubeadm v1.20.2.
#
# `kubeadm init --dry-run` prints every object it would send to the API server; this script
# keeps the addon ones (from CoreDNS's first request on) as one file per object,
# <config>/<NN>-<kind>-<name>.yaml, in kubeadm's order. kubeadm runs inside a throwaway test
# node (scripts/node.sh: its own network, mount and UTS namespaces), so nothing it writes
# or looks up touches the host; preflight is skipped (it would resolve the node name).
# Each config here is run: config.yaml (defaults) and config-kube-proxy.yaml (a
# user-supplied KubeProxyConfiguration, a controlPlaneEndpoint, another service subnet and
# DNS domain). Needs root. KUBEADM defaults to the binary ../shared/k8s/build-binaries.sh builds.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../../.." && pwd)
kubeadm=${KUBEADM:-$HOME/.cache/kube-bin/v1.20.2/kubeadm}
"$kubeadm" version -o short | grep -qx v1.20.2 || { echo "need kubeadm v1.20.2 at $kubeadm" >&2; exit 1; }
node=kb-golden-addons
trap 'bash "$repo/scripts/node.sh" destroy $node >/dev/null 2>&1 || true' EXIT
bash "$repo/scripts/node.sh" create $node 10.123.0.213/24
for cfg in config config-kube-proxy; do
  out=$(bash "$repo/scripts/node.sh" exec $node -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    "$kubeadm" init --dry-run --skip-phases=preflight --config "$here/$cfg.yaml")
  rm -rf "$here/$cfg"; mkdir "$here/$cfg"
  printf '%s\n' "$out" | awk -v dir="$here/$cfg" '
    /^\[dryrun\] Would perform action LIST on resource "deployments"/ { addons = 1 }
    !addons { next }
    function flush() {
      if (body == "") return
      n++; file = sprintf("%s/%02d-%s-%s.yaml", dir, n, tolower(kind), name)
      gsub(":", "_", file); sub("^" dir "/", "", file); file = dir "/" file
      printf "%s", body > file; close(file); body = ""; kind = ""; name = ""
    }
    /^\t/ { line = substr($0, 2); body = body line "\n"
            if (line ~ /^kind: /) kind = substr(line, 7)
            if (line ~ /^metadata:/) meta = 1
            else if (meta && line ~ /^  name: /) { name = substr(line, 9); meta = 0 }
            next }
    { flush(); meta = 0 }
    /^\[addons\]/ { print > (dir "/messages.txt") }
    END { flush() }'
done
chmod 0644 "$here"/*/*.yaml "$here"/*/messages.txt
