//! etcd membership for a control-plane node joining a stacked etcd cluster: a small blocking
//! client over etcd's JSON gateway, the pure join decision ([`plan_join`]) and the join
//! sequence ([`join_member`]): observe (members, health) → decide → remove a stale member of
//! this node → add as a learner → start → wait healthy → promote.
//!
//! kubeadm 1.20 adds a joining member as a voter straight away (app/phases/etcd/local.go,
//! CreateStackedEtcdStaticPodManifestFile; app/util/etcd/etcd.go, AddMember). A voter that has
//! not started yet counts toward quorum, so a 1-member cluster is without quorum until the
//! new member is up. kubeboot adds a **learner** (kubeadm's default since 1.29,
//! kubernetes/kubeadm#1793), which does not vote and does not count toward quorum, and
//! promotes it once etcd says it has caught up.
//!
//! The life of this node's member, as seen from the cluster:
//!
//! ```text
//!   (absent) ──add_learner──▶ learner, unstarted ──etcd starts──▶ learner, started
//!      ▲                            │                                   │ promote (in sync)
//!      │ remove (stale: unreachable,│ start failed / timed out:         ▼
//!      │ quorum kept)               │ a re-run resumes here          voter ──▶ re-run: nothing
//!      └──────── voter, unreachable ◀───────────────────────────────── (node reinstalled)
//! ```
//!
//! Every step after the add leaves a state the next run repairs: [`plan_join`] finds a member
//! with this node's peer URL that is a learner (started or not) or a voter that never started,
//! and [`join_member`] continues from there instead of adding a second one. A learner can
//! safely be restarted from an empty data directory under its old ID because it never voted
//! and its acknowledgements never counted toward a commit; a voter that did start cannot
//! (it may have acknowledged entries a quorum relied on), which is why an unreachable voter of
//! this node's is removed and re-added rather than reused.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use manifests::EtcdMember;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use crate::out::Out;
use crate::say;

/// etcd 3.4 answers this while a learner's log is behind the leader's (etcdserver
/// ErrLearnerNotReady): promotion is retried until it has caught up.
const LEARNER_NOT_READY: &str = "can only promote a learner member which is in sync with leader";
/// etcd's ErrMemberNotLearner: the member is a voter already (an earlier promote went through).
const MEMBER_NOT_LEARNER: &str = "can only promote a learner member";
/// etcd's ErrUnhealthy, refusing a membership change while its view of the peers' connections
/// is not settled (a voter connected for less than 5 seconds, a removed member still seen as
/// connected); it passes within seconds.
const UNHEALTHY_CLUSTER: &str = "unhealthy cluster";
/// How long an add or a remove is retried while etcd answers [`UNHEALTHY_CLUSTER`].
const RECONFIG_RETRY: Duration = Duration::from_secs(15);
/// What a learner answers to cluster RPCs: ask the next endpoint.
const LEARNER_RPC: &str = "rpc not supported for learner";
/// Transient answers while the cluster elects a leader or is busy; worth another try.
const TRANSIENT: &[&str] = &[
    "leader changed",
    "no leader",
    "request timed out",
    "too many requests",
];
/// How often a wait polls etcd, and how often it tells the user it still waits.
const POLL: Duration = Duration::from_millis(500);
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// One etcd member, as `member list` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// The member ID (the gateway sends uint64 as a JSON string; numbers are accepted too).
    #[serde(rename = "ID", deserialize_with = "uint64")]
    pub id: u64,
    /// Its name; empty until the member has started and published it (etcd:
    /// membership.Member.IsStarted).
    #[serde(default)]
    pub name: String,
    /// Peer URLs (`https://<ip>:2380`).
    #[serde(default, rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until the member has started.
    #[serde(default, rename = "clientURLs")]
    pub client_urls: Vec<String>,
    /// A learner: receives the log, never votes.
    #[serde(default, rename = "isLearner")]
    pub is_learner: bool,
}

impl Member {
    /// The member has started once: it published its name and client URLs.
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }

    fn has_peer_url(&self, url: &str) -> bool {
        self.peer_urls.iter().any(|u| u == url)
    }

    /// `"node1" (id 8e9e05c52164694d, https://10.0.0.1:2380)`, as etcdctl prints IDs.
    pub fn describe(&self) -> String {
        let name = if self.started() {
            format!("{:?}", self.name)
        } else {
            "an unstarted member".to_string()
        };
        format!("{name} (id {:x}, {})", self.id, self.peer_urls.join(","))
    }
}

/// proto3 JSON writes uint64 as a string; accept a bare number as well.
fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(s) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("member ID {s:?} is not a uint64"))),
    }
}

#[derive(Deserialize)]
struct MembersResponse {
    #[serde(default)]
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct AddResponse {
    member: Member,
    #[serde(default)]
    members: Vec<Member>,
}

/// The gateway's error body: `{"error": "...", "message": "...", "code": 9}`.
#[derive(Deserialize, Default)]
struct GatewayError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct HealthResponse {
    health: String,
}

/// Why a call to etcd failed.
#[derive(Debug)]
enum CallError {
    /// etcd answered with an error.
    Etcd {
        endpoint: String,
        status: u16,
        message: String,
    },
    /// No endpoint could be asked; each endpoint with its last error.
    Unreachable(Vec<(String, String)>),
}

impl CallError {
    fn message(&self) -> &str {
        match self {
            CallError::Etcd { message, .. } => message,
            CallError::Unreachable(_) => "",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Etcd {
                endpoint,
                status,
                message,
            } => write!(f, "etcd at {endpoint} answered HTTP {status}: {message}"),
            CallError::Unreachable(tries) => {
                let tries: Vec<String> =
                    tries.iter().map(|(e, why)| format!("{e}: {why}")).collect();
                write!(f, "no etcd endpoint answered ({})", tries.join("; "))
            }
        }
    }
}

impl std::error::Error for CallError {}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What an etcd member's `/version` says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EtcdVersions {
    /// The member's own version (`3.4.23`).
    #[serde(rename = "etcdserver")]
    pub server: String,
    /// The cluster version (`3.4.0`), the lowest minor every member runs; `not_decided` while
    /// the cluster has no leader yet.
    #[serde(rename = "etcdcluster")]
    pub cluster: String,
}

