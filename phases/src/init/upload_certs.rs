//! `init phase upload-certs`: with `--upload-certs`, the control plane's shared certificates
//! and keys go into the `kube-system/kubeadm-certs` Secret, each encrypted with the
//! certificate key, owned by a bootstrap token that expires in two hours (kubeadm:
//! app/cmd/phases/init/uploadcerts.go, phases/copycerts/copycerts.go UploadCerts).
//!
//! The certificate key is a secret: it is printed once, on the line after `Using certificate
//! key:` (never with `--skip-certificate-key-print`), and appears in no log or error.

use std::path::Path;
use std::time::SystemTime;

use agent::host::fs::Fs;
use anyhow::Context;
use components::names;
use k8s_openapi::api::core::v1::Secret;
use manifests::cluster::upload_certs as uc;
use pki::BootstrapToken;

use crate::cluster::Cluster;
use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;
use crate::shared::certs::CertsData;

/// The `upload-certs` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new("upload-certs", "Upload certificates to kubeadm-certs", run).flags(&[
        "config",
        "kubeconfig",
        "upload-certs",
        "certificate-key",
        "skip-certificate-key-print",
        "dry-run",
    ])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let out = d.out.clone();
    if !d.upload_certs {
        say!(
            out,
            "upload-certs",
            "Skipping phase. Please see --upload-certs"
        );
        return Ok(());
    }
    // The etcd CA is shared when etcd runs on the control plane.
    let files = read_shared_files(&d.fs, &d.cert_dir(), d.local_etcd())?;
    // kubeadm: SetCertificateKey, so the closing text's join command shows the same key.
    let key_hex = d
        .cfg
        .certificate_key
        .get_or_insert_with(pki::certkey::generate)
        .clone();
    let key = pki::certkey::parse(&key_hex).context("error decoding certificate key")?;
    let now = d.now;
    let c = d.cluster()?;
    say!(
        out,
        "upload-certs",
        "Storing the certificates in Secret {:?} in the {:?} Namespace",
        names::KUBEADM_CERTS_SECRET,
        names::KUBE_SYSTEM
    );
    upload(c, &key, &files, BootstrapToken::generate(), now).context("error uploading certs")?;
    if !d.skip_certificate_key_print {
        say!(out, "upload-certs", "Using certificate key:");
        out.line(&key_hex);
    }
    Ok(())
}

/// A new random certificate key (`kubeboot certs certificate-key`; kubeadm:
/// copycerts.CreateCertificateKey).
pub fn new_certificate_key() -> String {
    pki::certkey::generate()
}

/// Checks a `--certificate-key` before anything is sent or written.
///
/// # Errors
/// Not 64 hex digits; the message never repeats the key.
pub fn check_certificate_key(key: &str) -> anyhow::Result<()> {
    pki::certkey::parse(key)?;
    Ok(())
}

/// The shared files of the certificate directory `cert_dir`, by kubeadm's name; `None` for
/// one the node does not have, which kubeadm uploads as an empty entry (getDataFromDisk).
///
/// # Errors
/// A file exists but cannot be read.
pub fn read_shared_files(
    fs: &Fs,
    cert_dir: &Path,
    local_etcd: bool,
) -> anyhow::Result<Vec<uc::NamedFile<'static>>> {
    uc::shared_files(local_etcd)
        .map(|f| Ok((f.name, fs.read_if_exists(&cert_dir.join(f.name))?)))
        .collect()
}

