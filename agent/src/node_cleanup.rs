//! What `kubeboot reset` needs beyond stopping the agent's pods: the kubelet stopped first
//! (so nothing restarts containers), the CRI containers of this node stopped (the processes
//! under this node's containerd shims), the pod network namespaces and the kubelet's mounts
//! removed, kube-proxy's rules cleaned by kube-proxy itself, and kubeboot's pod network
//! (its bridge, the veths on it, its routes) taken down (kubeadm:
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
    let mut found: Vec<PathBuf> = crate::host::fs::mount_points(mountinfo)
        .into_iter()
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// What [`unmount_below`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unmounted {
    /// The directory, its symlinks resolved.
    pub dir: PathBuf,
    /// Every mount point unmounted, in order (a stacked one appears once per layer).
    pub unmounted: Vec<PathBuf>,
    /// Mount points still there after the last round.
    pub left: Vec<PathBuf>,
}

/// Rounds of [`unmount_below`]: each takes off the top layer of every mount point; stacks
/// deeper than this are left and reported.
const UNMOUNT_ROUNDS: usize = 16;

/// Unmounts everything mounted below `dir` (the kubelet's secret and token tmpfs volumes,
/// CSI/NFS volumes, subPath bind mounts), as kubeadm reset does before deleting the kubelet
/// directory (kubeadm: cmd/phases/reset/cleanupnode.go, unmountKubeletDirectory), and more
/// thoroughly: `dir`'s symlinks are resolved first (the mounts are listed under the real
/// path), the deepest mount points go first, every round reads mountinfo again until nothing
/// is left below `dir` (stacked mounts), and a busy mount is detached (`MNT_DETACH`).
///
/// Refused, like every delete, for a directory that resolves to a system directory or
/// outside `layout`'s root ([`Layout::deletion_refusal`]).
///
/// # Errors
/// A refused directory, or `/proc/self/mountinfo` cannot be read.
pub fn unmount_below(layout: &Layout, dir: &Path) -> anyhow::Result<Unmounted> {
    let shown = dir.display().to_string();
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Unmounted::default()),
        Err(e) => return Err(anyhow::anyhow!("could not resolve {shown:?}: {e}")),
    };
    let root = std::fs::canonicalize(layout.root()).unwrap_or_else(|_| layout.root().to_path_buf());
    if let Some(reason) = Layout::under(root).deletion_refusal(&dir) {
        anyhow::bail!(
            "refusing to unmount what is below {shown:?} (it resolves to {:?}): {reason}",
            dir.display().to_string()
        );
    }
    let mut done = Unmounted {
        dir: dir.clone(),
        ..Default::default()
    };
    let read = || -> anyhow::Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| anyhow::anyhow!("could not read /proc/self/mountinfo: {e}"))?;
        Ok(mounts_below(&text, &dir))
    };
    for _ in 0..UNMOUNT_ROUNDS {
        let mounts = read()?;
        if mounts.is_empty() {
            return Ok(done);
        }
        let mut progress = false;
        for m in mounts {
            let plain = nix::mount::umount2(&m, nix::mount::MntFlags::empty());
            let ok = match plain {
                Ok(()) => true,
                // Busy: detach it now, the kernel finishes when the last user goes.
                Err(nix::errno::Errno::EBUSY) => {
                    nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).is_ok()
                }
                Err(e) => {
                    tracing::warn!(mount = %m.display(), error = %e, "could not unmount");
                    false
                }
            };
            if ok {
                done.unmounted.push(m);
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    done.left = read()?;
    Ok(done)
}

/// Asks kube-proxy to remove the rules it made, the way kube-proxy offers
/// (`kube-proxy --cleanup`: its iptables chains and IPVS state), with the kube-proxy binary
/// found in `bin_dirs`. `None` when no kube-proxy binary is there.
///
/// # Errors
/// kube-proxy cannot be started, or fails (its output in the message).
pub fn kube_proxy_cleanup(bin_dirs: &[PathBuf]) -> anyhow::Result<Option<PathBuf>> {
    let Some(exe) = process::find_binary(names::KUBE_PROXY, bin_dirs) else {
        return Ok(None);
    };
    let mut child = std::process::Command::new(&exe)
        .arg("--cleanup")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("could not run {} --cleanup: {e}", exe.display()))?;
    let deadline = Instant::now() + KUBE_PROXY_CLEANUP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{} --cleanup did not finish within {}s",
                exe.display(),
                KUBE_PROXY_CLEANUP_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        status.success(),
        "{} --cleanup failed ({status}): {}",
        exe.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(Some(exe))
}

/// How long `kube-proxy --cleanup` may take.
const KUBE_PROXY_CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Takes down kubeboot's pod network on this node: the veths on kubeboot's CNI bridge
/// `bridge`, the bridge, and the routes with kubeboot's own protocol number
/// ([`crate::node_network::ROUTE_PROTO`]); nobody else's links or routes. Returns what was
/// removed.
///
/// # Errors
/// When `ip` cannot be run.
pub fn remove_pod_network(bridge: &str) -> anyhow::Result<Vec<String>> {
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
    let (exists, _) = run(&["link", "show", bridge])?;
    if !exists {
        return Ok(removed);
    }
    // The host ends of the pods' veths: a pod namespace still held somewhere keeps its
    // pair alive, and the veth would outlive the bridge.
    let (_, ports) = run(&["-o", "link", "show", "master", bridge, "type", "veth"])?;
    for veth in veth_names(&ports) {
        if run(&["link", "delete", &veth])?.0 {
            removed.push(format!("veth {veth}"));
        }
    }
    if run(&["link", "delete", bridge])?.0 {
        removed.push(format!("bridge {bridge}"));
    }
    Ok(removed)
}

/// Interface names in `ip -o link show` output (`7: veth1234@if3: <...>` -> `veth1234`).
fn veth_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| !n.is_empty())
        .collect()
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
    fn veth_names_from_ip_link_output() {
        let out = "7: vethab12cd34@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master kbr0 state UP\n9: veth9@if2: <BROADCAST> mtu 1500\n";
        assert_eq!(veth_names(out), vec!["vethab12cd34", "veth9"]);
        assert!(veth_names("").is_empty());
    }

    #[test]
    fn unmount_below_a_missing_dir_is_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::under(dir.path());
        assert_eq!(
            unmount_below(&layout, &dir.path().join("gone")).unwrap(),
            Unmounted::default()
        );
        let err = format!("{:#}", unmount_below(&layout, dir.path()).unwrap_err());
        assert!(err.contains("refusing to unmount"), "{err}");
    }

    #[test]
    fn descendants_of_nothing_is_nothing() {
        assert!(descendants(&BTreeSet::new()).is_empty());
    }
}
