//! Atomic file writes with explicit modes, the one place kubeboot writes files.
//!
//! Every write goes to a hidden temporary file `.<name>.<random>.tmp` in the target directory,
//! created with `O_EXCL` and mode 0600, then is written, fsync-ed, `fchmod`-ed to its final
//! mode, renamed over the target and the directory fsync-ed. Keys and kubeconfigs are 0600
//! from their first byte; a reader never sees half a file (the agent, like the kubelet,
//! ignores dot-files in the manifest directory).
//!
//! `Fs::under(dir)` re-roots every absolute path under `dir`: `--dry-run` keeps the real
//! `Layout` (file contents refer to real paths) and lets the bytes land in a scratch directory.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use components::Layout;

/// Mode of private files: keys, kubeconfigs.
pub const MODE_PRIVATE: u32 = 0o600;
/// Mode of public files: certificates, manifests' neighbours, configs.
pub const MODE_PUBLIC: u32 = 0o644;

/// Writes and reads node files, optionally re-rooted under a scratch directory.
#[derive(Debug, Clone, Default)]
pub struct Fs {
    root: Option<PathBuf>,
    /// Every path written through this `Fs`, as the node would see it, in order.
    written: std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>>,
}

impl Fs {
    /// Writes to the real paths.
    pub fn real() -> Self {
        Self::default()
    }

