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

use anyhow::Context;
use components::upgrade::{EtcdStep, Severity};
use components::{Layout, StaticPodRunner, Version, catalogue, names};
use k8s_openapi::api::core::v1::Pod;

use super::agent_restart::{restart_agent, running_agent_args};
use super::backup::begin;
use super::etcd_data::{copy_etcd_data, etcd_minor_moved, minor_of, snapshot};
use super::finish::{addons, kubelet_config, upload_config};
use super::gate;
use super::journal::{self, Journal};
use super::renewal::{certificates_of, renew};
use super::undo::{put_back, rollback, rollback_want};
use super::wants::{version_checker, want_of};
use super::{Inputs, diff, plan::Plan};
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
    pub(super) fn as_str(self) -> &'static str {
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
pub(super) struct Step {
    pub(super) component: &'static str,
    pub(super) manifest: PathBuf,
    pub(super) new_yaml: String,
    pub(super) image: String,
    /// Run by the agent (else by the kubelet).
    pub(super) agent: bool,
    /// The etcd step that moves one member to a new minor (its data is copied first).
    pub(super) etcd_minor_single: bool,
    /// The etcd step moves to a new minor (any number of members).
    pub(super) etcd_minor: bool,
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
pub(super) fn with_tag(image: components::image::ImageRef, tag: &str) -> String {
    components::image::ImageRef {
        tag: Some(tag.to_string()),
        digest: None,
        ..image
    }
    .to_string()
}

pub(super) fn first_image(yaml: &str) -> Option<String> {
    let pod: Pod = manifests::yaml::from_yaml(yaml).ok()?;
    pod.spec?.containers.first()?.image.clone()
}

/// The facts of this node the upgrade works from.
pub(super) struct NodeFacts {
    pub(super) name: String,
    pub(super) runner: StaticPodRunner,
    pub(super) control_plane: bool,
    pub(super) agent_args: Option<Vec<String>>,
}

pub(super) fn node_facts(layout: &Layout) -> anyhow::Result<NodeFacts> {
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
pub(super) fn refuse_blockers(plan: &Plan, target: &Version, force: bool) -> anyhow::Result<()> {
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
pub(super) fn plan_steps(
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

pub(super) fn dry_run(
    out: &Out,
    steps: &[Step],
    target: &Version,
    facts: &NodeFacts,
) -> anyhow::Result<()> {
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
pub(super) fn restore_removed(
    req: &Request,
    out: &Out,
    j: &Journal,
    facts: &NodeFacts,
) -> anyhow::Result<()> {
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

/// Writes one step's manifest (unless it is there already) and waits for the component.
pub(super) fn apply_step(
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
}
