//! Upstream kubeadm v1.20.2 on a test node, with what a kubeadm user installs next to it:
//! containerd with the images imported, the kubelet started the way kubeadm's systemd
//! drop-in (`10-kubeadm.conf`) starts it, and a bridge CNI configuration for the node's
//! podCIDR (kubeadm installs no pod network).
//!
//! A node has no systemd of its own: kubeadm's `systemctl` calls fail with a warning, and
//! [`start_kubelet_unit`] plays the kubelet unit instead. The node's `/` is the host's, but
//! everything kubeadm, the kubelet and containerd write (`/etc/kubernetes`,
//! `/var/lib/kubelet`, `/etc/cni/net.d`, `/var/lib/containerd`, ...) is private to the node
//! (`scripts/node.sh`).

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::env::require_bins;
use crate::node::Node;
use crate::wait::wait_until;

/// The containerd socket kubeadm is told about (`nodeRegistration.criSocket`).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// The kubeadm v1.20.2 binary (`$KUBEBOOT_BIN_DIR/kubeadm`, a link to `$KUBE_BIN_DIR/kubeadm`).
pub fn kubeadm_exe() -> Result<String> {
    Ok(require_bins(&["kubeadm", "kubelet"])?
        .join("kubeadm")
        .to_string_lossy()
        .into_owned())
}

/// Runs `kubeadm <args>` inside the node with the kubelet in `PATH` (kubeadm's preflight runs
/// `kubelet --version`), as a kubeadm user who installed the kubelet package has it.
pub fn kubeadm(node: &Node, args: &[&str]) -> Result<crate::CmdOutput> {
    let exe = kubeadm_exe()?;
    let dir = require_bins(&["kubelet"])?;
    let path = format!("PATH={}:/usr/sbin:/usr/bin:/sbin:/bin", dir.display());
    let mut argv = vec!["env", path.as_str(), exe.as_str()];
    argv.extend_from_slice(args);
    node.exec(&argv)
}

/// [`kubeadm`], stdout on success, error otherwise.
pub fn kubeadm_ok(node: &Node, args: &[&str]) -> Result<String> {
    kubeadm(node, args)?.ok()
}

/// Where a background process of `node` logs (on the host, for post-mortems).
fn log_path(node: &Node, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kb-e2e-{}-{what}.log", node.name()))
}

/// [`log_path`], emptied: a node name (and its slot) is reused by later runs.
fn fresh_log(node: &Node, what: &str) -> Result<PathBuf> {
    let path = log_path(node, what);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(path),
    }
}

/// Starts containerd in the node with a CRI configuration as kubeboot writes its own (CNI
/// plugins from `/usr/lib/cni`, `restrict_oom_score_adj` since a node is not the machine's
/// root), waits until it answers, and imports the image archives whose image names contain
/// one of `wanted` (no registry is reachable: every image a Pod needs is imported first).
pub fn start_containerd(
    node: &Node,
    images: &[(String, String)],
    wanted: &[&str],
) -> Result<Child> {
    let cni_bin = std::env::var("KUBEBOOT_CNI_BIN_DIR").unwrap_or_else(|_| "/usr/lib/cni".into());
    let config = format!(
        "version = 2\n\
         root = \"/var/lib/containerd\"\n\
         state = \"/run/containerd\"\n\
         [grpc]\n  address = \"{CONTAINERD_SOCKET}\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"k8s.gcr.io/pause:3.2\"\n  restrict_oom_score_adj = true\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"{cni_bin}\"\n  conf_dir = \"/etc/cni/net.d\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runc\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
    );
    node.write_file("/etc/containerd/config.toml", &config)?;
    let child = node.spawn(
        &["containerd", "--config", "/etc/containerd/config.toml"],
        &fresh_log(node, "containerd")?,
    )?;
    wait_until(
        &format!("containerd answers in {}", node.name()),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || Ok(node.exec(&["ctr", "version"])?.success()),
    )?;
    for (image, tar) in images {
        if wanted.iter().any(|w| image.contains(w)) {
            node.exec_ok(&["ctr", "-n", "k8s.io", "images", "import", tar])
                .with_context(|| format!("importing {image}"))?;
        }
    }
    Ok(child)
}

