//! Which executables kubeboot runs as root: only files that nobody but root could have put
//! there, checked the way sshd's StrictModes checks a user's files (OpenSSH: misc.c,
//! `safe_path()`): the file and every directory above it are owned by root and writable by
//! no group or other user.
//!
//! Unlike `safe_path()`, which checks only the `realpath()` of the file, every symlink on the
//! way is followed here by hand, so the directory each symlink lives in is checked as well as
//! the final target: a trusted `/usr/local/bin/kube-apiserver` that points into a user's
//! home is refused, and so is a root-owned file reached through a symlink in a directory
//! the user can write (they could point the symlink elsewhere).
//!
//! Sticky directories get no exception (`safe_path()` makes none either): a world-writable
//! directory with the sticky bit, like `/tmp`, keeps others from renaming or deleting
//! entries they do not own, but anyone can still create a name in it, so a binary under
//! `/tmp` whose path is ever missing (not created yet, cleaned by tmpfiles, a tempdir that
//! was removed) can be claimed by any user; and the names there are predictable.
//!
//! The owner may also be the user kubeboot runs as (the `uid` `safe_path()` is given): for
//! root, which is how kubeboot runs on a node, that is root alone; an unprivileged user who
//! runs the agent for a test runs their own files with their own rights, which gains nothing.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Why a binary is not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// The binary that was to be run, as it was found.
    pub file: PathBuf,
    /// The path that makes it untrusted: the file, its target, or a directory on the way.
    pub offending: PathBuf,
    /// What is wrong with `offending`.
    pub problem: Problem,
}

/// What is wrong with the offending path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The path is relative: it would be looked up again from whatever the current
    /// directory is when it runs.
    Relative,
    /// Owned by someone other than root (or the user kubeboot runs as).
    Owner {
        /// Its owner.
        uid: u32,
        /// Its mode bits.
        mode: u32,
    },
    /// Writable by its group or by others.
    Writable {
        /// Its owner.
        uid: u32,
        /// Its mode bits.
        mode: u32,
    },
    /// The final target is not a regular file.
    NotAFile,
    /// More than [`MAX_SYMLINKS`] symlinks on the way.
    TooManySymlinks,
    /// It could not be inspected (`lstat`, `readlink`).
    Unreadable(String),
}

impl std::error::Error for Untrusted {}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        let off = self.offending.display();
        let what = if self.offending == self.file {
            "it".to_string()
        } else {
            format!("{off:?}, on the way to it,")
        };
        let fix = || {
            let p = shell_word(&self.offending);
            format!(
                "fix: chown root:root {p} && chmod go-w {p}, or install the binaries in a directory only root can write and pass that with --bin-dir"
            )
        };
        match &self.problem {
            Problem::Relative => write!(
                f,
                "refusing to run {file:?} as root: it is a relative path, looked up from whatever the current directory is; pass an absolute --bin-dir"
            ),
            Problem::Owner { uid, mode } => write!(
                f,
                "refusing to run {file:?} as root: {what} is owned by uid {uid} (mode {mode:04o}), not root, so that user could replace what runs; {}",
                fix()
            ),
            Problem::Writable { uid, mode } => write!(
                f,
                "refusing to run {file:?} as root: {what} is writable by group or others (owner uid {uid}, mode {mode:04o}), who could replace what runs; {}",
                fix()
            ),
            Problem::NotAFile => write!(
                f,
                "refusing to run {file:?}: {off:?} is not a regular file; install the binary there"
            ),
            Problem::TooManySymlinks => write!(
                f,
                "refusing to run {file:?}: more than {MAX_SYMLINKS} symlinks on the way to {off:?}; point it at the binary directly"
            ),
            Problem::Unreadable(e) => write!(
                f,
                "refusing to run {file:?}: could not inspect {off:?}: {e}"
            ),
        }
    }
}

