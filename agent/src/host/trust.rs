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
//! A `--bin-dir` is checked the same way whatever it holds ([`check_dir`]): it goes first on
//! the `PATH` of every component, which runs whatever `iptables` or `mount` it finds there.
//! Nothing under procfs passes: the kernel follows its magic links (`/proc/<pid>/root`,
//! `/proc/self/exe`) to objects their text does not name, so reading them proves nothing.
//!
//! The owner may also be the user kubeboot runs as (the `uid` `safe_path()` is given): for
//! root, which is how kubeboot runs on a node, that is root alone; an unprivileged user who
//! runs the agent for a test runs their own files with their own rights, which gains nothing.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up (Linux's MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Where to put binaries that pass, named in advice that must not touch a system directory.
const SAFE_BIN_DIR: &str = "/opt/kubeboot/bin";

/// Directories of the system (FHS) or shared by every user: a `chown` or `chmod go-w` of
/// one of them breaks the machine (`chmod go-w /tmp`) or someone's files, so the advice for
/// them is to move the binaries instead. Every top-level directory counts as well.
const SYSTEM_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/share",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/local/lib",
    "/var/lib",
    "/var/tmp",
    "/var/cache",
    "/var/log",
    "/var/run",
    "/var/lock",
    "/run/user",
    "/run/lock",
    "/dev/shm",
];

/// Why a binary is not run, or a `--bin-dir` not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// The binary that was to be run, or the `--bin-dir`, as it was given.
    pub file: PathBuf,
    /// Whether `file` is a binary or a `--bin-dir`.
    pub subject: Subject,
    /// The path that makes it untrusted: the file, its target, or a directory on the way.
    pub offending: PathBuf,
    /// What is wrong with `offending`.
    pub problem: Problem,
}

/// What was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A binary about to run as root ([`check_binary`]).
    Binary,
    /// A `--bin-dir`: binaries are looked up in it and it goes first on the `PATH` of every
    /// component, which then runs whatever `iptables` or `mount` it finds there
    /// ([`check_dir`]).
    BinDir,
}

/// What is wrong with the offending path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The path is relative: it would be looked up again from whatever the current
    /// directory is when it runs.
    Relative,
    /// The binary was found through a relative `$PATH` entry (`offending`).
    RelativePathEntry,
    /// Owned by someone other than root (or the user kubeboot runs as).
    Owner {
        /// Its owner.
        uid: u32,
        /// Its mode bits.
        mode: u32,
        /// Whether it is a directory.
        dir: bool,
    },
    /// Writable by its group or by others.
    Writable {
        /// Its owner.
        uid: u32,
        /// Its mode bits.
        mode: u32,
        /// Whether it is a directory.
        dir: bool,
    },
    /// The final target of a binary is not a regular file.
    NotAFile,
    /// A path goes on below something that is not a directory, or a `--bin-dir` is not one.
    NotADirectory,
    /// It does not exist: a dangling symlink, or a file removed meanwhile.
    Missing,
    /// Under procfs, whose magic links (`/proc/<pid>/root`, `/proc/self/exe`) the kernel
    /// follows to objects whose text says nothing about them.
    Proc,
    /// More than [`MAX_SYMLINKS`] symlinks on the way.
    TooManySymlinks,
    /// It could not be inspected (`lstat`, `readlink`, `statfs`).
    Unreadable(String),
}

