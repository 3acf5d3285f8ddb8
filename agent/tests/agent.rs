//! The agent with real processes in temp directories (see [`common`]).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Node, alive, kill9, pod, wait_until};
use components::names::AGENT_MARKER_ENV;

#[test]
fn starts_logs_and_restarts_after_kill_with_backoff() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep, --x=1", "", ""));
    let c = n.wait_container("running", |c| c.state == "running" && c.ready);
    let shim = c.pid.unwrap();
    assert_eq!(c.restart_count, 0);
    let st = n.status();
    assert_eq!(st.pods.len(), 1);
    assert_eq!(st.pods[0].name, "sched-n1");
    assert_eq!(st.pods[0].phase, "Running");
    let text = st.render_text();
    assert!(
        text.contains("kube-system") && text.contains("sched-n1") && text.contains("1/1"),
        "{text}"
    );

    // The marker is on the shim and on the container; the container runs the args and env.
    let child = n.container_pid(shim);
    let marker = format!("{}/{}/main", n.node_id(), st.pods[0].uid);
    assert_eq!(
        agent::host::process::proc_env_var(shim, AGENT_MARKER_ENV),
        Some(marker.clone())
    );
    assert_eq!(
        agent::host::process::proc_env_var(child, AGENT_MARKER_ENV),
        Some(marker)
    );
    let log = PathBuf::from(c.log_file.clone().unwrap());
    assert!(
        log.ends_with(format!(
            "kube-system_sched-n1_{}/main/0.log",
            st.pods[0].uid
        )),
        "{}",
        log.display()
    );
    let line = wait_until("the log line", || {
        std::fs::read_to_string(&log).ok().filter(|t| !t.is_empty())
    });
    assert!(
        line.ends_with(" stdout F started --x=1 A=hello in /\n"),
        "{line:?}"
    );
    let ts = line.split(' ').next().unwrap();
    assert_eq!(ts.len(), 30, "{ts}");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{ts}"
    );

    // kill -9: restarted at once (first restart), then again after a backoff.
    kill9(child);
    let c = n.wait_container("restart 1", |c| {
        c.restart_count == 1 && c.state == "running"
    });
    assert_eq!(c.last_exit_code, Some(137));
    assert_ne!(c.pid, Some(shim));
    assert!(!alive(shim));
    kill9(n.container_pid(c.pid.unwrap()));
    let c = n.wait_container("restart 2", |c| {
        c.restart_count == 2 && c.state == "running"
    });
    assert!(c.log_file.unwrap().ends_with("/main/2.log"));
    assert!(
        n.cfg
            .pod_log_dir
            .join(format!(
                "kube-system_sched-n1_{}/main/1.log",
                st.pods[0].uid
            ))
            .exists()
    );
}

#[test]
fn crash_loop_reports_exit_code_and_stderr() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("crash", &pod("crash", "exit3", "", ""));
    let c = n.wait_container("two restarts", |c| c.restart_count >= 2);
    assert_eq!(c.last_exit_code, Some(3));
    assert_eq!(c.last_exit_reason.as_deref(), Some("Error"));
    let c = n.wait_container("CrashLoopBackOff", |c| {
        c.reason.as_deref() == Some("CrashLoopBackOff")
    });
    assert!(c.message.unwrap().contains("back-off"));
    let st = n.status();
    let dir = n
        .cfg
        .pod_log_dir
        .join(format!("kube-system_crash-n1_{}/main", st.pods[0].uid));
    // The runs' logs (only the newest two are kept).
    let log: String = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert!(
        log.contains(" stdout F out line\n") && log.contains(" stderr F err line\n"),
        "{log}"
    );
}

#[test]
fn removal_sends_sigterm_then_sigkill_after_grace() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest(
        "stubborn",
        &pod(
            "stubborn",
            "ignore-term",
            "  terminationGracePeriodSeconds: 1\n",
            "",
        ),
    );
    let c = n.wait_container("running", |c| c.state == "running");
    let shim = c.pid.unwrap();
    let child = n.container_pid(shim);
    // Wait for the trap to be installed before removing.
    let log = PathBuf::from(c.log_file.unwrap());
    wait_until("the script to ignore SIGTERM", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("ignoring"))
    });
    std::fs::remove_file(n.manifest("stubborn")).unwrap();
    n.wait_pod("the pod to terminate", |p| {
        (p.phase == "Terminating").then_some(())
    });
    wait_until("the pod to be gone", || {
        n.status().pods.is_empty().then_some(())
    });
    assert!(!alive(shim) && !alive(child));
    assert!(n.marked().is_empty(), "{:?}", n.marked());
    // SIGTERM reached the container first (it trapped it and went on), SIGKILL ended it.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(" stdout F got TERM\n"), "{text}");
    assert!(!n.cfg.state_dir.join("pods").join(&c.name).exists());
}

