//! What the workload scenarios share: locally built images, node conditions, pod IPs and
//! HTTP checks from inside a node.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::env::repo_root;
use crate::node::Node;
use crate::run::run_bounded;
use crate::wait::wait_until;

/// The image archives directory kubeboot imports from (`/var/lib/kubeboot/images`).
pub const IMAGE_ARCHIVES_DIR: &str = "/var/lib/kubeboot/images";

/// Builds the test images (`scripts/build-images.sh`, cached in
/// `/var/lib/kubeboot-dev/images`), with the control plane's and kube-proxy's images too when
/// `control_plane`; `(image, tar)` pairs.
pub fn build_images(control_plane: bool) -> Result<Vec<(String, String)>> {
    let mut cmd = Command::new(repo_root().join("scripts/build-images.sh"));
    if control_plane {
        cmd.arg("--control-plane");
    }
    let out = run_bounded(cmd, Duration::from_secs(300))?.ok()?;
    let images: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let want = if control_plane { 8 } else { 3 };
    ensure!(images.len() == want, "build-images.sh printed:\n{out}");
    Ok(images)
}

/// The control-plane images of the TEST BUILD v1.20.3-test.0 (`scripts/build-images.sh
/// --test-build`, from `KUBEBOOT_BIN_DIR_NEXT`): kube-apiserver, kube-controller-manager,
/// kube-scheduler and kube-proxy, as (image, archive) pairs.
pub fn build_test_build_images() -> Result<Vec<(String, String)>> {
    let mut cmd = Command::new(repo_root().join("scripts/build-images.sh"));
    cmd.arg("--test-build");
    let out = run_bounded(cmd, Duration::from_secs(300))?.ok()?;
    let images: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(image, _)| image.ends_with(":v1.20.3-test.0"))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    ensure!(
        images.len() == 4,
        "build-images.sh --test-build printed:\n{out}"
    );
    Ok(images)
}

/// Links the archives into the node's `/var/lib/kubeboot/images`, where `kubeboot init`
/// imports them from.
pub fn offer_image_archives(node: &Node, images: &[(String, String)]) -> Result<()> {
    node.exec_ok(&["mkdir", "-p", IMAGE_ARCHIVES_DIR])?;
    for (_, tar) in images {
        node.exec_ok(&["ln", "-sf", tar, IMAGE_ARCHIVES_DIR])?;
    }
    Ok(())
}

/// The status (`True`, `False`, `Unknown`) of a Node object's condition `kind`.
pub fn node_condition(node_obj: &Value, kind: &str) -> Option<String> {
    node_obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// Whether the IPv4 address `ip` lies in `cidr`.
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
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

/// The pods labelled `app=<app>` in the default namespace.
pub fn app_pods(node: &Node, app: &str) -> Result<Vec<Value>> {
    let pods = node.kubectl_json(&["get", "pods", "-l", &format!("app={app}")])?;
    Ok(pods["items"].as_array().cloned().unwrap_or_default())
}

/// The token and the CA pin of a printed join command (`kubeboot` or `kubeadm token create
/// --print-join-command`).
pub fn join_command_credentials(out: &str) -> Result<(String, String)> {
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
            .with_context(|| format!("no {flag} in {out:?}"))
    };
    Ok((after("--token")?, after("--discovery-token-ca-cert-hash")?))
}

/// The token and the CA pin of `kubeboot token create --print-join-command` on `cp`.
pub fn join_credentials(cp: &Node) -> Result<(String, String)> {
    join_command_credentials(&cp.kubeboot_ok(&["token", "create", "--print-join-command"])?)
}

/// Waits until `name` is Ready as `cp` sees it; returns its podCIDR.
pub fn wait_ready(cp: &Node, name: &str, timeout: Duration) -> Result<String> {
    let mut cidr = String::new();
    wait_until(
        &format!("{name} Ready"),
        timeout,
        Duration::from_secs(2),
        || {
            let Ok(n) = cp.kubectl_json(&["get", "node", name]) else {
                return Ok(false);
            };
            cidr = n["spec"]["podCIDR"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok(node_condition(&n, "Ready").as_deref() == Some("True") && !cidr.is_empty())
        },
    )?;
    Ok(cidr)
}

/// Creates Deployment `deployment` of `kubeboot.local/web:1` pinned to `node` (by its
/// hostname label) and waits until its one Pod runs there; returns the Pod's IP.
pub fn run_web_on(cp: &Node, deployment: &str, node: &Node) -> Result<String> {
    let overrides = format!(
        r#"{{"spec":{{"template":{{"spec":{{"nodeSelector":{{"kubernetes.io/hostname":"{}"}}}}}}}}}}"#,
        node.name()
    );
    // Pinned before its one replica exists: a rollout from an unpinned Pod would wait out the
    // old Pod's termination grace period.
    cp.kubectl_ok(&[
        "create",
        "deployment",
        deployment,
        "--image=kubeboot.local/web:1",
        "--replicas=0",
    ])?;
    cp.kubectl_ok(&["patch", "deployment", deployment, "-p", &overrides])?;
    cp.kubectl_ok(&["scale", "deployment", deployment, "--replicas=1"])?;
    let mut ip = String::new();
    wait_until(
        &format!("{deployment} runs on {}", node.name()),
        Duration::from_secs(180),
        Duration::from_secs(2),
        || {
            let pods = app_pods(cp, deployment)?;
            let running: Vec<&Value> = pods
                .iter()
                .filter(|p| {
                    p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == node.name()
                })
                .collect();
            if let [p] = running[..] {
                ip = p["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
            Ok(!ip.is_empty())
        },
    )?;
    Ok(ip)
}

/// An HTTP GET from inside the node, bounded (curl: busybox-static's `wget -T` segfaults).
pub fn http_get(node: &Node, url: &str) -> Result<String> {
    node.exec_ok(&["curl", "-s", "-m", "5", url])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        assert!(in_cidr("10.244.0.7", "10.244.0.0/24"));
        assert!(!in_cidr("10.244.1.7", "10.244.0.0/24"));
        assert!(in_cidr("1.2.3.4", "0.0.0.0/0"));
        assert!(!in_cidr("10.244.0.7", "10.244.0.0"));
    }
}
