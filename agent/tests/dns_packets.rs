//! Property tests of the cluster DNS packet path (issue 10: "a malformed or hostile packet
//! gets FORMERR/REFUSED or is dropped, never a crash or unbounded memory"): arbitrary bytes,
//! mutated real queries, compression pointers aimed at themselves, forward and in long
//! chains, names of many labels. `answer` never panics, and returns Drop, a relay of a
//! readable query, or a reply that parses back as a response with the query's ID and fits
//! the transport's limit.

#[path = "../../components/tests/support/mutate.rs"]
mod mutate;

use agent::dns::answer::{EDNS_PAYLOAD, MAX_QUERY_LEN, Outcome, Settings, Transport, answer};
use agent::dns::store::Store;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property (issue 8's floor for parsers in CI).
const CASES: u32 = 10_000;

/// A cluster with a ClusterIP Service, and a headless one with 60 endpoints (its answers
/// need truncation over UDP).
fn store() -> Store {
    let meta = |name: &str| ObjectMeta {
        namespace: Some("default".into()),
        name: Some(name.into()),
        ..Default::default()
    };
    let mut s = Store::new("cluster.local").unwrap();
    let ports = Some(vec![ServicePort {
        name: Some("http".into()),
        port: 80,
        ..Default::default()
    }]);
    s.upsert_service(&Service {
        metadata: meta("web"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.20".into()),
            ports: ports.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    s.upsert_service(&Service {
        metadata: meta("many"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            ports,
            ..Default::default()
        }),
        ..Default::default()
    });
    let addresses = (0..60u8)
        .map(|i| EndpointAddress {
            ip: format!("10.244.{}.{i}", i % 3),
            hostname: (i % 2 == 0).then(|| format!("pod-{i}")),
            ..Default::default()
        })
        .collect();
    s.upsert_endpoints(&Endpoints {
        metadata: meta("many"),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(addresses),
            not_ready_addresses: None,
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: 80,
                ..Default::default()
            }]),
        }]),
    });
    s
}

fn settings() -> Settings {
    Settings {
        upstreams: vec!["192.0.2.53:53".parse().unwrap()],
        ..Settings::default()
    }
}

const NAMES: &[&str] = &[
    "web.default.svc.cluster.local.",
    "many.default.svc.cluster.local.",
    "_http._tcp.many.default.svc.cluster.local.",
    "pod-4.many.default.svc.cluster.local.",
    "10-244-0-5.default.pod.cluster.local.",
    "20.0.96.10.in-addr.arpa.",
    "cluster.local.",
    "example.com.",
];

const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::SOA,
];

/// A real query built with hickory-proto, with or without EDNS.
fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0xbeef)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in NAMES {
        for qtype in TYPES {
            out.push(query(name, *qtype, None));
            out.push(query(name, *qtype, Some(4096)));
        }
    }
    out
}

/// The property: no panic (the caller's proptest catches one), and an outcome that is
/// Drop, a relay of a readable query, or a well-formed reply within the limit.
fn check(store: &Store, packet: &[u8], transport: Transport) -> Result<(), TestCaseError> {
    match answer(store, &settings(), packet, transport) {
        Outcome::Drop => {
            let is_response = packet.len() >= 3 && packet[2] & 0x80 != 0;
            prop_assert!(
                packet.len() < 12 || is_response,
                "a query was dropped: {packet:02x?}"
            );
        }
        Outcome::Forward { upstreams } => {
            prop_assert!(!upstreams.is_empty());
            prop_assert!(
                Message::from_vec(packet).is_ok(),
                "an unreadable packet was forwarded: {packet:02x?}"
            );
        }
        Outcome::Reply(bytes) => {
            let limit = match transport {
                Transport::Tcp => usize::from(u16::MAX),
                // 512 unless the query carried a readable EDNS record.
                Transport::Udp => match Message::from_vec(packet)
                    .ok()
                    .and_then(|m| m.extensions().clone())
                {
                    Some(_) => usize::from(EDNS_PAYLOAD),
                    None => 512,
                },
            };
            prop_assert!(bytes.len() <= limit, "{} bytes over {limit}", bytes.len());
            let reply = Message::from_vec(&bytes)
                .map_err(|e| TestCaseError::fail(format!("reply unreadable: {e}")))?;
            prop_assert_eq!(reply.message_type(), MessageType::Response);
            prop_assert_eq!(reply.id(), u16::from_be_bytes([packet[0], packet[1]]));
        }
    }
    Ok(())
}

