//! Which host routes to other nodes' pods this node may have, decided purely from what was
//! observed: the Nodes (podCIDRs, InternalIPs), the cluster's pod and service subnets and node
//! mask size (what kube-controller-manager allocates podCIDRs from), and the host's routing
//! tables as `ip -j -N route show table all` prints them.
//!
//! A Node object is data anyone with the right to create Nodes controls, so a podCIDR is
//! routed only when it is a podCIDR the controller-manager could have allocated (inside the
//! pod subnet, exactly the node mask size), it harms nothing already there (no local address,
//! no connected subnet, no service address, no route kubeboot did not create, not this node's
//! own pods) and its gateway is a neighbour (an InternalIP inside a connected subnet of this
//! node). kubeboot's routes carry protocol [`KUBEBOOT_PROTO`]; only those are ever replaced or
//! deleted.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

/// The routing protocol number of kubeboot's routes (`ip route ... proto 77`).
pub const KUBEBOOT_PROTO: u8 = 77;

/// kube-controller-manager's default node mask sizes (nodeipam: `defaultNodeMaskCIDRIPv4`,
/// `defaultNodeMaskCIDRIPv6`).
const DEFAULT_NODE_MASK_V4: u8 = 24;
const DEFAULT_NODE_MASK_V6: u8 = 64;
/// kubeadm's default service subnet, when the ClusterConfiguration names none.
const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";

/// Routing table numbers (`rtnetlink.h`: `RT_TABLE_MAIN`, `RT_TABLE_LOCAL`).
const TABLE_MAIN: u32 = 254;
const TABLE_LOCAL: u32 = 255;
/// `RTPROT_BOOT`: what iproute2 omits from its output.
const PROTO_BOOT: u8 = 3;

/// What one Node says that routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// `spec.podCIDRs` (or `spec.podCIDR` when the list is empty), as written.
    pub pod_cidrs: Vec<String>,
    /// Its `InternalIP` addresses, in status order.
    pub internal_ips: Vec<IpAddr>,
}

/// The pod network as kube-controller-manager allocates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// `--cluster-cidr`: one subnet per family.
    pub pod_subnets: Vec<IpNet>,
    /// The podCIDR prefix length of IPv4 nodes.
    pub node_mask_v4: u8,
    /// The podCIDR prefix length of IPv6 nodes.
    pub node_mask_v6: u8,
    /// `--service-cluster-ip-range`.
    pub service_subnets: Vec<IpNet>,
}

impl ClusterNetwork {
    /// The pod network of a kubeadm ClusterConfiguration (the `ClusterConfiguration` key of
    /// the `kube-system/kubeadm-config` ConfigMap), as the controller-manager manifest built
    /// from it starts the controller-manager: `networking.podSubnet` as `--cluster-cidr`
    /// and `networking.serviceSubnet` as `--service-cluster-ip-range`, each overridden by
    /// `controllerManager.extraArgs` of the same flag, and the node mask size from
    /// `--node-cidr-mask-size-ipv4`/`-ipv6` or `--node-cidr-mask-size` (kube-controller-
    /// manager: app/core.go, setNodeCIDRMaskSizes). `None` when the cluster has no pod
    /// subnet: the controller-manager then allocates no podCIDRs.
    ///
    /// # Errors
    /// The document does not load, or a subnet or mask size does not parse.
    pub fn from_cluster_configuration(yaml: &str) -> Result<Option<ClusterNetwork>, String> {
        let file = components::config::load(yaml).map_err(|e| e.to_string())?;
        let spec = file
            .cluster
            .ok_or("the document is not a ClusterConfiguration")?;
        let flags = &spec.controller_manager.extra_args;
        let flag = |name: &str| flags.get(name).filter(|v| !v.trim().is_empty());
        let Some(pods) = flag("cluster-cidr").or(spec.networking.pod_subnet.as_ref()) else {
            return Ok(None);
        };
        if pods.trim().is_empty() {
            return Ok(None);
        }
        let pod_subnets = subnets("the pod subnet", pods)?;
        let services = flag("service-cluster-ip-range")
            .or(spec.networking.service_subnet.as_ref())
            .map_or(DEFAULT_SERVICE_SUBNET, String::as_str);
        let service_subnets = subnets("the service subnet", services)?;
        let mask = |name: &str, bits: u8| -> Result<Option<u8>, String> {
            let Some(v) = flag(name) else { return Ok(None) };
            match v.trim().parse::<u8>() {
                Ok(m) if m <= bits => Ok(Some(m)),
                _ => Err(format!("--{name} {v:?} is not a prefix length (0-{bits})")),
            }
        };
        let single = mask("node-cidr-mask-size", 128)?;
        let net = ClusterNetwork {
            node_mask_v4: mask("node-cidr-mask-size-ipv4", 32)?
                .or(single)
                .unwrap_or(DEFAULT_NODE_MASK_V4),
            node_mask_v6: mask("node-cidr-mask-size-ipv6", 128)?
                .or(single)
                .unwrap_or(DEFAULT_NODE_MASK_V6),
            pod_subnets,
            service_subnets,
        };
        for s in &net.pod_subnets {
            if net.mask_for(s) < s.prefix_len() || net.mask_for(s) > s.max_prefix_len() {
                return Err(format!(
                    "the node mask size /{} does not fit the pod subnet {s}",
                    net.mask_for(s)
                ));
            }
        }
        Ok(Some(net))
    }

