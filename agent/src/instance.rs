//! One agent per node: the agent holds an exclusive lock (flock) on
//! `/var/lib/kubeboot/agent/agent.lock` for its whole life, writes `<pid> <start-time>` into
//! it and into its pid file (`/run/kubeboot/agent.pid`), and anyone finds the running agent
//! through the lock's holder (`/proc/locks`), those two files, or, when they are all gone, the
//! marker a detached agent carries in its environment ([`AGENT_PROCESS_ENV`]).
//!
//! The lock is persistent state, not runtime state: a cleared `/run` loses the pid file and
//! the socket, never the lock, so a second agent cannot start beside the first. The lock
//! file is never replaced (a rename would make a second, unlocked inode), only rewritten in
//! place.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use components::names::AGENT_PROCESS_ENV;

use crate::host::fs::Fs;
use crate::host::process;

/// The lock file's name in the agent's state directory.
pub const LOCK_FILE: &str = "agent.lock";

/// The agent's lock file: `<state_dir>/agent.lock`.
pub fn lock_file(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

/// A running agent, found by one of the ways in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentProcess {
    /// Its PID.
    pub pid: u32,
    /// Its start time (/proc/<pid>/stat field 22): with the PID, a unique identity.
    pub start_time: u64,
}

/// This agent's hold on the node: the locked file and the pid file it wrote. Dropping it
/// removes the pid file (if it is still ours) and releases the lock.
#[derive(Debug)]
pub struct Instance {
    lock: File,
    pid_file: PathBuf,
    me: AgentProcess,
}

impl Instance {
    /// Takes the node's agent lock without waiting, then records this process in the lock
    /// file and in `pid_file` (whose directory must exist).
    ///
    /// # Errors
    /// When another agent holds the lock (the message names its PID), or the files cannot
    /// be written.
    pub fn acquire(state_dir: &Path, pid_file: &Path) -> anyhow::Result<Instance> {
        let path = lock_file(state_dir);
        let shown = path.display().to_string();
        let mut lock = open_lock_file(&path)
            .with_context(|| format!("could not open the agent's lock file {shown:?}"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = lock_holder(&path)
                    .or_else(|| read_pid(&mut lock))
                    .map_or_else(
                        || "another process".to_string(),
                        |p| format!("pid {}", p.pid),
                    );
                anyhow::bail!(
                    "another kubeboot agent is already running on this node ({holder} holds the lock {shown:?}); \
                     stop it first (\"kubeboot reset\" stops it) or use it: \"kubeboot agent status\""
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("could not lock {shown:?}"));
            }
        }
        let pid = std::process::id();
        let start_time = process::proc_stat(pid)
            .context("could not read this process's /proc/self/stat")?
            .start_time;
        let me = AgentProcess { pid, start_time };
        let line = format!("{pid} {start_time}\n");
        write_in_place(&mut lock, line.as_bytes())
            .with_context(|| format!("could not write {shown:?}"))?;
        Fs::real()
            .write_file(pid_file, line.as_bytes(), 0o644)
            .context("could not write the agent's pid file")?;
        Ok(Instance {
            lock,
            pid_file: pid_file.to_path_buf(),
            me,
        })
    }

    /// This agent.
    pub fn process(&self) -> AgentProcess {
        self.me
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let fs = Fs::real();
        let ours = fs
            .read_string_if_exists(&self.pid_file)
            .ok()
            .flatten()
            .and_then(|t| parse_pid(&t))
            == Some(self.me);
        if ours {
            let _ = fs.remove_file(&self.pid_file);
        }
        // An empty lock file tells a reader that nobody has written it since.
        let _ = self.lock.set_len(0);
        let _ = self.lock.unlock();
    }
}

