//! Gives new Nodes their podCIDRs where the controller-manager's node IPAM controller is off
//! ([`Allocation::Kubeboot`]: `--allocate-node-cidrs=true` with `--controllers=...,-nodeipam`,
//! what `kubeboot init` sets up; why in [`components::pod_cidr`]).
//!
//! It runs in every control-plane node's agent (where the agent's kubeconfig exists), and
//! gives podCIDRs only while this node's own controller-manager manifest says that nobody else
//! does, read again before every pass: once the controller-manager runs node IPAM again (the
//! user took `-nodeipam` out of `controllerManager.extraArgs` and upgraded), it is left to it.
//!
//! The choice is the range allocator's ([`NodeIpam::first_free`]): the first free node subnet
//! of each cluster CIDR, with the Service ranges, every Node's podCIDRs and the ones given
//! earlier in the pass counted as used. A freshly started kube-controller-manager chooses the
//! same. Nodes waiting at the same time get theirs oldest first.
//!
//! One agent at a time: before it gives any, an agent takes the Lease
//! `kube-system/kubeboot-node-ipam` ([`lease_step`], as client-go's leader election: it
//! creates it, or takes it when it holds it already, when its holder released it, or when it
//! saw no renewal for the lease's duration), gives podCIDRs only while the lease is surely its
//! own, and releases it at the end of the pass (holderIdentity cleared, as client-go's
//! ReleaseOnCancel). So an idle cluster costs no Lease write at all, and another agent need
//! not wait for an expiry. The API server lets spec.podCIDR be set only once, so a Node never
//! gets a second one whatever happens.
//!
//! A Node gets its podCIDR once the kubelet made its CSINode, or [`CSINODE_WAIT`] after this
//! agent first saw it without one: the kubelet sends a status update right after it first sees
//! its podCIDR and reports the node NotReady while its CSINode is missing, so this order makes
//! a joining node Ready on that update instead of 10 s later (`phases::init::pod_cidr` does the
//! same for the first node).
//!
//! Level-triggered, as [`crate::csr_approver`]: the Nodes are listed, then watched from the
//! list's resourceVersion, and a pass runs whenever a Node waits for a podCIDR. An idle cluster
//! costs the watch alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use components::names;
use components::pod_cidr::{Allocation, NodeIpam};
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::storage::v1::CSINode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use tracing::{debug, info, warn};

use crate::mirror::{AgentClient, Retry, api_error, short};

/// How long a Lease this agent takes is valid (client-go's default LeaseDuration, which
/// kube-controller-manager uses).
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long before the lease's end this agent stops giving podCIDRs (client-go's margin
/// between RenewDeadline and LeaseDuration): another agent's clock may run a little fast.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often a Lease another agent holds is looked at again.
const LEASE_POLL: Duration = Duration::from_secs(1);
/// How long a Node waits for its CSINode at most before it gets its podCIDR.
pub(crate) const CSINODE_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting Node's CSINode is looked for.
const CSINODE_POLL: Duration = Duration::from_millis(200);
/// How often the controller-manager's manifest is read while it gives podCIDRs itself.
const MANIFEST_POLL: Duration = Duration::from_secs(30);
/// How often it is looked for while it is missing on a control-plane node (`init` and `join`
/// write it a moment after the agent starts).
const MANIFEST_MISSING_POLL: Duration = Duration::from_secs(2);
/// How often a missing kubeconfig is looked for.
const KUBECONFIG_POLL: Duration = Duration::from_secs(5);
/// The shortest time between two rounds (a watch that ends at once costs a list per second).
const MIN_ROUND: Duration = Duration::from_secs(1);
/// How long the API server keeps one watch of the Nodes open before they are listed again.
const WATCH_SECONDS: u32 = 290;
/// A watch that delivers nothing at all for this long, not even its end, is given up.
const WATCH_SILENCE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 60);
/// The longest wait between attempts to reach the API server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The RBAC hint in every error about a refused request.
fn rbac_hint() -> String {
    format!(
        "the ClusterRole and Role {:?} grant it to the agents; \"kubeboot init phase agent-rbac\" creates them",
        names::KUBEBOOT_NODE_IPAM_ROLE
    )
}

/// Who gives podCIDRs, as the controller-manager manifest `text` says (`None`: no readable
/// manifest).
pub fn allocation_of_manifest(text: &str) -> Option<Allocation> {
    let pod: Pod = yaml_serde::from_str(text).ok()?;
    pod.spec.as_ref()?.containers.first()?;
    Some(Allocation::of(&container_command(&pod)))
}

/// The command line of `pod`'s first container: its command, then its args.
pub fn container_command(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.first())
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .cloned()
        .collect()
}

/// What the allocator uses of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// metadata.name.
    pub name: String,
    /// metadata.uid: a Node deleted and made again under its name waits anew.
    pub uid: String,
    /// metadata.creationTimestamp (RFC 3339; compares in time order).
    pub created: String,
    /// spec.podCIDRs, else spec.podCIDR.
    pub pod_cidrs: Vec<String>,
}

impl NodeFacts {
    /// The facts of `n`.
    pub fn from_node(n: &Node) -> NodeFacts {
        NodeFacts {
            name: n.metadata.name.clone().unwrap_or_default(),
            uid: n.metadata.uid.clone().unwrap_or_default(),
            created: n
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            pod_cidrs: crate::node_network::pod_cidrs(n),
        }
    }
}

/// The Nodes as last listed or watched, by name.
#[derive(Debug, Default)]
pub struct Nodes(BTreeMap<String, NodeFacts>);

impl Nodes {
    /// The Nodes of a list.
    pub fn from_nodes(nodes: &[Node]) -> Nodes {
        Nodes(
            nodes
                .iter()
                .map(NodeFacts::from_node)
                .map(|f| (f.name.clone(), f))
                .collect(),
        )
    }

