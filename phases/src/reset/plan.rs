//! What `reset` deletes, decided purely from the node record (or, on a node set up before the
//! record existed, from kubeboot's default layout) and a few observed facts: an ordered list
//! of steps, each of which tolerates its target being gone already, with the record itself
//! removed last, so a reset killed at any step finishes when run again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use components::{Layout, names};

use crate::node_record::{NodeRecord, pki_files};

/// One deletion, on a path of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A file kubeboot wrote (and the hidden temporaries of a write that was killed).
    RemoveFile(PathBuf),
    /// The contents of a directory whose every entry is kubeboot's or its components'
    /// (the kubelet's directory, the agent's state, etcd's data where kubeboot ran etcd).
    ClearDir(PathBuf),
    /// A directory kubeboot created, once it is empty.
    RemoveDirIfEmpty(PathBuf),
    /// The node record: last, so that an interrupted reset still knows what to delete.
    RemoveRecord(PathBuf),
}

impl Step {
    /// The path the step acts on.
    pub fn path(&self) -> &Path {
        match self {
            Step::RemoveFile(p)
            | Step::ClearDir(p)
            | Step::RemoveDirIfEmpty(p)
            | Step::RemoveRecord(p) => p,
        }
    }
}

/// What reset observed before deciding.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The record as read, `None` on a node set up before it existed.
    pub record: Option<NodeRecord>,
    /// An etcd static pod manifest exists (only consulted without a record).
    pub etcd_manifest: bool,
    /// The recorded etcd data directories (node paths) that hold `member/`.
    pub etcd_with_member: BTreeSet<PathBuf>,
    /// `--cert-dir`, a node path, validated.
    pub cert_dir_flag: Option<PathBuf>,
    /// libcni's cached results of kubeboot's network (`/var/lib/cni/results/kubeboot-*`),
    /// paths of the layout.
    pub cni_results: Vec<PathBuf>,
}

/// The decision: the steps in order, and what to tell the user about what stays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The deletions, in order.
    pub steps: Vec<Step>,
    /// `[reset]` lines about what is left alone, and why.
    pub notes: Vec<String>,
}

/// The record reset works from: the one on disk, or the default layout's.
pub fn effective_record(obs: &Observed) -> NodeRecord {
    let mut record = obs
        .record
        .clone()
        .unwrap_or_else(|| NodeRecord::default_layout(obs.etcd_manifest));
    if let Some(dir) = &obs.cert_dir_flag {
        record.cert_dirs.insert(dir.clone());
    }
    record
}

