//! The run data of `kubeboot join` (kubeadm: cmd/join.go, joinData): the node's join
//! configuration, what discovery found, the cluster-wide configuration read back from the
//! cluster, and the API clients, each made once.

use anyhow::Context;
use components::config::{InitConfig, JoinConfig, JoinDiscovery};
use components::names;

use crate::cluster::Cluster;
use crate::discovery::Discovered;
use crate::say;
use crate::shared::node::NodeCtx;

/// The cluster name in the TLS bootstrap kubeconfig (kubeadm: the name of cluster-info's
/// cluster, which kubeadm's init leaves empty, becomes the default `kubernetes`).
const BOOTSTRAP_CLUSTER_NAME: &str = "kubernetes";

/// The runner a worker gets from the cluster's control-plane `nodes`: the agent when one of
/// them runs kube-proxy under a kubeboot agent (labelled
/// `node.kubeboot.io/kube-proxy=agent`), whose agent approves a worker's kube-proxy
/// certificate; the kubelet when none does; `None` when there is no node to tell by.
pub fn runner_of_control_plane(
    nodes: &[k8s_openapi::api::core::v1::Node],
) -> Option<components::StaticPodRunner> {
    if nodes.is_empty() {
        return None;
    }
    let agent = nodes.iter().any(|n| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LABEL_KUBE_PROXY_RUNNER))
            .is_some_and(|v| v == names::KUBE_PROXY_RUNNER_AGENT)
    });
    Some(if agent {
        components::StaticPodRunner::Agent
    } else {
        components::StaticPodRunner::Kubelet
    })
}

/// What every `join` phase reads and works through.
pub struct JoinData {
    /// The node join runs on; `JoinData` dereferences to it.
    pub node: NodeCtx,
    /// The validated join configuration (node-local).
    pub cfg: JoinConfig,
    /// The cluster's CA and server, once discovery ran.
    pub discovered: Option<Discovered>,
    /// The cluster's configuration with this node's registration and API endpoint (kubeadm:
    /// joinData.InitCfg), read from `kube-system/kubeadm-config` once.
    pub init_cfg: Option<InitConfig>,
    /// The API with the TLS bootstrap token, made once.
    pub bootstrap_api: Option<Cluster>,
    /// The API with this node's own credentials (kubelet.conf; admin.conf on a
    /// control-plane node), made once they exist.
    pub api: Option<Cluster>,
    /// This node's address (the default route's interface), the kubelet's `--node-ip` on a
    /// worker; a control-plane node uses its advertise address.
    pub node_ip: Option<std::net::IpAddr>,
    /// Whether `static_pod_runner` was chosen (`--static-pod-runner`, or the node's own
    /// kubelet configuration from an earlier `kubelet-start`). When not, a worker follows the
    /// cluster's control-plane nodes ([`runner_of_control_plane`]).
    pub static_pod_runner_chosen: bool,
}

impl std::ops::Deref for JoinData {
    type Target = NodeCtx;
    fn deref(&self) -> &NodeCtx {
        &self.node
    }
}

impl std::ops::DerefMut for JoinData {
    fn deref_mut(&mut self) -> &mut NodeCtx {
        &mut self.node
    }
}

impl JoinData {
    /// Whether this node joins as a control-plane node (`--control-plane`).
    pub fn is_control_plane(&self) -> bool {
        self.cfg.control_plane.is_some()
    }

    /// Discovery's result, running it the first time (kubeadm runs it lazily, from the
    /// first phase that needs the cluster).
    ///
    /// # Errors
    /// Discovery failed (its error names the cause and the fix).
    pub fn discovered(&mut self) -> anyhow::Result<&Discovered> {
        if self.discovered.is_none() {
            let discovery = discovery_input(&self.cfg)?;
            let out = self.out.clone();
            let found = crate::discovery::discover(&discovery, |line| {
                // The lines come in kubeadm's words, `[discovery] ...` included.
                out.line(line);
            })
            .context("couldn't validate the identity of the API Server")?;
            self.discovered = Some(found);
        }
        self.discovered
            .as_ref()
            .context("discovery found no cluster")
    }

