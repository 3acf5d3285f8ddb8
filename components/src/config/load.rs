//! Reading kubeadm's multi-document config file into the version-independent, not yet
//! defaulted form (kubeadm: util/config/initconfiguration.go `BytesToInitConfiguration`,
//! util/marshal.go `SplitYAMLDocuments`).
//!
//! Each document's `apiVersion` and `kind` pick its type; kubeadm documents are decoded
//! strictly (an unknown field is an error naming the field, the kind and the line in the
//! whole file), component configuration documents are kept as text for later phases.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ComponentDocument, ControlPlaneComponent, ExternalEtcd, LocalEtcd, Taint};
use super::{v1beta2, v1beta3};
use crate::names;

/// `kubelet.config.k8s.io/v1beta1`, the KubeletConfiguration kubeadm passes through.
pub const KUBELET_CONFIG_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// `kubeproxy.config.k8s.io/v1alpha1`, the KubeProxyConfiguration kubeadm passes through.
pub const KUBE_PROXY_CONFIG_API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// The kubeadm API version of a document (or of what we print).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiVersion {
    /// `kubeadm.k8s.io/v1beta2` (kubeadm 1.15 to 1.21; what kubeadm 1.20 writes).
    #[default]
    V1beta2,
    /// `kubeadm.k8s.io/v1beta3` (kubeadm 1.22 to 1.30).
    V1beta3,
}

impl ApiVersion {
    /// Parses `v1beta2`, `v1beta3` or the full `kubeadm.k8s.io/v1beta2` form.
    pub fn parse(s: &str) -> Option<Self> {
        match s.strip_prefix("kubeadm.k8s.io/").unwrap_or(s) {
            "v1beta2" => Some(ApiVersion::V1beta2),
            "v1beta3" => Some(ApiVersion::V1beta3),
            _ => None,
        }
    }

    /// The `apiVersion` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta2 => names::KUBEADM_V1BETA2,
            ApiVersion::V1beta3 => names::KUBEADM_V1BETA3,
        }
    }
}

/// A bootstrap token as a file says it (kubeadm: BootstrapToken), not yet defaulted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapTokenSpec {
    /// The token, if given.
    pub token: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Go duration (`24h0m0s`).
    pub ttl: Option<String>,
    /// RFC 3339 expiry time.
    pub expires: Option<String>,
    /// Usages.
    pub usages: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// NodeRegistrationOptions as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeRegistrationSpec {
    /// Node name.
    pub name: Option<String>,
    /// CRI socket.
    pub cri_socket: Option<String>,
    /// Taints; `None` = kubeadm's default.
    pub taints: Option<Vec<Taint>>,
    /// Extra kubelet flags.
    pub kubelet_extra_args: BTreeMap<String, String>,
    /// Preflight errors to ignore.
    pub ignore_preflight_errors: Vec<String>,
    /// v1beta3's `imagePullPolicy`.
    pub image_pull_policy: Option<String>,
}

/// APIEndpoint as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiEndpointSpec {
    /// Advertise address.
    pub advertise_address: Option<String>,
    /// Bind port, as written (range checked by validation).
    pub bind_port: Option<i64>,
}

/// InitConfiguration as a file (or the flags) say it, version-independent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitSpec {
    /// `None` = kubeadm's one default token.
    pub bootstrap_tokens: Option<Vec<BootstrapTokenSpec>>,
    /// Node registration.
    pub node_registration: NodeRegistrationSpec,
    /// Local API endpoint.
    pub local_api_endpoint: ApiEndpointSpec,
    /// Certificate key.
    pub certificate_key: Option<String>,
    /// v1beta3's `skipPhases`.
    pub skip_phases: Vec<String>,
    /// v1beta3's `patches.directory`.
    pub patches_directory: Option<String>,
}

/// Networking as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkingSpec {
    /// Pod CIDR.
    pub pod_subnet: Option<String>,
    /// Service CIDR.
    pub service_subnet: Option<String>,
    /// DNS domain.
    pub dns_domain: Option<String>,
}

