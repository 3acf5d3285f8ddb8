//! kubeboot's node agent: keeps the static pods of `/etc/kubernetes/manifests` running as
//! host processes, like the kubelet does for static pods but with no container runtime.
//!
//! It watches the manifest directory (inotify wakes a level-triggered loop that also re-reads
//! it periodically), starts each pod's containers under a small shim (so they survive an agent
//! restart and are adopted by the next agent), probes them (startup, liveness, readiness:
//! httpGet, tcpSocket, exec), restarts them with the kubelet's backoff, stops them with
//! SIGTERM, the grace period, then SIGKILL, writes their output as CRI logs under
//! `/var/log/kubeboot/pods`, and answers status requests on a unix socket.
//!
//! A hostNetwork pod runs in the node's network namespace. Any other pod gets a network
//! namespace of its own (`/run/netns/kubeboot-<node-id>-<pod-uid>`), wired by the node's CNI
//! network (the first configuration in `/etc/cni/net.d`, with `lo` from the loopback plugin):
//! CNI ADD before its containers start, in that namespace; CNI DEL and the namespace's removal
//! once they stopped. Until a configuration exists the pod waits (`NetworkNotReady`). Its
//! address is in the status and the API, and its probes go to it.
//!
//! It publishes its pods to the Kubernetes API ([`mirror`]) once its kubeconfig exists, serves
//! the admission webhook that confines the agents' credential to those pods ([`webhook`]) once
//! its serving certificate exists (control-plane nodes), approves joining nodes' kube-proxy
//! certificate requests with that same kubeconfig ([`csr_approval`]), and never stops pods
//! when it exits itself.
//!
//! It runs the node-local API load balancer ([`apilb`]) on `127.0.0.1:6444` while
//! `/etc/kubeboot/api-lb.json` exists, so the node's clients reach any live API server.
//!
//! Modules:
//! - [`apilb`]: the node-local API load balancer ([`apilb::plan`]: its pure decisions).
//! - [`host`]: side-effect primitives shared with the phases (files, processes, network
//!   namespaces).
//! - [`watch`]: the manifest directory, and the inotify watches that wake the agent's loops
//!   ([`watch::DirWatch`]: the CNI configuration directory, the directories of the files
//!   containers use, ...).
//! - [`pod`]: manifests read as pods ([`pod::spec`]), the pure container lifecycle
//!   ([`pod::lifecycle`]) and restart backoff ([`pod::backoff`]), their executor, and the
//!   pods' own networks ([`pod::network`]).
//! - [`runtime`]: the runtimes (`process`).
//! - [`shim`]: the per-container supervisor process (`kubeboot agent shim`).
//! - [`probe`]: running probes.
//! - [`logs`]: the CRI log format, log rotation.
//! - [`mirror`]: the agent's pods as Pods in the API (the design is there).
//! - [`webhook`]: the admission webhook for the local API server ([`webhook::review`]: the
//!   pure decision).
//! - [`csr_approval`]: which certificate requests the control-plane agents approve (a joining
//!   node's kube-proxy client certificate), pure; `csr_approver` is the loop that approves them.
//! - [`reload`]: restarting exactly the containers whose files (certificates, keys,
//!   kubeconfigs under `/etc/kubernetes`) changed.
//! - [`state`]: the agent's records on disk.
//! - [`status`]: the status served on the socket, and its client.
//! - [`instance`]: one agent per node: its lock, its pid file, finding the running agent.
//! - [`daemon`]: detached start/stop, stopping every pod (reset), the systemd unit.
//! - [`cert_renewal`]: renewing the node's certificates inside a window before expiry, through
//!   a renewer the `kubeboot agent` command injects.
//! - [`cni`]: kubeboot's bridge CNI configuration, the plugins it needs, running a plugin and
//!   ADD/DEL of a configuration list ([`cni::conf`]: reading and choosing configurations).
//! - [`node_ipam`]: on control-plane nodes, new Nodes' podCIDRs where the controller-manager
//!   runs without its node IPAM controller (kubeboot's default), one agent at a time (a Lease).
//! - [`node_network`]: `--pod-network bridge`: the CNI configuration once the node's podCIDR
//!   is known, and routes to the other nodes' pods.
//! - [`dns`]: cluster DNS (`kubeboot dns`): the records, the answers, the Corefile.
//! - [`node_cleanup`]: what `kubeboot reset` needs to stop CRI containers and their network
//!   namespaces.

