//! The certificate table (kubeadm: app/phases/certs/certlist.go) and the inputs that fill
//! in its per-cluster parts (SANs, node name).

use std::net::IpAddr;
use std::time::Duration;

use components::config::{Etcd, InitConfig, KeyAlgorithm};
use components::names;
use ipnet::IpNet;

use crate::PkiError;

/// How long new certificates are valid (kubeadm v1beta4: `certificateValidityPeriod` and
/// `caCertificateValidityPeriod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Leaf certificates, from issuance (kubeadm: constants.CertificateValidity, 1 year).
    pub leaf: Duration,
    /// CAs, from issuance (client-go cert.NewSelfSignedCACert: 10 years).
    pub ca: Duration,
}

impl Default for Validity {
    fn default() -> Self {
        Self {
            leaf: components::config::DEFAULT_CERTIFICATE_VALIDITY,
            ca: components::config::DEFAULT_CA_CERTIFICATE_VALIDITY,
        }
    }
}

impl Validity {
    /// The validity configured for a cluster.
    pub fn of(cluster: &components::config::ClusterConfig) -> Self {
        Self {
            leaf: cluster.certificate_validity,
            ca: cluster.ca_certificate_validity,
        }
    }

    /// How long a certificate of `spec` is valid.
    pub fn for_spec(&self, spec: &CertSpec) -> Duration {
        if spec.is_ca() { self.ca } else { self.leaf }
    }
}

/// The common name of the Kubernetes CA (kubeadm: certlist.go, KubeadmCertRootCA).
pub const CA_CN: &str = "kubernetes";
/// The common name of the front proxy CA (kubeadm: KubeadmCertFrontProxyCA).
pub const FRONT_PROXY_CA_CN: &str = "front-proxy-ca";
/// The common name of the etcd CA (kubeadm: KubeadmCertEtcdCA).
pub const ETCD_CA_CN: &str = "etcd-ca";
/// The API server's serving certificate CN (kubeadm: constants.APIServerCertCommonName).
pub const APISERVER_CN: &str = "kube-apiserver";
/// Base name of the service account key pair, `sa.key`/`sa.pub` (kubeadm:
/// constants.ServiceAccountKeyBaseName).
pub const SA_BASE_NAME: &str = "sa";

/// A key usage bit (X.509 KeyUsage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUsage {
    /// digitalSignature.
    DigitalSignature,
    /// keyEncipherment.
    KeyEncipherment,
    /// keyCertSign.
    CertSign,
}

/// An extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtKeyUsage {
    /// TLS server authentication.
    ServerAuth,
    /// TLS client authentication.
    ClientAuth,
}

/// The subject common name of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonName {
    /// A fixed name.
    Fixed(&'static str),
    /// The node's name (kubeadm: setCommonNameToNodeName).
    NodeName,
}

/// Which subject alternative names a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanRule {
    /// None.
    None,
    /// The API server's (kubeadm: pkiutil.GetAPIServerAltNames).
    ApiServer,
    /// The etcd server's (kubeadm: pkiutil.GetEtcdAltNames).
    EtcdServer,
    /// The etcd peer's (kubeadm: pkiutil.GetEtcdPeerAltNames).
    EtcdPeer,
    /// `127.0.0.1` only: a server only its own node's processes call (kubeboot's own).
    Loopback,
}

/// One certificate kubeadm creates (kubeadm: certlist.go, KubeadmCert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// The phase name, `kubeadm init phase certs <name>` (`apiserver`, `etcd-ca`).
    pub name: &'static str,
    /// kubeadm's LongName, used in the phase's help (`Generate the <long name>`).
    pub long_name: &'static str,
    /// The file base name under the certificate directory (`apiserver`, `etcd/server`):
    /// the files are `<base>.crt` and `<base>.key`.
    pub base_name: &'static str,
    /// The `name` of the CA that signs it; `None` for a self-signed CA.
    pub ca: Option<&'static str>,
    /// The subject CN.
    pub common_name: CommonName,
    /// The subject organizations.
    pub organizations: &'static [&'static str],
    /// Key usages.
    pub key_usages: &'static [KeyUsage],
    /// Extended key usages (empty for CAs).
    pub ext_key_usages: &'static [ExtKeyUsage],
    /// Subject alternative names.
    pub sans: SanRule,
    /// Only needed with a local (stacked) etcd (kubeadm: GetCertsWithoutEtcd leaves it out).
    pub local_etcd_only: bool,
}

