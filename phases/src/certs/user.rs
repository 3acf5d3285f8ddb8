//! `kubeconfig user`: a kubeconfig with a client certificate for another user, signed by the
//! cluster CA (kubeadm 1.20: app/cmd/alpha/kubeconfig.go over
//! kubeconfigphase.WriteKubeConfigWithClientCert; kubeboot adds the validity period).

use std::time::Duration;

use anyhow::Context;
use pki::Issuer;

use super::CertsCtx;
use crate::shared::certs::cert_files;

/// Who the kubeconfig is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRequest {
    /// The user name, the certificate's CN.
    pub client_name: String,
    /// The groups, the certificate's O.
    pub organizations: Vec<String>,
    /// How long the certificate is valid.
    pub validity: Duration,
    /// The API server URL.
    pub server: String,
    /// The cluster's name in the file.
    pub cluster_name: String,
}

/// The kubeconfig of `req`, with a new key and a client certificate signed by the cluster CA
/// in the node's certificate directory.
///
/// # Errors
/// The CA certificate or key is missing or unreadable, or signing fails.
pub fn user_kubeconfig(ctx: &CertsCtx, req: &UserRequest) -> anyhow::Result<pki::Kubeconfig> {
    if req.client_name.trim().is_empty() {
        anyhow::bail!("--client-name must not be empty: it is the user name in the certificate");
    }
    let (crt, key) = cert_files(&ctx.cert_dir(), "ca");
    let shown = |p: &std::path::Path| p.display().to_string();
    let ca = Issuer {
        cert_pem: ctx.fs.read_string_if_exists(&crt)?.with_context(|| {
            format!(
                "the cluster CA certificate {:?} is missing; run this on a control-plane node or pass --cert-dir",
                shown(&crt)
            )
        })?,
        key_pem: ctx.fs.read_string_if_exists(&key)?.with_context(|| {
            format!(
                "the cluster CA key {:?} is missing: kubeboot cannot sign a client certificate without it (external CA)",
                shown(&key)
            )
        })?,
    };
    let issued = pki::renew::client_or_server(
        &req.client_name,
        &req.client_name,
        &req.organizations,
        pki::AltNames::default(),
        &[pki::ExtKeyUsage::ClientAuth],
        &ca,
        ctx.cluster.encryption_algorithm,
        req.validity,
        ctx.now,
    )?;
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Ok(pki::kubeconfig::basic_kubeconfig(
        &req.cluster_name,
        &req.server,
        &ca.cert_pem,
        &req.client_name,
        pki::kubeconfig::User {
            client_certificate_data: Some(b64(&issued.cert_pem)),
            client_key_data: Some(b64(&issued.key_pem)),
            ..Default::default()
        },
    ))
}
