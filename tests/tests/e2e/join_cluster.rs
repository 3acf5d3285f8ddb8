//! Scenario: a cluster grows past one machine. node1 runs `kubeboot init`; a worker joins
//! with the token and CA pin `token create --print-join-command` prints (through a
//! JoinConfiguration that gives the worker its own cgroup root); the worker registers, gets
//! a podCIDR and becomes Ready; its kube-proxy runs under the agent with a certificate of its
//! own that the control-plane agent approved; a pod scheduled on the worker answers HTTP by
//! pod IP from node1 (host-gw routes between the nodes' podCIDRs), and its Service's
//! ClusterIP answers from both nodes.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::cluster::{build_images, http_get, in_cidr, node_condition, offer_image_archives};
use tests::{Node, bin_dir, require_root, step, wait_until};

const POD_SUBNET: &str = "10.244.0.0/16";

/// The token and the CA pin of `kubeboot token create --print-join-command` on `cp`.
pub fn join_credentials(cp: &Node) -> Result<(String, String)> {
    let out = cp.kubeboot_ok(&["token", "create", "--print-join-command"])?;
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

fn pods_of(cp: &Node, app: &str) -> Result<Vec<Value>> {
    let pods = cp.kubectl_json(&["get", "pods", "-l", &format!("app={app}")])?;
    Ok(pods["items"].as_array().cloned().unwrap_or_default())
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn join_cluster() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let images = step("images built from local files", || build_images(false))?;
    let cp = step("create node1", || Node::allocate("join-cp1"))?;
    let worker = step("create the worker", || Node::allocate("join-w1"))?;
    for n in [&cp, &worker] {
        step("offer the image archives", || {
            offer_image_archives(n, &images)
        })?;
    }
    let endpoint = format!("{}:6443", cp.ip());

    step("kubeboot init on node1", || {
        let config = cp.write_init_config(POD_SUBNET)?;
        cp.kubeboot_ok(&[
            "init",
            "--config",
            &config,
            "--bin-dir",
            &bin,
            "--bin-dir",
            "/usr/bin",
        ])?;
        Ok(())
    })?;
    let (token, hash) = step("a join command from node1", || join_credentials(&cp))?;

    step("kubeboot join on the worker", || {
        let config = worker.write_join_config(&endpoint, &token, &hash, None)?;
        let out = worker.kubeboot_ok(&[
            "join",
            "--config",
            &config,
            "--bin-dir",
            &bin,
            "--bin-dir",
            "/usr/bin",
        ])?;
        for want in [
            "[preflight] Running pre-flight checks",
            "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"",
            "This node has joined the cluster:",
        ] {
            ensure!(out.contains(want), "join output lacks {want:?}:\n{out}");
        }
        ensure!(
            !out.contains(token.split('.').nth(1).unwrap_or("-")),
            "the token secret is printed:\n{out}"
        );
        Ok(())
    })?;

    let worker_cidr = step("the worker is Ready with a podCIDR", || {
        wait_ready(&cp, worker.name(), Duration::from_secs(180))
    })?;

    step(
        "the worker's kube-proxy runs with its own approved certificate",
        || {
            wait_until(
                "kube-proxy runs on the worker",
                Duration::from_secs(120),
                Duration::from_secs(2),
                || Ok(!worker.pids_named("kube-proxy")?.is_empty()),
            )?;
            let csrs = cp.kubectl_json(&["get", "csr"])?;
            let ours: Vec<&Value> = csrs["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|c| {
                            c["metadata"]["name"].as_str().is_some_and(|n| {
                                n.starts_with(&format!("kubeboot-kube-proxy-{}-", worker.name()))
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            ensure!(ours.len() == 1, "kube-proxy CSRs: {csrs}");
            ensure!(
                ours[0]["spec"]["username"] == format!("system:node:{}", worker.name())
                    && ours[0]["status"]["conditions"][0]["type"] == "Approved",
                "{}",
                ours[0]
            );
            Ok(())
        },
    )?;

    step("a pod on the worker answers by pod IP from node1", || {
        let overrides = format!(
            r#"{{"apiVersion":"apps/v1","spec":{{"template":{{"spec":{{"nodeSelector":{{"kubernetes.io/hostname":"{}"}}}}}}}}}}"#,
            worker.name()
        );
        cp.kubectl_ok(&[
            "create",
            "deployment",
            "web",
            "--image=kubeboot.local/web:1",
        ])?;
        cp.kubectl_ok(&["patch", "deployment", "web", "-p", &overrides])?;
        let mut ip = String::new();
        wait_until(
            "the web pod runs on the worker",
            Duration::from_secs(180),
            Duration::from_secs(2),
            || {
                let pods = pods_of(&cp, "web")?;
                let running: Vec<&Value> = pods
                    .iter()
                    .filter(|p| {
                        p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == worker.name()
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
        ensure!(
            in_cidr(&ip, &worker_cidr),
            "pod IP {ip} not in the worker's {worker_cidr}"
        );
        wait_until(
            "node1 reaches the pod",
            Duration::from_secs(60),
            Duration::from_secs(2),
            || {
                Ok(http_get(&cp, &format!("http://{ip}/"))
                    .is_ok_and(|b| b.contains("hello from web-")))
            },
        )
    })?;

    step("the Service's ClusterIP answers from both nodes", || {
        cp.kubectl_ok(&["expose", "deployment", "web", "--port", "80"])?;
        let svc = cp.kubectl_json(&["get", "service", "web"])?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("no clusterIP")?
            .to_string();
        for n in [&cp, &worker] {
            wait_until(
                &format!("the ClusterIP answers on {}", n.name()),
                Duration::from_secs(90),
                Duration::from_secs(2),
                || {
                    Ok(http_get(n, &format!("http://{ip}/"))
                        .is_ok_and(|b| b.contains("hello from web-")))
                },
            )?;
        }
        Ok(())
    })?;

    step(
        "a second join on the joined worker is refused, the node untouched",
        || {
            let config = "/var/lib/kubeboot/e2e-join.yaml";
            let before = worker.read_file("/etc/kubernetes/kubelet.conf")?;
            let out = worker.kubeboot(&["join", "--config", config, "--bin-dir", &bin])?;
            ensure!(!out.success(), "second join succeeded:\n{out}");
            ensure!(
                out.stderr.contains("kubeboot reset -f") && out.stderr.contains("kubelet.conf"),
                "{out}"
            );
            ensure!(worker.read_file("/etc/kubernetes/kubelet.conf")? == before);
            Ok(())
        },
    )?;

    worker.destroy()?;
    cp.destroy()
}
