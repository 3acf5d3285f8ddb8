//! A pod's own network, for pods without hostNetwork: a named network namespace wired by the
//! node's CNI network, as a CRI runtime does for a pod sandbox (containerd:
//! pkg/cri/server/sandbox_run.go setupPodNetwork, sandbox_stop.go teardownPodNetwork).
//!
//! Setup: the network is the first configuration of the CNI configuration directory
//! ([`conf::choose`]). A record ([`SandboxRecord`]) is written before anything is created;
//! then come the namespace `<netns_dir>/kubeboot-<node-id>-<pod-uid>`, CNI ADD of the loopback
//! network (`lo`) and of the pod network (`eth0`), and the record again with ADD's result and
//! the pod's addresses. A failed setup is torn down before it is retried.
//!
//! Teardown, once the pod's containers stopped: CNI DEL with the recorded configuration,
//! arguments and result, then the namespace and the record go. The loopback network gets no
//! DEL: `lo` ends with the namespace and the plugin keeps no state.
//!
//! The record is what survives an agent restart: the network of a running pod is adopted
//! without a second ADD, and whatever a crash left half done is torn down.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use tracing::{info, warn};

use crate::AgentConfig;
use crate::cni::conf::{self, NetworkList, NoNetwork};
use crate::cni::{self, RuntimeConf};
use crate::host::fs::Fs;
use crate::host::netns;
use crate::pod::spec::StaticPod;
use crate::state::{SandboxRecord, StateDir};

/// The pod's interface (the kubelet's and containerd's default).
pub const POD_IFNAME: &str = "eth0";

/// The waiting reason of a pod's containers while there is no network configuration (the
/// kubelet's NetworkPluginNotReady condition, as a container reason).
pub const NETWORK_NOT_READY: &str = "NetworkNotReady";

/// The waiting reason of a pod's containers after a failed setup (kubelet: kuberuntime
/// ErrCreatePodSandbox).
pub const SETUP_FAILED: &str = "CreatePodSandboxError";

/// The message of the [`NETWORK_NOT_READY`] reason: what is missing and what ends the wait.
pub fn not_ready_message(why: &NoNetwork) -> String {
    format!(
        "{why}; the pod starts once a network configuration (*.conflist, *.conf) is there (with --pod-network bridge kubeboot writes one when the node gets its podCIDR)"
    )
}

/// A pod's network once set up: what its containers and probes need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNet {
    /// The network namespace file the containers enter.
    pub netns: PathBuf,
    /// The pod's addresses, IPv4 first.
    pub ips: Vec<IpAddr>,
}

/// Sets up and tears down the networks of a node's pods.
#[derive(Debug, Clone)]
pub struct Networks {
    conf_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    netns_dir: PathBuf,
    node_id: String,
    state: StateDir,
}

impl Networks {
    /// The networks of the agent configured by `cfg`, on the node `node_id`.
    pub fn new(cfg: &AgentConfig, state: StateDir, node_id: String) -> Self {
        Networks {
            conf_dir: cfg.cni_conf_dir.clone(),
            plugin_dirs: cfg.cni_plugin_dirs.clone(),
            netns_dir: cfg.netns_dir.clone(),
            node_id,
            state,
        }
    }

    /// The CNI configuration directory.
    pub fn conf_dir(&self) -> &std::path::Path {
        &self.conf_dir
    }

    /// The prefix of this node's namespace files: `kubeboot-<node-id>-`.
    fn prefix(&self) -> String {
        format!("kubeboot-{}-", self.node_id)
    }

    /// The pod sandbox's stable id: `CNI_CONTAINERID` and the namespace's file name,
    /// `kubeboot-<node-id>-<pod-uid>`.
    pub fn sandbox_id(&self, uid: &str) -> String {
        format!("{}{uid}", self.prefix())
    }

    /// Where a pod's namespace is kept.
    pub fn netns_path(&self, uid: &str) -> PathBuf {
        self.netns_dir.join(self.sandbox_id(uid))
    }

