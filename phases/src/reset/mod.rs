//! `kubeboot reset`: reverts what `init` (and later `join`) did to this node (kubeadm:
//! cmd/reset.go, cmd/phases/reset/). Stops the agent and every pod it ran, undoes what its
//! components did to the host (kube-proxy's rules, the kubelet's mounts, kubeboot's bridge and
//! routes), then deletes what the node record says kubeboot created, and nothing else: the
//! PKI files kubeboot knows in the certificate directory, never the directory; etcd's data
//! only where kubeboot ran etcd; never a system directory, never across a mount point
//! ([`plan`] decides, `agent::host::fs::Fs::clear_dir` guards). Safe to run twice, and to run
//! again after being killed half-way.
//!
//! The phases, in kubeadm's order: preflight, update-cluster-status, remove-etcd-member,
//! cleanup-node. Ordering truths that shape them:
//! - preflight decides, before anything changes, whether this node's etcd member may leave
//!   ([`leave::etcd_leave`]: never the last healthy members of a multi-member cluster without
//!   `--force-remove-last-etcd-member`) and whether `--delete-node` has a credential; a refusal
//!   leaves the node as it was.
//! - This node's API server hangs once its etcd member is gone, and its agent republishes the
//!   Pods it runs while it runs. So the node leaves the API first, exactly once
//!   ([`leave_api`]): the agent stops (its pods keep running: etcd and the API server still
//!   answer), the Pods it published are deleted, and with `--delete-node` the Node object.
//!   remove-etcd-member does that just before it removes the member; on a node without one
//!   (a worker), cleanup-node does it. Then the kubelet, the pods and etcd stop.

pub mod control_plane;
pub mod leave;
pub mod plan;

use std::path::PathBuf;
use std::time::Duration;

use agent::host::fs::Fs;
use components::{Layout, names};
use k8s_openapi::api::core::v1::Pod;

use crate::node_record::{self, NodeRecord};
use crate::out::Out;
use crate::runner::Phase;
use crate::say;
use plan::Step;

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
    /// `--cert-dir`, if given: its PKI files are deleted too (never the directory itself).
    pub cert_dir: Option<PathBuf>,
    /// How long pods get to stop after SIGTERM.
    pub grace: Duration,
    /// How this node leaves the cluster (`--delete-node`, `--kubeconfig`,
    /// `--force-remove-last-etcd-member`).
    pub leave: LeaveFlags,
    /// What earlier phases of this run decided or did.
    pub state: ResetState,
}

/// The flags of how a node leaves the cluster.
#[derive(Debug, Clone, Default)]
pub struct LeaveFlags {
    /// `--delete-node`: delete this node's Node object.
    pub delete_node: bool,
    /// `--kubeconfig`: the credential for the cluster (default: the admin kubeconfig).
    pub kubeconfig: Option<PathBuf>,
    /// `--force-remove-last-etcd-member`: reset even when this node's etcd member is needed
    /// for the etcd cluster's quorum.
    pub force_remove_last_etcd_member: bool,
}

/// What the phases of one reset run pass on to the later ones.
#[derive(Debug, Clone, Default)]
pub struct ResetState {
    /// preflight's decision about this node's etcd member (`None`: no local etcd, or it could
    /// not be asked).
    pub etcd_leave: Option<leave::EtcdLeave>,
    /// The credential `--delete-node` uses, chosen in preflight.
    pub delete_credential: Option<PathBuf>,
    /// [`leave_api`] ran.
    pub left_api: bool,
}

/// The `reset` phase tree.
pub fn phases() -> Vec<Phase<ResetData>> {
    vec![
        Phase::new("preflight", "Run reset pre-flight checks", preflight).flags(&[
            "ignore-preflight-errors",
            "force",
            "delete-node",
            "kubeconfig",
            "force-remove-last-etcd-member",
        ]),
        Phase::new(
            "update-cluster-status",
            "Remove this node from the ClusterStatus object.",
            control_plane::update_cluster_status,
        )
        .flags(&["kubeconfig"]),
        Phase::new(
            "remove-etcd-member",
            "Remove a local etcd member.",
            control_plane::remove_etcd_member,
        )
        .flags(&[
            "kubeconfig",
            "delete-node",
            "force-remove-last-etcd-member",
            "dry-run",
        ]),
        Phase::new("cleanup-node", "Run cleanup node.", cleanup_node).flags(&[
            "cert-dir",
            "delete-node",
            "kubeconfig",
            "dry-run",
        ]),
    ]
}

