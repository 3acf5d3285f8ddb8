//! Scenario: interop with upstream kubeadm v1.20.2, both ways.
//!
//! - `kubeadm_worker_joins_kubeboot_cluster`: `kubeboot init` on one node; on another, a
//!   kubeadm user's worker (containerd with the images imported, the kubelet started as
//!   kubeadm's systemd drop-in starts it, `tests::kubeadm`) runs the `kubeadm join` command
//!   kubeboot printed. kubeboot's RBAC approves its kubelet's CSR, it becomes Ready once its
//!   CNI configuration (a plain bridge for its podCIDR, as a kubeadm user writes one) is
//!   there, kube-proxy comes from the cluster's DaemonSet, a Pod scheduled there runs and the
//!   API server reaches it through that kubelet (`kubectl exec`), and the control-plane node
//!   reaches the Pod by pod IP (the kubeboot agent routes every node's podCIDR, the kubeadm
//!   node's too).
//! - `kubeboot_joins_kubeadm_cluster`: upstream `kubeadm init` (the control plane as static
//!   Pods of the kubelet, kube-proxy as a DaemonSet, a bridge CNI configuration written for
//!   the node's podCIDR); `kubeboot join` with the credentials of `kubeadm token create
//!   --print-join-command` and no `--static-pod-runner` finds no kubeboot agent on the
//!   control-plane nodes (none labelled `node.kubeboot.io/kube-proxy=agent`), so it joins as a
//!   kubeadm node does (the kubelet runner); it becomes Ready, kube-proxy runs there from
//!   kubeadm's DaemonSet, and a Pod scheduled there runs and answers `kubectl exec`.
//!
//! A node has no systemd: kubeadm's `systemctl` calls fail with a warning, and the test starts
//! the kubelet itself. kubeadm's preflight wants `crictl`, which this machine lacks (its
//! checks talk to containerd through it): the join ignores that one check, and `kubeadm init`
//! skips its preflight phase, which also pulls images through crictl (every image is
//! imported beforehand: no registry is reachable).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::cluster::{
    build_images, http_get, in_cidr, join_command_credentials, join_credentials,
    offer_image_archives, run_web_on, wait_ready,
};
use tests::kubeadm::{
    CONTAINERD_SOCKET, kubeadm, kubeadm_logs, kubeadm_ok, reap, start_containerd,
    start_kubelet_unit, wait_pod_cidr, write_bridge_cni,
};
use tests::{Node, bin_dir, require_root, step, wait_until};

const POD_SUBNET: &str = "10.244.0.0/16";