#[test]
fn changed_manifest_replaces_the_pod() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep, --v=1", "", ""));
    let old = n.wait_pod("v1", |p| {
        p.containers[0].pid.map(|pid| (p.uid.clone(), pid))
    });
    n.write_manifest("sched", &pod("sched", "sleep, --v=2", "", ""));
    let new = n.wait_pod("v2", |p| {
        (p.uid != old.0 && p.containers[0].state == "running").then(|| p.clone())
    });
    assert!(!alive(old.1));
    let st = n.status();
    assert_eq!(st.pods.len(), 1, "{}", st.render_text());
    let log = wait_until("v2 log", || {
        std::fs::read_to_string(new.containers[0].log_file.as_ref().unwrap())
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert!(log.contains("started --v=2"), "{log}");
    assert_eq!(
        n.marked().len(),
        2,
        "one shim and one container: {:?}",
        n.marked()
    );
}

#[test]
fn agent_restart_adopts_without_double_start() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    n.wait_container("running", |c| c.state == "running");
    let before = n.status();
    let shim = before.pods[0].containers[0].pid.unwrap();
    let child = n.container_pid(shim);
    n.stop_agent();
    assert!(alive(shim) && alive(child), "pods survive the agent");
    n.start_agent();
    let c = n.wait_container("adopted", |c| c.state == "running");
    assert_eq!(c.pid, Some(shim));
    assert_eq!(c.restart_count, 0);
    let marked = n.marked();
    assert_eq!(marked.len(), 2, "{marked:?}");
    // Still supervised: a kill restarts it.
    kill9(child);
    let c = n.wait_container("restart after adoption", |c| {
        c.restart_count == 1 && c.state == "running"
    });
    assert_ne!(c.pid, Some(shim));
    assert_eq!(n.marked().len(), 2);
}

#[test]
fn removal_while_the_agent_is_down_stops_the_pod_on_adoption() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest(
        "sched",
        &pod("sched", "sleep", "  terminationGracePeriodSeconds: 2\n", ""),
    );
    let c = n.wait_container("running", |c| c.state == "running");
    n.stop_agent();
    std::fs::remove_file(n.manifest("sched")).unwrap();
    n.start_agent();
    wait_until("the adopted pod to be stopped", || {
        (n.status().pods.is_empty() && !alive(c.pid.unwrap())).then_some(())
    });
    assert!(n.marked().is_empty());
}

#[test]
fn orphans_without_records_are_stopped() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let c = n.wait_container("running", |c| c.state == "running");
    n.stop_agent();
    // Lose the records: the processes are now orphans of this node.
    for e in std::fs::read_dir(n.cfg.state_dir.join("pods")).unwrap() {
        std::fs::remove_dir_all(e.unwrap().path()).unwrap();
    }
    n.start_agent();
    wait_until("the orphan to be stopped", || {
        (!alive(c.pid.unwrap())).then_some(())
    });
    // And the pod is started afresh, once.
    let again = n.wait_container("restarted", |c2| c2.state == "running" && c2.pid != c.pid);
    assert!(alive(again.pid.unwrap()));
    wait_until("only the new pod's processes", || {
        (n.marked().len() == 2).then_some(())
    });
}

#[test]
fn wrong_binary_version_waits_with_a_reason_naming_the_fix() {
    let mut n = Node::new("v1.20.1");
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let m = n.wait_held_back("BinaryVersionMismatch");
    assert!(
        m.contains(&format!(
            "{} is v1.20.1",
            n.bin.path().join("kube-scheduler").display()
        )) && m.contains("wants v1.20.2")
            && m.contains("--bin-dir"),
        "{m}"
    );
}

