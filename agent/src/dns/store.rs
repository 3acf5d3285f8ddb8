//! The cluster DNS records: what the Service and Endpoints watches say, reduced to what the
//! answers need (names, IPs, ports, hostnames), keyed for lookups by name and by IP.
//!
//! No Kubernetes object is kept: an upsert copies the few fields DNS uses and drops the rest,
//! which keeps the server's memory a small multiple of the number of names it serves.
//! Names are stored lowercase (Kubernetes names are DNS labels, lowercase by validation);
//! lookups lowercase the question first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use anyhow::Context;
use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints, Service, ServicePort};

/// The records of one cluster domain (`--service-dns-domain`).
#[derive(Debug)]
pub struct Store {
    /// The cluster domain, lowercase, no trailing dot ("cluster.local").
    domain: Box<str>,
    /// The same as a fully qualified name, for building answers.
    domain_name: Name,
    namespaces: BTreeMap<Box<str>, Namespace>,
    /// Every IP a Service or an Endpoints object mentions -> the objects that mention it,
    /// for PTR answers without a scan.
    reverse: HashMap<IpAddr, Vec<Key>>,
    /// Bumped on every change; the zone's SOA serial (CoreDNS uses the time of the last
    /// change; a counter needs no clock and changes as often).
    serial: u32,
}

/// A namespace's objects, by name.
#[derive(Debug, Default)]
struct Namespace {
    services: BTreeMap<Box<str>, ServiceRecord>,
    endpoints: BTreeMap<Box<str>, EndpointsRecord>,
}

/// (namespace, name) of a Service or of its Endpoints (same name).
type Key = (Box<str>, Box<str>);

/// What DNS needs of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceRecord {
    pub(crate) kind: ServiceKind,
    /// All its ports (SRV of the bare name lists every port; `_name._proto` needs a name).
    pub(crate) ports: Box<[PortRecord]>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoint addresses are answered too.
    pub(crate) publish_not_ready: bool,
}

/// How a Service is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServiceKind {
    /// A virtual IP per family (`spec.clusterIPs`, or `spec.clusterIP` alone).
    ClusterIp(Box<[IpAddr]>),
    /// `clusterIP: None`: answered with its endpoints' addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to this name (fully qualified, as given).
    ExternalName(Name),
}

/// A Service or Endpoints port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortRecord {
    /// Lowercase; empty for an unnamed port (no `_name._proto` SRV then).
    pub(crate) name: Box<str>,
    pub(crate) protocol: Protocol,
    pub(crate) port: u16,
}

/// A port's protocol, as the `_proto` label of SRV names spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `TCP` (the API's default when absent), `UDP`, `SCTP`; anything else is not a protocol
    /// the API accepts, and the port is skipped.
    fn from_api(p: Option<&str>) -> Option<Protocol> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The SRV label without its underscore ("tcp").
    pub(crate) fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// What DNS needs of an Endpoints object: its subsets' addresses and ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EndpointsRecord {
    pub(crate) subsets: Box<[SubsetRecord]>,
}

/// One subset: every address serves every port of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubsetRecord {
    pub(crate) addresses: Box<[AddressRecord]>,
    pub(crate) ports: Box<[PortRecord]>,
}

/// One endpoint address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressRecord {
    pub(crate) ip: IpAddr,
    /// Its DNS label below the service name: the pod's `hostname` (lowercase) when set
    /// (pods with hostname + subdomain), else the IP with `-` for `.`/`:` as CoreDNS's
    /// `endpointHostname` makes it ("10-244-0-5", "fd00--5").
    pub(crate) label: Box<str>,
    /// From `addresses` (true) or `notReadyAddresses` (false).
    pub(crate) ready: bool,
}

impl Store {
    /// `cluster_domain` like "cluster.local" (from --service-dns-domain); error on an invalid name.
    pub fn new(cluster_domain: &str) -> anyhow::Result<Store> {
        let domain = cluster_domain.trim_end_matches('.').to_ascii_lowercase();
        let valid =
            !domain.is_empty() && domain.len() <= 200 && domain.split('.').all(is_dns_label);
        anyhow::ensure!(
            valid,
            "invalid cluster domain {cluster_domain:?}: it must be a DNS name of lowercase \
             labels (letters, digits, '-') such as \"cluster.local\" (set it with \
             --service-dns-domain / networking.dnsDomain)"
        );
        let domain_name = Name::from_ascii(format!("{domain}."))
            .with_context(|| format!("invalid cluster domain {cluster_domain:?}"))?;
        Ok(Store {
            domain: domain.into(),
            domain_name,
            namespaces: BTreeMap::new(),
            reverse: HashMap::new(),
            serial: 1,
        })
    }