/// A blocking etcd v3 client over the JSON gateway etcd serves on its client port
/// (`POST /v3/cluster/member/...`), with the etcd CA as the only root and a client
/// certificate (apiserver-etcd-client or healthcheck-client), as kubeadm's etcdutil.New.
pub struct EtcdClient {
    http: reqwest::blocking::Client,
    endpoints: Vec<String>,
}

impl EtcdClient {
    /// A client for `endpoints` (`https://<ip>:2379`, tried in order), trusting only
    /// `ca_pem`, presenting `cert_pem` + `key_pem`.
    ///
    /// # Errors
    /// No endpoint, or a CA / certificate / key that is not valid PEM.
    pub fn new(
        endpoints: &[String],
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !endpoints.is_empty(),
            "no etcd endpoint to connect to: pass the client URL of at least one etcd member"
        );
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .context("the etcd CA certificate is not a valid PEM certificate")?;
        let mut pem = cert_pem.to_vec();
        pem.push(b'\n');
        pem.extend_from_slice(key_pem);
        let identity = reqwest::Identity::from_pem(&pem)
            .context("the etcd client certificate and key are not a valid PEM pair")?;
        let http = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .https_only(true)
            // kubeadm: etcdutil etcdTimeout is 2s per call; a membership change waits for a
            // commit, which may span a leader election (1s by default), so allow more.
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .context("could not build the etcd client")?;
        Ok(Self {
            http,
            endpoints: endpoints.to_vec(),
        })
    }

    /// The same client (certificates, timeouts), asking only `endpoint`.
    pub fn with_endpoint(&self, endpoint: &str) -> Self {
        Self {
            http: self.http.clone(),
            endpoints: vec![endpoint.to_string()],
        }
    }

    /// The endpoints this client asks, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POSTs `body` to `path` on the first endpoint that can answer: one that refuses the
    /// connection, or is a learner (which serves no cluster RPCs), hands over to the next.
    /// A timeout does not: a membership change may have been applied, and sending it again
    /// elsewhere would not be the same request.
    fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<T, CallError> {
        let mut tries = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{}{path}", endpoint.trim_end_matches('/'));
            let resp = match self.http.post(&url).json(&body).send() {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    tries.push((endpoint.clone(), error_chain(&e)));
                    continue;
                }
                Err(e) => {
                    tries.push((endpoint.clone(), error_chain(&e)));
                    return Err(CallError::Unreachable(tries));
                }
            };
            let status = resp.status().as_u16();
            let text = resp.text().unwrap_or_default();
            if (200..300).contains(&status) {
                return serde_json::from_str(&text).map_err(|e| CallError::Etcd {
                    endpoint: endpoint.clone(),
                    status,
                    message: format!("unexpected answer to {path} ({e}): {text}"),
                });
            }
            let err: GatewayError = serde_json::from_str(&text).unwrap_or_default();
            let message = [err.message, err.error, text]
                .into_iter()
                .find(|m| !m.is_empty())
                .unwrap_or_default();
            if message.contains(LEARNER_RPC) {
                tries.push((endpoint.clone(), message));
                continue;
            }
            return Err(CallError::Etcd {
                endpoint: endpoint.clone(),
                status,
                message,
            });
        }
        Err(CallError::Unreachable(tries))
    }

    /// Every member (`etcdctl member list`).
    ///
    /// # Errors
    /// No endpoint answered, or etcd refused.
    pub fn list(&self) -> anyhow::Result<Vec<Member>> {
        let r: MembersResponse = self
            .call("/v3/cluster/member/list", serde_json::json!({}))
            .context("could not list the etcd members")?;
        Ok(r.members)
    }

    /// Adds a learner with `peer_url` (`etcdctl member add --learner`); its ID and the new
    /// member list. etcd refuses any add until every voter has been connected for 5 seconds
    /// ("unhealthy cluster": etcd 3.4 etcdserver/server.go mayAddMember, HealthInterval), as
    /// right after another member's promotion; that is retried for up to 15 seconds.
    ///
    /// # Errors
    /// No endpoint answered, or etcd refused (a peer URL in use, too many learners).
    pub fn add_learner(&self, peer_url: &str) -> anyhow::Result<(u64, Vec<Member>)> {
        let body = serde_json::json!({ "peerURLs": [peer_url], "isLearner": true });
        let r: AddResponse = self
            .retrying(
                RECONFIG_RETRY,
                &[UNHEALTHY_CLUSTER],
                |_| {},
                || self.call("/v3/cluster/member/add", body.clone()),
            )
            .map_err(|(e, _)| e)
            .with_context(|| format!("could not add the etcd learner {peer_url}"))?;
        Ok((r.member.id, r.members))
    }

    /// Calls `f` until it succeeds, fails for good, or `timeout` passes; an answer containing
    /// one of [`TRANSIENT`] or `also` is retried, `progress` gets the time waited about every
    /// 5 seconds.
    fn retrying<T>(
        &self,
        timeout: Duration,
        also: &[&str],
        mut progress: impl FnMut(Duration),
        mut f: impl FnMut() -> Result<T, CallError>,
    ) -> Result<T, (CallError, bool)> {
        let start = Instant::now();
        let mut last_report = start;
        loop {
            let err = match f() {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let message = err.message();
            let retry = TRANSIENT.iter().chain(also).any(|t| message.contains(t));
            if !retry {
                return Err((err, false));
            }
            if start.elapsed() >= timeout {
                return Err((err, true));
            }
            if last_report.elapsed() >= REPORT_EVERY {
                last_report = Instant::now();
                progress(start.elapsed());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Promotes learner `id` to a voter (`etcdctl member promote`), retrying while etcd says
    /// it has not caught up with the leader yet (or while it elects a leader), at most
    /// `timeout`; `progress` gets the time waited about every 5 seconds. A member that is a
    /// voter already counts as promoted (an earlier call went through). The new member list.
    ///
    /// # Errors
    /// Still not in sync at the deadline, or any other refusal.
    pub fn promote(
        &self,
        id: u64,
        timeout: Duration,
        progress: impl FnMut(Duration),
    ) -> anyhow::Result<Vec<Member>> {
        let body = serde_json::json!({ "ID": id.to_string() });
        let result = self.retrying(timeout, &[LEARNER_NOT_READY], progress, || {
            self.call::<MembersResponse>("/v3/cluster/member/promote", body.clone())
        });
        match result {
            Ok(r) => Ok(r.members),
            Err((e, _))
                if e.message().contains(MEMBER_NOT_LEARNER)
                    && !e.message().contains(LEARNER_NOT_READY) =>
            {
                self.list()
            }
            Err((e, true)) => Err(e).with_context(|| {
                format!(
                    "etcd learner {id:x} did not catch up with the leader within {}",
                    crate::health::human(timeout)
                )
            }),
            Err((e, false)) => {
                Err(e).with_context(|| format!("could not promote etcd member {id:x}"))
            }
        }
    }

    /// Removes member `id` (`etcdctl member remove`); the new member list. etcd refuses while
    /// it still counts the member as connected ("unhealthy cluster", its strict reconfiguration
    /// check); that is retried for up to 15 seconds, as the peer is marked down.
    ///
    /// # Errors
    /// No endpoint answered, or etcd refused (a removal that would cost quorum).
    pub fn remove(&self, id: u64) -> anyhow::Result<Vec<Member>> {
        let body = serde_json::json!({ "ID": id.to_string() });
        let r = self
            .retrying(
                Duration::from_secs(15),
                &[UNHEALTHY_CLUSTER],
                |_| {},
                || self.call::<MembersResponse>("/v3/cluster/member/remove", body.clone()),
            )
            .map_err(|(e, _)| e)
            .with_context(|| format!("could not remove etcd member {id:x}"))?;
        Ok(r.members)
    }

    /// `GET <endpoint>/health` answers `{"health":"true"}`: the member has a leader and a
    /// quorum read goes through (etcd 3.4 etcdhttp checkHealth).
    ///
    /// # Errors
    /// What the endpoint said instead, or why it could not be asked.
    pub fn health(&self, endpoint: &str) -> Result<(), String> {
        let url = format!("{}/health", endpoint.trim_end_matches('/'));
        let resp = self.http.get(&url).send().map_err(|e| error_chain(&e))?;
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        match serde_json::from_str::<HealthResponse>(&text) {
            Ok(h) if status == 200 && h.health == "true" => Ok(()),
            _ => Err(format!("HTTP {status}: {}", text.trim())),
        }
    }

    /// `GET <endpoint>/version`: the member's server version and the cluster version it
    /// sees (`{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}`; etcd: etcdhttp serveVersion).
    /// The cluster version moves to a new minor only once every member runs it.
    ///
    /// # Errors
    /// What the endpoint said instead, or why it could not be asked.
    pub fn version(&self, endpoint: &str) -> Result<EtcdVersions, String> {
        let url = format!("{}/version", endpoint.trim_end_matches('/'));
        let resp = self.http.get(&url).send().map_err(|e| error_chain(&e))?;
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        match serde_json::from_str::<EtcdVersions>(&text) {
            Ok(v) if status == 200 => Ok(v),
            _ => Err(format!("HTTP {status}: {}", text.trim())),
        }
    }

    /// `etcdctl endpoint status` of the first endpoint that answers: its etcd version, the
    /// cluster ID and the store's current revision (`POST /v3/maintenance/status`).
    ///
    /// # Errors
    /// No endpoint answered, or etcd refused.
    pub fn status(&self) -> anyhow::Result<EndpointStatus> {
        self.call("/v3/maintenance/status", serde_json::json!({}))
            .context("could not read the etcd endpoint status")
    }

    /// The value of `key` (`etcdctl get`), `None` when there is no such key.
    ///
    /// # Errors
    /// No endpoint answered, or etcd refused.
    pub fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let r: RangeResponse = self
            .call(
                "/v3/kv/range",
                serde_json::json!({ "key": b64.encode(key) }),
            )
            .with_context(|| {
                format!(
                    "could not read the etcd key {:?}",
                    String::from_utf8_lossy(key)
                )
            })?;
        let Some(kv) = r.kvs.into_iter().next() else {
            return Ok(None);
        };
        b64.decode(kv.value.as_bytes())
            .map(Some)
            .context("etcd sent a value that is not base64")
    }

    /// Streams a consistent snapshot of the backend database from `endpoint` into `sink`
    /// (`etcdctl snapshot save`): etcd's gRPC Maintenance.Snapshot, which etcd 3.4's JSON
    /// gateway serves at `POST /v3/maintenance/snapshot` as newline-delimited JSON
    /// (`{"result":{"blob":"<base64>"}}` per chunk, `{"error":{...}}` if the stream fails).
    /// The bytes are bbolt's database file followed by its SHA-256, as etcd sends them.
    /// Returns the number of bytes written.
    ///
    /// # Errors
    /// The endpoint cannot be asked, refuses, breaks the stream, or `sink` fails.
    pub fn snapshot(&self, endpoint: &str, sink: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        use std::io::BufRead;
        let url = format!("{}/v3/maintenance/snapshot", endpoint.trim_end_matches('/'));
        // A large database takes longer than one call's timeout to stream: the bound is
        // per read (reqwest's `timeout` covers the whole body), set far above it here.
        let resp = self
            .http
            .post(&url)
            .timeout(SNAPSHOT_TIMEOUT)
            .json(&serde_json::json!({}))
            .send()
            .map_err(|e| {
                anyhow::anyhow!(
                    "could not ask {endpoint} for a snapshot: {}",
                    error_chain(&e)
                )
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.text().unwrap_or_default();
            anyhow::bail!(
                "etcd at {endpoint} refused the snapshot: HTTP {status}: {}",
                text.trim()
            );
        }
        let mut total = 0u64;
        for line in std::io::BufReader::new(resp).lines() {
            let line =
                line.with_context(|| format!("the snapshot stream from {endpoint} broke"))?;
            if line.trim().is_empty() {
                continue;
            }
            let chunk =
                snapshot_chunk(&line).map_err(|e| anyhow::anyhow!("etcd at {endpoint}: {e}"))?;
            sink.write_all(&chunk)
                .context("could not write the snapshot")?;
            total += chunk.len() as u64;
        }
        anyhow::ensure!(total > 0, "etcd at {endpoint} sent an empty snapshot");
        Ok(total)
    }

    /// [`EtcdClient::health`] as a yes/no.
    pub fn healthy(&self, endpoint: &str) -> bool {
        self.health(endpoint).is_ok()
    }

    /// A member is healthy when one of its client URLs is; an unstarted member has none.
    pub fn member_health(&self, m: &Member) -> Result<(), String> {
        if m.client_urls.is_empty() {
            return Err("never started (no client URL)".into());
        }
        let mut why = Vec::new();
        for url in &m.client_urls {
            match self.health(url) {
                Ok(()) => return Ok(()),
                Err(e) => why.push(format!("{url}: {e}")),
            }
        }
        Err(why.join("; "))
    }
}

/// How long a snapshot may take to stream, whole (a database of several GiB over loopback).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A response header (proto3 JSON: uint64 and int64 as strings, snake_case names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResponseHeader {
    /// The cluster ID.
    #[serde(deserialize_with = "uint64")]
    pub cluster_id: u64,
    /// The ID of the member that answered.
    #[serde(deserialize_with = "uint64")]
    pub member_id: u64,
    /// The key-value store's revision.
    #[serde(default, deserialize_with = "uint64")]
    pub revision: u64,
}

/// `etcdctl endpoint status`, the fields kubeboot reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EndpointStatus {
    /// Who answered, and the revision.
    pub header: ResponseHeader,
    /// The etcd server version (`3.4.23`).
    pub version: String,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    value: String,
}

/// One line of the gateway's snapshot stream: the chunk's bytes, or what etcd said instead.
///
/// # Errors
/// An error object, a line that is not a chunk, or a blob that is not base64.
pub fn snapshot_chunk(line: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Line {
        result: Option<Chunk>,
        error: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Chunk {
        #[serde(default)]
        blob: String,
    }
    let l: Line = serde_json::from_str(line)
        .map_err(|e| format!("unexpected line in the snapshot stream ({e}): {line:.200}"))?;
    if let Some(err) = l.error {
        let message = err["message"].as_str().unwrap_or_default();
        return Err(format!(
            "the snapshot failed: {}",
            if message.is_empty() {
                err.to_string()
            } else {
                message.to_string()
            }
        ));
    }
    let chunk = l
        .result
        .ok_or_else(|| format!("unexpected line in the snapshot stream: {line:.200}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(chunk.blob.as_bytes())
        .map_err(|e| format!("a snapshot chunk is not base64: {e}"))
}

/// What happens to this node's own member once stale ones are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnMember {
    /// Not in the cluster: add it as a learner, start it, promote it.
    Add,
    /// Added by an earlier run that stopped before the end (a learner, started or not, or a
    /// voter that never started): start it, and promote it if it is a learner.
    Resume {
        /// Its member ID.
        id: u64,
        /// Whether it still needs promoting.
        learner: bool,
    },
    /// A healthy voter with this node's name and peer URL: nothing to change.
    Voter {
        /// Its member ID.
        id: u64,
    },
}

/// The decision for a joining member: stale members to remove first, then what to do about
/// its own member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinPlan {
    /// Members of an earlier installation of this node (its name, unreachable), removed in
    /// this order before anything is added.
    pub remove: Vec<Member>,
    /// This node's own member.
    pub own: OwnMember,
}

/// Why a member may not join: each refusal leaves the membership as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdJoinRefused {
    /// Voting members of other nodes are not healthy: joining a degraded cluster could cost
    /// it its quorum (a promotion raises the quorum).
    Unhealthy {
        /// Each unhealthy voter, described.
        members: Vec<String>,
    },
    /// A healthy member has this node's name with another peer URL.
    NameTaken {
        /// The name.
        name: String,
        /// The live member, described.
        member: String,
    },
    /// This node's peer URL belongs to a member with another name.
    PeerUrlTaken {
        /// The peer URL.
        peer_url: String,
        /// The member that has it, described.
        member: String,
    },
    /// Another node's learner is still joining; etcd 3.4 allows one learner at a time.
    LearnerPending {
        /// The learner, described.
        member: String,
    },
    /// Removing this node's stale member would leave too few healthy voters.
    WouldLoseQuorum {
        /// The stale member, described.
        member: String,
        /// Voters after the removal.
        voters: usize,
        /// Healthy voters after the removal.
        healthy: usize,
    },
}

impl fmt::Display for EtcdJoinRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdJoinRefused::Unhealthy { members } => write!(
                f,
                "the etcd cluster is not healthy: voting member(s) {} not healthy, and a new member must not join a degraded cluster (it could cost the cluster its quorum); bring them back, or remove them with \"etcdctl member remove <id>\", then join again",
                members.join(", ")
            ),
            EtcdJoinRefused::NameTaken { name, member } => write!(
                f,
                "the etcd member name {name:?} is taken by the healthy member {member}: join with another --node-name, or reset that node first"
            ),
            EtcdJoinRefused::PeerUrlTaken { peer_url, member } => write!(
                f,
                "the etcd peer URL {peer_url} belongs to member {member}, another node's: give this node another address, or remove that member with \"etcdctl member remove <id>\" if it is gone"
            ),
            EtcdJoinRefused::LearnerPending { member } => write!(
                f,
                "etcd member {member} is a learner still joining (etcd allows one learner at a time): wait until that join has finished, or remove it with \"etcdctl member remove <id>\" if it was abandoned"
            ),
            EtcdJoinRefused::WouldLoseQuorum {
                member,
                voters,
                healthy,
            } => write!(
                f,
                "removing this node's stale etcd member {member} would leave {healthy} healthy of {voters} voting member(s), less than a quorum: restore the cluster's quorum first"
            ),
        }
    }
}

