//! Scenario: a single-node cluster runs real workloads. `kubeboot init` writes the kubelet's
//! configuration and runs the kubelet and containerd as agent static pods; the agent writes
//! the bridge CNI configuration once the node has a podCIDR; images built locally
//! (`scripts/build-images.sh`) are imported into the node's containerd; a two-replica
//! Deployment gets pod IPs from the node's podCIDR and answers HTTP; `reset -f` leaves no
//! kubelet, containerd, shim or container process and no pod network namespace.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tests::{Node, bin_dir, repo_root, require_root, run_bounded, step, wait_until};

const POD_SUBNET: &str = "10.244.0.0/16";

/// `<image> <tar>` per line from `scripts/build-images.sh`.
fn build_images() -> Result<Vec<(String, String)>> {
    let cmd = Command::new(repo_root().join("scripts/build-images.sh"));
    // Cached outside the repository (/var/lib/kubeboot-dev/images by default).
    let out = run_bounded(cmd, Duration::from_secs(120))?.ok()?;
    let images: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    ensure!(images.len() == 2, "build-images.sh printed:\n{out}");
    Ok(images)
}

fn node_condition(node_obj: &Value, kind: &str) -> Option<String> {
    node_obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    match (parse(ip), parse(net), len.parse::<u32>()) {
        (Some(ip), Some(net), Ok(len)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            ip & mask == net & mask
        }
        _ => false,
    }
}

fn web_pods(node: &Node) -> Result<Vec<Value>> {
    let pods = node.kubectl_json(&["get", "pods", "-l", "app=web"])?;
    Ok(pods["items"].as_array().cloned().unwrap_or_default())
}

