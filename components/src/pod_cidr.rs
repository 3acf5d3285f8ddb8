//! The podCIDR(s) the kube-controller-manager's range allocator gives a new Node, decided from
//! its command line and the podCIDRs other Nodes hold, so that `init` can give its own Node
//! that very value the moment it registers instead of waiting for the controller-manager to
//! start, win its leader election and reach node IPAM (kube-controller-manager v1.20:
//! app/core.go startNodeIpamController; pkg/controller/nodeipam/ipam/range_allocator.go and
//! cidrset/cidr_set.go).
//!
//! The allocator keeps one bitmap of node-sized subnets per cluster CIDR; on start it marks
//! the Service ranges that overlap a cluster CIDR (filterOutServiceRange) and every existing
//! Node's podCIDRs (occupyCIDRs) as used, then gives each new Node the first free subnet of
//! each cluster CIDR from its next candidate, which is the first subnet in a freshly started
//! allocator. [`NodeIpam::first_free`] is that choice.
//!
//! A kubeboot cluster runs the controller-manager without its node IPAM controller
//! (`--controllers=...,-nodeipam`, [`KUBEBOOT_CONTROLLERS`]): kube-controller-manager v1.20
//! builds that controller with a Node list that first waits 10 s (`listNodes`, `wait.Poll`),
//! and starts no controller's informers before every controller is built, so no Deployment
//! makes a Pod in the controller-manager's first ~18 s. The kubeboot agents of the
//! control-plane nodes allocate instead, with this same choice ([`Allocation::of`] says who
//! allocates for a given command line).

use std::net::IpAddr;

use ipnet::IpNet;

/// kube-controller-manager: defaultNodeMaskCIDRIPv4.
const DEFAULT_NODE_MASK_IPV4: u8 = 24;
/// kube-controller-manager: defaultNodeMaskCIDRIPv6.
const DEFAULT_NODE_MASK_IPV6: u8 = 64;
/// cidr_set.go clusterSubnetMaxDiff: an IPv6 cluster CIDR may hold at most 2^16 node subnets.
const CLUSTER_SUBNET_MAX_DIFF: u8 = 16;

/// What the controller-manager's node IPAM allocates from: each cluster CIDR with its node
/// mask size, and the Service ranges it keeps out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIpam {
    /// `--cluster-cidr`, in order, each with the node mask size for its family.
    pub cluster: Vec<(IpNet, u8)>,
    /// `--service-cluster-ip-range` (at most two).
    pub service: Vec<IpNet>,
}

/// The value of the last `--name=value` (or `--name value`) in `command`, as pflag keeps the
/// last one given.
fn flag<'a>(command: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let mut found = None;
    let mut it = command.iter().peekable();
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix(&long) {
            if let Some(v) = v.strip_prefix('=') {
                found = Some(v);
            } else if v.is_empty() {
                found = it.peek().map(|s| s.as_str());
            }
        }
    }
    found
}

fn mask_flag(command: &[String], name: &str) -> Result<u8, ()> {
    match flag(command, name) {
        None | Some("") => Ok(0),
        Some(v) => v.trim().parse().map_err(|_| ()),
    }
}

/// Whether `--feature-gates` turns `gate` on.
fn gate_on(command: &[String], gate: &str) -> bool {
    flag(command, "feature-gates").is_some_and(|g| {
        g.split(',').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            k.trim() == gate && v.trim().eq_ignore_ascii_case("true")
        })
    })
}

/// kubeadm's `--controllers` for kube-controller-manager (getControllerManagerCommand).
pub const KUBEADM_CONTROLLERS: &str = "*,bootstrapsigner,tokencleaner";
/// kubeboot's: kubeadm's without the node IPAM controller, whose podCIDRs the kubeboot agents
/// of the control-plane nodes allocate instead.
pub const KUBEBOOT_CONTROLLERS: &str = "*,bootstrapsigner,tokencleaner,-nodeipam";
/// The node IPAM controller's name in `--controllers`.
pub const NODE_IPAM_CONTROLLER: &str = "nodeipam";

/// Whether kube-controller-manager runs the controller `name` with `--controllers` as given
/// in `command` (app/controllermanager.go IsControllerEnabled): the first entry naming it
/// (`name` or `-name`) decides; else it runs when `*` is listed (the default), as no
/// controller this crate asks about is off by default.
pub fn controller_runs(command: &[String], name: &str) -> bool {
    let list = flag(command, "controllers").unwrap_or("*");
    let mut star = false;
    for c in list.split(',').map(str::trim) {
        if c == name {
            return true;
        }
        if c.strip_prefix('-') == Some(name) {
            return false;
        }
        star |= c == "*";
    }
    star
}

