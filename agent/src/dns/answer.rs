//! One query packet in, one [`Outcome`] out: the reply bytes, a relay to upstream resolvers,
//! or nothing. Pure: the records come from the [`Store`], the settings from the Corefile.
//!
//! The order of checks, each with its answer:
//! 1. fewer than 12 bytes, or a response (QR set): [`Outcome::Drop`] (answering responses
//!    would let two servers bounce packets off each other);
//! 2. an opcode other than QUERY: NOTIMP;
//! 3. more than [`MAX_QUERY_LEN`] bytes, a question count other than 1, or a packet hickory
//!    cannot read (truncated question, forward or looping compression pointers, a label over
//!    63 or a name over 255 bytes, a bad label type, two OPT records): FORMERR;
//! 4. an EDNS version other than 0: BADVERS (RFC 6891 6.1.3);
//! 5. a class other than IN (CH `version.bind` included), or type AXFR, IXFR or ANY:
//!    REFUSED, with an extended error saying why when the query has EDNS. Zone transfers are
//!    not offered; ANY is refused rather than answered partially (RFC 8482 allows either;
//!    one rule for every name is simplest to reason about, and stub resolvers never send it);
//! 6. the name, by the longest zone that contains it: the cluster domain, the reverse zones
//!    `in-addr.arpa`/`ip6.arpa`, a stub domain, or else the upstreams.
//!
//! Within the cluster domain the answers follow the Kubernetes DNS specification
//! (kubernetes/dns docs/specification.md, schema 1.1.0) as CoreDNS's kubernetes plugin gives
//! them with kubeadm's Corefile (coredns plugin/kubernetes/kubernetes.go findServices,
//! findPods, reverse.go; plugin/backend_lookup.go for SRV weights and the SOA):
//! - `<svc>.<ns>.svc.<zone>`: A/AAAA of a ClusterIP Service's IPs per family; a headless
//!   Service's visible endpoint addresses (ready, and not-ready ones when the Service has
//!   publishNotReadyAddresses; no visible address at all is NXDOMAIN, as CoreDNS); an
//!   ExternalName Service's CNAME for every type (not chased: the client's resolver does);
//!   SRV of every port (ClusterIP: target the service name; headless: one per endpoint and
//!   port, target the endpoint name), with the targets' A/AAAA as additional records.
//! - `<endpoint>.<svc>.<ns>.svc.<zone>`: A/AAAA of the endpoint addresses with that label
//!   (the pod's hostname, else the dashed IP), for any Service with endpoints, as CoreDNS.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV of the named port (NXDOMAIN if no port of
//!   that name and protocol); other types there are NODATA.
//! - `<a-b-c-d>.<ns>.pod.<zone>` (and dashed IPv6): the IP itself when `pods insecure`;
//!   NXDOMAIN for a label that is no IP or when pod records are disabled.
//! - `dns-version.<zone>` TXT "1.1.0"; the apex's SOA and NS (`ns.dns.<zone>`, whose A/AAAA
//!   are the `kube-system/kube-dns` Service's IPs).
//! - PTR of Service cluster IPs (`<svc>.<ns>.svc.<zone>`) and of endpoint addresses of
//!   existing Services (`<endpoint>.<svc>.<ns>.svc.<zone>`) when no cluster IP matches.
//!   A reverse name the store does not know falls through to the upstreams
//!   (`fallthrough in-addr.arpa ip6.arpa`).
//! - Every other name in the zone is NXDOMAIN; a name that exists with no record of the asked
//!   type is NODATA (NOERROR, no answer). Both carry the zone's SOA in the authority section
//!   (`ns.dns.<zone>. hostmaster.<zone>.`, minimum = the TTL), so clients cache the denial.
//!
//! Replies echo the question as asked (0x20 case randomisation survives) and answer at
//! that name; lookups are case-insensitive. Over UDP a reply fits in 512 bytes, or in the
//! query's EDNS payload size capped at [`EDNS_PAYLOAD`]: additional records go first, then
//! answers that do not fit, with TC set so the client retries over TCP; TCP replies may use
//! the full 64 KiB. Work and memory per packet are bounded by the packet and by the records
//! the answer names, never by counts the packet claims.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::message::emit_message_parts;
use hickory_proto::op::{Edns, Header, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};

