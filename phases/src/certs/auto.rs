//! The renewer `kubeboot agent` injects into the agent ([`agent::cert_renewal::Renewer`]): the
//! node's renewable certificates as `certs check-expiration` reads them, their renewal as
//! `certs renew <name>` does it, and the `CertificateRenewed` Event on the Node. The window
//! is the cluster's `certificateRenewalWindow`, read with the rest of the ClusterConfiguration
//! from kubeadm-config through admin.conf at every check (a changed window applies within the
//! agent's next check), and kept for when the API cannot be reached.
//!
//! A worker holds no CA key: what it can renew is kube-proxy's credential
//! (`/var/lib/kube-proxy/kubeconfig.conf`, made at join through a CertificateSigningRequest,
//! `phases::join::kube_proxy`), and it renews it the same way: a new key made here, a new
//! request `kubeboot-kube-proxy-<node>-<digest>` with the node's own kubelet identity, which the
//! control-plane agents approve (`agent::csr_approval`) and kube-controller-manager signs. Its
//! window is a quarter of the certificate's own lifetime, at most 90 days (the signer's
//! `--cluster-signing-duration` sets the lifetime, not the cluster's configuration, which a
//! node identity may not read). The kubelet's own credential rotates by itself; the agent on a
//! worker uses the kubelet's.
//!
//! A control-plane node under the agent runner has a kube-proxy credential too, issued by
//! init (or a control-plane join) from the CA on the node with the cluster's validity; `certs
//! renew` does not list it (kubeadm has no such file), so the agent renews it here, from the
//! same CA, keeping its subject.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use agent::cert_renewal::{Expiry, Inspection, Renewer};
use agent::host::fs::Fs;
use anyhow::Context;
use components::config::ClusterConfig;
use components::{Layout, names};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::CertsCtx;
use super::expiration::{read_ca, read_target_cert};
use super::renew::{Renewal, renew};
use crate::cluster::Cluster;
use crate::out::Out;

/// The agent's component name in Events (the kubelet's is `kubelet`).
pub const EVENT_COMPONENT: &str = "kubeboot-agent";

/// The name a worker's kube-proxy credential has in the renewal loop.
pub const KUBE_PROXY_CREDENTIAL: &str = "kube-proxy";

/// How long the control-plane agents and kube-controller-manager may take to approve and
/// sign a worker's renewal request.
const APPROVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The node's certificates, renewed with the cluster's settings.
pub struct NodeRenewer {
    layout: Layout,
    node_name: String,
    /// The cluster's configuration as last read from the API.
    known: Mutex<Option<ClusterConfig>>,
}

impl NodeRenewer {
    /// A renewer for the node `node_name` at `layout`.
    pub fn new(layout: Layout, node_name: &str) -> Self {
        NodeRenewer {
            layout,
            node_name: node_name.to_string(),
            known: Mutex::new(None),
        }
    }

    /// A renewer that already knows the cluster's configuration, used until the API answers
    /// (tests; a node whose API is down).
    pub fn with_cluster_config(layout: Layout, node_name: &str, cluster: ClusterConfig) -> Self {
        NodeRenewer {
            layout,
            node_name: node_name.to_string(),
            known: Mutex::new(Some(cluster)),
        }
    }

    fn kubelet_conf(&self) -> PathBuf {
        self.layout.kubeconfig(names::KUBELET_KUBECONFIG)
    }

    fn kube_proxy_conf(&self) -> PathBuf {
        manifests::addons::kube_proxy::node_kubeconfig_path(&self.layout)
    }

