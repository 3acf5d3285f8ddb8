//! Bootstrap-token Secrets and the RBAC that lets bootstrap tokens get nodes, post CSRs and
//! have them approved (kubeadm: apis/kubeadm/bootstraptokenhelpers.go ToSecret,
//! phases/bootstraptoken/node/tlsbootstrap.go).

use std::collections::BTreeMap;

use components::config::defaults::DEFAULT_TOKEN_GROUP;
use components::names;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use pki::BootstrapToken;
use pki::token as tk;

use super::meta;
use super::rbac::{cluster_role, cluster_role_binding, group};

/// NodeKubeletBootstrap: lets bootstrap tokens post CSRs.
pub const KUBELET_BOOTSTRAP_BINDING: &str = "kubeadm:kubelet-bootstrap";
/// NodeBootstrapperClusterRoleName (bootstrapped by the API server).
pub const NODE_BOOTSTRAPPER_ROLE: &str = "system:node-bootstrapper";
/// GetNodesClusterRoleName: the ClusterRole and binding that let bootstrap tokens get nodes.
pub const GET_NODES: &str = "kubeadm:get-nodes";
/// NodeAutoApproveBootstrapClusterRoleBinding.
pub const NODE_AUTOAPPROVE_BOOTSTRAP_BINDING: &str = "kubeadm:node-autoapprove-bootstrap";
/// CSRAutoApprovalClusterRoleName (bootstrapped by the API server).
pub const CSR_NODECLIENT_ROLE: &str =
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient";
/// NodeAutoApproveCertificateRotationClusterRoleBinding.
pub const NODE_AUTOAPPROVE_ROTATION_BINDING: &str = "kubeadm:node-autoapprove-certificate-rotation";
/// NodeSelfCSRAutoApprovalClusterRoleName (bootstrapped by the API server).
pub const CSR_SELFNODECLIENT_ROLE: &str =
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient";

/// What a bootstrap token's Secret says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The token.
    pub token: BootstrapToken,
    /// Description; empty for none.
    pub description: String,
    /// RFC 3339 expiry (`pki::token::expiration`), `None` for a token that never expires.
    pub expiration: Option<String>,
    /// Usages (`signing`, `authentication`), already validated.
    pub usages: Vec<String>,
    /// Extra groups, already validated.
    pub groups: Vec<String>,
}

/// The Secret `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`
/// (kubeadm: BootstrapToken.ToSecret).
pub fn bootstrap_token_secret(spec: &TokenSpec) -> Secret {
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: String, v: &str| {
        data.insert(k, ByteString(v.as_bytes().to_vec()));
    };
    put(tk::KEY_TOKEN_ID.into(), spec.token.id());
    put(tk::KEY_TOKEN_SECRET.into(), spec.token.secret());
    if !spec.description.is_empty() {
        put(tk::KEY_DESCRIPTION.into(), &spec.description);
    }
    if let Some(e) = &spec.expiration {
        put(tk::KEY_EXPIRATION.into(), e);
    }
    for usage in &spec.usages {
        put(format!("{}{usage}", tk::USAGE_PREFIX), "true");
    }
    if !spec.groups.is_empty() {
        put(tk::KEY_EXTRA_GROUPS.into(), &spec.groups.join(","));
    }
    Secret {
        metadata: meta(&tk::secret_name(spec.token.id()), Some(names::KUBE_SYSTEM)),
        type_: Some(tk::SECRET_TYPE.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The ClusterRole `kubeadm:get-nodes`: get on nodes.
pub fn get_nodes_cluster_role() -> ClusterRole {
    cluster_role(
        GET_NODES,
        vec![PolicyRule {
            verbs: vec!["get".into()],
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["nodes".into()]),
            ..Default::default()
        }],
    )
}

/// kubeadm's ClusterRoleBindings for bootstrapping, in the order `init` creates them, each
/// with the message kubeadm prints before it (`None` when it prints none):
/// `kubeadm:get-nodes`, `kubeadm:kubelet-bootstrap`, `kubeadm:node-autoapprove-bootstrap`
/// (all for the default token group) and `kubeadm:node-autoapprove-certificate-rotation`
/// (for `system:nodes`).
pub fn bootstrappers_rbac() -> Vec<(Option<&'static str>, ClusterRoleBinding)> {
    let tokens = || vec![group(DEFAULT_TOKEN_GROUP)];
    vec![
        (None, cluster_role_binding(GET_NODES, GET_NODES, tokens())),
        (
            Some(
                "configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials",
            ),
            cluster_role_binding(KUBELET_BOOTSTRAP_BINDING, NODE_BOOTSTRAPPER_ROLE, tokens()),
        ),
        (
            Some(
                "configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token",
            ),
            cluster_role_binding(
                NODE_AUTOAPPROVE_BOOTSTRAP_BINDING,
                CSR_NODECLIENT_ROLE,
                tokens(),
            ),
        ),
        (
            Some(
                "configured RBAC rules to allow certificate rotation for all node client certificates in the cluster",
            ),
            cluster_role_binding(
                NODE_AUTOAPPROVE_ROTATION_BINDING,
                CSR_SELFNODECLIENT_ROLE,
                vec![group(names::NODES_GROUP)],
            ),
        ),
    ]
}
