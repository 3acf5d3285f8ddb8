//! The objects of `upload-certs` field by field against kubeadm v1.20.2. kubeadm 1.20 cannot
//! dry-run this phase (`init phase upload-certs` has no `--dry-run`, and `init --dry-run
//! --upload-certs` fails reading back the token Secret its dry-run client never stored), so
//! the expected objects here are transcribed from its source, each field citing it:
//! cmd/kubeadm/app/phases/copycerts/copycerts.go (UploadCerts, createRBAC,
//! getSecretOwnerRef, createShortLivedBootstrapToken, certsToTransfer,
//! certOrKeyNameToSecretName) and apis/kubeadm/bootstraptokenhelpers.go (ToSecret).
//! `phases/tests/upload_certs_kubeadm.rs` compares with what the real kubeadm stores in a
//! real API server.

use manifests::cluster::upload_certs as uc;
use manifests::cluster::{TokenSpec, bootstrap_token_secret};
use pki::BootstrapToken;
use serde_json::json;

fn value<T: serde::Serialize>(obj: &T) -> serde_json::Value {
    serde_json::to_value(obj).expect("serializes")
}

#[test]
fn the_role_and_binding_are_kubeadms() {
    let (role, binding) = uc::kubeadm_certs_rbac();
    // createRBAC: CreateOrUpdateRole / CreateOrUpdateRoleBinding.
    assert_eq!(
        value(&role),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "kubeadm:kubeadm-certs", "namespace": "kube-system"},
            "rules": [{
                "apiGroups": [""],
                "resourceNames": ["kubeadm-certs"],
                "resources": ["secrets"],
                "verbs": ["get"]
            }]
        })
    );
    assert_eq!(
        value(&binding),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "kubeadm:kubeadm-certs", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "kubeadm:kubeadm-certs"
            },
            "subjects": [{
                "kind": "Group",
                "name": "system:bootstrappers:kubeadm:default-node-token"
            }]
        })
    );
}

#[test]
fn the_owner_token_is_kubeadms_proxy_token() {
    let token = BootstrapToken::parse("abcdef.0123456789abcdef").expect("valid");
    let spec: TokenSpec = uc::certs_token(token, "2023-11-14T23:13:20Z".into());
    // createShortLivedBootstrapToken: Description and TTL only (no usages, no groups), 2h
    // (constants.DefaultCertTokenDuration); ToSecret writes only the keys that are set.
    assert_eq!(uc::CERTS_TOKEN_TTL.as_secs(), 2 * 3600);
    // k8s-openapi writes Secret data as base64, as the API does.
    let b64 = |s: &str| value(&k8s_openapi::ByteString(s.as_bytes().to_vec()));
    assert_eq!(
        value(&bootstrap_token_secret(&spec)),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "data": {
                "description": b64("Proxy for managing TTL for the kubeadm-certs secret"),
                "expiration": b64("2023-11-14T23:13:20Z"),
                "token-id": b64("abcdef"),
                "token-secret": b64("0123456789abcdef"),
            }
        })
    );
}

#[test]
fn the_secret_is_kubeadms_owned_by_the_token() {
    let key = pki::certkey::parse(&pki::certkey::generate()).expect("valid");
    let files: Vec<(&str, Option<Vec<u8>>)> = uc::shared_files(true)
        .map(|f| (f.name, Some(format!("PEM of {}", f.name).into_bytes())))
        .collect();
    let secret = uc::kubeadm_certs_secret(&key, &files, uc::token_owner_reference("abcdef", "u"));
    let mut v = value(&secret);
    let data = v
        .as_object_mut()
        .expect("object")
        .remove("data")
        .expect("data");
    // UploadCerts: name, namespace and a controller reference from metav1.NewControllerRef
    // with GroupVersionKind{Version: "v1", Kind: "Secret"}; no type (the server's Opaque).
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "kubeadm-certs",
                "namespace": "kube-system",
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "blockOwnerDeletion": true,
                    "controller": true,
                    "kind": "Secret",
                    "name": "bootstrap-token-abcdef",
                    "uid": "u"
                }]
            }
        })
    );
    // certsToTransfer with local etcd, named by certOrKeyNameToSecretName.
    let keys: Vec<&String> = data.as_object().expect("data").keys().collect();
    assert_eq!(
        keys,
        [
            "ca.crt",
            "ca.key",
            "etcd-ca.crt",
            "etcd-ca.key",
            "front-proxy-ca.crt",
            "front-proxy-ca.key",
            "sa.key",
            "sa.pub"
        ]
    );
    for (name, content) in &files {
        let sealed = &secret.data.as_ref().expect("data")[&uc::secret_key(name)].0;
        assert_eq!(
            &pki::certkey::decrypt(&key, sealed).expect("decrypts"),
            content.as_ref().expect("given"),
            "{name}"
        );
    }
}
