//! `upload-certs` against the real kubeadm v1.20.2 and a real API server (etcd and
//! kube-apiserver on loopback): kubeadm uploads a node's certificates with a certificate key,
//! kubeboot's `download_certs` decrypts them byte for byte into a fresh node; then kubeboot
//! uploads with the same key, and what the API server holds is compared field by field with
//! what kubeadm stored (Secret, owner token, Role, RoleBinding), and downloads again.

mod common;

use std::path::Path;
use std::process::Command;

use components::Layout;
use components::config::InitFlags;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use phases::cluster::Cluster;
use phases::shared::download_certs;

use common::apiserver::{ApiServer, bin_dir, repoint};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// What the API server holds after an upload: the Secret, its owner token's Secret, the
/// Role and the RoleBinding.
struct Stored {
    secret: Secret,
    token: Secret,
    role: Role,
    binding: RoleBinding,
}

fn stored(c: &Cluster) -> Stored {
    let get = |name: &str| -> Secret {
        c.get(Some("kube-system"), name)
            .expect("get")
            .unwrap_or_else(|| panic!("{name} exists"))
    };
    let secret = get("kubeadm-certs");
    let owners = secret.metadata.owner_references.clone().expect("owned");
    assert_eq!(owners.len(), 1);
    let token = get(&owners[0].name);
    assert_eq!(token.metadata.uid.as_deref(), Some(owners[0].uid.as_str()));
    Stored {
        secret,
        token,
        role: c
            .get(Some("kube-system"), "kubeadm:kubeadm-certs")
            .expect("get")
            .expect("the Role exists"),
        binding: c
            .get(Some("kube-system"), "kubeadm:kubeadm-certs")
            .expect("get")
            .expect("the RoleBinding exists"),
    }
}

/// Downloads into a fresh node and checks every file against the uploading node's.
fn download_matches(c: &Cluster, cert_dir: &Path) {
    let node = tempfile::tempdir().expect("tempdir");
    let layout = Layout::under(node.path());
    let to = layout.node_path(Path::new("/etc/kubernetes/pki"));
    let fs = agent::host::fs::Fs::real();
    let written = download_certs::download(c, KEY, &layout, &to, &fs).expect("downloads");
    assert_eq!(written.len(), 8, "{written:?}");
    for f in manifests::cluster::upload_certs::SHARED_FILES {
        assert_eq!(
            std::fs::read(to.join(f.name)).expect("downloaded"),
            std::fs::read(cert_dir.join(f.name)).expect("original"),
            "{}",
            f.name
        );
    }
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn kubeadm_and_kubeboot_store_the_same_objects_and_each_decrypts_the_other() {
    let bin = bin_dir();
    let kubeadm = bin.join("kubeadm");
    assert!(kubeadm.is_file(), "KUBEBOOT_BIN_DIR must hold kubeadm");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = common::data_from(
        dir.path(),
        InitFlags {
            apiserver_advertise_address: Some("10.123.0.2".into()),
            apiserver_cert_extra_sans: vec!["127.0.0.1".into()],
            kubernetes_version: Some("v1.20.2".into()),
            node_name: Some("node1".into()),
            ..Default::default()
        },
    );
    phases::init::run(&mut d, &["certs".into(), "kubeconfig".into()]).expect("phases run");
    let cert_dir = d.cert_dir();
    let admin = d.layout.kubeconfig("admin.conf");
    let api = ApiServer::start(&bin, dir.path(), &cert_dir);
    repoint(&admin, &api.server);
    api.wait_ready(&admin);
    let c = Cluster::from_kubeconfig(&admin).expect("admin client");

    // kubeadm's upload, from the same certificate directory (the key in the configuration:
    // kubeadm does not mix --config with --certificate-key). The CRI socket is given so that
    // kubeadm does not look for one on this machine; the advertise address is only
    // configuration here (kubeadm refuses a loopback one), the kubeconfig names the server.
    let config = dir.path().join("kubeadm.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\ncertificateKey: {KEY}\nlocalAPIEndpoint:\n  advertiseAddress: 10.123.0.2\nnodeRegistration:\n  name: node1\n  criSocket: /run/containerd/containerd.sock\n---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nkubernetesVersion: v1.20.2\ncertificatesDir: {}\n",
            cert_dir.display()
        ),
    )
    .expect("kubeadm config");
    let run = Command::new(&kubeadm)
        .args(["init", "phase", "upload-certs", "--upload-certs"])
        .arg("--config")
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&admin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("kubeadm runs");
    let kubeadm_said = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "kubeadm failed:\n{kubeadm_said}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let theirs = stored(&c);
    // kubeadm's Secret, decrypted by kubeboot.
    download_matches(&c, &cert_dir);

    // kubeboot's upload with the same key: the same output, replacing the Secret.
    d.upload_certs = true;
    d.cfg.certificate_key = Some(KEY.into());
    d.api = Some(Cluster::from_kubeconfig(&admin).expect("admin client"));
    let before = d.out.captured().len();
    phases::init::run(&mut d, &["upload-certs".into()]).expect("kubeboot uploads");
    assert_eq!(d.out.captured()[before..], kubeadm_said);
    let ours = stored(&c);
    assert_ne!(
        ours.token.metadata.name, theirs.token.metadata.name,
        "a new owner token"
    );
    download_matches(&c, &cert_dir);

    // Field by field, but for what differs by nature (token, UIDs, server-set metadata,
    // ciphertexts under fresh nonces, the expiry a few seconds later).
    let keys =
        |s: &Secret| -> Vec<String> { s.data.as_ref().expect("data").keys().cloned().collect() };
    assert_eq!(keys(&ours.secret), keys(&theirs.secret));
    assert_eq!(ours.secret.type_, theirs.secret.type_);
    let owner = |s: &Secret| {
        let mut o = s.metadata.owner_references.clone().expect("owned")[0].clone();
        o.name = "bootstrap-token-<id>".into();
        o.uid = "<uid>".into();
        o
    };
    assert_eq!(owner(&ours.secret), owner(&theirs.secret));
    assert_eq!(keys(&ours.token), keys(&theirs.token));
    assert_eq!(ours.token.type_, theirs.token.type_);
    let data = |s: &Secret, k: &str| s.data.as_ref().expect("data")[k].0.clone();
    assert_eq!(
        data(&ours.token, "description"),
        data(&theirs.token, "description")
    );
    let expires = |s: &Secret| {
        let text = String::from_utf8(data(s, "expiration")).expect("utf-8");
        pki::token::parse_expiration(&text).expect("RFC 3339")
    };
    // kubeboot's clock reading is the init's (this test's start), kubeadm's the upload's.
    let (a, b) = (expires(&ours.token), expires(&theirs.token));
    let apart = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .expect("ordered");
    assert!(apart.as_secs() < 120, "both two hours from their upload");
    assert_eq!(ours.role.rules, theirs.role.rules);
    assert_eq!(ours.binding.role_ref, theirs.binding.role_ref);
    assert_eq!(ours.binding.subjects, theirs.binding.subjects);
}
