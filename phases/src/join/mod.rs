//! `kubeboot join`: the phase tree of a node joining a cluster (kubeadm: cmd/join.go and
//! cmd/phases/join/), for workers and, with `--control-plane`, control-plane nodes.

pub mod data;
pub mod kube_proxy;
pub mod kubelet_start;
pub mod preflight;

use crate::discovery::Discovered;
use crate::runner::Phase;
use crate::shared::node::NodeCtx;
pub use data::JoinData;

/// The `join` phase tree, in run order; it reads like `kubeadm join --help` (kubeadm 1.20's
/// order), plus kube-proxy, which kubeboot's agent runs on the node.
pub fn phases() -> Vec<Phase<JoinData>> {
    vec![
        preflight::phase(),
        kubelet_start::phase(),
        kube_proxy::phase(),
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
    out.line("");
    out.line("This node has joined the cluster:");
    out.line("* Certificate signing request was sent to apiserver and a response was received.");
    out.line("* The Kubelet was informed of the new secure connection details.");
    out.line("");
    out.line("Run 'kubectl get nodes' on the control-plane to see this node join the cluster.");
    out.line("");
}

/// The URL this node's components reach the API server at: the endpoint that answered
/// discovery (the one the user named).
pub fn api_server_url(_node: &NodeCtx, found: &Discovered) -> String {
    found.endpoint_url.clone()
}
