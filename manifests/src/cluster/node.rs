//! What `mark-control-plane` puts on the control-plane Node, per Kubernetes version
//! (kubeadm: phases/markcontrolplane/markcontrolplane.go, constants.go).

use components::Version;
use components::config::Taint;
use components::names;
use k8s_openapi::api::core::v1::Node;

/// From this version kubeadm no longer sets the `master` label and taints `control-plane`
/// (kubeadm 1.24, constants.ControlPlaneTaint), and it adds the exclude-from-LB label.
const CONTROL_PLANE_ONLY_SINCE: (u32, u32) = (1, 24);

fn control_plane_only(version: &Version) -> bool {
    version.at_least(CONTROL_PLANE_ONLY_SINCE.0, CONTROL_PLANE_ONLY_SINCE.1)
}

/// The labels kubeadm sets, each with the empty value: `master` and `control-plane` up to
/// 1.23; `control-plane` and `exclude-from-external-load-balancers` from 1.24.
pub fn control_plane_labels(version: &Version) -> Vec<&'static str> {
    if control_plane_only(version) {
        vec![
            names::LABEL_NODE_ROLE_CONTROL_PLANE,
            names::LABEL_EXCLUDE_FROM_EXTERNAL_LB,
        ]
    } else {
        vec![
            names::LABEL_NODE_ROLE_MASTER,
            names::LABEL_NODE_ROLE_CONTROL_PLANE,
        ]
    }
}

/// kubeadm's default control-plane taint: `node-role.kubernetes.io/master:NoSchedule` up to
/// 1.23, `node-role.kubernetes.io/control-plane:NoSchedule` from 1.24.
pub fn default_control_plane_taints(version: &Version) -> Vec<Taint> {
    let key = if control_plane_only(version) {
        names::LABEL_NODE_ROLE_CONTROL_PLANE
    } else {
        names::LABEL_NODE_ROLE_MASTER
    };
    vec![Taint {
        key: key.into(),
        value: None,
        effect: "NoSchedule".into(),
    }]
}

/// A taint as Go's `Taint.ToString()` prints it: `key=value:effect`, or `key:effect`.
pub fn taint_string(t: &Taint) -> String {
    match t.value.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

fn taint_json(key: &str, value: Option<&str>, effect: &str) -> serde_json::Value {
    let mut t = serde_json::json!({ "effect": effect, "key": key });
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        t["value"] = serde_json::Value::String(v.into());
    }
    t
}

/// The strategic merge patch that marks `node`: the labels, the taints (ours, then the
/// node's own that are not among them, as markControlPlaneNode merges them: Node taints are
/// replaced as a whole list) and, when known, the CRI socket annotation.
pub fn mark_control_plane_patch(
    node: &Node,
    labels: &[&str],
    taints: &[Taint],
    cri_socket: Option<&str>,
) -> serde_json::Value {
    let mut list: Vec<serde_json::Value> = taints
        .iter()
        .map(|t| taint_json(&t.key, t.value.as_deref(), &t.effect))
        .collect();
    for existing in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        let t = taint_json(&existing.key, existing.value.as_deref(), &existing.effect);
        if !list.contains(&t) {
            list.push(t);
        }
    }
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|l| (l.to_string(), serde_json::Value::String(String::new())))
        .collect();
    let mut patch = serde_json::json!({
        "metadata": { "labels": labels },
        "spec": { "taints": list },
    });
    if let Some(socket) = cri_socket {
        patch["metadata"]["annotations"] =
            serde_json::json!({ names::ANNOTATION_CRI_SOCKET: socket });
    }
    patch
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, Taint as K8sTaint};

    use super::*;

    fn v(s: &str) -> Version {
        s.parse().expect("version")
    }

    #[test]
    fn v1_20_sets_both_labels_and_the_master_taint() {
        assert_eq!(
            control_plane_labels(&v("v1.20.2")),
            vec![
                "node-role.kubernetes.io/master",
                "node-role.kubernetes.io/control-plane"
            ]
        );
        let t = default_control_plane_taints(&v("v1.20.2"));
        assert_eq!(
            taint_string(&t[0]),
            "node-role.kubernetes.io/master:NoSchedule"
        );
        let t = default_control_plane_taints(&v("v1.24.0"));
        assert_eq!(
            taint_string(&t[0]),
            "node-role.kubernetes.io/control-plane:NoSchedule"
        );
    }

    #[test]
    fn patch_is_kubeadms_and_keeps_other_taints() {
        let version = v("v1.20.2");
        let empty = Node::default();
        let patch = mark_control_plane_patch(
            &empty,
            &control_plane_labels(&version),
            &default_control_plane_taints(&version),
            None,
        );
        // kubeadm 1.20.2's dry-run: Attached patch.
        assert_eq!(
            patch.to_string(),
            r#"{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":"","node-role.kubernetes.io/master":""}},"spec":{"taints":[{"effect":"NoSchedule","key":"node-role.kubernetes.io/master"}]}}"#
        );
        let node = Node {
            spec: Some(NodeSpec {
                taints: Some(vec![
                    K8sTaint {
                        key: "node-role.kubernetes.io/master".into(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    },
                    K8sTaint {
                        key: "x".into(),
                        value: Some("y".into()),
                        effect: "NoExecute".into(),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let patch = mark_control_plane_patch(
            &node,
            &control_plane_labels(&version),
            &default_control_plane_taints(&version),
            Some("/run/containerd/containerd.sock"),
        );
        assert_eq!(patch["spec"]["taints"].as_array().unwrap().len(), 2);
        assert_eq!(patch["spec"]["taints"][1]["value"], "y");
        assert_eq!(
            patch["metadata"]["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"],
            "/run/containerd/containerd.sock"
        );
    }
}
