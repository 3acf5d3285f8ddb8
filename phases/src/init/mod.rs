//! `kubeboot init`: the phase tree of the first control-plane node (kubeadm: cmd/init.go and
//! cmd/phases/init/).

pub mod addons;
pub mod agent_start;
pub mod bootstrap_token;
pub mod control_plane;
pub mod data;
pub mod etcd;
pub mod kubeconfig;
pub mod kubelet_start;
pub mod mark_control_plane;
pub mod preflight;
pub mod upload_config;
pub mod wait_control_plane;

use crate::runner::Phase;
pub use data::InitData;

/// The `init` phase tree, in run order; it reads like `kubeadm init --help` (kubeadm 1.20's
/// order, with agent-start where the kubelet's static pods would start).
pub fn phases() -> Vec<Phase<InitData>> {
    vec![
        preflight::phase(),
        crate::shared::certs::phase(),
        kubeconfig::phase(),
        kubelet_start::phase(),
        control_plane::phase(),
        etcd::phase(),
        agent_start::phase(),
        wait_control_plane::phase(),
        upload_config::phase(),
        mark_control_plane::phase(),
        bootstrap_token::phase(),
        addons::phase(),
    ]
}

/// Runs `init` (or the phases selected by `only`), then prints the closing text.
///
/// # Errors
/// The first failing phase (`error execution phase <path>: ...`), or an unknown phase name.
pub fn run(data: &mut InitData, only: &[String]) -> anyhow::Result<()> {
    let tree = phases();
    let planned = crate::runner::plan(&tree, only, &data.cfg.skip_phases)?;
    crate::runner::run(&tree, data, &planned)?;
    if data.dry_run {
        crate::dryrun::print_written(&data.out, &data.fs)?;
    }
    if only.is_empty() {
        closing_text(data);
    }
    Ok(())
}

fn closing_text(d: &InitData) {
    let admin = d.layout.kubeconfig(components::names::ADMIN_KUBECONFIG);
    let out = &d.out;
    out.line("");
    out.line("Your Kubernetes control-plane has initialized successfully!");
    out.line("");
    out.line("To start using your cluster, you need to run the following as a regular user:");
    out.line("");
    out.line("  mkdir -p $HOME/.kube");
    out.line(&format!(
        "  sudo cp -i {} $HOME/.kube/config",
        admin.display()
    ));
    out.line("  sudo chown $(id -u):$(id -g) $HOME/.kube/config");
    out.line("");
    out.line("Alternatively, if you are the root user, you can run:");
    out.line("");
    out.line(&format!("  export KUBECONFIG={}", admin.display()));
    out.line("");
    out.line("The control plane runs as static Pods under the kubeboot agent; check them with:");
    out.line("");
    out.line("  kubeboot agent status");
}
