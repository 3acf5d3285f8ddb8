//! The upgrade of join_cluster's 3 control-plane + 1 worker cluster (called from there, so the
//! cluster is shared): v1.20.2 / etcd 3.4 to the TEST BUILD v1.20.3-test.0 with etcd 3.5.16.
//! - `upgrade apply` on node1; a background poll of every control-plane node's `/readyz`
//!   finds at least one answering at every round, from here to the end;
//! - `upgrade node` on node2 with a kube-apiserver that exits 1, after node1 succeeded: it
//!   fails and rolls node2 back; the cluster stays healthy, etcd's members all healthy and
//!   its cluster version still 3.4 (the point of no return is the last member);
//! - `upgrade node` on node2 and node3: node3 is the last control plane, so the addons move
//!   (kube-proxy's DaemonSet image) and etcd raises its cluster version to 3.5;
//! - `upgrade node --drain` on the worker: cordoned, its pod evicted, uncordoned, the pod
//!   running there again;
//! - every Node's kubelet and every API server report the test build, every etcd member
//!   3.5.16, and the objects made before the upgrade are there.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tests::{Node, step, wait_until};

const TARGET: &str = "v1.20.3-test.0";

fn readyz(n: &Node) -> bool {
    n.sh("curl -sk --max-time 2 https://127.0.0.1:6443/readyz")
        .is_ok_and(|o| o.stdout.trim() == "ok")
}

/// Every member's `/version` as node `cp`'s etcd lists them: `(etcdserver, etcdcluster)`.
pub fn etcd_versions(cp: &Node, members: &[&Node]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for m in members {
        let text = cp.sh_ok(&format!(
            "cd /etc/kubernetes/pki/etcd && curl -sS --max-time 5 --cacert ca.crt \
             --cert healthcheck-client.crt --key healthcheck-client.key https://{}:2379/version",
            m.ip()
        ))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("etcd /version: {text}"))?;
        out.push((
            v["etcdserver"].as_str().unwrap_or_default().to_string(),
            v["etcdcluster"].as_str().unwrap_or_default().to_string(),
        ));
    }
    Ok(out)
}

fn kubelet_version(cp: &Node, node: &Node) -> Result<String> {
    Ok(cp
        .kubectl_ok(&[
            "get",
            "node",
            node.name(),
            "-o",
            "jsonpath={.status.nodeInfo.kubeletVersion}",
        ])?
        .trim()
        .to_string())
}

