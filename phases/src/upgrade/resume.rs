//! What a run of `upgrade apply` / `upgrade node` repairs of a run killed inside a write
//! before it goes on: the agent left stopped half-way through its restart, a certificate
//! pair whose key was renewed but not its certificate, the temporary files of atomic writes
//! cut short, and a backup directory never completed. Each is found from the journal (or the
//! backup directory's name), never guessed from what happens to lie around.

use std::path::Path;

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, names};

use super::agent_restart::{merged_bin_dirs, shown_dirs, with_bin_dirs};
use super::apply::Request;
use super::journal::{self, Journal};
use crate::out::Out;
use crate::say;

/// The name a backup directory has until it is complete.
pub fn partial_name(name: &str) -> String {
    format!(".{name}.partial")
}

/// Whether `file` (a name in the tmp directory) is a backup directory never completed.
fn is_partial_backup(file: &str) -> bool {
    file.strip_prefix(".kubeboot-backup-")
        .is_some_and(|r| r.ends_with(".partial"))
}

/// Removes the backup directories a run killed while it backed up left incomplete: no
/// journal names them (the journal is written after), so nothing refers to them.
///
/// # Errors
/// The tmp directory cannot be read, or such a directory cannot be removed.
pub fn remove_partial_backups(fs: &Fs, layout: &Layout, out: &Out) -> anyhow::Result<()> {
    let dir = fs.resolve(&layout.tmp_dir());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if is_partial_backup(&file) && entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path()).with_context(|| {
                format!(
                    "could not remove the incomplete backup directory {:?}",
                    entry.path().display().to_string()
                )
            })?;
            say!(
                out,
                "upgrade",
                "Removed the incomplete backup directory {:?} an interrupted run left",
                layout.tmp_dir().join(&file).display().to_string()
            );
        }
    }
    Ok(())
}

