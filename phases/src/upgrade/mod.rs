//! `kubeboot upgrade` (kubeadm: app/cmd/upgrade/, app/phases/upgrade/): `upgrade plan` and
//! `upgrade diff`, and `upgrade apply` / `upgrade node`, which execute the same
//! [`plan::Plan`].
//!
//! Modules:
//! - [`observe`]: what the cluster and the node run now and what the binaries on disk offer
//!   (reads only).
//! - [`plan`]: the pure decision: target versions, blockers, the etcd step; kubeadm's table.
//! - [`rollback`]: what an upgrade can undo and its point of no return, pure.
//! - [`diff`]: the static Pod manifest changes of an upgrade, as unified diffs, pure.
//! - [`apply`]: `upgrade apply` and `upgrade node`: the steps in order, each health-gated
//!   ([`gate`]), resumable through the [`journal`]; [`drain`] for `--drain`. Its parts:
//!   `backup` (the backups and the journal's first write), `agent_restart`, `renewal`
//!   (certificates per component), `wants` (what the gate waits for), `etcd_data` (snapshot,
//!   data copy and restore), `undo` (the rollback itself) and `finish` (kubelet
//!   configuration, kubeadm-config, addons).
//! - [`resume`]: what a run repairs of one killed inside a write (the agent left stopped, a
//!   torn certificate pair, temporary files, an incomplete backup directory).

mod agent_restart;
pub mod apply;
mod backup;
pub mod diff;
pub mod drain;
mod etcd_data;
mod finish;
pub mod gate;
pub mod journal;
pub mod observe;
pub mod plan;
mod renewal;
pub mod resume;
pub mod rollback;
mod undo;
mod wants;

use std::path::PathBuf;
use std::time::SystemTime;

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, Version, names};

use crate::out::Out;
use crate::say;
use plan::{BinaryOnDisk, Observed, Plan, Request};

/// What `upgrade plan` and `upgrade diff` work from, built by the command.
pub struct Inputs {
    /// Where the node's files live.
    pub layout: Layout,
    /// How they are read.
    pub fs: Fs,
    /// The kubeconfig to talk to the cluster with (admin.conf).
    pub kubeconfig: PathBuf,
    /// `--config`: a kubeadm configuration file whose ClusterConfiguration replaces the
    /// cluster's.
    pub config: Option<PathBuf>,
    /// `--bin-dir`s as given.
    pub bin_dirs: Vec<PathBuf>,
    /// What the user asked.
    pub request: Request,
    /// The clock certificates are checked against.
    pub now: SystemTime,
}

/// Where the binaries of the version to upgrade to are looked up: only the `--bin-dir`s when
/// given (the new version comes from there; a same-named binary elsewhere is not it), else
/// the directories `init` or `join` ran with (the node record) and the defaults. etcd is also
/// looked up in the defaults after them: the distribution's etcd serves every version.
///
/// # Errors
/// A `--bin-dir` cannot be resolved, or the node record cannot be read.
pub fn search_dirs(
    given: &[PathBuf],
    fs: &Fs,
    layout: &Layout,
) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let kube = if given.is_empty() {
        let recorded = crate::node_record::read(fs, layout)?
            .map(|r| r.bin_dirs)
            .unwrap_or_default();
        crate::host::bin_dirs(&recorded)?
    } else {
        crate::host::canonical_bin_dirs(given)?
    };
    let mut etcd = kube.clone();
    for d in crate::host::default_bin_dirs() {
        if !etcd.contains(&d) {
            etcd.push(d);
        }
    }
    Ok((kube, etcd))
}

/// The `--config` file's ClusterConfiguration, if one was given.
fn config_override(inputs: &Inputs) -> anyhow::Result<Option<components::config::ClusterConfig>> {
    let Some(path) = &inputs.config else {
        return Ok(None);
    };
    let text = inputs
        .fs
        .read_string_if_exists(path)?
        .with_context(|| format!("--config {:?} does not exist", path.display().to_string()))?;
    observe::cluster_config_from_file(path, &text).map(Some)
}

/// Observes the cluster and the node, says what it found in kubeadm's `[upgrade/versions]`
/// lines, and decides the plan.
///
/// # Errors
/// The cluster cannot be read (no admin.conf, no kubeadm-config, no API server answering).
pub fn plan(inputs: &Inputs, out: &Out) -> anyhow::Result<(observe::ClusterView, Observed, Plan)> {
    plan_with(inputs, inputs.request.clone(), false, out)
}

/// [`plan`] with `request` instead of the inputs' own; with `follow_cluster` the version is
/// the one kubeadm-config names (`upgrade node`: the version `upgrade apply` uploaded).
///
/// # Errors
/// As [`plan`].
pub fn plan_with(
    inputs: &Inputs,
    request: Request,
    follow_cluster: bool,
    out: &Out,
) -> anyhow::Result<(observe::ClusterView, Observed, Plan)> {
    say!(
        out,
        "upgrade/config",
        "Reading the cluster's configuration from kube-system/kubeadm-config"
    );
    let cfg = config_override(inputs)?;
    let api = crate::cluster::Cluster::from_kubeconfig(&inputs.kubeconfig)?;
    let view = observe::cluster_view(api, cfg)?;
    let (kube_dirs, etcd_dirs) = search_dirs(&inputs.bin_dirs, &inputs.fs, &inputs.layout)?;
    say!(
        out,
        "upgrade",
        "Fetching the versions the cluster runs and the binaries on disk offer"
    );
    let observed = observe::observe(
        &view,
        &inputs.layout,
        &inputs.fs,
        (&kube_dirs, &etcd_dirs),
        inputs.now,
    );
    let request = Request {
        version: if follow_cluster {
            Some(view.cluster.kubernetes_version.clone())
        } else {
            request.version.clone().or_else(|| {
                inputs
                    .config
                    .as_ref()
                    .map(|_| view.cluster.kubernetes_version.clone())
            })
        },
        ..request
    };
    let plan = plan::decide(&observed, &request)?;
    say_observed(out, &plan, &observed);
    Ok((view, observed, plan))
}

