//! Small RBAC builders, as kubeadm spells its Roles and bindings (`apiGroup:
//! rbac.authorization.k8s.io` in every roleRef, `Group`/`User` subjects without apiGroup).

use components::names;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::meta;

/// rbac.GroupName.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A `Group` subject.
pub fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        name: name.into(),
        ..Default::default()
    }
}

/// A `User` subject.
pub fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        ..Default::default()
    }
}

/// The rule kubeadm uses to expose one ConfigMap: `get` on `configmaps/<name>` in the core
/// group.
pub fn get_config_map_rule(config_map: &str) -> PolicyRule {
    PolicyRule {
        verbs: vec!["get".into()],
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        resource_names: Some(vec![config_map.into()]),
        ..Default::default()
    }
}

/// A Role in `namespace`.
pub fn role(name: &str, namespace: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(name, Some(namespace)),
        rules: Some(rules),
    }
}

/// A RoleBinding in `namespace` of the Role of the same name.
pub fn role_binding(name: &str, namespace: &str, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace)),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.into()),
            kind: "Role".into(),
            name: name.into(),
        },
        subjects: Some(subjects),
    }
}

/// A ClusterRole. kubeadm sets a namespace on some cluster-scoped objects
/// (`kubeadm:get-nodes`); the API server drops it, and so do we.
pub fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None),
        rules: Some(rules),
        ..Default::default()
    }
}

/// A ClusterRoleBinding of the ClusterRole `role`.
pub fn cluster_role_binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    }
}

/// The ClusterRoleBinding `kubeadm:cluster-admins` that gives admin.conf's group
/// `cluster-admin` (Kubernetes 1.29 and later; kubeadm 1.29: phases/kubeconfig/kubeconfig.go,
/// EnsureAdminClusterRoleBindingImpl). Created by init with super-admin.conf, since admin.conf
/// has no rights before it exists.
pub fn cluster_admins_binding() -> ClusterRoleBinding {
    cluster_role_binding(
        names::CLUSTER_ADMINS_GROUP,
        names::CLUSTER_ADMIN_CLUSTER_ROLE,
        vec![group(names::CLUSTER_ADMINS_GROUP)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_admins_binding_is_kubeadms() {
        let crb = serde_json::to_value(cluster_admins_binding()).expect("encodes");
        assert_eq!(
            crb,
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kubeadm:cluster-admins"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin"
                },
                "subjects": [{"kind": "Group", "name": "kubeadm:cluster-admins"}]
            })
        );
    }
}
