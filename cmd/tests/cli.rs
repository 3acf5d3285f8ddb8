//! The `kubeboot` binary's commands that need no node: version, completion, config printing,
//! help and argument errors. Each runs the real binary.

use std::process::{Command, Output};

fn kubeboot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(args)
        .output()
        .expect("kubeboot runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_short_and_json() {
    let o = kubeboot(&["version", "-o", "short"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), format!("v{}", env!("CARGO_PKG_VERSION")));
    let o = kubeboot(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["clientVersion"]["platform"], "linux/amd64");
    let o = kubeboot(&["version", "-o", "xml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid output format: xml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn completion_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef kubeboot"),
        ("fish", "complete -c kubeboot"),
    ] {
        let o = kubeboot(&["completion", shell]);
        assert!(o.status.success(), "{shell}");
        let s = stdout(&o);
        assert!(s.contains(marker), "{shell} completion lacks {marker:?}");
        assert!(
            s.contains("init"),
            "{shell} completion lacks the init command"
        );
    }
}

#[test]
fn config_print_init_defaults_loads_back() {
    let o = kubeboot(&[
        "config",
        "print",
        "init-defaults",
        "--kubernetes-version",
        "v1.20.2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("apiVersion: kubeadm.k8s.io/v1beta2\nbootstrapTokens:"),
        "{text}"
    );
    assert!(text.contains("kind: ClusterConfiguration"), "{text}");
    let parsed = components::config::load(&text).expect("init-defaults loads back");
    assert!(parsed.init.is_some() && parsed.cluster.is_some());
    let o = kubeboot(&[
        "config",
        "print",
        "init-defaults",
        "--kubernetes-version",
        "v1.20.2",
        "--api-version",
        "v1beta3",
    ]);
    assert!(stdout(&o).contains("apiVersion: kubeadm.k8s.io/v1beta3"));
}

#[test]
fn init_help_has_kubeadm_flags() {
    let o = kubeboot(&["init", "--help"]);
    let help = stdout(&o);
    for flag in [
        "--apiserver-advertise-address",
        "--apiserver-bind-port",
        "--apiserver-cert-extra-sans",
        "--cert-dir",
        "--config",
        "--control-plane-endpoint",
        "--dry-run",
        "--ignore-preflight-errors",
        "--kubernetes-version",
        "--node-name",
        "--pod-network-cidr",
        "--service-cidr",
        "--service-dns-domain",
        "--skip-phases",
        "--bin-dir",
    ] {
        assert!(help.contains(flag), "init --help lacks {flag}");
    }
}

#[test]
fn phase_rejects_flags_it_does_not_take() {
    let o = kubeboot(&[
        "init",
        "phase",
        "etcd",
        "local",
        "--pod-network-cidr",
        "10.244.0.0/16",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("unknown flag: --pod-network-cidr"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn certs_phase_writes_into_cert_dir_with_private_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    let o = kubeboot(&[
        "init",
        "phase",
        "certs",
        "all",
        "--cert-dir",
        pki_s,
        "--kubernetes-version",
        "v1.20.2",
        "--node-name",
        "node1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("[certs] Generating \"etcd/ca\" certificate and key"));
    for key in ["ca.key", "apiserver.key", "etcd/peer.key", "sa.key"] {
        let mode = std::fs::metadata(pki.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    // A second run reuses everything.
    let o = kubeboot(&[
        "init",
        "phase",
        "certs",
        "all",
        "--cert-dir",
        pki_s,
        "--kubernetes-version",
        "v1.20.2",
        "--node-name",
        "node1",
    ]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(
        out.contains("[certs] Using existing ca certificate authority"),
        "{out}"
    );
    assert!(!out.contains("Generating"), "{out}");
}

#[test]
fn reset_without_terminal_needs_force() {
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(["reset", "--dry-run"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // --dry-run needs no confirmation; a plain reset without a terminal does.
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(["reset"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("kubeboot reset -f"), "{}", stderr(&o));
}

#[test]
fn a_relative_bin_dir_reaches_the_agent_as_an_absolute_path() {
    // Resolved once, against the directory init runs in: the agent, started from elsewhere,
    // is given the directory the preflight checked.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("bins")).unwrap();
    std::fs::write(
        cwd.path().join("c.yaml"),
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .current_dir(cwd.path())
        .args([
            "init",
            "phase",
            "agent-start",
            "--dry-run",
            "--config",
            "c.yaml",
        ])
        .args(["--bin-dir", "./bins/../bins"])
        .output()
        .expect("kubeboot runs");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let abs = cwd.path().canonicalize().unwrap().join("bins");
    assert!(
        out.contains(" agent --node-name ")
            && out.contains(&format!(" --bin-dir {} ", abs.display())),
        "{out}"
    );
    // The dry run's scratch directory is kept for the user to read; not by this test.
    if let Some(scratch) = out.lines().find_map(|l| {
        l.split('"')
            .nth(1)
            .filter(|p| p.contains("kubeboot-init-dryrun"))
    }) {
        let _ = std::fs::remove_dir_all(scratch);
    }
}