    /// The prefix length every podCIDR of `net`'s family has.
    pub fn mask_for(&self, net: &IpNet) -> u8 {
        match net {
            IpNet::V4(_) => self.node_mask_v4,
            IpNet::V6(_) => self.node_mask_v6,
        }
    }

    /// Whether some pod subnet is IPv6.
    pub fn has_ipv6(&self) -> bool {
        self.pod_subnets.iter().any(|s| matches!(s, IpNet::V6(_)))
    }
}

fn subnets(what: &str, list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(|s| {
            s.trim()
                .parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| format!("{what} {s:?} is not a CIDR"))
        })
        .collect()
}

/// What kind of route a routing table entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A unicast route straight onto a link, no gateway: a connected subnet.
    Connected,
    /// A unicast route via a gateway (or several).
    Gateway,
    /// One of this host's own addresses: `local`, `broadcast`, `anycast`, `multicast`.
    Local,
    /// `blackhole`, `unreachable`, `prohibit`, `throw` and the like.
    Other,
}

/// One entry of the host's routing tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    /// Its destination.
    pub dst: IpNet,
    /// Its gateway, for a single-path gateway route.
    pub gateway: Option<IpAddr>,
    /// Its device, if any.
    pub dev: Option<String>,
    /// What kind it is.
    pub kind: RouteKind,
    /// The routing protocol that installed it (`2` kernel, `3` boot, `4` static, `77` kubeboot).
    pub proto: u8,
    /// Its table (`254` main, `255` local).
    pub table: u32,
}

impl HostRoute {
    fn is_kubeboots(&self) -> bool {
        self.proto == KUBEBOOT_PROTO && self.table == TABLE_MAIN
    }
}

impl fmt::Display for HostRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        write!(f, " proto {}", self.proto)?;
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        Ok(())
    }
}

/// Reads `ip -j -N route show table all` (with `-4` or `-6`: `ipv6` says which, since
/// `default` names both families' default route). Routes of tables other than main and
/// local are left out: kubeboot adds to main only.
///
/// # Errors
/// The text is not that JSON, or an entry's destination or numbers do not parse: a partial
/// view of the routing table must not be acted on.
pub fn parse_routes(json: &str, ipv6: bool) -> Result<Vec<HostRoute>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let entries = v.as_array().ok_or("not a JSON list")?;
    let mut routes = Vec::new();
    for e in entries {
        let text = |key: &str| e.get(key).and_then(Value::as_str);
        let number = |key: &str, default: u32| -> Result<u32, String> {
            match e.get(key) {
                None => Ok(default),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("{key} {n} is not a number")),
                Some(Value::String(s)) => s
                    .parse()
                    .map_err(|_| format!("{key} {s:?} is not numeric (run ip with -N)")),
                Some(other) => Err(format!("{key} {other} is not a number")),
            }
        };
        let table = number("table", TABLE_MAIN)?;
        if table != TABLE_MAIN && table != TABLE_LOCAL {
            continue;
        }
        let dst = match text("dst").ok_or_else(|| format!("a route without dst: {e}"))? {
            "default" if ipv6 => IpNet::V6(Default::default()),
            "default" => IpNet::V4(Default::default()),
            d if d.contains('/') => d.parse().map_err(|_| format!("dst {d:?} is not a CIDR"))?,
            d => IpNet::from(
                d.parse::<IpAddr>()
                    .map_err(|_| format!("dst {d:?} is not an address"))?,
            ),
        };
        let proto = u8::try_from(number("protocol", u32::from(PROTO_BOOT))?)
            .map_err(|_| format!("protocol of {dst} is out of range"))?;
        // rtnetlink.h: RTN_UNICAST 1, LOCAL 2, BROADCAST 3, ANYCAST 4, MULTICAST 5.
        let rtype = number("type", 1)?;
        let gateway = match text("gateway") {
            Some(g) => Some(
                g.parse::<IpAddr>()
                    .map_err(|_| format!("gateway {g:?} of {dst} is not an address"))?,
            ),
            None => None,
        };
        let multipath = e.get("nexthops").is_some() || e.get("via").is_some();
        let kind = match rtype {
            1 if gateway.is_some() || multipath => RouteKind::Gateway,
            1 => RouteKind::Connected,
            2..=5 => RouteKind::Local,
            _ => RouteKind::Other,
        };
        routes.push(HostRoute {
            dst,
            gateway,
            dev: text("dev").map(str::to_string),
            kind,
            proto,
            table,
        });
    }
    Ok(routes)
}

/// A route to another node's pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The other node's podCIDR.
    pub dst: IpNet,
    /// Its InternalIP.
    pub via: IpAddr,
}

