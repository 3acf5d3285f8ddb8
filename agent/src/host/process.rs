//! Processes and signals: pidfds, /proc inspection, spawning, process groups. The one place
//! kubeboot signals or inspects processes, and the only module allowed `unsafe`.
//!
//! Signals to a single process always go through a pidfd (`pidfd_send_signal`), so a PID
//! recycled after the process exited is never hit. nix has no pidfd helpers, hence the raw
//! `libc::syscall`s below.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::trust::{Untrusted, check_binary};

/// A handle on one process that stays valid after the process exits, unlike its PID.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: u32,
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PidFd {
    /// Opens a pidfd for `pid` (`pidfd_open(2)`, Linux 5.3+). Fails with ESRCH when no such
    /// process exists. Pair it with a check that the process is the one you mean (start time).
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let raw_pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1; no
        // memory is passed.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0 as libc::c_uint) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(PidFd { fd, pid })
    }

    /// The PID this handle was opened for.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the process (`pidfd_send_signal(2)`). ESRCH means it already exited.
    pub fn send_signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: the fd is a valid pidfd we own; info is NULL (the kernel fills a default
        // siginfo); flags is 0.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// True once the process has exited (the pidfd polls readable).
    pub fn has_exited(&self) -> bool {
        poll_readable(self.fd.as_fd(), Duration::ZERO)
    }

    /// Blocks up to `timeout` for the process to exit; true if it did.
    pub fn wait_exit_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if poll_readable(self.fd.as_fd(), left) {
                return true;
            }
            if left.is_zero() {
                return false;
            }
        }
    }
}

struct SharedPidFd(std::sync::Arc<PidFd>);

/// Types that own their file descriptor for their whole life and always return the same one
/// from `as_raw_fd` (what tokio's `AsyncFd::register` requires).
pub trait OwnsFd: AsRawFd + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SharedPidFd {}
    impl Sealed for inotify::Inotify {}
    impl Sealed for crate::host::timer::OwnedTimerFd {}
}

impl OwnsFd for SharedPidFd {}
impl OwnsFd for inotify::Inotify {}
impl OwnsFd for crate::host::timer::OwnedTimerFd {}

/// Registers an fd-owning object with the tokio reactor for readability.
pub fn async_fd<T: OwnsFd>(inner: T) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `OwnsFd` is implemented only for types that own their descriptor (an OwnedFd
    // inside an Arc that the AsyncFd keeps alive; inotify's and nix's TimerFd's own fds,
    // closed only on drop) and return the same one every time, so it stays open and
    // unchanged while registered.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

impl AsRawFd for SharedPidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Waits for the process to exit, then reaps it if it is our child; returns its wait status
/// when it was our child. Only one waiter per pidfd.
pub async fn wait_exit(fd: std::sync::Arc<PidFd>) -> io::Result<Option<WaitStatus>> {
    let pid = fd.pid;
    let afd = async_fd(SharedPidFd(fd))?;
    let guard = afd.readable().await?;
    drop(guard);
    Ok(reap(pid))
}

fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// The first `<dir>/<name>` of `dirs` that is an executable file (the component binaries
/// the agent runs, the tools the phases call), once it passed the trust check: kubeboot runs
/// these as root. `Ok(None)` when no directory has it.
///
/// # Errors
/// The first hit is not trusted ([`super::trust::check_binary`]); a later directory is not
/// tried, so a refused binary is never silently replaced by another one.
pub fn find_binary(name: &str, dirs: &[PathBuf]) -> Result<Option<PathBuf>, Untrusted> {
    use std::os::unix::fs::PermissionsExt;
    let found = dirs.iter().map(|d| d.join(name)).find(|p| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    match found {
        None => Ok(None),
        Some(p) => check_binary(&p).map(|()| Some(p)),
    }
}

/// Reaps `pid` if it is an exited child of ours; harmless (ECHILD) for other processes.
pub fn reap(pid: u32) -> Option<WaitStatus> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?);
    waitpid(pid, Some(WaitPidFlag::WNOHANG)).ok()
}

