//! `kubeboot init`: the phase tree of the first control-plane node (kubeadm: cmd/init.go and
//! cmd/phases/init/).

pub mod addons;
pub mod agent_rbac;
pub mod agent_start;
pub mod bootstrap_token;
pub mod control_plane;
pub mod data;
pub mod etcd;
pub mod kubeconfig;
pub mod kubelet_start;
pub mod mark_control_plane;
pub mod pod_cidr;
pub mod preflight;
pub mod resume;
pub mod upload_certs;
pub mod upload_config;
pub mod wait_control_plane;

use anyhow::Context;

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
        pod_cidr::phase(),
        agent_rbac::phase(),
        upload_config::phase(),
        upload_certs::phase(),
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
    if only.is_empty() {
        // Every phase succeeded: from here on a second init finds a control plane, not an
        // interrupted init (see `resume`).
        resume::finish(data)?;
    }
    if data.dry_run {
        crate::dryrun::print_written(&data.out, &data.fs)?;
    }
    if only.is_empty() {
        closing_text(data)?;
    }
    Ok(())
}

/// kubeadm's closing text (cmd/init.go, initDoneTempl) with kubeboot's join commands.
fn closing_text(d: &mut InitData) -> anyhow::Result<()> {
    let join = join_commands(d)?;
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
    match d.static_pod_runner {
        components::StaticPodRunner::Agent => {
            out.line(
                "The control plane runs as static Pods under the kubeboot agent; check them with:",
            );
            out.line("");
            out.line("  kubeboot agent status");
        }
        components::StaticPodRunner::Kubelet => {
            out.line("The control plane runs as static Pods under the kubelet; check them with:");
            out.line("");
            out.line("  kubectl -n kube-system get pods");
        }
    }
    out.line("");
    match d.pod_network {
        agent::cni::PodNetwork::None => {
            out.line("You should now deploy a pod network to the cluster.");
            out.line(
                "Run \"kubectl apply -f [podnetwork].yaml\" with one of the options listed at:",
            );
            out.line("  https://kubernetes.io/docs/concepts/cluster-administration/addons/");
        }
        agent::cni::PodNetwork::Bridge => {
            out.line(
                "Pods get their network from kubeboot's bridge CNI on each node (routes between",
            );
            out.line(
                "nodes included); to bring your own CNI instead, init with --pod-network none.",
            );
        }
    }
    out.line("");
    let Some((worker, control_plane)) = join else {
        return Ok(());
    };
    if let Some(cp) = control_plane {
        if d.upload_certs {
            out.line(
                "You can now join any number of the control-plane node running the following command on each as root:",
            );
            out.line("");
            out.line(&format!("  {cp}"));
            out.line("");
            out.line(
                "Please note that the certificate-key gives access to cluster sensitive data, keep it secret!",
            );
            out.line(
                "As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use",
            );
            out.line(
                "\"kubeboot init phase upload-certs --upload-certs\" to reload certs afterward.",
            );
        } else {
            out.line(
                "You can now join any number of control-plane nodes by copying certificate authorities",
            );
            out.line(
                "and service account keys on each node and then running the following as root:",
            );
            out.line("");
            out.line(&format!("  {cp}"));
        }
        out.line("");
    }
    out.line(
        "Then you can join any number of worker nodes by running the following on each as root:",
    );
    out.line("");
    out.line(&worker);
    Ok(())
}

/// The worker join command and, with a control-plane endpoint, the control-plane one, laid
/// out as kubeadm's template lays them out; `None` when admin.conf or a token is missing
/// (a partial init).
pub(crate) fn join_commands(d: &mut InitData) -> anyhow::Result<Option<(String, Option<String>)>> {
    let admin = d.layout.kubeconfig(components::names::ADMIN_KUBECONFIG);
    let Some(admin_yaml) = d.fs.read_string_if_exists(&admin)? else {
        return Ok(None);
    };
    let Some(token) = d.tokens()?.into_iter().next() else {
        return Ok(None);
    };
    // kubeadm: cmd/util/join.go, getJoinCommand.
    let token = if d.skip_token_print {
        "<value withheld>".to_string()
    } else {
        token.to_string()
    };
    let (endpoint, hashes) = crate::token::join_facts(&admin_yaml)
        .with_context(|| format!("could not read {:?}", admin.display().to_string()))?;
    let pins: String = hashes
        .iter()
        .map(|h| format!("--discovery-token-ca-cert-hash {h} "))
        .collect();
    let worker = format!("kubeboot join {endpoint} --token {token} \\\n    {pins}");
    // The key as kubeadm shows it: the one given or generated by upload-certs, withheld
    // on request even when there is none.
    let key = if d.skip_certificate_key_print {
        Some("<value withheld>")
    } else {
        d.cfg.certificate_key.as_deref()
    };
    let key = key
        .map(|k| format!("--certificate-key {k}"))
        .unwrap_or_default();
    let control_plane = d.cfg.cluster.control_plane_endpoint.as_ref().map(|_| {
        format!(
            "kubeboot join {endpoint} --token {token} \\\n    {pins}\\\n    --control-plane {key}"
        )
    });
    Ok(Some((worker, control_plane)))
}