/// APIServer as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiServerSpec {
    /// Extra flags and volumes.
    pub component: ControlPlaneComponent,
    /// Extra SANs.
    pub cert_sans: Vec<String>,
    /// Go duration.
    pub timeout_for_control_plane: Option<String>,
}

/// Etcd as a file says it (both may be set: validation refuses that).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdSpec {
    /// Local etcd.
    pub local: Option<LocalEtcd>,
    /// External etcd.
    pub external: Option<ExternalEtcd>,
}

/// The DNS addon as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsSpec {
    /// v1beta2's `dns.type`.
    pub kind: Option<String>,
    /// Image repository override.
    pub image_repository: Option<String>,
    /// Image tag override.
    pub image_tag: Option<String>,
}

/// ClusterConfiguration as a file (or the flags) say it, version-independent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterSpec {
    /// Kubernetes version.
    pub kubernetes_version: Option<String>,
    /// Cluster name.
    pub cluster_name: Option<String>,
    /// Control-plane endpoint.
    pub control_plane_endpoint: Option<String>,
    /// Image repository.
    pub image_repository: Option<String>,
    /// Certificates directory.
    pub certificates_dir: Option<String>,
    /// Networking.
    pub networking: NetworkingSpec,
    /// API server.
    pub api_server: ApiServerSpec,
    /// Controller manager.
    pub controller_manager: ControlPlaneComponent,
    /// Scheduler.
    pub scheduler: ControlPlaneComponent,
    /// etcd.
    pub etcd: EtcdSpec,
    /// DNS addon.
    pub dns: DnsSpec,
    /// v1beta2's `useHyperKubeImage`.
    pub use_hyper_kube_image: bool,
    /// Feature gates.
    pub feature_gates: BTreeMap<String, bool>,
    /// kubeboot extension: `encryptionAlgorithm`.
    pub encryption_algorithm: Option<String>,
    /// kubeboot extension (kubeadm v1beta4): `certificateValidityPeriod`, a Go duration.
    pub certificate_validity_period: Option<String>,
    /// kubeboot extension (kubeadm v1beta4): `caCertificateValidityPeriod`, a Go duration.
    pub ca_certificate_validity_period: Option<String>,
    /// kubeboot extension: `certificateRenewalWindow`, a Go duration.
    pub certificate_renewal_window: Option<String>,
}

/// Discovery as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoverySpec {
    /// Bootstrap token for discovery.
    pub token: Option<String>,
    /// `host:port` of an API server.
    pub api_server_endpoint: Option<String>,
    /// CA public key pins.
    pub ca_cert_hashes: Vec<String>,
    /// Skip the pin check.
    pub unsafe_skip_ca_verification: bool,
    /// File discovery path or URL.
    pub file: Option<String>,
    /// TLS bootstrap token.
    pub tls_bootstrap_token: Option<String>,
    /// Go duration.
    pub timeout: Option<String>,
}

/// JoinControlPlane as a file says it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinControlPlaneSpec {
    /// Local API endpoint.
    pub local_api_endpoint: ApiEndpointSpec,
    /// Certificate key.
    pub certificate_key: Option<String>,
}

/// JoinConfiguration as a file says it, version-independent (not yet defaulted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinSpec {
    /// Node registration.
    pub node_registration: NodeRegistrationSpec,
    /// CA certificate path.
    pub ca_cert_path: Option<String>,
    /// Discovery.
    pub discovery: DiscoverySpec,
    /// Control-plane join settings.
    pub control_plane: Option<JoinControlPlaneSpec>,
    /// v1beta3's `skipPhases`.
    pub skip_phases: Vec<String>,
    /// v1beta3's `patches.directory`.
    pub patches_directory: Option<String>,
    /// The document's apiVersion.
    pub api_version: ApiVersion,
}

