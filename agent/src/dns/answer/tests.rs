//! Unit tests of the answers: one per record type and per response code, truncation,
//! EDNS sizes, 0x20 case; queries are built and replies read with hickory-proto.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Outcome, Settings, Transport, answer, servfail, without_loops};
use crate::dns::store::Store;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn port(name: &str, protocol: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()).filter(|n: &String| !n.is_empty()),
        protocol: Some(protocol.into()),
        port: number,
        ..Default::default()
    }
}

fn service(ns: &str, name: &str, spec: ServiceSpec) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(spec),
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: Vec<ServicePort>) -> Service {
    service(
        ns,
        name,
        ServiceSpec {
            cluster_ip: Some(ips[0].into()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(ports),
            ..Default::default()
        },
    )
}

fn address(ip: &str, hostname: Option<&str>) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        hostname: hostname.map(Into::into),
        ..Default::default()
    }
}

fn endpoints(
    ns: &str,
    name: &str,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
) -> Endpoints {
    Endpoints {
        metadata: meta(ns, name),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(ready),
            not_ready_addresses: Some(not_ready),
            ports: Some(vec![EndpointPort {
                name: Some("pg".into()),
                port: 5432,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        }]),
    }
}

/// default/web (ClusterIP, two ports), default/dual (IPv4 + IPv6), kube-system/kube-dns,
/// default/ext (ExternalName), db/pg (headless: pg-0 by hostname, one by IP, one not
/// ready), db/pg-all (headless, publishNotReadyAddresses).
fn store() -> Store {
    let mut s = Store::new("cluster.local").unwrap();
    s.upsert_service(&cluster_ip(
        "default",
        "web",
        &["10.96.0.20"],
        vec![port("http", "TCP", 80), port("dns", "UDP", 53)],
    ));
    s.upsert_endpoints(&endpoints(
        "default",
        "web",
        vec![address("10.244.0.7", None)],
        vec![],
    ));
    s.upsert_service(&cluster_ip(
        "default",
        "dual",
        &["10.96.0.30", "fd00:96::30"],
        vec![port("http", "TCP", 80)],
    ));
    s.upsert_service(&cluster_ip(
        "kube-system",
        "kube-dns",
        &["10.96.0.10"],
        vec![port("dns", "UDP", 53)],
    ));
    s.upsert_service(&service(
        "default",
        "ext",
        ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some("db.example.com".into()),
            ..Default::default()
        },
    ));
    let headless = |publish| ServiceSpec {
        cluster_ip: Some("None".into()),
        publish_not_ready_addresses: Some(publish),
        ports: Some(vec![port("pg", "TCP", 5432)]),
        ..Default::default()
    };
    s.upsert_service(&service("db", "pg", headless(false)));
    let ready = vec![
        address("10.244.1.5", Some("pg-0")),
        address("fd00:244::6", None),
    ];
    s.upsert_endpoints(&endpoints(
        "db",
        "pg",
        ready.clone(),
        vec![address("10.244.1.9", None)],
    ));
    s.upsert_service(&service("db", "pg-all", headless(true)));
    s.upsert_endpoints(&endpoints(
        "db",
        "pg-all",
        ready,
        vec![address("10.244.1.9", None)],
    ));
    s
}

fn upstream() -> SocketAddr {
    "192.0.2.53:53".parse().unwrap()
}

fn settings() -> Settings {
    Settings {
        upstreams: vec![upstream()],
        ..Settings::default()
    }
}

fn message(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    message(name, qtype).to_vec().unwrap()
}

fn with_edns(mut m: Message, payload: u16) -> Vec<u8> {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    m.set_edns(edns);
    m.to_vec().unwrap()
}