    /// What every plugin gets for `pod`: the sandbox id, the namespace, `eth0`, and the pod's
    /// identity in `CNI_ARGS` (as the kubelet and containerd pass it).
    pub fn runtime_conf(&self, pod: &StaticPod) -> RuntimeConf {
        let id = self.sandbox_id(&pod.uid);
        RuntimeConf {
            netns: self.netns_dir.join(&id),
            ifname: POD_IFNAME.to_string(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), pod.namespace.clone()),
                ("K8S_POD_NAME".into(), pod.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), id.clone()),
                ("K8S_POD_UID".into(), pod.uid.clone()),
            ],
            plugin_dirs: self.plugin_dirs.clone(),
            container_id: id,
        }
    }

    /// The network a pod gets now, from the configuration directory.
    ///
    /// # Errors
    /// When the directory holds no usable configuration.
    pub fn config(&self) -> Result<NetworkList, NoNetwork> {
        let fs = Fs::real();
        let mut files = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.conf_dir) {
            for e in entries.flatten() {
                let path = e.path();
                if !e.file_name().to_str().is_some_and(conf::is_conf_file) {
                    continue;
                }
                match fs.read_string_if_exists(&path) {
                    Ok(Some(text)) => files.push((path, Ok(text))),
                    Ok(None) => {}
                    Err(err) => files.push((path, Err(err.root_cause().to_string()))),
                }
            }
        }
        conf::choose(&self.conf_dir, files)
    }

    /// The network a pod had before an agent restart: its record is complete and its
    /// namespace is still there.
    pub fn adopt(&self, uid: &str) -> Option<PodNet> {
        let rec = self.state.read_sandbox(uid).ok()??;
        (rec.result.is_some() && netns::is_netns(&rec.runtime.netns)).then_some(PodNet {
            netns: rec.runtime.netns,
            ips: rec.ips,
        })
    }

    /// The pods that have a network record (set up, or left half done).
    pub fn recorded(&self) -> Vec<String> {
        self.state.sandbox_uids()
    }

    /// Sets up `pod`'s network with `network`: the namespace, `lo`, CNI ADD; first tears down
    /// what an earlier attempt left, and on failure what this one did.
    ///
    /// # Errors
    /// When a step fails (with the teardown's error too when that failed as well).
    pub async fn setup(&self, pod: &StaticPod, network: NetworkList) -> anyhow::Result<PodNet> {
        if !matches!(self.state.read_sandbox(&pod.uid), Ok(None)) {
            self.teardown(&pod.uid)
                .await
                .context("could not remove what an earlier setup left")?;
        }
        // A namespace of this pod without a record (removed by hand): nothing to run DEL
        // with, but in the way.
        let path = self.netns_path(&pod.uid);
        if netns::is_netns(&path) {
            warn!(netns = %path.display(), "removing a network namespace of this pod that has no record");
            netns::remove(&path)?;
        }
        let mut rec = SandboxRecord {
            pod_uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            runtime: self.runtime_conf(pod),
            network,
            result: None,
            ips: Vec::new(),
        };
        self.state.write_sandbox(&rec)?;
        match self.create(&mut rec).await {
            Ok(net) => {
                let ips: Vec<String> = net.ips.iter().map(ToString::to_string).collect();
                info!(netns = %net.netns.display(), ips = %ips.join(","), network = %rec.network.name, "pod network set up");
                Ok(net)
            }
            Err(e) => match self.teardown(&pod.uid).await {
                Ok(()) => Err(e),
                Err(undo) => Err(e.context(format!(
                    "and removing what was set up failed too (retried later): {undo:#}"
                ))),
            },
        }
    }

    async fn create(&self, rec: &mut SandboxRecord) -> anyhow::Result<PodNet> {
        netns::create(&rec.runtime.netns)?;
        cni::add_list(&NetworkList::loopback(), &rec.runtime.with_ifname("lo"))
            .await
            .context("could not bring up lo")?;
        let result = cni::add_list(&rec.network, &rec.runtime).await?;
        rec.ips = conf::result_ips(&result, &rec.runtime.ifname);
        rec.result = Some(result);
        self.state.write_sandbox(rec)?;
        Ok(PodNet {
            netns: rec.runtime.netns.clone(),
            ips: rec.ips.clone(),
        })
    }

    /// Tears down the network of the pod `uid`, if it has one: CNI DEL as recorded, then
    /// the namespace and the record. A record that cannot be read is dropped with the
    /// namespace (there is nothing to run DEL with).
    ///
    /// # Errors
    /// When DEL fails or the namespace cannot be removed; the record stays, for a retry.
    pub async fn teardown(&self, uid: &str) -> anyhow::Result<()> {
        let rec = match self.state.read_sandbox(uid) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => {
                warn!("{e:#}; removing the pod's network namespace without CNI DEL");
                netns::remove(&self.netns_path(uid))?;
                return self.state.remove_sandbox(uid);
            }
        };
        cni::del_list(&rec.network, &rec.runtime, rec.result.as_ref())
            .await
            .with_context(|| {
                format!("CNI DEL for pod {}/{} failed", rec.namespace, rec.pod_name)
            })?;
        netns::remove(&rec.runtime.netns)?;
        self.state.remove_sandbox(uid)?;
        info!(pod = %format!("{}/{}", rec.namespace, rec.pod_name), netns = %rec.runtime.netns.display(), "pod network removed");
        Ok(())
    }

    /// For `kubeboot reset`, once the pods' processes are gone: tears down every recorded
    /// network; where DEL fails, says so and removes the namespace and the record anyway; then
    /// removes this node's namespaces that have no record. Returns the namespaces removed.
    ///
    /// # Errors
    /// When a namespace cannot be removed (it is left behind).
    pub async fn remove_all(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for uid in self.recorded() {
            let path = self
                .state
                .read_sandbox(&uid)
                .ok()
                .flatten()
                .map_or_else(|| self.netns_path(&uid), |r| r.runtime.netns);
            if let Err(e) = self.teardown(&uid).await {
                warn!("{e:#}; removing the pod's network namespace anyway");
                netns::remove(&path)?;
                self.state.remove_sandbox(&uid)?;
            }
            removed.push(path);
        }
        removed.extend(self.remove_strays()?);
        Ok(removed)
    }

    /// Removes this node's namespaces that have no record (none should exist: the record
    /// is written first). Returns them.
    ///
    /// # Errors
    /// When one cannot be removed.
    pub fn remove_strays(&self) -> anyhow::Result<Vec<PathBuf>> {
        let prefix = self.prefix();
        let recorded = self.recorded();
        let mut removed = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.netns_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(uid) = name.strip_prefix(&prefix) else {
                    continue;
                };
                if !recorded.iter().any(|r| r == uid) {
                    netns::remove(&e.path())?;
                    removed.push(e.path());
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn networks(root: &Path) -> Networks {
        let layout = components::Layout::under(root);
        let cfg = AgentConfig::from_layout(&layout, Vec::new());
        Networks::new(
            &cfg,
            StateDir::new(&cfg.state_dir),
            "0123456789abcdef".into(),
        )
    }

    #[test]
    fn the_waiting_reason_names_the_directory_and_the_fix() {
        let why = NoNetwork::Empty {
            dir: "/etc/cni/net.d".into(),
        };
        let m = not_ready_message(&why);
        assert!(
            m.starts_with("no CNI configuration in /etc/cni/net.d; the pod starts once"),
            "{m}"
        );
        assert!(m.contains("--pod-network bridge"), "{m}");
    }

    #[test]
    fn sandbox_identity_is_stable_and_per_node() {
        let d = tempfile::tempdir().unwrap();
        let n = networks(d.path());
        let pod = crate::pod::spec::parse_manifest(
            Path::new("/m/web.yaml"),
            b"metadata: {name: web}\nspec: {containers: [{name: c, image: k8s.gcr.io/kube-proxy:v1.20.2}]}",
            Some("n1"),
        )
        .unwrap();
        let rt = n.runtime_conf(&pod);
        assert_eq!(
            rt.container_id,
            format!("kubeboot-0123456789abcdef-{}", pod.uid)
        );
        assert_eq!(rt.netns, d.path().join("run/netns").join(&rt.container_id));
        assert_eq!(rt.netns, n.netns_path(&pod.uid));
        assert_eq!(rt.ifname, "eth0");
        assert!(rt.args.contains(&("K8S_POD_NAME".into(), "web-n1".into())));
        assert!(
            rt.args
                .contains(&("K8S_POD_NAMESPACE".into(), "default".into()))
        );
        assert_eq!(n.runtime_conf(&pod), rt);
    }

    #[test]
    fn config_reads_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let n = networks(d.path());
        let err = n.config().unwrap_err();
        assert!(matches!(err, NoNetwork::Empty { .. }), "{err}");
        std::fs::create_dir_all(n.conf_dir()).unwrap();
        std::fs::write(
            n.conf_dir().join("99-x.conflist"),
            r#"{"name":"x","cniVersion":"0.4.0","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            n.conf_dir().join("10-y.conf"),
            r#"{"name":"y","cniVersion":"0.4.0","type":"ptp"}"#,
        )
        .unwrap();
        assert_eq!(n.config().unwrap().name, "y");
    }
}
