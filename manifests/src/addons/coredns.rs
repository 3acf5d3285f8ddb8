//! The CoreDNS addon, field by field as kubeadm 1.20 creates it (kubeadm:
//! app/phases/addons/dns/manifests.go and dns.go, coreDNSAddon).

use std::net::IpAddr;

use components::catalogue::{self, Component};
use components::config::InitConfig;
use components::names;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    KeyToPath, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{AddonError, string_map};
use crate::control_plane::image_repository;

/// coreDNSReplicas: the Deployment's replicas when none is deployed yet.
pub const DEFAULT_REPLICAS: i32 = 2;
/// The upstream resolver CoreDNS forwards to when no kube-dns ConfigMap says otherwise
/// (kubeadm: translateUpstreamNameServerOfKubeDNSToUpstreamForwardCoreDNS).
pub const UPSTREAM_NAMESERVER: &str = "/etc/resolv.conf";
const CONFIG_VOLUME: &str = "config-volume";
pub(super) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Every object of the CoreDNS addon, in the order kubeadm creates them.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreDnsAddon {
    /// ConfigMap `coredns` with the Corefile; users edit it, so it is created or retained.
    pub config_map: ConfigMap,
    /// ClusterRole `system:coredns`.
    pub cluster_role: ClusterRole,
    /// ClusterRoleBinding `system:coredns`.
    pub cluster_role_binding: ClusterRoleBinding,
    /// ServiceAccount `coredns`.
    pub service_account: ServiceAccount,
    /// Deployment `coredns`.
    pub deployment: Deployment,
    /// Service `kube-dns`.
    pub service: Service,
}

/// The CoreDNS addon for `cfg`. `deployed_replicas` is the replica count of a CoreDNS
/// Deployment already in the cluster, which kubeadm keeps (deployedDNSReplicas); `None`
/// means [`DEFAULT_REPLICAS`].
///
/// # Errors
/// [`AddonError::ServiceSubnetTooSmall`].
pub fn coredns_addon(
    cfg: &InitConfig,
    deployed_replicas: Option<i32>,
) -> Result<CoreDnsAddon, AddonError> {
    let dns_ip = dns_service_ip(cfg)?;
    Ok(CoreDnsAddon {
        config_map: config_map(&cfg.cluster.networking.dns_domain),
        cluster_role: cluster_role(),
        cluster_role_binding: cluster_role_binding(),
        service_account: ServiceAccount {
            metadata: meta(names::COREDNS),
            ..ServiceAccount::default()
        },
        deployment: deployment(cfg, deployed_replicas.unwrap_or(DEFAULT_REPLICAS)),
        service: service(dns_ip),
    })
}

/// The DNS Service's address: the 10th address of the service subnet (kubeadm: GetDNSIP).
///
/// # Errors
/// [`AddonError::ServiceSubnetTooSmall`] when the subnet has fewer than 11 addresses.
pub fn dns_service_ip(cfg: &InitConfig) -> Result<IpAddr, AddonError> {
    let subnet = cfg.cluster.networking.service_subnet;
    let index = u128::from(names::DNS_SERVICE_IP_INDEX);
    let too_small = || AddonError::ServiceSubnetTooSmall {
        subnet: subnet.to_string(),
    };
    let host_bits = match subnet.network() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    } - u32::from(subnet.prefix_len());
    if host_bits < 128 && index >= 1u128 << host_bits {
        return Err(too_small());
    }
    Ok(match subnet.network() {
        IpAddr::V4(net) => {
            let index = u32::try_from(index).expect("the DNS index fits an IPv4 address");
            IpAddr::V4((u32::from(net) + index).into())
        }
        IpAddr::V6(net) => IpAddr::V6((u128::from(net) + index).into()),
    })
}

/// kubeadm's Corefile for `dns_domain`, with no kube-dns stub domains to translate.
pub fn corefile(dns_domain: &str) -> String {
    format!(
        ".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {dns_domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . {UPSTREAM_NAMESERVER} {{
       max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"
    )
}