/// Why a podCIDR gets no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The cluster has no pod subnet, so no podCIDR is the controller-manager's.
    NoPodSubnet,
    /// Not a CIDR at all.
    NotACidr,
    /// A CIDR with host bits set.
    NotANetwork,
    /// Outside every pod subnet of the cluster.
    OutsidePodSubnet(Vec<IpNet>),
    /// Not the node mask size.
    WrongMaskSize(u8),
    /// Overlaps the service subnet.
    OverlapsServiceSubnet(IpNet),
    /// Overlaps this node's own podCIDR.
    OwnPodCidr(IpNet),
    /// Overlaps another node's podCIDR.
    ClaimedTwice(String),
    /// Overlaps one of this host's addresses.
    OverlapsLocal(HostRoute),
    /// Overlaps a subnet this host is connected to.
    OverlapsConnected(HostRoute),
    /// A route kubeboot did not create is there for (part of) it.
    ForeignRoute(HostRoute),
    /// The Node has no InternalIP of the podCIDR's family.
    NoInternalIp,
    /// The InternalIP is one of this host's own addresses.
    GatewayIsThisHost(IpAddr),
    /// The InternalIP is inside the pod or service network.
    GatewayInClusterNetwork(IpAddr),
    /// The InternalIP is in no subnet this node is connected to.
    GatewayOffLink(IpAddr),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoPodSubnet => write!(
                f,
                "the cluster has no pod subnet (networking.podSubnet in kubeadm-config), so no podCIDR is allocated by kubeadm's controller-manager"
            ),
            Reason::NotACidr => write!(f, "is not a CIDR"),
            Reason::NotANetwork => write!(f, "has host bits set"),
            Reason::OutsidePodSubnet(s) => write!(
                f,
                "is outside the cluster's pod subnet {}",
                s.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Reason::WrongMaskSize(m) => write!(f, "is not a /{m} (the node mask size)"),
            Reason::OverlapsServiceSubnet(s) => write!(f, "overlaps the service subnet {s}"),
            Reason::OwnPodCidr(c) => write!(f, "overlaps this node's own podCIDR {c}"),
            Reason::ClaimedTwice(n) => write!(f, "overlaps the podCIDR of node {n:?} too"),
            Reason::OverlapsLocal(r) => write!(f, "overlaps this host's address route {r}"),
            Reason::OverlapsConnected(r) => {
                write!(f, "overlaps the connected subnet route {r}")
            }
            Reason::ForeignRoute(r) => write!(
                f,
                "is routed already by a route kubeboot did not create ({r}); kubeboot leaves it alone"
            ),
            Reason::NoInternalIp => write!(f, "has no InternalIP of its family to route via"),
            Reason::GatewayIsThisHost(g) => {
                write!(f, "would go via {g}, one of this host's own addresses")
            }
            Reason::GatewayInClusterNetwork(g) => {
                write!(f, "would go via {g}, inside the pod or service network")
            }
            Reason::GatewayOffLink(g) => write!(
                f,
                "would go via {g}, which is in no subnet this node is connected to"
            ),
        }
    }
}

/// A podCIDR that gets no route, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The Node that claims it.
    pub node: String,
    /// The podCIDR as the Node wrote it.
    pub pod_cidr: String,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no route to the pods of node {:?}: podCIDR {:?} {}",
            self.node, self.pod_cidr, self.reason
        )
    }
}

/// Everything the decision reads.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// This node's name.
    pub me: &'a str,
    /// Every Node.
    pub nodes: &'a [NodeInfo],
    /// The cluster's pod network; `None` when it has no pod subnet.
    pub cluster: Option<&'a ClusterNetwork>,
    /// The host's routes (main and local tables).
    pub host: &'a [HostRoute],
    /// The device of kubeboot's own bridge, whose routes are this node's own pods.
    pub bridge: &'a str,
}

/// What to do with the host's routes to other nodes' pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// New routes: `ip route add ... proto 77`.
    pub add: Vec<Route>,
    /// kubeboot's routes whose gateway changed: `ip route replace ... proto 77`.
    pub replace: Vec<Route>,
    /// kubeboot's routes that stay as they are.
    pub keep: Vec<Route>,
    /// kubeboot's routes to remove: `ip route del ... proto 77`.
    pub remove: Vec<HostRoute>,
    /// The podCIDRs that get no route.
    pub refused: Vec<Refusal>,
    /// This node's own podCIDR for its pods' bridge, when it passes the same checks.
    pub own: Result<Option<IpNet>, Refusal>,
}

/// Checks one podCIDR against the cluster's pod network and the host's routes; routes on
/// `exempt_dev` (this node's own bridge, for its own podCIDR) do not count as conflicts.
fn check_cidr(
    text: &str,
    cluster: Option<&ClusterNetwork>,
    mine: &[IpNet],
    host: &[HostRoute],
    exempt_dev: Option<&str>,
) -> Result<IpNet, Reason> {
    let cluster = cluster.ok_or(Reason::NoPodSubnet)?;
    let net: IpNet = text.trim().parse().map_err(|_| Reason::NotACidr)?;
    if net.trunc() != net {
        return Err(Reason::NotANetwork);
    }
    if !cluster.pod_subnets.iter().any(|s| s.contains(&net)) {
        return Err(Reason::OutsidePodSubnet(cluster.pod_subnets.clone()));
    }
    let mask = cluster.mask_for(&net);
    if net.prefix_len() != mask {
        return Err(Reason::WrongMaskSize(mask));
    }
    if let Some(s) = cluster.service_subnets.iter().find(|s| overlaps(s, &net)) {
        return Err(Reason::OverlapsServiceSubnet(*s));
    }
    if let Some(m) = mine.iter().find(|m| overlaps(m, &net)) {
        return Err(Reason::OwnPodCidr(*m));
    }
    for r in host {
        if exempt_dev.is_some() && r.dev.as_deref() == exempt_dev {
            continue;
        }
        match r.kind {
            RouteKind::Local if overlaps(&r.dst, &net) => {
                return Err(Reason::OverlapsLocal(r.clone()));
            }
            RouteKind::Connected if r.table == TABLE_MAIN && overlaps(&r.dst, &net) => {
                return Err(Reason::OverlapsConnected(r.clone()));
            }
            // A broader route (the default, a VPN's 10.0.0.0/8) keeps its traffic outside the
            // podCIDR; one for the podCIDR itself or a part of it would be taken over.
            RouteKind::Gateway | RouteKind::Other
                if r.table == TABLE_MAIN && !r.is_kubeboots() && net.contains(&r.dst) =>
            {
                return Err(Reason::ForeignRoute(r.clone()));
            }
            _ => {}
        }
    }
    Ok(net)
}

