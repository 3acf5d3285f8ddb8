//! Validation of the defaulted, version-independent configuration into kubeboot's internal
//! form (kubeadm: apis/kubeadm/validation/validation.go). Every field error is collected, so
//! the user fixes a file in one go.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::duration::{ceil_secs, parse_go_duration};
use super::flags::HostFacts;
use super::load::{
    ApiEndpointSpec, BootstrapTokenSpec, ClusterSpec, InitSpec, NodeRegistrationSpec,
};
use super::{
    ApiEndpoint, ApiServer, BootstrapToken, ClusterConfig, Etcd, InitConfig, KeyAlgorithm,
    Networking, NodeRegistration,
};
use crate::version::{Version, v};

/// The oldest control-plane version kubeboot runs.
pub const MIN_SUPPORTED_VERSION: Version = v(1, 20, 0);
/// The newest control-plane minor kubeboot runs (any patch of it).
pub const MAX_SUPPORTED_MINOR: (u32, u32) = (1, 33);
/// kubeadm: constants.MaximumBitsForServiceSubnet.
pub const MAX_SERVICE_SUBNET_BITS: u8 = 20;
/// kubeadm: constants.MinimumAddressesInServiceSubnet.
pub const MIN_SERVICE_SUBNET_ADDRESSES: u128 = 10;
/// kubeadm: constants.MinimumAddressesInPodSubnet.
pub const MIN_POD_SUBNET_ADDRESSES: u128 = 14;
/// kubeadm: constants.PodSubnetNodeMaskMaxDiff.
pub const POD_SUBNET_NODE_MASK_MAX_DIFF: u8 = 16;
/// kubeadm's feature gates from v1.20 to v1.33 (features.InitFeatureGates of each release).
pub const KNOWN_FEATURE_GATES: &[&str] = &[
    "IPv6DualStack",
    "PublicKeysECDSA",
    "RootlessControlPlane",
    "UnversionedKubeletConfigMap",
    "EtcdLearnerMode",
    "UpgradeAddonsBeforeControlPlane",
    "WaitForAllControlPlaneComponents",
    "ControlPlaneKubeletLocalMode",
    "NodeLocalCRISocket",
];

/// One invalid field: `networking.podSubnet: "10.244.0.0/33" is not a valid CIDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field as the user wrote it: a config path (`networking.podSubnet`) or a flag
    /// (`--pod-network-cidr`).
    pub field: String,
    /// The offending value, if there is one.
    pub value: Option<String>,
    /// What is wrong and, where there is one, the fix.
    pub message: String,
}

impl FieldError {
    /// An error about a value.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            value: Some(value.into()),
            message: message.into(),
        }
    }

    /// An error about a field with no value to show (missing, or a rule across fields).
    pub fn other(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            value: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}: {:?} {}", self.field, v, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// True for a DNS-1123 subdomain (k8s.io/apimachinery validation.IsDNS1123Subdomain).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

const DNS1123_MESSAGE: &str = "must be a valid DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters";

/// True for a valid bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
pub fn is_bootstrap_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    s.split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// kubeadm's ParseHostPort: `host[:port]`, host an IP or DNS-1123 subdomain. Returns host and
/// port (if any).
pub fn parse_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return None,
        },
    };
    if host.parse::<IpAddr>().is_ok() || is_dns1123_subdomain(host) {
        Some((host.to_string(), port))
    } else {
        None
    }
}

fn valid_san(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
        || is_dns1123_subdomain(s)
        || s.strip_prefix("*.").is_some_and(is_dns1123_subdomain)
}

fn check_sans(field: &str, sans: &[String], errs: &mut Vec<FieldError>) -> Vec<String> {
    for san in sans {
        if !valid_san(&san.to_lowercase()) {
            errs.push(FieldError::invalid(
                field,
                san,
                "is not a valid IP address, DNS name or wildcard DNS name (*.example.com)",
            ));
        }
    }
    sans.iter().map(|s| s.to_lowercase()).collect()
}

fn check_absolute(field: &str, path: &str, errs: &mut Vec<FieldError>) {
    if !path.starts_with('/') {
        errs.push(FieldError::invalid(field, path, "is not an absolute path"));
    }
}

/// Why `path`, a directory kubeboot keeps files in and deletes from on reset (the
/// certificate directory, etcd's data directory), is not acceptable: relative, not
/// normalized, `/`, or a system directory. `None` when it is fine.
pub fn check_node_dir(path: &Path) -> Option<String> {
    use crate::layout::{is_normalized_absolute, protected_reason};
    const WHY: &str = "kubeboot deletes what it keeps there on reset";
    if !path.is_absolute() {
        return Some("must be an absolute path".into());
    }
    if !is_normalized_absolute(path) {
        return Some(
            "must be a normalized absolute path, without \".\", \"..\", \"//\" or a trailing \"/\""
                .into(),
        );
    }
    if path == Path::new("/") {
        return Some(format!(
            "must not be the root directory \"/\": {WHY}; use a directory of its own"
        ));
    }
    protected_reason(path).map(|_| {
        format!("must not be a system directory such as /etc, /var or /var/lib: {WHY}; use a directory of its own")
    })
}

/// Why `path`, a file a component flag names that kubeboot acts on, is not acceptable:
/// relative, not normalized, a system directory, or a file directly in `/` (whose directory
/// would be the root).
pub fn check_node_file(path: &Path) -> Option<String> {
    if let Some(reason) = check_node_dir(path) {
        return Some(reason);
    }
    (path.parent() == Some(Path::new("/"))).then(|| {
        "must not be directly in the root directory \"/\": put it in a directory (such as /etc/kubernetes/pki)".to_string()
    })
}

/// The component flags (`extraArgs`) naming paths kubeboot later acts on, checked like the
/// configuration's own path fields.
fn check_path_args(c: &ClusterSpec, errs: &mut Vec<FieldError>) {
    let mut check = |field: String, value: &str, reason: Option<String>| {
        if let Some(message) = reason {
            errs.push(FieldError::invalid(field, value, message));
        }
    };
    for arg in ["client-ca-file"] {
        if let Some(v) = c.api_server.component.extra_args.get(arg) {
            check(
                format!("apiServer.extraArgs.{arg}"),
                v,
                check_node_file(Path::new(v)),
            );
        }
    }
    if let Some(local) = &c.etcd.local {
        check(
            "etcd.local.dataDir".into(),
            &local.data_dir,
            check_node_dir(Path::new(&local.data_dir)),
        );
        if let Some(v) = local.extra_args.get("data-dir") {
            check(
                "etcd.local.extraArgs.data-dir".into(),
                v,
                check_node_dir(Path::new(v)),
            );
        }
    }
    if let Some(dir) = &c.certificates_dir {
        check(
            "certificatesDir".into(),
            dir,
            check_node_dir(Path::new(dir)),
        );
    }
}