fn say_observed(out: &Out, plan: &Plan, o: &Observed) {
    say!(
        out,
        "upgrade/versions",
        "Cluster version: {}",
        plan.cluster_version
    );
    for a in &o.api_servers {
        let v = a
            .version
            .as_ref()
            .map_or_else(|e| format!("unknown ({e})"), Version::to_string);
        say!(
            out,
            "upgrade/versions",
            "kube-apiserver on {} ({}): {v}",
            a.node,
            a.endpoint
        );
    }
    match &o.kubelets {
        Ok(k) => {
            let list: Vec<String> = k.iter().map(|(v, n)| format!("{n} x {v}")).collect();
            say!(out, "upgrade/versions", "kubelets: {}", list.join(", "));
        }
        Err(e) => say!(out, "upgrade/versions", "kubelets: unknown ({e})"),
    }
    for m in o.etcd.iter().flatten() {
        let v = m
            .server
            .as_ref()
            .map_or_else(|e| format!("unknown ({e})"), Version::to_string);
        say!(
            out,
            "upgrade/versions",
            "etcd member {:?} ({}): {v}{}",
            m.name,
            m.endpoint,
            m.cluster
                .as_ref()
                .map_or(String::new(), |c| format!(" (cluster version {c})"))
        );
    }
    let found: Vec<String> = o
        .binaries
        .iter()
        .map(|(name, b)| match b {
            BinaryOnDisk::Found { version, .. } => format!("{name} {version}"),
            BinaryOnDisk::Missing => format!("{name} missing"),
            BinaryOnDisk::Unusable { .. } => format!("{name} unusable"),
        })
        .collect();
    say!(
        out,
        "upgrade/versions",
        "Binaries in {}: {}",
        o.bin_dirs.join(", "),
        found.join(", ")
    );
}

/// The blockers that make `upgrade plan <version>` or `upgrade diff` fail: every one when a
/// version was asked for; the binary ones when `--bin-dir` was given.
pub fn refusal(plan: &Plan, asked_version: bool, gave_bin_dir: bool) -> Option<String> {
    let binary = |k: &str| {
        matches!(
            k,
            "missing-binaries"
                | "binary-version-mismatch"
                | "unusable-binary"
                | "no-binaries"
                | "etcd"
        )
    };
    let refused: Vec<String> = plan
        .blockers
        .iter()
        .filter(|b| asked_version || (gave_bin_dir && binary(&b.kind)))
        .map(|b| format!("{}; {}", b.message, b.fix))
        .collect();
    (!refused.is_empty()).then(|| {
        let what = plan.target.as_ref().map_or_else(
            || "the upgrade".to_string(),
            |t| format!("the upgrade to {t}"),
        );
        format!("{what} cannot be applied: {}", refused.join("; "))
    })
}

/// `upgrade diff`: the unified diff of every static Pod manifest the upgrade would change.
///
/// # Errors
/// The cluster or a manifest cannot be read, no version to diff against, or a blocker that
/// leaves no valid target (missing or mismatched binaries, a mandatory policy violation).
pub fn diff(inputs: &Inputs, context: usize, out: &Out) -> anyhow::Result<String> {
    let (view, _observed, plan) = plan(inputs, out)?;
    let target = plan
        .target
        .clone()
        .context("no version to diff against: give one ([version]) or pass --bin-dir <dir with the new binaries>")?;
    let blocking: Vec<&plan::Blocker> = plan
        .blockers
        .iter()
        .filter(|b| b.severity == components::upgrade::Severity::Mandatory)
        .collect();
    if !blocking.is_empty() {
        let list: Vec<String> = blocking
            .iter()
            .map(|b| format!("{}; {}", b.message, b.fix))
            .collect();
        anyhow::bail!(
            "the upgrade to {target} cannot be applied: {}",
            list.join("; ")
        );
    }
    let read = |name: &str| -> anyhow::Result<(String, String)> {
        let path = inputs.layout.manifest(name);
        let shown = path.display().to_string();
        let text = inputs.fs.read_string_if_exists(&path)?.with_context(|| {
            format!("the {name} manifest {shown:?} does not exist: this is not a control-plane node set up by kubeboot init or join")
        })?;
        Ok((shown, text))
    };
    let (api_path, api_text) = read(names::KUBE_APISERVER)?;
    let endpoint = diff::local_endpoint(&api_path, &api_text)?;
    let cfg = diff::target_config(&view.cluster, endpoint, &target);
    let host = crate::host::host_paths(&inputs.layout);
    let mut text = String::new();
    for (name, new) in diff::control_plane_manifests(&cfg, &inputs.layout, &host) {
        let (path, old) = read(name)?;
        text.push_str(&diff::unified(&path, &old, &new, context));
    }
    if let Some(etcd) = &plan.etcd {
        let path = inputs.layout.manifest(names::ETCD);
        if let Some(old) = inputs.fs.read_string_if_exists(&path)? {
            let shown = path.display().to_string();
            let new = diff::etcd_manifest(&cfg, &shown, &old, &etcd.image_tag)?;
            text.push_str(&diff::unified(&shown, &old, &new, context));
        }
    }
    Ok(text)
}