/// Decides what reset deletes (pure).
pub fn plan(layout: &Layout, obs: &Observed) -> Plan {
    let record = effective_record(obs);
    let at = |p: &Path| layout.node_path(p);
    let mut plan = Plan::default();
    if obs.record.is_none() {
        plan.notes.push(format!(
            "No node record {:?} (a node set up before kubeboot kept one): cleaning kubeboot's default paths only",
            layout.node_record().display().to_string()
        ));
    }

    // Files: what was recorded, the PKI files kubeboot knows in each certificate directory,
    // and kubeboot's own CNI configuration.
    let mut files: BTreeSet<PathBuf> = record.files.iter().map(|f| at(f)).collect();
    for dir in &record.cert_dirs {
        files.extend(pki_files().iter().map(|f| at(dir).join(f)));
    }
    if !record.cni_bridges.is_empty() {
        files.insert(at(Path::new(names::CNI_CONF_DIR)).join(names::KUBEBOOT_CNI_CONFLIST));
        files.extend(obs.cni_results.iter().cloned());
    }
    plan.steps.extend(files.into_iter().map(Step::RemoveFile));

    // Directories whose whole content is kubeboot's: its own state, its containerd's, its
    // run directory, the kubelet's directory, its CNI network's address leases.
    let mut clear: Vec<PathBuf> = vec![
        layout.agent_state_dir(),
        layout.state_dir().join("containerd"),
        layout.run_dir(),
        layout.agent_manifests_dir(),
        layout.tmp_dir(),
    ];
    clear.extend(record.kubelet_dirs.iter().map(|d| at(d)));
    if !record.cni_bridges.is_empty() {
        clear.push(
            at(Path::new(names::CNI_STATE_DIR))
                .join("networks")
                .join(names::KUBEBOOT_CNI_NETWORK),
        );
    }

    // etcd's data only where kubeboot ran a local etcd, and only if it looks like etcd's.
    if record.etcd_data_dirs.is_empty() {
        // kubeadm: cmd/phases/reset/removeetcdmember.go, "No etcd config found".
        plan.notes
            .push("No etcd config found. Assuming external etcd".to_string());
        plan.notes
            .push("Please, manually reset etcd to prevent further issues".to_string());
    }
    for dir in &record.etcd_data_dirs {
        if obs.etcd_with_member.contains(dir) {
            clear.push(at(dir));
        } else {
            plan.notes.push(format!(
                "Leaving the etcd data directory {:?}: it holds no member/ directory, so it is not the data of the etcd kubeboot ran",
                at(dir).display().to_string()
            ));
        }
    }
    plan.steps.extend(clear.into_iter().map(Step::ClearDir));

    // Directories kubeboot created, deepest first, once empty (a certificate directory's
    // etcd/ subdirectory included).
    let mut dirs: Vec<PathBuf> = record
        .created_dirs
        .iter()
        .filter(|d| components::layout::protected_reason(d).is_none())
        .map(|d| at(d))
        .collect();
    dirs.extend(record.cert_dirs.iter().map(|d| at(d).join("etcd")));
    if !record.cni_bridges.is_empty() {
        // Made by the CNI plugins for kubeboot's network; another network's state keeps them.
        let cni = at(Path::new(names::CNI_STATE_DIR));
        dirs.extend([
            cni.join("networks").join(names::KUBEBOOT_CNI_NETWORK),
            cni.join("networks"),
            cni.join("results"),
            cni,
        ]);
    }
    let mut dirs: Vec<PathBuf> = dirs
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs.dedup();
    plan.steps
        .extend(dirs.into_iter().map(Step::RemoveDirIfEmpty));

    plan.steps.push(Step::RemoveRecord(layout.node_record()));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(plan: &Plan) -> Vec<&Path> {
        plan.steps
            .iter()
            .filter(|s| matches!(s, Step::RemoveFile(_)))
            .map(Step::path)
            .collect()
    }

    fn cleared(plan: &Plan) -> Vec<&Path> {
        plan.steps
            .iter()
            .filter(|s| matches!(s, Step::ClearDir(_)))
            .map(Step::path)
            .collect()
    }

    #[test]
    fn no_record_and_no_etcd_manifest_leaves_var_lib_etcd_and_says_so() {
        let plan = plan(&Layout::host(), &Observed::default());
        assert!(!cleared(&plan).contains(&Path::new("/var/lib/etcd")));
        assert!(
            plan.notes
                .iter()
                .any(|n| n == "No etcd config found. Assuming external etcd")
        );
        // The default layout: known files, never a whole certificate directory.
        assert!(files(&plan).contains(&Path::new("/etc/kubernetes/pki/ca.key")));
        assert!(files(&plan).contains(&Path::new("/etc/kubernetes/admin.conf")));
        assert!(!cleared(&plan).contains(&Path::new("/etc/kubernetes/pki")));
        assert!(cleared(&plan).contains(&Path::new("/var/lib/kubelet")));
        assert_eq!(
            plan.steps.last(),
            Some(&Step::RemoveRecord(
                "/var/lib/kubeboot/node-record.json".into()
            ))
        );
    }

    #[test]
    fn etcd_data_is_cleared_only_where_recorded_and_holding_member() {
        let record = NodeRecord {
            etcd_data_dirs: ["/data/etcd".into(), "/var/lib/etcd".into()].into(),
            ..Default::default()
        };
        let plan = plan(
            &Layout::host(),
            &Observed {
                record: Some(record),
                etcd_with_member: ["/data/etcd".into()].into(),
                ..Default::default()
            },
        );
        assert!(cleared(&plan).contains(&Path::new("/data/etcd")));
        assert!(!cleared(&plan).contains(&Path::new("/var/lib/etcd")));
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("\"/var/lib/etcd\": it holds no member/"))
        );
    }

    #[test]
    fn cert_dir_flag_adds_known_files_only_and_protected_created_dirs_are_never_removed() {
        let record = NodeRecord {
            created_dirs: ["/etc".into(), "/srv/kb".into(), "/srv/kb/pki".into()].into(),
            ..Default::default()
        };
        let plan = plan(
            &Layout::under("/r"),
            &Observed {
                record: Some(record),
                cert_dir_flag: Some("/srv/kb/pki".into()),
                ..Default::default()
            },
        );
        assert!(files(&plan).contains(&Path::new("/r/srv/kb/pki/etcd/ca.crt")));
        assert!(!cleared(&plan).iter().any(|p| p.starts_with("/r/srv")));
        let rmdirs: Vec<&Path> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::RemoveDirIfEmpty(_)))
            .map(Step::path)
            .collect();
        assert_eq!(
            rmdirs,
            vec![
                Path::new("/r/srv/kb/pki/etcd"),
                Path::new("/r/srv/kb/pki"),
                Path::new("/r/srv/kb")
            ]
        );
    }
}