fn range_size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if host_bits >= 128 {
        u128::MAX
    } else {
        1u128 << host_bits
    }
}

fn parse_subnet(
    field: &str,
    value: &str,
    min_addresses: u128,
    errs: &mut Vec<FieldError>,
) -> Option<IpNet> {
    if value.contains(',') {
        errs.push(FieldError::invalid(
            field,
            value,
            "is a dual-stack list; kubeboot supports one CIDR",
        ));
        return None;
    }
    match value.trim().parse::<IpNet>() {
        Ok(net) => {
            let net = net.trunc();
            if range_size(&net) < min_addresses {
                errs.push(FieldError::invalid(
                    field,
                    value,
                    format!("is too small: it must hold at least {min_addresses} addresses"),
                ));
            }
            Some(net)
        }
        Err(_) => {
            errs.push(FieldError::invalid(field, value, "is not a valid CIDR"));
            None
        }
    }
}

fn check_version(value: Option<&str>, errs: &mut Vec<FieldError>) -> Option<Version> {
    const FIELD: &str = "kubernetesVersion";
    let Some(value) = value else {
        errs.push(FieldError::other(
            FIELD,
            "is not set and no kube-apiserver binary was found on this node (kubeadm's default \"stable-1\" \
             needs the internet); pass --kubernetes-version or put kube-apiserver on the node",
        ));
        return None;
    };
    let is_label = ["stable", "latest", "ci/", "release/"]
        .iter()
        .any(|p| value.starts_with(p));
    if is_label {
        errs.push(FieldError::invalid(
            FIELD,
            value,
            "is a release label, which kubeboot cannot resolve offline; give a version such as v1.20.2",
        ));
        return None;
    }
    let version = match value.parse::<Version>() {
        Ok(v) => v,
        Err(_) => {
            errs.push(FieldError::invalid(
                FIELD,
                value,
                "is not a valid version: expected vMAJOR.MINOR.PATCH, e.g. v1.20.2",
            ));
            return None;
        }
    };
    let minor = version.minor_pair();
    if minor < MIN_SUPPORTED_VERSION.minor_pair() || minor > MAX_SUPPORTED_MINOR {
        errs.push(FieldError::invalid(
            FIELD,
            value,
            format!(
                "is not supported: kubeboot runs control planes v{}.{} to v{}.{}",
                MIN_SUPPORTED_VERSION.major,
                MIN_SUPPORTED_VERSION.minor,
                MAX_SUPPORTED_MINOR.0,
                MAX_SUPPORTED_MINOR.1
            ),
        ));
        return None;
    }
    Some(version)
}

fn node_mask(c: &ClusterSpec, ipv6: bool) -> Result<u8, String> {
    let arg = "node-cidr-mask-size";
    match c
        .controller_manager
        .extra_args
        .get(arg)
        .filter(|v| !v.is_empty())
    {
        Some(v) => v
            .parse()
            .map_err(|_| format!("controllerManager.extraArgs.{arg} {v:?} is not an integer")),
        None => Ok(if ipv6 { 64 } else { 24 }),
    }
}

/// Validates a defaulted ClusterConfiguration and converts it to the internal form.
///
/// # Errors
///
/// Every invalid field, one [`FieldError`] each.
pub fn validate_cluster(c: &ClusterSpec) -> Result<ClusterConfig, Vec<FieldError>> {
    let mut errs = Vec::new();
    let cluster = check_cluster(c, Origin::User, &mut errs);
    match cluster {
        Some(cluster) if errs.is_empty() => Ok(cluster),
        _ => Err(errs),
    }
}

/// Whose ClusterConfiguration is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The user's file or flags: kubeboot's own refusals apply.
    User,
    /// What a cluster already holds (kubeadm-config): settings kubeadm accepts but kubeboot
    /// would not have written (a feature gate of a newer kubeadm, `dns.type: kube-dns`,
    /// `useHyperKubeImage`) concern the cluster's creator, not a joining node, and pass.
    Cluster,
}