    /// The API as the TLS bootstrap token sees it: the server the user named (it answered
    /// discovery; cluster-info may name an endpoint that is gone), trusting the discovered CA.
    ///
    /// # Errors
    /// Discovery failed, or the client cannot be built.
    pub fn bootstrap_api(&mut self) -> anyhow::Result<&Cluster> {
        if self.bootstrap_api.is_none() {
            let token = self.cfg.tls_bootstrap_token.clone();
            let found = self.discovered()?.clone();
            // File discovery without a TLS bootstrap token: the file's own credentials
            // (kubeadm: discovery.For returns the file's kubeconfig as it is).
            let yaml = if token.is_empty() {
                found.kubeconfig_yaml.clone()
            } else {
                pki::kubeconfig::bootstrap_kubeconfig(
                    BOOTSTRAP_CLUSTER_NAME,
                    &found.endpoint_url,
                    &found.ca_pem,
                    &token,
                )
                .to_yaml()
            };
            self.bootstrap_api = Some(Cluster::from_kubeconfig_yaml(
                &yaml,
                "the TLS bootstrap credentials",
            )?);
        }
        self.bootstrap_api
            .as_ref()
            .context("the TLS bootstrap client was not created")
    }

    /// The cluster's configuration (kubeadm-config's ClusterConfiguration, read leniently)
    /// with this node's registration and API endpoint.
    ///
    /// # Errors
    /// The ConfigMap cannot be read or its ClusterConfiguration is not usable.
    pub fn init_cfg(&mut self) -> anyhow::Result<&InitConfig> {
        if self.init_cfg.is_none() {
            say!(
                self.out,
                "preflight",
                "Reading configuration from the cluster..."
            );
            say!(
                self.out,
                "preflight",
                "FYI: You can look at this config file with 'kubectl -n kube-system get cm kubeadm-config -o yaml'"
            );
            let api = self.bootstrap_api()?;
            let cm = api
                .get::<k8s_openapi::api::core::v1::ConfigMap>(
                    Some(names::KUBE_SYSTEM),
                    names::KUBEADM_CONFIG_CONFIGMAP,
                )?
                .context(
                    "the cluster has no kube-system/kubeadm-config ConfigMap: it was not set up by kubeadm or kubeboot init (or its upload-config phase was skipped)",
                )?;
            let yaml = cm
                .data
                .as_ref()
                .and_then(|d| d.get(names::CLUSTER_CONFIGURATION_KEY))
                .context("kube-system/kubeadm-config has no ClusterConfiguration")?;
            let cluster = components::config::cluster_from_kubeadm_config(yaml)
                .context("the cluster's kubeadm-config ClusterConfiguration is not usable")?;
            let status = cm
                .data
                .as_ref()
                .and_then(|d| d.get(names::CLUSTER_STATUS_KEY))
                .cloned();
            if !self.static_pod_runner_chosen && !self.is_control_plane() {
                self.follow_control_plane_runner(status.as_deref());
            }
            let mut node = self.cfg.node.clone();
            if node.cri_socket.is_none() {
                node.cri_socket = Some(names::CONTAINERD_SOCKET.to_string());
            }
            // kubeadm (kubelet/flags.go): a worker registers with its taints through the
            // kubelet's flag; a control-plane node gets them from mark-control-plane.
            if self.cfg.control_plane.is_none()
                && let Some(flag) = register_with_taints(node.taints.as_deref().unwrap_or_default())
            {
                node.kubelet_extra_args
                    .entry("register-with-taints".into())
                    .or_insert(flag);
            }
            if self.static_pod_runner == components::StaticPodRunner::Agent {
                // The DaemonSet's affinity skips nodes with this label: set at registration,
                // no kube-proxy Pod is ever scheduled here.
                let label = format!(
                    "{}={}",
                    names::LABEL_KUBE_PROXY_RUNNER,
                    names::KUBE_PROXY_RUNNER_AGENT
                );
                let labels = node
                    .kubelet_extra_args
                    .entry("node-labels".into())
                    .or_default();
                if !labels.split(',').any(|l| l == label) {
                    *labels = if labels.is_empty() {
                        label
                    } else {
                        format!("{labels},{label}")
                    };
                }
            }
            let local_api_endpoint = match &self.cfg.control_plane {
                Some(cp) => cp.local_api_endpoint,
                None => components::config::ApiEndpoint {
                    advertise_address: match node
                        .kubelet_extra_args
                        .get("node-ip")
                        .and_then(|ip| ip.parse().ok())
                    {
                        Some(ip) => ip,
                        None => self.node_ip.context(
                            "this node has no default route, so kubeboot cannot tell its address: add a default route, or give the kubelet's address as nodeRegistration.kubeletExtraArgs.node-ip in a JoinConfiguration",
                        )?,
                    },
                    bind_port: components::names::DEFAULT_APISERVER_BIND_PORT,
                },
            };
            self.init_cfg = Some(InitConfig {
                cluster,
                node,
                local_api_endpoint,
                bootstrap_tokens: vec![],
                certificate_key: self
                    .cfg
                    .control_plane
                    .as_ref()
                    .and_then(|c| c.certificate_key.clone()),
                skip_phases: self.cfg.skip_phases.clone(),
                component_configs: vec![],
            });
        }
        self.init_cfg
            .as_ref()
            .context("the cluster configuration was not read")
    }

