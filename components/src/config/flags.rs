//! `kubeboot init`'s flags as the user typed them, the facts about the host that defaulting
//! needs, and the one pure function that merges flags with `--config` into a validated
//! [`InitConfig`] (kubeadm: cmd/init.go `newInitData`, util/config
//! `LoadOrDefaultInitConfiguration`, validation `ValidateMixedArguments`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::InitConfig;
use super::defaults::{
    DEFAULT_TOKEN_DESCRIPTION, apply_dynamic_defaults, default_cluster, default_init,
    kubeboot_cluster_defaults,
};
use super::load::{BootstrapTokenSpec, ClusterSpec, InitSpec, LoadError, load_for_init};
use super::validate::{FieldError, merge_ignore_preflight_errors, validate_init};
use crate::Version;

/// The config file given with `--config`: its path (for messages) and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The path as the user gave it.
    pub path: String,
    /// The file's content.
    pub content: String,
}

/// `kubeboot init`'s flags, as typed. `None`/empty means "not given". Names are kubeadm's
/// flag names with `_` for `-`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitFlags {
    /// `--config`.
    pub config: Option<ConfigSource>,
    /// `--apiserver-advertise-address`.
    pub apiserver_advertise_address: Option<String>,
    /// `--apiserver-bind-port` (0 is refused by validation).
    pub apiserver_bind_port: Option<u16>,
    /// `--apiserver-cert-extra-sans`.
    pub apiserver_cert_extra_sans: Vec<String>,
    /// `--cert-dir`.
    pub cert_dir: Option<String>,
    /// `--control-plane-endpoint`.
    pub control_plane_endpoint: Option<String>,
    /// `--kubernetes-version`.
    pub kubernetes_version: Option<String>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--pod-network-cidr`.
    pub pod_network_cidr: Option<String>,
    /// `--service-cidr`.
    pub service_cidr: Option<String>,
    /// `--service-dns-domain`.
    pub service_dns_domain: Option<String>,
    /// `--image-repository`.
    pub image_repository: Option<String>,
    /// `--cri-socket`.
    pub cri_socket: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--token-ttl` (a Go duration such as `24h0m0s`; `0` = never expires).
    pub token_ttl: Option<String>,
    /// `--certificate-key`.
    pub certificate_key: Option<String>,
    /// `--upload-certs`.
    pub upload_certs: bool,
    /// `--skip-phases` (validated by the phase runner, not here).
    pub skip_phases: Vec<String>,
    /// `--ignore-preflight-errors` (entries may be comma-separated lists).
    pub ignore_preflight_errors: Vec<String>,
    /// `--feature-gates`, as typed: `Name=true,Other=false`.
    pub feature_gates: Option<String>,
    /// The names (without `--`) of every flag the user actually passed, `config` included;
    /// kubeadm's mixing rule looks at these.
    pub set_flags: Vec<String>,
}

/// `kubeboot join`'s flags, as typed (kubeadm: cmd/join.go `addJoinConfigFlags`,
/// `addJoinOtherFlags`). `None`/empty/`false` means "not given". `Debug` hides the tokens
/// and the certificate key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct JoinFlags {
    /// `--config` (read by the caller, as for init).
    pub config: Option<ConfigSource>,
    /// The positional `<host:port>` of an API server for token discovery (kubeadm takes at
    /// most one).
    pub endpoint: Option<String>,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--cri-socket`.
    pub cri_socket: Option<String>,
    /// `--apiserver-advertise-address` (control-plane join).
    pub apiserver_advertise_address: Option<String>,
    /// `--apiserver-bind-port` (control-plane join; 0 is refused by validation).
    pub apiserver_bind_port: Option<u16>,
    /// `--control-plane`.
    pub control_plane: bool,
    /// `--certificate-key` (control-plane join).
    pub certificate_key: Option<String>,
    /// `--discovery-file`: a kubeconfig path or an `https://` URL.
    pub discovery_file: Option<String>,
    /// `--discovery-token`.
    pub discovery_token: Option<String>,
    /// `--discovery-token-ca-cert-hash` (repeatable; entries may be comma-separated lists).
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// `--discovery-token-unsafe-skip-ca-verification`.
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// `--tls-bootstrap-token`.
    pub tls_bootstrap_token: Option<String>,
    /// `--token`: both tokens, where they are not given on their own.
    pub token: Option<String>,
    /// `--skip-phases` (validated by the phase runner, not here).
    pub skip_phases: Vec<String>,
    /// `--experimental-patches`.
    pub experimental_patches: Option<String>,
    /// `--ignore-preflight-errors` (entries may be comma-separated lists).
    pub ignore_preflight_errors: Vec<String>,
    /// The names (without `--`) of every flag the user actually passed, `config` included;
    /// kubeadm's mixing rule looks at these.
    pub set_flags: Vec<String>,
}