pub(crate) fn check_cluster(
    c: &ClusterSpec,
    origin: Origin,
    errs: &mut Vec<FieldError>,
) -> Option<ClusterConfig> {
    let version = check_version(c.kubernetes_version.as_deref(), errs);

    // Networking.
    let dns_domain = c.networking.dns_domain.clone().unwrap_or_default();
    if !is_dns1123_subdomain(&dns_domain) {
        errs.push(FieldError::invalid(
            "networking.dnsDomain",
            &dns_domain,
            DNS1123_MESSAGE,
        ));
    }
    let service_subnet = c.networking.service_subnet.as_deref().and_then(|s| {
        let net = parse_subnet(
            "networking.serviceSubnet",
            s,
            MIN_SERVICE_SUBNET_ADDRESSES,
            errs,
        )?;
        if net.max_prefix_len() - net.prefix_len() > MAX_SERVICE_SUBNET_BITS {
            let bits = net.max_prefix_len();
            errs.push(FieldError::invalid(
                "networking.serviceSubnet",
                s,
                format!(
                    "is too large: for {bits}-bit addresses the mask must be >= {}",
                    bits - MAX_SERVICE_SUBNET_BITS
                ),
            ));
        }
        Some(net)
    });
    if c.networking.service_subnet.is_none() {
        errs.push(FieldError::other("networking.serviceSubnet", "is required"));
    }
    let pod_subnet = c.networking.pod_subnet.as_deref().and_then(|s| {
        let net = parse_subnet("networking.podSubnet", s, MIN_POD_SUBNET_ADDRESSES, errs)?;
        match node_mask(c, matches!(net, IpNet::V6(_))) {
            Err(m) => errs.push(FieldError::invalid("networking.podSubnet", s, m)),
            Ok(mask) if net.prefix_len() > mask => errs.push(FieldError::invalid(
                "networking.podSubnet",
                s,
                format!("is smaller than the node subnet size (/{mask})"),
            )),
            Ok(mask) if mask - net.prefix_len() > POD_SUBNET_NODE_MASK_MAX_DIFF => {
                errs.push(FieldError::invalid(
                    "networking.podSubnet",
                    s,
                    format!(
                        "is too large for the node mask /{mask}: the difference can not be greater than {POD_SUBNET_NODE_MASK_MAX_DIFF}"
                    ),
                ))
            }
            Ok(_) => {}
        }
        Some(net)
    });
    if let (Some(pod), Some(svc)) = (pod_subnet, service_subnet)
        && (pod.contains(&svc.network()) || svc.contains(&pod.network()))
    {
        errs.push(FieldError::invalid(
            "networking.podSubnet",
            pod.to_string(),
            format!(
                "overlaps networking.serviceSubnet {:?}; pick ranges that do not overlap",
                svc.to_string()
            ),
        ));
    }

    // API server.
    let cert_sans = check_sans("apiServer.certSANs", &c.api_server.cert_sans, errs);
    let timeout = c
        .api_server
        .timeout_for_control_plane
        .as_deref()
        .unwrap_or("4m0s");
    let timeout_secs = match parse_go_duration(timeout) {
        Ok(d) => ceil_secs(d),
        Err(e) => {
            errs.push(FieldError::invalid(
                "apiServer.timeoutForControlPlane",
                timeout,
                e.to_string(),
            ));
            0
        }
    };

    // Paths, endpoint, etcd.
    let certificates_dir = c.certificates_dir.clone().unwrap_or_default();
    check_path_args(c, errs);
    if let Some(ep) = &c.control_plane_endpoint
        && parse_host_port(ep).is_none()
    {
        errs.push(FieldError::invalid(
            "controlPlaneEndpoint",
            ep,
            "is not valid: expected an IP address or DNS name, with an optional port between 1 and 65535",
        ));
    }
    let etcd = match (&c.etcd.local, &c.etcd.external) {
        (Some(_), Some(_)) => {
            errs.push(FieldError::other(
                "etcd",
                "local and external are mutually exclusive",
            ));
            None
        }
        (None, None) => {
            errs.push(FieldError::other(
                "etcd",
                "either local or external is required",
            ));
            None
        }
        (Some(local), None) => {
            let mut local = local.clone();
            local.server_cert_sans =
                check_sans("etcd.local.serverCertSANs", &local.server_cert_sans, errs);
            local.peer_cert_sans =
                check_sans("etcd.local.peerCertSANs", &local.peer_cert_sans, errs);
            Some(Etcd::Local(local))
        }
        (None, Some(ext)) => {
            let tls =
                !(ext.ca_file.is_empty() && ext.cert_file.is_empty() && ext.key_file.is_empty());
            if ext.cert_file.is_empty() != ext.key_file.is_empty() {
                errs.push(FieldError::other(
                    "etcd.external",
                    "set both or neither of certFile and keyFile",
                ));
            }
            if !ext.cert_file.is_empty() && !ext.key_file.is_empty() && ext.ca_file.is_empty() {
                errs.push(FieldError::other(
                    "etcd.external",
                    "certFile and keyFile require caFile",
                ));
            }
            if ext.endpoints.is_empty() {
                errs.push(FieldError::other("etcd.external.endpoints", "is required"));
            }
            for ep in &ext.endpoints {
                match ep.split_once("://") {
                    Some(("https", _)) => {}
                    Some(("http", _)) if !tls => {}
                    Some(_) if tls => errs.push(FieldError::invalid(
                        "etcd.external.endpoints",
                        ep,
                        "must use https",
                    )),
                    _ => errs.push(FieldError::invalid(
                        "etcd.external.endpoints",
                        ep,
                        "is not a URL (https://host:port)",
                    )),
                }
            }
            for (field, path) in [
                ("etcd.external.caFile", &ext.ca_file),
                ("etcd.external.certFile", &ext.cert_file),
                ("etcd.external.keyFile", &ext.key_file),
            ] {
                if !path.is_empty() {
                    check_absolute(field, path, errs);
                }
            }
            Some(Etcd::External(ext.clone()))
        }
    };

    // Feature gates, DNS, kubeboot's extensions and refusals.
    let user = origin == Origin::User;
    for name in c.feature_gates.keys() {
        if user && !KNOWN_FEATURE_GATES.contains(&name.as_str()) {
            errs.push(FieldError::invalid(
                "featureGates",
                name,
                format!(
                    "is not a kubeadm feature gate; known: {}",
                    KNOWN_FEATURE_GATES.join(", ")
                ),
            ));
        }
    }
    if let Some(kind) = &c.dns.kind
        && user
        && kind != super::defaults::DEFAULT_DNS_TYPE
    {
        errs.push(FieldError::invalid(
            "dns.type",
            kind,
            "is not supported: kubeboot runs CoreDNS",
        ));
    }
    if user && c.use_hyper_kube_image {
        errs.push(FieldError::other(
            "useHyperKubeImage",
            "is not supported: there is no hyperkube image for v1.20 and later",
        ));
    }
    let encryption_algorithm = match c.encryption_algorithm.as_deref() {
        None => KeyAlgorithm::default(),
        Some(s) => KeyAlgorithm::parse(s).unwrap_or_else(|| {
            let known: Vec<_> = KeyAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
            errs.push(FieldError::invalid(
                "encryptionAlgorithm",
                s,
                format!("is not one of {}", known.join(", ")),
            ));
            KeyAlgorithm::default()
        }),
    };

    let (certificate_validity, ca_certificate_validity) = check_validity(c, errs);
    let certificate_renewal_window = check_renewal_window(c, certificate_validity, errs);

    let version = version?;
    let image_repository = c
        .image_repository
        .clone()
        .unwrap_or_else(|| super::defaults::default_image_repository(&version).to_string());
    // kubeadm's SetClusterDynamicDefaults: an endpoint without a port gets the bind port;
    // that needs the local endpoint, so validate_init does it.
    Some(ClusterConfig {
        kubernetes_version: version,
        cluster_name: c
            .cluster_name
            .clone()
            .unwrap_or_else(|| super::defaults::DEFAULT_CLUSTER_NAME.to_string()),
        control_plane_endpoint: c.control_plane_endpoint.clone(),
        image_repository,
        certificates_dir,
        networking: Networking {
            pod_subnet,
            service_subnet: service_subnet?,
            dns_domain,
        },
        api_server: ApiServer {
            component: c.api_server.component.clone(),
            cert_sans,
            timeout_for_control_plane_secs: timeout_secs,
        },
        controller_manager: c.controller_manager.clone(),
        scheduler: c.scheduler.clone(),
        etcd: etcd?,
        feature_gates: c.feature_gates.clone(),
        encryption_algorithm,
        certificate_validity,
        ca_certificate_validity,
        certificate_renewal_window,
    })
}

/// `certificateRenewalWindow` (kubeboot's): a Go duration above zero and shorter than
/// `certificateValidityPeriod`, else a renewed certificate would be due again at once.
fn check_renewal_window(
    c: &ClusterSpec,
    validity: Duration,
    errs: &mut Vec<FieldError>,
) -> Duration {
    const FIELD: &str = "certificateRenewalWindow";
    let default = super::default_renewal_window(validity);
    let Some(text) = c.certificate_renewal_window.as_deref() else {
        return default;
    };
    match super::duration::parse_go_duration(text) {
        Ok(d) if d.is_zero() => {
            errs.push(FieldError::invalid(FIELD, text, "must be longer than 0s"));
            default
        }
        Ok(d) if d >= validity => {
            errs.push(FieldError::other(
                FIELD,
                format!(
                    "({}) must be shorter than certificateValidityPeriod ({}): a renewed certificate would be due for renewal at once; shorten the window or lengthen the validity",
                    super::duration::format_go_duration(d.as_secs()),
                    super::duration::format_go_duration(validity.as_secs())
                ),
            ));
            default
        }
        Ok(d) => d,
        Err(e) => {
            errs.push(FieldError::invalid(
                FIELD,
                text,
                format!("is not a duration such as \"2160h0m0s\" ({e})"),
            ));
            default
        }
    }
}

