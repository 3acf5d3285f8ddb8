//! The agent restarted on the upgrade's `--bin-dir`s before the old ones (each version's
//! manifest then finds its binary): its pods keep running, the new agent adopts them.

use std::path::PathBuf;
use std::time::Duration;

use components::Layout;

use super::apply::{NodeFacts, Request};
use super::journal::{self, Journal};
use crate::out::Out;
use crate::say;

/// The agent's arguments with its `--bin-dir`s replaced by `dirs`.
pub fn with_bin_dirs(args: &[String], dirs: &[PathBuf]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--bin-dir" {
            skip = true;
            continue;
        }
        if a.starts_with("--bin-dir=") {
            continue;
        }
        out.push(a.clone());
    }
    for d in dirs {
        out.push("--bin-dir".into());
        out.push(d.display().to_string());
    }
    out
}

/// The `--bin-dir`s an agent command line names, in order.
pub fn bin_dirs_of(args: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--bin-dir" {
            if let Some(v) = it.next() {
                out.push(PathBuf::from(v));
            }
        } else if let Some(v) = a.strip_prefix("--bin-dir=") {
            out.push(PathBuf::from(v));
        }
    }
    out
}

/// The new directories first, then the old ones not among them.
pub fn merged_bin_dirs(new: &[PathBuf], old: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = new.to_vec();
    for d in old {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

/// Restarts the agent from this kubeboot with the upgrade's `--bin-dir`s before the old ones
/// (each version's manifest then finds its binary), unless it runs so already. The agent's
/// pods keep running: the new agent adopts them.
pub(super) fn restart_agent(
    req: &Request,
    out: &Out,
    facts: &NodeFacts,
    j: &mut Journal,
) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let Some(args) = &facts.agent_args else {
        return Ok(());
    };
    if req.inputs.bin_dirs.is_empty() {
        return Ok(());
    }
    let given = crate::host::canonical_bin_dirs(&req.inputs.bin_dirs)?;
    // An agent started without --bin-dir searches the defaults: they stay after the new ones.
    let mut current = bin_dirs_of(args);
    if current.is_empty() {
        current = crate::host::default_bin_dirs();
    }
    let dirs = merged_bin_dirs(&given, &current);
    if j.agent_bin_dirs.is_empty() {
        j.agent_bin_dirs = current;
        journal::write(&req.inputs.fs, layout, j)?;
    }
    restart_agent_with(req, out, &dirs)?;
    crate::node_record::update(
        &req.inputs.fs,
        layout,
        crate::node_record::NodeRecord {
            bin_dirs: dirs.clone(),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// The running agent's command line (executable first), if an agent runs.
pub(super) fn running_agent_args(layout: &Layout) -> Option<Vec<String>> {
    let pid = agent::daemon::is_running(layout)?;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Restarts the agent from this kubeboot with `dirs` as its `--bin-dir`s, unless it runs so
/// already. Its pods keep running: the new agent adopts them.
pub(super) fn restart_agent_with(req: &Request, out: &Out, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let layout = &req.inputs.layout;
    let Some(args) = running_agent_args(layout) else {
        return Ok(());
    };
    let old_tail: Vec<String> = args.iter().skip(1).cloned().collect();
    let new_tail = with_bin_dirs(&old_tail, dirs);
    let running_exe = agent::daemon::is_running(layout)
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
    let exe = std::fs::canonicalize(&req.exe).unwrap_or_else(|_| req.exe.clone());
    if new_tail == old_tail && running_exe.as_deref() == Some(exe.as_path()) {
        return Ok(());
    }
    say!(
        out,
        "upgrade/agent",
        "Restarting the kubeboot agent from {} with --bin-dir {} (its pods keep running)",
        exe.display(),
        shown_dirs(dirs)
    );
    if crate::init::agent_start::systemd_is_init(layout) {
        let unit = agent::systemd_unit(&exe, &new_tail);
        req.inputs
            .fs
            .write_public(&layout.agent_systemd_unit(), unit.as_bytes())?;
        for cmd in [
            &["daemon-reload"][..],
            &["restart", "kubeboot-agent.service"][..],
        ] {
            let status = std::process::Command::new("systemctl").args(cmd).status()?;
            anyhow::ensure!(
                status.success(),
                "systemctl {} failed ({status})",
                cmd.join(" ")
            );
        }
    } else {
        agent::daemon::stop(layout, Duration::from_secs(30))?;
        agent::daemon::start_detached(&exe, &new_tail, layout)?;
    }
    Ok(())
}

/// `dirs` as the user reads them: `/a, /b`.
pub fn shown_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_bin_dirs_are_replaced_new_first() {
        let args: Vec<String> = [
            "agent",
            "--node-name",
            "n1",
            "--bin-dir",
            "/old",
            "--bin-dir=/usr/bin",
            "--pod-network",
            "bridge",
        ]
        .map(String::from)
        .to_vec();
        let old = bin_dirs_of(&args);
        assert_eq!(old, vec![PathBuf::from("/old"), PathBuf::from("/usr/bin")]);
        let dirs = merged_bin_dirs(&[PathBuf::from("/new"), PathBuf::from("/usr/bin")], &old);
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/new"),
                PathBuf::from("/usr/bin"),
                PathBuf::from("/old")
            ]
        );
        let replaced = with_bin_dirs(&args, &dirs);
        assert_eq!(
            replaced,
            [
                "agent",
                "--node-name",
                "n1",
                "--pod-network",
                "bridge",
                "--bin-dir",
                "/new",
                "--bin-dir",
                "/usr/bin",
                "--bin-dir",
                "/old"
            ]
            .map(String::from)
            .to_vec()
        );
        assert_eq!(bin_dirs_of(&replaced), dirs);
    }
}
