//! The cluster DNS server's sockets on 127.0.0.1 with ephemeral ports: answers from a store
//! filled with k8s-openapi objects over UDP and TCP, relays to fake upstreams (std sockets in
//! the test), SERVFAIL when upstreams fail or are missing, TCP framing edge cases, the limits
//! under a flood, and the readiness endpoint.
//!
//! Each server runs on a current_thread runtime of its own thread, as `kubeboot dns` does; the
//! clients are plain blocking sockets with read timeouts, so every wait is bounded.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent::dns::answer::Settings;
use agent::dns::serve::{Limits, Server};
use agent::dns::store::Store;
use agent::dns::upstream::Timeouts;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};

const WEB_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 5, 5);
const WEB: &str = "web.default.svc.cluster.local.";

fn store() -> Store {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.5.5",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("service");
    let ep: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.244.0.7"}],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    }))
    .expect("endpoints");
    let mut s = Store::new("cluster.local").expect("store");
    s.upsert_service(&svc);
    s.upsert_endpoints(&ep);
    s
}

/// A running server: its UDP and TCP address (the same port) and its state.
struct Running {
    addr: SocketAddr,
    server: Arc<Server>,
}

/// Starts a server on 127.0.0.1:<free port> in a thread of its own; it lives until the test
/// process ends.
fn start(settings: Settings, limits: Limits) -> Running {
    let server = Server::new(store(), settings, limits);
    let s = server.clone();
    let addr = on_own_runtime(move |tx| async move {
        // UDP and TCP on one port, as `--listen` binds them; retried if TCP's is taken.
        let (udp, tcp) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("udp");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        tx.send(udp.local_addr().expect("addr")).expect("send");
        tokio::spawn(s.clone().serve_tcp(tcp));
        s.serve_udp(udp).await;
    });
    Running { addr, server }
}

/// Runs `serve` on a current_thread runtime in a thread of its own, for the rest of the test
/// process; returns the address it sends once it listens.
fn on_own_runtime<F>(
    serve: impl FnOnce(std::sync::mpsc::Sender<SocketAddr>) -> F + Send + 'static,
) -> SocketAddr
where
    F: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(serve(tx));
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("started")
}

fn query(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), rtype));
    m.to_vec().expect("encode")
}

fn udp_client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c
}

fn ask_udp(addr: SocketAddr, packet: &[u8]) -> Message {
    let c = udp_client();
    c.send_to(packet, addr).expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = c.recv_from(&mut buf).expect("an answer in time");
    Message::from_vec(&buf[..n]).expect("a DNS message")
}

fn tcp_client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut v = (packet.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(packet);
    v
}

fn read_framed(c: &mut TcpStream) -> std::io::Result<Message> {
    let mut len = [0u8; 2];
    c.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut body)?;
    Ok(Message::from_vec(&body).expect("a DNS message"))
}

fn ask_tcp(addr: SocketAddr, packet: &[u8]) -> Message {
    let mut c = tcp_client(addr);
    c.write_all(&framed(packet)).expect("write");
    read_framed(&mut c).expect("an answer in time")
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn assert_web_a(m: &Message, id: u16) {
    assert_eq!(m.id(), id);
    assert_eq!(m.response_code(), ResponseCode::NoError);
    assert_eq!(a_records(m), vec![WEB_IP], "{m:?}");
}

fn assert_web_srv(m: &Message) {
    assert_eq!(m.response_code(), ResponseCode::NoError);
    let srv: Vec<(u16, String)> = m
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.port(), s.target().to_ascii())),
            _ => None,
        })
        .collect();
    assert_eq!(srv, vec![(80, WEB.to_string())], "{m:?}");
}

