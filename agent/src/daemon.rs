//! Running the agent in the background where systemd is not PID 1: start it detached (it
//! locks the node and writes its own pid file, see [`crate::instance`]), find and stop it, and (for `kubeboot reset`) stop every pod process of this node and
//! remove the pods' networks.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use components::Layout;
use components::names::{AGENT_MARKER_ENV, AGENT_PROCESS_ENV};
use nix::sys::signal::Signal;
use tracing::info;

use crate::AgentConfig;
use crate::host::fs::Fs;
use crate::host::process::{self, PidFd};
use crate::instance::{self, AgentProcess};
use crate::pod::network::Networks;
use crate::state::StateDir;

/// Every process that is this node's agent ([`instance::find`]): the lock's holder, the
/// lock and pid files, the marker of a detached agent.
fn find_agents(layout: &Layout) -> Vec<AgentProcess> {
    let state_dir = layout.agent_state_dir();
    let node_id = StateDir::new(&state_dir).existing_node_id().ok().flatten();
    instance::find(
        &instance::lock_file(&state_dir),
        &layout.agent_pid_file(),
        node_id.as_deref(),
    )
}

/// The PID of this node's running agent, if one runs.
pub fn is_running(layout: &Layout) -> Option<u32> {
    find_agents(layout).first().map(|p| p.pid)
}

