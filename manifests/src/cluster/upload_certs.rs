//! The objects of `init phase upload-certs --upload-certs` (kubeadm:
//! phases/copycerts/copycerts.go UploadCerts): the `kube-system/kubeadm-certs` Secret holding
//! the control plane's shared certificates and keys, each entry encrypted with the
//! certificate key (`pki::certkey`); the short-lived bootstrap token Secret that owns it, so
//! that the garbage collector deletes the certificates when the token cleaner deletes the
//! expired token; and the Role and RoleBinding `kubeadm:kubeadm-certs` that let bootstrap
//! tokens read it.

use std::collections::BTreeMap;
use std::time::Duration;

use components::names;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use pki::BootstrapToken;

use super::bootstrap_token::TokenSpec;
use super::meta;
use super::rbac::{group, role, role_binding};

/// The description of the token that owns the Secret (copycerts.go,
/// createShortLivedBootstrapToken).
pub const CERTS_TOKEN_DESCRIPTION: &str = "Proxy for managing TTL for the kubeadm-certs secret";
/// How long the token, and so the Secret, lives (constants.DefaultCertTokenDuration).
pub const CERTS_TOKEN_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// One file the control-plane nodes share, by its name under the certificate directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFile {
    /// kubeadm's name (`ca.crt`, `etcd/ca.key`): the path under the certificate directory.
    pub name: &'static str,
    /// A private key (written 0600); certificates and `sa.pub` are public.
    pub private: bool,
    /// Shared only when etcd is local (the etcd CA); with external etcd kubeadm uploads
    /// `external-etcd*` entries instead, which kubeboot does not (see [`shared_files`]).
    pub local_etcd_only: bool,
}

const fn file(name: &'static str, private: bool, local_etcd_only: bool) -> SharedFile {
    SharedFile {
        name,
        private,
        local_etcd_only,
    }
}

/// Every file kubeadm copies between control-plane nodes (copycerts.go, certsToTransfer).
pub const SHARED_FILES: &[SharedFile] = &[
    file("ca.crt", false, false),
    file("ca.key", true, false),
    file("front-proxy-ca.crt", false, false),
    file("front-proxy-ca.key", true, false),
    file("sa.pub", false, false),
    file("sa.key", true, false),
    file("etcd/ca.crt", false, true),
    file("etcd/ca.key", true, true),
];

/// The files shared in a cluster whose etcd is `local` or not.
///
/// With external etcd kubeadm also uploads the external etcd client certificate, key and
/// CA from their configured paths (`external-etcd.crt`, ...); kubeboot uploads the cluster's
/// own PKI only, and a joining node takes the external etcd credentials from its own
/// configuration.
pub fn shared_files(local_etcd: bool) -> impl Iterator<Item = &'static SharedFile> {
    SHARED_FILES
        .iter()
        .filter(move |f| local_etcd || !f.local_etcd_only)
}

/// A shared file by its name and its content, `None` when the node does not have it.
pub type NamedFile<'a> = (&'a str, Option<Vec<u8>>);

/// The Secret data key of a shared file: `/` becomes `-` (copycerts.go,
/// certOrKeyNameToSecretName: `etcd/ca.crt` is `etcd-ca.crt`).
pub fn secret_key(name: &str) -> String {
    name.replace('/', "-")
}

/// The short-lived token that owns the Secret: a description and an expiry, no usages and
/// no extra groups, so it can authenticate nobody (copycerts.go,
/// createShortLivedBootstrapToken). `expiration` is `pki::token::expiration(now,
/// CERTS_TOKEN_TTL)`.
pub fn certs_token(token: BootstrapToken, expiration: String) -> TokenSpec {
    TokenSpec {
        token,
        description: CERTS_TOKEN_DESCRIPTION.into(),
        expiration: Some(expiration),
        usages: vec![],
        groups: vec![],
    }
}

/// The owner reference to the token's Secret, as `metav1.NewControllerRef` makes it
/// (copycerts.go, getSecretOwnerRef): `uid` is the one the API server gave that Secret.
pub fn token_owner_reference(token_id: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: pki::token::secret_name(token_id),
        uid: uid.into(),
        block_owner_deletion: Some(true),
        controller: Some(true),
    }
}

/// The Secret `kube-system/kubeadm-certs`: one entry per shared file, named by
/// [`secret_key`], holding the file encrypted with `key` (`pki::certkey::encrypt`, a fresh
/// nonce each); a file the node does not have is an empty entry, as kubeadm uploads it
/// (getDataFromDisk), which a joining node skips.
pub fn kubeadm_certs_secret(
    key: &[u8; pki::certkey::KEY_LEN],
    files: &[NamedFile],
    owner: OwnerReference,
) -> Secret {
    let data: BTreeMap<String, ByteString> = files
        .iter()
        .map(|(name, content)| {
            let sealed = content
                .as_deref()
                .map(|c| pki::certkey::encrypt(key, c))
                .unwrap_or_default();
            (secret_key(name), ByteString(sealed))
        })
        .collect();
    let mut metadata = meta(names::KUBEADM_CERTS_SECRET, Some(names::KUBE_SYSTEM));
    metadata.owner_references = Some(vec![owner]);
    Secret {
        metadata,
        data: Some(data),
        ..Default::default()
    }
}

/// The Role and RoleBinding `kube-system/kubeadm:kubeadm-certs`: `get` on that one Secret for
/// the default bootstrap token group (copycerts.go, createRBAC).
pub fn kubeadm_certs_rbac() -> (Role, RoleBinding) {
    let rule = PolicyRule {
        verbs: vec!["get".into()],
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        resource_names: Some(vec![names::KUBEADM_CERTS_SECRET.into()]),
        ..Default::default()
    };
    (
        role(names::KUBEADM_CERTS_ROLE, names::KUBE_SYSTEM, vec![rule]),
        role_binding(
            names::KUBEADM_CERTS_ROLE,
            names::KUBE_SYSTEM,
            vec![group(names::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP)],
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_files_follow_the_etcd_mode() {
        let local: Vec<&str> = shared_files(true).map(|f| f.name).collect();
        assert_eq!(local.len(), 8);
        assert!(local.contains(&"etcd/ca.key"));
        let external: Vec<&str> = shared_files(false).map(|f| f.name).collect();
        assert_eq!(
            external,
            [
                "ca.crt",
                "ca.key",
                "front-proxy-ca.crt",
                "front-proxy-ca.key",
                "sa.pub",
                "sa.key"
            ]
        );
        let private: Vec<&str> = SHARED_FILES
            .iter()
            .filter(|f| f.private)
            .map(|f| f.name)
            .collect();
        assert_eq!(
            private,
            ["ca.key", "front-proxy-ca.key", "sa.key", "etcd/ca.key"]
        );
    }

    #[test]
    fn entries_decrypt_with_the_key_and_missing_files_are_empty() {
        let key = pki::certkey::parse(&pki::certkey::generate()).expect("valid");
        let secret = kubeadm_certs_secret(
            &key,
            &[("etcd/ca.crt", Some(b"etcd CA".to_vec())), ("sa.pub", None)],
            token_owner_reference("abcdef", "uid-1"),
        );
        let data = secret.data.expect("data");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["etcd-ca.crt", "sa.pub"],
            "data keys as certOrKeyNameToSecretName"
        );
        assert_eq!(
            pki::certkey::decrypt(&key, &data["etcd-ca.crt"].0).expect("same key"),
            b"etcd CA"
        );
        assert!(data["sa.pub"].0.is_empty());
    }
}