impl std::fmt::Debug for JoinFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("JoinFlags")
            .field("config", &self.config.as_ref().map(|c| &c.path))
            .field("endpoint", &self.endpoint)
            .field("node_name", &self.node_name)
            .field("cri_socket", &self.cri_socket)
            .field(
                "apiserver_advertise_address",
                &self.apiserver_advertise_address,
            )
            .field("apiserver_bind_port", &self.apiserver_bind_port)
            .field("control_plane", &self.control_plane)
            .field("certificate_key", &hide(&self.certificate_key))
            .field("discovery_file", &self.discovery_file)
            .field("discovery_token", &hide(&self.discovery_token))
            .field(
                "discovery_token_ca_cert_hash",
                &self.discovery_token_ca_cert_hash,
            )
            .field(
                "discovery_token_unsafe_skip_ca_verification",
                &self.discovery_token_unsafe_skip_ca_verification,
            )
            .field("tls_bootstrap_token", &hide(&self.tls_bootstrap_token))
            .field("token", &hide(&self.token))
            .field("skip_phases", &self.skip_phases)
            .field("experimental_patches", &self.experimental_patches)
            .field("ignore_preflight_errors", &self.ignore_preflight_errors)
            .field("set_flags", &self.set_flags)
            .finish()
    }
}

/// What defaulting needs to know about the node; gathered by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// The host name (the default node name, lower-cased).
    pub hostname: String,
    /// The address of the default-route interface (kubeadm: ChooseAPIServerBindAddress).
    pub default_address: Option<IpAddr>,
    /// Every address of the node; the advertise address must be one of them (when known).
    pub local_addresses: Vec<IpAddr>,
    /// The version of this node's kube-apiserver binary: the default `kubernetesVersion`.
    pub detected_version: Option<Version>,
}

/// Why the flags and config file do not make a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Flags kubeadm refuses next to `--config` (kubeadm's message, verbatim).
    #[error("can not mix '--config' with arguments [{}]", flags.join(" "))]
    MixedArguments {
        /// The offending flag names, sorted.
        flags: Vec<String>,
    },
    /// The config file could not be read.
    #[error("invalid config file {path:?}")]
    Load {
        /// The file.
        path: String,
        /// What is wrong in it.
        #[source]
        source: LoadError,
    },
    /// Invalid fields, one per line.
    #[error("{}", render(.0))]
    Invalid(Vec<FieldError>),
    /// A key of the cluster's `kube-system/kubeadm-config` ConfigMap cannot be used.
    #[error("the {key} in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace {message}")]
    KubeadmConfig {
        /// `ClusterConfiguration` or `ClusterStatus`.
        key: &'static str,
        /// What is wrong with it, and the fix where there is one.
        message: String,
    },
}

