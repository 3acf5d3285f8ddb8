//! The agent's pods as API objects, pure: a manifest plus the agent's status of the pod give
//! the Pod to create ([`api_pod`]) and its status ([`api_status`]); [`covers`] tells whether
//! the API already shows what the agent would write.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use components::names;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus as ApiContainerStatus, Pod, PodCondition, PodIP, PodStatus as ApiPodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::status::{ContainerStatus, PodStatus};

/// Annotations of the manifest that are the kubelet's to set, never copied to the API pod.
const KUBELET_ANNOTATIONS: &[&str] = &[
    names::ANNOTATION_CONFIG_MIRROR,
    names::ANNOTATION_CONFIG_HASH,
    names::ANNOTATION_CONFIG_SOURCE,
    "kubernetes.io/config.seen",
];

/// Reads a manifest's bytes as a Pod: JSON for `.json` files, YAML otherwise (as
/// [`crate::pod::spec::parse_manifest`] does).
///
/// # Errors
/// When the bytes are not a Pod.
pub fn parse_pod(path: &Path, bytes: &[u8]) -> Result<Pod, String> {
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    } else {
        yaml_serde::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The value of the [`names::LABEL_AGENT_NODE`] label for `node`: the node name when it is a
/// valid label value (at most 63 characters), else `h-` and a hash of it.
pub fn node_label_value(node: &str) -> String {
    let valid = node.len() <= 63
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && node.starts_with(|c: char| c.is_ascii_alphanumeric())
        && node.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return node.to_string();
    }
    let digest = Sha256::digest(node.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("h-{hex}")
}

/// True for a pod this node's agent published: it carries the agent's config source and this
/// node's label. The agent never deletes or writes any other pod.
pub fn is_ours(pod: &Pod, node: &str) -> bool {
    let m = &pod.metadata;
    m.labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_AGENT_NODE))
        .is_some_and(|v| *v == node_label_value(node))
        && m.annotations
            .as_ref()
            .and_then(|a| a.get(names::ANNOTATION_CONFIG_SOURCE))
            .is_some_and(|v| v == names::KUBEBOOT_AGENT_CONFIG_SOURCE)
}

/// The manifest hash an API pod was published for (its `kubernetes.io/config.hash`).
pub fn config_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(names::ANNOTATION_CONFIG_HASH)
        .map(String::as_str)
}

