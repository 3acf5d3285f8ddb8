//! Golden test: the API objects of `init` (upload-config, bootstrap-token) against what the
//! real kubeadm v1.20.2 would create for the same flags, parsed from its `--dry-run` output
//! (`tests/golden/v1.20.2/init-dryrun-api-objects.txt`, made by `generate-api-objects.sh`).
//!
//! Objects are compared as YAML values, after removing what differs by nature (random CA,
//! expiry time, `creationTimestamp: null`) and the deliberate differences listed below.

use std::collections::BTreeMap;

use components::config::{HostFacts, InitConfig, InitFlags, resolve_init};
use manifests::cluster;
use pki::BootstrapToken;
use yaml_serde::Value;

const CAPTURE: &str = include_str!("golden/v1.20.2/init-dryrun-api-objects.txt");

/// Differences from kubeadm we keep on purpose: (object, field, reason).
const DELIBERATE_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "clusterroles/kubeadm:get-nodes",
        "metadata.namespace",
        "kubeadm sets a namespace on this cluster-scoped object; the API server drops it",
    ),
    (
        "clusterrolebindings/kubeadm:get-nodes",
        "metadata.namespace",
        "as above",
    ),
    (
        "configmaps/kubeadm-config",
        "data.ClusterConfiguration",
        "compared separately: kubeboot adds encryptionAlgorithm (ECDSA-P256 by default) and \
         the controller-manager's extraArgs of CLUSTER_CONFIGURATION_ADDITIONS",
    ),
    (
        "configmaps/kubelet-config-1.20",
        "data.kubelet",
        "the KubeletConfiguration is the kubelet-start work's, checked there",
    ),
];

/// What `kubeboot init` adds to the ClusterConfiguration kubeadm uploads for the capture's flags
/// (no pod network): (field path, value, reason). Each must be there, with this value: the test
/// fails if one vanished, as every control plane that joins later runs what it records.
const CLUSTER_CONFIGURATION_ADDITIONS: &[(&str, &str, &str)] = &[
    (
        "controllerManager.extraArgs.kube-api-qps",
        "100",
        "the controller-manager's default client limit (20 qps, burst 30) makes starting its \
         ~30 controllers take ~4 s, each fetching its service account's token",
    ),
    (
        "controllerManager.extraArgs.kube-api-burst",
        "200",
        "as above",
    ),
];

/// `(resource/name, object)` for every CREATE in the capture, in order.
fn kubeadm_objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut lines = CAPTURE.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("[dryrun] Would perform action CREATE on resource \"")
        else {
            continue;
        };
        let resource = rest.split('"').next().expect("quoted resource").to_string();
        assert_eq!(lines.next(), Some("[dryrun] Attached object:"));
        let mut yaml = String::new();
        while let Some(l) = lines.peek().and_then(|l| l.strip_prefix('\t')) {
            yaml.push_str(l);
            yaml.push('\n');
            lines.next();
        }
        let value: Value = yaml_serde::from_str(&yaml).expect("kubeadm's YAML");
        let name = value["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        out.push((format!("{resource}/{name}"), value));
    }
    out
}

fn config() -> InitConfig {
    let flags = InitFlags {
        apiserver_advertise_address: Some("10.123.0.77".into()),
        kubernetes_version: Some("v1.20.2".into()),
        node_name: Some("dryref".into()),
        token: Some("abcdef.0123456789abcdef".into()),
        ..Default::default()
    };
    let host = HostFacts {
        hostname: "dryref".into(),
        default_address: None,
        local_addresses: vec![],
        detected_version: None,
    };
    resolve_init(&flags, &host).expect("valid config")
}

fn value<T: serde::Serialize>(obj: &T) -> Value {
    manifests::yaml::sorted(&serde_json::to_value(obj).expect("serializes"))
}

