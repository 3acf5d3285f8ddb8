//! The kube-proxy addon, field by field as kubeadm 1.20 creates it (kubeadm:
//! app/phases/addons/proxy/, app/componentconfigs/kubeproxy.go), and the kube-proxy static
//! pod kubeboot's agent runs on each of its nodes.
//!
//! Deliberate difference: in kubeboot's agent mode the agent runs kube-proxy on every kubeboot
//! node as a static pod, so the DaemonSet carries a required node affinity that keeps it off
//! nodes labelled [`names::LABEL_KUBE_PROXY_RUNNER`]=[`names::KUBE_PROXY_RUNNER_AGENT`]. Nodes
//! joined by upstream kubeadm lack the label and still get kube-proxy from the DaemonSet.

use std::collections::BTreeMap;
use std::net::IpAddr;

use components::Layout;
use components::catalogue::{self, Component};
use components::config::InitConfig;
use components::names;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource,
    HostPathVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, ResourceRequirements, SecurityContext,
    ServiceAccount, Toleration, Volume,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AddonError, string_map};
use crate::control_plane::image_repository;
use crate::paths::text;
use crate::staticpod::{host_path_volume, volume_mount};
use crate::volumes::FILE_OR_CREATE;

/// The KubeProxyConfiguration API version kubeadm 1.20 writes.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// Its kind.
pub const KIND: &str = "KubeProxyConfiguration";
/// kubeadm: DefaultProxyBindAddressv4.
pub const DEFAULT_BIND_ADDRESS_V4: &str = "0.0.0.0";
/// kubeadm: DefaultProxyBindAddressv6.
pub const DEFAULT_BIND_ADDRESS_V6: &str = "::";
/// The feature gate kubeadm copies from the ClusterConfiguration (features.IPv6DualStack).
const IPV6_DUAL_STACK: &str = "IPv6DualStack";
/// Where the ServiceAccount token and CA are mounted in a pod.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const VOLUME_KUBE_PROXY: &str = "kube-proxy";
const VOLUME_XTABLES_LOCK: &str = "xtables-lock";
const VOLUME_LIB_MODULES: &str = "lib-modules";

/// Every object of the kube-proxy addon, in the order kubeadm creates them.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeProxyAddon {
    /// ServiceAccount `kube-proxy`.
    pub service_account: ServiceAccount,
    /// ConfigMap `kube-proxy`: `config.conf` and the in-cluster `kubeconfig.conf`.
    pub config_map: ConfigMap,
    /// DaemonSet `kube-proxy`, kept off nodes whose kube-proxy the agent runs.
    pub daemon_set: DaemonSet,
    /// ClusterRoleBinding `kubeadm:node-proxier` -> `system:node-proxier` for the ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Role `kube-proxy`: read the ConfigMap.
    pub role: Role,
    /// RoleBinding `kube-proxy`: the Role for bootstrap tokens (kubeadm join reads it).
    pub role_binding: RoleBinding,
}

/// A KubeProxyConfiguration as kubeadm marshals it: every field of the v1alpha1 type, zero
/// values included, keys sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeProxyConfig {
    value: Value,
    user_supplied: bool,
}

impl KubeProxyConfig {
    /// The document as kubeadm writes it (go-yaml's key order and scalar styles), ending in a
    /// newline.
    pub fn to_yaml(&self) -> String {
        crate::yaml::go_yaml(&self.value)
    }

    /// True when the user passed a KubeProxyConfiguration document (kubeadm then leaves the
    /// ConfigMap unsigned).
    pub fn user_supplied(&self) -> bool {
        self.user_supplied
    }

