//! Scenario: `kubeboot init` applies kubeadm's addons. kube-proxy runs on the node as a static
//! pod under the agent (with `conntrack.maxPerCore: 0` from the user's KubeProxyConfiguration,
//! since a network namespace cannot set the global `nf_conntrack_max`) and keeps running; it
//! programs iptables for the API server's and a new Service's ClusterIP; the addon objects
//! exist with kubeadm's names and types; CoreDNS's Deployment exists (its image is not on the
//! node, so its Pods stay Pending); re-running the addon phase changes nothing.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::{Node, bin_dir, require_root, step, wait_until};

const MAX_PER_CORE_ZERO: &str = "conntrack:\n  maxPerCore: 0\n";

fn config(node: &Node) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta2
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {ip}
  bindPort: 6443
nodeRegistration:
  name: {name}
---
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
{MAX_PER_CORE_ZERO}",
        ip = node.ip(),
        name = node.name()
    )
}

/// A Service without a selector and its Endpoints (the node's own address): kube-proxy gives
/// it NAT rules without any pod running.
fn service_yaml(node: &Node) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: kb-e2e-addons
  namespace: default
spec:
  ports:
  - port: 80
    protocol: TCP
    targetPort: 8080
---
apiVersion: v1
kind: Endpoints
metadata:
  name: kb-e2e-addons
  namespace: default
subsets:
- addresses:
  - ip: {ip}
  ports:
  - port: 8080
    protocol: TCP
",
        ip = node.ip()
    )
}

/// The agent's kube-proxy container, from `agent status -o json`.
fn kube_proxy_container(node: &Node) -> Result<Option<Value>> {
    let status = node.agent_status_json()?;
    let pods = status["pods"].as_array().cloned().unwrap_or_default();
    Ok(pods
        .iter()
        .find(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-proxy"))
        })
        .and_then(|p| p["containers"].get(0).cloned()))
}

