//! Facts about the node's files that kubeadm reads while it builds manifests.

use std::collections::BTreeSet;
use std::path::Path;

use components::Layout;
use components::catalogue::CA_CERTS_EXTRA_DIRS;

/// What kubeadm learns from the node's disk while it builds manifests, gathered by the caller
/// (phases) so this crate stays pure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPaths {
    /// Which of kubeadm's extra CA directories (`/etc/pki`, `/usr/share/ca-certificates`,
    /// `/usr/local/share/ca-certificates`, `/etc/ca-certificates`; kubeadm:
    /// caCertsExtraVolumePaths) exist on the node. Each one that does is mounted into the API
    /// server and controller manager next to `/etc/ssl/certs`. Spelled as the node sees them.
    pub ca_certs_extra_dirs: BTreeSet<String>,
    /// The cluster CA is external: `ca.crt` exists but `ca.key` does not (kubeadm:
    /// certs.UsingExternalCA). The controller manager then gets empty cluster-signing files.
    pub external_ca: bool,
}

impl HostPaths {
    /// Asks `exists` about each of kubeadm's extra CA directories, mapped through `layout`
    /// (phases pass `|p| p.is_dir()`).
    pub fn detect(layout: &Layout, exists: impl Fn(&Path) -> bool) -> Self {
        let ca_certs_extra_dirs = CA_CERTS_EXTRA_DIRS
            .iter()
            .filter(|dir| exists(&layout.node_path(dir)))
            .map(|dir| dir.to_string())
            .collect();
        HostPaths {
            ca_certs_extra_dirs,
            external_ca: false,
        }
    }

    /// A node with the given extra CA directories and its own CA key.
    pub fn with_ca_dirs(dirs: &[&str]) -> Self {
        HostPaths {
            ca_certs_extra_dirs: dirs.iter().map(|d| d.to_string()).collect(),
            external_ca: false,
        }
    }

    /// True when `dir` (one of kubeadm's extra CA directories) exists on the node.
    pub fn has_ca_dir(&self, dir: &str) -> bool {
        self.ca_certs_extra_dirs.contains(dir)
    }
}
