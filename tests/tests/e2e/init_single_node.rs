//! Scenario: `kubeboot init` brings up a real single-node control plane under kubeboot's own
//! agent, on a node that is a network + mount + UTS namespace; the agent keeps it running
//! through a killed API server and a killed agent; `upgrade plan` and `upgrade diff` see the
//! TEST BUILD v1.20.3-test.0 on disk (and refuse bad input, changing nothing); a second
//! `init` fails preflight; `reset -f` cleans the node and `init` works again.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tests::{
    Node, assert_upgrade_refused as refused, bin_dir, next_bin_dirs, require_root, step,
    upgrade_state, wait_until,
};

/// `init` with a config file written into the node: its own kubelet cgroupRoot (so parallel
/// nodes never share a kubepods hierarchy), kube-proxy settings for a namespace node and, if
/// given, the bootstrap token.
pub fn init_args_for(node: &Node, bin: &str, token: Option<&str>) -> Result<Vec<String>> {
    let config = node.write_init_config_with_token("10.244.0.0/16", token)?;
    Ok(["init", "--config", config.as_str(), "--bin-dir", bin]
        .iter()
        .map(|s| s.to_string())
        .collect())
}

fn run_init(node: &Node, bin: &str) -> Result<String> {
    let args = init_args_for(node, bin, None)?;
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = node.kubeboot_ok(&argv)?;
    ensure!(
        out.contains("Your Kubernetes control-plane has initialized successfully!"),
        "init output:\n{out}"
    );
    ensure!(
        out.contains("[apiclient] All control plane components are healthy after"),
        "init output:\n{out}"
    );
    Ok(out)
}

/// Container name -> pid of the process the agent watches, from `agent status -o json`.
fn agent_pids(node: &Node) -> Result<BTreeMap<String, u64>> {
    let status = node.agent_status_json()?;
    let mut pids = BTreeMap::new();
    for pod in status["pods"].as_array().context("status has no pods")? {
        if !pod["name"].as_str().is_some_and(is_control_plane) {
            continue;
        }
        for c in pod["containers"]
            .as_array()
            .context("pod has no containers")?
        {
            if let Some(pid) = c["pid"].as_u64() {
                pids.insert(c["name"].as_str().unwrap_or_default().to_string(), pid);
            }
        }
    }
    Ok(pids)
}

fn livez_ok(node: &Node) -> Result<bool> {
    Ok(node.kubectl(&["get", "--raw", "/livez"])?.stdout.trim() == "ok")
}

/// The four control-plane static pods (the agent may run more, such as kube-proxy).
const CONTROL_PLANE: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

fn is_control_plane(pod_name: &str) -> bool {
    CONTROL_PLANE
        .iter()
        .any(|c| pod_name.starts_with(&format!("{c}-")))
}