impl CertSpec {
    /// Whether this is a CA (self-signed, `CA:TRUE`).
    pub fn is_ca(&self) -> bool {
        self.ca.is_none()
    }

    /// The spec of the CA that signs this certificate, `None` for CAs.
    pub fn ca_spec(&self) -> Option<&'static CertSpec> {
        self.ca.and_then(cert_spec)
    }

    /// The subject CN for these inputs.
    pub fn common_name<'a>(&self, inputs: &'a CertInputs) -> &'a str {
        match self.common_name {
            CommonName::Fixed(cn) => cn,
            CommonName::NodeName => &inputs.node_name,
        }
    }
}

const CA_USAGES: &[KeyUsage] = &[
    KeyUsage::DigitalSignature,
    KeyUsage::KeyEncipherment,
    KeyUsage::CertSign,
];
const LEAF_USAGES: &[KeyUsage] = &[KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment];
const MASTERS: &[&str] = &[names::SYSTEM_PRIVILEGED_GROUP];

/// Every certificate of a control-plane node, in kubeadm's order (kubeadm: certlist.go,
/// GetDefaultCertList). Each CA comes before the certificates it signs.
pub static CERTS: &[CertSpec] = &[
    // kubeadm: KubeadmCertRootCA
    CertSpec {
        name: "ca",
        long_name: "self-signed Kubernetes CA to provision identities for other Kubernetes components",
        base_name: "ca",
        ca: None,
        common_name: CommonName::Fixed(CA_CN),
        organizations: &[],
        key_usages: CA_USAGES,
        ext_key_usages: &[],
        sans: SanRule::None,
        local_etcd_only: false,
    },
    // kubeadm: KubeadmCertAPIServer
    CertSpec {
        name: "apiserver",
        long_name: "certificate for serving the Kubernetes API",
        base_name: "apiserver",
        ca: Some("ca"),
        common_name: CommonName::Fixed(APISERVER_CN),
        organizations: &[],
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ServerAuth],
        sans: SanRule::ApiServer,
        local_etcd_only: false,
    },
    // kubeadm: KubeadmCertKubeletClient
    CertSpec {
        name: "apiserver-kubelet-client",
        long_name: "certificate for the API server to connect to kubelet",
        base_name: "apiserver-kubelet-client",
        ca: Some("ca"),
        common_name: CommonName::Fixed(names::APISERVER_KUBELET_CLIENT_CN),
        organizations: MASTERS,
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ClientAuth],
        sans: SanRule::None,
        local_etcd_only: false,
    },
    // kubeadm: KubeadmCertFrontProxyCA
    CertSpec {
        name: "front-proxy-ca",
        long_name: "self-signed CA to provision identities for front proxy",
        base_name: "front-proxy-ca",
        ca: None,
        common_name: CommonName::Fixed(FRONT_PROXY_CA_CN),
        organizations: &[],
        key_usages: CA_USAGES,
        ext_key_usages: &[],
        sans: SanRule::None,
        local_etcd_only: false,
    },
    // kubeadm: KubeadmCertFrontProxyClient
    CertSpec {
        name: "front-proxy-client",
        long_name: "certificate for the front proxy client",
        base_name: "front-proxy-client",
        ca: Some("front-proxy-ca"),
        common_name: CommonName::Fixed(names::FRONT_PROXY_CLIENT_CN),
        organizations: &[],
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ClientAuth],
        sans: SanRule::None,
        local_etcd_only: false,
    },
    // kubeadm: KubeadmCertEtcdCA
    CertSpec {
        name: "etcd-ca",
        long_name: "self-signed CA to provision identities for etcd",
        base_name: "etcd/ca",
        ca: None,
        common_name: CommonName::Fixed(ETCD_CA_CN),
        organizations: &[],
        key_usages: CA_USAGES,
        ext_key_usages: &[],
        sans: SanRule::None,
        local_etcd_only: true,
    },
    // kubeadm: KubeadmCertEtcdServer. ClientAuth too: etcd 3.2 requires it on the server
    // certificate (etcd-io/etcd#9785), kubeadm keeps it.
    CertSpec {
        name: "etcd-server",
        long_name: "certificate for serving etcd",
        base_name: "etcd/server",
        ca: Some("etcd-ca"),
        common_name: CommonName::NodeName,
        organizations: &[],
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ServerAuth, ExtKeyUsage::ClientAuth],
        sans: SanRule::EtcdServer,
        local_etcd_only: true,
    },
    // kubeadm: KubeadmCertEtcdPeer
    CertSpec {
        name: "etcd-peer",
        long_name: "certificate for etcd nodes to communicate with each other",
        base_name: "etcd/peer",
        ca: Some("etcd-ca"),
        common_name: CommonName::NodeName,
        organizations: &[],
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ServerAuth, ExtKeyUsage::ClientAuth],
        sans: SanRule::EtcdPeer,
        local_etcd_only: true,
    },
    // kubeadm: KubeadmCertEtcdHealthcheck
    CertSpec {
        name: "etcd-healthcheck-client",
        long_name: "certificate for liveness probes to healthcheck etcd",
        base_name: "etcd/healthcheck-client",
        ca: Some("etcd-ca"),
        common_name: CommonName::Fixed(names::ETCD_HEALTHCHECK_CLIENT_CN),
        organizations: MASTERS,
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ClientAuth],
        sans: SanRule::None,
        local_etcd_only: true,
    },
    // kubeadm: KubeadmCertEtcdAPIClient
    CertSpec {
        name: "apiserver-etcd-client",
        long_name: "certificate the apiserver uses to access etcd",
        base_name: "apiserver-etcd-client",
        ca: Some("etcd-ca"),
        common_name: CommonName::Fixed(names::APISERVER_ETCD_CLIENT_CN),
        organizations: MASTERS,
        key_usages: LEAF_USAGES,
        ext_key_usages: &[ExtKeyUsage::ClientAuth],
        sans: SanRule::None,
        local_etcd_only: true,
    },
];

