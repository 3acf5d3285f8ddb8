//! The certificates each component's step renews, as kubeadm's upgrade does
//! (renewCertsByComponent).

use std::path::PathBuf;

use components::names;

use super::apply::Request;
use crate::out::Out;
use crate::say;

/// The certificates kubeadm renews with each component (renewCertsByComponent).
pub fn certificates_of(component: &str) -> &'static [&'static str] {
    match component {
        names::ETCD => &["etcd-server", "etcd-peer", "etcd-healthcheck-client"],
        names::KUBE_APISERVER => &[
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
        ],
        names::KUBE_CONTROLLER_MANAGER => &["controller-manager.conf"],
        names::KUBE_SCHEDULER => &["scheduler.conf"],
        _ => &[],
    }
}

/// What the certificate code works from on this node, for the upgrade's renewals.
pub(super) fn certs_ctx(
    req: &Request,
    view: &super::observe::ClusterView,
) -> crate::certs::CertsCtx {
    crate::certs::CertsCtx {
        layout: req.inputs.layout.clone(),
        fs: req.inputs.fs.clone(),
        out: Out::capture(),
        cluster: view.cluster.clone(),
        cert_dir_flag: None,
        now: req.inputs.now,
    }
}

/// The renewal targets named `names_`, as the certificate code lists them.
pub(super) fn renew_targets(
    view: &super::observe::ClusterView,
    names_: &[&str],
) -> Vec<pki::expiry::RenewTarget> {
    let local_etcd = matches!(view.cluster.etcd, components::config::Etcd::Local(_));
    pki::expiry::renew_targets(local_etcd)
        .into_iter()
        .filter(|t| names_.contains(&t.name))
        .collect()
}

/// The files of the certificates named `names_`: the certificate (or kubeconfig) and, for a
/// PKI pair, its key.
pub(super) fn renewed_files(
    req: &Request,
    view: &super::observe::ClusterView,
    names_: &[&str],
) -> Vec<(PathBuf, Option<PathBuf>)> {
    let ctx = certs_ctx(req, view);
    renew_targets(view, names_)
        .iter()
        .map(|t| crate::certs::expiration::target_files(&ctx, t))
        .collect()
}

pub(super) fn renew(
    req: &Request,
    out: &Out,
    view: &super::observe::ClusterView,
    names_: &[&str],
) -> anyhow::Result<()> {
    if names_.is_empty() {
        return Ok(());
    }
    let ctx = certs_ctx(req, view);
    let targets = renew_targets(view, names_);
    let done = crate::certs::renew::renew(&ctx, &targets, false, &req.inputs.fs)?;
    let renewed: Vec<&str> = done
        .iter()
        .filter(|(_, r)| *r == crate::certs::renew::Renewal::Renewed)
        .map(|(t, _)| t.name)
        .collect();
    if !renewed.is_empty() {
        say!(
            out,
            "upgrade/staticpods",
            "Renewed the certificates {}",
            renewed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_component_renews_kubeadms_certificates() {
        assert_eq!(
            certificates_of(names::KUBE_APISERVER),
            &[
                "apiserver",
                "apiserver-kubelet-client",
                "apiserver-etcd-client",
                "front-proxy-client"
            ]
        );
        assert_eq!(certificates_of(names::KUBE_SCHEDULER), &["scheduler.conf"]);
        assert!(certificates_of(names::KUBELET).is_empty());
    }
}
