#!/bin/sh
# Regenerates the golden static pod manifests with the real kubeadm v1.20.2.
#
# kubeadm always writes to /etc/kubernetes/manifests, so it runs in a private mount
# namespace with a tmpfs over /etc/kubernetes; the host's /etc/kubernetes is never touched.
# The environment is emptied because kubeadm copies *_proxy variables into the pods.
# Needs root. KUBEADM defaults to the binary that ../shared/k8s/build-binaries.sh builds.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kubeadm=${KUBEADM:-$HOME/.cache/kube-bin/v1.20.2/kubeadm}
"$kubeadm" version -o short | grep -qx v1.20.2 || { echo "need kubeadm v1.20.2 at $kubeadm" >&2; exit 1; }
created=
if [ ! -d /etc/kubernetes ]; then mkdir /etc/kubernetes; created=1; fi
status=0
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HERE="$here" KUBEADM="$kubeadm" \
  unshare -m --propagation private sh -eu -c '
    mount -t tmpfs tmpfs /etc/kubernetes
    "$KUBEADM" init phase control-plane all --config "$HERE/config.yaml"
    "$KUBEADM" init phase etcd local --config "$HERE/config.yaml"
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do
      cp /etc/kubernetes/manifests/$c.yaml "$HERE/$c.yaml"
    done
    chmod 0644 "$HERE"/*.yaml
  ' || status=$?
# The mount point is the only trace on the host; remove it if this script made it.
if [ -n "$created" ]; then rmdir /etc/kubernetes; fi
exit $status