    /// The field at a `.`-separated path (`conntrack.maxPerCore`), for tests and messages.
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.value, |v, key| v.get(key))
    }

    /// The cluster's configuration as the `kube-proxy` ConfigMap holds it (`config.conf`), for a
    /// joining node, whatever fields the cluster's kubeadm wrote.
    ///
    /// # Errors
    /// The document is not YAML or not a mapping.
    pub fn from_cluster_yaml(yaml: &str) -> Result<KubeProxyConfig, yaml_serde::Error> {
        let value: Value = yaml_serde::from_str(yaml)?;
        if !value.is_object() {
            return Err(serde::de::Error::custom("not a YAML mapping"));
        }
        Ok(KubeProxyConfig {
            value,
            user_supplied: false,
        })
    }

    /// The configuration the agent-run kube-proxy reads on a node: the cluster's, with the
    /// kubeconfig at the node-local file `layout` puts in the kube-proxy directory (a client
    /// certificate for `system:kube-proxy` instead of the ServiceAccount token).
    pub fn for_node(&self, layout: &Layout) -> KubeProxyConfig {
        let mut node = self.clone();
        let kubeconfig = text(&node_kubeconfig_path(layout));
        node.value["clientConnection"]["kubeconfig"] = Value::String(kubeconfig);
        node
    }
}

/// The node-local kubeconfig of the agent-run kube-proxy: `/var/lib/kube-proxy/kubeconfig.conf`.
pub fn node_kubeconfig_path(layout: &Layout) -> std::path::PathBuf {
    layout
        .kube_proxy_dir()
        .join(names::KUBE_PROXY_KUBECONFIG_KEY)
}

/// The node-local KubeProxyConfiguration file: `/var/lib/kube-proxy/config.conf`.
pub fn node_config_path(layout: &Layout) -> std::path::PathBuf {
    layout.kube_proxy_dir().join(names::KUBE_PROXY_CONFIG_KEY)
}

/// Every field of kubeproxyconfig v1alpha1's KubeProxyConfiguration at its Go zero value, as
/// kubeadm 1.20 marshals an undefaulted one (pointers null, durations `0s`).
fn zero_config() -> Value {
    json!({
        "apiVersion": API_VERSION,
        "bindAddress": "",
        "bindAddressHardFail": false,
        "clientConnection": {
            "acceptContentTypes": "",
            "burst": 0,
            "contentType": "",
            "kubeconfig": "",
            "qps": 0
        },
        "clusterCIDR": "",
        "configSyncPeriod": "0s",
        "conntrack": {
            "maxPerCore": null,
            "min": null,
            "tcpCloseWaitTimeout": null,
            "tcpEstablishedTimeout": null
        },
        "detectLocalMode": "",
        "enableProfiling": false,
        "healthzBindAddress": "",
        "hostnameOverride": "",
        "iptables": {
            "masqueradeAll": false,
            "masqueradeBit": null,
            "minSyncPeriod": "0s",
            "syncPeriod": "0s"
        },
        "ipvs": {
            "excludeCIDRs": null,
            "minSyncPeriod": "0s",
            "scheduler": "",
            "strictARP": false,
            "syncPeriod": "0s",
            "tcpFinTimeout": "0s",
            "tcpTimeout": "0s",
            "udpTimeout": "0s"
        },
        "kind": KIND,
        "metricsBindAddress": "",
        "mode": "",
        "nodePortAddresses": null,
        "oomScoreAdj": null,
        "portRange": "",
        "showHiddenMetricsForVersion": "",
        "udpIdleTimeout": "0s",
        "winkernel": {
            "enableDSR": false,
            "networkName": "",
            "sourceVip": ""
        }
    })
}

/// Merges `over` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn is_empty_string(v: Option<&Value>) -> bool {
    v.is_none_or(|v| v.as_str().is_some_and(str::is_empty) || v.is_null())
}

