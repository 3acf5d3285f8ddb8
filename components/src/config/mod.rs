//! The kubeadm configuration API and kubeboot's internal configuration.
//!
//! Users write kubeadm's multi-document YAML (`kubeadm.k8s.io/v1beta2` or `v1beta3`); each
//! versioned document converts with `From` into the one internal form below, which is what
//! defaulting, validation and every other crate see. `init` resolves flags and file into an
//! [`InitConfig`] ([`flags::resolve_init`]), `join` into a [`JoinConfig`]
//! ([`join::resolve_join`]); a joining node reads the cluster-wide [`ClusterConfig`] from the
//! cluster ([`kubeadm_config`]).

pub mod defaults;
pub mod duration;
pub mod flags;
pub mod join;
pub mod kubeadm_config;
mod lenient;
pub mod load;
pub mod print;
pub mod v1beta2;
pub mod v1beta3;
pub mod validate;

pub use flags::{ConfigError, ConfigSource, HostFacts, InitFlags, JoinFlags, resolve_init};
pub use join::resolve_join;
pub use kubeadm_config::{
    cluster_from_kubeadm_config, cluster_status_with_endpoint, cluster_status_without_endpoint,
    cluster_status_yaml,
};
pub use load::{ApiVersion, ConfigFile, LoadError, load};
pub use print::{cluster_configuration_yaml, init_defaults_yaml, join_defaults_yaml};
pub use validate::{FieldError, check_node_dir, check_node_file};

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::Version;

/// The private key algorithm for new keys (kubeadm >= 1.31: `ClusterConfiguration.
/// encryptionAlgorithm`). kubeboot defaults to ECDSA P-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// `ECDSA-P256`.
    #[default]
    EcdsaP256,
    /// `RSA-2048` (what kubeadm 1.20 always uses).
    Rsa2048,
    /// `RSA-3072`.
    Rsa3072,
    /// `RSA-4096`.
    Rsa4096,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order the API lists them.
    pub const ALL: [KeyAlgorithm; 4] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The API spelling (`ECDSA-P256`, `RSA-2048`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// RSA modulus size in bits, `None` for ECDSA.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyAlgorithm::EcdsaP256 => None,
            KeyAlgorithm::Rsa2048 => Some(2048),
            KeyAlgorithm::Rsa3072 => Some(3072),
            KeyAlgorithm::Rsa4096 => Some(4096),
        }
    }
}

/// A hostPath volume a user adds to a control-plane component (kubeadm: HostPathMount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathMount {
    /// Volume name.
    pub name: String,
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub mount_path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// hostPath type (`DirectoryOrCreate`, ...), empty for none.
    pub path_type: String,
}

/// Settings shared by control-plane components (kubeadm: ControlPlaneComponent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlPlaneComponent {
    /// Extra flags; they override the defaults of the same name.
    pub extra_args: BTreeMap<String, String>,
    /// Extra hostPath volumes.
    pub extra_volumes: Vec<HostPathMount>,
}

/// The API server's settings (kubeadm: APIServer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiServer {
    /// Extra flags and volumes.
    pub component: ControlPlaneComponent,
    /// Extra subject alternative names for the serving certificate.
    pub cert_sans: Vec<String>,
    /// How long to wait for the control plane, in seconds (kubeadm default 4m0s).
    pub timeout_for_control_plane_secs: u64,
}

/// A local etcd member (kubeadm: LocalEtcd).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalEtcd {
    /// Image repository override.
    pub image_repository: Option<String>,
    /// Image tag override.
    pub image_tag: Option<String>,
    /// The data directory (default `/var/lib/etcd`).
    pub data_dir: String,
    /// Extra flags.
    pub extra_args: BTreeMap<String, String>,
    /// Extra SANs for the etcd server certificate.
    pub server_cert_sans: Vec<String>,
    /// Extra SANs for the etcd peer certificate.
    pub peer_cert_sans: Vec<String>,
}

/// An external etcd cluster (kubeadm: ExternalEtcd).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalEtcd {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// CA file.
    pub ca_file: String,
    /// Client certificate file.
    pub cert_file: String,
    /// Client key file.
    pub key_file: String,
}

/// Where etcd is (kubeadm: Etcd): exactly one of local or external.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Etcd {
    /// A stacked etcd member run as a static pod on each control-plane node.
    Local(LocalEtcd),
    /// An etcd cluster kubeboot does not manage.
    External(ExternalEtcd),
}

/// Cluster networking (kubeadm: Networking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networking {
    /// The pod network (`--pod-network-cidr`), if any.
    pub pod_subnet: Option<IpNet>,
    /// The service network (default 10.96.0.0/12).
    pub service_subnet: IpNet,
    /// The cluster DNS domain (default `cluster.local`).
    pub dns_domain: String,
}