    /// Writes every path under `root` instead (dry-run).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Some(root.into()),
            written: Default::default(),
        }
    }

    /// The scratch root of a dry-run `Fs`.
    pub fn scratch_root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Where the bytes for `path` actually land.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match &self.root {
            None => path.to_path_buf(),
            Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        }
    }

    /// The paths written so far (as the node sees them).
    pub fn written(&self) -> Vec<PathBuf> {
        self.written.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Writes a private file (0600): keys, kubeconfigs.
    pub fn write_private(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        self.write_file(path, bytes, MODE_PRIVATE)
    }

    /// Writes a public file (0644): certificates, public keys, configs.
    pub fn write_public(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        self.write_file(path, bytes, MODE_PUBLIC)
    }

    /// Writes `bytes` to `path` atomically with the final `mode`. The parent directory must
    /// exist (create it with [`Fs::create_dir`] and the mode it needs).
    pub fn write_file(&self, path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
        let target = self.resolve(path);
        if self.root.is_some()
            && let Some(parent) = target.parent()
        {
            fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        write_atomic(&target, bytes, mode)
            .with_context(|| format!("could not write {:?}", path.display().to_string()))?;
        if let Ok(mut w) = self.written.lock() {
            w.push(path.to_path_buf());
        }
        Ok(())
    }

    /// Writes `path` atomically with the final `mode`, as [`Fs::write_file`], its content
    /// streamed by `fill` into the (0600) temporary file: for files too large to hold in
    /// memory (an etcd snapshot). On any error the temporary file is removed and `path` is
    /// as it was.
    pub fn write_streamed(
        &self,
        path: &Path,
        mode: u32,
        fill: impl FnOnce(&mut fs::File) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let target = self.resolve(path);
        let mut failed = None;
        let result = write_atomic_with(&target, mode, |f| {
            fill(f).map_err(|e| {
                let io = io::Error::other(format!("{e:#}"));
                failed = Some(e);
                io
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        result.with_context(|| format!("could not write {:?}", path.display().to_string()))?;
        if let Ok(mut w) = self.written.lock() {
            w.push(path.to_path_buf());
        }
        Ok(())
    }

    /// Points the symlink `link` at `target` (a name in the same directory, as the kubelet's
    /// certificate store links `kubelet-client-current.pem`), atomically: a temporary link
    /// renamed over `link`.
    pub fn symlink(&self, target: &Path, link: &Path) -> anyhow::Result<()> {
        let at = self.resolve(link);
        let result = (|| {
            let tmp = temp_name(&at)?;
            std::os::unix::fs::symlink(target, &tmp)?;
            if let Err(e) = fs::rename(&tmp, &at) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            if let Some(dir) = at.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok::<(), io::Error>(())
        })();
        result.with_context(|| format!("could not link {:?}", link.display().to_string()))?;
        if let Ok(mut w) = self.written.lock() {
            w.push(link.to_path_buf());
        }
        Ok(())
    }

    /// Creates `path` with `mode` and its missing parents with 0755, whatever the umask; an
    /// existing directory keeps its mode ([`Fs::ensure_dir`]: kubeboot never chmods a directory
    /// it did not create).
    pub fn create_dir(&self, path: &Path, mode: u32) -> anyhow::Result<()> {
        self.ensure_dir(path, mode)
    }

    /// Creates `path` with `mode`, and its missing parents with 0755, whatever the process
    /// umask; a directory that already exists keeps its owner and mode (an administrator's
    /// choice, or a directory shared with others, is never loosened or tightened).
    pub fn ensure_dir(&self, path: &Path, mode: u32) -> anyhow::Result<()> {
        let target = self.resolve(path);
        ensure_dir_mode(&target, mode).with_context(|| {
            format!(
                "could not create directory {:?}",
                path.display().to_string()
            )
        })
    }

    /// Reads a regular file of at most `limit` bytes, `None` if it does not exist. The file
    /// is opened without blocking and checked through the opened descriptor, so a FIFO, a
    /// device (a symlink to `/dev/zero`) or a file that grows while it is read is an error
    /// naming it, never a hang or an unbounded read.
    pub fn read_regular_if_exists(
        &self,
        path: &Path,
        limit: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let shown = path.display().to_string();
        let target = self.resolve(path);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&target)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("could not read {shown:?}")),
        };
        let meta = file
            .metadata()
            .with_context(|| format!("could not stat {shown:?}"))?;
        let kind = meta.file_type();
        if !kind.is_file() {
            anyhow::bail!(
                "{shown:?} is not a regular file (it is {}); only regular files are read, replace it with one",
                file_kind(&kind)
            );
        }
        let too_big = || {
            anyhow::anyhow!(
                "{shown:?} is larger than the limit of {limit} bytes ({} MiB); it cannot be a valid file here",
                limit / (1024 * 1024)
            )
        };
        if meta.len() > limit {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .with_context(|| format!("could not read {shown:?}"))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
            return Err(too_big());
        }
        Ok(Some(bytes))
    }

    /// Reads a file, `None` if it does not exist.
    pub fn read_if_exists(&self, path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        let target = self.resolve(path);
        match fs::read(&target) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("could not read {:?}", path.display().to_string()))
            }
        }
    }

    /// Reads a UTF-8 file, `None` if it does not exist.
    pub fn read_string_if_exists(&self, path: &Path) -> anyhow::Result<Option<String>> {
        match self.read_if_exists(path)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(Some)
                .with_context(|| format!("{:?} is not UTF-8 text", path.display().to_string())),
        }
    }

    /// True if `path` exists (file, directory or anything else).
    pub fn exists(&self, path: &Path) -> bool {
        fs::symlink_metadata(self.resolve(path)).is_ok()
    }

    /// Removes a file if it exists.
    pub fn remove_file(&self, path: &Path) -> anyhow::Result<bool> {
        match fs::remove_file(self.resolve(path)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => {
                Err(e).with_context(|| format!("could not remove {:?}", path.display().to_string()))
            }
        }
    }

    /// Removes the leftovers of writes through an `Fs` that were killed half-way: the hidden
    /// temporary files `.<name>.<16 hex digits>.tmp` next to `path`. Returns how many went.
    ///
    /// # Errors
    /// A leftover that exists but cannot be removed.
    pub fn remove_leftover_temps(&self, path: &Path) -> anyhow::Result<usize> {
        let target = self.resolve(path);
        let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
            return Ok(0);
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let is_temp = file
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".tmp"))
                .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
            if is_temp && self.remove_file(&Path::new(path).with_file_name(&file))? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes the directory `path` if it exists and is empty; `false` when it is absent, not
    /// empty or busy (a mount point). Refused, like [`Fs::clear_dir`], for the paths
    /// [`Layout::deletion_refusal`] names.
    ///
    /// # Errors
    /// A refused path, or another failure naming the path.
    pub fn remove_dir_if_empty(&self, layout: &Layout, path: &Path) -> anyhow::Result<bool> {
        let target = self.resolve(path);
        self.refuse(layout, path, &target)?;
        match fs::remove_dir(&target) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::ENOENT | libc::ENOTEMPTY | libc::EEXIST | libc::EBUSY | libc::ENOTDIR
                    )
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "could not remove the directory {:?}",
                    path.display().to_string()
                )
            }),
        }
    }

    /// Removes the contents of a directory (not the directory itself, which may be a mount
    /// point), if it exists: kubeboot's one recursive delete, so every rule below holds for all
    /// of them.
    ///
    /// - Refused (an error naming the path and the reason) for `/`, a system directory
    ///   ([`components::layout::protected_reason`]), a relative or unnormalized path, and
    ///   anything outside the layout's root, checked on the path as given and again once its
    ///   symlinks are resolved.
    /// - Never leaves the directory's filesystem: an entry on another device, or listed as a
    ///   mount point in `/proc/self/mountinfo` (a bind mount of the same filesystem), is left
    ///   as it is and reported in [`Cleared::kept_mounts`].
    /// - Never follows a symlink below the top (`openat` with `O_NOFOLLOW`, `unlinkat`).
    /// - Entries already gone are not an error, so a run killed half-way can simply be
    ///   repeated.
    ///
    /// # Errors
    /// A refused path, unreadable mountinfo, or an entry that cannot be removed.
    pub fn clear_dir(&self, layout: &Layout, path: &Path) -> anyhow::Result<Cleared> {
        let shown = path.display().to_string();
        let target = self.resolve(path);
        self.refuse(layout, path, &target)?;
        let real = match fs::canonicalize(&target) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cleared::default()),
            Err(e) => return Err(e).with_context(|| format!("could not resolve {shown:?}")),
        };
        if real != target {
            self.refuse(layout, &real, &real)
                .with_context(|| format!("{shown:?} leads to {:?}", real.display().to_string()))?;
        }
        let mounts: BTreeSet<PathBuf> = read_mount_points()?.into_iter().collect();
        let dir =
            open_dir_nofollow(None, &real).with_context(|| format!("could not open {shown:?}"))?;
        let dev = nix::sys::stat::fstat(&dir)
            .map_err(io::Error::from)
            .with_context(|| format!("could not stat {shown:?}"))?
            .st_dev;
        let mut cleared = Cleared::default();
        clear_fd(&dir, &real, dev, &mounts, &mut cleared)?;
        Ok(cleared)
    }

    /// The refusal of [`Fs::clear_dir`]: `path` as the caller named it, `target` where it
    /// resolves (under a dry-run root).
    fn refuse(&self, layout: &Layout, path: &Path, target: &Path) -> anyhow::Result<()> {
        let root = self.resolve(layout.root());
        // The root itself may sit behind a symlink (a temporary directory): compare resolved
        // forms when the target is resolved.
        let root = if target.starts_with(&root) {
            root
        } else {
            fs::canonicalize(&root).unwrap_or(root)
        };
        match Layout::under(root).deletion_refusal(target) {
            None => Ok(()),
            Some(reason) => anyhow::bail!(
                "refusing to delete the contents of {:?}: {reason}; kubeboot deletes only what it created, never a system directory",
                path.display().to_string()
            ),
        }
    }
}