/// The KubeProxyConfiguration for the cluster: the user's document from `--config` (if any)
/// over the zero-valued type, then kubeadm's defaults (kubeadm: kubeProxyConfig.Default):
/// `bindAddress` `0.0.0.0` (`::` for an IPv6 advertise address), `clusterCIDR` the pod subnet,
/// `clientConnection.kubeconfig` `/var/lib/kube-proxy/kubeconfig.conf`, and the cluster's
/// `IPv6DualStack` feature gate.
///
/// # Errors
/// [`AddonError::InvalidKubeProxyConfiguration`] when the user's document is not a mapping.
pub fn kube_proxy_config(cfg: &InitConfig) -> Result<KubeProxyConfig, AddonError> {
    let mut value = zero_config();
    let user = cfg.component_configs.iter().find(|d| d.kind == KIND);
    if let Some(doc) = user {
        let parsed: Value = yaml_serde::from_str(&doc.yaml).map_err(|e| {
            AddonError::InvalidKubeProxyConfiguration {
                reason: e.to_string(),
            }
        })?;
        if !parsed.is_object() {
            return Err(AddonError::InvalidKubeProxyConfiguration {
                reason: "it is not a mapping".to_string(),
            });
        }
        merge(&mut value, parsed);
    }
    let obj = value.as_object_mut().expect("the zero config is a mapping");
    if is_empty_string(obj.get("bindAddress")) {
        let bind = match cfg.local_api_endpoint.advertise_address {
            IpAddr::V4(_) => DEFAULT_BIND_ADDRESS_V4,
            IpAddr::V6(_) => DEFAULT_BIND_ADDRESS_V6,
        };
        obj.insert("bindAddress".into(), bind.into());
    }
    if let Some(pod_subnet) = cfg.cluster.networking.pod_subnet
        && is_empty_string(obj.get("clusterCIDR"))
    {
        obj.insert("clusterCIDR".into(), pod_subnet.to_string().into());
    }
    if is_empty_string(value["clientConnection"].get("kubeconfig")) {
        value["clientConnection"]["kubeconfig"] = Value::String(format!(
            "{}/{}",
            names::KUBE_PROXY_DIR,
            names::KUBE_PROXY_KUBECONFIG_KEY
        ));
    }
    let obj = value.as_object_mut().expect("the zero config is a mapping");
    let mut gates = match obj.remove("featureGates") {
        Some(Value::Object(g)) => g,
        _ => serde_json::Map::new(),
    };
    if let Some(enabled) = cfg.cluster.feature_gates.get(IPV6_DUAL_STACK) {
        gates.insert(IPV6_DUAL_STACK.into(), Value::Bool(*enabled));
    }
    // featureGates is `omitempty` in the Go type.
    if !gates.is_empty() {
        obj.insert("featureGates".into(), Value::Object(gates));
    }
    Ok(KubeProxyConfig {
        value,
        user_supplied: user.is_some(),
    })
}

/// The in-cluster kubeconfig the DaemonSet's kube-proxy uses: its ServiceAccount's token and
/// CA, the API server at `server` (kubeadm's KubeProxyConfigMap19 template, verbatim).
pub fn in_cluster_kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: {SERVICE_ACCOUNT_DIR}/ca.crt
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: {SERVICE_ACCOUNT_DIR}/token"
    )
}

/// The control-plane endpoint URL for `cfg` (kubeadm: GetControlPlaneEndpoint).
///
/// # Errors
/// [`AddonError::ControlPlaneEndpoint`].
pub fn control_plane_url(cfg: &InitConfig) -> Result<String, AddonError> {
    pki::server_url(
        cfg.cluster.control_plane_endpoint.as_deref(),
        cfg.local_api_endpoint.advertise_address,
        cfg.local_api_endpoint.bind_port,
    )
    .map_err(|e| AddonError::ControlPlaneEndpoint(e.to_string()))
}

