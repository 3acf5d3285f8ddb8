//! The `kubeadm.k8s.io/v1beta2` configuration API, as kubeadm 1.15 to 1.21 read and write it
//! (kubeadm: app/apis/kubeadm/v1beta2/types.go).
//!
//! Every struct denies unknown fields, so a typo in a file is an error naming the field.
//! Fields keep kubeadm's "empty means unset" convention (`omitempty`); defaulting happens
//! on the version-independent [`crate::config::load`] form these types convert into.
//!
//! kubeboot extensions: `ClusterConfiguration.certificateValidityPeriod` and
//! `caCertificateValidityPeriod` (kubeadm v1beta4's fields, Go durations) are accepted here
//! too, and so is `ClusterConfiguration.encryptionAlgorithm` (kubeadm >= 1.31's field,
//! `ECDSA-P256`, `RSA-2048`, `RSA-3072` or `RSA-4096`) is accepted here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load::{
    ApiEndpointSpec, ApiServerSpec, BootstrapTokenSpec, ClusterSpec, DiscoverySpec, DnsSpec,
    EtcdSpec, InitSpec, JoinControlPlaneSpec, JoinSpec, NetworkingSpec, NodeRegistrationSpec,
};
use super::{ControlPlaneComponent, ExternalEtcd, HostPathMount, LocalEtcd, Taint};

fn is_false(b: &bool) -> bool {
    !*b
}

/// InitConfiguration: the settings of the node that runs `init`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InitConfiguration {
    /// `kubeadm.k8s.io/v1beta2`.
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
}

/// ClusterConfiguration: the settings shared by the whole cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterConfiguration {
    /// `kubeadm.k8s.io/v1beta2`.
    pub api_version: String,
    /// `ClusterConfiguration`.
    pub kind: String,
    /// etcd.
    pub etcd: Etcd,
    /// Networking.
    pub networking: Networking,
    /// The control plane's version (`stable-1` by kubeadm's default).
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
    /// The DNS addon.
    #[serde(rename = "dns")]
    pub dns: Dns,
    /// Where certificates live.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificates_dir: String,
    /// The image repository.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    /// Use the hyperkube image (deprecated; kubeboot refuses `true`).
    #[serde(skip_serializing_if = "is_false")]
    pub use_hyper_kube_image: bool,
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

/// ClusterStatus (the `kubeadm-config` ConfigMap's second key in kubeadm 1.20).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterStatus {
    /// `kubeadm.k8s.io/v1beta2`.
    pub api_version: String,
    /// `ClusterStatus`.
    pub kind: String,
    /// Node name -> API endpoint of every control-plane node.
    #[serde(rename = "apiEndpoints")]
    pub api_endpoints: BTreeMap<String, ApiEndpoint>,
}

/// ControlPlaneComponent: extra flags and volumes of one component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControlPlaneComponentV {
    /// Extra flags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Extra hostPath volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_volumes: Vec<HostPathMountV>,
}

/// APIServer: the API server's settings (ControlPlaneComponent inlined).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiServer {
    /// Extra flags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Extra hostPath volumes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_volumes: Vec<HostPathMountV>,
    /// Extra SANs for the serving certificate.
    #[serde(rename = "certSANs", skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
    /// Go duration (`4m0s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_for_control_plane: Option<String>,
}

/// DNS: the cluster DNS addon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Dns {
    /// `CoreDNS` (kubeadm's `kube-dns` is not supported by kubeboot).
    #[serde(rename = "type")]
    pub kind: String,
    /// Image repository override.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    /// Image tag override.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
}

/// APIEndpoint: an advertise address and a port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiEndpoint {
    /// IP address.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub advertise_address: String,
    /// Port (0 = default 6443).
    #[serde(skip_serializing_if = "is_zero")]
    pub bind_port: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
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
}

/// core/v1 Taint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TaintV {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Effect.
    pub effect: String,
    /// RFC 3339 time (ignored by kubeboot, as by kubeadm for new nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