    /// Takes in one watch event; true when a pass is due: the Nodes waiting for a podCIDR
    /// changed (one came or went, or got its podCIDR), or a Node that held one went while
    /// another waits (a full pod subnet has room again). Status heartbeats and everything
    /// else are false.
    pub fn apply(&mut self, event: &WatchEvent<Node>) -> bool {
        match event {
            WatchEvent::Added(n) | WatchEvent::Modified(n) => self.put(NodeFacts::from_node(n)),
            WatchEvent::Deleted(n) => {
                let name = n.metadata.name.as_deref().unwrap_or_default();
                let Some(gone) = self.0.remove(name) else {
                    return false;
                };
                gone.pod_cidrs.is_empty() || self.0.values().any(|f| f.pod_cidrs.is_empty())
            }
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => false,
        }
    }

    /// Puts in one Node's facts; true when the Nodes waiting for a podCIDR changed.
    pub fn put(&mut self, f: NodeFacts) -> bool {
        let waits = f.pod_cidrs.is_empty();
        match self.0.insert(f.name.clone(), f.clone()) {
            None => waits,
            Some(old) => old.pod_cidrs.is_empty() != waits || (waits && old.uid != f.uid),
        }
    }

    /// Whether the Node `f` names (the same UID) is there and still waits.
    pub fn waits(&self, f: &NodeFacts) -> bool {
        self.0
            .get(&f.name)
            .is_some_and(|n| n.uid == f.uid && n.pod_cidrs.is_empty())
    }

    /// The Nodes without a podCIDR, oldest first (then by name).
    pub fn waiting(&self) -> Vec<NodeFacts> {
        let mut v: Vec<NodeFacts> = self
            .0
            .values()
            .filter(|f| f.pod_cidrs.is_empty())
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
        v
    }

    /// Every Node's podCIDRs, and the ones `ipam` does not count as used, with their Node: they
    /// do not parse or lie outside the cluster CIDR at their index (the range allocator then
    /// refuses to start; [`NodeIpam::first_free_skipping`] leaves them out).
    pub fn taken(&self, ipam: &NodeIpam) -> (Vec<Vec<String>>, Vec<(String, String)>) {
        let mut taken = Vec::new();
        let mut refused = Vec::new();
        for f in self.0.values().filter(|f| !f.pod_cidrs.is_empty()) {
            for (i, text) in f.pod_cidrs.iter().enumerate() {
                if !ipam.accepts_entry(i, text) {
                    refused.push((f.name.clone(), text.clone()));
                }
            }
            taken.push(f.pod_cidrs.clone());
        }
        (taken, refused)
    }
}

/// What a pass gives: each of `ready` (oldest first) the range allocator's next choice, the
/// ones given before it counted as used, and the Nodes left waiting because a cluster CIDR is
/// full.
pub fn plan(
    ipam: &NodeIpam,
    taken: &[Vec<String>],
    ready: &[NodeFacts],
) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut taken = taken.to_vec();
    let mut given = Vec::new();
    let mut full = Vec::new();
    for f in ready {
        match ipam.first_free_skipping(&taken) {
            Some(cidrs) => {
                let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
                taken.push(cidrs.clone());
                given.push((f.name.clone(), cidrs));
            }
            None => full.push(f.name.clone()),
        }
    }
    (given, full)
}

/// The Lease as this agent last saw it held by another one, and since when it saw it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    holder: String,
    renewed: String,
    since: Instant,
}

/// What to do about the Lease before a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// Take it (or renew it): it is this agent's, released, or expired.
    Take,
    /// Another agent holds it: look again after this long.
    Wait(Duration),
}

/// Decides what this agent (`me`) does about `lease` at `now`, as client-go's
/// tryAcquireOrRenew: expiry is judged by when this agent saw the holder's last renewal
/// (`seen`, updated here), never by the holder's own clock.
pub fn lease_step(lease: &Lease, me: &str, seen: &mut Option<Seen>, now: Instant) -> LeaseStep {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder.is_empty() || holder == me {
        *seen = None;
        return LeaseStep::Take;
    }
    let renewed = spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default();
    let duration = Duration::from_secs(
        spec.lease_duration_seconds
            .unwrap_or(LEASE_DURATION.as_secs() as i32)
            .clamp(1, 3600) as u64,
    );
    let same = seen
        .as_ref()
        .is_some_and(|s| s.holder == holder && s.renewed == renewed);
    if !same {
        *seen = Some(Seen {
            holder,
            renewed,
            since: now,
        });
    }
    let since = seen.as_ref().map_or(now, |s| s.since);
    let held = now.saturating_duration_since(since);
    if held >= duration {
        LeaseStep::Take
    } else {
        LeaseStep::Wait((duration - held).min(LEASE_POLL))
    }
}