impl std::error::Error for Untrusted {}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        let off = self.offending.display();
        match self.subject {
            Subject::Binary => write!(f, "refusing to run {file:?} as root: ")?,
            Subject::BinDir => write!(
                f,
                "refusing --bin-dir {file:?}, which goes first on the PATH of every component kubeboot runs as root: "
            )?,
        }
        let what = if self.offending == self.file {
            "it".to_string()
        } else {
            format!("{off:?}, on the way to it,")
        };
        let moved = format!(
            "move the binaries to a root-owned directory no one else can write (e.g. {SAFE_BIN_DIR}) and pass --bin-dir"
        );
        match &self.problem {
            Problem::Relative => write!(
                f,
                "it is a relative path, looked up from whatever the current directory is; fix: pass an absolute --bin-dir"
            ),
            Problem::RelativePathEntry => write!(
                f,
                "it was found through the relative $PATH entry {off:?}, looked up from whatever the current directory is; fix: remove that entry from $PATH or make it absolute"
            ),
            Problem::Owner { uid, mode, dir } => write!(
                f,
                "{what} is owned by uid {uid} (mode {mode:04o}), not root, so that user could replace what runs; {}",
                self.fix(*dir, *mode, &moved)
            ),
            Problem::Writable { uid, mode, dir } => write!(
                f,
                "{what} is writable by group or others (owner uid {uid}, mode {mode:04o}), who could replace what runs; {}",
                self.fix(*dir, *mode, &moved)
            ),
            Problem::NotAFile => write!(
                f,
                "{off:?} is not a regular file; fix: install the binary there"
            ),
            Problem::NotADirectory
                if self.subject == Subject::BinDir && self.offending == self.file =>
            {
                write!(
                    f,
                    "it is not a directory; fix: pass the directory that holds the binaries"
                )
            }
            Problem::NotADirectory => write!(
                f,
                "{off:?} is not a directory, yet the path goes on below it; fix: correct the path, or {}",
                moved
            ),
            Problem::Missing => write!(
                f,
                "{off:?} does not exist (a dangling symlink, or removed meanwhile); fix: install the binary, or point the symlink at an installed one"
            ),
            Problem::Proc => write!(
                f,
                "{off:?} is under /proc, whose links the kernel follows to objects their text does not name; fix: give the real path (readlink -f)"
            ),
            Problem::TooManySymlinks => write!(
                f,
                "more than {MAX_SYMLINKS} symlinks on the way to {off:?}; fix: point it at the binary directly"
            ),
            Problem::Unreadable(e) => write!(
                f,
                "could not inspect {off:?}: {e}; fix: make it and the directories above it readable by root (a root-squashed network mount is not), or {}",
                moved
            ),
        }
    }
}

impl Untrusted {
    /// The fix for an owner or mode problem: `chown`/`chmod` where that harms nothing (the
    /// binary itself, a directory of the user's own making), moving the binaries where it
    /// would (`/tmp`, `/home/alice`, `/usr/local`).
    fn fix(&self, dir: bool, mode: u32, moved: &str) -> String {
        if dir && (mode & 0o1000 != 0 || is_shared_dir(&self.offending)) {
            return format!("fix: {moved}");
        }
        let p = shell_word(&self.offending);
        format!("fix: chown root:root {p} && chmod go-w {p}, or {}", moved)
    }
}

/// A system, shared or home directory ([`SYSTEM_DIRS`], any top-level directory, any
/// `/home/<user>`).
fn is_shared_dir(p: &Path) -> bool {
    let parent = p.parent();
    parent.is_none()
        || parent == Some(Path::new("/"))
        || parent == Some(Path::new("/home"))
        || SYSTEM_DIRS.iter().any(|d| p == Path::new(d))
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
/// root (or the user running this) and not writable by group or others; nothing on the way
/// is under /proc.
///
/// # Errors
/// [`Untrusted`], naming the file, the offending path, its owner and mode, and the fix.
pub fn check_binary(file: &Path) -> Result<(), Untrusted> {
    walk(file, Subject::Binary)
}

/// Checks that the directory `dir` may go on the `PATH` of what runs as root and have
/// binaries looked up in it, whatever it holds now: it and every directory above it (through
/// symlinks, as [`check_binary`]) pass the same test. A directory that does not exist yet
/// passes when the deepest one that does exists passes: only root can then create it.
///
/// # Errors
/// [`Untrusted`], as [`check_binary`].
pub fn check_dir(dir: &Path) -> Result<(), Untrusted> {
    walk(dir, Subject::BinDir)
}

/// A hand-made realpath(3) that judges every directory and target on the way.
fn walk(file: &Path, subject: Subject) -> Result<(), Untrusted> {
    let untrusted = |offending: &Path, problem: Problem| Untrusted {
        file: file.to_path_buf(),
        subject,
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
        let (uid, mode, dir) = (meta.uid(), meta.mode() & 0o7777, meta.is_dir());
        if !owner_ok(uid) {
            Err(untrusted(path, Problem::Owner { uid, mode, dir }))
        } else if mode & 0o022 != 0 {
            Err(untrusted(path, Problem::Writable { uid, mode, dir }))
        } else {
            Ok(())
        }
    };
    let unreadable =
        |path: &Path, e: &dyn fmt::Display| untrusted(path, Problem::Unreadable(e.to_string()));
    // Reading a magic link's text is not what the kernel does with it: refuse procfs.
    let on_proc = |dir: &Path| -> Result<(), Untrusted> {
        use nix::sys::statfs::{PROC_SUPER_MAGIC, statfs};
        match statfs(dir) {
            Ok(s) if s.filesystem_type() == PROC_SUPER_MAGIC => Err(untrusted(dir, Problem::Proc)),
            Ok(_) => Ok(()),
            Err(e) => Err(unreadable(dir, &e)),
        }
    };

    // `at` is always a symlink-free directory already judged, not on procfs.
    let mut at = PathBuf::from("/");
    judge(
        &at,
        &std::fs::symlink_metadata(&at).map_err(|e| unreadable(&at, &e))?,
    )?;
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
        on_proc(&at)?;
        let next = at.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            // No one but whoever may write `at` (judged: root) can create the rest.
            Err(e) if e.kind() == ErrorKind::NotFound && subject == Subject::BinDir => {
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(untrusted(&next, Problem::Missing));
            }
            Err(e) => return Err(unreadable(&next, &e)),
        };
        if meta.file_type().is_symlink() {
            // The link itself has no mode worth reading (always 0777); who can replace it is
            // decided by its directory, `at`, judged already.
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(untrusted(&next, Problem::TooManySymlinks));
            }
            let target = std::fs::read_link(&next).map_err(|e| unreadable(&next, &e))?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            for p in parts(&target).into_iter().rev() {
                todo.push_front(p);
            }
            continue;
        }
        judge(&next, &meta)?;
        if todo.is_empty() && subject == Subject::Binary {
            return if meta.is_file() {
                Ok(())
            } else {
                Err(untrusted(&next, Problem::NotAFile))
            };
        }
        if !meta.is_dir() {
            return Err(untrusted(&next, Problem::NotADirectory));
        }
        at = next;
    }
    match subject {
        // The path ended in `/`, `.` or `..`: a directory.
        Subject::Binary => Err(untrusted(&at, Problem::NotAFile)),
        Subject::BinDir => on_proc(&at),
    }
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
/// It cannot be resolved for another reason than not existing (a file on the way, a
/// symlink loop, no permission), or the current directory cannot be read; the error names
/// the path.
pub fn canonical_dir(dir: &Path) -> std::io::Result<PathBuf> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    match std::fs::canonicalize(dir) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == ErrorKind::NotFound => std::path::absolute(dir).map_err(named),
        Err(e) => Err(named(e)),
    }
}

