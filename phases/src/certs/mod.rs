//! `kubeboot certs check-expiration`, `kubeboot certs renew` and `kubeboot kubeconfig user`
//! (kubeadm 1.20: app/cmd/alpha/certs.go and kubeconfig.go over app/phases/certs/renewal):
//! they read the node's PKI through [`agent::host::fs::Fs`], decide with `pki::expiry` and
//! write renewed files atomically.
//!
//! Modules:
//! - [`auto`]: the renewer the agent runs inside the cluster's renewal window.
//! - [`expiration`]: the expiry report of every certificate and CA on the node.
//! - [`renew`]: re-issuing certificates from the same CA, keeping subject and SANs.
//! - [`user`]: a kubeconfig with a client certificate for another user.

pub mod auto;
pub mod expiration;
pub mod renew;
pub mod user;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use agent::host::fs::Fs;
use anyhow::Context;
use components::config::{ClusterConfig, ConfigSource, HostFacts, InitConfig, InitFlags};
use components::{Layout, names};

use crate::out::Out;
use crate::say;

/// The version assumed when neither the config nor a kube-apiserver binary names one; it only
/// picks admin.conf's group (kubeadm's certs commands likewise set
/// constants.CurrentKubernetesVersion to skip a lookup).
const FALLBACK_VERSION: components::Version = components::version::v(1, 20, 0);

/// What the certs commands work on: the node's files and the cluster's settings.
pub struct CertsCtx {
    /// Node paths.
    pub layout: Layout,
    /// File access.
    pub fs: Fs,
    /// User output.
    pub out: Out,
    /// The cluster's settings (certificate directory, etcd mode, key algorithm, validity).
    pub cluster: ClusterConfig,
    /// `--cert-dir`, which wins over the configuration's `certificatesDir`.
    pub cert_dir_flag: Option<String>,
    /// The time new certificates are issued at and residual times are counted from.
    pub now: SystemTime,
}

impl CertsCtx {
    /// The certificate directory, mapped into the layout.
    pub fn cert_dir(&self) -> PathBuf {
        let dir = self
            .cert_dir_flag
            .as_deref()
            .unwrap_or(&self.cluster.certificates_dir);
        self.layout.node_path(dir)
    }

    /// Whether the cluster runs a local (stacked) etcd, whose certificates are then listed.
    pub fn local_etcd(&self) -> bool {
        matches!(self.cluster.etcd, components::config::Etcd::Local(_))
    }

    /// `/etc/kubernetes/<file>`.
    pub fn kubeconfig_path(&self, file: &str) -> PathBuf {
        self.layout.kubeconfig(file)
    }
}

/// The host facts the config resolver needs here: no address check (these commands bind
/// nothing; kubeadm's LoadOrDefaultInitConfiguration checks none) and a version even without
/// a kube-apiserver binary.
fn facts() -> HostFacts {
    let mut host = crate::host::facts(&[]);
    host.local_addresses.clear();
    host.detected_version = host.detected_version.or(Some(FALLBACK_VERSION));
    host
}

/// The `--config` file resolved as `kubeadm init` would, with kubeadm's defaults (kubeadm:
/// configutil.LoadOrDefaultInitConfiguration).
///
/// # Errors
/// The file cannot be read or is not a valid configuration.
pub fn init_config_from_file(fs: &Fs, path: &Path) -> anyhow::Result<InitConfig> {
    let shown = path.display().to_string();
    let content = fs
        .read_string_if_exists(path)?
        .with_context(|| format!("the config file {shown:?} does not exist"))?;
    let flags = InitFlags {
        config: Some(ConfigSource {
            path: shown,
            content,
        }),
        ..Default::default()
    };
    Ok(components::config::resolve_init(&flags, &facts())?)
}

/// kubeadm's defaults, for a node whose cluster cannot be asked.
pub fn default_init_config() -> anyhow::Result<InitConfig> {
    Ok(components::config::resolve_init(
        &InitFlags::default(),
        &facts(),
    )?)
}

/// The cluster's settings as kubeadm's certs commands find them (kubeadm: alpha/certs.go,
/// getInternalCfg): from `--config`; else from the cluster's `kubeadm-config` ConfigMap
/// through `kubeconfig` (admin.conf); else kubeadm's defaults, saying so. Never blocks for
/// long: renewal must work on a cluster whose API is down.
///
/// # Errors
/// A `--config` file that cannot be read or is invalid.
pub fn cluster_config(
    fs: &Fs,
    config: Option<&Path>,
    kubeconfig: &Path,
    out: &Out,
    log_prefix: &str,
) -> anyhow::Result<ClusterConfig> {
    if let Some(path) = config {
        return Ok(init_config_from_file(fs, path)?.cluster);
    }
    if kubeconfig.exists() {
        match from_cluster(kubeconfig, out, log_prefix) {
            Ok(cluster) => {
                out.line("");
                return Ok(cluster);
            }
            Err(e) => {
                tracing::info!(error = format!("{e:#}"), "reading kubeadm-config failed");
                say!(
                    out,
                    log_prefix,
                    "Error reading configuration from the Cluster. Falling back to default configuration"
                );
                out.line("");
            }
        }
    }
    Ok(default_init_config()?.cluster)
}

/// The ClusterConfiguration of the cluster's kubeadm-config ConfigMap, through `kubeconfig`.
pub(crate) fn from_cluster(
    kubeconfig: &Path,
    out: &Out,
    log_prefix: &str,
) -> anyhow::Result<ClusterConfig> {
    let api = crate::cluster::Cluster::from_kubeconfig(kubeconfig)?;
    say!(out, log_prefix, "Reading configuration from the cluster...");
    say!(
        out,
        log_prefix,
        "FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'"
    );
    let cm = api
        .get::<k8s_openapi::api::core::v1::ConfigMap>(
            Some(names::KUBE_SYSTEM),
            names::KUBEADM_CONFIG_CONFIGMAP,
        )?
        .context("the cluster has no kube-system/kubeadm-config ConfigMap")?;
    let yaml = cm
        .data
        .as_ref()
        .and_then(|d| d.get(names::CLUSTER_CONFIGURATION_KEY))
        .context("kube-system/kubeadm-config has no ClusterConfiguration")?;
    Ok(components::config::cluster_from_kubeadm_config(yaml)?)
}
