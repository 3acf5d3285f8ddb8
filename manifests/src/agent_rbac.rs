//! The RBAC and the admission webhook that let kubeboot's node agents publish their static
//! pods to the API, and nothing else (no kubeadm equivalent; the design is in the agent's
//! `mirror` module).
//!
//! Each agent authenticates as `kubeboot:agent:<node>` in the group `kubeboot:agents`. The
//! group gets the ClusterRole `kubeboot:agent` through a RoleBinding in kube-system only: a
//! ClusterRole so that a cluster running static pods in another namespace can grant that
//! namespace with one more RoleBinding, and a RoleBinding (not a ClusterRoleBinding) so that no
//! agent can touch a pod outside kube-system. The role holds exactly the calls the agent and
//! `kubeboot reset` make: pods get (after a create that found the name taken), list (its own
//! pods, by label), create, delete; pods/status update. No watch, no patch, no `update` of
//! pods themselves: a changed manifest is a new pod (deleted and created again), as the
//! kubelet treats mirror pods.
//!
//! RBAC cannot say *which* pods: with create on pods in kube-system alone, the credential could
//! start a privileged pod with any ServiceAccount on any node. The webhook configuration
//! [`agent_webhook_configuration`] sends every kube-system pod write to the admission webhook
//! that each control-plane node's agent serves on loopback for its own API server; it admits an
//! agent's request only for a status-only pod of the agent's own node (the rules and why they
//! suffice are in `agent::webhook::review`).
//!
//! # Approving joining nodes' kube-proxy certificates
//!
//! The agents also approve the one CertificateSigningRequest a joining node makes for its
//! kube-proxy's client certificate (`kubeboot-kube-proxy-<node>`, subject
//! `CN=system:kube-proxy`; nothing in Kubernetes 1.20 approves it by itself). CSRs and the
//! signers they name are cluster-scoped, which the kube-system RoleBinding above cannot grant,
//! and a ClusterRoleBinding of `kubeboot:agent` would grant pods in every namespace, outside
//! the webhook's reach. So these rights are a second ClusterRole,
//! [`agent_csr_approver_cluster_role`] (`kubeboot:kube-proxy-approver`), bound cluster-wide to
//! the same group by [`agent_csr_approver_binding`], with exactly: certificatesigningrequests
//! get/list/watch, certificatesigningrequests/approval update, and `approve` on the signer
//! `kubernetes.io/kube-apiserver-client` (the API server's CertificateSigningRequest approval
//! admission checks that verb on the synthetic `signers` resource, by signerName:
//! plugin/pkg/admission/certificates/approval).
//!
//! RBAC cannot narrow this further: `approve` on that signer lets the credential approve *any*
//! client certificate request for the API server, whatever its subject. What limits the agents
//! to kube-proxy's certificate for the requesting node is the agent's own check
//! (`agent::csr_approval`, a pure function with the security argument). That is acceptable
//! because the credential exists only on control-plane nodes (`kubeboot-agent.conf`), whose
//! root holds the cluster CA's key and admin.conf anyway: the credential gives nothing that
//! node's root does not have.
//!
//! # Giving Nodes their podCIDRs
//!
//! Where the controller-manager runs without its node IPAM controller (`--controllers=...,
//! -nodeipam`, kubeboot's default for a cluster with a pod network), the agents of the
//! control-plane nodes give new Nodes their podCIDRs (`agent::node_ipam`), one agent at a time
//! under the Lease `kube-system/kubeboot-node-ipam`. Nodes and CSINodes are cluster-scoped, so
//! those rights are the ClusterRole [`node_ipam_cluster_role`] (`kubeboot:node-ipam`: nodes
//! get/list/watch/patch, csinodes get), bound cluster-wide by
//! [`node_ipam_cluster_role_binding`]; the Lease's are a Role of the same name in kube-system,
//! [`node_ipam_lease_role`] (get/update of that one Lease only, which [`node_ipam_lease`] makes:
//! RBAC cannot narrow a create to one name), bound by [`node_ipam_lease_role_binding`]. `patch` on nodes is
//! broader than a podCIDR (labels, taints, any Node): acceptable for the same reason as above,
//! the credential lives only where root holds the cluster CA's key.
use std::collections::BTreeMap;

use components::names;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const CERTIFICATES_GROUP: &str = "certificates.k8s.io";
const STORAGE_GROUP: &str = "storage.k8s.io";
const COORDINATION_GROUP: &str = "coordination.k8s.io";

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

