//! Network namespaces kept in files, as `ip netns add` and containerd make them: a file
//! bind-mounted from a thread that unshared its network namespace; entering one; removing
//! one (unmount, unlink). The one place kubeboot creates, enters or removes them (exec
//! probes enter one through [`super::process::run_with_timeout`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::fs::Fs;

/// True when `path` is a mounted network namespace (nsfs), not just the empty file.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Creates a new network namespace and keeps it in `path` (its directory is created 0755,
/// as `ip netns` does for /run/netns). The namespace has only a `lo`, down.
///
/// # Errors
/// When `path` already holds a namespace, or the namespace cannot be created or mounted.
pub fn create(path: &Path) -> anyhow::Result<()> {
    let shown = path.display().to_string();
    if is_netns(path) {
        anyhow::bail!("the network namespace {shown:?} exists already");
    }
    if let Some(dir) = path.parent() {
        Fs::real().create_dir(dir, 0o755)?;
    }
    // A plain file left by an interrupted create is reused.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("could not create {shown:?}"));
        }
    }
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own, which ends
    // right after, so no thread of the agent is left in the new namespace.
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || -> anyhow::Result<()> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .context("could not create a network namespace (unshare)")?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .context("could not bind-mount it")
        })
        .context("could not start a thread")?
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the thread creating it panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(e.context(format!("could not create the network namespace {shown:?}")));
    }
    Ok(())
}

/// Removes the namespace kept in `path`: unmounts it (lazily, as `ip netns del`) and removes
/// the file. The namespace itself ends once no process is in it. Returns false when there
/// was nothing to remove.
///
/// # Errors
/// When it cannot be unmounted or removed.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (an interrupted create); ENOENT: gone already.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "could not unmount the network namespace {:?}",
                    path.display().to_string()
                )
            });
        }
    }
    Fs::real().remove_file(path)
}

/// Opens the namespace kept in `path`, to enter it.
///
/// # Errors
/// When `path` is not a network namespace or cannot be opened.
pub fn open(path: &Path) -> anyhow::Result<File> {
    let shown = path.display().to_string();
    anyhow::ensure!(
        is_netns(path),
        "{shown:?} is not a network namespace (its pod network was removed?)"
    );
    File::open(path).with_context(|| format!("could not open the network namespace {shown:?}"))
}

/// Moves the calling thread into the namespace kept in `path` (a single-threaded process
/// such as the shim: the whole process, and every child it starts from then on).
///
/// # Errors
/// When `path` is not a network namespace or it cannot be entered.
pub fn enter(path: &Path) -> anyhow::Result<()> {
    let f = open(path)?;
    nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).with_context(|| {
        format!(
            "could not enter the network namespace {:?}",
            path.display().to_string()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_file_is_not_a_namespace() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, "").unwrap();
        assert!(!is_netns(&f));
        assert!(!is_netns(&d.path().join("missing")));
        assert!(
            open(&f)
                .unwrap_err()
                .to_string()
                .contains("not a network namespace")
        );
        // Removing an unmounted file (an interrupted create) works, and twice is fine.
        assert!(remove(&f).unwrap());
        assert!(!remove(&f).unwrap());
    }
}
