//! The agent's static pods in the Kubernetes API, so that `kubectl -n kube-system get pods`
//! lists `etcd-<node>`, `kube-apiserver-<node>`, ... and kubeadm finds its endpoints in them.
//!
//! # Design, and why
//!
//! The kubelet publishes a *mirror pod* for each static pod: a Pod bound to its node
//! (`spec.nodeName`) with the `kubernetes.io/config.mirror` annotation. The agent cannot do
//! the same on a node whose kubelet runs (agent mode runs one for the workloads):
//!
//! - a mirror pod on the node is deleted by that kubelet within seconds, since it has no static
//!   pod of that name itself (kubelet: kubelet_pods.go HandlePodCleanups ->
//!   deleteOrphanedMirrorPods, pod_manager.go GetOrphanedMirrorPodNames);
//! - a pod bound to the node *without* the annotation is a workload to that kubelet, which
//!   watches every pod with `spec.nodeName=<node>` (kubelet: config/apiserver.go) and would
//!   try to run a second kube-apiserver;
//! - the node's own identity may create no other pods anyway (NodeRestriction admission).
//!
//! So the agent publishes each of its pods as a Pod that no kubelet and no scheduler ever acts
//! on ([`object::api_pod`]): `spec.nodeName` empty, `spec.schedulerName: kubeboot-agent`
//! (the scheduler takes only pods whose schedulerName one of its profiles serves:
//! scheduler/eventhandlers.go responsibleForPod), the manifest's labels and annotations
//! (kubeadm's `component`/`tier` and its endpoint annotations), and
//! `kubernetes.io/config.source: kubeboot-agent` with the manifest hash in
//! `kubernetes.io/config.hash`. Its status comes from the agent's own state through
//! `pods/status` ([`object::api_status`]): phase, conditions, container states with ready,
//! started and restartCount, hostIP = the node's address, podIP = the node's address for a
//! hostNetwork pod and the pod's own for the others, startTime.
//!
//! Checked against Kubernetes v1.20.2:
//! - PodGC (controller/podgc/gc_controller.go, every 20 s) deletes terminated pods over a
//!   threshold (12500), pods bound to nodes that are gone (after 40 s of quarantine) and
//!   *unscheduled pods with a deletionTimestamp*; none applies to a live, unbound pod. Deleting
//!   an unbound pod is immediate (no grace period), so removing a manifest removes its pod.
//! - Validation of a status update forbids only changing nodeName, bad conditions and
//!   terminated -> running transitions under `restartPolicy: Never`.
//! - ServiceAccount admission sets `serviceAccountName: default` and refuses the pod until
//!   kube-system/default exists (seconds after the controller-manager starts): the agent
//!   retries. `automountServiceAccountToken: false` keeps a token volume out of the spec.
//! - kubectl shows them as the kubelet's (READY, STATUS, RESTARTS); only `-o wide` differs
//!   (NODE `<none>`; the node is in the `kubeboot.io/node` annotation and the
//!   `kubeboot.io/agent-node` label).
//! - kubeadm's etcd endpoints (util/etcd/etcd.go getRawEtcdEndpointsFromPodAnnotation) list
//!   kube-system pods by `component=etcd,tier=control-plane` only: found. kubeadm's upgrade
//!   waits on `<component>-<node>`'s `kubernetes.io/config.hash` by name: found. But its API
//!   endpoint lookup for its *own* node (util/config/cluster.go
//!   getRawAPIEndpointFromPodAnnotationWithoutRetry) adds `spec.nodeName=<node>`: not found,
//!   and kubeadm 1.20/1.21 fall back to ClusterStatus in kubeadm-config. That lookup matters only
//!   to a kubeadm binary run on an agent-mode node; kubeboot's own commands do not need it.
//!
//! Identity: the agent's own client certificate, `kubeboot:agent:<node>` in the group
//! `kubeboot:agents` (`/etc/kubernetes/kubeboot-agent.conf`), which the ClusterRole
//! `kubeboot:agent` lets get/list/create/delete pods and update pods/status, bound by a
//! RoleBinding in kube-system only (manifests::agent_rbac). Only control-plane nodes, whose
//! root already holds the CA key and admin.conf, get this kubeconfig; elsewhere the publisher
//! waits for a file that never comes and costs nothing.
//!
//! # Least privilege: the admission webhook
//!
//! RBAC alone would make this credential cluster-admin: whoever may create pods in kube-system
//! can create a privileged pod, with any ServiceAccount there, bound to any node. RBAC cannot
//! say what a created pod may contain and Kubernetes 1.20 has no ValidatingAdmissionPolicy, so
//! each control-plane node's agent serves an admission webhook on loopback for its own API
//! server ([`crate::webhook`]; the rule is [`crate::webhook::review`]): a request of the
//! agents' group passes only for a status-only pod of the caller's own node (`spec.nodeName`
//! empty, `schedulerName: kubeboot-agent`, the caller's `kubeboot.io/agent-node` label, no
//! ownerReferences; for updates, status writes and deletes the pod in the API must be one too).
//! Nothing else is touched: requests of every other user are allowed as they come.
//!
//! - The ValidatingWebhookConfiguration `kubeboot-agent` (init's `agent-rbac` phase) points at
//!   `https://127.0.0.1:10263/admission/pods`, with the cluster CA as caBundle; the serving
//!   certificate (IP SAN 127.0.0.1, signed by that CA) is written by `certs/kubeboot-agent-
//!   webhook` into the agent's directory. A URL, not a Service: each API server asks the agent
//!   on its own node, so admission never depends on pod networking or on another node.
//! - It is scoped by a namespace selector, `kubernetes.io/metadata.name=kube-system` (set by
//!   init; 1.21+ sets it on every namespace itself): only kube-system pod writes depend on the
//!   webhook, and those are exactly where the agents' RBAC applies. Never by an object
//!   selector, which a pod without the selected label would simply bypass.
//! - Creates and updates (pods, pods/status) fail closed (`failurePolicy: Fail`). With Ignore,
//!   the credential would bypass the check by sending its request through any API server
//!   whose webhook does not answer (an agent restarting or stopped).
//! - Deletes go to a second webhook that fails open (`Ignore`): a delete escalates nothing
//!   (the agent or controller that owns the pod makes it again) and `kubeboot reset` deletes
//!   its node's published pods after it stopped the agent, when nothing answers here.
//!
//! While a node's agent is down (restarting, upgraded, stopped), every kube-system pod create,
//! update and status write *through that node's API server* is refused ("failed calling
//! webhook"): controllers retry with backoff (ReplicaSets, DaemonSets), kubelets retry status
//! updates, and other API servers are not affected. The pods themselves keep running. The
//! agent restarts in seconds and adopts its pods; the webhook answers again as it starts.
//!
//! Stated limit: an API server on a control-plane node without a kubeboot agent (a node that
//! `kubeadm join --control-plane` set up) has no webhook behind 127.0.0.1:10263, so every
//! kube-system pod create or update sent to *that* API server fails until a kubeboot agent
//! runs there. The same holds for a RoleBinding of `kubeboot:agent` in another namespace: the
//! selector must be widened with it, or that namespace is unchecked. Every kubeboot
//! control-plane node serves the webhook, whichever `--static-pod-runner` it uses. Its serving
//! certificate is a leaf valid for a year like kubeadm's: renewing the control plane's
//! certificates must renew it too, or kube-system pod writes fail once it expires.
//!
//! # The loop
//!
//! Level-triggered, as the pod loop: it compares the agent's status board with what it last
//! wrote (no API call when nothing changed) every 2 s while the pods change, and every 10 s
//! once nothing has changed for a few passes (the kubelet's status manager syncs every 10 s
//! too: kubelet/status/status_manager.go syncPeriod), so a settled node's agent wakes for it
//! five times less often; a change seen brings back the 2 s pace. Every 30 s, or after an
//! error, it lists its own pods (label `kubeboot.io/agent-node=<node>`) and repairs the difference:
//! creates missing pods (someone deleted one), deletes pods whose manifest is gone or changed
//! (a changed manifest is a new pod, as for the kubelet's mirror pods), rewrites a status the
//! API does not show. Failures back off exponentially to 30 s, per pod and for the whole
//! connection; before the API has ever answered, failures are logged at debug level only.
//! It never touches a pod it did not publish ([`object::is_ours`]).

