//! The download side of `--upload-certs`, for `join --control-plane --certificate-key`:
//! reads the `kube-system/kubeadm-certs` Secret, decrypts every entry with the certificate
//! key and writes the shared certificates and keys into the certificate directory (kubeadm:
//! app/cmd/phases/join/controlplaneprepare.go download-certs, phases/copycerts/copycerts.go
//! DownloadCerts).
//!
//! observe (the Secret, the files on disk) → decide (decrypt all, compare; pure) → act
//! (record, write) → the caller says. Nothing is written unless every entry decrypts and no
//! file on disk disagrees, so a wrong key or a node of another cluster stays untouched.

use std::path::{Path, PathBuf};

use agent::host::fs::Fs;
use anyhow::Context;
use components::{Layout, names};
use k8s_openapi::api::core::v1::Secret;
use manifests::cluster::upload_certs::{self as uc, SharedFile};

use crate::cluster::Cluster;
use crate::out::Out;
use crate::say;

/// The line kubeadm prints before it downloads (copycerts.go DownloadCerts).
pub fn announce(out: &Out) {
    say!(
        out,
        "download-certs",
        "Downloading the certificates in Secret {:?} in the {:?} Namespace",
        names::KUBEADM_CERTS_SECRET,
        names::KUBE_SYSTEM
    );
}

/// One file to write: where, what, and whether it is a private key.
#[derive(Debug, PartialEq, Eq)]
struct Planned {
    file: &'static SharedFile,
    content: Vec<u8>,
}

