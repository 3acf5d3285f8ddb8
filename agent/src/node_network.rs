//! The node's pod network in `--pod-network bridge` mode: learns the Nodes and the cluster's
//! pod network (the `kubeadm-config` ConfigMap) from the API with the kubelet's credentials,
//! writes kubeboot's CNI configuration once this node's podCIDR is known, and keeps a host
//! route to every other node's podCIDR via that node's InternalIP (host-gw style) where
//! [`routes::plan`] allows one. Level-triggered: each pass observes the Nodes, the cluster's
//! pod network and the host's routes, decides purely, then runs `ip route` in one place
//! ([`commands`]); only the refusals already logged are held between passes.
//!
//! The Nodes are listed, then watched from the list's resourceVersion (as client-go's
//! reflector), and a pass runs when the watch shows a change in what routing uses
//! ([`KnownNodes::apply`]: a podCIDR, an InternalIP, a Node added or removed; the kubelet's
//! status heartbeats change nothing here), every [`FAST_PERIOD`] until this node's network is
//! configured (or while passes fail), and every [`RESYNC`] after that, which puts back a route
//! someone removed. The watch ends after [`WATCH_SECONDS`] (or on an error), and the Nodes are
//! listed again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{debug, info, warn};

use crate::cni;
use crate::host::fs::Fs;
use crate::host::process;

pub mod routes;

/// The routing protocol number kubeboot's routes carry (`ip route ... proto 77`), so they can
/// be told apart from everyone else's and flushed by `kubeboot reset`.
pub const ROUTE_PROTO: &str = "77";

/// How often a pass runs without a change in the Nodes once this node's network is
/// configured: the host's routes are read again then (a route removed by hand comes back).
const RESYNC: Duration = Duration::from_secs(60);
/// How often before that, and after a failed pass (the podCIDR is assigned seconds after the
/// node registers).
const FAST_PERIOD: Duration = Duration::from_secs(3);
/// How long the API server keeps one watch of the Nodes open before they are listed again
/// (client-go's reflector picks 5-10 min).
const WATCH_SECONDS: u32 = 290;
/// A watch that delivers nothing at all for this long, not even its own end, is given up: the
/// connection is gone without a FIN.
const WATCH_SILENCE: Duration = Duration::from_secs(WATCH_SECONDS as u64 + 60);
/// Bound for one `ip` command.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the loop needs.
#[derive(Debug, Clone)]
pub struct NodeNetworkConfig {
    /// This node's name.
    pub node_name: String,
    /// The kubelet's kubeconfig (`/etc/kubernetes/kubelet.conf`): `system:node` may list
    /// Nodes.
    pub kubeconfig: PathBuf,
    /// The CNI configuration directory (`/etc/cni/net.d`).
    pub cni_conf_dir: PathBuf,
    /// Where the CNI plugins are looked for, in order.
    pub cni_plugin_dirs: Vec<PathBuf>,
}

pub use routes::{ClusterNetwork, NodeInfo, Plan, Route};

