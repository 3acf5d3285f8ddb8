//! The kubelet's configuration file and its static pod in agent mode (kubeadm:
//! componentconfigs/kubelet.go for the KubeletConfiguration defaults, phases/kubelet/flags.go
//! for `kubeadm-flags.env`).
//!
//! The kubelet is itself a static pod the agent runs. Under `--static-pod-runner agent` (the
//! default) the node's kubelet gets an empty `staticPodPath`: the agent alone owns the
//! manifest directory. Under `--static-pod-runner kubelet` it runs
//! `/etc/kubernetes/manifests`, as with kubeadm. The cluster-wide copy (the
//! `kubelet-config-1.20` ConfigMap other nodes, kubeadm's included, download) always has
//! kubeadm's `staticPodPath`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use components::catalogue::{self, Component};
use components::config::InitConfig;
use components::{Layout, StaticPodRunner, names};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, SecurityContext};
use serde_json::{Map, Value, json};

use crate::paths::text;
use crate::staticpod::{component_pod, http_probe};

/// `apiVersion` of the KubeletConfiguration kubeadm 1.20 writes.
pub const KUBELET_CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// `kind` of the kubelet's configuration document.
pub const KUBELET_CONFIG_KIND: &str = "KubeletConfiguration";

/// The cluster DNS address: the 10th address of the service subnet (kubeadm:
/// constants.GetDNSIP, e.g. 10.96.0.10 for 10.96.0.0/12).
pub fn cluster_dns_ip(cfg: &InitConfig) -> IpAddr {
    let net = cfg.cluster.networking.service_subnet;
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a).wrapping_add(10))),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a).wrapping_add(10))),
    }
}

/// kubeadm 1.20's KubeletConfiguration for this cluster, before the user's document: the
/// fields kubeadm defaults (componentconfigs/kubelet.go, Default) plus the zero durations and
/// `logging: {}` its Go marshalling writes, and kubeboot's choices for nodes without systemd
/// (`cgroupDriver: cgroupfs`, `resolvConf`; both the kubelet's own defaults too).
fn kubeadm_defaults(cfg: &InitConfig) -> Value {
    let ca = format!(
        "{}/{}",
        cfg.cluster.certificates_dir.trim_end_matches('/'),
        components::names::CA_CERT_NAME
    );
    json!({
        "apiVersion": KUBELET_CONFIG_API_VERSION,
        "kind": KUBELET_CONFIG_KIND,
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "cacheTTL": "0s", "enabled": true },
            "x509": { "clientCAFile": ca },
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": { "cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s" },
        },
        // No systemd on kubeboot's nodes is assumed; containerd's runc uses cgroupfs too.
        "cgroupDriver": "cgroupfs",
        "clusterDNS": [cluster_dns_ip(cfg).to_string()],
        "clusterDomain": cfg.cluster.networking.dns_domain,
        "cpuManagerReconcilePeriod": "0s",
        "evictionPressureTransitionPeriod": "0s",
        "fileCheckFrequency": "0s",
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "httpCheckFrequency": "0s",
        "imageMinimumGCAge": "0s",
        "logging": {},
        "nodeStatusReportFrequency": "0s",
        "nodeStatusUpdateFrequency": "0s",
        "resolvConf": "/etc/resolv.conf",
        "rotateCertificates": true,
        "runtimeRequestTimeout": "0s",
        "staticPodPath": StaticPodRunner::Kubelet.kubelet_static_pod_path(),
        "streamingConnectionIdleTimeout": "0s",
        "syncFrequency": "0s",
        "volumeStatsAggPeriod": "0s",
    })
}

/// The user's KubeletConfiguration document from `--config`, if any, as JSON.
fn user_document(cfg: &InitConfig) -> Option<Value> {
    cfg.component_configs
        .iter()
        .find(|d| d.kind == KUBELET_CONFIG_KIND)
        .and_then(|d| yaml_serde::from_str::<Value>(&d.yaml).ok())
        .filter(Value::is_object)
}

