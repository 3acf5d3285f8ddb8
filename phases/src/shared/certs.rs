//! `phase certs`: the cluster's certificate authorities, certificates and the service-account
//! key pair (kubeadm: app/cmd/phases/init/certs.go). Sub-phases come from `pki::CERTS`, as
//! kubeadm builds them from its cert list. Shared by `init` and `join --control-plane`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use agent::host::fs::Fs;
use anyhow::Context;
use pki::{CertSpec, Decision, Issuer};

use crate::out::Out;
use crate::runner::Phase;
use crate::say;

/// What the certs phases need from a command's run data.
pub trait CertsData {
    /// The inputs certificates are issued from.
    fn cert_inputs(&self) -> pki::CertInputs;
    /// The certificate directory (mapped into the layout).
    fn cert_dir(&self) -> PathBuf;
    /// File access.
    fn fs(&self) -> &Fs;
    /// User output.
    fn out(&self) -> &Out;
    /// The issuing time.
    fn now(&self) -> SystemTime;
    /// Whether etcd runs locally (the etcd certificates are only made then).
    fn local_etcd(&self) -> bool;
    /// Whether this run resumes an interrupted one of the same command: a key without its
    /// certificate is then that run's, killed between writing the two, and is replaced.
    fn resuming(&self) -> bool {
        false
    }
    /// Node paths (the node record lives there).
    fn layout(&self) -> &components::Layout;
}

/// Records the certificate directory (reset deletes the PKI files kubeboot knows there) and
/// creates `dir` in it, recording the directories it creates.
fn record_and_create<D: CertsData>(d: &D, dir: &Path, mode: u32) -> anyhow::Result<()> {
    let layout = d.layout();
    let cert_dir = crate::node_record::node_view(layout, &d.cert_dir())?;
    crate::node_record::update(
        d.fs(),
        layout,
        crate::node_record::NodeRecord {
            cert_dirs: [cert_dir].into(),
            ..Default::default()
        },
    )?;
    crate::node_record::create_dir(d.fs(), layout, dir, mode)
}

impl CertsData for crate::init::InitData {
    fn cert_inputs(&self) -> pki::CertInputs {
        pki::CertInputs::from_config(&self.cfg)
    }
    fn cert_dir(&self) -> PathBuf {
        crate::init::InitData::cert_dir(self)
    }
    fn fs(&self) -> &Fs {
        &self.fs
    }
    fn out(&self) -> &Out {
        &self.out
    }
    fn now(&self) -> SystemTime {
        self.now
    }
    fn local_etcd(&self) -> bool {
        matches!(self.cfg.cluster.etcd, components::config::Etcd::Local(_))
    }
    fn resuming(&self) -> bool {
        self.resumed.is_some()
    }
    fn layout(&self) -> &components::Layout {
        &self.layout
    }
}

const FLAGS: &[&str] = &[
    "cert-dir",
    "config",
    "kubernetes-version",
    "apiserver-advertise-address",
    "apiserver-cert-extra-sans",
    "control-plane-endpoint",
    "service-cidr",
    "service-dns-domain",
    "node-name",
    "dry-run",
];

/// The `certs` phase and one sub-phase per certificate, plus `sa`.
pub fn phase<D: CertsData + 'static>() -> Phase<D> {
    let mut children: Vec<Phase<D>> = pki::CERTS
        .iter()
        .map(|spec: &'static CertSpec| {
            let p = Phase::new(spec.name, spec.long_name, move |d: &mut D| {
                run_cert(d, spec)
            })
            .flags(FLAGS);
            if spec.local_etcd_only {
                p.when(|d: &D| d.local_etcd())
            } else {
                p
            }
        })
        .collect();
    children.push(
        Phase::new(
            "sa",
            "Generate a private key for signing service account tokens along with its public key",
            run_sa,
        )
        .flags(&["cert-dir", "config", "dry-run"]),
    );
    let mut certs = Phase::new("certs", "Certificate generation", |d: &mut D| {
        say!(
            d.out(),
            "certs",
            "Using certificateDir folder {:?}",
            d.cert_dir().display().to_string()
        );
        Ok(())
    })
    .flags(FLAGS);
    certs.children = children;
    certs
}

/// The `.crt` and `.key` paths of a certificate.
pub fn cert_files(dir: &Path, base_name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{base_name}.crt")),
        dir.join(format!("{base_name}.key")),
    )
}

/// The cluster CA certificate, which `certs/ca` (or the user) must have written.
///
/// # Errors
/// A missing file, naming the phase that writes it.
pub fn read_ca_cert(fs: &Fs, cert_dir: &Path) -> anyhow::Result<String> {
    let (crt, _) = cert_files(cert_dir, "ca");
    fs.read_string_if_exists(&crt)?.with_context(|| {
        format!(
            "the CA certificate {:?} is missing; run \"kubeboot init phase certs ca\" first",
            crt.display().to_string()
        )
    })
}

fn read(fs: &Fs, path: &Path) -> anyhow::Result<Option<String>> {
    fs.read_string_if_exists(path)
}

/// Loads the CA that signs `spec`, which an earlier phase (or the user) must have put there.
fn issuer<D: CertsData>(d: &D, spec: &CertSpec) -> anyhow::Result<Option<Issuer>> {
    let Some(ca) = spec.ca_spec() else {
        return Ok(None);
    };
    let (crt, key) = cert_files(&d.cert_dir(), ca.base_name);
    let cert_pem = read(d.fs(), &crt)?.with_context(|| {
        format!(
            "the {:?} CA certificate {:?} is missing; run \"kubeboot init phase certs {}\" first",
            ca.base_name,
            crt.display().to_string(),
            ca.name
        )
    })?;
    let key_pem = read(d.fs(), &key)?.with_context(|| {
        format!(
            "the {:?} CA key {:?} is missing (kubeboot cannot sign {:?} without it); put the CA key there, or provide the {:?} certificate and key yourself",
            ca.base_name,
            key.display().to_string(),
            spec.base_name,
            spec.base_name
        )
    })?;
    Ok(Some(Issuer { cert_pem, key_pem }))
}