/// Opens (or creates, 0600 whatever the umask) the lock file for reading and writing.
fn open_lock_file(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().read(true).write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

fn write_in_place(f: &mut File, bytes: &[u8]) -> io::Result<()> {
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(bytes)?;
    f.sync_data()
}

fn read_pid(f: &mut File) -> Option<AgentProcess> {
    let mut text = String::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.take(128).read_to_string(&mut text).ok()?;
    parse_pid(&text)
}

/// Parses `<pid> <start-time>`.
fn parse_pid(text: &str) -> Option<AgentProcess> {
    let mut it = text.split_whitespace();
    Some(AgentProcess {
        pid: it.next()?.parse().ok()?,
        start_time: it.next()?.parse().ok()?,
    })
}

/// The live process that `<pid> <start-time>` in `path` names, if any.
fn from_pid_file(path: &Path) -> Option<AgentProcess> {
    let text = Fs::real().read_string_if_exists(path).ok()??;
    let p = parse_pid(&text)?;
    process::is_alive(p.pid, p.start_time).then_some(p)
}

/// The process holding the flock on `path`, from `/proc/locks` (which the kernel keeps, so it
/// needs no file of ours to be intact).
fn lock_holder(path: &Path) -> Option<AgentProcess> {
    let meta = std::fs::metadata(path).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = flock_holder_in(
        &locks,
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
        meta.ino(),
    )?;
    let start_time = process::proc_stat(pid).ok()?.start_time;
    Some(AgentProcess { pid, start_time })
}

/// The PID holding a FLOCK on the inode `major:minor:ino` in the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 2395 08:01:1234 0 EOF`; waiters are marked `->` and skipped).
fn flock_holder_in(locks: &str, major: u64, minor: u64, ino: u64) -> Option<u32> {
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// Every process that is this node's agent: the lock's holder, the processes the lock file
/// and the pid file name (if alive with the same start time), and the processes marked with
/// `node_id` (only the topmost: an agent's own children inherit its environment). Never the
/// calling process.
pub fn find(lock: &Path, pid_file: &Path, node_id: Option<&str>) -> Vec<AgentProcess> {
    let mut found: Vec<AgentProcess> = Vec::new();
    let mut add = |p: AgentProcess| {
        if p.pid != std::process::id() && !found.iter().any(|f| f.pid == p.pid) {
            found.push(p);
        }
    };
    if let Some(p) = lock_holder(lock) {
        add(p);
    }
    for p in [from_pid_file(lock), from_pid_file(pid_file)]
        .into_iter()
        .flatten()
    {
        add(p);
    }
    if let Some(id) = node_id {
        let marked = process::find_marked(AGENT_PROCESS_ENV, |m| m == id);
        let pids: BTreeSet<u32> = marked.iter().map(|m| m.pid).collect();
        for m in marked.iter().filter(|m| !pids.contains(&m.stat.ppid)) {
            add(AgentProcess {
                pid: m.pid,
                start_time: m.stat.start_time,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_names_the_flock_holder_only() {
        let text = "1: POSIX  ADVISORY  WRITE 10 08:01:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 2395 08:01:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 2400 08:01:1234 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 99 00:2a:1234 0 EOF\n";
        assert_eq!(flock_holder_in(text, 8, 1, 1234), Some(2395));
        assert_eq!(flock_holder_in(text, 0, 0x2a, 1234), Some(99));
        assert_eq!(flock_holder_in(text, 8, 1, 77), None);
    }

    #[test]
    fn a_second_lock_on_the_node_is_refused_naming_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let first = Instance::acquire(d.path(), &d.path().join("agent.pid")).unwrap();
        let me = std::process::id();
        assert_eq!(lock_holder(&lock_file(d.path())).map(|p| p.pid), Some(me));
        // A second open file description conflicts even within one process.
        let err = Instance::acquire(d.path(), &d.path().join("other.pid")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("pid {me} holds the lock")), "{msg}");
        assert!(!d.path().join("other.pid").exists());
        let text = std::fs::read_to_string(d.path().join("agent.pid")).unwrap();
        assert_eq!(parse_pid(&text), Some(first.process()));
        drop(first);
        assert!(!d.path().join("agent.pid").exists());
        assert_eq!(lock_holder(&lock_file(d.path())), None);
        let again = Instance::acquire(d.path(), &d.path().join("agent.pid")).unwrap();
        drop(again);
    }
}