use super::store::{AddressRecord, PortRecord, ServiceKind, ServiceRecord, Store};

/// The longest query read. Real queries are a question and an OPT record (a few hundred
/// bytes with padding); the limit bounds the work hostile compression pointers can cause
/// (each pointer chain is at most half the packet long).
pub const MAX_QUERY_LEN: usize = 4096;

/// The largest UDP reply, whatever the query's EDNS payload size says: the DNS flag day 2020
/// value, which avoids IP fragmentation on any usual path. It is also the size we advertise.
pub const EDNS_PAYLOAD: u16 = 1232;

/// A UDP reply's limit without EDNS (RFC 1035 4.2.1).
const UDP_PLAIN: u16 = 512;

/// The schema version `dns-version.<zone>` answers (specification section 1).
const SCHEMA_VERSION: &str = "1.1.0";

/// RFC 8914 extended DNS error codes used here.
const EDE_NOT_SUPPORTED: u16 = 21;
const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
/// The EDNS option code of an extended DNS error (RFC 8914).
const EDNS_EDE: u16 = 15;

/// How kubeboot's DNS answers; from the Corefile, with kubeadm's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// TTL of every record, and the SOA minimum (kubeadm's Corefile: `ttl 30`).
    pub ttl: u32,
    /// `pods insecure`: `<a-b-c-d>.<ns>.pod.<domain>` answered without a pod lookup.
    pub pods_insecure: bool,
    /// `forward .` targets, already resolved and loop-filtered.
    pub upstreams: Vec<SocketAddr>,
    /// Zone (lowercase, no trailing dot) -> servers.
    pub stub_domains: Vec<(String, Vec<SocketAddr>)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ttl: 30,
            pods_insecure: true,
            upstreams: Vec::new(),
            stub_domains: Vec::new(),
        }
    }
}

/// The transport a query came over: it sets the reply's size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one query packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back (already truncated, TC set, for UDP).
    Reply(Vec<u8>),
    /// Relay the query as received to one of these; never empty (no upstream is a SERVFAIL
    /// reply instead).
    Forward { upstreams: Vec<SocketAddr> },
    /// Answer nothing (a response packet, fewer than 12 bytes).
    Drop,
}

/// Answers one query packet.
pub fn answer(store: &Store, settings: &Settings, packet: &[u8], transport: Transport) -> Outcome {
    if packet.len() < Header::len() {
        return Outcome::Drop;
    }
    let mut decoder = BinDecoder::new(packet);
    let Ok(header) = Header::read(&mut decoder) else {
        return Outcome::Drop;
    };
    if header.message_type() == MessageType::Response {
        return Outcome::Drop;
    }
    if header.op_code() != OpCode::Query {
        return Outcome::Reply(bare_reply(&header, ResponseCode::NotImp));
    }
    if packet.len() > MAX_QUERY_LEN || header.query_count() != 1 {
        return Outcome::Reply(bare_reply(&header, ResponseCode::FormErr));
    }
    let Some(request) = read_request(&mut decoder, &header) else {
        return Outcome::Reply(bare_reply(&header, ResponseCode::FormErr));
    };
    let limit = match (transport, &request.edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, None) => UDP_PLAIN,
        (Transport::Udp, Some(edns)) => edns.max_payload().clamp(UDP_PLAIN, EDNS_PAYLOAD),
    };
    match decide(store, settings, &request) {
        Decision::Forward(upstreams) if !upstreams.is_empty() => Outcome::Forward { upstreams },
        Decision::Forward(_) => {
            let mut reply = Reply::error(ResponseCode::ServFail);
            reply.ede = Some((
                EDE_NO_REACHABLE_AUTHORITY,
                "kubeboot-dns: no upstream resolver is configured for names outside the cluster",
            ));
            Outcome::Reply(encode(&request, &reply, limit))
        }
        Decision::Reply(reply) => Outcome::Reply(encode(&request, &reply, limit)),
    }
}

