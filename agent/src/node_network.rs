//! The node's pod network in `--pod-network bridge` mode: learns the Nodes and the cluster's
//! pod network (the `kubeadm-config` ConfigMap) from the API with the kubelet's credentials,
//! writes kubeboot's CNI configuration once this node's podCIDR is known, and keeps a host
//! route to every other node's podCIDR via that node's InternalIP (host-gw style) where
//! [`routes::plan`] allows one. Level-triggered: each period observes the Nodes, the cluster's
//! pod network and the host's routes, decides purely, then runs `ip route` in one place
//! ([`commands`]); only the refusals already logged are held between periods.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams};
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

/// How often the Nodes are listed once this node's network is configured.
const PERIOD: Duration = Duration::from_secs(15);
/// How often before that (the podCIDR is assigned seconds after the node registers).
const FAST_PERIOD: Duration = Duration::from_secs(3);
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

impl NodeInfo {
    /// The facts of a Node object: `spec.podCIDRs` (else `spec.podCIDR`) and every
    /// `InternalIP` that parses.
    pub fn from_node(n: &Node) -> NodeInfo {
        let spec = n.spec.as_ref();
        let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
        }
        NodeInfo {
            name: n.metadata.name.clone().unwrap_or_default(),
            pod_cidrs,
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

/// Runs the loop until the task is dropped.
pub async fn run(cfg: NodeNetworkConfig) {
    let mut client: Option<Client> = None;
    let mut configured = false;
    // Refusals and errors already logged: each is logged once, not every period.
    let mut logged = BTreeSet::new();
    let mut last_error: Option<String> = None;
    loop {
        let period = if configured { PERIOD } else { FAST_PERIOD };
        if client.is_none() && cfg.kubeconfig.exists() {
            match client_from(&cfg.kubeconfig).await {
                Ok(c) => client = Some(c),
                Err(e) => warn!("{e:#}"),
            }
        }
        if let Some(c) = &client {
            match sync(&cfg, c, &mut logged).await {
                Ok(done) => {
                    configured = done;
                    last_error = None;
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    if last_error.as_ref() != Some(&e) {
                        warn!("pod network: {e}");
                    }
                    last_error = Some(e);
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// One pass: observe (Nodes, the cluster's pod network, the host's routes), decide
/// ([`routes::plan`]), act ([`apply`]), say (each refusal once). True once this node's CNI
/// configuration is in place.
async fn sync(
    cfg: &NodeNetworkConfig,
    client: &Client,
    logged: &mut BTreeSet<String>,
) -> anyhow::Result<bool> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .context("could not list Nodes")?;
    let infos: Vec<NodeInfo> = list.items.iter().map(NodeInfo::from_node).collect();
    let cluster = cluster_network(client).await?;
    let mut host = observe_routes(false).await?;
    if cluster.as_ref().is_some_and(ClusterNetwork::has_ipv6) {
        host.extend(observe_routes(true).await?);
    }

    let plan = routes::plan(&routes::Observed {
        me: &cfg.node_name,
        nodes: &infos,
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

/// A client from an explicit kubeconfig, never the environment, with bounded timeouts.
async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let config = config_from(path).await?;
    Client::try_from(config).with_context(|| {
        format!(
            "could not build a client from {:?}",
            path.display().to_string()
        )
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