/// Creates the short-lived `token` and, owned by its Secret, the `kubeadm-certs` Secret with
/// `files` encrypted under `key`, then the Role and RoleBinding that let bootstrap tokens
/// read it (kubeadm: copycerts.UploadCerts, in its order). Running it again replaces the
/// Secret, owned by the new token.
///
/// # Errors
/// The token exists already, or the API server refused a write.
pub fn upload(
    c: &Cluster,
    key: &[u8; pki::certkey::KEY_LEN],
    files: &[uc::NamedFile],
    token: BootstrapToken,
    now: SystemTime,
) -> anyhow::Result<()> {
    let expiration = pki::token::expiration(now, uc::CERTS_TOKEN_TTL)?
        .expect("the certs token's TTL is two hours, not zero");
    let spec = uc::certs_token(token, expiration);
    crate::token::create_token(c, &spec, true).context("error creating token")?;
    let owner = owner_reference(c, spec.token.id())?;
    c.create_or_update(&uc::kubeadm_certs_secret(key, files, owner))?;
    let (role, binding) = uc::kubeadm_certs_rbac();
    c.create_or_update(&role)?;
    c.create_or_update(&binding)?;
    Ok(())
}

/// The owner reference to the token's Secret, with the UID the API server gave it
/// (copycerts.go getSecretOwnerRef reads the Secret back for it).
fn owner_reference(
    c: &Cluster,
    token_id: &str,
) -> anyhow::Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let name = pki::token::secret_name(token_id);
    let secret: Option<Secret> = c
        .get(Some(names::KUBE_SYSTEM), &name)
        .context("error to get token reference")?;
    let uid = match secret.and_then(|s| s.metadata.uid) {
        Some(uid) => uid,
        // The dry-run recorder keeps nothing it is sent, so it has no UID to give.
        None if c.is_recording() => format!("<uid of {name}>"),
        None => anyhow::bail!(
            "error to get token reference: the Secret \"{}/{name}\" was not found (or has no UID) right after it was created",
            names::KUBE_SYSTEM
        ),
    };
    Ok(uc::token_owner_reference(token_id, &uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::data::tests::test_data;
    use crate::out::Out;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The Secret the recorder was sent, as JSON.
    pub(crate) fn sent(c: &Cluster, resource: &str, name_prefix: &str) -> serde_json::Value {
        c.recorded()
            .into_iter()
            .filter(|r| r.verb == "CREATE" && r.resource == resource)
            .filter_map(|r| r.body)
            .find(|b| {
                b["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name_prefix))
            })
            .expect("sent")
    }

    #[test]
    fn without_the_flag_the_phase_says_kubeadms_skip_message_and_sends_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.api = Some(Cluster::recording(Out::capture()));
        run(&mut d).expect("skipped");
        assert_eq!(
            d.out.captured(),
            "[upload-certs] Skipping phase. Please see --upload-certs\n"
        );
        assert!(d.api.as_ref().expect("set").recorded().is_empty());
        assert_eq!(d.cfg.certificate_key, None);
    }

    #[test]
    fn uploads_kubeadms_objects_in_order_and_prints_the_key_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        crate::init::run(&mut d, &["certs".to_string()]).expect("certs");
        d.upload_certs = true;
        d.cfg.certificate_key = Some(KEY.into());
        let log = Out::capture();
        d.api = Some(Cluster::recording(log.clone()));
        let before = d.out.captured();
        run(&mut d).expect("uploaded");
        let said = d.out.captured()[before.len()..].to_string();
        assert_eq!(
            said,
            format!(
                "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n\
                 [upload-certs] Using certificate key:\n{KEY}\n"
            )
        );
        assert!(!log.captured().contains(KEY), "the key is in no request");
        let c = d.api.as_ref().expect("set");
        let writes: Vec<String> = c
            .recorded()
            .into_iter()
            .filter(|r| r.verb != "GET")
            .map(|r| format!("{} {}", r.verb, r.resource))
            .collect();
        assert_eq!(
            writes,
            [
                "CREATE secrets",
                "CREATE secrets",
                "CREATE roles",
                "CREATE rolebindings"
            ]
        );
        let token = sent(c, "secrets", "bootstrap-token-");
        let secret = sent(c, "secrets", "kubeadm-certs");
        assert_eq!(
            secret["metadata"]["ownerReferences"][0]["name"],
            token["metadata"]["name"]
        );
        let keys: Vec<&str> = secret["data"]
            .as_object()
            .expect("data")
            .keys()
            .map(String::as_str)
            .collect();
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
    }

    #[test]
    fn a_generated_key_is_kept_for_the_join_command_and_can_be_withheld() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        crate::init::run(&mut d, &["certs".to_string()]).expect("certs");
        d.upload_certs = true;
        d.skip_certificate_key_print = true;
        d.api = Some(Cluster::recording(Out::capture()));
        run(&mut d).expect("uploaded");
        let key = d.cfg.certificate_key.clone().expect("generated");
        pki::certkey::parse(&key).expect("a valid key");
        let out = d.out.captured();
        assert!(!out.contains(&key), "{out}");
        assert!(!out.contains("Using certificate key"), "{out}");
    }

    /// The closing text's control-plane join command carries the key, with kubeadm's
    /// warning that the upload expires (cmd/init.go, initDoneTempl).
    #[test]
    fn the_closing_text_shows_the_key_and_its_two_hours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let closing = |upload: bool, skip_print: bool| {
            let mut d = test_data(dir.path());
            d.cfg.cluster.control_plane_endpoint = Some("10.123.0.2:6443".into());
            d.cfg.bootstrap_tokens[0].token = Some("abcdef.0123456789abcdef".into());
            d.cfg.certificate_key = Some(KEY.into());
            d.upload_certs = upload;
            d.skip_certificate_key_print = skip_print;
            crate::init::run(&mut d, &["certs".to_string(), "kubeconfig".to_string()])
                .expect("phases");
            let before = d.out.captured().len();
            crate::init::closing_text(&mut d).expect("closing text");
            d.out.captured()[before..].to_string()
        };
        let text = closing(true, false);
        assert!(
            text.contains(&format!(
                "--control-plane --certificate-key {KEY}\n\n\
                 Please note that the certificate-key gives access to cluster sensitive data, keep it secret!\n\
                 As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use\n\
                 \"kubeboot init phase upload-certs --upload-certs\" to reload certs afterward.\n\n\
                 Then you can join any number of worker nodes"
            )),
            "{text}"
        );
        assert!(text.contains(
            "You can now join any number of the control-plane node running the following command on each as root:\n\n  kubeboot join 10.123.0.2:6443 --token abcdef.0123456789abcdef \\\n"
        ), "{text}");
        let text = closing(true, true);
        assert!(!text.contains(KEY), "{text}");
        assert!(
            text.contains("--control-plane --certificate-key <value withheld>\n"),
            "{text}"
        );
        let text = closing(false, false);
        assert!(
            text.contains("by copying certificate authorities\nand service account keys"),
            "{text}"
        );
        assert!(!text.contains("two hours"), "{text}");
    }

    #[test]
    fn the_token_is_kubeadms_short_lived_proxy_token() {
        let c = Cluster::recording(Out::capture());
        let key = pki::certkey::parse(KEY).expect("valid");
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").expect("valid");
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        upload(&c, &key, &[("ca.crt", None)], token, now).expect("uploaded");
        let secret = sent(&c, "secrets", "bootstrap-token-abcdef");
        let data = secret["data"].as_object().expect("data");
        let decoded = |k: &str| {
            use base64::Engine;
            let b64 = data[k].as_str().expect("base64");
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .expect("base64"),
            )
            .expect("utf-8")
        };
        assert_eq!(
            decoded("description"),
            "Proxy for managing TTL for the kubeadm-certs secret"
        );
        // now (2023-11-14T22:13:20Z) + 2h.
        assert_eq!(decoded("expiration"), "2023-11-15T00:13:20Z");
        let mut keys: Vec<&String> = data.keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["description", "expiration", "token-id", "token-secret"],
            "no usages, no groups: the token authenticates nobody"
        );
    }
}
