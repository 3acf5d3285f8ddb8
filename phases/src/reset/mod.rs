//! `kubeboot reset`: reverts what `init` (and later `join`) did to this node (kubeadm:
//! cmd/reset.go, cmd/phases/reset/). Stops the agent and every pod it ran, then deletes the
//! manifests, certificates, kubeconfigs, etcd's data and the agent's state, so `init` can run
//! again. Safe to run twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::host::fs::Fs;
use components::{Layout, names};
use k8s_openapi::api::core::v1::Pod;

use crate::out::Out;
use crate::runner::Phase;
use crate::say;

/// The run data of `reset`.
pub struct ResetData {
    /// Node paths.
    pub layout: Layout,
    /// File access.
    pub fs: Fs,
    /// User output.
    pub out: Out,
    /// `--dry-run`: say what would be removed, remove nothing.
    pub dry_run: bool,
    /// `--cert-dir`, if given; otherwise read from the API server manifest or the default.
    pub cert_dir: Option<PathBuf>,
    /// How long pods get to stop after SIGTERM.
    pub grace: Duration,
}

/// The `reset` phase tree.
pub fn phases() -> Vec<Phase<ResetData>> {
    vec![
        Phase::new(
            "preflight",
            "Run reset pre-flight checks",
            |d: &mut ResetData| {
                say!(d.out, "preflight", "Running pre-flight checks");
                Ok(())
            },
        ),
        Phase::new("cleanup-node", "Run cleanup node.", cleanup_node),
    ]
}

/// Runs `reset`.
///
/// # Errors
/// The first failing phase.
pub fn run(data: &mut ResetData, skip: &[String]) -> anyhow::Result<()> {
    let tree = phases();
    let planned = crate::runner::plan(&tree, &[], skip)?;
    crate::runner::run(&tree, data, &planned)?;
    closing_text(&data.out);
    Ok(())
}

/// The value of `--<flag>=` in a static pod manifest's command, read as text so that reset
/// works on manifests of any version (kubeadm: reset.go getEtcdDataDir reads the etcd manifest).
fn manifest_flag(fs: &Fs, manifest: &Path, flag: &str) -> Option<String> {
    let text = fs.read_string_if_exists(manifest).ok()??;
    let needle = format!("--{flag}=");
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("- ").trim();
        l.strip_prefix(&needle)
            .map(|v| v.trim_matches('"').to_string())
    })
}

fn cleanup_node(d: &mut ResetData) -> anyhow::Result<()> {
    let l = &d.layout;
    // Read what the manifests say before they are gone.
    let etcd_data = manifest_flag(&d.fs, &l.manifest(names::ETCD), "data-dir")
        .map(|p| l.node_path(p))
        .unwrap_or_else(|| l.default_etcd_data_dir());
    let cert_dir = d.cert_dir.clone().unwrap_or_else(|| {
        manifest_flag(&d.fs, &l.manifest(names::KUBE_APISERVER), "client-ca-file")
            .and_then(|ca| Path::new(&ca).parent().map(|p| l.node_path(p)))
            .unwrap_or_else(|| l.default_cert_dir())
    });

    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would stop the kubeboot agent and every static Pod it runs"
        );
    } else {
        // Which node's pods the agent published, asked before it stops.
        let node_name = agent::status::query(&l.agent_socket(), Duration::from_secs(2))
            .ok()
            .and_then(|s| s.node_name);
        say!(d.out, "reset", "Stopping the kubeboot agent");
        let unit = l.agent_systemd_unit();
        if crate::init::agent_start::systemd_is_init(l) && unit.exists() {
            let _ = std::process::Command::new("systemctl")
                .args(["disable", "--now", "kubeboot-agent.service"])
                .status();
            d.fs.remove_file(&unit)?;
        }
        agent::daemon::stop(l, Duration::from_secs(10))?;
        // With the agent stopped nothing publishes them again; the API server still runs.
        if let Some(node) = node_name {
            delete_published_pods(d, &node);
        }
        // The kubelet first, so it restarts nothing; then the CRI containers, while
        // containerd and its shims (static pods too) still run.
        let workloads = agent::node_cleanup::stop_workloads(l, d.grace)?;
        if workloads.kubelets > 0 || workloads.containers > 0 {
            say!(
                d.out,
                "reset",
                "Stopped the kubelet and the processes of {} CRI containers",
                workloads.containers
            );
        }
        let stopped = agent::stop_all_pods(l, d.grace)?;
        say!(
            d.out,
            "reset",
            "Stopped the static Pods ({stopped} processes)"
        );
        let netns = agent::node_cleanup::remove_pod_netns(l)?;
        if !netns.is_empty() {
            say!(
                d.out,
                "reset",
                "Removed the pod network namespaces: {}",
                show(&netns)
            );
        }
        let mounts = agent::node_cleanup::unmount_kubelet_dir(l)?;
        if !mounts.is_empty() {
            say!(
                d.out,
                "reset",
                "Unmounted {} volumes of the kubelet directory {}",
                mounts.len(),
                l.kubelet_dir().display()
            );
        }
        // The bridge and routes live in the host's network namespace: only for the host layout
        // (tests root the layout in a temporary directory on a shared machine).
        let network = if l.is_host() {
            agent::node_cleanup::remove_pod_network()?
        } else {
            Vec::new()
        };
        if !network.is_empty() {
            say!(
                d.out,
                "reset",
                "Removed kubeboot's pod network: {}",
                network.join(", ")
            );
        }
    }

    let config_dirs = [l.manifests_dir(), l.agent_manifests_dir(), cert_dir];
    say!(
        d.out,
        "reset",
        "Deleting contents of config directories: {}",
        show(&config_dirs)
    );
    let mut files: Vec<PathBuf> = [
        names::ADMIN_KUBECONFIG,
        names::KUBELET_KUBECONFIG,
        names::KUBELET_BOOTSTRAP_KUBECONFIG,
        names::CONTROLLER_MANAGER_KUBECONFIG,
        names::SCHEDULER_KUBECONFIG,
        names::KUBEBOOT_AGENT_KUBECONFIG,
    ]
    .iter()
    .map(|f| l.kubeconfig(f))
    .collect();
    // kubeboot's own CNI configuration (a user's CNI files stay, as kubeadm leaves them).
    files.push(
        l.node_path(names::CNI_CONF_DIR)
            .join(names::KUBEBOOT_CNI_CONFLIST),
    );
    say!(d.out, "reset", "Deleting files: {}", show(&files));
    let state_dirs = [
        etcd_data,
        l.agent_state_dir(),
        l.kube_proxy_dir(),
        l.run_dir(),
        l.tmp_dir(),
        l.kubelet_dir(),
        l.node_path(names::CNI_STATE_DIR),
        l.state_dir().join("containerd"),
    ];
    say!(
        d.out,
        "reset",
        "Deleting contents of stateful directories: {}",
        show(&state_dirs)
    );
    if d.dry_run {
        return Ok(());
    }
    for dir in config_dirs.iter().chain(state_dirs.iter()) {
        d.fs.clear_dir(dir)?;
    }
    for f in &files {
        d.fs.remove_file(f)?;
    }
    Ok(())
}

