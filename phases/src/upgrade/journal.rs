//! The upgrade's journal, `/etc/kubernetes/tmp/kubeboot-upgrade.json`: what an upgrade in
//! progress has backed up and how far it got, written before each step that changes the node,
//! so that the same command run again after a crash (or a `kill -9`) resumes from it with the
//! backups of the first run (never backing up files the first run already changed), and a
//! rollback after a crash still finds what to put back.
//!
//! Pure apart from [`read`] and [`write`].

use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use components::Layout;
use serde::{Deserialize, Serialize};

/// The journal's file name in the layout's tmp directory.
pub const FILE: &str = "kubeboot-upgrade.json";

/// Where an upgrade in progress stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Journal {
    /// `apply` or `node`.
    pub command: String,
    /// The version being upgraded to.
    pub target: String,
    /// The backup directory (`/etc/kubernetes/tmp/kubeboot-backup-<stamp>`).
    pub backup_dir: PathBuf,
    /// The files backed up, as `(node path, copy in the backup directory)`; a file that did
    /// not exist has no copy (`None`): a rollback removes it.
    pub files: Vec<(PathBuf, Option<PathBuf>)>,
    /// The cluster objects backed up (`kind/namespace/name` -> file in the backup
    /// directory), for `apply` only.
    #[serde(default)]
    pub objects: Vec<(String, PathBuf)>,
    /// The copy of the local etcd's data directory taken with etcd stopped, once complete:
    /// `(data dir, copy)`. Only when one member moves to a new minor.
    #[serde(default)]
    pub etcd_data: Option<(PathBuf, PathBuf)>,
    /// etcd passed its point of no return (a new minor healthy on a single member, or the
    /// cluster version raised): a rollback leaves etcd as it is.
    #[serde(default)]
    pub etcd_committed: bool,
    /// The agent's `--bin-dir`s before the upgrade.
    #[serde(default)]
    pub agent_bin_dirs: Vec<PathBuf>,
    /// The agent's arguments (its executable left out) before the upgrade: a run killed
    /// while it restarted the agent (stopped, not started yet) leaves none running, and the
    /// next run starts it from these.
    #[serde(default)]
    pub agent_args: Vec<String>,
    /// The certificate/key pairs the upgrade renews, backed up: a run killed between a
    /// renewal's key and its certificate leaves a pair that does not match, which the next
    /// run puts back before it needs the component.
    #[serde(default)]
    pub key_pairs: Vec<KeyPair>,
    /// A rollback is under way: running the command again finishes it.
    #[serde(default)]
    pub rolling_back: bool,
}

/// A certificate and its key, with their copies in the backup directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyPair {
    /// The certificate on the node.
    pub cert: PathBuf,
    /// Its copy.
    pub cert_copy: PathBuf,
    /// The key on the node.
    pub key: PathBuf,
    /// Its copy.
    pub key_copy: PathBuf,
}

/// Whether a pair is torn: its key replaced, its certificate still the backed-up one. A
/// renewal writes the key first, then the certificate (phases::certs::renew), so this is a
/// renewal cut short; a pair with both replaced, or neither, matches.
pub fn torn(key: Option<&[u8]>, cert: Option<&[u8]>, key_copy: &[u8], cert_copy: &[u8]) -> bool {
    key != Some(key_copy) && cert == Some(cert_copy)
}

impl Journal {
    /// The backup copy of `path`, if the journal holds one; `Some(None)` when the file did
    /// not exist before the upgrade.
    pub fn backup_of(&self, path: &Path) -> Option<Option<&Path>> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.as_deref())
    }
}

/// The journal's path.
pub fn path(layout: &Layout) -> PathBuf {
    layout.tmp_dir().join(FILE)
}

/// Reads the journal; `None` when no upgrade is in progress.
///
/// # Errors
/// The file exists but cannot be read or parsed (names the file and what to do).
pub fn read(fs: &Fs, layout: &Layout) -> anyhow::Result<Option<Journal>> {
    let p = path(layout);
    let Some(text) = fs.read_string_if_exists(&p)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "the upgrade journal {:?} cannot be read: restore the backups it lists by hand or remove it to start afresh",
            p.display().to_string()
        )
    })
}