fn nat_rules(node: &Node) -> Result<String> {
    node.exec_ok(&["iptables-save", "-t", "nat"])
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn addons() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("addons"))?;
    let scratch = tempfile::tempdir().context("scratch directory")?;
    let config_file = scratch.path().join("kubeadm.yaml");
    let service_file = scratch.path().join("service.yaml");
    std::fs::write(&config_file, config(&node))?;
    std::fs::write(&service_file, service_yaml(&node))?;
    let config_file = config_file.to_string_lossy().to_string();

    let out = step(
        "kubeboot init --config with a KubeProxyConfiguration",
        || {
            let out = node.kubeboot_ok(&[
                "init",
                "--config",
                &config_file,
                "--bin-dir",
                &bin,
                "--bin-dir",
                "/usr/bin",
            ])?;
            for want in [
                "[addons] Applied essential addon: CoreDNS",
                "[addons] CoreDNS needs the image k8s.gcr.io/coredns:1.7.0 on the node; its Pods stay Pending until it is there",
                "[addons] Applied essential addon: kube-proxy",
                "Your Kubernetes control-plane has initialized successfully!",
            ] {
                ensure!(out.contains(want), "init output lacks {want:?}:\n{out}");
            }
            Ok(out)
        },
    )?;
    let coredns_line = out.find("Applied essential addon: CoreDNS");
    let proxy_line = out.find("Applied essential addon: kube-proxy");
    ensure!(
        coredns_line < proxy_line,
        "kubeadm applies CoreDNS first:\n{out}"
    );

    step(
        "node-local kube-proxy files and static pod manifest",
        || {
            let conf = node.read_file("/var/lib/kube-proxy/config.conf")?;
            ensure!(conf.contains(MAX_PER_CORE_ZERO), "config.conf:\n{conf}");
            ensure!(
                conf.contains("kubeconfig: /var/lib/kube-proxy/kubeconfig.conf"),
                "config.conf:\n{conf}"
            );
            ensure!(
                conf.contains("clusterCIDR: 10.244.0.0/16"),
                "config.conf:\n{conf}"
            );
            let kubeconfig = node.read_file("/var/lib/kube-proxy/kubeconfig.conf")?;
            ensure!(
                kubeconfig.contains("current-context: system:kube-proxy@kubernetes"),
                "kubeconfig.conf:\n{kubeconfig}"
            );
            let mode =
                node.exec_ok(&["stat", "-c", "%a", "/var/lib/kube-proxy/kubeconfig.conf"])?;
            ensure!(mode.trim() == "600", "kubeconfig.conf mode {mode}");
            let manifest = node.read_file("/etc/kubernetes/manifests/kube-proxy.yaml")?;
            ensure!(
                manifest.contains(&format!("--hostname-override={}", node.name())),
                "kube-proxy.yaml:\n{manifest}"
            );
            Ok(())
        },
    )?;

    step("the agent runs kube-proxy", || {
        wait_until(
            "kube-proxy running",
            Duration::from_secs(60),
            Duration::from_secs(1),
            || Ok(kube_proxy_container(&node)?.is_some_and(|c| c["state"] == "running")),
        )
    })?;

    step(
        "kube-proxy programs KUBE-SERVICES for the API server's ClusterIP",
        || {
            wait_until(
                "KUBE-SERVICES has the kubernetes Service",
                Duration::from_secs(60),
                Duration::from_secs(1),
                || {
                    let out = node.exec(&["iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n"])?;
                    Ok(out.success() && out.stdout.contains("10.96.0.1 "))
                },
            )
        },
    )?;

    step("a new Service's ClusterIP gets its iptables rules", || {
        let service_file = service_file.to_string_lossy().to_string();
        node.kubectl_ok(&["apply", "-f", &service_file])?;
        let svc = node.kubectl_json(&["get", "service", "kb-e2e-addons", "-n", "default"])?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("the Service has no clusterIP")?
            .to_string();
        let dnat = format!("--to-destination {}:8080", node.ip());
        wait_until(
            &format!("NAT rules for {ip}"),
            Duration::from_secs(60),
            Duration::from_secs(1),
            || {
                let rules = nat_rules(&node)?;
                Ok(rules.contains(&format!("-d {ip}/32"))
                    && rules.contains("default/kb-e2e-addons")
                    && rules.contains(&dnat))
            },
        )
    })?;

    step(
        "the addon objects exist with kubeadm's names and types",
        || {
            let namespaced = node.kubectl_ok(&[
                "get",
                "-n",
                "kube-system",
                "configmap/coredns",
                "configmap/kube-proxy",
                "serviceaccount/coredns",
                "serviceaccount/kube-proxy",
                "deployment.apps/coredns",
                "service/kube-dns",
                "daemonset.apps/kube-proxy",
                "role.rbac.authorization.k8s.io/kube-proxy",
                "rolebinding.rbac.authorization.k8s.io/kube-proxy",
                "-o",
                "name",
            ])?;
            ensure!(namespaced.lines().count() == 9, "{namespaced}");
            let cluster = node.kubectl_ok(&[
                "get",
                "clusterrole/system:coredns",
                "clusterrolebinding/system:coredns",
                "clusterrolebinding/kubeadm:node-proxier",
                "-o",
                "name",
            ])?;
            ensure!(cluster.lines().count() == 3, "{cluster}");
            let dns = node.kubectl_json(&["get", "-n", "kube-system", "service", "kube-dns"])?;
            ensure!(dns["spec"]["clusterIP"] == "10.96.0.10", "kube-dns: {dns}");
            let proxier =
                node.kubectl_json(&["get", "clusterrolebinding", "kubeadm:node-proxier"])?;
            ensure!(
                proxier["roleRef"]["name"] == "system:node-proxier",
                "kubeadm:node-proxier: {proxier}"
            );
            let cm = node.kubectl_json(&["get", "-n", "kube-system", "configmap", "kube-proxy"])?;
            let conf = cm["data"]["config.conf"].as_str().unwrap_or_default();
            ensure!(
                conf.contains("maxPerCore: 0"),
                "ConfigMap config.conf:\n{conf}"
            );
            let ds = node.kubectl_json(&["get", "-n", "kube-system", "daemonset", "kube-proxy"])?;
            let expr = &ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                ["nodeSelectorTerms"][0]["matchExpressions"][0];
            ensure!(
                expr["key"] == "node.kubeboot.io/kube-proxy" && expr["operator"] == "NotIn",
                "DaemonSet affinity: {expr}"
            );
            let coredns =
                node.kubectl_json(&["get", "-n", "kube-system", "deployment", "coredns"])?;
            ensure!(
                coredns["spec"]["template"]["spec"]["containers"][0]["image"]
                    == "k8s.gcr.io/coredns:1.7.0",
                "coredns: {coredns}"
            );
            Ok(())
        },
    )?;

    step(
        "re-running the addon phase is a no-op for kube-proxy",
        || {
            let before = kube_proxy_container(&node)?.context("no kube-proxy")?;
            let out =
                node.kubeboot_ok(&["init", "phase", "addon", "all", "--config", &config_file])?;
            ensure!(
                out.contains("[addons] Applied essential addon: kube-proxy")
                    && out.contains("[addons] Applied essential addon: CoreDNS"),
                "{out}"
            );
            std::thread::sleep(Duration::from_secs(5));
            let after = kube_proxy_container(&node)?.context("no kube-proxy")?;
            ensure!(
                after["state"] == "running"
                    && after["pid"] == before["pid"]
                    && after["restart_count"] == before["restart_count"],
                "kube-proxy changed: before {before}, after {after}"
            );
            Ok(())
        },
    )?;

    step("kube-proxy keeps running", || {
        let c = kube_proxy_container(&node)?.context("no kube-proxy")?;
        ensure!(
            c["state"] == "running" && c["restart_count"] == 0,
            "kube-proxy: {c}"
        );
        Ok(())
    })?;

    step("destroy node", || node.destroy())?;
    Ok(())
}