/// Runs `reset`.
///
/// # Errors
/// The first failing phase.
pub fn run(data: &mut ResetData, skip: &[String]) -> anyhow::Result<()> {
    run_phases(data, &[], skip)
}

/// Runs `reset`, or only the phases `only` names (`reset phase <name>`).
///
/// # Errors
/// The first failing phase.
pub fn run_phases(data: &mut ResetData, only: &[String], skip: &[String]) -> anyhow::Result<()> {
    let tree = phases();
    let planned = crate::runner::plan(&tree, only, skip)?;
    crate::runner::run(&tree, data, &planned)?;
    if only.is_empty() {
        closing_text(&data.out);
    }
    Ok(())
}

/// kubeadm's preflight (its prompt lives in `cmd`), and the decisions that must refuse
/// before anything changes: `--delete-node`'s credential and this node's etcd member.
fn preflight(d: &mut ResetData) -> anyhow::Result<()> {
    say!(d.out, "preflight", "Running pre-flight checks");
    if d.leave.delete_node {
        let admin = d.layout.kubeconfig(names::ADMIN_KUBECONFIG);
        let credential = leave::delete_node_credential(
            d.leave.kubeconfig.as_deref(),
            &admin,
            d.fs.exists(&admin),
        )?;
        d.state.delete_credential = Some(credential);
    }
    d.state.etcd_leave = control_plane::decide_etcd_leave(d)?;
    Ok(())
}

/// The node leaves the API, once per run, while its API server still answers: the agent
/// stops (the pods it runs keep running), the Pods it published are deleted, and with
/// `--delete-node` the Node object.
pub fn leave_api(d: &mut ResetData) -> anyhow::Result<()> {
    if d.state.left_api {
        return Ok(());
    }
    d.state.left_api = true;
    let l = d.layout.clone();
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would stop the kubeboot agent and delete the Pods it published"
        );
        if d.leave.delete_node {
            say!(d.out, "dryrun", "Would delete this node's Node object");
        }
        return Ok(());
    }
    // Which node's pods the agent published, asked before it stops.
    let node_name = agent::status::query(&l.agent_socket(), Duration::from_secs(2))
        .ok()
        .and_then(|s| s.node_name);
    say!(d.out, "reset", "Stopping the kubeboot agent");
    let unit = l.agent_systemd_unit();
    if crate::init::agent_start::systemd_is_init(&l) && unit.exists() {
        let _ = std::process::Command::new("systemctl")
            .args(["disable", "--now", "kubeboot-agent.service"])
            .status();
        d.fs.remove_file(&unit)?;
    }
    agent::daemon::stop(&l, Duration::from_secs(10))?;
    // With the agent stopped nothing publishes them again; the API server still runs.
    if let Some(node) = &node_name {
        delete_published_pods(d, node);
    }
    if d.leave.delete_node {
        let name = match node_name {
            Some(n) => Some(n),
            None => crate::etcd_local::read(&d.fs, &l)
                .ok()
                .flatten()
                .map(|e| e.name),
        }
        .unwrap_or_else(crate::host::hostname);
        delete_node(d, &name);
    }
    Ok(())
}

/// `--delete-node`: deletes the Node object with the credential preflight chose. Best effort
/// once preflight passed, as kubeadm treats the cluster during reset: a failure says the
/// command that does it later.
fn delete_node(d: &ResetData, name: &str) {
    let admin = d.layout.kubeconfig(names::ADMIN_KUBECONFIG);
    let credential = d.state.delete_credential.clone().unwrap_or(admin);
    let result = crate::cluster::Cluster::from_kubeconfig(&d.fs.resolve(&credential))
        .and_then(|api| api.delete::<k8s_openapi::api::core::v1::Node>(None, name));
    match result {
        Ok(true) => say!(d.out, "reset", "Deleted the Node {name:?}"),
        Ok(false) => say!(d.out, "reset", "The Node {name:?} is not in the cluster"),
        Err(e) => say!(
            d.out,
            "reset",
            "[WARNING] could not delete the Node {name:?} ({e:#}); run \"kubectl delete node {name}\" from a control-plane node"
        ),
    }
}

