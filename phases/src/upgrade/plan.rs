//! `upgrade plan`'s decision, pure: from what was observed ([`Observed`]) and what the user
//! asked ([`Request`]) to the plan ([`Plan`]) that `upgrade plan` prints and `upgrade apply`
//! will execute: the target versions of every component, each blocker in plain words, the
//! etcd step and the rollback semantics (kubeadm: app/cmd/upgrade/plan.go genUpgradePlan,
//! printUpgradePlan; app/phases/upgrade/compute.go).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use components::Version;
use components::catalogue;
use components::names;
use components::upgrade::{self as policy, EtcdSource, EtcdStep, PolicyInput, Severity};
use serde::Serialize;

use super::rollback;

/// The Kubernetes binaries an upgrade to a version needs on disk, in kubeadm's plan order.
pub const KUBERNETES_BINARIES: &[&str] = &[
    names::KUBE_APISERVER,
    names::KUBE_CONTROLLER_MANAGER,
    names::KUBE_SCHEDULER,
    names::KUBE_PROXY,
    names::KUBELET,
];

/// An API server's version, asked at its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiServer {
    /// The control-plane node (kubeadm-config's ClusterStatus).
    pub node: String,
    /// `https://<advertiseAddress>:<bindPort>`.
    pub endpoint: String,
    /// Its `/version`, or why it could not be read.
    pub version: Result<Version, String>,
}

/// One etcd member's versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdMemberVersion {
    /// The member's name (its node).
    pub name: String,
    /// The client URL asked.
    pub endpoint: String,
    /// The member's version, or why it could not be read.
    pub server: Result<Version, String>,
    /// The cluster version the member reports (`3.4.0`).
    pub cluster: Option<String>,
}

/// A binary looked up in the `--bin-dir`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum BinaryOnDisk {
    /// Found, trusted, and its `--version` printed this.
    Found {
        /// Where.
        path: String,
        /// What `--version` printed.
        version: Version,
    },
    /// In none of the directories.
    Missing,
    /// Found but not run (untrusted) or printed no version.
    Unusable {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Everything `upgrade plan` observes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Every control-plane endpoint of kubeadm-config's ClusterStatus, with its version.
    pub api_servers: Vec<ApiServer>,
    /// Kubelet versions (Node.status.nodeInfo.kubeletVersion) with their node counts, or why
    /// they could not be read.
    pub kubelets: Result<BTreeMap<Version, u32>, String>,
    /// The etcd members' versions; `None` for an external etcd.
    pub etcd: Option<Vec<EtcdMemberVersion>>,
    /// `etcd.local.imageTag` of the cluster's configuration (or `--config`).
    pub etcd_image_tag: Option<String>,
    /// The kube-proxy DaemonSet's image tag, if there is one.
    pub kube_proxy: Option<String>,
    /// The cluster DNS Deployment's image tag (CoreDNS), if there is one.
    pub dns: Option<String>,
    /// The directories searched, in order.
    pub bin_dirs: Vec<String>,
    /// The binaries found there, by name ([`KUBERNETES_BINARIES`] and etcd).
    pub binaries: BTreeMap<String, BinaryOnDisk>,
    /// The certificate that expires first: its file and its NotAfter (RFC 3339), with the
    /// days left.
    pub earliest_certificate: Option<CertificateExpiry>,
}

/// The certificate that expires first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateExpiry {
    /// Its file.
    pub file: String,
    /// NotAfter, RFC 3339.
    pub not_after: String,
    /// Whole days left (negative when expired).
    pub days_left: i64,
}

/// What the user asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The `[version]` argument.
    pub version: Option<Version>,
    /// `--allow-experimental-upgrades`.
    pub allow_experimental: bool,
    /// `--allow-release-candidate-upgrades`.
    pub allow_release_candidate: bool,
}

/// One row of the plan's tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentRow {
    /// kubeadm's component name.
    pub name: String,
    /// The version now (`1 x v1.20.2` for kubelets).
    pub current: String,
    /// The version after the upgrade.
    pub available: String,
}

/// Why the upgrade cannot be applied as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// A stable name (`experimental`, `missing-binaries`, ...).
    pub kind: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
    /// `mandatory`, or `skippable` (a flag, or `upgrade apply --force`, lets it through).
    pub severity: Severity,
}