fn all_running_and_ready(status: &Value) -> bool {
    let pods: Vec<Value> = status["pods"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["name"].as_str().is_some_and(is_control_plane))
        .collect();
    pods.len() == 4
        && pods.iter().all(|p| {
            p["containers"].as_array().is_some_and(|cs| {
                cs.iter()
                    .all(|c| c["state"] == "running" && c["ready"] == true)
            })
        })
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn init_single_node() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("init-single"))?;

    step(
        "init --dry-run writes nothing to the node, starts nothing, shows every file",
        || {
            let mut args = init_args_for(&node, &bin, None)?;
            args.push("--dry-run".into());
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = node.kubeboot_ok(&argv)?;
            for want in [
                "[dryrun] Would write file \"/etc/kubernetes/manifests/kube-apiserver.yaml\" with content:",
                "[dryrun] Would write file \"/etc/kubernetes/pki/ca.key\" (private key material, not shown)",
                "[dryrun] Would start the kubeboot agent",
                "--advertise-address=",
            ] {
                ensure!(out.contains(want), "dry-run output lacks {want:?}:\n{out}");
            }
            let files = node.sh_ok(
                "find /etc/kubernetes /var/lib/etcd /var/lib/kubeboot /run/kubeboot -mindepth 1 ! -name e2e-init.yaml",
            )?;
            ensure!(
                files.trim().is_empty(),
                "dry-run wrote to the node:\n{files}"
            );
            ensure!(
                node.processes()?.iter().all(|p| p.comm != "kubeboot"),
                "dry-run started the agent"
            );
            Ok(())
        },
    )?;

    step("kubeboot init", || run_init(&node, &bin))?;

    step("admin.conf works with kubectl", || {
        ensure!(livez_ok(&node)?, "/livez is not ok");
        let ns = node.kubectl_ok(&["get", "ns", "-o", "name"])?;
        for want in [
            "namespace/default",
            "namespace/kube-system",
            "namespace/kube-public",
            "namespace/kube-node-lease",
        ] {
            ensure!(ns.lines().any(|l| l == want), "{want} missing from:\n{ns}");
        }
        Ok(())
    })?;

    step(
        "each component kubeconfig authenticates as its user",
        || {
            let kubectl = format!("{bin}/kubectl");
            let node_user = format!("system:node:{}", node.name());
            for (file, user) in [
                ("controller-manager.conf", "system:kube-controller-manager"),
                ("scheduler.conf", "system:kube-scheduler"),
                ("kubelet.conf", node_user.as_str()),
            ] {
                // A request each of them is forbidden to make: the answer names who asked.
                let out = node.exec(&[
                    &kubectl,
                    "--kubeconfig",
                    &format!("/etc/kubernetes/{file}"),
                    "create",
                    "namespace",
                    "kb-whoami",
                    "--dry-run=server",
                ])?;
                ensure!(!out.success(), "{file} may create namespaces:\n{out}");
                ensure!(
                    out.stderr.contains(&format!("User \"{user}\"")),
                    "{file} is not {user}:\n{out}"
                );
            }
            Ok(())
        },
    )?;

    step("agent status: 4 pods running and ready", || {
        wait_until(
            "all 4 static pods ready",
            Duration::from_secs(90),
            Duration::from_secs(1),
            || Ok(all_running_and_ready(&node.agent_status_json()?)),
        )?;
        let text = node.kubeboot_ok(&["agent", "status"])?;
        for pod in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let name = format!("{pod}-{}", node.name());
            ensure!(
                text.lines()
                    .any(|l| l.contains(&name) && l.contains("Running")),
                "{name} not Running in:\n{text}"
            );
        }
        Ok(())
    })?;

    upgrade_plan_and_diff(&node, &bin)?;

    step(
        "etcd accepts the healthcheck client and rejects a cert from another CA",
        || {
            let ok = node.sh_ok(
            "cd /etc/kubernetes/pki/etcd && curl -sS --max-time 5 --cacert ca.crt \
             --cert healthcheck-client.crt --key healthcheck-client.key https://127.0.0.1:2379/health",
        )?;
            ensure!(ok.contains("\"health\":\"true\""), "etcd health: {ok}");
            let other = format!("/tmp/kb-e2e-other-ca-{}", node.name());
            node.sh_ok(&format!("rm -rf {other}"))?;
            node.kubeboot_ok(&[
                "init",
                "phase",
                "certs",
                "etcd-ca",
                "--cert-dir",
                &other,
                "--kubernetes-version",
                "v1.20.2",
            ])?;
            node.kubeboot_ok(&[
                "init",
                "phase",
                "certs",
                "etcd-healthcheck-client",
                "--cert-dir",
                &other,
                "--kubernetes-version",
                "v1.20.2",
            ])?;
            let bad = node.sh(&format!(
                "cd /etc/kubernetes/pki/etcd && curl -sS --max-time 5 --cacert ca.crt \
             --cert {other}/etcd/healthcheck-client.crt --key {other}/etcd/healthcheck-client.key \
             https://127.0.0.1:2379/health"
            ))?;
            node.sh_ok(&format!("rm -rf {other}"))?;
            ensure!(
                !bad.success() && !bad.stdout.contains("true"),
                "etcd accepted a foreign client cert:\n{bad}"
            );
            Ok(())
        },
    )?;

    step("kill -9 kube-apiserver: the agent restarts it", || {
        let before = agent_pids(&node)?;
        let pids = node.pids_named("kube-apiserver")?;
        ensure!(
            pids.len() == 1,
            "expected one kube-apiserver, found {pids:?}"
        );
        node.kill9(pids[0])?;
        wait_until(
            "a new kube-apiserver answering /livez",
            Duration::from_secs(120),
            Duration::from_millis(500),
            || {
                let now = node.pids_named("kube-apiserver")?;
                Ok(now.len() == 1 && now[0] != pids[0] && livez_ok(&node)?)
            },
        )?;
        let status = node.agent_status_json()?;
        let api = status["pods"]
            .as_array()
            .and_then(|ps| {
                ps.iter().find(|p| {
                    p["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("kube-apiserver-"))
                })
            })
            .context("no kube-apiserver pod in agent status")?;
        ensure!(
            api["containers"][0]["restart_count"].as_u64() >= Some(1),
            "restart not counted: {api}"
        );
        let after = agent_pids(&node)?;
        ensure!(
            after["etcd"] == before["etcd"],
            "etcd was restarted too: {before:?} -> {after:?}"
        );
        Ok(())
    })?;

    step(
        "kill -9 the agent, start it again: pods are adopted, not started twice",
        || {
            let before = agent_pids(&node)?;
            ensure!(
                before.len() == 4,
                "expected 4 watched containers, got {before:?}"
            );
            node.kill9_agent()?;
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
                "the new agent reports 4 pods",
                Duration::from_secs(30),
                Duration::from_millis(200),
                || Ok(agent_pids(&node).map(|p| p.len() == 4).unwrap_or(false)),
            )?;
            let after = agent_pids(&node)?;
            ensure!(
                after == before,
                "pods were not adopted: {before:?} -> {after:?}"
            );
            for comm in [
                "etcd",
                "kube-apiserver",
                "kube-controller",
                "kube-scheduler",
            ] {
                let pids = node.pids_named(comm)?;
                ensure!(
                    pids.len() == 1,
                    "{comm} runs {} times: {pids:?}",
                    pids.len()
                );
            }
            ensure!(livez_ok(&node)?, "/livez not ok after adoption");
            Ok(())
        },
    )?;

    certs_renew_restarts_only_the_api_server(&node)?;

    step(
        "a second init fails preflight clearly and changes nothing",
        || {
            let manifest_before =
                node.read_file("/etc/kubernetes/manifests/kube-apiserver.yaml")?;
            let ca_before = node.read_file("/etc/kubernetes/pki/ca.crt")?;
            let args = init_args_for(&node, &bin, None)?;
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = node.kubeboot(&argv)?;
            ensure!(
                out.code == Some(1),
                "second init exit code {:?}:\n{out}",
                out.code
            );
            for want in [
                "error execution phase preflight",
                "[ERROR Port-6443]: Port 6443 is in use",
                "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]",
                "[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty",
            ] {
                ensure!(out.stderr.contains(want), "missing {want:?} in:\n{out}");
            }
            ensure!(
                node.read_file("/etc/kubernetes/manifests/kube-apiserver.yaml")? == manifest_before,
                "manifest changed"
            );
            ensure!(
                node.read_file("/etc/kubernetes/pki/ca.crt")? == ca_before,
                "CA changed"
            );
            ensure!(livez_ok(&node)?, "control plane hurt by the failed init");
            Ok(())
        },
    )?;

    step("reset -f cleans the node", || {
        node.kubeboot_ok(&["reset", "-f"])?;
        let left = node.processes_starting_with(&[
            "etcd",
            "kube-apiserver",
            "kube-controller",
            "kube-scheduler",
            "kubeboot",
        ])?;
        ensure!(left.is_empty(), "processes left after reset: {left:?}");
        let files = node.sh_ok("find /etc/kubernetes /var/lib/etcd /var/lib/kubeboot /var/lib/kube-proxy /run/kubeboot -mindepth 1 -type f ! -name e2e-init.yaml")?;
        ensure!(files.trim().is_empty(), "files left after reset:\n{files}");
        Ok(())
    })?;

    step(
        "init works again after reset, with leaf certificates of 4 minutes renewed 2m30s before expiry",
        || {
            run_init_short_lived(&node, &bin)?;
            ensure!(livez_ok(&node)?, "/livez not ok");
            Ok(())
        },
    )?;

    the_agent_renews_certificates_before_they_expire(&node)?;

    step("reset -f again", || {
        node.kubeboot_ok(&["reset", "-f"]).map(|_| ())
    })?;
    node.destroy()
}

