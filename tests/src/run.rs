//! Running a command with a deadline, capturing its output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Exit status and output of a finished command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// What ran, for messages.
    pub cmd: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout if the command exited 0, otherwise an error with the code and both streams.
    pub fn ok(self) -> Result<String> {
        if self.success() {
            return Ok(self.stdout);
        }
        bail!("{self}")
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self
            .code
            .map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"));
        write!(
            f,
            "`{}` ({code})\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// How long the output readers may lag behind the exit of the command. Daemons the command
/// started may keep the pipes open forever; their output is then cut off.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// Runs `cmd` (stdin: /dev/null) and waits at most `timeout`; on timeout the command is
/// killed and an error returned.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<CmdOutput> {
    let shown = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting `{shown}`"))?;
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        drain(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            &out,
        ),
        drain(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            &err,
        ),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{shown}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{shown}` did not finish within {timeout:?}; output so far:\n--- stdout\n{}\n--- stderr\n{}",
                snapshot(&out),
                snapshot(&err)
            );
        }
        std::thread::sleep(POLL);
    };
    let grace = Instant::now() + DRAIN_GRACE;
    while readers.iter().flatten().any(|r| !r.is_finished()) && Instant::now() < grace {
        std::thread::sleep(POLL);
    }
    Ok(CmdOutput {
        cmd: shown,
        code: status.code(),
        stdout: snapshot(&out),
        stderr: snapshot(&err),
    })
}

fn drain(src: Option<Box<dyn Read + Send>>, buf: &Arc<Mutex<Vec<u8>>>) -> Option<JoinHandle<()>> {
    let mut src = src?;
    let buf = Arc::clone(buf);
    Some(std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = src.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&chunk[..n]);
        }
    }))
}

fn snapshot(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
