//! The RBAC that lets kubeboot's node agents publish their static pods to the API (no kubeadm
//! equivalent; the design is in the agent's `mirror` module).
//!
//! Each agent authenticates as `kubeboot:agent:<node>` in the group `kubeboot:agents`. The
//! group gets the ClusterRole `kubeboot:agent` (pods: get, list, watch, create, delete;
//! pods/status: get, update, patch) through a RoleBinding in kube-system only: a ClusterRole so
//! that a cluster running static pods in another namespace can grant that namespace with one
//! more RoleBinding, and a RoleBinding (not a ClusterRoleBinding) so that no agent can touch a
//! pod outside kube-system. It has no `update` or `patch` on pods themselves: a changed
//! manifest is a new pod (deleted and created again), as the kubelet treats mirror pods.

use std::collections::BTreeMap;

use components::names;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rule(resource: &str, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec![resource.to_string()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn labels() -> Option<BTreeMap<String, String>> {
    Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "kubeboot".to_string(),
    )]))
}

/// The ClusterRole `kubeboot:agent`: what an agent may do with pods where it is bound.
pub fn agent_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(names::KUBEBOOT_AGENT_CLUSTER_ROLE.to_string()),
            labels: labels(),
            ..Default::default()
        },
        rules: Some(vec![
            rule("pods", &["get", "list", "watch", "create", "delete"]),
            rule("pods/status", &["get", "update", "patch"]),
        ]),
        ..Default::default()
    }
}

/// The RoleBinding `kubeboot:agent` in `namespace` (kube-system): the role for the group
/// `kubeboot:agents`.
pub fn agent_role_binding(namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(names::KUBEBOOT_AGENT_CLUSTER_ROLE.to_string()),
            namespace: Some(namespace.to_string()),
            labels: labels(),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_string()),
            kind: "ClusterRole".to_string(),
            name: names::KUBEBOOT_AGENT_CLUSTER_ROLE.to_string(),
        },
        subjects: Some(vec![Subject {
            api_group: Some(RBAC_GROUP.to_string()),
            kind: "Group".to_string(),
            name: names::KUBEBOOT_AGENTS_GROUP.to_string(),
            namespace: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verbs(role: &ClusterRole, resource: &str) -> Vec<String> {
        role.rules
            .iter()
            .flatten()
            .filter(|r| r.resources.iter().flatten().any(|x| x == resource))
            .flat_map(|r| r.verbs.clone())
            .collect()
    }

    #[test]
    fn role_covers_pods_and_their_status_only() {
        let role = agent_cluster_role();
        assert_eq!(role.metadata.name.as_deref(), Some("kubeboot:agent"));
        let rules = role.rules.as_ref().expect("rules");
        assert_eq!(rules.len(), 2);
        for r in rules {
            assert_eq!(r.api_groups.as_deref(), Some(&[String::new()][..]));
            assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
        }
        assert_eq!(
            verbs(&role, "pods"),
            ["get", "list", "watch", "create", "delete"]
        );
        assert_eq!(verbs(&role, "pods/status"), ["get", "update", "patch"]);
        // Never pods update/patch, never a wildcard.
        assert!(
            !verbs(&role, "pods")
                .iter()
                .any(|v| v == "update" || v == "patch" || v == "*")
        );
    }

    #[test]
    fn binding_is_namespaced_to_the_agents_group() {
        let b = agent_role_binding("kube-system");
        assert_eq!(b.metadata.name.as_deref(), Some("kubeboot:agent"));
        assert_eq!(b.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, "kubeboot:agent");
        assert_eq!(
            b.role_ref.api_group.as_deref(),
            Some("rbac.authorization.k8s.io")
        );
        let subjects = b.subjects.expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "Group");
        assert_eq!(subjects[0].name, "kubeboot:agents");
        // The group is what the agent's client certificate carries.
        assert_eq!(subjects[0].name, names::KUBEBOOT_AGENTS_GROUP);
    }

    #[test]
    fn objects_serialize_with_api_field_names() {
        let v = serde_json::to_value(agent_role_binding("kube-system")).expect("json");
        assert_eq!(v["roleRef"]["kind"], "ClusterRole");
        assert_eq!(v["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        let v = serde_json::to_value(agent_cluster_role()).expect("json");
        assert_eq!(v["rules"][1]["resources"][0], "pods/status");
    }
}
