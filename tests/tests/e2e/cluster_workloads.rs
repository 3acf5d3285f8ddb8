//! Scenario: a single-node cluster runs real workloads, under either static pod runner.
//! `kubeboot init` writes the kubelet's configuration and runs the kubelet and containerd as
//! agent static pods; the image archives offered in `/var/lib/kubeboot/images` (built locally
//! by `scripts/build-images.sh`) are imported into the node's containerd; the agent writes the
//! bridge CNI configuration once the node has a podCIDR; a two-replica Deployment gets pod IPs
//! from the node's podCIDR and answers HTTP, also through its Service's ClusterIP; `reset -f`
//! leaves no kubelet, containerd, shim or container process and no pod network namespace.
//!
//! `cluster_workloads`: the agent runs the control plane and kube-proxy (the default).
//! `kubelet_runner`: `--static-pod-runner kubelet`: the kubelet runs the control plane through
//! containerd from images built from the same host binaries, with real mirror pods, and
//! kubeadm's kube-proxy DaemonSet runs on the node; init without those images fails first,
//! naming them and the fix; with the TEST BUILD on disk, `upgrade apply v1.20.3-test.0` moves
//! the control plane (restarted by the kubelet from the test build's images), the kubelet and
//! kube-proxy's DaemonSet to it while the workloads keep running.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tests::cluster::{
    app_pods, build_images, build_test_build_images, http_get, in_cidr, node_condition,
    offer_image_archives,
};
use tests::{Node, bin_dir, require_root, step, wait_until};

const POD_SUBNET: &str = "10.244.0.0/16";

