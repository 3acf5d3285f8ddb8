//! `upgrade apply` (the first control-plane node) and `upgrade node` (the other control-plane
//! nodes, then the workers): kubeadm's flow (app/cmd/upgrade/apply.go, node.go,
//! app/phases/upgrade/staticpods.go), health-gated per component and rolled back as a whole.
//!
//! Order on a control-plane node: health check, journal and backups under
//! `/etc/kubernetes/tmp/kubeboot-backup-<stamp>` (manifests, kubelet files, the cluster objects
//! `apply` changes, an etcd snapshot), the agent restarted on the new `--bin-dir`s (its pods
//! keep running: it adopts them), then etcd within its minor, kube-apiserver,
//! kube-controller-manager, kube-scheduler, each waited for ([`super::gate`]); etcd moving to a
//! new minor goes last (see below); then the kubelet's configuration and the node's own static
//! pods (the kubelet, kube-proxy under the agent), then (`apply`) kubeadm-config and the
//! kubelet ConfigMap, and the addons once every API server runs the new version.
//!
//! Any component that does not become healthy in time rolls the node back: every file from
//! the backup (in reverse order), etcd's data from its copy when it moved to a new minor on a
//! single member, the cluster objects, and the old components are waited for; the error names
//! the component, its exit code and its last log lines.
//!
//! etcd to a new minor goes last, after the other components are healthy: the new
//! kube-apiserver supports the old etcd (kubeadm itself runs that pair with
//! `--etcd-upgrade=false`), so every step before it can be undone without touching etcd's
//! data, and the etcd step is the only one that can pass the point of no return
//! ([`super::rollback`]). On a single member its data is copied with etcd stopped; if the new
//! etcd does not become healthy, the copy comes back: the new etcd acknowledged nothing.
//!
//! A crash or `kill -9` at any point leaves the journal ([`super::journal`]): the same command
//! again resumes with the first run's backups (steps already done are found done: the file on
//! disk is the new one and the component is healthy), or finishes a rollback it interrupted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::host::fs::Fs;
use anyhow::Context;
use components::upgrade::{EtcdStep, Severity};
use components::{Layout, StaticPodRunner, Version, catalogue, names};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};

use super::gate::{self, Want};
use super::journal::{self, Journal};
use super::{Inputs, diff, plan::Plan};
use crate::cluster::Cluster;
use crate::out::Out;
use crate::say;

/// Which command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `upgrade apply <version>`: the first control-plane node; uploads the configuration.
    Apply,
    /// `upgrade node`: any other node, to the version kubeadm-config names.
    Node,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Apply => "apply",
            Command::Node => "node",
        }
    }
}

/// What the user asked for.
pub struct Request {
    /// Where and how to read the cluster and the node.
    pub inputs: Inputs,
    /// `apply` or `node`.
    pub command: Command,
    /// `--dry-run`: say what would change, change nothing.
    pub dry_run: bool,
    /// `--etcd-upgrade` (default true).
    pub etcd_upgrade: bool,
    /// `--certificate-renewal` (default true).
    pub certificate_renewal: bool,
    /// `--force` / `-f` (`upgrade apply`): skippable blockers do not refuse.
    pub force: bool,
    /// `--drain` (`upgrade node`): cordon and drain the node around the upgrade.
    pub drain: bool,
    /// How long each component may take to become healthy.
    pub timeout: Duration,
    /// The kubeboot executable (the agent is restarted from it).
    pub exe: PathBuf,
}

/// One static pod the upgrade changes.
#[derive(Debug, Clone)]
struct Step {
    component: &'static str,
    manifest: PathBuf,
    new_yaml: String,
    image: String,
    /// Run by the agent (else by the kubelet).
    agent: bool,
    /// The etcd step that moves one member to a new minor (its data is copied first).
    etcd_minor_single: bool,
    /// The etcd step moves to a new minor (any number of members).
    etcd_minor: bool,
}

/// The certificates kubeadm renews with each component (renewCertsByComponent).
pub fn certificates_of(component: &str) -> &'static [&'static str] {
    match component {
        names::ETCD => &["etcd-server", "etcd-peer", "etcd-healthcheck-client"],
        names::KUBE_APISERVER => &[
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
        ],
        names::KUBE_CONTROLLER_MANAGER => &["controller-manager.conf"],
        names::KUBE_SCHEDULER => &["scheduler.conf"],
        _ => &[],
    }
}

/// `pod_yaml` with every container's image tag set to `tag` (the node's own static pods:
/// the kubelet, kube-proxy), the repositories kept.
///
/// # Errors
/// The manifest is not a Pod, or an image cannot be parsed.
pub fn retag(path: &str, pod_yaml: &str, tag: &str) -> anyhow::Result<String> {
    let mut pod: Pod = manifests::yaml::from_yaml(pod_yaml)
        .with_context(|| format!("{path:?} is not a static Pod manifest"))?;
    for c in pod.spec.iter_mut().flat_map(|s| s.containers.iter_mut()) {
        let Some(image) = &c.image else { continue };
        c.image = Some(with_tag(components::image::ImageRef::parse(image)?, tag));
    }
    Ok(manifests::yaml::to_yaml(&pod))
}

/// `image` at `tag`, its registry and repository kept (a digest no longer applies).
fn with_tag(image: components::image::ImageRef, tag: &str) -> String {
    components::image::ImageRef {
        tag: Some(tag.to_string()),
        digest: None,
        ..image
    }
    .to_string()
}

fn first_image(yaml: &str) -> Option<String> {
    let pod: Pod = manifests::yaml::from_yaml(yaml).ok()?;
    pod.spec?.containers.first()?.image.clone()
}

fn health_url(yaml: &str, component: &str) -> Option<String> {
    let pod: Pod = manifests::yaml::from_yaml(yaml).ok()?;
    crate::health::targets(&[(component.to_string(), pod)])
        .into_iter()
        .next()
        .map(|t| t.url)
}

/// A backup directory name for `now`: kubeboot-backup-2026-12-03-16-30-05.
pub fn backup_dir_name(now: std::time::SystemTime) -> String {
    let stamp = agent::logs::rfc3339(now);
    let stamp: String = stamp
        .chars()
        .take(19)
        .map(|c| if c.is_ascii_digit() { c } else { '-' })
        .collect();
    format!("kubeboot-backup-{stamp}")
}

/// The facts of this node the upgrade works from.
struct NodeFacts {
    name: String,
    runner: StaticPodRunner,
    control_plane: bool,
    agent_args: Option<Vec<String>>,
}

fn node_facts(layout: &Layout) -> anyhow::Result<NodeFacts> {
    let status = agent::status::query(&layout.agent_socket(), Duration::from_secs(3)).context(
        "the kubeboot agent of this node does not answer: start it (kubeboot init phase agent-start, or its systemd unit) and run the upgrade again",
    )?;
    let name = status.node_name.clone().context(
        "the kubeboot agent does not know this node's name: it was not started by kubeboot init or join",
    )?;
    Ok(NodeFacts {
        name,
        runner: crate::host::node_static_pod_runner(layout).unwrap_or_default(),
        control_plane: layout.manifest(names::KUBE_APISERVER).exists(),
        agent_args: running_agent_args(layout),
    })
}

/// The agent's arguments with its `--bin-dir`s replaced by `dirs`.
pub fn with_bin_dirs(args: &[String], dirs: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--bin-dir" {
            skip = true;
            continue;
        }
        if a.starts_with("--bin-dir=") {
            continue;
        }
        out.push(a.clone());
    }
    for d in dirs {
        out.push("--bin-dir".into());
        out.push(d.display().to_string());
    }
    out
}

/// The `--bin-dir`s an agent command line names, in order.
pub fn bin_dirs_of(args: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--bin-dir" {
            if let Some(v) = it.next() {
                out.push(PathBuf::from(v));
            }
        } else if let Some(v) = a.strip_prefix("--bin-dir=") {
            out.push(PathBuf::from(v));
        }
    }
    out
}