pub mod object;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, PodStatus as ApiPodStatus};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{debug, info, warn};

use crate::status::PodStatus;
use crate::supervisor::Shared;

/// How often the board is compared with what was last written while the pods change.
const TICK: Duration = Duration::from_secs(2);
/// The same once nothing changed for [`SETTLE_AFTER`] passes in a row.
const SETTLED_TICK: Duration = Duration::from_secs(10);
/// Passes without a change before the slower pace.
const SETTLE_AFTER: u32 = 5;
/// How often the agent's pods are listed from the API.
const RESYNC: Duration = Duration::from_secs(30);
/// The longest wait between attempts to reach the API server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait between attempts to write one pod (its failures are often brief, such
/// as the ServiceAccount that appears seconds after init).
const MAX_POD_BACKOFF: Duration = Duration::from_secs(10);
/// How often a missing kubeconfig is looked for.
const KUBECONFIG_POLL: Duration = Duration::from_secs(5);

type Key = (String, String);

/// One pod's source: the manifest as a Pod, read once per manifest hash.
struct Source {
    pod: Arc<Pod>,
    host_network: bool,
}

/// The wait before the next pass: [`TICK`] while the pods change (`changed`: the pass wrote or
/// failed something), [`SETTLED_TICK`] after [`SETTLE_AFTER`] quiet passes in a row. `quiet`
/// counts them.
fn pace(quiet: &mut u32, changed: bool) -> Duration {
    *quiet = if changed { 0 } else { quiet.saturating_add(1) };
    if *quiet >= SETTLE_AFTER {
        SETTLED_TICK
    } else {
        TICK
    }
}