/// Who gives new Nodes their podCIDRs, as a kube-controller-manager command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Nobody: `--allocate-node-cidrs` is off (the pod network allocates, if anything), or
    /// the settings keep node IPAM from starting.
    None,
    /// The controller-manager's node IPAM controller.
    ControllerManager(NodeIpam),
    /// The kubeboot agents of the control-plane nodes: the controller-manager is told to
    /// allocate (`--allocate-node-cidrs=true`, its cluster CIDRs) but its node IPAM
    /// controller is off (`--controllers=...,-nodeipam`).
    Kubeboot(NodeIpam),
}

impl Allocation {
    /// Who allocates for a controller-manager started with `command`.
    pub fn of(command: &[String]) -> Allocation {
        match NodeIpam::from_controller_manager(command) {
            None => Allocation::None,
            Some(ipam) if controller_runs(command, NODE_IPAM_CONTROLLER) => {
                Allocation::ControllerManager(ipam)
            }
            Some(ipam) => Allocation::Kubeboot(ipam),
        }
    }

    /// The allocator's settings, whoever allocates.
    pub fn ipam(&self) -> Option<&NodeIpam> {
        match self {
            Allocation::None => None,
            Allocation::ControllerManager(i) | Allocation::Kubeboot(i) => Some(i),
        }
    }
}

impl NodeIpam {
    /// The node IPAM of a kube-controller-manager started with `command` (its container's
    /// command and args), or `None` when it allocates no podCIDRs with the range allocator:
    /// `--allocate-node-cidrs` is not true, another `--cidr-allocator-type`, no or an invalid
    /// `--cluster-cidr`, or settings that stop its node IPAM from starting (two cluster CIDRs
    /// without the IPv6DualStack gate or of one family, mask sizes that do not fit).
    pub fn from_controller_manager(command: &[String]) -> Option<NodeIpam> {
        if flag(command, "allocate-node-cidrs").map(str::trim) != Some("true") {
            return None;
        }
        match flag(command, "cidr-allocator-type").map(str::trim) {
            None | Some("") | Some("RangeAllocator") => {}
            Some(_) => return None,
        }
        let cidrs: Vec<IpNet> = flag(command, "cluster-cidr")?
            .trim()
            .split(',')
            .map(|c| c.trim().parse::<IpNet>().map(|n| n.trunc()))
            .collect::<Result<_, _>>()
            .ok()?;
        let v4 = cidrs.iter().filter(|c| matches!(c, IpNet::V4(_))).count();
        let dual_stack = v4 > 0 && v4 < cidrs.len();
        if cidrs.len() > 2
            || (cidrs.len() > 1 && (!dual_stack || !gate_on(command, "IPv6DualStack")))
        {
            return None;
        }
        let size = mask_flag(command, "node-cidr-mask-size").ok()?;
        let size4 = mask_flag(command, "node-cidr-mask-size-ipv4").ok()?;
        let size6 = mask_flag(command, "node-cidr-mask-size-ipv6").ok()?;
        // app/core.go setNodeCIDRMaskSizes / setNodeCIDRMaskSizesDualStack.
        let (mask4, mask6) = if dual_stack {
            if size != 0 {
                return None;
            }
            (
                if size4 == 0 {
                    DEFAULT_NODE_MASK_IPV4
                } else {
                    size4
                },
                if size6 == 0 {
                    DEFAULT_NODE_MASK_IPV6
                } else {
                    size6
                },
            )
        } else {
            if size4 != 0 || size6 != 0 {
                return None;
            }
            if size == 0 {
                (DEFAULT_NODE_MASK_IPV4, DEFAULT_NODE_MASK_IPV6)
            } else {
                (size, size)
            }
        };
        let mut cluster = Vec::new();
        for c in cidrs {
            let mask = match c {
                IpNet::V4(_) => mask4,
                IpNet::V6(_) => mask6,
            };
            // cidrset.NewCIDRSet refuses these (or cannot represent them).
            if mask < c.prefix_len()
                || mask > c.max_prefix_len()
                || (matches!(c, IpNet::V6(_)) && mask - c.prefix_len() > CLUSTER_SUBNET_MAX_DIFF)
            {
                return None;
            }
            cluster.push((c, mask));
        }
        let service = flag(command, "service-cluster-ip-range")
            .unwrap_or_default()
            .split(',')
            .take(2)
            .filter_map(|s| s.trim().parse::<IpNet>().ok().map(|n| n.trunc()))
            .collect();
        Some(NodeIpam { cluster, service })
    }