/// What [`Fs::clear_dir`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// Entries removed (a directory and everything in it count once each).
    pub removed: usize,
    /// Mount points found inside, left as they are with what they hold.
    pub kept_mounts: Vec<PathBuf>,
}

/// The mount points listed in mountinfo text (field 5, octal escapes such as `\040`
/// decoded), in the order listed.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .collect()
}

/// [`mount_points`] of this process's mount namespace.
///
/// # Errors
/// `/proc/self/mountinfo` cannot be read.
pub fn read_mount_points() -> anyhow::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .context("could not read /proc/self/mountinfo (is /proc mounted?)")?;
    Ok(mount_points(&text))
}

fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn open_dir_nofollow(at: Option<&OwnedFd>, path: &Path) -> io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(dir) => openat(dir, path, flags, Mode::empty()),
        None => open(path, flags, Mode::empty()),
    }
    .map_err(io::Error::from)
}

/// Empties the directory open as `dir` (at `path`, on device `dev`), staying on `dev` and off
/// every path in `mounts`. Returns whether everything inside went.
fn clear_fd(
    dir: &OwnedFd,
    path: &Path,
    dev: u64,
    mounts: &BTreeSet<PathBuf>,
    cleared: &mut Cleared,
) -> anyhow::Result<bool> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{SFlag, fstatat};
    use nix::unistd::{UnlinkatFlags, unlinkat};
    use std::os::unix::ffi::OsStrExt;

    let shown = || path.display().to_string();
    let names: Vec<std::ffi::OsString> = {
        let dup = dir
            .try_clone()
            .with_context(|| format!("could not list {:?}", shown()))?;
        let mut listing = nix::dir::Dir::from_fd(dup)
            .map_err(io::Error::from)
            .with_context(|| format!("could not list {:?}", shown()))?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let entry = entry
                .map_err(io::Error::from)
                .with_context(|| format!("could not list {:?}", shown()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
            }
        }
        names
    };
    let gone = |e: nix::errno::Errno| e == nix::errno::Errno::ENOENT;
    let mut complete = true;
    for name in names {
        let child = path.join(&name);
        let stat = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(e) if gone(e) => continue,
            Err(e) => {
                return Err(io::Error::from(e))
                    .with_context(|| format!("could not stat {:?}", child.display().to_string()));
            }
        };
        if stat.st_dev != dev || mounts.contains(&child) {
            cleared.kept_mounts.push(child);
            complete = false;
            continue;
        }
        let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir {
            let sub = match open_dir_nofollow(Some(dir), Path::new(&name)) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("could not open {:?}", child.display().to_string())
                    });
                }
            };
            // The entry may have been swapped between the stat and the open.
            let opened = nix::sys::stat::fstat(&sub).map_err(io::Error::from)?;
            if opened.st_dev != dev || opened.st_ino != stat.st_ino {
                cleared.kept_mounts.push(child);
                complete = false;
                continue;
            }
            if !clear_fd(&sub, &child, dev, mounts, cleared)? {
                complete = false;
                continue;
            }
        }
        let flag = if is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(dir, name.as_os_str(), flag) {
            Ok(()) => cleared.removed += 1,
            Err(e) if gone(e) => {}
            Err(nix::errno::Errno::EBUSY) => {
                cleared.kept_mounts.push(child);
                complete = false;
            }
            Err(e) => {
                return Err(io::Error::from(e)).with_context(|| {
                    format!("could not remove {:?}", child.display().to_string())
                });
            }
        }
    }
    Ok(complete)
}