/// An HTTP GET from inside the node, bounded (curl: busybox-static's `wget -T` segfaults).
fn http_get(node: &Node, url: &str) -> Result<String> {
    node.exec_ok(&["curl", "-s", "-m", "5", url])
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn cluster_workloads() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let images = step("images built from local files", build_images)?;
    let node = step("create node", || Node::allocate("cluster-workloads"))?;

    let config = step("init config with the node's cgroupRoot", || {
        node.write_init_config(POD_SUBNET)
    })?;
    step("kubeboot init", || {
        let out = node.kubeboot_ok(&[
            "init",
            "--config",
            &config,
            "--bin-dir",
            &bin,
            "--bin-dir",
            "/usr/bin",
        ])?;
        for want in [
            "[kubelet-start] Writing kubelet environment file with flags to file \"/var/lib/kubelet/kubeadm-flags.env\"",
            "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"",
            "[kubelet-start] Starting the kubelet",
            "Your Kubernetes control-plane has initialized successfully!",
        ] {
            ensure!(out.contains(want), "init output lacks {want:?}:\n{out}");
        }
        let kubelet_config = node.read_file("/var/lib/kubelet/config.yaml")?;
        ensure!(
            kubelet_config.contains(&format!("cgroupRoot: {}", node.cgroup_root()))
                && kubelet_config.contains("- 10.96.0.10"),
            "config.yaml:\n{kubelet_config}"
        );
        Ok(())
    })?;

    step("images imported into the node's containerd", || {
        wait_until(
            "containerd answers",
            Duration::from_secs(60),
            Duration::from_secs(1),
            || Ok(node.exec(&["ctr", "version"])?.success()),
        )?;
        for (image, tar) in &images {
            node.exec_ok(&["ctr", "-n", "k8s.io", "images", "import", tar])?;
            let list = node.exec_ok(&["ctr", "-n", "k8s.io", "images", "ls", "-q"])?;
            ensure!(list.lines().any(|l| l == image), "{image} not in:\n{list}");
        }
        Ok(())
    })?;

    let pod_cidr = step("the node registers, gets a podCIDR and is Ready", || {
        let mut cidr = String::new();
        wait_until(
            "node Ready",
            Duration::from_secs(180),
            Duration::from_secs(2),
            || {
                let Ok(n) = node.kubectl_json(&["get", "node", node.name()]) else {
                    return Ok(false);
                };
                cidr = n["spec"]["podCIDR"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                Ok(node_condition(&n, "Ready").as_deref() == Some("True"))
            },
        )?;
        ensure!(
            in_cidr(cidr.split('/').next().unwrap_or_default(), POD_SUBNET),
            "podCIDR {cidr:?}"
        );
        let conflist = node.read_file("/etc/cni/net.d/10-kubeboot.conflist")?;
        ensure!(
            conflist.contains(&cidr),
            "CNI config lacks {cidr}:\n{conflist}"
        );
        Ok(cidr)
    })?;

    step("untaint the control-plane node", || {
        let out = node.kubectl(&["taint", "nodes", "--all", "node-role.kubernetes.io/master-"])?;
        ensure!(
            out.success() || out.stderr.contains("not found"),
            "taint removal failed:\n{out}"
        );
        Ok(())
    })?;

    step(
        "a 2-replica web Deployment runs with pod IPs from the podCIDR",
        || {
            node.kubectl_ok(&[
                "create",
                "deployment",
                "web",
                "--image=kubeboot.local/web:1",
                "--replicas=2",
            ])?;
            wait_until(
                "both web pods Running",
                Duration::from_secs(180),
                Duration::from_secs(2),
                || {
                    let pods = web_pods(&node)?;
                    Ok(pods.len() == 2
                        && pods.iter().all(|p| {
                            p["status"]["phase"] == "Running"
                                && p["status"]["podIP"].as_str().is_some()
                        }))
                },
            )?;
            for p in web_pods(&node)? {
                let ip = p["status"]["podIP"].as_str().unwrap_or_default();
                ensure!(in_cidr(ip, &pod_cidr), "pod IP {ip} is not in {pod_cidr}");
            }
            Ok(())
        },
    )?;

    step("a web pod answers HTTP on its pod IP from the node", || {
        let pods = web_pods(&node)?;
        let p = pods.first().context("no web pod")?;
        let ip = p["status"]["podIP"].as_str().unwrap_or_default();
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let mut body = String::new();
        wait_until(
            "the pod answers HTTP",
            Duration::from_secs(30),
            Duration::from_secs(1),
            || {
                body = http_get(&node, &format!("http://{ip}/")).unwrap_or_default();
                Ok(!body.is_empty())
            },
        )?;
        ensure!(
            body.contains(&format!("hello from {name}")),
            "body: {body:?}"
        );
        Ok(())
    })?;

    step(
        "the Service's ClusterIP answers (when kube-proxy runs)",
        || {
            node.kubectl_ok(&["expose", "deployment", "web", "--port", "80"])?;
            if node.pids_named("kube-proxy")?.is_empty() {
                eprintln!(
                    "[cluster_workloads] NOTE: no kube-proxy runs on the node; skipping the ClusterIP check"
                );
                return Ok(());
            }
            let svc = node.kubectl_json(&["get", "service", "web"])?;
            let ip = svc["spec"]["clusterIP"]
                .as_str()
                .context("no clusterIP")?
                .to_string();
            wait_until(
                "the ClusterIP answers HTTP",
                Duration::from_secs(60),
                Duration::from_secs(2),
                || {
                    Ok(http_get(&node, &format!("http://{ip}/"))
                        .is_ok_and(|b| b.contains("hello from web-")))
                },
            )
        },
    )?;

    step(
        "reset -f leaves no kubelet, containerd, shim or pod network",
        || {
            let out = node.kubeboot_ok(&["reset", "-f"])?;
            ensure!(
                out.contains("Removed the pod network namespaces"),
                "reset output:\n{out}"
            );
            let left: Vec<String> = node
                .processes()?
                .into_iter()
                .filter(|p| {
                    ["kubelet", "containerd", "containerd-shim", "kubeboot"]
                        .iter()
                        .any(|c| p.comm.starts_with(c))
                })
                .map(|p| format!("{} {}", p.pid, p.cmdline))
                .collect();
            ensure!(
                left.is_empty(),
                "processes left after reset:\n{}",
                left.join("\n")
            );
            let netns = node.sh_ok("ls /run/netns")?;
            ensure!(netns.trim().is_empty(), "network namespaces left: {netns}");
            let in_cgroup = node.sh_ok(&format!(
            "find /sys/fs/cgroup/pids{} -name cgroup.procs -exec cat {{}} + 2>/dev/null || true",
            node.cgroup_root()
        ))?;
            ensure!(
                in_cgroup.trim().is_empty(),
                "container processes left: {in_cgroup}"
            );
            let kubelet_dir = node.sh_ok("ls -A /var/lib/kubelet /var/lib/cni")?;
            if kubelet_dir
                .lines()
                .any(|l| !l.is_empty() && !l.ends_with(':'))
            {
                bail!("kubelet/CNI state left:\n{kubelet_dir}");
            }
            Ok(())
        },
    )?;
    node.destroy()
}