pub mod apilb;
pub mod cert_renewal;
pub mod cni;
pub mod csr_approval;
mod csr_approver;
pub mod daemon;
pub mod dns;
pub mod host;
pub mod instance;
pub mod logs;
pub mod mirror;
pub mod node_cleanup;
pub mod node_ipam;
pub mod node_network;
pub mod pod;
pub mod probe;
pub mod reload;
pub mod runtime;
pub mod shim;
pub mod state;
pub mod status;
mod supervisor;
pub mod watch;
pub mod webhook;

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use components::Layout;

pub use daemon::{is_running, start_detached, stop, stop_all_pods, systemd_unit};
pub use pod::backoff::BackoffConfig;
pub use shim::shim_main;
pub use status::{AgentStatus, query};

/// Where named network namespaces are kept (iproute2's NETNS_RUN_DIR; containerd's CNI and
/// `ip netns` use it too).
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The static pod manifests (`/etc/kubernetes/manifests`).
    pub manifest_dir: PathBuf,
    /// Persistent state: node id, container records (`/var/lib/kubeboot/agent`).
    pub state_dir: PathBuf,
    /// Runtime files: the status socket `agent.sock` (`/run/kubeboot`).
    pub run_dir: PathBuf,
    /// Container logs (`/var/log/kubeboot/pods`).
    pub pod_log_dir: PathBuf,
    /// How container logs, and the agent's own, are rotated (the kubelet's 10Mi, 5 files).
    pub log_rotation: logs::LogRotation,
    /// The agent's own log (`/var/log/kubeboot/agent.log`): rotated when the agent's stderr
    /// is that file (a detached agent), left alone otherwise.
    pub agent_log_file: Option<PathBuf>,
    /// Where the component binaries are looked up, first hit wins (`--bin-dir`).
    pub bin_dirs: Vec<PathBuf>,
    /// Restart backoff.
    pub backoff: BackoffConfig,
    /// Appended to pod names as `-<node_name>`, as the kubelet does (kubeadm manifests
    /// carry the bare component name).
    pub node_name: Option<String>,
    /// The executable the shim runs from: the agent's own binary by default.
    pub shim_exe: PathBuf,
    /// Arguments before the shim's own: `["agent", "shim"]` by default.
    pub shim_args_prefix: Vec<String>,
    /// The supervisor's periodic pass while something it looks at is not watched by inotify
    /// (no inotify, a directory that does not exist yet), and the retry period of a failed
    /// pod network teardown.
    pub resync: Duration,
    /// The pass while inotify watches the manifest, CNI configuration and credential
    /// directories: a change there wakes the supervisor at once, and the pass only catches
    /// what inotify cannot see (a change behind a symlink). 20 s, the kubelet's
    /// `fileCheckFrequency` for its manifest directory.
    pub watched_resync: Duration,
    /// The kubeconfig the pods are published to the API with
    /// (`/etc/kubernetes/kubeboot-agent.conf`); None never publishes them. The agent waits
    /// for the file to exist. Publishing also needs [`AgentConfig::node_name`].
    pub kubeconfig: Option<PathBuf>,
    /// The node's address for the pods' hostIP (and podIP of hostNetwork pods); None resolves
    /// the node name, as the kubelet does without --node-ip.
    pub node_ip: Option<IpAddr>,
    /// `--pod-network bridge`: the pod network loop ([`node_network`]); None leaves the pod
    /// network to the user.
    pub pod_network: Option<node_network::NodeNetworkConfig>,
    /// The CNI configuration directory pods without hostNetwork get their network from
    /// (`/etc/cni/net.d`).
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked up, in order ([`cni::default_plugin_dirs`]).
    pub cni_plugin_dirs: Vec<PathBuf>,
    /// Where the network namespaces of those pods are kept (`/run/netns`).
    pub netns_dir: PathBuf,
    /// The admission webhook for the node's API server ([`webhook`]); served once its
    /// certificate exists. None never serves it.
    pub webhook: Option<webhook::WebhookConfig>,
    /// The node-local API load balancer ([`apilb`]); it runs while its configuration file
    /// exists. None never runs it.
    pub api_lb: Option<apilb::ApiLbSettings>,
    /// The directories (`/etc/kubernetes`, `/var/lib/kube-proxy`) whose files, named on a
    /// container's command line, restart that container when their content changes
    /// ([`reload`]); none never does.
    pub credentials_dirs: Vec<PathBuf>,
    /// Renews the node's certificates inside the cluster's window before expiry
    /// ([`cert_renewal`]); None never does.
    pub cert_renewer: Option<cert_renewal::RenewerHandle>,
    /// This node's kube-controller-manager manifest (`/etc/kubernetes/manifests`, whoever
    /// runs it): whether the agents give Nodes their podCIDRs ([`node_ipam`]).
    pub controller_manager_manifest: PathBuf,
}