/// The metadata of one of these objects: `name`, in `namespace` if namespaced, kubeboot's label.
fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: labels(),
        ..Default::default()
    }
}

/// A reference to the role `name` of `kind` (`ClusterRole` or `Role`).
fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

/// A ClusterRole `name` with `rules`.
fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None),
        rules: Some(rules),
        ..Default::default()
    }
}

/// The ClusterRoleBinding `name` of the ClusterRole `name` to the group `kubeboot:agents`.
fn cluster_role_binding(name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref: role_ref("ClusterRole", name),
        subjects: Some(vec![agents_group()]),
    }
}

/// The RoleBinding `name` in `namespace` of the `kind` role `name` to the group
/// `kubeboot:agents`.
fn role_binding(kind: &str, name: &str, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace)),
        role_ref: role_ref(kind, name),
        subjects: Some(vec![agents_group()]),
    }
}

/// The ClusterRole `kubeboot:agent`: what an agent may do with pods where it is bound, and
/// nothing more (see the module documentation for who makes each call).
pub fn agent_cluster_role() -> ClusterRole {
    cluster_role(
        names::KUBEBOOT_AGENT_CLUSTER_ROLE,
        vec![
            rule("pods", &["get", "list", "create", "delete"]),
            rule("pods/status", &["update"]),
        ],
    )
}

/// The RoleBinding `kubeboot:agent` in `namespace` (kube-system): the role for the group
/// `kubeboot:agents`.
pub fn agent_role_binding(namespace: &str) -> RoleBinding {
    role_binding("ClusterRole", names::KUBEBOOT_AGENT_CLUSTER_ROLE, namespace)
}

fn agents_group() -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: "Group".to_string(),
        name: names::KUBEBOOT_AGENTS_GROUP.to_string(),
        namespace: None,
    }
}

