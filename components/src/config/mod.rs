//! The kubeadm configuration API and kubeboot's internal configuration.
//!
//! Users write kubeadm's multi-document YAML (`kubeadm.k8s.io/v1beta2` or `v1beta3`); each
//! versioned document converts with `From` into the one internal form below, which is what
//! defaulting, validation and every other crate see.

pub mod defaults;
pub mod duration;
pub mod flags;
pub mod load;
pub mod print;
pub mod v1beta2;
pub mod v1beta3;
pub mod validate;

pub use flags::{ConfigError, ConfigSource, HostFacts, InitFlags, resolve_init};
pub use load::{ApiVersion, ConfigFile, LoadError, load};
pub use print::{cluster_configuration_yaml, init_defaults_yaml};
pub use validate::{FieldError, check_node_dir, check_node_file};

use std::collections::BTreeMap;
use std::net::IpAddr;

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
}

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