/// Sends `signal` to the process group `pgid`. ESRCH (an empty group) is not an error.
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Makes the calling process a session and process group leader (`setsid(2)`).
pub fn new_session() -> io::Result<()> {
    nix::unistd::setsid().map(|_| ()).map_err(io::Error::from)
}

/// What /proc says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent process id (field 4).
    pub ppid: u32,
    /// Process group id (field 5).
    pub pgid: u32,
    /// Session id (field 6).
    pub session: u32,
    /// Start time in clock ticks after boot (field 22): with the PID, a unique identity.
    pub start_time: u64,
    /// State letter (field 3); `Z` for a zombie.
    pub state: char,
}

/// Reads /proc/<pid>/stat.
pub fn proc_stat(pid: u32) -> io::Result<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable /proc/{pid}/stat"),
        )
    })
}

/// Parses /proc/<pid>/stat; the command name (field 2) may contain spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// The executable of a process (/proc/<pid>/exe), without the ` (deleted)` suffix the kernel
/// adds once the file was replaced (an upgraded kubeboot binary).
pub fn proc_exe(pid: u32) -> io::Result<PathBuf> {
    let p = fs::read_link(format!("/proc/{pid}/exe"))?;
    let bytes = p.as_os_str().as_bytes();
    Ok(match bytes.strip_suffix(b" (deleted)") {
        Some(b) => PathBuf::from(OsStr::from_bytes(b)),
        None => p,
    })
}

/// The value of environment variable `name` in /proc/<pid>/environ, if set.
pub fn proc_env_var(pid: u32, name: &str) -> Option<String> {
    let mut buf = Vec::new();
    fs::File::open(format!("/proc/{pid}/environ"))
        .ok()?
        .read_to_end(&mut buf)
        .ok()?;
    let prefix = format!("{name}=");
    buf.split(|b| *b == 0)
        .find_map(|e| e.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A live process whose environment carries a marker variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// Its PID.
    pub pid: u32,
    /// The marker's value.
    pub marker: String,
    /// Its /proc/<pid>/stat.
    pub stat: ProcStat,
}

/// Every live (non-zombie) process whose environment has `name` set to a value that
/// `matches` accepts.
pub fn find_marked(name: &str, matches: impl Fn(&str) -> bool) -> Vec<Marked> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(marker) = proc_env_var(pid, name) else {
            continue;
        };
        if !matches(&marker) {
            continue;
        }
        let Ok(stat) = proc_stat(pid) else { continue };
        if stat.state == 'Z' {
            continue;
        }
        out.push(Marked { pid, marker, stat });
    }
    out
}

/// Signals every live process whose marker `matches` accepts, through pidfds, and also
/// each such process's group when it leads one. Returns how many were signalled.
pub fn signal_marked(name: &str, matches: impl Fn(&str) -> bool, signal: Signal) -> usize {
    let mut n = 0;
    for m in find_marked(name, matches) {
        n += usize::from(signal_one(&m, signal));
    }
    n
}

/// Signals one listed process through a pidfd (and its group when it leads one), if it is
/// still the process that was listed. True if it was signalled.
pub fn signal_one(m: &Marked, signal: Signal) -> bool {
    let Ok(fd) = PidFd::open(m.pid) else {
        return false;
    };
    // The pidfd pins the process; check it is still the one we listed.
    if proc_stat(m.pid).ok().map(|s| s.start_time) != Some(m.stat.start_time) {
        return false;
    }
    let sent = fd.send_signal(signal).is_ok();
    if m.stat.pgid == m.pid {
        let _ = signal_group(m.pid, signal);
    }
    sent
}

/// Spawns `exe` with `args`, exactly `env` as its environment, stdio on /dev/null and no
/// controlling terminal of ours; returns the child's PID. The caller reaps it (through
/// [`wait_exit`]).
pub fn spawn_detached_child(
    exe: &Path,
    args: &[String],
    env: &[(String, String)],
    cwd: &Path,
) -> io::Result<u32> {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    default_signals_on_exec(&mut cmd);
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code, `None` if killed by a signal (or by our timeout).
    pub code: Option<i32>,
    /// stdout and stderr, concatenated.
    pub output: String,
    /// True when the timeout expired and the command was killed.
    pub timed_out: bool,
}

