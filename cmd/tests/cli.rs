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
    let o = certs_all(pki_s);
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
    let o = certs_all(pki_s);
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

/// Every file under `dir` with its bytes, sorted: what a refused command must leave as it was.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Checks that `o` exited 1 with stderr starting with `starts`, printed nothing, and left
/// `dir` as `before`; returns its stderr.
fn refused_unchanged(
    o: &Output,
    starts: &str,
    dir: &std::path::Path,
    before: &[(std::path::PathBuf, Vec<u8>)],
) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let err = stderr(o);
    assert!(err.starts_with(starts), "{err}");
    assert!(stdout(o).is_empty(), "{}", stdout(o));
    assert!(tree(dir) == before, "files under {} changed", dir.display());
    err
}

/// `init phase certs all` into `pki`.
fn certs_all(pki: &str) -> Output {
    kubeboot(&[
        "init",
        "phase",
        "certs",
        "all",
        "--cert-dir",
        pki,
        "--kubernetes-version",
        "v1.20.2",
        "--node-name",
        "node1",
    ])
}

/// A PKI made by `init phase certs all` in `dir/pki`.
fn pki_in(dir: &std::path::Path) -> std::path::PathBuf {
    let pki = dir.join("pki");
    let o = certs_all(pki.to_str().unwrap());
    assert!(o.status.success(), "{}", stderr(&o));
    pki
}

#[test]
fn certs_renew_of_an_unknown_name_lists_the_valid_ones_and_renews_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let before = tree(dir.path());
    let o = kubeboot(&[
        "certs",
        "renew",
        "apiserver-typo",
        "--cert-dir",
        pki.to_str().unwrap(),
    ]);
    let err = refused_unchanged(
        &o,
        "unknown certificate \"apiserver-typo\": kubeboot can renew all, ",
        dir.path(),
        &before,
    );
    for valid in [
        "admin.conf",
        "apiserver,",
        "apiserver-etcd-client",
        "etcd-peer",
        "front-proxy-client",
        "scheduler.conf",
        "nothing was renewed",
    ] {
        assert!(err.contains(valid), "stderr lacks {valid:?}: {err}");
    }
}

#[test]
fn kubeconfig_user_without_client_name_names_the_flag_as_kubeadm_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki_in(dir.path());
    let config = dir.path().join("kubeboot.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n",
    )
    .unwrap();
    let before = tree(dir.path());
    let o = kubeboot(&[
        "kubeconfig",
        "user",
        "--org",
        "team",
        "--config",
        config.to_str().unwrap(),
        "--cert-dir",
        pki.to_str().unwrap(),
    ]);
    // kubeadm 1.20 (`alpha kubeconfig user`): `required flag(s) "client-name" not set`, exit 1.
    refused_unchanged(
        &o,
        "required flag(s) \"client-name\" not set: pass --client-name <name>",
        dir.path(),
        &before,
    );
}
