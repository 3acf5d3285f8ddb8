//! The container shim: a small supervisor between the agent and one container process, so
//! the container survives an agent restart. The agent re-executes its own binary as
//! `kubeboot agent shim <args>`.
//!
//! Argument format (after the `agent shim` prefix):
//!
//! ```text
//! --log <cri-log-file> --exit-file <path> [--workdir <dir>] [--netns <path>]
//!     [--log-max-size <bytes>] [--log-max-files <n>] -- <binary> [<arg>...]
//! ```
//!
//! The shim's environment is the container's environment, exactly (the agent builds it:
//! the manifest's `env`, `PATH`, and the marker `KUBEBOOT_POD=<node-id>/<pod-uid>/<container>`);
//! the container inherits it. The shim:
//! 1. starts a new session (`setsid`), so it has no terminal and is not in the agent's group;
//! 2. enters the pod's network namespace (`--netns`, pods without hostNetwork), then spawns
//!    the container in its own process group, stdin on /dev/null;
//! 3. copies the container's stdout/stderr into the CRI log file, rotating it by size and
//!    count ([`crate::logs::RotatingLog`]);
//! 4. forwards SIGTERM and SIGINT to the container's process group;
//! 5. when the container exits, SIGKILLs what is left of its process group (as a runtime
//!    tears down a container), writes the exit file atomically (JSON [`ExitRecord`]) and
//!    exits with the container's code.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::host::fs::Fs;
use crate::host::{netns, process};
use crate::logs::{self, LineSplitter, LogRotation, MAX_LINE, RotatingLog, Stream};
use crate::state::ExitRecord;

/// How long the shim keeps copying output after the container exited, for pipes that
/// grandchildren still hold open.
const DRAIN: Duration = Duration::from_secs(2);

/// The shim's parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimArgs {
    /// The CRI log file.
    pub log: PathBuf,
    /// Where to write the exit record.
    pub exit_file: PathBuf,
    /// The container's working directory.
    pub workdir: PathBuf,
    /// The pod's network namespace, for a pod without hostNetwork.
    pub netns: Option<PathBuf>,
    /// When the log is rotated and how many files of it are kept.
    pub rotation: LogRotation,
    /// The container's binary.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl ShimArgs {
    /// The argument list for these arguments (what [`ShimArgs::parse`] reads).
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--log".to_string(),
            self.log.display().to_string(),
            "--exit-file".into(),
            self.exit_file.display().to_string(),
            "--workdir".into(),
            self.workdir.display().to_string(),
        ];
        if let Some(ns) = &self.netns {
            v.extend(["--netns".into(), ns.display().to_string()]);
        }
        v.extend([
            "--log-max-size".into(),
            self.rotation.max_size.to_string(),
            "--log-max-files".into(),
            self.rotation.max_files.to_string(),
        ]);
        v.extend(["--".into(), self.binary.display().to_string()]);
        v.extend(self.args.iter().cloned());
        v
    }

    /// Parses the shim's arguments (without the program name and the `agent shim` prefix).
    pub fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let (mut log, mut exit_file, mut workdir, mut netns) =
            (None, None, PathBuf::from("/"), None);
        let mut rotation = LogRotation::default();
        let mut it = args.iter();
        loop {
            let Some(a) = it.next() else {
                return Err("missing \"-- <binary> [args...]\"".into());
            };
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--log" => log = Some(PathBuf::from(value()?)),
                "--exit-file" => exit_file = Some(PathBuf::from(value()?)),
                "--workdir" => workdir = PathBuf::from(value()?),
                "--netns" => netns = Some(PathBuf::from(value()?)),
                "--log-max-size" => {
                    let v = value()?;
                    rotation.max_size = v
                        .parse()
                        .map_err(|_| format!("--log-max-size {v:?} is not a number of bytes"))?;
                }
                "--log-max-files" => {
                    let v = value()?;
                    rotation.max_files = v
                        .parse()
                        .map_err(|_| format!("--log-max-files {v:?} is not a number"))?;
                }
                "--" => break,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let binary = PathBuf::from(
            it.next()
                .ok_or("missing the container binary after \"--\"")?,
        );
        Ok(ShimArgs {
            log: log.ok_or("--log is required")?,
            exit_file: exit_file.ok_or("--exit-file is required")?,
            workdir,
            netns,
            rotation,
            binary,
            args: it.cloned().collect(),
        })
    }
}