/// Networking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Networking {
    /// Service CIDR.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_subnet: String,
    /// Pod CIDR.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod_subnet: String,
    /// DNS domain.
    #[serde(rename = "dnsDomain", skip_serializing_if = "String::is_empty")]
    pub dns_domain: String,
}

/// BootstrapToken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapToken {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Go duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Usages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    /// Groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Etcd: exactly one of local and external.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EtcdV {
    /// A local (stacked) member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalEtcdV>,
    /// An external cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalEtcdV>,
}

/// Etcd (named as kubeadm names it).
pub type Etcd = EtcdV;

/// LocalEtcd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalEtcdV {
    /// Image repository override.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_repository: String,
    /// Image tag override.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_tag: String,
    /// Data directory.
    pub data_dir: String,
    /// Extra flags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
    /// Extra server certificate SANs.
    #[serde(rename = "serverCertSANs", skip_serializing_if = "Vec::is_empty")]
    pub server_cert_sans: Vec<String>,
    /// Extra peer certificate SANs.
    #[serde(rename = "peerCertSANs", skip_serializing_if = "Vec::is_empty")]
    pub peer_cert_sans: Vec<String>,
}

/// ExternalEtcd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExternalEtcdV {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// CA file.
    #[serde(rename = "caFile")]
    pub ca_file: String,
    /// Client certificate.
    pub cert_file: String,
    /// Client key.
    pub key_file: String,
}

/// HostPathMount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HostPathMountV {
    /// Volume name.
    pub name: String,
    /// Host path.
    pub host_path: String,
    /// Container path.
    pub mount_path: String,
    /// Read-only.
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// hostPath type.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path_type: String,
}

/// JoinConfiguration: the settings of a node that runs `join`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JoinConfiguration {
    /// `kubeadm.k8s.io/v1beta2`.
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
}

/// JoinControlPlane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JoinControlPlane {
    /// The new control-plane node's API endpoint.
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint,
    /// Key that decrypts the uploaded certificates.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate_key: String,
}

/// Discovery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Discovery {
    /// Token-based discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<BootstrapTokenDiscovery>,
    /// File or URL discovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileDiscovery>,
    /// The token for the TLS bootstrap.
    #[serde(rename = "tlsBootstrapToken", skip_serializing_if = "String::is_empty")]
    pub tls_bootstrap_token: String,
    /// Go duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// BootstrapTokenDiscovery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BootstrapTokenDiscovery {
    /// The token.
    pub token: String,
    /// `host:port` of an API server.
    #[serde(rename = "apiServerEndpoint", skip_serializing_if = "String::is_empty")]
    pub api_server_endpoint: String,
    /// `sha256:<hex>` pins.
    #[serde(rename = "caCertHashes", skip_serializing_if = "Vec::is_empty")]
    pub ca_cert_hashes: Vec<String>,
    /// Skip the CA pin check.
    #[serde(rename = "unsafeSkipCAVerification", skip_serializing_if = "is_false")]
    pub unsafe_skip_ca_verification: bool,
}

/// FileDiscovery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FileDiscovery {
    /// A kubeconfig path or HTTPS URL.
    pub kube_config_path: String,
}

// ---- conversions into the version-independent form ----

