//! `init phase mark-control-plane`: waits for this node's Node object, then labels and
//! taints it as a control-plane node and records its CRI socket (kubeadm:
//! app/cmd/phases/init/markcontrolplane.go, phases/markcontrolplane, phases/patchnode).
//!
//! The Node is registered by the kubelet that `kubelet-start` starts. Without a kubelet
//! configuration on this node there is nothing to wait for: the phase says so and skips.
//! kubeadm annotates the CRI socket in `upload-config/kubelet`; kubeboot does it here, in the
//! same patch, so that only one phase waits for the Node.

use std::time::Duration;

use anyhow::Context;
use components::names;
use manifests::cluster;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// How long to wait for the Node (kubeadm: constants.PatchNodeTimeout).
pub const PATCH_NODE_TIMEOUT: Duration = Duration::from_secs(120);

/// The `mark-control-plane` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new("mark-control-plane", "Mark a node as a control-plane", run).flags(&[
        "node-name",
        "config",
        "dry-run",
    ])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let cfg = d.cfg.clone();
    let out = d.out.clone();
    let node_name = cfg.node.name.clone();
    let kubelet_config = d.layout.kubelet_dir().join(names::KUBELET_CONFIG_FILE);
    if !d.fs.exists(&kubelet_config) {
        say!(
            out,
            "mark-control-plane",
            "WARNING: skipping: no kubelet is configured on this node ({:?} is missing), so no Node {:?} will register; run \"kubeboot init phase kubelet-start\", then \"kubeboot init phase mark-control-plane\"",
            kubelet_config.display().to_string(),
            node_name
        );
        return Ok(());
    }
    let version = &cfg.cluster.kubernetes_version;
    let labels = cluster::control_plane_labels(version);
    let taints = cfg
        .node
        .taints
        .clone()
        .unwrap_or_else(|| cluster::default_control_plane_taints(version));
    if version.at_least(1, 24) {
        say!(
            out,
            "mark-control-plane",
            "Marking the node {node_name} as control-plane by adding the labels: [{}]",
            labels.join(" ")
        );
    } else {
        // kubeadm 1.20's words, "(deprecated)" on the wrong label included.
        say!(
            out,
            "mark-control-plane",
            "Marking the node {node_name} as control-plane by adding the labels \"{}=''\" and \"{}='' (deprecated)\"",
            names::LABEL_NODE_ROLE_MASTER,
            names::LABEL_NODE_ROLE_CONTROL_PLANE
        );
    }
    if !taints.is_empty() {
        let shown: Vec<String> = taints.iter().map(cluster::taint_string).collect();
        say!(
            out,
            "mark-control-plane",
            "Marking the node {node_name} as control-plane by adding the taints [{}]",
            shown.join(" ")
        );
    }
    let kubelet_kubeconfig = d.layout.kubeconfig(names::KUBELET_KUBECONFIG);
    let c = d.cluster()?;
    let node = c
        .wait_for_node(&node_name, PATCH_NODE_TIMEOUT, |elapsed| {
            say!(
                out,
                "mark-control-plane",
                "Still waiting for the kubelet to register the Node {node_name:?} ({} elapsed)",
                crate::health::human(elapsed)
            );
        })
        .with_context(|| {
            format!(
                "the kubelet did not register this node; check that it runs (\"kubeboot agent status\"), its logs, and that it reaches the API server with {:?}",
                kubelet_kubeconfig.display().to_string()
            )
        })?;
    let patch =
        cluster::mark_control_plane_patch(&node, &labels, &taints, cfg.node.cri_socket.as_deref());
    c.patch_node(&node_name, &patch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::init::data::tests::test_data;

    #[test]
    fn skips_with_a_warning_without_a_kubelet() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        d.api = Some(Cluster::recording(d.out.clone()));
        run(&mut d).expect("skips");
        assert!(d.out.captured().contains("WARNING: skipping: no kubelet"));
        assert!(d.api.as_ref().unwrap().recorded().is_empty());
    }

    #[test]
    fn labels_and_taints_the_node_as_kubeadm_1_20() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = test_data(dir.path());
        let cfg = d.layout.kubelet_dir().join(names::KUBELET_CONFIG_FILE);
        d.fs.create_dir(&d.layout.kubelet_dir(), 0o700).unwrap();
        d.fs.write_public(&cfg, b"kind: KubeletConfiguration\n")
            .unwrap();
        d.api = Some(Cluster::recording(d.out.clone()));
        run(&mut d).expect("marks");
        let out = d.out.captured();
        assert!(out.contains("[mark-control-plane] Marking the node node1 as control-plane by adding the labels \"node-role.kubernetes.io/master=''\" and \"node-role.kubernetes.io/control-plane='' (deprecated)\""), "{out}");
        assert!(out.contains("[mark-control-plane] Marking the node node1 as control-plane by adding the taints [node-role.kubernetes.io/master:NoSchedule]"), "{out}");
        let rec = d.api.as_ref().unwrap().recorded();
        let verbs: Vec<&str> = rec.iter().map(|r| r.verb.as_str()).collect();
        assert_eq!(verbs, vec!["GET", "PATCH"]);
        assert_eq!(
            rec[1].body.as_ref().unwrap()["metadata"]["labels"]["node-role.kubernetes.io/master"],
            ""
        );
    }
}
