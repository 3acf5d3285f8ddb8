//! What a cluster holds in the `kube-system/kubeadm-config` ConfigMap, as kubeadm 1.20 and
//! kubeboot's init write it: the `ClusterConfiguration` key read leniently into the same
//! [`ClusterConfig`] init resolves to (kubeadm: util/config/cluster.go
//! `getInitConfigurationFromCluster`, which decodes it with the non-strict UniversalDecoder
//! and applies the defaults), and the `ClusterStatus` key's API endpoints updated for a
//! joining or reset control-plane node (kubeadm: phases/uploadconfig/uploadconfig.go
//! `UploadConfiguration`, `ResetClusterStatusForNode`, `mutateClusterStatus`).
//!
//! Lenient, unlike a user's file: the cluster may have been made by a newer kubeadm or
//! edited by hand, and a joining node must not fail on fields it has no use for.

use std::collections::BTreeMap;
use std::net::IpAddr;

use yaml_serde::Value;

use super::defaults::default_cluster;
use super::flags::ConfigError;
use super::lenient;
use super::load::ClusterSpec;
use super::print::to_sorted_yaml;
use super::validate::{Origin, check_cluster, default_endpoint_port};
use super::{ApiEndpoint, ClusterConfig, KeyAlgorithm, v1beta2, v1beta3};
use crate::names;

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::KubeadmConfig {
        key,
        message: message.into(),
    }
}

fn parse(key: &'static str, text: &str) -> Result<Value, ConfigError> {
    yaml_serde::from_str(text).map_err(|e| invalid(key, format!("is not valid YAML: {e}")))
}

/// Reads the `ClusterConfiguration` key of `kube-system/kubeadm-config` (v1beta2, as
/// kubeadm 1.20 writes it, or v1beta3, as kubeadm 1.22 to 1.30 do) into the internal form,
/// leniently: fields kubeboot does not know are ignored, kubeadm's defaults are applied
/// (SetDefaults_ClusterConfiguration; an endpoint without a port gets 6443; SANs are
/// lower-cased) and kubeadm settings kubeboot would refuse from a user but that do not
/// concern a joining node (feature gates of a newer kubeadm, `dns.type`,
/// `useHyperKubeImage`) pass. A missing `encryptionAlgorithm` means `RSA-2048`: kubeadm
/// before 1.31 always made RSA keys and never wrote the field.
///
/// # Errors
///
/// [`ConfigError::KubeadmConfig`] when the text is not YAML, is not a ClusterConfiguration
/// of a version kubeboot reads, has a field of the wrong type, or describes a cluster
/// kubeboot cannot join (an unsupported Kubernetes version, invalid networks, ...), with
/// every such field named.
pub fn cluster_from_kubeadm_config(
    cluster_configuration_yaml: &str,
) -> Result<ClusterConfig, ConfigError> {
    const KEY: &str = names::CLUSTER_CONFIGURATION_KEY;
    let value = parse(KEY, cluster_configuration_yaml)?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    let kind = field("kind");
    if kind.as_deref() != Some("ClusterConfiguration") {
        return Err(invalid(
            KEY,
            format!(
                "has kind {:?}, not ClusterConfiguration",
                kind.unwrap_or_default()
            ),
        ));
    }
    let api_version = field("apiVersion").unwrap_or_default();
    let decoded: Result<ClusterSpec, yaml_serde::Error> = match api_version.as_str() {
        names::KUBEADM_V1BETA2 => {
            lenient::from_value::<v1beta2::ClusterConfiguration>(value).map(Into::into)
        }
        names::KUBEADM_V1BETA3 => {
            lenient::from_value::<v1beta3::ClusterConfiguration>(value).map(Into::into)
        }
        other => {
            return Err(invalid(
                KEY,
                format!(
                    "has apiVersion {other:?}, which kubeboot does not read (it reads {} and {})",
                    names::KUBEADM_V1BETA2,
                    names::KUBEADM_V1BETA3
                ),
            ));
        }
    };
    let mut spec = decoded.map_err(|e| invalid(KEY, format!("cannot be read: {e}")))?;
    default_cluster(&mut spec);
    if spec.encryption_algorithm.is_none() {
        spec.encryption_algorithm = Some(KeyAlgorithm::Rsa2048.as_str().to_string());
    }
    let mut errs = Vec::new();
    match check_cluster(&spec, Origin::Cluster, &mut errs) {
        Some(mut cluster) if errs.is_empty() => {
            if let Some(ep) = &mut cluster.control_plane_endpoint {
                default_endpoint_port(ep, names::DEFAULT_APISERVER_BIND_PORT);
            }
            Ok(cluster)
        }
        _ => {
            let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
            Err(invalid(
                KEY,
                format!(
                    "describes a cluster kubeboot cannot join: {}",
                    list.join("; ")
                ),
            ))
        }
    }
}