fn web_pods(node: &Node) -> Result<Vec<Value>> {
    app_pods(node, "web")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    Agent,
    Kubelet,
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn cluster_workloads() -> Result<()> {
    scenario(Runner::Agent)
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubelet_runner() -> Result<()> {
    scenario(Runner::Kubelet)
}

fn scenario(runner: Runner) -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let images = step("images built from local files", || {
        build_images(runner == Runner::Kubelet)
    })?;
    let node = step("create node", || {
        Node::allocate(match runner {
            Runner::Agent => "cluster-workloads",
            Runner::Kubelet => "kubelet-runner",
        })
    })?;

    let config = step("init config with the node's cgroupRoot", || {
        node.write_init_config(POD_SUBNET)
    })?;
    let mut init_args = vec![
        "init",
        "--config",
        &config,
        "--bin-dir",
        &bin,
        "--bin-dir",
        "/usr/bin",
    ];
    if runner == Runner::Kubelet {
        init_args.extend(["--static-pod-runner", "kubelet"]);
        kubelet_runner_bad_input(&node, &init_args)?;
    }
    step(
        "the image archives are offered in /var/lib/kubeboot/images",
        || offer_image_archives(&node, &images),
    )?;
    step("kubeboot init", || {
        let out = node.kubeboot_ok(&init_args)?;
        let mut wants = vec![
            "[kubelet-start] Writing kubelet environment file with flags to file \"/var/lib/kubelet/kubeadm-flags.env\"".to_string(),
            "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"".to_string(),
            "[kubelet-start] Starting the kubelet".to_string(),
            "Your Kubernetes control-plane has initialized successfully!".to_string(),
        ];
        for (image, tar) in &images {
            wants.push(format!(
                "[kubelet-start] Importing images from \"/var/lib/kubeboot/images/{}\" ({image})",
                tar.rsplit('/').next().unwrap_or_default()
            ));
        }
        if runner == Runner::Kubelet {
            wants.push(
                "[kubelet-start] The control plane's images are present in containerd".into(),
            );
            wants.push(
                "[wait-control-plane] Waiting for the kubelet to boot up the control plane".into(),
            );
            wants.push("kube-proxy runs on this node as a Pod of kubeadm's DaemonSet".into());
        }
        for want in &wants {
            ensure!(
                out.contains(want.as_str()),
                "init output lacks {want:?}:\n{out}"
            );
        }
        let kubelet_config = node.read_file("/var/lib/kubelet/config.yaml")?;
        let static_pod_path = match runner {
            Runner::Agent => "staticPodPath: \"\"",
            Runner::Kubelet => "staticPodPath: /etc/kubernetes/manifests",
        };
        ensure!(
            kubelet_config.contains(&format!("cgroupRoot: {}", node.cgroup_root()))
                && kubelet_config.contains("- 10.96.0.10")
                && kubelet_config.contains(static_pod_path),
            "config.yaml:\n{kubelet_config}"
        );
        // The cluster's copy is kubeadm's, whichever runner this node has.
        let cm = node.kubectl_json(&["-n", "kube-system", "get", "cm", "kubelet-config-1.20"])?;
        let cluster_copy = cm["data"]["kubelet"].as_str().unwrap_or_default();
        ensure!(
            cluster_copy.contains("staticPodPath: /etc/kubernetes/manifests"),
            "kubelet-config-1.20:\n{cluster_copy}"
        );
        Ok(())
    })?;

    step("the images are in the node's containerd", || {
        let list = node.exec_ok(&["ctr", "-n", "k8s.io", "images", "ls", "-q"])?;
        for (image, _) in &images {
            ensure!(list.lines().any(|l| l == image), "{image} not in:\n{list}");
        }
        Ok(())
    })?;

    if runner == Runner::Kubelet {
        kubelet_runs_the_control_plane(&node)?;
    }

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

    step("the Service's ClusterIP answers through kube-proxy", || {
        node.kubectl_ok(&["expose", "deployment", "web", "--port", "80"])?;
        wait_until(
            "kube-proxy runs on the node",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || Ok(!node.pids_named("kube-proxy")?.is_empty()),
        )?;
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
    })?;

    if runner == Runner::Kubelet
        && let Some((next, _)) = tests::next_bin_dirs()?
    {
        upgrade_under_the_kubelet(&node, &next)?;
    }

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
                    [
                        "kubelet",
                        "containerd",
                        "containerd-shim",
                        "kubeboot",
                        "kube-apiserver",
                        "kube-controller",
                        "kube-scheduler",
                        "kube-proxy",
                        "etcd",
                    ]
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
            let manifests = node.sh_ok(
                "ls -A /etc/kubernetes/manifests /etc/kubeboot/manifests 2>/dev/null || true",
            )?;
            ensure!(
                !manifests.contains(".yaml"),
                "static pod manifests left:\n{manifests}"
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

/// `--static-pod-runner kubelet` without the control plane's images: init fails in
/// kubelet-start naming each missing image and the archives directory, before any control
/// plane manifest is written; `reset -f` then repairs the node. An unknown runner fails
/// before anything is written.
fn kubelet_runner_bad_input(node: &Node, init_args: &[&str]) -> Result<()> {
    step(
        "an unknown --static-pod-runner is refused, the node untouched",
        || {
            let mut args: Vec<&str> = init_args.to_vec();
            let at = args.len() - 1;
            args[at] = "docker";
            let out = node.kubeboot(&args)?;
            ensure!(!out.success(), "init succeeded:\n{out}");
            ensure!(
                out.stderr
                    .contains("--static-pod-runner \"docker\" is not supported: use \"agent\"")
                    && out.stderr.contains("\"kubelet\""),
                "stderr:\n{}",
                out.stderr
            );
            ensure!(
                !node.path_exists("/etc/kubernetes/pki/ca.crt")?,
                "a refused init wrote the PKI"
            );
            Ok(())
        },
    )?;
    step(
        "without the control plane's images, init stops in kubelet-start",
        || {
            let out = node.kubeboot(init_args)?;
            ensure!(!out.success(), "init succeeded without images:\n{out}");
            for want in [
                "error execution phase kubelet-start",
                "containerd lacks k8s.gcr.io/kube-apiserver:v1.20.2",
                "k8s.gcr.io/etcd:3.4.13-0",
                "k8s.gcr.io/pause:3.2",
                "\"/var/lib/kubeboot/images\"",
                "--static-pod-runner agent",
            ] {
                ensure!(
                    out.stderr.contains(want),
                    "stderr lacks {want:?}:\n{}",
                    out.stderr
                );
            }
            ensure!(
                !node.path_exists("/etc/kubernetes/manifests/kube-apiserver.yaml")?,
                "a control-plane manifest was written"
            );
            let out = node.kubeboot_ok(&["reset", "-f"])?;
            ensure!(out.contains("Stopping the kubeboot agent"), "reset:\n{out}");
            ensure!(
                node.pids_named("containerd")?.is_empty() && node.pids_named("kubelet")?.is_empty(),
                "reset left containerd or the kubelet running"
            );
            Ok(())
        },
    )
}

/// Under `--static-pod-runner kubelet`: the agent runs only the kubelet and containerd; the
/// control plane runs in containerd with real mirror pods; the kubelet restarts a killed
/// kube-apiserver; kube-proxy runs from the DaemonSet, and the node carries no agent label.
fn kubelet_runs_the_control_plane(node: &Node) -> Result<()> {
    let name = node.name().to_string();
    step("the agent runs only the kubelet and containerd", || {
        let status = node.agent_status_json()?;
        let mut pods: Vec<String> = status["pods"]
            .as_array()
            .context("agent status has no pods")?
            .iter()
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        pods.sort();
        ensure!(
            pods == [format!("containerd-{name}"), format!("kubelet-{name}")],
            "agent pods: {pods:?}"
        );
        Ok(())
    })?;
    step(
        "the control plane runs in containerd, as mirror pods in the API",
        || {
            wait_until(
                "the four control-plane mirror pods Running",
                Duration::from_secs(120),
                Duration::from_secs(2),
                || {
                    let mut running = 0;
                    for c in [
                        "etcd",
                        "kube-apiserver",
                        "kube-controller-manager",
                        "kube-scheduler",
                    ] {
                        let Ok(pod) = node.kubectl_json(&[
                            "-n",
                            "kube-system",
                            "get",
                            "pod",
                            &format!("{c}-{name}"),
                        ]) else {
                            return Ok(false);
                        };
                        let mirror = pod["metadata"]["annotations"]["kubernetes.io/config.mirror"]
                            .is_string();
                        if mirror
                            && pod["spec"]["nodeName"] == name.as_str()
                            && pod["status"]["phase"] == "Running"
                        {
                            running += 1;
                        }
                    }
                    Ok(running == 4)
                },
            )?;
            let containers = node.exec_ok(&["ctr", "-n", "k8s.io", "containers", "ls"])?;
            for image in [
                "k8s.gcr.io/kube-apiserver:v1.20.2",
                "k8s.gcr.io/etcd:3.4.13-0",
            ] {
                ensure!(
                    containers.contains(image),
                    "no {image} container:\n{containers}"
                );
            }
            let pid = *node
                .pids_named("kube-apiserver")?
                .first()
                .context("no kube-apiserver process")?;
            let parent = node.sh_ok(&format!(
                "cat /proc/$(awk '/^PPid:/ {{print $2}}' /proc/{pid}/status)/comm"
            ))?;
            ensure!(
                parent.trim().starts_with("containerd-shim"),
                "kube-apiserver's parent is {parent:?}, not a containerd shim"
            );
            Ok(())
        },
    )?;
    step("the kubelet restarts a killed kube-apiserver", || {
        let before = node.pids_named("kube-apiserver")?;
        let pid = *before.first().context("no kube-apiserver process")?;
        node.kill9(pid)?;
        wait_until(
            "a new kube-apiserver answers",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || {
                let now = node.pids_named("kube-apiserver")?;
                Ok(!now.is_empty()
                    && !now.contains(&pid)
                    && node.kubectl(&["get", "--raw", "/healthz"])?.success())
            },
        )
    })?;
    step("kube-proxy runs from kubeadm's DaemonSet", || {
        wait_until(
            "a kube-proxy DaemonSet pod Running on the node",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || {
                let pods = node.kubectl_json(&[
                    "-n",
                    "kube-system",
                    "get",
                    "pods",
                    "-l",
                    "k8s-app=kube-proxy",
                ])?;
                Ok(pods["items"].as_array().into_iter().flatten().any(|p| {
                    p["spec"]["nodeName"] == name.as_str()
                        && p["status"]["phase"] == "Running"
                        && p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
                }))
            },
        )?;
        let n = node.kubectl_json(&["get", "node", &name])?;
        ensure!(
            n["metadata"]["labels"]["node.kubeboot.io/kube-proxy"].is_null(),
            "the node carries the agent's kube-proxy label: {}",
            n["metadata"]["labels"]
        );
        ensure!(
            !node.path_exists("/etc/kubernetes/manifests/kube-proxy.yaml")?,
            "a kube-proxy static pod was written"
        );
        Ok(())
    })
}

/// `upgrade apply` to the TEST BUILD under the kubelet runner: the kubelet restarts the
/// control plane from the new images, the agent the kubelet; kubeadm's kube-proxy DaemonSet
/// follows.
fn upgrade_under_the_kubelet(node: &Node, next: &std::path::Path) -> Result<()> {
    const TARGET: &str = "v1.20.3-test.0";
    step("the test build's images in the node's containerd", || {
        for (image, tar) in build_test_build_images()? {
            node.exec_ok(&["ctr", "-n", "k8s.io", "images", "import", &tar])?;
            let list = node.exec_ok(&["ctr", "-n", "k8s.io", "images", "ls", "-q"])?;
            ensure!(list.lines().any(|l| l == image), "{image} not imported");
        }
        Ok(())
    })?;
    step(
        "upgrade apply to the test build under the kubelet runner",
        || {
            let next = next.display().to_string();
            let out = node.kubeboot_ok(&[
                "upgrade",
                "apply",
                TARGET,
                "--allow-experimental-upgrades",
                "-y",
                "--bin-dir",
                &next,
            ])?;
            for want in [
                "Component \"kube-apiserver\" upgraded successfully!",
                "Component \"kube-scheduler\" upgraded successfully!",
                "SUCCESS!",
            ] {
                ensure!(out.contains(want), "no {want:?} in:\n{out}");
            }
            let version = node.kubectl_json(&["version", "-o", "json"])?;
            ensure!(
                version["serverVersion"]["gitVersion"] == TARGET,
                "the API server: {}",
                version["serverVersion"]
            );
            for c in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                let m = node.read_file(&format!("/etc/kubernetes/manifests/{c}.yaml"))?;
                ensure!(m.contains(&format!("{c}:{TARGET}")), "{c}.yaml:\n{m}");
            }
            let ds = node.kubectl_json(&["-n", "kube-system", "get", "daemonset", "kube-proxy"])?;
            let image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default();
            ensure!(
                image.ends_with(&format!(":{TARGET}")),
                "kube-proxy: {image}"
            );
            wait_until(
                "the kubelet reports the test build",
                Duration::from_secs(120),
                Duration::from_secs(1),
                || {
                    let n = node.kubectl_json(&["get", "node", node.name()])?;
                    Ok(n["status"]["nodeInfo"]["kubeletVersion"] == TARGET)
                },
            )?;
            // The workloads started before the upgrade kept running through it.
            let running = web_pods(node)?
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count();
            ensure!(running == 2, "{running} web pods Running after the upgrade");
            Ok(())
        },
    )
}