impl std::error::Error for EtcdJoinRefused {}

/// The decision for `my_name` joining with `my_peer_url`, given every member and whether it
/// is healthy (a member missing from `health` counts as unhealthy). Pure.
///
/// - Its own member is the one with its peer URL and its name (or no name yet: not started).
///   A learner, or a voter that never started, is resumed; a healthy voter is left as is; a
///   voter that started and is unreachable is stale (reinstalled node, same address).
/// - A member with its name and another peer URL is stale when unreachable (reinstalled node,
///   new address) and refuses the join when healthy (the name is taken).
/// - Every other voter must be healthy (kubeadm's check-etcd only asks the cluster for its
///   health; here each member is named).
/// - Stale members are removed one at a time, and each removal must leave a quorum of healthy
///   voters among the remaining voters, as etcd's strict reconfiguration check demands
///   (etcd 3.4 etcdserver/server.go mayRemoveMember, membership/cluster.go
///   IsReadyToRemoveVotingMember). A conf change is committed by the quorum of the
///   configuration it changes (etcd op-guide/runtime-configuration.md: "Reconfiguration
///   requests can only be processed when a majority of cluster members are functioning"), so
///   a 2-voter cluster with one voter dead can remove nothing: it has no quorum to commit with.
/// - Adding is refused while another node's learner is pending (etcd 3.4 membership
///   maxLearners = 1).
///
/// # Errors
/// [`EtcdJoinRefused`], naming the members and the fix.
pub fn plan_join(
    members: &[Member],
    health: &[(u64, bool)],
    my_name: &str,
    my_peer_url: &str,
) -> Result<JoinPlan, EtcdJoinRefused> {
    let healthy = |m: &Member| health.iter().any(|&(id, ok)| id == m.id && ok);
    let mut remove = Vec::new();
    let mut own = OwnMember::Add;
    let mut others = Vec::new();
    for m in members {
        let same_url = m.has_peer_url(my_peer_url);
        let same_name = m.name == my_name;
        if same_url && !m.name.is_empty() && !same_name {
            return Err(EtcdJoinRefused::PeerUrlTaken {
                peer_url: my_peer_url.to_string(),
                member: m.describe(),
            });
        }
        if same_url {
            // This node's member (by name, or not started yet so it has none).
            if m.is_learner || !m.started() {
                own = OwnMember::Resume {
                    id: m.id,
                    learner: m.is_learner,
                };
            } else if healthy(m) {
                own = OwnMember::Voter { id: m.id };
            } else {
                remove.push(m.clone());
            }
        } else if same_name {
            if healthy(m) {
                return Err(EtcdJoinRefused::NameTaken {
                    name: my_name.to_string(),
                    member: m.describe(),
                });
            }
            remove.push(m.clone());
        } else {
            others.push(m);
        }
    }
    let unhealthy: Vec<String> = others
        .iter()
        .filter(|m| !m.is_learner && !healthy(m))
        .map(|m| m.describe())
        .collect();
    if !unhealthy.is_empty() {
        return Err(EtcdJoinRefused::Unhealthy { members: unhealthy });
    }
    if own == OwnMember::Add
        && let Some(learner) = others.iter().find(|m| m.is_learner)
    {
        return Err(EtcdJoinRefused::LearnerPending {
            member: learner.describe(),
        });
    }
    // One removal at a time: after each, the remaining voters need a healthy quorum.
    let mut remaining: Vec<&Member> = members.iter().filter(|m| !m.is_learner).collect();
    for stale in &remove {
        remaining.retain(|m| m.id != stale.id);
        if stale.is_learner {
            continue;
        }
        let voters = remaining.len();
        let healthy_voters = remaining.iter().filter(|m| healthy(m)).count();
        if voters == 0 || healthy_voters < voters / 2 + 1 {
            return Err(EtcdJoinRefused::WouldLoseQuorum {
                member: stale.describe(),
                voters,
                healthy: healthy_voters,
            });
        }
    }
    Ok(JoinPlan { remove, own })
}

