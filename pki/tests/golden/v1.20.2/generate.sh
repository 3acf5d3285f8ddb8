#!/bin/sh
# Regenerates the goldens in certs/ with the real kubeadm v1.20.2 for kubeadm-config.yaml.
# Usage: KUBEBOOT_BIN_DIR=~/.cache/kube-bin/v1.20.2 ./generate.sh
# (the binaries come from scripts/setup.sh / ../shared/k8s/build-binaries.sh).
# Only certificates and sa.pub are kept: kubeadm's private keys are deleted, never committed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${KUBEBOOT_BIN_DIR:?set KUBEBOOT_BIN_DIR to the directory holding kubeadm v1.20.2 (see scripts/setup.sh)}
kubeadm="$bin_dir/kubeadm"
"$kubeadm" version -o short | grep -qx 'v1.20.2' || { echo "need kubeadm v1.20.2 at $kubeadm" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# kubeadm refuses --cert-dir together with --config ("can not mix '--config' with
# arguments [cert-dir]"), so the directory goes into a copy of the config.
{ cat "$here/kubeadm-config.yaml"; echo "certificatesDir: $tmp/pki"; } > "$tmp/config.yaml"
"$kubeadm" init phase certs all --config "$tmp/config.yaml" > "$tmp/out.txt"
# Keep kubeadm's own words too: golden.rs checks the names it reported.
sed -e "s#$tmp/pki#<cert-dir>#g" "$tmp/out.txt" > "$here/kubeadm-output.txt"

rm -rf "$here/certs"
mkdir -p "$here/certs/etcd"
(cd "$tmp/pki" && find . -name '*.crt' -o -name 'sa.pub') | while read -r f; do
    cp "$tmp/pki/$f" "$here/certs/$f"
done
find "$here/certs" -name '*.key' -delete
echo "goldens written to $here/certs"