/// Checks the gateway of a route to `net` (a node's InternalIP of its family).
fn check_gateway(
    net: &IpNet,
    node: &NodeInfo,
    cluster: &ClusterNetwork,
    host: &[HostRoute],
) -> Result<IpAddr, Reason> {
    let via = *node
        .internal_ips
        .iter()
        .find(|ip| ip.is_ipv4() == matches!(net, IpNet::V4(_)))
        .ok_or(Reason::NoInternalIp)?;
    if host.iter().any(|r| {
        r.kind == RouteKind::Local
            && r.dst.contains(&via)
            && r.dst.prefix_len() == r.dst.max_prefix_len()
    }) {
        return Err(Reason::GatewayIsThisHost(via));
    }
    if cluster
        .pod_subnets
        .iter()
        .chain(&cluster.service_subnets)
        .any(|s| s.contains(&via))
    {
        return Err(Reason::GatewayInClusterNetwork(via));
    }
    let on_link = host.iter().any(|r| {
        r.kind == RouteKind::Connected
            && r.table == TABLE_MAIN
            && r.dst.prefix_len() > 0
            && r.dst.contains(&via)
    });
    if !on_link {
        return Err(Reason::GatewayOffLink(via));
    }
    Ok(via)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Decides the routes: one to each other node's podCIDR that passes every check, via that
/// node's InternalIP; kubeboot's own routes (protocol 77, main table) that are no longer
/// wanted are removed, those wanted with another gateway replaced. Refusals come in node
/// order; a podCIDR two nodes claim is refused for both.
pub fn plan(obs: &Observed<'_>) -> Plan {
    let mut nodes: Vec<&NodeInfo> = obs.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let me = nodes.iter().find(|n| n.name == obs.me);
    let own_text = me.and_then(|n| n.pod_cidrs.first());
    let own = match own_text {
        None => Ok(None),
        Some(text) => check_cidr(text, obs.cluster, &[], obs.host, Some(obs.bridge))
            .map(Some)
            .map_err(|reason| Refusal {
                node: obs.me.to_string(),
                pod_cidr: text.clone(),
                reason,
            }),
    };
    let mine: Vec<IpNet> = me
        .map(|n| {
            n.pod_cidrs
                .iter()
                .filter_map(|c| c.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();

    let mut refused = Vec::new();
    // (node, text, net, via)
    let mut candidates: Vec<(&str, &str, IpNet, IpAddr)> = Vec::new();
    for n in nodes.iter().filter(|n| n.name != obs.me) {
        for text in &n.pod_cidrs {
            let checked = check_cidr(text, obs.cluster, &mine, obs.host, None).and_then(|net| {
                let cluster = obs.cluster.ok_or(Reason::NoPodSubnet)?;
                let via = check_gateway(&net, n, cluster, obs.host)?;
                Ok((net, via))
            });
            match checked {
                Ok((net, via)) => candidates.push((&n.name, text, net, via)),
                Err(reason) => refused.push(Refusal {
                    node: n.name.clone(),
                    pod_cidr: text.clone(),
                    reason,
                }),
            }
        }
    }
    let mut wanted: Vec<Route> = Vec::new();
    for (i, (node, text, net, via)) in candidates.iter().enumerate() {
        let twin = candidates.iter().enumerate().find(|(j, (other, _, n, _))| {
            *j != i && (other != node || n != net) && overlaps(n, net)
        });
        match twin {
            Some((_, (other, ..))) => refused.push(Refusal {
                node: node.to_string(),
                pod_cidr: text.to_string(),
                reason: Reason::ClaimedTwice(other.to_string()),
            }),
            None => wanted.push(Route {
                dst: *net,
                via: *via,
            }),
        }
    }
    wanted.sort();
    wanted.dedup_by(|a, b| a.dst == b.dst);

    let ours: Vec<&HostRoute> = obs.host.iter().filter(|r| r.is_kubeboots()).collect();
    let mut out = Plan {
        add: Vec::new(),
        replace: Vec::new(),
        keep: Vec::new(),
        remove: Vec::new(),
        refused,
        own,
    };
    for r in &wanted {
        let same_dst: Vec<&&HostRoute> = ours.iter().filter(|h| h.dst == r.dst).collect();
        if same_dst.iter().any(|h| h.gateway == Some(r.via)) {
            out.keep.push(r.clone());
        } else if same_dst.is_empty() {
            out.add.push(r.clone());
        } else {
            out.replace.push(r.clone());
        }
    }
    // Not wanted at all; or a second route of kubeboot's to a kept destination (a replaced
    // route is changed in place by `ip route replace`).
    out.remove = ours
        .into_iter()
        .filter(|h| match wanted.iter().find(|w| w.dst == h.dst) {
            None => true,
            Some(w) => h.gateway != Some(w.via) && out.keep.contains(w),
        })
        .cloned()
        .collect();
    out
}

/// The refusals to log now: those not logged in the previous pass. `logged` becomes the
/// current set, so a refusal that goes away and comes back is logged again.
pub fn new_refusals<'a>(
    logged: &mut BTreeSet<String>,
    refused: impl IntoIterator<Item = &'a Refusal>,
) -> Vec<String> {
    let now: BTreeSet<String> = refused.into_iter().map(ToString::to_string).collect();
    let fresh = now.difference(logged).cloned().collect();
    *logged = now;
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's routing tables as `ip -4 -j -N route show table all` prints them: LAN
    /// 192.168.1.0/24 on eth0 (this host is .10), a second link 10.250.0.0/24 on eth1, a /32
    /// address on a dummy device (as kube-proxy's IPVS mode adds), kubeboot's bridge kbr0 for
    /// this node's own pods, a static route someone else added for 10.244.9.0/24, and one of
    /// kubeboot's own routes.
    const HOST: &str = r#"[
      {"dst":"default","gateway":"192.168.1.1","dev":"eth0","flags":[]},
      {"dst":"10.244.0.0/24","dev":"kbr0","protocol":"2","scope":"253","prefsrc":"10.244.0.1","flags":[]},
      {"dst":"10.244.5.0/24","gateway":"192.168.1.5","dev":"eth0","protocol":"77","flags":[]},
      {"dst":"10.244.9.0/24","gateway":"192.168.1.99","dev":"eth0","protocol":"4","flags":[]},
      {"dst":"10.250.0.0/24","dev":"eth1","protocol":"2","scope":"253","prefsrc":"10.250.0.2","flags":[]},
      {"dst":"192.168.1.0/24","dev":"eth0","protocol":"2","scope":"253","prefsrc":"192.168.1.10","flags":[]},
      {"dst":"172.31.0.0/16","gateway":"192.168.1.1","dev":"eth0","table":"100","protocol":"4","flags":[]},
      {"type":"2","dst":"10.77.0.1","dev":"dummy0","table":"255","protocol":"2","scope":"254","prefsrc":"10.77.0.1","flags":[]},
      {"type":"2","dst":"10.244.0.1","dev":"kbr0","table":"255","protocol":"2","scope":"254","prefsrc":"10.244.0.1","flags":[]},
      {"type":"2","dst":"127.0.0.0/8","dev":"lo","table":"255","protocol":"2","scope":"254","prefsrc":"127.0.0.1","flags":[]},
      {"type":"2","dst":"192.168.1.10","dev":"eth0","table":"255","protocol":"2","scope":"254","prefsrc":"192.168.1.10","flags":[]},
      {"type":"3","dst":"192.168.1.255","dev":"eth0","table":"255","protocol":"2","scope":"253","prefsrc":"192.168.1.10","flags":[]}
    ]"#;

    fn host() -> Vec<HostRoute> {
        parse_routes(HOST, false).expect("the fixture parses")
    }

    /// The fixture's route to `dst`.
    fn route(dst: &str) -> HostRoute {
        host()
            .into_iter()
            .find(|r| r.dst == net(dst))
            .expect("a route of the fixture")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("a CIDR")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    /// kubeadm's usual pod network: 10.244.0.0/16 in /24s, services 10.96.0.0/12.
    fn usual() -> ClusterNetwork {
        ClusterNetwork {
            pod_subnets: vec![net("10.244.0.0/16")],
            node_mask_v4: 24,
            node_mask_v6: 64,
            service_subnets: vec![net("10.96.0.0/12")],
        }
    }

    /// A pod subnet as wide as 10.0.0.0/8, which takes in the service subnet, eth1's link
    /// and the dummy address.
    fn wide() -> ClusterNetwork {
        ClusterNetwork {
            pod_subnets: vec![net("10.0.0.0/8")],
            ..usual()
        }
    }

    fn node(name: &str, cidr: &str, ips: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            pod_cidrs: vec![cidr.into()],
            internal_ips: ips.iter().map(|i| ip(i)).collect(),
        }
    }

    /// This node: podCIDR 10.244.0.0/24, InternalIP 192.168.1.10.
    fn me() -> NodeInfo {
        node("node-a", "10.244.0.0/24", &["192.168.1.10"])
    }

    fn plan_for(cluster: Option<&ClusterNetwork>, nodes: &[NodeInfo]) -> Plan {
        let host = host();
        plan(&Observed {
            me: "node-a",
            nodes,
            cluster,
            host: &host,
            bridge: "kbr0",
        })
    }

    /// A row: its name, the cluster's pod network, the other node's podCIDR and InternalIPs,
    /// and why it is refused (None: routed).
    type Case<'a> = (
        &'a str,
        Option<&'a ClusterNetwork>,
        &'a str,
        Vec<&'a str>,
        Option<Reason>,
    );

    #[test]
    fn each_rule_refuses_its_podcidr() {
        let usual = usual();
        let wide = wide();
        let lan = "192.168.1.20";
        let table: Vec<Case<'_>> = vec![
            (
                "half the internet",
                Some(&usual),
                "0.0.0.0/1",
                vec![lan],
                Some(Reason::OutsidePodSubnet(vec![net("10.244.0.0/16")])),
            ),
            (
                "half the internet, wide pod subnet",
                Some(&wide),
                "0.0.0.0/1",
                vec![lan],
                Some(Reason::OutsidePodSubnet(vec![net("10.0.0.0/8")])),
            ),
            (
                "the LAN subnet",
                Some(&usual),
                "192.168.1.0/24",
                vec![lan],
                Some(Reason::OutsidePodSubnet(vec![net("10.244.0.0/16")])),
            ),
            (
                "a connected subnet inside the pod subnet",
                Some(&wide),
                "10.250.0.0/24",
                vec![lan],
                Some(Reason::OverlapsConnected(route("10.250.0.0/24"))),
            ),
            (
                "a local address inside the pod subnet",
                Some(&wide),
                "10.77.0.0/24",
                vec![lan],
                Some(Reason::OverlapsLocal(route("10.77.0.1/32"))),
            ),
            (
                "the service CIDR",
                Some(&usual),
                "10.96.0.0/12",
                vec![lan],
                Some(Reason::OutsidePodSubnet(vec![net("10.244.0.0/16")])),
            ),
            (
                "part of the service CIDR inside the pod subnet",
                Some(&wide),
                "10.96.0.0/24",
                vec![lan],
                Some(Reason::OverlapsServiceSubnet(net("10.96.0.0/12"))),
            ),
            (
                "a /16 when the mask size is /24",
                Some(&usual),
                "10.244.0.0/16",
                vec![lan],
                Some(Reason::WrongMaskSize(24)),
            ),
            (
                "a /25 when the mask size is /24",
                Some(&usual),
                "10.244.3.0/25",
                vec![lan],
                Some(Reason::WrongMaskSize(24)),
            ),
            (
                "host bits set",
                Some(&usual),
                "10.244.3.1/24",
                vec![lan],
                Some(Reason::NotANetwork),
            ),
            (
                "not a CIDR",
                Some(&usual),
                "banana",
                vec![lan],
                Some(Reason::NotACidr),
            ),
            (
                "this node's own podCIDR",
                Some(&usual),
                "10.244.0.0/24",
                vec![lan],
                Some(Reason::OwnPodCidr(net("10.244.0.0/24"))),
            ),
            (
                "a gateway off-link",
                Some(&usual),
                "10.244.3.0/24",
                vec!["172.16.0.9"],
                Some(Reason::GatewayOffLink(ip("172.16.0.9"))),
            ),
            (
                "a gateway reached only through the default route",
                Some(&usual),
                "10.244.3.0/24",
                vec!["8.8.8.8"],
                Some(Reason::GatewayOffLink(ip("8.8.8.8"))),
            ),
            (
                "a gateway that is this host",
                Some(&usual),
                "10.244.3.0/24",
                vec!["192.168.1.10"],
                Some(Reason::GatewayIsThisHost(ip("192.168.1.10"))),
            ),
            (
                "a gateway that is a pod of this node",
                Some(&usual),
                "10.244.3.0/24",
                vec!["10.244.0.7"],
                Some(Reason::GatewayInClusterNetwork(ip("10.244.0.7"))),
            ),
            (
                "no InternalIP",
                Some(&usual),
                "10.244.3.0/24",
                vec![],
                Some(Reason::NoInternalIp),
            ),
            (
                "an InternalIP of the other family only",
                Some(&usual),
                "10.244.3.0/24",
                vec!["fd00::5"],
                Some(Reason::NoInternalIp),
            ),
            (
                "a foreign route is there",
                Some(&usual),
                "10.244.9.0/24",
                vec![lan],
                Some(Reason::ForeignRoute(route("10.244.9.0/24"))),
            ),
            (
                "no pod subnet in the cluster",
                None,
                "10.244.3.0/24",
                vec![lan],
                Some(Reason::NoPodSubnet),
            ),
            ("a good one", Some(&usual), "10.244.3.0/24", vec![lan], None),
            (
                "a good one, second InternalIP of its family",
                Some(&usual),
                "10.244.3.0/24",
                vec!["fd00::5", lan],
                None,
            ),
        ];
        for (case, cluster, cidr, ips, want) in table {
            let other = node("node-x", cidr, &ips);
            let p = plan_for(cluster, &[me(), other]);
            let routed: Vec<&Route> = p.add.iter().chain(&p.replace).chain(&p.keep).collect();
            match want {
                Some(reason) => {
                    assert_eq!(
                        p.refused,
                        vec![Refusal {
                            node: "node-x".into(),
                            pod_cidr: cidr.into(),
                            reason
                        }],
                        "{case}"
                    );
                    assert!(routed.is_empty(), "{case}: {routed:?}");
                }
                None => {
                    assert!(p.refused.is_empty(), "{case}: {:?}", p.refused);
                    assert_eq!(
                        p.add,
                        vec![Route {
                            dst: net(cidr),
                            via: ip(lan)
                        }],
                        "{case}"
                    );
                }
            }
            // Whatever else happens, the route someone else added is never touched.
            assert!(
                p.remove.iter().all(|r| r.proto == KUBEBOOT_PROTO),
                "{case}: {:?}",
                p.remove
            );
        }
    }

    #[test]
    fn kubeboots_routes_are_kept_replaced_or_removed_and_no_one_elses() {
        let usual = usual();
        let ours = route("10.244.5.0/24");
        // Still wanted, same gateway: kept.
        let p = plan_for(
            Some(&usual),
            &[me(), node("node-b", "10.244.5.0/24", &["192.168.1.5"])],
        );
        assert_eq!(p.keep.len(), 1);
        assert!(p.add.is_empty() && p.replace.is_empty() && p.remove.is_empty());
        // The node moved to another address: replaced (ours, so replace is allowed).
        let p = plan_for(
            Some(&usual),
            &[me(), node("node-b", "10.244.5.0/24", &["192.168.1.6"])],
        );
        assert_eq!(
            p.replace,
            vec![Route {
                dst: net("10.244.5.0/24"),
                via: ip("192.168.1.6")
            }]
        );
        assert!(p.add.is_empty() && p.remove.is_empty());
        // The node is gone: removed. The static route for 10.244.9.0/24 stays.
        let p = plan_for(Some(&usual), &[me()]);
        assert_eq!(p.remove, vec![ours.clone()]);
        // The node now claims something refused: kubeboot's route goes too.
        let p = plan_for(
            Some(&usual),
            &[me(), node("node-b", "0.0.0.0/1", &["192.168.1.5"])],
        );
        assert_eq!(p.remove, vec![ours]);
        assert_eq!(p.refused.len(), 1);
    }

    #[test]
    fn a_podcidr_claimed_twice_is_routed_for_neither() {
        let usual = usual();
        let p = plan_for(
            Some(&usual),
            &[
                me(),
                node("node-b", "10.244.3.0/24", &["192.168.1.21"]),
                node("node-c", "10.244.3.0/24", &["192.168.1.22"]),
                node("node-d", "10.244.4.0/24", &["192.168.1.23"]),
            ],
        );
        assert_eq!(
            p.add,
            vec![Route {
                dst: net("10.244.4.0/24"),
                via: ip("192.168.1.23")
            }]
        );
        let twice: Vec<(&str, &Reason)> = p
            .refused
            .iter()
            .map(|r| (r.node.as_str(), &r.reason))
            .collect();
        assert_eq!(
            twice,
            vec![
                ("node-b", &Reason::ClaimedTwice("node-c".into())),
                ("node-c", &Reason::ClaimedTwice("node-b".into())),
            ]
        );
    }

    #[test]
    fn this_nodes_own_podcidr_passes_the_same_checks_except_for_its_bridge() {
        let usual = usual();
        // kbr0's own routes (10.244.0.0/24, 10.244.0.1) do not count against it.
        assert_eq!(
            plan_for(Some(&usual), &[me()]).own,
            Ok(Some(net("10.244.0.0/24")))
        );
        let bad = plan_for(
            Some(&usual),
            &[node("node-a", "0.0.0.0/1", &["192.168.1.10"])],
        );
        assert_eq!(
            bad.own.map_err(|r| r.reason),
            Err(Reason::OutsidePodSubnet(vec![net("10.244.0.0/16")]))
        );
        let wide = wide();
        let lan = plan_for(
            Some(&wide),
            &[node("node-a", "10.250.0.0/24", &["192.168.1.10"])],
        );
        assert!(matches!(
            lan.own.map_err(|r| r.reason),
            Err(Reason::OverlapsConnected(_))
        ));
        assert_eq!(
            plan_for(Some(&usual), &[node("node-a", "", &[])])
                .own
                .map_err(|r| r.reason),
            Err(Reason::NotACidr)
        );
        let none = NodeInfo {
            pod_cidrs: vec![],
            ..me()
        };
        assert_eq!(plan_for(Some(&usual), &[none]).own, Ok(None));
    }

    #[test]
    fn ipv6_podcidrs_go_via_an_ipv6_internal_ip() {
        let json = r#"[
          {"dst":"fd00:1::/64","dev":"eth0","protocol":"2","metric":256,"flags":[],"pref":"medium"},
          {"dst":"default","gateway":"fd00:1::1","dev":"eth0","metric":1024,"flags":[],"pref":"medium"},
          {"type":"2","dst":"fd00:1::10","dev":"eth0","table":"255","protocol":"2","metric":0,"flags":[],"pref":"medium"}
        ]"#;
        let host = parse_routes(json, true).expect("parses");
        assert_eq!(host[1].dst, net("::/0"));
        let cluster = ClusterNetwork {
            pod_subnets: vec![net("fd10::/56")],
            service_subnets: vec![net("fd20::/112")],
            ..usual()
        };
        let nodes = [
            node("node-a", "fd10:0:0:0::/64", &["fd00:1::10"]),
            node("node-b", "fd10:0:0:1::/64", &["192.168.1.5", "fd00:1::11"]),
            node("node-c", "fd10:0:0:2::/64", &["fd00:2::11"]),
        ];
        let p = plan(&Observed {
            me: "node-a",
            nodes: &nodes,
            cluster: Some(&cluster),
            host: &host,
            bridge: "kbr0",
        });
        assert_eq!(
            p.add,
            vec![Route {
                dst: net("fd10:0:0:1::/64"),
                via: ip("fd00:1::11")
            }]
        );
        assert_eq!(
            p.refused.iter().map(|r| &r.reason).collect::<Vec<_>>(),
            vec![&Reason::GatewayOffLink(ip("fd00:2::11"))]
        );
    }

    #[test]
    fn routes_parse_from_ip_json() {
        let h = host();
        // Table 100 is left out.
        assert_eq!(h.len(), 11);
        assert_eq!(
            h[0],
            HostRoute {
                dst: net("0.0.0.0/0"),
                gateway: Some(ip("192.168.1.1")),
                dev: Some("eth0".into()),
                kind: RouteKind::Gateway,
                proto: PROTO_BOOT,
                table: TABLE_MAIN,
            }
        );
        assert_eq!(h[1].kind, RouteKind::Connected);
        assert_eq!(h[2].proto, KUBEBOOT_PROTO);
        assert_eq!(
            (h[6].dst, h[6].kind, h[6].table),
            (net("10.77.0.1/32"), RouteKind::Local, TABLE_LOCAL)
        );
        assert_eq!(h[10].kind, RouteKind::Local);
        assert_eq!(
            h[3].to_string(),
            "10.244.9.0/24 via 192.168.1.99 dev eth0 proto 4"
        );
        let blackhole = r#"[{"type":"6","dst":"10.244.7.0/24","flags":[]}]"#;
        assert_eq!(
            parse_routes(blackhole, false).expect("parses")[0].kind,
            RouteKind::Other
        );
        let multipath = r#"[{"dst":"10.244.8.0/24","nexthops":[{"gateway":"192.168.1.2","dev":"eth0"}],"flags":[]}]"#;
        assert_eq!(
            parse_routes(multipath, false).expect("parses")[0].kind,
            RouteKind::Gateway
        );
        // Without -N iproute2 prints names; that view is refused, not guessed at.
        for bad in [
            r#"[{"dst":"10.0.0.0/8","protocol":"kernel"}]"#,
            r#"[{"dst":"ten"}]"#,
            r#"[{"gateway":"192.168.1.1"}]"#,
            r#"{"dst":"10.0.0.0/8"}"#,
            "ip: command failed",
        ] {
            assert!(parse_routes(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pod_network_comes_from_kubeadm_config_as_the_controller_manager_gets_it() {
        let doc = |body: &str| {
            format!("apiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\n{body}")
        };
        let usual = ClusterNetwork::from_cluster_configuration(&doc(
            "networking:\n  podSubnet: 10.244.0.0/16\n",
        ))
        .expect("loads");
        assert_eq!(usual, Some(self::usual()));
        let flags = ClusterNetwork::from_cluster_configuration(&doc(
            "networking:\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.97.0.0/16\ncontrollerManager:\n  extraArgs:\n    cluster-cidr: 10.32.0.0/12\n    node-cidr-mask-size: \"26\"\n",
        ))
        .expect("loads")
        .expect("a pod subnet");
        assert_eq!(flags.pod_subnets, vec![net("10.32.0.0/12")]);
        assert_eq!(flags.service_subnets, vec![net("10.97.0.0/16")]);
        assert_eq!(flags.node_mask_v4, 26);
        let dual = ClusterNetwork::from_cluster_configuration(&doc(
            "networking:\n  podSubnet: 10.244.0.0/16,fd10::/56\ncontrollerManager:\n  extraArgs:\n    node-cidr-mask-size-ipv6: \"80\"\n",
        ))
        .expect("loads")
        .expect("a pod subnet");
        assert_eq!(
            dual.pod_subnets,
            vec![net("10.244.0.0/16"), net("fd10::/56")]
        );
        assert_eq!((dual.node_mask_v4, dual.node_mask_v6), (24, 80));
        assert!(dual.has_ipv6() && !self::usual().has_ipv6());
        assert_eq!(
            ClusterNetwork::from_cluster_configuration(&doc("networking:\n  dnsDomain: x.local\n")),
            Ok(None)
        );
        for bad in [
            doc("networking:\n  podSubnet: 10.244.0.0/33\n"),
            doc(
                "networking:\n  podSubnet: 10.244.0.0/16\ncontrollerManager:\n  extraArgs:\n    node-cidr-mask-size: \"x\"\n",
            ),
            doc(
                "networking:\n  podSubnet: 10.244.0.0/16\ncontrollerManager:\n  extraArgs:\n    node-cidr-mask-size: \"8\"\n",
            ),
            "kind: [".to_string(),
        ] {
            assert!(
                ClusterNetwork::from_cluster_configuration(&bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn each_refusal_is_logged_once_while_it_lasts() {
        let usual = usual();
        let p = plan_for(
            Some(&usual),
            &[me(), node("node-x", "0.0.0.0/1", &["192.168.1.20"])],
        );
        let mut logged = BTreeSet::new();
        let first = new_refusals(&mut logged, &p.refused);
        assert_eq!(
            first,
            vec![
                "no route to the pods of node \"node-x\": podCIDR \"0.0.0.0/1\" is outside the cluster's pod subnet 10.244.0.0/16"
            ]
        );
        assert!(new_refusals(&mut logged, &p.refused).is_empty());
        assert!(new_refusals(&mut logged, []).is_empty());
        assert_eq!(new_refusals(&mut logged, &p.refused), first);
    }
}
