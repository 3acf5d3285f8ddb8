//! Approves joining nodes' kube-proxy client certificate requests, on control-plane nodes, with
//! the agent's own credential; which requests is decided purely by [`crate::csr_approval`]
//! (the contract and the security argument are there). Nothing in Kubernetes 1.20 approves
//! such a request by itself: kube-controller-manager's approver knows only kubelet client
//! certificates.
//!
//! It runs where the agent's kubeconfig (`kubeboot-agent.conf`, user `kubeboot:agent:<node>`)
//! exists, which is control-plane nodes only; elsewhere it looks for that file every few
//! seconds and does nothing else. The client is the publisher's ([`crate::mirror::AgentClient`]),
//! from that explicit kubeconfig.
//!
//! Level-triggered, woken by a watch, as client-go's reflector: one pass ([`pass`]) lists the
//! requests of the signer `kubernetes.io/kube-apiserver-client` (a field selector; read from
//! the API server's cache), decides each and approves those [`crate::csr_approval::decide`]
//! accepts through the `approval` subresource, with the resourceVersion it inspected. Then it
//! watches the same requests from the list's resourceVersion ([`wait_for_request`]) and passes
//! again as soon as an event shows a request to approve, so a request is approved within a
//! moment of its creation, and an idle cluster costs no request at all (the watch has a client
//! of its own without a read timeout, [`AgentClient::watches`]: a quiet watch is not a dead
//! connection; [`WATCH_SILENCE`] bounds it instead). When the watch ends (the
//! API server closes it after [`WATCH_SECONDS`], or it breaks) the next pass lists again, so a
//! missed event is seen then; rounds are at least [`MIN_ROUND`] apart, so a watch that cannot
//! be held costs no more than the list every 2 s it replaces.
//!
//! Every control-plane agent does the same: the first approval wins, and the others' writes
//! fail with a conflict, which is expected and logged at debug level. Requests left alone are
//! logged once each at debug level, and never denied. Failures back off exponentially to 30 s;
//! before the API server has ever answered they are logged at debug level only.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use components::names;
use futures_util::StreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Client;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use tracing::{debug, info};

use crate::csr_approval::{self, Decision, Ignored};
use crate::mirror::{AgentClient, Retry, api_error, short};

/// The shortest time between two passes (the period of the list poll the watch replaced).
const MIN_ROUND: Duration = Duration::from_secs(2);
/// How long the API server keeps one watch open (client-go's reflector picks 5-10 min); the
/// requests are listed again after it.
pub(crate) const WATCH_SECONDS: u32 = 290;
/// A watch that delivers nothing at all for this long, not even its own end, is given up: the
/// connection is gone without a FIN.
const WATCH_SILENCE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 60);
/// How often a missing kubeconfig is looked for.
const KUBECONFIG_POLL: Duration = Duration::from_secs(5);
/// The longest wait between attempts to reach the API server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Approver {
    node: String,
    client: AgentClient,
    connection: Retry,
    ever_connected: bool,
    logged: Logged,
}

/// Approves requests until the task is aborted; waits for the kubeconfig until it exists.
pub(crate) async fn run(client: AgentClient, node: String) {
    let mut a = Approver {
        node,
        client,
        connection: Retry::default(),
        ever_connected: false,
        logged: Logged::default(),
    };
    loop {
        let started = Instant::now();
        let delay = a.tick().await;
        tokio::time::sleep(delay.max(MIN_ROUND.saturating_sub(started.elapsed()))).await;
    }
}