    /// A worker with no `--static-pod-runner` runs kube-proxy as the control-plane nodes
    /// listed in kubeadm-config's ClusterStatus do (`kubeadm:get-nodes` lets the bootstrap
    /// token read them). Under the agent runner a worker's kube-proxy needs a certificate that
    /// only a control-plane node's kubeboot agent approves: in a cluster without one (a
    /// kubeadm-made cluster) that join would wait for an approval that never comes, so there
    /// the worker becomes a kubeadm node (the kubelet runner, kube-proxy from the DaemonSet).
    /// When the control-plane nodes cannot be read, the default stays.
    fn follow_control_plane_runner(&mut self, status_yaml: Option<&str>) {
        let Some(cp_names) = status_yaml
            .and_then(|y| components::config::kubeadm_config::cluster_status_endpoints(y).ok())
            .map(|eps| eps.into_keys().collect::<Vec<_>>())
        else {
            return;
        };
        let Ok(api) = self.bootstrap_api() else {
            return;
        };
        let nodes: Vec<k8s_openapi::api::core::v1::Node> = cp_names
            .iter()
            .filter_map(|n| {
                api.get::<k8s_openapi::api::core::v1::Node>(None, n)
                    .ok()
                    .flatten()
            })
            .collect();
        let kubelet = components::StaticPodRunner::Kubelet;
        if runner_of_control_plane(&nodes) == Some(kubelet)
            && self.node.static_pod_runner != kubelet
        {
            say!(
                self.out,
                "preflight",
                "The cluster's control-plane nodes ({}) run kube-proxy from the cluster's DaemonSet, not under a kubeboot agent: this node joins as they do, as a kubeadm node (--static-pod-runner kubelet)",
                cp_names.join(", ")
            );
            self.node.static_pod_runner = kubelet;
        }
    }

    /// The API with this node's own identity (kubelet.conf, through the node's local API
    /// load balancer, so it works before this node's own API server runs).
    ///
    /// # Errors
    /// The kubeconfig is missing or not usable.
    pub fn cluster(&mut self) -> anyhow::Result<&Cluster> {
        if self.api.is_none() {
            let api = if self.dry_run {
                Cluster::recording(self.out.clone())
            } else {
                let path = self.layout.kubeconfig(names::KUBELET_KUBECONFIG);
                Cluster::from_kubeconfig(&self.fs.resolve(&path))?
            };
            self.api = Some(api);
        }
        self.api.as_ref().context("the API client was not created")
    }