/// Gives the complete backup directory `partial` its final name `to`, durably.
///
/// # Errors
/// The rename or the sync of the tmp directory fails.
pub fn commit_backup_dir(fs: &Fs, partial: &Path, to: &Path) -> anyhow::Result<()> {
    let (from, to_) = (fs.resolve(partial), fs.resolve(to));
    std::fs::rename(&from, &to_).with_context(|| {
        format!(
            "could not rename the backup directory {:?} to {:?}",
            partial.display().to_string(),
            to.display().to_string()
        )
    })?;
    if let Some(parent) = to_.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Starts the agent when a run killed while it restarted the agent (the old one stopped, the
/// new one not started) left none: on the upgrade's `--bin-dir`s before the old ones, or on
/// the old ones when the interrupted run was rolling back. Under systemd the unit restarts
/// it, so nothing is done there.
///
/// # Errors
/// The agent cannot be started.
pub fn start_stopped_agent(req: &Request, out: &Out, j: &Journal) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    if j.agent_args.is_empty()
        || agent::daemon::is_running(layout).is_some()
        || crate::init::agent_start::systemd_is_init(layout)
    {
        return Ok(());
    }
    let old = if j.agent_bin_dirs.is_empty() {
        crate::host::default_bin_dirs()
    } else {
        j.agent_bin_dirs.clone()
    };
    let dirs = if j.rolling_back || req.inputs.bin_dirs.is_empty() {
        old
    } else {
        merged_bin_dirs(
            &crate::host::canonical_bin_dirs(&req.inputs.bin_dirs)?,
            &old,
        )
    };
    let args = with_bin_dirs(&j.agent_args, &dirs);
    let exe = std::fs::canonicalize(&req.exe).unwrap_or_else(|_| req.exe.clone());
    say!(
        out,
        "upgrade/agent",
        "Starting the kubeboot agent, which the interrupted run had stopped to restart it, from {} with --bin-dir {} (its pods kept running)",
        exe.display(),
        shown_dirs(&dirs)
    );
    agent::daemon::start_detached(&exe, &args, layout)?;
    // It locked the node and wrote its pid file; its status socket, which the run asks next,
    // comes a moment later.
    let start = std::time::Instant::now();
    while let Err(e) = agent::status::query(&layout.agent_socket(), AGENT_ANSWERS_WITHIN) {
        anyhow::ensure!(
            start.elapsed() < AGENT_ANSWERS_WITHIN,
            "the kubeboot agent started again does not answer within {}: {e:#}; see {:?}",
            crate::health::human(AGENT_ANSWERS_WITHIN),
            layout.agent_log_file().display().to_string()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// How long the agent started again may take to answer on its status socket.
const AGENT_ANSWERS_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Puts back the backed-up key of every pair a renewal cut short ([`journal::torn`]): the
/// component then runs on its old pair again, and the step renews both once more.
///
/// # Errors
/// A file or its backup cannot be read, or the key cannot be written.
pub fn repair_torn_pairs(fs: &Fs, out: &Out, j: &Journal) -> anyhow::Result<()> {
    for p in &j.key_pairs {
        let missing =
            |copy: &Path| format!("the backup {:?} is missing", copy.display().to_string());
        let key_copy = fs
            .read_if_exists(&p.key_copy)?
            .with_context(|| missing(&p.key_copy))?;
        let cert_copy = fs
            .read_if_exists(&p.cert_copy)?
            .with_context(|| missing(&p.cert_copy))?;
        let key = fs.read_if_exists(&p.key)?;
        let cert = fs.read_if_exists(&p.cert)?;
        if journal::torn(key.as_deref(), cert.as_deref(), &key_copy, &cert_copy) {
            fs.write_private(&p.key, &key_copy)?;
            say!(
                out,
                "upgrade",
                "Put back the key {:?}: the interrupted run had renewed it but not its certificate {:?}",
                p.key.display().to_string(),
                p.cert.display().to_string()
            );
        }
    }
    Ok(())
}

/// Removes the temporary files (`.<name>.<16 hex>.tmp`) that writes killed half-way left
/// beside the files an upgrade writes: the journal always; with a journal, the files it
/// backed up, the certificate pairs, the kubeconfigs the upgrade renews, the node record and
/// the etcd snapshot.
///
/// # Errors
/// A leftover exists but cannot be removed.
pub fn remove_leftovers(
    fs: &Fs,
    layout: &Layout,
    out: &Out,
    j: Option<&Journal>,
) -> anyhow::Result<()> {
    let mut paths = vec![journal::path(layout)];
    if let Some(j) = j {
        paths.extend(j.files.iter().map(|(p, _)| p.clone()));
        for p in &j.key_pairs {
            paths.extend([p.key.clone(), p.cert.clone()]);
        }
        for k in [
            names::ADMIN_KUBECONFIG,
            names::CONTROLLER_MANAGER_KUBECONFIG,
            names::SCHEDULER_KUBECONFIG,
        ] {
            paths.push(layout.kubeconfig(k));
        }
        paths.push(layout.node_record());
        for f in ["etcd-snapshot.db", "etcd-snapshot.db.json"] {
            paths.push(j.backup_dir.join(f));
        }
    }
    let mut removed = 0;
    for p in &paths {
        removed += fs.remove_leftover_temps(p)?;
    }
    if removed > 0 {
        say!(
            out,
            "upgrade",
            "Removed {removed} temporary file(s) that writes of the interrupted run left"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubeboots_partial_backup_directories_are_partial() {
        assert!(is_partial_backup(&partial_name(
            "kubeboot-backup-2026-12-03-19-46-34"
        )));
        assert!(!is_partial_backup("kubeboot-backup-2026-12-03-19-46-34"));
        assert!(!is_partial_backup(
            ".kubeboot-upgrade.json.0123456789abcdef.tmp"
        ));
        assert!(!is_partial_backup(".other.partial"));
    }

    #[test]
    fn a_partial_backup_is_removed_and_a_complete_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::under(dir.path());
        let fs = Fs::real();
        let tmp = layout.tmp_dir();
        let partial = tmp.join(partial_name("kubeboot-backup-1"));
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("00-etcd.yaml"), b"half").unwrap();
        let done = tmp.join("kubeboot-backup-0");
        std::fs::create_dir_all(&done).unwrap();
        let out = Out::capture();
        remove_partial_backups(&fs, &layout, &out).unwrap();
        assert!(!partial.exists() && done.exists());
        assert!(
            out.captured()
                .contains("Removed the incomplete backup directory")
        );
        let to = tmp.join("kubeboot-backup-2");
        let p2 = tmp.join(partial_name("kubeboot-backup-2"));
        std::fs::create_dir(&p2).unwrap();
        commit_backup_dir(&fs, &p2, &to).unwrap();
        assert!(to.is_dir() && !p2.exists());
    }

    fn pair_journal(dir: &Path) -> Journal {
        let f = |n: &str| dir.join(n);
        Journal {
            command: "apply".into(),
            target: "v1.20.3-test.0".into(),
            backup_dir: dir.join("backup"),
            files: vec![(f("m.yaml"), None)],
            objects: vec![],
            etcd_data: None,
            etcd_committed: false,
            agent_bin_dirs: vec![],
            agent_args: vec![],
            key_pairs: vec![journal::KeyPair {
                cert: f("apiserver.crt"),
                cert_copy: f("apiserver.crt.bak"),
                key: f("apiserver.key"),
                key_copy: f("apiserver.key.bak"),
            }],
            rolling_back: false,
        }
    }

    #[test]
    fn a_torn_pair_gets_its_old_key_back_and_a_renewed_one_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let j = pair_journal(dir.path());
        let w = |n: &str, b: &[u8]| std::fs::write(dir.path().join(n), b).unwrap();
        w("apiserver.crt.bak", b"crt0");
        w("apiserver.key.bak", b"key0");
        w("apiserver.crt", b"crt0");
        w("apiserver.key", b"key1");
        let out = Out::capture();
        repair_torn_pairs(&Fs::real(), &out, &j).unwrap();
        let key = dir.path().join("apiserver.key");
        assert_eq!(std::fs::read(&key).unwrap(), b"key0");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            out.captured().contains("Put back the key"),
            "{}",
            out.captured()
        );
        w("apiserver.crt", b"crt1");
        w("apiserver.key", b"key1");
        let out = Out::capture();
        repair_torn_pairs(&Fs::real(), &out, &j).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"key1");
        assert!(out.captured().is_empty());
    }

    #[test]
    fn leftover_temps_go_only_beside_the_files_the_upgrade_writes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::under(dir.path());
        let j = pair_journal(dir.path());
        std::fs::create_dir_all(layout.tmp_dir()).unwrap();
        let temps = [
            layout
                .tmp_dir()
                .join(".kubeboot-upgrade.json.0123456789abcdef.tmp"),
            dir.path().join(".m.yaml.fedcba9876543210.tmp"),
            dir.path().join(".apiserver.key.00000000000000aa.tmp"),
        ];
        for t in &temps {
            std::fs::write(t, b"half").unwrap();
        }
        let stranger = dir.path().join(".other.yaml.0123456789abcdef.tmp");
        std::fs::write(&stranger, b"not ours").unwrap();
        let out = Out::capture();
        remove_leftovers(&Fs::real(), &layout, &out, None).unwrap();
        assert!(
            !temps[0].exists() && temps[1].exists(),
            "no journal: its temp only"
        );
        remove_leftovers(&Fs::real(), &layout, &out, Some(&j)).unwrap();
        assert!(temps.iter().all(|t| !t.exists()));
        assert!(stranger.exists());
        assert!(
            out.captured().contains("Removed 2 temporary file(s)"),
            "{}",
            out.captured()
        );
    }
}