impl Approver {
    /// One round: a pass, then the watch until a pass is due again; returns how long to wait
    /// before the next round.
    async fn tick(&mut self) -> Duration {
        let now = Instant::now();
        if !self.connection.ready(now) {
            return self.connection.wait(now);
        }
        let client = match self.client.get().await {
            Ok(Some((c, _))) => c,
            Ok(None) => return KUBECONFIG_POLL,
            Err(e) => {
                self.failed(now, &e);
                return self.connection.wait(now);
            }
        };
        let listed = match pass(&client, &self.node, &mut self.logged).await {
            Ok(listed) => listed,
            Err(e) => {
                self.failed(now, &e);
                return self.connection.wait(now);
            }
        };
        if !self.ever_connected {
            info!("approving joining nodes' kube-proxy client certificate requests");
            self.ever_connected = true;
        }
        debug!(approved = listed.approved.len(), resource_version = %listed.resource_version, "watching certificate requests");
        // The watch's own client: the requests' one gives up on a connection silent for 15 s.
        let watches = self.client.watches().unwrap_or(client);
        match wait_for_request(&watches, &listed.resource_version).await {
            Ok(()) => {
                self.connection = Retry::default();
                Duration::ZERO
            }
            Err(e) => {
                let now = Instant::now();
                self.failed(now, &e);
                self.connection.wait(now)
            }
        }
    }

    fn failed(&mut self, now: Instant, e: &anyhow::Error) {
        self.connection.failed_and_say(
            now,
            MAX_BACKOFF,
            self.ever_connected,
            "kube-proxy certificate requests are not being approved",
            e,
        );
    }
}

/// The requests already logged as left alone (by UID and resourceVersion), so that each is
/// logged once, not every pass; forgotten once they are no longer listed.
#[derive(Default)]
pub(crate) struct Logged(HashSet<String>);

/// What a pass did.
#[derive(Debug)]
pub(crate) struct Listed {
    /// The requests it approved, by name.
    pub(crate) approved: Vec<String>,
    /// The list's resourceVersion: the watch starts there.
    pub(crate) resource_version: String,
}

/// The field selector of the requests the approver looks at: one signer's.
fn selector() -> String {
    format!("spec.signerName={}", names::KUBE_APISERVER_CLIENT_SIGNER)
}

/// One pass: observe (list the kube-apiserver-client requests), decide each
/// ([`csr_approval::decide`]), act (approve), say. Returns the names it approved and the
/// list's resourceVersion. `me` is this agent's node, named in the approval's message.
///
/// # Errors
/// The list failed, or an approval failed for a reason other than the request having changed
/// or gone meanwhile (every other request is still tried).
pub(crate) async fn pass(client: &Client, me: &str, logged: &mut Logged) -> anyhow::Result<Listed> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().fields(&selector()).match_any())
        .await
        .map_err(short)
        .with_context(|| {
            format!(
                "could not list CertificateSigningRequests (the ClusterRole {:?} grants it to the agents; \"kubeboot init phase agent-rbac\" creates it)",
                names::KUBEBOOT_AGENT_CSR_APPROVER_ROLE
            )
        })?;
    let mut approved = Vec::new();
    let mut failed = Vec::new();
    let mut listed = HashSet::new();
    for csr in &list.items {
        let name = csr.metadata.name.clone().unwrap_or_default();
        match csr_approval::decide(csr) {
            Decision::Approve { node } => {
                let approval = csr_approval::approved(csr, &node, me);
                match api
                    .replace_subresource("approval", &name, &PostParams::default(), &approval)
                    .await
                {
                    Ok(_) => {
                        info!(csr = %name, node = %node, "approved the kube-proxy client certificate request of node {node}");
                        approved.push(name);
                    }
                    // Another agent approved it, someone denied or deleted it: the next list
                    // shows what happened.
                    Err(e) if api_error(&e).is_some_and(|s| s.code == 409 || s.code == 404) => {
                        debug!(csr = %name, "the request changed before the approval: {:#}", short(e));
                    }
                    Err(e) => failed.push(format!("{name}: {:#}", short(e))),
                }
            }
            // Most requests: kubelets' own, approved long ago. Nothing to say.
            Decision::Ignore(Ignored::Decided(_)) => {}
            Decision::Ignore(why) => {
                let key = format!(
                    "{}/{}",
                    csr.metadata.uid.as_deref().unwrap_or(&name),
                    csr.metadata.resource_version.as_deref().unwrap_or_default()
                );
                if logged.0.insert(key.clone()) {
                    debug!(csr = %name, "certificate request left alone: {why}");
                }
                listed.insert(key);
            }
        }
    }
    logged.0.retain(|k| listed.contains(k));
    anyhow::ensure!(
        failed.is_empty(),
        "could not approve the kube-proxy certificate request {}",
        failed.join("; ")
    );
    Ok(Listed {
        approved,
        resource_version: list.metadata.resource_version.unwrap_or_default(),
    })
}