    /// A worker's kube-proxy credential, if the node has one.
    fn worker_inspect(&self) -> anyhow::Result<Inspection> {
        let fs = Fs::real();
        let path = self.kube_proxy_conf();
        let shown = path.display().to_string();
        let nothing = Inspection {
            window: components::config::default_renewal_window(
                components::config::DEFAULT_CERTIFICATE_VALIDITY,
            ),
            certs: Vec::new(),
        };
        let Some(yaml) = fs.read_string_if_exists(&path)? else {
            return Ok(nothing);
        };
        // A kubeconfig with another kind of credential is not kubeboot's to renew.
        let Ok(pem) = pki::Kubeconfig::from_yaml(&yaml).and_then(|k| k.client_certificate_pem())
        else {
            return Ok(nothing);
        };
        let info = pki::cert_info(&pem).with_context(|| format!("the certificate in {shown:?}"))?;
        let lifetime = info
            .not_after
            .duration_since(info.not_before)
            .unwrap_or_default();
        Ok(Inspection {
            window: components::config::default_renewal_window(lifetime),
            certs: vec![Expiry {
                name: KUBE_PROXY_CREDENTIAL.to_string(),
                not_after: info.not_after,
                renewable: self.kubelet_conf().exists(),
            }],
        })
    }

    /// Renews a worker's kube-proxy credential through a CertificateSigningRequest made with
    /// the node's kubelet identity (as `join` made it); the agent restarts kube-proxy.
    fn worker_renew(&self) -> anyhow::Result<Vec<String>> {
        let fs = Fs::real();
        let path = self.kube_proxy_conf();
        let shown = path.display().to_string();
        let yaml = fs
            .read_string_if_exists(&path)?
            .with_context(|| format!("{shown:?} disappeared"))?;
        let ca_path = self.layout.default_cert_dir().join("ca.crt");
        let ca = fs.read_string_if_exists(&ca_path)?.with_context(|| {
            format!(
                "the cluster CA certificate {:?} is missing",
                ca_path.display().to_string()
            )
        })?;
        let key = pki::PrivateKey::generate(components::config::KeyAlgorithm::EcdsaP256)?;
        let csr = pki::csr::client_csr(&key, names::KUBE_PROXY_USER, &[])?;
        let name = format!(
            "{}-{}",
            agent::csr_approval::request_name(&self.node_name),
            crate::join::kubelet_start::short_digest(&csr)
        );
        tracing::info!(request = %name, "requesting a renewed client certificate for kube-proxy");
        let cert = Cluster::from_kubeconfig(&self.kubelet_conf())?
            .request_certificate(
                &name,
                names::KUBE_APISERVER_CLIENT_SIGNER,
                &csr,
                APPROVAL_TIMEOUT,
                |elapsed| tracing::info!(request = %name, ?elapsed, "waiting for the approval"),
            )
            .context("kube-proxy's renewed certificate was not issued")?;
        let new = pki::kubeconfig::replace_client_cert(
            "kube-proxy kubeconfig.conf",
            &yaml,
            &cert,
            key.to_pem(),
            &ca,
        )?;
        fs.write_private(&path, new.as_bytes())?;
        Ok(vec![KUBE_PROXY_CREDENTIAL.to_string()])
    }

    fn admin_conf(&self) -> PathBuf {
        self.layout.kubeconfig(names::ADMIN_KUBECONFIG)
    }

    fn ctx(&self, cluster: ClusterConfig) -> CertsCtx {
        CertsCtx {
            layout: self.layout.clone(),
            fs: Fs::real(),
            out: Out::capture(),
            cluster,
            cert_dir_flag: None,
            now: SystemTime::now(),
        }
    }