pub(super) fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(names::KUBE_SYSTEM.to_string()),
        ..ObjectMeta::default()
    }
}

fn config_map(dns_domain: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(names::COREDNS_CONFIGMAP),
        data: Some(string_map([(
            names::COREDNS_COREFILE_KEY,
            corefile(dns_domain).as_str(),
        )])),
        ..ConfigMap::default()
    }
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(names::COREDNS_CLUSTER_ROLE.to_string()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(strings(&[""])),
                resources: Some(strings(&["endpoints", "services", "pods", "namespaces"])),
                verbs: strings(&["list", "watch"]),
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(strings(&[""])),
                resources: Some(strings(&["nodes"])),
                verbs: strings(&["get"]),
                ..PolicyRule::default()
            },
        ]),
        ..ClusterRole::default()
    }
}

fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(names::COREDNS_CLUSTER_ROLE.to_string()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_string()),
            kind: "ClusterRole".to_string(),
            name: names::COREDNS_CLUSTER_ROLE.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: names::COREDNS.to_string(),
            namespace: Some(names::KUBE_SYSTEM.to_string()),
            ..Subject::default()
        }]),
    }
}

pub(super) fn port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        container_port: port,
        name: Some(name.to_string()),
        protocol: Some(protocol.to_string()),
        ..ContainerPort::default()
    }
}

pub(super) fn http_get(path: &str, port: i32) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.to_string()),
        port: IntOrString::Int(port),
        scheme: Some("HTTP".to_string()),
        ..HTTPGetAction::default()
    }
}

pub(super) fn quantities<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> std::collections::BTreeMap<String, Quantity> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// CoreDNS's tolerations: critical addons, and both control-plane taints (kubeadm 1.20
/// tolerates both, kubeadm issue 2200).
pub(super) fn tolerations() -> Vec<Toleration> {
    let toleration = |key: &str, operator: Option<&str>, effect: Option<&str>| Toleration {
        key: Some(key.to_string()),
        operator: operator.map(str::to_string),
        effect: effect.map(str::to_string),
        ..Toleration::default()
    };
    vec![
        toleration("CriticalAddonsOnly", Some("Exists"), None),
        toleration(names::LABEL_NODE_ROLE_MASTER, None, Some("NoSchedule")),
        toleration(
            names::LABEL_NODE_ROLE_CONTROL_PLANE,
            None,
            Some("NoSchedule"),
        ),
    ]
}

/// CoreDNS's container security context: binds port 53 without root's other powers.
pub(super) fn security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            add: Some(strings(&["NET_BIND_SERVICE"])),
            drop: Some(strings(&["all"])),
        }),
        read_only_root_filesystem: Some(true),
        ..SecurityContext::default()
    }
}

