//! kubeadm's printed configuration: `kubeadm config print init-defaults` and
//! `join-defaults`, and the
//! ClusterConfiguration kubeadm uploads to the `kubeadm-config` ConfigMap (kubeadm:
//! cmd/config.go, util/config MarshalInitConfigurationToBytes). Keys are sorted, as kubeadm's
//! JSON-to-YAML marshalling sorts them.
//!
//! Deliberate differences from kubeadm 1.20's `print init-defaults`:
//! - `nodeRegistration.name` is the placeholder `node` (kubeadm >= 1.22 prints that; 1.20
//!   prints the host name, which a pure function does not know);
//! - `nodeRegistration.criSocket` is left out: kubeadm 1.20 prints the detected socket
//!   (`/var/run/dockershim.sock` when none is found), which would make kubeboot look for a
//!   dockershim that does not exist; without it kubeboot uses its own runtime;
//! - `kubernetesVersion` is the version asked for (kubeadm 1.20 prints its own `v1.20.0`).

use yaml_serde::{Mapping, Value};

use super::defaults::{
    DEFAULT_CA_CERT_PATH, DEFAULT_CLUSTER_NAME, DEFAULT_CONTROL_PLANE_TIMEOUT_SECS,
    DEFAULT_DISCOVERY_TIMEOUT_SECS, DEFAULT_DNS_DOMAIN, DEFAULT_DNS_TYPE, DEFAULT_SERVICE_SUBNET,
    DEFAULT_TOKEN_GROUP, DEFAULT_TOKEN_TTL_SECS, DEFAULT_TOKEN_USAGES, default_image_repository,
    format_go_duration,
};
use super::load::ApiVersion;
use super::{ClusterConfig, ControlPlaneComponent, Etcd, KeyAlgorithm, v1beta2, v1beta3};
use crate::{Version, names};

/// kubeadm's placeholder bootstrap token in `print init-defaults`.
pub const PLACEHOLDER_TOKEN: &str = "abcdef.0123456789abcdef";
/// kubeadm's placeholder advertise address in `print init-defaults`.
pub const PLACEHOLDER_ADVERTISE_ADDRESS: &str = "1.2.3.4";
/// kubeadm's placeholder node name in `print init-defaults`.
pub const PLACEHOLDER_NODE_NAME: &str = "node";

fn sorted(v: Value) -> Value {
    match v {
        Value::Mapping(m) => {
            let mut entries: Vec<(Value, Value)> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|(a, _), (b, _)| {
                a.as_str()
                    .unwrap_or_default()
                    .cmp(b.as_str().unwrap_or_default())
            });
            Value::Mapping(entries.into_iter().collect::<Mapping>())
        }
        Value::Sequence(s) => Value::Sequence(s.into_iter().map(sorted).collect()),
        other => other,
    }
}

pub(crate) fn to_sorted_yaml<T: serde::Serialize>(doc: &T) -> String {
    let value = yaml_serde::to_value(doc).expect("config API types always serialize");
    yaml_serde::to_string(&sorted(value)).expect("a YAML value always serializes")
}

