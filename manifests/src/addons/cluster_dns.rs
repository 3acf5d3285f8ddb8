//! kubeboot's cluster DNS: the `kubeboot dns` server (crate `agent`, module `agent::dns`) run
//! as the Deployment `kube-system/kubeboot-dns` of an image each kubeboot node builds from its
//! own executable, with its least-privilege RBAC; and kubeadm's `coredns` Deployment standing
//! aside (replicas 0) when it serves the cluster. No kubeadm equivalent: kubeadm runs CoreDNS
//! from a registry image (app/phases/addons/dns), which a node without a registry lacks.
//!
//! Its pods carry CoreDNS's `k8s-app: kube-dns`, so kubeadm's unchanged `kube-dns` Service
//! selects them, and their own `app.kubernetes.io/name: kubeboot-dns`, so their ReplicaSet
//! and CoreDNS's never select each other's pods.

use std::net::IpAddr;

use components::config::InitConfig;
use components::names;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Affinity, Container, PodAffinityTerm, PodAntiAffinity, PodSpec, Probe, ResourceRequirements,
    ServiceAccount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::coredns::{
    RBAC_GROUP, dns_deployment, http_get, meta, port, quantities, security_context, strings,
    tolerations,
};
use super::{AddonError, string_map};

/// The replicas of the kubeboot-dns Deployment (kubeadm's coreDNSReplicas).
pub const REPLICAS: i32 = 2;
/// Where the executable sits in the image (the container's command).
pub const EXE_IN_IMAGE: &str = "/kubeboot";
/// `kubeboot dns --health-listen`'s default port: GET /health (CoreDNS's `health` plugin port).
pub const HEALTH_PORT: i32 = 8080;
/// `kubeboot dns --ready-listen`'s default port: GET /ready (CoreDNS's `ready` plugin port).
pub const READY_PORT: i32 = 8181;

/// Every object of kubeboot's DNS, in the order they are applied (RBAC before the pods that
/// need it).
#[derive(Debug, Clone, PartialEq)]
pub struct KubebootDnsAddon {
    /// ServiceAccount `kube-system/kubeboot-dns`.
    pub service_account: ServiceAccount,
    /// ClusterRole `kubeboot:dns`: list and watch Services and Endpoints.
    pub cluster_role: ClusterRole,
    /// ClusterRoleBinding `kubeboot:dns` to the ServiceAccount.
    pub cluster_role_binding: ClusterRoleBinding,
    /// Role `kube-system/kubeboot:dns`: get, list and watch ConfigMaps (the `coredns` one,
    /// through a field selector: resourceNames cannot restrict list and watch).
    pub role: Role,
    /// RoleBinding `kube-system/kubeboot:dns` to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// Deployment `kube-system/kubeboot-dns`.
    pub deployment: Deployment,
}

/// The image a kubeboot node of `version` builds and imports: `kubeboot.local/kubeboot-dns:
/// <version>`, the version's characters outside a tag's alphabet (`[A-Za-z0-9_.-]`, e.g. a
/// build's `+`) as `-`.
pub fn image(version: &str) -> String {
    format!("{}:{}", names::KUBEBOOT_DNS_IMAGE_REPOSITORY, tag(version))
}

fn tag(version: &str) -> String {
    let t: String = version
        .trim_start_matches('v')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if t.is_empty() {
        "latest".to_string()
    } else {
        t
    }
}

