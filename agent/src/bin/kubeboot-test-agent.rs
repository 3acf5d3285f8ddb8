//! The agent alone as a process of its own, on a layout rooted in a directory, for the agent's
//! integration tests (the real binary runs it as `kubeboot agent`, always on the host's
//! layout):
//!
//! `kubeboot-test-agent <root> [--bin-dir DIR]... [--log-max-size BYTES] [--log-max-files N] [--chatter]`
//!
//! Its shim is the `kubeboot-shim` beside it. `--chatter` writes a line to stderr every
//! millisecond, so that a test sees the agent's own log rotated.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubeboot-test-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut it = args.into_iter();
    let root = PathBuf::from(it.next().ok_or_else(|| anyhow::anyhow!("usage: kubeboot-test-agent <root> [--bin-dir DIR]... [--log-max-size BYTES] [--log-max-files N] [--chatter]"))?);
    let layout = components::Layout::under(&root);
    let mut bin_dirs = Vec::new();
    let mut rotation = agent::logs::LogRotation::default();
    let mut chatter = false;
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--bin-dir" => bin_dirs.push(PathBuf::from(value()?)),
            "--log-max-size" => rotation.max_size = value()?.parse()?,
            "--log-max-files" => rotation.max_files = value()?.parse()?,
            "--chatter" => chatter = true,
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let mut cfg = agent::AgentConfig::from_layout(&layout, bin_dirs);
    let exe = std::env::current_exe()?;
    cfg.shim_exe = exe.with_file_name("kubeboot-shim");
    cfg.shim_args_prefix = Vec::new();
    cfg.node_name = Some("n1".into());
    cfg.kubeconfig = None;
    cfg.resync = Duration::from_secs(1);
    cfg.watched_resync = Duration::from_secs(1);
    cfg.log_rotation = rotation;
    if chatter {
        std::thread::spawn(|| {
            for i in 0u64.. {
                let _ = writeln!(
                    std::io::stderr(),
                    "chatter {i:012} .............................."
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }
    agent::run(cfg)
}