/// Exponential backoff state.
#[derive(Default)]
pub(crate) struct Retry {
    pub(crate) failures: u32,
    not_before: Option<Instant>,
}

impl Retry {
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// How long until the next attempt may be made (zero when it may be made now).
    pub(crate) fn wait(&self, now: Instant) -> Duration {
        self.not_before
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    pub(crate) fn failed(&mut self, now: Instant, max: Duration) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_secs(1 << self.failures.min(5)).min(max);
        self.not_before = Some(now + delay);
    }

    /// [`Retry::failed`] for a loop that talks to the API server, and the log line: `what`
    /// stops working ("... are not being approved") said once as a warning, at the third failure
    /// in a row, and only once the API server has `ever_connected` (the agent starts it: before
    /// that a failure is expected); every other failure at debug level.
    pub(crate) fn failed_and_say(
        &mut self,
        now: Instant,
        max: Duration,
        ever_connected: bool,
        what: &str,
        e: &anyhow::Error,
    ) {
        self.failed(now, max);
        if ever_connected && self.failures == 3 {
            warn!("{what}; retrying every {max:?} at most: {e:#}");
        } else {
            debug!(failures = self.failures, "{e:#}");
        }
    }
}

struct Publisher {
    shared: Arc<Shared>,
    node: String,
    client: AgentClient,
    node_ip: Option<IpAddr>,
    node_ip_resolved: bool,
    waiting_announced: bool,
    ever_connected: bool,
    connection: Retry,
    /// Manifests read as pods, by pod UID.
    sources: HashMap<String, Source>,
    /// The agent's pods in the API as last seen, by namespace and name.
    observed: BTreeMap<Key, Pod>,
    /// The status last written for each pod.
    written: HashMap<Key, ApiPodStatus>,
    /// Pods whose last write failed.
    retries: HashMap<Key, Retry>,
    /// The last error logged per pod (each is logged once until it changes).
    logged: HashMap<Key, String>,
    last_list: Option<Instant>,
    relist: bool,
    /// Passes in a row that wrote nothing and failed nothing.
    quiet: u32,
}

