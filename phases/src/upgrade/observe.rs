//! What `upgrade plan` and `upgrade diff` read from the node and the cluster: the cluster's
//! configuration (kubeadm-config, or `--config`), the API servers' and etcd members' versions,
//! the kubelets', the addons', the binaries on disk and the certificates (kubeadm:
//! app/phases/upgrade/versiongetter.go, app/cmd/upgrade/common.go enforceRequirements).
//! Reads only: nothing here writes a file or changes an object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use agent::host::fs::Fs;
use anyhow::Context;
use components::config::{ApiEndpoint, ClusterConfig, Etcd, kubeadm_config};
use components::{Layout, Version, names};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node};

use super::plan::{
    ApiServer, BinaryOnDisk, CertificateExpiry, EtcdMemberVersion, KUBERNETES_BINARIES, Observed,
};
use crate::cluster::Cluster;
use crate::etcd_members::EtcdClient;

/// How long a binary's `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `/version` request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster as kubeadm-config describes it, with the client that read it.
pub struct ClusterView {
    /// The API client (admin.conf).
    pub api: Cluster,
    /// The ClusterConfiguration: kubeadm-config's, or `--config`'s when given.
    pub cluster: ClusterConfig,
    /// The control-plane nodes and their API endpoints (ClusterStatus).
    pub endpoints: BTreeMap<String, ApiEndpoint>,
}

/// The ClusterConfiguration document of a kubeadm configuration file (`--config`).
///
/// # Errors
/// The file has no usable ClusterConfiguration.
pub fn cluster_config_from_file(path: &Path, text: &str) -> anyhow::Result<ClusterConfig> {
    let mut last = None;
    for doc in text.split("\n---") {
        if !doc.contains("ClusterConfiguration") {
            continue;
        }
        match components::config::cluster_from_kubeadm_config(doc) {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e).with_context(|| {
            format!(
                "the ClusterConfiguration in --config {:?} is not usable",
                path.display().to_string()
            )
        }),
        None => anyhow::bail!(
            "--config {:?} has no ClusterConfiguration document; give a kubeadm configuration file with one (kind: ClusterConfiguration)",
            path.display().to_string()
        ),
    }
}

/// Reads kube-system/kubeadm-config through `api`; `--config`'s ClusterConfiguration, when
/// given, replaces the cluster's (kubeadm: upgrade plan/apply --config).
///
/// # Errors
/// The ConfigMap cannot be read, or has no usable ClusterConfiguration / ClusterStatus.
pub fn cluster_view(api: Cluster, config: Option<ClusterConfig>) -> anyhow::Result<ClusterView> {
    let cm = api
        .get::<ConfigMap>(Some(names::KUBE_SYSTEM), names::KUBEADM_CONFIG_CONFIGMAP)?
        .context(
            "the cluster has no kube-system/kubeadm-config ConfigMap: it was not set up by kubeadm or kubeboot init (or its upload-config phase was skipped)",
        )?;
    let data = cm.data.unwrap_or_default();
    let cluster = match config {
        Some(c) => c,
        None => {
            let yaml = data
                .get(names::CLUSTER_CONFIGURATION_KEY)
                .context("kube-system/kubeadm-config has no ClusterConfiguration")?;
            components::config::cluster_from_kubeadm_config(yaml)
                .context("the cluster's kubeadm-config ClusterConfiguration is not usable")?
        }
    };
    let status = data.get(names::CLUSTER_STATUS_KEY).context(
        "kube-system/kubeadm-config has no ClusterStatus: it lists no control-plane node",
    )?;
    let endpoints = kubeadm_config::cluster_status_endpoints(status)
        .context("kube-system/kubeadm-config's ClusterStatus is not usable")?;
    Ok(ClusterView {
        api,
        cluster,
        endpoints,
    })
}

fn url(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(a) => format!("https://[{a}]:{port}"),
        a => format!("https://{a}:{port}"),
    }
}