/// Writes the journal atomically (0600: it names backup paths only, but nobody else needs it).
///
/// # Errors
/// The file cannot be written.
pub fn write(fs: &Fs, layout: &Layout, j: &Journal) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(j).context("could not encode the upgrade journal")?;
    fs.write_private(&path(layout), text.as_bytes())
}

/// Removes the journal: the upgrade finished or was rolled back.
///
/// # Errors
/// The file cannot be removed.
pub fn remove(fs: &Fs, layout: &Layout) -> anyhow::Result<()> {
    fs.remove_file(&path(layout)).map(|_| ())
}

/// Whether an existing journal may be resumed by a command for `target`, or why not.
///
/// # Errors
/// A message naming the other upgrade and what to run.
pub fn resumable(j: &Journal, command: &str, target: &str) -> Result<(), String> {
    if j.target == target && j.command == command {
        return Ok(());
    }
    Err(format!(
        "an upgrade to {} (kubeboot upgrade {}) is in progress on this node (journal {FILE}, backups in {}): run that command again to finish it or roll it back, then upgrade to {target}",
        j.target,
        j.command,
        j.backup_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> Journal {
        Journal {
            command: "apply".into(),
            target: "v1.20.3-test.0".into(),
            backup_dir: "/etc/kubernetes/tmp/kubeboot-backup-1".into(),
            files: vec![
                (
                    "/etc/kubernetes/manifests/etcd.yaml".into(),
                    Some("/b/etcd.yaml".into()),
                ),
                ("/var/lib/kubelet/new.yaml".into(), None),
            ],
            objects: vec![],
            etcd_data: None,
            etcd_committed: false,
            agent_bin_dirs: vec![],
            agent_args: vec!["agent".into(), "--node-name".into(), "n1".into()],
            key_pairs: vec![KeyPair {
                cert: "/etc/kubernetes/pki/apiserver.crt".into(),
                cert_copy: "/b/apiserver.crt".into(),
                key: "/etc/kubernetes/pki/apiserver.key".into(),
                key_copy: "/b/apiserver.key".into(),
            }],
            rolling_back: false,
        }
    }

    #[test]
    fn a_pair_is_torn_only_when_its_key_was_renewed_and_its_certificate_not() {
        let (k0, c0, k1, c1) = (&b"key0"[..], &b"crt0"[..], &b"key1"[..], &b"crt1"[..]);
        assert!(torn(Some(k1), Some(c0), k0, c0), "key new, certificate old");
        assert!(torn(None, Some(c0), k0, c0), "key gone, certificate old");
        assert!(!torn(Some(k0), Some(c0), k0, c0), "neither renewed");
        assert!(!torn(Some(k1), Some(c1), k0, c0), "both renewed");
        assert!(!torn(Some(k0), Some(c1), k0, c0), "not a renewal's order");
    }

    #[test]
    fn a_journal_of_an_older_kubeboot_reads_without_the_new_fields() {
        let mut old = serde_json::to_value(journal()).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("agentArgs");
        o.remove("keyPairs");
        let j: Journal = serde_json::from_value(old).unwrap();
        assert!(j.agent_args.is_empty() && j.key_pairs.is_empty());
    }

    #[test]
    fn backups_are_found_by_node_path_and_a_new_file_has_none() {
        let j = journal();
        assert_eq!(
            j.backup_of(Path::new("/etc/kubernetes/manifests/etcd.yaml")),
            Some(Some(Path::new("/b/etcd.yaml")))
        );
        assert_eq!(
            j.backup_of(Path::new("/var/lib/kubelet/new.yaml")),
            Some(None)
        );
        assert_eq!(j.backup_of(Path::new("/other")), None);
    }

    #[test]
    fn only_the_same_command_and_target_resume() {
        let j = journal();
        assert!(resumable(&j, "apply", "v1.20.3-test.0").is_ok());
        let e = resumable(&j, "apply", "v1.20.4").unwrap_err();
        assert!(
            e.contains("upgrade to v1.20.3-test.0") && e.contains("run that command again"),
            "{e}"
        );
        assert!(resumable(&j, "node", "v1.20.3-test.0").is_err());
    }

    #[test]
    fn the_journal_round_trips() {
        let j = journal();
        let text = serde_json::to_string(&j).unwrap();
        assert_eq!(serde_json::from_str::<Journal>(&text).unwrap(), j);
    }
}
