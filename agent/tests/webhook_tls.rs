//! The agent's admission webhook over real TLS on loopback, as the API server calls it: the
//! serving certificate kubeboot issues (IP SAN 127.0.0.1, signed by the cluster CA) verifies
//! against the CA alone (the webhook configuration's caBundle), an AdmissionReview gets its
//! answer, and a renewed certificate is served without a restart.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use agent::webhook::{WebhookConfig, serve};
use components::config::KeyAlgorithm;
use pki::{CertInputs, Issuer, KUBEBOOT_AGENT_WEBHOOK_CERT, cert_spec, issue};

/// An ECDSA CA, and the webhook's certificate from it with an `algorithm` key, written as the
/// certs phase writes it. (An RSA CA would test nothing more here and costs a minute of key
/// generation in a debug build.)
fn write_pki(dir: &Path, algorithm: KeyAlgorithm) -> (String, WebhookConfig) {
    let ca: Issuer = issue(
        cert_spec("ca").expect("ca"),
        &common::cert_inputs(KeyAlgorithm::EcdsaP256),
        None,
        SystemTime::now(),
    )
    .expect("ca")
    .into();
    let cfg = WebhookConfig::for_state_dir(dir);
    write_leaf(&cfg, &ca, &common::cert_inputs(algorithm));
    (ca.cert_pem, cfg)
}

fn write_leaf(cfg: &WebhookConfig, ca: &Issuer, i: &CertInputs) -> String {
    let leaf = issue(&KUBEBOOT_AGENT_WEBHOOK_CERT, i, Some(ca), SystemTime::now()).expect("leaf");
    std::fs::create_dir_all(cfg.cert.parent().expect("dir")).expect("mkdir");
    std::fs::write(&cfg.key, &leaf.key_pem).expect("key");
    std::fs::write(&cfg.cert, &leaf.cert_pem).expect("cert");
    leaf.cert_pem
}

async fn start(cfg: &WebhookConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cfg = cfg.clone();
    tokio::spawn(async move {
        serve(listener, &cfg).await.expect("serves");
    });
    addr
}

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn agent_creates(node_name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d5c1c5e-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "kube-system",
            "operation": "CREATE",
            "userInfo": {"username": "kubeboot:agent:node1", "groups": ["kubeboot:agents", "system:authenticated"]},
            "object": {
                "metadata": {"name": "evil", "namespace": "kube-system"},
                "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}
            }
        }
    })
}

async fn reviews_over_tls(algorithm: KeyAlgorithm) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cfg) = write_pki(dir.path(), algorithm);
    let addr = start(&cfg).await;
    let c = client(&ca);
    // The URL the webhook configuration names, with the test's port: verified by IP SAN.
    let base = format!("https://127.0.0.1:{}", addr.port());
    let health = c
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("text"), "ok");
    let resp = c
        .post(format!("{base}/admission/pods"))
        .json(&agent_creates("node2"))
        .send()
        .await
        .expect("review");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["response"]["uid"], "0d5c1c5e-0000-4000-8000-000000000001");
    assert_eq!(v["response"]["allowed"], false);
    let msg = v["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(msg.contains("[rule no-node-name]"), "{msg}");

    // Another CA's client does not trust it: the caBundle matters.
    let (other_ca, _) = write_pki(
        tempfile::tempdir().expect("tmp").path(),
        KeyAlgorithm::EcdsaP256,
    );
    assert!(
        client(&other_ca)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ecdsa_webhook_answers_reviews_over_tls() {
    reviews_over_tls(KeyAlgorithm::EcdsaP256).await;
}

#[tokio::test]
async fn rsa_key_webhook_answers_reviews_over_tls() {
    reviews_over_tls(KeyAlgorithm::Rsa2048).await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cfg) = write_pki(dir.path(), KeyAlgorithm::EcdsaP256);
    let addr = start(&cfg).await;
    // Renewed from a new CA: only a client trusting the new CA connects afterwards.
    let i = common::cert_inputs(KeyAlgorithm::EcdsaP256);
    let new_ca: Issuer = issue(cert_spec("ca").expect("ca"), &i, None, SystemTime::now())
        .expect("ca")
        .into();
    // A modification time that differs even on coarse-grained filesystems.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_leaf(&cfg, &new_ca, &i);
    let later = SystemTime::now() + Duration::from_secs(5);
    for f in [&cfg.cert, &cfg.key] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .expect("open")
            .set_modified(later)
            .expect("mtime");
    }
    let resp = client(&new_ca.cert_pem)
        .get(format!("https://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await
        .expect("the renewed certificate is served");
    assert_eq!(resp.status(), 200);
}