fn reply_to(
    store: &Store,
    settings: &Settings,
    packet: &[u8],
    transport: Transport,
) -> (Vec<u8>, Message) {
    match answer(store, settings, packet, transport) {
        Outcome::Reply(bytes) => {
            let m = Message::from_vec(&bytes).expect("the reply parses");
            assert_eq!(m.message_type(), MessageType::Response);
            assert_eq!(m.id(), 0x4242);
            (bytes, m)
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Asks the fixture over UDP.
fn ask(name: &str, qtype: RecordType) -> Message {
    reply_to(&store(), &settings(), &query(name, qtype), Transport::Udp).1
}

fn ips(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn srvs(m: &Message) -> Vec<(u16, u16, String)> {
    let mut v: Vec<(u16, u16, String)> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.weight(), s.port(), s.target().to_ascii())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn additional_ips(m: &Message) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m
        .additionals()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some((r.name().to_ascii(), a.0.to_string())),
            RData::AAAA(a) => Some((r.name().to_ascii(), a.0.to_string())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// A NODATA or NXDOMAIN: that code, no answer, the cluster zone's SOA.
fn assert_negative(m: &Message, rcode: ResponseCode, zone: &str) {
    assert_eq!(m.response_code(), rcode, "{m}");
    assert!(m.answers().is_empty(), "{m}");
    assert!(m.authoritative());
    let [soa] = m.name_servers() else {
        panic!("one SOA in the authority section: {m}")
    };
    assert_eq!(soa.name().to_ascii(), zone);
    let RData::SOA(soa_data) = soa.data() else {
        panic!("not an SOA: {soa}")
    };
    assert_eq!(soa_data.mname().to_ascii(), format!("ns.dns.{zone}"));
    assert_eq!(soa_data.rname().to_ascii(), format!("hostmaster.{zone}"));
    assert_eq!(soa_data.minimum(), 30);
}

#[test]
fn a_of_a_cluster_ip_service() {
    let m = ask("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert!(m.authoritative());
    assert_eq!(ips(&m), ["10.96.0.20"]);
    assert_eq!(m.answers()[0].ttl(), 30);
    assert_eq!(
        m.answers()[0].name().to_ascii(),
        "web.default.svc.cluster.local."
    );
    assert_eq!(
        m.queries()[0].name().to_ascii(),
        "web.default.svc.cluster.local."
    );
}

#[test]
fn ttl_comes_from_the_settings() {
    let settings = Settings {
        ttl: 5,
        ..settings()
    };
    let (_, m) = reply_to(
        &store(),
        &settings,
        &query("web.default.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(m.answers()[0].ttl(), 5);
}

#[test]
fn aaaa_per_family_of_the_cluster_ips() {
    assert_eq!(
        ips(&ask("dual.default.svc.cluster.local.", RecordType::AAAA)),
        ["fd00:96::30"]
    );
    assert_eq!(
        ips(&ask("dual.default.svc.cluster.local.", RecordType::A)),
        ["10.96.0.30"]
    );
}

#[test]
fn nodata_for_another_type_of_an_existing_name() {
    let m = ask("web.default.svc.cluster.local.", RecordType::AAAA);
    assert_negative(&m, ResponseCode::NoError, "cluster.local.");
    let m = ask("web.default.svc.cluster.local.", RecordType::MX);
    assert_negative(&m, ResponseCode::NoError, "cluster.local.");
    // Empty non-terminals exist too.
    assert_negative(
        &ask("svc.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "cluster.local.",
    );
    assert_negative(
        &ask("default.svc.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "cluster.local.",
    );
}

#[test]
fn nxdomain_for_names_that_do_not_exist() {
    for name in [
        "nope.default.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "other.svc.cluster.local.",
        "a.b.c.d.e.f.svc.cluster.local.",
        "web.default.cluster.local.",
        "x.cluster.local.",
        "pg-9.pg.db.svc.cluster.local.",
    ] {
        assert_negative(
            &ask(name, RecordType::A),
            ResponseCode::NXDomain,
            "cluster.local.",
        );
    }
}

#[test]
fn lookups_ignore_case_and_answers_echo_the_question_case() {
    let asked = "WeB.DeFaUlT.sVc.ClUsTeR.lOcAl.";
    let m = ask(asked, RecordType::A);
    assert_eq!(ips(&m), ["10.96.0.20"]);
    let exact = Name::from_ascii(asked).unwrap();
    assert!(
        m.queries()[0].name().eq_case(&exact),
        "{}",
        m.queries()[0].name()
    );
    assert!(
        m.answers()[0].name().eq_case(&exact),
        "{}",
        m.answers()[0].name()
    );
}

#[test]
fn headless_answers_ready_endpoints_and_not_ready_ones_only_when_published() {
    assert_eq!(
        ips(&ask("pg.db.svc.cluster.local.", RecordType::A)),
        ["10.244.1.5"]
    );
    assert_eq!(
        ips(&ask("pg.db.svc.cluster.local.", RecordType::AAAA)),
        ["fd00:244::6"]
    );
    assert_eq!(
        ips(&ask("pg-all.db.svc.cluster.local.", RecordType::A)),
        ["10.244.1.5", "10.244.1.9"]
    );
}

#[test]
fn headless_without_endpoints_is_nxdomain_as_coredns() {
    let mut s = store();
    s.remove_endpoints("db", "pg");
    let (_, m) = reply_to(
        &s,
        &settings(),
        &query("pg.db.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    assert_negative(&m, ResponseCode::NXDomain, "cluster.local.");
}

#[test]
fn endpoint_names_by_hostname_and_by_dashed_ip() {
    assert_eq!(
        ips(&ask("pg-0.pg.db.svc.cluster.local.", RecordType::A)),
        ["10.244.1.5"]
    );
    assert_eq!(
        ips(&ask(
            "fd00-244--6.pg.db.svc.cluster.local.",
            RecordType::AAAA
        )),
        ["fd00:244::6"]
    );
    // Not ready and not published: no name.
    assert_negative(
        &ask("10-244-1-9.pg.db.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
        "cluster.local.",
    );
    assert_eq!(
        ips(&ask(
            "10-244-1-9.pg-all.db.svc.cluster.local.",
            RecordType::A
        )),
        ["10.244.1.9"]
    );
    // A ClusterIP Service's endpoints have names too (CoreDNS answers them).
    assert_eq!(
        ips(&ask(
            "10-244-0-7.web.default.svc.cluster.local.",
            RecordType::A
        )),
        ["10.244.0.7"]
    );
}

#[test]
fn srv_of_a_named_port_of_a_cluster_ip_service() {
    let m = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(
        srvs(&m),
        [(100, 80, "web.default.svc.cluster.local.".to_string())]
    );
    assert_eq!(
        additional_ips(&m),
        [(
            "web.default.svc.cluster.local.".to_string(),
            "10.96.0.20".to_string()
        )]
    );
    let m = ask("_dns._udp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        srvs(&m),
        [(100, 53, "web.default.svc.cluster.local.".to_string())]
    );
}

#[test]
fn srv_of_the_bare_service_name_lists_every_port() {
    let m = ask("web.default.svc.cluster.local.", RecordType::SRV);
    let target = "web.default.svc.cluster.local.".to_string();
    assert_eq!(srvs(&m), [(50, 53, target.clone()), (50, 80, target)]);
}

#[test]
fn srv_of_a_headless_service_names_each_endpoint() {
    let m = ask("_pg._tcp.pg.db.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        srvs(&m),
        [
            (50, 5432, "fd00-244--6.pg.db.svc.cluster.local.".to_string()),
            (50, 5432, "pg-0.pg.db.svc.cluster.local.".to_string())
        ]
    );
    assert_eq!(
        additional_ips(&m),
        [
            (
                "fd00-244--6.pg.db.svc.cluster.local.".to_string(),
                "fd00:244::6".to_string()
            ),
            (
                "pg-0.pg.db.svc.cluster.local.".to_string(),
                "10.244.1.5".to_string()
            )
        ]
    );
}

#[test]
fn srv_names_that_do_not_match_a_port() {
    // Wrong protocol, unknown port name, no underscores: the name does not exist.
    for name in [
        "_http._udp.web.default.svc.cluster.local.",
        "_nope._tcp.web.default.svc.cluster.local.",
        "http.tcp.web.default.svc.cluster.local.",
        "_pg._udp.pg.db.svc.cluster.local.",
    ] {
        assert_negative(
            &ask(name, RecordType::SRV),
            ResponseCode::NXDomain,
            "cluster.local.",
        );
    }
    // The port's name exists: A there is NODATA.
    assert_negative(
        &ask("_http._tcp.web.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "cluster.local.",
    );
}

#[test]
fn external_name_is_a_cname_not_chased() {
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let m = ask("ext.default.svc.cluster.local.", qtype);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        let [cname] = m.answers() else {
            panic!("one CNAME: {m}")
        };
        let RData::CNAME(target) = cname.data() else {
            panic!("not a CNAME: {cname}")
        };
        assert_eq!(target.0.to_ascii(), "db.example.com.");
    }
}

fn ptrs(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect()
}

#[test]
fn ptr_of_cluster_ips_and_endpoint_addresses() {
    assert_eq!(
        ptrs(&ask("20.0.96.10.in-addr.arpa.", RecordType::PTR)),
        ["web.default.svc.cluster.local."]
    );
    // Two Services share that endpoint: a PTR each.
    assert_eq!(
        ptrs(&ask("5.1.244.10.in-addr.arpa.", RecordType::PTR)),
        [
            "pg-0.pg.db.svc.cluster.local.",
            "pg-0.pg-all.db.svc.cluster.local."
        ]
    );
    let v6 = "0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        ptrs(&ask(v6, RecordType::PTR)),
        ["dual.default.svc.cluster.local."]
    );
    let v6 = "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        ptrs(&ask(v6, RecordType::PTR)),
        [
            "fd00-244--6.pg.db.svc.cluster.local.",
            "fd00-244--6.pg-all.db.svc.cluster.local."
        ]
    );
    // A not-ready address has a name only where the Service publishes it.
    assert_eq!(
        ptrs(&ask("9.1.244.10.in-addr.arpa.", RecordType::PTR)),
        ["10-244-1-9.pg-all.db.svc.cluster.local."]
    );
    // A known reverse name asked for another type: NODATA with the reverse zone's SOA.
    assert_negative(
        &ask("20.0.96.10.in-addr.arpa.", RecordType::A),
        ResponseCode::NoError,
        "in-addr.arpa.",
    );
}

#[test]
fn unknown_reverse_names_fall_through_to_the_upstreams() {
    let store = store();
    for name in [
        "1.2.0.192.in-addr.arpa.",
        "10.in-addr.arpa.",
        "in-addr.arpa.",
        "x.y.z.w.in-addr.arpa.",
    ] {
        let got = answer(
            &store,
            &settings(),
            &query(name, RecordType::PTR),
            Transport::Udp,
        );
        assert_eq!(
            got,
            Outcome::Forward {
                upstreams: vec![upstream()]
            },
            "{name}"
        );
    }
    // Without upstreams: SERVFAIL.
    let (_, m) = reply_to(
        &store,
        &Settings::default(),
        &query("1.2.0.192.in-addr.arpa.", RecordType::PTR),
        Transport::Udp,
    );
    assert_eq!(m.response_code(), ResponseCode::ServFail);
}

#[test]
fn pod_names_are_answered_with_their_ip() {
    assert_eq!(
        ips(&ask("10-244-1-5.default.pod.cluster.local.", RecordType::A)),
        ["10.244.1.5"]
    );
    assert_eq!(
        ips(&ask("fd00--1.any-ns.pod.cluster.local.", RecordType::AAAA)),
        ["fd00::1"]
    );
    assert_negative(
        &ask("10-244-1-5.default.pod.cluster.local.", RecordType::AAAA),
        ResponseCode::NoError,
        "cluster.local.",
    );
    for bad in [
        "10-244-1-500",
        "a-b-c-d",
        "10-244-1",
        "1-2-3-4-5-6-7-8-9",
        "zz--1",
    ] {
        let name = format!("{bad}.default.pod.cluster.local.");
        assert_negative(
            &ask(&name, RecordType::A),
            ResponseCode::NXDomain,
            "cluster.local.",
        );
    }
    assert_negative(
        &ask("default.pod.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "cluster.local.",
    );
}

#[test]
fn pod_names_are_nxdomain_when_pods_are_disabled() {
    let settings = Settings {
        pods_insecure: false,
        ..settings()
    };
    let packet = query("10-244-1-5.default.pod.cluster.local.", RecordType::A);
    let (_, m) = reply_to(&store(), &settings, &packet, Transport::Udp);
    assert_negative(&m, ResponseCode::NXDomain, "cluster.local.");
}

#[test]
fn dns_version_txt() {
    let m = ask("dns-version.cluster.local.", RecordType::TXT);
    let [txt] = m.answers() else {
        panic!("one TXT: {m}")
    };
    let RData::TXT(txt) = txt.data() else {
        panic!("not a TXT")
    };
    assert_eq!(txt.txt_data(), [b"1.1.0".to_vec().into_boxed_slice()]);
    assert_negative(
        &ask("dns-version.cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "cluster.local.",
    );
}

#[test]
fn apex_soa_and_ns() {
    let m = ask("cluster.local.", RecordType::SOA);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    let [soa] = m.answers() else {
        panic!("one SOA: {m}")
    };
    assert!(matches!(soa.data(), RData::SOA(_)));
    assert!(m.name_servers().is_empty());
    let m = ask("cluster.local.", RecordType::NS);
    let [ns] = m.answers() else {
        panic!("one NS: {m}")
    };
    let RData::NS(ns) = ns.data() else {
        panic!("not an NS")
    };
    assert_eq!(ns.0.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(
        additional_ips(&m),
        [(
            "ns.dns.cluster.local.".to_string(),
            "10.96.0.10".to_string()
        )]
    );
    assert_eq!(
        ips(&ask("ns.dns.cluster.local.", RecordType::A)),
        ["10.96.0.10"]
    );
    assert_negative(
        &ask("cluster.local.", RecordType::A),
        ResponseCode::NoError,
        "cluster.local.",
    );
}

#[test]
fn other_names_are_forwarded_or_servfail_without_upstreams() {
    let store = store();
    let got = answer(
        &store,
        &settings(),
        &query("example.com.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(
        got,
        Outcome::Forward {
            upstreams: vec![upstream()]
        }
    );
    // A suffix of the cluster domain is not in it.
    let got = answer(
        &store,
        &settings(),
        &query("local.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(
        got,
        Outcome::Forward {
            upstreams: vec![upstream()]
        }
    );
    let (_, m) = reply_to(
        &store,
        &Settings::default(),
        &query("example.com.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(m.answers().is_empty());
    // With EDNS the SERVFAIL says why (RFC 8914 extended error 22).
    let packet = with_edns(message("example.com.", RecordType::A), 1232);
    let (_, m) = reply_to(&store, &Settings::default(), &packet, Transport::Udp);
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    let edns = m.extensions().as_ref().expect("EDNS in the reply");
    let Some(EdnsOption::Unknown(15, data)) = edns.option(EdnsCode::Unknown(15)) else {
        panic!("no extended DNS error: {edns:?}")
    };
    assert_eq!(u16::from_be_bytes([data[0], data[1]]), 22);
    assert!(String::from_utf8_lossy(&data[2..]).contains("no upstream"));
}

#[test]
fn stub_domains_forward_to_their_servers_by_longest_zone() {
    let stub: SocketAddr = "10.0.0.1:53".parse().unwrap();
    let inner: SocketAddr = "10.0.0.2:5353".parse().unwrap();
    let settings = Settings {
        stub_domains: vec![
            ("example.com".into(), vec![stub]),
            ("corp.cluster.local".into(), vec![inner]),
        ],
        ..settings()
    };
    let store = store();
    let ask = |name: &str| {
        answer(
            &store,
            &settings,
            &query(name, RecordType::A),
            Transport::Udp,
        )
    };
    assert_eq!(
        ask("a.example.com."),
        Outcome::Forward {
            upstreams: vec![stub]
        }
    );
    assert_eq!(
        ask("EXAMPLE.com."),
        Outcome::Forward {
            upstreams: vec![stub]
        }
    );
    assert_eq!(
        ask("x.corp.cluster.local."),
        Outcome::Forward {
            upstreams: vec![inner]
        }
    );
    assert_eq!(
        ask("example.org."),
        Outcome::Forward {
            upstreams: vec![upstream()]
        }
    );
    assert!(matches!(
        ask("web.default.svc.cluster.local."),
        Outcome::Reply(_)
    ));
}

/// Raw bytes for the deliberately malformed cases: header fields set by hand.
fn header_bytes(flags: u16, qdcount: u16) -> Vec<u8> {
    let mut h = vec![0x42, 0x42];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&qdcount.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    h
}

fn rcode_of(packet: &[u8]) -> ResponseCode {
    reply_to(&store(), &settings(), packet, Transport::Udp)
        .1
        .response_code()
}

#[test]
fn formerr_for_unreadable_queries() {
    // Two questions.
    let mut m = message("web.default.svc.cluster.local.", RecordType::A);
    m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
    assert_eq!(rcode_of(&m.to_vec().unwrap()), ResponseCode::FormErr);
    // No question.
    assert_eq!(rcode_of(&header_bytes(0x0100, 0)), ResponseCode::FormErr);
    // A question cut short.
    let full = query("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(rcode_of(&full[..full.len() - 3]), ResponseCode::FormErr);
    // A compression pointer to itself, and one pointing forward.
    let mut looped = header_bytes(0x0100, 1);
    looped.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&looped), ResponseCode::FormErr);
    let mut forward = header_bytes(0x0100, 1);
    forward.extend_from_slice(&[0xC0, 20, 0, 1, 0, 1, 0, 0, 1, b'a', 0]);
    assert_eq!(rcode_of(&forward), ResponseCode::FormErr);
    // A 64-byte label, a reserved label type (0x40), a name over 255 bytes.
    let mut long_label = header_bytes(0x0100, 1);
    long_label.push(64);
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&long_label), ResponseCode::FormErr);
    let mut reserved = header_bytes(0x0100, 1);
    reserved.extend_from_slice(&[0x41, b'a', 0, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&reserved), ResponseCode::FormErr);
    let mut long_name = header_bytes(0x0100, 1);
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode_of(&long_name), ResponseCode::FormErr);
    // Longer than any real query.
    let mut huge = query("web.default.svc.cluster.local.", RecordType::A);
    huge.resize(super::MAX_QUERY_LEN + 1, 0);
    assert_eq!(rcode_of(&huge), ResponseCode::FormErr);
}

#[test]
fn notimp_for_other_opcodes() {
    for opcode in [
        OpCode::Status,
        OpCode::Notify,
        OpCode::Update,
        OpCode::Unknown(9),
    ] {
        let mut m = message("web.default.svc.cluster.local.", RecordType::A);
        m.set_op_code(opcode);
        let (_, reply) = reply_to(&store(), &settings(), &m.to_vec().unwrap(), Transport::Udp);
        assert_eq!(reply.response_code(), ResponseCode::NotImp, "{opcode:?}");
        assert_eq!(reply.op_code(), opcode);
    }
}

#[test]
fn refused_for_other_classes_transfers_and_any() {
    let mut m = message("version.bind.", RecordType::TXT);
    m.queries_mut()[0].set_query_class(DNSClass::CH);
    assert_eq!(rcode_of(&m.to_vec().unwrap()), ResponseCode::Refused);
    for qtype in [RecordType::AXFR, RecordType::IXFR, RecordType::ANY] {
        assert_eq!(
            rcode_of(&query("cluster.local.", qtype)),
            ResponseCode::Refused,
            "{qtype}"
        );
        assert_eq!(
            rcode_of(&query("example.com.", qtype)),
            ResponseCode::Refused,
            "{qtype}"
        );
    }
}

#[test]
fn badvers_for_an_edns_version_other_than_0() {
    let mut m = message("web.default.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    m.set_edns(edns);
    let (_, reply) = reply_to(&store(), &settings(), &m.to_vec().unwrap(), Transport::Udp);
    // 16 is BADVERS in a reply with OPT (hickory names the value BADSIG, its TSIG meaning).
    assert_eq!(u16::from(reply.response_code()), 16);
    assert_eq!(reply.extensions().as_ref().map(Edns::version), Some(0));
}

#[test]
fn responses_and_short_packets_are_dropped() {
    let mut m = message("web.default.svc.cluster.local.", RecordType::A);
    m.set_message_type(MessageType::Response);
    assert_eq!(
        answer(&store(), &settings(), &m.to_vec().unwrap(), Transport::Udp),
        Outcome::Drop
    );
    let packet = query("web.default.svc.cluster.local.", RecordType::A);
    for len in 0..12 {
        assert_eq!(
            answer(&store(), &settings(), &packet[..len], Transport::Udp),
            Outcome::Drop
        );
    }
}

/// A headless Service with `count` ready endpoints.
fn big_store(count: u8) -> Store {
    let mut s = store();
    let spec = ServiceSpec {
        cluster_ip: Some("None".into()),
        ..Default::default()
    };
    s.upsert_service(&service("default", "big", spec));
    let addresses = (0..count)
        .map(|i| address(&format!("10.244.9.{i}"), None))
        .collect();
    s.upsert_endpoints(&endpoints("default", "big", addresses, vec![]));
    s
}

#[test]
fn udp_replies_are_truncated_to_512_bytes_without_edns() {
    let s = big_store(100);
    let (bytes, m) = reply_to(
        &s,
        &settings(),
        &query("big.default.svc.cluster.local.", RecordType::A),
        Transport::Udp,
    );
    assert!(bytes.len() <= 512, "{}", bytes.len());
    assert!(m.truncated());
    assert!(
        !m.answers().is_empty() && m.answers().len() < 100,
        "{}",
        m.answers().len()
    );
    // Nearly as many as fit (hickory writes a name in full before compressing it, so the
    // last record needs room for its whole name while it is written).
    assert!(bytes.len() + 48 > 512, "{}", bytes.len());
    // The SRV answer drops its additional records first.
    let (bytes, m) = reply_to(
        &s,
        &settings(),
        &query("big.default.svc.cluster.local.", RecordType::SRV),
        Transport::Udp,
    );
    assert!(bytes.len() <= 512);
    assert!(m.truncated());
    assert!(m.additionals().is_empty());
}

#[test]
fn udp_replies_use_the_edns_payload_size_up_to_1232() {
    let s = big_store(100);
    let name = "big.default.svc.cluster.local.";
    let (bytes, m) = reply_to(
        &s,
        &settings(),
        &with_edns(message(name, RecordType::A), 4096),
        Transport::Udp,
    );
    assert!(bytes.len() <= 1232 && bytes.len() > 1000, "{}", bytes.len());
    assert!(m.truncated());
    assert_eq!(m.extensions().as_ref().map(Edns::max_payload), Some(1232));
    let (bytes, m) = reply_to(
        &s,
        &settings(),
        &with_edns(message(name, RecordType::A), 800),
        Transport::Udp,
    );
    assert!(bytes.len() <= 800 && bytes.len() > 700, "{}", bytes.len());
    assert!(m.truncated());
    // A payload below 512 counts as 512.
    let (bytes, _) = reply_to(
        &s,
        &settings(),
        &with_edns(message(name, RecordType::A), 100),
        Transport::Udp,
    );
    assert!(bytes.len() <= 512 && bytes.len() > 400, "{}", bytes.len());
    // 20 endpoints fit: no truncation.
    let (_, m) = reply_to(
        &big_store(20),
        &settings(),
        &with_edns(message(name, RecordType::A), 1232),
        Transport::Udp,
    );
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 20);
}

#[test]
fn tcp_replies_are_not_truncated() {
    let s = big_store(250);
    let name = "big.default.svc.cluster.local.";
    let (bytes, m) = reply_to(&s, &settings(), &query(name, RecordType::A), Transport::Tcp);
    assert!(!m.truncated());
    assert_eq!(m.answers().len(), 250);
    assert!(bytes.len() > 4000);
}

#[test]
fn servfail_echoes_the_query() {
    let packet = with_edns(message("example.com.", RecordType::AAAA), 1232);
    let bytes = servfail(&packet).expect("a SERVFAIL");
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.id(), 0x4242);
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert_eq!(m.queries()[0].name().to_ascii(), "example.com.");
    assert_eq!(m.queries()[0].query_type(), RecordType::AAAA);
    assert!(servfail(&packet[..10]).is_none());
    assert!(servfail(&packet[..20]).is_none());
}

#[test]
fn without_loops_drops_own_addresses_and_loopback_in_order() {
    let c: Vec<SocketAddr> = [
        "8.8.8.8:53",
        "127.0.0.53:53",
        "10.96.0.10:53",
        "[::1]:53",
        "1.1.1.1:5353",
        "[::ffff:10.244.0.4]:53",
        "0.0.0.0:53",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let own: Vec<IpAddr> = ["10.96.0.10", "10.244.0.4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let kept = without_loops(&c, &own);
    assert_eq!(kept, [c[0], c[4]]);
}