impl AgentConfig {
    /// The settings for a node layout, with the shim being this very executable.
    pub fn from_layout(layout: &Layout, bin_dirs: Vec<PathBuf>) -> Self {
        AgentConfig {
            manifest_dir: layout.manifests_dir(),
            state_dir: layout.agent_state_dir(),
            run_dir: layout.run_dir(),
            pod_log_dir: layout.pod_logs_dir(),
            log_rotation: logs::LogRotation::default(),
            agent_log_file: Some(layout.agent_log_file()),
            bin_dirs,
            backoff: BackoffConfig::default(),
            node_name: None,
            shim_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            shim_args_prefix: vec!["agent".into(), "shim".into()],
            resync: Duration::from_secs(5),
            watched_resync: crate::watch::SAFETY_RESCAN,
            kubeconfig: Some(layout.kubeconfig(components::names::KUBEBOOT_AGENT_KUBECONFIG)),
            node_ip: None,
            pod_network: None,
            cni_conf_dir: layout.node_path(components::names::CNI_CONF_DIR),
            cni_plugin_dirs: cni::default_plugin_dirs(),
            netns_dir: layout.node_path(NETNS_DIR),
            webhook: Some(webhook::WebhookConfig::for_state_dir(
                &layout.agent_state_dir(),
            )),
            api_lb: Some(apilb::ApiLbSettings::for_layout(layout)),
            credentials_dirs: vec![layout.kubernetes_dir(), layout.kube_proxy_dir()],
            cert_renewer: None,
            controller_manager_manifest: layout
                .manifest(components::names::KUBE_CONTROLLER_MANAGER),
        }
    }

    /// Turns on `--pod-network bridge` for `node_name`, with the kubelet's credentials from
    /// `layout` and the agent's CNI directories.
    pub fn with_bridge_network(mut self, layout: &Layout, node_name: &str) -> Self {
        self.pod_network = Some(node_network::NodeNetworkConfig {
            node_name: node_name.to_string(),
            kubeconfig: layout.kubeconfig(components::names::KUBELET_KUBECONFIG),
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_plugin_dirs: self.cni_plugin_dirs.clone(),
        });
        self
    }

    /// The status socket, `<run_dir>/agent.sock`.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("agent.sock")
    }

    /// The pid file the agent writes, `<run_dir>/agent.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("agent.pid")
    }
}

/// Runs the agent until SIGTERM or SIGINT, on a single-threaded tokio runtime of its own.
/// Pods keep running after it returns; the next agent adopts them.
///
/// # Errors
/// When the state, run or log directories cannot be created, another agent runs on this
/// node (it holds the lock), or the signal handlers cannot be installed.
pub fn run(config: AgentConfig) -> anyhow::Result<()> {
    run_until_signal(|shutdown| supervisor::run(config, shutdown))
}

/// Runs `body` on a single-threaded tokio runtime of its own, handing it a future that
/// resolves at SIGTERM or SIGINT (the agent, `kubeboot dns`).
///
/// # Errors
/// When the runtime or the signal handlers cannot be set up, and `body`'s.
pub(crate) fn run_until_signal<Fut>(
    body: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()>>>) -> Fut,
) -> anyhow::Result<()>
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the tokio runtime")?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
        let shutdown = Box::pin(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        });
        body(shutdown).await
    })
}

/// Runs the agent until `shutdown` resolves (tests and embedders), like [`run`] without the
/// signal handlers.
///
/// # Errors
/// As [`run`].
pub fn run_until(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the tokio runtime")?;
    rt.block_on(supervisor::run(config, shutdown))
}
