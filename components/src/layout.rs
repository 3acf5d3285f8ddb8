//! Where every file of a node lives. All node paths derive from one root, so tests (and
//! several test nodes on one machine) can root a whole node in a temporary directory. No other
//! code spells `/etc/kubernetes`.

use std::path::{Path, PathBuf};

use crate::names;

/// The file layout of one node, derived from a root directory (`/` on a real node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Self::host()
    }
}

impl Layout {
    /// The real node layout, rooted at `/`.
    pub fn host() -> Self {
        Self {
            root: PathBuf::from("/"),
        }
    }

    /// A layout rooted at `root` (tests and rooted installs).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root every other path hangs off.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True for the real `/`-rooted layout.
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// `/etc/kubernetes` (kubeadm: constants.KubernetesDir).
    pub fn kubernetes_dir(&self) -> PathBuf {
        self.at(names::KUBERNETES_DIR)
    }

    /// `/etc/kubernetes/manifests` (kubeadm: constants.ManifestsSubDirName).
    pub fn manifests_dir(&self) -> PathBuf {
        self.kubernetes_dir().join(names::MANIFESTS_SUBDIR)
    }

    /// The static pod manifest of a component: `/etc/kubernetes/manifests/<name>.yaml`.
    pub fn manifest(&self, component: &str) -> PathBuf {
        self.manifests_dir().join(format!("{component}.yaml"))
    }

    /// `/etc/kubernetes/tmp`, for backups and scratch files (kubeadm: constants.TempDirForKubeadm).
    pub fn tmp_dir(&self) -> PathBuf {
        self.kubernetes_dir().join(names::TEMP_DIR)
    }

    /// The default certificate directory, `/etc/kubernetes/pki` (kubeadm:
    /// DefaultCertificatesDir). The configured `certificatesDir` may differ.
    pub fn default_cert_dir(&self) -> PathBuf {
        self.at(names::DEFAULT_CERTIFICATES_DIR)
    }

    /// A kubeconfig file in `/etc/kubernetes` (`admin.conf`, `kubelet.conf`, ...).
    pub fn kubeconfig(&self, file_name: &str) -> PathBuf {
        self.kubernetes_dir().join(file_name)
    }

    /// The default etcd data directory `/var/lib/etcd` (kubeadm: DefaultEtcdDataDir).
    pub fn default_etcd_data_dir(&self) -> PathBuf {
        self.at(names::DEFAULT_ETCD_DATA_DIR)
    }

    /// `/var/lib/kubelet` (kubeadm: KubeletRunDirectory).
    pub fn kubelet_dir(&self) -> PathBuf {
        self.at(names::KUBELET_RUN_DIR)
    }

    /// `/var/lib/kube-proxy`: the agent-run kube-proxy's config and kubeconfig.
    pub fn kube_proxy_dir(&self) -> PathBuf {
        self.at(names::KUBE_PROXY_DIR)
    }

    /// `/var/lib/kubeboot`: kubeboot's and its agent's persistent state.
    pub fn state_dir(&self) -> PathBuf {
        self.at(names::KUBEBOOT_STATE_DIR)
    }

    /// `/etc/kubeboot/manifests`: the agent's own static pods (the kubelet, containerd) when
    /// the kubelet runs `/etc/kubernetes/manifests` (`--static-pod-runner kubelet`).
    pub fn agent_manifests_dir(&self) -> PathBuf {
        self.at(names::KUBEBOOT_AGENT_MANIFESTS_DIR)
    }

    /// `/var/lib/kubeboot/images`: image archives (`*.tar`, docker-archive or OCI) kubeboot
    /// imports into the node's containerd, for nodes without a registry.
    pub fn image_archives_dir(&self) -> PathBuf {
        self.state_dir().join("images")
    }

    /// `/var/lib/kubeboot/agent`: the agent's persistent state (pod records, node id).
    pub fn agent_state_dir(&self) -> PathBuf {
        self.state_dir().join("agent")
    }

    /// `/run/kubeboot`: runtime files (status socket, pid file).
    pub fn run_dir(&self) -> PathBuf {
        self.at(names::KUBEBOOT_RUN_DIR)
    }

    /// The agent's status socket, `/run/kubeboot/agent.sock`.
    pub fn agent_socket(&self) -> PathBuf {
        self.run_dir().join("agent.sock")
    }

    /// The detached agent's pid file, `/run/kubeboot/agent.pid`.
    pub fn agent_pid_file(&self) -> PathBuf {
        self.run_dir().join("agent.pid")
    }

    /// `/var/log/kubeboot`: the agent's own log when it runs detached.
    pub fn log_dir(&self) -> PathBuf {
        self.at(names::KUBEBOOT_LOG_DIR)
    }

    /// The detached agent's log file, `/var/log/kubeboot/agent.log`.
    pub fn agent_log_file(&self) -> PathBuf {
        self.log_dir().join("agent.log")
    }

    /// `/var/log/kubeboot/pods`: per-container logs in the CRI format, laid out as the
    /// kubelet's `/var/log/pods` (which the kubelet garbage-collects, see
    /// [`names::POD_LOGS_DIR`]).
    pub fn pod_logs_dir(&self) -> PathBuf {
        self.at(names::POD_LOGS_DIR)
    }

    /// The systemd unit kubeboot writes for the agent where systemd is PID 1.
    pub fn agent_systemd_unit(&self) -> PathBuf {
        self.at("/etc/systemd/system/kubeboot-agent.service")
    }

    /// Maps a path as the node sees it (`/etc/kubernetes/pki`) to where it lives under this
    /// layout's root. Relative paths are taken as node paths too.
    pub fn node_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        match p.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_layout_uses_kubeadm_paths() {
        let l = Layout::host();
        assert_eq!(
            l.manifest("etcd"),
            PathBuf::from("/etc/kubernetes/manifests/etcd.yaml")
        );
        assert_eq!(l.default_cert_dir(), PathBuf::from("/etc/kubernetes/pki"));
        assert_eq!(
            l.kubeconfig("admin.conf"),
            PathBuf::from("/etc/kubernetes/admin.conf")
        );
        assert_eq!(l.default_etcd_data_dir(), PathBuf::from("/var/lib/etcd"));
        assert_eq!(l.pod_logs_dir(), PathBuf::from("/var/log/kubeboot/pods"));
    }

    #[test]
    fn rooted_layout_keeps_everything_under_root() {
        let l = Layout::under("/tmp/node1");
        assert_eq!(
            l.manifests_dir(),
            PathBuf::from("/tmp/node1/etc/kubernetes/manifests")
        );
        assert_eq!(
            l.agent_socket(),
            PathBuf::from("/tmp/node1/run/kubeboot/agent.sock")
        );
        assert_eq!(
            l.node_path("/etc/kubernetes/pki"),
            PathBuf::from("/tmp/node1/etc/kubernetes/pki")
        );
    }
}