/// A path as one word a shell reads back unchanged.
fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Checks that `file` may be run as root: it is absolute, and it, every symlink's directory
/// on the way to its final target, the target and every directory above them are owned by
/// root (or the user running this) and not writable by group or others.
///
/// # Errors
/// [`Untrusted`], naming the file, the offending path, its owner and mode, and the fix.
pub fn check_binary(file: &Path) -> Result<(), Untrusted> {
    let untrusted = |offending: &Path, problem: Problem| Untrusted {
        file: file.to_path_buf(),
        offending: offending.to_path_buf(),
        problem,
    };
    if !file.is_absolute() {
        return Err(untrusted(file, Problem::Relative));
    }
    let me = nix::unistd::geteuid().as_raw();
    let owner_ok = |uid: u32| uid == 0 || uid == me;
    // Owner first: chown is the fix that matters, and a user's directory is theirs whatever
    // its mode says.
    let judge = |path: &Path, meta: &std::fs::Metadata| -> Result<(), Untrusted> {
        let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
        if !owner_ok(uid) {
            Err(untrusted(path, Problem::Owner { uid, mode }))
        } else if mode & 0o022 != 0 {
            Err(untrusted(path, Problem::Writable { uid, mode }))
        } else {
            Ok(())
        }
    };
    let lstat = |path: &Path| {
        std::fs::symlink_metadata(path)
            .map_err(|e| untrusted(path, Problem::Unreadable(e.to_string())))
    };

    // A hand-made realpath(3): `at` is always a symlink-free directory already judged.
    let mut at = PathBuf::from("/");
    judge(&at, &lstat(&at)?)?;
    let mut todo = parts(file);
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        let name = match part {
            Part::Parent => {
                at.pop();
                continue;
            }
            Part::Name(n) => n,
        };
        let next = at.join(&name);
        let meta = lstat(&next)?;
        if meta.file_type().is_symlink() {
            // The link itself has no mode worth reading (always 0777); who can replace it is
            // decided by its directory, `at`, judged already.
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(untrusted(&next, Problem::TooManySymlinks));
            }
            let target = std::fs::read_link(&next)
                .map_err(|e| untrusted(&next, Problem::Unreadable(e.to_string())))?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            for p in parts(&target).into_iter().rev() {
                todo.push_front(p);
            }
            continue;
        }
        judge(&next, &meta)?;
        if todo.is_empty() {
            return if meta.is_file() {
                Ok(())
            } else {
                Err(untrusted(&next, Problem::NotAFile))
            };
        }
        if !meta.is_dir() {
            return Err(untrusted(
                &next,
                Problem::Unreadable("not a directory".into()),
            ));
        }
        at = next;
    }
    // The path ended in `/`, `.` or `..`: a directory.
    Err(untrusted(&at, Problem::NotAFile))
}

/// One step of a path walk.
enum Part {
    Parent,
    Name(OsString),
}

fn parts(path: &Path) -> VecDeque<Part> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Part::Name(n.to_os_string())),
            Component::ParentDir => Some(Part::Parent),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The absolute, symlink-free form of a directory the user named (`--bin-dir`), resolved
/// once against the current directory, so that the directory checked is the one the agent
/// later runs from. A directory that does not exist (yet) is made absolute as written: the
/// lookups in it then report what is missing.
///
/// # Errors
/// The current directory cannot be read.
pub fn canonical_dir(dir: &Path) -> std::io::Result<PathBuf> {
    match std::fs::canonicalize(dir) {
        Ok(p) => Ok(p),
        Err(_) => std::path::absolute(dir),
    }
}

#[cfg(test)]
mod tests {
    //! Real files under a root-owned private base (these tests need root, as CI runs them:
    //! only root can make files owned by another user).
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    const NOBODY: u32 = 65534;