/// `init` with [`init_args_for`]'s config plus `certificateValidityPeriod: 4m0s` and
/// `certificateRenewalWindow: 2m30s` (kubeboot's extension): the agent renews the leaf
/// certificates 90 s after they were issued, and every 90 s after that.
fn run_init_short_lived(node: &Node, bin: &str) -> Result<String> {
    let args = init_args_for(node, bin, None)?;
    let config = &args[2];
    node.sh_ok(&format!(
        "sed -i 's/^kind: ClusterConfiguration$/kind: ClusterConfiguration\\ncertificateValidityPeriod: 4m0s\\ncertificateRenewalWindow: 2m30s/' {config} && grep -q '^certificateRenewalWindow: 2m30s$' {config}"
    ))?;
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = node.kubeboot_ok(&argv)?;
    ensure!(
        out.contains("Your Kubernetes control-plane has initialized successfully!"),
        "init output:\n{out}"
    );
    Ok(out)
}

/// The NotAfter of /etc/kubernetes/pki/apiserver.crt, as openssl prints it.
fn apiserver_not_after(node: &Node) -> Result<String> {
    Ok(node
        .sh_ok("openssl x509 -noout -enddate -in /etc/kubernetes/pki/apiserver.crt")?
        .trim()
        .to_string())
}