/// What a non-regular file is, for error messages.
fn file_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Creates the missing components of `path`, each with an explicit mode set on the new
/// directory itself (mkdir's mode is cut by the umask), never touching existing ones.
fn ensure_dir_mode(path: &Path, mode: u32) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir_mode(parent, 0o755)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        // Ours alone (0700 at most) until it gets its final mode.
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn temp_name(target: &Path) -> io::Result<PathBuf> {
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy();
    let suffix: u64 = rand::random();
    Ok(dir.join(format!(".{name}.{suffix:016x}.tmp")))
}

fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(target, mode, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written by `fill` into the temporary file.
fn write_atomic_with(
    target: &Path,
    mode: u32,
    fill: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_name(target)?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        drop(f);
        fs::rename(&tmp, target)?;
        if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_symlink_is_replaced_atomically_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("kubelet-client-current.pem");
        Fs::real()
            .symlink(Path::new("kubelet-client-1.pem"), &link)
            .unwrap();
        Fs::real()
            .symlink(Path::new("kubelet-client-2.pem"), &link)
            .unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("kubelet-client-2.pem")
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp link left behind: {names:?}");
    }

    #[test]
    fn private_file_is_0600_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.key");
        Fs::real().write_private(&p, b"secret").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
    }

    #[test]
    fn overwrite_replaces_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.yaml");
        Fs::real().write_private(&p, b"one").unwrap();
        Fs::real().write_public(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
    }

    #[test]
    fn missing_parent_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope/apiserver.key");
        let err = Fs::real().write_private(&p, b"k").unwrap_err();
        assert!(format!("{err:#}").contains("apiserver.key"), "{err:#}");
    }

    #[test]
    fn under_reroots_and_records_node_paths() {
        let dir = tempfile::tempdir().unwrap();
        let fs_ = Fs::under(dir.path());
        fs_.write_public(Path::new("/etc/kubernetes/manifests/etcd.yaml"), b"x")
            .unwrap();
        assert!(
            dir.path()
                .join("etc/kubernetes/manifests/etcd.yaml")
                .exists()
        );
        assert_eq!(
            fs_.written(),
            vec![PathBuf::from("/etc/kubernetes/manifests/etcd.yaml")]
        );
        assert!(fs_.exists(Path::new("/etc/kubernetes/manifests/etcd.yaml")));
    }

    #[test]
    fn ensure_dir_sets_modes_of_new_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("shared");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o711)).unwrap();
        let f = Fs::real();
        f.ensure_dir(&existing.join("a/b"), 0o700).unwrap();
        assert_eq!(fs::metadata(&existing).unwrap().mode() & 0o777, 0o711);
        assert_eq!(
            fs::metadata(existing.join("a")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(
            fs::metadata(existing.join("a/b")).unwrap().mode() & 0o777,
            0o700
        );
        f.ensure_dir(&existing, 0o700).unwrap();
        assert_eq!(fs::metadata(&existing).unwrap().mode() & 0o777, 0o711);
        fs::write(dir.path().join("file"), "x").unwrap();
        assert!(f.ensure_dir(&dir.path().join("file"), 0o700).is_err());
    }

    #[test]
    fn read_regular_refuses_devices_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fs::real();
        let zero = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = f.read_regular_if_exists(&zero, 1024).unwrap_err();
        assert!(format!("{err:#}").contains("character device"), "{err:#}");
        let big = dir.path().join("big.yaml");
        fs::write(&big, vec![b'a'; 2048]).unwrap();
        let err = f.read_regular_if_exists(&big, 1024).unwrap_err();
        assert!(
            format!("{err:#}").contains("larger than the limit of 1024 bytes"),
            "{err:#}"
        );
        fs::write(&big, b"ok").unwrap();
        assert_eq!(
            f.read_regular_if_exists(&big, 1024).unwrap().unwrap(),
            b"ok"
        );
        assert!(
            f.read_regular_if_exists(&dir.path().join("nope"), 1)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn create_dir_sets_mode_and_clear_dir_keeps_dir() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::under(dir.path());
        let d = dir.path().join("a/manifests");
        let f = Fs::real();
        f.create_dir(&d, 0o700).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        f.write_public(&d.join("x.yaml"), b"1").unwrap();
        f.create_dir(&d.join("sub/deeper"), 0o755).unwrap();
        f.write_public(&d.join("sub/deeper/y"), b"1").unwrap();
        let cleared = f.clear_dir(&layout, &d).unwrap();
        assert_eq!(cleared.removed, 4);
        assert!(cleared.kept_mounts.is_empty());
        assert!(d.is_dir());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        // Again, and on a directory that is gone: nothing to do, no error.
        assert_eq!(f.clear_dir(&layout, &d).unwrap(), Cleared::default());
        assert_eq!(
            f.clear_dir(&layout, &dir.path().join("gone")).unwrap(),
            Cleared::default()
        );
    }

    /// A directory with a sentinel file, to show that a refused clear touched nothing.
    fn with_sentinel(dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let s = dir.join("sentinel");
        fs::write(&s, b"keep").unwrap();
        s
    }

    #[test]
    fn clear_dir_refuses_the_root_system_dirs_relative_paths_and_the_outside() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let layout = Layout::under(root.path());
        let sentinels = [
            with_sentinel(root.path()),
            with_sentinel(&root.path().join("etc")),
            with_sentinel(&root.path().join("var/lib")),
            with_sentinel(outside.path()),
        ];
        let f = Fs::real();
        for (path, why) in [
            (root.path().to_path_buf(), "it is the root directory"),
            (root.path().join("etc"), "it is a system directory"),
            (root.path().join("var/lib"), "it is a system directory"),
            (root.path().join("var/lib/etcd/.."), "not a normalized path"),
            (PathBuf::from("var/lib/etcd"), "it is a relative path"),
            (outside.path().to_path_buf(), "outside the node's root"),
        ] {
            let err = format!("{:#}", f.clear_dir(&layout, &path).unwrap_err());
            assert!(
                err.contains(&format!(
                    "refusing to delete the contents of {:?}",
                    path.display().to_string()
                )) && err.contains(why),
                "{path:?}: {err}"
            );
            assert!(f.remove_dir_if_empty(&layout, &path).is_err(), "{path:?}");
        }
        for s in &sentinels {
            assert!(s.exists(), "{s:?} was deleted");
        }
    }

    #[test]
    fn clear_dir_refuses_the_host_system_dirs_even_in_a_scratch_root() {
        // The host layout through a dry-run Fs: a broken guard could only reach the scratch
        // directory, never the machine's own /etc.
        let scratch = tempfile::tempdir().unwrap();
        let f = Fs::under(scratch.path());
        let etc = with_sentinel(&scratch.path().join("etc"));
        let top = with_sentinel(scratch.path());
        for p in ["/", "/etc", "/var/lib", "/usr/local", "etc"] {
            let err = format!(
                "{:#}",
                f.clear_dir(&Layout::host(), Path::new(p)).unwrap_err()
            );
            assert!(
                err.contains("refusing to delete the contents of"),
                "{p}: {err}"
            );
        }
        assert!(etc.exists() && top.exists());
    }

    #[test]
    fn a_symlink_to_a_protected_or_outside_dir_is_refused_and_inner_symlinks_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let layout = Layout::under(root.path());
        let kept = with_sentinel(outside.path());
        let etc = with_sentinel(&root.path().join("etc"));
        let lib = root.path().join("var/lib");
        fs::create_dir_all(&lib).unwrap();
        std::os::unix::fs::symlink(root.path().join("etc"), lib.join("to-etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), lib.join("to-outside")).unwrap();
        let f = Fs::real();
        for link in ["to-etc", "to-outside"] {
            let err = format!("{:#}", f.clear_dir(&layout, &lib.join(link)).unwrap_err());
            assert!(err.contains("refusing to delete"), "{link}: {err}");
        }
        // Inside a directory kubeboot clears, a symlink is removed, never followed.
        let data = root.path().join("var/lib/kubelet");
        fs::create_dir_all(data.join("pods")).unwrap();
        std::os::unix::fs::symlink(outside.path(), data.join("pods/link")).unwrap();
        std::os::unix::fs::symlink(root.path().join("etc"), data.join("etc-link")).unwrap();
        f.clear_dir(&layout, &data).unwrap();
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
        assert!(kept.exists() && etc.exists());
    }

    /// Unmounts on drop, so a failing test leaves no mount behind.
    struct BindMount(PathBuf);

    impl BindMount {
        fn new(source: &Path, target: &Path) -> Option<BindMount> {
            if !nix::unistd::geteuid().is_root() {
                eprintln!("not root: skipping the mount case");
                return None;
            }
            fs::create_dir_all(target).unwrap();
            nix::mount::mount(
                Some(source),
                target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .expect("bind mount");
            Some(BindMount(target.to_path_buf()))
        }
    }

    impl Drop for BindMount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn clear_dir_never_enters_a_mount_point() {
        let root = tempfile::tempdir().unwrap();
        let volume = tempfile::tempdir().unwrap();
        let sentinel = with_sentinel(volume.path());
        let layout = Layout::under(root.path());
        let dir = root.path().join("var/lib/kubelet");
        let mount_at = dir.join("pods/u1/volumes/v");
        let Some(_mount) = BindMount::new(volume.path(), &mount_at) else {
            return;
        };
        fs::write(dir.join("pods/u1/other"), b"x").unwrap();
        let cleared = Fs::real().clear_dir(&layout, &dir).unwrap();
        assert_eq!(cleared.kept_mounts, vec![mount_at.clone()]);
        assert!(sentinel.exists(), "deleted inside a mounted volume");
        assert!(!dir.join("pods/u1/other").exists());
    }

    #[test]
    fn leftover_temps_of_killed_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.conf");
        fs::write(&p, b"x").unwrap();
        fs::write(dir.path().join(".admin.conf.0123456789abcdef.tmp"), b"half").unwrap();
        fs::write(dir.path().join(".admin.conf.user-file.tmp"), b"not ours").unwrap();
        assert_eq!(Fs::real().remove_leftover_temps(&p).unwrap(), 1);
        assert!(dir.path().join(".admin.conf.user-file.tmp").exists());
    }

    #[test]
    fn mount_points_decode_octal_escapes() {
        let info = "36 25 0:32 / /var/lib/kubelet rw - ext4 /dev/sda rw\n38 36 0:34 / /var/lib/kubelet/pods/u1/a\\040b rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_points(info),
            vec![
                PathBuf::from("/var/lib/kubelet"),
                PathBuf::from("/var/lib/kubelet/pods/u1/a b")
            ]
        );
    }
}