/// `--initial-cluster` for this node's etcd: every member, learners and unstarted members
/// included (etcd checks that the list matches the cluster's membership, member for member,
/// by peer URLs: etcdserver/cluster_util.go ValidateClusterAndAssignIDs). The member with
/// `my_peer_url` carries `my_name`; another member with no name yet (a concurrent join) is
/// named by its hex ID, as kubeadm's AddMember does. A member with several peer URLs is
/// listed once per URL under one name, which is how etcd reads it back.
pub fn initial_cluster(members: &[Member], my_name: &str, my_peer_url: &str) -> Vec<EtcdMember> {
    members
        .iter()
        .flat_map(|m| {
            let name = if m.has_peer_url(my_peer_url) {
                my_name.to_string()
            } else if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            };
            m.peer_urls.iter().map(move |url| EtcdMember {
                name: name.clone(),
                peer_url: url.clone(),
            })
        })
        .collect()
}

/// The `--initial-cluster` flag's value: `name=peerURL,...` (with `--initial-cluster-state
/// existing`, which `manifests::etcd` adds for a non-empty member list, as kubeadm's
/// getEtcdCommand).
pub fn initial_cluster_flag(members: &[EtcdMember]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",")
}

/// How long [`join_member`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTimeouts {
    /// For the local member to start and answer healthy.
    pub healthy: Duration,
    /// For the learner to catch up and be promoted.
    pub promote: Duration,
}

