//! Which version a cluster may be upgraded (or downgraded) to, as kubeadm's version skew policy
//! says (kubeadm: app/phases/upgrade/policy.go, EnforceVersionPolicies), and which etcd version
//! an upgrade moves to (app/phases/upgrade/staticpods.go, performEtcdStaticPodUpgrade;
//! app/constants/constants.go, EtcdSupportedVersion).
//!
//! Pure: the versions come in as parameters ([`PolicyInput`]); the answer is every rule the
//! requested version breaks ([`Violation`]), each with a plain-words message and its fix, plus
//! what is allowed but worth saying ([`Warning`]). `upgrade plan` prints them; `upgrade apply`
//! refuses a [`Severity::Mandatory`] one always and a [`Severity::Skippable`] one unless
//! forced, as kubeadm's `--force`.

use std::collections::BTreeMap;
use std::fmt;

use crate::catalogue;
use crate::config::validate::{MAX_SUPPORTED_MINOR, MIN_SUPPORTED_VERSION};
use crate::version::Version;

/// How many minors the control plane may move up in one upgrade (kubeadm:
/// MaximumAllowedMinorVersionUpgradeSkew).
pub const MAX_MINOR_UPGRADE_SKEW: u32 = 1;
/// How many minors the control plane may move down in one downgrade (kubeadm:
/// MaximumAllowedMinorVersionDowngradeSkew).
pub const MAX_MINOR_DOWNGRADE_SKEW: u32 = 1;
/// How many minors a kubelet may trail the control plane (kubeadm:
/// MaximumAllowedMinorVersionKubeletSkew; Kubernetes 1.20's version skew policy).
pub const MAX_MINOR_KUBELET_SKEW: u32 = 1;

/// The versions an upgrade policy decision needs, observed by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInput {
    /// The cluster's version: the API server's (kubeadm: VersionGetter.ClusterVersion).
    pub cluster: Version,
    /// The version asked for.
    pub target: Version,
    /// Kubelet versions and how many nodes run each (kubeadm: KubeletVersions); `None`
    /// when they could not be read, which skips the kubelet rules as kubeadm does.
    pub kubelets: Option<BTreeMap<Version, u32>>,
    /// `--allow-experimental-upgrades`: any pre-release is fine.
    pub allow_experimental: bool,
    /// `--allow-release-candidate-upgrades`: `-rc.N` pre-releases are fine.
    pub allow_release_candidate: bool,
}

/// Whether a rule can be overridden (kubeadm: VersionSkewPolicyErrors.Mandatory / .Skippable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Never allowed.
    Mandatory,
    /// Allowed only when the user says so (`upgrade apply --force`, or the flag in the fix).
    Skippable,
}

/// A rule of the version skew policy that the requested version breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// Below the oldest control plane kubeboot runs (kubeadm: MinimumControlPlaneVersion).
    #[error("{target} is older than {minimum}, the oldest control plane kubeboot runs")]
    BelowMinimum {
        /// The version asked for.
        target: Version,
        /// kubeboot's oldest control plane.
        minimum: Version,
    },
    /// More than one minor up.
    #[error(
        "upgrading from {current} to {target} skips a minor version: the control plane moves one minor at a time"
    )]
    SkipsMinor {
        /// The cluster's version.
        current: Version,
        /// The version asked for.
        target: Version,
    },
    /// More than one minor down.
    #[error(
        "downgrading from {current} to {target} goes down more than one minor version: a downgrade goes back one minor at a time"
    )]
    DowngradeTooFar {
        /// The cluster's version.
        current: Version,
        /// The version asked for.
        target: Version,
    },
    /// A minor this kubeboot has no tables for (kubeadm: a version newer than kubeadm's own).
    #[error("{target} is newer than v{}.{}, the newest minor this kubeboot knows", newest.0, newest.1)]
    NewerThanKubeboot {
        /// The version asked for.
        target: Version,
        /// The newest `(major, minor)` kubeboot's catalogue covers.
        newest: (u32, u32),
    },
    /// A pre-release other than a release candidate, not allowed by a flag.
    #[error("{target} is a pre-release (an experimental version)")]
    Experimental {
        /// The version asked for.
        target: Version,
    },
    /// A release candidate, not allowed by a flag.
    #[error("{target} is a release candidate")]
    ReleaseCandidate {
        /// The version asked for.
        target: Version,
    },
    /// Kubelets more than one minor older than the target.
    #[error(
        "kubelets at {} would be more than one minor older than the control plane at {target}",
        list(versions)
    )]
    KubeletsTooOld {
        /// The version asked for.
        target: Version,
        /// The kubelet versions that would be too old.
        versions: Vec<Version>,
    },
    /// Kubelets newer than the target (a downgrade below them): a kubelet must never be newer
    /// than the API server.
    #[error(
        "kubelets at {} are newer than {target}: a kubelet must never be newer than the API server",
        list(versions)
    )]
    KubeletsNewer {
        /// The version asked for.
        target: Version,
        /// The kubelet versions that are newer.
        versions: Vec<Version>,
    },
}

fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(Version::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True for a release candidate (`-rc.1`), as kubeadm tells them apart (`HasPrefix "rc"`).
fn is_release_candidate(v: &Version) -> bool {
    v.pre.as_deref().is_some_and(|p| p.starts_with("rc"))
}

impl Violation {
    /// Whether the rule can be overridden, as kubeadm sorts it.
    pub fn severity(&self) -> Severity {
        match self {
            Violation::BelowMinimum { .. } => Severity::Mandatory,
            // kubeadm: a released version must respect the skew; a CI/dev/experimental one
            // may jump, but only when forced.
            Violation::SkipsMinor { target, .. }
            | Violation::DowngradeTooFar { target, .. }
            | Violation::NewerThanKubeboot { target, .. } => {
                if target.pre.is_some() {
                    Severity::Skippable
                } else {
                    Severity::Mandatory
                }
            }
            Violation::Experimental { .. }
            | Violation::ReleaseCandidate { .. }
            | Violation::KubeletsTooOld { .. }
            | Violation::KubeletsNewer { .. } => Severity::Skippable,
        }
    }

    /// What the user can do about it, in plain words.
    pub fn fix(&self) -> String {
        match self {
            Violation::BelowMinimum { minimum, .. } => {
                format!("choose {minimum} or newer")
            }
            Violation::SkipsMinor { current, .. } => format!(
                "upgrade to the latest v{}.{}.x first, then from there to the next minor",
                current.major,
                current.minor + 1
            ),
            Violation::DowngradeTooFar { current, .. } => format!(
                "downgrade to v{}.{}.x first, one minor at a time",
                current.major,
                current.minor.saturating_sub(1)
            ),
            Violation::NewerThanKubeboot { .. } => {
                "use a kubeboot release that knows this Kubernetes minor".to_string()
            }
            Violation::Experimental { .. } => {
                "pass --allow-experimental-upgrades if you mean to run it".to_string()
            }
            Violation::ReleaseCandidate { .. } => {
                "pass --allow-release-candidate-upgrades (or --allow-experimental-upgrades) if you mean to run it"
                    .to_string()
            }
            Violation::KubeletsTooOld { versions, .. } => format!(
                "upgrade the kubelets at {} first (\"kubeboot upgrade node\" on those nodes, one minor at a time)",
                list(versions)
            ),
            Violation::KubeletsNewer { versions, .. } => format!(
                "choose a version no older than the newest kubelet ({})",
                versions.iter().max().map_or_else(String::new, Version::to_string)
            ),
        }
    }

    /// A short stable name for `-o json` and tests (`skips-minor`).
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::BelowMinimum { .. } => "below-minimum",
            Violation::SkipsMinor { .. } => "skips-minor",
            Violation::DowngradeTooFar { .. } => "downgrade-too-far",
            Violation::NewerThanKubeboot { .. } => "newer-than-kubeboot",
            Violation::Experimental { .. } => "experimental",
            Violation::ReleaseCandidate { .. } => "release-candidate",
            Violation::KubeletsTooOld { .. } => "kubelets-too-old",
            Violation::KubeletsNewer { .. } => "kubelets-newer",
        }
    }
}

