//! Scenario: after `kubeboot init`, the agent's static pods are Pods in the API
//! (`etcd-<node>`, `kube-apiserver-<node>`, ...), Running with the readiness and restart
//! counts the agent sees; kubeadm's etcd endpoint lookup finds them; PodGC leaves them alone;
//! a removed manifest removes its pod and a deleted pod is published again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::{Node, bin_dir, require_root, step, wait_until};

const COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// PodGC (kube-controller-manager, pkg/controller/podgc): it runs every 20 s and deletes
/// pods bound to a missing node after 40 s of quarantine. Two full rounds after that.
const PODGC_PERIOD: Duration = Duration::from_secs(20 + 40 + 2 * 20);

fn pods(node: &Node) -> Result<BTreeMap<String, Value>> {
    let list = node.kubectl_json(&["-n", "kube-system", "get", "pods"])?;
    Ok(list["items"]
        .as_array()
        .context("no items")?
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p.clone(),
            )
        })
        .collect())
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
}

fn restart_count(pod: &Value) -> u64 {
    pod["status"]["containerStatuses"][0]["restartCount"]
        .as_u64()
        .unwrap_or_default()
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn mirror_pods() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("mirror-pods"))?;
    let name = |component: &str| format!("{component}-{}", node.name());

    step("kubeboot init", || {
        let args = crate::init_single_node::init_args_for(&node, &bin, None)?;
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = node.kubeboot_ok(&argv)?;
        ensure!(
            out.contains("[agent-rbac] Allowed the kubeboot agents"),
            "init did not grant the agents their RBAC:\n{out}"
        );
        ensure!(
            node.path_exists("/etc/kubernetes/kubeboot-agent.conf")?,
            "no agent kubeconfig"
        );
        Ok(())
    })?;

    step(
        "kubectl -n kube-system get pods lists the four control-plane pods Running and ready",
        || {
            wait_until(
                "the agent's pods Running and ready in the API",
                Duration::from_secs(120),
                Duration::from_secs(2),
                || {
                    let pods = pods(&node)?;
                    Ok(COMPONENTS
                        .iter()
                        .all(|c| pods.get(&name(c)).is_some_and(running_and_ready)))
                },
            )?;
            let table = node.kubectl_ok(&["-n", "kube-system", "get", "pods"])?;
            for c in COMPONENTS {
                let row = table
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(name(c).as_str()))
                    .with_context(|| format!("{} missing from:\n{table}", name(c)))?;
                let cols: Vec<&str> = row.split_whitespace().collect();
                ensure!(
                    cols[1] == "1/1" && cols[2] == "Running",
                    "unexpected row {row:?} in:\n{table}"
                );
            }
            Ok(())
        },
    )?;

    step(
        "the pods carry kubeadm's labels and annotations, and no kubelet or scheduler owns them",
        || {
            let pods = pods(&node)?;
            let ip = node.ip().to_string();
            for c in COMPONENTS {
                let p = &pods[&name(c)];
                let meta = &p["metadata"];
                ensure!(meta["labels"]["component"] == c, "labels: {meta}");
                ensure!(meta["labels"]["tier"] == "control-plane", "labels: {meta}");
                ensure!(
                    meta["annotations"]["kubernetes.io/config.source"] == "kubeboot-agent",
                    "annotations: {meta}"
                );
                ensure!(
                    meta["annotations"]["kubernetes.io/config.hash"].is_string(),
                    "annotations: {meta}"
                );
                ensure!(
                    meta["annotations"]
                        .get("kubernetes.io/config.mirror")
                        .is_none(),
                    "a mirror pod: {meta}"
                );
                ensure!(
                    p["spec"].get("nodeName").is_none(),
                    "bound to a node: {}",
                    p["spec"]
                );
                ensure!(
                    p["spec"]["schedulerName"] == "kubeboot-agent",
                    "{}",
                    p["spec"]
                );
                ensure!(p["status"]["hostIP"] == ip.as_str(), "{}", p["status"]);
                ensure!(p["status"]["podIP"] == ip.as_str(), "{}", p["status"]);
            }
            Ok(())
        },
    )?;

    step(
        "kubeadm's etcd endpoint lookup (the same list call) finds the endpoints",
        || {
            // kubeadm: app/util/etcd/etcd.go getRawEtcdEndpointsFromPodAnnotationWithoutRetry
            // lists kube-system pods by this label selector, without a node filter, and reads
            // each pod's annotation.
            let raw = node.kubectl_ok(&[
                "get",
                "--raw",
                "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd%2Ctier%3Dcontrol-plane",
            ])?;
            let list: Value = serde_json::from_str(&raw).context("pod list")?;
            let endpoints: Vec<&str> = list["items"]
                .as_array()
                .context("items")?
                .iter()
                .filter_map(|p| {
                    p["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"]
                        .as_str()
                })
                .collect();
            let want = format!("https://{}:2379", node.ip());
            ensure!(
                endpoints == [want.as_str()],
                "etcd endpoints {endpoints:?}, want [{want}]"
            );
            let api = &pods(&node)?[&name("kube-apiserver")];
            let ep = &api["metadata"]["annotations"]["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"];
            ensure!(
                *ep == format!("{}:6443", node.ip()).as_str(),
                "apiserver endpoint {ep}"
            );
            Ok(())
        },
    )?;

    step(
        "kill -9 kube-apiserver: its restartCount goes up in the API",
        || {
            let before = restart_count(&pods(&node)?[&name("kube-apiserver")]);
            let pids = node.pids_named("kube-apiserver")?;
            ensure!(
                pids.len() == 1,
                "expected one kube-apiserver, found {pids:?}"
            );
            node.kill9(pids[0])?;
            wait_until(
                "kube-apiserver's restartCount above its old value, and ready",
                Duration::from_secs(120),
                Duration::from_secs(1),
                || {
                    let Ok(pods) = pods(&node) else {
                        return Ok(false); // the API server is down for a moment
                    };
                    let p = &pods[&name("kube-apiserver")];
                    Ok(restart_count(p) > before && running_and_ready(p))
                },
            )?;
            let status = node.agent_status_json()?;
            let agent = status["pods"]
                .as_array()
                .and_then(|ps| {
                    ps.iter()
                        .find(|p| p["name"] == name("kube-apiserver").as_str())
                })
                .context("no kube-apiserver in agent status")?;
            let api = restart_count(&pods(&node)?[&name("kube-apiserver")]);
            ensure!(
                agent["containers"][0]["restart_count"].as_u64() == Some(api),
                "the API says {api} restarts, the agent {}",
                agent["containers"][0]["restart_count"]
            );
            Ok(())
        },
    )?;

    step("the pods survive PodGC", || {
        let before: BTreeMap<String, String> = COMPONENTS
            .iter()
            .map(|c| Ok((name(c), uid(&pods(&node)?[&name(c)]))))
            .collect::<Result<_>>()?;
        let start = Instant::now();
        // Where the agent runs a kubelet, this also shows that it leaves the pods alone.
        let kubelet = !node.pids_named("kubelet")?.is_empty();
        eprintln!(
            "[mirror-pods] watching the pods for {PODGC_PERIOD:?} of PodGC rounds (kubelet running: {kubelet})"
        );
        while start.elapsed() < PODGC_PERIOD {
            std::thread::sleep(Duration::from_secs(10));
            let pods = pods(&node)?;
            for (n, u) in &before {
                let now = pods.get(n).map(uid);
                ensure!(
                    now.as_deref() == Some(u.as_str()),
                    "{n} was deleted or replaced after {:?} (uid {u} -> {now:?})",
                    start.elapsed()
                );
            }
        }
        // The agent's container logs: /var/log/kubeboot/pods where a kubelet owns
        // /var/log/pods.
        let cm_log = node.sh_ok(
            "cat $(find /var/log/kubeboot/pods /var/log/pods -type f -name '*.log' \
             -path '*/kube-system_kube-controller-manager-*' 2>/dev/null) </dev/null",
        )?;
        ensure!(
            cm_log.contains("Started \"podgc\""),
            "the controller-manager runs no PodGC; this step proves nothing"
        );
        ensure!(
            !cm_log.contains("Forced deletion of"),
            "PodGC deleted pods:\n{}",
            cm_log
                .lines()
                .filter(|l| l.contains("Forced deletion"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    })?;

    step(
        "removing a manifest removes its pod; restoring it brings it back",
        || {
            node.exec_ok(&[
                "mv",
                "/etc/kubernetes/manifests/kube-scheduler.yaml",
                "/etc/kubernetes/kube-scheduler.yaml.away",
            ])?;
            wait_until(
                "kube-scheduler's pod gone from the API",
                Duration::from_secs(60),
                Duration::from_secs(1),
                || Ok(!pods(&node)?.contains_key(&name("kube-scheduler"))),
            )?;
            ensure!(
                node.pids_named("kube-scheduler")?.is_empty(),
                "kube-scheduler still runs"
            );
            node.exec_ok(&[
                "mv",
                "/etc/kubernetes/kube-scheduler.yaml.away",
                "/etc/kubernetes/manifests/kube-scheduler.yaml",
            ])?;
            wait_until(
                "kube-scheduler's pod back, Running and ready",
                Duration::from_secs(120),
                Duration::from_secs(2),
                || {
                    Ok(pods(&node)?
                        .get(&name("kube-scheduler"))
                        .is_some_and(running_and_ready))
                },
            )
        },
    )?;

    step("a pod deleted through the API is published again", || {
        let old = uid(&pods(&node)?[&name("etcd")]);
        node.kubectl_ok(&["-n", "kube-system", "delete", "pod", &name("etcd")])?;
        wait_until(
            "etcd's pod published again",
            Duration::from_secs(90),
            Duration::from_secs(2),
            || {
                Ok(pods(&node)?
                    .get(&name("etcd"))
                    .is_some_and(|p| uid(p) != old && running_and_ready(p)))
            },
        )?;
        ensure!(
            node.pids_named("etcd")?.len() == 1,
            "etcd itself was touched"
        );
        Ok(())
    })?;

    step("reset -f deletes the pods the agent published", || {
        let mut published: Vec<String> = pods(&node)?
            .into_iter()
            .filter(|(_, p)| p["metadata"]["labels"]["kubeboot.io/agent-node"] == node.name())
            .map(|(name, _)| name)
            .collect();
        published.sort();
        ensure!(published.len() >= 4, "published: {published:?}");
        let out = node.kubeboot_ok(&["reset", "-f"])?;
        let line = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("[reset] Deleted the Pods this node's agent published to the API: ")
            })
            .with_context(|| format!("reset did not delete the published pods:\n{out}"))?;
        let mut deleted: Vec<String> = line.split(", ").map(str::to_string).collect();
        deleted.sort();
        ensure!(
            deleted == published,
            "deleted {deleted:?}, published {published:?}"
        );
        Ok(())
    })?;
    node.destroy()
}
