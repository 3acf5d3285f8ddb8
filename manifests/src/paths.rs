//! Node paths as manifests spell them: configured paths mapped through the layout.

use std::path::{Path, PathBuf};

use components::Layout;
use components::catalogue::{self, Component};
use components::config::{Etcd, InitConfig};
use components::names;

/// The paths one node's manifests refer to.
pub(crate) struct NodePaths<'a> {
    layout: &'a Layout,
    cert_dir: PathBuf,
}

impl<'a> NodePaths<'a> {
    pub(crate) fn new(cfg: &InitConfig, layout: &'a Layout) -> Self {
        let configured = match cfg.cluster.certificates_dir.as_str() {
            "" => names::DEFAULT_CERTIFICATES_DIR,
            dir => dir,
        };
        NodePaths {
            layout,
            cert_dir: layout.node_path(configured),
        }
    }

    /// The certificates directory (`certificatesDir` mapped through the layout).
    pub(crate) fn cert_dir(&self) -> String {
        text(&self.cert_dir)
    }

    /// A file in the certificates directory (`etcd/ca.crt`).
    pub(crate) fn cert(&self, file: &str) -> String {
        text(&self.cert_dir.join(file))
    }

    /// Any node path mapped through the layout.
    pub(crate) fn node(&self, path: &str) -> String {
        text(&self.layout.node_path(path))
    }

    /// A component's kubeconfig file in `/etc/kubernetes`.
    pub(crate) fn kubeconfig(&self, component: Component) -> String {
        let file = catalogue::kubeconfig_file(component).expect("component has a kubeconfig");
        text(&self.layout.kubeconfig(file))
    }

    /// etcd's data directory (`etcd.local.dataDir` mapped through the layout).
    pub(crate) fn etcd_data_dir(&self, cfg: &InitConfig) -> String {
        let configured = match &cfg.cluster.etcd {
            Etcd::Local(local) if !local.data_dir.is_empty() => local.data_dir.as_str(),
            _ => names::DEFAULT_ETCD_DATA_DIR,
        };
        self.node(configured)
    }
}

/// A path as manifest text.
pub(crate) fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