/// The shim's entry point: `args` are the arguments after `agent shim` (see the module
/// docs). Returns the container's exit code (128 + signal when it was killed).
pub fn shim_main(args: Vec<String>) -> ExitCode {
    let opts = match ShimArgs::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kubeboot agent shim: {e}");
            eprintln!(
                "usage: kubeboot agent shim --log FILE --exit-file FILE [--workdir DIR] [--netns FILE] [--log-max-size BYTES] [--log-max-files N] -- BINARY [ARG...]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("kubeboot agent shim: {e:#}");
            let _ = write_exit(&opts, None, None, None, Some(format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

fn write_exit(
    o: &ShimArgs,
    pid: Option<u32>,
    code: Option<i32>,
    signal: Option<i32>,
    error: Option<String>,
) -> anyhow::Result<()> {
    let rec = ExitRecord {
        shim_pid: std::process::id(),
        container_pid: pid,
        code,
        signal,
        error,
        finished_at: logs::rfc3339_nanos(SystemTime::now()),
    };
    let bytes = serde_json::to_vec(&rec).context("could not encode the exit record")?;
    Fs::real().write_file(&o.exit_file, &bytes, 0o644)
}

struct Out {
    fd: Option<std::process::ChildStdout>,
    err: Option<std::process::ChildStderr>,
    split_out: LineSplitter,
    split_err: LineSplitter,
}

fn run(o: &ShimArgs) -> anyhow::Result<i32> {
    // Already a group leader (started by hand) is fine.
    let _ = process::new_session();
    // Signals arrive through a signalfd; the container gets an empty mask back.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask.thread_block().context("could not block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("could not create a signalfd")?;

    let mut log = RotatingLog::open(&o.log, o.rotation).with_context(|| {
        format!(
            "could not open the container log {:?}",
            o.log.display().to_string()
        )
    })?;

    // Only this thread exists: the container, started next, inherits the namespace.
    if let Some(ns) = &o.netns
        && let Err(e) = netns::enter(ns)
    {
        return cannot_start(o, &mut log, format!("{e:#}"), 126);
    }
    let mut cmd = Command::new(&o.binary);
    cmd.args(&o.args)
        .current_dir(&o.workdir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    process::default_signals_on_exec(&mut cmd);
    let spawned = cmd.spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "could not start {} in {}: {e}",
                o.binary.display(),
                o.workdir.display()
            );
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return cannot_start(o, &mut log, msg, code);
        }
    };
    let pid = child.id();
    let mut out = Out {
        fd: child.stdout.take(),
        err: child.stderr.take(),
        split_out: LineSplitter::new(Stream::Stdout, MAX_LINE),
        split_err: LineSplitter::new(Stream::Stderr, MAX_LINE),
    };
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_some()
            && (out.fd.is_none() && out.err.is_none()
                || drain_until.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        let timeout = match drain_until {
            Some(d) => PollTimeout::from(
                u16::try_from(d.saturating_duration_since(Instant::now()).as_millis())
                    .unwrap_or(u16::MAX),
            ),
            None => PollTimeout::NONE,
        };
        let (sig_ready, out_ready, err_ready) = {
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(f) = &out.fd {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            if let Some(f) = &out.err {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll failed"),
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let out_i = 1;
            let err_i = if out.fd.is_some() { 2 } else { 1 };
            (
                ready(0),
                out.fd.is_some() && ready(out_i),
                out.err.is_some() && ready(err_i),
            )
        };
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                if let Ok(s @ (Signal::SIGTERM | Signal::SIGINT)) = Signal::try_from(signo) {
                    let _ = process::signal_group(pid, s);
                }
            }
            if status.is_none()
                && let Ok(Some(st)) = child.try_wait()
            {
                status = Some(st);
                // Tear down what the container left behind in its group.
                let _ = process::signal_group(pid, Signal::SIGKILL);
                drain_until = Some(Instant::now() + DRAIN);
            }
        }
        if out_ready {
            copy(&mut out.fd, &mut out.split_out, &mut buf, &mut log);
        }
        if err_ready {
            copy(&mut out.err, &mut out.split_err, &mut buf, &mut log);
        }
    }
    let now = SystemTime::now();
    let _ = log.append(&out.split_out.finish(now));
    let _ = log.append(&out.split_err.finish(now));
    let status = status.expect("the loop ends only after the container exited");
    let (code, signal) = (status.code(), status.signal());
    write_exit(o, Some(pid), code, signal, None)?;
    Ok(code.unwrap_or_else(|| 128 + signal.unwrap_or(0)))
}

/// The container could not be started: says why in its log and the exit file.
fn cannot_start(
    o: &ShimArgs,
    log: &mut RotatingLog,
    msg: String,
    code: i32,
) -> anyhow::Result<i32> {
    let line = logs::format_line(
        SystemTime::now(),
        Stream::Stderr,
        false,
        format!("kubeboot-shim: {msg}").as_bytes(),
    );
    let _ = log.append(&line);
    write_exit(o, None, Some(code), None, Some(msg))?;
    Ok(code)
}

fn copy<R: Read>(
    src: &mut Option<R>,
    split: &mut LineSplitter,
    buf: &mut [u8],
    log: &mut RotatingLog,
) {
    let Some(r) = src.as_mut() else { return };
    match r.read(buf) {
        Ok(0) | Err(_) => *src = None,
        Ok(n) => {
            let entries = split.feed(SystemTime::now(), &buf[..n]);
            // A full disk must not block the container: drop the lines.
            let _ = log.append(&entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let mut a = ShimArgs {
            log: "/var/log/pods/x/c/0.log".into(),
            exit_file: "/s/c.exit".into(),
            workdir: "/".into(),
            netns: None,
            rotation: LogRotation {
                max_size: 1024,
                max_files: 3,
            },
            binary: "/usr/bin/etcd".into(),
            args: vec!["--name=n1".into(), "--".into()],
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        a.netns = Some("/run/netns/kubeboot-x".into());
        assert!(a.to_args().contains(&"--netns".to_string()));
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
    }

    #[test]
    fn bad_args_say_what_is_missing() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            ShimArgs::parse(&s(&["--log", "l", "--", "b"]))
                .unwrap_err()
                .contains("--exit-file")
        );
        assert!(
            ShimArgs::parse(&s(&["--log", "l", "--exit-file", "e"]))
                .unwrap_err()
                .contains("--")
        );
        assert!(
            ShimArgs::parse(&s(&["--bogus"]))
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(
            ShimArgs::parse(&s(&["--log"]))
                .unwrap_err()
                .contains("needs a value")
        );
    }
}
