//! The API objects `kubeadm init` creates besides the static pods, typed, as kubeadm 1.20
//! creates them: the `kubeadm-config` and `kubelet-config-1.20` ConfigMaps with their RBAC
//! (kubeadm: phases/uploadconfig, phases/kubelet/config.go), bootstrap-token Secrets and the
//! bootstrappers' RBAC (phases/bootstraptoken/node), and `kube-public/cluster-info` with the
//! anonymous Role that exposes it (phases/bootstraptoken/clusterinfo), and the labels,
//! taints and annotation of the control-plane Node (phases/markcontrolplane), and the
//! encrypted `kubeadm-certs` Secret of `--upload-certs` with its owner token and RBAC
//! (phases/copycerts).
//!
//! Pure builders: values in, k8s-openapi objects out; phases send them through
//! `phases::cluster`.

pub mod bootstrap_token;
pub mod cluster_info;
pub mod kubeadm_config;
pub mod kubelet_config;
pub mod node;
pub mod rbac;
pub mod upload_certs;

pub use bootstrap_token::{
    TokenSpec, bootstrap_token_secret, bootstrappers_rbac, get_nodes_cluster_role,
};
pub use cluster_info::{cluster_info_config_map, cluster_info_kubeconfig, cluster_info_rbac};
pub use kubeadm_config::{
    ClusterStatusError, cluster_status_yaml, kubeadm_config_map, merge_cluster_status,
    nodes_kubeadm_config_rbac,
};
pub use kubelet_config::{kubelet_config_map, kubelet_config_map_name, kubelet_config_rbac};
pub use node::{
    control_plane_labels, default_control_plane_taints, mark_control_plane_patch, taint_string,
};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Object metadata with a name and, for namespaced objects, a namespace.
pub(crate) fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
}

/// A ConfigMap's `data` from pairs.
pub(crate) fn data(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}