/// Starts the kubelet in the node as kubeadm's systemd unit would (kubeadm v1.20's
/// `10-kubeadm.conf`: `--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf
/// --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml
/// $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS`), once kubeadm has written
/// `/var/lib/kubelet/{config.yaml,kubeadm-flags.env}`, restarted 1 s after it exits (as the
/// unit's `Restart=always`). `KUBELET_EXTRA_ARGS` (a kubeadm user's `/etc/default/kubelet`)
/// is the node's own `--cgroup-root`: the kubelets of the nodes share the machine's cgroup
/// tree and must never manage one hierarchy, and the cluster's kubelet configuration names
/// the first node's root.
pub fn start_kubelet_unit(node: &Node) -> Result<Child> {
    let kubelet = require_bins(&["kubelet"])?.join("kubelet");
    let script = r#"
kubelet=$1 extra=$2
i=0
while [ ! -s /var/lib/kubelet/kubeadm-flags.env ] || [ ! -s /var/lib/kubelet/config.yaml ]; do
  i=$((i + 1)); [ "$i" -lt 3000 ] || { echo "[kubelet-unit] kubeadm wrote no kubelet configuration"; exit 1; }
  sleep 0.2
done
for run in $(seq 1 100); do
  KUBELET_KUBEADM_ARGS=
  . /var/lib/kubelet/kubeadm-flags.env
  echo "[kubelet-unit] starting the kubelet: $KUBELET_KUBEADM_ARGS $extra"
  "$kubelet" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
    --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
    $KUBELET_KUBEADM_ARGS $extra
  echo "[kubelet-unit] the kubelet exited ($?); restarting in 1 s"
  sleep 1
done
"#;
    let kubelet = kubelet.to_string_lossy();
    let extra = format!("--cgroup-root={}", node.cgroup_root());
    node.spawn(
        &["sh", "-c", script, "kubelet-unit", &kubelet, &extra],
        &fresh_log(node, "kubelet")?,
    )
}

/// Writes the CNI configuration a kubeadm user installs for a plain bridge network: a
/// bridge that is the pods' gateway and host-local addresses from the node's `pod_cidr`
/// (`/etc/cni/net.d/10-bridge.conflist`, plugins from `/usr/lib/cni`).
pub fn write_bridge_cni(node: &Node, pod_cidr: &str) -> Result<()> {
    let conflist = format!(
        r#"{{
  "cniVersion": "0.4.0",
  "name": "bridge",
  "plugins": [
    {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{pod_cidr}"}}]],
              "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#
    );
    node.write_file("/etc/cni/net.d/10-bridge.conflist", &conflist)
}

/// The podCIDR `cp` sees for node `name`, once kube-controller-manager has allocated one.
pub fn wait_pod_cidr(cp: &Node, name: &str, timeout: Duration) -> Result<String> {
    let mut cidr = String::new();
    wait_until(
        &format!("{name} has a podCIDR"),
        timeout,
        Duration::from_secs(1),
        || {
            let n = cp.kubectl_json(&["get", "node", name])?;
            cidr = n["spec"]["podCIDR"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok(!cidr.is_empty())
        },
    )?;
    Ok(cidr)
}

/// Stops what [`start_containerd`] and [`start_kubelet_unit`] started, after the node is
/// destroyed (which killed them): reaps the children.
pub fn reap(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The last lines of the kubelet and containerd logs that [`start_kubelet_unit`] and
/// [`start_containerd`] wrote for `node` (empty when neither ran there), for post-mortems.
pub fn kubeadm_logs(node: &Node) -> String {
    let mut report = String::new();
    for what in ["kubelet", "containerd"] {
        let path = log_path(node, what);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            report += &format!("### {} (last 60 lines)\n{tail}\n", path.display());
        }
    }
    report
}