/// An upgrade puts the new version's directory before the old one: each manifest runs the
/// binary of the version its image names, so the new version runs and a rollback to the old
/// manifest finds the old binary, with no other change.
#[test]
fn each_image_version_runs_the_binary_of_that_version_from_any_bin_dir() {
    let mut n = Node::new("v1.20.2");
    let next = common::trusted_tempdir();
    let old_exe = n.bin.path().join("kube-scheduler");
    let script = std::fs::read_to_string(&old_exe).unwrap();
    common::write_exec(
        &next.path().join("kube-scheduler"),
        &script
            .replace("Kubernetes v1.20.2", "Kubernetes v1.20.3-test.0")
            .replace("echo \"started", "echo \"next started"),
    );
    n.cfg.bin_dirs.insert(0, next.path().to_path_buf());
    n.start_agent();
    let log_of = |c: &agent::status::ContainerStatus| {
        std::fs::read_to_string(c.log_file.as_ref().expect("a log file")).unwrap_or_default()
    };
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let old = n.wait_container("the v1.20.2 pod", |c| c.state == "running");
    wait_until("the old binary's first line", || {
        log_of(&old).contains("started").then_some(())
    });
    assert!(!log_of(&old).contains("next started"), "{}", log_of(&old));
    n.write_manifest(
        "sched",
        &pod("sched", "sleep", "", "").replace(":v1.20.2", ":v1.20.3-test.0"),
    );
    let new = n.wait_container("the v1.20.3-test.0 pod", |c| {
        c.state == "running" && c.pid != old.pid && c.image.ends_with(":v1.20.3-test.0")
    });
    wait_until("the new binary's first line", || {
        log_of(&new).contains("next started").then_some(())
    });
    let status = n.status();
    let held: Vec<_> = status.pods.iter().filter(|p| p.reason.is_some()).collect();
    assert!(held.is_empty(), "{held:?}");
    // Back to the old manifest (a rollback): the old binary, from the second directory.
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let back = n.wait_container("the v1.20.2 pod again", |c| {
        c.state == "running" && c.pid != new.pid && c.image.ends_with(":v1.20.2")
    });
    wait_until("the old binary's first line", || {
        log_of(&back).contains("started").then_some(())
    });
    assert!(!log_of(&back).contains("next started"), "{}", log_of(&back));
    // Neither directory has v1.20.4: the reason names both binaries found and their versions.
    n.write_manifest(
        "sched",
        &pod("sched", "sleep", "", "").replace(":v1.20.2", ":v1.20.4"),
    );
    let m = n.wait_held_back("BinaryVersionMismatch");
    assert!(
        m.contains(&format!(
            "{} is v1.20.3-test.0",
            next.path().join("kube-scheduler").display()
        )) && m.contains(&format!("{} is v1.20.2", old_exe.display()))
            && m.contains("wants v1.20.4"),
        "{m}"
    );
}

/// A node whose kube-scheduler notes every run (`--version` included, which would run as
/// root too) in the returned canary file.
fn node_with_canary_scheduler() -> (Node, PathBuf, PathBuf) {
    let n = Node::new("v1.20.2");
    let exe = n.bin.path().join("kube-scheduler");
    let canary = n.tmp.path().join("ran");
    let script = std::fs::read_to_string(&exe).unwrap().replacen(
        "#!/bin/sh\n",
        &format!("#!/bin/sh\necho \"$@\" >> {}\n", canary.display()),
        1,
    );
    common::write_exec(&exe, &script);
    (n, exe, canary)
}

#[test]
fn untrusted_component_binary_is_never_run() {
    use std::os::unix::fs::PermissionsExt;
    let (mut n, exe, canary) = node_with_canary_scheduler();
    // Group-writable: anyone in its group could replace what the agent runs as root.
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o775)).unwrap();
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let m = n.wait_held_back("UntrustedBinary");
    // The fix names the real file (the build directory may be reached through a symlink).
    let real = exe.canonicalize().unwrap();
    assert!(
        m.contains(&format!("refusing to run \"{}\" as root", exe.display()))
            && m.contains("mode 0775")
            && m.contains(&format!("chmod go-w {}", real.display())),
        "{m}"
    );
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(n.marked().is_empty());
    assert!(!canary.exists(), "the untrusted binary ran");
    // Fixed as the message says: the next retry runs it.
    n.wait_container("running once fixed", |c| c.state == "running");
    assert!(canary.exists());
}

#[test]
#[ignore = "needs root"]
fn component_binary_owned_by_another_user_is_never_run() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "component_binary_owned_by_another_user_is_never_run needs root to chown; run it as root, as CI does"
    );
    let (mut n, exe, canary) = node_with_canary_scheduler();
    // Owned by another user (nobody), even with a safe mode: refused.
    std::os::unix::fs::chown(&exe, Some(65534), Some(65534)).unwrap();
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let m = n.wait_held_back("UntrustedBinary");
    assert!(m.contains("owned by uid 65534"), "{m}");
    assert!(n.marked().is_empty());
    assert!(!canary.exists(), "the untrusted binary ran");
    std::os::unix::fs::chown(&exe, Some(0), Some(0)).unwrap();
    n.wait_container("running once fixed", |c| c.state == "running");
    assert!(canary.exists());
}

#[test]
fn untrusted_shim_is_never_run() {
    use std::os::unix::fs::PermissionsExt;
    let mut n = Node::new("v1.20.2");
    // A copy of the shim in a directory anyone can write, made so here (whatever $TMPDIR is).
    let scratch = common::trusted_tempdir();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let shim = scratch.path().join("kubeboot-shim");
    std::fs::copy(env!("CARGO_BIN_EXE_kubeboot-shim"), &shim).unwrap();
    n.cfg.shim_exe = shim;
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let m = n.wait_held_back("UntrustedBinary");
    let dir = scratch.path().canonicalize().unwrap();
    assert!(
        m.starts_with("the shim: refusing to run")
            && m.contains(&format!(
                "{:?}, on the way to it, is writable by group or others",
                dir.display().to_string()
            ))
            && m.contains("mode 0777"),
        "{m}"
    );
}