/// The Pod the agent creates for one of its pods: the manifest's labels, annotations and spec
/// under the agent's name for it (`<name>-<node>`), with
/// - `spec.nodeName` empty and `spec.schedulerName` [`names::KUBEBOOT_AGENT_SCHEDULER_NAME`],
///   so that no kubelet runs it and no scheduler binds it;
/// - `automountServiceAccountToken: false`, so admission adds no token volume;
/// - `kubernetes.io/config.source: kubeboot-agent`, `kubernetes.io/config.hash: <uid>` (kubeadm
///   upgrades wait for this hash to change), and this node in a label (the agent lists its own
///   pods by it) and an annotation (the full name).
pub fn api_pod(manifest: &Pod, pod: &PodStatus, node: &str) -> Pod {
    let mut labels = manifest.metadata.labels.clone().unwrap_or_default();
    labels.insert(names::LABEL_AGENT_NODE.to_string(), node_label_value(node));
    let mut annotations: BTreeMap<String, String> = manifest
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !KUBELET_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    annotations.insert(
        names::ANNOTATION_CONFIG_SOURCE.to_string(),
        names::KUBEBOOT_AGENT_CONFIG_SOURCE.to_string(),
    );
    annotations.insert(names::ANNOTATION_CONFIG_HASH.to_string(), pod.uid.clone());
    annotations.insert(names::ANNOTATION_AGENT_NODE.to_string(), node.to_string());
    let mut spec = manifest.spec.clone().unwrap_or_default();
    spec.node_name = None;
    spec.scheduler_name = Some(names::KUBEBOOT_AGENT_SCHEDULER_NAME.to_string());
    spec.automount_service_account_token = Some(false);
    Pod {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn time(unix: u64) -> Option<Time> {
    Timestamp::from_second(i64::try_from(unix).ok()?)
        .ok()
        .map(Time)
}

/// What the node knows to put in a pod's status besides the agent's own view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusContext<'a> {
    /// The node's address: status.hostIP, and status.podIP of hostNetwork pods (the others
    /// have their own, [`PodStatus::pod_ips`]).
    pub node_ip: Option<IpAddr>,
    /// spec.hostNetwork of the manifest.
    pub host_network: bool,
    /// The runtime, for containerID (`process://<pid>`).
    pub runtime: &'a str,
    /// The current time in seconds since the Unix epoch (conditions' lastTransitionTime).
    pub now_unix: u64,
}

/// The status the agent writes for one of its pods, as the kubelet would (kubelet:
/// kubelet_pods.go generateAPIPodStatus, status/generate.go): the phase, the conditions
/// Initialized, Ready, ContainersReady and PodScheduled, one containerStatus per container
/// (state, lastState, ready, started, restartCount), hostIP, podIP/podIPs (the node's for a
/// hostNetwork pod, else the pod's own once its network is set up) and startTime.
/// `previous` is the status the API shows now: its conditions' transition times, startTime and
/// qosClass are kept.
pub fn api_status(
    pod: &PodStatus,
    ctx: &StatusContext<'_>,
    previous: Option<&ApiPodStatus>,
) -> ApiPodStatus {
    let unready: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let all_ready = !pod.containers.is_empty() && unready.is_empty();
    let now = time(ctx.now_unix);
    let condition = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| now.clone());
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: since,
            reason: reason.map(str::to_string),
            message,
            ..Default::default()
        }
    };
    let unready_message =
        (!all_ready).then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let conditions = vec![
        condition("Initialized", true, None, None),
        condition(
            "Ready",
            all_ready,
            (!all_ready).then_some("ContainersNotReady"),
            unready_message.clone(),
        ),
        condition(
            "ContainersReady",
            all_ready,
            (!all_ready).then_some("ContainersNotReady"),
            unready_message,
        ),
        condition("PodScheduled", true, None, None),
    ];
    let node_ip = ctx.node_ip.map(|ip| ip.to_string());
    let pod_ips: Vec<String> = if ctx.host_network {
        node_ip.iter().cloned().collect()
    } else {
        pod.pod_ips.clone()
    };
    let start_time = previous
        .and_then(|p| p.start_time.clone())
        .or_else(|| {
            pod.containers
                .iter()
                .filter_map(|c| c.started_at_unix)
                .min()
                .and_then(time)
        })
        .or(now);
    ApiPodStatus {
        phase: Some(pod.phase.clone()),
        conditions: Some(conditions),
        message: pod.reason.clone(),
        // Not hostIPs: Kubernetes 1.28 added it; an older API server drops it, and the status
        // would never look written.
        host_ip: node_ip,
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.into_iter().map(|ip| PodIP { ip }).collect()),
        start_time,
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        container_statuses: Some(
            pod.containers
                .iter()
                .map(|c| container_status(c, ctx.runtime))
                .collect(),
        ),
        ..Default::default()
    }
}

fn terminated(
    code: Option<i32>,
    reason: Option<&String>,
    message: Option<&String>,
) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code.unwrap_or_default(),
            reason: reason.cloned(),
            message: message.cloned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_status(c: &ContainerStatus, runtime: &str) -> ApiContainerStatus {
    let state = match c.state.as_str() {
        "running" => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: c.started_at_unix.and_then(time),
            }),
            ..Default::default()
        },
        "terminated" => terminated(c.last_exit_code, c.reason.as_ref(), c.message.as_ref()),
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: c.reason.clone(),
                message: c.message.clone(),
            }),
            ..Default::default()
        },
    };
    let last_state = (c.state != "terminated" && c.last_exit_code.is_some()).then(|| {
        terminated(
            c.last_exit_code,
            c.last_exit_reason.as_ref(),
            c.last_exit_message.as_ref(),
        )
    });
    ApiContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id: c.pid.map(|pid| format!("{runtime}://{pid}")),
        ready: c.ready,
        started: Some(c.started),
        restart_count: i32::try_from(c.restart_count).unwrap_or(i32::MAX),
        state: Some(state),
        last_state,
        ..Default::default()
    }
}

/// True when `actual` already holds everything in `desired`: every field of an object in
/// `desired` is in `actual` with a covering value, lists have the same length and cover
/// element by element. Fields the API server adds are thereby ignored, so the agent writes a
/// status only when something it owns differs.
pub fn covers(desired: &serde_json::Value, actual: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d
            .iter()
            .all(|(k, dv)| dv.is_null() || a.get(k).is_some_and(|av| covers(dv, av))),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| covers(dv, av))
        }
        (d, a) => d == a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ETCD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
  labels: {component: etcd, tier: control-plane}
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.1:2379
    kubernetes.io/config.mirror: stale
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  nodeName: somewhere
  containers:
  - name: etcd
    image: k8s.gcr.io/etcd:3.4.13-0
    command: [etcd]
