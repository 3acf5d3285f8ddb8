//! What `init` and `join` build alike from their flags: the `--config` file's content, and
//! the node context their phases work through (a scratch directory under `--dry-run`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use components::config::ConfigSource;
use phases::shared::node::NodeCtx;

/// The `--config` file, read, if one was given.
///
/// # Errors
/// The file cannot be read.
pub fn config_source(path: Option<&Path>) -> anyhow::Result<Option<ConfigSource>> {
    path.map(|path| {
        Ok(ConfigSource {
            path: path.display().to_string(),
            content: std::fs::read_to_string(path).with_context(|| {
                format!(
                    "could not read the config file {:?}",
                    path.display().to_string()
                )
            })?,
        })
    })
    .transpose()
}

/// The flags every node command shares.
pub struct NodeFlags<'a> {
    /// The command, for the dry-run directory's name (`init`, `join`).
    pub command: &'a str,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--bin-dir`s, resolved.
    pub bin_dirs: Vec<PathBuf>,
    /// Preflight errors to ignore, as the configuration resolved them.
    pub ignore_preflight_errors: Vec<String>,
    /// `--pod-network`.
    pub pod_network: Option<&'a str>,
    /// The static pod runner, resolved.
    pub static_pod_runner: components::StaticPodRunner,
}

/// The node context of a command on this host; under `--dry-run` its files land in a kept
/// temporary directory (printed at the end) and the dry-run banner is said.
///
/// # Errors
/// A bad `--pod-network`, no dry-run directory, or no path to this executable.
pub fn node_ctx(layout: components::Layout, f: NodeFlags<'_>) -> anyhow::Result<NodeCtx> {
    let fs = if f.dry_run {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kubeboot-{}-dryrun", f.command))
            .tempdir()
            .context("could not create the dry-run directory")?;
        agent::host::fs::Fs::under(dir.keep())
    } else {
        agent::host::fs::Fs::real()
    };
    let node = NodeCtx {
        ignore_preflight_errors: f.ignore_preflight_errors,
        layout,
        fs,
        out: phases::out::Out::stdout(),
        dry_run: f.dry_run,
        bin_dirs: f.bin_dirs,
        exe: std::env::current_exe().context("could not find the kubeboot executable")?,
        now: SystemTime::now(),
        pod_network: f
            .pod_network
            .map(str::parse)
            .transpose()?
            .unwrap_or_default(),
        static_pod_runner: f.static_pod_runner,
    };
    if f.dry_run {
        node.out.say(
            "dryrun",
            "Running in dry-run mode: no changes are made to this node",
        );
    }
    Ok(node)
}