/// Everything one config file says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigFile {
    /// The InitConfiguration, if the file has one.
    pub init: Option<InitSpec>,
    /// The ClusterConfiguration, if the file has one.
    pub cluster: Option<ClusterSpec>,
    /// The JoinConfiguration, if the file has one.
    pub join: Option<JoinSpec>,
    /// KubeletConfiguration and KubeProxyConfiguration documents, in file order.
    pub component_configs: Vec<ComponentDocument>,
}

/// A config file that could not be read. `document` counts from 1, `line` is the line in
/// the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The YAML is malformed or a field is unknown or of the wrong type.
    #[error("{}{message}", position(*document, kind.as_deref(), *line))]
    Yaml {
        /// Document number.
        document: usize,
        /// The document's kind, when known.
        kind: Option<String>,
        /// Line in the whole file, when known.
        line: Option<usize>,
        /// What is wrong (the field path first).
        message: String,
    },
    /// `apiVersion` or `kind` is missing.
    #[error(
        "document {document}: {field} is missing; kubeadm config documents need apiVersion and kind"
    )]
    MissingTypeMeta {
        /// Document number.
        document: usize,
        /// `apiVersion` or `kind`.
        field: &'static str,
    },
    /// An `apiVersion` kubeboot does not read.
    #[error("document {document}: unknown apiVersion {api_version:?}; expected {expected}")]
    UnknownApiVersion {
        /// Document number.
        document: usize,
        /// What the file says.
        api_version: String,
        /// The supported ones, comma-separated.
        expected: String,
    },
    /// A kubeadm API version that is no longer read.
    #[error(
        "document {document}: apiVersion {api_version:?} is no longer supported; convert the file with \"kubeadm config migrate --old-config old.yaml --new-config new.yaml\" (kubeadm 1.20 writes {})",
        names::KUBEADM_V1BETA2
    )]
    OldApiVersion {
        /// Document number.
        document: usize,
        /// What the file says.
        api_version: String,
    },
    /// A kind the apiVersion does not have.
    #[error(
        "document {document}: unknown kind {kind:?} for apiVersion {api_version:?}; expected {expected}"
    )]
    UnknownKind {
        /// Document number.
        document: usize,
        /// What the file says.
        kind: String,
        /// Its apiVersion.
        api_version: String,
        /// The kinds of that apiVersion, comma-separated.
        expected: String,
    },
    /// The same kind twice.
    #[error(
        "document {document}: a second {kind} (the first is document {first}); a file holds one document of each kind"
    )]
    Duplicate {
        /// Document number.
        document: usize,
        /// The kind.
        kind: String,
        /// The first document of that kind.
        first: usize,
    },
    /// Neither InitConfiguration nor ClusterConfiguration (for `init`).
    #[error("no InitConfiguration or ClusterConfiguration kind was found in the YAML file")]
    NoInitOrCluster,
    /// No JoinConfiguration (for `join`; kubeadm's message, with the fix).
    #[error(
        "no JoinConfiguration found in the supplied config; a join config holds one JoinConfiguration document (see \"kubeboot config print join-defaults\")"
    )]
    NoJoin,
    /// A document `join` would ignore (kubeadm 1.20 ignores it silently; kubeboot refuses it
    /// so that no setting the user wrote is dropped unseen).
    #[error(
        "the {kind} document has no effect on join: a joining node takes the cluster's settings from the ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace; remove the document and keep only the JoinConfiguration"
    )]
    NotForJoin {
        /// The document's kind.
        kind: String,
    },
}

fn position(document: usize, kind: Option<&str>, line: Option<usize>) -> String {
    let mut s = format!("document {document}");
    if let Some(kind) = kind {
        s.push_str(&format!(" ({kind})"));
    }
    if let Some(line) = line {
        s.push_str(&format!(", line {line}"));
    }
    s.push_str(": ");
    s
}