/// Allowed, but worth saying before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The target is older than the cluster (one minor at most, or a patch).
    Downgrade {
        /// The cluster's version.
        current: Version,
        /// The version asked for.
        target: Version,
    },
    /// Kubelets that will trail the new control plane by one minor (allowed; upgrade them
    /// next).
    KubeletsWillTrail {
        /// The version asked for.
        target: Version,
        /// The kubelet versions one minor older than the target.
        versions: Vec<Version>,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Downgrade { current, target } => write!(
                f,
                "{target} is older than the cluster's {current}: this is a downgrade"
            ),
            Warning::KubeletsWillTrail { target, versions } => write!(
                f,
                "kubelets at {} will be one minor older than the control plane at {target} (allowed); upgrade them with \"kubeboot upgrade node\" next",
                list(versions)
            ),
        }
    }
}

/// Every rule `input.target` breaks and every warning, in kubeadm's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyReport {
    /// The rules broken.
    pub violations: Vec<Violation>,
    /// What is allowed but worth saying.
    pub warnings: Vec<Warning>,
}

impl PolicyReport {
    /// The violations that nothing overrides.
    pub fn mandatory(&self) -> impl Iterator<Item = &Violation> {
        self.violations
            .iter()
            .filter(|v| v.severity() == Severity::Mandatory)
    }

