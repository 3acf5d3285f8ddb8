//! Kubernetes 1.29's admin credentials against a real API server: the `certs` and
//! `kubeconfig` phases of a v1.29.0 configuration write admin.conf (group
//! `kubeadm:cluster-admins`) and super-admin.conf (`system:masters`); with etcd and the v1.20.2
//! kube-apiserver on loopback (RBAC has not changed for this since), admin.conf alone is
//! forbidden, `shared::admin::admin_cluster` creates the `kubeadm:cluster-admins` binding with
//! super-admin.conf, after which admin.conf may act; a second run needs no super-admin.conf;
//! without the binding and without super-admin.conf it fails naming both.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use components::config::InitFlags;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use phases::cluster::Cluster;
use phases::init::InitData;

/// A child process killed (and reaped) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 200 ms until it holds, at most `secs` seconds (RBAC's authorizer reads
/// bindings from an informer, so a new or deleted binding takes effect a moment later).
fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what} after {secs}s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("KUBEBOOT_BIN_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.join("kube-apiserver").is_file() && d.join("etcd").is_file() => d,
        _ => panic!(
            "KUBEBOOT_BIN_DIR must hold etcd and kube-apiserver: run scripts/setup.sh, then `set -a; . /var/lib/kubeboot-dev/env; set +a`"
        ),
    }
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Running {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Running(
        Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display())),
    )
}

/// Init data for a v1.29.0 node whose API server certificate is valid for 127.0.0.1.
fn data(root: &Path) -> InitData {
    common::data_from(
        root,
        InitFlags {
            apiserver_advertise_address: Some("10.123.0.2".into()),
            apiserver_cert_extra_sans: vec!["127.0.0.1".into()],
            kubernetes_version: Some("v1.29.0".into()),
            node_name: Some("node1".into()),
            ..Default::default()
        },
    )
}

/// Points a kubeconfig at `server` (the files name the advertise address, which is not
/// this machine's).
fn repoint(path: &Path, server: &str) {
    let yaml = std::fs::read_to_string(path).expect("kubeconfig");
    let mut kc = pki::Kubeconfig::from_yaml(&yaml).expect("a kubeconfig");
    kc.clusters[0].cluster.server = server.to_string();
    std::fs::write(path, kc.to_yaml()).expect("write kubeconfig");
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn admin_conf_of_1_29_gets_its_rights_from_the_binding_super_admin_creates() {
    let bin = bin_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = data(dir.path());
    phases::init::run(&mut d, &["certs".into(), "kubeconfig".into()]).expect("phases run");
    let pki = d.cert_dir();
    let admin = d.layout.kubeconfig("admin.conf");
    let super_admin = d.layout.kubeconfig("super-admin.conf");
    assert!(super_admin.is_file());

    let (client, peer, secure) = (free_port(), free_port(), free_port());
    let etcd_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let etcd_args: Vec<String> = vec![
        "--name=t".into(),
        format!("--data-dir={}", dir.path().join("etcd").display()),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=t={peer_url}"),
    ];
    let _etcd = spawn(&bin.join("etcd"), &etcd_args, &dir.path().join("etcd.log"));
    let file = |name: &str| pki.join(name).display().to_string();
    let apiserver_args: Vec<String> = vec![
        format!("--etcd-servers={etcd_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={secure}"),
        "--insecure-port=0".into(),
        format!("--client-ca-file={}", file("ca.crt")),
        format!("--tls-cert-file={}", file("apiserver.crt")),
        format!("--tls-private-key-file={}", file("apiserver.key")),
        format!("--service-account-key-file={}", file("sa.pub")),
        format!("--service-account-signing-key-file={}", file("sa.key")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        "--authorization-mode=Node,RBAC".into(),
        format!("--cert-dir={}", dir.path().join("apiserver").display()),
    ];
    let apiserver_log = dir.path().join("apiserver.log");
    let _apiserver = spawn(&bin.join("kube-apiserver"), &apiserver_args, &apiserver_log);
    let server = format!("https://127.0.0.1:{secure}");
    repoint(&admin, &server);
    repoint(&super_admin, &server);

    // Up when the bootstrap ClusterRole cluster-admin is there (RBAC's post-start hook).
    let start = Instant::now();
    loop {
        let ready = Cluster::from_kubeconfig(&super_admin)
            .and_then(|c| c.get::<ClusterRole>(None, "cluster-admin"))
            .is_ok_and(|r| r.is_some());
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "kube-apiserver not ready after 90s:\n{}",
            std::fs::read_to_string(&apiserver_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let alone = Cluster::from_kubeconfig(&admin).expect("admin client");
    let e = alone
        .list::<Node>(None, None)
        .expect_err("admin.conf has no rights before the binding");
    assert!(format!("{e:#}").contains("forbidden"), "{e:#}");

    let version = "v1.29.0".parse().expect("version");
    let c = phases::shared::admin::admin_cluster(&admin, &super_admin, &version)
        .expect("binding ensured");
    eventually("admin.conf may act once the binding exists", 10, || {
        c.list::<Node>(None, None).is_ok()
    });
    let crb: ClusterRoleBinding = c
        .get(None, "kubeadm:cluster-admins")
        .expect("get")
        .expect("the binding exists");
    assert_eq!(crb.role_ref.name, "cluster-admin");
    let subjects = crb.subjects.expect("subjects");
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str()),
        ("Group", "kubeadm:cluster-admins")
    );

    // Once the binding exists admin.conf finds it in place: super-admin.conf is not needed.
    std::fs::remove_file(&super_admin).expect("remove super-admin.conf");
    phases::shared::admin::admin_cluster(&admin, &super_admin, &version)
        .expect("the binding is in place");

    // Without the binding and without super-admin.conf, it fails and says why.
    assert!(
        c.delete::<ClusterRoleBinding>(None, "kubeadm:cluster-admins")
            .expect("delete")
    );
    eventually("admin.conf has no rights without the binding", 10, || {
        c.list::<Node>(None, None).is_err()
    });
    let e = phases::shared::admin::admin_cluster(&admin, &super_admin, &version)
        .expect_err("no way to create the binding");
    let shown = format!("{e:#}");
    assert!(
        shown.contains("kubeadm:cluster-admins") && shown.contains("super-admin.conf"),
        "{shown}"
    );
}
