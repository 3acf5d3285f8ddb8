//! Scenario: a highly available cluster from plain machines, with no load balancer.
//!
//! node1 runs `kubeboot init --upload-certs` with its own address as controlPlaneEndpoint; a
//! worker joins with the token and CA pin `token create --print-join-command` prints (through
//! a JoinConfiguration that gives it its own cgroup root); node2 and node3 join as
//! control-plane nodes with the certificate key. Then:
//! - all four nodes are Ready, three of them control-plane, and etcd has three voting members;
//! - the worker's kube-proxy runs under the agent with a certificate of its own that a
//!   control-plane agent approved;
//! - a pod on the worker answers HTTP by pod IP from node1 (host-gw routes between the
//!   nodes' podCIDRs), and its Service's ClusterIP answers from every node;
//! - a second join on the worker is refused;
//! - node1's agent and whole control plane are killed: kubectl with node2's admin.conf works,
//!   the worker stays Ready (its agent's API load balancer fails over), a new Deployment
//!   schedules and runs, and the worker, reset, joins again through node2;
//! - node1's agent starts again and its etcd member is back in the quorum;
//! - the cluster is upgraded to the TEST BUILD with etcd 3.5.16 (`upgrade_multi`: apply on
//!   node1, a failing `upgrade node` on node2 rolled back, node2, node3, the worker drained);
//! - `reset --delete-node` on node3 removes its etcd member, ClusterStatus entry and Node and
//!   leaves no kube-proxy chain, bridge, veth, pod netns, pod route or kubelet mount; node3 then
//!   joins the upgraded cluster again as a control plane (and leaves again); the same reset
//!   on the worker (no credential may delete its Node) is refused, the node untouched;
//! - `etcd snapshot save` on node1, then `restore` on both members (node1, node2): etcd has
//!   its two members again, both API servers serve the snapshot's data (an object made after
//!   it is gone), every node is Ready;
//! - the snapshot node1's `upgrade apply` took under v1.20.2 (three members then), restored on
//!   node1 and node2: both control planes are back at v1.20.2, node1 from the manifests the
//!   snapshot kept, node2 from its own upgrade backup; the data is the snapshot's; node3's
//!   member, restored with the rest of the membership, is removed by hand as an operator would;
//! - with node1's etcd down, reset on node2 (the last member standing) is refused without
//!   `--force-remove-last-etcd-member`, node2 untouched.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::cluster::{
    build_images, http_get, in_cidr, join_credentials, node_condition, offer_image_archives,
    run_web_on, wait_ready,
};
use tests::{Node, bin_dir, require_root, step, wait_until};