/// Everything `upgrade plan` needs, read from the cluster and the node; the Kubernetes
/// binaries are looked up in `bin_dirs`, etcd in `etcd_dirs`.
pub fn observe(
    view: &ClusterView,
    layout: &Layout,
    fs: &Fs,
    (bin_dirs, etcd_dirs): (&[PathBuf], &[PathBuf]),
    now: SystemTime,
) -> Observed {
    let cert_dir = layout.node_path(&view.cluster.certificates_dir);
    let etcd = match &view.cluster.etcd {
        Etcd::Local(_) => Some(etcd_versions(view, fs, &cert_dir)),
        _ => None,
    };
    let etcd_image_tag = match &view.cluster.etcd {
        Etcd::Local(l) => l.image_tag.clone(),
        _ => None,
    };
    let mut binaries = BTreeMap::new();
    for name in KUBERNETES_BINARIES {
        binaries.insert((*name).to_string(), binary_on_disk(name, bin_dirs));
    }
    binaries.insert(
        names::ETCD.to_string(),
        etcd_on_disk(etcd_image_tag.as_deref(), etcd_dirs),
    );
    Observed {
        api_servers: api_server_versions(view, fs, &cert_dir),
        kubelets: kubelet_versions(&view.api),
        etcd,
        etcd_image_tag,
        kube_proxy: image_tag::<DaemonSet>(&view.api, names::KUBE_PROXY),
        dns: image_tag::<Deployment>(&view.api, names::COREDNS),
        bin_dirs: bin_dirs.iter().map(|d| d.display().to_string()).collect(),
        binaries,
        earliest_certificate: earliest_certificate(fs, &cert_dir, now),
    }
}

/// `/version` of every API server in ClusterStatus, trusting only the cluster CA
/// (system:public-info-viewer lets anyone read it; no credentials are sent).
pub(crate) fn api_server_versions(view: &ClusterView, fs: &Fs, cert_dir: &Path) -> Vec<ApiServer> {
    let client = fs
        .read_if_exists(&cert_dir.join("ca.crt"))
        .ok()
        .flatten()
        .ok_or_else(|| format!("{}/ca.crt is missing", cert_dir.display()))
        .and_then(|ca| {
            let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?;
            reqwest::blocking::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(ca)
                .https_only(true)
                .timeout(HTTP_TIMEOUT)
                .build()
                .map_err(|e| e.to_string())
        });
    view.endpoints
        .iter()
        .map(|(node, ep)| {
            let endpoint = url(ep.advertise_address, ep.bind_port);
            let version = client.clone().and_then(|c| {
                let info: serde_json::Value = c
                    .get(format!("{endpoint}/version"))
                    .send()
                    .and_then(reqwest::blocking::Response::error_for_status)
                    .and_then(reqwest::blocking::Response::json)
                    .map_err(|e| e.to_string())?;
                let text = info["gitVersion"].as_str().unwrap_or_default();
                text.parse::<Version>()
                    .map_err(|_| format!("/version says gitVersion {text:?}"))
            });
            ApiServer {
                node: node.clone(),
                endpoint,
                version,
            }
        })
        .collect()
}

/// Kubelet versions with their node counts (kubeadm: KubeletVersions).
fn kubelet_versions(api: &Cluster) -> Result<BTreeMap<Version, u32>, String> {
    let nodes = api.list::<Node>(None, None).map_err(|e| format!("{e:#}"))?;
    let mut out = BTreeMap::new();
    for n in nodes {
        let text = n
            .status
            .and_then(|s| s.node_info)
            .map(|i| i.kubelet_version)
            .unwrap_or_default();
        let v = text.parse::<Version>().map_err(|_| {
            format!(
                "node {:?} reports kubelet version {text:?}",
                n.metadata.name.unwrap_or_default()
            )
        })?;
        *out.entry(v).or_insert(0) += 1;
    }
    Ok(out)
}

/// Every etcd member's `/version`, asked with the healthcheck client certificate (kubeadm:
/// the etcd client of `upgrade`), the members found through the control-plane endpoints.
fn etcd_versions(view: &ClusterView, fs: &Fs, cert_dir: &Path) -> Vec<EtcdMemberVersion> {
    let endpoints: Vec<String> = view
        .endpoints
        .values()
        .map(|ep| url(ep.advertise_address, names::ETCD_CLIENT_PORT))
        .collect();
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = cert_dir.join(name);
        fs.read_if_exists(&path)?
            .with_context(|| format!("{:?} is missing", path.display().to_string()))
    };
    let client = (|| {
        EtcdClient::new(
            &endpoints,
            &read("etcd/ca.crt")?,
            &read("etcd/healthcheck-client.crt")?,
            &read("etcd/healthcheck-client.key")?,
        )
    })();
    let members = client.and_then(|c| c.list().map(|m| (c, m)));
    match members {
        Err(e) => vec![EtcdMemberVersion {
            name: String::new(),
            endpoint: endpoints.join(","),
            server: Err(format!("{e:#}")),
            cluster: None,
        }],
        Ok((client, members)) => members
            .into_iter()
            .map(|m| {
                let endpoint = m.client_urls.first().cloned().unwrap_or_default();
                let answer = if endpoint.is_empty() {
                    Err("the member has not started (no client URL)".to_string())
                } else {
                    client.version(&endpoint)
                };
                EtcdMemberVersion {
                    name: m.name,
                    endpoint,
                    server: answer.as_ref().map_err(Clone::clone).and_then(|v| {
                        v.server
                            .parse::<Version>()
                            .map_err(|_| format!("/version says etcdserver {:?}", v.server))
                    }),
                    cluster: answer.ok().map(|v| v.cluster),
                }
            })
            .collect(),
    }
}

