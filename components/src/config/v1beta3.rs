//! The `kubeadm.k8s.io/v1beta3` configuration API (kubeadm 1.22 to 1.30,
//! app/apis/kubeadm/v1beta3/types.go).
//!
//! Differences from v1beta2: no `ClusterStatus`, no `useHyperKubeImage`, no `dns.type`;
//! `nodeRegistration.imagePullPolicy`; `skipPhases` and `patches` in Init- and
//! JoinConfiguration. Types that did not change are re-exported from [`super::v1beta2`].
//!
//! kubeboot extensions: `ClusterConfiguration.certificateValidityPeriod` and
//! `caCertificateValidityPeriod` (kubeadm v1beta4's fields, Go durations) are accepted here
//! too, and so is `ClusterConfiguration.encryptionAlgorithm` (kubeadm >= 1.31's field,
//! `ECDSA-P256`, `RSA-2048`, `RSA-3072` or `RSA-4096`) is accepted here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ControlPlaneComponent;
use super::load::{
    ApiServerSpec, ClusterSpec, DnsSpec, InitSpec, JoinSpec, NetworkingSpec, NodeRegistrationSpec,
};
use super::v1beta2::{self, opt};
pub use super::v1beta2::{
    ApiEndpoint, ApiServer, BootstrapToken, BootstrapTokenDiscovery, ControlPlaneComponentV,
    Discovery, Etcd, EtcdV, ExternalEtcdV, FileDiscovery, HostPathMountV, JoinControlPlane,
    LocalEtcdV, Networking, TaintV,
};

/// InitConfiguration: the settings of the node that runs `init`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InitConfiguration {
    /// `kubeadm.k8s.io/v1beta3`.
    pub api_version: String,
    /// `InitConfiguration`.
    pub kind: String,
    /// Bootstrap tokens to create.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_tokens: Vec<BootstrapToken>,
    /// How this node registers.
    pub node_registration: NodeRegistrationOptions,
    /// This node's API server endpoint.
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    /// Key for the certificates uploaded with `--upload-certs`, hex.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate_key: String,
    /// Phases to skip (`--skip-phases` wins when given).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
    /// Patches for the generated manifests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<Patches>,
}

/// Patches: a directory of patch files for kubeadm-generated manifests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Patches {
    /// The directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub directory: String,
}

/// ClusterConfiguration: the settings shared by the whole cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterConfiguration {
    /// `kubeadm.k8s.io/v1beta3`.
    pub api_version: String,
    /// `ClusterConfiguration`.
    pub kind: String,
    /// etcd.
    pub etcd: Etcd,
    /// Networking.
    pub networking: Networking,
    /// The control plane's version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// A stable IP or DNS name, with an optional port, for the control plane.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub control_plane_endpoint: String,
    /// The API server.
    #[serde(rename = "apiServer")]
    pub api_server: ApiServer,
    /// The controller manager.
    pub controller_manager: ControlPlaneComponentV,
    /// The scheduler.
    pub scheduler: ControlPlaneComponentV,
    /// The DNS addon's image.
    #[serde(rename = "dns")]
    pub dns: Dns,
    /// Where certificates live.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificates_dir: String,
    /// The image repository.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    /// Feature gates.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    /// The cluster name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    /// kubeboot extension (kubeadm >= 1.31): the key algorithm for new keys.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub encryption_algorithm: String,
    /// kubeboot extension (kubeadm v1beta4, 1.31): how long new leaf certificates are valid,
    /// a Go duration (`8760h0m0s`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate_validity_period: String,
    /// kubeboot extension (kubeadm v1beta4, 1.31): how long new CAs are valid.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_certificate_validity_period: String,
    /// kubeboot extension (no kubeadm equivalent): the node agents renew a leaf certificate
    /// once it expires within this Go duration.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate_renewal_window: String,
}

/// DNS: the CoreDNS image override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Dns {
    /// Image repository override.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    /// Image tag override.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
}

/// NodeRegistrationOptions: how the node registers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeRegistrationOptions {
    /// Node name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// CRI socket.
    #[serde(rename = "criSocket", skip_serializing_if = "String::is_empty")]
    pub cri_socket: String,
    /// Taints; absent or null means kubeadm's default control-plane taint, `[]` none.
    pub taints: Option<Vec<TaintV>>,
    /// Extra kubelet flags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kubelet_extra_args: BTreeMap<String, String>,
    /// Preflight errors to ignore.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore_preflight_errors: Vec<String>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
}