/// A SERVFAIL for `query` (upstream timed out / failed), None if `query` cannot be parsed.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < Header::len() || query.len() > MAX_QUERY_LEN {
        return None;
    }
    let mut decoder = BinDecoder::new(query);
    let header = Header::read(&mut decoder).ok()?;
    if header.message_type() == MessageType::Response || header.query_count() != 1 {
        return None;
    }
    let request = read_request(&mut decoder, &header)?;
    let mut reply = Reply::error(ResponseCode::ServFail);
    reply.ede = Some((
        EDE_NO_REACHABLE_AUTHORITY,
        "kubeboot-dns: no answer from the upstream resolvers",
    ));
    Some(encode(&request, &reply, UDP_PLAIN))
}

/// Removes from `candidates` every address that would loop back to this server
/// (`own`: the pod's IPs, the kube-dns ClusterIP(s), loopback), keeping order.
pub fn without_loops(candidates: &[SocketAddr], own: &[IpAddr]) -> Vec<SocketAddr> {
    candidates
        .iter()
        .filter(|c| {
            let ip = c.ip().to_canonical();
            !ip.is_loopback() && !ip.is_unspecified() && !own.iter().any(|o| o.to_canonical() == ip)
        })
        .copied()
        .collect()
}

/// The parts of a query the answer needs.
struct Request {
    header: Header,
    query: Query,
    edns: Option<Edns>,
}

/// Reads the question and the records after it, keeping only the OPT record. None if any
/// of it cannot be read. Records are read one at a time and dropped, so a claimed count
/// costs nothing until the packet actually holds that many records.
fn read_request(decoder: &mut BinDecoder<'_>, header: &Header) -> Option<Request> {
    let query = Query::read(decoder).ok()?;
    let others = usize::from(header.answer_count()) + usize::from(header.name_server_count());
    for _ in 0..others {
        Record::read(decoder).ok()?;
    }
    let mut edns = None;
    for _ in 0..header.additional_count() {
        let record = Record::read(decoder).ok()?;
        if record.record_type() == RecordType::OPT {
            if edns.is_some()
                || !matches!(
                    record.data(),
                    RData::OPT(_) | RData::Update0(_) | RData::NULL(_)
                )
            {
                return None;
            }
            edns = Some(Edns::from(&record));
        }
    }
    Some(Request {
        header: *header,
        query,
        edns,
    })
}

/// What the query gets.
enum Decision {
    Reply(Reply),
    /// Relay to these (empty: nobody to relay to, SERVFAIL).
    Forward(Vec<SocketAddr>),
}

/// A reply's content before encoding.
#[derive(Debug, Default)]
struct Reply {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
    /// An extended DNS error (RFC 8914) for clients that sent EDNS.
    ede: Option<(u16, &'static str)>,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Reply {
        Reply {
            rcode,
            ..Reply::default()
        }
    }
}