/// The agent renews the 4-minute certificates inside the window on its own: `agent status`
/// says so, a CertificateRenewed Event is on the Node, kube-apiserver serves the renewed
/// certificate, and the API keeps answering (the longest gap in a 1 s poll is bounded).
fn the_agent_renews_certificates_before_they_expire(node: &Node) -> Result<()> {
    step(
        "the agent renews the certificates inside the window; the components pick them up; the API keeps answering",
        || {
            let (first_serial, _) = serials(node)?;
            let first_end = apiserver_not_after(node)?;
            let mut gap = Duration::ZERO;
            let mut longest = Duration::ZERO;
            let mut last = std::time::Instant::now();
            wait_until(
                "a renewal by the agent (due 90 s after init issued the certificates)",
                Duration::from_secs(240),
                Duration::from_secs(1),
                || {
                    let now = std::time::Instant::now();
                    if livez_ok(node).unwrap_or(false) {
                        gap = Duration::ZERO;
                    } else {
                        gap += now - last;
                        longest = longest.max(gap);
                    }
                    last = now;
                    let status = node.agent_status_json()?;
                    Ok(status["certificates"]["renewals"].as_u64() >= Some(1))
                },
            )?;
            wait_until(
                "kube-apiserver serving the renewed certificate, /livez ok",
                Duration::from_secs(120),
                Duration::from_secs(1),
                || {
                    let (file, served) = serials(node)?;
                    let ok = livez_ok(node).unwrap_or(false);
                    let now = std::time::Instant::now();
                    if ok {
                        gap = Duration::ZERO;
                    } else {
                        gap += now - last;
                        longest = longest.max(gap);
                    }
                    last = now;
                    Ok(file != first_serial && served == file && ok)
                },
            )?;
            eprintln!("the longest stretch without an answer from /livez: {longest:?}");
            ensure!(
                longest <= Duration::from_secs(60),
                "the API did not answer for {longest:?} during the renewal"
            );
            let end = apiserver_not_after(node)?;
            ensure!(end != first_end, "apiserver.crt still ends {end}");
            let status = node.agent_status_json()?;
            let certs = &status["certificates"];
            ensure!(certs["window_seconds"] == 150, "{certs}");
            ensure!(
                certs["last_renewal"]
                    .as_str()
                    .is_some_and(|l| l.contains("apiserver")
                        && l.contains("etcd-server")
                        && l.contains("kube-proxy")),
                "{certs}"
            );
            // kube-proxy's credential is named by its configuration file, not its flags.
            ensure!(
                file_restarts(&status, "kube-apiserver") >= Some(1)
                    && file_restarts(&status, "etcd") >= Some(1)
                    && file_restarts(&status, "kube-proxy") >= Some(1),
                "the components were not restarted for the renewed files: {status}"
            );
            let text = node.kubeboot_ok(&["agent", "status"])?;
            ensure!(
                text.contains("Certificates: renewed by the agent within 2m30s of expiry"),
                "{text}"
            );
            let events = node.kubectl_json(&[
                "-n",
                "default",
                "get",
                "events",
                "--field-selector",
                "reason=CertificateRenewed",
                "-o",
                "json",
            ])?;
            ensure!(
                events["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|e| {
                        e["involvedObject"]["kind"] == "Node"
                            && e["involvedObject"]["name"] == node.name()
                            && e["source"]["component"] == "kubeboot-agent"
                    })),
                "no CertificateRenewed Event on the Node: {events}"
            );
            ensure!(livez_ok(node)?, "/livez not ok after the renewal");
            Ok(())
        },
    )
}