/// kubeboot's own (no kubeadm equivalent, so not in [`CERTS`], which is kubeadm's list): the
/// serving certificate of the admission webhook each control-plane node's agent serves on
/// `https://127.0.0.1:<AGENT_WEBHOOK_PORT>` for its own API server, which checks it against
/// the cluster CA (the webhook configuration's `caBundle`).
pub static KUBEBOOT_AGENT_WEBHOOK_CERT: CertSpec = CertSpec {
    name: "kubeboot-agent-webhook",
    long_name: "certificate for serving the kubeboot agent's admission webhook on loopback",
    base_name: "kubeboot-agent-webhook",
    ca: Some("ca"),
    common_name: CommonName::Fixed(names::AGENT_WEBHOOK_CN),
    organizations: &[],
    key_usages: LEAF_USAGES,
    ext_key_usages: &[ExtKeyUsage::ServerAuth],
    sans: SanRule::Loopback,
    local_etcd_only: false,
};

/// The spec named `name` (`apiserver`, `etcd-ca`), as `kubeadm init phase certs <name>`.
pub fn cert_spec(name: &str) -> Option<&'static CertSpec> {
    CERTS.iter().find(|s| s.name == name)
}

/// The certificates for a cluster: all of them with a local etcd, without the etcd ones
/// with an external etcd (kubeadm: GetDefaultCertList / GetCertsWithoutEtcd).
pub fn certs_for(local_etcd: bool) -> impl Iterator<Item = &'static CertSpec> {
    CERTS
        .iter()
        .filter(move |s| local_etcd || !s.local_etcd_only)
}

/// What the per-cluster parts of the certificates are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInputs {
    /// `nodeRegistration.name`.
    pub node_name: String,
    /// `localAPIEndpoint.advertiseAddress`.
    pub advertise_address: IpAddr,
    /// `networking.serviceSubnet`.
    pub service_subnet: IpNet,
    /// `networking.dnsDomain`.
    pub dns_domain: String,
    /// `controlPlaneEndpoint`, as written (`host`, `host:port`, `[ipv6]:port`).
    pub control_plane_endpoint: Option<String>,
    /// `apiServer.certSANs`.
    pub apiserver_cert_sans: Vec<String>,
    /// `etcd.local.serverCertSANs`.
    pub etcd_server_sans: Vec<String>,
    /// `etcd.local.peerCertSANs`.
    pub etcd_peer_sans: Vec<String>,
    /// The algorithm of new keys.
    pub algorithm: KeyAlgorithm,
    /// How long new certificates are valid.
    pub validity: Validity,
}

