//! `init phase pod-cidr` (hidden, kubeboot's own): gives this node's Node, the moment it
//! registers, the podCIDR the controller-manager's range allocator would give it, and writes
//! kubeboot's bridge CNI configuration for it just before, so the kubelet reports the node
//! Ready on its first status update instead of some 10 s later.
//!
//! Without it the podCIDR waits for the controller-manager to start, win its leader election
//! and reach node IPAM (seconds after the API server is up), the CNI configuration for the
//! agent's next look at the Node, and Ready for the kubelet's next node status update: the
//! kubelet checks the runtime's network every 5 s and reports it every 10 s
//! (nodeStatusUpdateFrequency), except once right after it first sees a podCIDR (kubelet:
//! kubelet.go, fastStatusUpdateOnce). With the configuration written first, that one update
//! already finds the network ready; and with the podCIDR given only once the kubelet has made
//! its CSINode (which it makes right after registering, and reports the node NotReady until
//! then), that update finds nothing else missing either.
//!
//! What the cluster holds is what kubeadm's would: the value is the range allocator's own
//! choice ([`manifests::pod_cidr`]), given only on a fresh cluster (this Node is the only
//! one, so that choice is certain; the allocator then marks it as used, range_allocator.go
//! occupyCIDRs), and only where the controller-manager allocates podCIDRs at all. On any
//! other cluster, or if anything here fails, the allocator assigns it as usual: the
//! controller-manager's node IPAM, or the control-plane agents' (`agent::node_ipam`) where the
//! controller-manager runs without it (kubeboot's default; they also wait for the CSINode).

use std::time::Duration;

use anyhow::Context;
use components::names;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSINode;
use manifests::pod_cidr::NodeIpam;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// How often the Node (then its CSINode) is looked for: the kubelet reports Ready on the
/// update that follows the podCIDR, so every poll interval is added to node Ready.
const NODE_POLL: Duration = Duration::from_millis(100);

/// How long the podCIDR waits for the kubelet's CSINode ([`wait_for_csinode`]) at most: past
/// it, the podCIDR goes anyway, and the node is Ready on the kubelet's next regular update.
const CSINODE_WAIT: Duration = Duration::from_secs(5);

/// The `pod-cidr` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "pod-cidr",
        "Give this node the podCIDR the controller-manager would give it, as soon as it registers",
        run,
    )
    .flags(&["config", "node-name", "pod-network", "dry-run"])
    .hidden()
}

/// The podCIDRs of every Node but `me`.
fn others(nodes: &[Node], me: &str) -> Vec<Vec<String>> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .map(agent::node_network::pod_cidrs)
        .collect()
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let node_name = d.cfg.node.name.clone();
    // Observe: a kubelet that will register, and the controller-manager's node IPAM.
    if !d
        .fs
        .exists(&d.layout.kubelet_dir().join(names::KUBELET_CONFIG_FILE))
    {
        return Ok(());
    }
    let manifest = d
        .layout
        .manifests_dir()
        .join(format!("{}.yaml", names::KUBE_CONTROLLER_MANAGER));
    let Some(text) = d.fs.read_string_if_exists(&manifest)? else {
        return Ok(());
    };
    let Some(ipam) = controller_manager_ipam(&text) else {
        return Ok(());
    };
    if d.dry_run {
        say!(
            d.out,
            "dryrun",
            "Would give the Node {node_name:?} the podCIDR the controller-manager's range allocator chooses, once it registers"
        );
        return Ok(());
    }
    let out = d.out.clone();
    let bridge = d.pod_network == agent::cni::PodNetwork::Bridge;
    let conf_dir = d.layout.node_path(names::CNI_CONF_DIR);
    let fs = d.fs.clone();
    let layout = d.layout.clone();
    let c = d.cluster()?;
    let nodes: Vec<Node> = c.list(None, None)?;
    if let Some(me) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(&node_name))
        && !agent::node_network::pod_cidrs(me).is_empty()
    {
        return Ok(());
    }
    // Decide: only on a fresh cluster is the allocator's choice certain.
    if !others(&nodes, &node_name).is_empty() {
        return Ok(());
    }
    let Some(cidrs) = ipam.first_free(&[]) else {
        return Ok(());
    };
    let shown: Vec<String> = cidrs.iter().map(ToString::to_string).collect();

    // Act: the CNI configuration first, so the network is ready when the kubelet looks.
    if bridge {
        let path = conf_dir.join(names::KUBEBOOT_CNI_CONFLIST);
        let want = agent::cni::bridge_conflist(&shown[0]);
        let plugins = agent::cni::plugin_dir(&agent::cni::default_plugin_dirs(), |p| {
            layout.node_path(p).is_file()
        });
        // Without the plugins the agent says what is missing; it writes the file itself then.
        if plugins.is_ok() && fs.read_string_if_exists(&path)?.as_deref() != Some(want.as_str()) {
            fs.create_dir(&conf_dir, 0o755)?;
            fs.write_public(&path, want.as_bytes())
                .context("could not write the CNI configuration")?;
        }
    }
    register_then_patch(c, &out, &node_name, &shown, CSINODE_WAIT)
}

