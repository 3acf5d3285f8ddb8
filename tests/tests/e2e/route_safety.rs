//! Scenario: Node objects cannot bend the node's routing. After `kubeboot init` (bridge pod
//! network, pod subnet 10.244.0.0/16 in /24s), Node objects with no kubelet behind them are
//! created with admin.conf, claiming as podCIDR half the internet (`0.0.0.0/1`), the node's own
//! LAN subnet, the service CIDR, a podCIDR behind an off-link InternalIP, a podCIDR someone
//! else routes already (a `proto static` route the test adds first), and one legitimate
//! podCIDR with an InternalIP on the node's subnet. The agent routes the legitimate one only,
//! with protocol 77; the default route, the LAN route and the foreign route are unchanged;
//! each refusal is logged once; when the Nodes are deleted, the agent's route goes and the
//! foreign one stays.
//!
//! Every gateway is an unused address of the node's own subnet, inside the hub that has no
//! uplink, and nothing is sent to the routed podCIDRs.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tests::{Node, bin_dir, require_root, step, wait_until};

const POD_SUBNET: &str = "10.244.0.0/16";
const SERVICE_SUBNET: &str = "10.96.0.0/12";
/// The legitimate podCIDR and its Node's InternalIP (no slot of `Node::allocate` uses
/// 10.124.255.x).
const LEGIT: (&str, &str) = ("10.244.77.0/24", "10.124.255.247");
/// A podCIDR someone else routes already, and that route's gateway.
const FOREIGN: (&str, &str) = ("10.244.88.0/24", "10.124.255.253");

/// The network of an `a.b.c.d/len` node address (`10.124.0.5/16` -> `10.124.0.0/16`).
fn network_of(cidr: &str) -> Result<String> {
    let (addr, len) = cidr.split_once('/').context("address without prefix")?;
    let addr: std::net::Ipv4Addr = addr.parse()?;
    let len: u32 = len.parse()?;
    ensure!(len <= 32, "prefix {len}");
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ok(format!(
        "{}/{len}",
        std::net::Ipv4Addr::from(u32::from(addr) & mask)
    ))
}

/// The Nodes to create: (name, podCIDR, InternalIP, routed?).
fn fake_nodes(lan: &str) -> Vec<(&'static str, String, &'static str, bool)> {
    vec![
        (
            "fake-half-internet",
            "0.0.0.0/1".into(),
            "10.124.255.250",
            false,
        ),
        ("fake-lan", lan.to_string(), "10.124.255.249", false),
        (
            "fake-services",
            SERVICE_SUBNET.into(),
            "10.124.255.248",
            false,
        ),
        (
            "fake-off-link",
            "10.244.66.0/24".into(),
            "172.16.0.9",
            false,
        ),
        ("fake-foreign", FOREIGN.0.into(), "10.124.255.246", false),
        ("fake-legit", LEGIT.0.into(), LEGIT.1, true),
    ]
}

/// A YAML List of Node objects with `spec.podCIDR` and an InternalIP (a Node's status is
/// kept on create).
fn nodes_yaml(nodes: &[(&str, String, &str, bool)]) -> String {
    let mut y = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for (name, cidr, ip, _) in nodes {
        y += &format!(
            "- apiVersion: v1\n  kind: Node\n  metadata:\n    name: {name}\n  spec:\n    podCIDR: \"{cidr}\"\n  status:\n    addresses:\n    - type: InternalIP\n      address: \"{ip}\"\n"
        );
    }
    y
}

