//! The node a command works on, the same for `init` and `join` (and later `upgrade`): where
//! its files live, where bytes land, who reads the output, how the agent is started. Each
//! command's run data holds one [`NodeCtx`] and dereferences to it, so shared phase helpers
//! take `&NodeCtx` and never depend on a command's run data.

use std::path::PathBuf;
use std::time::SystemTime;

use agent::host::fs::Fs;
use components::Layout;

use crate::out::Out;

/// What every command's phases share about the node they run on.
#[derive(Clone)]
pub struct NodeCtx {
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
    /// `--pod-network`: kubeboot's bridge CNI network (the agent configures it) or none.
    pub pod_network: agent::cni::PodNetwork,
    /// `--static-pod-runner`: the agent (default) or the kubelet runs the static pods.
    pub static_pod_runner: components::StaticPodRunner,
}

impl NodeCtx {
    /// The directory the agent's own static pods (the kubelet, containerd) go to: the
    /// manifest directory under the agent, `/etc/kubeboot/manifests` when the kubelet runs
    /// the manifest directory.
    pub fn agent_manifests_dir(&self) -> PathBuf {
        match self.static_pod_runner {
            components::StaticPodRunner::Agent => self.layout.manifests_dir(),
            components::StaticPodRunner::Kubelet => self.layout.agent_manifests_dir(),
        }
    }

    /// A context for a node rooted in `root` (tests): real files, captured output, the
    /// agent runner with kubeboot's bridge network.
    pub fn under(root: &std::path::Path, now: SystemTime) -> NodeCtx {
        NodeCtx {
            layout: Layout::under(root),
            fs: Fs::real(),
            out: Out::capture(),
            dry_run: false,
            bin_dirs: vec![],
            exe: "/usr/local/bin/kubeboot".into(),
            ignore_preflight_errors: vec![],
            now,
            pod_network: agent::cni::PodNetwork::Bridge,
            static_pod_runner: components::StaticPodRunner::Agent,
        }
    }
}