/// Kills a command's process group when dropped while still armed: a caller that stops
/// waiting for [`run_with_timeout`] (a probe replaced by the next process's, or its
/// container gone) leaves none of the command's processes behind, not only its first.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = signal_group(pgid, Signal::SIGKILL);
        }
    }
}

/// Runs a command in its own process group with `env` (or the agent's environment when
/// `None`), in the network namespace `netns` when given (an open namespace file, see
/// [`super::netns::open`]), kills the group after `timeout`, and returns its combined output
/// (bounded).
pub async fn run_with_timeout(
    program: &Path,
    args: &[String],
    env: Option<&[(String, String)]>,
    netns: Option<&fs::File>,
    cwd: &Path,
    timeout: Duration,
) -> io::Result<Output> {
    use tokio::io::AsyncReadExt;
    const MAX_OUTPUT: u64 = 10 * 1024;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(env) = env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    if let Some(ns) = netns {
        let fd = ns.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls setns, a
        // plain system call, on a descriptor the parent keeps open until spawn returns; it
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id();
    // Declared after `child`, so dropped before it: the group is killed while its leader
    // is not yet reaped, and its id cannot have been reused.
    let mut group = GroupGuard(pgid);
    let mut stdout = child
        .stdout
        .take()
        .expect("stdout is piped")
        .take(MAX_OUTPUT);
    let mut stderr = child
        .stderr
        .take()
        .expect("stderr is piped")
        .take(MAX_OUTPUT);
    let work = async {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (ra, rb) = tokio::join!(stdout.read_to_end(&mut a), stderr.read_to_end(&mut b));
        ra?;
        rb?;
        let status = child.wait().await?;
        a.extend_from_slice(&b);
        io::Result::Ok((status, a))
    };
    let finished = tokio::time::timeout(timeout, work).await;
    group.0 = None;
    match finished {
        Ok(r) => {
            let (status, out) = r?;
            Ok(Output {
                code: status.code(),
                output: String::from_utf8_lossy(&out).into_owned(),
                timed_out: false,
            })
        }
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = signal_group(pgid, Signal::SIGKILL);
            }
            Ok(Output {
                code: None,
                output: String::new(),
                timed_out: true,
            })
        }
    }
}