fn control_plane_taint(version: &Version) -> v1beta2::TaintV {
    // kubeadm: constants.OldControlPlaneTaint up to v1.23, ControlPlaneTaint from v1.24.
    let key = if version.at_least(1, 24) {
        names::LABEL_NODE_ROLE_CONTROL_PLANE
    } else {
        names::LABEL_NODE_ROLE_MASTER
    };
    v1beta2::TaintV {
        key: key.to_string(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }
}

fn placeholder_token() -> v1beta2::BootstrapToken {
    v1beta2::BootstrapToken {
        token: Some(PLACEHOLDER_TOKEN.into()),
        ttl: Some(format_go_duration(DEFAULT_TOKEN_TTL_SECS)),
        usages: DEFAULT_TOKEN_USAGES.iter().map(|s| s.to_string()).collect(),
        groups: vec![DEFAULT_TOKEN_GROUP.to_string()],
        ..Default::default()
    }
}

fn placeholder_endpoint() -> v1beta2::ApiEndpoint {
    v1beta2::ApiEndpoint {
        advertise_address: PLACEHOLDER_ADVERTISE_ADDRESS.into(),
        bind_port: i64::from(names::DEFAULT_APISERVER_BIND_PORT),
    }
}

/// The text of `kubeadm config print init-defaults` for `version` in the `api` version:
/// an InitConfiguration with kubeadm's placeholders, `---`, the default ClusterConfiguration.
pub fn init_defaults_yaml(version: &Version, api: ApiVersion) -> String {
    let default_cluster = v1beta2::ClusterConfiguration {
        api_version: api.as_str().into(),
        kind: "ClusterConfiguration".into(),
        etcd: v1beta2::EtcdV {
            local: Some(v1beta2::LocalEtcdV {
                data_dir: names::DEFAULT_ETCD_DATA_DIR.into(),
                ..Default::default()
            }),
            external: None,
        },
        networking: v1beta2::Networking {
            service_subnet: DEFAULT_SERVICE_SUBNET.into(),
            pod_subnet: String::new(),
            dns_domain: DEFAULT_DNS_DOMAIN.into(),
        },
        kubernetes_version: version.to_string(),
        api_server: v1beta2::ApiServer {
            timeout_for_control_plane: Some(format_go_duration(DEFAULT_CONTROL_PLANE_TIMEOUT_SECS)),
            ..Default::default()
        },
        dns: v1beta2::Dns {
            kind: DEFAULT_DNS_TYPE.into(),
            ..Default::default()
        },
        certificates_dir: names::DEFAULT_CERTIFICATES_DIR.into(),
        image_repository: default_image_repository(version).into(),
        cluster_name: DEFAULT_CLUSTER_NAME.into(),
        ..Default::default()
    };
    let (init, cluster) = match api {
        ApiVersion::V1beta2 => {
            let init = v1beta2::InitConfiguration {
                api_version: api.as_str().into(),
                kind: "InitConfiguration".into(),
                bootstrap_tokens: vec![placeholder_token()],
                node_registration: v1beta2::NodeRegistrationOptions {
                    name: PLACEHOLDER_NODE_NAME.into(),
                    taints: Some(vec![control_plane_taint(version)]),
                    ..Default::default()
                },
                local_api_endpoint: placeholder_endpoint(),
                certificate_key: String::new(),
            };
            (to_sorted_yaml(&init), to_sorted_yaml(&default_cluster))
        }
        ApiVersion::V1beta3 => {
            // kubeadm >= 1.22 prints `taints: null` and `imagePullPolicy: IfNotPresent`.
            let init = v1beta3::InitConfiguration {
                api_version: api.as_str().into(),
                kind: "InitConfiguration".into(),
                bootstrap_tokens: vec![placeholder_token()],
                node_registration: v1beta3::NodeRegistrationOptions {
                    name: PLACEHOLDER_NODE_NAME.into(),
                    taints: None,
                    image_pull_policy: "IfNotPresent".into(),
                    ..Default::default()
                },
                local_api_endpoint: placeholder_endpoint(),
                ..Default::default()
            };
            let c = default_cluster;
            let cluster = v1beta3::ClusterConfiguration {
                api_version: c.api_version,
                kind: c.kind,
                etcd: c.etcd,
                networking: c.networking,
                kubernetes_version: c.kubernetes_version,
                api_server: c.api_server,
                certificates_dir: c.certificates_dir,
                image_repository: c.image_repository,
                cluster_name: c.cluster_name,
                ..Default::default()
            };
            (to_sorted_yaml(&init), to_sorted_yaml(&cluster))
        }
    };
    format!("{init}---\n{cluster}")
}

/// kubeadm's placeholder API server endpoint in `print join-defaults`.
pub const PLACEHOLDER_API_SERVER_ENDPOINT: &str = "kube-apiserver:6443";

/// The text of `kubeadm config print join-defaults` in the `api` version: a JoinConfiguration
/// for token discovery with kubeadm's placeholders (token, `kube-apiserver:6443`, CA
/// verification skipped so that it validates) and the defaults of every other field. The
/// differences from kubeadm are those of [`init_defaults_yaml`]: the node name is the
/// placeholder `node` and `criSocket` is left out. In v1beta3, as kubeadm >= 1.22 prints it,
/// `nodeRegistration` also has `imagePullPolicy: IfNotPresent`.
pub fn join_defaults_yaml(api: ApiVersion) -> String {
    let discovery = v1beta2::Discovery {
        bootstrap_token: Some(v1beta2::BootstrapTokenDiscovery {
            token: PLACEHOLDER_TOKEN.into(),
            api_server_endpoint: PLACEHOLDER_API_SERVER_ENDPOINT.into(),
            ca_cert_hashes: Vec::new(),
            unsafe_skip_ca_verification: true,
        }),
        file: None,
        tls_bootstrap_token: PLACEHOLDER_TOKEN.into(),
        timeout: Some(format_go_duration(DEFAULT_DISCOVERY_TIMEOUT_SECS)),
    };
    match api {
        ApiVersion::V1beta2 => to_sorted_yaml(&v1beta2::JoinConfiguration {
            api_version: api.as_str().into(),
            kind: "JoinConfiguration".into(),
            node_registration: v1beta2::NodeRegistrationOptions {
                name: PLACEHOLDER_NODE_NAME.into(),
                taints: None,
                ..Default::default()
            },
            ca_cert_path: DEFAULT_CA_CERT_PATH.into(),
            discovery,
            control_plane: None,
        }),
        ApiVersion::V1beta3 => to_sorted_yaml(&v1beta3::JoinConfiguration {
            api_version: api.as_str().into(),
            kind: "JoinConfiguration".into(),
            node_registration: v1beta3::NodeRegistrationOptions {
                name: PLACEHOLDER_NODE_NAME.into(),
                taints: None,
                image_pull_policy: "IfNotPresent".into(),
                ..Default::default()
            },
            ca_cert_path: DEFAULT_CA_CERT_PATH.into(),
            discovery,
            ..Default::default()
        }),
    }
}

fn component(c: &ControlPlaneComponent) -> v1beta2::ControlPlaneComponentV {
    v1beta2::ControlPlaneComponentV {
        extra_args: c.extra_args.clone(),
        extra_volumes: c
            .extra_volumes
            .iter()
            .map(|m| v1beta2::HostPathMountV {
                name: m.name.clone(),
                host_path: m.host_path.clone(),
                mount_path: m.mount_path.clone(),
                read_only: m.read_only,
                path_type: m.path_type.clone(),
            })
            .collect(),
    }
}

/// The v1beta2 ClusterConfiguration kubeadm uploads to the `kubeadm-config` ConfigMap
/// (key `ClusterConfiguration`). `encryptionAlgorithm` is written only when it is not
/// kubeadm 1.20's implicit `RSA-2048`, so kubeadm nodes read the common case unchanged.
pub fn cluster_configuration_yaml(c: &ClusterConfig) -> String {
    let api = component(&c.api_server.component);
    let doc = v1beta2::ClusterConfiguration {
        api_version: names::KUBEADM_V1BETA2.into(),
        kind: "ClusterConfiguration".into(),
        etcd: match &c.etcd {
            Etcd::Local(l) => v1beta2::EtcdV {
                local: Some(v1beta2::LocalEtcdV {
                    image_repository: l.image_repository.clone().unwrap_or_default(),
                    image_tag: l.image_tag.clone().unwrap_or_default(),
                    data_dir: l.data_dir.clone(),
                    extra_args: l.extra_args.clone(),
                    server_cert_sans: l.server_cert_sans.clone(),
                    peer_cert_sans: l.peer_cert_sans.clone(),
                }),
                external: None,
            },
            Etcd::External(e) => v1beta2::EtcdV {
                local: None,
                external: Some(v1beta2::ExternalEtcdV {
                    endpoints: e.endpoints.clone(),
                    ca_file: e.ca_file.clone(),
                    cert_file: e.cert_file.clone(),
                    key_file: e.key_file.clone(),
                }),
            },
        },
        networking: v1beta2::Networking {
            service_subnet: c.networking.service_subnet.to_string(),
            pod_subnet: c
                .networking
                .pod_subnet
                .map(|p| p.to_string())
                .unwrap_or_default(),
            dns_domain: c.networking.dns_domain.clone(),
        },
        kubernetes_version: c.kubernetes_version.to_string(),
        control_plane_endpoint: c.control_plane_endpoint.clone().unwrap_or_default(),
        api_server: v1beta2::ApiServer {
            extra_args: api.extra_args,
            extra_volumes: api.extra_volumes,
            cert_sans: c.api_server.cert_sans.clone(),
            timeout_for_control_plane: Some(format_go_duration(
                c.api_server.timeout_for_control_plane_secs,
            )),
        },
        controller_manager: component(&c.controller_manager),
        scheduler: component(&c.scheduler),
        dns: v1beta2::Dns {
            kind: DEFAULT_DNS_TYPE.into(),
            ..Default::default()
        },
        certificates_dir: c.certificates_dir.clone(),
        image_repository: c.image_repository.clone(),
        use_hyper_kube_image: false,
        feature_gates: c.feature_gates.clone(),
        cluster_name: c.cluster_name.clone(),
        encryption_algorithm: match c.encryption_algorithm {
            KeyAlgorithm::Rsa2048 => String::new(),
            other => other.as_str().to_string(),
        },
        // Only when not kubeadm's defaults, which every kubeadm reads the same.
        certificate_validity_period: validity_field(
            c.certificate_validity,
            super::DEFAULT_CERTIFICATE_VALIDITY,
        ),
        ca_certificate_validity_period: validity_field(
            c.ca_certificate_validity,
            super::DEFAULT_CA_CERTIFICATE_VALIDITY,
        ),
        certificate_renewal_window: validity_field(
            c.certificate_renewal_window,
            super::default_renewal_window(c.certificate_validity),
        ),
    };
    to_sorted_yaml(&doc)
}

fn validity_field(d: std::time::Duration, default: std::time::Duration) -> String {
    if d == default {
        String::new()
    } else {
        format_go_duration(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::flags::{HostFacts, InitFlags, resolve_init};
    use crate::config::load::load;
    use crate::version::v;

    /// `kubeadm config print init-defaults` of kubeadm v1.20.2, with the deliberate
    /// differences listed in the module docs applied (node name, criSocket, version).
    const KUBEADM_1_20_2_INIT_DEFAULTS: &str = "\
apiVersion: kubeadm.k8s.io/v1beta2
bootstrapTokens:
- groups:
  - system:bootstrappers:kubeadm:default-node-token
  token: abcdef.0123456789abcdef
  ttl: 24h0m0s
  usages:
  - signing
  - authentication
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 1.2.3.4
  bindPort: 6443
nodeRegistration:
  name: node
  taints:
  - effect: NoSchedule
    key: node-role.kubernetes.io/master
---
apiServer:
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta2
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns:
  type: CoreDNS
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: k8s.gcr.io
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
scheduler: {}
";

    #[test]
    fn init_defaults_match_kubeadm_1_20_2() {
        assert_eq!(
            init_defaults_yaml(&v(1, 20, 2), ApiVersion::V1beta2),
            KUBEADM_1_20_2_INIT_DEFAULTS
        );
    }

    #[test]
    fn init_defaults_load_back_in_both_versions() {
        for (version, api) in [
            (v(1, 20, 2), ApiVersion::V1beta2),
            (v(1, 28, 0), ApiVersion::V1beta3),
        ] {
            let text = init_defaults_yaml(&version, api);
            let f = load(&text).unwrap_or_else(|e| panic!("{api:?}: {e}\n{text}"));
            assert!(f.init.is_some() && f.cluster.is_some());
        }
        let v3 = init_defaults_yaml(&v(1, 28, 0), ApiVersion::V1beta3);
        assert!(
            v3.contains("imageRepository: registry.k8s.io")
                && v3.contains("taints: null")
                && v3.contains("dns: {}"),
            "{v3}"
        );
    }

    #[test]
    fn uploaded_cluster_configuration_round_trips() {
        let host = HostFacts {
            hostname: "node1".into(),
            default_address: Some("10.0.0.1".parse().unwrap()),
            local_addresses: vec![],
            detected_version: Some(v(1, 20, 2)),
        };
        let flags = InitFlags {
            pod_network_cidr: Some("10.244.0.0/16".into()),
            ..Default::default()
        };
        let cfg = resolve_init(&flags, &host).unwrap();
        let text = cluster_configuration_yaml(&cfg.cluster);
        assert!(
            text.starts_with(
                "apiServer:\n  timeoutForControlPlane: 4m0s\napiVersion: kubeadm.k8s.io/v1beta2\n"
            ),
            "{text}"
        );
        assert!(text.contains("encryptionAlgorithm: ECDSA-P256"), "{text}");
        let back =
            crate::config::validate::validate_cluster(&load(&text).unwrap().cluster.unwrap())
                .unwrap();
        assert_eq!(back, cfg.cluster);
    }
}