/// Compression-minded edits: a pointer (to anywhere, to itself, forward) written over or
/// into the packet, a count field changed.
#[derive(Debug, Clone)]
enum Edit {
    Pointer { at: Index, to: u16, insert: bool },
    SelfPointer(Index),
    Count { field: usize, value: u16 },
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0..0x4000u16, any::<bool>()).prop_map(|(at, to, insert)| Edit::Pointer {
            at,
            to,
            insert
        }),
        any::<Index>().prop_map(Edit::SelfPointer),
        (
            0..4usize,
            prop_oneof![Just(0u16), Just(1), Just(2), Just(0xffff), any::<u16>()]
        )
            .prop_map(|(field, value)| Edit::Count { field, value }),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut p: Vec<u8>, e: &Edit) -> Vec<u8> {
    if p.len() < 12 {
        return p;
    }
    let body = |i: &Index, len: usize| 12 + i.index(len - 11);
    match e {
        Edit::Pointer { at, to, insert } => {
            let at = body(at, p.len());
            let ptr = (0xC000 | to).to_be_bytes();
            if *insert || at + 2 > p.len() {
                p.splice(at..at, ptr);
            } else {
                p[at..at + 2].copy_from_slice(&ptr);
            }
        }
        Edit::SelfPointer(at) => {
            let at = body(at, p.len()).min(p.len() - 2);
            let ptr = (0xC000 | at as u16).to_be_bytes();
            p[at..at + 2].copy_from_slice(&ptr);
        }
        Edit::Count { field, value } => {
            let at = 4 + 2 * field;
            p[at..at + 2].copy_from_slice(&value.to_be_bytes());
        }
        Edit::Truncate(at) => p.truncate(at.index(p.len() + 1)),
    }
    p
}

fn dns_mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds()),
        prop::collection::vec(edit(), 1..5),
    )
        .prop_map(|(seed, edits)| edits.iter().fold(seed, apply))
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::Udp), Just(Transport::Tcp)]
}

proptest! {
    #![proptest_config(mutate::config(CASES))]

    #[test]
    fn arbitrary_bytes(packet in prop::collection::vec(any::<u8>(), 0..600), t in transport()) {
        let store = store();
        check(&store, &packet, t)?;
    }

    #[test]
    fn arbitrary_bytes_behind_a_query_header(tail in prop::collection::vec(any::<u8>(), 0..600), flags in any::<u8>(), counts in any::<[u8; 8]>()) {
        // A query header (QR clear, opcode QUERY) so the bytes reach the question parser.
        let mut packet = vec![0x12, 0x34, flags & 0x07, 0, 0, 1];
        packet.extend_from_slice(&counts[..6]);
        packet.extend_from_slice(&tail);
        check(&store(), &packet, Transport::Udp)?;
    }

    #[test]
    fn mutated_queries(packet in mutate::mutated(seeds()), t in transport()) {
        check(&store(), &packet, t)?;
    }

    #[test]
    fn compression_mutated_queries(packet in dns_mutated(), t in transport()) {
        check(&store(), &packet, t)?;
    }

    #[test]
    fn names_of_many_labels(labels in 1..200usize, len in 1..4usize, t in transport()) {
        // Up to 127 one-byte labels fit in 255 bytes; more must be FORMERR, not a panic.
        let mut packet = vec![0x55, 0x66, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..labels {
            packet.push(len as u8);
            packet.extend(std::iter::repeat_n(b'a', len));
        }
        packet.extend_from_slice(&[0, 0, 1, 0, 1]);
        check(&store(), &packet, t)?;
        let wire_len = labels * (len + 1) + 1;
        if let Outcome::Reply(bytes) = answer(&store(), &settings(), &packet, t) {
            let rcode = Message::from_vec(&bytes).unwrap().response_code();
            prop_assert_eq!(rcode == ResponseCode::FormErr, wire_len > 255, "{} labels of {}", labels, len);
        }
    }

    #[test]
    fn cluster_names_are_always_answered_here(labels in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..6), qtype in prop::sample::select(TYPES)) {
        // Any name in the cluster domain, whatever bytes its labels hold, gets an
        // authoritative answer, never a relay.
        let suffix: [&[u8]; 2] = [b"cluster", b"local"];
        let mut name = Name::from_labels(labels.iter().map(Vec::as_slice).chain(suffix)).unwrap();
        name.set_fqdn(true);
        let mut m = Message::new();
        m.set_id(0xbeef).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
        m.add_query(Query::query(name.clone(), qtype));
        let packet = m.to_vec().unwrap();
        let Outcome::Reply(bytes) = answer(&store(), &settings(), &packet, Transport::Udp) else {
            return Err(TestCaseError::fail(format!("{name} was not answered")));
        };
        let reply = Message::from_vec(&bytes).unwrap();
        prop_assert!(matches!(reply.response_code(), ResponseCode::NoError | ResponseCode::NXDomain));
        prop_assert!(reply.authoritative());
        prop_assert!(reply.answers().iter().all(|r| r.name() == reply.queries()[0].name()));
    }
}