impl CertInputs {
    /// The inputs of a defaulted, validated init configuration.
    pub fn from_config(config: &InitConfig) -> Self {
        let cluster = &config.cluster;
        let (etcd_server_sans, etcd_peer_sans) = match &cluster.etcd {
            Etcd::Local(local) => (local.server_cert_sans.clone(), local.peer_cert_sans.clone()),
            Etcd::External(_) => (Vec::new(), Vec::new()),
        };
        Self {
            node_name: config.node.name.clone(),
            advertise_address: config.local_api_endpoint.advertise_address,
            service_subnet: cluster.networking.service_subnet,
            dns_domain: cluster.networking.dns_domain.clone(),
            control_plane_endpoint: cluster.control_plane_endpoint.clone(),
            apiserver_cert_sans: cluster.api_server.cert_sans.clone(),
            etcd_server_sans,
            etcd_peer_sans,
            algorithm: cluster.encryption_algorithm,
            validity: Validity::of(cluster),
        }
    }
}

/// Subject alternative names, as kubeadm orders them after RemoveDuplicateAltNames: DNS
/// names sorted and unique, IPs unique in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AltNames {
    /// DNS names.
    pub dns_names: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl AltNames {
    fn push_sans(&mut self, sans: &[String], field: &'static str) -> Result<(), PkiError> {
        // kubeadm: pkiutil.appendSANsToAltNames (kubeadm prints a warning and drops an
        // invalid SAN; its config validation rejects them first, so do we, here).
        for san in sans {
            if let Ok(ip) = san.parse::<IpAddr>() {
                self.ips.push(ip);
            } else if is_dns1123_subdomain(san)
                || san.strip_prefix("*.").is_some_and(is_dns1123_subdomain)
            {
                self.dns_names.push(san.clone());
            } else {
                return Err(PkiError::InvalidSan {
                    field,
                    value: san.clone(),
                });
            }
        }
        Ok(())
    }

    /// kubeadm: pkiutil.RemoveDuplicateAltNames.
    fn dedup(mut self) -> Self {
        self.dns_names.sort();
        self.dns_names.dedup();
        let mut ips = Vec::with_capacity(self.ips.len());
        for ip in self.ips {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        self.ips = ips;
        self
    }
}

/// The SANs of `spec` for `inputs`.
///
/// # Errors
/// [`PkiError::InvalidSan`], [`PkiError::InvalidControlPlaneEndpoint`],
/// [`PkiError::ServiceSubnetTooSmall`].
pub fn alt_names(spec: &CertSpec, inputs: &CertInputs) -> Result<AltNames, PkiError> {
    let mut alt = AltNames::default();
    match spec.sans {
        SanRule::None => {}
        SanRule::ApiServer => {
            // kubeadm: pkiutil.GetAPIServerAltNames
            alt.dns_names = vec![
                inputs.node_name.clone(),
                "kubernetes".to_string(),
                "kubernetes.default".to_string(),
                "kubernetes.default.svc".to_string(),
                format!("kubernetes.default.svc.{}", inputs.dns_domain),
            ];
            alt.ips = vec![
                apiserver_service_ip(inputs.service_subnet)?,
                inputs.advertise_address,
            ];
            if let Some(endpoint) = &inputs.control_plane_endpoint {
                let (host, _) = parse_host_port(endpoint)?;
                match host.parse::<IpAddr>() {
                    Ok(ip) => alt.ips.push(ip),
                    Err(_) => alt.dns_names.push(host),
                }
            }
            alt.push_sans(&inputs.apiserver_cert_sans, "apiServer.certSANs")?;
        }
        SanRule::EtcdServer | SanRule::EtcdPeer => {
            // kubeadm: pkiutil.getAltNames
            alt.dns_names = vec![inputs.node_name.clone(), "localhost".to_string()];
            alt.ips = vec![
                inputs.advertise_address,
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ];
            if spec.sans == SanRule::EtcdServer {
                alt.push_sans(&inputs.etcd_server_sans, "etcd.local.serverCertSANs")?;
            } else {
                alt.push_sans(&inputs.etcd_peer_sans, "etcd.local.peerCertSANs")?;
            }
        }
        SanRule::Loopback => alt.ips = vec![IpAddr::from([127, 0, 0, 1])],
    }
    Ok(alt.dedup())
}

/// The first address of the service subnet: the `kubernetes` service's ClusterIP
/// (kubeadm: constants.GetAPIServerVirtualIP).
///
/// # Errors
/// [`PkiError::ServiceSubnetTooSmall`] for a /32 (or /128).
pub fn apiserver_service_ip(service_subnet: IpNet) -> Result<IpAddr, PkiError> {
    let too_small = || PkiError::ServiceSubnetTooSmall {
        value: service_subnet.to_string(),
    };
    match service_subnet.trunc() {
        IpNet::V4(net) => {
            let first = u32::from(net.network())
                .checked_add(1)
                .ok_or_else(too_small)?;
            let ip = std::net::Ipv4Addr::from(first);
            if net.contains(&ip) {
                Ok(IpAddr::V4(ip))
            } else {
                Err(too_small())
            }
        }
        IpNet::V6(net) => {
            let first = u128::from(net.network())
                .checked_add(1)
                .ok_or_else(too_small)?;
            let ip = std::net::Ipv6Addr::from(first);
            if net.contains(&ip) {
                Ok(IpAddr::V6(ip))
            } else {
                Err(too_small())
            }
        }
    }
}

/// Splits `host`, `host:port`, `[ipv6]:port` or a bare IPv6 address into host and port
/// (kubeadm: app/util/endpoint.go, ParseHostPort).
///
/// # Errors
/// [`PkiError::InvalidControlPlaneEndpoint`].
pub fn parse_host_port(value: &str) -> Result<(String, Option<u16>), PkiError> {
    let fail = |reason| PkiError::InvalidControlPlaneEndpoint {
        value: value.to_string(),
        reason,
    };
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| fail("missing ']'"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| fail("expected ':' after ']'"))?,
            ),
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(fail("an address in brackets must be IPv6"));
        }
        (host, port)
    } else if value.parse::<std::net::Ipv6Addr>().is_ok() {
        (value, None)
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(fail("the port must be a number from 1 to 65535")),
        },
    };
    if host.parse::<IpAddr>().is_err() && !is_dns1123_subdomain(host) {
        return Err(fail("the host must be an IP address or a DNS name"));
    }
    Ok((host.to_string(), port))
}