/// The lines of `ip -4 route show <selector>` inside the node, trimmed.
fn routes(node: &Node, selector: &[&str]) -> Result<Vec<String>> {
    let mut argv = vec!["ip", "-4", "route", "show"];
    argv.extend_from_slice(selector);
    Ok(node
        .exec_ok(&argv)?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// The default route and the LAN route of the main table.
fn base_routes(node: &Node, lan: &str) -> Result<Vec<String>> {
    let mut all = routes(node, &["table", "main", "exact", "0.0.0.0/0"])?;
    all.extend(routes(node, &["table", "main", "exact", lan])?);
    ensure!(all.len() == 2, "default and LAN routes: {all:?}");
    Ok(all)
}

#[test]
#[ignore = "needs KUBEBOOT_BIN_DIR"]
fn route_safety() -> Result<()> {
    step("running as root", require_root)?;
    let bin = step("real binaries present", bin_dir)?;
    let bin = bin.to_string_lossy().to_string();
    let node = step("create node", || Node::allocate("route-safety"))?;
    let lan = network_of(node.cidr())?;

    step("kubeboot init", || {
        let config = node.write_init_config(POD_SUBNET)?;
        let out = node.kubeboot_ok(&["init", "--config", &config, "--bin-dir", &bin])?;
        ensure!(
            out.contains("Your Kubernetes control-plane has initialized successfully!"),
            "init output:\n{out}"
        );
        Ok(())
    })?;
    let before = step("the node's default and LAN routes", || {
        base_routes(&node, &lan)
    })?;
    step(
        "a route someone else made for a podCIDR-like subnet",
        || {
            node.exec_ok(&[
                "ip", "route", "add", FOREIGN.0, "via", FOREIGN.1, "proto", "static",
            ])?;
            Ok(())
        },
    )?;

    let fakes = fake_nodes(&lan);
    step("Node objects with hostile and legitimate podCIDRs", || {
        const PATH: &str = "/var/lib/kubeboot/e2e-fake-nodes.yaml";
        node.exec_ok(&[
            "sh",
            "-c",
            "printf '%s' \"$1\" >\"$2\"",
            "sh",
            &nodes_yaml(&fakes),
            PATH,
        ])?;
        node.kubectl_ok(&["create", "-f", PATH])?;
        for (name, cidr, ip, _) in &fakes {
            let n = node.kubectl_json(&["get", "node", name])?;
            ensure!(
                n["spec"]["podCIDR"] == cidr.as_str()
                    && n["status"]["addresses"][0]["address"] == *ip,
                "node {name} as stored: {n}"
            );
        }
        Ok(())
    })?;

    step("the legitimate podCIDR gets a proto 77 route", || {
        // `ip route show proto 77` leaves the protocol out of each line.
        let want = format!("{} via {} dev eth0", LEGIT.0, LEGIT.1);
        wait_until(
            "the agent routes the legitimate podCIDR",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || Ok(routes(&node, &["proto", "77"])?.contains(&want)),
        )
    })?;

    step("nothing else is routed and nothing else changed", || {
        // Past at least two more passes of the agent's loop.
        std::thread::sleep(Duration::from_secs(35));
        let ours = routes(&node, &["proto", "77"])?;
        ensure!(
            ours == [format!("{} via {} dev eth0", LEGIT.0, LEGIT.1)],
            "kubeboot's routes: {ours:?}"
        );
        for (name, cidr, _, routed) in &fakes {
            let exact = routes(&node, &["table", "main", "exact", cidr])?;
            match (*routed, *name) {
                (true, _) => ensure!(
                    exact.len() == 1 && exact[0].ends_with("proto 77"),
                    "{name}: {exact:?}"
                ),
                (false, "fake-lan") => ensure!(
                    exact.iter().all(|l| l.contains("proto kernel")),
                    "the LAN route was touched: {exact:?}"
                ),
                (false, "fake-foreign") => ensure!(
                    exact
                        == [format!(
                            "{} via {} dev eth0 proto static",
                            FOREIGN.0, FOREIGN.1
                        )],
                    "the foreign route was replaced: {exact:?}"
                ),
                (false, _) => ensure!(exact.is_empty(), "{name} ({cidr}) routed: {exact:?}"),
            }
        }
        let after = base_routes(&node, &lan)?;
        ensure!(after == before, "before: {before:?}\nafter: {after:?}");
        Ok(())
    })?;

    step(
        "each refusal is logged once, naming the node and the reason",
        || {
            let log = node.read_file("/var/log/kubeboot/agent.log")?;
            for (name, why) in [
                ("fake-half-internet", "is outside the cluster's pod subnet"),
                ("fake-lan", "is outside the cluster's pod subnet"),
                ("fake-services", "is outside the cluster's pod subnet"),
                (
                    "fake-off-link",
                    "which is in no subnet this node is connected to",
                ),
                ("fake-foreign", "by a route kubeboot did not create"),
            ] {
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("no route to the pods of node") && l.contains(name))
                    .collect();
                ensure!(
                    lines.len() == 1 && lines[0].contains(why),
                    "refusal of {name} logged {} times (want once, with {why:?}):\n{}",
                    lines.len(),
                    lines.join("\n")
                );
            }
            Ok(())
        },
    )?;

    step("deleting the Nodes removes the agent's route only", || {
        let names: Vec<&str> = fakes.iter().map(|f| f.0).collect();
        let mut argv = vec!["delete", "node"];
        argv.extend(names);
        node.kubectl_ok(&argv)?;
        wait_until(
            "the agent removes its route",
            Duration::from_secs(120),
            Duration::from_secs(2),
            || Ok(routes(&node, &["proto", "77"])?.is_empty()),
        )?;
        let foreign = routes(&node, &["table", "main", "exact", FOREIGN.0])?;
        ensure!(
            foreign
                == [format!(
                    "{} via {} dev eth0 proto static",
                    FOREIGN.0, FOREIGN.1
                )],
            "the foreign route: {foreign:?}"
        );
        let after = base_routes(&node, &lan)?;
        ensure!(after == before, "before: {before:?}\nafter: {after:?}");
        Ok(())
    })?;
    node.destroy()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn network_of_masks_the_host_bits() {
        assert_eq!(network_of("10.124.3.7/16").unwrap(), "10.124.0.0/16");
        assert_eq!(network_of("10.123.0.11/24").unwrap(), "10.123.0.0/24");
        assert!(network_of("10.1.1.1").is_err());
    }
}