/// The Lease this agent writes at `now` to take `old` (`held`) or release it, at `old`'s
/// resourceVersion (a replace that fails if anyone wrote it meanwhile).
pub fn lease_record(old: &Lease, me: &str, held: bool, now: MicroTime) -> Lease {
    let old_spec = old.spec.clone().unwrap_or_default();
    let was_mine = old_spec.holder_identity.as_deref() == Some(me);
    let transitions = old_spec.lease_transitions.unwrap_or(0);
    let spec = if held {
        LeaseSpec {
            holder_identity: Some(me.to_string()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: if was_mine {
                old_spec.acquire_time.or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if was_mine {
                transitions
            } else {
                transitions + 1
            }),
            ..Default::default()
        }
    } else {
        // client-go's release: no holder, a one-second duration.
        LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    };
    Lease {
        metadata: ObjectMeta {
            name: Some(names::KUBEBOOT_NODE_IPAM_LEASE.to_string()),
            namespace: Some(names::KUBE_SYSTEM.to_string()),
            resource_version: old.metadata.resource_version.clone(),
            ..Default::default()
        },
        spec: Some(spec),
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// `e` with what failed, and the RBAC hint where the API server refused it (403).
fn api_failure(e: kube::Error, what: String) -> anyhow::Error {
    let forbidden = api_error(&e).is_some_and(|s| s.code == 403);
    let e = short(e);
    if forbidden {
        e.context(format!("{what} ({})", rbac_hint()))
    } else {
        e.context(what)
    }
}

/// What the task holds between rounds.
struct Allocator {
    client: AgentClient,
    /// This agent's identity in the Lease: its node's name and a random suffix per process,
    /// as client-go's (two agents of one node, an old one still stopping, are two holders).
    me: String,
    manifest: PathBuf,
    connection: Retry,
    ever_connected: bool,
    /// Whether podCIDRs were last found to be this agent's to give (logged when it changes).
    allocating: Option<bool>,
    nodes: Nodes,
    /// When this agent first saw each waiting Node (by UID).
    first_seen: HashMap<String, Instant>,
    lease_seen: Option<Seen>,
    /// What was said once already (a refused podCIDR, a full pod subnet, a refused patch),
    /// forgotten when it no longer holds.
    said: BTreeSet<String>,
}

/// Gives podCIDRs until the task is aborted. `manifest` is this node's controller-manager
/// manifest; `node` this node's name.
pub(crate) async fn run(client: AgentClient, node: String, manifest: PathBuf) {
    let mut a = Allocator {
        client,
        me: format!("{node}_{:08x}", rand::random::<u32>()),
        manifest,
        connection: Retry::default(),
        ever_connected: false,
        allocating: None,
        nodes: Nodes::default(),
        first_seen: HashMap::new(),
        lease_seen: None,
        said: BTreeSet::new(),
    };
    loop {
        let started = Instant::now();
        let delay = a.round().await;
        tokio::time::sleep(delay.max(MIN_ROUND.saturating_sub(started.elapsed()))).await;
    }
}

impl Allocator {
    /// This node's controller-manager manifest's node IPAM when the agents give podCIDRs;
    /// says when that changes.
    fn ipam(&mut self) -> Option<NodeIpam> {
        let allocation = std::fs::read_to_string(&self.manifest)
            .ok()
            .and_then(|t| allocation_of_manifest(&t));
        let ipam = match &allocation {
            Some(Allocation::Kubeboot(ipam)) => Some(ipam.clone()),
            _ => None,
        };
        let now = ipam.is_some();
        if self.allocating != Some(now) {
            match (&allocation, now) {
                (_, true) => info!(
                    manifest = %self.manifest.display(),
                    "giving Nodes their podCIDRs: the controller-manager runs without its node IPAM controller (--controllers=...,-{})",
                    components::pod_cidr::NODE_IPAM_CONTROLLER
                ),
                // Only a change away from allocating is worth saying.
                (Some(Allocation::ControllerManager(_)), false) if self.allocating.is_some() => {
                    warn!(
                        "this node's controller-manager gives Nodes their podCIDRs again: this agent stops; restart every controller-manager once no control-plane node's manifest says -{} (its node IPAM learns the podCIDRs given so far only when it starts)",
                        components::pod_cidr::NODE_IPAM_CONTROLLER
                    )
                }
                _ => {
                    debug!(manifest = %self.manifest.display(), "the controller-manager's manifest does not leave podCIDRs to the agents")
                }
            }
            self.allocating = Some(now);
        }
        ipam
    }

    /// Says `line` at warning level once while `key` holds (see [`Allocator::forget`]).
    fn say_once(&mut self, key: String, line: &str) {
        if self.said.insert(key) {
            warn!("{line}");
        }
    }

    /// Forgets what was said under `prefix` and holds no longer (not in `still`).
    fn forget(&mut self, prefix: &str, still: &BTreeSet<String>) {
        self.said
            .retain(|k| !k.starts_with(prefix) || still.contains(k));
    }

    /// One round: list the Nodes, then watch them, a pass whenever one waits; returns how long
    /// to wait before the next round.
    async fn round(&mut self) -> Duration {
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
        if self.ipam().is_none() {
            // `init` and `join` write the manifest after the agent starts.
            return if self.manifest.exists() {
                MANIFEST_POLL
            } else {
                MANIFEST_MISSING_POLL
            };
        }
        match self.list_and_watch(&client).await {
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
            "Nodes may not be getting their podCIDRs",
            e,
        );
    }

    async fn list_nodes(&mut self, client: &Client) -> anyhow::Result<String> {
        let api: Api<Node> = Api::all(client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_failure(e, "could not list Nodes".into()))?;
        self.ever_connected = true;
        self.nodes = Nodes::from_nodes(&list.items);
        Ok(list.metadata.resource_version.unwrap_or_default())
    }

    async fn list_and_watch(&mut self, client: &Client) -> anyhow::Result<()> {
        let version = self.list_nodes(client).await?;
        // The watch's own client: the requests' one gives up on a connection silent for 15 s.
        let watches: Api<Node> = Api::all(self.client.watches().unwrap_or_else(|| client.clone()));
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        let stream = match watches.watch(&params, &version).await {
            Ok(s) => s,
            // Too old a version: the next round lists afresh.
            Err(e) if api_error(&e).is_some_and(|s| s.code == 410) => return Ok(()),
            Err(e) => return Err(api_failure(e, "could not watch Nodes".into())),
        };
        let mut stream = std::pin::pin!(stream);
        let mut heard = Instant::now();
        // A pass at once when a Node waits; then when the last pass asked.
        let mut due = Some(Instant::now());
        loop {
            if due.is_some_and(|d| Instant::now() >= d) {
                due = self.pass(client).await?.map(|d| Instant::now() + d);
            }
            let wake = due.unwrap_or(heard + WATCH_SILENCE);
            tokio::select! {
                event = stream.next() => {
                    heard = Instant::now();
                    match event {
                        Some(Ok(WatchEvent::Error(s))) => {
                            debug!("the Node watch ended: {} ({})", s.message, s.code);
                            return Ok(());
                        }
                        Some(Ok(event)) => {
                            if self.nodes.apply(&event) {
                                due = Some(Instant::now());
                            }
                        }
                        Some(Err(e)) => {
                            debug!("the Node watch broke: {e}; listing again");
                            return Ok(());
                        }
                        None => return Ok(()),
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if due.is_none() && heard.elapsed() >= WATCH_SILENCE {
                        debug!("the Node watch was silent for {WATCH_SILENCE:?}; listing again");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// One pass over the waiting Nodes: those whose CSINode exists (or that waited long
    /// enough) get their podCIDRs under the Lease. Returns when to pass again (`None`: when a
    /// Node comes to wait).
    async fn pass(&mut self, client: &Client) -> anyhow::Result<Option<Duration>> {
        let Some(ipam) = self.ipam() else {
            return Ok(None);
        };
        let now = Instant::now();
        let waiting = self.nodes.waiting();
        self.first_seen
            .retain(|uid, _| waiting.iter().any(|f| &f.uid == uid));
        let mut ready = Vec::new();
        let mut again = None;
        for f in waiting {
            let first = *self.first_seen.entry(f.uid.clone()).or_insert(now);
            if now.saturating_duration_since(first) >= CSINODE_WAIT
                || csinode_exists(client, &f.name).await
            {
                ready.push(f);
            } else {
                again = Some(CSINODE_POLL);
            }
        }
        if ready.is_empty() {
            return Ok(again);
        }
        let (lease, held_until) = match self.take_lease(client).await? {
            Ok(held) => held,
            Err(wait) => return Ok(Some(wait)),
        };
        let given = self.give(client, &ipam, &ready, held_until).await;
        self.release_lease(client, lease).await;
        Ok(if given? { Some(Duration::ZERO) } else { again })
    }

    /// Gives each of `ready` that still waits its podCIDRs while the lease lasts, from a fresh
    /// list of the Nodes. True when the lease ran out first.
    ///
    /// # Errors
    /// The list failed, or a patch's outcome is unknown (a timeout, a server error): the pass
    /// stops there, and the next one lists the Nodes again.
    async fn give(
        &mut self,
        client: &Client,
        ipam: &NodeIpam,
        ready: &[NodeFacts],
        held_until: Instant,
    ) -> anyhow::Result<bool> {
        // Observe: the Nodes as they are now (a quorum read), not as the watch last showed
        // them: the agent that held the Lease before may have given podCIDRs this agent's
        // watch has not shown yet.
        self.list_nodes(client).await?;
        let still: Vec<NodeFacts> = ready
            .iter()
            .filter(|f| self.nodes.waits(f))
            .cloned()
            .collect();
        let (taken, refused) = self.nodes.taken(ipam);
        // Decide.
        let (given, full) = plan(ipam, &taken, &still);
        // Say what cannot be helped here, once each.
        let mut holds = BTreeSet::new();
        for (node, text) in refused {
            let key = format!("refused/{node}/{text}");
            self.say_once(key.clone(), &format!(
                "the podCIDR {text:?} of Node {node:?} is not in the cluster's pod subnet at its place: it is not counted as used, so the pod subnet's own podCIDRs may be given again; correct or delete that Node"
            ));
            holds.insert(key);
        }
        self.forget("refused/", &holds);
        if let Some(first) = full.first() {
            self.say_once("full".into(), &format!(
                "no podCIDR is left for Node {first:?} ({} Node(s) wait): every node subnet of the cluster's pod subnet is taken; delete Nodes that are gone, or make a cluster with a larger podSubnet or a smaller node-cidr-mask-size",
                full.len()
            ));
        } else {
            self.forget("full", &BTreeSet::new());
        }
        // Act.
        let api: Api<Node> = Api::all(client.clone());
        for (name, cidrs) in given {
            let left = held_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(true);
            }
            let shown = cidrs.join(",");
            let patch = serde_json::json!({"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}});
            let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
            match tokio::time::timeout(left, api.patch(&name, &params, &patch)).await {
                Ok(Ok(node)) => {
                    info!(node = %name, pod_cidrs = %shown, "gave the Node {name:?} the podCIDR {shown}");
                    self.nodes.put(NodeFacts::from_node(&node));
                }
                // Gone meanwhile.
                Ok(Err(e)) if api_error(&e).is_some_and(|s| s.code == 404) => {
                    debug!(node = %name, "the Node went before its podCIDR was given");
                }
                // Refused: given meanwhile (spec.podCIDR is set once), or not valid.
                Ok(Err(e)) if api_error(&e).is_some_and(|s| s.code == 409 || s.code == 422) => {
                    self.refused(&api, &name, &shown, e).await;
                }
                Ok(Err(e)) => {
                    return Err(api_failure(
                        e,
                        format!("could not give the Node {name:?} the podCIDR {shown}"),
                    ))
                    .context("the pass stops here; the next one lists the Nodes again");
                }
                Err(_) => anyhow::bail!(
                    "giving the Node {name:?} the podCIDR {shown} took longer than this agent's Lease lasts; the pass stops here, and the next one lists the Nodes again"
                ),
            }
        }
        Ok(false)
    }

    /// A patch the API server refused: the Node got its podCIDR meanwhile (nothing to say), or
    /// the value itself was refused, said once with the server's reason.
    async fn refused(&mut self, api: &Api<Node>, name: &str, shown: &str, e: kube::Error) {
        let now_set = api
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .map(|n| NodeFacts::from_node(&n));
        if let Some(f) = now_set {
            let waits = f.pod_cidrs.is_empty();
            let uid = f.uid.clone();
            self.nodes.put(f);
            if waits {
                self.say_once(format!("patch/{uid}"), &format!(
                    "the API server refused the podCIDR {shown} for Node {name:?}, which waits for one: {:#}",
                    short(e)
                ));
                return;
            }
        }
        debug!(node = %name, "the Node got a podCIDR meanwhile: {:#}", short(e));
    }

    /// Takes the Lease: `Ok(Ok((lease, until)))` with the Lease as written and when this agent
    /// must stop giving, `Ok(Err(wait))` when another agent holds it.
    async fn take_lease(
        &mut self,
        client: &Client,
    ) -> anyhow::Result<Result<(Lease, Instant), Duration>> {
        let what = format!(
            "the Lease {}/{}",
            names::KUBE_SYSTEM,
            names::KUBEBOOT_NODE_IPAM_LEASE
        );
        let api: Api<Lease> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
        let lease = api
            .get_opt(names::KUBEBOOT_NODE_IPAM_LEASE)
            .await
            .map_err(|e| api_failure(e, format!("could not read {what}")))?
            .with_context(|| {
                format!("{what} does not exist; \"kubeboot init phase agent-rbac\" makes it (the agents may not create Leases)")
            })?;
        let asked = Instant::now();
        if let LeaseStep::Wait(d) = lease_step(&lease, &self.me, &mut self.lease_seen, asked) {
            return Ok(Err(d));
        }
        let record = lease_record(&lease, &self.me, true, now_micro());
        match api
            .replace(
                names::KUBEBOOT_NODE_IPAM_LEASE,
                &PostParams::default(),
                &record,
            )
            .await
        {
            Ok(written) => Ok(Ok((written, asked + LEASE_DURATION - LEASE_MARGIN))),
            // Another agent was first.
            Err(e) if api_error(&e).is_some_and(|s| s.code == 409) => Ok(Err(LEASE_POLL)),
            Err(e) => Err(api_failure(e, format!("could not take {what}"))),
        }
    }

    /// Releases `lease` (as this agent wrote it); a failure only leaves it to expire.
    async fn release_lease(&mut self, client: &Client, lease: Lease) {
        let api: Api<Lease> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
        let released = lease_record(&lease, &self.me, false, now_micro());
        if let Err(e) = api
            .replace(
                names::KUBEBOOT_NODE_IPAM_LEASE,
                &PostParams::default(),
                &released,
            )
            .await
        {
            debug!(
                "could not release the Lease (it expires by itself): {:#}",
                short(e)
            );
        }
    }
}

/// Whether the kubelet made `node`'s CSINode. A refused or failed read counts as made: the
/// podCIDR is not held back for it.
async fn csinode_exists(client: &Client, node: &str) -> bool {
    let api: Api<CSINode> = Api::all(client.clone());
    match api.get_opt(node).await {
        Ok(found) => found.is_some(),
        Err(e) => {
            debug!(node, "could not read the CSINode: {:#}", short(e));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, uid: &str, created: &str, cidrs: &[&str]) -> Node {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": uid, "creationTimestamp": created},
            "spec": {}
        }))
        .expect("node");
        if let Some(first) = cidrs.first() {
            let spec = n.spec.get_or_insert_with(Default::default);
            spec.pod_cidr = Some((*first).to_string());
            spec.pod_cidrs = Some(cidrs.iter().map(ToString::to_string).collect());
        }
        n
    }

    fn ipam_of(cluster_cidr: &str) -> NodeIpam {
        let cmd: Vec<String> = [
            "kube-controller-manager",
            "--allocate-node-cidrs=true",
            &format!("--cluster-cidr={cluster_cidr}"),
            "--service-cluster-ip-range=10.96.0.0/12",
            "--controllers=*,bootstrapsigner,tokencleaner,-nodeipam",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        match Allocation::of(&cmd) {
            Allocation::Kubeboot(i) => i,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_manifest_says_who_allocates() {
        let pod = |controllers: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\nspec:\n  containers:\n  - name: kube-controller-manager\n    command:\n    - kube-controller-manager\n    - --allocate-node-cidrs=true\n    - --cluster-cidr=10.244.0.0/16\n    - --controllers={controllers}\n"
            )
        };
        assert!(matches!(
            allocation_of_manifest(&pod("*,bootstrapsigner,tokencleaner,-nodeipam")),
            Some(Allocation::Kubeboot(_))
        ));
        assert!(matches!(
            allocation_of_manifest(&pod("*,bootstrapsigner,tokencleaner")),
            Some(Allocation::ControllerManager(_))
        ));
        assert_eq!(allocation_of_manifest("not: [a pod"), None);
    }

    #[test]
    fn only_a_change_in_the_waiting_nodes_calls_for_a_pass() {
        let mut nodes =
            Nodes::from_nodes(&[node("a", "u-a", "2026-01-01T00:00:00Z", &["10.244.0.0/24"])]);
        assert!(nodes.waiting().is_empty());
        // A new Node without a podCIDR waits.
        let b = node("b", "u-b", "2026-01-01T00:00:02Z", &[]);
        assert!(nodes.apply(&WatchEvent::Added(b.clone())));
        // Its heartbeat changes nothing that matters.
        assert!(!nodes.apply(&WatchEvent::Modified(b)));
        // A's status update neither.
        let a = node("a", "u-a", "2026-01-01T00:00:00Z", &["10.244.0.0/24"]);
        assert!(!nodes.apply(&WatchEvent::Modified(a.clone())));
        // B got its podCIDR.
        let b2 = node("b", "u-b", "2026-01-01T00:00:02Z", &["10.244.1.0/24"]);
        assert!(nodes.apply(&WatchEvent::Modified(b2.clone())));
        assert!(nodes.waiting().is_empty());
        // Deleting a Node that had one while nobody waits changes nothing; one that waited
        // does.
        assert!(!nodes.apply(&WatchEvent::Deleted(b2)));
        let c = node("c", "u-c", "2026-01-01T00:00:03Z", &[]);
        assert!(nodes.apply(&WatchEvent::Added(c.clone())));
        // While c waits (a full pod subnet, say), a Node that frees a podCIDR calls a pass.
        assert!(nodes.apply(&WatchEvent::Deleted(a)));
        assert!(nodes.apply(&WatchEvent::Deleted(c)));
        // Made again under the same name: waits anew.
        let d1 = node("d", "u-d1", "2026-01-01T00:00:04Z", &[]);
        let d2 = node("d", "u-d2", "2026-01-01T00:00:05Z", &[]);
        assert!(nodes.apply(&WatchEvent::Added(d1)));
        assert!(nodes.apply(&WatchEvent::Added(d2)));
    }

    #[test]
    fn a_plan_gives_the_waiting_nodes_the_allocators_choices_in_turn_oldest_first() {
        let nodes = Nodes::from_nodes(&[
            node("cp", "u0", "2026-01-01T00:00:00Z", &["10.244.0.0/24"]),
            node("w-b", "u2", "2026-01-01T00:00:09Z", &[]),
            node("w-a", "u1", "2026-01-01T00:00:05Z", &[]),
            node("w-c", "u3", "2026-01-01T00:00:09Z", &[]),
            node("odd", "u4", "2026-01-01T00:00:01Z", &["192.168.0.0/24"]),
            // Its first podCIDR counts as used though its second cannot be (single-stack).
            node(
                "half",
                "u5",
                "2026-01-01T00:00:01Z",
                &["10.244.1.0/24", "fd00::/64"],
            ),
        ]);
        let waiting = nodes.waiting();
        let order: Vec<&str> = waiting.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(order, ["w-a", "w-b", "w-c"]);
        let ipam = ipam_of("10.244.0.0/16");
        let (taken, refused) = nodes.taken(&ipam);
        assert_eq!(
            refused,
            [
                ("half".to_string(), "fd00::/64".to_string()),
                ("odd".to_string(), "192.168.0.0/24".to_string())
            ],
            "not counted, not fatal"
        );
        let (given, full) = plan(&ipam, &taken, &waiting);
        let given: Vec<(&str, &str)> = given
            .iter()
            .map(|(n, c)| (n.as_str(), c[0].as_str()))
            .collect();
        assert_eq!(
            given,
            [
                ("w-a", "10.244.2.0/24"),
                ("w-b", "10.244.3.0/24"),
                ("w-c", "10.244.4.0/24")
            ]
        );
        assert!(full.is_empty());

        // Two node subnets in all: one is taken, one Node gets the other, the rest wait.
        let small = ipam_of("10.244.0.0/23");
        let (taken, _) =
            Nodes::from_nodes(&[node("cp", "u0", "2026-01-01T00:00:00Z", &["10.244.0.0/24"])])
                .taken(&small);
        let (given, full) = plan(&small, &taken, &waiting);
        assert_eq!(
            given,
            [("w-a".to_string(), vec!["10.244.1.0/24".to_string()])]
        );
        assert_eq!(full, ["w-b", "w-c"]);
    }

    fn lease(holder: Option<&str>, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(ToString::to_string),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed.parse().expect("time"))),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_or_own_and_waited_for_while_another_renews_it() {
        let t0 = Instant::now();
        let mut seen = None;
        let released = lease(None, "2026-01-01T00:00:00Z", 1);
        assert_eq!(lease_step(&released, "cp1", &mut seen, t0), LeaseStep::Take);
        let own = lease(Some("cp1"), "2026-01-01T00:00:00Z", 15);
        assert_eq!(lease_step(&own, "cp1", &mut seen, t0), LeaseStep::Take);

        // Held by cp2: waited for, judged by when cp1 saw each renewal, not by cp2's clock
        // (its renewTime is long past here).
        let held = lease(Some("cp2"), "2000-01-01T00:00:00Z", 15);
        assert_eq!(
            lease_step(&held, "cp1", &mut seen, t0),
            LeaseStep::Wait(LEASE_POLL)
        );
        let t14 = t0 + Duration::from_secs(14);
        assert_eq!(
            lease_step(&held, "cp1", &mut seen, t14),
            LeaseStep::Wait(Duration::from_secs(1))
        );
        // Renewed at t14: the 15 s start again from there.
        let renewed = lease(Some("cp2"), "2000-01-01T00:00:10Z", 15);
        assert_eq!(
            lease_step(&renewed, "cp1", &mut seen, t14),
            LeaseStep::Wait(LEASE_POLL)
        );
        let t28 = t0 + Duration::from_secs(28);
        assert!(matches!(
            lease_step(&renewed, "cp1", &mut seen, t28),
            LeaseStep::Wait(_)
        ));
        // Not renewed for its whole duration: expired, taken over.
        let t29 = t0 + Duration::from_secs(29);
        assert_eq!(lease_step(&renewed, "cp1", &mut seen, t29), LeaseStep::Take);
    }

    #[test]
    fn lease_records_take_and_release_as_client_go_does() {
        let now = MicroTime("2026-01-01T00:00:05Z".parse().expect("time"));
        let mut t = lease(Some("cp2"), "2026-01-01T00:00:00Z", 15);
        t.spec.as_mut().expect("spec").lease_transitions = Some(3);
        t.metadata.resource_version = Some("42".into());
        let taken = lease_record(&t, "cp1", true, now.clone());
        let s = taken.spec.as_ref().expect("spec");
        assert_eq!(s.holder_identity.as_deref(), Some("cp1"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.renew_time.as_ref(), Some(&now));
        assert_eq!(s.acquire_time.as_ref(), Some(&now));
        assert_eq!(
            s.lease_transitions,
            Some(4),
            "another holder before: a transition"
        );
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("42"),
            "replaced at its version"
        );
        assert_eq!(
            taken.metadata.name.as_deref(),
            Some(names::KUBEBOOT_NODE_IPAM_LEASE)
        );
        let later = MicroTime("2026-01-01T00:00:09Z".parse().expect("time"));
        let renewed = lease_record(&taken, "cp1", true, later.clone());
        let s = renewed.spec.as_ref().expect("spec");
        assert_eq!(s.lease_transitions, Some(4));
        assert_eq!(s.acquire_time.as_ref(), Some(&now), "held since then");
        assert_eq!(s.renew_time.as_ref(), Some(&later));
        let released = lease_record(&renewed, "cp1", false, later);
        let s = released.spec.as_ref().expect("spec");
        assert_eq!(s.holder_identity, None);
        assert_eq!(s.lease_duration_seconds, Some(1));
        assert_eq!(s.lease_transitions, Some(4));
    }
}

#[cfg(test)]
mod pass_tests {
    //! A pass against a fake API server: a tower service under `kube::Client` that keeps
    //! Nodes, CSINodes and the Lease as the API server does (spec.podCIDR set once: 422 on a
    //! change; the Lease replaced only at its resourceVersion: 409), and records every request.
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context as TaskContext, Poll};

    use http_body_util::BodyExt;
    use http_body_util::combinators::UnsyncBoxBody;
    use hyper::body::Bytes;
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;

    type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

    const NODES: &str = "/api/v1/nodes";
    const CSINODES: &str = "/apis/storage.k8s.io/v1/csinodes/";
    const LEASE: &str =
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kubeboot-node-ipam";

    #[derive(Default)]
    struct State {
        nodes: BTreeMap<String, Value>,
        csinodes: Vec<String>,
        lease: Option<Value>,
        /// (method, path) of every request.
        requests: Vec<(String, String)>,
        /// Every Lease holder written, in order ("" for a release).
        holders: Vec<String>,
        /// Node patches applied and then answered 500, as a server that failed after the write.
        fail_after_patch: Vec<String>,
        rv: u64,
    }

    #[derive(Clone, Default)]
    struct FakeApi(Arc<Mutex<State>>);

    fn reply(code: u16, v: &Value) -> http::Response<FakeBody> {
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
        reply(
            code,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("fake: {reason}"), "reason": reason, "code": code}),
        )
    }

    fn released_lease() -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": names::KUBEBOOT_NODE_IPAM_LEASE, "namespace": "kube-system",
                "resourceVersion": "1"},
            "spec": {"leaseDurationSeconds": 1, "leaseTransitions": 0}})
    }

    impl FakeApi {
        fn answer(&self, method: &str, path: &str, body: &[u8]) -> http::Response<FakeBody> {
            let mut st = self.0.lock().expect("lock");
            st.requests.push((method.to_string(), path.to_string()));
            st.rv += 1;
            let rv = st.rv.to_string();
            if let Some(name) = path.strip_prefix(CSINODES) {
                return if st.csinodes.iter().any(|n| n == name) {
                    reply(
                        200,
                        &json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
                        "metadata": {"name": name}, "spec": {"drivers": []}}),
                    )
                } else {
                    status(404, "NotFound")
                };
            }
            if path == NODES && method == "GET" {
                let items: Vec<Value> = st.nodes.values().cloned().collect();
                return reply(
                    200,
                    &json!({"apiVersion": "v1", "kind": "NodeList",
                        "metadata": {"resourceVersion": rv}, "items": items}),
                );
            }
            if let Some(name) = path.strip_prefix(NODES).and_then(|p| p.strip_prefix('/')) {
                let fail = st.fail_after_patch.iter().any(|n| n == name);
                let Some(node) = st.nodes.get_mut(name) else {
                    return status(404, "NotFound");
                };
                if method == "GET" {
                    return reply(200, node);
                }
                assert_eq!(method, "PATCH", "nodes are only read and patched");
                let patch: Value = serde_json::from_slice(body).expect("a patch");
                let old = node["spec"]["podCIDR"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let new = patch["spec"]["podCIDR"].as_str().unwrap_or_default();
                // validation.ValidateNodeUpdate: podCIDR may only go from "" to a value.
                if !old.is_empty() && old != new {
                    return status(422, "Invalid");
                }
                node["spec"]["podCIDR"] = patch["spec"]["podCIDR"].clone();
                node["spec"]["podCIDRs"] = patch["spec"]["podCIDRs"].clone();
                node["metadata"]["resourceVersion"] = json!(rv);
                return if fail {
                    status(500, "InternalError")
                } else {
                    reply(200, node)
                };
            }
            match (method, path) {
                ("GET", LEASE) => match &st.lease {
                    Some(l) => reply(200, l),
                    None => status(404, "NotFound"),
                },
                ("PUT", LEASE) => {
                    let mut l: Value = serde_json::from_slice(body).expect("a lease");
                    let Some(stored) = st.lease.as_ref() else {
                        return status(404, "NotFound");
                    };
                    if stored["metadata"]["resourceVersion"] != l["metadata"]["resourceVersion"] {
                        return status(409, "Conflict");
                    }
                    l["metadata"]["resourceVersion"] = json!(rv);
                    let holder = l["spec"]["holderIdentity"].as_str().unwrap_or_default();
                    st.holders.push(holder.to_string());
                    st.lease = Some(l.clone());
                    reply(200, &l)
                }
                _ => status(405, "MethodNotAllowed"),
            }
        }

        fn pod_cidr(&self, node: &str) -> Option<String> {
            let st = self.0.lock().expect("lock");
            st.nodes[node]["spec"]["podCIDR"]
                .as_str()
                .map(ToString::to_string)
        }

        fn patches(&self) -> usize {
            let st = self.0.lock().expect("lock");
            st.requests.iter().filter(|(m, _)| m == "PATCH").count()
        }

        fn holders(&self) -> Vec<String> {
            self.0.lock().expect("lock").holders.clone()
        }
    }

    impl tower_service::Service<http::Request<Body>> for FakeApi {
        type Response = http::Response<FakeBody>;
        type Error = Infallible;
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
                Ok(this.answer(parts.method.as_str(), parts.uri.path(), &bytes))
            })
        }
    }

    fn node_json(name: &str, created: &str, cidr: Option<&str>) -> Value {
        let mut n = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created,
                "resourceVersion": "1"},
            "spec": {}});
        if let Some(c) = cidr {
            n["spec"] = json!({"podCIDR": c, "podCIDRs": [c]});
        }
        n
    }

    /// A fake cluster holding `nodes` and the released Lease, and an allocator `me` that has
    /// seen `nodes` and whose controller-manager manifest has `--controllers=<controllers>`.
    fn setup(
        nodes: &[Value],
        me: &str,
        controllers: &str,
    ) -> (FakeApi, Client, Allocator, tempfile::TempDir) {
        let fake = FakeApi::default();
        {
            let mut st = fake.0.lock().expect("lock");
            for n in nodes {
                let name = n["metadata"]["name"].as_str().expect("name").to_string();
                st.nodes.insert(name, n.clone());
            }
            st.lease = Some(released_lease());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("kube-controller-manager.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-controller-manager\nspec:\n  containers:\n  - name: kube-controller-manager\n    command:\n    - kube-controller-manager\n    - --allocate-node-cidrs=true\n    - --cluster-cidr=10.244.0.0/16\n    - --service-cluster-ip-range=10.96.0.0/12\n    - --controllers={controllers}\n"
            ),
        )
        .expect("manifest");
        let listed: Vec<Node> = nodes
            .iter()
            .map(|n| serde_json::from_value(n.clone()).expect("node"))
            .collect();
        let a = Allocator {
            client: AgentClient::new(dir.path().join("no-kubeconfig")),
            me: me.to_string(),
            manifest,
            connection: Retry::default(),
            ever_connected: true,
            allocating: None,
            nodes: Nodes::from_nodes(&listed),
            first_seen: HashMap::new(),
            lease_seen: None,
            said: BTreeSet::new(),
        };
        let client = Client::new(fake.clone(), "default");
        (fake, client, a, dir)
    }

    const KUBEBOOT: &str = "*,bootstrapsigner,tokencleaner,-nodeipam";

    #[tokio::test]
    async fn a_pass_gives_each_node_with_a_csinode_the_next_podcidr_under_the_lease() {
        let (fake, client, mut a, _dir) = setup(
            &[
                node_json("cp1", "2026-01-01T00:00:00Z", Some("10.244.0.0/24")),
                node_json("w2", "2026-01-01T00:00:09Z", None),
                node_json("w1", "2026-01-01T00:00:05Z", None),
            ],
            "cp1_1",
            KUBEBOOT,
        );
        fake.0.lock().expect("lock").csinodes = vec!["w1".into()];
        // w1's kubelet made its CSINode; w2's did not yet: it is looked at again shortly.
        let again = a.pass(&client).await.expect("pass");
        assert_eq!(again, Some(CSINODE_POLL));
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.1.0/24"));
        assert_eq!(fake.pod_cidr("w2"), None);
        // The Lease was taken for the pass and released after it.
        assert_eq!(fake.holders(), ["cp1_1", ""]);

        // w2's CSINode comes: the next podCIDR, the given one counted as used.
        fake.0.lock().expect("lock").csinodes.push("w2".into());
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w2").as_deref(), Some("10.244.2.0/24"));
        assert_eq!(fake.holders(), ["cp1_1", "", "cp1_1", ""]);
        // Nothing waits: a pass sends nothing.
        let sent = fake.0.lock().expect("lock").requests.len();
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.0.lock().expect("lock").requests.len(), sent);
    }

    #[tokio::test]
    async fn what_another_agent_gave_before_this_one_saw_it_is_not_given_again() {
        // This agent's watch has not shown w0's podCIDR yet (another agent just gave it).
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1_1",
            KUBEBOOT,
        );
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into()];
            st.nodes.insert(
                "w0".into(),
                node_json("w0", "2026-01-01T00:00:04Z", Some("10.244.0.0/24")),
            );
        }
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.1.0/24"));
    }

    #[tokio::test]
    async fn a_patch_of_unknown_outcome_stops_the_pass_and_its_podcidr_is_not_given_twice() {
        let (fake, client, mut a, _dir) = setup(
            &[
                node_json("w1", "2026-01-01T00:00:05Z", None),
                node_json("w2", "2026-01-01T00:00:06Z", None),
            ],
            "cp1_1",
            KUBEBOOT,
        );
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into(), "w2".into()];
            st.fail_after_patch = vec!["w1".into()];
        }
        let err = format!("{:#}", a.pass(&client).await.expect_err("a server error"));
        assert!(err.contains("the next one lists the Nodes again"), "{err}");
        assert_eq!(fake.patches(), 1, "w2 is not patched after it");
        assert_eq!(fake.holders(), ["cp1_1", ""], "released all the same");
        // The write did land: the next pass sees it and gives w2 the next podCIDR.
        fake.0.lock().expect("lock").fail_after_patch.clear();
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.0.0/24"));
        assert_eq!(fake.pod_cidr("w2").as_deref(), Some("10.244.1.0/24"));
    }

    #[tokio::test]
    async fn a_node_without_a_csinode_gets_its_podcidr_after_the_wait() {
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1_1",
            KUBEBOOT,
        );
        assert_eq!(a.pass(&client).await.expect("pass"), Some(CSINODE_POLL));
        assert_eq!(fake.pod_cidr("w1"), None);
        // Seen long enough ago.
        for t in a.first_seen.values_mut() {
            *t -= CSINODE_WAIT;
        }
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.0.0/24"));
    }

    #[tokio::test]
    async fn nothing_is_given_while_another_agent_holds_the_lease() {
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1_1",
            KUBEBOOT,
        );
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into()];
            let lease = st.lease.as_mut().expect("lease");
            lease["spec"] = json!({"holderIdentity": "cp2_7", "leaseDurationSeconds": 15,
                "renewTime": "2026-01-01T00:00:00.000000Z"});
        }
        let again = a.pass(&client).await.expect("pass");
        assert_eq!(again, Some(LEASE_POLL));
        assert_eq!(fake.patches(), 0);
        assert!(fake.holders().is_empty());
        // cp2 released it: cp1 takes it at once.
        fake.0.lock().expect("lock").lease.as_mut().expect("lease")["spec"]["holderIdentity"] =
            Value::Null;
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.0.0/24"));
    }

    #[tokio::test]
    async fn without_its_lease_no_agent_gives_anything_and_says_what_makes_it() {
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1_1",
            KUBEBOOT,
        );
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into()];
            st.lease = None;
        }
        let err = format!("{:#}", a.pass(&client).await.expect_err("no lease"));
        assert!(
            err.contains("does not exist") && err.contains("kubeboot init phase agent-rbac"),
            "{err}"
        );
        assert_eq!(fake.patches(), 0);
    }

    #[tokio::test]
    async fn a_node_given_its_podcidr_meanwhile_is_no_error_and_the_controller_managers_own_ipam_is_left_alone()
     {
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1_1",
            KUBEBOOT,
        );
        // The fresh list shows it: nothing to give, no patch.
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into()];
            st.nodes.get_mut("w1").expect("w1")["spec"] = json!({"podCIDR": "10.244.7.0/24"});
        }
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.7.0/24"));
        assert_eq!(fake.patches(), 0);

        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1_1",
            "*,bootstrapsigner,tokencleaner",
        );
        fake.0.lock().expect("lock").csinodes = vec!["w1".into()];
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert!(
            fake.0.lock().expect("lock").requests.is_empty(),
            "the controller-manager allocates: not one request"
        );
    }
}