/// Deep merge: every field the user set wins; mappings merge key by key.
fn merge(base: &mut Value, user: &Value) {
    match (base, user) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, u) => *b = u.clone(),
    }
}

/// The KubeletConfiguration kubeboot uploads as the `kubelet-config-1.20` ConfigMap:
/// kubeadm 1.20's defaults merged with the user's `KubeletConfiguration` document from
/// `--config` (the user's fields win, as kubeadm keeps them and only warns), except
/// `rotateCertificates`, which kubeadm hard-codes to `true`. Rendered as go-yaml writes it
/// (keys sorted).
pub fn kubelet_configuration_yaml(cfg: &InitConfig) -> String {
    crate::yaml::go_yaml(&kubelet_configuration(cfg))
}

/// The KubeletConfiguration of this node's `/var/lib/kubelet/config.yaml`: the cluster's
/// ([`kubelet_configuration_yaml`]) with the `staticPodPath` of the node's `runner` (under
/// the agent always empty, whatever the user set: two runners of one manifest directory
/// would run every pod twice).
pub fn node_kubelet_configuration_yaml(cfg: &InitConfig, runner: StaticPodRunner) -> String {
    let mut doc = kubelet_configuration(cfg);
    if let (StaticPodRunner::Agent, Value::Object(map)) = (runner, &mut doc) {
        map.insert(
            "staticPodPath".into(),
            runner.kubelet_static_pod_path().into(),
        );
    }
    crate::yaml::go_yaml(&doc)
}

/// The kubelet configuration of a joining node (kubeadm: kubelet.DownloadConfig): the
/// cluster's `kubelet-config-<minor>` ConfigMap document as it is, with `staticPodPath`
/// emptied under the agent runner (the agent owns the manifest directory there).
///
/// # Errors
/// The document is not a YAML mapping.
pub fn node_kubelet_configuration_from_cluster(
    cluster_yaml: &str,
    runner: StaticPodRunner,
) -> Result<String, yaml_serde::Error> {
    let mut doc: Value = yaml_serde::from_str(cluster_yaml)?;
    let Value::Object(map) = &mut doc else {
        return Err(serde::de::Error::custom("not a YAML mapping"));
    };
    if runner == StaticPodRunner::Agent {
        map.insert(
            "staticPodPath".into(),
            runner.kubelet_static_pod_path().into(),
        );
    }
    Ok(crate::yaml::go_yaml(&doc))
}

#[cfg(test)]
mod join_tests {
    use super::*;

    #[test]
    fn a_joining_node_keeps_the_clusters_kubelet_configuration_and_the_agent_owns_static_pods() {
        let cluster = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- 10.96.0.10\nstaticPodPath: /etc/kubernetes/manifests\nmaxPods: 57\n";
        let agent =
            node_kubelet_configuration_from_cluster(cluster, StaticPodRunner::Agent).unwrap();
        assert!(agent.contains("staticPodPath: \"\"\n"), "{agent}");
        assert!(
            agent.contains("maxPods: 57\n") && agent.contains("- 10.96.0.10\n"),
            "{agent}"
        );
        let kubelet =
            node_kubelet_configuration_from_cluster(cluster, StaticPodRunner::Kubelet).unwrap();
        assert!(
            kubelet.contains("staticPodPath: /etc/kubernetes/manifests\n"),
            "{kubelet}"
        );
        assert!(node_kubelet_configuration_from_cluster("- a\n", StaticPodRunner::Agent).is_err());
    }
}

fn kubelet_configuration(cfg: &InitConfig) -> Value {
    let mut doc = kubeadm_defaults(cfg);
    if let Some(user) = user_document(cfg) {
        merge(&mut doc, &user);
    }
    if let Value::Object(map) = &mut doc {
        // kubeadm: "we must hardcode it to true" (componentconfigs/kubelet.go).
        map.insert("rotateCertificates".into(), Value::Bool(true));
        map.insert("apiVersion".into(), KUBELET_CONFIG_API_VERSION.into());
        map.insert("kind".into(), KUBELET_CONFIG_KIND.into());
    }
    doc
}

