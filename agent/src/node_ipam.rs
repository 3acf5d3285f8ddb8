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

use std::collections::{BTreeMap, HashMap};
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
        let spec = n.spec.as_ref();
        let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
        }
        NodeFacts {
            name: n.metadata.name.clone().unwrap_or_default(),
            uid: n.metadata.uid.clone().unwrap_or_default(),
            created: n
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            pod_cidrs,
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

    /// Takes in one watch event; true when the Nodes waiting for a podCIDR changed (one came
    /// or went, or got its podCIDR). Status heartbeats and everything else are false.
    pub fn apply(&mut self, event: &WatchEvent<Node>) -> bool {
        match event {
            WatchEvent::Added(n) | WatchEvent::Modified(n) => self.put(NodeFacts::from_node(n)),
            WatchEvent::Deleted(n) => {
                let name = n.metadata.name.as_deref().unwrap_or_default();
                self.0.remove(name).is_some_and(|f| f.pod_cidrs.is_empty())
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

    /// The podCIDRs the Nodes hold that `ipam` takes in as used, and the names of the Nodes
    /// whose podCIDRs it would refuse (the range allocator then refuses to start; here they
    /// are left out, and said once).
    pub fn taken(&self, ipam: &NodeIpam) -> (Vec<Vec<String>>, Vec<String>) {
        let mut taken = Vec::new();
        let mut refused = Vec::new();
        for f in self.0.values().filter(|f| !f.pod_cidrs.is_empty()) {
            if ipam.accepts(&f.pod_cidrs) {
                taken.push(f.pod_cidrs.clone());
            } else {
                refused.push(f.name.clone());
            }
        }
        (taken, refused)
    }
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
    /// There is none: create it, held by this agent.
    Create,
    /// Take it over (or renew it): it is this agent's, released, or expired.
    Take,
    /// Another agent holds it: look again after this long.
    Wait(Duration),
}

/// Decides what this agent (`me`) does about `lease` at `now`, as client-go's
/// tryAcquireOrRenew: expiry is judged by when this agent saw the holder's last renewal
/// (`seen`, updated here), never by the holder's own clock.
pub fn lease_step(
    lease: Option<&Lease>,
    me: &str,
    seen: &mut Option<Seen>,
    now: Instant,
) -> LeaseStep {
    let Some(lease) = lease else {
        *seen = None;
        return LeaseStep::Create;
    };
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

/// The Lease this agent writes to take it (`held`) or release it.
fn lease_record(old: Option<&Lease>, me: &str, held: bool) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let old_spec = old.and_then(|l| l.spec.clone()).unwrap_or_default();
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
            lease_transitions: Some(if was_mine || old.is_none() {
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
            resource_version: old.and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(spec),
    }
}

/// What the task holds between rounds.
struct Allocator {
    client: AgentClient,
    /// This agent's identity in the Lease: its node's name (one agent per node, so a
    /// restarted agent takes back its own lease at once).
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
    /// Nodes whose podCIDRs the allocator refuses, already said.
    said_refused: Vec<String>,
    /// A full cluster CIDR, already said.
    said_full: bool,
}

/// Gives podCIDRs until the task is aborted. `manifest` is this node's controller-manager
/// manifest; `node` this node's name.
pub(crate) async fn run(client: AgentClient, node: String, manifest: PathBuf) {
    let mut a = Allocator {
        client,
        me: node,
        manifest,
        connection: Retry::default(),
        ever_connected: false,
        allocating: None,
        nodes: Nodes::default(),
        first_seen: HashMap::new(),
        lease_seen: None,
        said_refused: Vec::new(),
        said_full: false,
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
                // Only a change away from allocating is worth an info line.
                (Some(Allocation::ControllerManager(_)), false) if self.allocating.is_some() => {
                    info!(
                        "the controller-manager gives Nodes their podCIDRs again: this agent stops"
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

    async fn list_and_watch(&mut self, client: &Client) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(client.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(short)
            .with_context(|| format!("could not list Nodes ({})", rbac_hint()))?;
        self.ever_connected = true;
        self.nodes = Nodes::from_nodes(&list.items);
        let version = list.metadata.resource_version.unwrap_or_default();
        // The watch's own client: the requests' one gives up on a connection silent for 15 s.
        let watches: Api<Node> = Api::all(self.client.watches().unwrap_or_else(|| client.clone()));
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        let stream = match watches.watch(&params, &version).await {
            Ok(s) => s,
            // Too old a version: the next round lists afresh.
            Err(e) if api_error(&e).is_some_and(|s| s.code == 410) => return Ok(()),
            Err(e) => {
                return Err(short(e))
                    .with_context(|| format!("could not watch Nodes ({})", rbac_hint()));
            }
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
        let held_until = match self.take_lease(client).await? {
            Ok(until) => until,
            Err(wait) => return Ok(Some(wait)),
        };
        let given = self.give(client, &ipam, ready, held_until).await;
        self.release_lease(client).await;
        let more = given?;
        Ok(if more { Some(Duration::ZERO) } else { again })
    }

    /// Gives each of `ready` (oldest first) its podCIDRs while the lease lasts. True when the
    /// lease ran out first.
    async fn give(
        &mut self,
        client: &Client,
        ipam: &NodeIpam,
        ready: Vec<NodeFacts>,
        held_until: Instant,
    ) -> anyhow::Result<bool> {
        let api: Api<Node> = Api::all(client.clone());
        let (mut taken, refused) = self.nodes.taken(ipam);
        for name in refused {
            if !self.said_refused.contains(&name) {
                warn!(node = %name, "the podCIDRs of Node {name:?} lie outside the cluster's pod subnet: counted as free");
                self.said_refused.push(name);
            }
        }
        let mut failed = Vec::new();
        for f in ready {
            if Instant::now() >= held_until {
                return Ok(true);
            }
            let Some(cidrs) = ipam.first_free(&taken) else {
                if !self.said_full {
                    warn!(node = %f.name, "no podCIDR is left for Node {:?}: the cluster's pod subnet is full (each node takes one subnet of the node mask size)", f.name);
                    self.said_full = true;
                }
                continue;
            };
            self.said_full = false;
            let cidrs: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
            let patch = serde_json::json!({"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}});
            match api
                .patch(&f.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(node) => {
                    info!(node = %f.name, pod_cidrs = %cidrs.join(","), "gave the Node {:?} the podCIDR {}", f.name, cidrs.join(","));
                    self.nodes.put(NodeFacts::from_node(&node));
                    taken.push(cidrs);
                }
                // Gone, or given meanwhile (spec.podCIDR is set once): the watch shows it.
                Err(e)
                    if api_error(&e)
                        .is_some_and(|s| s.code == 404 || s.code == 422 || s.code == 409) =>
                {
                    debug!(node = %f.name, "the podCIDR was not given: {:#}", short(e));
                }
                Err(e) => failed.push(format!("{}: {:#}", f.name, short(e))),
            }
        }
        anyhow::ensure!(
            failed.is_empty(),
            "could not give the Node its podCIDR ({}): {}",
            rbac_hint(),
            failed.join("; ")
        );
        Ok(false)
    }

    /// Takes the Lease: `Ok(Ok(until))` with when this agent must stop giving, `Ok(Err(wait))`
    /// when another agent holds it.
    async fn take_lease(&mut self, client: &Client) -> anyhow::Result<Result<Instant, Duration>> {
        let api: Api<Lease> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
        let lease = api
            .get_opt(names::KUBEBOOT_NODE_IPAM_LEASE)
            .await
            .map_err(short)
            .with_context(|| {
                format!(
                    "could not read the Lease {}/{} ({})",
                    names::KUBE_SYSTEM,
                    names::KUBEBOOT_NODE_IPAM_LEASE,
                    rbac_hint()
                )
            })?;
        let asked = Instant::now();
        let written = match lease_step(lease.as_ref(), &self.me, &mut self.lease_seen, asked) {
            LeaseStep::Wait(d) => return Ok(Err(d)),
            LeaseStep::Create => {
                api.create(&PostParams::default(), &lease_record(None, &self.me, true))
                    .await
            }
            LeaseStep::Take => {
                api.replace(
                    names::KUBEBOOT_NODE_IPAM_LEASE,
                    &PostParams::default(),
                    &lease_record(lease.as_ref(), &self.me, true),
                )
                .await
            }
        };
        match written {
            Ok(_) => Ok(Ok(asked + LEASE_DURATION - LEASE_MARGIN)),
            // Another agent was first.
            Err(e) if api_error(&e).is_some_and(|s| s.code == 409) => Ok(Err(LEASE_POLL)),
            Err(e) => Err(short(e)).with_context(|| {
                format!(
                    "could not take the Lease {}/{} ({})",
                    names::KUBE_SYSTEM,
                    names::KUBEBOOT_NODE_IPAM_LEASE,
                    rbac_hint()
                )
            }),
        }
    }

    /// Releases the Lease if this agent still holds it; a failure only leaves it to expire.
    async fn release_lease(&mut self, client: &Client) {
        let api: Api<Lease> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
        let Ok(Some(lease)) = api.get_opt(names::KUBEBOOT_NODE_IPAM_LEASE).await else {
            return;
        };
        let mine = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.me.as_str());
        if !mine {
            return;
        }
        let released = lease_record(Some(&lease), &self.me, false);
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

    fn ipam() -> NodeIpam {
        let cmd: Vec<String> = [
            "kube-controller-manager",
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16",
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
        assert!(!nodes.apply(&WatchEvent::Modified(a)));
        // B got its podCIDR.
        let b2 = node("b", "u-b", "2026-01-01T00:00:02Z", &["10.244.1.0/24"]);
        assert!(nodes.apply(&WatchEvent::Modified(b2.clone())));
        assert!(nodes.waiting().is_empty());
        // Deleting a Node that had one changes nothing; one that waited does.
        assert!(!nodes.apply(&WatchEvent::Deleted(b2)));
        let c = node("c", "u-c", "2026-01-01T00:00:03Z", &[]);
        assert!(nodes.apply(&WatchEvent::Added(c.clone())));
        assert!(nodes.apply(&WatchEvent::Deleted(c)));
        // Made again under the same name: waits anew.
        let d1 = node("d", "u-d1", "2026-01-01T00:00:04Z", &[]);
        let d2 = node("d", "u-d2", "2026-01-01T00:00:05Z", &[]);
        assert!(nodes.apply(&WatchEvent::Added(d1)));
        assert!(nodes.apply(&WatchEvent::Added(d2)));
    }

    #[test]
    fn waiting_nodes_come_oldest_first_and_get_the_allocators_choices_in_turn() {
        let nodes = Nodes::from_nodes(&[
            node("cp", "u0", "2026-01-01T00:00:00Z", &["10.244.0.0/24"]),
            node("w-b", "u2", "2026-01-01T00:00:09Z", &[]),
            node("w-a", "u1", "2026-01-01T00:00:05Z", &[]),
            node("w-c", "u3", "2026-01-01T00:00:09Z", &[]),
            node("odd", "u4", "2026-01-01T00:00:01Z", &["192.168.0.0/24"]),
        ]);
        let order: Vec<String> = nodes.waiting().into_iter().map(|f| f.name).collect();
        assert_eq!(order, ["w-a", "w-b", "w-c"]);
        let ipam = ipam();
        let (mut taken, refused) = nodes.taken(&ipam);
        assert_eq!(
            refused,
            ["odd"],
            "outside the pod subnet: left out, not fatal"
        );
        let mut given = Vec::new();
        for _ in 0..3 {
            let c = ipam.first_free(&taken).expect("free");
            let c: Vec<String> = c.iter().map(ToString::to_string).collect();
            given.push(c[0].clone());
            taken.push(c);
        }
        assert_eq!(given, ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
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
    fn a_lease_is_created_taken_when_free_or_own_and_waited_for_while_another_renews_it() {
        let t0 = Instant::now();
        let mut seen = None;
        assert_eq!(lease_step(None, "cp1", &mut seen, t0), LeaseStep::Create);
        let released = lease(None, "2026-01-01T00:00:00Z", 1);
        assert_eq!(
            lease_step(Some(&released), "cp1", &mut seen, t0),
            LeaseStep::Take
        );
        let own = lease(Some("cp1"), "2026-01-01T00:00:00Z", 15);
        assert_eq!(
            lease_step(Some(&own), "cp1", &mut seen, t0),
            LeaseStep::Take
        );

        // Held by cp2: waited for, judged by when cp1 saw each renewal, not by cp2's clock
        // (its renewTime is long past here).
        let held = lease(Some("cp2"), "2000-01-01T00:00:00Z", 15);
        assert_eq!(
            lease_step(Some(&held), "cp1", &mut seen, t0),
            LeaseStep::Wait(LEASE_POLL)
        );
        let t14 = t0 + Duration::from_secs(14);
        assert_eq!(
            lease_step(Some(&held), "cp1", &mut seen, t14),
            LeaseStep::Wait(Duration::from_secs(1))
        );
        // Renewed at t14: the 15 s start again from there.
        let renewed = lease(Some("cp2"), "2000-01-01T00:00:10Z", 15);
        assert_eq!(
            lease_step(Some(&renewed), "cp1", &mut seen, t14),
            LeaseStep::Wait(LEASE_POLL)
        );
        let t28 = t0 + Duration::from_secs(28);
        assert!(matches!(
            lease_step(Some(&renewed), "cp1", &mut seen, t28),
            LeaseStep::Wait(_)
        ));
        // Not renewed for its whole duration: expired, taken over.
        let t29 = t0 + Duration::from_secs(29);
        assert_eq!(
            lease_step(Some(&renewed), "cp1", &mut seen, t29),
            LeaseStep::Take
        );
    }

    #[test]
    fn lease_records_take_and_release_as_client_go_does() {
        let t = lease(Some("cp2"), "2026-01-01T00:00:00Z", 15);
        let mut t = t;
        t.spec.as_mut().expect("spec").lease_transitions = Some(3);
        t.metadata.resource_version = Some("42".into());
        let taken = lease_record(Some(&t), "cp1", true);
        let s = taken.spec.as_ref().expect("spec");
        assert_eq!(s.holder_identity.as_deref(), Some("cp1"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(
            s.lease_transitions,
            Some(4),
            "another holder before: a transition"
        );
        assert_eq!(
            taken.metadata.resource_version.as_deref(),
            Some("42"),
            "replaced with its version"
        );
        assert_eq!(
            taken.metadata.name.as_deref(),
            Some(names::KUBEBOOT_NODE_IPAM_LEASE)
        );
        let renewed = lease_record(Some(&taken), "cp1", true);
        assert_eq!(
            renewed.spec.as_ref().and_then(|s| s.lease_transitions),
            Some(4)
        );
        let released = lease_record(Some(&renewed), "cp1", false);
        let s = released.spec.as_ref().expect("spec");
        assert_eq!(s.holder_identity, None);
        assert_eq!(s.lease_duration_seconds, Some(1));
        let created = lease_record(None, "cp1", true);
        assert_eq!(
            created.spec.as_ref().and_then(|s| s.lease_transitions),
            Some(0)
        );
        assert_eq!(created.metadata.resource_version, None);
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

    const NODES: &str = "/api/v1/nodes/";
    const CSINODES: &str = "/apis/storage.k8s.io/v1/csinodes/";
    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

    #[derive(Default)]
    struct State {
        nodes: BTreeMap<String, Value>,
        csinodes: Vec<String>,
        lease: Option<Value>,
        /// (method, path) of every request.
        requests: Vec<(String, String)>,
        /// Every Lease holder written, in order ("" for a release).
        holders: Vec<String>,
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
            if let Some(name) = path.strip_prefix(NODES) {
                assert_eq!(method, "PATCH", "nodes are only patched");
                let patch: Value = serde_json::from_slice(body).expect("a patch");
                let Some(node) = st.nodes.get_mut(name) else {
                    return status(404, "NotFound");
                };
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
                return reply(200, node);
            }
            let lease_path = format!("{LEASES}/{}", names::KUBEBOOT_NODE_IPAM_LEASE);
            match (method, path) {
                ("GET", p) if p == lease_path => match &st.lease {
                    Some(l) => reply(200, l),
                    None => status(404, "NotFound"),
                },
                ("POST", LEASES) => {
                    if st.lease.is_some() {
                        return status(409, "AlreadyExists");
                    }
                    let mut l: Value = serde_json::from_slice(body).expect("a lease");
                    l["metadata"]["resourceVersion"] = json!(rv);
                    let holder = l["spec"]["holderIdentity"].as_str().unwrap_or_default();
                    st.holders.push(holder.to_string());
                    st.lease = Some(l.clone());
                    reply(201, &l)
                }
                ("PUT", p) if p == lease_path => {
                    let mut l: Value = serde_json::from_slice(body).expect("a lease");
                    let stored = st
                        .lease
                        .as_ref()
                        .map(|s| s["metadata"]["resourceVersion"].clone());
                    if stored != Some(l["metadata"]["resourceVersion"].clone()) {
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

    /// A fake cluster holding `nodes`, and an allocator for node `me` whose controller-manager
    /// manifest has `--controllers=<controllers>`.
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
            said_refused: Vec::new(),
            said_full: false,
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
            "cp1",
            KUBEBOOT,
        );
        fake.0.lock().expect("lock").csinodes = vec!["w1".into()];
        // w1's kubelet made its CSINode; w2's did not yet: it is looked at again shortly.
        let again = a.pass(&client).await.expect("pass");
        assert_eq!(again, Some(CSINODE_POLL));
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.1.0/24"));
        assert_eq!(fake.pod_cidr("w2"), None);
        // The Lease was taken for the pass and released after it.
        assert_eq!(fake.0.lock().expect("lock").holders, ["cp1", ""]);

        // w2's CSINode comes: the next podCIDR, the given one counted as used.
        fake.0.lock().expect("lock").csinodes.push("w2".into());
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w2").as_deref(), Some("10.244.2.0/24"));
        assert_eq!(fake.0.lock().expect("lock").holders, ["cp1", "", "cp1", ""]);
        // Nothing waits: a pass sends nothing.
        let sent = fake.0.lock().expect("lock").requests.len();
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.0.lock().expect("lock").requests.len(), sent);
    }

    #[tokio::test]
    async fn a_node_without_a_csinode_gets_its_podcidr_after_the_wait() {
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1",
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
            "cp1",
            KUBEBOOT,
        );
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into()];
            st.lease = Some(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": names::KUBEBOOT_NODE_IPAM_LEASE, "namespace": "kube-system",
                    "resourceVersion": "7"},
                "spec": {"holderIdentity": "cp2", "leaseDurationSeconds": 15,
                    "renewTime": "2026-01-01T00:00:00.000000Z"}}),
            );
        }
        let again = a.pass(&client).await.expect("pass");
        assert_eq!(again, Some(LEASE_POLL));
        assert_eq!(fake.patches(), 0);
        assert!(fake.0.lock().expect("lock").holders.is_empty());
        // cp2 released it: cp1 takes it at once.
        fake.0.lock().expect("lock").lease.as_mut().expect("lease")["spec"]["holderIdentity"] =
            Value::Null;
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.0.0/24"));
    }

    #[tokio::test]
    async fn a_node_given_its_podcidr_meanwhile_is_no_error_and_the_controller_managers_own_ipam_is_left_alone()
     {
        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1",
            KUBEBOOT,
        );
        // Set behind the allocator's back (its view still shows none).
        {
            let mut st = fake.0.lock().expect("lock");
            st.csinodes = vec!["w1".into()];
            st.nodes.get_mut("w1").expect("w1")["spec"] = json!({"podCIDR": "10.244.7.0/24"});
        }
        assert_eq!(a.pass(&client).await.expect("pass"), None);
        assert_eq!(fake.pod_cidr("w1").as_deref(), Some("10.244.7.0/24"));
        assert_eq!(fake.patches(), 1, "tried once, refused (422), not an error");

        let (fake, client, mut a, _dir) = setup(
            &[node_json("w1", "2026-01-01T00:00:05Z", None)],
            "cp1",
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