/// `certificateValidityPeriod` and `caCertificateValidityPeriod` (kubeadm v1beta4): Go
/// durations above zero, the CA's longer than the leaves' (a leaf outliving its CA would be
/// unusable after the CA expires; kubeadm only warns, kubeboot refuses).
fn check_validity(c: &ClusterSpec, errs: &mut Vec<FieldError>) -> (Duration, Duration) {
    let mut parse = |field: &str, value: Option<&str>, default: Duration| {
        let Some(text) = value else {
            return Some(default);
        };
        match super::duration::parse_go_duration(text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                errs.push(FieldError::invalid(field, text, "must be longer than 0s"));
                None
            }
            Err(e) => {
                errs.push(FieldError::invalid(
                    field,
                    text,
                    format!("is not a duration such as \"8760h0m0s\" ({e})"),
                ));
                None
            }
        }
    };
    let leaf = parse(
        "certificateValidityPeriod",
        c.certificate_validity_period.as_deref(),
        super::DEFAULT_CERTIFICATE_VALIDITY,
    );
    let ca = parse(
        "caCertificateValidityPeriod",
        c.ca_certificate_validity_period.as_deref(),
        super::DEFAULT_CA_CERTIFICATE_VALIDITY,
    );
    match (leaf, ca) {
        (Some(leaf), Some(ca)) if ca <= leaf => {
            errs.push(FieldError::other(
                "caCertificateValidityPeriod",
                format!(
                    "({}) must be longer than certificateValidityPeriod ({}): certificates must not outlive the CA that signs them; lengthen the CA's or shorten the certificates'",
                    super::duration::format_go_duration(ca.as_secs()),
                    super::duration::format_go_duration(leaf.as_secs())
                ),
            ));
            (leaf, ca)
        }
        (leaf, ca) => (
            leaf.unwrap_or(super::DEFAULT_CERTIFICATE_VALIDITY),
            ca.unwrap_or(super::DEFAULT_CA_CERTIFICATE_VALIDITY),
        ),
    }
}

/// Checks an API endpoint: the port is in range, the address is an IP address of this node
/// (when the node's addresses are known) and, as kubeadm's VerifyAPIServerBindAddress
/// requires, a loopback or global unicast one. `prefix` is where the endpoint sits in the
/// file (`localAPIEndpoint`, `controlPlane.localAPIEndpoint`).
pub(crate) fn check_endpoint(
    prefix: &str,
    e: &ApiEndpointSpec,
    host: &HostFacts,
    errs: &mut Vec<FieldError>,
) -> Option<ApiEndpoint> {
    let addr_field = format!("{prefix}.advertiseAddress");
    let port = e
        .bind_port
        .unwrap_or(i64::from(crate::names::DEFAULT_APISERVER_BIND_PORT));
    let bind_port = match u16::try_from(port) {
        Ok(p) if p >= 1 => Some(p),
        _ => {
            errs.push(FieldError::invalid(
                format!("{prefix}.bindPort"),
                port.to_string(),
                "is not a valid port: it must be between 1 and 65535",
            ));
            None
        }
    };
    let address = match e.advertise_address.as_deref() {
        None => {
            errs.push(FieldError::other(
                addr_field,
                "is not set and this node has no default route to take it from; pass --apiserver-advertise-address",
            ));
            None
        }
        Some(a) => match a.trim().parse::<IpAddr>() {
            Err(_) => {
                errs.push(FieldError::invalid(
                    addr_field,
                    a,
                    "is not a valid IP address",
                ));
                None
            }
            Ok(ip) if !ip.is_loopback() && !is_global_unicast(ip) => {
                errs.push(FieldError::invalid(
                    addr_field,
                    a,
                    "cannot be the API server's address: it must be a unicast address that is not link-local",
                ));
                None
            }
            Ok(ip) if !host.local_addresses.is_empty() && !host.local_addresses.contains(&ip) => {
                let list: Vec<String> =
                    host.local_addresses.iter().map(IpAddr::to_string).collect();
                errs.push(FieldError::invalid(
                    addr_field,
                    a,
                    format!(
                        "is not an address of this node (it has {}); pass one of them with --apiserver-advertise-address or set localAPIEndpoint.advertiseAddress",
                        list.join(", ")
                    ),
                ));
                None
            }
            Ok(ip) => Some(ip),
        },
    };
    Some(ApiEndpoint {
        advertise_address: address?,
        bind_port: bind_port?,
    })
}

/// kubeadm's SetClusterDynamicDefaults: a control-plane endpoint without a port gets `port`.
pub(crate) fn default_endpoint_port(endpoint: &mut String, port: u16) {
    if let Some((host, None)) = parse_host_port(endpoint) {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        *endpoint = format!("{host}:{port}");
    }
}

/// Go's `net.IP.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or the
/// IPv4 broadcast address (private ranges are global unicast in this sense).
pub fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_link_local()
                || a.is_broadcast())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_unicast_link_local())
        }
    }
}

/// Checks a certificate key: 64 hexadecimal characters, the AES-256 key kubeadm's
/// `--certificate-key` holds (kubeadm itself only finds out when decryption fails). The
/// message leaves the key out: it is a secret, and a near miss is most of one.
pub(crate) fn check_certificate_key(field: &str, key: &str, errs: &mut Vec<FieldError>) {
    if !(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())) {
        errs.push(FieldError::other(
            field,
            format!(
                "is not valid: expected 64 hexadecimal characters (32 bytes), got {} characters",
                key.chars().count()
            ),
        ));
    }
}