    /// The cluster's configuration: from the API, else as last read. Never read yet and the
    /// API unreachable: kubeadm's defaults only if a certificate already expired (the API may
    /// be down because of it: renewing is the way back), else an error (renewing with
    /// settings that may not be the cluster's could change its certificates' validity).
    fn cluster(&self) -> anyhow::Result<ClusterConfig> {
        let admin = self.admin_conf();
        let read = if admin.exists() {
            super::from_cluster(&admin, &Out::capture(), "renew")
        } else {
            Err(anyhow::anyhow!(
                "{:?} does not exist",
                admin.display().to_string()
            ))
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(c) => {
                *known = Some(c.clone());
                Ok(c)
            }
            Err(_) if known.is_some() => Ok(known.clone().expect("checked")),
            Err(e) => {
                let defaults = super::default_init_config()?.cluster;
                let ctx = self.ctx(defaults.clone());
                let now = SystemTime::now();
                if expiries(&ctx)?
                    .iter()
                    .any(|c| c.renewable && c.not_after <= now)
                {
                    tracing::warn!(
                        "the cluster's configuration cannot be read ({e:#}) and a certificate has expired: renewing with kubeadm's defaults"
                    );
                    return Ok(defaults);
                }
                Err(e).context("the cluster's configuration (kube-system/kubeadm-config) cannot be read yet; certificates are renewed once it can")
            }
        }
    }

    /// True when the node holds no CA key: a worker, which renews nothing here.
    fn has_no_ca_key(&self) -> bool {
        let pki = self.layout.default_cert_dir();
        !pki.join("ca.key").exists() && !pki.join("etcd/ca.key").exists()
    }
}

/// The client certificate of kube-proxy's kubeconfig on the node, with the kubeconfig, if
/// there is one (a kubeconfig with another kind of credential is not kubeboot's to renew).
fn kube_proxy_credential(ctx: &CertsCtx) -> anyhow::Result<Option<(String, String)>> {
    let path = manifests::addons::kube_proxy::node_kubeconfig_path(&ctx.layout);
    let Some(yaml) = ctx.fs.read_string_if_exists(&path)? else {
        return Ok(None);
    };
    let pem = pki::Kubeconfig::from_yaml(&yaml).and_then(|k| k.client_certificate_pem());
    Ok(pem.ok().map(|pem| (yaml, pem)))
}

/// Renews kube-proxy's credential on a node that holds the cluster CA's key.
fn renew_kube_proxy_locally(ctx: &CertsCtx) -> anyhow::Result<bool> {
    let Some((yaml, pem)) = kube_proxy_credential(ctx)? else {
        return Ok(false);
    };
    let pki_dir = ctx.cert_dir();
    let ca = pki::Issuer {
        cert_pem: ctx
            .fs
            .read_string_if_exists(&pki_dir.join("ca.crt"))?
            .context("the cluster CA certificate is missing")?,
        key_pem: ctx
            .fs
            .read_string_if_exists(&pki_dir.join("ca.key"))?
            .context("the cluster CA key is missing")?,
    };
    let issued = pki::renew::renew(
        &pem,
        KUBE_PROXY_CREDENTIAL,
        &ca,
        "ca",
        ctx.cluster.encryption_algorithm,
        ctx.cluster.certificate_validity,
        ctx.now,
    )?;
    let new = pki::kubeconfig::replace_client_cert(
        "kube-proxy kubeconfig.conf",
        &yaml,
        &issued.cert_pem,
        &issued.key_pem,
        &ca.cert_pem,
    )?;
    let path = manifests::addons::kube_proxy::node_kubeconfig_path(&ctx.layout);
    ctx.fs.write_private(&path, new.as_bytes())?;
    Ok(true)
}

/// The node's renewable certificates that exist, with their NotAfter.
fn expiries(ctx: &CertsCtx) -> anyhow::Result<Vec<Expiry>> {
    let mut out = Vec::new();
    if let Some((_, pem)) = kube_proxy_credential(ctx)? {
        let info = pki::cert_info(&pem).context("kube-proxy's certificate")?;
        out.push(Expiry {
            name: KUBE_PROXY_CREDENTIAL.to_string(),
            not_after: info.not_after,
            renewable: read_ca(ctx, pki::cert_spec("ca").context("the CA's spec")?)?
                .1
                .key,
        });
    }
    for t in pki::expiry::renew_targets(ctx.local_etcd()) {
        let Some(pem) = read_target_cert(ctx, &t)? else {
            continue;
        };
        let info = pki::cert_info(&pem).with_context(|| format!("certificate {:?}", t.name))?;
        let (_, ca) = read_ca(ctx, t.ca)?;
        out.push(Expiry {
            name: t.name.to_string(),
            not_after: info.not_after,
            renewable: ca.key,
        });
    }
    Ok(out)
}