fn render(errs: &[FieldError]) -> String {
    errs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// True for a flag kubeadm allows next to `--config` (kubeadm:
/// apis/kubeadm/validation/validation.go `isAllowedFlag`).
pub fn is_allowed_with_config(flag: &str) -> bool {
    ALLOWED_WITH_CONFIG.contains(&flag) || flag.starts_with("skip-")
}

/// kubeadm 1.20's `isAllowedFlag` list, plus kubeboot's own `bin-dir` (where the binaries
/// are is a fact of the node, not of the cluster config), `pod-network` and `static-pod-runner`; any `skip-*` flag
/// is allowed too.
pub const ALLOWED_WITH_CONFIG: &[&str] = &[
    "bin-dir",
    "pod-network",
    "static-pod-runner",
    "config",
    "ignore-preflight-errors",
    "dry-run",
    "kubeconfig",
    "node-name",
    "cri-socket",
    "kubeconfig-dir",
    "upload-certs",
    "experimental-patches",
    "print-join-command",
    "rootfs",
    "v",
];

/// kubeadm's ValidateMixedArguments: with `--config`, only the flags of
/// [`is_allowed_with_config`] may be set (`set_flags` includes `config` itself).
///
/// # Errors
///
/// [`ConfigError::MixedArguments`] naming every other flag, sorted.
pub fn refuse_mixed_arguments(set_flags: &[String]) -> Result<(), ConfigError> {
    let mut mixed: Vec<String> = set_flags
        .iter()
        .filter(|f| !is_allowed_with_config(f))
        .cloned()
        .collect();
    mixed.sort();
    mixed.dedup();
    if mixed.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::MixedArguments { flags: mixed })
    }
}

/// Renames each error's config field to the flag the user set it with (the first flag in
/// `table` that sets the field and was passed), so a message names what the user typed.
pub(crate) fn name_flags(errs: &mut [FieldError], table: &[(&str, &str)], set_flags: &[String]) {
    for e in errs {
        if let Some((flag, _)) = table
            .iter()
            .find(|(flag, field)| *field == e.field && set_flags.iter().any(|s| s == flag))
        {
            e.field = format!("--{flag}");
        }
    }
}

/// Config field paths and the flags that set them, so an error names what the user typed.
const FLAG_FIELDS: &[(&str, &str)] = &[
    (
        "apiserver-advertise-address",
        "localAPIEndpoint.advertiseAddress",
    ),
    ("apiserver-bind-port", "localAPIEndpoint.bindPort"),
    ("apiserver-cert-extra-sans", "apiServer.certSANs"),
    ("cert-dir", "certificatesDir"),
    ("control-plane-endpoint", "controlPlaneEndpoint"),
    ("kubernetes-version", "kubernetesVersion"),
    ("node-name", "nodeRegistration.name"),
    ("pod-network-cidr", "networking.podSubnet"),
    ("service-cidr", "networking.serviceSubnet"),
    ("service-dns-domain", "networking.dnsDomain"),
    ("image-repository", "imageRepository"),
    ("cri-socket", "nodeRegistration.criSocket"),
    ("token", "bootstrapTokens[0].token"),
    ("token-ttl", "bootstrapTokens[0].ttl"),
    ("certificate-key", "certificateKey"),
    ("feature-gates", "featureGates"),
];

/// Parses `--feature-gates` (`Name=true,Other=false`).
///
/// # Errors
///
/// An entry without `=` or with a value that is not a boolean.
pub fn parse_feature_gates(s: &str) -> Result<BTreeMap<String, bool>, FieldError> {
    let mut gates = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(k, v)| match v.trim() {
            "true" | "True" | "TRUE" | "1" | "t" | "T" => Some((k.trim(), true)),
            "false" | "False" | "FALSE" | "0" | "f" | "F" => Some((k.trim(), false)),
            _ => None,
        });
        match parsed {
            Some((k, v)) if !k.is_empty() => {
                gates.insert(k.to_string(), v);
            }
            _ => {
                return Err(FieldError::invalid(
                    "--feature-gates",
                    entry,
                    "is not a feature gate setting: expected Name=true or Name=false",
                ));
            }
        }
    }
    Ok(gates)
}