/// The image tag of the first container of kube-system's `name` workload, if it exists.
fn image_tag<K>(api: &Cluster, name: &str) -> Option<String>
where
    K: crate::cluster::Object + HasPodSpec,
{
    let obj = api.get::<K>(Some(names::KUBE_SYSTEM), name).ok()??;
    let image = obj.first_image()?;
    components::image::ImageRef::parse(&image).ok()?.tag
}

/// Workloads whose pod template names an image.
pub trait HasPodSpec {
    /// The workload's pod template.
    fn template(&self) -> &k8s_openapi::api::core::v1::PodTemplateSpec;

    /// The image of the template's first container.
    fn first_image(&self) -> Option<String> {
        self.template()
            .spec
            .as_ref()?
            .containers
            .first()?
            .image
            .clone()
    }
}

impl HasPodSpec for DaemonSet {
    fn template(&self) -> &k8s_openapi::api::core::v1::PodTemplateSpec {
        &self.spec.template
    }
}

impl HasPodSpec for Deployment {
    fn template(&self) -> &k8s_openapi::api::core::v1::PodTemplateSpec {
        &self.spec.template
    }
}

/// The etcd binary an upgrade would run: with `etcd.local.imageTag` set, the first etcd in
/// `dirs` of that tag's minor (the agent looks it up the same way, by version), else the
/// first etcd of all.
fn etcd_on_disk(image_tag: Option<&str>, dirs: &[PathBuf]) -> BinaryOnDisk {
    let wanted = image_tag.and_then(|t| {
        let mut parts = t.trim_start_matches('v').split(['.', '-']);
        Some((
            parts.next()?.parse::<u32>().ok()?,
            parts.next()?.parse::<u32>().ok()?,
        ))
    });
    if let Some((major, minor)) = wanted {
        for d in dirs {
            if let found @ BinaryOnDisk::Found { .. } =
                binary_on_disk(names::ETCD, std::slice::from_ref(d))
                && matches!(&found, BinaryOnDisk::Found { version, .. } if version.major == major && version.minor == minor)
            {
                return found;
            }
        }
    }
    binary_on_disk(names::ETCD, dirs)
}

/// Looks `name` up in `dirs` and asks it for `--version`, only if it is trusted
/// ([`agent::host::trust`]: it would run as root).
pub fn binary_on_disk(name: &str, dirs: &[PathBuf]) -> BinaryOnDisk {
    let path = match crate::host::find_binary(name, dirs) {
        Ok(Some(p)) => p,
        Ok(None) => return BinaryOnDisk::Missing,
        Err(untrusted) => {
            return BinaryOnDisk::Unusable {
                path: dirs
                    .iter()
                    .map(|d| d.join(name))
                    .find(|p| p.exists())
                    .unwrap_or_else(|| PathBuf::from(name))
                    .display()
                    .to_string(),
                reason: untrusted.to_string(),
            };
        }
    };
    let shown = path.display().to_string();
    match crate::preflight::run_with_timeout(&path, &["--version"], VERSION_TIMEOUT) {
        Err(e) => BinaryOnDisk::Unusable {
            path: shown,
            reason: format!("it could not be run: {e}"),
        },
        Ok(out) => match Version::find_in(&out) {
            Some(version) => BinaryOnDisk::Found {
                path: shown,
                version,
            },
            None => BinaryOnDisk::Unusable {
                path: shown,
                reason: format!("--version printed no version: {:?}", out.trim()),
            },
        },
    }
}

/// The certificate of kubeboot's PKI table that expires first.
fn earliest_certificate(fs: &Fs, cert_dir: &Path, now: SystemTime) -> Option<CertificateExpiry> {
    let mut earliest: Option<(SystemTime, PathBuf)> = None;
    for rel in crate::node_record::pki_files() {
        if rel.extension().is_none_or(|e| e != "crt") {
            continue;
        }
        let path = cert_dir.join(rel);
        let Ok(Some(pem)) = fs.read_if_exists(&path) else {
            continue;
        };
        let Ok(info) = pki::info::cert_info(&String::from_utf8_lossy(&pem)) else {
            continue;
        };
        if earliest.as_ref().is_none_or(|(t, _)| info.not_after < *t) {
            earliest = Some((info.not_after, path));
        }
    }
    let (not_after, path) = earliest?;
    let days_left = match not_after.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs() / 86_400).unwrap_or(i64::MAX),
    };
    let not_after = time::OffsetDateTime::from(not_after)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Some(CertificateExpiry {
        file: path.display().to_string(),
        not_after,
        days_left,
    })
}
