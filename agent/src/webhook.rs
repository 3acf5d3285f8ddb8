//! The admission webhook each control-plane node's agent serves on loopback for its own API
//! server, so that the agents' credential (`kubeboot:agents`) can write nothing but the
//! status-only pods of its own node ([`review`] holds the rule; the design and its limits are
//! in [`crate::mirror`]).
//!
//! `https://127.0.0.1:10263/admission/pods` takes an AdmissionReview v1 and answers one;
//! `/healthz` answers `ok` (init waits for it before it registers the webhook). The serving
//! certificate, for IP 127.0.0.1 and signed by the cluster CA, is
//! `/var/lib/kubeboot/agent/pki/webhook.{crt,key}` ([`serving_cert_files`], written by `init
//! phase agent-start` before it starts the agent): in the agent's own directory, as the kubelet keeps
//! its serving certificate in `/var/lib/kubelet/pki`, so the agent finds it whatever the
//! cluster's `certificatesDir`. Until both files exist the agent waits, as the publisher waits
//! for its kubeconfig, so a node without them (a worker) serves nothing. New files (a renewed
//! certificate) are picked up at the next connection.
//!
//! HTTP/1.1 over rustls with hyper's server: the API server keeps its connections to webhooks
//! open, and hyper (already in the build through kube's client) parses HTTP; a request body
//! is bounded ([`MAX_BODY`]), so are the TLS handshake, the wait for a request's headers and
//! the number of connections at once.

pub mod review;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// The largest request body read: an AdmissionReview of an UPDATE carries the pod twice
/// (object and oldObject), and the API server takes request bodies up to 3 MiB
/// (apiserver: server/config.go MaxRequestBodyBytes), so twice that and room for the rest.
pub const MAX_BODY: usize = 7 * 1024 * 1024;
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;
/// The longest TLS handshake, and the longest wait for a request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the serving certificate is looked for while it does not exist, and how long to
/// wait before binding again after a failure.
const POLL: Duration = Duration::from_secs(5);

/// Where the webhook listens and which certificate it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `127.0.0.1:10263`.
    pub listen: SocketAddr,
    /// The serving certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl WebhookConfig {
    /// The node's webhook: loopback, the well-known port, the certificate in the agent's state
    /// directory.
    pub fn for_state_dir(agent_state_dir: &Path) -> Self {
        let (cert, key) = serving_cert_files(agent_state_dir);
        WebhookConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, components::names::AGENT_WEBHOOK_PORT)),
            cert,
            key,
        }
    }
}

/// The serving certificate and key of the webhook: `<agent state dir>/pki/webhook.{crt,key}`.
pub fn serving_cert_files(agent_state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = agent_state_dir.join("pki");
    (dir.join("webhook.crt"), dir.join("webhook.key"))
}

