//! The renewer `kubeboot agent` injects into the agent ([`agent::cert_renewal::Renewer`]): the
//! node's renewable certificates as `certs check-expiration` reads them, their renewal as
//! `certs renew <name>` does it, and the `CertificateRenewed` Event on the Node. The window
//! is the cluster's `certificateRenewalWindow`, read with the rest of the ClusterConfiguration
//! from kubeadm-config through admin.conf at every check (a changed window applies within the
//! agent's next check), and kept for when the API cannot be reached.

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
use crate::out::Out;

/// The agent's component name in Events (the kubelet's is `kubelet`).
pub const EVENT_COMPONENT: &str = "kubeboot-agent";

/// The node's certificates, renewed with the cluster's settings.
pub struct NodeRenewer {
    layout: Layout,
    /// The cluster's configuration as last read from the API.
    known: Mutex<Option<ClusterConfig>>,
}

impl NodeRenewer {
    /// A renewer for the node at `layout`.
    pub fn new(layout: Layout) -> Self {
        NodeRenewer {
            layout,
            known: Mutex::new(None),
        }
    }

    /// A renewer that already knows the cluster's configuration, used until the API answers
    /// (tests; a node whose API is down).
    pub fn with_cluster_config(layout: Layout, cluster: ClusterConfig) -> Self {
        NodeRenewer {
            layout,
            known: Mutex::new(Some(cluster)),
        }
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

/// The node's renewable certificates that exist, with their NotAfter.
fn expiries(ctx: &CertsCtx) -> anyhow::Result<Vec<Expiry>> {
    let mut out = Vec::new();
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
            return Ok(Inspection {
                window: components::config::default_renewal_window(
                    components::config::DEFAULT_CERTIFICATE_VALIDITY,
                ),
                certs: Vec::new(),
            });
        }
        let cluster = self.cluster()?;
        let window = cluster.certificate_renewal_window;
        let certs = expiries(&self.ctx(cluster))?;
        Ok(Inspection { window, certs })
    }

    fn renew(&self, names: &[String]) -> anyhow::Result<Vec<String>> {
        let ctx = self.ctx(self.cluster()?);
        let targets: Vec<_> = pki::expiry::renew_targets(ctx.local_etcd())
            .into_iter()
            .filter(|t| names.iter().any(|n| n == t.name))
            .collect();
        let done = renew(&ctx, &targets, true, &ctx.fs)?;
        for line in ctx.out.captured().lines() {
            tracing::info!("{line}");
        }
        Ok(done
            .into_iter()
            .filter(|(_, r)| *r == Renewal::Renewed)
            .map(|(t, _)| t.name.to_string())
            .collect())
    }

    fn record_event(&self, node: &str, reason: &str, message: &str) -> anyhow::Result<()> {
        let api = crate::cluster::Cluster::from_kubeconfig(&self.admin_conf())?;
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