#[test]
fn answers_a_and_srv_from_the_store_over_udp_and_tcp() {
    let r = start(Settings::default(), Limits::default());
    assert_web_a(&ask_udp(r.addr, &query(7, WEB, RecordType::A)), 7);
    assert_web_a(&ask_tcp(r.addr, &query(8, WEB, RecordType::A)), 8);
    let srv = "_http._tcp.web.default.svc.cluster.local.";
    assert_web_srv(&ask_udp(r.addr, &query(9, srv, RecordType::SRV)));
    assert_web_srv(&ask_tcp(r.addr, &query(10, srv, RecordType::SRV)));
    let missing = ask_udp(
        r.addr,
        &query(11, "nope.default.svc.cluster.local.", RecordType::A),
    );
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    let s = r.server.stats();
    assert!(s.udp_queries >= 3 && s.tcp_queries >= 2, "{s:?}");
}

/// A fake upstream: answers every query with `ip`, truncated (TC, no answer) over UDP when
/// `truncate_udp`, in full over TCP on the same port. Returns its address and the queries it
/// received over UDP.
fn fake_upstream(
    ip: Ipv4Addr,
    truncate_udp: bool,
) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = udp.local_addr().expect("addr");
    let tcp = std::net::TcpListener::bind(addr).expect("tcp on the same port");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let respond = move |packet: &[u8], truncate: bool| {
        let q = Message::from_vec(packet).expect("the relayed query parses");
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(q.recursion_desired())
            .set_recursion_available(true);
        r.add_queries(q.queries().iter().cloned());
        if truncate {
            r.set_truncated(true);
        } else {
            let name = q.queries()[0].name().clone();
            r.add_answer(Record::from_rdata(name, 60, RData::A(A(ip))));
        }
        r.to_vec().expect("encode")
    };
    let respond_tcp = respond;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while let Ok((n, peer)) = udp.recv_from(&mut buf) {
            log.lock().expect("lock").push(buf[..n].to_vec());
            let _ = udp.send_to(&respond(&buf[..n], truncate_udp), peer);
        }
    });
    std::thread::spawn(move || {
        for mut c in tcp.incoming().flatten() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if c.read_exact(&mut body).is_ok() {
                let _ = c.write_all(&framed(&respond_tcp(&body, false)));
            }
        }
    });
    (addr, seen)
}

fn forwarding_to(upstreams: Vec<SocketAddr>) -> Settings {
    Settings {
        upstreams,
        ..Settings::default()
    }
}

#[test]
fn forwards_outside_names_unchanged_and_relays_the_answer_with_the_clients_id() {
    let (up, seen) = fake_upstream(Ipv4Addr::new(192, 0, 2, 7), false);
    let r = start(forwarding_to(vec![up]), Limits::default());
    let q = query(0x4242, "example.org.", RecordType::A);
    let m = ask_udp(r.addr, &q);
    assert_eq!(m.id(), 0x4242);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        std::slice::from_ref(&q),
        "the query is relayed as received"
    );
    let m = ask_tcp(r.addr, &query(0x4343, "example.org.", RecordType::A));
    assert_eq!(m.id(), 0x4343);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);
}

#[test]
fn a_dead_upstream_is_skipped_for_the_next() {
    // Nothing listens on the first: refused at once (ICMP), the second answers.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (up, _) = fake_upstream(Ipv4Addr::new(192, 0, 2, 8), false);
    let r = start(forwarding_to(vec![dead, up]), Limits::default());
    let m = ask_udp(r.addr, &query(5, "example.org.", RecordType::A));
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 8)]);
}

#[test]
fn truncated_upstream_answers_are_fetched_over_tcp_for_tcp_clients_only() {
    let (up, _) = fake_upstream(Ipv4Addr::new(192, 0, 2, 9), true);
    let r = start(forwarding_to(vec![up]), Limits::default());
    let over_udp = ask_udp(r.addr, &query(1, "big.example.org.", RecordType::A));
    assert!(
        over_udp.truncated(),
        "a UDP client gets TC and retries itself"
    );
    assert!(over_udp.answers().is_empty());
    let over_tcp = ask_tcp(r.addr, &query(2, "big.example.org.", RecordType::A));
    assert!(!over_tcp.truncated());
    assert_eq!(a_records(&over_tcp), vec![Ipv4Addr::new(192, 0, 2, 9)]);
}

