//! The `kube-system/kubeadm-config` ConfigMap and the Role that lets nodes and bootstrap
//! tokens read it (kubeadm: phases/uploadconfig/uploadconfig.go).

use std::collections::BTreeMap;

use components::config::defaults::DEFAULT_TOKEN_GROUP;
use components::config::{
    ApiEndpoint, ConfigError, InitConfig, cluster_configuration_yaml, cluster_status_with_endpoint,
};
use components::names;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use super::rbac::{get_config_map_rule, group, role, role_binding};
use super::{data, meta};

/// uploadconfig.NodesKubeadmConfigClusterRoleName.
pub const NODES_KUBEADM_CONFIG_ROLE: &str = "kubeadm:nodes-kubeadm-config";

/// The `ClusterStatus` already in the ConfigMap cannot be extended (the error of
/// components' ClusterStatus functions, which name the key and the fix).
pub type ClusterStatusError = ConfigError;

/// kubeadm 1.20's ClusterStatus document: every control-plane node's API endpoint by node
/// name (kubeadm: kubeadmapi.ClusterStatus, marshalled as v1beta2). The format has one home,
/// components::config::kubeadm_config, which join and reset use too.
pub fn cluster_status_yaml(endpoints: &BTreeMap<String, ApiEndpoint>) -> String {
    components::config::cluster_status_yaml(endpoints)
}

/// Adds (or replaces) `node`'s endpoint in an existing ClusterStatus document, keeping the
/// other nodes' (kubeadm: mutateClusterStatus).
///
/// # Errors
/// [`ClusterStatusError`] when the document is not YAML or has no `apiEndpoints`.
pub fn merge_cluster_status(
    existing: &str,
    node: &str,
    endpoint: &ApiEndpoint,
) -> Result<String, ClusterStatusError> {
    cluster_status_with_endpoint(Some(existing), node, endpoint)
}

/// Whether this version's kubeadm keeps a ClusterStatus (kubeadm 1.22 removed it and reads
/// API endpoints from the API server pods' annotations instead).
pub fn has_cluster_status(cfg: &InitConfig) -> bool {
    !cfg.cluster.kubernetes_version.at_least(1, 22)
}

/// The `kubeadm-config` ConfigMap for this node: the ClusterConfiguration, and for versions
/// that have it the ClusterStatus with this node's endpoint merged into `existing` (the
/// ConfigMap's current content, if any).
///
/// # Errors
/// [`ClusterStatusError`] when the existing ClusterStatus cannot be extended.
pub fn kubeadm_config_map(
    cfg: &InitConfig,
    existing: Option<&ConfigMap>,
) -> Result<ConfigMap, ClusterStatusError> {
    // kubeadm's control-plane phase writes the effective authorization modes into
    // apiServer.extraArgs before upload-config runs (controlplane/manifests.go,
    // getAPIServerCommand), so the uploaded ClusterConfiguration always names them.
    let mut uploaded = cfg.cluster.clone();
    let extra = &mut uploaded.api_server.component.extra_args;
    let modes = crate::control_plane::authorization_modes(
        extra
            .get("authorization-mode")
            .map(String::as_str)
            .unwrap_or(""),
    );
    extra.insert("authorization-mode".into(), modes);
    let mut pairs = vec![(
        names::CLUSTER_CONFIGURATION_KEY,
        cluster_configuration_yaml(&uploaded),
    )];
    if has_cluster_status(cfg) {
        let old = existing
            .and_then(|cm| cm.data.as_ref())
            .and_then(|d| d.get(names::CLUSTER_STATUS_KEY));
        let status = cluster_status_with_endpoint(
            old.map(String::as_str),
            &cfg.node.name,
            &cfg.local_api_endpoint,
        )?;
        pairs.push((names::CLUSTER_STATUS_KEY, status));
    }
    Ok(ConfigMap {
        metadata: meta(names::KUBEADM_CONFIG_CONFIGMAP, Some(names::KUBE_SYSTEM)),
        data: Some(data(&pairs)),
        ..Default::default()
    })
}

/// The Role `kubeadm:nodes-kubeadm-config` (get `kubeadm-config`) and its binding to the
/// default bootstrap token group and all nodes.
pub fn nodes_kubeadm_config_rbac() -> (Role, RoleBinding) {
    (
        role(
            NODES_KUBEADM_CONFIG_ROLE,
            names::KUBE_SYSTEM,
            vec![get_config_map_rule(names::KUBEADM_CONFIG_CONFIGMAP)],
        ),
        role_binding(
            NODES_KUBEADM_CONFIG_ROLE,
            names::KUBE_SYSTEM,
            vec![group(DEFAULT_TOKEN_GROUP), group(names::NODES_GROUP)],
        ),
    )
}