#[cfg(test)]
mod tests {
    //! Real files under a root-owned private base in the build directory (not /tmp). The
    //! cases that give a file to another user need root (`#[ignore]`d, CI runs them as root
    //! with `--run-ignored all`; run without root they fail saying so).
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    const NOBODY: u32 = 65534;

    /// Fails, naming the need, when not root: a chown case must never pass unchecked.
    fn need_root(test: &str) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "{test} needs root (only root can chown a file to another user); run it as root, as CI does"
        );
    }

    /// A private directory whose every ancestor is root-owned (or ours) and not
    /// group/other writable: the build directory of this test, not /tmp.
    fn base() -> tempfile::TempDir {
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
        tmp
    }

    /// The base must pass for the cases to mean anything: check it as a binary's parent.
    fn check_dir_chain(dir: &Path) -> Result<(), Untrusted> {
        let probe = dir.join(".probe");
        exe(&probe, 0o755);
        let r = check_binary(&probe);
        std::fs::remove_file(&probe).expect("remove the probe");
        r.and_then(|()| check_dir(dir))
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

    const MOVE: &str = "fix: move the binaries to a root-owned directory no one else can write (e.g. /opt/kubeboot/bin) and pass --bin-dir";

    #[test]
    fn root_owned_binary_in_root_owned_directories_is_trusted() {
        let t = base();
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
    #[ignore = "needs root"]
    fn binary_owned_by_another_user_is_refused_with_the_fix() {
        need_root("binary_owned_by_another_user_is_refused_with_the_fix");
        let t = base();
        let file = t.path().join("kube-apiserver");
        exe(&file, 0o755);
        chown(&file, NOBODY);
        let e = check_binary(&file).unwrap_err();
        assert_eq!(e.offending, file);
        assert_eq!(
            e.problem,
            Problem::Owner {
                uid: NOBODY,
                mode: 0o755,
                dir: false
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
        let t = base();
        let file = t.path().join("etcd");
        exe(&file, 0o775);
        let e = check_binary(&file).unwrap_err();
        assert_eq!(e.offending, file);
        assert!(
            matches!(
                e.problem,
                Problem::Writable {
                    mode: 0o775,
                    dir: false,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("writable by group or others"), "{e}");
    }

    #[test]
    fn world_writable_ancestor_is_refused_even_with_the_sticky_bit() {
        let t = base();
        let shared = t.path().join("shared");
        mkdir(&shared, 0o1777);
        let bin = shared.join("bin");
        mkdir(&bin, 0o755);
        exe(&bin.join("kubelet"), 0o755);
        let e = check_binary(&bin.join("kubelet")).unwrap_err();
        assert_eq!(e.offending, shared);
        assert!(
            matches!(
                e.problem,
                Problem::Writable {
                    mode: 0o1777,
                    dir: true,
                    ..
                }
            ),
            "{e}"
        );
        // A sticky directory is shared by design: chmod go-w would break its users.
        let msg = e.to_string();
        assert!(msg.ends_with(MOVE) && !msg.contains("chmod"), "{msg}");
        // /tmp itself: what tempfile::tempdir() gives is refused, and /tmp is left alone.
        let tmp = tempfile::tempdir().unwrap();
        exe(&tmp.path().join("kubelet"), 0o755);
        let e = check_binary(&tmp.path().join("kubelet")).unwrap_err();
        assert_eq!(e.offending, std::env::temp_dir().canonicalize().unwrap());
        assert!(!e.to_string().contains("chmod"), "{e}");
    }

    #[test]
    #[ignore = "needs root"]
    fn directory_owned_by_another_user_is_refused() {
        need_root("directory_owned_by_another_user_is_refused");
        let t = base();
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
        // The user's own directory (not a home, not a system one): chown is offered.
        assert!(
            e.to_string()
                .contains(&format!("chown root:root {}", home.display())),
            "{e}"
        );
    }

    #[test]
    fn advice_never_touches_system_home_or_sticky_directories() {
        let e = |offending: &str, problem: Problem| Untrusted {
            file: PathBuf::from("/home/alice/bin/kubelet"),
            subject: Subject::Binary,
            offending: PathBuf::from(offending),
            problem,
        };
        let dir_owner = Problem::Owner {
            uid: 1000,
            mode: 0o755,
            dir: true,
        };
        let dir_writable = |mode| Problem::Writable {
            uid: 0,
            mode,
            dir: true,
        };
        for (off, problem) in [
            ("/home/alice", dir_owner.clone()),
            ("/home", dir_writable(0o775)),
            ("/tmp", dir_writable(0o1777)),
            ("/srv/shared", dir_writable(0o1777)),
            ("/usr/local", dir_writable(0o2775)),
            ("/usr/local/bin", dir_writable(0o775)),
            ("/var/tmp", dir_writable(0o777)),
            ("/", dir_writable(0o777)),
            ("/opt", dir_owner.clone()),
        ] {
            let msg = e(off, problem).to_string();
            assert!(
                msg.ends_with(MOVE) && !msg.contains("chmod"),
                "{off}: {msg}"
            );
        }
        // The file itself, and a directory of someone's own making: chown and chmod help.
        for (off, problem) in [
            (
                "/home/alice/bin/kubelet",
                Problem::Owner {
                    uid: 1000,
                    mode: 0o755,
                    dir: false,
                },
            ),
            ("/home/alice/bin", dir_owner.clone()),
            ("/opt/k8s/bin", dir_writable(0o775)),
        ] {
            let msg = e(off, problem).to_string();
            assert!(
                msg.contains(&format!(
                    "fix: chown root:root {off} && chmod go-w {off}, or move"
                )),
                "{off}: {msg}"
            );
        }
    }

    #[test]
    fn every_refusal_says_how_to_fix_it() {
        let t = base();
        // A dangling symlink.
        symlink(t.path().join("gone"), t.path().join("kubelet")).unwrap();
        let e = check_binary(&t.path().join("kubelet")).unwrap_err();
        assert_eq!(
            (&e.offending, &e.problem),
            (&t.path().join("gone"), &Problem::Missing)
        );
        // A file where a directory should be.
        exe(&t.path().join("file"), 0o755);
        let e = check_binary(&t.path().join("file/kubelet")).unwrap_err();
        assert_eq!(e.problem, Problem::NotADirectory);
        let e2 = check_dir(&t.path().join("file")).unwrap_err();
        assert_eq!(e2.problem, Problem::NotADirectory);
        let unreadable = Untrusted {
            file: PathBuf::from("/mnt/nfs/kubelet"),
            subject: Subject::Binary,
            offending: PathBuf::from("/mnt/nfs"),
            problem: Problem::Unreadable("Permission denied (os error 13)".into()),
        };
        for e in [e, e2, unreadable] {
            assert!(e.to_string().contains("; fix: "), "{e}");
        }
    }

    #[test]
    fn proc_magic_links_are_refused() {
        // /proc/self/exe's text is this test binary, which passes: the kernel, not the text,
        // decides what a magic link reaches (another root, a deleted file, an fd).
        check_binary(&std::fs::read_link("/proc/self/exe").unwrap()).unwrap();
        for p in ["/proc/self/exe", "/proc/1/root/bin/sh", "/proc/self/fd/0"] {
            let e = check_binary(Path::new(p)).unwrap_err();
            assert_eq!(
                (&e.offending, &e.problem),
                (&PathBuf::from("/proc"), &Problem::Proc),
                "{p}"
            );
            assert!(e.to_string().contains("is under /proc"), "{e}");
        }
        let e = check_dir(Path::new("/proc/self/root/usr/bin")).unwrap_err();
        assert_eq!(e.problem, Problem::Proc);
        // Reached through a trusted symlink as well.
        let t = base();
        symlink("/proc/self/exe", t.path().join("kubeboot")).unwrap();
        let e = check_binary(&t.path().join("kubeboot")).unwrap_err();
        assert_eq!(e.problem, Problem::Proc);
    }

    #[test]
    fn bin_dirs_are_checked_whatever_they_hold() {
        let t = base();
        // Empty, and writable by all: every component would find `iptables` there first.
        let bad = t.path().join("bin");
        mkdir(&bad, 0o777);
        let e = check_dir(&bad).unwrap_err();
        assert_eq!((&e.subject, &e.offending), (&Subject::BinDir, &bad));
        assert!(
            matches!(
                e.problem,
                Problem::Writable {
                    mode: 0o777,
                    dir: true,
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("refusing --bin-dir \"{}\"", bad.display()))
                && msg.contains("it is writable by group or others")
                && msg.contains(&format!("chmod go-w {}", bad.display())),
            "{msg}"
        );
        // Below it, too: a trusted directory inside a writable one can be renamed away.
        let inner = bad.join("inner");
        mkdir(&inner, 0o755);
        assert_eq!(check_dir(&inner).unwrap_err().offending, bad);
        // One that does not exist yet under it: anyone could create it.
        assert_eq!(check_dir(&bad.join("later")).unwrap_err().offending, bad);
        // A trusted one, and one only root could create, pass.
        let good = t.path().join("good");
        mkdir(&good, 0o755);
        check_dir(&good).unwrap();
        check_dir(&good.join("later/still")).unwrap();
        check_dir(Path::new("/usr/bin")).unwrap();
    }

    #[test]
    #[ignore = "needs root"]
    fn symlink_in_a_trusted_directory_into_an_untrusted_one_is_refused() {
        need_root("symlink_in_a_trusted_directory_into_an_untrusted_one_is_refused");
        let t = base();
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
        // A --bin-dir that is a symlink into the user's directory.
        symlink(&user, t.path().join("bin-link")).unwrap();
        assert_eq!(
            check_dir(&t.path().join("bin-link")).unwrap_err().offending,
            user
        );
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
    fn only_a_missing_dir_is_made_absolute_as_written() {
        let t = base();
        exe(&t.path().join("file"), 0o755);
        symlink("loop", t.path().join("loop")).unwrap();
        for (given, errno) in [
            (t.path().join("file/bin"), libc::ENOTDIR),
            (t.path().join("loop"), libc::ELOOP),
        ] {
            let e = canonical_dir(&given).unwrap_err();
            let os = std::io::Error::from_raw_os_error(errno);
            assert_eq!(e.kind(), os.kind(), "{e}");
            assert!(e.to_string().ends_with(&os.to_string()), "{e}");
            assert!(
                e.to_string().starts_with(&format!("{}: ", given.display())),
                "{e}"
            );
        }
    }

    #[test]
    fn the_agent_daemon_is_not_started_from_an_untrusted_file() {
        // A directory anyone can write, made so here (not trusting /tmp to be one).
        let t = base();
        let bad = t.path().join("bad");
        mkdir(&bad, 0o777);
        let exe = bad.join("kubeboot");
        let ran = t.path().join("ran");
        std::fs::write(&exe, format!("#!/bin/sh\ntouch {}\n", ran.display())).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let layout = components::Layout::under(t.path());
        let e = crate::daemon::start_detached(&exe, &["agent".into()], &layout).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "refusing to run {:?} as root: {:?}, on the way to it, is writable",
                exe.display().to_string(),
                bad.display().to_string()
            )),
            "{e}"
        );
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