    /// Adds or replaces a Service's records. A Service without a name or namespace is
    /// ignored (the API never sends one).
    pub fn upsert_service(&mut self, svc: &Service) {
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            return;
        };
        let record = service_record(svc);
        let key: Key = (
            ns.to_ascii_lowercase().into(),
            name.to_ascii_lowercase().into(),
        );
        let namespace = self.namespaces.entry(key.0.clone()).or_default();
        if namespace.services.get(&key.1) == Some(&record) {
            return;
        }
        let old = namespace.services.insert(key.1.clone(), record);
        if let Some(old) = old {
            for ip in service_ips(&old) {
                self.unindex(ip, &key);
            }
        }
        let ips: Vec<IpAddr> = self
            .service(&key.0, &key.1)
            .map(service_ips)
            .into_iter()
            .flatten()
            .collect();
        for ip in ips {
            self.index(ip, &key);
        }
        self.bump();
    }

    /// Removes a Service's records (its Endpoints stay until their own removal, as in the API).
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        let key: Key = (
            namespace.to_ascii_lowercase().into(),
            name.to_ascii_lowercase().into(),
        );
        let Some(ns) = self.namespaces.get_mut(&key.0) else {
            return;
        };
        let Some(old) = ns.services.remove(&key.1) else {
            return;
        };
        for ip in service_ips(&old) {
            self.unindex(ip, &key);
        }
        self.drop_empty_namespace(&key.0);
        self.bump();
    }

    /// Adds or replaces an Endpoints object's addresses.
    pub fn upsert_endpoints(&mut self, ep: &Endpoints) {
        let (Some(ns), Some(name)) = (&ep.metadata.namespace, &ep.metadata.name) else {
            return;
        };
        let record = endpoints_record(ep);
        let key: Key = (
            ns.to_ascii_lowercase().into(),
            name.to_ascii_lowercase().into(),
        );
        let namespace = self.namespaces.entry(key.0.clone()).or_default();
        if namespace.endpoints.get(&key.1) == Some(&record) {
            return;
        }
        let new_ips: Vec<IpAddr> = endpoint_ips(&record).collect();
        let old = namespace.endpoints.insert(key.1.clone(), record);
        if let Some(old) = old {
            for ip in endpoint_ips(&old) {
                self.unindex(ip, &key);
            }
        }
        for ip in new_ips {
            self.index(ip, &key);
        }
        self.bump();
    }

    /// Removes an Endpoints object's addresses.
    pub fn remove_endpoints(&mut self, namespace: &str, name: &str) {
        let key: Key = (
            namespace.to_ascii_lowercase().into(),
            name.to_ascii_lowercase().into(),
        );
        let Some(ns) = self.namespaces.get_mut(&key.0) else {
            return;
        };
        let Some(old) = ns.endpoints.remove(&key.1) else {
            return;
        };
        for ip in endpoint_ips(&old) {
            self.unindex(ip, &key);
        }
        self.drop_empty_namespace(&key.0);
        self.bump();
    }

    /// How many Services the store holds (the readiness check and the benchmark use it).
    pub fn service_count(&self) -> usize {
        self.namespaces.values().map(|ns| ns.services.len()).sum()
    }

    /// The cluster domain, lowercase, no trailing dot.
    pub fn cluster_domain(&self) -> &str {
        &self.domain
    }

    /// The cluster domain as a fully qualified name.
    pub(crate) fn domain_name(&self) -> &Name {
        &self.domain_name
    }

    /// The SOA serial: changes whenever the records do.
    pub(crate) fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether the namespace has any Service or Endpoints (`<ns>.svc.<domain>` exists).
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<&ServiceRecord> {
        self.namespaces.get(namespace)?.services.get(name)
    }

    pub(crate) fn endpoints(&self, namespace: &str, name: &str) -> Option<&EndpointsRecord> {
        self.namespaces.get(namespace)?.endpoints.get(name)
    }

    /// The (namespace, name) of every Service and Endpoints mentioning `ip`, sorted.
    pub(crate) fn owners_of(&self, ip: IpAddr) -> &[Key] {
        self.reverse.get(&ip).map(Vec::as_slice).unwrap_or(&[])
    }

    fn index(&mut self, ip: IpAddr, key: &Key) {
        let owners = self.reverse.entry(ip).or_default();
        if let Err(at) = owners.binary_search(key) {
            owners.insert(at, key.clone());
        }
    }

    /// Removes `key` from `ip`'s owners unless the key's other object (Service or
    /// Endpoints) still mentions the IP.
    fn unindex(&mut self, ip: IpAddr, key: &Key) {
        let still = self
            .service(&key.0, &key.1)
            .is_some_and(|s| service_ips(s).any(|i| i == ip))
            || self
                .endpoints(&key.0, &key.1)
                .is_some_and(|e| endpoint_ips(e).any(|i| i == ip));
        if still {
            return;
        }
        if let Some(owners) = self.reverse.get_mut(&ip) {
            owners.retain(|k| k != key);
            if owners.is_empty() {
                self.reverse.remove(&ip);
            }
        }
    }

    fn drop_empty_namespace(&mut self, namespace: &str) {
        if self
            .namespaces
            .get(namespace)
            .is_some_and(|ns| ns.services.is_empty() && ns.endpoints.is_empty())
        {
            self.namespaces.remove(namespace);
        }
    }

    fn bump(&mut self) {
        self.serial = self.serial.wrapping_add(1).max(1);
    }
}

