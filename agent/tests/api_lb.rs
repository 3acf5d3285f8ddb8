//! The node-local API load balancer on loopback, in front of small TLS "API servers" on
//! 127.0.0.2-5 with certificates kubeboot issues (the apiserver certificate: DNS SAN
//! `kubernetes`): clients reach a backend through it verifying the name `kubernetes`, a killed
//! backend is passed over at once, a backend with another CA's certificate is never healthy,
//! and the list of API servers is learned from the `kubernetes` Endpoints and written back.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use agent::apilb::{ApiLbConfig, ApiLbSettings, Balancer, Health, Timing, run};
use components::config::KeyAlgorithm;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pki::{Issued, Issuer, cert_spec, issue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::{JoinHandle, JoinSet};

/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(15);

fn fast() -> Timing {
    Timing {
        health_period: Duration::from_millis(200),
        recheck_period: Duration::from_millis(200),
        check_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        refresh_period: Duration::from_millis(300),
        reload_period: Duration::from_millis(200),
    }
}

/// A cluster CA and an API server certificate it signed (SANs: `kubernetes`, ..., 10.0.0.1;
/// never the loopback address the test server listens on).
fn pki() -> (Issuer, Issued) {
    let now = SystemTime::now();
    let ca: Issuer = issue(
        cert_spec("ca").expect("ca"),
        &common::cert_inputs(KeyAlgorithm::EcdsaP256),
        None,
        now,
    )
    .expect("ca")
    .into();
    let leaf = issue(
        cert_spec("apiserver").expect("apiserver"),
        &common::cert_inputs(KeyAlgorithm::EcdsaP256),
        Some(&ca),
        now,
    )
    .expect("apiserver");
    (ca, leaf)
}

/// A stand-in API server: `/readyz` 200, `/who` its name, the `kubernetes` Endpoints from
/// `answers`. Aborting the task closes the listener and every connection.
struct ApiServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// What a stand-in API server answers besides its name.
#[derive(Default)]
struct Answers {
    /// The `kubernetes` Endpoints, JSON.
    endpoints: Mutex<String>,
    /// `/readyz`'s status code; 0 means 200.
    readyz: AtomicU16,
}

async fn api_server(
    ip: &str,
    name: &'static str,
    cert: &Issued,
    answers: Arc<Answers>,
) -> ApiServer {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key");
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let answers = answers.clone();
            conns.spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let answers = answers.clone();
                        async move {
                            let ready = match answers.readyz.load(Ordering::SeqCst) {
                                0 => 200,
                                code => code,
                            };
                            let (status, body) = match req.uri().path() {
                                "/readyz" => (ready, "ok".to_string()),
                                "/who" => (200, name.to_string()),
                                "/api/v1/namespaces/default/endpoints/kubernetes" => {
                                    (200, answers.endpoints.lock().expect("lock").clone())
                                }
                                _ => (404, "not found".to_string()),
                            };
                            let mut r = Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    ApiServer { addr, task }
}

/// A client that trusts only the cluster CA, reaches `kubernetes` at the balancer, and opens a
/// new connection for every request.
fn client(ca: &Issuer, lb: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("ca"))
        .resolve("kubernetes", lb)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn who(c: &reqwest::Client, lb: SocketAddr) -> Result<String, String> {
    let r = c
        .get(format!("https://kubernetes:{}/who", lb.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    r.text().await.map_err(|e| e.to_string())
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn health(b: &Balancer, addr: SocketAddr) -> Option<Health> {
    b.backends()
        .into_iter()
        .find(|x| x.addr == addr.to_string())
        .map(|x| x.health)
}

/// A balancer on a free loopback port in front of `servers`, checking them with `ca`.
async fn start_lb(dir: &Path, ca: &Issuer, servers: Vec<String>) -> Balancer {
    start_lb_timed(dir, ca, servers, fast()).await
}

async fn start_lb_timed(dir: &Path, ca: &Issuer, servers: Vec<String>, t: Timing) -> Balancer {
    let mut cfg = ApiLbConfig::new(servers, Some(write_ca(dir, ca)));
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    Balancer::start(&cfg, t, vec![]).await.expect("starts")
}

fn write_ca(dir: &Path, ca: &Issuer) -> std::path::PathBuf {
    let p = dir.join("ca.crt");
    std::fs::write(&p, &ca.cert_pem).expect("ca");
    p
}

#[tokio::test]
async fn api_lb_forwards_to_a_healthy_backend_and_passes_over_a_killed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = pki();
    let none = Arc::new(Answers::default());
    let servers = [
        api_server("127.0.0.2", "a", &leaf, none.clone()).await,
        api_server("127.0.0.3", "b", &leaf, none.clone()).await,
        api_server("127.0.0.4", "c", &leaf, none.clone()).await,
    ];
    let lb = start_lb(
        dir.path(),
        &ca,
        servers.iter().map(|s| s.addr.to_string()).collect(),
    )
    .await;
    let c = client(&ca, lb.local_addr());
    wait_for("every backend up", || {
        servers
            .iter()
            .all(|s| health(&lb, s.addr) == Some(Health::Up))
    })
    .await;

    // Sticky: every new connection reaches the same backend.
    let first = who(&c, lb.local_addr())
        .await
        .expect("through the balancer");
    for _ in 0..5 {
        assert_eq!(who(&c, lb.local_addr()).await.expect("again"), first);
    }

    // Kill it: the very next connection goes elsewhere (the refused connect is passed over
    // within the same accept), and the checks take it down.
    let killed = &servers[["a", "b", "c"]
        .iter()
        .position(|n| *n == first)
        .expect("a backend's name")];
    killed.task.abort();
    let next = who(&c, lb.local_addr()).await.expect("after the kill");
    assert_ne!(next, first);
    wait_for("the killed backend down", || {
        health(&lb, killed.addr) == Some(Health::Down)
    })
    .await;
    for _ in 0..5 {
        let got = who(&c, lb.local_addr()).await.expect("still through");
        assert_ne!(got, first);
    }

    // No backend at all: the client is refused, not left hanging.
    for s in &servers {
        s.task.abort();
    }
    let started = Instant::now();
    assert!(who(&c, lb.local_addr()).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn api_lb_checks_at_once_when_a_connection_fails_not_only_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = pki();
    let none = Arc::new(Answers::default());
    let a = api_server("127.0.0.2", "a", &leaf, none.clone()).await;
    let b = api_server("127.0.0.3", "b", &leaf, none.clone()).await;
    // The background checks an hour apart: within this test only a failed connection can
    // bring a check (new backends are judged at once).
    let timing = Timing {
        health_period: Duration::from_secs(3600),
        ..fast()
    };
    let lb = start_lb_timed(
        dir.path(),
        &ca,
        vec![a.addr.to_string(), b.addr.to_string()],
        timing,
    )
    .await;
    wait_for("both up", || {
        health(&lb, a.addr) == Some(Health::Up) && health(&lb, b.addr) == Some(Health::Up)
    })
    .await;
    let c = client(&ca, lb.local_addr());
    let first = who(&c, lb.local_addr()).await.expect("through");
    let (killed, other) = if first == "a" { (&a, "b") } else { (&b, "a") };
    killed.task.abort();
    // The connection passes over the dead backend, and its failure brings the checks that
    // take it down (two in a row), long before the background round.
    assert_eq!(who(&c, lb.local_addr()).await.expect("failed over"), other);
    wait_for("the killed backend down", || {
        health(&lb, killed.addr) == Some(Health::Down)
    })
    .await;
    // Idle again: the checks keep the slow pace, the live backend is not checked meanwhile.
    let failures: Vec<u32> = lb.backends().iter().map(|b| b.failures).collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again: Vec<u32> = lb.backends().iter().map(|b| b.failures).collect();
    assert_eq!(failures, again, "checked again without a failed connection");
}

#[tokio::test]
async fn api_lb_never_trusts_a_backend_with_another_cas_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = pki();
    let (_other_ca, other_leaf) = pki();
    let none = Arc::new(Answers::default());
    let bad = api_server("127.0.0.2", "impostor", &other_leaf, none.clone()).await;
    let good = api_server("127.0.0.3", "good", &leaf, none.clone()).await;
    let lb = start_lb(
        dir.path(),
        &ca,
        vec![bad.addr.to_string(), good.addr.to_string()],
    )
    .await;
    wait_for("the checks to judge both", || {
        health(&lb, good.addr) == Some(Health::Up) && health(&lb, bad.addr) == Some(Health::Down)
    })
    .await;
    // It stays down over many checks, and connections skip it though it is listed first.
    let c = client(&ca, lb.local_addr());
    for _ in 0..10 {
        assert_eq!(who(&c, lb.local_addr()).await.expect("through"), "good");
        assert_eq!(health(&lb, bad.addr), Some(Health::Down));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lb.backends()
            .iter()
            .any(|b| b.addr == bad.addr.to_string() && !b.answered)
    );
}

#[tokio::test]
async fn api_lb_listens_on_loopback_only() {
    let cfg = ApiLbConfig {
        listen: "0.0.0.0:0".parse().expect("addr"),
        servers: vec!["127.0.0.2:6443".into()],
        ca_file: None,
    };
    let e = Balancer::start(&cfg, fast(), vec![])
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("is not a loopback address"), "{e}");
}

/// A free loopback port (the balancer of [`run`] listens where its file says).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn api_lb_learns_the_api_servers_from_the_endpoints_and_writes_them_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = pki();
    let ca_file = write_ca(dir.path(), &ca);
    let answers = Arc::new(Answers::default());
    let b = api_server("127.0.0.3", "b", &leaf, answers.clone()).await;
    let c = api_server("127.0.0.4", "c", &leaf, answers.clone()).await;
    // The API servers' own list, one subset per port as the Endpoints controller writes them.
    let subset = |a: SocketAddr| {
        serde_json::json!({"addresses": [{"ip": a.ip().to_string()}],
                           "ports": [{"name": "https", "port": a.port(), "protocol": "TCP"}]})
    };
    *answers.endpoints.lock().expect("lock") = serde_json::json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [subset(b.addr), subset(c.addr)]
    })
    .to_string();
    // The node joined through a server that is dead now; it knows b, but not c.
    let dead = format!("127.0.0.5:{}", free_port());
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let file = dir.path().join("api-lb.json");
    let seed = ApiLbConfig {
        listen,
        servers: vec![dead.clone(), b.addr.to_string()],
        ca_file: Some(ca_file),
    };
    std::fs::write(&file, seed.to_json()).expect("config");
    // The kubelet's kubeconfig names the dead server: the balancer reads through itself.
    let kc = pki::build_kubeconfig(
        pki::kubeconfig_spec("kubelet").expect("kubelet"),
        "node1",
        "kubernetes",
        &format!("https://{dead}"),
        &ca,
        KeyAlgorithm::EcdsaP256,
        pki::Validity::default().leaf,
        SystemTime::now(),
    )
    .expect("kubeconfig");
    let kubeconfig = dir.path().join("kubelet.conf");
    std::fs::write(&kubeconfig, kc.to_yaml()).expect("kubeconfig");

    let task = tokio::spawn(run(ApiLbSettings {
        config_file: file.clone(),
        kubeconfig: Some(kubeconfig),
        timing: fast(),
    }));
    let want = vec![b.addr.to_string(), c.addr.to_string()];
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&file).expect("config");
        let now = ApiLbConfig::from_json(&text).expect("valid");
        if now.servers == want {
            assert_eq!((now.listen, &now.ca_file), (seed.listen, &seed.ca_file));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file still lists {:?}",
            now.servers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // b, which it was seeded with, dies: c, which it learned, serves.
    b.task.abort();
    let client = client(&ca, listen);
    let deadline = Instant::now() + WAIT;
    loop {
        match who(&client, listen).await {
            Ok(name) if name == "c" => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The file gone: the balancer stops listening.
    std::fs::remove_file(&file).expect("remove");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(listen).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_lb_runs_in_the_agent_while_its_file_exists() {
    let mut node = common::Node::new("v1.20.2");
    node.cfg.api_lb.as_mut().expect("on by default").timing = fast();
    node.start_agent();
    let (ca, leaf) = pki();
    let a = api_server("127.0.0.2", "a", &leaf, Arc::default()).await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let file = node.layout.api_lb_config();
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    let ca_file = write_ca(node.tmp.path(), &ca);
    let cfg = ApiLbConfig {
        listen,
        servers: vec![a.addr.to_string()],
        ca_file: Some(ca_file),
    };
    std::fs::write(&file, cfg.to_json()).expect("config");
    let c = client(&ca, listen);
    let deadline = Instant::now() + WAIT;
    loop {
        match who(&c, listen).await {
            Ok(name) => {
                assert_eq!(name, "a");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "the agent's balancer: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_file(&file).expect("remove");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(listen).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop_agent();
}

#[tokio::test]
async fn api_lb_cuts_the_connections_of_a_backend_that_goes_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = pki();
    let sick = Arc::new(Answers::default());
    let a = api_server("127.0.0.2", "a", &leaf, sick.clone()).await;
    let b = api_server("127.0.0.3", "b", &leaf, Arc::default()).await;
    let lb = start_lb(
        dir.path(),
        &ca,
        vec![a.addr.to_string(), b.addr.to_string()],
    )
    .await;
    wait_for("both up", || {
        health(&lb, a.addr) == Some(Health::Up) && health(&lb, b.addr) == Some(Health::Up)
    })
    .await;
    // One kept-alive connection, as the kubelet holds its watches: it reaches a.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
            roots.add(c.expect("pem")).expect("root");
        }
        roots
    })
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(lb.local_addr())
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("kubernetes").expect("name");
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("TLS through the balancer, verified as kubernetes");
    conn.write_all(b"GET /who HTTP/1.1\r\nHost: kubernetes\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.expect("answer");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\na"),
        "{answer}"
    );

    // a stops being ready, though it still serves the connection: the balancer ends it, so
    // the client reconnects (to b) instead of waiting on a server that is going away.
    sick.readyz.store(500, Ordering::SeqCst);
    wait_for("a down", || health(&lb, a.addr) == Some(Health::Down)).await;
    let ended = tokio::time::timeout(WAIT, conn.read(&mut buf))
        .await
        .expect("the connection ends");
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
    assert_eq!(
        who(&client(&ca, lb.local_addr()), lb.local_addr())
            .await
            .expect("b"),
        "b"
    );
}