fn check_token(
    i: usize,
    t: &BootstrapTokenSpec,
    errs: &mut Vec<FieldError>,
) -> Option<BootstrapToken> {
    let field = |f: &str| format!("bootstrapTokens[{i}].{f}");
    if let Some(tok) = &t.token
        && !is_bootstrap_token(tok)
    {
        errs.push(FieldError::invalid(
            field("token"),
            tok,
            "is not a valid bootstrap token: expected [a-z0-9]{6}.[a-z0-9]{16}",
        ));
    }
    if t.expires.is_some() {
        errs.push(FieldError::other(
            field("expires"),
            "is not supported by kubeboot; use ttl",
        ));
    }
    let ttl = t.ttl.as_deref().unwrap_or("24h0m0s");
    // A TTL below a second still expires (ceil_secs never makes it 0, "never expires").
    let ttl_secs = match parse_go_duration(ttl) {
        Ok(d) => Some(ceil_secs(d)),
        Err(e) => {
            errs.push(FieldError::invalid(field("ttl"), ttl, e.to_string()));
            None
        }
    };
    for u in &t.usages {
        if !["signing", "authentication"].contains(&u.as_str()) {
            errs.push(FieldError::invalid(
                field("usages"),
                u,
                "is not a bootstrap token usage: expected signing or authentication",
            ));
        }
    }
    if !t.groups.is_empty() && !t.usages.iter().any(|u| u == "authentication") {
        errs.push(FieldError::other(
            field("groups"),
            "token groups cannot be specified unless usages includes \"authentication\"",
        ));
    }
    for g in &t.groups {
        // kubeadm: ValidateBootstrapGroupName, \Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z
        // (pki::token::validate_group, which the bootstrap-token phase applies). The bare
        // "system:bootstrappers" does not match: accepting it here failed init half-way.
        let ok = g.strip_prefix("system:bootstrappers:").is_some_and(|rest| {
            !rest.is_empty()
                && rest.len() <= 256
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
                && rest
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !ok {
            errs.push(FieldError::invalid(field("groups"), g, "must match system:bootstrappers:<name> with lower-case letters, digits, ':' and '-'"));
        }
    }
    Some(BootstrapToken {
        token: t.token.clone(),
        description: t.description.clone(),
        ttl_secs: ttl_secs?,
        usages: t.usages.clone(),
        groups: t.groups.clone(),
    })
}

/// Merges `--ignore-preflight-errors` with the config file's list as kubeadm does
/// (ValidateIgnorePreflightErrors): lower-cased, sorted, no duplicates; `all` is refused in a
/// file and cannot be combined with single checks.
///
/// # Errors
///
/// `all` in the file, or `all` together with other names.
pub fn merge_ignore_preflight_errors(
    cli: &[String],
    config: &[String],
) -> Result<Vec<String>, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut set: BTreeSet<String> = config.iter().map(|s| s.trim().to_lowercase()).collect();
    if set.contains("all") {
        errs.push(FieldError::invalid(
            "nodeRegistration.ignorePreflightErrors",
            "all",
            "cannot be used in a configuration file; list the checks to ignore, or pass --ignore-preflight-errors=all",
        ));
    }
    set.extend(
        cli.iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty()),
    );
    if set.contains("all") && set.len() > 1 {
        let list: Vec<&str> = set.iter().map(String::as_str).collect();
        errs.push(FieldError::invalid(
            "--ignore-preflight-errors",
            list.join(","),
            "names single checks together with 'all'; give 'all' alone",
        ));
    }
    if errs.is_empty() {
        Ok(set.into_iter().collect())
    } else {
        Err(errs)
    }
}

/// Checks the node registration: the name (a DNS-1123 subdomain), the CRI socket, taints,
/// the image pull policy and the file's ignored preflight errors (`all` refused there).
pub(crate) fn check_node_registration(
    nr: &NodeRegistrationSpec,
    errs: &mut Vec<FieldError>,
) -> NodeRegistration {
    let name = nr.name.clone().unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::other(
            "nodeRegistration.name",
            "is required and could not be taken from the host name; pass --node-name",
        ));
    } else if !is_dns1123_subdomain(&name) {
        errs.push(FieldError::invalid(
            "nodeRegistration.name",
            &name,
            DNS1123_MESSAGE,
        ));
    }
    if let Some(sock) = &nr.cri_socket {
        let path = sock.strip_prefix("unix://").unwrap_or(sock);
        if !path.starts_with('/') {
            errs.push(FieldError::invalid(
                "nodeRegistration.criSocket",
                sock,
                "must be an absolute path or a unix:// URL",
            ));
        }
    }
    for t in nr.taints.iter().flatten() {
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&t.effect.as_str()) {
            errs.push(FieldError::invalid(
                "nodeRegistration.taints",
                &t.effect,
                "is not a taint effect: expected NoSchedule, PreferNoSchedule or NoExecute",
            ));
        }
        if t.key.is_empty() {
            errs.push(FieldError::other(
                "nodeRegistration.taints",
                "a taint needs a key",
            ));
        }
    }
    if let Some(p) = &nr.image_pull_policy
        && !["Always", "IfNotPresent", "Never"].contains(&p.as_str())
    {
        errs.push(FieldError::invalid(
            "nodeRegistration.imagePullPolicy",
            p,
            "is not one of Always, IfNotPresent, Never",
        ));
    }
    let ignore = match merge_ignore_preflight_errors(&[], &nr.ignore_preflight_errors) {
        Ok(v) => v,
        Err(e) => {
            errs.extend(e);
            Vec::new()
        }
    };

    NodeRegistration {
        name,
        cri_socket: nr.cri_socket.clone(),
        taints: nr.taints.clone(),
        kubelet_extra_args: nr.kubelet_extra_args.clone(),
        ignore_preflight_errors: ignore,
    }
}