    /// A private directory whose every ancestor is root-owned and not group/other writable
    /// (the build directory of this test, not /tmp), or None with a note when not root.
    fn base(test: &str) -> Option<tempfile::TempDir> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIPPED {test}: the trust tests need root (only root can chown a file to another user); CI runs them as root"
            );
            return None;
        }
        // target/<profile>/deps/<test binary> -> target/<profile>/trust-tests
        let exe = std::env::current_exe().expect("the test binary has a path");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary lives in target/<profile>/deps");
        let dir = profile.join("trust-tests");
        std::fs::create_dir_all(&dir).expect("create the test base");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the test base");
        let tmp = tempfile::Builder::new()
            .prefix("t")
            .tempdir_in(&dir)
            .expect("tempdir in the test base");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the tempdir");
        if let Err(e) = check_dir_chain(tmp.path()) {
            panic!("the test base itself is not trusted, fix the build directory: {e}");
        }
        Some(tmp)
    }

    /// The base must pass for the cases to mean anything: check it as a binary's parent.
    fn check_dir_chain(dir: &Path) -> Result<(), Untrusted> {
        let probe = dir.join(".probe");
        exe(&probe, 0o755);
        let r = check_binary(&probe);
        std::fs::remove_file(&probe).expect("remove the probe");
        r
    }

    fn exe(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\nexit 0\n").expect("write the binary");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mkdir(path: &Path, mode: u32) {
        std::fs::create_dir(path).expect("mkdir");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn chown(path: &Path, uid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), Some(uid)).expect("chown");
    }

    #[test]
    fn root_owned_binary_in_root_owned_directories_is_trusted() {
        let Some(t) = base("root_owned_binary_in_root_owned_directories_is_trusted") else {
            return;
        };
        let bin = t.path().join("bin");
        mkdir(&bin, 0o755);
        exe(&bin.join("kube-apiserver"), 0o755);
        check_binary(&bin.join("kube-apiserver")).unwrap();
        // Through a symlink whose directory and target are both trusted, and through `..`.
        symlink(bin.join("kube-apiserver"), t.path().join("link")).unwrap();
        check_binary(&t.path().join("link")).unwrap();
        check_binary(&bin.join("../bin/./kube-apiserver")).unwrap();
    }

    #[test]
    fn binary_owned_by_another_user_is_refused_with_the_fix() {
        let Some(t) = base("binary_owned_by_another_user_is_refused_with_the_fix") else {
            return;
        };
        let file = t.path().join("kube-apiserver");
        exe(&file, 0o755);
        chown(&file, NOBODY);
        let e = check_binary(&file).unwrap_err();
        assert_eq!(e.offending, file);
        assert_eq!(
            e.problem,
            Problem::Owner {
                uid: NOBODY,
                mode: 0o755
            }
        );
        let msg = e.to_string();
        for want in [
            "owned by uid 65534",
            "mode 0755",
            &format!("chown root:root {0} && chmod go-w {0}", file.display()),
        ] {
            assert!(msg.contains(want), "{msg}");
        }
    }

    #[test]
    fn group_writable_binary_is_refused() {
        let Some(t) = base("group_writable_binary_is_refused") else {
            return;
        };
        let file = t.path().join("etcd");
        exe(&file, 0o775);
        let e = check_binary(&file).unwrap_err();
        assert_eq!(e.offending, file);
        assert_eq!(
            e.problem,
            Problem::Writable {
                uid: 0,
                mode: 0o775
            }
        );
        assert!(e.to_string().contains("writable by group or others"), "{e}");
    }

    #[test]
    fn world_writable_ancestor_is_refused_even_with_the_sticky_bit() {
        let Some(t) = base("world_writable_ancestor_is_refused_even_with_the_sticky_bit") else {
            return;
        };
        let shared = t.path().join("shared");
        mkdir(&shared, 0o1777);
        let bin = shared.join("bin");
        mkdir(&bin, 0o755);
        exe(&bin.join("kubelet"), 0o755);
        let e = check_binary(&bin.join("kubelet")).unwrap_err();
        assert_eq!(e.offending, shared);
        assert_eq!(
            e.problem,
            Problem::Writable {
                uid: 0,
                mode: 0o1777
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("chmod go-w {}", shared.display())),
            "{msg}"
        );
        // /tmp itself: what tempfile::tempdir() gives is refused.
        let tmp = tempfile::tempdir().unwrap();
        exe(&tmp.path().join("kubelet"), 0o755);
        let e = check_binary(&tmp.path().join("kubelet")).unwrap_err();
        assert_eq!(e.offending, std::env::temp_dir().canonicalize().unwrap());
    }

    #[test]
    fn directory_owned_by_another_user_is_refused() {
        let Some(t) = base("directory_owned_by_another_user_is_refused") else {
            return;
        };
        let home = t.path().join("home");
        mkdir(&home, 0o755);
        chown(&home, NOBODY);
        exe(&home.join("kube-proxy"), 0o755);
        let e = check_binary(&home.join("kube-proxy")).unwrap_err();
        assert_eq!(e.offending, home);
        assert!(
            matches!(e.problem, Problem::Owner { uid: NOBODY, .. }),
            "{e}"
        );
    }

    #[test]
    fn symlink_in_a_trusted_directory_into_an_untrusted_one_is_refused() {
        let Some(t) = base("symlink_in_a_trusted_directory_into_an_untrusted_one_is_refused")
        else {
            return;
        };
        let user = t.path().join("user");
        mkdir(&user, 0o755);
        chown(&user, NOBODY);
        exe(&user.join("kube-scheduler"), 0o755);
        let bin = t.path().join("bin");
        mkdir(&bin, 0o755);
        symlink(user.join("kube-scheduler"), bin.join("kube-scheduler")).unwrap();
        let e = check_binary(&bin.join("kube-scheduler")).unwrap_err();
        assert_eq!(e.file, bin.join("kube-scheduler"));
        assert_eq!(e.offending, user);
        // A relative link into the same place is followed the same way.
        symlink("../user/kube-scheduler", bin.join("rel")).unwrap();
        assert_eq!(check_binary(&bin.join("rel")).unwrap_err().offending, user);
        // And the other way round: a root-owned target reached through a symlink that
        // lives in a directory the user can write.
        let target = bin.join("real");
        exe(&target, 0o755);
        let lnk = t.path().join("user-links");
        mkdir(&lnk, 0o777);
        symlink(&target, lnk.join("kube-scheduler")).unwrap();
        let e = check_binary(&lnk.join("kube-scheduler")).unwrap_err();
        assert_eq!(e.offending, lnk);
    }

    #[test]
    fn relative_paths_are_refused() {
        let e = check_binary(Path::new("bin/kube-apiserver")).unwrap_err();
        assert_eq!(e.problem, Problem::Relative);
        assert!(e.to_string().contains("pass an absolute --bin-dir"), "{e}");
        // A relative --bin-dir that does hold the binary: found, then refused.
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        let rel = PathBuf::from(format!("{up}bin"));
        assert!(rel.join("sh").is_file(), "{rel:?} from {cwd:?}");
        let e = crate::host::process::find_binary("sh", &[rel]).unwrap_err();
        assert_eq!(e.problem, Problem::Relative);
    }

    #[test]
    fn relative_dirs_are_made_absolute_once() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            canonical_dir(Path::new("src/../src")).unwrap(),
            cwd.join("src").canonicalize().unwrap()
        );
        assert_eq!(
            canonical_dir(Path::new("no-such-dir")).unwrap(),
            cwd.join("no-such-dir")
        );
    }

    #[test]
    fn the_agent_daemon_is_not_started_from_an_untrusted_file() {
        // /tmp is world-writable: refused whoever runs the test.
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("kubeboot");
        let ran = tmp.path().join("ran");
        std::fs::write(&exe, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let layout = components::Layout::under(tmp.path());
        let e = crate::daemon::start_detached(&exe, &["agent".into()], &layout).unwrap_err();
        assert!(e.to_string().starts_with("refusing to run"), "{e}");
        assert!(!layout.agent_pid_file().exists());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!ran.exists(), "it ran");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word(Path::new("/opt/k8s/bin")), "/opt/k8s/bin");
        assert_eq!(
            shell_word(Path::new("/opt/k 8s/it's")),
            r"'/opt/k 8s/it'\''s'"
        );
    }
}