/// Ours, named as in the capture, in kubeboot's creation order.
fn ours() -> Vec<(String, Value)> {
    let cfg = config();
    let version = &cfg.cluster.kubernetes_version;
    let mut v: Vec<(String, Value)> = Vec::new();
    let mut push = |resource: &str, obj: Value| {
        let name = obj["metadata"]["name"].as_str().expect("name").to_string();
        v.push((format!("{resource}/{name}"), obj));
    };
    push(
        "configmaps",
        value(&cluster::kubeadm_config_map(&cfg, None).expect("fresh")),
    );
    let (role, binding) = cluster::nodes_kubeadm_config_rbac();
    push("roles", value(&role));
    push("rolebindings", value(&binding));
    push(
        "configmaps",
        value(&cluster::kubelet_config_map(
            version,
            "kind: KubeletConfiguration\n",
            false,
        )),
    );
    let (role, binding) = cluster::kubelet_config_rbac(version);
    push("roles", value(&role));
    push("rolebindings", value(&binding));
    let t = &cfg.bootstrap_tokens[0];
    let spec = cluster::TokenSpec {
        token: BootstrapToken::parse(t.token.as_deref().expect("given")).expect("valid"),
        description: t.description.clone().unwrap_or_default(),
        expiration: Some("2026-11-24T20:58:47Z".into()),
        usages: t.usages.clone(),
        groups: t.groups.clone(),
    };
    push("secrets", value(&cluster::bootstrap_token_secret(&spec)));
    push("clusterroles", value(&cluster::get_nodes_cluster_role()));
    for (_, b) in cluster::bootstrappers_rbac() {
        push("clusterrolebindings", value(&b));
    }
    push(
        "configmaps",
        value(&cluster::cluster_info_config_map(
            &cluster::cluster_info_kubeconfig("CA", "https://10.123.0.77:6443"),
        )),
    );
    let (role, binding) = cluster::cluster_info_rbac();
    push("roles", value(&role));
    push("rolebindings", value(&binding));
    v
}

fn remove(v: &mut Value, path: &str) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_mapping_mut() {
        m.remove(parts[parts.len() - 1]);
    }
}

/// What differs by nature: `creationTimestamp: null`, the Secret's expiry, cluster-info's CA,
/// the kubelet-config checksum (over content compared elsewhere).
fn normalize(key: &str, mut v: Value) -> Value {
    remove(&mut v, "metadata.creationTimestamp");
    for (obj, field, _) in DELIBERATE_DIFFERENCES {
        if *obj == key {
            remove(&mut v, field);
        }
    }
    if key.starts_with("secrets/") {
        remove(&mut v, "data.expiration");
    }
    if key == "configmaps/cluster-info" {
        let text = v["data"]["kubeconfig"]
            .as_str()
            .expect("kubeconfig")
            .to_string();
        let mut kc: Value = yaml_serde::from_str(&text).expect("kubeconfig YAML");
        kc["clusters"][0]["cluster"]["certificate-authority-data"] = Value::String("CA".into());
        v["data"]["kubeconfig"] = kc;
    }
    if key == "configmaps/kubelet-config-1.20" {
        let a = &mut v["metadata"]["annotations"]["kubeadm.kubernetes.io/component-config.hash"];
        assert!(a.as_str().expect("hash").starts_with("sha256:"));
        *a = Value::String("sha256:...".into());
    }
    v
}

fn base64_secret_data(v: &mut Value) {
    // k8s-openapi serializes ByteString as base64, as kubeadm's capture shows it: nothing to do
    // but make sure both sides are strings.
    for (_, val) in v["data"].as_mapping().expect("data").iter() {
        assert!(val.as_str().is_some());
    }
}

#[test]
fn creates_the_objects_kubeadm_creates_in_its_order() {
    let theirs: Vec<String> = kubeadm_objects().into_iter().map(|(k, _)| k).collect();
    let mine: Vec<String> = ours().into_iter().map(|(k, _)| k).collect();
    assert_eq!(mine, theirs);
}

#[test]
fn objects_match_kubeadm_field_by_field() {
    let theirs: BTreeMap<String, Value> = kubeadm_objects().into_iter().collect();
    for (key, mut mine) in ours() {
        let mut want = theirs.get(&key).cloned().expect("kubeadm creates it");
        if key.starts_with("secrets/") {
            base64_secret_data(&mut mine);
            base64_secret_data(&mut want);
        }
        let (want, got) = (normalize(&key, want), normalize(&key, mine));
        assert_eq!(
            got,
            want,
            "{key} differs:\n--- kubeadm\n{}\n--- kubeboot\n{}",
            yaml_serde::to_string(&want).unwrap(),
            yaml_serde::to_string(&got).unwrap()
        );
    }
}

/// The value at the dotted `path`, if any.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, p| cur.get(p))
}

fn uploaded_cluster_configuration(cfg: &InitConfig) -> Value {
    let cm = cluster::kubeadm_config_map(cfg, None).expect("fresh");
    yaml_serde::from_str(&cm.data.expect("data")["ClusterConfiguration"]).expect("yaml")
}

#[test]
fn cluster_configuration_matches_kubeadm_but_for_kubeboots_additions() {
    let theirs: BTreeMap<String, Value> = kubeadm_objects().into_iter().collect();
    let text = theirs["configmaps/kubeadm-config"]["data"]["ClusterConfiguration"]
        .as_str()
        .expect("text");
    let want: Value = yaml_serde::from_str(text).expect("yaml");
    let mut got = uploaded_cluster_configuration(&config());
    remove(&mut got, "encryptionAlgorithm");
    for (path, value, reason) in CLUSTER_CONFIGURATION_ADDITIONS {
        assert!(!reason.trim().is_empty(), "{path} needs a reason");
        assert_eq!(
            lookup(&got, path).and_then(Value::as_str),
            Some(*value),
            "kubeboot's {path} is missing from the uploaded ClusterConfiguration"
        );
        remove(&mut got, path);
    }
    // kubeadm writes `controllerManager: {}`.
    if lookup(&got, "controllerManager.extraArgs")
        .and_then(Value::as_mapping)
        .is_some_and(|m| m.is_empty())
    {
        remove(&mut got, "controllerManager.extraArgs");
    }
    assert_eq!(got, want);
}