"#;

    fn manifest() -> Pod {
        parse_pod(Path::new("/m/etcd.yaml"), ETCD.as_bytes()).expect("pod")
    }

    fn agent_pod(containers: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            namespace: "kube-system".into(),
            name: "etcd-node1".into(),
            uid: "0123abcd".into(),
            manifest: "/m/etcd.yaml".into(),
            phase: "Running".into(),
            containers,
            ..Default::default()
        }
    }

    fn running(restarts: u32, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: "etcd".into(),
            image: "k8s.gcr.io/etcd:3.4.13-0".into(),
            state: "running".into(),
            pid: Some(42),
            restart_count: restarts,
            ready,
            started: true,
            started_at_unix: Some(1_700_000_000),
            ..Default::default()
        }
    }

    fn ctx() -> StatusContext<'static> {
        StatusContext {
            node_ip: Some("10.0.0.1".parse().expect("ip")),
            host_network: true,
            runtime: "process",
            now_unix: 1_700_000_100,
        }
    }

    #[test]
    fn pod_keeps_kubeadm_labels_and_annotations_and_is_never_scheduled() {
        let pod = api_pod(&manifest(), &agent_pod(vec![running(0, true)]), "node1");
        let m = &pod.metadata;
        assert_eq!(m.name.as_deref(), Some("etcd-node1"));
        assert_eq!(m.namespace.as_deref(), Some("kube-system"));
        let labels = m.labels.as_ref().expect("labels");
        assert_eq!(labels["component"], "etcd");
        assert_eq!(labels["tier"], "control-plane");
        assert_eq!(labels[names::LABEL_AGENT_NODE], "node1");
        let ann = m.annotations.as_ref().expect("annotations");
        assert_eq!(
            ann[names::ANNOTATION_ETCD_CLIENT_URLS],
            "https://10.0.0.1:2379"
        );
        assert_eq!(ann[names::ANNOTATION_CONFIG_SOURCE], "kubeboot-agent");
        assert_eq!(ann[names::ANNOTATION_CONFIG_HASH], "0123abcd");
        assert_eq!(ann[names::ANNOTATION_AGENT_NODE], "node1");
        assert!(
            !ann.contains_key(names::ANNOTATION_CONFIG_MIRROR),
            "not a mirror pod: {ann:?}"
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name, None);
        assert_eq!(spec.scheduler_name.as_deref(), Some("kubeboot-agent"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(spec.containers[0].name, "etcd");
        assert!(pod.status.is_none());
        assert!(is_ours(&pod, "node1"));
        assert!(!is_ours(&pod, "node2"));
        assert_eq!(config_hash(&pod), Some("0123abcd"));
        assert!(!is_ours(&manifest(), "node1"));
    }

    #[test]
    fn long_node_names_get_a_hashed_label() {
        assert_eq!(node_label_value("node-1.example.com"), "node-1.example.com");
        let long = "n".repeat(64);
        let v = node_label_value(&long);
        assert!(v.starts_with("h-") && v.len() == 34, "{v}");
        assert_ne!(v, node_label_value(&"m".repeat(64)));
    }

    #[test]
    fn running_ready_pod_status() {
        let s = api_status(&agent_pod(vec![running(2, true)]), &ctx(), None);
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["phase"], "Running");
        assert_eq!(v["hostIP"], "10.0.0.1");
        assert_eq!(v["podIP"], "10.0.0.1");
        assert_eq!(v["podIPs"], json!([{"ip": "10.0.0.1"}]));
        assert_eq!(v["startTime"], "2023-11-14T22:13:20Z");
        let conds: BTreeMap<String, String> = s
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        for t in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
            assert_eq!(conds[t], "True", "{t}");
        }
        let c = &v["containerStatuses"][0];
        assert_eq!(c["name"], "etcd");
        assert_eq!(c["ready"], true);
        assert_eq!(c["started"], true);
        assert_eq!(c["restartCount"], 2);
        assert_eq!(c["containerID"], "process://42");
        assert_eq!(c["state"]["running"]["startedAt"], "2023-11-14T22:13:20Z");
        assert!(c.get("lastState").is_none());
    }

    #[test]
    fn crash_loop_shows_waiting_reason_and_last_termination() {
        let c = ContainerStatus {
            state: "waiting".into(),
            reason: Some("CrashLoopBackOff".into()),
            message: Some("back-off 10s restarting failed container".into()),
            pid: None,
            ready: false,
            started: false,
            last_exit_code: Some(137),
            last_exit_reason: Some("Error".into()),
            ..running(3, false)
        };
        let s = api_status(&agent_pod(vec![c]), &ctx(), None);
        let v = serde_json::to_value(&s).expect("json");
        let cs = &v["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(cs["restartCount"], 3);
        assert!(cs.get("containerID").is_none());
        let ready = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [etcd]")
        );
    }

    #[test]
    fn terminated_container_and_pod_without_host_network() {
        let c = ContainerStatus {
            state: "terminated".into(),
            reason: Some("Completed".into()),
            last_exit_code: Some(0),
            last_exit_reason: Some("Completed".into()),
            pid: None,
            ready: false,
            ..running(0, false)
        };
        let mut p = agent_pod(vec![c]);
        p.phase = "Succeeded".into();
        p.reason = Some("some reason".into());
        let mut ctx = ctx();
        ctx.host_network = false;
        let v = serde_json::to_value(api_status(&p, &ctx, None)).expect("json");
        assert_eq!(v["phase"], "Succeeded");
        assert_eq!(v["message"], "some reason");
        assert_eq!(v["hostIP"], "10.0.0.1");
        assert!(v.get("podIP").is_none(), "no network yet: no podIP");
        // Its own network set up: its own addresses, never the node's.
        p.pod_ips = vec!["10.199.0.5".into(), "fd00::5".into()];
        let v = serde_json::to_value(api_status(&p, &ctx, None)).expect("json");
        assert_eq!(v["hostIP"], "10.0.0.1");
        assert_eq!(v["podIP"], "10.199.0.5");
        assert_eq!(
            v["podIPs"],
            json!([{"ip": "10.199.0.5"}, {"ip": "fd00::5"}])
        );
        let cs = &v["containerStatuses"][0];
        assert_eq!(cs["state"]["terminated"]["exitCode"], 0);
        assert_eq!(cs["state"]["terminated"]["reason"], "Completed");
        assert!(cs.get("lastState").is_none());
    }

    #[test]
    fn previous_transition_times_start_time_and_qos_are_kept() {
        let first = api_status(&agent_pod(vec![running(0, false)]), &ctx(), None);
        let mut previous = first.clone();
        previous.qos_class = Some("Burstable".into());
        let mut later = ctx();
        later.now_unix += 500;
        // Still not ready: same transition time. Now ready: a new one.
        let same = api_status(&agent_pod(vec![running(0, false)]), &later, Some(&previous));
        assert_eq!(same.conditions, first.conditions);
        assert_eq!(same.qos_class.as_deref(), Some("Burstable"));
        let ready = api_status(&agent_pod(vec![running(0, true)]), &later, Some(&previous));
        let t = |s: &ApiPodStatus, ty: &str| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == ty)
                .and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(t(&ready, "Initialized"), t(&first, "Initialized"));
        assert_ne!(t(&ready, "Ready"), t(&first, "Ready"));
        assert_eq!(ready.start_time, first.start_time);
    }

    #[test]
    fn covers_ignores_what_the_api_adds() {
        let desired = json!({"phase": "Running", "a": null, "cs": [{"n": 1}], "o": {"x": 1}});
        assert!(covers(
            &desired,
            &json!({"phase": "Running", "cs": [{"n": 1, "extra": 2}], "o": {"x": 1, "y": 2}, "qos": "x"})
        ));
        assert!(!covers(
            &desired,
            &json!({"phase": "Pending", "cs": [{"n": 1}], "o": {"x": 1}})
        ));
        assert!(!covers(
            &desired,
            &json!({"phase": "Running", "cs": [], "o": {"x": 1}})
        ));
        assert!(!covers(
            &desired,
            &json!({"phase": "Running", "cs": [{"n": 1}]})
        ));
        // The status the agent computes from the API's own status covers it.
        let s = api_status(&agent_pod(vec![running(1, true)]), &ctx(), None);
        let v = serde_json::to_value(&s).expect("json");
        let again = api_status(&agent_pod(vec![running(1, true)]), &ctx(), Some(&s));
        assert!(covers(&serde_json::to_value(&again).expect("json"), &v));
        let restarted = api_status(&agent_pod(vec![running(2, true)]), &ctx(), Some(&s));
        assert!(!covers(
            &serde_json::to_value(&restarted).expect("json"),
            &v
        ));
    }
}