/// Publishes the agent's pods until the task is aborted. Does nothing but look for the
/// kubeconfig every few seconds until it exists.
pub(crate) async fn run(shared: Arc<Shared>, client: AgentClient, node: String) {
    let mut p = Publisher {
        node_ip: shared.cfg.node_ip,
        node_ip_resolved: shared.cfg.node_ip.is_some(),
        shared,
        node,
        client,
        waiting_announced: false,
        ever_connected: false,
        connection: Retry::default(),
        sources: HashMap::new(),
        observed: BTreeMap::new(),
        written: HashMap::new(),
        retries: HashMap::new(),
        logged: HashMap::new(),
        last_list: None,
        relist: true,
        quiet: 0,
    };
    loop {
        let delay = p.tick().await;
        tokio::time::sleep(delay).await;
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

pub(crate) fn api_error(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

/// A kube error for the log: the API server's own message, not the whole Status.
pub(crate) fn short(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow::anyhow!("{} ({}, {})", s.message, s.reason, s.code),
        other => other.into(),
    }
}

/// The kubeconfig's modification time, or None when it does not exist.
fn kubeconfig_mtime(path: &Path) -> anyhow::Result<Option<Option<SystemTime>>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.modified().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "could not read the agent's kubeconfig {:?}",
                path.display().to_string()
            )
        }),
    }
}

/// Clients from an explicit kubeconfig, never the environment: one for requests, with bounded
/// timeouts, and one for watches, without a read timeout (a watch is a long poll, silent while
/// nothing changes; its silence is bounded by its user).
async fn client_from(path: &Path) -> anyhow::Result<(Client, Client)> {
    let shown = path.display().to_string();
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("could not read the agent's kubeconfig {shown:?}"))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("the agent's kubeconfig {shown:?} is not usable"))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = None;
    config.write_timeout = Some(Duration::from_secs(15));
    let watches = Client::try_from(config.clone())
        .with_context(|| format!("could not build a client from {shown:?}"))?;
    config.read_timeout = Some(Duration::from_secs(15));
    let requests = Client::try_from(config)
        .with_context(|| format!("could not build a client from {shown:?}"))?;
    Ok((requests, watches))
}

/// A client from the agent's kubeconfig (`kubeboot-agent.conf`), built when the file appears
/// and again whenever it changes, and shared by the agent's API tasks (this publisher,
/// [`crate::csr_approver`]): [`AgentClient::share`] gives another task a handle on the same
/// client, so the agent keeps one TLS configuration and one connection to the API server,
/// not one per task.
pub(crate) struct AgentClient {
    kubeconfig: PathBuf,
    cell: Arc<Mutex<ClientCell>>,
    /// The generation of the client this handle last returned (0: none yet).
    seen: u64,
}

/// What the handles share: the client, and how many were built.
#[derive(Default)]
struct ClientCell {
    built: Option<BuiltClient>,
    /// Counts the builds, never reset: each handle says "fresh" once per new client.
    generations: u64,
}

/// The shared client, with the kubeconfig's modification time it was built from.
struct BuiltClient {
    client: Client,
    /// The same, without a read timeout, for watches.
    watches: Client,
    mtime: Option<SystemTime>,
    generation: u64,
}

impl AgentClient {
    pub(crate) fn new(kubeconfig: PathBuf) -> Self {
        AgentClient {
            kubeconfig,
            cell: Arc::new(Mutex::new(ClientCell::default())),
            seen: 0,
        }
    }

    /// Another handle on the same client, for another task; it has seen no client yet.
    pub(crate) fn share(&self) -> Self {
        AgentClient {
            kubeconfig: self.kubeconfig.clone(),
            cell: self.cell.clone(),
            seen: 0,
        }
    }

