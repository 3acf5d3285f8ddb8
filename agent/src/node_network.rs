//! The node's pod network in `--pod-network bridge` mode: learns the Nodes from the API with
//! the kubelet's credentials, writes kubeboot's CNI configuration once this node's podCIDR is
//! known, and keeps a host route to every other node's podCIDR via that node's InternalIP
//! (host-gw style). Level-triggered: one list of Nodes per period, nothing else held.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{debug, info, warn};

use crate::cni;
use crate::host::fs::Fs;
use crate::host::process;

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

/// What the loop needs to know of one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// `spec.podCIDR`, if assigned.
    pub pod_cidr: Option<String>,
    /// Its first `InternalIP`.
    pub internal_ip: Option<IpAddr>,
}

impl NodeInfo {
    /// The facts of a Node object.
    pub fn from_node(n: &Node) -> NodeInfo {
        NodeInfo {
            name: n.metadata.name.clone().unwrap_or_default(),
            pod_cidr: n.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            internal_ip: n
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| {
                    a.iter()
                        .find(|a| a.type_ == "InternalIP")
                        .and_then(|a| a.address.parse().ok())
                }),
        }
    }
}

/// A route to another node's pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The other node's podCIDR.
    pub dst: String,
    /// Its InternalIP.
    pub via: IpAddr,
}

/// The routes this node should have: one per other node with both a podCIDR and an
/// InternalIP, sorted.
pub fn desired_routes(nodes: &[NodeInfo], me: &str) -> Vec<Route> {
    let mut routes: Vec<Route> = nodes
        .iter()
        .filter(|n| n.name != me)
        .filter_map(|n| {
            Some(Route {
                dst: n.pod_cidr.clone()?,
                via: n.internal_ip?,
            })
        })
        .collect();
    routes.sort();
    routes.dedup_by(|a, b| a.dst == b.dst);
    routes
}

/// The destinations of `ip route show proto 77` output that are no longer desired.
pub fn stale_routes(shown: &str, desired: &[Route]) -> Vec<String> {
    shown
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|dst| !desired.iter().any(|r| r.dst == *dst))
        .map(str::to_string)
        .collect()
}

/// Runs the loop until the task is dropped.
pub async fn run(cfg: NodeNetworkConfig) {
    let mut client: Option<Client> = None;
    let mut configured = false;
    loop {
        let period = if configured { PERIOD } else { FAST_PERIOD };
        if client.is_none() && cfg.kubeconfig.exists() {
            match client_from(&cfg.kubeconfig).await {
                Ok(c) => client = Some(c),
                Err(e) => warn!("{e:#}"),
            }
        }
        if let Some(c) = &client {
            match sync(&cfg, c).await {
                Ok(done) => configured = done,
                Err(e) => warn!("pod network: {e:#}"),
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// One pass; true once this node's CNI configuration is in place.
async fn sync(cfg: &NodeNetworkConfig, client: &Client) -> anyhow::Result<bool> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .context("could not list Nodes")?;
    let infos: Vec<NodeInfo> = list.items.iter().map(NodeInfo::from_node).collect();
    let routes = desired_routes(&infos, &cfg.node_name);
    sync_routes(&routes).await?;
    let Some(cidr) = infos
        .iter()
        .find(|n| n.name == cfg.node_name)
        .and_then(|n| n.pod_cidr.clone())
    else {
        debug!("this node has no podCIDR yet");
        return Ok(false);
    };
    write_conflist(cfg, &cidr)?;
    Ok(true)
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

async fn sync_routes(routes: &[Route]) -> anyhow::Result<()> {
    let shown = ip(&["route", "show", "proto", ROUTE_PROTO]).await?;
    for dst in stale_routes(&shown, routes) {
        ip(&["route", "del", &dst, "proto", ROUTE_PROTO]).await?;
        info!(%dst, "removed the route to a node that is gone");
    }
    for r in routes {
        let via = r.via.to_string();
        if shown
            .lines()
            .any(|l| l.starts_with(&format!("{} via {via} ", r.dst)))
        {
            continue;
        }
        ip(&[
            "route",
            "replace",
            &r.dst,
            "via",
            &via,
            "proto",
            ROUTE_PROTO,
        ])
        .await?;
        info!(dst = %r.dst, %via, "route to a node's pods");
    }
    Ok(())
}

/// A client from an explicit kubeconfig, never the environment, with bounded timeouts.
async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let shown = path.display().to_string();
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("could not read the kubelet's kubeconfig {shown:?}"))?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("the kubelet's kubeconfig {shown:?} is not usable"))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(15));
    config.write_timeout = Some(Duration::from_secs(15));
    Client::try_from(config).with_context(|| format!("could not build a client from {shown:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            pod_cidr: cidr.map(str::to_string),
            internal_ip: ip.map(|i| i.parse().unwrap()),
        }
    }

    #[test]
    fn routes_go_to_other_nodes_with_a_cidr_and_an_address() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("10.0.0.1")),
            node("b", Some("10.244.1.0/24"), Some("10.0.0.2")),
            node("c", None, Some("10.0.0.3")),
            node("d", Some("10.244.3.0/24"), None),
        ];
        assert_eq!(
            desired_routes(&nodes, "a"),
            vec![Route {
                dst: "10.244.1.0/24".into(),
                via: "10.0.0.2".parse().unwrap()
            }]
        );
    }

    #[test]
    fn stale_routes_are_those_not_desired() {
        let shown = "10.244.1.0/24 via 10.0.0.2 dev eth0 proto 77 \n10.244.5.0/24 via 10.0.0.9 dev eth0 proto 77 \n";
        let desired = [Route {
            dst: "10.244.1.0/24".into(),
            via: "10.0.0.2".parse().unwrap(),
        }];
        assert_eq!(stale_routes(shown, &desired), vec!["10.244.5.0/24"]);
    }
}