fn cleanup_node(d: &mut ResetData) -> anyhow::Result<()> {
    // Observe: what kubeboot recorded it created (or the default layout of an older node).
    let obs = observe(d)?;
    let record = plan::effective_record(&obs);
    // Decide.
    let plan = plan::plan(&d.layout, &obs);
    for note in &plan.notes {
        say!(d.out, "reset", "{note}");
    }
    let l = d.layout.clone();
    leave_api(d)?;
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would stop every static Pod the kubeboot agent runs"
        );
        if record.kube_proxy && l.is_host() {
            say!(
                d.out,
                "dryrun",
                "Would run \"kube-proxy --cleanup\" to remove kube-proxy's rules"
            );
        }
        for dir in &record.kubelet_dirs {
            say!(
                d.out,
                "dryrun",
                "Would unmount everything below {}",
                l.node_path(dir).display()
            );
        }
        if l.is_host() {
            say!(
                d.out,
                "dryrun",
                "Would remove kubeboot's pod network: its bridges {:?}, their veths and the routes with protocol {}",
                record.cni_bridges,
                agent::node_network::ROUTE_PROTO
            );
        }
    } else {
        stop_and_unwire(d, &record)?;
    }

    say_steps(d, &plan);
    if d.dry_run {
        return Ok(());
    }
    // Act: every step tolerates its target being gone, the record goes last.
    let kept = execute(&d.fs, &l, &plan.steps)?;
    anyhow::ensure!(
        kept.is_empty(),
        "left {} mount point(s) still mounted, with what they hold: {}; unmount them and run \"kubeboot reset\" again",
        kept.len(),
        show(&kept)
    );
    Ok(())
}

/// Reads the record and the facts the plan depends on.
fn observe(d: &ResetData) -> anyhow::Result<plan::Observed> {
    let l = &d.layout;
    let record = node_record::read(&d.fs, l)?;
    let cert_dir_flag = match &d.cert_dir {
        None => None,
        Some(dir) => {
            let text = dir.display().to_string();
            if let Some(reason) = components::config::check_node_dir(dir) {
                anyhow::bail!("--cert-dir: {text:?} {reason}");
            }
            Some(dir.clone())
        }
    };
    let mut obs = plan::Observed {
        record,
        etcd_manifest: d.fs.exists(&l.manifest(names::ETCD)),
        cert_dir_flag,
        ..Default::default()
    };
    // libcni names its cached results <network>-<container>-<interface>: kubeboot's network,
    // and `cni-loopback`, the loopback network containerd's CRI plugin runs for each sandbox
    // of the pods on kubeboot's network (all stopped above).
    let results = l.node_path(names::CNI_STATE_DIR).join("results");
    let prefixes = [
        format!("{}-", names::KUBEBOOT_CNI_NETWORK),
        "cni-loopback-".to_string(),
    ];
    obs.cni_results = std::fs::read_dir(d.fs.resolve(&results))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            prefixes.iter().any(|p| name.starts_with(p.as_str()))
        })
        .map(|e| results.join(e.file_name()))
        .collect();
    obs.etcd_with_member = plan::effective_record(&obs)
        .etcd_data_dirs
        .into_iter()
        .filter(|dir| d.fs.exists(&l.node_path(dir).join("member")))
        .collect();
    Ok(obs)
}