/// The new directories first, then the old ones not among them.
pub fn merged_bin_dirs(new: &[PathBuf], old: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = new.to_vec();
    for d in old {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// Runs the upgrade. `confirm` asks the user (kubeadm's `[upgrade/confirm]`); it is not
/// called for `--dry-run`.
///
/// # Errors
/// A blocker (nothing changed), a step that failed (rolled back: the error says what failed
/// and that the node is back on the old version), or a rollback that failed too (the error
/// says what to restore by hand, and the same command finishes it).
pub fn run(
    req: &Request,
    out: &Out,
    confirm: &dyn Fn(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let fs = &req.inputs.fs;
    let existing = journal::read(fs, layout)?;
    if !req.dry_run {
        super::resume::remove_leftovers(fs, layout, out, existing.as_ref())?;
        if let Some(j) = &existing {
            super::resume::start_stopped_agent(req, out, j)?;
            super::resume::repair_torn_pairs(fs, out, j)?;
        }
    }
    if let Some(j) = &existing
        && j.rolling_back
        && !req.dry_run
    {
        say!(
            out,
            "upgrade/rollback",
            "Finishing the rollback of the upgrade to {} that was interrupted",
            j.target
        );
        let facts = node_facts(layout)?;
        rollback(req, out, j, &facts, "an interrupted rollback")?;
        anyhow::bail!(
            "the interrupted upgrade to {} was rolled back: the node runs its previous version; run the upgrade again to upgrade it",
            j.target
        );
    }

    // Observe and decide.
    let mut inputs_request = req.inputs.request.clone();
    if req.command == Command::Node {
        // `upgrade node` follows the version `upgrade apply` uploaded.
        inputs_request.allow_experimental = true;
        inputs_request.allow_release_candidate = true;
    }
    let facts = node_facts(layout)?;
    if let Some(j) = &existing
        && !req.dry_run
    {
        restore_removed(req, out, j, &facts)?;
    }
    let mut planned = super::plan_with(
        &req.inputs,
        inputs_request.clone(),
        req.command == Command::Node,
        out,
    );
    // An interrupted upgrade may have left a component restarting (the API server the first
    // run was waiting for): give the cluster the component timeout to answer before rolling
    // back.
    if planned.is_err() && existing.is_some() && !req.dry_run {
        let start = std::time::Instant::now();
        say!(
            out,
            "upgrade",
            "The cluster does not answer yet; waiting up to {} for it (an interrupted upgrade may have left a component restarting)",
            crate::health::human(req.timeout)
        );
        while planned.is_err() && start.elapsed() < req.timeout {
            std::thread::sleep(Duration::from_secs(2));
            planned = super::plan_with(
                &req.inputs,
                inputs_request.clone(),
                req.command == Command::Node,
                &Out::capture(),
            );
        }
    }
    let (view, _observed, plan) = match (planned, &existing) {
        (Ok(p), _) => p,
        // An interrupted upgrade whose cluster does not answer cannot go on: back to the
        // backups, which answered before.
        (Err(e), Some(j)) if !req.dry_run => {
            say!(
                out,
                "upgrade",
                "The cluster cannot be read ({e:#}): rolling back the interrupted upgrade to {}",
                j.target
            );
            rollback(req, out, j, &facts, "reading the cluster")?;
            anyhow::bail!(
                "the interrupted upgrade to {} was rolled back because the cluster did not answer ({e:#}): the node runs its previous version; run the upgrade again",
                j.target
            );
        }
        (Err(e), _) => return Err(e),
    };
    let target = plan
        .target
        .clone()
        .context("no version to upgrade to: give one (kubeboot upgrade apply v1.20.3) or pass --bin-dir <dir with the new binaries>")?;
    // `upgrade node` follows the version apply uploaded: its policy was checked there.
    refuse_blockers(&plan, &target, req.force || req.command == Command::Node)?;
    if let Some(j) = &existing {
        journal::resumable(j, req.command.as_str(), &target.to_string())
            .map_err(anyhow::Error::msg)?;
        say!(
            out,
            "upgrade",
            "Resuming the upgrade to {target} with the backups in {:?}",
            j.backup_dir.display().to_string()
        );
    }
    say!(
        out,
        "upgrade/version",
        "You have chosen to change the cluster version to {:?}",
        target.to_string()
    );
    let steps = plan_steps(req, &view, &plan, &target, &facts)?;

    if req.dry_run {
        return dry_run(out, &steps, &target, &facts);
    }
    if existing.is_none() && !confirm("Are you sure you want to proceed with the upgrade?")? {
        anyhow::bail!("aborted the upgrade: nothing was changed");
    }

    // Act.
    let mut j = match existing {
        Some(j) => j,
        None => begin(req, out, &view, &steps, &facts, &target)?,
    };
    if req.drain {
        crate::upgrade::drain::cordon_and_drain(&view.api, &facts.name, req.timeout, out)?;
    }
    restart_agent(req, out, &facts, &mut j)?;
    if let Some(etcd_plan) = &plan.etcd
        && req.etcd_upgrade
        && facts.control_plane
        && steps.iter().any(|s| s.component == names::ETCD)
    {
        snapshot(req, out, &j, &etcd_plan.current)?;
    }
    let (own, control_plane): (Vec<&Step>, Vec<&Step>) = steps
        .iter()
        .partition(|s| s.component == names::KUBELET || s.component == names::KUBE_PROXY);
    for (i, step) in control_plane.iter().chain(own.iter()).enumerate() {
        if i == control_plane.len() {
            // The control plane is done: the kubelet's configuration before the kubelet.
            let between = || -> anyhow::Result<()> {
                if facts.control_plane && req.certificate_renewal {
                    renew(req, out, &view, &["admin.conf"])?;
                }
                kubelet_config(req, out, &view, &target, &facts)
            };
            between().context(format!(
                "the control plane runs {target}, but the kubelet's configuration could not be written; run the same command again to finish the upgrade"
            ))?;
        }
        if let Err(failure) = apply_step(req, out, &view, &mut j, step, &facts) {
            say!(
                out,
                "upgrade/apply",
                "{} did not become healthy: rolling back",
                failure.component
            );
            return rollback(req, out, &j, &facts, &failure.component).and_then(|()| {
                Err(anyhow::anyhow!(
                    "the upgrade to {target} failed and was rolled back: {failure}\nThe node runs its previous version again; the backups stay in {:?}",
                    j.backup_dir.display().to_string()
                ))
            });
        }
    }
    let finish = || -> anyhow::Result<()> {
        if own.is_empty() {
            kubelet_config(req, out, &view, &target, &facts)?;
        }
        if req.command == Command::Apply {
            upload_config(req, out, &view, &target, &facts)?;
        }
        if facts.control_plane {
            addons(req, out, &view, &target)?;
        }
        if req.drain {
            crate::upgrade::drain::uncordon(&view.api, &facts.name, out)?;
        }
        journal::remove(fs, layout)
    };
    finish().context(format!(
        "this node's components run {target}, but the upgrade's last steps failed; run the same command again to finish them"
    ))?;
    say!(
        out,
        "upgrade/successful",
        "SUCCESS! This node was upgraded to {:?}. Enjoy!",
        target.to_string()
    );
    if req.command == Command::Apply {
        say!(
            out,
            "upgrade/kubelet",
            "Now that your control plane is upgraded, run \"kubeboot upgrade node\" on the other nodes (control-plane nodes first, then workers); the cluster's addons move to {target} once every API server runs it."
        );
    }
    Ok(())
}

/// kubeadm's rule: mandatory blockers always refuse; skippable ones (a pre-release without
/// its flag, a version skew a pre-release may take, the kubelet rules) unless `--force`.
fn refuse_blockers(plan: &Plan, target: &Version, force: bool) -> anyhow::Result<()> {
    let blocking: Vec<String> = plan
        .blockers
        .iter()
        .filter(|b| b.severity == Severity::Mandatory || !force)
        .map(|b| format!("{}; {}", b.message, b.fix))
        .collect();
    if blocking.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the upgrade to {target} cannot be applied: {}; nothing was changed",
        blocking.join("; ")
    )
}

/// The static pods to change, in order, with their new manifests.
fn plan_steps(
    req: &Request,
    view: &super::observe::ClusterView,
    plan: &Plan,
    target: &Version,
    facts: &NodeFacts,
) -> anyhow::Result<Vec<Step>> {
    let layout = &req.inputs.layout;
    let fs = &req.inputs.fs;
    let read = |path: &Path| -> anyhow::Result<Option<String>> { fs.read_string_if_exists(path) };
    let agent_cp = facts.runner == StaticPodRunner::Agent;
    let mut steps = Vec::new();
    let mut etcd_last = None;
    if facts.control_plane {
        let api_path = layout.manifest(names::KUBE_APISERVER);
        let shown = api_path.display().to_string();
        let api_text = read(&api_path)?.with_context(|| format!("{shown:?} is missing"))?;
        let endpoint = diff::local_endpoint(&shown, &api_text)?;
        let mut cfg = diff::target_config(&view.cluster, endpoint, target);
        cfg.node.name = facts.name.clone();
        let host = crate::host::host_paths(layout);
        if let Some(e) = &plan.etcd
            && req.etcd_upgrade
            && let Some(old) = read(&layout.manifest(names::ETCD))?
        {
            let step_kind = e
                .step
                .context("the etcd step is not allowed (see the plan's blockers)")?;
            let manifest = layout.manifest(names::ETCD);
            let new_yaml =
                diff::etcd_manifest(&cfg, &manifest.display().to_string(), &old, &e.image_tag)?;
            let step = Step {
                component: names::ETCD,
                image: first_image(&new_yaml).unwrap_or_default(),
                manifest,
                new_yaml,
                agent: agent_cp,
                etcd_minor_single: step_kind == EtcdStep::Minor && e.members == 1,
                etcd_minor: step_kind == EtcdStep::Minor,
            };
            if step_kind == EtcdStep::Minor {
                etcd_last = Some(step);
            } else {
                steps.push(step);
            }
        }
        for (name, yaml) in diff::control_plane_manifests(&cfg, layout, &host) {
            steps.push(Step {
                component: name,
                manifest: layout.manifest(name),
                image: first_image(&yaml).unwrap_or_default(),
                new_yaml: yaml,
                agent: agent_cp,
                etcd_minor_single: false,
                etcd_minor: false,
            });
        }
        steps.extend(etcd_last);
    }
    // The node's own static pods, run by the agent under either runner.
    let tag = catalogue::kubernetes_image_tag(target);
    let kubelet_dir = match facts.runner {
        StaticPodRunner::Agent => layout.manifests_dir(),
        StaticPodRunner::Kubelet => layout.agent_manifests_dir(),
    };
    let mut own = vec![(
        names::KUBELET,
        kubelet_dir.join(format!("{}.yaml", names::KUBELET)),
    )];
    if facts.runner == StaticPodRunner::Agent {
        own.push((names::KUBE_PROXY, layout.manifest(names::KUBE_PROXY)));
    }
    for (component, manifest) in own {
        let Some(old) = read(&manifest)? else {
            continue;
        };
        let new_yaml = retag(&manifest.display().to_string(), &old, &tag)?;
        steps.push(Step {
            component,
            image: first_image(&new_yaml).unwrap_or_default(),
            manifest,
            new_yaml,
            agent: true,
            etcd_minor_single: false,
            etcd_minor: false,
        });
    }
    Ok(steps)
}

fn dry_run(out: &Out, steps: &[Step], target: &Version, facts: &NodeFacts) -> anyhow::Result<()> {
    say!(
        out,
        "dryrun",
        "Would back up the static Pod manifests, the kubelet's files and an etcd snapshot to /etc/kubernetes/tmp/kubeboot-backup-<time>"
    );
    if facts.runner == StaticPodRunner::Agent || !steps.is_empty() {
        say!(
            out,
            "dryrun",
            "Would restart the kubeboot agent with the new --bin-dirs first (its pods keep running)"
        );
    }
    for s in steps {
        let old = std::fs::read_to_string(&s.manifest).unwrap_or_default();
        if old == s.new_yaml {
            say!(out, "dryrun", "{} is at {target} already", s.component);
            continue;
        }
        say!(
            out,
            "dryrun",
            "Would write {:?} ({}) and wait for it to become healthy",
            s.manifest.display().to_string(),
            s.image
        );
        out.line(&diff::unified(
            &s.manifest.display().to_string(),
            &old,
            &s.new_yaml,
            3,
        ));
    }
    say!(
        out,
        "dryrun",
        "Finished dry-running the upgrade to {target}: nothing was changed"
    );
    Ok(())
}

/// On a resumed upgrade: a manifest the first run removed (etcd, stopped to copy its data)
/// comes back from the backup, and the component is waited for, so the cluster answers
/// again before the upgrade goes on.
fn restore_removed(req: &Request, out: &Out, j: &Journal, facts: &NodeFacts) -> anyhow::Result<()> {
    let fs = &req.inputs.fs;
    let layout = &req.inputs.layout;
    for (path, copy) in &j.files {
        let Some(copy) = copy else { continue };
        if fs.exists(path) {
            continue;
        }
        let old = fs
            .read_if_exists(copy)?
            .with_context(|| format!("the backup {:?} is missing", copy.display().to_string()))?;
        put_back(fs, layout, path, &old)?;
        say!(
            out,
            "upgrade",
            "Put back {:?}, which the interrupted run had removed",
            path.display().to_string()
        );
        if let Some(w) = rollback_want(path, &String::from_utf8_lossy(&old), facts, layout) {
            gate::wait(
                &w,
                layout,
                req.timeout,
                &version_checker(req, facts),
                |_, _| {},
            )
            .map_err(|f| anyhow::anyhow!("{f}"))?;
        }
    }
    Ok(())
}

/// Backs up every file the steps change, the certificate pairs they renew and the cluster
/// objects, then writes the journal. The backups go to a hidden `.<name>.partial` directory
/// renamed to its final name once complete: a run killed half-way leaves no backup directory
/// that looks whole, and the next run removes the partial one ([`super::resume`]).
fn begin(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    steps: &[Step],
    facts: &NodeFacts,
    target: &Version,
) -> anyhow::Result<Journal> {
    let layout = &req.inputs.layout;
    let fs = &req.inputs.fs;
    let name = backup_dir_name(req.inputs.now);
    let backup_dir = layout.tmp_dir().join(&name);
    let partial = layout.tmp_dir().join(super::resume::partial_name(&name));
    fs.ensure_dir(&layout.tmp_dir(), 0o700)?;
    super::resume::remove_partial_backups(fs, layout, out)?;
    fs.create_dir(&partial, 0o700).with_context(|| {
        format!(
            "could not create the backup directory {:?}",
            partial.display().to_string()
        )
    })?;
    // Written into `partial`, recorded under the final name.
    let backup = |file: String, bytes: &[u8]| -> anyhow::Result<PathBuf> {
        fs.write_private(&partial.join(&file), bytes)?;
        Ok(backup_dir.join(file))
    };
    let kubelet_config = layout.kubelet_dir().join(names::KUBELET_CONFIG_FILE);
    let mut paths: Vec<PathBuf> = steps.iter().map(|s| s.manifest.clone()).collect();
    paths.push(kubelet_config);
    let mut files = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let copy = match fs.read_if_exists(p)? {
            Some(bytes) => {
                let name = p
                    .file_name()
                    .map_or_else(|| format!("file-{i}"), |n| n.to_string_lossy().into_owned());
                Some(backup(format!("{i:02}-{name}"), &bytes)?)
            }
            None => None,
        };
        files.push((p.clone(), copy));
    }
    let mut key_pairs = Vec::new();
    if req.certificate_renewal && facts.control_plane {
        let names_: Vec<&str> = steps
            .iter()
            .flat_map(|s| certificates_of(s.component))
            .copied()
            .collect();
        for (i, (cert, key)) in renewed_files(req, view, &names_).into_iter().enumerate() {
            let Some(key) = key else { continue };
            let (Some(c), Some(k)) = (fs.read_if_exists(&cert)?, fs.read_if_exists(&key)?) else {
                continue;
            };
            let base = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
            let cert_copy = backup(
                format!("pki-{i:02}-{}", base(&cert).unwrap_or_default()),
                &c,
            )?;
            let key_copy = backup(format!("pki-{i:02}-{}", base(&key).unwrap_or_default()), &k)?;
            key_pairs.push(journal::KeyPair {
                cert,
                cert_copy,
                key,
                key_copy,
            });
        }
    }
    let mut objects = Vec::new();
    if req.command == Command::Apply {
        let mut save = |key: String, value: Option<serde_json::Value>| -> anyhow::Result<()> {
            let text = serde_json::to_string_pretty(&value.unwrap_or(serde_json::Value::Null))?;
            let file = backup(
                format!("object-{}.json", key.replace('/', "_")),
                text.as_bytes(),
            )?;
            objects.push((key, file));
            Ok(())
        };
        let api = &view.api;
        let cm = |name: &str| -> anyhow::Result<Option<serde_json::Value>> {
            Ok(api
                .get::<ConfigMap>(Some(names::KUBE_SYSTEM), name)?
                .map(serde_json::to_value)
                .transpose()?)
        };
        save(
            format!("ConfigMap/kube-system/{}", names::KUBEADM_CONFIG_CONFIGMAP),
            cm(names::KUBEADM_CONFIG_CONFIGMAP)?,
        )?;
        let kubelet_cm = manifests::cluster::kubelet_config::kubelet_config_map_name(target);
        save(
            format!("ConfigMap/kube-system/{kubelet_cm}"),
            cm(&kubelet_cm)?,
        )?;
        let ds = api
            .get::<DaemonSet>(Some(names::KUBE_SYSTEM), names::KUBE_PROXY)?
            .map(serde_json::to_value)
            .transpose()?;
        save(format!("DaemonSet/kube-system/{}", names::KUBE_PROXY), ds)?;
    }
    super::resume::commit_backup_dir(fs, &partial, &backup_dir)?;
    say!(
        out,
        "upgrade/staticpods",
        "Backed up the static Pod manifests and the kubelet configuration to {:?}",
        backup_dir.display().to_string()
    );
    let agent_args = facts.agent_args.as_deref().unwrap_or_default();
    let j = Journal {
        command: req.command.as_str().into(),
        target: target.to_string(),
        backup_dir,
        files,
        objects,
        etcd_data: None,
        etcd_committed: false,
        agent_bin_dirs: bin_dirs_of(agent_args),
        agent_args: agent_args.iter().skip(1).cloned().collect(),
        key_pairs,
        rolling_back: false,
    };
    journal::write(fs, layout, &j)?;
    Ok(j)
}

/// Restarts the agent from this kubeboot with the upgrade's `--bin-dir`s before the old ones
/// (each version's manifest then finds its binary), unless it runs so already. The agent's
/// pods keep running: the new agent adopts them.
fn restart_agent(
    req: &Request,
    out: &Out,
    facts: &NodeFacts,
    j: &mut Journal,
) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let Some(args) = &facts.agent_args else {
        return Ok(());
    };
    if req.inputs.bin_dirs.is_empty() {
        return Ok(());
    }
    let given = crate::host::canonical_bin_dirs(&req.inputs.bin_dirs)?;
    // An agent started without --bin-dir searches the defaults: they stay after the new ones.
    let mut current = bin_dirs_of(args);
    if current.is_empty() {
        current = crate::host::default_bin_dirs();
    }
    let dirs = merged_bin_dirs(&given, &current);
    if j.agent_bin_dirs.is_empty() {
        j.agent_bin_dirs = current;
        journal::write(&req.inputs.fs, layout, j)?;
    }
    restart_agent_with(req, out, &dirs)?;
    crate::node_record::update(
        &req.inputs.fs,
        layout,
        crate::node_record::NodeRecord {
            bin_dirs: dirs.clone(),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// The running agent's command line (executable first), if an agent runs.
fn running_agent_args(layout: &Layout) -> Option<Vec<String>> {
    let pid = agent::daemon::is_running(layout)?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Restarts the agent from this kubeboot with `dirs` as its `--bin-dir`s, unless it runs so
/// already. Its pods keep running: the new agent adopts them.
fn restart_agent_with(req: &Request, out: &Out, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let Some(args) = running_agent_args(layout) else {
        return Ok(());
    };
    let old_tail: Vec<String> = args.iter().skip(1).cloned().collect();
    let new_tail = with_bin_dirs(&old_tail, dirs);
    let running_exe = agent::daemon::is_running(layout)
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
    let exe = std::fs::canonicalize(&req.exe).unwrap_or_else(|_| req.exe.clone());
    if new_tail == old_tail && running_exe.as_deref() == Some(exe.as_path()) {
        return Ok(());
    }
    say!(
        out,
        "upgrade/agent",
        "Restarting the kubeboot agent from {} with --bin-dir {} (its pods keep running)",
        exe.display(),
        shown_dirs(dirs)
    );
    if crate::init::agent_start::systemd_is_init(layout) {
        let unit = agent::systemd_unit(&exe, &new_tail);
        req.inputs
            .fs
            .write_public(&layout.agent_systemd_unit(), unit.as_bytes())?;
        for cmd in [
            &["daemon-reload"][..],
            &["restart", "kubeboot-agent.service"][..],
        ] {
            let status = std::process::Command::new("systemctl").args(cmd).status()?;
            anyhow::ensure!(
                status.success(),
                "systemctl {} failed ({status})",
                cmd.join(" ")
            );
        }
    } else {
        agent::daemon::stop(layout, Duration::from_secs(30))?;
        agent::daemon::start_detached(&exe, &new_tail, layout)?;
    }
    Ok(())
}

/// `dirs` as the user reads them: `/a, /b`.
pub fn shown_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A consistent snapshot of etcd into the backup directory, before etcd changes.
fn snapshot(req: &Request, out: &Out, j: &Journal, current: &Version) -> anyhow::Result<()> {
    let file = j.backup_dir.join("etcd-snapshot.db");
    if file.exists() {
        return Ok(());
    }
    let Some(local) = crate::etcd_local::read(&req.inputs.fs, &req.inputs.layout)? else {
        return Ok(());
    };
    let client = local.client(&req.inputs.fs)?;
    let info = crate::etcd_snapshot::save(&client, &req.inputs.fs, &file, req.inputs.now)
        .context("could not take the etcd snapshot every upgrade takes before etcd changes; nothing was changed yet")?;
    say!(
        out,
        "upgrade/etcd",
        "Saved a snapshot of etcd {} ({} bytes, revision {}) to {:?}",
        current,
        info.size,
        info.revision,
        file.display().to_string()
    );
    Ok(())
}

/// What the certificate code works from on this node, for the upgrade's renewals.
fn certs_ctx(req: &Request, view: &super::observe::ClusterView) -> crate::certs::CertsCtx {
    crate::certs::CertsCtx {
        layout: req.inputs.layout.clone(),
        fs: req.inputs.fs.clone(),
        out: Out::capture(),
        cluster: view.cluster.clone(),
        cert_dir_flag: None,
        now: req.inputs.now,
    }
}

/// The renewal targets named `names_`, as the certificate code lists them.
fn renew_targets(
    view: &super::observe::ClusterView,
    names_: &[&str],
) -> Vec<pki::expiry::RenewTarget> {
    let local_etcd = matches!(view.cluster.etcd, components::config::Etcd::Local(_));
    pki::expiry::renew_targets(local_etcd)
        .into_iter()
        .filter(|t| names_.contains(&t.name))
        .collect()
}

/// The files of the certificates named `names_`: the certificate (or kubeconfig) and, for a
/// PKI pair, its key.
fn renewed_files(
    req: &Request,
    view: &super::observe::ClusterView,
    names_: &[&str],
) -> Vec<(PathBuf, Option<PathBuf>)> {
    let ctx = certs_ctx(req, view);
    renew_targets(view, names_)
        .iter()
        .map(|t| crate::certs::expiration::target_files(&ctx, t))
        .collect()
}

fn renew(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    names_: &[&str],
) -> anyhow::Result<()> {
    if names_.is_empty() {
        return Ok(());
    }
    let ctx = certs_ctx(req, view);
    let targets = renew_targets(view, names_);
    let done = crate::certs::renew::renew(&ctx, &targets, false, &req.inputs.fs)?;
    let renewed: Vec<&str> = done
        .iter()
        .filter(|(_, r)| *r == crate::certs::renew::Renewal::Renewed)
        .map(|(t, _)| t.name)
        .collect();
    if !renewed.is_empty() {
        say!(
            out,
            "upgrade/staticpods",
            "Renewed the certificates {}",
            renewed.join(", ")
        );
    }
    Ok(())
}

/// Writes one step's manifest (unless it is there already) and waits for the component.
fn apply_step(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    j: &mut Journal,
    s: &Step,
    facts: &NodeFacts,
) -> Result<(), gate::Failure> {
    let fail = |reason: String| gate::Failure {
        component: s.component.to_string(),
        reason,
        exit_code: None,
        log: vec![],
    };
    let layout = &req.inputs.layout;
    let fs = &req.inputs.fs;
    let on_disk = fs
        .read_string_if_exists(&s.manifest)
        .map_err(|e| fail(format!("{e:#}")))?;
    if on_disk.as_deref() != Some(s.new_yaml.as_str()) {
        say!(
            out,
            "upgrade/staticpods",
            "Preparing for {:?} upgrade",
            s.component
        );
        if s.etcd_minor_single {
            copy_etcd_data(req, out, j, s).map_err(|e| fail(format!("{e:#}")))?;
        }
        if req.certificate_renewal && facts.control_plane {
            renew(req, out, view, certificates_of(s.component))
                .map_err(|e| fail(format!("{e:#}")))?;
        }
        fs.write_private(&s.manifest, s.new_yaml.as_bytes())
            .map_err(|e| fail(format!("{e:#}")))?;
        say!(
            out,
            "upgrade/staticpods",
            "Moved new manifest to {:?} and backed up old manifest to {:?}",
            s.manifest.display().to_string(),
            j.backup_of(&s.manifest)
                .flatten()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        say!(
            out,
            "upgrade/staticpods",
            "Waiting for {} to restart the component (timeout {})",
            if s.agent {
                "the kubeboot agent"
            } else {
                "the kubelet"
            },
            crate::health::human(req.timeout)
        );
    }
    let want = want_of(s, facts);
    let version = version_checker(req, facts);
    gate::wait(&want, layout, req.timeout, &version, |what, elapsed| {
        say!(
            out,
            "upgrade/staticpods",
            "Still waiting for {} after {}: {what}",
            s.component,
            crate::health::human(elapsed)
        );
    })?;
    if s.component == names::ETCD && !j.etcd_committed && etcd_minor_moved(j, s, fs) {
        // The lowest minor the members answering run: once it is the new one, etcd raises
        // its cluster version and the old minor can no longer join. When it cannot be told,
        // etcd counts as past the point: a rollback that keeps etcd is always safe, one that
        // puts an old member into a raised cluster is not.
        let new_minor = minor_of(
            &want
                .version_url
                .as_ref()
                .map_or(String::new(), |(_, v)| v.clone()),
        );
        let lowest = version("etcd-cluster");
        if lowest.as_deref().map_or(true, |l| l == new_minor) {
            j.etcd_committed = true;
            journal::write(fs, layout, j).map_err(|e| fail(format!("{e:#}")))?;
            say!(
                out,
                "upgrade/etcd",
                "etcd runs the new minor on every member: past the point of no return, a later rollback leaves etcd as it is"
            );
        }
    }
    say!(
        out,
        "upgrade/staticpods",
        "Component {:?} upgraded successfully!",
        s.component
    );
    Ok(())
}

fn want_of(s: &Step, facts: &NodeFacts) -> Want {
    want_for(
        s.component,
        &s.manifest,
        &s.new_yaml,
        &s.image,
        s.agent,
        facts,
    )
}

/// What the gate waits for: the manifest's pod with `image`, its health URL, and the
/// version check that tells which binary answers.
fn want_for(
    component: &str,
    manifest: &Path,
    yaml: &str,
    image: &str,
    agent: bool,
    facts: &NodeFacts,
) -> Want {
    let tag = components::image::ImageRef::parse(image)
        .ok()
        .and_then(|r| r.tag)
        .unwrap_or_default();
    let health = health_url(yaml, component);
    let version_url = match component {
        names::KUBE_APISERVER => health.as_ref().map(|h| {
            let base = h.rsplit_once('/').map_or(h.as_str(), |(b, _)| b);
            (format!("apiserver:{base}/version"), tag)
        }),
        names::ETCD => Some(("etcd".to_string(), minor_of(&tag))),
        names::KUBELET => Some(("kubelet".to_string(), tag)),
        _ if !agent => Some((
            format!("mirror:{component}-{}", facts.name),
            image.to_string(),
        )),
        _ => None,
    };
    Want {
        component: component.to_string(),
        manifest: manifest.to_path_buf(),
        image: image.to_string(),
        health_url: health,
        version_url,
        agent_runs_it: agent,
    }
}

/// The `/version` checks [`gate`] runs: the API server's (anonymous, certificate not
/// verified: it only tells which binary answers), etcd's (the member's own version, compared
/// by minor with the image tag's), the kubelet's (the Node's kubeletVersion), and a mirror
/// pod's running image under the kubelet runner.
fn version_checker(req: &Request, facts: &NodeFacts) -> impl Fn(&str) -> Result<String, String> {
    let layout = req.inputs.layout.clone();
    let fs = req.inputs.fs.clone();
    let kubeconfig = req.inputs.kubeconfig.clone();
    let node = facts.name.clone();
    move |what: &str| -> Result<String, String> {
        let local_etcd_client = || -> Result<crate::etcd_members::EtcdClient, String> {
            crate::etcd_local::read(&fs, &layout)
                .map_err(|e| format!("{e:#}"))?
                .ok_or("no etcd manifest")?
                .client(&fs)
                .map_err(|e| format!("{e:#}"))
        };
        match what {
            apiserver if apiserver.starts_with("apiserver:") => {
                let client = crate::health::client();
                let v: serde_json::Value = client
                    .get(apiserver.trim_start_matches("apiserver:"))
                    .send()
                    .and_then(reqwest::blocking::Response::json)
                    .map_err(|e| e.to_string())?;
                v["gitVersion"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "no gitVersion".into())
            }
            "etcd" => {
                let client = local_etcd_client()?;
                let v =
                    client.version(&format!("https://127.0.0.1:{}", names::ETCD_CLIENT_PORT))?;
                // The image tag is `3.5.16-0`: the member must run that minor.
                Ok(minor_of(&v.server))
            }
            "etcd-cluster" => {
                let client = local_etcd_client()?;
                // The lowest minor any member runs: etcd raises its cluster version to it.
                let members = client.list().map_err(|e| format!("{e:#}"))?;
                let mut lowest: Option<Version> = None;
                for m in members {
                    // A member that does not answer is left out: see the caller.
                    let Some(url) = m.client_urls.first() else {
                        continue;
                    };
                    let Ok(v) = client.version(url) else { continue };
                    let Ok(v) = v.server.parse::<Version>() else {
                        continue;
                    };
                    lowest = Some(lowest.map_or(v.clone(), |l| l.min(v)));
                }
                let v = lowest.ok_or("no member answered")?;
                Ok(format!("{}.{}", v.major, v.minor))
            }
            "kubelet" => {
                let api = Cluster::from_kubeconfig(&kubeconfig).map_err(|e| format!("{e:#}"))?;
                let n = api
                    .get::<Node>(None, &node)
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or("no Node")?;
                Ok(n.status
                    .and_then(|s| s.node_info)
                    .map(|i| i.kubelet_version)
                    .unwrap_or_default())
            }
            mirror => {
                let name = mirror.trim_start_matches("mirror:");
                let api = Cluster::from_kubeconfig(&kubeconfig).map_err(|e| format!("{e:#}"))?;
                let p = api
                    .get::<Pod>(Some(names::KUBE_SYSTEM), name)
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or("no mirror pod yet")?;
                let cs = p
                    .status
                    .and_then(|s| s.container_statuses)
                    .unwrap_or_default();
                let c = cs.first().ok_or("no container status yet")?;
                if !c.ready {
                    return Err(format!("{} is not ready", c.image));
                }
                Ok(p.spec
                    .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
                    .unwrap_or_default())
            }
        }
    }
}

/// Whether the etcd step `s` moves etcd to another minor than the one the journal's backup
/// of its manifest ran (found again on a resumed run, when the plan sees the new etcd).
fn etcd_minor_moved(j: &Journal, s: &Step, fs: &Fs) -> bool {
    let tag_minor = |yaml: &str| {
        first_image(yaml)
            .and_then(|i| components::image::ImageRef::parse(&i).ok())
            .and_then(|r| r.tag)
            .map(|t| minor_of(&t))
    };
    let old = j
        .backup_of(&s.manifest)
        .flatten()
        .and_then(|p| fs.read_string_if_exists(p).ok().flatten());
    match old {
        Some(old) => tag_minor(&old) != tag_minor(&s.new_yaml),
        None => s.etcd_minor,
    }
}

/// `3.5` of `3.5.16-0` or `3.5.16`: etcd images run the distribution's etcd of their minor.
fn minor_of(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Copies `from` (a directory tree of regular files) to `to`, which must not exist, each file
/// synced: etcd's data directory, taken with etcd stopped.
///
/// # Errors
/// A file cannot be read or written.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(to)
        .with_context(|| format!("could not create {:?}", to.display().to_string()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(from)
        .with_context(|| format!("could not read {:?}", from.display().to_string()))?
    {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).with_context(|| {
                format!("could not copy {:?}", entry.path().display().to_string())
            })?;
            std::fs::File::open(&dest)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// Waits up to `timeout` until no etcd holds `data_dir` (the agent or kubelet stopped it).
fn wait_etcd_stopped(data_dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    while crate::etcd_snapshot::data_dir_in_use(data_dir)? {
        anyhow::ensure!(
            start.elapsed() < timeout,
            "etcd did not stop within {} after its manifest was removed",
            crate::health::human(timeout)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Stops the single etcd member (its manifest removed: the backup holds it) and copies its
/// data directory into the backup directory, then records the copy in the journal.
fn copy_etcd_data(req: &Request, out: &Out, j: &mut Journal, s: &Step) -> anyhow::Result<()> {
    let fs = &req.inputs.fs;
    let layout = &req.inputs.layout;
    let old = j
        .backup_of(&s.manifest)
        .flatten()
        .map(Path::to_path_buf)
        .context("the journal has no backup of the etcd manifest")?;
    let text = fs
        .read_string_if_exists(&old)?
        .context("the backup of the etcd manifest is missing")?;
    let data_dir = crate::etcd_local::from_manifest(&old, &text, layout)?.data_dir;
    say!(
        out,
        "upgrade/etcd",
        "Stopping etcd to copy its data directory {:?} (one member moving to a new minor)",
        data_dir.display().to_string()
    );
    fs.remove_file(&s.manifest)?;
    wait_etcd_stopped(&data_dir, req.timeout)?;
    let copy = j.backup_dir.join("etcd-data");
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    copy_tree(&data_dir, &copy)?;
    j.etcd_data = Some((data_dir, copy.clone()));
    journal::write(fs, layout, j)?;
    say!(
        out,
        "upgrade/etcd",
        "Copied etcd's data to {:?}",
        copy.display().to_string()
    );
    Ok(())
}

/// Puts etcd's data copy back: etcd stopped, the failed data moved into the backup
/// directory, the copy in place. Works inside the data directory (entries renamed within it),
/// so that a data directory that is a mount point of its own is restored too.
fn restore_etcd_data(
    req: &Request,
    out: &Out,
    j: &Journal,
    manifest: &Path,
    data_dir: &Path,
    copy: &Path,
) -> anyhow::Result<()> {
    let fs = &req.inputs.fs;
    fs.remove_file(manifest)?;
    wait_etcd_stopped(data_dir, req.timeout)?;
    let stamp = backup_dir_name(std::time::SystemTime::now());
    let fresh = data_dir.join(format!(".restoring-{stamp}"));
    let aside = data_dir.join(format!(".failed-{stamp}"));
    copy_tree(copy, &fresh)?;
    std::fs::create_dir(&aside)?;
    for entry in std::fs::read_dir(data_dir)? {
        let name = entry?.file_name();
        let path = data_dir.join(&name);
        if path != fresh && path != aside {
            std::fs::rename(&path, aside.join(&name))?;
        }
    }
    for entry in std::fs::read_dir(&fresh)? {
        let name = entry?.file_name();
        std::fs::rename(fresh.join(&name), data_dir.join(&name))?;
    }
    std::fs::remove_dir(&fresh)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    // The failed data is kept for a post-mortem where there is room; it never blocks the
    // rollback, and it leaves the data directory either way (etcd warns about strangers).
    let kept = j.backup_dir.join(format!("etcd-data-failed-{stamp}"));
    let where_ = match copy_tree(&aside, &kept) {
        Ok(()) => format!(
            "the failed upgrade's data is in {:?}",
            kept.display().to_string()
        ),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&kept);
            format!("the failed upgrade's data could not be kept: {e:#}")
        }
    };
    std::fs::remove_dir_all(&aside).with_context(|| {
        format!(
            "could not remove {:?}; remove it by hand",
            aside.display().to_string()
        )
    })?;
    say!(
        out,
        "upgrade/rollback",
        "Restored etcd's data from {:?} ({where_})",
        copy.display().to_string()
    );
    Ok(())
}

/// Rolls the node back to the journal's backups and waits for the old components; removes
/// the journal when done.
fn rollback(
    req: &Request,
    out: &Out,
    j: &Journal,
    facts: &NodeFacts,
    why: &str,
) -> anyhow::Result<()> {
    let fs = &req.inputs.fs;
    let layout = &req.inputs.layout;
    let mut j = j.clone();
    j.rolling_back = true;
    journal::write(fs, layout, &j)?;
    say!(
        out,
        "upgrade/rollback",
        "Rolling back the upgrade to {} ({why} failed) from {:?}",
        j.target,
        j.backup_dir.display().to_string()
    );
    let mut wants = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for (path, copy) in j.files.iter().rev() {
            match copy {
                Some(_)
                    if j.etcd_committed && path.file_stem().is_some_and(|s| s == names::ETCD) =>
                {
                    say!(
                        out,
                        "upgrade/rollback",
                        "etcd stays at its new version: it passed the point of no return (its data is migrated; only \"kubeboot etcd snapshot restore\" of the snapshot in {:?} could go back, losing the writes made since)",
                        j.backup_dir.display().to_string()
                    );
                }
                Some(copy) => {
                    let old = fs.read_if_exists(copy)?.with_context(|| {
                        format!("the backup {:?} is missing", copy.display().to_string())
                    })?;
                    if let Some((data_dir, data_copy)) = &j.etcd_data
                        && path.file_stem().is_some_and(|s| s == names::ETCD)
                        && fs.read_if_exists(path)?.as_deref() != Some(old.as_slice())
                    {
                        restore_etcd_data(req, out, &j, path, data_dir, data_copy)?;
                    }
                    if fs.read_if_exists(path)?.as_deref() != Some(old.as_slice()) {
                        put_back(fs, layout, path, &old)?;
                        say!(
                            out,
                            "upgrade/rollback",
                            "Restored {:?}",
                            path.display().to_string()
                        );
                    }
                    if let Some(w) =
                        rollback_want(path, &String::from_utf8_lossy(&old), facts, layout)
                    {
                        wants.push(w);
                    }
                }
                None => {
                    if fs.remove_file(path)? {
                        say!(
                            out,
                            "upgrade/rollback",
                            "Removed {:?}",
                            path.display().to_string()
                        );
                    }
                }
            }
        }
        // The agent back on its own --bin-dirs (the old binaries are found there anyway).
        if !j.agent_bin_dirs.is_empty() {
            restart_agent_with(req, out, &j.agent_bin_dirs)?;
        }
        // The old components, etcd and the API server first (the order they were restored).
        let version = version_checker(req, facts);
        for w in &wants {
            gate::wait(w, layout, req.timeout, &version, |what, elapsed| {
                say!(
                    out,
                    "upgrade/rollback",
                    "Still waiting for {} after {}: {what}",
                    w.component,
                    crate::health::human(elapsed)
                );
            })
            .map_err(|f| anyhow::anyhow!("{f}"))?;
            say!(
                out,
                "upgrade/rollback",
                "{} is healthy at its previous version",
                w.component
            );
        }
        if !j.objects.is_empty() {
            let api = Cluster::from_kubeconfig(&req.inputs.kubeconfig)?;
            for (key, file) in &j.objects {
                restore_object(&api, key, file, fs)?;
            }
            say!(
                out,
                "upgrade/rollback",
                "Restored the cluster objects the upgrade changed"
            );
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            journal::remove(fs, layout)?;
            say!(out, "upgrade/rollback", "The node is back at its previous version");
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "the rollback did not finish; the journal {:?} and the backups in {:?} stay: run the same command again to finish it",
            journal::path(layout).display().to_string(),
            j.backup_dir.display().to_string()
        ))),
    }
}

/// Writes a backed-up file back where it was: static Pod manifests 0600 as init writes
/// them, the kubelet's configuration 0644.
fn put_back(fs: &Fs, layout: &Layout, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let manifest = path
        .parent()
        .is_some_and(|d| d == layout.manifests_dir() || d == layout.agent_manifests_dir());
    if manifest {
        fs.write_private(path, bytes)
    } else {
        fs.write_public(path, bytes)
    }
}

fn rollback_want(path: &Path, yaml: &str, facts: &NodeFacts, layout: &Layout) -> Option<Want> {
    let dir = path.parent()?;
    if dir != layout.manifests_dir() && dir != layout.agent_manifests_dir() {
        return None;
    }
    let component = path.file_stem()?.to_string_lossy().into_owned();
    let agent = facts.runner == StaticPodRunner::Agent || dir == layout.agent_manifests_dir();
    let image = first_image(yaml)?;
    Some(want_for(&component, path, yaml, &image, agent, facts))
}

fn restore_object(api: &Cluster, key: &str, file: &Path, fs: &Fs) -> anyhow::Result<()> {
    let text = fs
        .read_string_if_exists(file)?
        .with_context(|| format!("the backup {:?} is missing", file.display().to_string()))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)?;
    let mut parts = key.splitn(3, '/');
    let (kind, ns, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if value.is_null() {
        match kind {
            "ConfigMap" => api.delete::<ConfigMap>(Some(ns), name)?,
            "DaemonSet" => api.delete::<DaemonSet>(Some(ns), name)?,
            _ => false,
        };
        return Ok(());
    }
    if let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(k);
        }
    }
    if let Some(o) = value.as_object_mut() {
        o.remove("status");
    }
    match kind {
        "ConfigMap" => api.create_or_update(&serde_json::from_value::<ConfigMap>(value)?),
        "DaemonSet" => api.create_or_update(&serde_json::from_value::<DaemonSet>(value)?),
        other => anyhow::bail!(
            "the backup holds an object of kind {other}, which kubeboot does not restore"
        ),
    }
}

/// The kubelet's configuration from the cluster's ConfigMap for `target` (`apply` creates it
/// for a new minor from the current one, as kubeadm's upgrade does), written to
/// `/var/lib/kubelet/config.yaml` with this node's adjustments.
fn kubelet_config(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    target: &Version,
    facts: &NodeFacts,
) -> anyhow::Result<()> {
    use manifests::cluster::kubelet_config::{
        kubelet_config_map, kubelet_config_map_name, kubelet_config_rbac,
    };
    let api = &view.api;
    let name = kubelet_config_map_name(target);
    let mut cm = api.get::<ConfigMap>(Some(names::KUBE_SYSTEM), &name)?;
    if cm.is_none() && req.command == Command::Apply {
        let current = kubelet_config_map_name(&view.cluster.kubernetes_version);
        let old = api
            .get::<ConfigMap>(Some(names::KUBE_SYSTEM), &current)?
            .with_context(|| {
                format!("the cluster has neither kube-system/{name} nor kube-system/{current}")
            })?;
        let yaml = old
            .data
            .as_ref()
            .and_then(|d| d.get("kubelet"))
            .cloned()
            .unwrap_or_default();
        say!(
            out,
            "kubelet",
            "Creating a ConfigMap {name:?} in namespace kube-system with the configuration for the kubelets in the cluster"
        );
        let fresh = kubelet_config_map(target, &yaml, false);
        api.create_or_update(&fresh)?;
        let (role, binding) = kubelet_config_rbac(target);
        api.create_or_update(&role)?;
        api.create_or_update(&binding)?;
        cm = Some(fresh);
    }
    let cm = cm.with_context(|| format!("the cluster has no kube-system/{name} ConfigMap: run \"kubeboot upgrade apply {target}\" on the first control-plane node first"))?;
    let yaml = cm
        .data
        .as_ref()
        .and_then(|d| d.get("kubelet"))
        .with_context(|| format!("kube-system/{name} has no \"kubelet\" key"))?;
    let node_yaml =
        manifests::kubelet::node_kubelet_configuration_from_cluster(yaml, facts.runner)?;
    let path = req
        .inputs
        .layout
        .kubelet_dir()
        .join(names::KUBELET_CONFIG_FILE);
    if req.inputs.fs.read_string_if_exists(&path)?.as_deref() != Some(node_yaml.as_str()) {
        say!(
            out,
            "kubelet-start",
            "Writing kubelet configuration to file {:?}",
            path.display().to_string()
        );
        req.inputs.fs.write_public(&path, node_yaml.as_bytes())?;
    }
    Ok(())
}

/// kubeadm-config with the new version (`upgrade apply`), as kubeadm's upload-config.
fn upload_config(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    target: &Version,
    facts: &NodeFacts,
) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let api_path = layout.manifest(names::KUBE_APISERVER);
    let shown = api_path.display().to_string();
    let text = req
        .inputs
        .fs
        .read_string_if_exists(&api_path)?
        .with_context(|| format!("{shown:?} is missing"))?;
    let endpoint = diff::local_endpoint(&shown, &text)?;
    let mut cfg = diff::target_config(&view.cluster, endpoint, target);
    cfg.node.name = facts.name.clone();
    say!(
        out,
        "upload-config",
        "Storing the configuration used in ConfigMap {:?} in the {:?} Namespace",
        names::KUBEADM_CONFIG_CONFIGMAP,
        names::KUBE_SYSTEM
    );
    let existing = view
        .api
        .get::<ConfigMap>(Some(names::KUBE_SYSTEM), names::KUBEADM_CONFIG_CONFIGMAP)?;
    let cm = manifests::cluster::kubeadm_config_map(&cfg, existing.as_ref())?;
    view.api.create_or_update(&cm)?;
    Ok(())
}

/// The addons at `target` once every API server of ClusterStatus runs it (the last control
/// plane upgraded): kube-proxy's DaemonSet image; the DNS image follows the catalogue.
fn addons(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    target: &Version,
) -> anyhow::Result<()> {
    let cert_dir = req.inputs.layout.node_path(&view.cluster.certificates_dir);
    let servers = super::observe::api_server_versions(view, &req.inputs.fs, &cert_dir);
    let behind: Vec<String> = servers
        .iter()
        .filter(|a| a.version.as_ref().ok() != Some(target))
        .map(|a| a.node.clone())
        .collect();
    if !behind.is_empty() {
        say!(
            out,
            "upgrade/addons",
            "Skipping the addons: the API servers of {} do not run {target} yet; the \"kubeboot upgrade node\" that upgrades the last of them applies them",
            behind.join(", ")
        );
        return Ok(());
    }
    let tag = catalogue::kubernetes_image_tag(target);
    if let Some(mut ds) = view
        .api
        .get::<DaemonSet>(Some(names::KUBE_SYSTEM), names::KUBE_PROXY)?
    {
        let mut changed = false;
        for c in ds
            .spec
            .template
            .spec
            .iter_mut()
            .flat_map(|s| s.containers.iter_mut())
        {
            if let Some(image) = &c.image
                && let Ok(r) = components::image::ImageRef::parse(image)
                && r.tag.as_deref() != Some(tag.as_str())
            {
                c.image = Some(with_tag(r, &tag));
                changed = true;
            }
        }
        if changed {
            ds.metadata.resource_version = None;
            view.api.create_or_update(&ds)?;
        }
        say!(out, "addons", "Applied essential addon: kube-proxy");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: kubelet
  namespace: kube-system
spec:
  containers:
  - image: k8s.gcr.io/kubelet:v1.20.2
    name: kubelet
  hostNetwork: true
";

    #[test]
    fn retag_moves_every_container_to_the_tag_and_keeps_the_repository() {
        let out = retag("/m/kubelet.yaml", KUBELET, "v1.20.3-test.0").expect("retag");
        assert!(
            out.contains("image: k8s.gcr.io/kubelet:v1.20.3-test.0"),
            "{out}"
        );
        assert!(!out.contains("v1.20.2"), "{out}");
        let mirror = KUBELET.replace("k8s.gcr.io/kubelet", "registry.local:5000/k8s/kubelet");
        let out = retag("/m/kubelet.yaml", &mirror, "v1.20.3").expect("retag");
        assert!(
            out.contains("image: registry.local:5000/k8s/kubelet:v1.20.3"),
            "{out}"
        );
        let err = retag("/m/kubelet.yaml", "not: [a pod", "v1").unwrap_err();
        assert!(format!("{err:#}").contains("/m/kubelet.yaml"), "{err:#}");
    }

    #[test]
    fn the_agents_bin_dirs_are_replaced_new_first() {
        let args: Vec<String> = [
            "agent",
            "--node-name",
            "n1",
            "--bin-dir",
            "/old",
            "--bin-dir=/usr/bin",
            "--pod-network",
            "bridge",
        ]
        .map(String::from)
        .to_vec();
        let old = bin_dirs_of(&args);
        assert_eq!(old, vec![PathBuf::from("/old"), PathBuf::from("/usr/bin")]);
        let dirs = merged_bin_dirs(&[PathBuf::from("/new"), PathBuf::from("/usr/bin")], &old);
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/new"),
                PathBuf::from("/usr/bin"),
                PathBuf::from("/old")
            ]
        );
        let replaced = with_bin_dirs(&args, &dirs);
        assert_eq!(
            replaced,
            [
                "agent",
                "--node-name",
                "n1",
                "--pod-network",
                "bridge",
                "--bin-dir",
                "/new",
                "--bin-dir",
                "/usr/bin",
                "--bin-dir",
                "/old"
            ]
            .map(String::from)
            .to_vec()
        );
        assert_eq!(bin_dirs_of(&replaced), dirs);
    }

    #[test]
    fn backup_directories_are_named_by_utc_time() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_796_401_805);
        assert_eq!(backup_dir_name(t), "kubeboot-backup-2026-12-04-16-30-05");
    }

    #[test]
    fn each_component_renews_kubeadms_certificates() {
        assert_eq!(
            certificates_of(names::KUBE_APISERVER),
            &[
                "apiserver",
                "apiserver-kubelet-client",
                "apiserver-etcd-client",
                "front-proxy-client"
            ]
        );
        assert_eq!(certificates_of(names::KUBE_SCHEDULER), &["scheduler.conf"]);
        assert!(certificates_of(names::KUBELET).is_empty());
        assert_eq!(minor_of("3.5.16-0"), "3.5");
        assert_eq!(minor_of("3.4.23"), "3.4");
    }

    fn plan_with(blockers: Vec<super::super::plan::Blocker>) -> Plan {
        Plan {
            cluster_version: "v1.20.2".parse().unwrap(),
            target: None,
            upgrade_available: false,
            kubelets: vec![],
            components: vec![],
            etcd: None,
            blockers,
            warnings: vec![],
            apply_flags: vec![],
            rollback: vec![],
            bin_dirs: vec![],
            earliest_certificate: None,
        }
    }

    fn blocker(severity: Severity) -> super::super::plan::Blocker {
        super::super::plan::Blocker {
            kind: "experimental".into(),
            message: "v1.20.3-test.0 is a pre-release".into(),
            fix: "pass --allow-experimental-upgrades".into(),
            severity,
        }
    }

    #[test]
    fn skippable_blockers_refuse_unless_forced_and_mandatory_ones_always() {
        let target: Version = "v1.20.3-test.0".parse().unwrap();
        let skippable = plan_with(vec![blocker(Severity::Skippable)]);
        let e = refuse_blockers(&skippable, &target, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pass --allow-experimental-upgrades") && e.contains("nothing was changed"),
            "{e}"
        );
        assert!(refuse_blockers(&skippable, &target, true).is_ok());
        let mandatory = plan_with(vec![blocker(Severity::Mandatory)]);
        assert!(refuse_blockers(&mandatory, &target, true).is_err());
        assert!(refuse_blockers(&plan_with(vec![]), &target, false).is_ok());
    }

    #[test]
    fn copy_tree_copies_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("data");
        std::fs::create_dir_all(from.join("member/snap")).unwrap();
        std::fs::write(from.join("member/snap/db"), b"bolt").unwrap();
        std::fs::write(from.join("top"), b"t").unwrap();
        let to = dir.path().join("copy");
        copy_tree(&from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("member/snap/db")).unwrap(), b"bolt");
        assert_eq!(std::fs::read(to.join("top")).unwrap(), b"t");
        assert!(
            copy_tree(&from, &to).is_err(),
            "an existing destination is refused"
        );
    }
}