/// JoinConfiguration: the settings of a node that runs `join`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JoinConfiguration {
    /// `kubeadm.k8s.io/v1beta3`.
    pub api_version: String,
    /// `JoinConfiguration`.
    pub kind: String,
    /// How this node registers.
    pub node_registration: NodeRegistrationOptions,
    /// Where the cluster CA certificate is written.
    #[serde(rename = "caCertPath", skip_serializing_if = "String::is_empty")]
    pub ca_cert_path: String,
    /// How to find and trust the cluster.
    pub discovery: Discovery,
    /// Set for a control-plane node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane>,
    /// Phases to skip.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_phases: Vec<String>,
    /// Patches for the generated manifests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<Patches>,
}

// ---- conversions into the version-independent form ----

impl From<NodeRegistrationOptions> for NodeRegistrationSpec {
    fn from(v: NodeRegistrationOptions) -> Self {
        let image_pull_policy = opt(v.image_pull_policy.clone());
        let mut spec: NodeRegistrationSpec = v1beta2::NodeRegistrationOptions {
            name: v.name,
            cri_socket: v.cri_socket,
            taints: v.taints,
            kubelet_extra_args: v.kubelet_extra_args,
            ignore_preflight_errors: v.ignore_preflight_errors,
        }
        .into();
        spec.image_pull_policy = image_pull_policy;
        spec
    }
}

impl From<InitConfiguration> for InitSpec {
    fn from(v: InitConfiguration) -> Self {
        let mut spec: InitSpec = v1beta2::InitConfiguration {
            api_version: v.api_version,
            kind: v.kind,
            bootstrap_tokens: v.bootstrap_tokens,
            node_registration: v1beta2::NodeRegistrationOptions::default(),
            local_api_endpoint: v.local_api_endpoint,
            certificate_key: v.certificate_key,
        }
        .into();
        spec.node_registration = v.node_registration.into();
        spec.skip_phases = v.skip_phases;
        spec.patches_directory = v.patches.and_then(|p| opt(p.directory));
        spec
    }
}

impl From<ClusterConfiguration> for ClusterSpec {
    fn from(v: ClusterConfiguration) -> Self {
        ClusterSpec {
            kubernetes_version: opt(v.kubernetes_version),
            cluster_name: opt(v.cluster_name),
            control_plane_endpoint: opt(v.control_plane_endpoint),
            image_repository: opt(v.image_repository),
            certificates_dir: opt(v.certificates_dir),
            networking: NetworkingSpec {
                pod_subnet: opt(v.networking.pod_subnet),
                service_subnet: opt(v.networking.service_subnet),
                dns_domain: opt(v.networking.dns_domain),
            },
            api_server: ApiServerSpec {
                component: ControlPlaneComponent {
                    extra_args: v.api_server.extra_args,
                    extra_volumes: v
                        .api_server
                        .extra_volumes
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                },
                cert_sans: v.api_server.cert_sans,
                timeout_for_control_plane: v.api_server.timeout_for_control_plane,
            },
            controller_manager: v.controller_manager.into(),
            scheduler: v.scheduler.into(),
            etcd: v.etcd.into(),
            dns: DnsSpec {
                kind: None,
                image_repository: opt(v.dns.image_repository),
                image_tag: opt(v.dns.image_tag),
            },
            use_hyper_kube_image: false,
            feature_gates: v.feature_gates,
            encryption_algorithm: opt(v.encryption_algorithm),
            certificate_validity_period: opt(v.certificate_validity_period),
            ca_certificate_validity_period: opt(v.ca_certificate_validity_period),
            certificate_renewal_window: opt(v.certificate_renewal_window),
        }
    }
}

impl From<JoinConfiguration> for JoinSpec {
    fn from(v: JoinConfiguration) -> Self {
        let mut spec: JoinSpec = v1beta2::JoinConfiguration {
            api_version: v.api_version,
            kind: v.kind,
            node_registration: v1beta2::NodeRegistrationOptions::default(),
            ca_cert_path: v.ca_cert_path,
            discovery: v.discovery,
            control_plane: v.control_plane,
        }
        .into();
        spec.node_registration = v.node_registration.into();
        spec.skip_phases = v.skip_phases;
        spec.patches_directory = v.patches.and_then(|p| opt(p.directory));
        spec.api_version = super::load::ApiVersion::V1beta3;
        spec
    }
}
