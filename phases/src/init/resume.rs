//! Resuming an `init` that was killed: a full init writes the marker
//! `/var/lib/kubeboot/init-in-progress` once its preflight passed, before its first write, and
//! removes it when every phase succeeded. A re-run that finds the marker resumes: preflight
//! does not count what the interrupted run left as errors (its files, its etcd data
//! directory, the ports its agent's pods hold), the hidden temporaries of a write it was
//! killed in are removed, and every phase, being idempotent, reuses what is there. Without
//! the marker, a node that has a control plane is refused with the reset hint, as kubeadm
//! refuses it.
//!
//! ```text
//!   clean node --init: preflight ok--> [marker written] --phases...--> [marker removed]
//!                                             |  kill -9 anywhere           (completed)
//!                                             v
//!                               marker present: re-run resumes, or reset -f
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, names};

use crate::init::data::InitData;
use crate::node_record::{self, NodeRecord};

/// What an interrupted init left, as preflight observed it before the re-run wrote anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interrupted {
    /// The node id of the agent the interrupted run started (its pods carry it in their
    /// marker), if it got that far.
    pub node_id: Option<String>,
    /// What the interrupted run recorded it made, if it got that far.
    pub record: Option<NodeRecord>,
}

/// The marker of an init under way: `/var/lib/kubeboot/init-in-progress`.
pub fn marker(layout: &Layout) -> PathBuf {
    layout.state_dir().join(names::INIT_IN_PROGRESS_FILE)
}

/// Observes whether an earlier init of this node was interrupted (its marker is there), on
/// the node itself: a dry-run resumes in its report as the real run would.
///
/// # Errors
/// The agent's node id or the node record cannot be read.
pub fn observe(layout: &Layout) -> anyhow::Result<Option<Interrupted>> {
    let fs = Fs::real();
    if !fs.exists(&marker(layout)) {
        return Ok(None);
    }
    let node_id = agent::state::StateDir::new(layout.agent_state_dir()).existing_node_id()?;
    let record = node_record::read(&fs, layout)?;
    Ok(Some(Interrupted { node_id, record }))
}

impl Interrupted {
    /// Whether the file or etcd data directory `path` (a path of the layout) is one the
    /// interrupted init recorded it made (the record is written before what it names).
    pub fn made(&self, layout: &Layout, path: &Path) -> bool {
        let (Some(record), Some(node)) = (&self.record, layout.to_node(path)) else {
            return false;
        };
        record.files.contains(&node) || record.etcd_data_dirs.contains(&node)
    }

    /// Whether every process listening on TCP `port` in this network namespace is a pod
    /// process of the agent the interrupted init started (and there is one): then the port
    /// is held by the control plane being resumed, not by someone else.
    pub fn holds_port(&self, port: u16) -> bool {
        let Some(node_id) = &self.node_id else {
            return false;
        };
        let inodes: BTreeSet<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| listening_inodes(&text, port))
            .collect();
        if inodes.is_empty() {
            return false;
        }
        let prefix = format!("{node_id}/");
        let ours =
            agent::host::process::find_marked(names::AGENT_MARKER_ENV, |m| m.starts_with(&prefix));
        let held: BTreeSet<u64> = ours.iter().flat_map(|m| socket_inodes(m.pid)).collect();
        inodes.is_subset(&held)
    }
}

/// The socket inodes of the listeners on `port` in a `/proc/net/tcp` or `/proc/net/tcp6`
/// table (kernel: net/ipv4/tcp_ipv4.c, get_tcp4_sock: `sl local_address rem_address st ...
/// uid timeout inode`, state 0A is LISTEN).
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listening = *f.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Marks an init as under way (before its first write), and removes the hidden temporaries
/// `.<name>.<16 hex digits>.tmp` that a write killed half-way left in the directories init
/// writes to. Called once preflight passed; nothing in dry-run.
///
/// # Errors
/// The marker cannot be written, or a temporary cannot be removed.
pub fn begin(d: &InitData) -> anyhow::Result<()> {
    if d.dry_run {
        return Ok(());
    }
    let removed = remove_write_temps(&d.fs, &write_dirs(d))?;
    for path in &removed {
        tracing::info!(path = %path.display(), "removed the temporary of an interrupted write");
    }
    let path = marker(&d.layout);
    node_record::create_dir(&d.fs, &d.layout, &d.layout.state_dir(), 0o700)?;
    node_record::note_file(&d.fs, &d.layout, &path)?;
    let text = format!(
        "kubeboot init started (pid {}); this file is removed when init finishes, and a re-run of init resumes while it is here\n",
        std::process::id()
    );
    d.fs.write_private(&path, text.as_bytes())
        .context("could not write the marker of an init under way")
}

