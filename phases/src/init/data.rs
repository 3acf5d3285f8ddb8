//! The run data of `kubeboot init` (kubeadm: cmd/init.go, initData): the validated config and
//! the handles every phase works through.

use std::path::PathBuf;
use std::time::SystemTime;

use agent::host::fs::Fs;
use components::Layout;
use components::config::InitConfig;

use crate::out::Out;

/// What every `init` phase reads and works through.
pub struct InitData {
    /// The validated configuration.
    pub cfg: InitConfig,
    /// Where node files live (contents refer to these paths).
    pub layout: Layout,
    /// Where bytes land (a scratch directory in dry-run).
    pub fs: Fs,
    /// User output.
    pub out: Out,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Directories where component binaries are looked up (`--bin-dir`).
    pub bin_dirs: Vec<PathBuf>,
    /// The kubeboot executable the agent is started from.
    pub exe: PathBuf,
    /// Preflight errors to ignore (lower-case names, or `all`).
    pub ignore_preflight_errors: Vec<String>,
    /// The clock reading certificates are issued at.
    pub now: SystemTime,
    /// Host facts the manifests depend on (extra CA directories, external CA).
    pub host_paths: manifests::HostPaths,
}

impl InitData {
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
