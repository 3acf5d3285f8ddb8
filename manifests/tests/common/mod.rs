//! A test `InitConfig` built directly (not through the config loader): the golden config.
#![allow(dead_code)]

use std::collections::BTreeMap;

use components::config::{
    ApiEndpoint, ApiServer, ClusterConfig, ControlPlaneComponent, Etcd, InitConfig, KeyAlgorithm,
    LocalEtcd, Networking, NodeRegistration,
};
use components::names;

/// What `tests/golden/v1.20.2/config.yaml` says, defaulted as kubeadm v1.20 defaults it.
pub fn golden_config() -> InitConfig {
    let mut api_extra = BTreeMap::new();
    api_extra.insert(
        "enable-admission-plugins".to_string(),
        "NodeRestriction,LimitRanger".to_string(),
    );
    InitConfig {
        cluster: ClusterConfig {
            kubernetes_version: "v1.20.2".parse().unwrap(),
            cluster_name: "kubernetes".into(),
            control_plane_endpoint: None,
            image_repository: "k8s.gcr.io".into(),
            certificates_dir: names::DEFAULT_CERTIFICATES_DIR.into(),
            networking: Networking {
                pod_subnet: Some("10.244.0.0/16".parse().unwrap()),
                service_subnet: "10.96.0.0/12".parse().unwrap(),
                dns_domain: "cluster.local".into(),
            },
            api_server: ApiServer {
                component: ControlPlaneComponent {
                    extra_args: api_extra,
                    extra_volumes: vec![],
                },
                cert_sans: vec!["kubeboot.example.test".into()],
                timeout_for_control_plane_secs: 240,
            },
            controller_manager: ControlPlaneComponent::default(),
            scheduler: ControlPlaneComponent::default(),
            etcd: Etcd::Local(LocalEtcd {
                data_dir: names::DEFAULT_ETCD_DATA_DIR.into(),
                ..LocalEtcd::default()
            }),
            feature_gates: BTreeMap::new(),
            encryption_algorithm: KeyAlgorithm::Rsa2048,
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
            kubelet_extra_args: BTreeMap::new(),
            ignore_preflight_errors: vec![],
        },
        local_api_endpoint: ApiEndpoint {
            advertise_address: "10.123.0.2".parse().unwrap(),
            bind_port: 6443,
        },
        bootstrap_tokens: vec![],
        certificate_key: None,
        skip_phases: vec![],
        component_configs: vec![],
    }
}

/// The golden config at another Kubernetes version, with that version's default repository.
pub fn config_at(version: &str) -> InitConfig {
    let mut cfg = golden_config();
    cfg.cluster.kubernetes_version = version.parse().unwrap();
    cfg.cluster.image_repository =
        components::catalogue::default_image_repository(&cfg.cluster.kubernetes_version).into();
    cfg
}

/// The container's command of a pod.
pub fn command(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    pod.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap()
}

/// The flag `--name=` value, if present.
pub fn flag<'a>(command: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    command.iter().find_map(|a| a.strip_prefix(prefix.as_str()))
}