/// Cluster-wide settings (kubeadm: ClusterConfiguration), internal form, defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Kubernetes version of the control plane.
    pub kubernetes_version: Version,
    /// The cluster name (default `kubernetes`).
    pub cluster_name: String,
    /// A stable address or DNS name (with optional port) for the control plane.
    pub control_plane_endpoint: Option<String>,
    /// The image repository (default `k8s.gcr.io` up to 1.24, then `registry.k8s.io`).
    pub image_repository: String,
    /// Where certificates live (default `/etc/kubernetes/pki`), as the node sees it.
    pub certificates_dir: String,
    /// Networking.
    pub networking: Networking,
    /// The API server.
    pub api_server: ApiServer,
    /// The controller manager.
    pub controller_manager: ControlPlaneComponent,
    /// The scheduler.
    pub scheduler: ControlPlaneComponent,
    /// etcd.
    pub etcd: Etcd,
    /// Feature gates.
    pub feature_gates: BTreeMap<String, bool>,
    /// The key algorithm for new keys.
    pub encryption_algorithm: KeyAlgorithm,
    /// How long new leaf certificates are valid (kubeadm v1beta4
    /// `certificateValidityPeriod`, default 1 year).
    pub certificate_validity: Duration,
    /// How long new CAs are valid (kubeadm v1beta4 `caCertificateValidityPeriod`, default 10
    /// years); always longer than `certificate_validity`.
    pub ca_certificate_validity: Duration,
    /// The node agents renew a leaf certificate once it expires within this (kubeboot's
    /// `certificateRenewalWindow`; default [`default_renewal_window`]); always shorter than
    /// `certificate_validity`, so a renewed certificate is never due at once.
    pub certificate_renewal_window: Duration,
}

/// The renewal window when none is configured: 90 days (k3s renews its certificates within
/// 90 days of expiry), or a quarter of the validity when that is shorter (certificates
/// of minutes, in tests), as the kubelet rotates its own at 70-90% of their life.
pub fn default_renewal_window(certificate_validity: Duration) -> Duration {
    const NINETY_DAYS: Duration = Duration::from_secs(90 * 24 * 3600);
    NINETY_DAYS.min(certificate_validity / 4)
}

/// kubeadm's default leaf validity (constants.CertificateValidityPeriod, 8760h).
pub const DEFAULT_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// kubeadm's default CA validity (constants.CACertificateValidityPeriod, 87600h).
pub const DEFAULT_CA_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A node taint (core/v1 Taint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value, if any.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// How the node registers (kubeadm: NodeRegistrationOptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    /// The node name (default: the host name, lower-cased).
    pub name: String,
    /// The CRI socket, if one is configured.
    pub cri_socket: Option<String>,
    /// Taints; `None` means "kubeadm's default for a control-plane node".
    pub taints: Option<Vec<Taint>>,
    /// Extra kubelet flags.
    pub kubelet_extra_args: BTreeMap<String, String>,
    /// Preflight errors to ignore (lower-cased names, or `all`).
    pub ignore_preflight_errors: Vec<String>,
}

/// The API endpoint of this node (kubeadm: APIEndpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiEndpoint {
    /// The address the API server advertises.
    pub advertise_address: IpAddr,
    /// The port it binds (default 6443).
    pub bind_port: u16,
}

/// A bootstrap token to create during init (kubeadm: BootstrapToken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`, or `None` to generate one.
    pub token: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Time to live in seconds (default 24h); 0 means forever.
    pub ttl_secs: u64,
    /// Usages (default `signing`, `authentication`).
    pub usages: Vec<String>,
    /// Extra groups (default `system:bootstrappers:kubeadm:default-node-token`).
    pub groups: Vec<String>,
}

/// A configuration document kubeboot keeps for later phases without interpreting it now
/// (KubeletConfiguration, KubeProxyConfiguration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDocument {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The document as YAML text, unchanged.
    pub yaml: String,
}

/// Everything `init` needs (kubeadm: InitConfiguration with its ClusterConfiguration),
/// internal form, defaulted and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitConfig {
    /// Cluster-wide settings.
    pub cluster: ClusterConfig,
    /// This node's registration.
    pub node: NodeRegistration,
    /// This node's API endpoint.
    pub local_api_endpoint: ApiEndpoint,
    /// Bootstrap tokens to create.
    pub bootstrap_tokens: Vec<BootstrapToken>,
    /// The key that encrypts uploaded certificates, hex, if given.
    pub certificate_key: Option<String>,
    /// Phases to skip.
    pub skip_phases: Vec<String>,
    /// Component configuration documents passed through.
    pub component_configs: Vec<ComponentDocument>,
}

