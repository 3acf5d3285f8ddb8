//! The addon objects kubeadm 1.20 creates through the API server (kubeadm:
//! app/phases/addons/{dns,proxy}), typed, plus kubeboot's agent-run kube-proxy static pod.
//!
//! - [`cluster_dns`]: kubeboot's own cluster DNS (`kubeboot dns` as the Deployment
//!   `kube-system/kubeboot-dns`, its RBAC) and CoreDNS's Deployment standing aside for it.
//! - [`coredns`]: CoreDNS's ConfigMap, ClusterRole, ClusterRoleBinding, ServiceAccount,
//!   Deployment and the `kube-dns` Service.
//! - [`kube_proxy`]: kube-proxy's ServiceAccount, ConfigMap, DaemonSet and RBAC, the
//!   KubeProxyConfiguration (kubeadm's defaults with the user's document merged over them) and
//!   the static pod the agent runs on each kubeboot node.

pub mod cluster_dns;
pub mod coredns;
pub mod kube_proxy;

use std::collections::BTreeMap;

pub use cluster_dns::{KubebootDnsAddon, coredns_standing_aside, kubeboot_dns_addon};
pub use coredns::{CoreDnsAddon, coredns_addon, dns_service_ip};
pub use kube_proxy::{
    KubeProxyAddon, KubeProxyConfig, kube_proxy_addon, kube_proxy_config, kube_proxy_pod,
};

/// Why an addon's objects could not be built from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddonError {
    /// The service subnet has no 10th address for the DNS Service (kubeadm: GetDNSIP).
    #[error(
        "networking.serviceSubnet: {subnet:?} is too small: the DNS Service needs its 10th address"
    )]
    ServiceSubnetTooSmall {
        /// The subnet as configured.
        subnet: String,
    },
    /// The user's KubeProxyConfiguration document is not a YAML mapping.
    #[error("the KubeProxyConfiguration document is not valid: {reason}")]
    InvalidKubeProxyConfiguration {
        /// What is wrong with it.
        reason: String,
    },
    /// The control-plane endpoint cannot be turned into the API server URL.
    #[error("controlPlaneEndpoint: {0}")]
    ControlPlaneEndpoint(String),
}

/// `(key, value)` string pairs as a label or annotation map.
pub(crate) fn string_map<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests_support {
    use components::config::{
        ApiEndpoint, ApiServer, ClusterConfig, ControlPlaneComponent, Etcd, InitConfig,
        KeyAlgorithm, LocalEtcd, Networking, NodeRegistration,
    };

    /// kubeadm's defaults for node `node1` at 10.123.0.213, pod subnet 10.244.0.0/16.
    pub(crate) fn config() -> InitConfig {
        InitConfig {
            cluster: ClusterConfig {
                kubernetes_version: "v1.20.2".parse().expect("version"),
                cluster_name: "kubernetes".into(),
                control_plane_endpoint: None,
                image_repository: "k8s.gcr.io".into(),
                certificates_dir: "/etc/kubernetes/pki".into(),
                networking: Networking {
                    pod_subnet: Some("10.244.0.0/16".parse().expect("cidr")),
                    service_subnet: "10.96.0.0/12".parse().expect("cidr"),
                    dns_domain: "cluster.local".into(),
                },
                api_server: ApiServer::default(),
                controller_manager: ControlPlaneComponent::default(),
                scheduler: ControlPlaneComponent::default(),
                etcd: Etcd::Local(LocalEtcd::default()),
                feature_gates: Default::default(),
                encryption_algorithm: KeyAlgorithm::EcdsaP256,
                certificate_validity: components::config::DEFAULT_CERTIFICATE_VALIDITY,
                ca_certificate_validity: components::config::DEFAULT_CA_CERTIFICATE_VALIDITY,
                certificate_renewal_window: components::config::default_renewal_window(
                    components::config::DEFAULT_CERTIFICATE_VALIDITY,
                ),
            },
            node: NodeRegistration {
                name: "node1".into(),
                cri_socket: None,
                taints: None,
                kubelet_extra_args: Default::default(),
                ignore_preflight_errors: vec![],
            },
            local_api_endpoint: ApiEndpoint {
                advertise_address: "10.123.0.213".parse().expect("ip"),
                bind_port: 6443,
            },
            bootstrap_tokens: vec![],
            certificate_key: None,
            skip_phases: vec![],
            component_configs: vec![],
        }
    }
}
