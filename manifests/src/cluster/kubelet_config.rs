//! The `kube-system/kubelet-config-1.X` ConfigMap with the cluster's KubeletConfiguration and
//! the Role that lets nodes and bootstrap tokens read it (kubeadm: phases/kubelet/config.go).

use components::Version;
use components::config::defaults::DEFAULT_TOKEN_GROUP;
use components::names;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use sha2::{Digest, Sha256};

use super::rbac::{get_config_map_rule, group, role, role_binding};
use super::{data, meta};

/// KubeletBaseConfigurationConfigMapKey.
pub const KUBELET_CONFIG_KEY: &str = "kubelet";
/// KubeletBaseConfigMapRolePrefix.
pub const KUBELET_CONFIG_ROLE_PREFIX: &str = "kubeadm:kubelet-config-";
/// ComponentConfigHashAnnotationKey.
pub const COMPONENT_CONFIG_HASH_ANNOTATION: &str = "kubeadm.kubernetes.io/component-config.hash";

/// From this version the ConfigMap and its Role have no version suffix (kubeadm 1.24:
/// UnversionedKubeletConfigMap went GA).
const UNVERSIONED_SINCE: (u32, u32) = (1, 24);

fn unversioned(version: &Version) -> bool {
    version.at_least(UNVERSIONED_SINCE.0, UNVERSIONED_SINCE.1)
}

/// `kubelet-config-1.20` (kubeadm: GetKubeletConfigMapName); `kubelet-config` from 1.24.
pub fn kubelet_config_map_name(version: &Version) -> String {
    if unversioned(version) {
        "kubelet-config".into()
    } else {
        format!(
            "{}{}.{}",
            names::KUBELET_CONFIG_CONFIGMAP_PREFIX,
            version.major,
            version.minor
        )
    }
}

/// `kubeadm:kubelet-config-1.20` (kubeadm: configMapRBACName); `kubeadm:kubelet-config`
/// from 1.24.
pub fn kubelet_config_role_name(version: &Version) -> String {
    if unversioned(version) {
        "kubeadm:kubelet-config".into()
    } else {
        format!(
            "{KUBELET_CONFIG_ROLE_PREFIX}{}.{}",
            version.major, version.minor
        )
    }
}

/// `sha256:<hex>` over the values of `data` in key order (kubeadm:
/// componentconfigs.ChecksumForConfigMap).
pub fn config_map_checksum(cm: &ConfigMap) -> String {
    let mut hash = Sha256::new();
    for value in cm.data.iter().flat_map(|d| d.values()) {
        hash.update(value.as_bytes());
    }
    for value in cm.binary_data.iter().flat_map(|d| d.values()) {
        hash.update(&value.0);
    }
    format!("sha256:{}", hex::encode(hash.finalize()))
}

/// The ConfigMap holding `kubelet_yaml` (a KubeletConfiguration). When kubeboot generated it
/// (not `user_supplied`), it carries kubeadm's checksum annotation, which tells `kubeadm
/// upgrade` the configuration is a default it may regenerate.
pub fn kubelet_config_map(version: &Version, kubelet_yaml: &str, user_supplied: bool) -> ConfigMap {
    let mut cm = ConfigMap {
        metadata: meta(&kubelet_config_map_name(version), Some(names::KUBE_SYSTEM)),
        data: Some(data(&[(KUBELET_CONFIG_KEY, kubelet_yaml.to_string())])),
        ..Default::default()
    };
    if !user_supplied {
        let sum = config_map_checksum(&cm);
        cm.metadata.annotations =
            Some([(COMPONENT_CONFIG_HASH_ANNOTATION.to_string(), sum)].into());
    }
    cm
}

/// The Role `kubeadm:kubelet-config-1.20` (get the ConfigMap) and its binding to all nodes
/// and the default bootstrap token group.
pub fn kubelet_config_rbac(version: &Version) -> (Role, RoleBinding) {
    let name = kubelet_config_role_name(version);
    (
        role(
            &name,
            names::KUBE_SYSTEM,
            vec![get_config_map_rule(&kubelet_config_map_name(version))],
        ),
        role_binding(
            &name,
            names::KUBE_SYSTEM,
            vec![group(names::NODES_GROUP), group(DEFAULT_TOKEN_GROUP)],
        ),
    )
}