    /// True when nothing stands in the way.
    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks `input.target` against the version skew policy (kubeadm: EnforceVersionPolicies,
/// with kubeboot's supported range standing in for kubeadm's own version).
pub fn enforce(input: &PolicyInput) -> PolicyReport {
    let PolicyInput {
        cluster, target, ..
    } = input;
    let mut r = PolicyReport::default();
    if target.minor_pair() < MIN_SUPPORTED_VERSION.minor_pair() {
        r.violations.push(Violation::BelowMinimum {
            target: target.clone(),
            minimum: MIN_SUPPORTED_VERSION,
        });
    }
    let minors = |v: &Version| i64::from(v.major) * 1000 + i64::from(v.minor);
    let step = minors(target) - minors(cluster);
    if step > i64::from(MAX_MINOR_UPGRADE_SKEW) {
        r.violations.push(Violation::SkipsMinor {
            current: cluster.clone(),
            target: target.clone(),
        });
    }
    if -step > i64::from(MAX_MINOR_DOWNGRADE_SKEW) {
        r.violations.push(Violation::DowngradeTooFar {
            current: cluster.clone(),
            target: target.clone(),
        });
    }
    if target.minor_pair() > MAX_SUPPORTED_MINOR {
        r.violations.push(Violation::NewerThanKubeboot {
            target: target.clone(),
            newest: MAX_SUPPORTED_MINOR,
        });
    }
    // kubeadm: detectUnstableVersionError.
    if target.pre.is_some() && !input.allow_experimental {
        if !is_release_candidate(target) {
            r.violations.push(Violation::Experimental {
                target: target.clone(),
            });
        } else if !input.allow_release_candidate {
            r.violations.push(Violation::ReleaseCandidate {
                target: target.clone(),
            });
        }
    }
    if let Some(kubelets) = &input.kubelets {
        // kubeadm: detectTooOldKubelets.
        let too_old: Vec<Version> = kubelets
            .keys()
            .filter(|k| minors(target) > minors(k) + i64::from(MAX_MINOR_KUBELET_SKEW))
            .cloned()
            .collect();
        if !too_old.is_empty() {
            r.violations.push(Violation::KubeletsTooOld {
                target: target.clone(),
                versions: too_old,
            });
        }
        // The version skew policy: a kubelet is never newer than the API server; kubeadm
        // 1.20 does not check this for a downgrade, kubeboot does.
        let newer: Vec<Version> = kubelets
            .keys()
            .filter(|k| core(k) > core(target))
            .cloned()
            .collect();
        if !newer.is_empty() {
            r.violations.push(Violation::KubeletsNewer {
                target: target.clone(),
                versions: newer,
            });
        }
        let trailing: Vec<Version> = kubelets
            .keys()
            .filter(|k| minors(target) == minors(k) + 1)
            .cloned()
            .collect();
        if !trailing.is_empty() {
            r.warnings.push(Warning::KubeletsWillTrail {
                target: target.clone(),
                versions: trailing,
            });
        }
    }
    if target < cluster {
        r.warnings.push(Warning::Downgrade {
            current: cluster.clone(),
            target: target.clone(),
        });
    }
    r
}

/// `(major, minor, patch)`: a kubelet built from the same release as the API server, a
/// pre-release of it included, is not "newer".
fn core(v: &Version) -> (u32, u32, u32) {
    (v.major, v.minor, v.patch)
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

/// Where the target etcd version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdSource {
    /// `etcd.local.imageTag` in the configuration (kubeadm: cfg.Etcd.Local.ImageTag).
    ImageTag,
    /// The `--version` of the etcd binary on disk, in the `--bin-dir`s: kubeboot runs host
    /// binaries, so the binary the agent would run is the version an upgrade moves to.
    Binary,
    /// The catalogue's etcd for the target Kubernetes minor (kubeadm: EtcdSupportedVersion
    /// over SupportedEtcdVersion), when neither of the above says.
    Catalogue,
}

/// The etcd an upgrade moves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// The etcd version (an image revision such as the `-0` of `3.4.13-0` removed).
    pub version: Version,
    /// The image tag the new etcd manifest carries (the process runtime runs the etcd binary
    /// of the tag's minor).
    pub image_tag: String,
    /// Where the version came from.
    pub source: EtcdSource,
}

/// A problem with the target etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdViolation {
    /// `etcd.local.imageTag` is not a version.
    #[error("etcd.local.imageTag: {tag:?} is not an etcd version (e.g. 3.5.16-0)")]
    BadImageTag {
        /// What the configuration says.
        tag: String,
    },
    /// The binary on disk is not of the minor the image tag names: the agent would refuse it.
    #[error("etcd.local.imageTag {tag:?} wants etcd {}.{}.x, but the etcd binary on disk is {binary}", wanted.major, wanted.minor)]
    BinaryMismatch {
        /// The configured tag.
        tag: String,
        /// Its version.
        wanted: Version,
        /// The binary's version.
        binary: Version,
    },
    /// More than one etcd minor up: etcd upgrades one minor at a time.
    #[error("etcd {current} to {target} skips a minor version: etcd upgrades one minor at a time")]
    SkipsMinor {
        /// The running etcd.
        current: Version,
        /// The target.
        target: Version,
    },
    /// Older than the running etcd: etcd cannot go back a minor once its cluster version
    /// moved, and kubeadm never moves etcd back (it skips the etcd step instead).
    #[error("etcd {target} is older than the running {current}: etcd is never downgraded")]
    Downgrade {
        /// The running etcd.
        current: Version,
        /// The target.
        target: Version,
    },
}

impl EtcdViolation {
    /// What the user can do about it.
    pub fn fix(&self) -> String {
        match self {
            EtcdViolation::BadImageTag { .. } => {
                "set etcd.local.imageTag to an etcd version such as 3.5.16-0, or remove it".into()
            }
            EtcdViolation::BinaryMismatch { wanted, .. } => format!(
                "put etcd {}.{}.x first in --bin-dir, or change etcd.local.imageTag",
                wanted.major, wanted.minor
            ),
            EtcdViolation::SkipsMinor { current, .. } => format!(
                "move etcd to {}.{}.x first",
                current.major,
                current.minor + 1
            ),
            EtcdViolation::Downgrade { current, .. } => format!(
                "keep etcd at {current}: put that etcd first in --bin-dir or set etcd.local.imageTag to it"
            ),
        }
    }
}

