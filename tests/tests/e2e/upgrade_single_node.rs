//! Scenario: `kubeboot upgrade apply` on a single-node cluster from v1.20.2 / etcd 3.4 to the
//! TEST BUILD v1.20.3-test.0 with etcd 3.5.16 (the etcd version through `etcd.local.imageTag`
//! in `--config`, as kubeadm takes it), health-gated and rolled back:
//! - bad input to `upgrade apply` (no binaries in --bin-dir, a skipped minor, a downgrade of
//!   two minors, a pre-release without `--allow-experimental-upgrades`, a kube-scheduler of
//!   another version): refused naming the problem and the fix, exit 1, and nothing changed
//!   (files, the kubelet's config, no journal or backup, the agent not restarted);
//! - a new kube-apiserver that exits 1, and one whose probe never passes: the upgrade fails
//!   naming the component (with its exit code and last log lines), and the node is back at
//!   v1.20.2 with etcd 3.4 and every object created before;
//! - an etcd 3.5 that runs on the node's data (and so migrates it) but never becomes
//!   healthy: the node is back with etcd 3.4 on the data copied before, which etcd 3.4 could
//!   not run once 3.5 had raised its cluster version; and the same upgrade again with its
//!   rollback killed (strace) inside the rename that sets the failed data aside: the same
//!   command again finishes the rollback, and the data directory holds etcd 3.4's data only;
//! - the real upgrade, killed over and over and each time run again: killed inside writes by
//!   `strace -e inject=<syscall>:signal=KILL` (the rename committing the journal's first
//!   write, the agent's restart between the old agent's stop and the new one's start, the
//!   rename of a renewed certificate whose key is renewed already, the rename of a new
//!   manifest, of the journal after etcd's data copy and of the kubelet's own manifest), and
//!   with `kill -9` while it waits for the new kube-apiserver and while etcd is stopped for
//!   its data copy: each run resumes with the first run's backups, starts the agent the kill
//!   left stopped, puts back the torn key and etcd's manifest, removes the temporary files the
//!   kills left, and the last one finishes; every
//!   component, the kubelet and kube-proxy report the test build, etcd 3.5.16 serves the data
//!   created before, kubeadm-config names the new version, the backups and etcd snapshot are
//!   under /etc/kubernetes/tmp; containerd, which no upgrade changes, kept running through
//!   every restart of the agent (the new agent adopted it);
//! - `kubeboot etcd snapshot restore` of a snapshot an upgrade took under v1.20.2: the data,
//!   the static Pod manifests the snapshot kept and so the API server and kubelet are back at
//!   v1.20.2; an object made before the snapshot is there, one made after it is gone.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tests::{
    CmdOutput, Node, assert_upgrade_refused, bin_dir, next_bin_dirs, require_root, step,
    upgrade_state, wait_until,
};

const TARGET: &str = "v1.20.3-test.0";

/// A directory of the host that the kubeboot trust check accepts (root-owned, 0755, no
/// writable ancestor): the stand-in binaries go there.
fn trusted_dir(name: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// A bin dir with the test build's binaries (symlinks), `replaced` written as a script.
pub fn bin_dir_with(name: &str, next: &Path, replaced: &str, script: &str) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = trusted_dir(name)?;
    for entry in std::fs::read_dir(next)? {
        let entry = entry?;
        let file = entry.file_name();
        if file.to_string_lossy() != replaced {
            let target = std::fs::canonicalize(entry.path())?;
            std::os::unix::fs::symlink(target, dir.join(&file))?;
        }
    }
    let path = dir.join(replaced);
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir.display().to_string())
}

fn containerd_pid(node: &Node) -> Result<u64> {
    let status = node.agent_status_json()?;
    status["pods"]
        .as_array()
        .and_then(|ps| {
            ps.iter().find(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("containerd-"))
            })
        })
        .and_then(|p| p["containers"][0]["pid"].as_u64())
        .context("no running containerd pod in the agent's status")
}