/// Runs the upgrade of the cluster (see the module doc).
pub fn upgrade_cluster(cp: &Node, cp2: &Node, cp3: &Node, worker: &Node) -> Result<()> {
    let Some((next, etcd_next)) = tests::next_bin_dirs()? else {
        eprintln!("==> SKIPPED the cluster upgrade: KUBEBOOT_BIN_DIR_NEXT is not set");
        return Ok(());
    };
    let next = next.display().to_string();
    let etcd_next = etcd_next.display().to_string();
    let cps = [cp, cp2, cp3];

    // The API answers throughout from at least one node: a round of /readyz on every
    // control-plane node every 500 ms; a round where none answered is counted.
    let stop = AtomicBool::new(false);
    let dark = AtomicU32::new(0);
    let rounds = AtomicU32::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let poller = scope.spawn(|| {
            // Bounded: at most an hour of rounds.
            for _ in 0..7200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                rounds.fetch_add(1, Ordering::SeqCst);
                if !cps.iter().any(|n| readyz(n)) {
                    dark.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let result = (|| -> Result<()> {
            step(
                "upgrade apply on node1 (etcd 3.5.16 through --config)",
                || {
                    crate::upgrade_single_node::write_etcd_next_config(
                        cp,
                        "/etc/kubernetes/tmp-e2e-upgrade.yaml",
                    )?;
                    let out = cp.kubeboot_ok(&[
                        "upgrade",
                        "apply",
                        TARGET,
                        "--allow-experimental-upgrades",
                        "-y",
                        "--config",
                        "/etc/kubernetes/tmp-e2e-upgrade.yaml",
                        "--bin-dir",
                        &next,
                        "--bin-dir",
                        &etcd_next,
                    ])?;
                    ensure!(out.contains("SUCCESS!"), "{out}");
                    ensure!(
                        out.contains("Skipping the addons: the API servers of"),
                        "the addons moved with two control planes still old:\n{out}"
                    );
                    let servers = etcd_versions(cp2, &cps)?;
                    ensure!(servers[0].0 == "3.5.16", "{servers:?}");
                    ensure!(
                        servers.iter().all(|(_, c)| c == "3.4.0"),
                        "etcd's cluster version moved before the last member: {servers:?}"
                    );
                    Ok(())
                },
            )?;

            step(
                "upgrade node on node2 with a kube-apiserver that exits 1: node2 rolled back, the cluster healthy",
                || {
                    let dir = crate::upgrade_single_node::bin_dir_with(
                        "kb-upgrade-multi-exit1",
                        std::path::Path::new(&next),
                        "kube-apiserver",
                        &format!(
                            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Kubernetes {TARGET}'; exit 0; fi\necho 'stand-in kube-apiserver: refusing to start' >&2\nexit 1\n"
                        ),
                    )?;
                    let out = cp2.kubeboot(&[
                        "upgrade",
                        "node",
                        "--bin-dir",
                        &dir,
                        "--bin-dir",
                        &etcd_next,
                        "--timeout",
                        "120s",
                    ])?;
                    ensure!(!out.success(), "node2's broken upgrade succeeded:\n{out}");
                    ensure!(
                        out.stderr.contains("kube-apiserver did not become healthy")
                            && out
                                .stdout
                                .contains("The node is back at its previous version"),
                        "{out}"
                    );
                    wait_until(
                        "node2's API server back at v1.20.2",
                        Duration::from_secs(120),
                        Duration::from_secs(2),
                        || {
                            Ok(cp2
                                .sh("curl -sk --max-time 2 https://127.0.0.1:6443/version")
                                .is_ok_and(|o| o.stdout.contains("\"gitVersion\": \"v1.20.2\"")))
                        },
                    )?;
                    let v = etcd_versions(cp, &cps)?;
                    ensure!(
                        v[1].0.starts_with("3.4.") && v.iter().all(|(_, c)| c == "3.4.0"),
                        "etcd after node2's rollback: {v:?}"
                    );
                    ensure!(readyz(cp) && readyz(cp2), "the cluster is not healthy");
                    Ok(())
                },
            )?;

            for n in [cp2, cp3] {
                step(&format!("upgrade node on {}", n.name()), || {
                    let out = n.kubeboot_ok(&[
                        "upgrade",
                        "node",
                        "--bin-dir",
                        &next,
                        "--bin-dir",
                        &etcd_next,
                    ])?;
                    ensure!(out.contains("SUCCESS!"), "{out}");
                    if n.name() == cp3.name() {
                        ensure!(
                            out.contains("Applied essential addon: kube-proxy"),
                            "the last control plane did not apply the addons:\n{out}"
                        );
                    }
                    Ok(())
                })?;
            }

            step(
                "etcd raised its cluster version to 3.5 with its last member",
                || {
                    wait_until(
                        "etcd cluster version 3.5.0",
                        Duration::from_secs(60),
                        Duration::from_secs(2),
                        || {
                            let v = etcd_versions(cp, &cps)?;
                            Ok(v.iter().all(|(s, c)| s == "3.5.16" && c == "3.5.0"))
                        },
                    )
                },
            )?;

            step("upgrade node --drain on the worker", || {
                // Eviction needs a cluster admin's credential: the worker holds none of its own.
                let admin = cp2.read_file("/etc/kubernetes/admin.conf")?;
                worker.write_file("/root/e2e-admin.conf", &admin)?;
                let out = worker.kubeboot_ok(&[
                    "upgrade",
                    "node",
                    "--drain",
                    "--kubeconfig",
                    "/root/e2e-admin.conf",
                    "--bin-dir",
                    &next,
                ])?;
                for want in [
                    "Cordoning the node",
                    "Evicting pod default/web-",
                    "Uncordoned the node",
                    "SUCCESS!",
                ] {
                    ensure!(out.contains(want), "no {want:?} in:\n{out}");
                }
                wait_until(
                    "the web pod runs on the worker again",
                    Duration::from_secs(180),
                    Duration::from_secs(2),
                    || {
                        let pods = cp.kubectl_json(&["get", "pods", "-l", "app=web"])?;
                        Ok(pods["items"].as_array().is_some_and(|a| {
                            a.iter().any(|p| {
                                p["status"]["phase"] == "Running"
                                    && p["spec"]["nodeName"] == worker.name()
                            })
                        }))
                    },
                )?;
                let unsched = cp.kubectl_ok(&[
                    "get",
                    "node",
                    worker.name(),
                    "-o",
                    "jsonpath={.spec.unschedulable}",
                ])?;
                ensure!(
                    unsched.trim().is_empty(),
                    "the worker stays cordoned: {unsched:?}"
                );
                Ok(())
            })?;

            step("every node runs the test build, etcd 3.5.16", || {
                for n in [cp, cp2, cp3, worker] {
                    wait_until(
                        &format!("{}'s kubelet at {TARGET}", n.name()),
                        Duration::from_secs(60),
                        Duration::from_secs(2),
                        || Ok(kubelet_version(cp, n)? == TARGET),
                    )?;
                }
                for n in cps {
                    let out = n.sh_ok("curl -sk --max-time 5 https://127.0.0.1:6443/version")?;
                    ensure!(
                        out.contains(&format!("\"gitVersion\": \"{TARGET}\"")),
                        "{}: {out}",
                        n.name()
                    );
                }
                let ds = cp.kubectl_ok(&[
                    "-n",
                    "kube-system",
                    "get",
                    "daemonset",
                    "kube-proxy",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ])?;
                ensure!(
                    ds.ends_with(&format!(":{TARGET}")),
                    "kube-proxy DaemonSet image {ds}"
                );
                let svc = cp.kubectl_ok(&["get", "service", "web", "-o", "name"])?;
                ensure!(svc.trim() == "service/web", "{svc}");
                Ok(())
            })?;
            Ok(())
        })();
        stop.store(true, Ordering::SeqCst);
        let _ = poller.join();
        result
    })?;
    let (dark, rounds) = (dark.load(Ordering::SeqCst), rounds.load(Ordering::SeqCst));
    eprintln!("==> API poll: {rounds} rounds, {dark} with no control-plane node answering /readyz");
    ensure!(
        dark == 0,
        "in {dark} of {rounds} rounds (every 500 ms) no API server answered /readyz during the upgrade"
    );
    Ok(())
}