/// How long a detached agent may take to lock the node before it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts `exe args` (e.g. `kubeboot agent ...`) detached: double fork with `setsid`, stdin
/// on /dev/null, stdout/stderr appended to `layout.agent_log_file()` (which the agent rotates),
/// the node id in its environment ([`AGENT_PROCESS_ENV`]). Waits until the agent holds the
/// node's lock and wrote its own pid file, and returns its PID.
///
/// # Errors
/// When an agent already runs, or the new one cannot be started or exits before it locked
/// the node.
pub fn start_detached(exe: &Path, args: &[String], layout: &Layout) -> anyhow::Result<u32> {
    if let Some(pid) = is_running(layout) {
        anyhow::bail!(
            "the agent is already running (pid {pid}, lock file {:?}); stop it first",
            instance::lock_file(&layout.agent_state_dir())
                .display()
                .to_string()
        );
    }
    let fs = Fs::real();
    fs.ensure_dir(&layout.run_dir(), 0o755)?;
    fs.ensure_dir(&layout.log_dir(), 0o755)?;
    let state = StateDir::new(layout.agent_state_dir());
    state.ensure()?;
    let node_id = state.node_id()?;
    let log = layout.agent_log_file();
    let env = [(AGENT_PROCESS_ENV.to_string(), node_id)];
    let pid = process::spawn_daemon(exe, args, &env, &log)?;
    let see_log = || format!("see {}", log.display());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let Ok(stat) = process::proc_stat(pid) else {
            anyhow::bail!("the agent (pid {pid}) exited at once; {}", see_log());
        };
        if stat.state == 'Z' {
            anyhow::bail!("the agent (pid {pid}) exited at once; {}", see_log());
        }
        let me = AgentProcess {
            pid,
            start_time: stat.start_time,
        };
        let agents = find_agents(layout);
        if agents.contains(&me) && fs.exists(&layout.agent_pid_file()) {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the agent (pid {pid}) did not lock the node within {START_TIMEOUT:?}; {}",
                see_log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops this node's agent wherever it is found (the lock's holder, the lock and pid files,
/// a detached agent's marker, so a cleared `/run` or a lost pid file hides nothing): SIGTERM,
/// up to `timeout` for it to exit, then SIGKILL. Its pods keep running. Returns false when
/// no agent was running.
///
/// # Errors
/// When the agent could not be signalled or does not die even after SIGKILL.
pub fn stop(layout: &Layout, timeout: Duration) -> anyhow::Result<bool> {
    let agents = find_agents(layout);
    let mut stopped = false;
    for a in agents {
        let AgentProcess { pid, start_time } = a;
        let fd = match PidFd::open(pid) {
            Ok(fd) if process::is_alive(pid, start_time) => fd,
            _ => continue,
        };
        fd.send_signal(Signal::SIGTERM)
            .with_context(|| format!("could not send SIGTERM to the agent (pid {pid})"))?;
        if !fd.wait_exit_blocking(timeout) {
            fd.send_signal(Signal::SIGKILL)
                .with_context(|| format!("could not send SIGKILL to the agent (pid {pid})"))?;
            if !fd.wait_exit_blocking(Duration::from_secs(5)) {
                anyhow::bail!("the agent (pid {pid}) did not exit even after SIGKILL");
            }
        }
        process::reap(pid);
        info!(pid, "stopped the agent");
        stopped = true;
    }
    // A pid file whose agent is gone (or was killed before it could remove it).
    Fs::real().remove_file(&layout.agent_pid_file())?;
    Ok(stopped)
}

/// Stops every pod process of this node (its node-id marker), for `kubeboot reset` after the
/// agent was stopped: SIGTERM to each process and its group, up to `grace`, then SIGKILL.
/// Then removes the pods' own networks (CNI DEL, their network namespaces), so that nothing
/// is left behind. Returns how many processes were found.
///
/// # Errors
/// When the node id cannot be read, or a pod's network namespace cannot be removed.
pub fn stop_all_pods(layout: &Layout, grace: Duration) -> anyhow::Result<usize> {
    let state = StateDir::new(layout.agent_state_dir());
    let Some(node_id) = state.existing_node_id()? else {
        return Ok(0);
    };
    let prefix = format!("{node_id}/");
    let ours = |m: &str| m.starts_with(&prefix);
    let found = process::find_marked(AGENT_MARKER_ENV, ours);
    for m in &found {
        process::signal_one(m, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && found
            .iter()
            .any(|m| process::is_alive(m.pid, m.stat.start_time))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    for m in &found {
        if process::is_alive(m.pid, m.stat.start_time) {
            process::signal_one(m, Signal::SIGKILL);
        }
    }
    // Anything started in the meantime (there should be no agent left to start it).
    process::signal_marked(AGENT_MARKER_ENV, ours, Signal::SIGKILL);
    for m in &found {
        process::reap(m.pid);
    }
    remove_pod_networks(layout, state, node_id)?;
    Ok(found.len())
}

/// The networks of the pods without hostNetwork, once their processes are gone.
fn remove_pod_networks(layout: &Layout, state: StateDir, node_id: String) -> anyhow::Result<()> {
    let cfg = AgentConfig::from_layout(layout, Vec::new());
    let networks = Networks::new(&cfg, state, node_id);
    let removed = if networks.recorded().is_empty() {
        networks.remove_strays()?
    } else {
        // CNI runs plugins as async processes: a runtime of its own for this one call.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("could not start the tokio runtime")?
            .block_on(networks.remove_all())?
    };
    for path in removed {
        info!(netns = %path.display(), "removed a pod network namespace");
    }
    Ok(())
}

/// The systemd unit for the agent. `KillMode=process`: stopping or restarting the unit
/// stops only the agent, and its pods are adopted by the next one, as with the kubelet's
/// containers.
pub fn systemd_unit(exe: &Path, args: &[String]) -> String {
    let mut cmd = vec![quote(&exe.display().to_string())];
    cmd.extend(args.iter().map(|a| quote(a)));
    format!(
        "[Unit]\n\
         Description=kubeboot node agent: runs the static pods in /etc/kubernetes/manifests\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=always\n\
         RestartSec=2\n\
         KillMode=process\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        cmd.join(" ")
    )
}

/// Quotes one systemd command-line word when it needs it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c));
    if plain {
        return word.to_string();
    }
    let escaped = word
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_keeps_pods_on_restart_and_quotes_args() {
        let u = systemd_unit(
            Path::new("/usr/bin/kubeboot"),
            &["agent".into(), "--bin-dir".into(), "/opt/k 8s/bin".into()],
        );
        assert!(
            u.contains("ExecStart=/usr/bin/kubeboot agent --bin-dir \"/opt/k 8s/bin\"\n"),
            "{u}"
        );
        assert!(u.contains("KillMode=process") && u.contains("Restart=always"));
        assert_eq!(quote("100%"), "\"100%%\"");
    }

    #[test]
    fn no_pid_file_means_not_running() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout::under(d.path());
        assert_eq!(is_running(&layout), None);
        assert!(!stop(&layout, Duration::from_secs(1)).unwrap());
        assert_eq!(stop_all_pods(&layout, Duration::from_secs(1)).unwrap(), 0);
    }
}