/// The etcd members as node `cp`'s etcd lists them: `(name, is_learner)`.
fn etcd_members(cp: &Node) -> Result<Vec<(String, bool)>> {
    let out = cp.exec_ok(&[
        "curl",
        "-s",
        "-m",
        "5",
        "--cacert",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "--cert",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "--key",
        "/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "-X",
        "POST",
        "-d",
        "{}",
        "https://127.0.0.1:2379/v3/cluster/member/list",
    ])?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("member list: {out}"))?;
    Ok(v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["isLearner"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Whether every member `cp`'s etcd lists answers its health endpoint.
fn etcd_all_healthy(cp: &Node, members: &[&Node]) -> Result<bool> {
    for m in members {
        let out = cp.exec(&[
            "curl",
            "-s",
            "-m",
            "3",
            "--cacert",
            "/etc/kubernetes/pki/etcd/ca.crt",
            "--cert",
            "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
            "--key",
            "/etc/kubernetes/pki/etcd/healthcheck-client.key",
            &format!("https://{}:2379/health", m.ip()),
        ])?;
        if !out.stdout.contains("\"health\":\"true\"") {
            return Ok(false);
        }
    }
    Ok(true)
}

fn join_worker(
    worker: &Node,
    endpoint: &str,
    token: &str,
    hash: &str,
    bin: &str,
) -> Result<String> {
    let config = worker.write_join_config(endpoint, token, hash, None)?;
    worker.kubeboot_ok(&[
        "join",
        "--config",
        &config,
        "--bin-dir",
        bin,
        "--bin-dir",
        "/usr/bin",
    ])
}

/// A JoinConfiguration for `bad` with a 5 s discovery timeout and `tail` appended (it may
/// continue `nodeRegistration` with two-space keys, or add top-level ones).
fn bad_join_config(
    bad: &Node,
    endpoint: &str,
    token: &str,
    hash: &str,
    tail: &str,
) -> Result<String> {
    let yaml = format!(
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\n\
         discovery:\n  timeout: 5s\n  bootstrapToken:\n    apiServerEndpoint: {endpoint}\n    token: {token}\n    caCertHashes:\n    - {hash}\n\
         nodeRegistration:\n  kubeletExtraArgs:\n    cgroup-root: {}\n{tail}",
        bad.cgroup_root()
    );
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        yaml.hash(&mut h);
        h.finish()
    };
    let path = format!("/var/lib/kubeboot/bad-{digest:016x}.yaml");
    bad.write_file(&path, &yaml)?;
    Ok(path)
}

/// Each bad input to `join` is refused with exit code 1 and a message naming the problem
/// and the fix, and leaves the joining node as it was.
fn join_bad_input(cp: &Node, worker: &Node, bin: &str, token: &str, hash: &str) -> Result<()> {
    let bad = step("create a node for bad input", || Node::allocate("join-bad"))?;
    let endpoint = format!("{}:6443", cp.ip());
    let wrong_hash = format!("sha256:{}", "0".repeat(64));
    let unknown_token = "abcdef.0123456789abcdef";
    let expired = step("a token that expired", || {
        let t = cp
            .kubeboot_ok(&["token", "create", "--ttl", "1s"])?
            .trim()
            .to_string();
        let id = t.split('.').next().unwrap_or_default().to_string();
        wait_until(
            "the expired token is cleaned up",
            Duration::from_secs(90),
            Duration::from_secs(2),
            || Ok(!cp.kubeboot_ok(&["token", "list"])?.contains(&id)),
        )?;
        Ok(t)
    })?;
    let cp_tail = format!(
        "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: {}\n    bindPort: 6443\n",
        bad.ip()
    );
    let wrong_key = "0".repeat(64);
    let taken = format!(
        "a Node with name {:?} and status \"Ready\" already exists",
        worker.name()
    );
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a wrong CA hash",
            bad_join_config(&bad, &endpoint, token, &wrong_hash, "")?,
            vec![
                "matches none of the --discovery-token-ca-cert-hash values given",
                hash,
            ],
        ),
        (
            "an unknown token",
            bad_join_config(&bad, &endpoint, unknown_token, hash, "")?,
            vec![
                "the cluster has no signature for token ID \"abcdef\"",
                "is wrong or has expired",
            ],
        ),
        (
            "an expired token",
            bad_join_config(&bad, &endpoint, &expired, hash, "")?,
            vec![
                "is wrong or has expired",
                "kubeboot token create --print-join-command",
            ],
        ),
        (
            "an unreachable endpoint",
            bad_join_config(&bad, &format!("{}:6553", cp.ip()), token, hash, "")?,
            vec![
                "could not reach the API server at https://",
                "within the discovery timeout of 5s",
            ],
        ),
        (
            "a wrong certificate key",
            bad_join_config(
                &bad,
                &endpoint,
                token,
                hash,
                &format!("{cp_tail}  certificateKey: {wrong_key}\n"),
            )?,
            vec![
                "the certificate key does not decrypt the uploaded certificates",
                "--certificate-key",
            ],
        ),
        (
            "--control-plane with no certificate key and no certificates",
            bad_join_config(&bad, &endpoint, token, hash, &cp_tail)?,
            vec![
                "the cluster's shared certificates and keys",
                "--certificate-key",
            ],
        ),
        (
            "a node name a Ready node has",
            bad_join_config(
                &bad,
                &endpoint,
                token,
                hash,
                &format!("  name: {}\n", worker.name()),
            )?,
            vec![taken.as_str()],
        ),
        (
            "a typo'd field",
            bad_join_config(&bad, &endpoint, token, hash, "discovry: {}\n")?,
            vec!["discovry"],
        ),
    ];
    // The configuration files are the only thing on the node before each attempt.
    let before = bad.sh_ok(tests::NODE_STATE)?;
    for (what, config, wants) in &cases {
        step(
            &format!("join with {what} is refused, the node untouched"),
            || {
                let out = bad.kubeboot(&[
                    "join",
                    "--config",
                    config,
                    "--bin-dir",
                    bin,
                    "--bin-dir",
                    "/usr/bin",
                ])?;
                tests::assert_refused(&bad, what, &out, wants, &before)
            },
        )?;
    }
    step(
        "join --dry-run says what it would do and changes nothing",
        || {
            let config = bad_join_config(&bad, &endpoint, token, hash, "")?;
            let before = bad.sh_ok(tests::NODE_STATE)?;
            let out = bad.kubeboot_ok(&[
                "join",
                "--config",
                &config,
                "--dry-run",
                "--bin-dir",
                bin,
                "--bin-dir",
                "/usr/bin",
            ])?;
            for want in [
                "[dryrun] Would request a client certificate for \"system:node:",
                "[dryrun] Would start the kubeboot agent",
                "This node has joined the cluster:",
            ] {
                ensure!(out.contains(want), "dry-run output lacks {want:?}:\n{out}");
            }
            ensure!(
                bad.sh_ok(tests::NODE_STATE)? == before,
                "dry-run changed the node"
            );
            let defaults = bad.kubeboot_ok(&["config", "print", "join-defaults"])?;
            ensure!(defaults.contains("kind: JoinConfiguration"), "{defaults}");
            Ok(())
        },
    )?;
    bad.destroy()
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn join_cluster() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let images = step("images built from local files", || build_images(false))?;
    let cp = step("create node1", || Node::allocate("join-cp1"))?;
    let cp2 = step("create node2", || Node::allocate("join-cp2"))?;
    let cp3 = step("create node3", || Node::allocate("join-cp3"))?;
    let worker = step("create the worker", || Node::allocate("join-w1"))?;
    let all = [&cp, &cp2, &cp3, &worker];
    for n in all {
        step("offer the image archives", || {
            offer_image_archives(n, &images)
        })?;
    }
    // The nodes are made by the project's provisioning script, the one the Vagrantfile runs
    // (its cluster part; the packages are the host's here), with the join commands in a
    // directory all nodes see.
    let shared = format!("/run/kubeboot-e2e/provision-{}", cp.name());
    std::fs::create_dir_all(&shared)?;
    let exe = tests::kubeboot_exe()?.display().to_string();
    let script = tests::repo_root()
        .join("vagrant/provision.sh")
        .display()
        .to_string();
    let provision = |n: &Node, args: &[&str]| -> Result<String> {
        let mut argv = vec![
            "env".to_string(),
            format!("KUBEBOOT={exe}"),
            format!("KUBEBOOT_SHARED_DIR={shared}"),
            format!("KUBEBOOT_NODE_CGROUP_ROOT={}", n.cgroup_root()),
            "bash".to_string(),
            script.clone(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.extend(["--", "--bin-dir", &bin, "--bin-dir", "/usr/bin"].map(String::from));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        n.exec_ok(&argv)
    };

    let key = step(
        "provision.sh init (kubeboot init --upload-certs) on node1",
        || {
            let ip = cp.ip().to_string();
            let out = provision(&cp, &["init", &ip])?;
            ensure!(
            out.contains("[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace"),
            "{out}"
        );
            let words: Vec<&str> = out.split_whitespace().collect();
            let key = words
                .iter()
                .position(|w| *w == "--certificate-key")
                .and_then(|i| words.get(i + 1))
                .context("no --certificate-key in init's join command")?;
            Ok(key.to_string())
        },
    )?;
    let (token, hash) = step("a join command from node1", || join_credentials(&cp))?;

    step(
        "provision.sh join worker (kubeboot join) on the worker",
        || {
            let ip = worker.ip().to_string();
            let out = provision(&worker, &["join", "worker", &ip])?;
            let command = std::fs::read_to_string(format!("{shared}/join-worker.sh"))?;
            let words: Vec<&str> = command.split_whitespace().collect();
            let token = words
                .iter()
                .position(|w| *w == "--token")
                .and_then(|i| words.get(i + 1))
                .context("no --token in join-worker.sh")?;
            for want in [
                "[preflight] Running pre-flight checks",
                "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"",
                "This node has joined the cluster:",
            ] {
                ensure!(out.contains(want), "join output lacks {want:?}:\n{out}");
            }
            let secret = token.split('.').nth(1).unwrap_or("-");
            ensure!(!out.contains(secret), "the token secret is printed:\n{out}");
            let log = worker.read_file("/var/log/kubeboot/agent.log")?;
            ensure!(
                !log.contains(secret),
                "the token secret is in the agent's log"
            );
            Ok(())
        },
    )?;

    for n in [&cp2, &cp3] {
        step(
            &format!("kubeboot join --control-plane on {}", n.name()),
            || {
                let ip = n.ip().to_string();
                let out = provision(n, &["join", "control-plane", &ip])?;
                for want in [
                    "[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace",
                    "This node has joined the cluster and a new control plane instance was created:",
                ] {
                    ensure!(out.contains(want), "join output lacks {want:?}:\n{out}");
                }
                ensure!(
                    !out.contains(&key),
                    "the certificate key is printed:\n{out}"
                );
                let admin = n.read_file("/etc/kubernetes/admin.conf")?;
                ensure!(
                    admin.contains(&format!("server: https://{}:6443", n.ip())),
                    "admin.conf does not name this node's own API server:\n{admin}"
                );
                Ok(())
            },
        )?;
    }

    let worker_cidr = step(
        "all four nodes are Ready, three of them control-plane",
        || {
            for n in all {
                wait_ready(&cp, n.name(), Duration::from_secs(240))?;
            }
            let cps = cp.kubectl_json(&["get", "nodes", "-l", "node-role.kubernetes.io/master"])?;
            ensure!(cps["items"].as_array().map(Vec::len) == Some(3), "{cps}");
            wait_ready(&cp, worker.name(), Duration::from_secs(10))
        },
    )?;

    step(
        "the kubeboot agents gave every node its podCIDR, the range allocator's choices in turn",
        || {
            let manifest =
                cp.read_file("/etc/kubernetes/manifests/kube-controller-manager.yaml")?;
            ensure!(
                manifest.contains("--controllers=*,bootstrapsigner,tokencleaner,-nodeipam"),
                "the controller-manager runs its node IPAM controller:\n{manifest}"
            );
            let nodes = cp.kubectl_json(&["get", "nodes"])?;
            let mut cidrs: Vec<String> = nodes["items"]
                .as_array()
                .context("no nodes")?
                .iter()
                .map(|n| {
                    n["spec"]["podCIDR"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            cidrs.sort();
            let want: Vec<String> = (0..4).map(|i| format!("10.244.{i}.0/24")).collect();
            ensure!(cidrs == want, "podCIDRs {cidrs:?}, want {want:?}");
            let lease =
                cp.kubectl_json(&["get", "lease", "-n", "kube-system", "kubeboot-node-ipam"])?;
            ensure!(
                lease["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "the agent that gave the last podCIDR did not release the Lease: {lease}"
            );
            // Taken (the controller-manager never touches it) and released, as client-go does.
            ensure!(
                lease["spec"]["acquireTime"].is_string()
                    && lease["spec"]["leaseDurationSeconds"] == 1,
                "the Lease was never taken and released by an agent: {lease}"
            );
            Ok(())
        },
    )?;

    step("etcd has three voting members", || {
        wait_until(
            "three voting etcd members",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || {
                let members = etcd_members(&cp)?;
                Ok(members.len() == 3 && members.iter().all(|(_, learner)| !learner))
            },
        )?;
        let mut names: Vec<String> = etcd_members(&cp)?.into_iter().map(|(n, _)| n).collect();
        names.sort();
        let mut want: Vec<String> = [&cp, &cp2, &cp3]
            .iter()
            .map(|n| n.name().to_string())
            .collect();
        want.sort();
        ensure!(names == want, "members {names:?}");
        Ok(())
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
            let prefix = format!("kubeboot-kube-proxy-{}-", worker.name());
            let ours: Vec<&Value> = csrs["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|c| {
                            c["metadata"]["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with(&prefix))
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
            let kubeconfig = worker.read_file("/var/lib/kube-proxy/kubeconfig.conf")?;
            ensure!(
                kubeconfig.contains("server: https://127.0.0.1:6444")
                    && kubeconfig.contains("tls-server-name: kubernetes"),
                "kube-proxy does not use the local balancer:\n{kubeconfig}"
            );
            Ok(())
        },
    )?;

    step("a pod on the worker answers by pod IP from node1", || {
        let ip = run_web_on(&cp, "web", &worker)?;
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

    step("the Service's ClusterIP answers from every node", || {
        cp.kubectl_ok(&["expose", "deployment", "web", "--port", "80"])?;
        let svc = cp.kubectl_json(&["get", "service", "web"])?;
        let ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("no clusterIP")?
            .to_string();
        for n in all {
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
            let config = "/var/lib/kubeboot/provision-join.yaml";
            let before = worker.read_file("/etc/kubernetes/kubelet.conf")?;
            let out = worker.kubeboot(&["join", "--config", config, "--bin-dir", &bin])?;
            ensure!(out.code == Some(1), "second join:\n{out}");
            ensure!(
                out.stderr.contains("kubeboot reset -f") && out.stderr.contains("kubelet.conf"),
                "{out}"
            );
            ensure!(worker.read_file("/etc/kubernetes/kubelet.conf")? == before);
            Ok(())
        },
    )?;

    join_bad_input(&cp, &worker, &bin, &token, &hash)?;

    step("node1's agent and whole control plane die", || {
        cp.kill9_agent()?;
        for comm in [
            "kube-apiserver",
            "etcd",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
        ] {
            for pid in cp.pids_named(comm)? {
                cp.kill9(pid)?;
            }
        }
        Ok(())
    })?;

    step(
        "kubectl with node2's admin.conf works and the worker stays Ready",
        || {
            // Past the node monitor's grace period (40 s): a worker that lost the API is NotReady by then.
            std::thread::sleep(Duration::from_secs(50));
            let n = cp2.kubectl_json(&["get", "node", worker.name()])?;
            ensure!(
                node_condition(&n, "Ready").as_deref() == Some("True"),
                "{n}"
            );
            Ok(())
        },
    )?;

    step("a new Deployment schedules and runs on the worker", || {
        let ip = run_web_on(&cp2, "web2", &worker)?;
        wait_until(
            "node2 reaches the new pod",
            Duration::from_secs(60),
            Duration::from_secs(2),
            || {
                Ok(http_get(&cp2, &format!("http://{ip}/"))
                    .is_ok_and(|b| b.contains("hello from web2-")))
            },
        )
    })?;

    step("the worker, reset, joins again through node2", || {
        // A worker has no credential that may delete its Node: refused, the node untouched.
        let before = worker.read_file("/etc/kubernetes/kubelet.conf")?;
        let out = worker.kubeboot(&["reset", "-f", "--delete-node"])?;
        ensure!(
            out.code == Some(1),
            "reset --delete-node on the worker:\n{out}"
        );
        ensure!(
            out.stderr.contains("kubectl delete node <name>")
                && out.stderr.contains("from a control-plane node"),
            "{out}"
        );
        ensure!(worker.read_file("/etc/kubernetes/kubelet.conf")? == before);
        cp2.kubectl_ok(&["delete", "node", worker.name()])?;
        worker.kubeboot_ok(&["reset", "-f"])?;
        let (token, hash) = join_credentials(&cp2)?;
        join_worker(&worker, &format!("{}:6443", cp2.ip()), &token, &hash, &bin)?;
        wait_ready(&cp2, worker.name(), Duration::from_secs(180))?;
        Ok(())
    })?;

    step(
        "node1 comes back and its etcd member rejoins the quorum",
        || {
            cp.kubeboot_ok(&[
                "init",
                "phase",
                "agent-start",
                "--config",
                "/var/lib/kubeboot/provision-init.yaml",
                "--bin-dir",
                &bin,
                "--bin-dir",
                "/usr/bin",
            ])?;
            wait_until(
                "every etcd member healthy",
                Duration::from_secs(180),
                Duration::from_secs(3),
                || etcd_all_healthy(&cp2, &[&cp, &cp2, &cp3]),
            )?;
            wait_ready(&cp2, cp.name(), Duration::from_secs(180))?;
            Ok(())
        },
    )?;

    crate::upgrade_multi::upgrade_cluster(&cp, &cp2, &cp3, &worker)?;

    step(
        "reset --delete-node on node3 takes its etcd member, ClusterStatus entry and Node with it",
        || {
            let out = cp3.kubeboot_ok(&["reset", "-f", "--delete-node"])?;
            ensure!(
                out.contains("Removed the etcd member") && out.contains("Deleted the Node"),
                "reset output:\n{out}"
            );
            let node = cp2.kubectl(&["get", "node", cp3.name()])?;
            ensure!(
                node.code != Some(0) && node.stderr.contains("NotFound"),
                "node3's Node is still there:\n{node}"
            );
            let names: Vec<String> = etcd_members(&cp2)?.into_iter().map(|(n, _)| n).collect();
            ensure!(
                names.len() == 2 && !names.iter().any(|n| n == cp3.name()),
                "members {names:?}"
            );
            let cm = cp2.kubectl_json(&["-n", "kube-system", "get", "cm", "kubeadm-config"])?;
            let status = cm["data"]["ClusterStatus"].as_str().unwrap_or_default();
            ensure!(
                !status.contains(cp3.name()) && status.contains(cp2.name()),
                "ClusterStatus:\n{status}"
            );
            Ok(())
        },
    )?;

    step(
        "node3 after reset: no kube-proxy chains, bridge, veths, pod netns, pod routes or kubelet mounts",
        || {
            let rules = cp3.sh_ok("iptables-save 2>/dev/null | grep -c -- '-N KUBE-' || true")?;
            ensure!(rules.trim() == "0", "kube-proxy chains left: {rules}");
            let links = cp3.sh_ok("ip -o link show | grep -E 'kbr0|veth' || true")?;
            ensure!(links.trim().is_empty(), "links left:\n{links}");
            let netns = cp3.sh_ok("ls /run/netns 2>/dev/null || true")?;
            ensure!(
                netns.trim().is_empty(),
                "pod network namespaces left: {netns}"
            );
            let routes = cp3.sh_ok("ip route show proto 77")?;
            ensure!(routes.trim().is_empty(), "pod routes left:\n{routes}");
            // Below the kubelet's directory: the directory itself is the harness's bind mount.
            let mounts = cp3.sh_ok("grep ' /var/lib/kubelet/' /proc/self/mountinfo || true")?;
            ensure!(mounts.trim().is_empty(), "kubelet mounts left:\n{mounts}");
            Ok(())
        },
    )?;

    if let Some((next, etcd_next)) = tests::next_bin_dirs()? {
        step(
            "node3 joins the upgraded cluster again as a control plane, then leaves again",
            || {
                let ip = cp3.ip().to_string();
                let mut argv = vec![
                    "env".to_string(),
                    format!("KUBEBOOT={exe}"),
                    format!("KUBEBOOT_SHARED_DIR={shared}"),
                    format!("KUBEBOOT_NODE_CGROUP_ROOT={}", cp3.cgroup_root()),
                    "bash".to_string(),
                    script.clone(),
                    "join".into(),
                    "control-plane".into(),
                    ip,
                    "--".into(),
                ];
                for d in [
                    etcd_next.display().to_string(),
                    next.display().to_string(),
                    bin.clone(),
                    "/usr/bin".into(),
                ] {
                    argv.push("--bin-dir".into());
                    argv.push(d);
                }
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let out = cp3.exec_ok(&argv)?;
                ensure!(
                    out.contains("This node has joined the cluster and a new control plane instance was created:"),
                    "{out}"
                );
                wait_until(
                    "node3's etcd member healthy again",
                    Duration::from_secs(180),
                    Duration::from_secs(3),
                    || etcd_all_healthy(&cp2, &[&cp, &cp2, &cp3]),
                )?;
                wait_ready(&cp2, cp3.name(), Duration::from_secs(180))?;
                let v = cp3.sh_ok("curl -sk --max-time 5 https://127.0.0.1:6443/version")?;
                ensure!(v.contains("v1.20.3-test.0"), "node3's API server: {v}");
                let out = cp3.kubeboot_ok(&["reset", "-f", "--delete-node"])?;
                ensure!(out.contains("Removed the etcd member"), "{out}");
                ensure!(
                    etcd_members(&cp2)?.len() == 2,
                    "node3's member is still there"
                );
                Ok(())
            },
        )?;
    }

    step(
        "etcd snapshot save on node1, restore on both members: the cluster is back at the snapshot",
        || {
            let file = format!("{shared}/etcd-e2e.db");
            cp2.kubectl_ok(&[
                "create",
                "configmap",
                "kb-before-snapshot",
                "--from-literal=k=v",
            ])?;
            let out = cp.kubeboot_ok(&["etcd", "snapshot", "save", &file])?;
            ensure!(out.contains("Saved a snapshot of etcd"), "{out}");
            cp2.kubectl_ok(&[
                "create",
                "configmap",
                "kb-after-snapshot",
                "--from-literal=k=v",
            ])?;
            // Each member from the same snapshot; the first waits for none (no quorum yet).
            let out = cp.kubeboot_ok(&["etcd", "snapshot", "restore", &file])?;
            for want in [
                "and the API server (whose cache must not outlive the data it was filled from)",
                "Every member must be restored from this same snapshot",
                cp2.name(),
                "not waiting for it",
            ] {
                ensure!(out.contains(want), "no {want:?} in:\n{out}");
            }
            cp2.kubeboot_ok(&["etcd", "snapshot", "restore", &file])?;
            wait_until(
                "both etcd members healthy",
                Duration::from_secs(180),
                Duration::from_secs(3),
                || etcd_all_healthy(&cp2, &[&cp, &cp2]),
            )?;
            let names: Vec<String> = etcd_members(&cp2)?.into_iter().map(|(n, _)| n).collect();
            ensure!(names.len() == 2, "members {names:?}");
            for n in [&cp, &cp2] {
                wait_until(
                    &format!("{}'s API server serves the restored data", n.name()),
                    Duration::from_secs(180),
                    Duration::from_secs(2),
                    || {
                        Ok(n.kubectl(&["get", "configmap", "kb-before-snapshot"])?
                            .success())
                    },
                )?;
                let after = n.kubectl(&["get", "configmap", "kb-after-snapshot"])?;
                ensure!(
                    !after.success() && after.stderr.contains("NotFound"),
                    "{}: the object made after the snapshot is still there:\n{after}",
                    n.name()
                );
            }
            for n in [&cp, &cp2, &worker] {
                wait_ready(&cp2, n.name(), Duration::from_secs(180))?;
            }
            Ok(())
        },
    )?;

    if tests::next_bin_dirs()?.is_some() {
        step(
            "the snapshot upgrade apply took under v1.20.2, restored on both members: node1 puts back the manifests the snapshot kept, node2 those of its own upgrade backup",
            || restore_before_the_upgrade(&cp, &cp2, &cp3, &shared),
        )?;
    }

    step(
        "with node1's etcd down, reset on node2 (the last member standing) is refused, node2 untouched",
        || {
            cp.kill9_agent()?;
            for pid in cp.pids_named("etcd")? {
                cp.kill9(pid)?;
            }
            wait_until(
                "node1's etcd down",
                Duration::from_secs(30),
                Duration::from_secs(1),
                || Ok(!etcd_all_healthy(&cp2, &[&cp])?),
            )?;
            let out = cp2.kubeboot(&["reset", "-f"])?;
            ensure!(out.code == Some(1), "reset of the last member:\n{out}");
            ensure!(
                out.stderr.contains("--force-remove-last-etcd-member")
                    && out.stderr.contains("-f only skips the confirmation prompt")
                    && out.stderr.contains(&format!("{:?}", cp.name())),
                "{out}"
            );
            ensure!(etcd_members(&cp2)?.len() == 2, "node2's etcd lost a member");
            cp2.exec_ok(&["test", "-f", "/etc/kubernetes/manifests/etcd.yaml"])?;
            cp2.exec_ok(&["test", "-f", "/etc/kubernetes/admin.conf"])?;
            Ok(())
        },
    )?;

    let _ = std::fs::remove_dir_all(&shared);
    for n in [worker, cp3, cp2, cp] {
        n.destroy()?;
    }
    Ok(())
}

/// Restores, on node1 and node2, the snapshot node1's `upgrade apply` took under v1.20.2 (see
/// the module doc), then removes node3's member (node3 left the cluster since).
fn restore_before_the_upgrade(cp: &Node, cp2: &Node, cp3: &Node, shared: &str) -> Result<()> {
    use crate::upgrade_single_node::{api_version, cluster_configuration, manifest_image};
    let snapshot = cp.sh_ok(
        "grep -l '\"kubernetesVersion\": \"v1.20.2\"' /etc/kubernetes/tmp/kubeboot-backup-*/etcd-snapshot.db.json | xargs -r ls -t | head -1",
    )?;
    let snapshot = snapshot.trim().trim_end_matches(".json").to_string();
    ensure!(
        !snapshot.is_empty(),
        "node1 has no snapshot taken under v1.20.2"
    );
    let file = format!("{shared}/etcd-before-upgrade.db");
    cp.sh_ok(&format!(
        "cp {snapshot} {file} && cp {snapshot}.json {file}.json"
    ))?;
    let put_back = "Put back the static Pod manifests of Kubernetes v1.20.2 that";
    let versioned = "(kube-apiserver.yaml, kube-controller-manager.yaml, kube-scheduler.yaml, kubelet.yaml, kube-proxy.yaml)";
    let out = cp.kubeboot_ok(&["etcd", "snapshot", "restore", &file])?;
    for want in [
        "The snapshot was taken under Kubernetes v1.20.2; this node's control plane runs v1.20.3-test.0",
        &format!("{put_back} the snapshot kept {versioned}"),
        "not waiting for it",
    ] {
        ensure!(out.contains(want), "node1: no {want:?} in:\n{out}");
    }
    let out = cp2.kubeboot_ok(&["etcd", "snapshot", "restore", &file])?;
    for want in [
        "The snapshot was taken under Kubernetes v1.20.2; this node's control plane runs v1.20.3-test.0",
        &format!("{put_back} this node's upgrade backup \"/etc/kubernetes/tmp/kubeboot-backup-"),
        &format!("kept {versioned}"),
    ] {
        ensure!(out.contains(want), "node2: no {want:?} in:\n{out}");
    }
    wait_until(
        "etcd on node1 and node2 healthy (2 of the snapshot's 3 members)",
        Duration::from_secs(180),
        Duration::from_secs(3),
        || etcd_all_healthy(cp2, &[cp, cp2]),
    )?;
    for n in [cp, cp2] {
        wait_until(
            &format!("{}'s API server answers at v1.20.2", n.name()),
            Duration::from_secs(180),
            Duration::from_secs(2),
            || Ok(api_version(n).is_ok_and(|v| v == "v1.20.2")),
        )?;
        for c in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
        ] {
            let image = manifest_image(n, c)?;
            ensure!(image.ends_with(":v1.20.2"), "{}: {c}: {image}", n.name());
        }
        // Made after the upgrade: not in the snapshot's data.
        let after = n.kubectl(&["get", "configmap", "kb-before-snapshot"])?;
        ensure!(
            !after.success() && after.stderr.contains("NotFound"),
            "{}: an object made after the upgrade is still there:\n{after}",
            n.name()
        );
    }
    let cfg = cluster_configuration(cp2)?;
    ensure!(cfg.contains("kubernetesVersion: v1.20.2"), "{cfg}");
    // The membership is the snapshot's: node3, gone since, is there unstarted (a member's
    // name is what it publishes once it runs, so node3's is empty and its peer URL tells it),
    // and is removed as an operator would.
    let list = cp2.exec_ok(&[
        "curl",
        "-s",
        "-m",
        "5",
        "--cacert",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "--cert",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "--key",
        "/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "-X",
        "POST",
        "-d",
        "{}",
        "https://127.0.0.1:2379/v3/cluster/member/list",
    ])?;
    let v: Value = serde_json::from_str(&list).with_context(|| format!("member list: {list}"))?;
    let members = v["members"].as_array().cloned().unwrap_or_default();
    let node3_peer = format!("https://{}:2380", cp3.ip());
    let is_node3 = |m: &Value| {
        m["peerURLs"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u.as_str() == Some(node3_peer.as_str())))
    };
    let mut names: Vec<&str> = members
        .iter()
        .filter(|m| !is_node3(m))
        .map(|m| m["name"].as_str().unwrap_or_default())
        .collect();
    names.sort_unstable();
    let mut want = [cp.name(), cp2.name()];
    want.sort_unstable();
    ensure!(
        members.len() == 3 && names == want,
        "members after the restore: want node1, node2 and node3's (peer {node3_peer}), got {list}"
    );
    let id = members
        .iter()
        .find(|m| is_node3(m))
        .and_then(|m| m["ID"].as_str())
        .with_context(|| format!("node3's member ID in {list}"))?
        .to_string();
    cp2.exec_ok(&[
        "curl",
        "-sf",
        "-m",
        "5",
        "--cacert",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "--cert",
        "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        "--key",
        "/etc/kubernetes/pki/etcd/healthcheck-client.key",
        "-X",
        "POST",
        "-d",
        &format!("{{\"ID\": \"{id}\"}}"),
        "https://127.0.0.1:2379/v3/cluster/member/remove",
    ])?;
    wait_until(
        "node3's member removed",
        Duration::from_secs(30),
        Duration::from_secs(1),
        || Ok(etcd_members(cp2)?.len() == 2),
    )?;
    for n in [cp, cp2] {
        wait_ready(cp2, n.name(), Duration::from_secs(180))?;
    }
    Ok(())
}