/// The value of [`names::LABEL_DNS_IMAGE`] on a node holding [`image`]`(version)`: the tag,
/// cut to a label value's 63 characters and its alphanumeric ends.
pub fn image_label_value(version: &str) -> String {
    let t: String = tag(version).chars().take(63).collect();
    t.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// kubeboot's DNS for `cfg` and a kubeboot of `version` (the image tag), serving the DNS
/// Service's address `dns_ip`.
///
/// # Errors
/// None today; kept a `Result` like the other addons for the configuration checks to come.
pub fn kubeboot_dns_addon(
    cfg: &InitConfig,
    version: &str,
    dns_ip: IpAddr,
) -> Result<KubebootDnsAddon, AddonError> {
    let subject = Subject {
        kind: "ServiceAccount".to_string(),
        name: names::KUBEBOOT_DNS.to_string(),
        namespace: Some(names::KUBE_SYSTEM.to_string()),
        ..Subject::default()
    };
    let role_ref = |kind: &str| RoleRef {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: kind.to_string(),
        name: names::KUBEBOOT_DNS_RBAC.to_string(),
    };
    let rule = |resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(strings(&[""])),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    };
    let cluster_meta = ObjectMeta {
        name: Some(names::KUBEBOOT_DNS_RBAC.to_string()),
        ..ObjectMeta::default()
    };
    Ok(KubebootDnsAddon {
        service_account: ServiceAccount {
            metadata: meta(names::KUBEBOOT_DNS),
            ..ServiceAccount::default()
        },
        cluster_role: ClusterRole {
            metadata: cluster_meta.clone(),
            rules: Some(vec![rule(&["services", "endpoints"], &["list", "watch"])]),
            ..ClusterRole::default()
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: cluster_meta,
            role_ref: role_ref("ClusterRole"),
            subjects: Some(vec![subject.clone()]),
        },
        role: Role {
            metadata: meta(names::KUBEBOOT_DNS_RBAC),
            rules: Some(vec![rule(&["configmaps"], &["get", "list", "watch"])]),
        },
        role_binding: RoleBinding {
            metadata: meta(names::KUBEBOOT_DNS_RBAC),
            role_ref: role_ref("Role"),
            subjects: Some(vec![subject]),
        },
        deployment: deployment(&cfg.cluster.networking.dns_domain, version, dns_ip),
    })
}

/// kubeadm's `coredns` Deployment standing aside for kubeboot's DNS: no replicas (no Pending
/// pods lingering) and an annotation naming the Deployment that serves DNS; every other field
/// as kubeadm makes it.
pub fn coredns_standing_aside(mut coredns: Deployment) -> Deployment {
    coredns.spec.replicas = Some(0);
    coredns.metadata.annotations.get_or_insert_default().insert(
        names::ANNOTATION_DNS_SERVED_BY.to_string(),
        format!("{}/{}", names::KUBE_SYSTEM, names::KUBEBOOT_DNS),
    );
    coredns
}

