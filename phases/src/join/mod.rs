//! `kubeboot join`: the phase tree of a node joining a cluster (kubeadm: cmd/join.go and
//! cmd/phases/join/), for workers and, with `--control-plane`, control-plane nodes.

pub mod control_plane;
pub mod data;
pub mod kube_proxy;
pub mod kubelet_start;
pub mod preflight;

use anyhow::Context;

use crate::discovery::Discovered;
use crate::runner::Phase;
use crate::shared::node::NodeCtx;
pub use data::JoinData;

/// The `join` phase tree, in run order; it reads like `kubeadm join --help` (kubeadm 1.20's
/// order), plus kube-proxy, which kubeboot's agent runs on the node.
pub fn phases() -> Vec<Phase<JoinData>> {
    vec![
        preflight::phase(),
        control_plane::prepare_phase(),
        control_plane::check_etcd_phase(),
        kubelet_start::phase(),
        kube_proxy::phase(),
        control_plane::join_phase(),
    ]
}

/// Runs `join` (or the phases selected by `only`), then prints the closing text.
///
/// # Errors
/// The first failing phase (`error execution phase <path>: ...`), or an unknown phase name.
pub fn run(d: &mut JoinData, only: &[String]) -> anyhow::Result<()> {
    let tree = phases();
    let planned = crate::runner::plan(&tree, only, &d.cfg.skip_phases)?;
    crate::runner::run(&tree, d, &planned)?;
    if d.dry_run {
        crate::dryrun::print_written(&d.out, &d.fs)?;
    }
    if only.is_empty() {
        closing_text(d);
    }
    Ok(())
}

/// kubeadm's closing texts (cmd/join.go, joinWorkerNodeDoneMsg and
/// joinControPlaneDoneTemp).
fn closing_text(d: &JoinData) {
    let out = &d.out;
    if d.is_control_plane() {
        let admin = d.layout.kubeconfig(components::names::ADMIN_KUBECONFIG);
        out.line("");
        out.line("This node has joined the cluster and a new control plane instance was created:");
        out.line("");
        out.line("* Certificate signing request was sent to apiserver and approval was received.");
        out.line("* The Kubelet was informed of the new secure connection details.");
        out.line("* Control plane (master) label and taint were applied to the new node.");
        out.line("* The Kubernetes control plane instances scaled up.");
        let local_etcd = d
            .init_cfg
            .as_ref()
            .is_none_or(|c| matches!(c.cluster.etcd, components::config::Etcd::Local(_)));
        if local_etcd {
            out.line("* A new etcd member was added to the local/stacked etcd cluster.");
        }
        out.line("");
        out.line("To start administering your cluster from this node, you need to run the following as a regular user:");
        out.line("");
        out.line("\tmkdir -p $HOME/.kube");
        out.line(&format!(
            "\tsudo cp -i {} $HOME/.kube/config",
            admin.display()
        ));
        out.line("\tsudo chown $(id -u):$(id -g) $HOME/.kube/config");
        out.line("");
        out.line("Run 'kubectl get nodes' to see this node join the cluster.");
        out.line("");
        return;
    }
    out.line("");
    out.line("This node has joined the cluster:");
    out.line("* Certificate signing request was sent to apiserver and a response was received.");
    out.line("* The Kubelet was informed of the new secure connection details.");
    out.line("");
    out.line("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.");
    out.line("");
}

/// Points a kubeconfig of this node's components (kubelet, kube-proxy) at the node-local API
/// load balancer the agent keeps (`agent::apilb`): `https://127.0.0.1:6444`, verifying the
/// API servers' certificates for `kubernetes`. The balancer starts from the endpoint that
/// answered discovery and cluster-info's server, and learns every API server from the
/// `kubernetes` Endpoints, so the node keeps working when the control-plane node it joined
/// through is gone.
pub fn through_balancer(kubeconfig: pki::Kubeconfig) -> pki::Kubeconfig {
    kubeconfig.through_local_balancer(
        agent::apilb::config::ApiLbConfig::new(vec![], None).listen,
        components::names::API_SERVER_TLS_NAME,
    )
}

/// Writes the balancer's configuration (`/etc/kubeboot/api-lb.json`): the API servers known
/// now and the CA their certificates must chain to. An existing file (a re-run, or one the
/// agent updated with what it learned) is kept.
///
/// # Errors
/// The file cannot be written.
pub fn write_api_lb(
    node: &NodeCtx,
    found: &Discovered,
    ca_path: &std::path::Path,
) -> anyhow::Result<()> {
    let path = node.layout.api_lb_config();
    if node.fs.exists(&path) {
        return Ok(());
    }
    let mut servers = Vec::new();
    for url in [&found.endpoint_url, &found.server] {
        let host_port = url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        if !host_port.is_empty() && !servers.contains(&host_port) {
            servers.push(host_port);
        }
    }
    let ca = crate::node_record::node_view(&node.layout, ca_path)?;
    let config = agent::apilb::config::ApiLbConfig::new(servers, Some(ca));
    if let Some(dir) = path.parent() {
        crate::node_record::create_dir(&node.fs, &node.layout, dir, 0o755)?;
    }
    crate::node_record::note_file(&node.fs, &node.layout, &path)?;
    node.fs
        .write_public(&path, config.to_json().as_bytes())
        .context("could not write the API load balancer's configuration")?;
    crate::say!(
        node.out,
        "kubelet-start",
        "This node reaches the API servers through the agent's local load balancer ({}): {}",
        config.listen,
        config.servers.join(", ")
    );
    Ok(())
}
