//! Kubernetes 1.29's admin credentials against a real API server: the `certs` and
//! `kubeconfig` phases of a v1.29.0 configuration write admin.conf (group
//! `kubeadm:cluster-admins`) and super-admin.conf (`system:masters`); with etcd and the v1.20.2
//! kube-apiserver on loopback (RBAC has not changed for this since), admin.conf alone is
//! forbidden, `shared::admin::admin_cluster` creates the `kubeadm:cluster-admins` binding with
//! super-admin.conf, after which admin.conf may act; a second run needs no super-admin.conf;
//! without the binding and without super-admin.conf it fails naming both.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::apiserver::{ApiServer, bin_dir, repoint};
use components::config::InitFlags;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use phases::cluster::Cluster;
use phases::init::InitData;

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

    let api = ApiServer::start(&bin, dir.path(), &pki);
    repoint(&admin, &api.server);
    repoint(&super_admin, &api.server);
    // Up when the bootstrap ClusterRole cluster-admin is there (RBAC's post-start hook).
    api.wait_ready(&super_admin);

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