/// What to do with the decrypted Secret, given what the node already has (pure).
///
/// - An entry that is empty in the Secret (the uploading node did not have the file) is
///   skipped, as kubeadm skips it; the etcd CA entries may be absent (external etcd).
/// - A file that exists with the same content is kept; one that differs is an error: kubeadm
///   overwrites it, kubeboot does not replace another cluster's CA or key under a node.
///
/// # Errors
/// A required entry is missing, an entry is not PEM, or a file on disk differs.
fn plan(
    decrypted: &[(&'static SharedFile, Option<Vec<u8>>)],
    existing: &dyn Fn(&SharedFile) -> anyhow::Result<Option<Vec<u8>>>,
    cert_dir: &Path,
) -> anyhow::Result<Vec<Planned>> {
    let mut planned = Vec::new();
    for (file, content) in decrypted {
        let path = cert_dir.join(file.name);
        let Some(content) = content else {
            if file.local_etcd_only {
                continue;
            }
            anyhow::bail!(
                "the Secret {:?} does not include the required certificate or key - name: {}, path: {}",
                names::KUBEADM_CERTS_SECRET,
                file.name,
                path.display()
            );
        };
        if content.is_empty() {
            tracing::info!(
                file = file.name,
                "not saving the file: it is empty in the kubeadm-certs Secret"
            );
            continue;
        }
        if !content.starts_with(b"-----BEGIN ") {
            anyhow::bail!(
                "unknown data found in Secret entry {:?}: not a PEM certificate or key",
                uc::secret_key(file.name)
            );
        }
        match existing(file)? {
            Some(on_disk) if on_disk == *content => {}
            Some(_) => anyhow::bail!(
                "{:?} exists and differs from the cluster's copy in the Secret {:?}: this node holds another cluster's {}; run \"kubeboot reset\" on this node, or remove the file, and join again",
                path.display().to_string(),
                names::KUBEADM_CERTS_SECRET,
                if file.private { "key" } else { "certificate" }
            ),
            None => planned.push(Planned {
                file,
                content: content.clone(),
            }),
        }
    }
    Ok(planned)
}

/// Downloads the shared certificates and keys into `cert_dir` (a path of `layout`) and
/// returns the files it wrote (none when the node has them all already). Keys are written
/// 0600 and certificates 0644, each atomically; the certificate directory and the
/// directories made in it go into the node record first, so `reset` removes what was
/// written. Print [`announce`] before calling it.
///
/// # Errors
/// - the Secret is gone: it lives two hours; the message says how to upload it again;
/// - a malformed key, or one that does not decrypt an entry (`pki::PkiError`);
/// - an entry is missing or not PEM, or a file on disk differs from the cluster's;
/// - the API server could not be asked, or a file could not be read or written.
pub fn download(
    cluster: &Cluster,
    key: &str,
    layout: &Layout,
    cert_dir: &Path,
    fs: &Fs,
) -> anyhow::Result<Vec<PathBuf>> {
    let key = pki::certkey::parse(key).context("error decoding certificate key")?;
    let secret: Secret = cluster
        .get(Some(names::KUBE_SYSTEM), names::KUBEADM_CERTS_SECRET)
        .context("error downloading the secret")?
        .with_context(|| {
            format!(
                "error downloading the secret: Secret {:?} was not found in the {:?} Namespace. The uploaded certificates are deleted two hours after the upload: run \"kubeboot init phase upload-certs --upload-certs\" on a control-plane node to upload them again, and join with the new certificate key it prints",
                names::KUBEADM_CERTS_SECRET,
                names::KUBE_SYSTEM
            )
        })?;
    let data = crate::cluster::secret_data(&secret);
    // Every entry is decrypted before anything is written: no partial result (kubeadm:
    // getDataFromSecret).
    let decrypted = uc::SHARED_FILES
        .iter()
        .map(|f| {
            let entry = data.get(&uc::secret_key(f.name));
            let plain = match entry {
                None => None,
                Some(sealed) if sealed.is_empty() => Some(Vec::new()),
                Some(sealed) => Some(pki::certkey::decrypt(&key, sealed).with_context(|| {
                    format!(
                        "error decoding secret data with provided key (entry {:?})",
                        uc::secret_key(f.name)
                    )
                })?),
            };
            Ok((f, plain))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let existing = |f: &SharedFile| fs.read_if_exists(&cert_dir.join(f.name));
    let planned = plan(&decrypted, &existing, cert_dir)?;
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    record(fs, layout, cert_dir, &planned)?;
    let mut written = Vec::new();
    for p in planned {
        let path = cert_dir.join(p.file.name);
        if p.file.private {
            fs.write_private(&path, &p.content)?;
        } else {
            fs.write_public(&path, &p.content)?;
        }
        written.push(path);
    }
    Ok(written)
}

/// Records the certificate directory (reset removes the PKI files it knows there, as after
/// init's certs phase) and creates the directories the files go to.
fn record(fs: &Fs, layout: &Layout, cert_dir: &Path, planned: &[Planned]) -> anyhow::Result<()> {
    let node_cert_dir = crate::node_record::node_view(layout, cert_dir)?;
    crate::node_record::update(
        fs,
        layout,
        crate::node_record::NodeRecord {
            cert_dirs: [node_cert_dir].into(),
            ..Default::default()
        },
    )?;
    let mut dirs: Vec<PathBuf> = planned
        .iter()
        .filter_map(|p| cert_dir.join(p.file.name).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        // kubeadm: certutil.WriteCert and keyutil.WriteKey make the directories 0755.
        crate::node_record::create_dir(fs, layout, &dir, 0o755)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::init::data::tests::test_data;
    use crate::init::upload_certs;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A cluster holding the Secret `upload-certs` sends for the certificates of a fresh
    /// `init phase certs` in a temporary layout, and that layout's files by name.
    fn uploaded(key: &str) -> (tempfile::TempDir, Cluster, Vec<(&'static str, Vec<u8>)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        crate::init::run(&mut d, &["certs".to_string()]).expect("certs");
        let files = upload_certs::read_shared_files(&d.fs, &d.cert_dir(), true).expect("read");
        let sender = Cluster::recording(Out::capture());
        let token = pki::BootstrapToken::parse("abcdef.0123456789abcdef").expect("valid");
        let key = pki::certkey::parse(key).expect("valid");
        upload_certs::upload(&sender, &key, &files, token, d.now).expect("uploaded");
        let secret = sender
            .recorded()
            .into_iter()
            .filter(|r| r.verb == "CREATE")
            .filter_map(|r| r.body)
            .find(|b| b["metadata"]["name"] == "kubeadm-certs")
            .expect("the Secret was sent");
        let files = files
            .into_iter()
            .map(|(n, c)| (n, c.expect("init made every shared file")))
            .collect();
        (
            dir,
            Cluster::recording(Out::capture()).with_objects([secret]),
            files,
        )
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("written").permissions().mode() & 0o777
    }

    #[test]
    fn the_uploaded_files_round_trip_into_a_fresh_node() {
        let (_init_node, cluster, files) = uploaded(KEY);
        let node = tempfile::tempdir().expect("tempdir");
        let layout = Layout::under(node.path());
        let cert_dir = layout.node_path(Path::new("/etc/kubernetes/pki"));
        let fs = Fs::real();
        let written = download(&cluster, KEY, &layout, &cert_dir, &fs).expect("downloads");
        assert_eq!(written.len(), 8);
        for (name, content) in &files {
            let path = cert_dir.join(name);
            assert_eq!(
                &std::fs::read(&path).expect("written"),
                content,
                "{name} byte for byte"
            );
            let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
            assert_eq!(mode(&path), want, "{name}");
        }
        let record = crate::node_record::read(&fs, &layout)
            .expect("readable")
            .expect("recorded");
        assert!(record.cert_dirs.contains(Path::new("/etc/kubernetes/pki")));
        assert!(
            record
                .created_dirs
                .contains(Path::new("/etc/kubernetes/pki/etcd"))
        );
        // Again: the node has them all, nothing is written.
        let again = download(&cluster, KEY, &layout, &cert_dir, &fs).expect("idempotent");
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_wrong_key_is_a_clear_error_and_writes_nothing() {
        let (_init_node, cluster, _) = uploaded(KEY);
        let node = tempfile::tempdir().expect("tempdir");
        let layout = Layout::under(node.path());
        let cert_dir = layout.node_path(Path::new("/etc/kubernetes/pki"));
        let wrong = pki::certkey::generate();
        let e = download(&cluster, &wrong, &layout, &cert_dir, &Fs::real()).expect_err("wrong key");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("the certificate key does not decrypt")
                && msg.contains("check --certificate-key")
                && msg.contains("kubeboot init phase upload-certs --upload-certs"),
            "{msg}"
        );
        assert!(!msg.contains(&wrong), "the key is never repeated: {msg}");
        assert!(!node.path().join("etc").exists(), "nothing written");
        let e =
            download(&cluster, "abc", &layout, &cert_dir, &Fs::real()).expect_err("malformed key");
        assert!(format!("{e:#}").contains("64 hexadecimal digits"), "{e:#}");
    }

    #[test]
    fn a_missing_secret_says_it_expired_and_how_to_upload_again() {
        let node = tempfile::tempdir().expect("tempdir");
        let layout = Layout::under(node.path());
        let cert_dir = layout.node_path(Path::new("/etc/kubernetes/pki"));
        let e = download(
            &Cluster::recording(Out::capture()),
            KEY,
            &layout,
            &cert_dir,
            &Fs::real(),
        )
        .expect_err("no Secret");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("Secret \"kubeadm-certs\" was not found in the \"kube-system\" Namespace")
                && msg.contains("deleted two hours after the upload")
                && msg.contains("kubeboot init phase upload-certs --upload-certs"),
            "{msg}"
        );
        assert!(!node.path().join("etc").exists(), "nothing written");
    }

    #[test]
    fn another_clusters_ca_on_disk_is_refused_and_left_alone() {
        let (_init_node, cluster, _) = uploaded(KEY);
        // A node that went through another init: its own CA.
        let other = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(other.path());
        crate::init::run(&mut d, &["certs".to_string()]).expect("certs");
        let cert_dir = d.cert_dir();
        let before = std::fs::read(cert_dir.join("ca.crt")).expect("ca.crt");
        let e = download(&cluster, KEY, &d.layout, &cert_dir, &Fs::real()).expect_err("another CA");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("ca.crt\" exists and differs from the cluster's copy")
                && msg.contains("kubeboot reset"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(cert_dir.join("ca.crt")).expect("kept"),
            before
        );
    }

    #[test]
    fn empty_entries_are_skipped_and_required_ones_must_be_there() {
        let ca = &uc::SHARED_FILES[0];
        let etcd_ca = uc::SHARED_FILES
            .iter()
            .find(|f| f.name == "etcd/ca.crt")
            .expect("etcd CA");
        let none = |_: &SharedFile| Ok(None);
        let pem = b"-----BEGIN CERTIFICATE-----\n".to_vec();
        let p = plan(
            &[(ca, Some(pem.clone())), (etcd_ca, Some(Vec::new()))],
            &none,
            Path::new("/pki"),
        )
        .expect("plan");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].file.name, "ca.crt");
        let p = plan(&[(etcd_ca, None)], &none, Path::new("/pki")).expect("external etcd");
        assert!(p.is_empty());
        let e = plan(&[(ca, None)], &none, Path::new("/pki")).expect_err("required");
        assert!(
            e.to_string()
                .contains("does not include the required certificate or key - name: ca.crt"),
            "{e}"
        );
        let e =
            plan(&[(ca, Some(b"junk".to_vec()))], &none, Path::new("/pki")).expect_err("not PEM");
        assert!(e.to_string().contains("unknown data found"), "{e}");
    }
}