/// Reuses or issues kubeboot's own serving certificate of the agent's admission webhook, in
/// the agent's directory rather than the certificate directory (see agent::webhook for why).
/// Not part of `certs all`: that writes only into `--cert-dir`, as kubeadm's does; the agent
/// start issues it, right before the agent that serves it starts.
///
/// # Errors
/// The CA cannot be read, or the file cannot be written.
pub fn agent_webhook_cert<D: CertsData>(d: &mut D) -> anyhow::Result<()> {
    let webhook = &pki::KUBEBOOT_AGENT_WEBHOOK_CERT;
    // Only a node holding the cluster CA (a control-plane node) serves the webhook; elsewhere
    // the agent runs without it, as it does without its kubeconfig.
    let (ca_crt, ca_key) = cert_files(&d.cert_dir(), "ca");
    if !(d.fs().exists(&ca_crt) && d.fs().exists(&ca_key)) {
        return Ok(());
    }
    let agent_dir = d.layout().agent_state_dir();
    let (crt, key) = agent::webhook::serving_cert_files(&agent_dir);
    crate::node_record::create_dir(d.fs(), d.layout(), &agent_dir, 0o700)?;
    run_cert_files(d, webhook, &crt, &key, 0o700)
}

fn run_cert<D: CertsData>(d: &mut D, spec: &'static CertSpec) -> anyhow::Result<()> {
    let (crt, key) = cert_files(&d.cert_dir(), spec.base_name);
    run_cert_files(d, spec, &crt, &key, 0o755)
}

/// Reuses or issues the certificate `spec` at `crt` and its key at `key`; their directory gets
/// `dir_mode`.
fn run_cert_files<D: CertsData>(
    d: &mut D,
    spec: &'static CertSpec,
    crt: &Path,
    key: &Path,
    dir_mode: u32,
) -> anyhow::Result<()> {
    let dir = d.cert_dir();
    let existing_cert = read(d.fs(), crt)?;
    let mut existing_key = read(d.fs(), key)?;
    // The key is written first: a run killed before the certificate leaves the key alone.
    if existing_cert.is_none() && existing_key.is_some() && d.resuming() {
        say!(
            d.out(),
            "certs",
            "Replacing {:?}: the interrupted init wrote it but not its certificate",
            key.display().to_string()
        );
        existing_key = None;
    }
    let issuer = issuer(d, spec)?;
    let inputs = d.cert_inputs();
    let decision = pki::decide(
        spec,
        &inputs,
        existing_cert.as_deref(),
        existing_key.as_deref(),
        issuer.as_ref().map(|i| i.cert_pem.as_str()),
        d.now(),
    )
    .with_context(|| format!("{:?}", crt.display().to_string()))?;
    match decision {
        Decision::Reuse if spec.is_ca() => say!(
            d.out(),
            "certs",
            "Using existing {} certificate authority",
            spec.base_name
        ),
        Decision::Reuse => say!(
            d.out(),
            "certs",
            "Using existing {} certificate and key on disk",
            spec.base_name
        ),
        Decision::Create => {
            let issued = pki::issue(spec, &inputs, issuer.as_ref(), d.now())?;
            record_and_create(d, crt.parent().unwrap_or(&dir), dir_mode)?;
            d.fs().write_private(key, issued.key_pem.as_bytes())?;
            d.fs().write_public(crt, issued.cert_pem.as_bytes())?;
            say!(
                d.out(),
                "certs",
                "Generating {:?} certificate and key",
                spec.base_name
            );
            let sans = pki::alt_names(spec, &inputs)?;
            if !sans.dns_names.is_empty() || !sans.ips.is_empty() {
                let ips: Vec<String> = sans.ips.iter().map(|i| i.to_string()).collect();
                say!(
                    d.out(),
                    "certs",
                    "{} serving cert is signed for DNS names [{}] and IPs [{}]",
                    spec.base_name,
                    sans.dns_names.join(" "),
                    ips.join(" ")
                );
            }
        }
    }
    Ok(())
}

fn run_sa<D: CertsData>(d: &mut D) -> anyhow::Result<()> {
    let dir = d.cert_dir();
    let key_path = dir.join(format!("{}.key", pki::SA_BASE_NAME));
    let pub_path = dir.join(format!("{}.pub", pki::SA_BASE_NAME));
    if let Some(existing) = read(d.fs(), &key_path)? {
        let public = pki::check_sa_key(&existing, read(d.fs(), &pub_path)?.as_deref())
            .with_context(|| format!("{:?}", key_path.display().to_string()))?;
        if !d.fs().exists(&pub_path) {
            record_and_create(d, &dir, 0o755)?;
            d.fs().write_public(&pub_path, public.as_bytes())?;
        }
        say!(d.out(), "certs", "Using the existing \"sa\" key");
        return Ok(());
    }
    let pair = pki::sa_key_pair(d.cert_inputs().algorithm)?;
    record_and_create(d, &dir, 0o755)?;
    d.fs()
        .write_private(&key_path, pair.private_pem.as_bytes())?;
    d.fs().write_public(&pub_path, pair.public_pem.as_bytes())?;
    say!(d.out(), "certs", "Generating \"sa\" key and public key");
    Ok(())
}
