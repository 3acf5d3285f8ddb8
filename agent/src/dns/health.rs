//! The cluster DNS server's HTTP endpoints, for its pods' probes: `GET /health` answers 200
//! while the process serves (the liveness probe), `GET /ready` 200 once the Services and
//! Endpoints have synced and 503 before (the readiness probe: kube-proxy sends queries only to
//! replicas that know the cluster's names). As CoreDNS's `health` (:8080) and `ready` (:8181)
//! plugins; every listener answers both paths, anything else is 404.
//!
//! hyper's HTTP/1 server, as [`crate::webhook`]; the connections at once and the wait for a
//! request's headers are bounded, requests carry no body worth reading.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::debug;

use super::serve::Server;

/// Connections served at once; probes need one or two.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/health` and `/ready` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!("health endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Beyond the limit a connection is closed at once rather than queued.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let synced = server.is_synced();
                async move { Ok::<_, Infallible>(respond(&req, synced)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // The connection as a whole is bounded too: a client that sends headers and then
            // reads nothing does not hold a slot forever.
            match tokio::time::timeout(Duration::from_secs(30), conn).await {
                Ok(Err(e)) => debug!(%peer, "health connection ended: {e}"),
                Err(_) => debug!(%peer, "health connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// The answer to one request, given whether the watches have synced.
fn respond<B>(req: &Request<B>, synced: bool) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => (StatusCode::OK, "OK"),
        (&Method::GET, "/ready") if synced => (StatusCode::OK, "OK"),
        (&Method::GET, "/ready") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Services and Endpoints have not synced yet",
        ),
        _ => (StatusCode::NOT_FOUND, "not found"),
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).expect("request")
    }

    #[test]
    fn ready_only_once_synced_health_always() {
        assert_eq!(respond(&get("/ready"), false).status(), 503);
        assert_eq!(respond(&get("/ready"), true).status(), 200);
        assert_eq!(respond(&get("/health"), false).status(), 200);
        assert_eq!(respond(&get("/metrics"), true).status(), 404);
        let post = Request::builder()
            .method(Method::POST)
            .uri("/ready")
            .body(())
            .expect("request");
        assert_eq!(respond(&post, true).status(), 404);
    }
}