fn deployment(cfg: &InitConfig, replicas: i32) -> Deployment {
    let labels = string_map([(names::LABEL_K8S_APP, names::KUBE_DNS)]);
    let container = Container {
        name: names::COREDNS.to_string(),
        image: Some(catalogue::image(
            Component::CoreDns,
            &image_repository(cfg),
            &cfg.cluster.kubernetes_version,
        )),
        image_pull_policy: Some("IfNotPresent".to_string()),
        resources: Some(ResourceRequirements {
            limits: Some(quantities([("memory", "170Mi")])),
            requests: Some(quantities([("cpu", "100m"), ("memory", "70Mi")])),
            ..ResourceRequirements::default()
        }),
        args: Some(strings(&["-conf", "/etc/coredns/Corefile"])),
        volume_mounts: Some(vec![VolumeMount {
            name: CONFIG_VOLUME.to_string(),
            mount_path: "/etc/coredns".to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ports: Some(vec![
            port("dns", 53, "UDP"),
            port("dns-tcp", 53, "TCP"),
            port("metrics", 9153, "TCP"),
        ]),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/health", 8080)),
            initial_delay_seconds: Some(60),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(5),
            ..Probe::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/ready", 8181)),
            ..Probe::default()
        }),
        security_context: Some(security_context()),
        ..Container::default()
    };
    let pod = PodSpec {
        priority_class_name: Some(names::PRIORITY_CLASS_CLUSTER_CRITICAL.to_string()),
        service_account_name: Some(names::COREDNS.to_string()),
        tolerations: Some(tolerations()),
        node_selector: Some(string_map([(names::LABEL_OS, "linux")])),
        containers: vec![container],
        dns_policy: Some("Default".to_string()),
        volumes: Some(vec![Volume {
            name: CONFIG_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::COREDNS_CONFIGMAP.to_string(),
                items: Some(vec![KeyToPath {
                    key: names::COREDNS_COREFILE_KEY.to_string(),
                    path: names::COREDNS_COREFILE_KEY.to_string(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    dns_deployment(names::COREDNS, labels, replicas, pod)
}

/// A cluster DNS Deployment as kubeadm's CoreDNS template shapes it (kube-system, rolling
/// update with one unavailable, the pod labels as selector and on the Deployment): CoreDNS's
/// and kubeboot-dns's differ only in name, labels, replicas and pod.
pub(super) fn dns_deployment(
    name: &str,
    labels: std::collections::BTreeMap<String, String>,
    replicas: i32,
    pod: PodSpec,
) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            ..meta(name)
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..RollingUpdateDeployment::default()
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

fn service(dns_ip: IpAddr) -> Service {
    let service_port = |name: &str, port: i32, protocol: &str| ServicePort {
        name: Some(name.to_string()),
        port,
        protocol: Some(protocol.to_string()),
        target_port: Some(IntOrString::Int(port)),
        ..ServicePort::default()
    };
    Service {
        metadata: ObjectMeta {
            labels: Some(string_map([
                (names::LABEL_K8S_APP, names::KUBE_DNS),
                ("kubernetes.io/cluster-service", "true"),
                ("kubernetes.io/name", "KubeDNS"),
            ])),
            annotations: Some(string_map([
                ("prometheus.io/port", "9153"),
                ("prometheus.io/scrape", "true"),
            ])),
            ..meta(names::KUBE_DNS)
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(dns_ip.to_string()),
            ports: Some(vec![
                service_port("dns", 53, "UDP"),
                service_port("dns-tcp", 53, "TCP"),
                service_port("metrics", 9153, "TCP"),
            ]),
            selector: Some(string_map([(names::LABEL_K8S_APP, names::KUBE_DNS)])),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with_subnet(subnet: &str) -> InitConfig {
        let mut cfg = crate::addons::tests_support::config();
        cfg.cluster.networking.service_subnet = subnet.parse().expect("cidr");
        cfg
    }

    #[test]
    fn dns_ip_is_the_tenth_address() {
        let ip = |s: &str| dns_service_ip(&cfg_with_subnet(s)).map(|ip| ip.to_string());
        assert_eq!(ip("10.96.0.0/12").as_deref(), Ok("10.96.0.10"));
        assert_eq!(ip("10.100.0.0/16").as_deref(), Ok("10.100.0.10"));
        assert_eq!(ip("fd00:10:96::/112").as_deref(), Ok("fd00:10:96::a"));
        assert_eq!(ip("10.1.2.0/28").as_deref(), Ok("10.1.2.10"));
        assert_eq!(
            ip("10.1.2.0/29"),
            Err(AddonError::ServiceSubnetTooSmall {
                subnet: "10.1.2.0/29".into()
            })
        );
    }

    #[test]
    fn keeps_deployed_replicas() {
        let cfg = crate::addons::tests_support::config();
        let replicas = |r| {
            coredns_addon(&cfg, r)
                .expect("builds")
                .deployment
                .spec
                .replicas
        };
        assert_eq!(replicas(None), Some(2));
        assert_eq!(replicas(Some(5)), Some(5));
    }

    #[test]
    fn corefile_names_the_domain() {
        let text = corefile("kb.example");
        assert!(text.contains("    kubernetes kb.example in-addr.arpa ip6.arpa {\n"));
        assert!(text.ends_with("}\n"));
    }
}