impl Default for JoinTimeouts {
    fn default() -> Self {
        Self {
            healthy: Duration::from_secs(120),
            promote: Duration::from_secs(120),
        }
    }
}

/// Joins this node's etcd member (`my_name`, `my_peer_url`) to the cluster `client` reaches:
/// lists the members, checks each one's health, decides with [`plan_join`], removes stale
/// members of this node, adds it as a learner (or resumes the one an earlier run added), calls
/// `start_local_member` with the `--initial-cluster` members (it writes the etcd static pod;
/// it must be idempotent, and called with a stale member removed it must start from an empty
/// data directory), waits for the member to be healthy, and promotes it.
///
/// A failure after the add leaves this node's member in the cluster as a learner (which
/// does not count toward quorum); running the join again finds it by its peer URL and
/// continues from there.
///
/// # Errors
/// A refusal ([`EtcdJoinRefused`]), an etcd call that failed, `start_local_member`'s error,
/// or a member that did not become healthy or catch up in time; each says what is left.
pub fn join_member(
    client: &EtcdClient,
    my_name: &str,
    my_peer_url: &str,
    start_local_member: impl FnOnce(&[EtcdMember]) -> anyhow::Result<()>,
    timeouts: JoinTimeouts,
    out: &Out,
) -> anyhow::Result<()> {
    // Observe.
    let members = client.list()?;
    let health: Vec<(u64, bool)> = members
        .iter()
        .map(|m| (m.id, client.member_health(m).is_ok()))
        .collect();
    // Decide.
    let plan = plan_join(&members, &health, my_name, my_peer_url)?;
    // Act, and say.
    for stale in &plan.remove {
        client.remove(stale.id).with_context(|| {
            format!(
                "could not remove this node's stale etcd member {}",
                stale.describe()
            )
        })?;
        say!(
            out,
            "etcd",
            "Removed stale member {:?} (id {:x}) at {}: unreachable, re-added as this node",
            stale.name,
            stale.id,
            stale.peer_urls.join(",")
        );
    }
    let (id, learner, members) = match plan.own {
        OwnMember::Add => {
            let (id, members) = client.add_learner(my_peer_url)?;
            say!(
                out,
                "etcd",
                "Announced new etcd member joining to the existing etcd cluster as a learner (id {id:x})"
            );
            (id, true, members)
        }
        OwnMember::Resume { id, learner } => {
            say!(
                out,
                "etcd",
                "Found this node's etcd member (id {id:x}) from an earlier join: continuing"
            );
            (id, learner, client.list()?)
        }
        OwnMember::Voter { id } => {
            say!(
                out,
                "etcd",
                "This node is already a voting etcd member (id {id:x})"
            );
            (id, false, client.list()?)
        }
    };
    let left = |what: &str| {
        format!(
            "{what}; etcd member {id:x} stays in the cluster{}, and running the join again continues from there",
            if learner {
                " as a learner, which does not count toward quorum"
            } else {
                ""
            }
        )
    };
    start_local_member(&initial_cluster(&members, my_name, my_peer_url))
        .with_context(|| left("could not start the local etcd member"))?;

    if !matches!(plan.own, OwnMember::Voter { .. }) {
        say!(
            out,
            "etcd",
            "Waiting for the new etcd member to join the cluster. This can take up to {}",
            crate::health::human(timeouts.healthy)
        );
    }
    let start = Instant::now();
    wait_healthy(client, id, timeouts.healthy, |waited| {
        say!(
            out,
            "etcd",
            "Still waiting for etcd member {id:x} to be healthy ({} of {})",
            crate::health::human(waited),
            crate::health::human(timeouts.healthy)
        )
    })
    .with_context(|| left("the local etcd member did not become healthy"))?;
    if learner {
        let members = client
            .promote(id, timeouts.promote, |waited| {
                say!(
                    out,
                    "etcd",
                    "Waiting for learner {id:x} to catch up with the leader ({} of {})",
                    crate::health::human(waited),
                    crate::health::human(timeouts.promote)
                )
            })
            .with_context(|| left("could not promote the local etcd member"))?;
        let voters = members.iter().filter(|m| !m.is_learner).count();
        say!(
            out,
            "etcd",
            "Promoted etcd member {my_name:?} (id {id:x}) to a voting member after {:.1} seconds: {voters} voting members",
            start.elapsed().as_secs_f64()
        );
    } else {
        say!(
            out,
            "etcd",
            "etcd member {my_name:?} (id {id:x}) is a healthy voting member"
        );
    }
    Ok(())
}