/// The user's KubeletConfiguration document, if one was given and it is a valid mapping
/// (the upload-config phase marks the ConfigMap as user-supplied then).
pub fn user_kubelet_configuration(cfg: &InitConfig) -> Option<Map<String, Value>> {
    match user_document(cfg) {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The flags kubeadm writes to `kubeadm-flags.env` as `KUBELET_KUBEADM_ARGS` (kubeadm:
/// phases/kubelet/flags.go, buildKubeletArgMap), for a remote CRI runtime: the endpoint,
/// the pause image and the node's name when it is not the host name; then
/// `nodeRegistration.kubeletExtraArgs` override them (they are written in the flags file
/// too, as kubeadm >= 1.22 does; 1.20 keeps them in the drop-in).
pub fn kubeadm_flags(
    cfg: &InitConfig,
    cri_endpoint: &str,
    pause_image: &str,
    hostname: &str,
) -> BTreeMap<String, String> {
    let mut flags = BTreeMap::new();
    flags.insert("container-runtime".to_string(), "remote".to_string());
    flags.insert(
        "container-runtime-endpoint".to_string(),
        cri_endpoint.to_string(),
    );
    flags.insert(
        "pod-infra-container-image".to_string(),
        pause_image.to_string(),
    );
    if cfg.node.name != hostname.to_lowercase() {
        flags.insert("hostname-override".to_string(), cfg.node.name.clone());
    }
    for (k, v) in &cfg.node.kubelet_extra_args {
        flags.insert(k.clone(), v.clone());
    }
    flags
}

/// `KUBELET_KUBEADM_ARGS="--a=b --c=d"` plus a newline, as kubeadm writes the env file.
pub fn kubeadm_flags_env(flags: &BTreeMap<String, String>) -> String {
    let args: Vec<String> = flags.iter().map(|(k, v)| format!("--{k}={v}")).collect();
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args.join(" "))
}

/// A CRI socket as given (`/run/containerd/containerd.sock` or `unix:///run/...`) as the
/// kubelet's endpoint URL and as a path.
pub fn cri_endpoint(socket: &str) -> (String, String) {
    let path = socket.strip_prefix("unix://").unwrap_or(socket).to_string();
    (format!("unix://{path}"), path)
}

/// The pause (sandbox) image of the cluster's version (kubeadm: images.GetPauseImage).
pub fn pause_image(cfg: &InitConfig) -> String {
    catalogue::image(
        Component::Pause,
        &crate::control_plane::image_repository(cfg),
        &cfg.cluster.kubernetes_version,
    )
}

/// The kubelet's image: kubeadm's naming for the cluster's version
/// (`k8s.gcr.io/kubelet:v1.20.2`), which the agent's process runtime maps to the `kubelet`
/// binary of exactly that version.
pub fn kubelet_image(cfg: &InitConfig) -> String {
    catalogue::image(
        Component::Kubelet,
        &crate::control_plane::image_repository(cfg),
        &cfg.cluster.kubernetes_version,
    )
}

/// The kubelet as a static pod of kubeboot's agent: host network, privileged,
/// `system-node-critical`, its flags those of `kubeadm-flags.env` ([`kubeadm_flags`]) plus the
/// configuration file, the kubeconfig, the node's address and name, and CNI networking (the
/// kubelet's systemd drop-in carries the first two in kubeadm). A liveness probe on its
/// healthz port.
pub fn kubelet_pod(cfg: &InitConfig, layout: &Layout, cri_socket: &str, hostname: &str) -> Pod {
    let (endpoint, _) = cri_endpoint(cri_socket);
    let mut flags = kubeadm_flags(cfg, &endpoint, &pause_image(cfg), hostname);
    let mut fixed = BTreeMap::from([
        (
            "config".to_string(),
            text(&layout.kubelet_dir().join(names::KUBELET_CONFIG_FILE)),
        ),
        (
            "kubeconfig".to_string(),
            text(&layout.kubeconfig(names::KUBELET_KUBECONFIG)),
        ),
        (
            "node-ip".to_string(),
            cfg.local_api_endpoint.advertise_address.to_string(),
        ),
        ("hostname-override".to_string(), cfg.node.name.clone()),
        ("network-plugin".to_string(), "cni".to_string()),
    ]);
    // The user's kubeletExtraArgs still win.
    fixed.retain(|k, _| !cfg.node.kubelet_extra_args.contains_key(k));
    flags.extend(fixed);
    let timing = crate::staticpod::ProbeTiming {
        initial_delay_seconds: 10,
        timeout_seconds: 15,
        failure_threshold: 8,
        period_seconds: 10,
    };
    let container = Container {
        name: names::KUBELET.to_string(),
        image: Some(kubelet_image(cfg)),
        image_pull_policy: Some("IfNotPresent".to_string()),
        command: Some(crate::args::command(
            names::KUBELET,
            &flags,
            &BTreeMap::new(),
        )),
        liveness_probe: Some(http_probe(
            "127.0.0.1",
            "/healthz",
            10248,
            catalogue::Scheme::Http,
            timing,
        )),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    node_pod(component_pod(container, vec![], BTreeMap::new()))
}

/// The AWS SDK's switch for the EC2 instance metadata service (aws-sdk-go:
/// aws/ec2metadata/service.go, disableServiceEnvVar).
pub const AWS_EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";

/// Turns off the kubelet's lookups of the EC2 instance metadata service, for a host that is
/// not on EC2. The in-tree ECR credential provider asks the AWS credential chain whether it
/// is enabled when the kubelet starts (kubelet: pkg/credentialprovider/aws/aws_credentials.go,
/// ecrProvider.Enabled), whose last link asks 169.254.169.254 and waits its 5 s timeout
/// where nothing answers: the kubelet starts (and registers its Node) that much later. ECR
/// credentials from the environment or a shared credentials file still work.
pub fn without_ec2_metadata(pod: &mut Pod) {
    for c in pod.spec.iter_mut().flat_map(|s| s.containers.iter_mut()) {
        c.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: AWS_EC2_METADATA_DISABLED.to_string(),
            value: Some("true".to_string()),
            value_from: None,
        });
    }
}

/// A static pod of the node tier (not the control plane's).
pub(crate) fn node_pod(mut pod: Pod) -> Pod {
    if let Some(labels) = pod.metadata.labels.as_mut() {
        labels.insert(names::LABEL_TIER.to_string(), names::TIER_NODE.to_string());
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use components::config::flags::{ConfigSource, HostFacts, InitFlags, resolve_init};

    fn host() -> HostFacts {
        HostFacts {
            hostname: "node1".into(),
            default_address: Some("10.0.0.1".parse().expect("valid")),
            local_addresses: vec!["10.0.0.1".parse().expect("valid")],
            detected_version: Some(components::version::v(1, 20, 2)),
        }
    }

    fn cfg_with(config: Option<&str>) -> InitConfig {
        let flags = InitFlags {
            config: config.map(|c| ConfigSource {
                path: "kubeboot.yaml".into(),
                content: c.into(),
            }),
            set_flags: if config.is_some() {
                vec!["config".into()]
            } else {
                vec![]
            },
            ..Default::default()
        };
        resolve_init(&flags, &host()).expect("valid config")
    }

    fn parsed(cfg: &InitConfig) -> Value {
        yaml_serde::from_str(&kubelet_configuration_yaml(cfg)).expect("yaml")
    }

    #[test]
    fn ec2_metadata_lookups_can_be_turned_off() {
        let cfg = cfg_with(None);
        let mut pod = kubelet_pod(
            &cfg,
            &Layout::host(),
            "/run/containerd/containerd.sock",
            "node1",
        );
        let env = |p: &Pod| {
            p.spec.as_ref().unwrap().containers[0]
                .env
                .clone()
                .unwrap_or_default()
        };
        assert!(
            env(&pod)
                .iter()
                .all(|e| e.name != AWS_EC2_METADATA_DISABLED)
        );
        without_ec2_metadata(&mut pod);
        assert!(
            env(&pod)
                .iter()
                .any(|e| e.name == AWS_EC2_METADATA_DISABLED && e.value.as_deref() == Some("true"))
        );
    }

    #[test]
    fn defaults_follow_kubeadm() {
        let doc = parsed(&cfg_with(None));
        assert_eq!(doc["kind"], "KubeletConfiguration");
        assert_eq!(doc["apiVersion"], "kubelet.config.k8s.io/v1beta1");
        assert_eq!(doc["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(doc["clusterDomain"], "cluster.local");
        assert_eq!(
            doc["authentication"]["x509"]["clientCAFile"],
            "/etc/kubernetes/pki/ca.crt"
        );
        assert_eq!(doc["authentication"]["webhook"]["enabled"], true);
        assert_eq!(doc["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(doc["authorization"]["mode"], "Webhook");
        assert_eq!(doc["rotateCertificates"], true);
        assert_eq!(doc["cgroupDriver"], "cgroupfs");
        assert_eq!(doc["staticPodPath"], "/etc/kubernetes/manifests");
        assert_eq!(doc["healthzPort"], 10248);
    }

    #[test]
    fn the_node_file_follows_the_static_pod_runner() {
        let user = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /srv/pods\n";
        let cfg = cfg_with(Some(user));
        let node = |r| -> Value {
            yaml_serde::from_str(&node_kubelet_configuration_yaml(&cfg, r)).expect("yaml")
        };
        // The agent owns the manifest directory, whatever the user set.
        assert_eq!(node(StaticPodRunner::Agent)["staticPodPath"], "");
        // The kubelet runs what the user chose, else kubeadm's directory.
        assert_eq!(node(StaticPodRunner::Kubelet)["staticPodPath"], "/srv/pods");
        let default = cfg_with(None);
        let doc: Value = yaml_serde::from_str(&node_kubelet_configuration_yaml(
            &default,
            StaticPodRunner::Kubelet,
        ))
        .expect("yaml");
        assert_eq!(doc["staticPodPath"], "/etc/kubernetes/manifests");
        // Everything else is the cluster's configuration.
        let mut cluster = parsed(&default);
        cluster["staticPodPath"] = "".into();
        assert_eq!(
            yaml_serde::from_str::<Value>(&node_kubelet_configuration_yaml(
                &default,
                StaticPodRunner::Agent
            ))
            .expect("yaml"),
            cluster
        );
    }

    #[test]
    fn user_document_is_merged_and_wins() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: 10.100.0.0/16\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /kubeboot-n1\nrotateCertificates: false\nauthentication:\n  webhook:\n    cacheTTL: 2m0s\n";
        let doc = parsed(&cfg_with(Some(text)));
        assert_eq!(doc["cgroupRoot"], "/kubeboot-n1");
        assert_eq!(doc["clusterDNS"], json!(["10.100.0.10"]));
        // Merged key by key: the user's cacheTTL, kubeadm's enabled.
        assert_eq!(doc["authentication"]["webhook"]["cacheTTL"], "2m0s");
        assert_eq!(doc["authentication"]["webhook"]["enabled"], true);
        // kubeadm hard-codes certificate rotation.
        assert_eq!(doc["rotateCertificates"], true);
    }

    #[test]
    fn flags_env_is_sorted_and_extra_args_win() {
        let mut cfg = cfg_with(None);
        cfg.node.name = "other".into();
        cfg.node
            .kubelet_extra_args
            .insert("pod-infra-container-image".into(), "mine:1".into());
        let flags = kubeadm_flags(
            &cfg,
            "unix:///run/containerd/containerd.sock",
            "k8s.gcr.io/pause:3.2",
            "node1",
        );
        assert_eq!(
            kubeadm_flags_env(&flags),
            "KUBELET_KUBEADM_ARGS=\"--container-runtime=remote \
             --container-runtime-endpoint=unix:///run/containerd/containerd.sock \
             --hostname-override=other --pod-infra-container-image=mine:1\"\n"
        );
    }
}
