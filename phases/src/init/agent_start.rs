//! `init phase agent-start`: starts kubeboot's node agent, which runs the static pods of the
//! manifest directory (kubeadm's counterpart is kubelet-start). A systemd unit where systemd is
//! PID 1, otherwise a detached daemon (which writes its own pid file).

use std::path::{Path, PathBuf};

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;
use crate::shared::node::NodeCtx;

/// The `agent-start` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "agent-start",
        "Start the kubeboot node agent, which runs the static Pods of the manifest directory",
        run,
    )
    .flags(&[
        "config",
        "node-name",
        "bin-dir",
        "pod-network",
        "static-pod-runner",
        "dry-run",
    ])
}

/// The arguments the agent is started with.
pub fn agent_args(
    node_name: &str,
    bin_dirs: &[PathBuf],
    pod_network: agent::cni::PodNetwork,
    runner: components::StaticPodRunner,
) -> Vec<String> {
    let mut args = vec![
        "agent".to_string(),
        "--node-name".to_string(),
        node_name.to_string(),
        "--pod-network".to_string(),
        pod_network.as_str().to_string(),
    ];
    if runner != components::StaticPodRunner::default() {
        args.push("--static-pod-runner".into());
        args.push(runner.as_str().into());
    }
    for d in bin_dirs {
        args.push("--bin-dir".into());
        args.push(d.display().to_string());
    }
    args
}

/// True when systemd manages this machine (sd_booted: /run/systemd/system exists).
pub fn systemd_is_init(layout: &components::Layout) -> bool {
    layout.is_host() && Path::new("/run/systemd/system").is_dir()
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    ensure_running(d, "agent-start")
}

/// [`start_agent`] for init: the agent's webhook certificate first, which it serves from
/// the start (init phase agent-rbac waits for that).
///
/// # Errors
/// The certificate cannot be issued, or [`start_agent`] fails.
pub fn ensure_running(d: &mut InitData, phase: &str) -> anyhow::Result<()> {
    crate::shared::certs::agent_webhook_cert(d)?;
    let name = d.cfg.node.name.clone();
    start_agent(d, &name, phase)
}

/// Starts the agent unless it runs already, reporting under `phase` (kubelet-start starts it
/// first when it has the kubelet and containerd to run; agent-start then finds it running).
///
/// # Errors
/// systemctl fails, or the daemon cannot start or exits at once.
pub fn start_agent(d: &NodeCtx, node_name: &str, phase: &str) -> anyhow::Result<()> {
    let args = agent_args(node_name, &d.bin_dirs, d.pod_network, d.static_pod_runner);
    // What the agent will make on kubeboot's behalf: its bridge (with --pod-network bridge),
    // and where reset finds kube-proxy to clean its rules.
    crate::node_record::update(
        &d.fs,
        &d.layout,
        crate::node_record::NodeRecord {
            cni_bridges: match d.pod_network {
                agent::cni::PodNetwork::Bridge => {
                    [components::names::KUBEBOOT_CNI_BRIDGE.to_string()].into()
                }
                agent::cni::PodNetwork::None => Default::default(),
            },
            // Absolute, so that reset looks where init looked, from any working directory.
            bin_dirs: d
                .bin_dirs
                .iter()
                .map(|b| std::fs::canonicalize(b).unwrap_or_else(|_| b.clone()))
                .filter(|b| b.is_absolute())
                .collect(),
            ..Default::default()
        },
    )?;
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would start the kubeboot agent: {} {}",
            d.exe.display(),
            args.join(" ")
        );
        return Ok(());
    }
    if let Some(pid) = agent::daemon::is_running(&d.layout) {
        say!(d.out, phase, "The kubeboot agent is running (pid {pid})");
        return Ok(());
    }
    // The unit's ExecStart and the daemon both run this file as root, from now on.
    agent::host::trust::check_binary(&d.exe)?;
    if systemd_is_init(&d.layout) {
        let unit_path = d.layout.agent_systemd_unit();
        let unit = agent::systemd_unit(&d.exe, &args);
        say!(
            d.out,
            phase,
            "Writing the agent's systemd unit to {:?}",
            unit_path.display().to_string()
        );
        crate::node_record::note_file(&d.fs, &d.layout, &unit_path)?;
        d.fs.write_public(&unit_path, unit.as_bytes())?;
        for cmd in [
            &["daemon-reload"][..],
            &["enable", "--now", "kubeboot-agent.service"][..],
        ] {
            let status = std::process::Command::new("systemctl")
                .args(cmd)
                .status()
                .map_err(|e| anyhow::anyhow!("could not run systemctl {}: {e}", cmd.join(" ")))?;
            anyhow::ensure!(
                status.success(),
                "systemctl {} failed ({status})",
                cmd.join(" ")
            );
        }
        say!(
            d.out,
            phase,
            "Started the kubeboot agent (systemd unit kubeboot-agent.service)"
        );
        return Ok(());
    }
    say!(d.out, phase, "Starting the kubeboot agent");
    // Returns once the agent locked the node and wrote its own pid file, so a daemon that
    // dies at once (a bad flag, another agent) fails this phase, not the wait after it, and
    // an init killed from here on leaves an agent that reset finds.
    let pid = agent::daemon::start_detached(&d.exe, &args, &d.layout)?;
    say!(
        d.out,
        phase,
        "The kubeboot agent is running (pid {pid}, log {})",
        d.layout.agent_log_file().display()
    );
    Ok(())
}