/// Parses an etcd image tag or version: `3.4.13-0` (an image revision, dropped), `v3.5.16`.
///
/// # Errors
/// [`EtcdViolation::BadImageTag`].
pub fn etcd_version_of_tag(tag: &str) -> Result<Version, EtcdViolation> {
    let bad = || EtcdViolation::BadImageTag {
        tag: tag.to_string(),
    };
    let mut v: Version = tag.parse().map_err(|_| bad())?;
    if v.pre
        .as_deref()
        .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        v.pre = None;
    }
    Ok(v)
}

/// Chooses the etcd an upgrade to `kubernetes` moves to: the configured image tag, else the
/// binary on disk, else the catalogue's (kubeadm: performEtcdStaticPodUpgrade's
/// desiredEtcdVersion, with the binary on disk in between because kubeboot runs binaries).
///
/// # Errors
/// A tag that is not a version, or one whose minor the binary on disk does not have.
pub fn etcd_target(
    kubernetes: &Version,
    image_tag: Option<&str>,
    binary: Option<&Version>,
) -> Result<EtcdTarget, EtcdViolation> {
    if let Some(tag) = image_tag.filter(|t| !t.is_empty()) {
        let version = etcd_version_of_tag(tag)?;
        if let Some(b) = binary
            && b.minor_pair() != version.minor_pair()
        {
            return Err(EtcdViolation::BinaryMismatch {
                tag: tag.to_string(),
                wanted: version,
                binary: b.clone(),
            });
        }
        return Ok(EtcdTarget {
            version,
            image_tag: tag.to_string(),
            source: EtcdSource::ImageTag,
        });
    }
    let catalogue_tag = catalogue::images_for(kubernetes).etcd;
    let catalogue_version = etcd_version_of_tag(catalogue_tag)?;
    match binary {
        Some(b) => Ok(EtcdTarget {
            version: b.clone(),
            // The catalogue's tag while it names the binary's minor (the manifest stays as
            // kubeadm writes it); else the binary's own version, so the agent runs it.
            image_tag: if catalogue_version.minor_pair() == b.minor_pair() {
                catalogue_tag.to_string()
            } else {
                format!("{}.{}.{}-0", b.major, b.minor, b.patch)
            },
            source: EtcdSource::Binary,
        }),
        None => Ok(EtcdTarget {
            version: catalogue_version,
            image_tag: catalogue_tag.to_string(),
            source: EtcdSource::Catalogue,
        }),
    }
}

/// What the etcd step of an upgrade does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EtcdStep {
    /// Same version: the etcd manifest may still change (flags), the data does not.
    Unchanged,
    /// A patch release: the data format stays.
    Patch,
    /// A new minor: once every member runs it, etcd moves its cluster version and migrates
    /// the data; there is no way back but restoring a snapshot.
    Minor,
}

