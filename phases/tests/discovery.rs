//! `join`'s discovery against a small HTTPS server on loopback that serves
//! `kube-public/cluster-info` as kubeadm's bootstrap signer leaves it: the kubeconfig with the
//! cluster CA, signed (detached JWS) with a bootstrap token. Each bad input gives its own
//! error, naming the fix, and no error ever holds the token secret.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use components::config::KeyAlgorithm;
use phases::discovery::{Discovered, Discovery, DiscoveryError, TokenDiscovery, discover};
use pki::{BootstrapToken, CertInputs, Issuer, cert_spec, issue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const TOKEN: &str = "abcdef.0123456789abcdef";
const SECRET: &str = "0123456789abcdef";
const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

fn inputs(advertise: &str) -> CertInputs {
    CertInputs {
        node_name: "node1".into(),
        advertise_address: advertise.parse().expect("ip"),
        service_subnet: "10.96.0.0/12".parse().expect("cidr"),
        dns_domain: "cluster.local".into(),
        control_plane_endpoint: None,
        apiserver_cert_sans: vec![],
        etcd_server_sans: vec![],
        etcd_peer_sans: vec![],
        algorithm: KeyAlgorithm::EcdsaP256,
        validity: Default::default(),
    }
}

fn new_ca() -> Issuer {
    issue(
        cert_spec("ca").expect("ca"),
        &inputs("127.0.0.1"),
        None,
        SystemTime::now(),
    )
    .expect("ca")
    .into()
}

/// The API server's serving certificate from `ca`, for `advertise` (and 127.0.0.1? only if
/// `advertise` is it: kubeadm's apiserver certificate has no loopback SAN of its own).
fn serving_cert(ca: &Issuer, advertise: &str) -> (String, String) {
    let leaf = issue(
        cert_spec("apiserver").expect("apiserver"),
        &inputs(advertise),
        Some(ca),
        SystemTime::now(),
    )
    .expect("apiserver cert");
    (leaf.cert_pem, leaf.key_pem)
}

/// One canned answer per path; anything else is a 404 Status.
type Handler = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// An HTTPS server on 127.0.0.1, one thread per connection, stopped on drop.
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(cert_pem: &str, key_pem: &str, handler: Handler) -> Self {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("cert");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (config, handler) = (config.clone(), handler.clone());
                std::thread::spawn(move || serve_one(conn, config, handler));
            }
        });
        Self { addr, stop }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request's head and answers it; a client that refuses the handshake (another