/// Polls until member `id` has started and one of its client URLs answers healthy.
fn wait_healthy(
    client: &EtcdClient,
    id: u64,
    timeout: Duration,
    mut progress: impl FnMut(Duration),
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last_report = start;
    loop {
        let last = match client.list() {
            Ok(members) => match members.iter().find(|m| m.id == id) {
                Some(m) => match client.member_health(m) {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                },
                None => format!("member {id:x} is no longer in the member list"),
            },
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() >= timeout {
            anyhow::bail!(
                "etcd member {id:x} not healthy within {}: {last}",
                crate::health::human(timeout)
            );
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            progress(start.elapsed());
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "node2";
    const MY_URL: &str = "https://10.0.0.2:2380";

    fn member(id: u64, name: &str, peer: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![peer.into()],
            client_urls: if name.is_empty() {
                vec![]
            } else {
                vec![peer.replace(":2380", ":2379")]
            },
            is_learner: false,
        }
    }

    fn learner(mut m: Member) -> Member {
        m.is_learner = true;
        m
    }

    fn n1() -> Member {
        member(1, "node1", "https://10.0.0.1:2380")
    }

    fn n3() -> Member {
        member(3, "node3", "https://10.0.0.3:2380")
    }

    fn all_healthy(members: &[Member]) -> Vec<(u64, bool)> {
        members.iter().map(|m| (m.id, true)).collect()
    }

    fn down(members: &[Member], ids: &[u64]) -> Vec<(u64, bool)> {
        members
            .iter()
            .map(|m| (m.id, !ids.contains(&m.id)))
            .collect()
    }

    #[test]
    fn gateway_ids_come_as_strings_or_numbers() {
        let text = r#"{"header":{"cluster_id":"15118495548433857066"},"members":[
            {"ID":"13668033151171901709","name":"a","peerURLs":["https://127.0.0.1:2380"],"clientURLs":["https://127.0.0.1:2379"]},
            {"ID":15268952597966308138,"peerURLs":["https://127.0.0.2:2380"],"isLearner":true}]}"#;
        let r: MembersResponse = serde_json::from_str(text).unwrap();
        assert_eq!(r.members[0].id, 13668033151171901709);
        assert_eq!(r.members[0].name, "a");
        assert!(r.members[0].started() && !r.members[0].is_learner);
        assert_eq!(r.members[1].id, 15268952597966308138);
        assert!(!r.members[1].started() && r.members[1].is_learner);
        assert!(r.members[1].client_urls.is_empty());
        let bad = r#"{"members":[{"ID":"node1"}]}"#;
        let err = serde_json::from_str::<MembersResponse>(bad).err().unwrap();
        assert!(
            err.to_string().contains("\"node1\" is not a uint64"),
            "{err}"
        );
    }

    #[test]
    fn a_new_node_is_added_as_a_learner() {
        let members = [n1(), n3()];
        let plan = plan_join(&members, &all_healthy(&members), ME, MY_URL).unwrap();
        assert_eq!(
            plan,
            JoinPlan {
                remove: vec![],
                own: OwnMember::Add
            }
        );
    }

    #[test]
    fn a_rerun_on_a_healthy_voter_changes_nothing() {
        let members = [n1(), member(2, ME, MY_URL)];
        let plan = plan_join(&members, &all_healthy(&members), ME, MY_URL).unwrap();
        assert_eq!(plan.own, OwnMember::Voter { id: 2 });
        assert!(plan.remove.is_empty());
    }

    #[test]
    fn a_rerun_resumes_its_unstarted_or_started_learner() {
        // Added, never started: no name, no client URL, unhealthy; still this node's.
        let members = [n1(), learner(member(2, "", MY_URL))];
        let plan = plan_join(&members, &down(&members, &[2]), ME, MY_URL).unwrap();
        assert_eq!(
            plan.own,
            OwnMember::Resume {
                id: 2,
                learner: true
            }
        );
        // Started, then the join stopped before the promotion (healthy or not).
        let members = [n1(), learner(member(2, ME, MY_URL))];
        for health in [all_healthy(&members), down(&members, &[2])] {
            let plan = plan_join(&members, &health, ME, MY_URL).unwrap();
            assert_eq!(
                plan.own,
                OwnMember::Resume {
                    id: 2,
                    learner: true
                }
            );
            assert!(plan.remove.is_empty());
        }
    }

    #[test]
    fn an_unstarted_voter_with_my_url_is_resumed_without_promotion() {
        // What kubeadm < 1.29 (or etcdctl member add) leaves after a failed join.
        let members = [n1(), n3(), member(2, "", MY_URL)];
        let plan = plan_join(&members, &down(&members, &[2]), ME, MY_URL).unwrap();
        assert_eq!(
            plan.own,
            OwnMember::Resume {
                id: 2,
                learner: false
            }
        );
    }

    #[test]
    fn a_stale_voter_with_my_name_and_url_is_removed_then_re_added() {
        let members = [n1(), member(2, ME, MY_URL), n3()];
        let plan = plan_join(&members, &down(&members, &[2]), ME, MY_URL).unwrap();
        assert_eq!(plan.remove, vec![members[1].clone()]);
        assert_eq!(plan.own, OwnMember::Add);
    }

    #[test]
    fn a_stale_member_with_my_name_and_an_old_url_is_removed() {
        let old = member(2, ME, "https://10.0.0.9:2380");
        let members = [n1(), old.clone(), n3()];
        let plan = plan_join(&members, &down(&members, &[2]), ME, MY_URL).unwrap();
        assert_eq!(plan.remove, vec![old]);
        assert_eq!(plan.own, OwnMember::Add);
        // A stale learner of mine goes too, quorum untouched (it never voted).
        let old = learner(member(2, ME, "https://10.0.0.9:2380"));
        let members = [n1(), old.clone()];
        let plan = plan_join(&members, &down(&members, &[2]), ME, MY_URL).unwrap();
        assert_eq!(plan.remove, vec![old]);
    }

    #[test]
    fn my_name_on_a_live_member_elsewhere_is_refused() {
        let members = [n1(), member(2, ME, "https://10.0.0.9:2380")];
        let err = plan_join(&members, &all_healthy(&members), ME, MY_URL).unwrap_err();
        assert!(matches!(err, EtcdJoinRefused::NameTaken { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("\"node2\" is taken") && msg.contains("10.0.0.9"),
            "{msg}"
        );
    }

    #[test]
    fn my_url_on_a_member_with_another_name_is_refused() {
        for health in [true, false] {
            let members = [n1(), member(7, "old-name", MY_URL)];
            let err = plan_join(&members, &[(1, true), (7, health)], ME, MY_URL).unwrap_err();
            assert!(matches!(err, EtcdJoinRefused::PeerUrlTaken { .. }), "{err}");
            assert!(err.to_string().contains("\"old-name\""), "{err}");
        }
    }

    #[test]
    fn an_unhealthy_voter_of_another_node_refuses_naming_it() {
        let members = [n1(), n3()];
        let err = plan_join(&members, &down(&members, &[3]), ME, MY_URL).unwrap_err();
        assert_eq!(
            err,
            EtcdJoinRefused::Unhealthy {
                members: vec!["\"node3\" (id 3, https://10.0.0.3:2380)".into()]
            }
        );
        assert!(err.to_string().contains("etcdctl member remove"), "{err}");
        // Missing from the health list counts as unhealthy too.
        assert!(plan_join(&members, &[(1, true)], ME, MY_URL).is_err());
        // Even when this node's own stale member would be removed.
        let members = [n1(), member(2, ME, MY_URL), n3()];
        let err = plan_join(&members, &down(&members, &[2, 3]), ME, MY_URL).unwrap_err();
        assert!(matches!(err, EtcdJoinRefused::Unhealthy { .. }), "{err}");
    }

    #[test]
    fn another_nodes_unstarted_voter_is_unhealthy() {
        let members = [n1(), member(9, "", "https://10.0.0.9:2380")];
        let err = plan_join(&members, &down(&members, &[9]), ME, MY_URL).unwrap_err();
        assert!(
            err.to_string().contains("an unstarted member (id 9"),
            "{err}"
        );
    }

    #[test]
    fn another_nodes_pending_learner_blocks_an_add_but_not_a_resume() {
        let other = learner(member(9, "", "https://10.0.0.9:2380"));
        let members = [n1(), other.clone()];
        let err = plan_join(&members, &down(&members, &[9]), ME, MY_URL).unwrap_err();
        assert!(
            matches!(err, EtcdJoinRefused::LearnerPending { .. }),
            "{err}"
        );
        // An unhealthy learner alone is no reason to refuse on health grounds.
        let members = [n1(), n3(), learner(member(2, ME, MY_URL)), other];
        let plan = plan_join(&members, &down(&members, &[9]), ME, MY_URL).unwrap();
        assert_eq!(
            plan.own,
            OwnMember::Resume {
                id: 2,
                learner: true
            }
        );
    }

    #[test]
    fn removing_the_last_voter_is_refused() {
        // The only voter is this node's stale one: nothing may remove it.
        let members = [member(2, ME, MY_URL)];
        let err = plan_join(&members, &down(&members, &[2]), ME, MY_URL).unwrap_err();
        assert_eq!(
            err,
            EtcdJoinRefused::WouldLoseQuorum {
                member: "\"node2\" (id 2, https://10.0.0.2:2380)".into(),
                voters: 0,
                healthy: 0
            }
        );
    }

    #[test]
    fn quorum_is_checked_after_each_removal() {
        // Two stale voters of this node (old and current address) among 4 voters: after both
        // removals, 2 healthy of 2 remain; allowed, in order.
        let a = member(2, ME, MY_URL);
        let b = member(5, ME, "https://10.0.0.9:2380");
        let members = [n1(), a.clone(), b.clone(), n3()];
        let plan = plan_join(&members, &down(&members, &[2, 5]), ME, MY_URL).unwrap();
        assert_eq!(plan.remove, vec![a.clone(), b.clone()]);
        // With only one other healthy voter: removing the first leaves 1 healthy of 2 voters,
        // no quorum, so the plan stops there.
        let members = [n1(), a, b];
        let err = plan_join(&members, &down(&members, &[2, 5]), ME, MY_URL).unwrap_err();
        assert_eq!(
            err,
            EtcdJoinRefused::WouldLoseQuorum {
                member: "\"node2\" (id 2, https://10.0.0.2:2380)".into(),
                voters: 2,
                healthy: 1
            }
        );
    }

    #[test]
    fn initial_cluster_names_every_member() {
        let members = [
            n1(),
            learner(member(2, "", MY_URL)),
            learner(member(0xab, "", "https://10.0.0.9:2380")),
            Member {
                peer_urls: vec![
                    "https://10.0.0.3:2380".into(),
                    "https://[fd00::3]:2380".into(),
                ],
                ..n3()
            },
        ];
        let ic = initial_cluster(&members, ME, MY_URL);
        assert_eq!(
            initial_cluster_flag(&ic),
            "node1=https://10.0.0.1:2380,node2=https://10.0.0.2:2380,ab=https://10.0.0.9:2380,node3=https://10.0.0.3:2380,node3=https://[fd00::3]:2380"
        );
    }
}