/// kubeadm's ConfigMap checksum: sha256 over the data values in key order
/// (componentconfigs.ChecksumForConfigMap).
pub fn config_map_checksum(data: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for value in data.values() {
        hash.update(value.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(names::KUBE_SYSTEM.to_string()),
        ..ObjectMeta::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The kube-proxy addon for `cfg`.
///
/// # Errors
/// [`AddonError::InvalidKubeProxyConfiguration`], [`AddonError::ControlPlaneEndpoint`].
pub fn kube_proxy_addon(cfg: &InitConfig) -> Result<KubeProxyAddon, AddonError> {
    let config = kube_proxy_config(cfg)?;
    let server = control_plane_url(cfg)?;
    Ok(KubeProxyAddon {
        service_account: ServiceAccount {
            metadata: meta(names::KUBE_PROXY_CONFIGMAP),
            ..ServiceAccount::default()
        },
        config_map: config_map(&config, &server),
        daemon_set: daemon_set(cfg),
        cluster_role_binding: ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(names::KUBE_PROXY_CLUSTER_ROLE_BINDING.to_string()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some(RBAC_GROUP.to_string()),
                kind: "ClusterRole".to_string(),
                name: names::KUBE_PROXY_CLUSTER_ROLE.to_string(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: names::KUBE_PROXY_CONFIGMAP.to_string(),
                namespace: Some(names::KUBE_SYSTEM.to_string()),
                ..Subject::default()
            }]),
        },
        role: Role {
            metadata: meta(names::KUBE_PROXY_CONFIGMAP),
            rules: Some(vec![PolicyRule {
                verbs: strings(&["get"]),
                api_groups: Some(strings(&[""])),
                resources: Some(strings(&["configmaps"])),
                resource_names: Some(strings(&[names::KUBE_PROXY_CONFIGMAP])),
                ..PolicyRule::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: meta(names::KUBE_PROXY_CONFIGMAP),
            role_ref: RoleRef {
                api_group: Some(RBAC_GROUP.to_string()),
                kind: "Role".to_string(),
                name: names::KUBE_PROXY_CONFIGMAP.to_string(),
            },
            subjects: Some(vec![Subject {
                kind: "Group".to_string(),
                name: names::NODE_BOOTSTRAP_TOKEN_AUTH_GROUP.to_string(),
                ..Subject::default()
            }]),
        },
    })
}

fn config_map(config: &KubeProxyConfig, server: &str) -> ConfigMap {
    // The template's `|-` blocks drop the final newline.
    let data = string_map([
        (
            names::KUBE_PROXY_CONFIG_KEY,
            config.to_yaml().trim_end_matches('\n'),
        ),
        (
            names::KUBE_PROXY_KUBECONFIG_KEY,
            in_cluster_kubeconfig(server).as_str(),
        ),
    ]);
    let annotations = (!config.user_supplied()).then(|| {
        string_map([(
            names::ANNOTATION_COMPONENT_CONFIG_HASH,
            config_map_checksum(&data).as_str(),
        )])
    });
    ConfigMap {
        metadata: ObjectMeta {
            labels: Some(string_map([(names::LABEL_APP, names::KUBE_PROXY)])),
            annotations,
            ..meta(names::KUBE_PROXY_CONFIGMAP)
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The node affinity that keeps the DaemonSet off nodes whose kube-proxy the agent runs.
pub fn not_on_agent_nodes() -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: names::LABEL_KUBE_PROXY_RUNNER.to_string(),
                        operator: "NotIn".to_string(),
                        values: Some(strings(&[names::KUBE_PROXY_RUNNER_AGENT])),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn kube_proxy_image(cfg: &InitConfig) -> String {
    catalogue::image(
        Component::KubeProxy,
        &image_repository(cfg),
        &cfg.cluster.kubernetes_version,
    )
}

fn daemon_set(cfg: &InitConfig) -> DaemonSet {
    let labels = string_map([(names::LABEL_K8S_APP, names::KUBE_PROXY)]);
    let container = Container {
        name: names::KUBE_PROXY.to_string(),
        image: Some(kube_proxy_image(cfg)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(vec![
            "/usr/local/bin/kube-proxy".to_string(),
            format!(
                "--config={}/{}",
                names::KUBE_PROXY_DIR,
                names::KUBE_PROXY_CONFIG_KEY
            ),
            "--hostname-override=$(NODE_NAME)".to_string(),
        ]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            volume_mount(VOLUME_KUBE_PROXY, names::KUBE_PROXY_DIR, false),
            volume_mount(VOLUME_XTABLES_LOCK, names::XTABLES_LOCK, false),
            volume_mount(VOLUME_LIB_MODULES, names::LIB_MODULES, true),
        ]),
        env: Some(vec![EnvVar {
            name: "NODE_NAME".to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.nodeName".to_string(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        // Go writes the empty struct; kept so the object reads as kubeadm's.
        resources: Some(ResourceRequirements::default()),
        ..Container::default()
    };
    let pod = PodSpec {
        priority_class_name: Some(names::PRIORITY_CLASS_NODE_CRITICAL.to_string()),
        containers: vec![container],
        host_network: Some(true),
        service_account_name: Some(names::KUBE_PROXY_CONFIGMAP.to_string()),
        volumes: Some(vec![
            Volume {
                name: VOLUME_KUBE_PROXY.to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::KUBE_PROXY_CONFIGMAP.to_string(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            host_path_volume(VOLUME_XTABLES_LOCK, names::XTABLES_LOCK, FILE_OR_CREATE),
            host_path_volume(VOLUME_LIB_MODULES, names::LIB_MODULES, ""),
        ]),
        tolerations: Some(vec![
            Toleration {
                key: Some("CriticalAddonsOnly".to_string()),
                operator: Some("Exists".to_string()),
                ..Toleration::default()
            },
            Toleration {
                operator: Some("Exists".to_string()),
                ..Toleration::default()
            },
        ]),
        node_selector: Some(string_map([(names::LABEL_OS, "linux")])),
        affinity: Some(not_on_agent_nodes()),
        ..PodSpec::default()
    };
    DaemonSet {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            ..meta(names::KUBE_PROXY)
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                ..DaemonSetUpdateStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}

/// The kube-proxy static pod kubeboot's agent runs on `cfg`'s node: the DaemonSet's container
/// with the node's name in `--hostname-override` and the node-local files of
/// [`KubeProxyConfig::for_node`] and [`node_kubeconfig_path`] in the kube-proxy directory
/// (paths mapped through `layout`). Host network, privileged, `system-node-critical`.
pub fn kube_proxy_pod(cfg: &InitConfig, layout: &Layout) -> Pod {
    let dir = text(&layout.kube_proxy_dir());
    let xtables_lock = text(&layout.node_path(names::XTABLES_LOCK));
    let lib_modules = text(&layout.node_path(names::LIB_MODULES));
    let container = Container {
        name: names::KUBE_PROXY.to_string(),
        image: Some(kube_proxy_image(cfg)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(vec![
            Component::KubeProxy.binary().to_string(),
            format!("--config={}", text(&node_config_path(layout))),
            format!("--hostname-override={}", cfg.node.name),
        ]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            volume_mount(VOLUME_KUBE_PROXY, &dir, true),
            volume_mount(VOLUME_LIB_MODULES, &lib_modules, true),
            volume_mount(VOLUME_XTABLES_LOCK, &xtables_lock, false),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: VOLUME_KUBE_PROXY.to_string(),
            host_path: Some(HostPathVolumeSource {
                path: dir,
                type_: Some("Directory".to_string()),
            }),
            ..Volume::default()
        },
        host_path_volume(VOLUME_LIB_MODULES, &lib_modules, ""),
        host_path_volume(VOLUME_XTABLES_LOCK, &xtables_lock, FILE_OR_CREATE),
    ];
    Pod {
        metadata: ObjectMeta {
            name: Some(names::KUBE_PROXY.to_string()),
            namespace: Some(names::KUBE_SYSTEM.to_string()),
            labels: Some(string_map([
                (names::LABEL_COMPONENT, names::KUBE_PROXY),
                (names::LABEL_TIER, names::TIER_NODE),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            host_network: Some(true),
            priority_class_name: Some(names::PRIORITY_CLASS_NODE_CRITICAL.to_string()),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use components::config::ComponentDocument;

    use super::*;
    use crate::addons::tests_support::config;

    fn with_user_doc(yaml: &str) -> InitConfig {
        let mut cfg = config();
        cfg.component_configs.push(ComponentDocument {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            yaml: yaml.into(),
        });
        cfg
    }

    #[test]
    fn kubeadm_defaults() {
        let c = kube_proxy_config(&config()).expect("builds");
        assert_eq!(c.get("bindAddress"), Some(&json!("0.0.0.0")));
        assert_eq!(c.get("clusterCIDR"), Some(&json!("10.244.0.0/16")));
        assert_eq!(
            c.get("clientConnection.kubeconfig"),
            Some(&json!("/var/lib/kube-proxy/kubeconfig.conf"))
        );
        assert_eq!(c.get("conntrack.maxPerCore"), Some(&Value::Null));
        assert_eq!(c.get("featureGates"), None);
        assert!(!c.user_supplied());
    }

    #[test]
    fn user_document_merges_over_defaults() {
        let cfg = with_user_doc(&format!(
            "apiVersion: {API_VERSION}\nkind: {KIND}\nconntrack:\n  maxPerCore: 0\nmode: iptables\nclusterCIDR: 10.9.0.0/16\n"
        ));
        let c = kube_proxy_config(&cfg).expect("builds");
        assert_eq!(c.get("conntrack.maxPerCore"), Some(&json!(0)));
        assert_eq!(c.get("conntrack.min"), Some(&Value::Null));
        assert_eq!(c.get("mode"), Some(&json!("iptables")));
        assert_eq!(c.get("clusterCIDR"), Some(&json!("10.9.0.0/16")));
        assert_eq!(c.get("bindAddress"), Some(&json!("0.0.0.0")));
        assert!(c.user_supplied());
        let cm = kube_proxy_addon(&cfg).expect("builds").config_map;
        assert_eq!(cm.metadata.annotations, None);
    }

    #[test]
    fn not_a_mapping_is_an_error() {
        let e = kube_proxy_config(&with_user_doc("- a\n- b\n")).expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "the KubeProxyConfiguration document is not valid: it is not a mapping"
        );
    }

    #[test]
    fn ipv6_dual_stack_gate_is_copied() {
        let mut cfg = config();
        cfg.cluster
            .feature_gates
            .insert(IPV6_DUAL_STACK.into(), true);
        let c = kube_proxy_config(&cfg).expect("builds");
        assert_eq!(c.get("featureGates"), Some(&json!({"IPv6DualStack": true})));
    }

    #[test]
    fn node_config_points_at_the_node_kubeconfig() {
        let c = kube_proxy_config(&config()).expect("builds");
        let node = c.for_node(&Layout::under("/tmp/n1"));
        assert_eq!(
            node.get("clientConnection.kubeconfig"),
            Some(&json!("/tmp/n1/var/lib/kube-proxy/kubeconfig.conf"))
        );
    }

    #[test]
    fn static_pod_runs_the_kube_proxy_binary_for_this_node() {
        let pod = kube_proxy_pod(&config(), &Layout::host());
        let spec = pod.spec.expect("spec");
        let c = &spec.containers[0];
        assert_eq!(
            c.command.as_deref(),
            Some(
                &[
                    "kube-proxy".to_string(),
                    "--config=/var/lib/kube-proxy/config.conf".to_string(),
                    "--hostname-override=node1".to_string()
                ][..]
            )
        );
        assert_eq!(c.image.as_deref(), Some("k8s.gcr.io/kube-proxy:v1.20.2"));
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            c.security_context.as_ref().and_then(|s| s.privileged),
            Some(true)
        );
        let image = components::image::binary_for_image(c.image.as_deref().expect("image"))
            .expect("parses")
            .expect("maps to a binary");
        assert_eq!(image.binary, "kube-proxy");
    }

    #[test]
    fn daemon_set_avoids_agent_nodes() {
        let ds = kube_proxy_addon(&config()).expect("builds").daemon_set;
        let affinity = ds
            .spec
            .template
            .spec
            .and_then(|p| p.affinity)
            .expect("affinity");
        let term = &affinity
            .node_affinity
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required")
            .node_selector_terms[0];
        let req = &term.match_expressions.as_ref().expect("expressions")[0];
        assert_eq!(req.key, "node.kubeboot.io/kube-proxy");
        assert_eq!(req.operator, "NotIn");
        assert_eq!(req.values.as_deref(), Some(&["agent".to_string()][..]));
    }
}
