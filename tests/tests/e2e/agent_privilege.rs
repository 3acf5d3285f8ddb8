//! Scenario: the agents' credential (`/etc/kubernetes/kubeboot-agent.conf`, group
//! `kubeboot:agents`) can publish its node's status-only pods, read and patch Nodes (their
//! podCIDRs) under its own Lease, and nothing else. RBAC refuses everything else outside pods in
//! kube-system (`kubectl auth can-i`); the admission webhook the
//! agent serves on loopback for its API server refuses a real create of an ordinary privileged
//! pod bound to the node and a pod of another node, and a delete of another node's pod; the
//! agent's own pods are still published; admin.conf still creates ordinary kube-system pods;
//! with the agent stopped, kube-system pod creates fail closed until it is back.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tests::node::ADMIN_CONF;
use tests::{CmdOutput, Node, bin_dir, require_bins, require_root, step, wait_until};

const AGENT_CONF: &str = "/etc/kubernetes/kubeboot-agent.conf";
const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// `kubectl ... create -f -` with `manifest` on stdin.
fn create_as(node: &Node, kubeconfig: &str, manifest: &str) -> Result<CmdOutput> {
    let kubectl = require_bins(&["kubectl"])?.join("kubectl");
    node.sh(&format!(
        "{} --kubeconfig {kubeconfig} --request-timeout=20s create -f - <<'EOF'\n{manifest}\nEOF",
        kubectl.display()
    ))
}

fn can_i(node: &Node, args: &[&str]) -> Result<String> {
    let mut argv = vec!["auth", "can-i"];
    argv.extend_from_slice(args);
    let out = node.kubectl_as(AGENT_CONF, &argv)?;
    Ok(out.stdout.trim().to_string())
}

/// The pod RBAC alone would let the agents' credential create: privileged, the host's `/`,
/// bound to the node, with a powerful ServiceAccount.
fn ordinary_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
spec:
  nodeName: {node}
  serviceAccountName: clusterrole-aggregation-controller
  hostPID: true
  containers:
  - name: c
    image: k8s.gcr.io/pause:3.2
    securityContext:
      privileged: true
    volumeMounts:
    - name: root
      mountPath: /host
  volumes:
  - name: root
    hostPath:
      path: /"#
    )
}

/// A status-only pod as an agent publishes it, labelled for `label_node`.
fn status_only_pod(name: &str, label_node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
  labels:
    kubeboot.io/agent-node: {label_node}
spec:
  schedulerName: kubeboot-agent
  automountServiceAccountToken: false
  containers:
  - name: c
    image: k8s.gcr.io/pause:3.2"#
    )
}

/// `out` failed with the denial of `webhook` for `rule`.
fn denied_by(out: &CmdOutput, webhook: &str, rule: &str) -> Result<()> {
    ensure!(!out.success(), "not denied: {out}");
    ensure!(
        out.stderr.contains(&format!(
            "admission webhook \"{webhook}\" denied the request"
        )) && out
            .stderr
            .contains("may only write the status-only Pods its agent publishes")
            && out.stderr.contains(&format!("[rule {rule}]")),
        "not the denial of {webhook} for rule {rule}: {out}"
    );
    Ok(())
}

/// The agent's credential creating `manifest` (the pod `name`) is denied for `rule`, and the
/// pod does not exist.
fn create_denied(node: &Node, manifest: &str, name: &str, rule: &str) -> Result<()> {
    let out = create_as(node, AGENT_CONF, manifest)?;
    denied_by(&out, "pods.agent.kubeboot.io", rule)?;
    ensure!(!pod_exists(node, name)?, "the pod {name} was created");
    Ok(())
}

/// Deletes the kube-system pod `name` with `kubeconfig`'s credentials, at once.
fn delete_pod(node: &Node, kubeconfig: &str, name: &str) -> Result<CmdOutput> {
    node.kubectl_as(
        kubeconfig,
        &[
            "-n",
            "kube-system",
            "delete",
            "pod",
            name,
            "--grace-period=0",
            "--force",
        ],
    )
}