/// CA) just ends the connection.
fn serve_one(conn: TcpStream, config: Arc<rustls::ServerConfig>, handler: Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(server) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(server, conn);
    let mut reader = BufReader::new(&mut tls);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the head, bounded.
    for _ in 0..100 {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = handler(path);
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(response.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn ca_data(ca: &Issuer) -> String {
    base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem)
}

/// cluster-info as kubeadm writes it, naming `ca` and `server`, signed with each token.
fn cluster_info(ca: &Issuer, server: &str, tokens: &[&str]) -> (String, String) {
    let kubeconfig = manifests::cluster::cluster_info_kubeconfig(&ca_data(ca), server);
    let mut cm = manifests::cluster::cluster_info_config_map(&kubeconfig);
    let data = cm.data.get_or_insert_with(Default::default);
    for token in tokens {
        let t = BootstrapToken::parse(token).expect("token");
        data.insert(
            pki::jws::signature_key(t.id()),
            pki::jws::compute_detached_signature(&kubeconfig, t.id(), t.secret()),
        );
    }
    (
        kubeconfig,
        serde_json::to_string(&cm).expect("ConfigMap serializes"),
    )
}

fn answering(body: String) -> Handler {
    Arc::new(move |path: &str| {
        if path == CLUSTER_INFO {
            (200, body.clone())
        } else {
            (404, r#"{"kind":"Status","message":"not found"}"#.into())
        }
    })
}

/// A cluster: its CA, an API server on loopback with a certificate from `serving_ca`
/// (normally the same CA) serving cluster-info signed with `tokens`.
struct Cluster {
    ca: Issuer,
    kubeconfig: String,
    server: Server,
}

fn cluster_with(serving_ca: Option<&Issuer>, advertise: &str, tokens: &[&str]) -> Cluster {
    let ca = new_ca();
    let (cert, key) = serving_cert(serving_ca.unwrap_or(&ca), advertise);
    // The server URL cluster-info names; the test server's port is only known once it
    // listens, so the handler reads it from a cell filled right after.
    let body = Arc::new(std::sync::OnceLock::<String>::new());
    let served = body.clone();
    let server = Server::start(
        &cert,
        &key,
        Arc::new(move |path: &str| match (path, served.get()) {
            (CLUSTER_INFO, Some(b)) => (200, b.clone()),
            _ => (404, r#"{"kind":"Status","message":"not found"}"#.into()),
        }),
    );
    let (kubeconfig, json) = cluster_info(&ca, &server.url(), tokens);
    body.set(json).expect("set once");
    Cluster {
        ca,
        kubeconfig,
        server,
    }
}

fn cluster() -> Cluster {
    cluster_with(None, "127.0.0.1", &[TOKEN])
}

fn token_discovery(endpoint: &str, token: &str, pins: Vec<String>, timeout: Duration) -> Discovery {
    Discovery::Token(TokenDiscovery {
        endpoint: endpoint.to_string(),
        token: BootstrapToken::parse(token).expect("token"),
        ca_cert_hashes: pins,
        unsafe_skip_ca_verification: false,
        timeout,
    })
}

fn pin(ca: &Issuer) -> String {
    pki::ca_cert_hash(&ca.cert_pem).expect("hash")
}

fn run(d: &Discovery) -> (anyhow::Result<Discovered>, Vec<String>) {
    let mut lines = Vec::new();
    let result = discover(d, |l| lines.push(l.to_string()));
    (result, lines)
}

/// The typed error, after checking that neither it nor the progress holds the secret.
fn failure(d: &Discovery) -> DiscoveryError {
    let (result, lines) = run(d);
    let err = result.expect_err("discovery must fail");
    let text = format!("{err:#} {err:?} {}", lines.join("\n"));
    assert!(
        !text.contains(SECRET),
        "the token secret leaked into: {text}"
    );
    err.downcast_ref::<DiscoveryError>()
        .cloned()
        .unwrap_or_else(|| panic!("not a DiscoveryError: {err:#}"))
}

const SHORT: Duration = Duration::from_secs(1);
const ENOUGH: Duration = Duration::from_secs(10);

#[test]
fn token_discovery_with_the_right_pin_trusts_the_cluster_ca() {
    let c = cluster();
    let (found, lines) = run(&token_discovery(
        &c.server.endpoint(),
        TOKEN,
        vec![pin(&c.ca)],
        ENOUGH,
    ));
    let found = found.expect("discovers");
    assert_eq!(found.ca_pem, c.ca.cert_pem);
    assert_eq!(found.server, c.server.url());
    assert_eq!(found.endpoint_url, c.server.url());
    assert_eq!(found.kubeconfig_yaml, c.kubeconfig);
    let all = lines.join("\n");
    assert!(
        all.contains(&format!(
            "[discovery] Requesting info from \"{}\" again to validate TLS against the pinned public key",
            c.server.endpoint()
        )),
        "{all}"
    );
    assert!(
        all.contains("TLS certificate validates against pinned roots"),
        "{all}"
    );
    assert!(!all.contains(SECRET), "{all}");
}

#[test]
fn token_discovery_accepts_any_matching_pin() {
    let c = cluster();
    let other = new_ca();
    let found = run(&token_discovery(
        &c.server.endpoint(),
        TOKEN,
        vec![pin(&other), pin(&c.ca)],
        ENOUGH,
    ))
    .0
    .expect("the second pin matches");
    assert_eq!(found.ca_pem, c.ca.cert_pem);
}

#[test]
fn discovery_unsafe_skip_accepts_the_signed_ca_without_pins() {
    let c = cluster();
    let d = Discovery::Token(TokenDiscovery {
        endpoint: c.server.endpoint(),
        token: BootstrapToken::parse(TOKEN).expect("token"),
        ca_cert_hashes: vec![],
        unsafe_skip_ca_verification: true,
        timeout: ENOUGH,
    });
    let (found, lines) = run(&d);
    assert_eq!(found.expect("discovers").ca_pem, c.ca.cert_pem);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no TLS pinning was specified")),
        "{lines:?}"
    );
}

#[test]
fn discovery_unsafe_skip_still_checks_the_pins_given() {
    // kubeadm: the flag lifts the need for a pin, not the check of one.
    let c = cluster();
    let d = Discovery::Token(TokenDiscovery {
        endpoint: c.server.endpoint(),
        token: BootstrapToken::parse(TOKEN).expect("token"),
        ca_cert_hashes: vec![pin(&new_ca())],
        unsafe_skip_ca_verification: true,
        timeout: ENOUGH,
    });
    let e = failure(&d);
    assert!(matches!(e, DiscoveryError::CaPinMismatch { .. }), "{e:?}");
}

#[test]
fn token_discovery_retries_until_the_api_server_answers() {
    // The first read meets an API server that is not ready yet (503), as during a control-plane
    // restart; discovery tries again (kubeadm's 5 s interval) and succeeds.
    let ca = new_ca();
    let (cert, key) = serving_cert(&ca, "127.0.0.1");
    let body = Arc::new(std::sync::OnceLock::<String>::new());
    let served = body.clone();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let server = Server::start(
        &cert,
        &key,
        Arc::new(
            move |_: &str| match (counted.fetch_add(1, Ordering::SeqCst), served.get()) {
                (0, _) | (_, None) => (503, r#"{"kind":"Status","message":"not ready"}"#.into()),
                (_, Some(b)) => (200, b.clone()),
            },
        ),
    );
    body.set(cluster_info(&ca, &server.url(), &[TOKEN]).1)
        .expect("set once");
    let (found, lines) = run(&token_discovery(
        &server.endpoint(),
        TOKEN,
        vec![pin(&ca)],
        ENOUGH,
    ));
    assert_eq!(found.expect("discovers after a retry").ca_pem, ca.cert_pem);
    assert!(
        lines.iter().any(|l| l
            == "[discovery] Failed to request cluster-info, will try again: HTTP 503 not ready"),
        "{lines:?}"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "first, retried, verified reads"
    );
}

#[test]
fn discovery_no_pin_and_no_unsafe_skip_is_refused_before_any_request() {
    let e = failure(&token_discovery("127.0.0.1:1", TOKEN, vec![], ENOUGH));
    assert!(matches!(e, DiscoveryError::InvalidSettings { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("--discovery-token-unsafe-skip-ca-verification"),
        "{e}"
    );
}

#[test]
fn discovery_wrong_pin_prints_the_hash_found_and_the_pins_given() {
    let c = cluster();
    let wrong = pin(&new_ca());
    let e = failure(&token_discovery(
        &c.server.endpoint(),
        TOKEN,
        vec![wrong.clone()],
        ENOUGH,
    ));
    assert!(matches!(e, DiscoveryError::CaPinMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&pin(&c.ca)), "{msg}");
    assert!(msg.contains(&wrong), "{msg}");
    assert!(msg.contains("--print-join-command"), "{msg}");
}

#[test]
fn discovery_unknown_token_id_says_wrong_or_expired_and_how_to_make_one() {
    let c = cluster();
    let e = failure(&token_discovery(
        &c.server.endpoint(),
        "zzzzzz.0123456789abcdef",
        vec![pin(&c.ca)],
        SHORT,
    ));
    assert!(matches!(e, DiscoveryError::NoSignature { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("\"zzzzzz\""), "{msg}");
    assert!(msg.contains("wrong or has expired"), "{msg}");
    assert!(
        msg.contains("kubeboot token create --print-join-command"),
        "{msg}"
    );
}

#[test]
fn discovery_wrong_token_secret_is_a_bad_signature() {
    let c = cluster();
    let e = failure(&token_discovery(
        &c.server.endpoint(),
        "abcdef.ffffffffffffffff",
        vec![pin(&c.ca)],
        ENOUGH,
    ));
    assert!(matches!(e, DiscoveryError::BadSignature { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("secret is wrong"), "{msg}");
    assert!(!msg.contains("ffffffffffffffff"), "{msg}");
}

#[test]
fn discovery_a_server_with_a_certificate_from_another_ca_fails_the_verified_read() {
    let impostor = new_ca();
    let c = cluster_with(Some(&impostor), "127.0.0.1", &[TOKEN]);
    let e = failure(&token_discovery(
        &c.server.endpoint(),
        TOKEN,
        vec![pin(&c.ca)],
        ENOUGH,
    ));
    let DiscoveryError::ServerCertFromAnotherCa { ca_hash, .. } = &e else {
        panic!("expected ServerCertFromAnotherCa, got {e:?}: {e}");
    };
    assert_eq!(ca_hash, &pin(&c.ca));
    assert!(e.to_string().contains("did not issue"), "{e}");
}

#[test]
fn discovery_a_server_certificate_without_this_address_names_the_ones_it_has() {
    // From the right CA, but for 10.0.0.1 only (and the service IP, the DNS names).
    let c = cluster_with(None, "10.0.0.1", &[TOKEN]);
    let e = failure(&token_discovery(
        &c.server.endpoint(),
        TOKEN,
        vec![pin(&c.ca)],
        ENOUGH,
    ));
    assert!(
        matches!(e, DiscoveryError::ServerCertInvalid { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("not valid for \"127.0.0.1\""), "{msg}");
    assert!(msg.contains("10.0.0.1"), "{msg}");
    assert!(msg.contains("certSANs"), "{msg}");
}

#[test]
fn discovery_nothing_listening_is_unreachable_after_the_timeout() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let endpoint = format!("127.0.0.1:{port}");
    let e = failure(&token_discovery(
        &endpoint,
        TOKEN,
        vec![pin(&new_ca())],
        SHORT,
    ));
    assert!(matches!(e, DiscoveryError::Unreachable { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&endpoint), "{msg}");
    assert!(msg.contains("timeout of 1s"), "{msg}");
    assert!(msg.contains("firewall"), "{msg}");
}

#[test]
fn discovery_a_cluster_info_without_a_kubeconfig_is_malformed() {
    let ca = new_ca();
    let (cert, key) = serving_cert(&ca, "127.0.0.1");
    let t = BootstrapToken::parse(TOKEN).expect("token");
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {pki::jws::signature_key(t.id()): pki::jws::compute_detached_signature("", t.id(), t.secret())},
    });
    let server = Server::start(&cert, &key, answering(body.to_string()));
    let e = failure(&token_discovery(
        &server.endpoint(),
        TOKEN,
        vec![pin(&ca)],
        ENOUGH,
    ));
    assert!(matches!(e, DiscoveryError::Malformed { .. }), "{e:?}");
    assert!(e.to_string().contains("\"kubeconfig\""), "{e}");
}

#[test]
fn discovery_anonymous_access_refused_names_the_rbac_fix() {
    let ca = new_ca();
    let (cert, key) = serving_cert(&ca, "127.0.0.1");
    let server = Server::start(
        &cert,
        &key,
        Arc::new(|_: &str| {
            (
                403,
                r#"{"kind":"Status","message":"configmaps \"cluster-info\" is forbidden"}"#.into(),
            )
        }),
    );
    let e = failure(&token_discovery(
        &server.endpoint(),
        TOKEN,
        vec![pin(&ca)],
        SHORT,
    ));
    assert!(
        matches!(e, DiscoveryError::Refused { status: 403, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("is forbidden"), "{msg}");
    assert!(msg.contains("kubeboot init phase bootstrap-token"), "{msg}");
}

fn write_kubeconfig(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("discovery.conf");
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn file_discovery_reads_the_file_and_checks_the_server() {
    let c = cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    // An admin-style kubeconfig with a named cluster and a context, as users keep them.
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    \
         certificate-authority-data: {}\n    server: {}\ncontexts:\n- name: ctx\n  context:\n    \
         cluster: kubernetes\n    user: nobody\ncurrent-context: ctx\nusers: []\n",
        ca_data(&c.ca),
        c.server.url()
    );
    let path = write_kubeconfig(&dir, &text);
    let (found, lines) = run(&Discovery::File {
        path_or_url: path,
        timeout: ENOUGH,
    });
    let found = found.expect("discovers");
    assert_eq!(found.ca_pem, c.ca.cert_pem);
    assert_eq!(found.server, c.server.url());
    assert_eq!(found.kubeconfig_yaml, text);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Synced Server and CertificateAuthorityData")),
        "{lines:?}"
    );
}

#[test]
fn file_discovery_with_a_ca_file_path_relative_to_the_kubeconfig() {
    let c = cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.crt"), &c.ca.cert_pem).expect("ca");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    \
         certificate-authority: ca.crt\n    server: {}\n",
        c.server.url()
    );
    let found = run(&Discovery::File {
        path_or_url: write_kubeconfig(&dir, &text),
        timeout: ENOUGH,
    })
    .0
    .expect("discovers");
    assert_eq!(found.ca_pem, c.ca.cert_pem);
}

#[test]
fn file_discovery_against_a_server_of_another_ca_fails() {
    let c = cluster();
    let other = new_ca();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = manifests::cluster::cluster_info_kubeconfig(&ca_data(&other), &c.server.url());
    let e = failure(&Discovery::File {
        path_or_url: write_kubeconfig(&dir, &text),
        timeout: ENOUGH,
    });
    assert!(
        matches!(e, DiscoveryError::ServerCertFromAnotherCa { .. }),
        "{e:?}"
    );
}

#[test]
fn file_discovery_of_a_missing_file_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.conf").display().to_string();
    let e = failure(&Discovery::File {
        path_or_url: path.clone(),
        timeout: SHORT,
    });
    assert!(matches!(e, DiscoveryError::DiscoveryFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&path) && msg.contains("no such file"), "{msg}");
}

#[test]
fn discovery_url_is_verified_with_the_system_roots() {
    // kubeadm fetches an https:// discovery file with Go's default transport: a server whose
    // CA the system does not trust is refused.
    let c = cluster();
    let url = format!("{}/discovery.conf", c.server.url());
    let e = failure(&Discovery::File {
        path_or_url: url.clone(),
        timeout: ENOUGH,
    });
    let DiscoveryError::DiscoveryFile { location, .. } = &e else {
        panic!("expected DiscoveryFile, got {e:?}: {e}");
    };
    assert_eq!(location, &url);
    assert!(e.to_string().contains("CA bundle"), "{e}");
}