pub(crate) fn opt(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

impl From<HostPathMountV> for HostPathMount {
    fn from(v: HostPathMountV) -> Self {
        HostPathMount {
            name: v.name,
            host_path: v.host_path,
            mount_path: v.mount_path,
            read_only: v.read_only,
            path_type: v.path_type,
        }
    }
}

impl From<ControlPlaneComponentV> for ControlPlaneComponent {
    fn from(v: ControlPlaneComponentV) -> Self {
        ControlPlaneComponent {
            extra_args: v.extra_args,
            extra_volumes: v.extra_volumes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<TaintV> for Taint {
    fn from(v: TaintV) -> Self {
        Taint {
            key: v.key,
            value: opt(v.value),
            effect: v.effect,
        }
    }
}

impl From<ApiEndpoint> for ApiEndpointSpec {
    fn from(v: ApiEndpoint) -> Self {
        ApiEndpointSpec {
            advertise_address: opt(v.advertise_address),
            bind_port: if v.bind_port == 0 {
                None
            } else {
                Some(v.bind_port)
            },
        }
    }
}

impl From<BootstrapToken> for BootstrapTokenSpec {
    fn from(v: BootstrapToken) -> Self {
        BootstrapTokenSpec {
            token: v.token.and_then(opt),
            description: opt(v.description),
            ttl: v.ttl,
            expires: v.expires,
            usages: v.usages,
            groups: v.groups,
        }
    }
}

impl From<NodeRegistrationOptions> for NodeRegistrationSpec {
    fn from(v: NodeRegistrationOptions) -> Self {
        NodeRegistrationSpec {
            name: opt(v.name),
            cri_socket: opt(v.cri_socket),
            taints: v.taints.map(|t| t.into_iter().map(Into::into).collect()),
            kubelet_extra_args: v.kubelet_extra_args,
            ignore_preflight_errors: v.ignore_preflight_errors,
            image_pull_policy: None,
        }
    }
}

impl From<InitConfiguration> for InitSpec {
    fn from(v: InitConfiguration) -> Self {
        InitSpec {
            bootstrap_tokens: if v.bootstrap_tokens.is_empty() {
                None
            } else {
                Some(v.bootstrap_tokens.into_iter().map(Into::into).collect())
            },
            node_registration: v.node_registration.into(),
            local_api_endpoint: v.local_api_endpoint.into(),
            certificate_key: opt(v.certificate_key),
            skip_phases: Vec::new(),
            patches_directory: None,
        }
    }
}

impl From<EtcdV> for EtcdSpec {
    fn from(v: EtcdV) -> Self {
        EtcdSpec {
            local: v.local.map(|l| LocalEtcd {
                image_repository: opt(l.image_repository),
                image_tag: opt(l.image_tag),
                data_dir: l.data_dir,
                extra_args: l.extra_args,
                server_cert_sans: l.server_cert_sans,
                peer_cert_sans: l.peer_cert_sans,
            }),
            external: v.external.map(|e| ExternalEtcd {
                endpoints: e.endpoints,
                ca_file: e.ca_file,
                cert_file: e.cert_file,
                key_file: e.key_file,
            }),
        }
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
                kind: opt(v.dns.kind),
                image_repository: opt(v.dns.image_repository),
                image_tag: opt(v.dns.image_tag),
            },
            use_hyper_kube_image: v.use_hyper_kube_image,
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
        JoinSpec {
            node_registration: v.node_registration.into(),
            ca_cert_path: opt(v.ca_cert_path),
            discovery: DiscoverySpec {
                token: v
                    .discovery
                    .bootstrap_token
                    .as_ref()
                    .map(|b| b.token.clone())
                    .and_then(opt),
                api_server_endpoint: v
                    .discovery
                    .bootstrap_token
                    .as_ref()
                    .map(|b| b.api_server_endpoint.clone())
                    .and_then(opt),
                ca_cert_hashes: v
                    .discovery
                    .bootstrap_token
                    .as_ref()
                    .map(|b| b.ca_cert_hashes.clone())
                    .unwrap_or_default(),
                unsafe_skip_ca_verification: v
                    .discovery
                    .bootstrap_token
                    .as_ref()
                    .is_some_and(|b| b.unsafe_skip_ca_verification),
                file: v.discovery.file.map(|f| f.kube_config_path),
                tls_bootstrap_token: opt(v.discovery.tls_bootstrap_token),
                timeout: v.discovery.timeout,
            },
            control_plane: v.control_plane.map(|c| JoinControlPlaneSpec {
                local_api_endpoint: c.local_api_endpoint.into(),
                certificate_key: opt(c.certificate_key),
            }),
            skip_phases: Vec::new(),
            patches_directory: None,
            api_version: super::load::ApiVersion::V1beta2,
        }
    }
}