    /// Whether the range allocator takes a Node holding `pod_cidrs` (its `spec.podCIDRs`) in
    /// as used (occupyCIDRs): each parses and overlaps the cluster CIDR at its index. A Node
    /// it does not take makes [`NodeIpam::first_free`] give `None`.
    pub fn accepts(&self, pod_cidrs: &[String]) -> bool {
        pod_cidrs
            .iter()
            .enumerate()
            .all(|(i, text)| self.accepts_entry(i, text))
    }

    /// The podCIDRs, one per cluster CIDR in order, that a freshly started range allocator
    /// gives the next Node when the Nodes hold `taken` (each Node's `spec.podCIDRs`), or
    /// `None` where it would give none: a cluster CIDR is full, or a Node's podCIDR does not
    /// parse, lies outside its cluster CIDR or has no cluster CIDR at its index (the
    /// allocator then refuses to start).
    pub fn first_free(&self, taken: &[Vec<String>]) -> Option<Vec<IpNet>> {
        self.choose(taken, true)
    }

    /// [`NodeIpam::first_free`], except that a podCIDR the range allocator would refuse (it
    /// does not parse, or lies outside the cluster CIDR at its index) is left out instead of
    /// making the choice impossible: the kubeboot agents give podCIDRs on a cluster whatever
    /// anyone wrote into one Node, and every podCIDR that does lie in a cluster CIDR still
    /// counts as used. `None` only where a cluster CIDR is full.
    pub fn first_free_skipping(&self, taken: &[Vec<String>]) -> Option<Vec<IpNet>> {
        self.choose(taken, false)
    }

    /// Whether the range allocator takes the podCIDR `text`, at index `index` of a Node's
    /// `spec.podCIDRs`, in as used: it parses and overlaps the cluster CIDR at that index.
    pub fn accepts_entry(&self, index: usize, text: &str) -> bool {
        let net = text.trim().parse::<IpNet>();
        matches!((self.cluster.get(index), net), (Some((c, _)), Ok(n)) if overlaps(c, &n))
    }