/// The cluster IPs of a Service (none for headless and ExternalName).
fn service_ips(s: &ServiceRecord) -> impl Iterator<Item = IpAddr> + '_ {
    let ips: &[IpAddr] = match &s.kind {
        ServiceKind::ClusterIp(ips) => ips,
        _ => &[],
    };
    ips.iter().copied()
}

/// Every address of an Endpoints object, ready or not.
fn endpoint_ips(e: &EndpointsRecord) -> impl Iterator<Item = IpAddr> + '_ {
    e.subsets
        .iter()
        .flat_map(|s| s.addresses.iter().map(|a| a.ip))
}

/// The DNS view of a Service.
fn service_record(svc: &Service) -> ServiceRecord {
    let spec = svc.spec.as_ref();
    let is_external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let kind = if is_external {
        let target = spec
            .and_then(|s| s.external_name.as_deref())
            .map(|n| n.trim_end_matches('.'))
            .filter(|n| !n.is_empty())
            .and_then(|n| Name::from_ascii(format!("{n}.")).ok());
        match target {
            Some(name) => ServiceKind::ExternalName(name),
            // An ExternalName Service without a usable name: it exists, with no records.
            None => ServiceKind::ClusterIp(Box::new([])),
        }
    } else {
        let cluster_ip = spec.and_then(|s| s.cluster_ip.as_deref());
        if cluster_ip == Some("None") {
            ServiceKind::Headless
        } else {
            // clusterIPs (dual-stack, 1.20) lists clusterIP first; older objects only have
            // clusterIP. Unparsable entries are skipped, duplicates kept once.
            let mut ips: Vec<IpAddr> = Vec::new();
            let listed = spec.and_then(|s| s.cluster_ips.as_deref()).unwrap_or(&[]);
            for text in cluster_ip
                .into_iter()
                .chain(listed.iter().map(String::as_str))
            {
                if let Ok(ip) = text.parse::<IpAddr>() {
                    if !ips.contains(&ip) {
                        ips.push(ip);
                    }
                }
            }
            ServiceKind::ClusterIp(ips.into())
        }
    };
    let ports = spec
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
        .iter()
        .filter_map(service_port)
        .collect();
    ServiceRecord {
        kind,
        ports,
        publish_not_ready: spec
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false),
    }
}

fn service_port(p: &ServicePort) -> Option<PortRecord> {
    port_record(p.name.as_deref(), p.protocol.as_deref(), p.port)
}

fn endpoint_port(p: &EndpointPort) -> Option<PortRecord> {
    port_record(p.name.as_deref(), p.protocol.as_deref(), p.port)
}

fn port_record(name: Option<&str>, protocol: Option<&str>, port: i32) -> Option<PortRecord> {
    Some(PortRecord {
        name: name.unwrap_or("").to_ascii_lowercase().into(),
        protocol: Protocol::from_api(protocol)?,
        port: u16::try_from(port).ok()?,
    })
}

/// The DNS view of an Endpoints object.
fn endpoints_record(ep: &Endpoints) -> EndpointsRecord {
    let subsets = ep
        .subsets
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|s| {
            let ready = s
                .addresses
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter_map(|a| address(a, true));
            let not_ready = s
                .not_ready_addresses
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter_map(|a| address(a, false));
            SubsetRecord {
                addresses: ready.chain(not_ready).collect(),
                ports: s
                    .ports
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(endpoint_port)
                    .collect(),
            }
        })
        .collect();
    EndpointsRecord { subsets }
}

