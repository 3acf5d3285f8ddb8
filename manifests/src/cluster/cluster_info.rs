//! `kube-public/cluster-info`: a kubeconfig with only the cluster (CA and control-plane
//! endpoint), readable anonymously, which the bootstrap signer signs with every signing token
//! (kubeadm: phases/bootstraptoken/clusterinfo/clusterinfo.go).

use components::names;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use super::rbac::{get_config_map_rule, role, role_binding, user};
use super::{data, meta};

/// bootstrapapi.KubeConfigKey.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// BootstrapSignerClusterRoleName.
pub const BOOTSTRAP_SIGNER_CLUSTERINFO: &str = "kubeadm:bootstrap-signer-clusterinfo";
/// user.Anonymous.
pub const ANONYMOUS_USER: &str = "system:anonymous";

/// The kubeconfig kubeadm writes into cluster-info: admin.conf's cluster under the empty
/// name, nothing else, in clientcmd.Write's layout (`contexts: null`, `users: null`).
pub fn cluster_info_kubeconfig(certificate_authority_data: &str, server: &str) -> String {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "clusters": [{
            "cluster": {
                "certificate-authority-data": certificate_authority_data,
                "server": server,
            },
            "name": "",
        }],
        "contexts": null,
        "current-context": "",
        "kind": "Config",
        "preferences": {},
        "users": null,
    });
    let yaml =
        yaml_serde::to_string(&crate::yaml::sorted(&doc)).expect("a YAML value always serializes");
    // go-yaml quotes an empty string as "", ours as ''; the same value, kubeadm's bytes.
    yaml.replace(": ''\n", ": \"\"\n")
}

/// The ConfigMap `kube-public/cluster-info` holding `kubeconfig`.
pub fn cluster_info_config_map(kubeconfig: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(names::CLUSTER_INFO_CONFIGMAP, Some(names::KUBE_PUBLIC)),
        data: Some(data(&[(KUBECONFIG_KEY, kubeconfig.to_string())])),
        ..Default::default()
    }
}

/// The Role `kube-public/kubeadm:bootstrap-signer-clusterinfo` (get `cluster-info`) and its
/// binding to `system:anonymous`.
pub fn cluster_info_rbac() -> (Role, RoleBinding) {
    (
        role(
            BOOTSTRAP_SIGNER_CLUSTERINFO,
            names::KUBE_PUBLIC,
            vec![get_config_map_rule(names::CLUSTER_INFO_CONFIGMAP)],
        ),
        role_binding(
            BOOTSTRAP_SIGNER_CLUSTERINFO,
            names::KUBE_PUBLIC,
            vec![user(ANONYMOUS_USER)],
        ),
    )
}