fn pod_exists(node: &Node, name: &str) -> Result<bool> {
    let out = node.kubectl(&["-n", "kube-system", "get", "pod", name, "-o", "name"])?;
    if out.success() {
        return Ok(true);
    }
    ensure!(out.stderr.contains("NotFound"), "{out}");
    Ok(false)
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn agent_privilege() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("agent-priv"))?;
    let me = node.name().to_string();

    step("kubeboot init", || {
        let args = crate::init_single_node::init_args_for(&node, &bin, None)?;
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = node.kubeboot_ok(&argv)?;
        for line in [
            "[certs] Generating \"kubeboot-agent-webhook\" certificate and key",
            "[agent-rbac] Sending Pod writes in namespace kube-system to each control-plane node's kubeboot agent for admission (https://127.0.0.1:10263/admission/pods)",
            "[agent-rbac] Allowed the kubeboot agents",
        ] {
            ensure!(out.contains(line), "init did not print {line:?}:\n{out}");
        }
        ensure!(node.path_exists(AGENT_CONF)?, "no agent kubeconfig");
        Ok(())
    })?;

    step(
        "the webhook configuration and the kube-system label are in place",
        || {
            let cfg =
                node.kubectl_json(&["get", "validatingwebhookconfiguration", "kubeboot-agent"])?;
            let hooks = cfg["webhooks"].as_array().context("webhooks")?;
            ensure!(hooks.len() == 2, "{cfg}");
            ensure!(
                hooks[0]["clientConfig"]["url"] == "https://127.0.0.1:10263/admission/pods"
                    && hooks[0]["failurePolicy"] == "Fail"
                    && hooks[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                        == "kube-system",
                "{cfg}"
            );
            let ns = node.kubectl_json(&["get", "namespace", "kube-system"])?;
            ensure!(
                ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "kube-system",
                "{ns}"
            );
            let key_mode = node.exec_ok(&[
                "stat",
                "-c",
                "%a",
                "/var/lib/kubeboot/agent/pki/webhook.key",
            ])?;
            ensure!(key_mode.trim() == "600", "webhook key mode {key_mode}");
            Ok(())
        },
    )?;

    step(
        "the agent's own pods are published and Running (listed with its own credential)",
        || {
            wait_until(
                "the agent's four pods Running",
                Duration::from_secs(120),
                Duration::from_secs(2),
                || {
                    let out = node.kubectl_as(AGENT_CONF, &["-n", "kube-system", "get", "pods"])?;
                    if !out.success() {
                        return Ok(false);
                    }
                    Ok(COMPONENTS.iter().all(|c| {
                        let name = format!("{c}-{me}");
                        out.stdout.lines().any(|l| {
                            let cols: Vec<&str> = l.split_whitespace().collect();
                            cols.first() == Some(&name.as_str())
                                && cols.get(1) == Some(&"1/1")
                                && cols.get(2) == Some(&"Running")
                        })
                    }))
                },
            )
        },
    )?;

    step("RBAC: nothing outside pods in kube-system", || {
        for args in [
            &["create", "pods", "-n", "default"][..],
            &["get", "pods", "-n", "default"],
            &["get", "secrets", "-n", "kube-system"],
            &["list", "secrets", "-n", "kube-system"],
            &[
                "create",
                "serviceaccounts",
                "--subresource=token",
                "-n",
                "kube-system",
            ],
            &["create", "pods", "--subresource=exec", "-n", "kube-system"],
            &[
                "create",
                "pods",
                "--subresource=binding",
                "-n",
                "kube-system",
            ],
            &["update", "pods", "-n", "kube-system"],
            &["patch", "pods", "--subresource=status", "-n", "kube-system"],
            &["watch", "pods", "-n", "kube-system"],
            // Nodes: read and patched (their podCIDRs, agent::node_ipam), never made, replaced,
            // deleted or given a status.
            &["create", "nodes"],
            &["update", "nodes"],
            &["delete", "nodes"],
            &["patch", "nodes", "--subresource=status"],
            &["list", "csinodes"],
            &[
                "update",
                "leases/kube-controller-manager",
                "-n",
                "kube-system",
            ],
            &["get", "leases/kube-scheduler", "-n", "kube-system"],
            // Not even its own: init makes it (a create cannot be narrowed to one name).
            &["create", "leases", "-n", "kube-system"],
            &["create", "validatingwebhookconfigurations"],
            &["update", "namespaces"],
        ] {
            let answer = can_i(&node, args)?;
            ensure!(answer == "no", "can-i {args:?} answered {answer:?}");
        }
        // What it needs, and only that, is left: the webhook narrows these.
        for args in [
            &["create", "pods", "-n", "kube-system"][..],
            &["delete", "pods", "-n", "kube-system"],
            &[
                "update",
                "pods",
                "--subresource=status",
                "-n",
                "kube-system",
            ],
            // Giving Nodes their podCIDRs (RBAC kubeboot:node-ipam), one agent at a time.
            &["get", "nodes"],
            &["list", "nodes"],
            &["watch", "nodes"],
            &["patch", "nodes"],
            &["get", "csinodes"],
            &["update", "leases/kubeboot-node-ipam", "-n", "kube-system"],
        ] {
            let answer = can_i(&node, args)?;
            ensure!(answer == "yes", "can-i {args:?} answered {answer:?}");
        }
        Ok(())
    })?;

    step(
        "a real create of a privileged pod bound to the node is denied by the webhook",
        || {
            create_denied(
                &node,
                &ordinary_pod("escalate", &me),
                "escalate",
                "no-node-name",
            )
        },
    )?;

    step("a pod labelled for another node is denied", || {
        create_denied(
            &node,
            &status_only_pod("other-node", "some-other-node"),
            "other-node",
            "own-node-label",
        )
    })?;

    step(
        "another node's published pod cannot be deleted with it; its own can",
        || {
            // admin.conf makes a pod of another node (the webhook leaves admin alone).
            let made = create_as(
                &node,
                ADMIN_CONF,
                &status_only_pod("of-other-node", "some-other-node"),
            )?;
            ensure!(made.success(), "{made}");
            let out = delete_pod(&node, AGENT_CONF, "of-other-node")?;
            denied_by(&out, "pod-deletes.agent.kubeboot.io", "own-node-label")?;
            ensure!(pod_exists(&node, "of-other-node")?, "the pod is gone");
            delete_pod(&node, ADMIN_CONF, "of-other-node")?.ok()?;
            // A status-only pod of its own node: created and deleted with the agent's credential.
            let own = create_as(&node, AGENT_CONF, &status_only_pod("own-probe", &me))?;
            ensure!(own.success(), "its own status-only pod was refused: {own}");
            delete_pod(&node, AGENT_CONF, "own-probe")?.ok()?;
            ensure!(!pod_exists(&node, "own-probe")?, "own-probe still there");
            Ok(())
        },
    )?;

    step("admin.conf still creates ordinary kube-system pods", || {
        let out = create_as(
            &node,
            ADMIN_CONF,
            &ordinary_pod("admin-made", "no-such-node"),
        )?;
        ensure!(out.success(), "admin was refused: {out}");
        ensure!(pod_exists(&node, "admin-made")?, "not created");
        delete_pod(&node, ADMIN_CONF, "admin-made")?.ok()?;
        Ok(())
    })?;

    step(
        "with the agent stopped, kube-system pod creates fail closed; it serves again once restarted",
        || {
            node.kill9_agent()?;
            // Even admin: the API server cannot ask the webhook (failurePolicy Fail).
            let out = create_as(
                &node,
                ADMIN_CONF,
                &ordinary_pod("while-down", "no-such-node"),
            )?;
            ensure!(!out.success(), "created with the webhook down: {out}");
            ensure!(
                out.stderr
                    .contains("failed calling webhook \"pods.agent.kubeboot.io\""),
                "{out}"
            );
            // Other namespaces do not depend on it.
            let other = create_as(
                &node,
                ADMIN_CONF,
                &ordinary_pod("while-down", "no-such-node")
                    .replace("namespace: kube-system", "namespace: default")
                    .replace(
                        "serviceAccountName: clusterrole-aggregation-controller",
                        "serviceAccountName: default",
                    ),
            )?;
            ensure!(other.success(), "default namespace affected: {other}");
            node.kubectl_ok(&["delete", "pod", "while-down", "--grace-period=0", "--force"])?;
            node.kubeboot_ok(&[
                "init",
                "phase",
                "agent-start",
                "--bin-dir",
                &bin,
                "--bin-dir",
                "/usr/bin",
            ])?;
            wait_until(
                "admin creates kube-system pods again",
                Duration::from_secs(60),
                Duration::from_secs(1),
                || {
                    Ok(create_as(
                        &node,
                        ADMIN_CONF,
                        &ordinary_pod("after-restart", "no-such-node"),
                    )?
                    .success())
                },
            )?;
            delete_pod(&node, ADMIN_CONF, "after-restart")?.ok()?;
            Ok(())
        },
    )?;
    node.destroy()
}