fn deployment(dns_domain: &str, version: &str, dns_ip: IpAddr) -> Deployment {
    let labels = string_map([
        (names::LABEL_K8S_APP, names::KUBE_DNS),
        (names::LABEL_APP_NAME, names::KUBEBOOT_DNS),
    ]);
    let own_label = string_map([(names::LABEL_APP_NAME, names::KUBEBOOT_DNS)]);
    let dns_ip = dns_ip.to_string();
    let container = Container {
        name: names::KUBEBOOT_DNS.to_string(),
        image: Some(image(version)),
        // The image exists only in the nodes' containerd: there is nothing to pull.
        image_pull_policy: Some("Never".to_string()),
        command: Some(strings(&[
            EXE_IN_IMAGE,
            "dns",
            "--cluster-domain",
            dns_domain,
            "--cluster-dns-ip",
            &dns_ip,
        ])),
        resources: Some(ResourceRequirements {
            limits: Some(quantities([("memory", "170Mi")])),
            requests: Some(quantities([("cpu", "100m"), ("memory", "70Mi")])),
            ..ResourceRequirements::default()
        }),
        ports: Some(vec![
            port("dns", 53, "UDP"),
            port("dns-tcp", 53, "TCP"),
            port("health", HEALTH_PORT, "TCP"),
            port("ready", READY_PORT, "TCP"),
        ]),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/health", HEALTH_PORT)),
            initial_delay_seconds: Some(60),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(5),
            ..Probe::default()
        }),
        // Every second: a fresh replica joins the Service's endpoints as soon as its watches
        // have synced, not after the default 10 s period.
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/ready", READY_PORT)),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        security_context: Some(security_context()),
        ..Container::default()
    };
    let anti_affinity = PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(own_label),
                    ..LabelSelector::default()
                }),
                topology_key: names::LABEL_HOSTNAME.to_string(),
                ..PodAffinityTerm::default()
            },
        }]),
        ..PodAntiAffinity::default()
    };
    let pod = PodSpec {
        priority_class_name: Some(names::PRIORITY_CLASS_CLUSTER_CRITICAL.to_string()),
        service_account_name: Some(names::KUBEBOOT_DNS.to_string()),
        tolerations: Some(tolerations()),
        node_selector: Some(string_map([
            (names::LABEL_OS, "linux"),
            (names::LABEL_DNS_IMAGE, image_label_value(version).as_str()),
        ])),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(anti_affinity),
            ..Affinity::default()
        }),
        containers: vec![container],
        // The node's resolv.conf: its resolvers are the upstreams (as CoreDNS's Default).
        dns_policy: Some("Default".to_string()),
        ..PodSpec::default()
    };
    dns_deployment(names::KUBEBOOT_DNS, labels, REPLICAS, pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addons::coredns_addon;
    use crate::addons::tests_support::config;

    fn addon() -> KubebootDnsAddon {
        let mut cfg = config();
        cfg.cluster.networking.dns_domain = "kb.example".into();
        kubeboot_dns_addon(&cfg, "0.1.0", "10.96.0.10".parse().expect("ip")).expect("builds")
    }

    /// The object as JSON, without `apiVersion` and `kind` (the types fix them).
    fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
        let mut v = serde_json::to_value(v).expect("json");
        if let Some(map) = v.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
        }
        v
    }

    #[test]
    fn image_and_label_value_are_tag_and_label_safe() {
        assert_eq!(image("0.1.0"), "kubeboot.local/kubeboot-dns:0.1.0");
        assert_eq!(
            image("v1.2.3+g1a2b"),
            "kubeboot.local/kubeboot-dns:1.2.3-g1a2b"
        );
        assert_eq!(image_label_value("0.1.0"), "0.1.0");
        assert_eq!(image_label_value("1.0.0-rc.1+"), "1.0.0-rc.1");
        let long = "1".repeat(80) + "-x";
        assert_eq!(image_label_value(&long).len(), 63);
        assert_eq!(image(""), "kubeboot.local/kubeboot-dns:latest");
    }

    #[test]
    fn rbac_is_least_privilege() {
        let a = addon();
        assert_eq!(
            json(&a.service_account),
            serde_json::json!({"metadata": {"name": "kubeboot-dns", "namespace": "kube-system"}})
        );
        assert_eq!(
            json(&a.cluster_role),
            serde_json::json!({"metadata": {"name": "kubeboot:dns"}, "rules": [
                {"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["list", "watch"]}
            ]})
        );
        assert_eq!(
            json(&a.role),
            serde_json::json!({"metadata": {"name": "kubeboot:dns", "namespace": "kube-system"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
            ]})
        );
        let subjects = serde_json::json!([
            {"kind": "ServiceAccount", "name": "kubeboot-dns", "namespace": "kube-system"}
        ]);
        assert_eq!(
            json(&a.cluster_role_binding),
            serde_json::json!({"metadata": {"name": "kubeboot:dns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeboot:dns"},
                "subjects": subjects})
        );
        assert_eq!(
            json(&a.role_binding),
            serde_json::json!({"metadata": {"name": "kubeboot:dns", "namespace": "kube-system"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeboot:dns"},
                "subjects": subjects})
        );
    }

    #[test]
    fn deployment_field_by_field() {
        let d = json(&addon().deployment);
        let labels =
            serde_json::json!({"k8s-app": "kube-dns", "app.kubernetes.io/name": "kubeboot-dns"});
        assert_eq!(d["metadata"]["name"], "kubeboot-dns");
        assert_eq!(d["metadata"]["namespace"], "kube-system");
        assert_eq!(d["metadata"]["labels"], labels);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 2);
        assert_eq!(spec["selector"]["matchLabels"], labels);
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 1);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "kubeboot-dns");
        assert_eq!(pod["dnsPolicy"], "Default");
        assert_eq!(pod["priorityClassName"], "system-cluster-critical");
        assert_eq!(
            pod["nodeSelector"],
            serde_json::json!({"kubernetes.io/os": "linux", "kubeboot.io/dns-image": "0.1.0"})
        );
        assert_eq!(
            pod["tolerations"],
            serde_json::json!([
                {"key": "CriticalAddonsOnly", "operator": "Exists"},
                {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"},
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            ])
        );
        assert_eq!(
            pod["affinity"],
            serde_json::json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kubeboot-dns"}},
                    "topologyKey": "kubernetes.io/hostname"}}
            ]}})
        );
        let c = &pod["containers"][0];
        assert_eq!(pod["containers"].as_array().map(Vec::len), Some(1));
        assert_eq!(c["name"], "kubeboot-dns");
        assert_eq!(c["image"], "kubeboot.local/kubeboot-dns:0.1.0");
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(
            c["command"],
            serde_json::json!([
                "/kubeboot",
                "dns",
                "--cluster-domain",
                "kb.example",
                "--cluster-dns-ip",
                "10.96.0.10"
            ])
        );
        assert_eq!(c.get("args"), None);
        assert_eq!(
            c["ports"],
            serde_json::json!([
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                {"name": "health", "containerPort": 8080, "protocol": "TCP"},
                {"name": "ready", "containerPort": 8181, "protocol": "TCP"},
            ])
        );
        assert_eq!(
            c["readinessProbe"],
            serde_json::json!({"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}, "periodSeconds": 1})
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], 8080);
        assert_eq!(
            c["securityContext"],
            serde_json::json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["all"]},
                "readOnlyRootFilesystem": true
            })
        );
        assert_eq!(pod.get("volumes"), None);
    }

    /// The two ReplicaSets never select each other's pods: CoreDNS's selector
    /// (`k8s-app: kube-dns`) does match kubeboot-dns pods, but a ReplicaSet adopts only
    /// ownerless pods and these are owned by their own; kubeboot-dns's selector needs a label
    /// CoreDNS pods lack. The kube-dns Service selects both.
    #[test]
    fn kube_dns_selects_it_and_coredns_pods_do_not_match_its_selector() {
        let cfg = config();
        let ours = json(&addon().deployment);
        let coredns = coredns_addon(&cfg, None).expect("builds");
        let pod_labels = &ours["spec"]["template"]["metadata"]["labels"];
        let service_selector = &json(&coredns.service)["spec"]["selector"];
        for (k, v) in service_selector.as_object().expect("selector") {
            assert_eq!(
                &pod_labels[k], v,
                "kube-dns selects kubeboot-dns pods by {k}"
            );
        }
        let coredns_pod_labels =
            &json(&coredns.deployment)["spec"]["template"]["metadata"]["labels"];
        assert_eq!(coredns_pod_labels.get(names::LABEL_APP_NAME), None);
    }

    #[test]
    fn coredns_standing_aside_changes_only_replicas_and_one_annotation() {
        let cfg = config();
        let kubeadms = coredns_addon(&cfg, None).expect("builds").deployment;
        let aside = coredns_standing_aside(kubeadms.clone());
        assert_eq!(aside.spec.replicas, Some(0));
        assert_eq!(
            aside.metadata.annotations,
            Some(string_map([(
                "kubeboot.io/dns-served-by",
                "kube-system/kubeboot-dns"
            )]))
        );
        let mut back = aside;
        back.spec.replicas = Some(2);
        back.metadata.annotations = None;
        assert_eq!(back, kubeadms);
    }
}