/// Watches the requests from `resource_version` until a pass is due: an event shows a request
/// [`csr_approval::decide`] approves, or the watch ends (the API server's timeout, 410 Gone, a
/// broken stream, [`WATCH_SILENCE`]), after which the next pass lists again. Requests decided
/// already or left alone wake nothing.
///
/// # Errors
/// The watch could not be started (the API server is gone, or the agent may not watch).
pub(crate) async fn wait_for_request(
    client: &Client,
    resource_version: &str,
) -> anyhow::Result<()> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let params = WatchParams::default()
        .fields(&selector())
        .timeout(WATCH_SECONDS);
    let stream = match api.watch(&params, resource_version).await {
        Ok(s) => s,
        // Too old a version: the next pass lists afresh.
        Err(e) if api_error(&e).is_some_and(|s| s.code == 410) => return Ok(()),
        Err(e) => {
            return Err(short(e)).with_context(|| {
                format!(
                    "could not watch CertificateSigningRequests (the ClusterRole {:?} grants it to the agents; \"kubeboot init phase agent-rbac\" creates it)",
                    names::KUBEBOOT_AGENT_CSR_APPROVER_ROLE
                )
            });
        }
    };
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = match tokio::time::timeout(WATCH_SILENCE, stream.next()).await {
            Ok(Some(Ok(event))) => event,
            Err(_) => {
                debug!("the watch was silent for {WATCH_SILENCE:?}; listing again");
                return Ok(());
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => {
                debug!("the watch broke: {e}; listing again");
                return Ok(());
            }
        };
        match event {
            WatchEvent::Added(csr) | WatchEvent::Modified(csr) => {
                if matches!(csr_approval::decide(&csr), Decision::Approve { .. }) {
                    return Ok(());
                }
            }
            WatchEvent::Error(s) => {
                debug!("the watch ended: {} ({})", s.message, s.code);
                return Ok(());
            }
            WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pass and the watch against a fake API server: a tower service under `kube::Client`
    //! that keeps CertificateSigningRequests, answers the list and the approval as the API
    //! server does (resourceVersion precondition, 409 on a stale one), streams watch events
    //! the test sends, and records every request.
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context as TaskContext, Poll};

    use components::config::KeyAlgorithm;
    use http_body_util::BodyExt;
    use http_body_util::combinators::UnsyncBoxBody;
    use hyper::body::{Bytes, Frame};
    use kube::client::Body;
    use tokio::sync::mpsc;

    use super::*;

    type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

    #[derive(Default)]
    struct State {
        csrs: Vec<CertificateSigningRequest>,
        /// (method, path and query) of every request.
        requests: Vec<(String, String)>,
        /// Approval bodies received.
        approvals: Vec<CertificateSigningRequest>,
        /// Answer approvals with this status code instead (403: no RBAC).
        refuse_approvals: Option<u16>,
        /// What the list returns instead of the stored requests (a stale cache).
        stale_list: Option<Vec<CertificateSigningRequest>>,
        /// The open watch's event stream; dropping it ends the watch.
        watch: Option<mpsc::UnboundedSender<Bytes>>,
        /// Answer watches with this status code instead.
        refuse_watches: Option<u16>,
    }

    #[derive(Clone, Default)]
    struct FakeApi(Arc<Mutex<State>>);

    fn json(code: u16, v: &serde_json::Value) -> http::Response<FakeBody> {
        let bytes = Bytes::from(serde_json::to_vec(v).expect("json"));
        let mut r = http::Response::new(http_body_util::Full::new(bytes).boxed_unsync());
        *r.status_mut() = http::StatusCode::from_u16(code).expect("code");
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }

    fn status(code: u16, reason: &str) -> http::Response<FakeBody> {
        json(
            code,
            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("fake: {reason}"), "reason": reason, "code": code}),
        )
    }

    impl FakeApi {
        /// Sends a watch event (ADDED, MODIFIED, ...) of `csr` down the open watch.
        fn event(&self, kind: &str, csr: &CertificateSigningRequest) {
            let line = serde_json::json!({"type": kind, "object": csr}).to_string() + "\n";
            let st = self.0.lock().expect("lock");
            let watch = st.watch.as_ref().expect("an open watch");
            watch.send(Bytes::from(line)).expect("the watcher listens");
        }

        /// Waits (bounded) until the approver has opened a watch.
        async fn watching(&self) {
            for _ in 0..500 {
                if self.0.lock().expect("lock").watch.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("no watch was opened");
        }

        fn answer(&self, method: &str, uri: &http::Uri, body: &[u8]) -> http::Response<FakeBody> {
            let mut st = self.0.lock().expect("lock");
            let path_and_query = uri.path_and_query().map(|p| p.to_string());
            st.requests
                .push((method.to_string(), path_and_query.unwrap_or_default()));
            const BASE: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
            let path = uri.path();
            let watch = uri.query().unwrap_or_default().contains("watch=true");
            if method == "GET" && path == BASE && watch {
                if let Some(code) = st.refuse_watches {
                    return status(code, "Forbidden");
                }
                let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                st.watch = Some(tx);
                let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                });
                let mut r =
                    http::Response::new(http_body_util::StreamBody::new(frames).boxed_unsync());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return r;
            }
            if method == "GET" && path == BASE {
                // The field selector the approver sends, applied as the API server would.
                let query = uri.query().unwrap_or_default();
                let signer = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldSelector="))
                    .map(|v| v.replace("%3D", "=").replace("%2F", "/"));
                let items: Vec<_> = st
                    .stale_list
                    .as_ref()
                    .unwrap_or(&st.csrs)
                    .iter()
                    .filter(|c| {
                        signer
                            .as_deref()
                            .is_none_or(|s| s == format!("spec.signerName={}", c.spec.signer_name))
                    })
                    .cloned()
                    .collect();
                return json(
                    200,
                    &serde_json::json!({"apiVersion": "certificates.k8s.io/v1",
                        "kind": "CertificateSigningRequestList", "metadata": {"resourceVersion": "100"},
                        "items": items}),
                );
            }
            let Some(name) = path
                .strip_prefix(BASE)
                .and_then(|p| p.strip_prefix('/'))
                .and_then(|p| p.strip_suffix("/approval"))
            else {
                return status(404, "NotFound");
            };
            if method != "PUT" {
                return status(405, "MethodNotAllowed");
            }
            if let Some(code) = st.refuse_approvals {
                return status(code, "Forbidden");
            }
            let sent: CertificateSigningRequest =
                serde_json::from_slice(body).expect("an approval body");
            st.approvals.push(sent.clone());
            let Some(stored) = st
                .csrs
                .iter_mut()
                .find(|c| c.metadata.name.as_deref() == Some(name))
            else {
                return status(404, "NotFound");
            };
            if sent.metadata.resource_version != stored.metadata.resource_version {
                return status(409, "Conflict");
            }
            // registry/certificates: the approval subresource takes the conditions only.
            stored.status = sent.status;
            let rv: u64 = stored
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            stored.metadata.resource_version = Some((rv + 1).to_string());
            json(200, &serde_json::to_value(&*stored).expect("json"))
        }
    }

    impl tower_service::Service<http::Request<Body>> for FakeApi {
        type Response = http::Response<FakeBody>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let this = self.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect_bytes()
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                Ok(this.answer(parts.method.as_str(), &parts.uri, &bytes))
            })
        }
    }

    fn request(
        name: &str,
        user: &str,
        signer: &str,
        cn: &str,
        rv: &str,
    ) -> CertificateSigningRequest {
        let key = pki::PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("key");
        let pem = pki::csr::client_csr(&key, cn, &[]).expect("csr");
        let mut c = crate::csr_approval::tests::csr(name, user, &pem);
        c.spec.signer_name = signer.to_string();
        c.metadata.uid = Some(format!("uid-{name}"));
        c.metadata.resource_version = Some(rv.to_string());
        c
    }

    const CLIENT: &str = "kubernetes.io/kube-apiserver-client";

    fn cluster() -> (FakeApi, Client) {
        let fake = FakeApi::default();
        {
            let mut st = fake.0.lock().expect("lock");
            st.csrs = vec![
                request(
                    "kubeboot-kube-proxy-node4",
                    "system:node:node4",
                    CLIENT,
                    "system:kube-proxy",
                    "10",
                ),
                // A kubelet's own request: another signer, never ours.
                request(
                    "csr-abcde",
                    "system:node:node5",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "system:node:node5",
                    "11",
                ),
                // Node 5 asking in node 6's name.
                request(
                    "kubeboot-kube-proxy-node6",
                    "system:node:node5",
                    CLIENT,
                    "system:kube-proxy",
                    "12",
                ),
                // The right name, the wrong subject.
                request(
                    "kubeboot-kube-proxy-node7",
                    "system:node:node7",
                    CLIENT,
                    "system:node:node7",
                    "13",
                ),
            ];
        }
        let client = Client::new(fake.clone(), "default");
        (fake, client)
    }

    #[tokio::test]
    async fn a_pass_approves_the_kube_proxy_request_and_leaves_the_rest_alone() {
        let (fake, client) = cluster();
        let mut logged = Logged::default();
        let listed = pass(&client, "node1", &mut logged).await.expect("pass");
        assert_eq!(listed.approved, ["kubeboot-kube-proxy-node4"]);
        // The watch goes on from the list's version.
        assert_eq!(listed.resource_version, "100");
        {
            let st = fake.0.lock().expect("lock");
            // The list asks for the one signer only, from the cache.
            let (method, list) = &st.requests[0];
            assert_eq!(method, "GET");
            assert!(
                list.contains(
                    "fieldSelector=spec.signerName%3Dkubernetes.io%2Fkube-apiserver-client"
                ),
                "{list}"
            );
            assert!(list.contains("resourceVersion=0"), "{list}");
            // Exactly one write: the approval of node4's request, at the version inspected.
            let writes: Vec<_> = st.requests.iter().filter(|(m, _)| m != "GET").collect();
            assert_eq!(writes.len(), 1, "{:?}", st.requests);
            assert_eq!(writes[0].0, "PUT");
            assert!(
                writes[0].1.starts_with(
                    "/apis/certificates.k8s.io/v1/certificatesigningrequests/kubeboot-kube-proxy-node4/approval"
                ),
                "{:?}",
                writes[0]
            );
            let sent = &st.approvals[0];
            assert_eq!(sent.metadata.resource_version.as_deref(), Some("10"));
            let cond = &sent
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .expect("conditions")[0];
            assert_eq!(
                (cond.type_.as_str(), cond.status.as_str()),
                ("Approved", "True")
            );
            assert_eq!(cond.reason.as_deref(), Some("KubebootKubeProxyApprove"));
            // The others are untouched: no condition, never denied.
            for c in &st.csrs[1..] {
                assert!(c.status.is_none(), "{:?}", c.metadata.name);
            }
            // Node 6's and node 7's requests were logged as left alone, once.
            assert_eq!(logged.0.len(), 2);
        }
        // The next pass sees it approved and writes nothing.
        let again = pass(&client, "node1", &mut logged).await.expect("pass");
        assert!(again.approved.is_empty());
        let st = fake.0.lock().expect("lock");
        assert_eq!(st.requests.iter().filter(|(m, _)| m != "GET").count(), 1);
        assert_eq!(logged.0.len(), 2);
    }

    #[tokio::test]
    async fn a_request_another_agent_approved_first_is_not_an_error() {
        let (fake, client) = cluster();
        {
            let mut st = fake.0.lock().expect("lock");
            // The list (a cache) still shows version 10; the store has moved on: another
            // control-plane agent approved it meanwhile.
            st.stale_list = Some(st.csrs.clone());
            let other = csr_approval::approved(&st.csrs[0], "node4", "node2");
            st.csrs[0] = other;
            st.csrs[0].metadata.resource_version = Some("11".into());
        }
        let approved = pass(&client, "node1", &mut Logged::default())
            .await
            .expect("a conflict is not an error");
        assert!(approved.approved.is_empty());
        let st = fake.0.lock().expect("lock");
        // It tried once, at the version it saw, and the other agent's approval stands alone.
        assert_eq!(st.approvals.len(), 1);
        assert_eq!(
            st.approvals[0].metadata.resource_version.as_deref(),
            Some("10")
        );
        let conditions = st.csrs[0]
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .expect("conditions");
        assert_eq!(conditions.len(), 1);
        assert!(
            conditions[0]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("agent on node2"))
        );
    }

    #[tokio::test]
    async fn the_watch_wakes_the_next_pass_for_a_new_kube_proxy_request_only() {
        let (fake, client) = cluster();
        let mut logged = Logged::default();
        let listed = pass(&client, "node1", &mut logged).await.expect("pass");
        let c = client.clone();
        let rv = listed.resource_version.clone();
        let mut waiting = tokio::spawn(async move { wait_for_request(&c, &rv).await });
        fake.watching().await;
        {
            let st = fake.0.lock().expect("lock");
            let (method, watch) = st.requests.last().expect("the watch request");
            assert_eq!(method, "GET");
            // From the list's version, for the one signer, ended by the API server in time.
            for part in [
                "watch=true",
                "resourceVersion=100",
                "fieldSelector=spec.signerName%3Dkubernetes.io%2Fkube-apiserver-client",
                "timeoutSeconds=290",
            ] {
                assert!(watch.contains(part), "{part} missing from {watch}");
            }
        }
        // Events that need no approval wake nothing: node4's request now approved, a kubelet's
        // request, node 6 asking in node 7's name, a deletion.
        let approved = fake.0.lock().expect("lock").csrs[0].clone();
        fake.event("MODIFIED", &approved);
        let kubelet = fake.0.lock().expect("lock").csrs[1].clone();
        fake.event("ADDED", &kubelet);
        let foreign = request(
            "kubeboot-kube-proxy-node7",
            "system:node:node6",
            CLIENT,
            "system:kube-proxy",
            "102",
        );
        fake.event("ADDED", &foreign);
        fake.event("DELETED", &kubelet);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut waiting)
                .await
                .is_err(),
            "woken by a request that needs no approval"
        );
        // A new kube-proxy request of node 9: the watch returns at once, and the pass it
        // brings approves the request.
        let new = request(
            "kubeboot-kube-proxy-node9",
            "system:node:node9",
            CLIENT,
            "system:kube-proxy",
            "103",
        );
        fake.0.lock().expect("lock").csrs.push(new.clone());
        fake.event("ADDED", &new);
        tokio::time::timeout(Duration::from_secs(5), &mut waiting)
            .await
            .expect("woken by the new request")
            .expect("the task")
            .expect("the watch");
        let listed = pass(&client, "node1", &mut logged).await.expect("pass");
        assert_eq!(listed.approved, ["kubeboot-kube-proxy-node9"]);
    }

    #[tokio::test]
    async fn a_watch_that_ends_brings_a_new_list_and_a_refused_one_is_an_error() {
        let (fake, client) = cluster();
        let c = client.clone();
        let waiting = tokio::spawn(async move { wait_for_request(&c, "100").await });
        fake.watching().await;
        // The API server ends the watch (its timeout): the next pass is due.
        fake.0.lock().expect("lock").watch = None;
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the ended watch returns")
            .expect("the task")
            .expect("an ended watch is no error");
        // No right to watch: an error naming the ClusterRole that grants it.
        fake.0.lock().expect("lock").refuse_watches = Some(403);
        let e = wait_for_request(&client, "100").await.expect_err("refused");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("could not watch") && msg.contains("kubeboot:kube-proxy-approver"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_refused_approval_is_an_error_naming_the_request() {
        let (fake, client) = cluster();
        fake.0.lock().expect("lock").refuse_approvals = Some(403);
        let e = pass(&client, "node1", &mut Logged::default())
            .await
            .expect_err("refused");
        let msg = format!("{e:#}");
        assert!(msg.contains("kubeboot-kube-proxy-node4"), "{msg}");
        assert!(msg.contains("Forbidden"), "{msg}");
    }
}