/// The etcd step from `current` to `target`.
///
/// # Errors
/// A downgrade, or more than one minor up.
pub fn etcd_step(current: &Version, target: &Version) -> Result<EtcdStep, EtcdViolation> {
    if core(target) < core(current) {
        return Err(EtcdViolation::Downgrade {
            current: current.clone(),
            target: target.clone(),
        });
    }
    if target.major != current.major || target.minor > current.minor + 1 {
        return Err(EtcdViolation::SkipsMinor {
            current: current.clone(),
            target: target.clone(),
        });
    }
    Ok(if target.minor == current.minor + 1 {
        EtcdStep::Minor
    } else if core(target) == core(current) {
        EtcdStep::Unchanged
    } else {
        EtcdStep::Patch
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::v;

    fn ver(s: &str) -> Version {
        s.parse().expect("a test version")
    }

    fn input(cluster: &str, target: &str) -> PolicyInput {
        PolicyInput {
            cluster: ver(cluster),
            target: ver(target),
            kubelets: Some(BTreeMap::from([(ver(cluster), 1)])),
            allow_experimental: false,
            allow_release_candidate: false,
        }
    }

    fn kinds(r: &PolicyReport) -> Vec<&'static str> {
        r.violations.iter().map(Violation::kind).collect()
    }

    #[test]
    fn patch_and_next_minor_upgrades_are_allowed() {
        for (from, to) in [
            ("v1.20.2", "v1.20.5"),
            ("v1.20.2", "v1.21.0"),
            ("v1.20.2", "v1.21.14"),
            ("v1.32.1", "v1.33.0"),
            // kubeadm: re-applying the same version is allowed (it reconfigures).
            ("v1.20.2", "v1.20.2"),
        ] {
            let r = enforce(&input(from, to));
            assert!(r.allowed(), "{from} -> {to}: {:?}", r.violations);
        }
    }

    #[test]
    fn one_nineteen_to_one_twenty_is_allowed_and_warns_about_the_kubelets() {
        let r = enforce(&input("v1.19.7", "v1.20.2"));
        assert!(r.allowed(), "{:?}", r.violations);
        assert_eq!(
            r.warnings,
            vec![Warning::KubeletsWillTrail {
                target: ver("v1.20.2"),
                versions: vec![ver("v1.19.7")]
            }]
        );
        assert!(r.warnings[0].to_string().contains("kubeboot upgrade node"));
    }

    #[test]
    fn skipping_a_minor_is_refused_for_releases() {
        let r = enforce(&input("v1.20.2", "v1.22.0"));
        assert_eq!(kinds(&r), vec!["skips-minor", "kubelets-too-old"]);
        let skip = &r.violations[0];
        assert_eq!(skip.severity(), Severity::Mandatory);
        assert_eq!(
            skip.to_string(),
            "upgrading from v1.20.2 to v1.22.0 skips a minor version: the control plane moves one minor at a time"
        );
        assert_eq!(
            skip.fix(),
            "upgrade to the latest v1.21.x first, then from there to the next minor"
        );
        assert_eq!(r.mandatory().count(), 1);
    }

    #[test]
    fn skipping_a_minor_with_a_pre_release_needs_force() {
        let mut i = input("v1.20.2", "v1.22.0-alpha.1");
        i.allow_experimental = true;
        let r = enforce(&i);
        assert_eq!(kinds(&r), vec!["skips-minor", "kubelets-too-old"]);
        assert!(
            r.violations
                .iter()
                .all(|v| v.severity() == Severity::Skippable)
        );
    }

    #[test]
    fn downgrades_go_back_one_minor_at_most() {
        let one = enforce(&input("v1.21.3", "v1.20.2"));
        assert_eq!(
            kinds(&one),
            vec!["kubelets-newer"],
            "kubelets at 1.21 stay newer"
        );
        assert!(one.warnings.contains(&Warning::Downgrade {
            current: ver("v1.21.3"),
            target: ver("v1.20.2")
        }));
        let mut no_kubelets = input("v1.21.3", "v1.20.2");
        no_kubelets.kubelets = Some(BTreeMap::from([(ver("v1.20.2"), 2)]));
        assert!(enforce(&no_kubelets).allowed());

        let two = enforce(&input("v1.22.0", "v1.20.2"));
        assert_eq!(kinds(&two)[0], "downgrade-too-far");
        assert_eq!(two.violations[0].severity(), Severity::Mandatory);
        assert_eq!(
            two.violations[0].fix(),
            "downgrade to v1.21.x first, one minor at a time"
        );
    }

    #[test]
    fn patch_downgrade_is_a_warning_only_without_newer_kubelets() {
        let mut i = input("v1.20.5", "v1.20.2");
        i.kubelets = Some(BTreeMap::from([(ver("v1.20.2"), 3)]));
        let r = enforce(&i);
        assert!(r.allowed());
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].to_string().contains("this is a downgrade"));
    }

    #[test]
    fn pre_releases_need_their_flag() {
        let test_build = enforce(&input("v1.20.2", "v1.20.3-test.0"));
        assert_eq!(kinds(&test_build), vec!["experimental"]);
        assert_eq!(test_build.violations[0].severity(), Severity::Skippable);
        assert_eq!(
            test_build.violations[0].to_string(),
            "v1.20.3-test.0 is a pre-release (an experimental version)"
        );
        assert!(
            test_build.violations[0]
                .fix()
                .contains("--allow-experimental-upgrades")
        );

        let mut allowed = input("v1.20.2", "v1.20.3-test.0");
        allowed.allow_experimental = true;
        assert!(enforce(&allowed).allowed());
        // The release-candidate flag does not cover other pre-releases.
        let mut rc_flag = input("v1.20.2", "v1.20.3-test.0");
        rc_flag.allow_release_candidate = true;
        assert_eq!(kinds(&enforce(&rc_flag)), vec!["experimental"]);
    }

    #[test]
    fn release_candidates_need_either_flag() {
        let rc = enforce(&input("v1.20.2", "v1.21.0-rc.1"));
        assert_eq!(kinds(&rc), vec!["release-candidate"]);
        assert!(
            rc.violations[0]
                .fix()
                .contains("--allow-release-candidate-upgrades")
        );
        for (exp, rcf) in [(true, false), (false, true), (true, true)] {
            let mut i = input("v1.20.2", "v1.21.0-rc.1");
            i.allow_experimental = exp;
            i.allow_release_candidate = rcf;
            assert!(enforce(&i).allowed(), "experimental={exp} rc={rcf}");
        }
    }

    #[test]
    fn kubelets_more_than_one_minor_behind_the_target_block() {
        let mut i = input("v1.21.0", "v1.22.0");
        i.kubelets = Some(BTreeMap::from([(ver("v1.20.2"), 2), (ver("v1.21.0"), 1)]));
        let r = enforce(&i);
        assert_eq!(
            r.violations,
            vec![Violation::KubeletsTooOld {
                target: ver("v1.22.0"),
                versions: vec![ver("v1.20.2")]
            }]
        );
        assert_eq!(r.violations[0].severity(), Severity::Skippable);
        assert!(r.violations[0].fix().contains("v1.20.2"));
        assert!(r.warnings.iter().any(|w| matches!(w,
            Warning::KubeletsWillTrail { versions, .. } if versions == &vec![ver("v1.21.0")])));
    }

    #[test]
    fn unknown_kubelets_skip_the_kubelet_rules() {
        let mut i = input("v1.21.0", "v1.22.0");
        i.kubelets = None;
        let r = enforce(&i);
        assert!(r.allowed());
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn a_kubelet_of_the_test_build_is_not_newer_than_its_release() {
        let mut i = input("v1.20.3-test.0", "v1.20.3");
        i.kubelets = Some(BTreeMap::from([(ver("v1.20.3-test.0"), 1)]));
        assert!(enforce(&i).allowed());
    }

    #[test]
    fn outside_kubeboots_range() {
        let low = enforce(&input("v1.20.2", "v1.19.16"));
        assert_eq!(kinds(&low), vec!["below-minimum", "kubelets-newer"]);
        assert_eq!(low.violations[0].severity(), Severity::Mandatory);
        assert_eq!(low.violations[0].fix(), "choose v1.20.0 or newer");

        let high = enforce(&input("v1.33.2", "v1.34.0"));
        assert_eq!(kinds(&high), vec!["newer-than-kubeboot"]);
        assert_eq!(high.violations[0].severity(), Severity::Mandatory);
        assert_eq!(
            high.violations[0].to_string(),
            "v1.34.0 is newer than v1.33, the newest minor this kubeboot knows"
        );
    }

    /// kubeadm 1.20's constants.SupportedEtcdVersion for the minors it shares with the
    /// catalogue (app/constants/constants.go): 1.19, 1.20, 1.21 all pin 3.4.13-0.
    #[test]
    fn catalogue_etcd_matches_kubeadm_1_20s_table() {
        for (minor, tag) in [(19, "3.4.13-0"), (20, "3.4.13-0"), (21, "3.4.13-0")] {
            assert_eq!(
                catalogue::images_for(&v(1, minor, 0)).etcd,
                tag,
                "1.{minor}"
            );
        }
    }

    #[test]
    fn etcd_target_prefers_the_image_tag_then_the_binary_then_the_catalogue() {
        let k = v(1, 20, 3);
        let t = etcd_target(&k, Some("3.5.16-0"), Some(&v(3, 5, 16))).expect("tag");
        assert_eq!(
            (t.version, t.image_tag.as_str(), t.source),
            (v(3, 5, 16), "3.5.16-0", EtcdSource::ImageTag)
        );
        let t = etcd_target(&k, None, Some(&v(3, 5, 16))).expect("binary");
        assert_eq!(
            (t.version, t.image_tag.as_str(), t.source),
            (v(3, 5, 16), "3.5.16-0", EtcdSource::Binary)
        );
        // A binary of the catalogue's minor keeps the catalogue's tag, as kubeadm writes it.
        let t = etcd_target(&k, None, Some(&v(3, 4, 23))).expect("binary");
        assert_eq!(
            (t.version, t.image_tag.as_str(), t.source),
            (v(3, 4, 23), "3.4.13-0", EtcdSource::Binary)
        );
        let t = etcd_target(&k, Some(""), None).expect("catalogue");
        assert_eq!(
            (t.version, t.image_tag.as_str(), t.source),
            (v(3, 4, 13), "3.4.13-0", EtcdSource::Catalogue)
        );
    }

    #[test]
    fn etcd_target_refuses_a_bad_tag_or_a_binary_of_another_minor() {
        let k = v(1, 20, 3);
        let bad = etcd_target(&k, Some("latest"), None).unwrap_err();
        assert!(matches!(bad, EtcdViolation::BadImageTag { .. }));
        assert!(bad.fix().contains("3.5.16-0"));
        let mismatch = etcd_target(&k, Some("3.5.16-0"), Some(&v(3, 4, 23))).unwrap_err();
        assert_eq!(
            mismatch.to_string(),
            "etcd.local.imageTag \"3.5.16-0\" wants etcd 3.5.x, but the etcd binary on disk is v3.4.23"
        );
        assert!(mismatch.fix().contains("--bin-dir"));
    }

    #[test]
    fn etcd_steps() {
        assert_eq!(
            etcd_step(&v(3, 4, 23), &v(3, 4, 23)),
            Ok(EtcdStep::Unchanged)
        );
        assert_eq!(etcd_step(&v(3, 4, 13), &v(3, 4, 23)), Ok(EtcdStep::Patch));
        assert_eq!(etcd_step(&v(3, 4, 23), &v(3, 5, 16)), Ok(EtcdStep::Minor));
        let skip = etcd_step(&v(3, 4, 23), &v(3, 6, 0)).unwrap_err();
        assert!(matches!(skip, EtcdViolation::SkipsMinor { .. }));
        assert_eq!(skip.fix(), "move etcd to 3.5.x first");
        let down = etcd_step(&v(3, 5, 16), &v(3, 4, 23)).unwrap_err();
        assert_eq!(
            down.to_string(),
            "etcd v3.4.23 is older than the running v3.5.16: etcd is never downgraded"
        );
        assert!(matches!(
            etcd_step(&v(3, 4, 23), &v(4, 0, 0)),
            Err(EtcdViolation::SkipsMinor { .. })
        ));
    }

    #[test]
    fn etcd_tags_drop_the_image_revision() {
        assert_eq!(etcd_version_of_tag("3.4.13-0"), Ok(v(3, 4, 13)));
        assert_eq!(etcd_version_of_tag("v3.5.16"), Ok(v(3, 5, 16)));
        assert_eq!(
            etcd_version_of_tag("3.6.0-rc.1").map(|v| v.pre),
            Ok(Some("rc.1".to_string()))
        );
    }
}
