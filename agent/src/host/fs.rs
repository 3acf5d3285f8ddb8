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

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

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

    /// Creates `path` and its missing parents; `path` itself gets `mode` (an existing directory
    /// is chmod-ed to it). Parents get 0755.
    pub fn create_dir(&self, path: &Path, mode: u32) -> anyhow::Result<()> {
        let target = self.resolve(path);
        create_dir_mode(&target, mode).with_context(|| {
            format!(
                "could not create directory {:?}",
                path.display().to_string()
            )
        })
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

    /// Removes the contents of a directory (not the directory itself, which may be a mount
    /// point), if it exists. Returns how many entries were removed.
    pub fn clear_dir(&self, path: &Path) -> anyhow::Result<usize> {
        let target = self.resolve(path);
        let entries = match fs::read_dir(&target) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("could not list {:?}", path.display().to_string()));
            }
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry
                .with_context(|| format!("could not list {:?}", path.display().to_string()))?;
            let p = entry.path();
            let ft = entry
                .file_type()
                .with_context(|| format!("could not stat {}", p.display()))?;
            if ft.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            }
            .with_context(|| format!("could not remove {}", p.display()))?;
            n += 1;
        }
        Ok(n)
    }
}

fn create_dir_mode(path: &Path, mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        fs::create_dir_all(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(e) => return Err(e),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
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
    let tmp = temp_name(target)?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
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
        let d = dir.path().join("a/manifests");
        let f = Fs::real();
        f.create_dir(&d, 0o700).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        f.write_public(&d.join("x.yaml"), b"1").unwrap();
        f.create_dir(&d.join("sub"), 0o755).unwrap();
        assert_eq!(f.clear_dir(&d).unwrap(), 2);
        assert!(d.is_dir());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
    }
}