/// The serial of the certificate in `file` and of the one the API server serves on :6443.
fn serials(node: &Node) -> Result<(String, String)> {
    let file = node.sh_ok("openssl x509 -noout -serial -in /etc/kubernetes/pki/apiserver.crt")?;
    let served = node.sh(
        "openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 -noout -serial",
    )?;
    Ok((file.trim().to_string(), served.stdout.trim().to_string()))
}

/// A container of `agent status -o json`.
fn container<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["pods"].as_array()?.iter().find_map(|p| {
        p["containers"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
    })
}

/// A container's `file_restarts` from `agent status -o json`.
fn file_restarts(status: &Value, name: &str) -> Option<u64> {
    container(status, name).and_then(|c| c["file_restarts"].as_u64())
}

/// `certs renew apiserver` under the agent: it says the agent restarts kube-apiserver, and the
/// agent restarts exactly that container (a new process serving the new certificate), not
/// etcd, the controller-manager or the scheduler; the API answers again.
fn certs_renew_restarts_only_the_api_server(node: &Node) -> Result<()> {
    step(
        "certs renew apiserver: the agent restarts kube-apiserver only, which serves the new certificate",
        || {
            // Nothing was restarted for files so far: not during init, not after the agent's
            // restart (adoption), not the kubelet or kube-proxy.
            let status = node.agent_status_json()?;
            let spurious: Vec<&Value> = status["pods"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|p| p["containers"].as_array().into_iter().flatten())
                .filter(|c| c["file_restarts"].as_u64() != Some(0))
                .collect();
            ensure!(
                spurious.is_empty(),
                "restarted for files before any renewal: {spurious:?}"
            );
            let before = agent_pids(node)?;
            let (old_serial, served) = serials(node)?;
            ensure!(
                old_serial == served,
                "before: file {old_serial}, served {served}"
            );
            let out = node.kubeboot_ok(&["certs", "renew", "apiserver"])?;
            for want in [
                "certificate for serving the Kubernetes API renewed",
                "The kubeboot agent restarts kube-apiserver, which uses the renewed files",
            ] {
                ensure!(out.contains(want), "renew output lacks {want:?}:\n{out}");
            }
            let (new_serial, _) = serials(node)?;
            ensure!(
                new_serial != old_serial,
                "the serial did not change: {new_serial}"
            );
            wait_until(
                "a new kube-apiserver serving the new certificate, /livez ok",
                Duration::from_secs(120),
                Duration::from_millis(500),
                || {
                    let pids = agent_pids(node)?;
                    Ok(pids
                        .get("kube-apiserver")
                        .is_some_and(|p| Some(p) != before.get("kube-apiserver"))
                        && serials(node)?.1 == new_serial
                        && livez_ok(node)?)
                },
            )?;
            let status = node.agent_status_json()?;
            ensure!(
                file_restarts(&status, "kube-apiserver") == Some(1),
                "the restart is not counted: {status}"
            );
            let after = agent_pids(node)?;
            ensure!(
                after.get("etcd") == before.get("etcd"),
                "etcd was restarted too: {before:?} -> {after:?}"
            );
            // The agent restarted neither of these. They may exit on their own (leader election
            // gives up after 10 s without the API, and the API server needs a few seconds to
            // start): such a restart is theirs, never a SIGTERM for changed files.
            for c in ["etcd", "kube-controller-manager", "kube-scheduler"] {
                let by_agent = container(&status, c).is_some_and(|c| {
                    c["last_exit_message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("restarted:"))
                });
                ensure!(
                    file_restarts(&status, c) == Some(0) && !by_agent,
                    "the agent restarted {c} too: {status}"
                );
                if after.get(c) != before.get(c) {
                    eprintln!("note: {c} restarted on its own while the API server restarted");
                }
            }
            let text = node.kubeboot_ok(&["agent", "status"])?;
            ensure!(
                text.contains(
                    "kube-apiserver: restarted by the agent 1 time(s) because files it uses changed"
                ) && text.contains("/etc/kubernetes/pki/apiserver.crt"),
                "agent status does not say why:\n{text}"
            );
            Ok(())
        },
    )
}

/// `upgrade plan` and `upgrade diff` against the TEST BUILD v1.20.3-test.0 (scripts/setup.sh,
/// KUBEBOOT_BIN_DIR_NEXT) and etcd 3.5.16 (KUBEBOOT_ETCD_NEXT).
fn upgrade_plan_and_diff(node: &Node, bin: &str) -> Result<()> {
    let Some((next, etcd_next)) = next_bin_dirs()? else {
        eprintln!(
            "==> SKIPPED the upgrade plan/diff steps: KUBEBOOT_BIN_DIR_NEXT is not set (scripts/setup.sh writes it with the test build v1.20.3-test.0)"
        );
        return Ok(());
    };
    let next = next.to_string_lossy().to_string();
    let etcd_next = etcd_next.to_string_lossy().to_string();
    let before = upgrade_state(node)?;

    step(
        "upgrade plan: the test build on disk is blocked without --allow-experimental-upgrades",
        || {
            let out = node.kubeboot_ok(&["upgrade", "plan", "--bin-dir", &next])?;
            for want in [
                "[upgrade/versions] Cluster version: v1.20.2",
                "The upgrade to v1.20.3-test.0 cannot be applied:",
                "v1.20.3-test.0 is a pre-release (an experimental version); pass --allow-experimental-upgrades",
            ] {
                ensure!(out.contains(want), "plan lacks {want:?}:\n{out}");
            }
            ensure!(
                !out.contains("You can now apply"),
                "offered without the flag:\n{out}"
            );
            Ok(())
        },
    )?;

    step(
        "upgrade plan --allow-experimental-upgrades lists the test build as available",
        || {
            let out = node.kubeboot_ok(&[
                "upgrade",
                "plan",
                "--bin-dir",
                &next,
                "--allow-experimental-upgrades",
            ])?;
            let row = |name: &str, current: &str| {
                out.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.first() == Some(&name) && f.ends_with(&[current, "v1.20.3-test.0"])
                })
            };
            for c in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                ensure!(
                    row(c, "v1.20.2"),
                    "no {c} v1.20.2 -> v1.20.3-test.0 row:\n{out}"
                );
            }
            ensure!(
                out.lines()
                    .any(|l| l.starts_with("kubelet") && l.contains("1 x v1.20.2")),
                "no kubelet row:\n{out}"
            );
            ensure!(
                out.contains(
                    "\tkubeboot upgrade apply v1.20.3-test.0 --allow-experimental-upgrades"
                ),
                "no apply command:\n{out}"
            );
            ensure!(
                out.contains("Certificates: the first to expire is"),
                "{out}"
            );
            Ok(())
        },
    )?;

    step(
        "upgrade plan -o json with etcd 3.5.16 on disk: a minor etcd step and its point of no return",
        || {
            let out = node.kubeboot_ok(&[
                "upgrade",
                "plan",
                "--bin-dir",
                &etcd_next,
                "--bin-dir",
                &next,
                "--allow-experimental-upgrades",
                "-o",
                "json",
            ])?;
            let json: Value = serde_json::from_str(&out)
                .with_context(|| format!("plan -o json is not JSON:\n{out}"))?;
            let plan = &json["plan"];
            ensure!(plan["target"] == "v1.20.3-test.0", "{plan}");
            ensure!(plan["upgrade_available"] == true, "{plan}");
            ensure!(plan["etcd"]["current"] == "v3.4.23", "{plan}");
            ensure!(plan["etcd"]["target"] == "v3.5.16", "{plan}");
            ensure!(plan["etcd"]["step"] == "minor", "{plan}");
            ensure!(
                plan["rollback"].as_array().is_some_and(|l| l
                    .iter()
                    .any(|s| s.as_str().is_some_and(|s| s.contains("point of no return")))),
                "{plan}"
            );
            ensure!(
                json["observed"]["api_servers"][0]["version"]["Ok"] == "v1.20.2",
                "{}",
                json["observed"]
            );
            Ok(())
        },
    )?;

    step(
        "upgrade diff shows the image changes of the test build",
        || {
            let out =
                node.kubeboot_ok(&["upgrade", "diff", "v1.20.3-test.0", "--bin-dir", &next])?;
            for c in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            ] {
                for want in [
                    format!("--- /etc/kubernetes/manifests/{c}.yaml\n+++ new manifest\n"),
                    format!("\n-    image: k8s.gcr.io/{c}:v1.20.2\n"),
                    format!("\n+    image: k8s.gcr.io/{c}:v1.20.3-test.0\n"),
                ] {
                    ensure!(out.contains(&want), "diff lacks {want:?}:\n{out}");
                }
            }
            let with_etcd = node.kubeboot_ok(&[
                "upgrade",
                "diff",
                "v1.20.3-test.0",
                "--bin-dir",
                &etcd_next,
                "--bin-dir",
                &next,
                "-c",
                "0",
            ])?;
            ensure!(
                with_etcd.contains("--- /etc/kubernetes/manifests/etcd.yaml\n+++ new manifest\n")
                    && with_etcd.contains("\n+    image: k8s.gcr.io/etcd:3.5.16-0\n"),
                "diff lacks the etcd image change:\n{with_etcd}"
            );
            Ok(())
        },
    )?;

    step(
        "upgrade plan/diff refuse bad input clearly and change nothing",
        || {
            let scratch = tests::scratch_bin_dirs(node, bin, &next)?;
            let result = (|| {
                let empty = format!("{scratch}/empty");
                refused(
                    node,
                    &[
                        "upgrade",
                        "plan",
                        "v1.20.3-test.0",
                        "--allow-experimental-upgrades",
                        "--bin-dir",
                        &empty,
                    ],
                    &[
                        "the binaries of v1.20.3-test.0 are not on disk: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet not found in --bin-dir",
                        &empty,
                    ],
                    &before,
                )?;
                refused(
                    node,
                    &["upgrade", "plan", "v1.22.0", "--bin-dir", &next],
                    &[
                        "upgrading from v1.20.2 to v1.22.0 skips a minor version",
                        "upgrade to the latest v1.21.x first",
                    ],
                    &before,
                )?;
                refused(
                    node,
                    &["upgrade", "diff", "v1.22.0", "--bin-dir", &next],
                    &["skips a minor version"],
                    &before,
                )?;
                let mixed = format!("{scratch}/mixed");
                refused(
                    node,
                    &[
                        "upgrade",
                        "plan",
                        "v1.20.3-test.0",
                        "--allow-experimental-upgrades",
                        "--bin-dir",
                        &mixed,
                    ],
                    &[&format!(
                        "{mixed}/kube-scheduler --version says v1.20.2, not v1.20.3-test.0"
                    )],
                    &before,
                )?;
                Ok(())
            })();
            node.sh_ok(&format!("rm -rf {scratch}"))?;
            result
        },
    )
}
