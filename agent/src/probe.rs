//! Running probes: httpGet (HTTP, and HTTPS without certificate verification, as the
//! kubelet), tcpSocket and exec (kubelet: pkg/probe/{http,tcp,exec}). The one place the agent
//! probes containers; when to probe and what a result means is `pod::lifecycle`'s business.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::host::{netns, process};
use crate::pod::spec::{ProbeHandler, ProbeKind, ProbeSpec};

/// The User-Agent the kubelet's probes send (kubelet: prober.go, `kube-probe/<major.minor>`).
const USER_AGENT: &str = "kube-probe/1.20";
/// How much of a response body or command output a result message keeps.
const MAX_MESSAGE: usize = 1024;

/// A probe's raw outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passed.
    pub ok: bool,
    /// What happened, for the status.
    pub message: String,
}

fn outcome(ok: bool, message: impl Into<String>) -> Outcome {
    let mut message = message.into();
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    Outcome { ok, message }
}

/// How long a readiness probe's idle connection is kept for the process's next one.
const IDLE_CONNECTION: Duration = Duration::from_secs(90);

fn build_client(keep_alive: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .pool_max_idle_per_host(usize::from(keep_alive))
        .pool_idle_timeout(IDLE_CONNECTION)
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::limited(10))
        .build()
        .map_err(|e| format!("could not build the probe HTTP client: {e}"))
}

/// The connections of one process's httpGet probes. Every client skips certificate
/// verification (the kubelet's `InsecureSkipVerify`), uses no proxy and follows at most 10
/// redirects.
///
/// Startup and liveness probes open a new connection each time, as the kubelet's do
/// (DisableKeepAlives): whether the server still accepts connections is part of being alive.
/// Their client is the process's own, built once, so its TLS session cache holds only that
/// server's tickets and each new connection resumes the last session instead of a full
/// handshake (certificate, signature). A cache shared by every process would not: tickets are
/// kept per host name, and the controller-manager and the scheduler are both `127.0.0.1`, so
/// each would be offered the other's ticket, refuse it, and do a full handshake every time.
///
/// Readiness probes keep their connection: a deliberate difference from the kubelet, so that
/// the API server's readiness, probed every second, costs a request and no TCP or TLS
/// handshake, on either side. The reuse is bounded to one process: the executor makes a new
/// `Prober` whenever the container's process changes, so a probe of a new process never
/// travels over a connection its predecessor accepted (a replaced hostNetwork pod's successor
/// listens on the same port). A server that closes its end (at shutdown, or idle) costs a new
/// connection, which resumes the TLS session of the last.
///
/// The probes' URLs are parsed once per process too: they never change while it runs, and
/// parsing one (host normalisation) cost more than the rest of building the request.
#[derive(Clone, Default)]
pub struct Prober {
    kept: std::sync::Arc<OnceLock<Result<reqwest::Client, String>>>,
    fresh: std::sync::Arc<OnceLock<Result<reqwest::Client, String>>>,
    urls: std::sync::Arc<std::sync::Mutex<Vec<(String, reqwest::Url)>>>,
}

impl Prober {
    /// The client for a probe of `kind`.
    fn client(&self, kind: ProbeKind) -> Result<&reqwest::Client, String> {
        let (cell, keep_alive) = match kind {
            ProbeKind::Readiness => (&*self.kept, true),
            ProbeKind::Startup | ProbeKind::Liveness => (&*self.fresh, false),
        };
        cell.get_or_init(|| build_client(keep_alive))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `url` parsed, from the cache when it was parsed before.
    fn url(&self, url: &str) -> Result<reqwest::Url, String> {
        /// A process has at most one URL per probe kind; more means the cache is not helping.
        const MAX_CACHED: usize = 3;
        let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, parsed)) = urls.iter().find(|(s, _)| s == url) {
            return Ok(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        if urls.len() >= MAX_CACHED {
            urls.remove(0);
        }
        urls.push((url.to_string(), parsed.clone()));
        Ok(parsed)
    }
}

/// What a container's probes are run against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The pod's own IP: httpGet and tcpSocket probes without a host go there, as the
    /// kubelet's (prober.go). `None` for hostNetwork pods: 127.0.0.1.
    pub pod_ip: Option<IpAddr>,
    /// The pod's network namespace: exec probes run in it, as in the container.
    pub netns: Option<PathBuf>,
    /// The container's environment, for exec probes.
    pub env: Vec<(String, String)>,
    /// The container's working directory, for exec probes.
    pub workdir: PathBuf,
}

