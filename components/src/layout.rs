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

    /// `/var/lib/kubeboot/node-record.json`: what `init` created on this node (directories,
    /// files, the certificate directory, a local etcd's data directory, the CNI bridge), the
    /// one list `reset` deletes from.
    pub fn node_record(&self) -> PathBuf {
        self.state_dir().join("node-record.json")
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

    /// `/etc/kubeboot/api-lb.json`: the node-local API load balancer's configuration, which
    /// the agent keeps current with the API servers it learns.
    pub fn api_lb_config(&self) -> PathBuf {
        self.at(names::API_LB_CONFIG)
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

    /// The inverse of [`Layout::node_path`]: how the node sees `path`, a path under this
    /// layout's root (`/tmp/node1/etc/kubernetes` -> `/etc/kubernetes`). `None` for a path
    /// outside the root or one that is not normalized (`.`, `..`).
    pub fn to_node(&self, path: &Path) -> Option<PathBuf> {
        if !is_normalized_absolute(path) {
            return None;
        }
        let rel = path.strip_prefix(&self.root).ok()?;
        Some(Path::new("/").join(rel))
    }

    /// Why kubeboot must never delete the contents of `path` (a path under this layout's
    /// root), or `None` when it may: see [`protected_reason`]; a path outside the root is
    /// refused too.
    pub fn deletion_refusal(&self, path: &Path) -> Option<String> {
        if !path.is_absolute() {
            return Some("it is a relative path".into());
        }
        if !is_normalized_absolute(path) {
            return Some("it is not a normalized path (it has \".\" or \"..\")".into());
        }
        match self.to_node(path) {
            None => Some(format!(
                "it is outside the node's root {:?}",
                self.root.display().to_string()
            )),
            Some(node) => protected_reason(&node).map(str::to_string),
        }
    }
}

/// Top-level directories of a Linux system (FHS) and the second-level ones that hold other
/// programs' data: kubeboot never deletes the contents of one of these, whatever a flag, a
/// config or its own record says.
pub const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/tmp",
    "/var/cache",
    "/var/spool",
    "/var/mail",
    "/var/opt",
    "/var/local",
    "/var/backups",
];

/// Trees that hold only the system's programs and kernel interfaces: nothing of kubeboot's
/// lives anywhere inside them.
pub const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys",
    "/usr",
];

/// True for an absolute path with no `.`, `..`, empty segment or trailing slash.
pub fn is_normalized_absolute(path: &Path) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    text == "/"
        || (text.starts_with('/')
            && text[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".."))
}

/// Why the node path `path` is one whose contents kubeboot must never delete: the root, a
/// [`SYSTEM_DIRS`] entry, anything inside a [`SYSTEM_TREES`] entry, a relative or
/// unnormalized path. `None` when kubeboot may clean it.
pub fn protected_reason(path: &Path) -> Option<&'static str> {
    if !path.is_absolute() {
        return Some("it is a relative path");
    }
    if !is_normalized_absolute(path) {
        return Some("it is not a normalized path (it has \".\", \"..\" or an empty segment)");
    }
    if path == Path::new("/") {
        return Some("it is the root directory");
    }
    if SYSTEM_DIRS.iter().any(|d| path == Path::new(d)) {
        return Some("it is a system directory");
    }
    if SYSTEM_TREES.iter().any(|d| path.starts_with(d)) {
        return Some("it is inside a system directory");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_paths_are_protected() {
        for p in [
            "/",
            "/etc",
            "/var/lib",
            "/var",
            "/home",
            "/root",
            "/usr/local/bin",
            "/lib64",
            "/tmp",
        ] {
            assert!(protected_reason(Path::new(p)).is_some(), "{p}");
        }
        for p in [
            "var/lib/etcd",
            ".",
            "",
            "/var/lib/../lib",
            "/var/lib/etcd/",
            "/var//lib/etcd",
        ] {
            assert!(protected_reason(Path::new(p)).is_some(), "{p:?}");
        }
        for p in [
            "/var/lib/etcd",
            "/etc/kubernetes/pki",
            "/var/lib/kubelet",
            "/data/etcd",
            "/etc/kubeboot/manifests",
        ] {
            assert_eq!(protected_reason(Path::new(p)), None, "{p}");
        }
    }

    #[test]
    fn rooted_layout_refuses_its_root_its_system_dirs_and_the_outside() {
        let l = Layout::under("/tmp/node1");
        assert_eq!(
            l.deletion_refusal(Path::new("/tmp/node1")).as_deref(),
            Some("it is the root directory")
        );
        assert!(l.deletion_refusal(Path::new("/tmp/node1/etc")).is_some());
        assert!(
            l.deletion_refusal(Path::new("/etc/kubernetes/pki"))
                .unwrap()
                .contains("outside")
        );
        assert!(
            l.deletion_refusal(Path::new("/tmp/node1/var/lib/etcd/.."))
                .is_some()
        );
        assert!(
            l.deletion_refusal(Path::new("tmp/node1/var/lib/etcd"))
                .is_some()
        );
        assert_eq!(
            l.deletion_refusal(Path::new("/tmp/node1/var/lib/etcd")),
            None
        );
        assert_eq!(
            l.to_node(Path::new("/tmp/node1/var/lib/etcd")),
            Some(PathBuf::from("/var/lib/etcd"))
        );
        let host = Layout::host();
        assert!(host.deletion_refusal(Path::new("/etc")).is_some());
        assert_eq!(host.deletion_refusal(Path::new("/var/lib/etcd")), None);
    }

    #[test]
    fn host_layout_uses_kubeadm_paths() {
        let l = Layout::host();
        assert_eq!(
            l.manifest("etcd"),
            PathBuf::from("/etc/kubernetes/manifests/etcd.yaml")
        );
        assert_eq!(l.default_cert_dir(), PathBuf::from("/etc/kubernetes/pki"));
        assert_eq!(
            l.api_lb_config(),
            PathBuf::from("/etc/kubeboot/api-lb.json")
        );
        assert_eq!(
            Layout::under("/tmp/n1").api_lb_config(),
            PathBuf::from("/tmp/n1/etc/kubeboot/api-lb.json")
        );
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