    /// The kubeconfig's path.
    pub(crate) fn path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The client and whether it is new to this handle (built, or rebuilt, since the handle
    /// last got one); None while the kubeconfig does not exist.
    pub(crate) async fn get(&mut self) -> anyhow::Result<Option<(Client, bool)>> {
        let Some(mtime) = kubeconfig_mtime(&self.kubeconfig)? else {
            self.lock().built = None;
            return Ok(None);
        };
        let current = self
            .lock()
            .built
            .as_ref()
            .filter(|b| b.mtime == mtime)
            .map(|b| (b.client.clone(), b.generation));
        let (client, generation) = match current {
            Some(c) => c,
            None => {
                // Built outside the lock (it awaits); two handles racing here both build, and
                // the later one is kept: harmless.
                let (client, watches) = client_from(&self.kubeconfig).await?;
                let mut cell = self.lock();
                cell.generations += 1;
                let generation = cell.generations;
                cell.built = Some(BuiltClient {
                    client: client.clone(),
                    watches,
                    mtime,
                    generation,
                });
                (client, generation)
            }
        };
        let fresh = generation != self.seen;
        self.seen = generation;
        Ok(Some((client, fresh)))
    }

    /// The client for watches (no read timeout) beside the one [`AgentClient::get`] last
    /// returned; None before that.
    pub(crate) fn watches(&self) -> Option<Client> {
        self.lock().built.as_ref().map(|b| b.watches.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClientCell> {
        // A poisoned lock only means a task panicked while holding it; the value is whole.
        self.cell.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The node's address as the kubelet finds it without --node-ip (kubelet: nodestatus
/// NodeAddress): the node name resolved, loopback addresses skipped, IPv4 first.
async fn resolve_node_ip(node: &str) -> Option<IpAddr> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((node, 0))
        .await
        .ok()?
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_multicast())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

impl Publisher {
    /// One pass; returns how long to wait before the next.
    async fn tick(&mut self) -> Duration {
        let now = Instant::now();
        if !self.connection.ready(now) {
            return self.connection.wait(now).max(TICK);
        }
        let client = match self.ensure_client().await {
            Ok(Some(c)) => c,
            Ok(None) => return KUBECONFIG_POLL,
            Err(e) => {
                self.connection_failed(now, &e);
                return TICK;
            }
        };
        if !self.node_ip_resolved {
            self.node_ip = resolve_node_ip(&self.node).await;
            self.node_ip_resolved = true;
            match self.node_ip {
                Some(ip) => debug!(%ip, "pods in the API get this node's address"),
                None => {
                    warn!(node = %self.node, "could not resolve the node name to an address; the agent's pods in the API have no hostIP")
                }
            }
        }
        let status = crate::supervisor::snapshot(&self.shared);
        let runtime = status.runtime.clone();
        let desired: Vec<PodStatus> = status
            .pods
            .into_iter()
            .filter(|p| p.phase != "Terminating")
            .collect();
        self.load_sources(&desired);
        let resync = self.relist || self.last_list.is_none_or(|t| now >= t + RESYNC);
        if resync && let Err(e) = self.list(&client, &desired).await {
            self.connection_failed(now, &e);
            return TICK;
        }
        if !self.ever_connected {
            info!("publishing the static pods to the API server");
            self.ever_connected = true;
        }
        self.connection = Retry::default();
        // Whether this pass wrote or failed anything (or has a write to retry).
        let mut changed = !self.retries.is_empty();
        let mut wanted = BTreeSet::new();
        for pod in &desired {
            let key = (pod.namespace.clone(), pod.name.clone());
            wanted.insert(key.clone());
            if !self.retries.get(&key).is_none_or(|r| r.ready(now)) {
                continue;
            }
            match self.sync_pod(&client, pod, &runtime, resync).await {
                Ok(wrote) => {
                    changed |= wrote;
                    self.retries.remove(&key);
                    if self.logged.remove(&key).is_some() {
                        info!(pod = %format!("{}/{}", key.0, key.1), "pod published");
                    }
                }
                Err(e) => {
                    changed = true;
                    self.retries
                        .entry(key.clone())
                        .or_default()
                        .failed(now, MAX_POD_BACKOFF);
                    self.relist = true;
                    self.report(&key, &e);
                }
            }
        }
        let gone: Vec<Key> = self
            .observed
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            changed = true;
            if let Err(e) = self.delete(&client, &key).await {
                self.relist = true;
                self.report(&key, &e);
            }
        }
        self.written.retain(|k, _| wanted.contains(k));
        self.retries.retain(|k, _| wanted.contains(k));
        pace(&mut self.quiet, changed)
    }

    fn report(&mut self, key: &Key, e: &anyhow::Error) {
        let msg = format!("{e:#}");
        // Right after init, ServiceAccount admission refuses every pod until the
        // controller-manager has created kube-system/default: expected, and retried.
        if msg.contains("error looking up service account") {
            debug!(pod = %format!("{}/{}", key.0, key.1), "waiting for the namespace's default ServiceAccount: {msg}");
            return;
        }
        if self.logged.get(key) != Some(&msg) {
            warn!(pod = %format!("{}/{}", key.0, key.1), "could not publish the pod to the API: {msg}");
            self.logged.insert(key.clone(), msg);
        }
    }

    fn connection_failed(&mut self, now: Instant, e: &anyhow::Error) {
        self.connection.failed(now, MAX_BACKOFF);
        self.relist = true;
        // The API server is often not up yet (the agent starts it): stay quiet until it has
        // answered once.
        if self.ever_connected && self.connection.failures == 3 {
            warn!("the API server does not answer; retrying every {MAX_BACKOFF:?} at most: {e:#}");
        } else {
            debug!(
                failures = self.connection.failures,
                "API server not reachable: {e:#}"
            );
        }
    }

    /// The client, built (again) when the kubeconfig appears or changes; None while it does
    /// not exist.
    async fn ensure_client(&mut self) -> anyhow::Result<Option<Client>> {
        let Some((client, fresh)) = self.client.get().await? else {
            if !self.waiting_announced {
                info!(kubeconfig = %self.client.path().display(), "the static pods are published to the API once this kubeconfig exists");
                self.waiting_announced = true;
            }
            return Ok(None);
        };
        if fresh {
            debug!(kubeconfig = %self.client.path().display(), "API client ready");
            self.relist = true;
        }
        Ok(Some(client))
    }

    /// Reads the manifests of pods not seen before; forgets those of pods gone.
    fn load_sources(&mut self, desired: &[PodStatus]) {
        let uids: BTreeSet<&str> = desired.iter().map(|p| p.uid.as_str()).collect();
        self.sources.retain(|uid, _| uids.contains(uid.as_str()));
        for p in desired {
            if self.sources.contains_key(&p.uid) {
                continue;
            }
            let path = Path::new(&p.manifest);
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            // The file may have changed since the pod started: only the bytes with this pod's
            // hash describe it.
            let same = crate::pod::spec::parse_manifest(
                path,
                &bytes,
                self.shared.cfg.node_name.as_deref(),
            )
            .is_ok_and(|s| s.uid == p.uid);
            if !same {
                continue;
            }
            if let Ok(pod) = object::parse_pod(path, &bytes) {
                let host_network = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false);
                self.sources.insert(
                    p.uid.clone(),
                    Source {
                        pod: Arc::new(pod),
                        host_network,
                    },
                );
            }
        }
    }

    /// Lists this node's pods in kube-system and every namespace of a desired pod.
    async fn list(&mut self, client: &Client, desired: &[PodStatus]) -> anyhow::Result<()> {
        let mut namespaces: BTreeSet<&str> = desired.iter().map(|p| p.namespace.as_str()).collect();
        namespaces.insert(components::names::KUBE_SYSTEM);
        let selector = format!(
            "{}={}",
            components::names::LABEL_AGENT_NODE,
            object::node_label_value(&self.node)
        );
        let mut observed = BTreeMap::new();
        for ns in namespaces {
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            let list = match api.list(&ListParams::default().labels(&selector)).await {
                Ok(l) => l,
                // No right to list there (the RBAC covers kube-system): nothing of ours there
                // can be repaired either; the pod's own write reports it.
                Err(e)
                    if api_error(&e).is_some_and(|s| s.code == 403)
                        && ns != components::names::KUBE_SYSTEM =>
                {
                    continue;
                }
                Err(e) => {
                    return Err(short(e))
                        .with_context(|| format!("could not list the agent's pods in {ns}"));
                }
            };
            for pod in list.items {
                if object::is_ours(&pod, &self.node)
                    && let Some(name) = pod.metadata.name.clone()
                {
                    observed.insert((ns.to_string(), name), pod);
                }
            }
        }
        self.observed = observed;
        self.last_list = Some(Instant::now());
        self.relist = false;
        Ok(())
    }

    /// Creates the pod if the API lacks it (or has it for another manifest), then writes its
    /// status if it differs from what was last written (or, after a list, from what the API
    /// shows). True when it wrote something.
    async fn sync_pod(
        &mut self,
        client: &Client,
        pod: &PodStatus,
        runtime: &str,
        listed: bool,
    ) -> anyhow::Result<bool> {
        let key = (pod.namespace.clone(), pod.name.clone());
        let Some(source) = self.sources.get(&pod.uid) else {
            // Its manifest changed or vanished since it started: the pod is on its way out.
            return Ok(false);
        };
        let (manifest, host_network) = (source.pod.clone(), source.host_network);
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
        let stale = self
            .observed
            .get(&key)
            .is_some_and(|o| object::config_hash(o) != Some(pod.uid.as_str()));
        if stale {
            info!(pod = %format!("{}/{}", key.0, key.1), "manifest changed; publishing the pod again");
            self.delete(client, &key).await?;
        }
        if !self.observed.contains_key(&key) {
            let created = self
                .create(&api, &object::api_pod(&manifest, pod, &self.node))
                .await?;
            self.written.remove(&key);
            self.observed.insert(key.clone(), created);
        }
        let observed = self.observed.get(&key).expect("inserted above");
        let ctx = object::StatusContext {
            node_ip: self.node_ip,
            host_network,
            runtime,
            now_unix: now_unix(),
        };
        let status = object::api_status(pod, &ctx, observed.status.as_ref());
        let changed = self.written.get(&key) != Some(&status);
        let drifted = listed && {
            let want = serde_json::to_value(&status).context("could not encode a pod status")?;
            let have =
                serde_json::to_value(&observed.status).context("could not encode a pod status")?;
            !object::covers(&want, &have)
        };
        if !changed && !drifted {
            return Ok(false);
        }
        let mut update = observed.clone();
        update.status = Some(status.clone());
        match api
            .replace_status(&pod.name, &PostParams::default(), &update)
            .await
        {
            Ok(updated) => {
                debug!(pod = %pod.name, phase = %pod.phase, "pod status written");
                self.observed.insert(key.clone(), updated);
                self.written.insert(key, status);
                Ok(true)
            }
            Err(e) => {
                if api_error(&e).is_some_and(|s| s.code == 404 || s.code == 409) {
                    // Deleted or changed behind our back: see again at the next list.
                    self.observed.remove(&key);
                }
                Err(short(e)).context("could not write the pod's status")
            }
        }
    }

    async fn create(&self, api: &Api<Pod>, pod: &Pod) -> anyhow::Result<Pod> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), pod).await {
            Ok(p) => {
                info!(pod = %name, "pod created in the API");
                Ok(p)
            }
            Err(e) if api_error(&e).is_some_and(|s| s.code == 409) => {
                let existing = api
                    .get(&name)
                    .await
                    .map_err(short)
                    .with_context(|| format!("could not read the existing pod {name}"))?;
                anyhow::ensure!(
                    object::is_ours(&existing, &self.node),
                    "a pod named {name} exists that this node's agent did not publish (a kubelet's mirror pod?); delete it to let the agent publish its own"
                );
                Ok(existing)
            }
            Err(e) => Err(short(e)).with_context(|| format!("could not create the pod {name}")),
        }
    }

    /// Deletes one of this node's pods, only the very object last seen (UID precondition).
    async fn delete(&mut self, client: &Client, key: &Key) -> anyhow::Result<()> {
        let Some(pod) = self.observed.get(key) else {
            return Ok(());
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&key.1, &dp).await {
            Ok(_) => info!(pod = %format!("{}/{}", key.0, key.1), "pod deleted from the API"),
            Err(e) if api_error(&e).is_some_and(|s| s.code == 404 || s.code == 409) => {}
            Err(e) => {
                return Err(short(e))
                    .with_context(|| format!("could not delete the pod {}", key.1));
            }
        }
        self.observed.remove(key);
        self.written.remove(key);
        self.logged.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig kube accepts without a network (nothing is sent in these tests).
    fn write_kubeconfig(path: &Path, server: &str) {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n"
        );
        std::fs::write(path, yaml).unwrap();
    }

    #[test]
    fn the_pace_slows_once_nothing_changes_and_quickens_at_the_first_change() {
        let mut quiet = 0;
        // Pods changing: every 2 s.
        assert_eq!(pace(&mut quiet, true), TICK);
        for _ in 1..SETTLE_AFTER {
            assert_eq!(pace(&mut quiet, false), TICK);
        }
        // Settled: every 10 s, for as long as nothing changes.
        for _ in 0..100 {
            assert_eq!(pace(&mut quiet, false), SETTLED_TICK);
        }
        // A change (a restart, a probe turning): the 2 s pace at once, until settled again.
        assert_eq!(pace(&mut quiet, true), TICK);
        assert_eq!(pace(&mut quiet, false), TICK);
        assert!(SETTLED_TICK > TICK);
    }

    fn generation(c: &AgentClient) -> Option<u64> {
        c.lock().built.as_ref().map(|b| b.generation)
    }

    #[tokio::test]
    async fn shared_handles_build_one_client_and_each_sees_it_fresh_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.conf");
        let mut mirror = AgentClient::new(path.clone());
        let mut approver = mirror.share();
        assert!(mirror.get().await.unwrap().is_none(), "no kubeconfig yet");

        write_kubeconfig(&path, "http://127.0.0.1:1");
        assert!(mirror.watches().is_none());
        let (_, fresh) = mirror.get().await.unwrap().unwrap();
        assert!(fresh);
        assert_eq!(generation(&mirror), Some(1));
        assert!(mirror.watches().is_some() && approver.watches().is_some());
        // The other task gets the same client, new to it, without a second build.
        let (_, fresh) = approver.get().await.unwrap().unwrap();
        assert!(fresh);
        assert_eq!(generation(&approver), Some(1));
        assert!(!mirror.get().await.unwrap().unwrap().1);
        assert!(!approver.get().await.unwrap().unwrap().1);

        // A changed kubeconfig: one rebuild, fresh once for each handle.
        let later = SystemTime::now() + Duration::from_secs(5);
        write_kubeconfig(&path, "http://127.0.0.1:2");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(approver.get().await.unwrap().unwrap().1);
        assert_eq!(generation(&approver), Some(2));
        assert!(mirror.get().await.unwrap().unwrap().1);
        assert_eq!(generation(&mirror), Some(2));
        assert!(!mirror.get().await.unwrap().unwrap().1);

        // Gone: both wait again; back: a new client, fresh for both.
        std::fs::remove_file(&path).unwrap();
        assert!(mirror.get().await.unwrap().is_none());
        assert!(approver.get().await.unwrap().is_none());
        assert_eq!(generation(&mirror), None);
        write_kubeconfig(&path, "http://127.0.0.1:1");
        assert!(mirror.get().await.unwrap().unwrap().1);
        assert!(approver.get().await.unwrap().unwrap().1);
        assert_eq!(generation(&approver), Some(3));
    }
}