impl Target {
    /// The target of `spec` for a container in `netns` (its pod's own network, else the
    /// host's) at `pod_ip`, working in `workdir`. `env` builds the container's environment and
    /// is called only for an exec probe: building it checks the trust of every `--bin-dir`
    /// ([`crate::runtime::AnyRuntime::container_env`], a score of `statx` calls), which an
    /// HTTP or TCP probe, run as often as every second, never uses.
    pub fn for_probe(
        spec: &ProbeSpec,
        pod_ip: Option<IpAddr>,
        netns: Option<PathBuf>,
        workdir: PathBuf,
        env: impl FnOnce() -> Vec<(String, String)>,
    ) -> Target {
        let env = match spec.handler {
            ProbeHandler::Exec { .. } => env(),
            ProbeHandler::Http { .. } | ProbeHandler::Tcp { .. } => Vec::new(),
        };
        Target {
            pod_ip,
            netns,
            env,
            workdir,
        }
    }

    /// The host of a probe: its own, else the pod's IP, else 127.0.0.1.
    pub fn host(&self, host: Option<&str>) -> String {
        match (host, self.pod_ip) {
            (Some(h), _) => h.to_string(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => "127.0.0.1".to_string(),
        }
    }
}

/// Runs one probe of `kind` against `target`; an httpGet probe goes through `prober`, the
/// probed process's connections.
pub async fn run(spec: &ProbeSpec, kind: ProbeKind, target: &Target, prober: &Prober) -> Outcome {
    let timeout = spec.timing.timeout;
    match &spec.handler {
        ProbeHandler::Http {
            https,
            host,
            port,
            path,
            headers,
        } => {
            let url = http_url(*https, &target.host(host.as_deref()), *port, path);
            http(prober, kind, &url, headers, timeout).await
        }
        ProbeHandler::Tcp { host, port } => {
            tcp(&target.host(host.as_deref()), *port, timeout).await
        }
        ProbeHandler::Exec { command } => exec(command, target, timeout).await,
    }
}

/// The URL of an httpGet probe; IPv6 hosts get brackets.
pub fn http_url(https: bool, host: &str, port: u16, path: &str) -> String {
    let scheme = if https { "https" } else { "http" };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("{scheme}://{host}:{port}{path}")
}

async fn http(
    prober: &Prober,
    kind: ProbeKind,
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    let client = match prober.client(kind) {
        Ok(c) => c,
        Err(e) => return outcome(false, e),
    };
    let parsed = match prober.url(url) {
        Ok(u) => u,
        Err(e) => return outcome(false, format!("Get {url:?}: invalid URL: {e}")),
    };
    let mut req = client.get(parsed).timeout(timeout).header("Accept", "*/*");
    for (k, v) in headers {
        // kubelet: a Host header sets the request's host.
        req = req.header(k.as_str(), v.as_str());
    }
    match req.send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            let body = body.trim();
            // kubelet: pkg/probe/http, 200 <= code < 400 is success.
            if (200..400).contains(&code) {
                outcome(true, format!("HTTP {code}"))
            } else {
                outcome(
                    false,
                    format!("HTTP probe failed with statuscode: {code} {body}")
                        .trim_end()
                        .to_string(),
                )
            }
        }
        Err(e) if e.is_timeout() => {
            outcome(false, format!("Get {url:?}: timeout after {timeout:?}"))
        }
        Err(e) => outcome(false, format!("Get {url:?}: {}", error_chain(&e))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => outcome(true, format!("connected to {addr}")),
        Ok(Err(e)) => outcome(false, format!("dial tcp {addr}: {e}")),
        Err(_) => outcome(false, format!("dial tcp {addr}: timeout after {timeout:?}")),
    }
}