    /// The API as this control-plane node's admin.conf sees it: its own API server.
    ///
    /// # Errors
    /// admin.conf is missing or not usable.
    pub fn admin_cluster(&self) -> anyhow::Result<Cluster> {
        if self.dry_run {
            return Ok(Cluster::recording(self.out.clone()));
        }
        let path = self.layout.kubeconfig(names::ADMIN_KUBECONFIG);
        Cluster::from_kubeconfig(&self.fs.resolve(&path))
    }

    /// The discovery input for this configuration.
    pub fn discovery(&self) -> &JoinDiscovery {
        &self.cfg.discovery
    }
}

/// The kubelet's `--register-with-taints` value for `taints` (`key=value:Effect,...`), `None`
/// for none.
pub fn register_with_taints(taints: &[components::config::Taint]) -> Option<String> {
    (!taints.is_empty()).then(|| {
        taints
            .iter()
            .map(|t| match &t.value {
                Some(v) => format!("{}={v}:{}", t.key, t.effect),
                None => format!("{}:{}", t.key, t.effect),
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

#[cfg(test)]
mod taint_tests {
    use super::*;

    #[test]
    fn a_workers_taints_are_the_kubelets_flag() {
        let t = |key: &str, value: Option<&str>, effect: &str| components::config::Taint {
            key: key.into(),
            value: value.map(String::from),
            effect: effect.into(),
        };
        assert_eq!(register_with_taints(&[]), None);
        assert_eq!(
            register_with_taints(&[
                t("dedicated", Some("gpu"), "NoSchedule"),
                t("spot", None, "PreferNoSchedule")
            ]),
            Some("dedicated=gpu:NoSchedule,spot:PreferNoSchedule".into())
        );
    }
}

/// The discovery request of a join configuration (kubeadm: discovery.For).
///
/// # Errors
/// The token is malformed (validation refuses that earlier).
pub fn discovery_input(cfg: &JoinConfig) -> anyhow::Result<crate::discovery::Discovery> {
    Ok(match &cfg.discovery {
        JoinDiscovery::Token {
            api_server_endpoint,
            token,
            ca_cert_hashes,
            unsafe_skip_ca_verification,
        } => crate::discovery::Discovery::Token(crate::discovery::TokenDiscovery {
            endpoint: api_server_endpoint.clone(),
            token: pki::BootstrapToken::parse(token)?,
            ca_cert_hashes: ca_cert_hashes.clone(),
            unsafe_skip_ca_verification: *unsafe_skip_ca_verification,
            timeout: cfg.discovery_timeout,
        }),
        JoinDiscovery::File { path_or_url } => crate::discovery::Discovery::File {
            path_or_url: path_or_url.clone(),
            timeout: cfg.discovery_timeout,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use components::StaticPodRunner;
    use k8s_openapi::api::core::v1::Node;

    fn node(labels: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    #[test]
    fn a_worker_follows_the_control_plane_runner() {
        let agent = node(&[("node.kubeboot.io/kube-proxy", "agent")]);
        let kubeadm = node(&[("node-role.kubernetes.io/master", "")]);
        assert_eq!(runner_of_control_plane(&[]), None);
        assert_eq!(
            runner_of_control_plane(std::slice::from_ref(&kubeadm)),
            Some(StaticPodRunner::Kubelet)
        );
        assert_eq!(
            runner_of_control_plane(&[kubeadm, agent.clone()]),
            Some(StaticPodRunner::Agent)
        );
        assert_eq!(
            runner_of_control_plane(&[node(&[("node.kubeboot.io/kube-proxy", "daemonset")])]),
            Some(StaticPodRunner::Kubelet)
        );
        assert_eq!(
            runner_of_control_plane(&[agent]),
            Some(StaticPodRunner::Agent)
        );
    }
}