/// Reads a ClusterStatus document leniently. kubeadm refuses one whose `apiEndpoints` is
/// missing or null (mutateClusterStatus), and so does this.
fn read_status(text: &str) -> Result<v1beta2::ClusterStatus, ConfigError> {
    const KEY: &str = names::CLUSTER_STATUS_KEY;
    let value = parse(KEY, text)?;
    if !value.get("apiEndpoints").is_some_and(Value::is_mapping) {
        return Err(invalid(
            KEY,
            "has no apiEndpoints; restore it (kubectl -n kube-system edit configmap kubeadm-config) with an entry per control-plane node",
        ));
    }
    lenient::from_value(value).map_err(|e| invalid(KEY, format!("cannot be read: {e}")))
}

/// kubeadm 1.20's ClusterStatus text: every control-plane node's API endpoint by node name,
/// marshalled as v1beta2 with sorted keys.
fn render_status(api_endpoints: BTreeMap<String, v1beta2::ApiEndpoint>) -> String {
    to_sorted_yaml(&v1beta2::ClusterStatus {
        api_version: names::KUBEADM_V1BETA2.to_string(),
        kind: "ClusterStatus".to_string(),
        api_endpoints,
    })
}

fn endpoint_v1beta2(endpoint: &ApiEndpoint) -> v1beta2::ApiEndpoint {
    v1beta2::ApiEndpoint {
        advertise_address: endpoint.advertise_address.to_string(),
        bind_port: i64::from(endpoint.bind_port),
    }
}

/// kubeadm 1.20's ClusterStatus document holding `endpoints` (node name -> API endpoint),
/// as `init` uploads it (kubeadm: kubeadmapi.ClusterStatus, marshalled as v1beta2).
pub fn cluster_status_yaml(endpoints: &BTreeMap<String, ApiEndpoint>) -> String {
    render_status(
        endpoints
            .iter()
            .map(|(node, ep)| (node.clone(), endpoint_v1beta2(ep)))
            .collect(),
    )
}

/// The `ClusterStatus` key of `kubeadm-config` with `node_name`'s API endpoint added or
/// replaced and every other node's kept (kubeadm: UploadConfiguration, which init and the
/// `control-plane-join/update-status` phase of join both call). `None` (no ClusterStatus
/// yet) makes a new document holding this node only.
///
/// # Errors
///
/// [`ConfigError::KubeadmConfig`] when the existing document is not YAML, cannot be read
/// as a ClusterStatus, or has no `apiEndpoints`.
pub fn cluster_status_with_endpoint(
    status_yaml: Option<&str>,
    node_name: &str,
    endpoint: &ApiEndpoint,
) -> Result<String, ConfigError> {
    let mut endpoints = match status_yaml {
        Some(text) => read_status(text)?.api_endpoints,
        None => BTreeMap::new(),
    };
    endpoints.insert(node_name.to_string(), endpoint_v1beta2(endpoint));
    Ok(render_status(endpoints))
}

/// The `ClusterStatus` key of `kubeadm-config` without `node_name`'s API endpoint, for
/// `reset` (kubeadm: ResetClusterStatusForNode). `None` when there is nothing to write:
/// no ClusterStatus, or none for this node.
///
/// # Errors
///
/// As [`cluster_status_with_endpoint`].
pub fn cluster_status_without_endpoint(
    status_yaml: Option<&str>,
    node_name: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(text) = status_yaml else {
        return Ok(None);
    };
    let mut endpoints = read_status(text)?.api_endpoints;
    if endpoints.remove(node_name).is_none() {
        return Ok(None);
    }
    Ok(Some(render_status(endpoints)))
}

/// Every control-plane node's API endpoint in a `ClusterStatus` document, by node name
/// (kubeadm 1.20 falls back to this when the API server mirror pods do not tell:
/// util/config/cluster.go `getAPIEndpointFromClusterStatus`).
///
/// # Errors
///
/// As [`cluster_status_with_endpoint`], and an entry whose address is not an IP address or
/// whose port is out of range.
pub fn cluster_status_endpoints(
    status_yaml: &str,
) -> Result<BTreeMap<String, ApiEndpoint>, ConfigError> {
    read_status(status_yaml)?
        .api_endpoints
        .into_iter()
        .map(|(node, ep)| {
            let address = ep.advertise_address.parse::<IpAddr>().ok();
            let port = u16::try_from(ep.bind_port).ok().filter(|p| *p > 0);
            match (address, port) {
                (Some(advertise_address), Some(bind_port)) => Ok((
                    node,
                    ApiEndpoint {
                        advertise_address,
                        bind_port,
                    },
                )),
                _ => Err(invalid(
                    names::CLUSTER_STATUS_KEY,
                    format!(
                        "has an invalid API endpoint for node {node:?}: {:?}, port {}",
                        ep.advertise_address, ep.bind_port
                    ),
                )),
            }
        })
        .collect()
}