const KUBEADM_KINDS: &[&str] = &[
    "InitConfiguration",
    "ClusterConfiguration",
    "JoinConfiguration",
];
const OLD_KUBEADM_VERSIONS: &[&str] = &[
    "kubeadm.k8s.io/v1alpha1",
    "kubeadm.k8s.io/v1alpha2",
    "kubeadm.k8s.io/v1alpha3",
    "kubeadm.k8s.io/v1beta1",
];

fn supported_api_versions() -> String {
    [
        names::KUBEADM_V1BETA2,
        names::KUBEADM_V1BETA3,
        KUBELET_CONFIG_API_VERSION,
        KUBE_PROXY_CONFIG_API_VERSION,
    ]
    .join(", ")
}

/// One YAML document of a file: its text and the line (1-based) of its first line.
struct RawDocument<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits on `---` lines as kubeadm's YAML reader does; documents that hold only blanks and
/// comments are dropped.
fn split_documents(content: &str) -> Vec<RawDocument<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in content.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            docs.push(RawDocument {
                text: &content[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(RawDocument {
        text: &content[start..],
        first_line: start_line,
    });
    docs.retain(|d| {
        d.text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        })
    });
    docs
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

fn yaml_error(
    document: usize,
    kind: Option<&str>,
    doc: &RawDocument<'_>,
    err: &yaml_serde::Error,
) -> LoadError {
    let line = err.location().map(|l| l.line() + doc.first_line - 1);
    let mut message = err.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    LoadError::Yaml {
        document,
        kind: kind.map(str::to_string),
        line,
        message,
    }
}

fn decode<'a, T: Deserialize<'a>>(
    document: usize,
    kind: &str,
    doc: &RawDocument<'a>,
) -> Result<T, LoadError> {
    yaml_serde::from_str(doc.text).map_err(|e| yaml_error(document, Some(kind), doc, &e))
}

/// Parses a kubeadm config file (one or more YAML documents).
///
/// # Errors
///
/// Malformed YAML, unknown or typo'd fields (with the line in the whole file), missing,
/// unknown or retired `apiVersion`s, unknown kinds and a kind given twice.
pub fn load(content: &str) -> Result<ConfigFile, LoadError> {
    let mut file = ConfigFile::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, doc) in split_documents(content).iter().enumerate() {
        let n = i + 1;
        let meta: TypeMeta =
            yaml_serde::from_str(doc.text).map_err(|e| yaml_error(n, None, doc, &e))?;
        let api_version =
            meta.api_version
                .filter(|s| !s.is_empty())
                .ok_or(LoadError::MissingTypeMeta {
                    document: n,
                    field: "apiVersion",
                })?;
        let kind = meta
            .kind
            .filter(|s| !s.is_empty())
            .ok_or(LoadError::MissingTypeMeta {
                document: n,
                field: "kind",
            })?;
        let unknown_kind = |expected: &[&str]| LoadError::UnknownKind {
            document: n,
            kind: kind.clone(),
            api_version: api_version.clone(),
            expected: expected.join(", "),
        };
        match api_version.as_str() {
            names::KUBEADM_V1BETA2 | names::KUBEADM_V1BETA3 => {
                if !KUBEADM_KINDS.contains(&kind.as_str()) {
                    return Err(unknown_kind(KUBEADM_KINDS));
                }
            }
            KUBELET_CONFIG_API_VERSION if kind != "KubeletConfiguration" => {
                return Err(unknown_kind(&["KubeletConfiguration"]));
            }
            KUBE_PROXY_CONFIG_API_VERSION if kind != "KubeProxyConfiguration" => {
                return Err(unknown_kind(&["KubeProxyConfiguration"]));
            }
            KUBELET_CONFIG_API_VERSION | KUBE_PROXY_CONFIG_API_VERSION => {}
            v if OLD_KUBEADM_VERSIONS.contains(&v) => {
                return Err(LoadError::OldApiVersion {
                    document: n,
                    api_version: api_version.clone(),
                });
            }
            _ => {
                return Err(LoadError::UnknownApiVersion {
                    document: n,
                    api_version: api_version.clone(),
                    expected: supported_api_versions(),
                });
            }
        }
        if let Some(&first) = seen.get(&kind) {
            return Err(LoadError::Duplicate {
                document: n,
                kind,
                first,
            });
        }
        seen.insert(kind.clone(), n);
        let v3 = api_version == names::KUBEADM_V1BETA3;
        match kind.as_str() {
            "InitConfiguration" => {
                file.init = Some(if v3 {
                    decode::<v1beta3::InitConfiguration>(n, &kind, doc)?.into()
                } else {
                    decode::<v1beta2::InitConfiguration>(n, &kind, doc)?.into()
                });
            }
            "ClusterConfiguration" => {
                file.cluster = Some(if v3 {
                    decode::<v1beta3::ClusterConfiguration>(n, &kind, doc)?.into()
                } else {
                    decode::<v1beta2::ClusterConfiguration>(n, &kind, doc)?.into()
                });
            }
            "JoinConfiguration" => {
                file.join = Some(if v3 {
                    decode::<v1beta3::JoinConfiguration>(n, &kind, doc)?.into()
                } else {
                    decode::<v1beta2::JoinConfiguration>(n, &kind, doc)?.into()
                });
            }
            _ => {
                // Checked above: a component config document, kept as written.
                file.component_configs.push(ComponentDocument {
                    api_version,
                    kind,
                    yaml: doc.text.to_string(),
                });
            }
        }
    }
    Ok(file)
}