pub(crate) fn api_version(node: &Node) -> Result<String> {
    let v = node.kubectl_json(&["version", "-o", "json"])?;
    Ok(v["serverVersion"]["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn etcd_version(node: &Node) -> Result<String> {
    let versions = crate::upgrade_multi::etcd_versions(node, &[node])?;
    Ok(versions
        .into_iter()
        .next()
        .map(|(server, _)| server)
        .unwrap_or_default())
}

/// The cluster's ClusterConfiguration, as kubeadm-config holds it.
pub(crate) fn cluster_configuration(node: &Node) -> Result<String> {
    node.kubectl_ok(&[
        "-n",
        "kube-system",
        "get",
        "configmap",
        "kubeadm-config",
        "-o",
        "jsonpath={.data.ClusterConfiguration}",
    ])
}

/// Writes to `path` in `node` the cluster's ClusterConfiguration with etcd 3.5.16 as the
/// target (`etcd.local.imageTag`, as kubeadm takes it).
pub fn write_etcd_next_config(node: &Node, path: &str) -> Result<()> {
    let current = cluster_configuration(node)?;
    ensure!(
        current.contains("  local:\n"),
        "no local etcd in:\n{current}"
    );
    let text = current.replacen("  local:\n", "  local:\n    imageTag: 3.5.16-0\n", 1);
    node.write_file(path, &text)
}

pub(crate) fn manifest_image(node: &Node, component: &str) -> Result<String> {
    let text = node.read_file(&format!("/etc/kubernetes/manifests/{component}.yaml"))?;
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .unwrap_or_default()
        .to_string())
}

/// The ConfigMap made before the first upgrade is still there, with its data.
fn holds_the_object_made_before(node: &Node) -> Result<()> {
    let cm = node.kubectl_ok(&[
        "get",
        "configmap",
        "kb-before-upgrade",
        "-o",
        "jsonpath={.data.k}",
    ])?;
    ensure!(
        cm.trim() == "v",
        "the object made before the upgrade is gone: {cm:?}"
    );
    Ok(())
}

/// Waits until the node's kubelet reports `version` in its Node status.
fn kubelet_reports(node: &Node, version: &str) -> Result<()> {
    wait_until(
        &format!("the kubelet reports {version}"),
        Duration::from_secs(90),
        Duration::from_secs(1),
        || {
            Ok(node
                .kubectl_ok(&[
                    "get",
                    "nodes",
                    "-o",
                    "jsonpath={.items[0].status.nodeInfo.kubeletVersion}",
                ])
                .is_ok_and(|v| v.trim() == version))
        },
    )
}

/// The node is at v1.20.2 with etcd 3.4 and still holds the object made before.
fn back_at_the_old_version(node: &Node) -> Result<()> {
    wait_until(
        "the API server answers at v1.20.2",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || Ok(api_version(node).is_ok_and(|v| v == "v1.20.2")),
    )?;
    ensure!(
        etcd_version(node)?.starts_with("3.4."),
        "etcd is {}",
        etcd_version(node)?
    );
    ensure!(manifest_image(node, "kube-apiserver")?.ends_with(":v1.20.2"));
    ensure!(manifest_image(node, "etcd")?.contains(":3.4."));
    holds_the_object_made_before(node)?;
    ensure!(
        !node.path_exists("/etc/kubernetes/tmp/kubeboot-upgrade.json")?,
        "the journal is left after the rollback"
    );
    Ok(())
}

#[test]
#[ignore = "needs root and scripts/setup.sh (real Kubernetes binaries, etcd 3.5.16)"]
fn upgrade_single_node() -> Result<()> {
    require_root()?;
    let Some((next, etcd_next)) = next_bin_dirs()? else {
        eprintln!("==> SKIPPED: KUBEBOOT_BIN_DIR_NEXT is not set (scripts/setup.sh writes it)");
        return Ok(());
    };
    let bin = bin_dir()?.to_string_lossy().to_string();
    let etcd_next_s = etcd_next.display().to_string();
    let next_s = next.display().to_string();
    let node = step("create node", || Node::allocate("upgrade-1"))?;
    step("kubeboot init at v1.20.2", || {
        let args = crate::init_single_node::init_args_for(&node, &bin, None)?;
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        node.kubeboot_ok(&argv)?;
        wait_until(
            "the node Ready",
            Duration::from_secs(120),
            Duration::from_secs(1),
            || {
                Ok(node
                    .kubectl_ok(&[
                        "get",
                        "nodes",
                        "-o",
                        "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
                    ])
                    .is_ok_and(|s| s.trim() == "True"))
            },
        )?;
        node.kubectl_ok(&[
            "create",
            "configmap",
            "kb-before-upgrade",
            "--from-literal=k=v",
        ])?;
        Ok(())
    })?;
    // containerd's pid: the upgrade restarts the agent (from the new --bin-dirs), which adopts
    // the pods the upgrade does not change.
    let containerd_before = step("containerd's pid before the upgrades", || {
        containerd_pid(&node)
    })?;
    // The target configuration: the cluster's, with etcd 3.5.16 as kubeadm takes it.
    let config = step(
        "write the target ClusterConfiguration (etcd imageTag 3.5.16-0)",
        || {
            let path = "/etc/kubernetes/tmp-e2e-upgrade.yaml".to_string();
            write_etcd_next_config(&node, &path)?;
            Ok(path)
        },
    )?;
    step(
        "upgrade apply refuses bad input clearly and changes nothing",
        || {
            let scratch = tests::scratch_bin_dirs(&node, &bin, &next_s)?;
            let result = (|| {
                let before = upgrade_state(&node)?;
                let (empty, mixed) = (format!("{scratch}/empty"), format!("{scratch}/mixed"));
                let cases: [(&[&str], &[&str]); 5] = [
                    (
                        &[TARGET, "--allow-experimental-upgrades", "--bin-dir", &empty],
                        &[
                            "the binaries of v1.20.3-test.0 are not on disk: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubelet not found in --bin-dir",
                            &empty,
                        ],
                    ),
                    (
                        &["v1.22.0", "--bin-dir", &next_s],
                        &[
                            "upgrading from v1.20.2 to v1.22.0 skips a minor version",
                            "upgrade to the latest v1.21.x first",
                        ],
                    ),
                    (
                        &["v1.18.5", "--bin-dir", &next_s],
                        &[
                            "downgrading from v1.20.2 to v1.18.5 goes down more than one minor version",
                            "downgrade to v1.19.x first",
                        ],
                    ),
                    (
                        &[TARGET, "--bin-dir", &next_s],
                        &[
                            "v1.20.3-test.0 is a pre-release",
                            "pass --allow-experimental-upgrades",
                        ],
                    ),
                    (
                        &[TARGET, "--allow-experimental-upgrades", "--bin-dir", &mixed],
                        &[&format!(
                            "{mixed}/kube-scheduler --version says v1.20.2, not v1.20.3-test.0"
                        )],
                    ),
                ];
                for (args, wants) in cases {
                    let mut argv = vec!["upgrade", "apply", "-y"];
                    argv.extend_from_slice(args);
                    let mut wants = wants.to_vec();
                    wants.push("nothing was changed");
                    assert_upgrade_refused(&node, &argv, &wants, &before)?;
                }
                Ok(())
            })();
            node.sh_ok(&format!("rm -rf {scratch}"))?;
            result
        },
    )?;

    let apply = |bin_dirs: &[&str], timeout: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "upgrade",
            "apply",
            TARGET,
            "--allow-experimental-upgrades",
            "-y",
            "--config",
            &config,
            "--timeout",
            timeout,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for d in bin_dirs {
            a.push("--bin-dir".into());
            a.push((*d).to_string());
        }
        a
    };
    let run = |args: &[String]| node.kubeboot(&args.iter().map(String::as_str).collect::<Vec<_>>());

    step(
        "a new kube-apiserver that exits 1: rolled back to v1.20.2 and etcd 3.4",
        || {
            let dir = bin_dir_with(
                "kb-upgrade-exit1",
                &next,
                "kube-apiserver",
                &format!(
                    "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Kubernetes {TARGET}'; exit 0; fi\necho 'stand-in kube-apiserver: refusing to start' >&2\nexit 1\n"
                ),
            )?;
            let out = run(&apply(&[&dir, &etcd_next_s], "90s"))?;
            ensure!(!out.success(), "the upgrade succeeded:\n{out}");
            for want in [
                "kube-apiserver did not become healthy",
                "exit code 1",
                "stand-in kube-apiserver: refusing to start",
                "was rolled back",
            ] {
                ensure!(
                    out.stderr.contains(want) || out.stdout.contains(want),
                    "no {want:?} in:\n{out}"
                );
            }
            ensure!(out.stdout.contains("[upgrade/rollback]"), "{out}");
            back_at_the_old_version(&node)
        },
    )?;

    step(
        "a new kube-apiserver whose probe never passes: rolled back",
        || {
            let dir = bin_dir_with(
                "kb-upgrade-noprobe",
                &next,
                "kube-apiserver",
                &format!(
                    "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Kubernetes {TARGET}'; exit 0; fi\necho 'stand-in kube-apiserver: never listening'\nexec sleep 3600\n"
                ),
            )?;
            let out = run(&apply(&[&dir, &etcd_next_s], "30s"))?;
            ensure!(!out.success(), "the upgrade succeeded:\n{out}");
            ensure!(
                out.stderr
                    .contains("kube-apiserver did not become healthy: not healthy within 30s"),
                "{out}"
            );
            back_at_the_old_version(&node)
        },
    )?;

    // Runs `kubeboot <args>` (an upgrade) under strace (its main thread only: no -f, so the agent it starts
    // is not traced), which kills it with SIGKILL on entering the `when`-th `syscall` (of
    // those on `path`, when given); strace's own trace must show that the call killed is
    // `killed` (so a change in the number of calls before it fails here, not silently
    // elsewhere). Returns the run's output.
    let trace = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-strace", node.name()));
    let trace_s = trace.display().to_string();
    let strace_kill_with = |args: &[String],
                            syscall: &str,
                            path: Option<&str>,
                            when: u32,
                            killed: &str|
     -> Result<CmdOutput> {
        let _ = std::fs::remove_file(&trace);
        let exe = tests::kubeboot_exe()?.display().to_string();
        let inject = format!("inject={syscall}:signal=KILL:when={when}");
        let filter = format!("trace={syscall}");
        let mut argv: Vec<&str> = vec!["/usr/bin/strace", "-o", &trace_s];
        if let Some(p) = path {
            argv.extend(["-P", p]);
        }
        argv.extend(["-e", &filter, "-e", &inject, &exe]);
        argv.extend(args.iter().map(String::as_str));
        let out = node.exec(&argv)?;
        let traced = std::fs::read_to_string(&trace).unwrap_or_default();
        let last = traced
            .lines()
            .rev()
            .find(|l| l.starts_with(&format!("{syscall}(")))
            .unwrap_or_default();
        ensure!(
            !out.success()
                && traced.contains("+++ killed by SIGKILL +++")
                && last.contains(killed)
                && last.ends_with("= ?"),
            "strace did not kill the upgrade at the {syscall} of {killed:?} (when={when}); its {syscall} calls:\n{traced}\n{out}"
        );
        Ok(out)
    };
    // Every one of `wants` is in `out`.
    let said = |out: &str, wants: &[&str]| -> Result<()> {
        for want in wants {
            ensure!(out.contains(want), "no {want:?} in:\n{out}");
        }
        Ok(())
    };

    // An etcd 3.5 that runs on the node's data (raising its cluster version to 3.5), on ports
    // nobody probes, for 10 seconds, then exits 1.
    let real = etcd_next.join("etcd");
    let sick_dir = bin_dir_with(
        "kb-upgrade-etcd-sick",
        &next,
        "etcd",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\n{real} $(echo \"$@\" | sed -e 's/:2379/:12379/g' -e 's/:2380/:12380/g' -e 's/:2381/:12381/g') &\nsleep 10\nkill $!\nwait $!\necho 'stand-in etcd: exiting' >&2\nexit 1\n",
            real = real.display()
        ),
    )?;
    let sick = apply(&[&sick_dir, &etcd_next_s], "150s");
    step(
        "an etcd 3.5 that migrates the data but is never healthy: etcd 3.4's data comes back",
        || {
            let out = run(&sick)?;
            ensure!(!out.success(), "the upgrade succeeded:\n{out}");
            said(
                &out.stdout,
                &[
                    "Component \"kube-apiserver\" upgraded successfully!",
                    "Copied etcd's data to",
                    "Restored etcd's data from",
                ],
            )?;
            ensure!(
                out.stderr
                    .contains("etcd did not become healthy: it keeps exiting")
                    && out.stderr.contains("exit code 1"),
                "{out}"
            );
            back_at_the_old_version(&node)
        },
    )?;

    step(
        "the same failing upgrade, its rollback killed inside the rename that sets etcd 3.5's data aside; the same command again finishes the rollback",
        || {
            // The rollback's first rename of the data directory's `member`: into the directory
            // of the failed data, the copy of etcd 3.4's data made beside it but not yet moved in.
            let out = strace_kill_with(
                &sick,
                "rename",
                Some("/var/lib/etcd/member"),
                1,
                "rename(\"/var/lib/etcd/member\", \"/var/lib/etcd/.failed-",
            )?;
            said(
                &out.stdout,
                &[
                    "Copied etcd's data to",
                    "etcd did not become healthy: rolling back",
                    "Rolling back the upgrade to",
                ],
            )?;
            ensure!(
                !out.stdout.contains("Restored etcd's data from"),
                "the restore finished before the kill:\n{out}"
            );
            ensure!(
                node.path_exists("/etc/kubernetes/tmp/kubeboot-upgrade.json")?,
                "no journal after the kill"
            );
            let out = run(&sick)?;
            ensure!(!out.success(), "the upgrade succeeded:\n{out}");
            said(
                &out.stdout,
                &[
                    "Finishing the rollback of the upgrade to",
                    "Restored etcd's data from",
                    "The node is back at its previous version",
                ],
            )?;
            ensure!(out.stderr.contains("was rolled back"), "{out}");
            // Nothing of the killed restore is left in the data directory.
            let left = node.sh_ok("ls -A /var/lib/etcd")?;
            ensure!(
                left.trim() == "member",
                "etcd's data directory holds:\n{left}"
            );
            back_at_the_old_version(&node)
        },
    )?;

    // Runs the real upgrade in the background and kills it with SIGKILL once its output
    // shows `marker`; the journal must be there after. Returns the run's output.
    let args = apply(&[&next_s, &etcd_next_s], "180s");
    let strace_kill = |syscall: &str, path: Option<&str>, when: u32, killed: &str| {
        strace_kill_with(&args, syscall, path, when, killed)
    };
    let kill_at = |marker: &str| -> Result<String> {
        let log =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-upgrade.log", node.name()));
        let _ = std::fs::remove_file(&log);
        let exe = tests::kubeboot_exe()?.display().to_string();
        let mut argv: Vec<&str> = vec![&exe];
        argv.extend(args.iter().map(String::as_str));
        let mut child = node.spawn(&argv, &log)?;
        let seen = wait_until(
            &format!("{marker:?} in the upgrade's output"),
            Duration::from_secs(240),
            Duration::from_millis(100),
            || {
                Ok(std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains(marker))
            },
        );
        for p in node.pids_named("kubeboot")? {
            let cmdline = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            // `kubeboot upgrade apply ...`, not the agent (whose node name has "upgrade" in it).
            if cmdline.split('\0').any(|a| a == "apply") {
                node.kill9(p)?;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        seen.with_context(|| text.clone())?;
        ensure!(
            node.path_exists("/etc/kubernetes/tmp/kubeboot-upgrade.json")?,
            "no journal after the kill"
        );
        Ok(text)
    };
    // The temporary files of the atomic writes the kills cut short.
    let temps = || {
        node.sh_ok(
            "find /etc/kubernetes /var/lib/kubeboot -name '.*.tmp' -o -name '.*.partial'; find /var/lib/kubelet -maxdepth 1 -name '.*.tmp'",
        )
    };

    step(
        "upgrade apply, killed inside the rename that commits its journal's first write",
        || {
            // 7 files and 7 certificate pairs backed up, 3 objects, the backup directory
            // renamed complete, then the journal.
            strace_kill(
                "rename",
                None,
                26,
                ", \"/etc/kubernetes/tmp/kubeboot-upgrade.json\")",
            )?;
            ensure!(!node.path_exists("/etc/kubernetes/tmp/kubeboot-upgrade.json")?);
            ensure!(manifest_image(&node, "kube-apiserver")?.ends_with(":v1.20.2"));
            let left = temps()?;
            ensure!(
                left.contains("/etc/kubernetes/tmp/.kubeboot-upgrade.json."),
                "{left}"
            );
            Ok(())
        },
    )?;

    step(
        "the same command again, killed while it restarts the agent (the old one stopped, the new one not started)",
        || {
            let out = strace_kill(
                "unlink",
                Some("/run/kubeboot/agent.pid"),
                1,
                "unlink(\"/run/kubeboot/agent.pid\")",
            )?;
            said(&out.stdout, &["Removed 1 temporary file(s)"])?;
            ensure!(node.path_exists("/etc/kubernetes/tmp/kubeboot-upgrade.json")?);
            let status = node.kubeboot(&["agent", "status"])?;
            ensure!(!status.success(), "an agent still answers:\n{status}");
            Ok(())
        },
    )?;

    step(
        "the same command again starts the agent; killed between the renewed apiserver key and its certificate",
        || {
            // The node record, the etcd snapshot and its metadata, apiserver.key, then
            // apiserver.crt.
            let out = strace_kill(
                "rename",
                None,
                5,
                ", \"/etc/kubernetes/pki/apiserver.crt\")",
            )?;
            said(
                &out.stdout,
                &["Starting the kubeboot agent, which the interrupted run had stopped"],
            )?;
            node.kubeboot_ok(&["agent", "status"])?;
            // The agent restarts kube-apiserver once its changed key settles: on the torn pair
            // it cannot serve. A run that did not repair the pair would wait for an API that
            // never answers, then fail to roll back (the old manifest, the same torn pair).
            wait_until(
                "kube-apiserver, restarted on the torn pair, stops answering",
                Duration::from_secs(60),
                Duration::from_millis(500),
                || Ok(!node.kubectl(&["get", "--raw", "/readyz"])?.success()),
            )
        },
    )?;

    step(
        "the same command again puts the torn key back; killed with -9 while it waits for the new kube-apiserver",
        || {
            let out =
                kill_at("Moved new manifest to \"/etc/kubernetes/manifests/kube-apiserver.yaml\"")?;
            said(
                &out,
                &[
                    "Put back the key \"/etc/kubernetes/pki/apiserver.key\"",
                    "Removed 1 temporary file(s)",
                    "Resuming the upgrade to v1.20.3-test.0",
                ],
            )
        },
    )?;

    step(
        "the same command again, killed inside the rename of the new kube-controller-manager manifest",
        || {
            // controller-manager.conf renewed, then the manifest.
            strace_kill(
                "rename",
                None,
                2,
                ", \"/etc/kubernetes/manifests/kube-controller-manager.yaml\")",
            )?;
            ensure!(manifest_image(&node, "kube-controller-manager")?.ends_with(":v1.20.2"));
            Ok(())
        },
    )?;

    step(
        "the same command again, killed with -9 while etcd is stopped for its copy",
        || {
            let out = kill_at("Stopping etcd to copy its data directory")?;
            said(&out, &["Removed 1 temporary file(s)"])
        },
    )?;

    step(
        "the same command again puts etcd back, copies its data; killed inside the journal's rename after the copy",
        || {
            // etcd's manifest put back, then the journal naming the copy.
            let out = strace_kill(
                "rename",
                None,
                2,
                ", \"/etc/kubernetes/tmp/kubeboot-upgrade.json\")",
            )?;
            said(
                &out.stdout,
                &[
                    "Put back \"/etc/kubernetes/manifests/etcd.yaml\", which the interrupted run had removed",
                    "Stopping etcd to copy its data directory",
                ],
            )
        },
    )?;

    step(
        "the same command again: etcd 3.5 runs; killed inside the rename of the kubelet's new manifest",
        || {
            // etcd's manifest put back, the journal naming the copy, 3 etcd pairs renewed,
            // etcd's manifest, the journal past the point of no return, admin.conf, then the
            // kubelet's manifest.
            let out = strace_kill(
                "rename",
                None,
                12,
                ", \"/etc/kubernetes/manifests/kubelet.yaml\")",
            )?;
            said(
                &out.stdout,
                &[
                    "Put back \"/etc/kubernetes/manifests/etcd.yaml\", which the interrupted run had removed",
                    "Copied etcd's data to",
                    "Component \"etcd\" upgraded successfully!",
                ],
            )
        },
    )?;

    step(
        "the same command again: the upgrade resumes and finishes, no temporary file left",
        || {
            let out = run(&args)?;
            ensure!(out.success(), "the resumed upgrade failed:\n{out}");
            said(
                &out.stdout,
                &[
                    "Resuming the upgrade to v1.20.3-test.0",
                    "Removed 1 temporary file(s)",
                    "SUCCESS!",
                ],
            )?;
            let left = temps()?;
            ensure!(left.trim().is_empty(), "temporary files left:\n{left}");
            Ok(())
        },
    )?;

    step(
        "every component runs the test build, etcd 3.5.16 serves the old data",
        || {
            ensure!(
                api_version(&node)? == TARGET,
                "API server at {}",
                api_version(&node)?
            );
            ensure!(
                etcd_version(&node)? == "3.5.16",
                "etcd at {}",
                etcd_version(&node)?
            );
            for c in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kube-proxy",
            ] {
                let image = manifest_image(&node, c)?;
                ensure!(image.ends_with(&format!(":{TARGET}")), "{c}: {image}");
            }
            kubelet_reports(&node, TARGET)?;
            holds_the_object_made_before(&node)?;
            let cfg = cluster_configuration(&node)?;
            ensure!(
                cfg.contains(&format!("kubernetesVersion: {TARGET}")),
                "{cfg}"
            );
            let backups =
                node.sh_ok("ls -d /etc/kubernetes/tmp/kubeboot-backup-*/etcd-snapshot.db")?;
            ensure!(!backups.trim().is_empty());
            ensure!(!node.path_exists("/etc/kubernetes/tmp/kubeboot-upgrade.json")?);
            let pods = node.kubectl_ok(&["-n", "kube-system", "get", "pods", "-o", "name"])?;
            ensure!(pods.contains("kube-apiserver"), "{pods}");
            Ok(())
        },
    )?;

    step(
        "containerd kept running through every agent restart (adopted)",
        || {
            let now = containerd_pid(&node)?;
            ensure!(
                now == containerd_before,
                "containerd restarted: {containerd_before} -> {now}"
            );
            Ok(())
        },
    )?;

    step("upgrade apply again: nothing to do, succeeds", || {
        let out = run(&apply(&[&next_s, &etcd_next_s], "60s"))?;
        ensure!(out.success(), "{out}");
        ensure!(!out.stdout.contains("Moved new manifest"), "{out}");
        Ok(())
    })?;

    step(
        "etcd snapshot restore of a pre-upgrade snapshot brings back v1.20.2, its manifests and its objects",
        || {
            node.kubectl_ok(&[
                "create",
                "configmap",
                "kb-after-upgrade",
                "--from-literal=k=v",
            ])?;
            let snapshot = node.sh_ok(
                "grep -l '\"kubernetesVersion\": \"v1.20.2\"' /etc/kubernetes/tmp/kubeboot-backup-*/etcd-snapshot.db.json | xargs ls -t | head -1",
            )?;
            let snapshot = snapshot.trim().trim_end_matches(".json").to_string();
            ensure!(!snapshot.is_empty(), "no snapshot taken under v1.20.2");
            let out = node.kubeboot(&["etcd", "snapshot", "restore", &snapshot])?;
            ensure!(out.success(), "the restore failed:\n{out}");
            for want in [
                "The snapshot was taken under Kubernetes v1.20.2; this node's control plane runs v1.20.3-test.0",
                "Put back the static Pod manifests of Kubernetes v1.20.2 that the snapshot kept (kube-apiserver.yaml, kube-controller-manager.yaml, kube-scheduler.yaml, kubelet.yaml, kube-proxy.yaml)",
            ] {
                ensure!(out.stdout.contains(want), "no {want:?} in:\n{out}");
            }
            // The old data set aside inside the data directory (a mount point here).
            node.sh_ok("ls -d /var/lib/etcd/pre-restore-*/member")?;
            wait_until(
                "the API server answers at v1.20.2",
                Duration::from_secs(120),
                Duration::from_secs(1),
                || Ok(api_version(&node).is_ok_and(|v| v == "v1.20.2")),
            )?;
            for c in [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
            ] {
                let image = manifest_image(&node, c)?;
                ensure!(image.ends_with(":v1.20.2"), "{c}: {image}");
            }
            let cfg = cluster_configuration(&node)?;
            ensure!(cfg.contains("kubernetesVersion: v1.20.2"), "{cfg}");
            holds_the_object_made_before(&node)?;
            let after = node.kubectl(&["get", "configmap", "kb-after-upgrade"])?;
            ensure!(
                !after.success() && after.stderr.contains("NotFound"),
                "the object made after the snapshot is still there:\n{after}"
            );
            kubelet_reports(&node, "v1.20.2")?;
            Ok(())
        },
    )?;

    node.destroy()
}