/// Deletes the Pods this node's agent published to the API (kube-system, label
/// `kubeboot.io/agent-node=<node>`): they have no `nodeName`, so no controller removes them
/// once the node is gone. Best effort, as kubeadm's reset treats the cluster: a cluster that
/// cannot be reached gets a warning with the command that does it later.
fn delete_published_pods(d: &ResetData, node: &str) {
    let l = &d.layout;
    let kubeconfig = l.kubeconfig(names::KUBEBOOT_AGENT_KUBECONFIG);
    if !kubeconfig.exists() {
        return;
    }
    let label = agent::mirror::object::node_label_value(node);
    let result = (|| -> anyhow::Result<Vec<String>> {
        let cluster = crate::cluster::Cluster::from_kubeconfig(&kubeconfig)?;
        let pods: Vec<Pod> = cluster.list(Some(names::KUBE_SYSTEM), None)?;
        let mut deleted = Vec::new();
        for pod in pods {
            let ours = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(names::LABEL_AGENT_NODE))
                .is_some_and(|v| *v == label);
            let Some(name) = pod.metadata.name.filter(|_| ours) else {
                continue;
            };
            if cluster.delete::<Pod>(Some(names::KUBE_SYSTEM), &name)? {
                deleted.push(name);
            }
        }
        Ok(deleted)
    })();
    match result {
        Ok(deleted) if deleted.is_empty() => {}
        Ok(deleted) => say!(
            d.out,
            "reset",
            "Deleted the Pods this node's agent published to the API: {}",
            deleted.join(", ")
        ),
        Err(e) => say!(
            d.out,
            "reset",
            "[WARNING] could not delete the Pods this node's agent published ({e:#}); once the cluster answers, run: kubectl -n {} delete pods -l {}={label}",
            names::KUBE_SYSTEM,
            names::LABEL_AGENT_NODE
        ),
    }
}

fn show(paths: &[PathBuf]) -> String {
    format!(
        "[{}]",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn closing_text(out: &Out) {
    out.line("");
    out.line("The reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d");
    out.line("");
    out.line("The reset process does not reset or clean up iptables rules or IPVS tables.");
    out.line(
        "If you wish to reset iptables, you must do so manually by using the \"iptables\" command.",
    );
    out.line("");
    out.line(
        "The reset process does not clean your kubeconfig files and you must remove them manually.",
    );
    out.line("Please, check the contents of the $HOME/.kube/config file.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_flag_reads_etcd_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etcd.yaml");
        std::fs::write(
            &p,
            "spec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd2\n",
        )
        .unwrap();
        assert_eq!(
            manifest_flag(&Fs::real(), &p, "data-dir").as_deref(),
            Some("/var/lib/etcd2")
        );
        assert_eq!(manifest_flag(&Fs::real(), &p, "name"), None);
    }
}