fn group_rule(group: &str, resource: &str, verbs: &[&str], names: Option<&[&str]>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(vec![resource.to_string()]),
        resource_names: names.map(|n| n.iter().map(|x| x.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

fn certificates_rule(resource: &str, verbs: &[&str], names: Option<&[&str]>) -> PolicyRule {
    group_rule(CERTIFICATES_GROUP, resource, verbs, names)
}

/// The ClusterRole `kubeboot:kube-proxy-approver`: read certificate requests and approve those
/// for the signer `kubernetes.io/kube-apiserver-client` (the agent's approver decides which;
/// see the module documentation for why RBAC cannot).
pub fn agent_csr_approver_cluster_role() -> ClusterRole {
    cluster_role(
        names::KUBEBOOT_AGENT_CSR_APPROVER_ROLE,
        vec![
            certificates_rule(
                "certificatesigningrequests",
                &["get", "list", "watch"],
                None,
            ),
            certificates_rule("certificatesigningrequests/approval", &["update"], None),
            certificates_rule(
                "signers",
                &["approve"],
                Some(&[names::KUBE_APISERVER_CLIENT_SIGNER]),
            ),
        ],
    )
}

/// The ClusterRoleBinding `kubeboot:kube-proxy-approver`: that role for the group
/// `kubeboot:agents`, cluster-wide (CSRs and signers have no namespace).
pub fn agent_csr_approver_binding() -> ClusterRoleBinding {
    cluster_role_binding(names::KUBEBOOT_AGENT_CSR_APPROVER_ROLE)
}

/// The ClusterRole `kubeboot:node-ipam`: read and watch Nodes and patch their podCIDRs in, and
/// read CSINodes (a Node gets its podCIDR once the kubelet made its CSINode); see the module
/// documentation.
pub fn node_ipam_cluster_role() -> ClusterRole {
    cluster_role(
        names::KUBEBOOT_NODE_IPAM_ROLE,
        vec![
            rule("nodes", &["get", "list", "watch", "patch"]),
            group_rule(STORAGE_GROUP, "csinodes", &["get"], None),
        ],
    )
}

/// The ClusterRoleBinding `kubeboot:node-ipam`: that role for the group `kubeboot:agents`,
/// cluster-wide (Nodes and CSINodes have no namespace).
pub fn node_ipam_cluster_role_binding() -> ClusterRoleBinding {
    cluster_role_binding(names::KUBEBOOT_NODE_IPAM_ROLE)
}

/// The Role `kubeboot:node-ipam` in kube-system: get and update the Lease `kubeboot-node-ipam`
/// only (it is made with the RBAC, [`node_ipam_lease`]).
pub fn node_ipam_lease_role() -> Role {
    Role {
        metadata: meta(names::KUBEBOOT_NODE_IPAM_ROLE, Some(names::KUBE_SYSTEM)),
        rules: Some(vec![group_rule(
            COORDINATION_GROUP,
            "leases",
            &["get", "update"],
            Some(&[names::KUBEBOOT_NODE_IPAM_LEASE]),
        )]),
    }
}

/// The Lease `kubeboot-node-ipam` in kube-system, held by nobody: made with the RBAC, so that
/// the agents need no right to create Leases, which RBAC cannot narrow to one name (the name
/// is in the body, not the URL): with it an agent could make the controller-manager's or the
/// scheduler's Lease before they do.
pub fn node_ipam_lease() -> Lease {
    Lease {
        metadata: meta(names::KUBEBOOT_NODE_IPAM_LEASE, Some(names::KUBE_SYSTEM)),
        spec: Some(LeaseSpec {
            lease_duration_seconds: Some(1),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    }
}

/// The RoleBinding `kubeboot:node-ipam` in kube-system: that Role for the group
/// `kubeboot:agents`.
pub fn node_ipam_lease_role_binding() -> RoleBinding {
    role_binding("Role", names::KUBEBOOT_NODE_IPAM_ROLE, names::KUBE_SYSTEM)
}

/// How long the API server waits for the agent's webhook. It answers from memory on loopback
/// in microseconds; a wait this short keeps a hung agent from stalling kube-system pod writes
/// for the API server's default of 10 s each.
pub const AGENT_WEBHOOK_TIMEOUT_SECONDS: i32 = 5;

/// The webhook's URL: the agent on the API server's own node, over loopback.
pub fn agent_webhook_url() -> String {
    format!(
        "https://127.0.0.1:{}{}",
        names::AGENT_WEBHOOK_PORT,
        names::AGENT_WEBHOOK_PATH
    )
}

fn pod_rule(operations: &[&str], resources: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![String::new()]),
        api_versions: Some(vec!["v1".to_string()]),
        operations: Some(operations.iter().map(|o| o.to_string()).collect()),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        scope: Some("Namespaced".to_string()),
    }
}

fn webhook(
    name: &str,
    ca_pem: &[u8],
    failure_policy: &str,
    rules: Vec<RuleWithOperations>,
) -> ValidatingWebhook {
    ValidatingWebhook {
        name: name.to_string(),
        admission_review_versions: vec!["v1".to_string()],
        client_config: WebhookClientConfig {
            ca_bundle: Some(ByteString(ca_pem.to_vec())),
            service: None,
            url: Some(agent_webhook_url()),
        },
        failure_policy: Some(failure_policy.to_string()),
        match_policy: Some("Equivalent".to_string()),
        // Only kube-system, where the agents' RBAC applies: no other namespace's pod writes
        // depend on the agents being up. A namespace selector, never an object selector: a pod
        // without the selected label would skip the check.
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                names::LABEL_METADATA_NAME.to_string(),
                names::KUBE_SYSTEM.to_string(),
            )])),
            match_expressions: None,
        }),
        object_selector: None,
        rules: Some(rules),
        side_effects: "None".to_string(),
        timeout_seconds: Some(AGENT_WEBHOOK_TIMEOUT_SECONDS),
        match_conditions: None,
    }
}

/// The ValidatingWebhookConfiguration `kubeboot-agent` (admissionregistration.k8s.io/v1, in
/// Kubernetes since 1.16): kube-system pod writes go to the agent's webhook on the API
/// server's own node, `https://127.0.0.1:<port>/admission/pods`, whose serving certificate the
/// cluster CA (`ca_pem`) signed.
///
/// - `pods.agent.kubeboot.io`: pods CREATE and UPDATE, pods/status UPDATE, failurePolicy
///   **Fail**. With Ignore, an agent credential would bypass the check simply through an API
///   server whose webhook does not answer (an agent restarting, a node whose agent is down).
/// - `pod-deletes.agent.kubeboot.io`: pods DELETE (the webhook gets the pod as oldObject),
///   failurePolicy **Ignore**: a delete escalates nothing (the agent or controller that owns
///   the pod makes it again), and `kubeboot reset` deletes its node's published pods after it
///   stopped the agent, when this node's webhook no longer answers.
pub fn agent_webhook_configuration(ca_pem: &[u8]) -> ValidatingWebhookConfiguration {
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(names::AGENT_WEBHOOK_CONFIGURATION.to_string()),
            labels: labels(),
            ..Default::default()
        },
        webhooks: Some(vec![
            webhook(
                names::AGENT_WEBHOOK_WRITES,
                ca_pem,
                "Fail",
                vec![
                    pod_rule(&["CREATE", "UPDATE"], &["pods"]),
                    pod_rule(&["UPDATE"], &["pods/status"]),
                ],
            ),
            webhook(
                names::AGENT_WEBHOOK_DELETES,
                ca_pem,
                "Ignore",
                vec![pod_rule(&["DELETE"], &["pods"])],
            ),
        ]),
    }
}