/// A Node's podCIDRs as written: `spec.podCIDRs`, else `spec.podCIDR` (a Node written before
/// the list existed), else none.
pub fn pod_cidrs(n: &Node) -> Vec<String> {
    let spec = n.spec.as_ref();
    let mut v: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if v.is_empty() {
        v.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    v
}

impl NodeInfo {
    /// The facts of a Node object: its [`pod_cidrs`] and every `InternalIP` that parses.
    pub fn from_node(n: &Node) -> NodeInfo {
        NodeInfo {
            name: n.metadata.name.clone().unwrap_or_default(),
            pod_cidrs: pod_cidrs(n),
            internal_ips: n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .map(|a| {
                    a.iter()
                        .filter(|a| a.type_ == "InternalIP")
                        .filter_map(|a| a.address.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The Nodes' facts as the list and the watch showed them, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KnownNodes(BTreeMap<String, NodeInfo>);

impl KnownNodes {
    /// The facts of a list of Nodes.
    pub fn from_nodes(nodes: &[Node]) -> Self {
        KnownNodes(
            nodes
                .iter()
                .map(NodeInfo::from_node)
                .map(|i| (i.name.clone(), i))
                .collect(),
        )
    }

    /// Takes in one watch event; true when what routing uses changed (a Node added or
    /// removed, its podCIDRs or InternalIPs): only then is a pass due. Anything else a Node
    /// update carries (status heartbeats, conditions, images, labels) is false.
    pub fn apply(&mut self, event: &WatchEvent<Node>) -> bool {
        match event {
            WatchEvent::Added(n) | WatchEvent::Modified(n) => {
                let info = NodeInfo::from_node(n);
                self.0.insert(info.name.clone(), info.clone()) != Some(info)
            }
            WatchEvent::Deleted(n) => {
                let name = n.metadata.name.as_deref().unwrap_or_default();
                self.0.remove(name).is_some()
            }
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => false,
        }
    }

    /// The facts, in name order.
    pub fn infos(&self) -> Vec<NodeInfo> {
        self.0.values().cloned().collect()
    }
}

/// What the loop holds between passes.
struct Looper {
    cfg: NodeNetworkConfig,
    /// Refusals already logged: each is logged once, not at every pass.
    logged: BTreeSet<String>,
    last_error: Option<String>,
    /// The last pass succeeded and configured this node's network.
    configured: bool,
}

impl Looper {
    /// One pass over `nodes`, its failure logged once.
    async fn pass(&mut self, client: &Client, nodes: &KnownNodes) {
        match sync(&self.cfg, client, &nodes.infos(), &mut self.logged).await {
            Ok(done) => {
                self.configured = done;
                self.last_error = None;
            }
            Err(e) => {
                self.configured = false;
                self.report(e);
            }
        }
    }

    fn report(&mut self, e: anyhow::Error) {
        let e = format!("{e:#}");
        if self.last_error.as_ref() != Some(&e) {
            warn!("pod network: {e}");
        }
        self.last_error = Some(e);
    }

    /// When the next pass is due without a change in the Nodes.
    fn period(&self) -> Duration {
        if self.configured { RESYNC } else { FAST_PERIOD }
    }

    /// One round: list the Nodes, a pass, then watch them, with a pass at each change that
    /// matters and every [`Looper::period`], until the watch ends.
    async fn round(&mut self, clients: &Clients) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(clients.requests.clone());
        let list = api
            .list(&ListParams::default())
            .await
            .context("could not list Nodes")?;
        let mut nodes = KnownNodes::from_nodes(&list.items);
        self.pass(&clients.requests, &nodes).await;
        let version = list.metadata.resource_version.unwrap_or_default();
        let watches: Api<Node> = Api::all(clients.watches.clone());
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        let stream = match watches.watch(&params, &version).await {
            Ok(s) => s,
            Err(e) => {
                // Watching is only cheaper than listing: go on at the pass period.
                debug!(
                    "could not watch Nodes ({e}); listing again after {:?}",
                    self.period()
                );
                tokio::time::sleep(self.period()).await;
                return Ok(());
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut due = tokio::time::Instant::now() + self.period();
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                event = stream.next() => {
                    heard = tokio::time::Instant::now();
                    match event {
                        Some(Ok(WatchEvent::Error(s))) => {
                            debug!("the Node watch ended: {} ({})", s.message, s.code);
                            return Ok(());
                        }
                        Some(Ok(event)) => {
                            if !nodes.apply(&event) {
                                continue;
                            }
                        }
                        Some(Err(e)) => {
                            debug!("the Node watch broke: {e}; listing again");
                            return Ok(());
                        }
                        None => return Ok(()),
                    }
                }
                () = tokio::time::sleep_until(due) => {
                    if heard.elapsed() >= WATCH_SILENCE {
                        debug!("the Node watch was silent for {WATCH_SILENCE:?}; listing again");
                        return Ok(());
                    }
                }
            }
            self.pass(&clients.requests, &nodes).await;
            due = tokio::time::Instant::now() + self.period();
        }
    }
}

/// The API clients of the loop: requests with bounded timeouts, and watches without a read
/// timeout (a quiet watch is not a dead connection; [`WATCH_SILENCE`] bounds it instead).
struct Clients {
    requests: Client,
    watches: Client,
}

/// Runs the loop until the task is dropped.
pub async fn run(cfg: NodeNetworkConfig) {
    let mut clients: Option<Clients> = None;
    let mut looper = Looper {
        cfg,
        logged: BTreeSet::new(),
        last_error: None,
        configured: false,
    };
    loop {
        if clients.is_none() && looper.cfg.kubeconfig.exists() {
            match clients_from(&looper.cfg.kubeconfig).await {
                Ok(c) => clients = Some(c),
                Err(e) => warn!("{e:#}"),
            }
        }
        let started = tokio::time::Instant::now();
        if let Some(c) = &clients
            && let Err(e) = looper.round(c).await
        {
            looper.configured = false;
            looper.report(e);
        }
        // Rounds at least FAST_PERIOD apart: a watch that ends at once costs no more than the
        // list every few seconds it replaces.
        tokio::time::sleep_until(started + FAST_PERIOD).await;
    }
}

/// One pass: observe (the cluster's pod network, the host's routes; the Nodes are given),
/// decide ([`routes::plan`]), act ([`apply`]), say (each refusal once). True once this node's
/// CNI configuration is in place.
async fn sync(
    cfg: &NodeNetworkConfig,
    client: &Client,
    infos: &[NodeInfo],
    logged: &mut BTreeSet<String>,
) -> anyhow::Result<bool> {
    let cluster = cluster_network(client).await?;
    let mut host = observe_routes(false).await?;
    if cluster.as_ref().is_some_and(ClusterNetwork::has_ipv6) {
        host.extend(observe_routes(true).await?);
    }

    let plan = routes::plan(&routes::Observed {
        me: &cfg.node_name,
        nodes: infos,
        cluster: cluster.as_ref(),
        host: &host,
        bridge: components::names::KUBEBOOT_CNI_BRIDGE,
    });

    for line in routes::new_refusals(logged, plan.refused.iter().chain(plan.own.as_ref().err())) {
        warn!("{line}");
    }
    apply(&plan).await?;
    match plan.own {
        Ok(Some(cidr)) => {
            write_conflist(cfg, &cidr.to_string())?;
            Ok(true)
        }
        Ok(None) => {
            debug!("this node has no podCIDR yet");
            Ok(false)
        }
        Err(_) => Ok(false),
    }
}

/// The cluster's pod network from the `kube-system/kubeadm-config` ConfigMap, which the
/// kubelet's identity may read (kubeadm's `kubeadm:nodes-kubeadm-config` Role binds
/// `system:nodes`). `None` when the ConfigMap or its pod subnet is absent: nothing is
/// routed then. A failed read is an error, so nothing is changed on a passing API error.
async fn cluster_network(client: &Client) -> anyhow::Result<Option<ClusterNetwork>> {
    use components::names;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), names::KUBE_SYSTEM);
    let cm = cms
        .get_opt(names::KUBEADM_CONFIG_CONFIGMAP)
        .await
        .with_context(|| {
            format!(
                "could not read the ConfigMap {}/{} (the cluster's pod subnet)",
                names::KUBE_SYSTEM,
                names::KUBEADM_CONFIG_CONFIGMAP
            )
        })?;
    let Some(text) = cm
        .and_then(|cm| cm.data)
        .and_then(|mut d| d.remove(names::CLUSTER_CONFIGURATION_KEY))
    else {
        return Ok(None);
    };
    ClusterNetwork::from_cluster_configuration(&text)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| {
            format!(
                "the {} in ConfigMap {}/{} is not usable",
                names::CLUSTER_CONFIGURATION_KEY,
                names::KUBE_SYSTEM,
                names::KUBEADM_CONFIG_CONFIGMAP
            )
        })
}

/// The host's IPv4 (or IPv6) routes of every table, numeric (`ip -j -N route show table
/// all`).
async fn observe_routes(ipv6: bool) -> anyhow::Result<Vec<routes::HostRoute>> {
    let family = if ipv6 { "-6" } else { "-4" };
    let json = ip(&[family, "-j", "-N", "route", "show", "table", "all"]).await?;
    routes::parse_routes(&json, ipv6)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("could not read the output of ip {family} -j -N route show"))
}

/// Writes kubeboot's CNI configuration for `cidr` unless it is there already.
fn write_conflist(cfg: &NodeNetworkConfig, cidr: &str) -> anyhow::Result<()> {
    let fs = Fs::real();
    let path = cfg
        .cni_conf_dir
        .join(components::names::KUBEBOOT_CNI_CONFLIST);
    let want = cni::bridge_conflist(cidr);
    if fs.read_string_if_exists(&path)?.as_deref() == Some(want.as_str()) {
        return Ok(());
    }
    // A plugin missing now would fail every pod sandbox later, less clearly.
    cni::plugin_dir(&cfg.cni_plugin_dirs, |p| p.is_file())?;
    fs.create_dir(&cfg.cni_conf_dir, 0o755)?;
    fs.write_public(&path, want.as_bytes())
        .context("could not write the CNI configuration")?;
    info!(pod_cidr = %cidr, path = %path.display(), "wrote the CNI configuration");
    Ok(())
}

async fn ip(args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = process::run_with_timeout(
        Path::new("ip"),
        &args,
        None,
        None,
        Path::new("/"),
        IP_TIMEOUT,
    )
    .await
    .with_context(|| format!("could not run ip {}", args.join(" ")))?;
    anyhow::ensure!(
        !out.timed_out && out.code == Some(0),
        "ip {} failed: {}",
        args.join(" "),
        out.output.trim()
    );
    Ok(out.output)
}

/// The `ip` arguments of a plan, in the order they run: removals first (a route moving to
/// another destination frees its gateway first), then replacements and additions. Every
/// command names protocol 77 in the main table, so a deletion never matches a route kubeboot
/// did not create (the kernel compares the protocol when one is given).
pub fn commands(plan: &Plan) -> Vec<Vec<String>> {
    let tail = |v: &mut Vec<String>| {
        v.extend(["proto", ROUTE_PROTO, "table", "main"].map(String::from));
    };
    let mut cmds = Vec::new();
    for r in &plan.remove {
        let mut v = vec!["route".to_string(), "del".into(), r.dst.to_string()];
        if let Some(g) = r.gateway {
            v.extend(["via".to_string(), g.to_string()]);
        }
        tail(&mut v);
        cmds.push(v);
    }
    for (verb, list) in [("replace", &plan.replace), ("add", &plan.add)] {
        for r in list {
            let mut v = vec![
                "route".to_string(),
                verb.to_string(),
                r.dst.to_string(),
                "via".into(),
                r.via.to_string(),
            ];
            tail(&mut v);
            cmds.push(v);
        }
    }
    cmds
}

/// Runs the plan's `ip route` commands: the one place routes change. Each runs even when an
/// earlier one failed; the failures come back together.
async fn apply(plan: &Plan) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for cmd in commands(plan) {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        match ip(&args).await {
            Ok(_) => {
                info!(command = %format!("ip {}", args.join(" ")), "pod network route changed")
            }
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}

/// The clients of an explicit kubeconfig, never the environment: with bounded timeouts, and
/// the same without a read timeout for watches.
async fn clients_from(path: &Path) -> anyhow::Result<Clients> {
    let config = config_from(path).await?;
    let mut watch_config = config.clone();
    watch_config.read_timeout = None;
    let build = |c| {
        Client::try_from(c).with_context(|| {
            format!(
                "could not build a client from {:?}",
                path.display().to_string()
            )
        })
    };
    Ok(Clients {
        requests: build(config)?,
        watches: build(watch_config)?,
    })
}

/// The client settings of the kubelet's kubeconfig at `path` (read explicitly, never through
/// the environment) with bounded timeouts; [`crate::apilb`] points them at the balancer.
pub(crate) async fn config_from(path: &Path) -> anyhow::Result<Config> {
    let shown = path.display().to_string();
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("could not read the kubelet's kubeconfig {shown:?}"))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("the kubelet's kubeconfig {shown:?} is not usable"))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(15));
    config.write_timeout = Some(Duration::from_secs(15));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use routes::{HostRoute, RouteKind};

    #[test]
    fn every_route_command_names_kubeboots_protocol_and_never_replaces_blindly() {
        assert_eq!(ROUTE_PROTO, routes::KUBEBOOT_PROTO.to_string());
        let r = |dst: &str, via: &str| Route {
            dst: dst.parse().unwrap(),
            via: via.parse().unwrap(),
        };
        let plan = Plan {
            add: vec![r("10.244.3.0/24", "192.168.1.20")],
            replace: vec![r("10.244.5.0/24", "192.168.1.6")],
            keep: vec![r("10.244.6.0/24", "192.168.1.7")],
            remove: vec![HostRoute {
                dst: "10.244.9.0/24".parse().unwrap(),
                gateway: Some("192.168.1.9".parse().unwrap()),
                dev: Some("eth0".into()),
                kind: RouteKind::Gateway,
                proto: routes::KUBEBOOT_PROTO,
                table: 254,
            }],
            refused: vec![],
            own: Ok(None),
        };
        let shown: Vec<String> = commands(&plan).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            shown,
            [
                "route del 10.244.9.0/24 via 192.168.1.9 proto 77 table main",
                "route replace 10.244.5.0/24 via 192.168.1.6 proto 77 table main",
                "route add 10.244.3.0/24 via 192.168.1.20 proto 77 table main",
            ]
        );
    }

    fn node(name: &str, cidr: Option<&str>, ip: &str, heartbeat: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"beat": heartbeat}},
            "spec": {"podCIDR": cidr},
            "status": {
                "addresses": [{"type": "InternalIP", "address": ip}],
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "lastHeartbeatTime": format!("2026-12-03T19:00:{heartbeat}Z")
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_a_change_in_what_routing_uses_makes_a_pass_due() {
        let mut known = KnownNodes::from_nodes(&[node("n1", None, "192.168.1.5", "00")]);
        assert_eq!(known.infos().len(), 1);
        // A heartbeat, a label: nothing routing uses.
        assert!(!known.apply(&WatchEvent::Modified(node("n1", None, "192.168.1.5", "10"))));
        // The podCIDR assigned.
        let cidr = Some("10.244.0.0/24");
        assert!(known.apply(&WatchEvent::Modified(node("n1", cidr, "192.168.1.5", "20"))));
        assert_eq!(known.infos()[0].pod_cidrs, ["10.244.0.0/24"]);
        assert!(!known.apply(&WatchEvent::Modified(node("n1", cidr, "192.168.1.5", "30"))));
        // Another node, its address changed, then gone.
        let n2 = |ip| node("n2", Some("10.244.1.0/24"), ip, "00");
        assert!(known.apply(&WatchEvent::Added(n2("192.168.1.6"))));
        assert!(!known.apply(&WatchEvent::Added(n2("192.168.1.6"))));
        assert!(known.apply(&WatchEvent::Modified(n2("192.168.1.7"))));
        assert_eq!(
            known.infos()[1].internal_ips,
            ["192.168.1.7".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(known.apply(&WatchEvent::Deleted(n2("192.168.1.7"))));
        assert!(!known.apply(&WatchEvent::Deleted(n2("192.168.1.7"))));
        assert_eq!(known.infos().len(), 1);
        assert!(!known.apply(&WatchEvent::Bookmark(serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"resourceVersion": "12"}})
        ).unwrap())));
    }

    #[test]
    fn node_facts_take_every_pod_cidr_and_internal_ip() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd10::/64"]},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "InternalIP", "address": "192.168.1.5"},
                {"type": "InternalIP", "address": "fd00::5"},
                {"type": "InternalIP", "address": "bogus"}
            ]}
        }))
        .unwrap();
        let info = NodeInfo::from_node(&node);
        assert_eq!(info.name, "n1");
        assert_eq!(info.pod_cidrs, ["10.244.1.0/24", "fd10::/64"]);
        assert_eq!(
            info.internal_ips,
            vec![
                "192.168.1.5".parse::<std::net::IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        let old: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n2"}, "spec": {"podCIDR": "10.244.2.0/24"}
        }))
        .unwrap();
        assert_eq!(NodeInfo::from_node(&old).pod_cidrs, ["10.244.2.0/24"]);
    }
}