impl Renewer for NodeRenewer {
    fn inspect(&self) -> anyhow::Result<Inspection> {
        if self.has_no_ca_key() {
            return self.worker_inspect();
        }
        let cluster = self.cluster()?;
        let window = cluster.certificate_renewal_window;
        let certs = expiries(&self.ctx(cluster))?;
        Ok(Inspection { window, certs })
    }

    fn renew(&self, names: &[String]) -> anyhow::Result<Vec<String>> {
        if self.has_no_ca_key() {
            anyhow::ensure!(
                names.iter().all(|n| n == KUBE_PROXY_CREDENTIAL),
                "a node without the cluster's CA key renews only kube-proxy's credential, not {names:?}"
            );
            return self.worker_renew();
        }
        let ctx = self.ctx(self.cluster()?);
        let targets: Vec<_> = pki::expiry::renew_targets(ctx.local_etcd())
            .into_iter()
            .filter(|t| names.iter().any(|n| n == t.name))
            .collect();
        let done = renew(&ctx, &targets, true, &ctx.fs)?;
        for line in ctx.out.captured().lines() {
            tracing::info!("{line}");
        }
        let mut renewed: Vec<String> = done
            .into_iter()
            .filter(|(_, r)| *r == Renewal::Renewed)
            .map(|(t, _)| t.name.to_string())
            .collect();
        if names.iter().any(|n| n == KUBE_PROXY_CREDENTIAL) && renew_kube_proxy_locally(&ctx)? {
            renewed.push(KUBE_PROXY_CREDENTIAL.to_string());
        }
        Ok(renewed)
    }

    fn record_event(&self, node: &str, reason: &str, message: &str) -> anyhow::Result<()> {
        // admin.conf on a control-plane node; a worker's own kubelet identity elsewhere (the
        // Node authorizer lets a node record events).
        let admin = self.admin_conf();
        let kubeconfig = if admin.exists() {
            admin
        } else {
            self.kubelet_conf()
        };
        let api = Cluster::from_kubeconfig(&kubeconfig)?;
        api.create_or_update(&node_event(node, reason, message, SystemTime::now()))
    }
}

/// A Normal Event about the Node `node`, as the kubelet records its node events (kubelet:
/// the node reference has the node's name as UID, the Event is in `default`, named
/// `<node>.<hex nanoseconds>` as client-go's recorder names them). Pure.
pub fn node_event(node: &str, reason: &str, message: &str, now: SystemTime) -> Event {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let time = k8s_openapi::jiff::Timestamp::try_from(now).ok().map(Time);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{node}.{nanos:x}")),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            uid: Some(node.into()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some(EVENT_COMPONENT.into()),
            host: Some(node.into()),
        }),
        first_timestamp: time.clone(),
        last_timestamp: time,
        count: Some(1),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_event_is_about_the_node_as_the_kubelets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let e = node_event("node1", "CertificateRenewed", "Renewed apiserver", now);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["metadata"]["namespace"], "default");
        // client-go's recorder: `<name>.<nanoseconds in hex>`.
        assert_eq!(
            v["metadata"]["name"],
            format!("node1.{:x}", 1_700_000_000u128 * 1_000_000_000)
        );
        assert_eq!(
            v["involvedObject"],
            serde_json::json!({"kind": "Node", "name": "node1", "uid": "node1"})
        );
        assert_eq!(v["reason"], "CertificateRenewed");
        assert_eq!(v["type"], "Normal");
        assert_eq!(v["source"]["component"], "kubeboot-agent");
        assert_eq!(v["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(v["count"], 1);
    }
}