fn decide(store: &Store, settings: &Settings, request: &Request) -> Decision {
    let query = &request.query;
    if let Some(edns) = &request.edns {
        if edns.version() != 0 {
            return Decision::Reply(Reply::error(ResponseCode::BADVERS));
        }
    }
    if query.query_class() != DNSClass::IN {
        let mut reply = Reply::error(ResponseCode::Refused);
        reply.ede = Some((EDE_NOT_SUPPORTED, "kubeboot-dns answers class IN only"));
        return Decision::Reply(reply);
    }
    if matches!(
        query.query_type(),
        RecordType::AXFR | RecordType::IXFR | RecordType::ANY
    ) {
        let mut reply = Reply::error(ResponseCode::Refused);
        reply.ede = Some((
            EDE_NOT_SUPPORTED,
            "kubeboot-dns answers no zone transfers and no ANY queries",
        ));
        return Decision::Reply(reply);
    }
    let lower = query.name().to_lowercase();
    let labels: Vec<&[u8]> = lower.iter().collect();
    let cluster: Vec<&[u8]> = store
        .cluster_domain()
        .split('.')
        .map(str::as_bytes)
        .collect();
    let mut best: Option<(usize, Zone<'_>)> = None;
    consider(
        &mut best,
        cluster.len(),
        Zone::Cluster,
        labels.ends_with(&cluster),
    );
    consider(
        &mut best,
        2,
        Zone::Reverse(ReverseZone::V4),
        labels.ends_with(&[b"in-addr", b"arpa"]),
    );
    consider(
        &mut best,
        2,
        Zone::Reverse(ReverseZone::V6),
        labels.ends_with(&[b"ip6", b"arpa"]),
    );
    for (zone, servers) in &settings.stub_domains {
        let zone_labels: Vec<&[u8]> = zone
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::as_bytes)
            .collect();
        consider(
            &mut best,
            zone_labels.len(),
            Zone::Stub(servers),
            labels.ends_with(&zone_labels),
        );
    }
    let qtype = query.query_type();
    match best {
        None => Decision::Forward(settings.upstreams.clone()),
        Some((_, Zone::Stub(servers))) => Decision::Forward(servers.to_vec()),
        Some((len, Zone::Cluster)) => {
            let ctx = Ctx {
                store,
                settings,
                qname: query.name(),
                qtype,
            };
            Decision::Reply(ctx.cluster(&labels[..labels.len() - len]))
        }
        Some((_, Zone::Reverse(zone))) => {
            let ctx = Ctx {
                store,
                settings,
                qname: query.name(),
                qtype,
            };
            match ctx.reverse(zone, &labels[..labels.len() - 2]) {
                Some(reply) => Decision::Reply(reply),
                // `fallthrough in-addr.arpa ip6.arpa`: names the cluster does not know go on.
                None => Decision::Forward(settings.upstreams.clone()),
            }
        }
    }
}

/// Keeps the longest matching zone; on a tie the first (the cluster domain) wins.
fn consider<'a>(
    best: &mut Option<(usize, Zone<'a>)>,
    zone_labels: usize,
    zone: Zone<'a>,
    matches: bool,
) {
    if matches && best.as_ref().is_none_or(|(len, _)| zone_labels > *len) {
        *best = Some((zone_labels, zone));
    }
}

/// The zone a name belongs to.
enum Zone<'a> {
    Cluster,
    Reverse(ReverseZone),
    Stub(&'a [SocketAddr]),
}

#[derive(Clone, Copy)]
enum ReverseZone {
    V4,
    V6,
}

impl ReverseZone {
    fn apex(self) -> &'static str {
        match self {
            ReverseZone::V4 => "in-addr.arpa.",
            ReverseZone::V6 => "ip6.arpa.",
        }
    }
}

/// One question being answered from the store.
struct Ctx<'a> {
    store: &'a Store,
    settings: &'a Settings,
    qname: &'a Name,
    qtype: RecordType,
}

/// Which endpoint addresses of a Service an answer uses.
fn visible(svc: &ServiceRecord, address: &AddressRecord) -> bool {
    address.ready || svc.publish_not_ready
}