fn from_flags(flags: &InitFlags, errs: &mut Vec<FieldError>) -> (InitSpec, ClusterSpec) {
    let mut i = InitSpec::default();
    let mut c = ClusterSpec::default();
    i.local_api_endpoint.advertise_address = flags.apiserver_advertise_address.clone();
    i.local_api_endpoint.bind_port = flags.apiserver_bind_port.map(i64::from);
    i.certificate_key = flags.certificate_key.clone();
    // kubeadm: cmd/options/token.go ApplyTo, with init's description.
    i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
        token: flags.token.clone(),
        description: Some(DEFAULT_TOKEN_DESCRIPTION.to_string()),
        ttl: flags.token_ttl.clone(),
        ..Default::default()
    }]);
    c.api_server.cert_sans = flags.apiserver_cert_extra_sans.clone();
    c.certificates_dir = flags.cert_dir.clone();
    c.control_plane_endpoint = flags.control_plane_endpoint.clone();
    c.kubernetes_version = flags.kubernetes_version.clone();
    c.networking.pod_subnet = flags.pod_network_cidr.clone();
    c.networking.service_subnet = flags.service_cidr.clone();
    c.networking.dns_domain = flags.service_dns_domain.clone();
    c.image_repository = flags.image_repository.clone();
    if let Some(fg) = &flags.feature_gates {
        match parse_feature_gates(fg) {
            Ok(g) => c.feature_gates = g,
            Err(e) => errs.push(e),
        }
    }
    (i, c)
}

