//! `certs check-expiration`: reads every certificate kubeadm's renewal manager knows (and
//! kubeboot's own) and every CA, and builds `pki::expiry`'s report (kubeadm:
//! app/cmd/alpha/certs.go, newCmdCertsExpiration).

use std::path::PathBuf;

use anyhow::Context;
use pki::expiry::{CaPresence, ExpirationInfo, Observed, RenewTarget, Source};

use super::CertsCtx;
use crate::shared::certs::cert_files;

/// Where the certificate of `target` is on the node: the `.crt` and `.key` of a PKI pair, or
/// the kubeconfig file.
pub fn target_files(ctx: &CertsCtx, target: &RenewTarget) -> (PathBuf, Option<PathBuf>) {
    match target.source {
        Source::CertDir(spec) => {
            let (crt, key) = cert_files(&ctx.cert_dir(), spec.base_name);
            (crt, Some(key))
        }
        Source::AgentDir(_) => {
            let (crt, key) = agent::webhook::serving_cert_files(&ctx.layout.agent_state_dir());
            (crt, Some(key))
        }
        Source::Kubeconfig(spec) => (ctx.kubeconfig_path(spec.file_name), None),
    }
}

/// The PEM of `target`'s certificate, `None` when its file does not exist.
///
/// # Errors
/// The file cannot be read, or a kubeconfig does not parse or embeds no client certificate.
pub fn read_target_cert(ctx: &CertsCtx, target: &RenewTarget) -> anyhow::Result<Option<String>> {
    let (path, _) = target_files(ctx, target);
    let Some(text) = ctx.fs.read_string_if_exists(&path)? else {
        return Ok(None);
    };
    if matches!(target.source, Source::Kubeconfig(_)) {
        let shown = path.display().to_string();
        let kc = pki::Kubeconfig::from_yaml(&text)
            .with_context(|| format!("failed to load kubeConfig file {shown:?}"))?;
        let pem = kc.client_certificate_pem().with_context(|| {
            format!("kubeConfig file {shown:?} does not contain a valid client certificate")
        })?;
        return Ok(Some(pem));
    }
    Ok(Some(text))
}

/// The CA's certificate PEM (if present) and which of its files exist.
///
/// # Errors
/// The certificate file cannot be read.
pub fn read_ca(ctx: &CertsCtx, ca: &pki::CertSpec) -> anyhow::Result<(Option<String>, CaPresence)> {
    let (crt, key) = cert_files(&ctx.cert_dir(), ca.base_name);
    let pem = ctx.fs.read_string_if_exists(&crt)?;
    let presence = CaPresence {
        cert: pem.is_some(),
        key: ctx.fs.exists(&key),
    };
    Ok((pem, presence))
}

/// The expiry report of the node's PKI.
///
/// # Errors
/// A file cannot be read or a certificate does not parse, naming it.
pub fn check_expiration(ctx: &CertsCtx) -> anyhow::Result<ExpirationInfo> {
    let local_etcd = ctx.local_etcd();
    let targets = pki::expiry::renew_targets(local_etcd);
    let mut certs = Vec::with_capacity(targets.len());
    for t in &targets {
        certs.push((*t, read_target_cert(ctx, t)?));
    }
    let mut cas = Vec::new();
    for ca in pki::expiry::ca_specs(local_etcd) {
        let (pem, presence) = read_ca(ctx, ca)?;
        cas.push((ca, pem, presence));
    }
    let observed: Vec<Observed<'_, RenewTarget>> = certs
        .iter()
        .map(|(t, pem)| Observed {
            what: *t,
            cert_pem: pem.as_deref(),
        })
        .collect();
    let observed_cas: Vec<_> = cas
        .iter()
        .map(|(ca, pem, presence)| {
            (
                Observed {
                    what: *ca,
                    cert_pem: pem.as_deref(),
                },
                *presence,
            )
        })
        .collect();
    let dir = ctx.cert_dir().display().to_string();
    pki::expiry::expiration_info(&observed, &observed_cas, ctx.now)
        .with_context(|| format!("in the certificate directory {dir:?}"))
}
