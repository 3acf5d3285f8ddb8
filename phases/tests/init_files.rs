//! The file-writing `init` phases on a layout rooted in a temp dir: what they write, with which
//! modes, and that running them again changes nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::data;
use phases::init::InitData;

const FILE_PHASES: &[&str] = &["certs", "kubeconfig", "etcd", "control-plane"];

fn run(d: &mut InitData) {
    let only: Vec<String> = FILE_PHASES.iter().map(|s| s.to_string()).collect();
    phases::init::run(d, &only).expect("phases run");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn writes_pki_kubeconfigs_and_manifests_with_kubeadm_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path());
    run(&mut d);
    let k = dir.path().join("etc/kubernetes");
    for key in [
        "pki/ca.key",
        "pki/apiserver.key",
        "pki/etcd/server.key",
        "pki/sa.key",
        "admin.conf",
        "scheduler.conf",
    ] {
        assert_eq!(mode(&k.join(key)), 0o600, "{key}");
    }
    for public in ["pki/ca.crt", "pki/sa.pub", "pki/front-proxy-ca.crt"] {
        assert_eq!(mode(&k.join(public)), 0o644, "{public}");
    }
    assert_eq!(mode(&k.join("manifests")), 0o700);
    assert_eq!(mode(&dir.path().join("var/lib/etcd")), 0o700);
    let apiserver = std::fs::read_to_string(k.join("manifests/kube-apiserver.yaml")).unwrap();
    let root = dir.path().display().to_string();
    assert!(
        apiserver.contains(&format!(
            "--client-ca-file={root}/etc/kubernetes/pki/ca.crt"
        )),
        "{apiserver}"
    );
    assert!(apiserver.contains("--advertise-address=10.123.0.2"));
    let out = d.out.captured();
    assert!(
        out.contains("[kubeconfig] Writing \"admin.conf\" kubeconfig file"),
        "{out}"
    );
    assert!(
        out.contains("[control-plane] Creating static Pod manifest for \"kube-scheduler\""),
        "{out}"
    );
    // `certs` writes only into the certificate directory, as kubeadm's does: the agent's
    // webhook certificate comes with the agent's start.
    assert!(!out.contains("kubeboot-agent-webhook"), "{out}");
    assert!(!dir.path().join("var/lib/kubeboot/agent/pki").exists());
}

#[test]
fn running_again_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path());
    run(&mut d);
    let snapshot = |p: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    files.push((
                        e.path().display().to_string(),
                        std::fs::read(e.path()).unwrap(),
                    ));
                }
            }
        }
        files.sort();
        files
    };
    let before = snapshot(dir.path());
    let mut again = data(dir.path());
    run(&mut again);
    assert_eq!(before, snapshot(dir.path()), "a second run changed files");
    let out = again.out.captured();
    assert!(
        out.contains("[certs] Using existing apiserver certificate and key on disk"),
        "{out}"
    );
    assert!(out.contains("Using existing kubeconfig file"), "{out}");
    assert!(!out.contains("Generating"), "{out}");
}

#[test]
fn a_config_change_that_breaks_a_cert_is_refused_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path());
    run(&mut d);
    let crt = dir.path().join("etc/kubernetes/pki/apiserver.crt");
    let before = std::fs::read(&crt).unwrap();
    let mut other = data(dir.path());
    other.cfg.local_api_endpoint.advertise_address = "10.123.0.3".parse().unwrap();
    let only = vec!["certs".to_string()];
    let err = phases::init::run(&mut other, &only).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("error execution phase certs/apiserver"),
        "{msg}"
    );
    assert!(msg.contains("10.123.0.3"), "{msg}");
    assert_eq!(before, std::fs::read(&crt).unwrap());
}