/// Merges the flags with the `--config` file (if any), applies kubeadm's defaults and
/// validates the result, as `kubeadm init` does before its first phase.
///
/// With `--config`, only the flags kubeadm allows ([`ALLOWED_WITH_CONFIG`], `skip-*`) may be
/// set; `--node-name` and `--cri-socket` then override the file, `--ignore-preflight-errors`
/// adds to its list and `--skip-phases` replaces v1beta3's `skipPhases`.
///
/// # Errors
///
/// [`ConfigError::MixedArguments`], [`ConfigError::Load`] for a file that does not parse, and
/// [`ConfigError::Invalid`] with every invalid field, named as the user wrote it (a flag's
/// name when the flag set it).
pub fn resolve_init(flags: &InitFlags, host: &HostFacts) -> Result<InitConfig, ConfigError> {
    let mut errs = Vec::new();
    let (mut init, mut cluster, component_configs) = match &flags.config {
        Some(src) => {
            refuse_mixed_arguments(&flags.set_flags)?;
            let file = load_for_init(&src.content).map_err(|source| ConfigError::Load {
                path: src.path.clone(),
                source,
            })?;
            (
                file.init.unwrap_or_default(),
                file.cluster.unwrap_or_default(),
                file.component_configs,
            )
        }
        None => {
            let (i, c) = from_flags(flags, &mut errs);
            (i, c, Vec::new())
        }
    };

    // Flags that win over the file (kubeadm: cmd/init.go newInitData).
    if let Some(name) = &flags.node_name {
        init.node_registration.name = Some(name.clone());
    }
    if let Some(sock) = &flags.cri_socket {
        init.node_registration.cri_socket = Some(sock.clone());
    }
    if !flags.skip_phases.is_empty() {
        init.skip_phases = flags.skip_phases.clone();
    }
    let ignore = merge_ignore_preflight_errors(
        &flags.ignore_preflight_errors,
        &init.node_registration.ignore_preflight_errors,
    );
    // validate_init checks the file's own list ("all" refused); the merge above reports it.
    let file_ignore = std::mem::take(&mut init.node_registration.ignore_preflight_errors);
    let ignore = match ignore {
        Ok(list) => list,
        Err(e) => {
            errs.extend(e);
            file_ignore
        }
    };

    default_init(&mut init);
    default_cluster(&mut cluster);
    kubeboot_cluster_defaults(&mut cluster);
    apply_dynamic_defaults(&mut init, &mut cluster, host);
    match validate_init(&init, &cluster, host) {
        Ok(mut cfg) if errs.is_empty() => {
            cfg.node.ignore_preflight_errors = ignore;
            cfg.component_configs = component_configs;
            return Ok(cfg);
        }
        Ok(_) => {}
        Err(more) => errs.extend(more),
    }
    name_flags(&mut errs, FLAG_FIELDS, &flags.set_flags);
    Err(ConfigError::Invalid(errs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyAlgorithm;
    use crate::version::v;

    fn host() -> HostFacts {
        HostFacts {
            hostname: "Node1".into(),
            default_address: Some("10.0.0.1".parse().unwrap()),
            local_addresses: vec!["10.0.0.1".parse().unwrap(), "10.0.1.1".parse().unwrap()],
            detected_version: Some(v(1, 20, 2)),
        }
    }

    fn with_config(content: &str, set: &[&str]) -> InitFlags {
        let mut set_flags = vec!["config".to_string()];
        set_flags.extend(set.iter().map(|s| s.to_string()));
        InitFlags {
            config: Some(ConfigSource {
                path: "/tmp/kubeadm.yaml".into(),
                content: content.into(),
            }),
            set_flags,
            ..Default::default()
        }
    }

    const CLUSTER: &str = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16\n";

    #[test]
    fn no_flags_gives_kubeadm_defaults() {
        let cfg = resolve_init(&InitFlags::default(), &host()).unwrap();
        assert_eq!(cfg.node.name, "node1");
        assert_eq!(
            cfg.local_api_endpoint.advertise_address.to_string(),
            "10.0.0.1"
        );
        assert_eq!(cfg.cluster.kubernetes_version, v(1, 20, 2));
        assert_eq!(cfg.cluster.image_repository, "k8s.gcr.io");
        assert_eq!(cfg.cluster.certificates_dir, "/etc/kubernetes/pki");
        assert_eq!(cfg.cluster.cluster_name, "kubernetes");
        assert_eq!(cfg.bootstrap_tokens.len(), 1);
        assert_eq!(cfg.bootstrap_tokens[0].token, None);
        assert_eq!(
            cfg.bootstrap_tokens[0].description.as_deref(),
            Some(DEFAULT_TOKEN_DESCRIPTION)
        );
        assert!(cfg.node.taints.is_none());
        assert_eq!(cfg.cluster.encryption_algorithm, KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn flags_set_fields() {
        let flags = InitFlags {
            pod_network_cidr: Some("10.244.0.0/16".into()),
            apiserver_advertise_address: Some("10.0.1.1".into()),
            apiserver_bind_port: Some(8443),
            token: Some("abcdef.0123456789abcdef".into()),
            token_ttl: Some("0".into()),
            kubernetes_version: Some("v1.26.3".into()),
            feature_gates: Some("PublicKeysECDSA=true".into()),
            skip_phases: vec!["addon/kube-proxy".into()],
            ignore_preflight_errors: vec!["Swap,NumCPU".into()],
            control_plane_endpoint: Some("lb.example.com".into()),
            set_flags: vec!["pod-network-cidr".into()],
            ..Default::default()
        };
        let cfg = resolve_init(&flags, &host()).unwrap();
        assert_eq!(
            cfg.cluster.networking.pod_subnet.unwrap().to_string(),
            "10.244.0.0/16"
        );
        assert_eq!(cfg.local_api_endpoint.bind_port, 8443);
        assert_eq!(
            cfg.bootstrap_tokens[0].token.as_deref(),
            Some("abcdef.0123456789abcdef")
        );
        assert_eq!(cfg.bootstrap_tokens[0].ttl_secs, 0);
        assert_eq!(cfg.cluster.image_repository, "registry.k8s.io");
        assert_eq!(
            cfg.cluster.feature_gates.get("PublicKeysECDSA"),
            Some(&true)
        );
        assert_eq!(cfg.skip_phases, vec!["addon/kube-proxy"]);
        assert_eq!(cfg.node.ignore_preflight_errors, vec!["numcpu", "swap"]);
        assert_eq!(
            cfg.cluster.control_plane_endpoint.as_deref(),
            Some("lb.example.com:8443")
        );
    }

    #[test]
    fn config_with_advertise_flag_is_refused() {
        let flags = with_config(
            CLUSTER,
            &[
                "apiserver-advertise-address",
                "pod-network-cidr",
                "node-name",
                "v",
            ],
        );
        let e = resolve_init(&flags, &host()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "can not mix '--config' with arguments [apiserver-advertise-address pod-network-cidr]"
        );
    }

    #[test]
    fn config_with_allowed_flags_is_accepted() {
        let mut flags = with_config(
            CLUSTER,
            &[
                "node-name",
                "cri-socket",
                "ignore-preflight-errors",
                "upload-certs",
                "skip-phases",
                "skip-token-print",
                "dry-run",
                "v",
            ],
        );
        flags.node_name = Some("Override".into());
        flags.cri_socket = Some("unix:///run/containerd/containerd.sock".into());
        flags.skip_phases = vec!["preflight".into()];
        flags.ignore_preflight_errors = vec!["all".into()];
        let cfg = resolve_init(&flags, &host()).unwrap();
        assert_eq!(cfg.node.name, "override");
        assert_eq!(
            cfg.node.cri_socket.as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(cfg.skip_phases, vec!["preflight"]);
        assert_eq!(cfg.node.ignore_preflight_errors, vec!["all"]);
        assert_eq!(
            cfg.cluster.networking.pod_subnet.unwrap().to_string(),
            "10.244.0.0/16"
        );
    }

    #[test]
    fn allowed_flag_list_matches_kubeadm() {
        for f in [
            "config",
            "ignore-preflight-errors",
            "dry-run",
            "kubeconfig",
            "node-name",
            "cri-socket",
            "kubeconfig-dir",
            "upload-certs",
            "experimental-patches",
            "print-join-command",
            "rootfs",
            "v",
            "skip-phases",
            "skip-token-print",
            "skip-certificate-key-print",
        ] {
            assert!(is_allowed_with_config(f), "{f}");
        }
        for f in [
            "token",
            "token-ttl",
            "feature-gates",
            "certificate-key",
            "kubernetes-version",
            "apiserver-bind-port",
        ] {
            assert!(!is_allowed_with_config(f), "{f}");
        }
    }

    #[test]
    fn v1beta3_skip_phases_kept() {
        let content = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nskipPhases: [addon/coredns]\n";
        let cfg = resolve_init(&with_config(content, &[]), &host()).unwrap();
        assert_eq!(cfg.skip_phases, vec!["addon/coredns"]);
        let mut flags = with_config(content, &["skip-phases"]);
        flags.skip_phases = vec!["preflight".into()];
        assert_eq!(
            resolve_init(&flags, &host()).unwrap().skip_phases,
            vec!["preflight"]
        );
    }

    #[test]
    fn component_configs_pass_through() {
        let content = format!(
            "{CLUSTER}---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: 0\n"
        );
        let cfg = resolve_init(&with_config(&content, &[]), &host()).unwrap();
        assert_eq!(cfg.component_configs.len(), 1);
        assert_eq!(cfg.component_configs[0].kind, "KubeProxyConfiguration");
    }

    #[test]
    fn init_applies_kubeboots_controller_manager_defaults() {
        // From flags.
        let flags = InitFlags {
            pod_network_cidr: Some("10.244.0.0/16".into()),
            set_flags: vec!["pod-network-cidr".into()],
            ..Default::default()
        };
        let cfg = resolve_init(&flags, &host()).unwrap();
        let args = &cfg.cluster.controller_manager.extra_args;
        assert_eq!(args["controllers"], crate::pod_cidr::KUBEBOOT_CONTROLLERS);
        assert_eq!(args["kube-api-qps"], "100");
        assert_eq!(args["kube-api-burst"], "200");
        // From --config, the user's own values kept.
        let content = format!(
            "{CLUSTER}controllerManager:\n  extraArgs:\n    allocate-node-cidrs: \"false\"\n    kube-api-qps: \"30\"\n"
        );
        let cfg = resolve_init(&with_config(&content, &[]), &host()).unwrap();
        let args = &cfg.cluster.controller_manager.extra_args;
        assert!(!args.contains_key("controllers"), "{args:?}");
        assert_eq!(args["allocate-node-cidrs"], "false");
        assert_eq!(args["kube-api-qps"], "30");
        assert_eq!(args["kube-api-burst"], "200");
        // Without a pod subnet the controller-manager allocates nothing: node IPAM stays.
        let cfg = resolve_init(&InitFlags::default(), &host()).unwrap();
        let args = &cfg.cluster.controller_manager.extra_args;
        assert!(!args.contains_key("controllers"), "{args:?}");
        assert_eq!(args["kube-api-qps"], "100");
    }

    #[test]
    fn bad_file_names_path_and_document() {
        let content =
            "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nnodeRegistraton: {}\n";
        let e = resolve_init(&with_config(content, &[]), &host()).unwrap_err();
        assert_eq!(e.to_string(), "invalid config file \"/tmp/kubeadm.yaml\"");
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(
            source.starts_with(
                "document 1 (InitConfiguration), line 3: unknown field `nodeRegistraton`"
            ),
            "{source}"
        );
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let flags = InitFlags {
            pod_network_cidr: Some("10.244.0.0/33".into()),
            service_cidr: Some("10.96.0.0/12".into()),
            set_flags: vec!["pod-network-cidr".into(), "service-cidr".into()],
            ..Default::default()
        };
        let e = resolve_init(&flags, &host()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--pod-network-cidr: \"10.244.0.0/33\" is not a valid CIDR"
        );
    }

    #[test]
    fn advertise_address_not_on_node_names_addresses_and_fix() {
        let flags = InitFlags {
            apiserver_advertise_address: Some("192.168.9.9".into()),
            set_flags: vec!["apiserver-advertise-address".into()],
            ..Default::default()
        };
        let e = resolve_init(&flags, &host()).unwrap_err().to_string();
        assert!(e.starts_with("--apiserver-advertise-address: \"192.168.9.9\" is not an address of this node (it has 10.0.0.1, 10.0.1.1)"), "{e}");
    }

    #[test]
    fn all_errors_at_once_one_line_each() {
        let flags = InitFlags {
            pod_network_cidr: Some("10.96.0.0/16".into()),
            apiserver_bind_port: Some(0),
            token: Some("short".into()),
            feature_gates: Some("Foo".into()),
            ..Default::default()
        };
        let e = resolve_init(&flags, &host()).unwrap_err();
        let ConfigError::Invalid(list) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(list.len(), 4, "{list:#?}");
        assert_eq!(e.to_string().lines().count(), 4);
    }

    #[test]
    fn all_in_file_is_refused() {
        let content = "apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nnodeRegistration:\n  ignorePreflightErrors: [all]\n";
        let e = resolve_init(&with_config(content, &[]), &host())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be used in a configuration file"), "{e}");
    }

    #[test]
    fn no_version_anywhere_names_the_fix() {
        let h = HostFacts {
            detected_version: None,
            ..host()
        };
        let e = resolve_init(&InitFlags::default(), &h)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pass --kubernetes-version or put kube-apiserver on the node"),
            "{e}"
        );
    }
}