/// The Pods of the `kube-proxy` DaemonSet, as `(node name, phase)`.
fn kube_proxy_pods(cp: &Node) -> Result<Vec<(String, String)>> {
    let pods = cp.kubectl_json(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "k8s-app=kube-proxy",
    ])?;
    Ok(pods["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["spec"]["nodeName"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        p["status"]["phase"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Waits until the DaemonSet's kube-proxy runs on `node`.
fn wait_kube_proxy_pod(cp: &Node, node: &Node) -> Result<()> {
    wait_until(
        &format!("the kube-proxy DaemonSet's Pod runs on {}", node.name()),
        Duration::from_secs(120),
        Duration::from_secs(2),
        || {
            Ok(kube_proxy_pods(cp)?
                .iter()
                .any(|(n, phase)| n == node.name() && phase == "Running"))
        },
    )
}

/// Runs a web Pod on `node` and checks that the API server reaches it through `node`'s
/// kubelet (`kubectl exec`, a stream the kubelet serves); returns the Pod's IP.
fn web_pod_answers_exec(cp: &Node, node: &Node) -> Result<String> {
    let ip = run_web_on(cp, "web", node)?;
    let pods = cp.kubectl_json(&["get", "pods", "-l", "app=web"])?;
    let name = pods["items"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["status"]["podIP"] == ip.as_str()))
        .and_then(|p| p["metadata"]["name"].as_str())
        .context("no web Pod with that IP")?
        .to_string();
    let body = cp.kubectl_ok(&["exec", &name, "--", "cat", "/www/index.html"])?;
    ensure!(
        body.trim() == format!("hello from {name}"),
        "kubectl exec printed {body:?}"
    );
    Ok(ip)
}

/// Ends a scenario: destroys the nodes (printing their diagnostics and the kubelet and
/// containerd logs of the kubeadm side first when the scenario failed), then reaps the
/// background processes that died with them.
fn finish(res: Result<()>, nodes: [Node; 2], children: Vec<std::process::Child>) -> Result<()> {
    let mut destroyed = Ok(());
    for n in nodes {
        if res.is_err() {
            eprintln!("{}", kubeadm_logs(&n));
            drop(n);
        } else {
            destroyed = destroyed.and(n.destroy());
        }
    }
    reap(children);
    res.and(destroyed)
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubeadm_worker_joins_kubeboot_cluster() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let images = step("images built from local files", || build_images(true))?;
    let cp = step("create the kubeboot node", || {
        Node::allocate("interop-kb-cp")
    })?;
    let worker = step("create the kubeadm node", || Node::allocate("interop-ka-w"))?;
    step("offer the image archives", || {
        offer_image_archives(&cp, &images)
    })?;
    let mut children = Vec::new();
    let res = (|| -> Result<()> {
        step("kubeboot init", || {
            let config = cp.write_init_config(POD_SUBNET)?;
            cp.kubeboot_ok(&[
                "init",
                "--config",
                &config,
                "--bin-dir",
                &bin,
                "--bin-dir",
                "/usr/bin",
            ])
            .map(drop)
        })?;
        step("the kubeadm user's containerd and kubelet unit", || {
            children.push(start_containerd(
                &worker,
                &images,
                &["pause", "kube-proxy", "web"],
            )?);
            children.push(start_kubelet_unit(&worker)?);
            Ok(())
        })?;
        let (token, hash) = step("a join command from kubeboot", || join_credentials(&cp))?;
        step("kubeadm join", || {
            let endpoint = format!("{}:6443", cp.ip());
            let out = kubeadm_ok(
                &worker,
                &[
                    "join",
                    &endpoint,
                    "--token",
                    &token,
                    "--discovery-token-ca-cert-hash",
                    &hash,
                    "--cri-socket",
                    CONTAINERD_SOCKET,
                    "--ignore-preflight-errors=FileExisting-crictl",
                ],
            )?;
            ensure!(out.contains("This node has joined the cluster:"), "{out}");
            ensure!(
                worker.path_exists("/etc/kubernetes/kubelet.conf")?,
                "no kubelet.conf after the TLS bootstrap"
            );
            Ok(())
        })?;
        let cidr = step(
            "the kubeadm user writes the CNI configuration for the node's podCIDR",
            || {
                let cidr = wait_pod_cidr(&cp, worker.name(), Duration::from_secs(60))?;
                write_bridge_cni(&worker, &cidr)?;
                Ok(cidr)
            },
        )?;
        step("the kubeadm node is Ready", || {
            wait_ready(&cp, worker.name(), Duration::from_secs(120)).map(drop)
        })?;
        step(
            "kube-proxy runs there from the DaemonSet, not on the agent's node",
            || {
                wait_kube_proxy_pod(&cp, &worker)?;
                let pods = kube_proxy_pods(&cp)?;
                ensure!(
                    pods.iter().all(|(n, _)| n != cp.name()),
                    "a DaemonSet kube-proxy on the agent's node: {pods:?}"
                );
                Ok(())
            },
        )?;
        step(
            "a Pod on the kubeadm node runs and answers kubectl exec through its kubelet",
            || {
                let ip = web_pod_answers_exec(&cp, &worker)?;
                ensure!(
                    in_cidr(&ip, &cidr),
                    "pod IP {ip} not in the node's podCIDR {cidr}"
                );
                wait_until(
                    "the kubeboot node reaches the Pod by pod IP",
                    Duration::from_secs(60),
                    Duration::from_secs(2),
                    || {
                        Ok(http_get(&cp, &format!("http://{ip}/"))
                            .is_ok_and(|b| b.contains("hello from web-")))
                    },
                )
            },
        )?;
        Ok(())
    })();
    finish(res, [worker, cp], children)
}

/// kubeadm's InitConfiguration for `node`, with its own kubelet cgroup root, the eviction
/// thresholds and the conntrack setting a namespace node needs (see
/// `Node::write_init_config`).
fn kubeadm_init_config(node: &Node) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta2\n\
         kind: InitConfiguration\n\
         localAPIEndpoint:\n  advertiseAddress: {ip}\n\
         nodeRegistration:\n  name: {name}\n  criSocket: {CONTAINERD_SOCKET}\n\
         ---\n\
         apiVersion: kubeadm.k8s.io/v1beta2\n\
         kind: ClusterConfiguration\n\
         kubernetesVersion: v1.20.2\n\
         networking:\n  podSubnet: {POD_SUBNET}\n\
         ---\n\
         apiVersion: kubelet.config.k8s.io/v1beta1\n\
         kind: KubeletConfiguration\n\
         cgroupRoot: {root}\n\
         evictionHard:\n  imagefs.available: 1%\n  nodefs.available: 1%\n  nodefs.inodesFree: 1%\n\
         ---\n\
         apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
         kind: KubeProxyConfiguration\n\
         conntrack:\n  maxPerCore: 0\n",
        ip = node.ip(),
        name = node.name(),
        root = node.cgroup_root(),
    )
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubeboot_joins_kubeadm_cluster() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let images = step("images built from local files", || build_images(true))?;
    let cp = step("create the kubeadm node", || {
        Node::allocate("interop-ka-cp")
    })?;
    let worker = step("create the kubeboot node", || {
        Node::allocate("interop-kb-w")
    })?;
    step("offer the image archives", || {
        offer_image_archives(&worker, &images)
    })?;
    let mut children = Vec::new();
    let res = (|| -> Result<()> {
        step("kubeadm init", || {
            children.push(start_containerd(&cp, &images, &["k8s.gcr.io/"])?);
            children.push(start_kubelet_unit(&cp)?);
            cp.write_file(
                "/var/lib/kubeboot/kubeadm-init.yaml",
                &kubeadm_init_config(&cp),
            )?;
            let out = kubeadm_ok(
                &cp,
                &[
                    "init",
                    "--config",
                    "/var/lib/kubeboot/kubeadm-init.yaml",
                    "--skip-phases=preflight",
                ],
            )?;
            ensure!(
                out.contains("Your Kubernetes control-plane has initialized successfully!"),
                "{out}"
            );
            Ok(())
        })?;
        step(
            "the kubeadm user writes the CNI configuration; the node is Ready",
            || {
                let cidr = wait_pod_cidr(&cp, cp.name(), Duration::from_secs(60))?;
                write_bridge_cni(&cp, &cidr)?;
                wait_ready(&cp, cp.name(), Duration::from_secs(120)).map(drop)
            },
        )?;
        let (token, hash) = step("a join command from kubeadm", || {
            join_command_credentials(&kubeadm_ok(
                &cp,
                &["token", "create", "--print-join-command"],
            )?)
        })?;
        step(
            "kubeboot join, which finds no kubeboot agent in the cluster",
            || {
                let config =
                    worker.write_join_config(&format!("{}:6443", cp.ip()), &token, &hash, None)?;
                // No --static-pod-runner: the worker follows the control-plane nodes, which run
                // no kubeboot agent, so it runs as a kubeadm node does.
                let out = worker.kubeboot_ok(&[
                    "join",
                    "--config",
                    &config,
                    "--bin-dir",
                    &bin,
                    "--bin-dir",
                    "/usr/bin",
                ])?;
                let detected = format!(
                    "[preflight] The cluster's control-plane nodes ({}) run kube-proxy from the cluster's DaemonSet, not under a kubeboot agent",
                    cp.name()
                );
                for want in [
                    detected.as_str(),
                    "[kube-proxy] kube-proxy runs on this node as a Pod of the cluster's DaemonSet",
                    "This node has joined the cluster:",
                ] {
                    ensure!(out.contains(want), "join output lacks {want:?}:\n{out}");
                }
                let labels = cp.kubectl_json(&["get", "node", worker.name()])?;
                ensure!(
                    labels["metadata"]["labels"]["node.kubeboot.io/kube-proxy"].is_null(),
                    "the DaemonSet would skip this node: {}",
                    labels["metadata"]["labels"]
                );
                Ok(())
            },
        )?;
        step("the kubeboot node is Ready", || {
            wait_ready(&cp, worker.name(), Duration::from_secs(120)).map(drop)
        })?;
        step("kube-proxy runs there from kubeadm's DaemonSet", || {
            wait_kube_proxy_pod(&cp, &worker)
        })?;
        step(
            "a Pod on the kubeboot node runs and answers kubectl exec through its kubelet",
            || web_pod_answers_exec(&cp, &worker).map(drop),
        )?;
        step("kubeadm still sees a sound cluster", || {
            let out = kubeadm(&cp, &["token", "list"])?;
            ensure!(
                out.success() && out.stdout.contains("authentication,signing"),
                "{out}"
            );
            let nodes: Value = cp.kubectl_json(&["get", "nodes"])?;
            ensure!(
                nodes["items"].as_array().map(Vec::len) == Some(2),
                "{nodes}"
            );
            Ok(())
        })?;
        Ok(())
    })();
    finish(res, [worker, cp], children)
}