/// The Namespace `name` to write so that it carries the [`names::LABEL_METADATA_NAME`] label
/// the webhooks select it by, keeping the labels and annotations of `existing` (as the API
/// returns it; None when there is none). Only those: no resourceVersion, since the write
/// creates first, and neither spec nor status, which a namespace update keeps from the stored
/// object (apiserver: registry/core/namespace/strategy.go PrepareForUpdate). Kubernetes 1.21+
/// sets the label itself; 1.20 does not, so without it the webhooks would check nothing.
pub fn with_metadata_name_label(existing: Option<Namespace>, name: &str) -> Namespace {
    let meta = existing.map(|ns| ns.metadata).unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(names::LABEL_METADATA_NAME.to_string(), name.to_string());
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            annotations: meta.annotations,
            ..Default::default()
        },
        ..Default::default()
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
        // Exactly the calls the agent (agent::mirror) and reset make.
        assert_eq!(verbs(&role, "pods"), ["get", "list", "create", "delete"]);
        assert_eq!(verbs(&role, "pods/status"), ["update"]);
        // Never pods update/patch, never a wildcard.
        assert!(
            !verbs(&role, "pods")
                .iter()
                .any(|v| v == "update" || v == "patch" || v == "*")
        );
    }

    #[test]
    fn the_pod_role_grants_no_certificate_rights() {
        // Those are in their own ClusterRole with a cluster-wide binding; this one is bound in
        // kube-system only and must stay about pods.
        let role = agent_cluster_role();
        for r in role.rules.iter().flatten() {
            assert!(
                !r.api_groups
                    .iter()
                    .flatten()
                    .any(|g| g == "certificates.k8s.io"),
                "{r:?}"
            );
        }
    }

    #[test]
    fn csr_approver_role_reads_requests_and_approves_for_the_client_signer_only() {
        let role = agent_csr_approver_cluster_role();
        assert_eq!(
            role.metadata.name.as_deref(),
            Some("kubeboot:kube-proxy-approver")
        );
        let rules = role.rules.as_ref().expect("rules");
        /// api groups, resources, resource names, verbs
        type Row = (Vec<String>, Vec<String>, Option<Vec<String>>, Vec<String>);
        let got: Vec<Row> = rules
            .iter()
            .map(|r| {
                assert!(r.non_resource_urls.is_none());
                (
                    r.api_groups.clone().unwrap_or_default(),
                    r.resources.clone().unwrap_or_default(),
                    r.resource_names.clone(),
                    r.verbs.clone(),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let certs = s(&["certificates.k8s.io"]);
        assert_eq!(
            got,
            [
                (
                    certs.clone(),
                    s(&["certificatesigningrequests"]),
                    None,
                    s(&["get", "list", "watch"])
                ),
                (
                    certs.clone(),
                    s(&["certificatesigningrequests/approval"]),
                    None,
                    s(&["update"])
                ),
                (
                    certs,
                    s(&["signers"]),
                    Some(s(&["kubernetes.io/kube-apiserver-client"])),
                    s(&["approve"])
                ),
            ]
        );
        // Never a wildcard signer (`kubernetes.io/*` would add the kubelet signers), never
        // create, delete or status (signing) rights.
        for r in rules {
            assert!(
                !r.verbs
                    .iter()
                    .any(|v| v == "*" || v == "create" || v == "delete")
            );
            assert!(!r.resources.iter().flatten().any(|x| x.ends_with("/status")));
            assert!(!r.resource_names.iter().flatten().any(|n| n.contains('*')));
        }
        let v = serde_json::to_value(&role).expect("json");
        assert_eq!(
            v["rules"][2]["resourceNames"][0],
            "kubernetes.io/kube-apiserver-client"
        );
    }

    #[test]
    fn csr_approver_binding_is_cluster_wide_to_the_agents_group() {
        let b = agent_csr_approver_binding();
        assert_eq!(
            b.metadata.name.as_deref(),
            Some("kubeboot:kube-proxy-approver")
        );
        assert!(b.metadata.namespace.is_none());
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, "kubeboot:kube-proxy-approver");
        let subjects = b.subjects.expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "Group");
        assert_eq!(subjects[0].name, names::KUBEBOOT_AGENTS_GROUP);
        assert_eq!(
            subjects[0].api_group.as_deref(),
            Some("rbac.authorization.k8s.io")
        );
    }

    /// api groups, resources, resource names, verbs
    type Row = (Vec<String>, Vec<String>, Option<Vec<String>>, Vec<String>);

    fn rows(rules: &[PolicyRule]) -> Vec<Row> {
        rules
            .iter()
            .map(|r| {
                assert!(r.non_resource_urls.is_none());
                (
                    r.api_groups.clone().unwrap_or_default(),
                    r.resources.clone().unwrap_or_default(),
                    r.resource_names.clone(),
                    r.verbs.clone(),
                )
            })
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn node_ipam_role_reads_nodes_patches_them_and_reads_csinodes() {
        let role = node_ipam_cluster_role();
        assert_eq!(role.metadata.name.as_deref(), Some("kubeboot:node-ipam"));
        assert!(role.metadata.namespace.is_none(), "cluster-scoped");
        let s = strings;
        assert_eq!(
            rows(role.rules.as_deref().expect("rules")),
            [
                (
                    s(&[""]),
                    s(&["nodes"]),
                    None,
                    s(&["get", "list", "watch", "patch"])
                ),
                (s(&["storage.k8s.io"]), s(&["csinodes"]), None, s(&["get"])),
            ]
        );
        // Never nodes/status, create, delete or update (a whole Node), never a wildcard.
        for r in role.rules.iter().flatten() {
            assert!(
                !r.verbs
                    .iter()
                    .any(|v| v == "*" || v == "create" || v == "delete" || v == "update"),
                "{r:?}"
            );
            assert!(!r.resources.iter().flatten().any(|x| x.contains('/')));
        }
        let v = serde_json::to_value(&role).expect("json");
        assert_eq!(v["rules"][1]["apiGroups"][0], "storage.k8s.io");
    }

    #[test]
    fn node_ipam_binding_is_cluster_wide_to_the_agents_group() {
        let b = node_ipam_cluster_role_binding();
        assert_eq!(b.metadata.name.as_deref(), Some("kubeboot:node-ipam"));
        assert!(b.metadata.namespace.is_none());
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, "kubeboot:node-ipam");
        assert_eq!(
            b.role_ref.api_group.as_deref(),
            Some("rbac.authorization.k8s.io")
        );
        let subjects = b.subjects.expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "Group");
        assert_eq!(subjects[0].name, names::KUBEBOOT_AGENTS_GROUP);
    }

    #[test]
    fn node_ipam_lease_role_reads_and_writes_only_its_own_lease() {
        let role = node_ipam_lease_role();
        assert_eq!(role.metadata.name.as_deref(), Some("kubeboot:node-ipam"));
        assert_eq!(role.metadata.namespace.as_deref(), Some("kube-system"));
        let s = strings;
        let leases = || (s(&["coordination.k8s.io"]), s(&["leases"]));
        assert_eq!(
            rows(role.rules.as_deref().expect("rules")),
            [(
                leases().0,
                leases().1,
                Some(s(&["kubeboot-node-ipam"])),
                s(&["get", "update"])
            )]
        );
        assert_eq!(names::KUBEBOOT_NODE_IPAM_LEASE, "kubeboot-node-ipam");
        // Never create (RBAC cannot narrow it to one name), delete, patch, list or watch
        // Leases: the controller-manager's and the scheduler's live here too.
        for r in role.rules.iter().flatten() {
            assert!(
                !r.verbs
                    .iter()
                    .any(|v| ["*", "create", "delete", "patch", "list", "watch"]
                        .contains(&v.as_str())),
                "{r:?}"
            );
        }
        // So the Lease is made with the RBAC, held by nobody.
        let lease = node_ipam_lease();
        assert_eq!(lease.metadata.name.as_deref(), Some("kubeboot-node-ipam"));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-system"));
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
    }

    #[test]
    fn node_ipam_lease_binding_is_in_kube_system_to_the_agents_group() {
        let b = node_ipam_lease_role_binding();
        assert_eq!(b.metadata.name.as_deref(), Some("kubeboot:node-ipam"));
        assert_eq!(b.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(b.role_ref.kind, "Role");
        assert_eq!(b.role_ref.name, "kubeboot:node-ipam");
        assert_eq!(
            b.role_ref.api_group.as_deref(),
            Some("rbac.authorization.k8s.io")
        );
        let subjects = b.subjects.as_ref().expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "Group");
        assert_eq!(subjects[0].name, names::KUBEBOOT_AGENTS_GROUP);
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(v["roleRef"]["kind"], "Role");
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

    fn by_name<'a>(c: &'a ValidatingWebhookConfiguration, name: &str) -> &'a ValidatingWebhook {
        c.webhooks
            .iter()
            .flatten()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("no webhook {name}"))
    }

    fn rules(w: &ValidatingWebhook) -> Vec<(Vec<String>, Vec<String>)> {
        w.rules
            .iter()
            .flatten()
            .map(|r| {
                assert_eq!(r.api_groups.as_deref(), Some(&[String::new()][..]));
                assert_eq!(r.api_versions.as_deref(), Some(&["v1".to_string()][..]));
                assert_eq!(r.scope.as_deref(), Some("Namespaced"));
                (
                    r.operations.clone().unwrap_or_default(),
                    r.resources.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn webhook_configuration_sends_kube_system_pod_writes_to_the_local_agent() {
        let ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let c = agent_webhook_configuration(ca);
        assert_eq!(c.metadata.name.as_deref(), Some("kubeboot-agent"));
        assert!(c.metadata.namespace.is_none(), "cluster-scoped");
        let webhooks = c.webhooks.as_ref().expect("webhooks");
        assert_eq!(webhooks.len(), 2);
        for w in webhooks {
            assert_eq!(
                w.client_config.url.as_deref(),
                Some("https://127.0.0.1:10263/admission/pods")
            );
            assert!(w.client_config.service.is_none());
            assert_eq!(
                w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()),
                Some(&ca[..])
            );
            assert_eq!(w.side_effects, "None");
            assert_eq!(w.admission_review_versions, ["v1"]);
            assert_eq!(w.timeout_seconds, Some(5));
            // Scoped by namespace, never by the object's own labels.
            assert!(w.object_selector.is_none());
            let sel = w.namespace_selector.as_ref().expect("namespace selector");
            assert!(sel.match_expressions.is_none());
            assert_eq!(
                sel.match_labels,
                Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    "kube-system".to_string()
                )]))
            );
            assert!(w.match_conditions.is_none(), "not in Kubernetes 1.20");
        }
        let writes = by_name(&c, "pods.agent.kubeboot.io");
        assert_eq!(writes.failure_policy.as_deref(), Some("Fail"));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            rules(writes),
            [
                (s(&["CREATE", "UPDATE"]), s(&["pods"])),
                (s(&["UPDATE"]), s(&["pods/status"]))
            ]
        );
        let deletes = by_name(&c, "pod-deletes.agent.kubeboot.io");
        assert_eq!(deletes.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(rules(deletes), [(s(&["DELETE"]), s(&["pods"]))]);
        // The API's field names and the caBundle as base64.
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(
            v["webhooks"][0]["clientConfig"]["caBundle"],
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
        );
        assert_eq!(v["webhooks"][0]["sideEffects"], "None");
        assert_eq!(v["webhooks"][0]["admissionReviewVersions"][0], "v1");
    }

    #[test]
    fn kube_system_gets_the_label_the_webhooks_select() {
        let existing = Namespace {
            metadata: ObjectMeta {
                name: Some("kube-system".into()),
                resource_version: Some("7".into()),
                labels: Some(BTreeMap::from([("keep".to_string(), "me".to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        let ns = with_metadata_name_label(Some(existing), "kube-system");
        let labels = ns.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["kubernetes.io/metadata.name"], "kube-system");
        assert_eq!(labels["keep"], "me");
        // Written by create-then-replace: a create with a resourceVersion is refused.
        assert_eq!(ns.metadata.resource_version, None);
        let fresh = with_metadata_name_label(None, "kube-system");
        assert_eq!(fresh.metadata.name.as_deref(), Some("kube-system"));
        // The selector and the label agree.
        let c = agent_webhook_configuration(b"ca");
        let sel = by_name(&c, "pods.agent.kubeboot.io")
            .namespace_selector
            .clone()
            .and_then(|s| s.match_labels)
            .expect("labels");
        for (k, v) in sel {
            assert_eq!(
                fresh.metadata.labels.as_ref().and_then(|l| l.get(&k)),
                Some(&v)
            );
        }
    }
}