impl Ctx<'_> {
    /// A name in the cluster domain; `rel` are its labels before the domain, lowercase.
    fn cluster(&self, rel: &[&[u8]]) -> Reply {
        let Some(rel) = rel
            .iter()
            .map(|l| std::str::from_utf8(l).ok())
            .collect::<Option<Vec<&str>>>()
        else {
            return self.nxdomain();
        };
        match rel.as_slice() {
            [] => self.apex(),
            ["dns-version"] => match self.qtype {
                RecordType::TXT => {
                    self.records(vec![RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()]))])
                }
                _ => self.nodata(),
            },
            ["dns"] => self.nodata(),
            ["ns", "dns"] => {
                let ips = match self
                    .store
                    .service("kube-system", "kube-dns")
                    .map(|s| &s.kind)
                {
                    Some(ServiceKind::ClusterIp(ips)) => ips.to_vec(),
                    _ => Vec::new(),
                };
                self.addresses(&ips)
            }
            ["svc"] => self.nodata(),
            [ns, "svc"] if self.store.has_namespace(ns) => self.nodata(),
            [svc, ns, "svc"] => self.service(ns, svc),
            [endpoint, svc, ns, "svc"] => self.endpoint(ns, svc, endpoint),
            [port, proto, svc, ns, "svc"] => {
                match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                    (Some(port), Some(proto)) => self.port(ns, svc, port, proto),
                    _ => self.nxdomain(),
                }
            }
            ["pod"] | [_, "pod"] if self.settings.pods_insecure => self.nodata(),
            [pod, _, "pod"] if self.settings.pods_insecure => match pod_ip(pod) {
                Some(ip) => self.addresses(&[ip]),
                None => self.nxdomain(),
            },
            _ => self.nxdomain(),
        }
    }

    /// The zone apex: SOA, NS, and NODATA for other types.
    fn apex(&self) -> Reply {
        match self.qtype {
            RecordType::SOA => {
                let mut reply = self.nodata();
                reply.answers = std::mem::take(&mut reply.authority);
                reply.answers.iter_mut().for_each(|r| {
                    r.set_name(self.qname.clone());
                });
                reply
            }
            RecordType::NS => {
                let Some(ns) = self.name(&["ns", "dns"]) else {
                    return self.nxdomain();
                };
                let mut reply = self.records(vec![RData::NS(NS(ns.clone()))]);
                if let Some(ServiceKind::ClusterIp(ips)) = self
                    .store
                    .service("kube-system", "kube-dns")
                    .map(|s| &s.kind)
                {
                    for ip in ips.iter() {
                        reply
                            .additionals
                            .push(self.record(ns.clone(), address_rdata(*ip)));
                    }
                }
                reply
            }
            _ => self.nodata(),
        }
    }

    /// `<svc>.<ns>.svc.<zone>`.
    fn service(&self, ns: &str, name: &str) -> Reply {
        let Some(svc) = self.store.service(ns, name) else {
            return self.nxdomain();
        };
        match &svc.kind {
            ServiceKind::ExternalName(target) => {
                self.records(vec![RData::CNAME(CNAME(target.clone()))])
            }
            ServiceKind::ClusterIp(ips) => match self.qtype {
                RecordType::SRV => {
                    let ports: Vec<&PortRecord> = svc.ports.iter().collect();
                    self.cluster_ip_srv(ns, name, ips, &ports)
                }
                _ => self.addresses(ips),
            },
            ServiceKind::Headless => {
                let endpoints = self.visible_endpoints(svc, ns, name, |_| true);
                if endpoints.is_empty() {
                    // CoreDNS: a headless Service with no visible endpoint is NXDOMAIN.
                    return self.nxdomain();
                }
                match self.qtype {
                    RecordType::SRV => self.headless_srv(ns, name, &endpoints, |_| true),
                    _ => {
                        let ips: Vec<IpAddr> = endpoints.iter().map(|(a, _)| a.ip).collect();
                        self.addresses(&ips)
                    }
                }
            }
        }
    }

    /// `<endpoint>.<svc>.<ns>.svc.<zone>`: the Service's endpoint addresses with that label.
    fn endpoint(&self, ns: &str, name: &str, label: &str) -> Reply {
        let Some(svc) = self.store.service(ns, name) else {
            return self.nxdomain();
        };
        if matches!(svc.kind, ServiceKind::ExternalName(_)) {
            return self.nxdomain();
        }
        let endpoints = self.visible_endpoints(svc, ns, name, |a| &*a.label == label);
        if endpoints.is_empty() {
            return self.nxdomain();
        }
        match self.qtype {
            RecordType::SRV => self.headless_srv(ns, name, &endpoints, |_| true),
            _ => {
                let ips: Vec<IpAddr> = endpoints.iter().map(|(a, _)| a.ip).collect();
                self.addresses(&ips)
            }
        }
    }

    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`.
    fn port(&self, ns: &str, name: &str, port: &str, proto: &str) -> Reply {
        let Some(svc) = self.store.service(ns, name) else {
            return self.nxdomain();
        };
        let matches =
            |p: &PortRecord| !p.name.is_empty() && &*p.name == port && p.protocol.label() == proto;
        match &svc.kind {
            ServiceKind::ExternalName(_) => self.nxdomain(),
            ServiceKind::ClusterIp(ips) => {
                let ports: Vec<&PortRecord> = svc.ports.iter().filter(|p| matches(p)).collect();
                if ports.is_empty() {
                    return self.nxdomain();
                }
                match self.qtype {
                    RecordType::SRV => self.cluster_ip_srv(ns, name, ips, &ports),
                    _ => self.nodata(),
                }
            }
            ServiceKind::Headless => {
                let endpoints = self.visible_endpoints(svc, ns, name, |_| true);
                if !endpoints.iter().any(|(_, ports)| ports.iter().any(matches)) {
                    return self.nxdomain();
                }
                match self.qtype {
                    RecordType::SRV => self.headless_srv(ns, name, &endpoints, matches),
                    _ => self.nodata(),
                }
            }
        }
    }

    /// The visible addresses of a Service's endpoints that `keep` accepts, with their ports.
    fn visible_endpoints<'s>(
        &'s self,
        svc: &ServiceRecord,
        ns: &str,
        name: &str,
        keep: impl Fn(&AddressRecord) -> bool,
    ) -> Vec<(&'s AddressRecord, &'s [PortRecord])> {
        let Some(endpoints) = self.store.endpoints(ns, name) else {
            return Vec::new();
        };
        endpoints
            .subsets
            .iter()
            .flat_map(|s| s.addresses.iter().map(move |a| (a, &*s.ports)))
            .filter(|(a, _)| visible(svc, a) && keep(a))
            .collect()
    }

    /// SRV of a ClusterIP Service's ports: target the service name, its IPs as additionals.
    fn cluster_ip_srv(&self, ns: &str, name: &str, ips: &[IpAddr], ports: &[&PortRecord]) -> Reply {
        let Some(target) = self.name(&[name, ns, "svc"]) else {
            return self.nxdomain();
        };
        let weight = srv_weight(ports.len());
        let rdata = ports
            .iter()
            .map(|p| RData::SRV(SRV::new(0, weight, p.port, target.clone())))
            .collect();
        let mut reply = self.records(rdata);
        for ip in ips {
            reply
                .additionals
                .push(self.record(target.clone(), address_rdata(*ip)));
        }
        reply
    }

    /// SRV per endpoint address and matching port: target the endpoint's name.
    fn headless_srv(
        &self,
        ns: &str,
        name: &str,
        endpoints: &[(&AddressRecord, &[PortRecord])],
        port_matches: impl Fn(&PortRecord) -> bool,
    ) -> Reply {
        let mut targets: Vec<(Name, u16, IpAddr)> = Vec::new();
        for (address, ports) in endpoints {
            let Some(target) = self.name(&[&address.label, name, ns, "svc"]) else {
                continue;
            };
            for port in ports.iter().filter(|p| port_matches(p)) {
                targets.push((target.clone(), port.port, address.ip));
            }
        }
        if targets.is_empty() {
            return self.nodata();
        }
        let weight = srv_weight(targets.len());
        let rdata = targets
            .iter()
            .map(|(target, port, _)| RData::SRV(SRV::new(0, weight, *port, target.clone())))
            .collect();
        let mut reply = self.records(rdata);
        let mut seen: Vec<(&Name, IpAddr)> = Vec::new();
        for (target, _, ip) in &targets {
            if !seen.contains(&(target, *ip)) {
                seen.push((target, *ip));
                reply
                    .additionals
                    .push(self.record(target.clone(), address_rdata(*ip)));
            }
        }
        reply
    }

    /// A or AAAA (per the question) of those of `ips` in its family; NODATA if none is.
    fn addresses(&self, ips: &[IpAddr]) -> Reply {
        let want_v4 = match self.qtype {
            RecordType::A => true,
            RecordType::AAAA => false,
            _ => return self.nodata(),
        };
        let mut rdata: Vec<RData> = Vec::new();
        for ip in ips.iter().filter(|ip| ip.is_ipv4() == want_v4) {
            let r = address_rdata(*ip);
            if !rdata.contains(&r) {
                rdata.push(r);
            }
        }
        self.records(rdata)
    }

    /// A reverse name; `rel` are its labels before `in-addr.arpa`/`ip6.arpa`. None: the
    /// store does not know it (fall through).
    fn reverse(&self, zone: ReverseZone, rel: &[&[u8]]) -> Option<Reply> {
        let ip = reverse_ip(zone, rel)?;
        let mut targets: Vec<Name> = Vec::new();
        for (ns, name) in self.store.owners_of(ip) {
            if let Some(ServiceKind::ClusterIp(ips)) = self.store.service(ns, name).map(|s| &s.kind)
            {
                if ips.contains(&ip) {
                    targets.extend(self.name(&[name, ns, "svc"]));
                }
            }
        }
        if targets.is_empty() {
            for (ns, name) in self.store.owners_of(ip) {
                let Some(svc) = self.store.service(ns, name) else {
                    continue;
                };
                for (address, _) in self.visible_endpoints(svc, ns, name, |a| a.ip == ip) {
                    let target = self.name(&[&address.label, name, ns, "svc"]);
                    if let Some(target) = target.filter(|t| !targets.contains(t)) {
                        targets.push(target);
                    }
                }
            }
        }
        if targets.is_empty() {
            return None;
        }
        let soa_zone = Name::from_ascii(zone.apex()).ok()?;
        let mut reply = match self.qtype {
            RecordType::PTR => {
                self.records(targets.into_iter().map(|t| RData::PTR(PTR(t))).collect())
            }
            _ => Reply {
                rcode: ResponseCode::NoError,
                authoritative: true,
                ..Reply::default()
            },
        };
        if reply.answers.is_empty() {
            reply.authority.push(self.soa(soa_zone));
        }
        Some(reply)
    }

    /// Records at the question's name; NODATA when there are none.
    fn records(&self, rdata: Vec<RData>) -> Reply {
        if rdata.is_empty() {
            return self.nodata();
        }
        let answers = rdata
            .into_iter()
            .map(|r| self.record(self.qname.clone(), r))
            .collect();
        Reply {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            ..Reply::default()
        }
    }

    fn nodata(&self) -> Reply {
        self.negative(ResponseCode::NoError)
    }

    fn nxdomain(&self) -> Reply {
        self.negative(ResponseCode::NXDomain)
    }

    /// A denial with the cluster zone's SOA for negative caching (RFC 2308).
    fn negative(&self, rcode: ResponseCode) -> Reply {
        let authority = vec![self.soa(self.store.domain_name().clone())];
        Reply {
            rcode,
            authoritative: true,
            authority,
            ..Reply::default()
        }
    }

    /// The SOA of `zone` as CoreDNS's plugin/backend_lookup.go SOA builds it.
    fn soa(&self, zone: Name) -> Record {
        let prefixed = |label: &str| {
            Name::from_ascii(label)
                .ok()
                .and_then(|l| l.append_domain(&zone).ok())
        };
        let mname = prefixed("ns.dns").unwrap_or_else(|| zone.clone());
        let rname = prefixed("hostmaster").unwrap_or_else(|| zone.clone());
        let ttl = self.settings.ttl;
        let rdata = SOA::new(mname, rname, self.store.serial(), 7200, 1800, 86400, ttl);
        self.record(zone, RData::SOA(rdata))
    }

    fn record(&self, name: Name, rdata: RData) -> Record {
        Record::from_rdata(name, self.settings.ttl, rdata)
    }

    /// `<labels>.<zone>.`; None only for labels the store would never hold.
    fn name(&self, labels: &[&str]) -> Option<Name> {
        let mut text = labels.join(".");
        text.push('.');
        Name::from_ascii(text)
            .ok()?
            .append_domain(self.store.domain_name())
            .ok()
    }
}

/// CoreDNS's SRV weight (plugin/backend_lookup.go): 100 shared by the records of one
/// priority, rounded down.
fn srv_weight(records: usize) -> u16 {
    u16::try_from(100 / records.max(1)).unwrap_or(0)
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// The IP of a pod label as CoreDNS's findPods reads it: three '-' and no "--" is IPv4
/// ("10-244-0-5"), anything else IPv6 with '-' for ':' ("fd00--5").
fn pod_ip(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label
            .replace('-', ".")
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4)
    } else {
        label
            .replace('-', ":")
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }
}

/// The address a full reverse name stands for: four decimal labels (in-addr.arpa) or 32
/// hex nibbles (ip6.arpa), least significant first. None for partial or malformed names.
fn reverse_ip(zone: ReverseZone, rel: &[&[u8]]) -> Option<IpAddr> {
    let text: Vec<&str> = rel
        .iter()
        .map(|l| std::str::from_utf8(l).ok())
        .collect::<Option<_>>()?;
    match zone {
        ReverseZone::V4 => {
            let [d, c, b, a] = text.as_slice() else {
                return None;
            };
            let octet = |s: &str| {
                if s.len() > 1 && s.starts_with('0') {
                    None
                } else {
                    s.parse::<u8>().ok()
                }
            };
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        ReverseZone::V6 => {
            if text.len() != 32 {
                return None;
            }
            let mut value: u128 = 0;
            for nibble in text.iter().rev() {
                if nibble.len() != 1 {
                    return None;
                }
                value = (value << 4) | u128::from(u8::from_str_radix(nibble, 16).ok()?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
    }
}

/// A reply with only a header (the question could not be read, or the opcode is not
/// QUERY): the query's ID and opcode, RD copied, no question.
fn bare_reply(query: &Header, rcode: ResponseCode) -> Vec<u8> {
    let mut header = Header::response_from_request(query);
    header
        .set_response_code(rcode)
        .set_recursion_available(true)
        .set_authoritative(false);
    let mut buf = Vec::with_capacity(Header::len());
    let mut encoder = BinEncoder::new(&mut buf);
    let no_records: [Record; 0] = [];
    let no_queries: [Query; 0] = [];
    // A header alone always fits; should it ever fail, the client's timeout answers it.
    let _ = emit_message_parts(
        &header,
        &mut no_queries.iter(),
        &mut no_records.iter(),
        &mut no_records.iter(),
        &mut no_records.iter(),
        None,
        &[],
        &mut encoder,
    );
    buf
}

/// Encodes `reply` to `request` within `limit` bytes: all of it if it fits; else without
/// the additional section (RFC 2181 9: no TC for that); else as many answers as fit, no
/// authority or additional records, TC set.
fn encode(request: &Request, reply: &Reply, limit: u16) -> Vec<u8> {
    let mut header = Header::response_from_request(&request.header);
    header
        .set_response_code(reply.rcode)
        .set_authoritative(reply.authoritative)
        .set_recursion_available(true)
        .set_authentic_data(false);
    let edns = request.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
        if let Some((code, text)) = reply.ede {
            let mut data = code.to_be_bytes().to_vec();
            data.extend_from_slice(text.as_bytes());
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDNS_EDE, data));
        }
        edns
    });
    let attempt =
        |answers: &[Record], authority: &[Record], additionals: &[Record], truncated: bool| {
            let mut header = header;
            header.set_truncated(truncated);
            let mut buf = Vec::with_capacity(usize::from(limit.min(4096)));
            let mut encoder = BinEncoder::new(&mut buf);
            encoder.set_max_size(limit);
            let written = emit_message_parts(
                &header,
                &mut std::iter::once(&request.query),
                &mut answers.iter(),
                &mut authority.iter(),
                &mut additionals.iter(),
                edns.as_ref(),
                &[],
                &mut encoder,
            );
            // Complete only if every record given was written (the encoder drops those that
            // do not fit and counts only what it wrote).
            let opt = usize::from(edns.is_some());
            match written {
                Ok(h)
                    if usize::from(h.answer_count()) == answers.len()
                        && usize::from(h.name_server_count()) == authority.len()
                        && usize::from(h.additional_count()) == additionals.len() + opt =>
                {
                    Some(buf)
                }
                _ => None,
            }
        };
    if let Some(all) = attempt(&reply.answers, &reply.authority, &reply.additionals, false) {
        return all;
    }
    if let Some(fewer) = attempt(&reply.answers, &reply.authority, &[], false) {
        return fewer;
    }
    // The most answers that fit: binary search, `lo` always fits (0 answers: a question of
    // at most 259 bytes and an OPT record with a short extended error).
    let (mut lo, mut hi) = (0, reply.answers.len());
    let mut best = attempt(&[], &[], &[], true);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        match attempt(&reply.answers[..mid], &[], &[], true) {
            Some(buf) => {
                best = Some(buf);
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    best.unwrap_or_else(|| bare_reply(&request.header, ResponseCode::ServFail))
}