#[test]
fn a_silent_upstream_gets_servfail_within_the_timeout() {
    // Bound and never read: every query times out.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let r = start(
        forwarding_to(vec![silent.local_addr().expect("addr")]),
        Limits::default(),
    );
    let started = Instant::now();
    let m = ask_udp(r.addr, &query(0x1234, "example.org.", RecordType::A));
    let took = started.elapsed();
    assert_eq!(m.id(), 0x1234);
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "SERVFAIL after the 2 s attempt timeout, took {took:?}"
    );
}

#[test]
fn no_upstreams_get_servfail() {
    let r = start(Settings::default(), Limits::default());
    for m in [
        ask_udp(r.addr, &query(3, "example.org.", RecordType::A)),
        ask_tcp(r.addr, &query(4, "example.org.", RecordType::A)),
    ] {
        assert_eq!(m.response_code(), ResponseCode::ServFail, "{m:?}");
    }
}

fn short_idle() -> Limits {
    Limits {
        tcp_idle: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Whether the server closed `c` (EOF) within the client's read timeout.
fn closed(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match c.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn tcp_many_queries_on_one_connection_answered_in_order() {
    let r = start(Settings::default(), short_idle());
    let mut c = tcp_client(r.addr);
    // All in one write, then one by one in two halves of a prefix.
    let mut all = Vec::new();
    for id in 100..120 {
        all.extend(framed(&query(id, WEB, RecordType::A)));
    }
    c.write_all(&all).expect("write");
    for id in 100..120 {
        assert_web_a(&read_framed(&mut c).expect("answer"), id);
    }
    let one = framed(&query(200, WEB, RecordType::A));
    c.write_all(&one[..1]).expect("write");
    std::thread::sleep(Duration::from_millis(100));
    c.write_all(&one[1..]).expect("write");
    assert_web_a(&read_framed(&mut c).expect("answer"), 200);
}

#[test]
fn tcp_partial_prefix_or_message_then_silence_is_closed() {
    let r = start(Settings::default(), short_idle());
    let mut c = tcp_client(r.addr);
    c.write_all(&[0]).expect("write");
    assert!(closed(&mut c), "half a prefix then idle: closed");
    let mut c = tcp_client(r.addr);
    let q = framed(&query(1, WEB, RecordType::A));
    c.write_all(&q[..q.len() - 3]).expect("write");
    assert!(closed(&mut c), "a message shorter than its prefix: closed");
    let mut c = tcp_client(r.addr);
    assert!(closed(&mut c), "idle: closed");
    let mut c = tcp_client(r.addr);
    c.write_all(&[0, 0]).expect("write");
    assert!(closed(&mut c), "a zero-length message: closed");
}

#[test]
fn tcp_largest_message_is_read_and_the_connection_goes_on() {
    let r = start(Settings::default(), short_idle());
    let mut c = tcp_client(r.addr);
    // 64 KiB - 1 of junk with the QR bit set (a response: dropped), then a real query.
    let mut junk = framed(&vec![0xffu8; 65535]);
    junk.splice(0..2, 65535u16.to_be_bytes());
    c.write_all(&junk).expect("write");
    c.write_all(&framed(&query(77, WEB, RecordType::A)))
        .expect("write");
    assert_web_a(&read_framed(&mut c).expect("answer"), 77);
}

#[test]
fn tcp_connections_beyond_the_limit_are_closed_at_once() {
    let limits = Limits {
        max_tcp: 4,
        ..Limits::default()
    };
    let r = start(Settings::default(), limits);
    let mut open: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut c = tcp_client(r.addr);
            c.write_all(&framed(&query(i, WEB, RecordType::A)))
                .expect("write");
            assert_web_a(&read_framed(&mut c).expect("answer"), i);
            c
        })
        .collect();
    assert_eq!(r.server.stats().tcp_connections, 4);
    let mut fifth = tcp_client(r.addr);
    let _ = fifth.write_all(&framed(&query(5, WEB, RecordType::A)));
    assert!(closed(&mut fifth), "the fifth connection is closed");
    assert!(r.server.stats().tcp_rejected >= 1);
    // One closes: a new one is served again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.server.stats().tcp_connections > 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_web_a(&ask_tcp(r.addr, &query(6, WEB, RecordType::A)), 6);
}

/// The process's resident memory, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_udp_flood_keeps_memory_and_relays_bounded_and_answers_right() {
    // Half the queries are cluster names (answered from memory), half go to an upstream that
    // never answers, so relays pile up to the limit and the rest get REFUSED.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let limits = Limits {
        max_forwards: 64,
        upstream: Timeouts {
            attempt: Duration::from_millis(500),
            deadline: Duration::from_millis(500),
        },
        ..Limits::default()
    };
    let r = start(
        forwarding_to(vec![silent.local_addr().expect("addr")]),
        limits,
    );
    // Warm up (runtime, buffers), then measure.
    assert_web_a(&ask_udp(r.addr, &query(1, WEB, RecordType::A)), 1);
    let before = rss_kib();

    const N: u16 = 20_000;
    let client = Arc::new(udp_client());
    client
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let done = Arc::new(AtomicBool::new(false));
    let max_in_flight = {
        let server = r.server.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(server.stats().forwards_in_flight);
                std::thread::sleep(Duration::from_millis(1));
            }
            max
        })
    };
    let receiver = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            let (mut answered, mut checked) = (0u32, 0u32);
            // Ends when nothing arrived for the read timeout; N answers at most.
            while let Ok(n) = client.recv(&mut buf) {
                answered += 1;
                let m = Message::from_vec(&buf[..n]).expect("every answer parses");
                if m.id().is_multiple_of(50) {
                    checked += 1;
                    if m.id().is_multiple_of(100) {
                        assert_web_a(&m, m.id());
                    } else {
                        assert!(
                            matches!(
                                m.response_code(),
                                ResponseCode::Refused | ResponseCode::ServFail
                            ),
                            "{m:?}"
                        );
                        assert_eq!(m.queries()[0].name().to_ascii(), "example.org.");
                    }
                }
                if answered >= u32::from(N) {
                    break;
                }
            }
            (answered, checked)
        })
    };
    let mut sent = 0u32;
    for id in 0..N {
        let q = if id.is_multiple_of(100) || !id.is_multiple_of(2) {
            query(id, WEB, RecordType::A)
        } else {
            query(id, "example.org.", RecordType::A)
        };
        if client.send_to(&q, r.addr).is_ok() {
            sent += 1;
        }
    }
    let (answered, checked) = receiver.join().expect("receiver");
    done.store(true, Ordering::SeqCst);
    let max_in_flight = max_in_flight.join().expect("sampler");
    let after = rss_kib();
    let stats = r.server.stats();
    eprintln!(
        "sent {sent}, answered {answered} ({checked} checked), max relays {max_in_flight}, \
         refused {}, RSS {before} -> {after} KiB",
        stats.forwards_refused
    );
    assert!(max_in_flight <= 64, "relays bounded: {max_in_flight}");
    assert!(stats.forwards_refused > 0, "the overflow was refused");
    assert!(
        checked > 0 && answered > 1000,
        "answers arrived: {answered}"
    );
    // A few MiB for socket buffers and the relays' buffers at most; nothing per query.
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    // The server still answers once the flood is over.
    assert_web_a(&ask_udp(r.addr, &query(9, WEB, RecordType::A)), 9);
}

/// GET `path` over HTTP/1.1; the status code.
fn http_status(addr: SocketAddr, path: &str) -> u16 {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| u16::from_str(s).ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {resp:?}"))
}

#[test]
fn ready_is_503_before_sync_and_200_after_health_always_200() {
    let server = Server::new(store(), Settings::default(), Limits::default());
    let s = server.clone();
    let addr = on_own_runtime(move |tx| async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        tx.send(l.local_addr().expect("addr")).expect("send");
        agent::dns::health::serve(l, s).await;
    });
    assert_eq!(http_status(addr, "/ready"), 503);
    assert_eq!(http_status(addr, "/health"), 200);
    server.mark_synced();
    assert_eq!(http_status(addr, "/ready"), 200);
    assert_eq!(http_status(addr, "/health"), 200);
    assert_eq!(http_status(addr, "/other"), 404);
}
