//! etcd's data around a step to a new minor: the snapshot every upgrade takes, the copy of
//! a single member's data directory taken with etcd stopped, and its restore on rollback.

use std::path::Path;
use std::time::Duration;

use agent::host::fs::Fs;
use anyhow::Context;
use components::Version;

use super::apply::{Request, Step, first_image};
use super::backup::backup_dir_name;
use super::journal::{self, Journal};
use crate::out::Out;
use crate::say;

/// A consistent snapshot of etcd into the backup directory, before etcd changes.
pub(super) fn snapshot(
    req: &Request,
    out: &Out,
    j: &Journal,
    current: &Version,
) -> anyhow::Result<()> {
    let file = j.backup_dir.join("etcd-snapshot.db");
    if file.exists() {
        return Ok(());
    }
    let Some(local) = crate::etcd_local::read(&req.inputs.fs, &req.inputs.layout)? else {
        return Ok(());
    };
    let client = local.client(&req.inputs.fs)?;
    let info = crate::etcd_snapshot::save(
        &client,
        &req.inputs.fs,
        &file,
        req.inputs.now,
        Some(&req.inputs.layout),
    )
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

/// Whether the etcd step `s` moves etcd to another minor than the one the journal's backup
/// of its manifest ran (found again on a resumed run, when the plan sees the new etcd).
pub(super) fn etcd_minor_moved(j: &Journal, s: &Step, fs: &Fs) -> bool {
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
pub(super) fn minor_of(version: &str) -> String {
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
pub(super) fn wait_etcd_stopped(data_dir: &Path, timeout: Duration) -> anyhow::Result<()> {
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
pub(super) fn copy_etcd_data(
    req: &Request,
    out: &Out,
    j: &mut Journal,
    s: &Step,
) -> anyhow::Result<()> {
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
///
/// A run killed part-way leaves the data directory with some of the failed data, some of the
/// copy and its working directories; the next run (the rollback finished by the same command)
/// sets all of that aside as failed data and puts a new copy in place, because the copy in the
/// backup directory is the one source. Its working directories are named by time and process,
/// so they never collide with those a killed run left, even within the same second.
pub(super) fn restore_etcd_data(
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
    let stamp = format!(
        "{}-{}",
        backup_dir_name(std::time::SystemTime::now()),
        std::process::id()
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_images_run_the_etcd_of_their_minor() {
        assert_eq!(minor_of("3.5.16-0"), "3.5");
        assert_eq!(minor_of("3.4.23"), "3.4");
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