/// The etcd step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdPlan {
    /// The lowest version the members run.
    pub current: Version,
    /// The version after the upgrade.
    pub target: Version,
    /// The image tag of the new etcd manifest.
    pub image_tag: String,
    /// Where the target came from.
    pub source: EtcdSource,
    /// What the step does, if it is allowed.
    pub step: Option<EtcdStep>,
    /// How many members the cluster has.
    pub members: usize,
}

/// The plan: printed by `upgrade plan`, executed by `upgrade apply` and `upgrade node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The cluster's version: the lowest API server version.
    pub cluster_version: Version,
    /// The version the plan moves to, if there is one (the argument, else the binaries on
    /// disk).
    pub target: Option<Version>,
    /// True when the target is a newer version than the cluster's and nothing blocks it.
    pub upgrade_available: bool,
    /// The kubelet rows (kubeadm's "must be upgraded manually" table).
    pub kubelets: Vec<ComponentRow>,
    /// The control-plane and addon rows.
    pub components: Vec<ComponentRow>,
    /// The etcd step (local etcd only).
    pub etcd: Option<EtcdPlan>,
    /// Every reason the target cannot be applied as asked.
    pub blockers: Vec<Blocker>,
    /// What is allowed but worth saying.
    pub warnings: Vec<String>,
    /// The flags `upgrade apply` needs for the target (`--allow-experimental-upgrades`).
    pub apply_flags: Vec<String>,
    /// The rollback semantics of this upgrade, one statement per line.
    pub rollback: Vec<String>,
    /// The directories the binaries came from.
    pub bin_dirs: Vec<String>,
    /// The certificate that expires first.
    pub earliest_certificate: Option<CertificateExpiry>,
}

/// A problem with what was observed that leaves nothing to plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No API server answered.
    #[error("no API server answered /version ({0}); check that the control plane is running")]
    NoApiServer(String),
}