/// Marks an init as finished: a later init refuses this node (it has a control plane).
///
/// # Errors
/// The marker cannot be removed.
pub fn finish(d: &InitData) -> anyhow::Result<()> {
    if d.dry_run {
        return Ok(());
    }
    d.fs.remove_file(&marker(&d.layout))?;
    Ok(())
}

/// The directories init writes files to (the agent's own state and run directories are the
/// running agent's, whose writes may be under way: not scanned).
fn write_dirs(d: &InitData) -> Vec<PathBuf> {
    let l = &d.layout;
    let cert_dir = d.cert_dir();
    let mut dirs = vec![
        l.kubernetes_dir(),
        l.manifests_dir(),
        l.agent_manifests_dir(),
        cert_dir.join("etcd"),
        cert_dir,
        l.kubelet_dir(),
        l.kube_proxy_dir(),
        l.state_dir(),
        l.state_dir().join("containerd"),
    ];
    if let Some(unit_dir) = l.agent_systemd_unit().parent() {
        dirs.push(unit_dir.to_path_buf());
    }
    dirs
}

/// Removes, in each of `dirs`, the entries named like the temporary of an atomic write
/// ([`is_write_temp`]). Returns what was removed.
fn remove_write_temps(fs: &Fs, dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(fs.resolve(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(is_write_temp) {
                let path = dir.join(&name);
                if fs.remove_file(&path)? {
                    removed.push(path);
                }
            }
        }
    }
    Ok(removed)
}

/// Whether `name` is the temporary of an atomic write (`agent::host::fs`):
/// `.<name>.<16 hex digits>.tmp`.
pub fn is_write_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((target, suffix)) = rest.rsplit_once('.') else {
        return false;
    };
    !target.is_empty() && suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_temps_are_recognised_and_nothing_else() {
        assert!(is_write_temp(".admin.conf.0123456789abcdef.tmp"));
        assert!(is_write_temp(".ca.key.c7d17835640b6daf.tmp"));
        for name in [
            "admin.conf",
            ".admin.conf.tmp",
            ".admin.conf.0123456789abcdeg.tmp",
            ".admin.conf.0123456789abcde.tmp",
            "..0123456789abcdef.tmp",
            ".admin.conf.0123456789abcdef.tmp.bak",
            ".swp",
        ] {
            assert!(!is_write_temp(name), "{name}");
        }
    }

    #[test]
    fn listeners_are_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:192B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n\
   2: 0100007F:0950 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 6443), vec![31337]);
        assert_eq!(listening_inodes(table, 2384), vec![777]);
        assert!(listening_inodes(table, 2379).is_empty());
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(v6, 6443), vec![99]);
    }

    #[test]
    fn temps_of_killed_writes_are_removed_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let keep = ["admin.conf", ".admin.conf.user.tmp", "notes.tmp"];
        for f in keep {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::fs::write(dir.path().join(".admin.conf.0123456789abcdef.tmp"), b"").unwrap();
        let removed = remove_write_temps(
            &Fs::real(),
            &[dir.path().to_path_buf(), dir.path().join("missing")],
        )
        .unwrap();
        assert_eq!(
            removed,
            vec![dir.path().join(".admin.conf.0123456789abcdef.tmp")]
        );
        for f in keep {
            assert!(dir.path().join(f).exists(), "{f}");
        }
    }

    #[test]
    fn marker_begins_and_finishes_and_dry_run_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = crate::init::data::tests::test_data(dir.path());
        assert_eq!(observe(&d.layout).unwrap(), None);
        d.dry_run = true;
        begin(&d).unwrap();
        assert_eq!(observe(&d.layout).unwrap(), None);
        d.dry_run = false;
        let pki = d.cert_dir();
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join(".ca.key.0123456789abcdef.tmp"), b"half").unwrap();
        begin(&d).unwrap();
        assert!(!pki.join(".ca.key.0123456789abcdef.tmp").exists());
        let resume = observe(&d.layout).unwrap().expect("the marker is there");
        assert_eq!(resume.node_id, None);
        // The marker is recorded before it is written, so that reset removes it.
        let record = resume.record.clone().expect("a node record");
        assert!(
            record
                .files
                .contains(Path::new("/var/lib/kubeboot/init-in-progress"))
        );
        // Only what the record names is the interrupted run's.
        let manifest = d.layout.manifest("etcd");
        assert!(!resume.made(&d.layout, &manifest));
        node_record::note_file(&d.fs, &d.layout, &manifest).unwrap();
        let resume = observe(&d.layout).unwrap().unwrap();
        assert!(resume.made(&d.layout, &manifest));
        assert!(!resume.made(&d.layout, &d.layout.manifest("kube-apiserver")));
        finish(&d).unwrap();
        assert_eq!(observe(&d.layout).unwrap(), None);
    }
}