async fn exec(command: &[String], target: &Target, timeout: Duration) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return outcome(false, "exec: empty command");
    };
    let ns = match target.netns.as_deref().map(netns::open).transpose() {
        Ok(ns) => ns,
        Err(e) => return outcome(false, format!("{e:#}")),
    };
    let run = process::run_with_timeout(
        Path::new(program),
        args,
        Some(&target.env),
        ns.as_ref(),
        &target.workdir,
        timeout,
    );
    match run.await {
        Ok(out) if out.timed_out => outcome(
            false,
            format!("command {program:?} timed out after {timeout:?}"),
        ),
        Ok(out) if out.code == Some(0) => outcome(true, out.output.trim().to_string()),
        Ok(out) => {
            let code = out.code.map_or_else(
                || "killed by a signal".to_string(),
                |c| format!("exit code {c}"),
            );
            outcome(
                false,
                format!(
                    "command {program:?} failed with {code}: {}",
                    out.output.trim()
                )
                .trim_end()
                .to_string(),
            )
        }
        Err(e) => outcome(false, format!("could not run {program:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::spec::ProbeTiming;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// A hostNetwork container's target.
    fn target(env: &[(String, String)]) -> Target {
        Target {
            pod_ip: None,
            netns: None,
            env: env.to_vec(),
            workdir: "/".into(),
        }
    }

    #[test]
    fn probes_without_a_host_go_to_the_pod_ip() {
        let mut t = target(&[]);
        assert_eq!(t.host(None), "127.0.0.1");
        assert_eq!(t.host(Some("10.0.0.1")), "10.0.0.1");
        t.pod_ip = Some("10.199.0.5".parse().unwrap());
        assert_eq!(t.host(None), "10.199.0.5");
        assert_eq!(t.host(Some("localhost")), "localhost");
    }

    fn spec(handler: ProbeHandler) -> ProbeSpec {
        ProbeSpec {
            handler,
            timing: ProbeTiming {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                success_threshold: 1,
                failure_threshold: 1,
            },
        }
    }

    #[test]
    fn only_an_exec_probe_builds_the_container_environment() {
        let built = std::cell::Cell::new(0);
        let env = || {
            built.set(built.get() + 1);
            vec![("PATH".to_string(), "/bin".to_string())]
        };
        let http = ProbeHandler::Http {
            https: true,
            host: None,
            port: 6443,
            path: "/readyz".into(),
            headers: vec![],
        };
        let tcp = ProbeHandler::Tcp {
            host: None,
            port: 2379,
        };
        for handler in [http, tcp] {
            let t = Target::for_probe(&spec(handler), None, None, "/".into(), env);
            assert!(t.env.is_empty(), "{t:?}");
        }
        assert_eq!(built.get(), 0);
        let exec = ProbeHandler::Exec {
            command: vec!["true".into()],
        };
        let ip = Some("10.244.0.5".parse().unwrap());
        let t = Target::for_probe(
            &spec(exec),
            ip,
            Some("/run/netns/p".into()),
            "/w".into(),
            env,
        );
        assert_eq!(built.get(), 1);
        assert_eq!(
            t,
            Target {
                pod_ip: ip,
                netns: Some("/run/netns/p".into()),
                env: vec![("PATH".to_string(), "/bin".to_string())],
                workdir: "/w".into(),
            }
        );
    }

    #[test]
    fn urls() {
        assert_eq!(
            http_url(true, "127.0.0.1", 6443, "/livez"),
            "https://127.0.0.1:6443/livez"
        );
        assert_eq!(http_url(false, "::1", 80, "/"), "http://[::1]:80/");
    }

    /// A one-shot HTTP server answering `status`, returning the request it saw.
    async fn serve_once(status: u16) -> (u16, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbody"
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (port, h)
    }

    #[tokio::test]
    async fn http_success_range_and_headers() {
        for (status, ok) in [
            (200, true),
            (302, true),
            (399, true),
            (404, false),
            (500, false),
        ] {
            let (port, h) = serve_once(status).await;
            let s = spec(ProbeHandler::Http {
                https: false,
                host: None,
                port,
                path: "/healthz".into(),
                headers: vec![("X-Probe".into(), "yes".into())],
            });
            let o = run(&s, ProbeKind::Liveness, &target(&[]), &Prober::default()).await;
            assert_eq!(o.ok, ok, "{status}: {o:?}");
            let req = h.await.unwrap().to_lowercase();
            assert!(req.starts_with("get /healthz http/1.1"), "{req}");
            assert!(
                req.contains("x-probe: yes") && req.contains("user-agent: kube-probe/1.20"),
                "{req}"
            );
        }
    }

    /// What the HTTPS test server saw of one request: the connection's number (in accept
    /// order), how that connection's handshake went, and the request's number on it.
    type Served = (usize, rustls::HandshakeKind, usize);

    /// An HTTPS server with a self-signed certificate (no probe could verify it) answering
    /// every request with 200 and keeping each connection for `per_connection` requests (the
    /// last answer says `connection: close`); each request is reported on the channel before
    /// it is answered.
    async fn serve_https(per_connection: usize) -> (u16, mpsc::UnboundedReceiver<Served>) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let ck = rcgen::generate_simple_self_signed(vec!["kb-probe.invalid".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        // Session tickets, as Go's crypto/tls (the API server's) issues them.
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for conn in 0.. {
                let (s, _) = l.accept().await.unwrap();
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let mut tls = acceptor.accept(s).await.unwrap();
                    let kind = tls.get_ref().1.handshake_kind().unwrap();
                    for n in 1..=per_connection {
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(got) => req.extend_from_slice(&buf[..got]),
                            }
                        }
                        tx.send((conn, kind, n)).unwrap();
                        let connection = if n == per_connection {
                            "close"
                        } else {
                            "keep-alive"
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: {connection}\r\n\r\nok"
                        );
                        tls.write_all(resp.as_bytes()).await.unwrap();
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, rx)
    }

    /// A process's probe URL is parsed once and reused while it stays the same (at most one
    /// per probe kind is kept); one that cannot be parsed fails the probe, naming it.
    #[tokio::test]
    async fn a_probe_url_is_parsed_once_per_process_and_a_bad_one_is_named() {
        let prober = Prober::default();
        let cached = || {
            let urls = prober.urls.lock().unwrap();
            urls.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()
        };
        let a = "https://127.0.0.1:6443/livez";
        assert_eq!(prober.url(a).unwrap().as_str(), a);
        assert_eq!(prober.url(a).unwrap().as_str(), a);
        assert_eq!(cached(), [a]);
        for port in 1..=3 {
            prober.url(&format!("http://127.0.0.1:{port}/")).unwrap();
        }
        assert_eq!(cached().len(), 3);
        assert!(!cached().contains(&a.to_string()), "the oldest is dropped");
        let s = spec(ProbeHandler::Http {
            https: false,
            host: Some("not a host".into()),
            port: 1,
            path: "/".into(),
            headers: vec![],
        });
        let o = run(&s, ProbeKind::Liveness, &target(&[]), &prober).await;
        assert!(!o.ok);
        assert!(
            o.message
                .starts_with("Get \"http://not a host:1/\": invalid URL:"),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn readiness_keeps_its_connection_for_one_process_and_liveness_connects_anew() {
        use rustls::HandshakeKind::{Full, Resumed};
        let (port, mut served) = serve_https(3).await;
        let s = spec(ProbeHandler::Http {
            https: true,
            host: None,
            port,
            path: "/readyz".into(),
            headers: vec![],
        });
        let probe = |kind: ProbeKind, prober: Prober| {
            let s = s.clone();
            async move {
                let o = run(&s, kind, &target(&[]), &prober).await;
                assert!(o.ok, "{o:?}");
            }
        };
        let first = Prober::default();
        // Three readiness probes over one connection (no certificate verification:
        // self-signed); the server closes it after the third, so the fourth reconnects,
        // resuming the session.
        for _ in 0..4 {
            probe(ProbeKind::Readiness, first.clone()).await;
        }
        // A new process of the container: a connection of its own, not the idle one.
        probe(ProbeKind::Readiness, Prober::default()).await;
        // Liveness and startup probes: a new connection each, resuming the process's
        // session, even with another process's server on the same host probed in between.
        let (other_port, _other_served) = serve_https(3).await;
        let other = spec(ProbeHandler::Http {
            https: true,
            host: None,
            port: other_port,
            path: "/livez".into(),
            headers: vec![],
        });
        let other_prober = Prober::default();
        for kind in [ProbeKind::Liveness, ProbeKind::Liveness, ProbeKind::Startup] {
            probe(kind, first.clone()).await;
            let o = run(&other, ProbeKind::Liveness, &target(&[]), &other_prober).await;
            assert!(o.ok, "{o:?}");
        }
        let mut seen = Vec::new();
        while let Ok(r) = served.try_recv() {
            seen.push(r);
        }
        assert_eq!(
            seen[..5],
            [
                (0, Full, 1),
                (0, Full, 2),
                (0, Full, 3),
                (1, Resumed, 1),
                (2, Full, 1)
            ],
            "{seen:?}"
        );
        let later: Vec<(usize, usize)> = seen[5..].iter().map(|&(c, _, n)| (c, n)).collect();
        assert_eq!(later, [(3, 1), (4, 1), (5, 1)], "{seen:?}");
        assert!(seen[6..].iter().all(|r| r.1 == Resumed), "{seen:?}");
    }

    #[tokio::test]
    async fn tcp_and_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(
            run(
                &spec(ProbeHandler::Tcp { host: None, port }),
                ProbeKind::Liveness,
                &target(&[]),
                &Prober::default()
            )
            .await
            .ok
        );
        drop(l);
        let o = run(
            &spec(ProbeHandler::Tcp {
                host: Some("127.0.0.1".into()),
                port,
            }),
            ProbeKind::Liveness,
            &target(&[]),
            &Prober::default(),
        )
        .await;
        assert!(!o.ok && o.message.contains("dial tcp"), "{o:?}");
        let o = run(
            &spec(ProbeHandler::Http {
                https: true,
                host: None,
                port,
                path: "/".into(),
                headers: vec![],
            }),
            ProbeKind::Liveness,
            &target(&[]),
            &Prober::default(),
        )
        .await;
        assert!(
            !o.ok && o.message.contains(&format!("https://127.0.0.1:{port}/")),
            "{o:?}"
        );
    }

    #[tokio::test]
    async fn exec_uses_the_container_env_and_exit_code() {
        let env = vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("WANT".to_string(), "7".to_string()),
        ];
        let cmd = |s: &str| ProbeHandler::Exec {
            command: vec!["sh".into(), "-c".into(), s.into()],
        };
        assert!(
            run(
                &spec(cmd("test \"$WANT\" = 7")),
                ProbeKind::Liveness,
                &target(&env),
                &Prober::default()
            )
            .await
            .ok
        );
        let o = run(
            &spec(cmd("echo nope; exit 3")),
            ProbeKind::Liveness,
            &target(&env),
            &Prober::default(),
        )
        .await;
        assert!(
            !o.ok && o.message.contains("exit code 3") && o.message.contains("nope"),
            "{o:?}"
        );
        let mut s = spec(cmd("sleep 5"));
        s.timing.timeout = Duration::from_millis(200);
        let o = run(&s, ProbeKind::Liveness, &target(&env), &Prober::default()).await;
        assert!(!o.ok && o.message.contains("timed out"), "{o:?}");
    }
}