#[test]
fn a_bin_dir_others_can_write_never_goes_on_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let mut n = Node::new("v1.20.2");
    // Empty, first, and writable by all: the component would run whatever `iptables` or
    // `mount` anyone put there.
    let open = common::trusted_tempdir();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    n.cfg.bin_dirs.insert(0, open.path().to_path_buf());
    n.start_agent();
    n.write_manifest("sched", &pod("sched", "sleep", "", ""));
    let c = n.wait_container("running", |c| c.state == "running");
    let child = n.container_pid(c.pid.unwrap());
    let path = agent::host::process::proc_env_var(child, "PATH").expect("a PATH");
    assert!(
        path.starts_with(&format!("{}:", n.bin.path().display()))
            && !path.contains(&open.path().display().to_string()),
        "{path}"
    );
}

#[test]
fn pods_that_cannot_run_yet_get_clear_reasons() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    // No CNI configuration in the node's (temporary) /etc/cni/net.d: the pod waits for one.
    n.write_manifest(
        "podnet",
        &pod("podnet", "sleep", "", "").replace("hostNetwork: true", "hostNetwork: false"),
    );
    let c = n.wait_container("pod networking", |c| {
        c.reason.as_deref() == Some("NetworkNotReady")
    });
    let m = c.message.unwrap();
    assert!(
        m.starts_with(&format!(
            "no CNI configuration in {}",
            n.cfg.cni_conf_dir.display()
        )),
        "{m}"
    );
    assert_eq!(c.state, "waiting");
    n.write_manifest(
        "nginx",
        &pod("nginx", "sleep", "", "").replace("k8s.gcr.io/kube-scheduler:v1.20.2", "nginx:1.19"),
    );
    n.wait_container("unknown image", |c| {
        c.reason.as_deref() == Some("UnknownImage")
    });
    n.write_manifest("broken", "spec: [");
    wait_until("the manifest error", || {
        n.status()
            .manifest_errors
            .iter()
            .any(|e| e.manifest.ends_with("broken.yaml"))
            .then_some(())
    });
}

#[test]
fn probes_http_tcp_exec() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    // httpGet readiness by named port, exec startup with the pod's env.
    let probes = format!(
        r#"    ports: [{{name: web, containerPort: {port}}}]
    startupProbe:
      exec: {{command: [sh, -c, 'test "$A" = hello']}}
      periodSeconds: 1
    readinessProbe:
      httpGet: {{path: /, port: web, httpHeaders: [{{name: X-Test, value: "1"}}]}}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {{port: {port}}}
      periodSeconds: 1
      failureThreshold: 30
"#
    );
    n.write_manifest(
        "web",
        &pod("web", &format!("http, \"{port}\""), "", &probes),
    );
    let c = n.wait_container("ready", |c| c.ready && c.started);
    assert_eq!(c.probes.len(), 3);
    assert!(
        c.probes.iter().all(|p| p.last_ok == Some(true)),
        "{:?}",
        c.probes
    );
    assert_eq!(c.restart_count, 0);

    // A liveness probe against a closed port restarts the container.
    let dead = format!(
        "    livenessProbe:\n      tcpSocket: {{port: {closed}}}\n      periodSeconds: 1\n      failureThreshold: 2\n"
    );
    n.write_manifest(
        "dead",
        &pod(
            "dead",
            "sleep",
            "  terminationGracePeriodSeconds: 1\n",
            &dead,
        ),
    );
    let c = n.wait_pod("liveness restart", |p| {
        (p.name == "dead-n1")
            .then(|| p.containers[0].clone())
            .filter(|c| c.restart_count >= 1)
    });
    assert_eq!(c.last_exit_reason.as_deref(), Some("Unhealthy"));
    assert!(
        c.last_exit_message
            .unwrap()
            .contains("liveness probe failed")
    );
}

#[test]
fn stop_all_pods_stops_every_process_of_the_node() {
    let mut n = Node::new("v1.20.2");
    n.start_agent();
    n.write_manifest("a", &pod("a", "sleep", "", ""));
    n.write_manifest("b", &pod("b", "ignore-term", "", ""));
    wait_until("both running", || {
        (n.status()
            .pods
            .iter()
            .filter(|p| p.containers[0].state == "running")
            .count()
            == 2)
            .then_some(())
    });
    wait_until("4 processes", || (n.marked().len() >= 4).then_some(()));
    n.stop_agent();
    let stopped = agent::stop_all_pods(&n.layout, Duration::from_secs(1)).unwrap();
    assert!(stopped >= 4, "{stopped}");
    wait_until("all gone", || n.marked().is_empty().then_some(()));
}