/// What a secret field shows in `Debug` output: tokens and certificate keys never reach a log.
const REDACTED: &str = "<redacted>";

fn redact<T>(secret: &Option<T>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

/// How a joining node finds the cluster and decides to trust it (kubeadm: Discovery, its
/// `bootstrapToken` or `file`).
#[derive(Clone, PartialEq, Eq)]
pub enum JoinDiscovery {
    /// Token discovery: read `kube-public/cluster-info` from `api_server_endpoint`, check its
    /// JWS signature with `token` and its CA against `ca_cert_hashes`.
    Token {
        /// `host:port` of an API server.
        api_server_endpoint: String,
        /// The bootstrap token that signs cluster-info, `[a-z0-9]{6}.[a-z0-9]{16}`.
        token: String,
        /// CA public key pins, `sha256:<64 lower-case hex>`; empty only with
        /// `unsafe_skip_ca_verification`.
        ca_cert_hashes: Vec<String>,
        /// Accept any CA (`--discovery-token-unsafe-skip-ca-verification`).
        unsafe_skip_ca_verification: bool,
    },
    /// File discovery: a kubeconfig on disk or at an `https://` URL (a `file://` URL is
    /// already turned into its path, as kubeadm's defaulting does).
    File {
        /// The path or the URL.
        path_or_url: String,
    },
}

impl fmt::Debug for JoinDiscovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinDiscovery::Token {
                api_server_endpoint,
                token: _,
                ca_cert_hashes,
                unsafe_skip_ca_verification,
            } => f
                .debug_struct("Token")
                .field("api_server_endpoint", api_server_endpoint)
                .field("token", &REDACTED)
                .field("ca_cert_hashes", ca_cert_hashes)
                .field("unsafe_skip_ca_verification", unsafe_skip_ca_verification)
                .finish(),
            JoinDiscovery::File { path_or_url } => f
                .debug_struct("File")
                .field("path_or_url", path_or_url)
                .finish(),
        }
    }
}

/// What a control-plane join adds (kubeadm: JoinControlPlane).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinControlPlaneConfig {
    /// The API server endpoint of the new control-plane node.
    pub local_api_endpoint: ApiEndpoint,
    /// The key that decrypts the `kubeadm-certs` Secret, 64 hex characters, if given.
    pub certificate_key: Option<String>,
}

impl fmt::Debug for JoinControlPlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinControlPlaneConfig")
            .field("local_api_endpoint", &self.local_api_endpoint)
            .field("certificate_key", &redact(&self.certificate_key))
            .finish()
    }
}

/// Everything `join` needs from the user (kubeadm: JoinConfiguration), internal form,
/// defaulted and validated. The cluster-wide settings come later, from the cluster
/// ([`kubeadm_config::cluster_from_kubeadm_config`]).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// This node's registration. `taints` is `None` on a control-plane join, meaning
    /// kubeadm's control-plane taint for the cluster's version (as for init), and `Some([])`
    /// on a worker unless the user gave taints.
    pub node: NodeRegistration,
    /// Where the cluster CA certificate is written (default `/etc/kubernetes/pki/ca.crt`).
    pub ca_cert_path: String,
    /// How the cluster is found and trusted.
    pub discovery: JoinDiscovery,
    /// The token for the kubelet's TLS bootstrap. Defaults to the discovery token; empty
    /// only with file discovery, where the discovery kubeconfig's own credentials are used
    /// (kubeadm: discovery/discovery.go `For`).
    pub tls_bootstrap_token: String,
    /// How long discovery may take (kubeadm default 5m0s).
    pub discovery_timeout: Duration,
    /// Set for a control-plane join (`--control-plane`).
    pub control_plane: Option<JoinControlPlaneConfig>,
    /// Phases to skip.
    pub skip_phases: Vec<String>,
    /// Directory of patches for the generated manifests (always `None` today: validation
    /// refuses patches, as for init, until kubeboot applies them).
    pub patches_directory: Option<String>,
    /// The apiVersion of the user's JoinConfiguration, or the default when there was none.
    pub api_version: load::ApiVersion,
}

impl fmt::Debug for JoinConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = (!self.tls_bootstrap_token.is_empty()).then_some(REDACTED);
        f.debug_struct("JoinConfig")
            .field("node", &self.node)
            .field("ca_cert_path", &self.ca_cert_path)
            .field("discovery", &self.discovery)
            .field("tls_bootstrap_token", &tls)
            .field("discovery_timeout", &self.discovery_timeout)
            .field("control_plane", &self.control_plane)
            .field("skip_phases", &self.skip_phases)
            .field("patches_directory", &self.patches_directory)
            .field("api_version", &self.api_version)
            .finish()
    }
}