/// With a pod network, the controller-manager runs without its node IPAM controller (the
/// kubeboot agents give Nodes their podCIDRs), recorded for every later control plane.
#[test]
fn with_a_pod_network_the_cluster_configuration_records_the_controllers() {
    let flags = InitFlags {
        apiserver_advertise_address: Some("10.123.0.77".into()),
        kubernetes_version: Some("v1.20.2".into()),
        node_name: Some("dryref".into()),
        pod_network_cidr: Some("10.244.0.0/16".into()),
        ..Default::default()
    };
    let cfg = resolve_init(&flags, &HostFacts::default()).expect("valid config");
    let got = uploaded_cluster_configuration(&cfg);
    assert_eq!(
        lookup(&got, "controllerManager.extraArgs.controllers").and_then(Value::as_str),
        Some("*,bootstrapsigner,tokencleaner,-nodeipam")
    );
    assert!(
        !config()
            .cluster
            .controller_manager
            .extra_args
            .contains_key("controllers"),
        "no pod network, no change to kubeadm's controllers"
    );
}

#[test]
fn cluster_status_is_byte_identical() {
    let theirs: BTreeMap<String, Value> = kubeadm_objects().into_iter().collect();
    let want = theirs["configmaps/kubeadm-config"]["data"]["ClusterStatus"]
        .as_str()
        .expect("text");
    let cm = cluster::kubeadm_config_map(&config(), None).expect("fresh");
    assert_eq!(cm.data.expect("data")["ClusterStatus"], want);
}

#[test]
fn cluster_status_merges_other_control_plane_nodes() {
    let cfg = config();
    let existing = "apiEndpoints:\n  other:\n    advertiseAddress: 10.0.0.9\n    bindPort: 6443\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterStatus\n";
    let merged =
        cluster::merge_cluster_status(existing, "dryref", &cfg.local_api_endpoint).expect("merges");
    let v: Value = yaml_serde::from_str(&merged).expect("yaml");
    assert_eq!(v["apiEndpoints"]["other"]["advertiseAddress"], "10.0.0.9");
    assert_eq!(
        v["apiEndpoints"]["dryref"]["advertiseAddress"],
        "10.123.0.77"
    );
    let e = cluster::merge_cluster_status("kind: ClusterStatus\n", "n", &cfg.local_api_endpoint)
        .expect_err("no endpoints");
    assert!(e.to_string().contains("has no apiEndpoints"), "{e}");
}

#[test]
fn cluster_info_kubeconfig_has_kubeadms_layout() {
    let theirs: BTreeMap<String, Value> = kubeadm_objects().into_iter().collect();
    let text = theirs["configmaps/cluster-info"]["data"]["kubeconfig"]
        .as_str()
        .expect("text");
    let ca = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .expect("ca");
    assert_eq!(
        cluster::cluster_info_kubeconfig(ca, "https://10.123.0.77:6443"),
        text
    );
}

#[test]
fn kubelet_config_checksum_is_kubeadms() {
    // ChecksumForConfigMap over the one value; kubeadm's hash for its capture's content.
    let theirs: BTreeMap<String, Value> = kubeadm_objects().into_iter().collect();
    let cm = &theirs["configmaps/kubelet-config-1.20"];
    let content = cm["data"]["kubelet"].as_str().expect("text");
    let ours = cluster::kubelet_config_map(&"v1.20.2".parse().unwrap(), content, false);
    assert_eq!(
        ours.metadata.annotations.expect("annotated")["kubeadm.kubernetes.io/component-config.hash"],
        cm["metadata"]["annotations"]["kubeadm.kubernetes.io/component-config.hash"]
            .as_str()
            .expect("hash")
    );
    let user = cluster::kubelet_config_map(&"v1.20.2".parse().unwrap(), content, true);
    assert!(user.metadata.annotations.is_none());
}

#[test]
fn newer_versions_use_unversioned_kubelet_config_names() {
    let v: components::Version = "v1.24.0".parse().unwrap();
    assert_eq!(cluster::kubelet_config_map_name(&v), "kubelet-config");
    let (role, _) = cluster::kubelet_config_rbac(&v);
    assert_eq!(
        role.metadata.name.as_deref(),
        Some("kubeadm:kubelet-config")
    );
}