/// Validates a defaulted InitConfiguration and ClusterConfiguration against the host and
/// converts them to the internal form. `component_configs` is left empty and
/// `node.ignore_preflight_errors` holds the file's list lower-cased; the caller sets both.
///
/// # Errors
///
/// Every invalid field, one [`FieldError`] each.
pub fn validate_init(
    i: &InitSpec,
    c: &ClusterSpec,
    host: &HostFacts,
) -> Result<InitConfig, Vec<FieldError>> {
    let mut errs = Vec::new();
    let cluster = check_cluster(c, Origin::User, &mut errs);

    let node = check_node_registration(&i.node_registration, &mut errs);
    if i.patches_directory.is_some() {
        errs.push(FieldError::other(
            "patches",
            "is not supported by kubeboot yet",
        ));
    }
    if let Some(key) = &i.certificate_key {
        check_certificate_key("certificateKey", key, &mut errs);
    }

    let endpoint = check_endpoint("localAPIEndpoint", &i.local_api_endpoint, host, &mut errs);
    let tokens: Vec<Option<BootstrapToken>> = i
        .bootstrap_tokens
        .iter()
        .flatten()
        .enumerate()
        .map(|(n, t)| check_token(n, t, &mut errs))
        .collect();

    if !errs.is_empty() {
        return Err(errs);
    }
    let (Some(mut cluster), Some(endpoint)) = (cluster, endpoint) else {
        return Err(errs);
    };
    if let Some(ep) = &mut cluster.control_plane_endpoint {
        default_endpoint_port(ep, endpoint.bind_port);
    }
    Ok(InitConfig {
        cluster,
        node,
        local_api_endpoint: endpoint,
        bootstrap_tokens: tokens.into_iter().flatten().collect(),
        certificate_key: i.certificate_key.clone(),
        skip_phases: i.skip_phases.clone(),
        component_configs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults::{apply_dynamic_defaults, default_cluster, default_init};

    fn host() -> HostFacts {
        HostFacts {
            hostname: "node1".into(),
            default_address: Some("10.0.0.1".parse().unwrap()),
            local_addresses: vec!["10.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            detected_version: Some(v(1, 20, 2)),
        }
    }

    fn run(
        edit: impl FnOnce(&mut InitSpec, &mut ClusterSpec),
    ) -> Result<InitConfig, Vec<FieldError>> {
        let (mut i, mut c) = (InitSpec::default(), ClusterSpec::default());
        edit(&mut i, &mut c);
        default_init(&mut i);
        default_cluster(&mut c);
        apply_dynamic_defaults(&mut i, &mut c, &host());
        validate_init(&i, &c, &host())
    }

    #[test]
    fn renewal_window_defaults_to_90_days_or_a_quarter_of_the_validity() {
        let cfg = run(|_, _| {}).expect("valid");
        assert_eq!(
            cfg.cluster.certificate_renewal_window.as_secs(),
            90 * 24 * 3600
        );
        let cfg = run(|_, c| c.certificate_validity_period = Some("4m".into())).expect("valid");
        assert_eq!(cfg.cluster.certificate_renewal_window.as_secs(), 60);
        let yaml = crate::config::print::cluster_configuration_yaml(&cfg.cluster);
        assert!(!yaml.contains("certificateRenewalWindow"), "{yaml}");
        let cfg = run(|_, c| {
            c.certificate_validity_period = Some("4m".into());
            c.certificate_renewal_window = Some("150s".into());
        })
        .expect("valid");
        assert_eq!(cfg.cluster.certificate_renewal_window.as_secs(), 150);
        // Written back (kubeadm-config), so every agent of the cluster reads it.
        let yaml = crate::config::print::cluster_configuration_yaml(&cfg.cluster);
        assert!(yaml.contains("certificateRenewalWindow: 2m30s"), "{yaml}");
        let back = crate::config::cluster_from_kubeadm_config(&yaml).expect("reads back");
        assert_eq!(back.certificate_renewal_window.as_secs(), 150);
    }

    #[test]
    fn validity_periods_default_to_kubeadms_and_take_go_durations() {
        let cfg = run(|_, _| {}).expect("valid");
        assert_eq!(cfg.cluster.certificate_validity.as_secs(), 8760 * 3600);
        assert_eq!(cfg.cluster.ca_certificate_validity.as_secs(), 87600 * 3600);
        let cfg = run(|_, c| {
            c.certificate_validity_period = Some("5m".into());
            c.ca_certificate_validity_period = Some("1h30m".into());
        })
        .expect("valid");
        assert_eq!(cfg.cluster.certificate_validity.as_secs(), 300);
        assert_eq!(cfg.cluster.ca_certificate_validity.as_secs(), 5400);
        // Written back (kubeadm-config) only when not the default.
        let yaml = crate::config::print::cluster_configuration_yaml(&cfg.cluster);
        assert!(yaml.contains("certificateValidityPeriod: 5m0s"), "{yaml}");
        assert!(
            yaml.contains("caCertificateValidityPeriod: 1h30m0s"),
            "{yaml}"
        );
        let back = crate::config::cluster_from_kubeadm_config(&yaml).expect("reads back");
        assert_eq!(back.certificate_validity.as_secs(), 300);
        let default = run(|_, _| {}).expect("valid");
        let yaml = crate::config::print::cluster_configuration_yaml(&default.cluster);
        assert!(!yaml.contains("ValidityPeriod"), "{yaml}");
    }

    fn errors(edit: impl FnOnce(&mut InitSpec, &mut ClusterSpec)) -> Vec<String> {
        run(edit)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn one_error(edit: impl FnOnce(&mut InitSpec, &mut ClusterSpec)) -> String {
        let e = errors(edit);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    #[test]
    fn defaults_alone_are_valid() {
        let cfg = run(|_, _| {}).unwrap();
        assert_eq!(
            cfg.cluster.networking.service_subnet.to_string(),
            "10.96.0.0/12"
        );
        assert_eq!(cfg.local_api_endpoint.bind_port, 6443);
        assert_eq!(cfg.bootstrap_tokens[0].ttl_secs, 86400);
        assert_eq!(cfg.cluster.encryption_algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(cfg.cluster.api_server.timeout_for_control_plane_secs, 240);
    }

    #[test]
    fn paths_kubeboot_deletes_from_are_checked_all_at_once() {
        let e = errors(|_, c| {
            c.api_server
                .component
                .extra_args
                .insert("client-ca-file".into(), "/ca.pem".into());
            c.certificates_dir = Some("/etc".into());
            c.etcd.local = Some(crate::config::LocalEtcd {
                data_dir: "/".into(),
                extra_args: [("data-dir".to_string(), ".".to_string())].into(),
                ..Default::default()
            });
        });
        assert_eq!(e.len(), 4, "{e:#?}");
        for want in [
            "apiServer.extraArgs.client-ca-file: \"/ca.pem\" must not be directly in the root directory \"/\"",
            "certificatesDir: \"/etc\" must not be a system directory such as /etc, /var or /var/lib",
            "etcd.local.dataDir: \"/\" must not be the root directory \"/\"",
            "etcd.local.extraArgs.data-dir: \".\" must be an absolute path",
        ] {
            assert!(
                e.iter().any(|m| m.starts_with(want)),
                "{want:?} not in {e:#?}"
            );
        }
    }

    #[test]
    fn unusual_but_safe_paths_are_accepted() {
        run(|_, c| {
            c.api_server
                .component
                .extra_args
                .insert("client-ca-file".into(), "/etc/client-ca.pem".into());
            c.certificates_dir = Some("/srv/kubernetes/pki".into());
            c.etcd.local = Some(crate::config::LocalEtcd {
                data_dir: "/data/etcd".into(),
                extra_args: [("data-dir".to_string(), "/data/etcd2".to_string())].into(),
                ..Default::default()
            });
        })
        .expect("valid");
        for bad in [
            "/var/lib",
            "/usr/local/etcd",
            "/var/lib/../etc",
            "/var/lib/etcd/",
            "etcd",
        ] {
            assert!(check_node_dir(Path::new(bad)).is_some(), "{bad}");
        }
    }

    #[test]
    fn sub_second_ttl_still_expires_and_the_largest_is_accepted() {
        let ttl = |t: &str| {
            let t = t.to_string();
            run(move |i, _| {
                i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
                    ttl: Some(t),
                    ..Default::default()
                }])
            })
            .unwrap()
            .bootstrap_tokens[0]
                .ttl_secs
        };
        // Truncating 500ms to 0 would have made a token that never expires.
        assert_eq!(ttl("500ms"), 1);
        assert_eq!(ttl("0"), 0);
        assert_eq!(ttl("2562047h47m16.854775807s"), 9_223_372_037);
    }

    #[test]
    fn table_of_single_field_errors() {
        type Edit = fn(&mut InitSpec, &mut ClusterSpec);
        let cases: &[(&str, Edit, &str)] = &[
            (
                "bad_pod_cidr",
                |_, c| c.networking.pod_subnet = Some("10.244.0.0/33".into()),
                "networking.podSubnet: \"10.244.0.0/33\" is not a valid CIDR",
            ),
            (
                "bad_service_cidr",
                |_, c| c.networking.service_subnet = Some("nope".into()),
                "networking.serviceSubnet: \"nope\" is not a valid CIDR",
            ),
            (
                "service_subnet_too_large",
                |_, c| c.networking.service_subnet = Some("10.0.0.0/8".into()),
                "the mask must be >= 12",
            ),
            (
                "ipv6_service_subnet_too_large",
                |_, c| c.networking.service_subnet = Some("fd00::/100".into()),
                "the mask must be >= 108",
            ),
            (
                "certificate_validity_not_a_duration",
                |_, c| c.certificate_validity_period = Some("1 year".into()),
                "certificateValidityPeriod: \"1 year\" is not a duration such as \"8760h0m0s\"",
            ),
            (
                "certificate_validity_zero",
                |_, c| c.certificate_validity_period = Some("0s".into()),
                "certificateValidityPeriod: \"0s\" must be longer than 0s",
            ),
            (
                "renewal_window_not_shorter_than_validity",
                |_, c| {
                    c.certificate_validity_period = Some("5m".into());
                    c.certificate_renewal_window = Some("5m".into());
                },
                "certificateRenewalWindow: (5m0s) must be shorter than certificateValidityPeriod (5m0s): a renewed certificate would be due for renewal at once",
            ),
            (
                "renewal_window_zero",
                |_, c| c.certificate_renewal_window = Some("0s".into()),
                "certificateRenewalWindow: \"0s\" must be longer than 0s",
            ),
            (
                "renewal_window_not_a_duration",
                |_, c| c.certificate_renewal_window = Some("90 days".into()),
                "certificateRenewalWindow: \"90 days\" is not a duration such as \"2160h0m0s\"",
            ),
            (
                "ca_validity_not_longer_than_leaf",
                |_, c| {
                    c.certificate_validity_period = Some("24h".into());
                    c.ca_certificate_validity_period = Some("5m".into());
                },
                "caCertificateValidityPeriod: (5m0s) must be longer than certificateValidityPeriod (24h0m0s)",
            ),
            (
                "ca_validity_shorter_than_default_leaf",
                |_, c| c.ca_certificate_validity_period = Some("720h".into()),
                "caCertificateValidityPeriod: (720h0m0s) must be longer than certificateValidityPeriod (8760h0m0s)",
            ),
            (
                "bad_advertise_address",
                |i, _| i.local_api_endpoint.advertise_address = Some("10.0.0.300".into()),
                "is not a valid IP address",
            ),
            (
                "advertise_address_not_local",
                |i, _| i.local_api_endpoint.advertise_address = Some("10.0.0.9".into()),
                "\"10.0.0.9\" is not an address of this node (it has 10.0.0.1, 127.0.0.1)",
            ),
            (
                "bad_bind_port",
                |i, _| i.local_api_endpoint.bind_port = Some(70000),
                "localAPIEndpoint.bindPort: \"70000\" is not a valid port",
            ),
            (
                "bad_dns_domain",
                |_, c| c.networking.dns_domain = Some("Cluster_Local".into()),
                "networking.dnsDomain: \"Cluster_Local\" must be a valid DNS-1123",
            ),
            (
                "bad_node_name",
                |i, _| i.node_registration.name = Some("node_1".into()),
                "nodeRegistration.name: \"node_1\" must be a valid DNS-1123",
            ),
            (
                "unparsable_version",
                |_, c| c.kubernetes_version = Some("v1.20".into()),
                "kubernetesVersion: \"v1.20\" is not a valid version",
            ),
            (
                "version_below_range",
                |_, c| c.kubernetes_version = Some("v1.19.7".into()),
                "kubeboot runs control planes v1.20 to v1.33",
            ),
            (
                "version_above_range",
                |_, c| c.kubernetes_version = Some("v1.34.0".into()),
                "kubeboot runs control planes v1.20 to v1.33",
            ),
            (
                "version_label",
                |_, c| c.kubernetes_version = Some("stable-1".into()),
                "cannot resolve offline",
            ),
            (
                "bad_cert_san",
                |_, c| c.api_server.cert_sans = vec!["bad_name!".into()],
                "apiServer.certSANs: \"bad_name!\" is not a valid IP address",
            ),
            (
                "bad_control_plane_endpoint",
                |_, c| c.control_plane_endpoint = Some("lb:99999".into()),
                "controlPlaneEndpoint: \"lb:99999\" is not valid",
            ),
            (
                "bad_token",
                |i, _| {
                    i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
                        token: Some("abcdef.0123".into()),
                        ..Default::default()
                    }])
                },
                "bootstrapTokens[0].token: \"abcdef.0123\" is not a valid bootstrap token",
            ),
            (
                "bad_encryption_algorithm",
                |_, c| c.encryption_algorithm = Some("RSA-1024".into()),
                "encryptionAlgorithm: \"RSA-1024\" is not one of ECDSA-P256, RSA-2048, RSA-3072, RSA-4096",
            ),
            (
                "relative_cert_dir",
                |_, c| c.certificates_dir = Some("pki".into()),
                "certificatesDir: \"pki\" must be an absolute path",
            ),
            (
                "bad_token_ttl",
                |i, _| {
                    i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
                        ttl: Some("1d".into()),
                        ..Default::default()
                    }])
                },
                "bootstrapTokens[0].ttl: \"1d\" has an unknown unit \"d\"",
            ),
            (
                // Issue 8: `now + ttl` panicked mid-init; now refused before any phase.
                "huge_token_ttl",
                |i, _| {
                    i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
                        ttl: Some("100000000h".into()),
                        ..Default::default()
                    }])
                },
                "bootstrapTokens[0].ttl: \"100000000h\" is too large (max 2562047h47m16.854775807s)",
            ),
            (
                "negative_token_ttl",
                |i, _| {
                    i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
                        ttl: Some("-1h".into()),
                        ..Default::default()
                    }])
                },
                "bootstrapTokens[0].ttl: \"-1h\" is negative",
            ),
            (
                // Found by phases/tests/fuzz_init_config.rs: accepted here, refused by the
                // bootstrap-token phase after the certificates were written.
                "bare_bootstrappers_group",
                |i, _| {
                    i.bootstrap_tokens = Some(vec![BootstrapTokenSpec {
                        groups: vec!["system:bootstrappers".into()],
                        ..Default::default()
                    }])
                },
                "bootstrapTokens[0].groups: \"system:bootstrappers\" must match system:bootstrappers:<name>",
            ),
            (
                "huge_control_plane_timeout",
                |_, c| c.api_server.timeout_for_control_plane = Some("9999999999h".into()),
                "apiServer.timeoutForControlPlane: \"9999999999h\" is too large",
            ),
            (
                "unknown_feature_gate",
                |_, c| {
                    c.feature_gates.insert("Nope".into(), true);
                },
                "featureGates: \"Nope\" is not a kubeadm feature gate",
            ),
            (
                "kube_dns",
                |_, c| c.dns.kind = Some("kube-dns".into()),
                "dns.type: \"kube-dns\" is not supported",
            ),
            (
                "all_in_config",
                |i, _| i.node_registration.ignore_preflight_errors = vec!["All".into()],
                "cannot be used in a configuration file",
            ),
            (
                "bad_certificate_key",
                |i, _| i.certificate_key = Some("xyz".into()),
                "certificateKey: is not valid: expected 64 hexadecimal characters (32 bytes), got 3 characters",
            ),
            (
                "both_etcds",
                |_, c| {
                    c.etcd.local = Some(Default::default());
                    c.etcd.external = Some(Default::default());
                },
                "etcd: local and external are mutually exclusive",
            ),
            (
                "pod_subnet_smaller_than_node_mask",
                |_, c| c.networking.pod_subnet = Some("10.244.0.0/26".into()),
                "is smaller than the node subnet size",
            ),
            (
                "external_etcd_without_endpoints",
                |_, c| c.etcd.external = Some(Default::default()),
                "etcd.external.endpoints: is required",
            ),
            (
                "http_etcd_with_tls",
                |_, c| {
                    c.etcd.external = Some(crate::config::ExternalEtcd {
                        endpoints: vec!["http://10.0.0.5:2379".into()],
                        ca_file: "/ca.crt".into(),
                        cert_file: "/c.crt".into(),
                        key_file: "/c.key".into(),
                    })
                },
                "must use https",
            ),
            (
                "patches_unsupported",
                |i, _| i.patches_directory = Some("/p".into()),
                "patches: is not supported",
            ),
            (
                "bad_image_pull_policy",
                |i, _| i.node_registration.image_pull_policy = Some("Sometimes".into()),
                "imagePullPolicy",
            ),
        ];
        for (name, edit, want) in cases {
            let got = errors(*edit);
            assert_eq!(got.len(), 1, "{name}: {got:#?}");
            assert!(
                got[0].contains(want),
                "{name}: {:?} does not contain {want:?}",
                got[0]
            );
        }
    }

    #[test]
    fn overlapping_pod_and_service_cidr() {
        let e = one_error(|_, c| c.networking.pod_subnet = Some("10.96.0.0/16".into()));
        assert_eq!(
            e,
            "networking.podSubnet: \"10.96.0.0/16\" overlaps networking.serviceSubnet \"10.96.0.0/12\"; pick ranges that do not overlap"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(|i, c| {
            c.networking.pod_subnet = Some("10.244.0.0/33".into());
            c.networking.service_subnet = Some("10.96.0.0/40".into());
            i.local_api_endpoint.bind_port = Some(0);
            i.node_registration.name = Some("Bad Name".into());
            c.encryption_algorithm = Some("DSA".into());
        });
        assert_eq!(e.len(), 5, "{e:#?}");
    }

    #[test]
    fn no_version_and_no_binary_names_the_fix() {
        let (mut i, mut c) = (InitSpec::default(), ClusterSpec::default());
        default_init(&mut i);
        default_cluster(&mut c);
        let h = HostFacts {
            detected_version: None,
            ..host()
        };
        apply_dynamic_defaults(&mut i, &mut c, &h);
        let e = validate_init(&i, &c, &h).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .contains("pass --kubernetes-version or put kube-apiserver on the node"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn control_plane_endpoint_gets_bind_port() {
        let cfg = run(|_, c| c.control_plane_endpoint = Some("lb.example.com".into())).unwrap();
        assert_eq!(
            cfg.cluster.control_plane_endpoint.as_deref(),
            Some("lb.example.com:6443")
        );
        let cfg = run(|_, c| c.control_plane_endpoint = Some("10.0.0.5:443".into())).unwrap();
        assert_eq!(
            cfg.cluster.control_plane_endpoint.as_deref(),
            Some("10.0.0.5:443")
        );
    }

    #[test]
    fn cert_sans_are_lower_cased_and_wildcards_allowed() {
        let cfg = run(|_, c| {
            c.api_server.cert_sans = vec![
                "API.Example.com".into(),
                "*.example.com".into(),
                "10.0.0.5".into(),
            ]
        })
        .unwrap();
        assert_eq!(
            cfg.cluster.api_server.cert_sans,
            vec!["api.example.com", "*.example.com", "10.0.0.5"]
        );
    }

    #[test]
    fn ipv6_cluster_is_valid() {
        let cfg = run(|i, c| {
            c.networking.service_subnet = Some("fd00:10:96::/112".into());
            c.networking.pod_subnet = Some("fd00:10:244::/56".into());
            i.local_api_endpoint.advertise_address = Some("127.0.0.1".into());
        })
        .unwrap();
        assert_eq!(
            cfg.cluster.networking.service_subnet.to_string(),
            "fd00:10:96::/112"
        );
    }

    #[test]
    fn ignore_preflight_errors_merge() {
        let got = merge_ignore_preflight_errors(&["Swap,NumCPU".into()], &["swap".into()]).unwrap();
        assert_eq!(got, vec!["numcpu", "swap"]);
        assert!(merge_ignore_preflight_errors(&["all".into()], &[]).is_ok());
        let e = merge_ignore_preflight_errors(&["all".into(), "swap".into()], &[]).unwrap_err();
        assert!(e[0].to_string().contains("give 'all' alone"));
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("lb:6443"), Some(("lb".into(), Some(6443))));
        assert_eq!(
            parse_host_port("[fd00::1]:6443"),
            Some(("fd00::1".into(), Some(6443)))
        );
        assert_eq!(parse_host_port("fd00::1"), Some(("fd00::1".into(), None)));
        assert_eq!(parse_host_port("lb:0"), None);
        assert_eq!(parse_host_port("LB_x"), None);
    }
}