/// A long chain of compression pointers, each pointing two bytes back, in the rdata of an
/// additional record, and a record whose name enters the chain at its end: decoding
/// follows about MAX_QUERY_LEN / 2 pointers. It must end (FORMERR or an answer), within the
/// test thread's stack.
#[test]
fn pointer_chain_as_long_as_a_query_may_be() {
    let mut packet = query("web.default.svc.cluster.local.", RecordType::A, None);
    packet[11] = 2; // two additional records
    // Record 1: root name, type NULL (10), class IN, TTL 0, rdata = the chain.
    let chain_len = (MAX_QUERY_LEN - packet.len() - 11 - 10) / 2 * 2 - 2;
    packet.extend_from_slice(&[0, 0, 10, 0, 1, 0, 0, 0, 0]);
    packet.extend_from_slice(&(chain_len as u16).to_be_bytes());
    let start = packet.len();
    for i in (0..chain_len).step_by(2) {
        // The first link points at the question name (offset 12), every other at the one before.
        let to = if i == 0 { 12 } else { start + i - 2 };
        packet.extend_from_slice(&(0xC000 | to as u16).to_be_bytes());
    }
    let last = start + chain_len - 2;
    // Record 2: named by a pointer to the chain's last link, type A, no rdata.
    packet.extend_from_slice(&(0xC000 | last as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert!(packet.len() <= MAX_QUERY_LEN, "{}", packet.len());
    for t in [Transport::Udp, Transport::Tcp] {
        let Outcome::Reply(bytes) = answer(&store(), &settings(), &packet, t) else {
            panic!("no reply")
        };
        Message::from_vec(&bytes).expect("a readable reply");
    }
    // One byte more than a query may have: FORMERR without reading it.
    packet.resize(MAX_QUERY_LEN + 1, 0);
    let Outcome::Reply(bytes) = answer(&store(), &settings(), &packet, Transport::Tcp) else {
        panic!("no reply")
    };
    assert_eq!(
        Message::from_vec(&bytes).unwrap().response_code(),
        ResponseCode::FormErr
    );
}

/// Counts that claim 65535 records of each kind in a short packet cost nothing: FORMERR.
#[test]
fn huge_counts_in_a_short_packet() {
    let mut packet = query("web.default.svc.cluster.local.", RecordType::A, None);
    packet[6..12].copy_from_slice(&[0xff; 6]);
    let Outcome::Reply(bytes) = answer(&store(), &settings(), &packet, Transport::Udp) else {
        panic!("no reply")
    };
    assert_eq!(
        Message::from_vec(&bytes).unwrap().response_code(),
        ResponseCode::FormErr
    );
}