/// The lowest version the API servers report (kubeadm: VersionGetter.ClusterVersion, asked at
/// one endpoint; the lowest is the one the skew rules must hold for).
///
/// # Errors
/// [`PlanError::NoApiServer`] when none answered.
pub fn cluster_version(api_servers: &[ApiServer]) -> Result<Version, PlanError> {
    api_servers
        .iter()
        .filter_map(|a| a.version.as_ref().ok())
        .min()
        .cloned()
        .ok_or_else(|| {
            PlanError::NoApiServer(
                api_servers
                    .iter()
                    .map(|a| {
                        format!(
                            "{} {}: {}",
                            a.node,
                            a.endpoint,
                            a.version.as_ref().err().map_or("", String::as_str)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
}

fn flags_for(target: &Version) -> Vec<String> {
    match target.pre.as_deref() {
        None => vec![],
        // kubeadm: genUpgradePlan's unstableVersionFlag.
        Some(p) if p.starts_with("rc") => vec!["--allow-release-candidate-upgrades".into()],
        Some(_) => vec!["--allow-experimental-upgrades".into()],
    }
}

/// Decides the plan.
///
/// # Errors
/// [`PlanError`] when no API server answered.
pub fn decide(observed: &Observed, request: &Request) -> Result<Plan, PlanError> {
    let cluster = cluster_version(&observed.api_servers)?;
    let mut blockers = Vec::new();
    let mut warnings = Vec::new();
    let dirs = observed.bin_dirs.join(", ");
    let apiserver_on_disk = match observed.binaries.get(names::KUBE_APISERVER) {
        Some(BinaryOnDisk::Found { version, .. }) => Some(version.clone()),
        _ => None,
    };
    let target = request.version.clone().or(apiserver_on_disk);

    let Some(target) = target else {
        blockers.push(Blocker {
            kind: "no-binaries".into(),
            message: format!(
                "no usable kube-apiserver in {dirs}: there is no version on disk to upgrade to"
            ),
            fix: "put the new version's binaries in a directory and pass it with --bin-dir".into(),
            severity: Severity::Mandatory,
        });
        return Ok(Plan {
            cluster_version: cluster,
            target: None,
            upgrade_available: false,
            kubelets: vec![],
            components: vec![],
            etcd: None,
            blockers,
            warnings,
            apply_flags: vec![],
            rollback: vec![],
            bin_dirs: observed.bin_dirs.clone(),
            earliest_certificate: observed.earliest_certificate.clone(),
        });
    };

    // The version skew policy.
    let kubelets = observed.kubelets.as_ref().ok().cloned();
    if let Err(e) = &observed.kubelets {
        warnings.push(format!(
            "could not read the kubelet versions ({e}); the kubelet rules were not checked"
        ));
    }
    let report = policy::enforce(&PolicyInput {
        cluster: cluster.clone(),
        target: target.clone(),
        kubelets: kubelets.clone(),
        allow_experimental: request.allow_experimental,
        allow_release_candidate: request.allow_release_candidate,
    });
    for v in &report.violations {
        blockers.push(Blocker {
            kind: v.kind().into(),
            message: v.to_string(),
            fix: v.fix(),
            severity: v.severity(),
        });
    }
    warnings.extend(report.warnings.iter().map(ToString::to_string));
    for a in &observed.api_servers {
        match &a.version {
            Ok(v) if *v != cluster => warnings.push(format!(
                "the API server on {} ({}) runs {v}, the others {cluster}: an upgrade is under way or was left half done",
                a.node, a.endpoint
            )),
            Ok(_) => {}
            Err(e) => warnings.push(format!(
                "the API server on {} ({}) did not answer /version: {e}",
                a.node, a.endpoint
            )),
        }
    }

    blockers.extend(binary_blockers(observed, &target, &dirs));

    // etcd.
    let etcd = match &observed.etcd {
        None => None,
        Some(members) => etcd_plan(observed, members, &target, &mut blockers, &mut warnings),
    };

    let kubelet_rows = match &kubelets {
        Some(k) => k
            .iter()
            .map(|(v, n)| ComponentRow {
                name: names::KUBELET.into(),
                current: format!("{n} x {v}"),
                available: target.to_string(),
            })
            .collect(),
        None => vec![],
    };
    let mut components: Vec<ComponentRow> = [
        names::KUBE_APISERVER,
        names::KUBE_CONTROLLER_MANAGER,
        names::KUBE_SCHEDULER,
    ]
    .iter()
    .map(|c| ComponentRow {
        name: (*c).into(),
        current: cluster.to_string(),
        available: target.to_string(),
    })
    .collect();
    components.push(ComponentRow {
        name: names::KUBE_PROXY.into(),
        current: observed
            .kube_proxy
            .clone()
            .unwrap_or_else(|| cluster.to_string()),
        available: target.to_string(),
    });
    if let Some(dns) = &observed.dns {
        components.push(ComponentRow {
            name: "CoreDNS".into(),
            current: dns.clone(),
            available: catalogue::images_for(&target).coredns.to_string(),
        });
    }
    if let Some(e) = &etcd {
        components.push(ComponentRow {
            name: names::ETCD.into(),
            current: etcd_shown(&e.current),
            available: etcd_shown(&e.target),
        });
    }

    let rollback = rollback::semantics(etcd.as_ref().map(|e| (e.members, e.step)));
    Ok(Plan {
        upgrade_available: target > cluster && blockers.is_empty(),
        cluster_version: cluster,
        apply_flags: flags_for(&target),
        target: Some(target),
        kubelets: kubelet_rows,
        components,
        etcd,
        blockers,
        warnings,
        rollback,
        bin_dirs: observed.bin_dirs.clone(),
        earliest_certificate: observed.earliest_certificate.clone(),
    })
}

/// etcd versions without the `v` Kubernetes versions carry (`3.4.23`), as kubeadm prints them.
fn etcd_shown(v: &Version) -> String {
    v.to_string().trim_start_matches('v').to_string()
}

/// Every Kubernetes binary must be on disk at exactly the target version.
fn binary_blockers(observed: &Observed, target: &Version, dirs: &str) -> Vec<Blocker> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for name in KUBERNETES_BINARIES {
        match observed.binaries.get(*name) {
            None | Some(BinaryOnDisk::Missing) => missing.push(*name),
            Some(BinaryOnDisk::Unusable { path, reason }) => out.push(Blocker {
                kind: "unusable-binary".into(),
                message: format!("{path} cannot be used: {reason}"),
                fix: format!("replace {path} with the {target} build of {name}"),
                severity: Severity::Mandatory,
            }),
            Some(BinaryOnDisk::Found { path, version }) if version != target => out.push(Blocker {
                kind: "binary-version-mismatch".into(),
                message: format!(
                    "{path} --version says {version}, not {target}"
                ),
                fix: format!(
                    "put the {target} build of {name} in a directory and pass it first with --bin-dir"
                ),
                severity: Severity::Mandatory,
            }),
            Some(BinaryOnDisk::Found { .. }) => {}
        }
    }
    if !missing.is_empty() {
        out.insert(
            0,
            Blocker {
                kind: "missing-binaries".into(),
                message: format!(
                    "the binaries of {target} are not on disk: {} not found in --bin-dir {dirs}",
                    missing.join(", ")
                ),
                fix: format!(
                    "put the {target} binaries ({}) in a directory and pass it with --bin-dir",
                    KUBERNETES_BINARIES.join(", ")
                ),
                severity: Severity::Mandatory,
            },
        );
    }
    out
}

fn etcd_plan(
    observed: &Observed,
    members: &[EtcdMemberVersion],
    target: &Version,
    blockers: &mut Vec<Blocker>,
    warnings: &mut Vec<String>,
) -> Option<EtcdPlan> {
    for m in members {
        if let Err(e) = &m.server {
            warnings.push(format!(
                "etcd member {:?} ({}) did not answer /version: {e}",
                m.name, m.endpoint
            ));
        }
    }
    let current = members
        .iter()
        .filter_map(|m| m.server.as_ref().ok())
        .min()?;
    let on_disk = match observed.binaries.get(names::ETCD) {
        Some(BinaryOnDisk::Found { version, .. }) => Some(version),
        _ => None,
    };
    let etcd_blocker = |e: &policy::EtcdViolation| Blocker {
        kind: "etcd".into(),
        message: e.to_string(),
        fix: e.fix(),
        severity: Severity::Mandatory,
    };
    let t = match policy::etcd_target(target, observed.etcd_image_tag.as_deref(), on_disk) {
        Ok(t) => t,
        Err(e) => {
            blockers.push(etcd_blocker(&e));
            return None;
        }
    };
    let step = match policy::etcd_step(current, &t.version) {
        Ok(s) => Some(s),
        Err(e) => {
            blockers.push(etcd_blocker(&e));
            None
        }
    };
    Some(EtcdPlan {
        current: current.clone(),
        target: t.version,
        image_tag: t.image_tag,
        source: t.source,
        step,
        members: members.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

/// Lays out rows as Go's text/tabwriter with kubeadm's settings (minwidth 10, tabwidth 4,
/// padding 3, padchar ' '): every column but the last padded to its widest cell plus 3.
pub fn tabwriter(rows: &[[&str; 3]]) -> String {
    let mut widths = [0usize; 2];
    for r in rows {
        for (i, w) in widths.iter_mut().enumerate() {
            *w = (*w).max((r[i].chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            let _ = write!(out, "{:<w$}", r[i], w = *w);
        }
        out.push_str(r[2]);
        out.push('\n');
    }
    out
}

/// The plan as kubeadm 1.20's `upgrade plan` prints it (printUpgradePlan), with kubeboot's
/// blockers, warnings, etcd and rollback sections.
pub fn render(plan: &Plan) -> String {
    let mut w = String::new();
    let Some(target) = &plan.target else {
        for b in &plan.blockers {
            let _ = writeln!(w, "{}; {}", b.message, b.fix);
        }
        return w;
    };
    if !plan.kubelets.is_empty() {
        w.push_str("Components that must be upgraded manually after you have upgraded the control plane with 'kubeboot upgrade apply':\n");
        let mut rows = vec![["COMPONENT", "CURRENT", "AVAILABLE"]];
        for (i, k) in plan.kubelets.iter().enumerate() {
            rows.push([
                if i == 0 { k.name.as_str() } else { "" },
                k.current.as_str(),
                k.available.as_str(),
            ]);
        }
        w.push_str(&tabwriter(&rows));
        w.push('\n');
    }
    let test_build = target.pre.as_deref().is_some_and(|p| p.contains("test"));
    let _ = writeln!(
        w,
        "Upgrade to {target}{} (binaries in {}):\n",
        if test_build { ", a test build" } else { "" },
        plan.bin_dirs.join(", ")
    );
    let mut rows = vec![["COMPONENT", "CURRENT", "AVAILABLE"]];
    for c in &plan.components {
        rows.push([c.name.as_str(), c.current.as_str(), c.available.as_str()]);
    }
    w.push_str(&tabwriter(&rows));
    w.push('\n');

    if let Some(e) = &plan.etcd {
        let source = match e.source {
            EtcdSource::ImageTag => "etcd.local.imageTag",
            EtcdSource::Binary => "the etcd binary on disk",
            EtcdSource::Catalogue => "the etcd kubeadm pins for this Kubernetes minor",
        };
        let step = match e.step {
            Some(EtcdStep::Unchanged) => "unchanged",
            Some(EtcdStep::Patch) => "a patch release, the data format stays",
            Some(EtcdStep::Minor) => {
                "a new minor: etcd migrates its data once every member runs it"
            }
            None => "not allowed",
        };
        let _ = writeln!(
            w,
            "etcd: {} member(s) at {}; target {} (image tag {}, from {source}): {step}\n",
            e.members,
            etcd_shown(&e.current),
            etcd_shown(&e.target),
            e.image_tag
        );
    }

    for warning in &plan.warnings {
        let _ = writeln!(w, "WARNING: {warning}");
    }
    if !plan.warnings.is_empty() {
        w.push('\n');
    }

    if plan.blockers.is_empty() {
        if *target == plan.cluster_version {
            let _ = writeln!(
                w,
                "The cluster already runs {target}: there is nothing newer on disk.\n"
            );
        } else {
            w.push_str("You can now apply the upgrade by executing the following command:\n\n");
            let flags: String = plan.apply_flags.iter().map(|f| format!(" {f}")).collect();
            let _ = writeln!(w, "\tkubeboot upgrade apply {target}{flags}\n");
        }
    } else {
        let _ = writeln!(w, "The upgrade to {target} cannot be applied:");
        for b in &plan.blockers {
            let _ = writeln!(w, "- {}; {}", b.message, b.fix);
        }
        w.push('\n');
    }

    if let Some(c) = &plan.earliest_certificate {
        let _ = writeln!(
            w,
            "Certificates: the first to expire is {}, on {} ({} days left); see 'kubeboot certs check-expiration'\n",
            c.file, c.not_after, c.days_left
        );
    }

    if !plan.rollback.is_empty() {
        w.push_str("Rollback, if a component does not become healthy during the upgrade:\n");
        for line in &plan.rollback {
            let _ = writeln!(w, "- {line}");
        }
        w.push('\n');
    }
    w.push_str("_____________________________________________________________________\n\n");
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use components::version::v;

    fn ver(s: &str) -> Version {
        s.parse().expect("a test version")
    }

    fn binaries(k8s: &str, etcd: &str) -> BTreeMap<String, BinaryOnDisk> {
        let mut m: BTreeMap<String, BinaryOnDisk> = KUBERNETES_BINARIES
            .iter()
            .map(|b| {
                (
                    (*b).to_string(),
                    BinaryOnDisk::Found {
                        path: format!("/next/{b}"),
                        version: ver(k8s),
                    },
                )
            })
            .collect();
        m.insert(
            names::ETCD.into(),
            BinaryOnDisk::Found {
                path: "/next/etcd".into(),
                version: ver(etcd),
            },
        );
        m
    }

    fn observed(bins: BTreeMap<String, BinaryOnDisk>) -> Observed {
        Observed {
            api_servers: vec![ApiServer {
                node: "node1".into(),
                endpoint: "https://10.0.0.1:6443".into(),
                version: Ok(v(1, 20, 2)),
            }],
            kubelets: Ok(BTreeMap::from([(v(1, 20, 2), 1)])),
            etcd: Some(vec![EtcdMemberVersion {
                name: "node1".into(),
                endpoint: "https://10.0.0.1:2379".into(),
                server: Ok(v(3, 4, 23)),
                cluster: Some("3.4.0".into()),
            }]),
            etcd_image_tag: None,
            kube_proxy: Some("v1.20.2".into()),
            dns: Some("1.7.0".into()),
            bin_dirs: vec!["/next".into()],
            binaries: bins,
            earliest_certificate: Some(CertificateExpiry {
                file: "/etc/kubernetes/pki/apiserver.crt".into(),
                not_after: "2027-12-03T13:00:00Z".into(),
                days_left: 364,
            }),
        }
    }

    fn experimental() -> Request {
        Request {
            allow_experimental: true,
            ..Request::default()
        }
    }

    fn kinds(p: &Plan) -> Vec<&str> {
        p.blockers.iter().map(|b| b.kind.as_str()).collect()
    }

    #[test]
    fn the_test_build_on_disk_needs_the_experimental_flag() {
        let o = observed(binaries("v1.20.3-test.0", "3.4.23"));
        let blocked = decide(&o, &Request::default()).expect("plan");
        assert_eq!(blocked.target, Some(ver("v1.20.3-test.0")));
        assert!(!blocked.upgrade_available);
        assert_eq!(kinds(&blocked), vec!["experimental"]);
        let text = render(&blocked);
        assert!(
            text.contains("The upgrade to v1.20.3-test.0 cannot be applied:"),
            "{text}"
        );
        assert!(text.contains("--allow-experimental-upgrades"), "{text}");
        assert!(!text.contains("You can now apply"), "{text}");

        let allowed = decide(&o, &experimental()).expect("plan");
        assert!(allowed.upgrade_available, "{:?}", allowed.blockers);
        assert_eq!(allowed.apply_flags, vec!["--allow-experimental-upgrades"]);
        let text = render(&allowed);
        assert!(
            text.contains(
                "\tkubeboot upgrade apply v1.20.3-test.0 --allow-experimental-upgrades\n"
            ),
            "{text}"
        );
        assert!(text.contains("Upgrade to v1.20.3-test.0, a test build (binaries in /next):"));
    }

    #[test]
    fn the_table_is_kubeadms() {
        let o = observed(binaries("v1.20.3-test.0", "3.4.23"));
        let plan = decide(&o, &experimental()).expect("plan");
        let text = render(&plan);
        let want = "\
Components that must be upgraded manually after you have upgraded the control plane with 'kubeboot upgrade apply':
COMPONENT   CURRENT       AVAILABLE
kubelet     1 x v1.20.2   v1.20.3-test.0

Upgrade to v1.20.3-test.0, a test build (binaries in /next):

COMPONENT                 CURRENT   AVAILABLE
kube-apiserver            v1.20.2   v1.20.3-test.0
kube-controller-manager   v1.20.2   v1.20.3-test.0
kube-scheduler            v1.20.2   v1.20.3-test.0
kube-proxy                v1.20.2   v1.20.3-test.0
CoreDNS                   1.7.0     1.7.0
etcd                      3.4.23    3.4.23
";
        assert!(text.starts_with(want), "{text}");
        assert!(text.ends_with(
            "_____________________________________________________________________\n\n"
        ));
        assert!(
            text.contains("Certificates: the first to expire is /etc/kubernetes/pki/apiserver.crt")
        );
    }

    #[test]
    fn a_requested_version_without_binaries_names_the_files_and_the_dirs() {
        let mut bins = binaries("v1.20.3-test.0", "3.4.23");
        bins.insert(names::KUBELET.into(), BinaryOnDisk::Missing);
        bins.remove(names::KUBE_PROXY);
        let plan = decide(
            &observed(bins),
            &Request {
                version: Some(ver("v1.20.3-test.0")),
                allow_experimental: true,
                ..Request::default()
            },
        )
        .expect("plan");
        assert_eq!(kinds(&plan), vec!["missing-binaries"]);
        assert_eq!(
            plan.blockers[0].message,
            "the binaries of v1.20.3-test.0 are not on disk: kube-proxy, kubelet not found in --bin-dir /next"
        );
    }

    #[test]
    fn a_binary_of_another_version_is_named() {
        let mut bins = binaries("v1.20.3-test.0", "3.4.23");
        bins.insert(
            names::KUBE_SCHEDULER.into(),
            BinaryOnDisk::Found {
                path: "/next/kube-scheduler".into(),
                version: v(1, 20, 2),
            },
        );
        let plan = decide(&observed(bins), &experimental()).expect("plan");
        assert_eq!(kinds(&plan), vec!["binary-version-mismatch"]);
        assert_eq!(
            plan.blockers[0].message,
            "/next/kube-scheduler --version says v1.20.2, not v1.20.3-test.0"
        );
    }

    #[test]
    fn a_version_that_skips_a_minor_is_blocked_before_anything_else() {
        let plan = decide(
            &observed(binaries("v1.20.3-test.0", "3.4.23")),
            &Request {
                version: Some(v(1, 22, 0)),
                ..Request::default()
            },
        )
        .expect("plan");
        assert_eq!(kinds(&plan)[0], "skips-minor");
        assert!(kinds(&plan).contains(&"binary-version-mismatch"));
        assert!(!plan.upgrade_available);
    }

    #[test]
    fn etcd_from_disk_moves_a_minor_and_the_rollback_says_so() {
        let plan = decide(
            &observed(binaries("v1.20.3-test.0", "3.5.16")),
            &experimental(),
        )
        .expect("plan");
        let e = plan.etcd.as_ref().expect("etcd plan");
        assert_eq!(
            (e.step, e.image_tag.as_str()),
            (Some(EtcdStep::Minor), "3.5.16-0")
        );
        assert!(
            plan.components
                .iter()
                .any(|c| c.name == "etcd" && c.available == "3.5.16")
        );
        assert!(
            plan.rollback
                .iter()
                .any(|l| l.contains("point of no return")),
            "{:?}",
            plan.rollback
        );
    }

    #[test]
    fn an_older_etcd_on_disk_is_a_blocker() {
        let mut o = observed(binaries("v1.20.3-test.0", "3.4.23"));
        if let Some(m) = o.etcd.as_mut() {
            m[0].server = Ok(v(3, 5, 16));
        }
        let plan = decide(&o, &experimental()).expect("plan");
        assert_eq!(kinds(&plan), vec!["etcd"]);
        assert!(plan.blockers[0].message.contains("never downgraded"));
    }

    #[test]
    fn nothing_on_disk_and_nothing_answering() {
        let mut bins = BTreeMap::new();
        bins.insert(names::KUBE_APISERVER.to_string(), BinaryOnDisk::Missing);
        let plan = decide(&observed(bins), &Request::default()).expect("plan");
        assert_eq!(plan.target, None);
        assert_eq!(kinds(&plan), vec!["no-binaries"]);
        assert!(render(&plan).contains("pass it with --bin-dir"));

        let mut o = observed(BTreeMap::new());
        o.api_servers[0].version = Err("connection refused".into());
        assert!(matches!(
            decide(&o, &Request::default()),
            Err(PlanError::NoApiServer(_))
        ));
    }

    #[test]
    fn same_version_on_disk_is_up_to_date() {
        let plan = decide(
            &observed(binaries("v1.20.2", "3.4.23")),
            &Request::default(),
        )
        .expect("plan");
        assert!(plan.blockers.is_empty(), "{:?}", plan.blockers);
        assert!(!plan.upgrade_available);
        assert!(render(&plan).contains("The cluster already runs v1.20.2"));
    }

    #[test]
    fn json_has_the_interface_fields() {
        let plan = decide(
            &observed(binaries("v1.20.3-test.0", "3.4.23")),
            &Request::default(),
        )
        .expect("plan");
        let json = serde_json::to_value(&plan).expect("serializes");
        assert_eq!(json["target"], "v1.20.3-test.0");
        assert_eq!(json["cluster_version"], "v1.20.2");
        assert_eq!(json["blockers"][0]["kind"], "experimental");
        assert_eq!(json["blockers"][0]["severity"], "skippable");
        assert_eq!(json["components"][0]["name"], "kube-apiserver");
    }

    #[test]
    fn tabwriter_pads_like_go() {
        assert_eq!(
            tabwriter(&[["A", "B", "C"], ["long-component-name", "x", "y"]]),
            "A                     B         C\nlong-component-name   x         y\n"
        );
    }
}