/// Stops everything the agent ran, then undoes what kubeboot's components did to the
/// host: kube-proxy's rules, the pod network namespaces, the kubelet's mounts, the bridge.
fn stop_and_unwire(d: &mut ResetData, record: &NodeRecord) -> anyhow::Result<()> {
    let l = d.layout.clone();
    // The agent stopped in leave_api, the etcd member left in remove-etcd-member. The kubelet
    // first, so it restarts nothing; then the CRI containers, while containerd and its shims
    // (static pods too) still run.
    let workloads = agent::node_cleanup::stop_workloads(&l, d.grace)?;
    if workloads.kubelets > 0 || workloads.containers > 0 {
        say!(
            d.out,
            "reset",
            "Stopped the kubelet and the processes of {} CRI containers",
            workloads.containers
        );
    }
    let stopped = agent::stop_all_pods(&l, d.grace)?;
    say!(
        d.out,
        "reset",
        "Stopped the static Pods ({stopped} processes)"
    );
    // kube-proxy's rules, the network bridge and routes live in the host's network
    // namespace: only for the host layout (tests root the layout in a temporary directory on
    // a shared machine).
    if record.kube_proxy && l.is_host() {
        match agent::node_cleanup::kube_proxy_cleanup(&record.bin_dirs) {
            Ok(Some(exe)) => say!(
                d.out,
                "reset",
                "Removed kube-proxy's rules ({} --cleanup)",
                exe.display()
            ),
            Ok(None) => say!(
                d.out,
                "reset",
                "[WARNING] kube-proxy ran here, but no kube-proxy binary is in {}; to remove its iptables and IPVS rules run: kube-proxy --cleanup",
                show(&record.bin_dirs)
            ),
            Err(e) => say!(
                d.out,
                "reset",
                "[WARNING] could not remove kube-proxy's rules: {e:#}; run: kube-proxy --cleanup"
            ),
        }
    }
    let netns = agent::node_cleanup::remove_pod_netns(&l)?;
    if !netns.is_empty() {
        say!(
            d.out,
            "reset",
            "Removed the pod network namespaces: {}",
            show(&netns)
        );
    }
    for dir in &record.kubelet_dirs {
        let done = agent::node_cleanup::unmount_below(&l, &l.node_path(dir))?;
        if !done.unmounted.is_empty() {
            say!(
                d.out,
                "reset",
                "Unmounted {} volumes below the kubelet directory {}",
                done.unmounted.len(),
                done.dir.display()
            );
        }
        if !done.left.is_empty() {
            say!(
                d.out,
                "reset",
                "[WARNING] still mounted below {}, left as they are: {}",
                done.dir.display(),
                show(&done.left)
            );
        }
    }
    if l.is_host() {
        let mut network = Vec::new();
        for bridge in &record.cni_bridges {
            network.extend(agent::node_cleanup::remove_pod_network(bridge)?);
        }
        if !network.is_empty() {
            say!(
                d.out,
                "reset",
                "Removed kubeboot's pod network: {}",
                network.join(", ")
            );
        }
    }
    Ok(())
}

/// Says what the steps delete, as kubeadm's reset lists it; only what is there.
fn say_steps(d: &ResetData, plan: &plan::Plan) {
    let present = |want: fn(&Step) -> bool| -> Vec<PathBuf> {
        plan.steps
            .iter()
            .filter(|s| want(s) && d.fs.exists(s.path()))
            .map(|s| s.path().to_path_buf())
            .collect()
    };
    let dirs = present(|s| matches!(s, Step::ClearDir(_)));
    if !dirs.is_empty() {
        say!(
            d.out,
            "reset",
            "Deleting contents of directories kubeboot owns: {}",
            show(&dirs)
        );
    }
    let files = present(|s| matches!(s, Step::RemoveFile(_) | Step::RemoveRecord(_)));
    if !files.is_empty() {
        say!(d.out, "reset", "Deleting files: {}", show(&files));
    }
    let created = present(|s| matches!(s, Step::RemoveDirIfEmpty(_)));
    if !created.is_empty() {
        say!(
            d.out,
            "reset",
            "Deleting the directories kubeboot created, where empty: {}",
            show(&created)
        );
    }
}

/// Performs the steps in order (act). Returns the mount points found inside cleared
/// directories and left as they are; with any, the record stays, so that a later reset
/// finishes the job.
///
/// # Errors
/// The first step that fails; the steps before it are done, and running reset again
/// continues from there.
pub fn execute(fs: &Fs, layout: &Layout, steps: &[Step]) -> anyhow::Result<Vec<PathBuf>> {
    let mut kept = Vec::new();
    for step in steps {
        match step {
            Step::RemoveFile(p) => {
                fs.remove_file(p)?;
                fs.remove_leftover_temps(p)?;
            }
            Step::ClearDir(p) => kept.extend(fs.clear_dir(layout, p)?.kept_mounts),
            Step::RemoveDirIfEmpty(p) => {
                fs.remove_dir_if_empty(layout, p)?;
            }
            Step::RemoveRecord(p) if kept.is_empty() => {
                fs.remove_file(p)?;
                fs.remove_leftover_temps(p)?;
            }
            Step::RemoveRecord(_) => {}
        }
    }
    Ok(kept)
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