/// The files' modification times, or None while either does not exist.
fn stamp(cfg: &WebhookConfig) -> anyhow::Result<Option<(SystemTime, SystemTime)>> {
    let mtime = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => Ok(Some(m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not read {:?}", p.display().to_string())),
    };
    Ok(mtime(&cfg.cert)?.zip(mtime(&cfg.key)?))
}

/// A TLS acceptor for the certificate and key on disk, offering HTTP/1.1 only.
fn acceptor(cfg: &WebhookConfig) -> anyhow::Result<TlsAcceptor> {
    let shown = |p: &Path| p.display().to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .with_context(|| {
            format!(
                "could not read the webhook certificate {:?}",
                shown(&cfg.cert)
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{:?} holds no certificate; run \"kubeboot init phase agent-start\" again after deleting it",
        shown(&cfg.cert)
    );
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .with_context(|| format!("could not read the webhook key {:?}", shown(&cfg.key)))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("no TLS protocol version")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .with_context(|| {
        format!(
            "the webhook key {:?} does not fit its certificate {:?}",
            shown(&cfg.key),
            shown(&cfg.cert)
        )
    })?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// Serves the webhook until the task is aborted: waits for the certificate, binds, serves.
pub(crate) async fn run(cfg: WebhookConfig) {
    let mut announced = false;
    let mut logged = String::new();
    loop {
        let result = async {
            if stamp(&cfg)?.is_none() {
                return Ok(false);
            }
            // The certificate first: a bad one is reported without holding the port.
            acceptor(&cfg)?;
            let listener = TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("could not listen on {}", cfg.listen))?;
            info!(listen = %cfg.listen, "serving the admission webhook for the local API server");
            serve(listener, &cfg).await?;
            Ok::<bool, anyhow::Error>(true)
        }
        .await;
        match result {
            Ok(false) if !announced => {
                info!(cert = %cfg.cert.display(), "the admission webhook is served once its certificate exists");
                announced = true;
            }
            Ok(_) => {}
            Err(e) => {
                let msg = format!("{e:#}");
                if msg != logged {
                    warn!("the admission webhook is not served, retrying every {POLL:?}: {msg}");
                    logged = msg;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Serves the webhook on `listener` with the certificate of `cfg` (its `listen` is not
/// used), forever; the certificate is read again when its files change.
///
/// # Errors
/// When the certificate or key cannot be read or do not fit.
pub async fn serve(listener: TcpListener, cfg: &WebhookConfig) -> anyhow::Result<()> {
    let mut seen = stamp(cfg)?.with_context(|| {
        format!(
            "the webhook certificate {:?} or its key is missing",
            cfg.cert.display().to_string()
        )
    })?;
    let mut tls = acceptor(cfg)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .context("the connection limit closed")?;
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("the admission webhook could not accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Ok(Some(now)) = stamp(cfg)
            && now != seen
        {
            // Tried once per change of the files: a bad pair is reported once, not per
            // connection.
            seen = now;
            match acceptor(cfg) {
                Ok(t) => {
                    info!("the admission webhook's certificate changed; serving the new one");
                    tls = t;
                }
                Err(e) => warn!("keeping the admission webhook's previous certificate: {e:#}"),
            }
        }
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => return debug!(%peer, "TLS handshake timed out"),
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle));
            if let Err(e) = conn.await {
                debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Answers one request: `/healthz`, the AdmissionReview path, 404 for anything else.
async fn handle<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => Ok(reply(StatusCode::OK, "text/plain", "ok")),
        (&Method::POST, components::names::AGENT_WEBHOOK_PATH) => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    let too_large = e.is::<http_body_util::LengthLimitError>();
                    let (status, msg) = if too_large {
                        (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("request body over {MAX_BODY} bytes"),
                        )
                    } else {
                        (
                            StatusCode::BAD_REQUEST,
                            format!("could not read the request body: {e}"),
                        )
                    };
                    warn!("admission request refused: {msg}");
                    return Ok(reply(status, "text/plain", msg));
                }
            };
            Ok(match review::respond(&body) {
                Ok(answer) => {
                    if let Some(why) = &answer.denied {
                        info!("admission denied: {why}");
                    }
                    reply(StatusCode::OK, "application/json", answer.body)
                }
                Err(msg) => {
                    warn!("admission request refused: {msg}");
                    reply(StatusCode::BAD_REQUEST, "text/plain", msg)
                }
            })
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "text/plain", "not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call(method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = handle(req).await.expect("infallible");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn review(username: &str, node_name: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": "CREATE",
                "userInfo": {"username": username, "groups": ["kubeboot:agents"]},
                "object": {"metadata": {"name": "p"}, "spec": {"nodeName": node_name}}
            }
        }))
        .expect("json")
    }

    #[tokio::test]
    async fn routes_health_reviews_and_nothing_else() {
        assert_eq!(
            call(Method::GET, "/healthz", vec![]).await,
            (StatusCode::OK, "ok".to_string())
        );
        let (status, body) = call(
            Method::POST,
            "/admission/pods",
            review("kubeboot:agent:node1", "node1"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["uid"], "u1");
        assert_eq!(
            call(Method::GET, "/admission/pods", vec![]).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(Method::POST, "/other", vec![]).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(Method::POST, "/admission/pods", b"{}".to_vec())
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn request_bodies_are_bounded() {
        // Just over the bound: refused before it is parsed.
        let mut big = review("kubeboot:agent:node1", "node1");
        big.resize(MAX_BODY + 1, b' ');
        let (status, body) = call(Method::POST, "/admission/pods", big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        // At the bound: read and answered (JSON allows trailing whitespace).
        let mut fits = review("kubeboot:agent:node1", "node1");
        fits.resize(MAX_BODY, b' ');
        assert_eq!(
            call(Method::POST, "/admission/pods", fits).await.0,
            StatusCode::OK
        );
    }

    #[test]
    fn the_certificate_lives_in_the_agents_directory() {
        let cfg = WebhookConfig::for_state_dir(Path::new("/var/lib/kubeboot/agent"));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:10263");
        assert_eq!(
            cfg.cert,
            Path::new("/var/lib/kubeboot/agent/pki/webhook.crt")
        );
        assert_eq!(
            cfg.key,
            Path::new("/var/lib/kubeboot/agent/pki/webhook.key")
        );
    }
}