    fn choose(&self, taken: &[Vec<String>], strict: bool) -> Option<Vec<IpNet>> {
        let mut used: Vec<Vec<(u128, u128)>> = vec![Vec::new(); self.cluster.len()];
        for (i, &(cluster, mask)) in self.cluster.iter().enumerate() {
            for s in &self.service {
                if overlaps(&cluster, s) {
                    used[i].push(indices(cluster, mask, s));
                }
            }
        }
        for node in taken {
            for (i, text) in node.iter().enumerate() {
                if !self.accepts_entry(i, text) {
                    if strict {
                        return None;
                    }
                    continue;
                }
                let (cluster, mask) = self.cluster[i];
                let net: IpNet = text.trim().parse().ok()?;
                used[i].push(indices(cluster, mask, &net));
            }
        }
        self.cluster
            .iter()
            .zip(used)
            .map(|(&(cluster, mask), mut used)| {
                let max = 1u128 << (mask - cluster.prefix_len());
                used.sort_unstable();
                let mut candidate = 0u128;
                for (begin, end) in used {
                    if begin <= candidate && candidate <= end {
                        candidate = end + 1;
                    }
                }
                (candidate < max).then(|| subnet(cluster, mask, candidate))
            })
            .collect()
    }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The node subnets (first and last index) of `cluster` that `net` covers
/// (cidr_set.go getBeginingAndEndIndices).
fn indices(cluster: IpNet, mask: u8, net: &IpNet) -> (u128, u128) {
    let max = (1u128 << (mask - cluster.prefix_len())) - 1;
    if net.prefix_len() <= cluster.prefix_len() {
        return (0, max);
    }
    let shift = u32::from(cluster.max_prefix_len() - mask);
    let base = to_bits(cluster.network());
    let index = |ip: IpAddr| (to_bits(ip) - base) >> shift;
    (index(net.network()), index(net.broadcast()).min(max))
}

/// The `index`th node subnet of `cluster`.
fn subnet(cluster: IpNet, mask: u8, index: u128) -> IpNet {
    let shift = u32::from(cluster.max_prefix_len() - mask);
    let bits = to_bits(cluster.network()) | (index << shift);
    let ip = match cluster {
        IpNet::V4(_) => IpAddr::V4(
            u32::try_from(bits)
                .expect("an IPv4 subnet stays in 32 bits")
                .into(),
        ),
        IpNet::V6(_) => IpAddr::V6(bits.into()),
    };
    IpNet::new(ip, mask).expect("the node mask fits the family")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_entry_naming_a_controller_decides_else_the_star() {
        let c = |v: &str| cmd(&[&format!("--controllers={v}")]);
        assert!(controller_runs(&cmd(&[]), "nodeipam"), "default: *");
        assert!(controller_runs(&c(KUBEADM_CONTROLLERS), "nodeipam"));
        assert!(!controller_runs(&c(KUBEBOOT_CONTROLLERS), "nodeipam"));
        assert!(controller_runs(&c(KUBEBOOT_CONTROLLERS), "deployment"));
        assert!(controller_runs(&c("nodeipam,-nodeipam"), "nodeipam"));
        assert!(!controller_runs(&c("-nodeipam,nodeipam,*"), "nodeipam"));
        assert!(
            !controller_runs(&c("bootstrapsigner"), "nodeipam"),
            "no star"
        );
        assert!(controller_runs(&c(" * , -ttl "), "nodeipam"));
        // pflag keeps the last --controllers.
        let twice = cmd(&["--controllers=*,-nodeipam", "--controllers=*"]);
        assert!(controller_runs(&twice, "nodeipam"));
    }

    #[test]
    fn accepts_what_occupy_cidrs_takes_in() {
        let ipam = NodeIpam::from_controller_manager(&cmd(&[
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16",
        ]))
        .expect("ipam");
        let s = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert!(ipam.accepts(&s(&[])));
        assert!(ipam.accepts(&s(&["10.244.3.0/24"])));
        assert!(!ipam.accepts(&s(&["10.245.0.0/24"])), "outside");
        assert!(!ipam.accepts(&s(&["garbage"])));
        assert!(
            !ipam.accepts(&s(&["10.244.3.0/24", "fd00::/64"])),
            "no second CIDR"
        );
        for bad in [s(&["10.245.0.0/24"]), s(&["garbage"])] {
            assert_eq!(ipam.first_free(&[bad]), None);
        }
        // Skipping: a refused entry is left out, the rest of the Node's still counts.
        let half = s(&["10.244.0.0/24", "fd00::/64"]);
        assert!(!ipam.accepts(&half));
        assert!(ipam.accepts_entry(0, &half[0]) && !ipam.accepts_entry(1, &half[1]));
        assert_eq!(ipam.first_free(std::slice::from_ref(&half)), None);
        assert_eq!(
            ipam.first_free_skipping(&[half, s(&["garbage"]), s(&["10.244.1.0/24"])]),
            Some(vec!["10.244.2.0/24".parse().expect("net")])
        );
    }

    #[test]
    fn allocation_names_who_allocates() {
        let base = ["--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16"];
        let with = |extra: &[&str]| {
            let mut f = base.to_vec();
            f.extend_from_slice(extra);
            Allocation::of(&cmd(&f))
        };
        assert!(matches!(with(&[]), Allocation::ControllerManager(_)));
        let kb = format!("--controllers={KUBEBOOT_CONTROLLERS}");
        let a = with(&[&kb]);
        assert!(matches!(a, Allocation::Kubeboot(_)), "{a:?}");
        assert_eq!(
            a.ipam().and_then(|i| i.first_free(&[])),
            Some(vec!["10.244.0.0/24".parse().expect("net")])
        );
        assert_eq!(
            Allocation::of(&cmd(&["--allocate-node-cidrs=false", &kb])),
            Allocation::None
        );
        assert_eq!(Allocation::of(&cmd(&[&kb])).ipam(), None);
    }

    fn cmd(flags: &[&str]) -> Vec<String> {
        std::iter::once("kube-controller-manager")
            .chain(flags.iter().copied())
            .map(String::from)
            .collect()
    }

    /// kubeadm v1.20's flags for podSubnet 10.244.0.0/16.
    fn kubeadm(extra: &[&str]) -> Vec<String> {
        let mut f = vec![
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--leader-elect=true",
        ];
        f.extend(extra);
        cmd(&f)
    }

    fn first(c: &[String], taken: &[&[&str]]) -> Option<Vec<String>> {
        let taken: Vec<Vec<String>> = taken
            .iter()
            .map(|n| n.iter().map(|s| s.to_string()).collect())
            .collect();
        NodeIpam::from_controller_manager(c)?
            .first_free(&taken)
            .map(|v| v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_fresh_cluster_gets_the_first_subnet() {
        assert_eq!(first(&kubeadm(&[]), &[]).unwrap(), ["10.244.0.0/24"]);
    }

    #[test]
    fn other_nodes_cidrs_are_taken_and_a_hole_is_filled_first() {
        assert_eq!(
            first(
                &kubeadm(&[]),
                &[&["10.244.0.0/24"], &["10.244.2.0/24"], &[]]
            )
            .unwrap(),
            ["10.244.1.0/24"]
        );
        assert_eq!(
            first(&kubeadm(&[]), &[&["10.244.0.0/24"], &["10.244.1.0/24"]]).unwrap(),
            ["10.244.2.0/24"]
        );
    }

    #[test]
    fn the_mask_size_flag_and_the_last_flag_win() {
        assert_eq!(
            first(
                &kubeadm(&["--node-cidr-mask-size=26"]),
                &[&["10.244.0.0/26"]]
            )
            .unwrap(),
            ["10.244.0.64/26"]
        );
        assert_eq!(
            first(&kubeadm(&["--cluster-cidr=192.168.0.0/20"]), &[]).unwrap(),
            ["192.168.0.0/24"]
        );
    }

    #[test]
    fn an_overlapping_service_range_is_kept_out() {
        let c = cmd(&[
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.0.0.0/8",
            "--service-cluster-ip-range=10.0.0.0/22",
        ]);
        assert_eq!(first(&c, &[]).unwrap(), ["10.0.4.0/24"]);
        // A Service range smaller than a node subnet takes its whole subnet.
        let c = cmd(&[
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.0.0.0/8",
            "--service-cluster-ip-range=10.0.0.16/28",
        ]);
        assert_eq!(first(&c, &[]).unwrap(), ["10.0.1.0/24"]);
    }

    #[test]
    fn ipv6_uses_a_64_by_default() {
        let c = cmd(&[
            "--allocate-node-cidrs=true",
            "--cluster-cidr=fd00:10:244::/56",
            "--service-cluster-ip-range=fd00:10:96::/112",
        ]);
        assert_eq!(
            first(&c, &[&["fd00:10:244::/64"]]).unwrap(),
            ["fd00:10:244:1::/64"]
        );
        // cidr_set.go: at most 2^16 node subnets in an IPv6 cluster CIDR.
        let c = cmd(&["--allocate-node-cidrs=true", "--cluster-cidr=fd00::/40"]);
        assert_eq!(first(&c, &[]), None);
    }

    #[test]
    fn dual_stack_needs_the_gate_and_gives_one_per_family() {
        let dual = [
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
            "--service-cluster-ip-range=10.96.0.0/12,fd00:10:96::/112",
        ];
        assert_eq!(first(&cmd(&dual), &[]), None);
        let mut gated = dual.to_vec();
        gated.push("--feature-gates=IPv6DualStack=true");
        assert_eq!(
            first(&cmd(&gated), &[&["10.244.0.0/24", "fd00:10:244::/64"]]).unwrap(),
            ["10.244.1.0/24", "fd00:10:244:1::/64"]
        );
        let mut sized = gated.clone();
        sized.push("--node-cidr-mask-size-ipv6=72");
        assert_eq!(
            first(&cmd(&sized), &[]).unwrap(),
            ["10.244.0.0/24", "fd00:10:244::/72"]
        );
        // --node-cidr-mask-size is refused with dual stack: node IPAM does not start.
        let mut wrong = gated.clone();
        wrong.push("--node-cidr-mask-size=24");
        assert_eq!(first(&cmd(&wrong), &[]), None);
    }

    #[test]
    fn no_allocation_without_the_range_allocator() {
        assert_eq!(
            NodeIpam::from_controller_manager(&cmd(&["--cluster-cidr=10.244.0.0/16"])),
            None
        );
        assert_eq!(first(&kubeadm(&["--allocate-node-cidrs=false"]), &[]), None);
        assert_eq!(
            first(&kubeadm(&["--cidr-allocator-type=CloudAllocator"]), &[]),
            None
        );
        assert_eq!(first(&kubeadm(&["--node-cidr-mask-size=x"]), &[]), None);
    }

    #[test]
    fn a_full_range_or_a_foreign_cidr_gives_nothing() {
        let c = cmd(&["--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/23"]);
        assert_eq!(first(&c, &[&["10.244.0.0/24"], &["10.244.1.0/24"]]), None);
        assert_eq!(first(&kubeadm(&[]), &[&["192.168.0.0/24"]]), None);
        assert_eq!(
            first(&kubeadm(&[]), &[&["10.244.0.0/24", "fd00::/64"]]),
            None
        );
    }
}