/// RFC 1123 subdomain as Kubernetes validates it (apimachinery validation.IsDNS1123Subdomain).
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn inputs() -> CertInputs {
        CertInputs {
            node_name: "node1".to_string(),
            advertise_address: "10.0.0.1".parse().expect("ip"),
            service_subnet: "10.96.0.0/12".parse().expect("cidr"),
            dns_domain: "cluster.local".to_string(),
            control_plane_endpoint: None,
            apiserver_cert_sans: vec![],
            etcd_server_sans: vec![],
            etcd_peer_sans: vec![],
            algorithm: KeyAlgorithm::EcdsaP256,
            validity: Validity::default(),
        }
    }

    fn spec(name: &str) -> &'static CertSpec {
        cert_spec(name).expect("known spec")
    }

    #[test]
    fn table_names_and_cas_are_consistent() {
        let names: Vec<_> = CERTS.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "ca",
                "apiserver",
                "apiserver-kubelet-client",
                "front-proxy-ca",
                "front-proxy-client",
                "etcd-ca",
                "etcd-server",
                "etcd-peer",
                "etcd-healthcheck-client",
                "apiserver-etcd-client"
            ]
        );
        for (i, s) in CERTS.iter().enumerate() {
            if let Some(ca) = s.ca_spec() {
                assert!(ca.is_ca(), "{} signed by non-CA", s.name);
                assert!(
                    CERTS[..i].iter().any(|c| c.name == ca.name),
                    "{} before its CA",
                    s.name
                );
            }
        }
        assert_eq!(certs_for(false).count(), 5);
    }

    #[test]
    fn apiserver_sans_follow_kubeadm() {
        let mut i = inputs();
        i.control_plane_endpoint = Some("lb.example.com:6443".to_string());
        i.apiserver_cert_sans = vec![
            "10.0.0.9".into(),
            "extra.example.com".into(),
            "10.0.0.1".into(),
        ];
        let alt = alt_names(spec("apiserver"), &i).expect("sans");
        assert_eq!(
            alt.dns_names,
            [
                "extra.example.com",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "lb.example.com",
                "node1"
            ]
        );
        let ips: Vec<String> = alt.ips.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(ips, ["10.96.0.1", "10.0.0.1", "10.0.0.9"]);
    }

    #[test]
    fn ip_control_plane_endpoint_is_an_ip_san() {
        let mut i = inputs();
        i.control_plane_endpoint = Some("[fd00::10]:6443".to_string());
        let alt = alt_names(spec("apiserver"), &i).expect("sans");
        assert!(alt.ips.contains(&"fd00::10".parse().expect("ip")));
    }

    #[test]
    fn etcd_sans_follow_kubeadm() {
        let mut i = inputs();
        i.etcd_server_sans = vec!["etcd.example.com".into()];
        i.etcd_peer_sans = vec!["10.0.0.5".into()];
        let server = alt_names(spec("etcd-server"), &i).expect("sans");
        assert_eq!(server.dns_names, ["etcd.example.com", "localhost", "node1"]);
        let ips: Vec<String> = server.ips.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.1", "127.0.0.1", "::1"]);
        let peer = alt_names(spec("etcd-peer"), &i).expect("sans");
        assert_eq!(peer.dns_names, ["localhost", "node1"]);
        assert_eq!(peer.ips.len(), 4);
        assert!(alt_names(spec("ca"), &i).expect("none").ips.is_empty());
    }

    #[test]
    fn agent_webhook_cert_is_a_loopback_server_cert_signed_by_the_cluster_ca() {
        let spec = &KUBEBOOT_AGENT_WEBHOOK_CERT;
        // kubeboot's own: never in kubeadm's list (the goldens compare that list).
        assert!(CERTS.iter().all(|s| s.name != spec.name));
        assert_eq!(spec.ca_spec().map(|c| c.name), Some("ca"));
        assert_eq!(spec.ext_key_usages, [ExtKeyUsage::ServerAuth]);
        let mut i = inputs();
        // Nothing of the node's or the cluster's configuration widens it.
        i.apiserver_cert_sans = vec!["10.0.0.9".into(), "extra.example.com".into()];
        i.control_plane_endpoint = Some("lb.example.com:6443".into());
        let alt = alt_names(spec, &i).expect("sans");
        assert!(alt.dns_names.is_empty(), "{alt:?}");
        assert_eq!(alt.ips, [IpAddr::from([127, 0, 0, 1])]);
    }

    #[test]
    fn invalid_san_names_the_field() {
        let mut i = inputs();
        i.apiserver_cert_sans = vec!["Not_A_Name".into()];
        let err = alt_names(spec("apiserver"), &i).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "apiServer.certSANs: \"Not_A_Name\" is neither an IP address nor a valid DNS name; fix or remove it"
        );
        i.apiserver_cert_sans = vec!["*.apps.example.com".into()];
        assert!(alt_names(spec("apiserver"), &i).is_ok());
    }

    #[test]
    fn service_ip_is_first_address() {
        let ip = |s: &str| apiserver_service_ip(s.parse().expect("cidr")).map(|ip| ip.to_string());
        assert_eq!(ip("10.96.0.0/12").expect("ok"), "10.96.0.1");
        assert_eq!(ip("10.96.3.7/12").expect("ok"), "10.96.0.1");
        assert_eq!(ip("fd00:10:96::/108").expect("ok"), "fd00:10:96::1");
        assert!(ip("10.0.0.1/32").is_err());
    }

    #[test]
    fn host_port_parsing() {
        let p = |s: &str| parse_host_port(s);
        assert_eq!(p("lb:6443").expect("ok"), ("lb".to_string(), Some(6443)));
        assert_eq!(p("10.0.0.1").expect("ok"), ("10.0.0.1".to_string(), None));
        assert_eq!(p("[::1]:443").expect("ok"), ("::1".to_string(), Some(443)));
        assert_eq!(p("fd00::1").expect("ok"), ("fd00::1".to_string(), None));
        assert!(p("lb:http").is_err());
        assert!(p("[10.0.0.1]:6443").is_err());
        assert!(p("bad host").is_err());
    }
}
