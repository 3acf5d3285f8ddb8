//! What `kubeboot reset` needs beyond stopping the agent's pods: the kubelet stopped first
//! (so nothing restarts containers), the CRI containers of this node stopped (the processes
//! under this node's containerd shims), the pod network namespaces and the kubelet's mounts
//! removed, and kubeboot's pod network (bridge, routes) taken down (kubeadm:
//! cmd/phases/reset/cleanupnode.go).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use components::Layout;
use components::names::{self, AGENT_MARKER_ENV};
use nix::sys::signal::Signal;

use crate::host::fs::Fs;
use crate::host::process::{self, Marked};
use crate::state::StateDir;

/// What [`stop_workloads`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoppedWorkloads {
    /// The kubelet processes stopped.
    pub kubelets: usize,
    /// The container processes stopped (under this node's containerd shims).
    pub containers: usize,
}

fn node_processes(layout: &Layout) -> anyhow::Result<Vec<Marked>> {
    let Some(node_id) = StateDir::new(layout.agent_state_dir()).existing_node_id()? else {
        return Ok(Vec::new());
    };
    let prefix = format!("{node_id}/");
    Ok(process::find_marked(AGENT_MARKER_ENV, |m| {
        m.starts_with(&prefix)
    }))
}

fn exe_name(pid: u32) -> String {
    process::proc_exe(pid)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// SIGTERM, up to `grace`, then SIGKILL, for listed processes.
fn stop(found: &[Marked], grace: Duration) {
    for m in found {
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
    for m in found {
        if process::is_alive(m.pid, m.stat.start_time) {
            process::signal_one(m, Signal::SIGKILL);
        }
    }
}

/// Every live process whose ancestry reaches one of `roots` (not the roots themselves).
fn descendants(roots: &BTreeSet<u32>) -> Vec<Marked> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut all: Vec<(u32, process::ProcStat)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, process::proc_stat(pid).ok()?)))
        .filter(|(_, s)| s.state != 'Z')
        .collect();
    all.sort_by_key(|(pid, _)| *pid);
    let mut inside: BTreeSet<u32> = roots.clone();
    // Parents usually have lower PIDs, but not after wrap-around: iterate to a fixed point.
    loop {
        let before = inside.len();
        for (pid, s) in &all {
            if inside.contains(&s.ppid) {
                inside.insert(*pid);
            }
        }
        if inside.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|(pid, _)| inside.contains(pid) && !roots.contains(pid))
        .map(|(pid, stat)| Marked {
            pid,
            marker: String::new(),
            stat,
        })
        .collect()
}

/// Stops this node's kubelet (so it restarts nothing), then every process under this node's
/// containerd shims (the CRI containers: SIGTERM, `grace`, SIGKILL). Call it after the agent
/// is stopped and before its pods are: containerd and the shims keep running for
/// [`crate::stop_all_pods`].
///
/// # Errors
/// When the node id cannot be read.
pub fn stop_workloads(layout: &Layout, grace: Duration) -> anyhow::Result<StoppedWorkloads> {
    let ours = node_processes(layout)?;
    let kubelets: Vec<Marked> = ours
        .iter()
        .filter(|m| exe_name(m.pid) == names::KUBELET)
        .cloned()
        .collect();
    stop(&kubelets, grace);
    let shims: BTreeSet<u32> = ours
        .iter()
        .filter(|m| exe_name(m.pid).starts_with("containerd-shim"))
        .map(|m| m.pid)
        .collect();
    let containers = descendants(&shims);
    stop(&containers, grace);
    Ok(StoppedWorkloads {
        kubelets: kubelets.len(),
        containers: containers.len(),
    })
}

/// Unmounts and removes the pod network namespaces containerd's CNI created
/// (`/run/netns/cni-*`). Returns the removed paths.
///
/// # Errors
/// When a namespace file cannot be removed.
pub fn remove_pod_netns(layout: &Layout) -> anyhow::Result<Vec<PathBuf>> {
    let dir = layout.node_path(crate::NETNS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("cni-") {
            continue;
        }
        let path = e.path();
        // Not mounted any more (a crashed runtime) is fine: the file goes either way.
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        Fs::real().remove_file(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// Mount points in mountinfo text (field 5, octal escapes decoded) strictly below `dir`,
/// deepest first.
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything mounted below the kubelet's directory (secret and service account
/// token tmpfs volumes), as kubeadm reset does before deleting it. Returns the mount points.
///
/// # Errors
/// When /proc/self/mountinfo cannot be read or a mount point cannot be unmounted.
pub fn unmount_kubelet_dir(layout: &Layout) -> anyhow::Result<Vec<PathBuf>> {
    let dir = layout.kubelet_dir();
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| anyhow::anyhow!("could not read /proc/self/mountinfo: {e}"))?;
    let mounts = mounts_below(&text, &dir);
    for m in &mounts {
        nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| anyhow::anyhow!("could not unmount {:?}: {e}", m.display().to_string()))?;
    }
    Ok(mounts)
}

/// Takes down kubeboot's pod network on this node: the CNI bridge and the routes to other
/// nodes' pods ([`crate::node_network::ROUTE_PROTO`]). Returns what was removed.
///
/// # Errors
/// When `ip` cannot be run.
pub fn remove_pod_network() -> anyhow::Result<Vec<String>> {
    let run = |args: &[&str]| -> anyhow::Result<(bool, String)> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| anyhow::anyhow!("could not run ip {}: {e}", args.join(" ")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    let mut removed = Vec::new();
    let proto = crate::node_network::ROUTE_PROTO;
    let (_, routes) = run(&["route", "show", "proto", proto])?;
    if !routes.trim().is_empty() {
        run(&["route", "flush", "proto", proto])?;
        removed.push(format!(
            "{} routes to other nodes' pods",
            routes.lines().count()
        ));
    }
    let bridge = names::KUBEBOOT_CNI_BRIDGE;
    if run(&["link", "show", bridge])?.0 && run(&["link", "delete", bridge])?.0 {
        removed.push(format!("bridge {bridge}"));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_are_deepest_first_and_decoded() {
        let info = "\
36 25 0:32 / /var/lib/kubelet rw - ext4 /dev/sda rw
37 36 0:33 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/tok rw - tmpfs tmpfs rw
38 36 0:34 / /var/lib/kubelet/pods/u1/a\\040b rw - tmpfs tmpfs rw
39 25 0:35 / /var/lib/kubeletx rw - tmpfs tmpfs rw
";
        let m = mounts_below(info, Path::new("/var/lib/kubelet"));
        assert_eq!(
            m,
            vec![
                PathBuf::from("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~secret/tok"),
                PathBuf::from("/var/lib/kubelet/pods/u1/a b"),
            ]
        );
    }

    #[test]
    fn descendants_of_nothing_is_nothing() {
        assert!(descendants(&BTreeSet::new()).is_empty());
    }
}
