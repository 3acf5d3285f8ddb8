//! The run data of `kubeboot init` (kubeadm: cmd/init.go, initData): the validated config and
//! the handles every phase works through.

use std::path::PathBuf;

use anyhow::Context;
use components::config::InitConfig;

use crate::cluster::Cluster;
use crate::shared::node::NodeCtx;

/// What every `init` phase reads and works through.
pub struct InitData {
    /// The node init runs on (layout, files, output, binaries, runner); `InitData`
    /// dereferences to it.
    pub node: NodeCtx,
    /// The validated configuration.
    pub cfg: InitConfig,
    /// Host facts the manifests depend on (extra CA directories, external CA).
    pub host_paths: manifests::HostPaths,
    /// The API, created on first use by [`InitData::cluster`]; `None` until then (tests may
    /// put a `Cluster::recording` here).
    pub api: Option<Cluster>,
    /// `--skip-token-print`: the token is neither printed by bootstrap-token nor shown in
    /// the join commands (`<value withheld>`, as kubeadm).
    pub skip_token_print: bool,
    /// `--upload-certs`: store the shared certificates in the `kubeadm-certs` Secret,
    /// encrypted with the certificate key (`cfg.certificate_key`, generated when not given).
    pub upload_certs: bool,
    /// `--skip-certificate-key-print`: the certificate key is neither printed by
    /// upload-certs nor shown in the join command (`<value withheld>`, as kubeadm).
    pub skip_certificate_key_print: bool,
    /// What an interrupted earlier init left, when preflight found its marker: this init
    /// resumes it (see [`crate::init::resume`]).
    pub resumed: Option<crate::init::resume::Interrupted>,
}

impl std::ops::Deref for InitData {
    type Target = NodeCtx;
    fn deref(&self) -> &NodeCtx {
        &self.node
    }
}

impl std::ops::DerefMut for InitData {
    fn deref_mut(&mut self) -> &mut NodeCtx {
        &mut self.node
    }
}

impl InitData {
    /// The cluster API phases talk to, created on first use: the API server named in
    /// admin.conf with its credentials (from 1.29 with the ClusterRoleBinding they rest on
    /// ensured first), or the dry-run recorder (kubeadm: initData.Client).
    ///
    /// # Errors
    /// admin.conf cannot be read or is not usable, or its binding cannot be created.
    pub fn cluster(&mut self) -> anyhow::Result<&Cluster> {
        if self.api.is_none() {
            let cluster = if self.dry_run {
                Cluster::recording(self.out.clone())
            } else {
                let conf = |name| self.fs.resolve(&self.layout.kubeconfig(name));
                crate::shared::admin::admin_cluster(
                    &conf(components::names::ADMIN_KUBECONFIG),
                    &conf(components::names::SUPER_ADMIN_KUBECONFIG),
                    &self.cfg.cluster.kubernetes_version,
                )?
            };
            self.api = Some(cluster);
        }
        self.api
            .as_ref()
            .context("the cluster API client was not created")
    }

    /// The bootstrap tokens of this init, generating the ones the configuration leaves
    /// empty (once: the phase and the closing text print the same token, as kubeadm
    /// generates them when it loads the configuration).
    ///
    /// # Errors
    /// A configured token is malformed.
    pub fn tokens(&mut self) -> anyhow::Result<Vec<pki::BootstrapToken>> {
        self.cfg
            .bootstrap_tokens
            .iter_mut()
            .map(|t| {
                let token = match &t.token {
                    Some(s) => pki::BootstrapToken::parse(s)?,
                    None => pki::BootstrapToken::generate(),
                };
                t.token = Some(token.to_string());
                Ok(token)
            })
            .collect()
    }

    /// The certificate directory as the node sees it, mapped into the layout.
    pub fn cert_dir(&self) -> PathBuf {
        self.layout.node_path(&self.cfg.cluster.certificates_dir)
    }

    /// The advertise address and port URL of this node's API server.
    pub fn local_api_url(&self) -> String {
        let ep = self.cfg.local_api_endpoint;
        match ep.advertise_address {
            std::net::IpAddr::V4(a) => format!("https://{a}:{}", ep.bind_port),
            std::net::IpAddr::V6(a) => format!("https://[{a}]:{}", ep.bind_port),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use components::config::{HostFacts, InitFlags, resolve_init};

    use super::*;

    /// Run data for a node `node1` at 10.123.0.2 running v1.20.2, rooted in `root`.
    pub(crate) fn test_data(root: &Path) -> InitData {
        let flags = InitFlags {
            apiserver_advertise_address: Some("10.123.0.2".into()),
            kubernetes_version: Some("v1.20.2".into()),
            node_name: Some("node1".into()),
            ..Default::default()
        };
        let host = HostFacts {
            hostname: "node1".into(),
            default_address: None,
            local_addresses: vec![],
            detected_version: None,
        };
        let cfg = resolve_init(&flags, &host).expect("valid config");
        let node = NodeCtx::under(
            root,
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        );
        InitData {
            cfg,
            host_paths: manifests::HostPaths::detect(&node.layout, |_| false),
            node,
            api: None,
            skip_token_print: false,
            upload_certs: false,
            skip_certificate_key_print: false,
            resumed: None,
        }
    }
}