/// Starts `exe args` fully detached, with `env` added to our environment: a double fork
/// with `setsid` in between, so the process is in a session of its own, never gets a
/// controlling terminal and is reparented to init; stdin is /dev/null and stdout/stderr
/// append to `log` (created 0640). Returns the daemon's PID.
pub fn spawn_daemon(
    exe: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<u32> {
    let out = crate::logs::open_append(log).with_context(|| {
        format!(
            "could not open the agent log {:?}",
            log.display().to_string()
        )
    })?;
    let err = out
        .try_clone()
        .with_context(|| format!("could not open the agent log {}", log.display()))?;
    let (pid_read, pid_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("could not create a pipe")?;
    let write_fd = pid_write.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe functions setsid, fork, write and _exit; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            let pid = libc::fork();
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            if pid > 0 {
                // The intermediate child reports the daemon's PID and leaves at once.
                let bytes = pid.to_ne_bytes();
                libc::write(write_fd, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(0);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {}", exe.display()))?;
    drop(pid_write);
    let _ = child.wait();
    let mut buf = [0u8; 4];
    let mut f = fs::File::from(pid_read);
    f.read_exact(&mut buf)
        .with_context(|| format!("{} did not report the daemon's pid", exe.display()))?;
    let pid = i32::from_ne_bytes(buf);
    u32::try_from(pid)
        .map_err(|_| anyhow::anyhow!("{} reported an invalid pid {pid}", exe.display()))
}

/// Makes `cmd`'s process start with the default signal state: an empty signal mask (std
/// keeps the parent's, and the shim blocks the signals it reads from a signalfd) and default
/// dispositions for the signals a container expects to be able to receive (an agent started
/// in the background of a shell would otherwise pass on ignored SIGINT/SIGQUIT).
pub fn default_signals_on_exec(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // sigemptyset, sigprocmask and signal, which are async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            if libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            for sig in [
                libc::SIGHUP,
                libc::SIGINT,
                libc::SIGQUIT,
                libc::SIGTERM,
                libc::SIGPIPE,
                libc::SIGCHLD,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}

/// The ranges of this process's own executable that [`release_own_file_pages`] may give back:
/// from `/proc/self/smaps` text, the read-only private mappings (code, read-only data) of the
/// file with inode `exe_inode` that hold no anonymous page. A mapping relocations were written
/// to (RELRO: read-only again, but its pages are private copies) holds anonymous pages and is
/// never one of them, nor is anything writable.
pub fn releasable_ranges(smaps: &str, exe_inode: u64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The mapping being read: its range, and whether it qualifies so far.
    let mut current: Option<((usize, usize), bool)> = None;
    let mut close = |current: &mut Option<((usize, usize), bool)>| {
        if let Some((range, true)) = current.take() {
            out.push(range);
        }
    };
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            close(&mut current);
            let perms = words.next().unwrap_or_default();
            let inode = words.nth(2).and_then(|w| w.parse::<u64>().ok());
            let ok = matches!(perms, "r--p" | "r-xp") && inode == Some(exe_inode) && end > start;
            current = Some(((start, end), ok));
        } else if first == "Anonymous:"
            && let Some((_, ok)) = current.as_mut()
        {
            *ok &= words.next() == Some("0");
        }
    }
    close(&mut current);
    out
}

/// Gives back the resident pages of this process's own code and read-only data
/// ([`releasable_ranges`]): `MADV_DONTNEED` unmaps them from this process only; they stay in
/// the page cache, and what the process runs next is mapped again from there at its next
/// touch. So the resident set is what runs now, not everything that ever ran (start-up,
/// argument parsing, adoption). Returns the bytes of the ranges released.
///
/// # Errors
/// When `/proc/self/smaps` or `/proc/self/exe` cannot be read, or madvise fails.
pub fn release_own_file_pages() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let inode = fs::metadata("/proc/self/exe")?.ino();
    let smaps = fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for (start, end) in releasable_ranges(&smaps, inode) {
        // SAFETY: the range is a whole mapping of this process's own executable, read-only,
        // private and without an anonymous (copy-on-write) page: its contents are the file's,
        // which cannot change while it runs (the kernel refuses to write an executable in
        // use; an update replaces the file, not its inode). Dropping the pages only makes the
        // next access read the same bytes from the page cache again, at the same addresses,
        // so no reference into them is invalidated.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        released += end - start;
    }
    Ok(released)
}

/// Gives the free memory of the heap back to the system (glibc's `malloc_trim`: the free
/// pages in the middle of the heap too, not only at its top, which is all `free` gives back by
/// itself). True when some was given back.
pub fn trim_heap() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc's allocator, which
    // Rust's System allocator uses here, locks its arenas while it trims.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Runs [`release_own_file_pages`] and [`trim_heap`] `first` after it is called and every
/// `period` after that, until the task is dropped: the agent's resident set then holds the
/// code it ran lately and the memory it uses now, not its start-up's. A failure is logged
/// once, at debug level (nothing depends on it).
pub async fn release_own_file_pages_every(first: Duration, period: Duration) {
    tokio::time::sleep(first).await;
    let mut said = false;
    loop {
        trim_heap();
        match release_own_file_pages() {
            Ok(bytes) => tracing::debug!(bytes, "gave back the executable's resident pages"),
            Err(e) if !said => {
                said = true;
                tracing::debug!("could not give back the executable's resident pages: {e}");
            }
            Err(_) => {}
        }
        tokio::time::sleep(period).await;
    }
}

/// True if a process with this PID and start time is alive (not a zombie).
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    matches!(proc_stat(pid), Ok(s) if s.start_time == start_time && s.state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command whose caller stops waiting leaves none of its processes behind: its shell's
    /// child goes with the shell (a probe replaced, or its container gone).
    #[tokio::test]
    async fn a_command_dropped_midway_leaves_no_process_of_its_group() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let args = ["-c".to_string(), script];
        let run = run_with_timeout(
            Path::new("/bin/sh"),
            &args,
            None,
            None,
            d.path(),
            Duration::from_secs(60),
        );
        let stopped = tokio::time::timeout(Duration::from_millis(500), run).await;
        assert!(stopped.is_err(), "the command ended by itself");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie left for its reaper (init, once the shell died).
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        while alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(),
            "the shell's child {pid} outlived the dropped command"
        );
    }

    #[test]
    fn the_free_heap_is_given_back() {
        // Many small blocks freed but the last (the heap's top stays in use): only a trim
        // gives the pages under them back.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1000]).collect();
        let last = blocks.last().cloned();
        drop(blocks);
        assert!(trim_heap(), "nothing was given back");
        assert_eq!(last.map(|b| b.len()), Some(1000));
    }

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_releasable() {
        let smaps = "\
55a69b1cb000-55a69b524000 r--p 00000000 fe:00 77 /usr/bin/kubeboot
Rss:                 916 kB
Anonymous:             0 kB
55a69b524000-55a69c0ee000 r-xp 00358000 fe:00 77 /usr/bin/kubeboot
Rss:                9912 kB
Anonymous:             0 kB
55a69c0ee000-55a69c14d000 r--p 00f21000 fe:00 77 /usr/bin/kubeboot
Rss:                 380 kB
Anonymous:           380 kB
55a69c14d000-55a69c151000 rw-p 00f7f000 fe:00 77 /usr/bin/kubeboot
Anonymous:            16 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 99 /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
";
        assert_eq!(
            releasable_ranges(smaps, 77),
            [
                (0x55a69b1cb000, 0x55a69b524000),
                (0x55a69b524000, 0x55a69c0ee000)
            ]
        );
        // Another file's inode: nothing.
        assert!(releasable_ranges(smaps, 5).is_empty());
    }

    #[test]
    fn released_pages_leave_the_resident_set_and_come_back_when_touched() {
        use std::os::unix::fs::MetadataExt;
        let inode = fs::metadata("/proc/self/exe").expect("exe").ino();
        // The resident kB of the releasable mappings.
        let resident = || {
            let smaps = fs::read_to_string("/proc/self/smaps").expect("smaps");
            let ranges = releasable_ranges(&smaps, inode);
            let mut kb = 0u64;
            let mut counted = false;
            for line in smaps.lines() {
                if let Some((start, _)) = line.split_once('-')
                    && let Ok(start) = usize::from_str_radix(start, 16)
                {
                    counted = ranges.iter().any(|r| r.0 == start);
                } else if counted && let Some(v) = line.strip_prefix("Rss:") {
                    kb += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0);
                }
            }
            kb
        };
        let before = resident();
        let released = release_own_file_pages().expect("release");
        let after = resident();
        assert!(released > 0, "this test's own code is releasable");
        assert!(
            after < before,
            "resident {before} kB before, {after} kB after"
        );
        // Code and read-only data still work: they are read again from the file.
        let text = "read-only data, read again after the release".to_string();
        assert!(text.contains("again"));
    }

    #[test]
    fn parses_stat_with_spaces_and_parens_in_the_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgid, 1234);
        assert_eq!(s.session, 1234);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id();
        let s = proc_stat(me).unwrap();
        assert!(is_alive(me, s.start_time));
        assert!(!is_alive(me, s.start_time + 1));
        assert!(proc_exe(me).unwrap().is_absolute());
        let fd = PidFd::open(me).unwrap();
        assert!(!fd.has_exited());
        fd.send_signal(Signal::SIGCONT).unwrap();
    }
}