#[test]
fn a_key_left_without_its_certificate_is_replaced_only_when_resuming_an_interrupted_init() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path());
    run(&mut d);
    // What a kill between the key's rename and the certificate's leaves.
    let pki = dir.path().join("etc/kubernetes/pki");
    std::fs::remove_file(pki.join("apiserver.crt")).unwrap();
    let lone_key = std::fs::read(pki.join("apiserver.key")).unwrap();
    let only = vec!["certs".to_string()];
    let err = phases::init::run(&mut data(dir.path()), &only).unwrap_err();
    assert!(
        format!("{err:#}").contains("found the key of \"apiserver\" but not its certificate"),
        "{err:#}"
    );
    let mut resuming = data(dir.path());
    resuming.resumed = Some(phases::init::resume::Interrupted::default());
    phases::init::run(&mut resuming, &only).expect("the resumed init replaces the lone key");
    let out = resuming.out.captured();
    assert!(
        out.contains("Replacing") && out.contains("Generating \"apiserver\" certificate and key"),
        "{out}"
    );
    assert_ne!(std::fs::read(pki.join("apiserver.key")).unwrap(), lone_key);
    assert!(pki.join("apiserver.crt").exists());
    // The pair is consistent: a plain run reuses it.
    phases::init::run(&mut data(dir.path()), &only).expect("the new pair is reused");
}

#[test]
fn the_agent_webhook_pair_is_kubeboots_own_in_the_agent_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = data(dir.path());
    run(&mut d);
    phases::shared::certs::agent_webhook_cert(&mut d).expect("issued");
    let agent_pki = dir.path().join("var/lib/kubeboot/agent/pki");
    assert_eq!(mode(&agent_pki), 0o700);
    assert_eq!(mode(&agent_pki.join("webhook.key")), 0o600);
    assert_eq!(mode(&agent_pki.join("webhook.crt")), 0o644);
    let out = d.out.captured();
    assert!(
        out.contains("[certs] kubeboot-agent-webhook serving cert is signed for DNS names [] and IPs [127.0.0.1]"),
        "{out}"
    );
    // Issued again: reused.
    phases::shared::certs::agent_webhook_cert(&mut d).expect("reused");
    assert!(
        d.out
            .captured()
            .contains("Using existing kubeboot-agent-webhook certificate and key on disk")
    );
}

#[test]
fn certs_and_kubeconfigs_take_the_configured_validity() {
    let dir = tempfile::tempdir().unwrap();
    let config = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n\
        localAPIEndpoint:\n  advertiseAddress: 10.123.0.2\nnodeRegistration:\n  name: node1\n---\n\
        apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\n\
        certificateValidityPeriod: 5m\ncaCertificateValidityPeriod: 2h\n";
    let mut d = common::data_from(
        dir.path(),
        components::config::InitFlags {
            config: Some(components::config::ConfigSource {
                path: "kubeadm.yaml".into(),
                content: config.into(),
            }),
            ..Default::default()
        },
    );
    d.cfg.cluster.certificates_dir = "/etc/kubernetes/pki".into();
    run(&mut d);
    let k = dir.path().join("etc/kubernetes");
    let valid_for = |pem: &str| {
        let info = pki::cert_info(pem).expect("a certificate");
        info.not_after
            .duration_since(d.now)
            .expect("after now")
            .as_secs()
    };
    let read = |p: &str| std::fs::read_to_string(k.join(p)).unwrap();
    for leaf in [
        "pki/apiserver.crt",
        "pki/etcd/server.crt",
        "pki/front-proxy-client.crt",
    ] {
        assert!((299..=300).contains(&valid_for(&read(leaf))), "{leaf}");
    }
    for ca in ["pki/ca.crt", "pki/etcd/ca.crt", "pki/front-proxy-ca.crt"] {
        assert!((7199..=7200).contains(&valid_for(&read(ca))), "{ca}");
    }
    let admin = pki::Kubeconfig::from_yaml(&read("admin.conf")).unwrap();
    let pem = admin.client_certificate_pem().unwrap();
    assert!((299..=300).contains(&valid_for(&pem)), "admin.conf");
}