fn address(a: &EndpointAddress, ready: bool) -> Option<AddressRecord> {
    let ip: IpAddr = a.ip.parse().ok()?;
    let hostname = a
        .hostname
        .as_deref()
        .map(str::to_ascii_lowercase)
        .filter(|h| is_dns_label(h));
    let label = hostname.unwrap_or_else(|| dashed(ip));
    Some(AddressRecord {
        ip,
        label: label.into(),
        ready,
    })
}

/// The IP with `-` for each `.` or `:` (CoreDNS's endpointHostname; pod names use the same).
pub(crate) fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// A DNS label as Kubernetes names use them: 1-63 of [a-z0-9-], not starting or ending
/// with '-'.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointSubset, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn new_checks_the_domain() {
        assert_eq!(
            Store::new("Cluster.Local.").unwrap().cluster_domain(),
            "cluster.local"
        );
        for bad in ["", ".", "a..b", "-a.b", "a_b.local", "a b"] {
            let err = Store::new(bad).unwrap_err().to_string();
            assert!(err.contains("--service-dns-domain"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn upsert_replace_remove_keep_the_reverse_index_exact() {
        let mut s = Store::new("cluster.local").unwrap();
        s.upsert_service(&svc("default", "web", "10.96.0.20"));
        assert_eq!(s.service_count(), 1);
        let ip: IpAddr = "10.96.0.20".parse().unwrap();
        assert_eq!(s.owners_of(ip).len(), 1);
        // A new clusterIP replaces the old one in the index.
        s.upsert_service(&svc("default", "web", "10.96.0.21"));
        assert!(s.owners_of(ip).is_empty());
        assert_eq!(s.owners_of("10.96.0.21".parse().unwrap()).len(), 1);
        let serial = s.serial();
        // The same object again changes nothing, not even the serial.
        s.upsert_service(&svc("default", "web", "10.96.0.21"));
        assert_eq!(s.serial(), serial);
        s.remove_service("default", "web");
        assert_eq!(s.service_count(), 0);
        assert!(s.owners_of("10.96.0.21".parse().unwrap()).is_empty());
        assert!(!s.has_namespace("default"));
        assert_ne!(s.serial(), serial);
    }

    #[test]
    fn endpoints_keep_ready_state_hostnames_and_dashed_labels() {
        let mut s = Store::new("cluster.local").unwrap();
        let ep = Endpoints {
            metadata: ObjectMeta {
                namespace: Some("db".into()),
                name: Some("pg".into()),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![
                    EndpointAddress {
                        ip: "10.244.0.5".into(),
                        hostname: Some("pg-0".into()),
                        ..Default::default()
                    },
                    EndpointAddress {
                        ip: "fd00::5".into(),
                        ..Default::default()
                    },
                    EndpointAddress {
                        ip: "not-an-ip".into(),
                        ..Default::default()
                    },
                ]),
                not_ready_addresses: Some(vec![EndpointAddress {
                    ip: "10.244.0.6".into(),
                    ..Default::default()
                }]),
                ports: Some(vec![EndpointPort {
                    name: Some("PG".into()),
                    port: 5432,
                    ..Default::default()
                }]),
            }]),
        };
        s.upsert_endpoints(&ep);
        let rec = s.endpoints("db", "pg").unwrap();
        let got: Vec<(String, &str, bool)> = rec.subsets[0]
            .addresses
            .iter()
            .map(|a| (a.ip.to_string(), &*a.label, a.ready))
            .collect();
        assert_eq!(
            got,
            [
                ("10.244.0.5".to_string(), "pg-0", true),
                ("fd00::5".to_string(), "fd00--5", true),
                ("10.244.0.6".to_string(), "10-244-0-6", false)
            ]
        );
        assert_eq!(&*rec.subsets[0].ports[0].name, "pg");
        assert_eq!(rec.subsets[0].ports[0].protocol, Protocol::Tcp);
        // A Service and its Endpoints share the key; removing one keeps the other's IPs.
        s.upsert_service(&svc("db", "pg", "None"));
        s.remove_service("db", "pg");
        assert_eq!(s.owners_of("10.244.0.5".parse().unwrap()).len(), 1);
        s.remove_endpoints("db", "pg");
        assert!(s.owners_of("10.244.0.5".parse().unwrap()).is_empty());
        assert!(!s.has_namespace("db"));
    }
}
