//! `join` preflight checks (kubeadm: app/preflight/checks.go, RunJoinNodeChecks), with
//! kubeadm's check names, plus kubeboot's: the node components' binaries, the CNI plugins,
//! and the cluster's configuration read through discovery (kubeadm reads it here only for a
//! control-plane join; kubeboot reads it for every node, since the kubelet binary must be of
//! the cluster's version).

use crate::join::data::JoinData;
use crate::preflight::{self, Check};
use crate::say;

/// The `preflight` phase.
pub fn phase() -> crate::runner::Phase<JoinData> {
    crate::runner::Phase::new("preflight", "Run join pre-flight checks", run).flags(&[
        "config",
        "ignore-preflight-errors",
        "dry-run",
        "bin-dir",
        "node-name",
        "static-pod-runner",
        "discovery-file",
        "discovery-token",
        "discovery-token-ca-cert-hash",
        "discovery-token-unsafe-skip-ca-verification",
        "tls-bootstrap-token",
        "token",
        "control-plane",
        "apiserver-advertise-address",
        "apiserver-bind-port",
        "certificate-key",
    ])
}

fn run(d: &mut JoinData) -> anyhow::Result<()> {
    say!(d.out, "preflight", "Running pre-flight checks");
    // Before anything touches the cluster: a node that already is one is refused first.
    let local = local_checks(d);
    let findings = preflight::run_checks(&local);
    if let Err(e) = preflight::report(&d.out, &findings, &d.ignore_preflight_errors) {
        let joined = findings.iter().any(|f| {
            f.error.is_some()
                && (f
                    .name
                    .starts_with("FileAvailable--etc-kubernetes-kubelet.conf")
                    || f.name.starts_with("DirAvailable--etc-kubernetes-manifests")
                    || f.name == "NodeRecord")
        });
        if joined {
            anyhow::bail!(
                "{e}\n[preflight] This node is already part of a cluster (init or join ran here); run \"kubeboot reset -f\" to start over"
            );
        }
        return Err(e);
    }
    let cfg = d.init_cfg()?.clone();
    let node_name = cfg.node.name.clone();
    refuse_taken_name(d, &node_name)?;
    if d.is_control_plane() {
        // kubeadm: "unable to add a new control plane instance to a cluster that doesn't
        // have a stable controlPlaneEndpoint address".
        anyhow::ensure!(
            cfg.cluster.control_plane_endpoint.is_some(),
            "one or more conditions for hosting a new control plane instance is not satisfied: unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address; init the first node with --control-plane-endpoint (its own address works: every kubeboot node keeps a local API load balancer over all API servers)"
        );
        say!(
            d.out,
            "preflight",
            "Running pre-flight checks before initializing the new control plane instance"
        );
    }
    let hostname = crate::host::hostname();
    let mut pods = Vec::new();
    let cri = crate::init::kubelet_start::detect_cri(&d.node, &cfg);
    let mut checks = Vec::new();
    match cri {
        Ok(cri) => {
            pods.push((
                components::names::KUBELET.to_string(),
                manifests::kubelet::kubelet_pod(&cfg, &d.layout, cri.socket(), &hostname),
            ));
            checks.push(Check::new("CRI", || preflight::Outcome::Ok));
        }
        Err(e) => {
            let msg = format!("{e:#}");
            checks.push(Check::new("CRI", move || {
                preflight::Outcome::Error(msg.clone())
            }));
        }
    }
    if d.static_pod_runner == components::StaticPodRunner::Agent {
        pods.push((
            components::names::KUBE_PROXY.to_string(),
            manifests::addons::kube_proxy::kube_proxy_pod(&cfg, &d.layout),
        ));
    }
    if d.is_control_plane() {
        let mut view = crate::join::control_plane::init_view(d, true)?;
        view.api = None;
        checks.extend(crate::init::preflight::control_plane_checks(&view));
        if d.static_pod_runner == components::StaticPodRunner::Agent {
            pods.extend(crate::init::control_plane::pods(&view));
        }
    }
    checks.extend(preflight::binary_checks(&pods, &d.bin_dirs));
    let findings = preflight::run_checks(&checks);
    preflight::report(&d.out, &findings, &d.ignore_preflight_errors)?;
    say!(
        d.out,
        "preflight",
        "The cluster runs Kubernetes {}; this node's components are of that version",
        cfg.cluster.kubernetes_version
    );
    Ok(())
}

/// The checks that need nothing from the cluster.
fn local_checks(d: &JoinData) -> Vec<Check> {
    let layout = &d.layout;
    let mut checks = vec![
        Check::privileged_user(),
        Check::kubeboot_binary(&d.exe),
        Check::dir_available(&layout.manifests_dir(), layout),
        Check::file_available(
            &layout.kubeconfig(components::names::KUBELET_KUBECONFIG),
            layout,
        ),
        Check::file_available(&layout.kubeconfig("bootstrap-kubelet.conf"), layout),
        Check::port(components::names::KUBELET_PORT),
        Check::file_content(std::path::Path::new("/proc/sys/net/ipv4/ip_forward"), "1"),
        Check::swap(),
    ];
    let record = layout.node_record();
    let shown = record.display().to_string();
    checks.push(Check::new("NodeRecord", move || {
        if record.exists() {
            preflight::Outcome::Error(format!(
                "{shown} exists: kubeboot init or join already ran on this node"
            ))
        } else {
            preflight::Outcome::Ok
        }
    }));
    // A control-plane node may hold the cluster's CA already, copied by hand (kubeadm skips
    // this check for it too, checks.go RunJoinNodeChecks).
    if !d.cfg.ca_cert_path.is_empty() && !d.is_control_plane() {
        let ca = layout.node_path(&d.cfg.ca_cert_path);
        checks.push(Check::file_available(&ca, layout));
    }
    for (exe, mandatory) in [
        ("ip", true),
        ("mount", true),
        ("nsenter", true),
        ("iptables", false),
        ("conntrack", false),
    ] {
        checks.push(Check::in_path(exe, mandatory));
    }
    if d.pod_network == agent::cni::PodNetwork::Bridge {
        checks.push(crate::init::preflight::cni_plugins_check());
    }
    checks.extend(d.bin_dirs.iter().map(|dir| Check::bin_dir(dir)));
    checks
}

/// kubeadm (join/kubelet.go): a Ready Node of the same name is refused, since this node
/// would take over its identity; a NotReady one is taken over (a reinstalled machine).
fn refuse_taken_name(d: &mut JoinData, name: &str) -> anyhow::Result<()> {
    let api = d.bootstrap_api()?;
    let Ok(Some(node)) = api.get::<k8s_openapi::api::core::v1::Node>(None, name) else {
        // kubeadm:get-nodes lets the bootstrap token read nodes; a cluster without it (or
        // without this node) has nothing to compare.
        return Ok(());
    };
    let ready = node
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True");
    anyhow::ensure!(
        !ready,
        "a Node with name {name:?} and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node (--node-name)"
    );
    Ok(())
}