/// Waits for the kubelet to register `node_name`, then for its CSINode (at most
/// `csinode_wait`), then gives the Node `cidrs` unless it has a podCIDR or another Node
/// registered meanwhile.
fn register_then_patch(
    c: &crate::cluster::Cluster,
    out: &crate::out::Out,
    node_name: &str,
    cidrs: &[String],
    csinode_wait: Duration,
) -> anyhow::Result<()> {
    let node = c
        .wait_for_node_every(
            node_name,
            crate::init::mark_control_plane::PATCH_NODE_TIMEOUT,
            NODE_POLL,
            |elapsed| {
                say!(
                    out,
                    "pod-cidr",
                    "Still waiting for the kubelet to register the Node {node_name:?} ({} elapsed)",
                    crate::health::human(elapsed)
                );
            },
        )
        .context("the kubelet did not register this node; check that it runs (\"kubeboot agent status\") and its logs")?;
    if !agent::node_network::pod_cidrs(&node).is_empty() {
        return Ok(());
    }
    if let Err(last) = wait_for_csinode(c, node_name, csinode_wait) {
        tracing::info!(
            "the kubelet made no CSINode for {node_name:?} within {} ({last}): giving the podCIDR anyway",
            crate::health::human(csinode_wait)
        );
    }
    // Another Node may have registered meanwhile: then leave it to the allocator.
    let nodes: Vec<Node> = c.list(None, None)?;
    if !others(&nodes, node_name).is_empty() {
        return Ok(());
    }
    let patch = serde_json::json!({"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}});
    match c.patch_node(node_name, &patch) {
        Ok(_) => say!(
            out,
            "pod-cidr",
            "Gave the Node {node_name:?} the podCIDR {}, the controller-manager's range allocator's choice",
            cidrs.join(",")
        ),
        // The controller-manager may have been first (spec.podCIDR is set once): it keeps its
        // value, the same one unless it differs, and the agent follows the Node.
        Err(e) => tracing::info!("the podCIDR was not set here: {e:#}"),
    }
    Ok(())
}

/// Whether the kubelet's CSINode of `node_name` exists, polled for at most `timeout`. The
/// kubelet creates it once its Node is registered, and reports the node NotReady ("CSINode is
/// not yet initialized") until then (volume/csi csi_plugin.go initializeCSINode); its status
/// update right after it first sees a podCIDR is its only early one, so the podCIDR waits for
/// the CSINode. Past `timeout`, what the last look found: not there, or the error.
fn wait_for_csinode(
    c: &crate::cluster::Cluster,
    node_name: &str,
    timeout: Duration,
) -> Result<(), String> {
    let start = std::time::Instant::now();
    loop {
        let last = match c.get::<CSINode>(None, node_name) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => "not there yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(last);
        }
        std::thread::sleep(NODE_POLL.min(timeout - elapsed));
    }
}

/// The node IPAM of the controller-manager manifest `text`, or `None` when it allocates no
/// podCIDRs or does not parse.
fn controller_manager_ipam(text: &str) -> Option<NodeIpam> {
    agent::node_ipam::allocation_of_manifest(text)?
        .ipam()
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_node_ipam_of_the_manifest_init_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = crate::init::data::tests::test_data(dir.path());
        d.cfg.cluster.networking.pod_subnet = Some("10.244.0.0/16".parse().unwrap());
        let pods = crate::init::control_plane::pods(&d);
        let (_, cm) = pods
            .iter()
            .find(|(name, _)| *name == names::KUBE_CONTROLLER_MANAGER)
            .expect("a controller-manager pod");
        let ipam = controller_manager_ipam(&manifests::yaml::to_yaml(cm)).expect("allocates");
        assert_eq!(
            ipam.first_free(&[]).unwrap()[0].to_string(),
            "10.244.0.0/24"
        );
        d.cfg.cluster.networking.pod_subnet = None;
        let pods = crate::init::control_plane::pods(&d);
        let (_, cm) = pods
            .iter()
            .find(|(name, _)| *name == names::KUBE_CONTROLLER_MANAGER)
            .unwrap();
        assert_eq!(controller_manager_ipam(&manifests::yaml::to_yaml(cm)), None);
    }

    /// The requests `c` saw: verb and resource.
    fn requests(c: &crate::cluster::Cluster) -> Vec<String> {
        c.recorded()
            .iter()
            .map(|r| format!("{} {}", r.verb, r.resource))
            .collect()
    }

    #[test]
    fn the_pod_cidr_waits_for_the_kubelets_csinode() {
        use crate::cluster::Cluster;
        use crate::out::Out;
        let csinode = serde_json::json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
            "metadata": {"name": "me"}, "spec": {"drivers": []}
        });
        let c = Cluster::recording(Out::capture()).with_objects([csinode]);
        let cidrs = ["10.244.0.0/24".to_string()];
        register_then_patch(&c, &Out::capture(), "me", &cidrs, Duration::from_secs(30)).unwrap();
        assert_eq!(
            requests(&c),
            ["GET nodes", "GET csinodes", "LIST nodes", "PATCH nodes"]
        );
        let patch = c.recorded().last().and_then(|r| r.body.clone()).unwrap();
        assert_eq!(patch["spec"]["podCIDR"], "10.244.0.0/24");

        // No CSINode: the podCIDR goes anyway once the wait is over.
        let c = Cluster::recording(Out::capture());
        let wait = Duration::from_millis(350);
        let start = std::time::Instant::now();
        register_then_patch(&c, &Out::capture(), "me", &cidrs, wait).unwrap();
        assert!(start.elapsed() >= wait);
        let seen = requests(&c);
        assert_eq!(seen.first().map(String::as_str), Some("GET nodes"));
        assert_eq!(seen.last().map(String::as_str), Some("PATCH nodes"));
        assert!(
            seen.iter().filter(|r| *r == "GET csinodes").count() >= 3,
            "{seen:?}"
        );
    }

    #[test]
    fn a_node_counts_its_pod_cidrs_or_its_single_pod_cidr() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.3.0/24"}
        }))
        .unwrap();
        let me: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "me"}})).unwrap();
        assert_eq!(
            others(&[n, me], "me"),
            vec![vec!["10.244.3.0/24".to_string()]]
        );
    }
}