/// Parses a config file for `init`: like [`load`], and the file must hold an
/// InitConfiguration or a ClusterConfiguration (kubeadm's rule).
///
/// # Errors
///
/// As [`load`], plus [`LoadError::NoInitOrCluster`].
pub fn load_for_init(content: &str) -> Result<ConfigFile, LoadError> {
    let file = load(content)?;
    if file.init.is_none() && file.cluster.is_none() {
        return Err(LoadError::NoInitOrCluster);
    }
    Ok(file)
}

/// Parses a config file for `join`: like [`load`], and the file must hold a
/// JoinConfiguration and nothing else.
///
/// # Errors
///
/// As [`load`], plus [`LoadError::NoJoin`] and [`LoadError::NotForJoin`] for an
/// InitConfiguration, ClusterConfiguration or component configuration document.
pub fn load_for_join(content: &str) -> Result<JoinSpec, LoadError> {
    let file = load(content)?;
    let others = [
        file.init.as_ref().map(|_| "InitConfiguration".to_string()),
        file.cluster
            .as_ref()
            .map(|_| "ClusterConfiguration".to_string()),
    ]
    .into_iter()
    .flatten()
    .chain(file.component_configs.iter().map(|d| d.kind.clone()));
    if file.join.is_none() {
        return Err(LoadError::NoJoin);
    }
    if let Some(kind) = others.into_iter().next() {
        return Err(LoadError::NotForJoin { kind });
    }
    file.join.ok_or(LoadError::NoJoin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINT_DEFAULTS_EDITED: &str = "\
apiVersion: kubeadm.k8s.io/v1beta2
bootstrapTokens:
- groups:
  - system:bootstrappers:kubeadm:default-node-token
  token: abcdef.0123456789abcdef
  ttl: 24h0m0s
  usages:
  - signing
  - authentication
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.1
  bindPort: 6443
nodeRegistration:
  criSocket: /run/containerd/containerd.sock
  name: node1
  taints:
  - effect: NoSchedule
    key: node-role.kubernetes.io/master
---
apiServer:
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta2
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns:
  type: CoreDNS
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: k8s.gcr.io
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
  podSubnet: 10.244.0.0/16
scheduler: {}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
";

    fn err(content: &str) -> String {
        load(content).unwrap_err().to_string()
    }

    #[test]
    fn print_init_defaults_with_edits_loads() {
        let f = load_for_init(PRINT_DEFAULTS_EDITED).unwrap();
        let init = f.init.unwrap();
        assert_eq!(init.node_registration.name.as_deref(), Some("node1"));
        assert_eq!(
            init.local_api_endpoint.advertise_address.as_deref(),
            Some("10.0.0.1")
        );
        let tokens = init.bootstrap_tokens.unwrap();
        assert_eq!(tokens[0].token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(tokens[0].ttl.as_deref(), Some("24h0m0s"));
        let taints = init.node_registration.taints.unwrap();
        assert_eq!(taints[0].key, "node-role.kubernetes.io/master");
        let cluster = f.cluster.unwrap();
        assert_eq!(
            cluster.networking.pod_subnet.as_deref(),
            Some("10.244.0.0/16")
        );
        assert_eq!(cluster.kubernetes_version.as_deref(), Some("v1.20.2"));
        assert_eq!(cluster.dns.kind.as_deref(), Some("CoreDNS"));
        assert_eq!(cluster.etcd.local.unwrap().data_dir, "/var/lib/etcd");
        assert_eq!(f.component_configs.len(), 1);
        assert_eq!(f.component_configs[0].kind, "KubeletConfiguration");
        assert!(
            f.component_configs[0]
                .yaml
                .contains("cgroupDriver: cgroupfs")
        );
    }

    #[test]
    fn v1beta3_skip_phases_kept() {
        let f = load_for_init(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nskipPhases:\n- addon/kube-proxy\n\
             nodeRegistration:\n  imagePullPolicy: Never\n  ignorePreflightErrors: [Swap]\npatches:\n  directory: /etc/p\n",
        )
        .unwrap();
        let init = f.init.unwrap();
        assert_eq!(init.skip_phases, vec!["addon/kube-proxy"]);
        assert_eq!(
            init.node_registration.image_pull_policy.as_deref(),
            Some("Never")
        );
        assert_eq!(init.node_registration.ignore_preflight_errors, vec!["Swap"]);
        assert_eq!(init.patches_directory.as_deref(), Some("/etc/p"));
        assert!(f.cluster.is_none());
    }

    #[test]
    fn v1beta3_cluster_with_encryption_algorithm_loads() {
        let f = load(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nencryptionAlgorithm: RSA-2048\n\
             dns:\n  imageTag: v1.8.0\n",
        )
        .unwrap();
        let c = f.cluster.unwrap();
        assert_eq!(c.encryption_algorithm.as_deref(), Some("RSA-2048"));
        assert_eq!(c.dns.image_tag.as_deref(), Some("v1.8.0"));
    }

    #[test]
    fn validity_periods_load_from_v1beta2_and_v1beta3() {
        for api in ["v1beta2", "v1beta3"] {
            let f = load(&format!(
                "apiVersion: kubeadm.k8s.io/{api}\nkind: ClusterConfiguration\n\
                 certificateValidityPeriod: 5m\ncaCertificateValidityPeriod: 8760h0m0s\n"
            ))
            .unwrap();
            let c = f.cluster.unwrap();
            assert_eq!(
                c.certificate_validity_period.as_deref(),
                Some("5m"),
                "{api}"
            );
            assert_eq!(
                c.ca_certificate_validity_period.as_deref(),
                Some("8760h0m0s"),
                "{api}"
            );
        }
    }

    #[test]
    fn typo_in_field_names_field_and_line() {
        let content = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n---\n\
                       apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nnodeRegistration:\n  nam: x\n";
        let e = load(content).unwrap_err();
        match &e {
            LoadError::Yaml {
                document,
                kind,
                line,
                message,
            } => {
                assert_eq!(*document, 2);
                assert_eq!(kind.as_deref(), Some("InitConfiguration"));
                assert_eq!(*line, Some(7));
                assert!(message.contains("nam"), "{message}");
                assert!(message.contains("nodeRegistration"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            e.to_string()
                .starts_with("document 2 (InitConfiguration), line 7: "),
            "{e}"
        );
    }

    #[test]
    fn v1beta3_field_in_v1beta2_is_unknown() {
        let e = err(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nskipPhases: [preflight]\n",
        );
        assert!(e.contains("skipPhases") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn v1beta2_field_in_v1beta3_is_unknown() {
        let e = err(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nuseHyperKubeImage: false\n",
        );
        assert!(e.contains("useHyperKubeImage"), "{e}");
        let e = err(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\ndns:\n  type: CoreDNS\n",
        );
        assert!(e.contains("type") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn unknown_kind_names_document_and_choices() {
        let e = err(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n---\n\
                     apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfig\n",
        );
        assert_eq!(
            e,
            "document 2: unknown kind \"InitConfig\" for apiVersion \"kubeadm.k8s.io/v1beta2\"; \
             expected InitConfiguration, ClusterConfiguration, JoinConfiguration"
        );
        let e = err("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeProxyConfiguration\n");
        assert!(e.contains("expected KubeletConfiguration"), "{e}");
    }

    #[test]
    fn unknown_api_version_lists_supported() {
        let e = err("apiVersion: kubeadm.k8s.io/v2\nkind: InitConfiguration\n");
        assert!(e.starts_with("document 1: unknown apiVersion \"kubeadm.k8s.io/v2\"; expected kubeadm.k8s.io/v1beta2"), "{e}");
    }

    #[test]
    fn v1beta1_is_no_longer_supported() {
        let e = err("apiVersion: kubeadm.k8s.io/v1beta1\nkind: InitConfiguration\n");
        assert!(
            e.contains("no longer supported") && e.contains("kubeadm config migrate"),
            "{e}"
        );
    }

    #[test]
    fn missing_kind_is_an_error() {
        assert_eq!(
            load("apiVersion: kubeadm.k8s.io/v1beta2\n").unwrap_err(),
            LoadError::MissingTypeMeta {
                document: 1,
                field: "kind"
            }
        );
    }

    #[test]
    fn duplicate_kind_is_an_error() {
        let e = load(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n---\n---\n\
             apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            LoadError::Duplicate {
                document: 2,
                kind: "ClusterConfiguration".into(),
                first: 1
            }
        );
    }

    #[test]
    fn malformed_yaml_has_file_line() {
        let e = load(
            "# comment\n---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nfoo: [\n",
        )
        .unwrap_err();
        match e {
            LoadError::Yaml { line: Some(l), .. } => assert!(l >= 5, "line {l}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_field() {
        let e = err(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nlocalAPIEndpoint:\n  bindPort: abc\n",
        );
        assert!(
            e.contains("localAPIEndpoint.bindPort") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn file_without_init_or_cluster_is_refused_for_init() {
        let e = load_for_init(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
        )
        .unwrap_err();
        assert_eq!(e, LoadError::NoInitOrCluster);
    }

    #[test]
    fn api_version_parses_short_and_full() {
        assert_eq!(ApiVersion::parse("v1beta3"), Some(ApiVersion::V1beta3));
        assert_eq!(
            ApiVersion::parse("kubeadm.k8s.io/v1beta2"),
            Some(ApiVersion::V1beta2)
        );
        assert_eq!(ApiVersion::parse("v1beta1"), None);
    }

    #[test]
    fn join_configuration_loads() {
        let f = load(
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    \
             token: abcdef.0123456789abcdef\n    apiServerEndpoint: 10.0.0.1:6443\n    caCertHashes: [\"sha256:00\"]\n",
        )
        .unwrap();
        let j = f.join.unwrap();
        assert_eq!(
            j.discovery.api_server_endpoint.as_deref(),
            Some("10.0.0.1:6443")
        );
        assert_eq!(j.discovery.ca_cert_hashes, vec!["sha256:00"]);
    }
}
