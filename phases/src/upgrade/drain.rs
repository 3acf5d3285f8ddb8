//! `upgrade node --drain`: what kubeadm's upgrade docs tell users to do by hand around
//! `kubeadm upgrade node` (`kubectl drain <node> --ignore-daemonsets`, then `kubectl uncordon`):
//! the node is cordoned, its pods are evicted through the Eviction API (so PodDisruptionBudgets
//! hold), except DaemonSet pods and mirror pods (static pods: they stay, as kubectl drain
//! leaves them), and it is uncordoned once the upgrade succeeded.

use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;

use crate::cluster::{Cluster, Eviction};
use crate::out::Out;
use crate::say;

/// kubelet's annotation on mirror pods.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether `drain` evicts `pod`: not a mirror pod, not a DaemonSet's, not finished.
pub fn evictable(pod: &Pod) -> bool {
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet");
    let done = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !mirror && !daemon && !done
}

fn pods_on(api: &Cluster, node: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(api
        .list::<Pod>(None, Some(&format!("spec.nodeName={node}")))?
        .into_iter()
        .filter(evictable)
        .collect())
}

fn key(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

/// Cordons `node` and evicts its pods, waiting up to `timeout` for them to be gone.
///
/// # Errors
/// The API refused, or pods are still there at the deadline (a PodDisruptionBudget that never
/// allows the eviction): the node stays cordoned, nothing of the upgrade has changed yet.
pub fn cordon_and_drain(
    api: &Cluster,
    node: &str,
    timeout: Duration,
    out: &Out,
) -> anyhow::Result<()> {
    say!(out, "upgrade/drain", "Cordoning the node {node:?}");
    api.patch_node(node, &serde_json::json!({"spec": {"unschedulable": true}}))?;
    let start = Instant::now();
    let mut last_report = start;
    loop {
        let pods = pods_on(api, node)?;
        if pods.is_empty() {
            say!(out, "upgrade/drain", "Drained the node {node:?}");
            return Ok(());
        }
        // As kubectl drain without --force: a pod no controller owns would never come back.
        let unmanaged: Vec<String> = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.iter().all(|r| r.controller != Some(true)))
            })
            .map(|p| {
                let (n, m) = key(p);
                format!("{n}/{m}")
            })
            .collect();
        if !unmanaged.is_empty() {
            anyhow::bail!(
                "the node {node:?} stays cordoned and was not drained: {} belong to no controller (ReplicaSet, Job, StatefulSet, ...) and would be gone for good; delete them or move them yourself, then run the upgrade again",
                unmanaged.join(", ")
            );
        }
        let mut blocked = Vec::new();
        for p in &pods {
            let (ns, name) = key(p);
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api.evict(&ns, &name)? {
                Eviction::Evicted => say!(out, "upgrade/drain", "Evicting pod {ns}/{name}"),
                Eviction::Gone => {}
                Eviction::Refused(why) => blocked.push(format!("{ns}/{name}: {why}")),
            }
        }
        if start.elapsed() >= timeout {
            let left: Vec<String> = pods
                .iter()
                .map(|p| {
                    let (n, m) = key(p);
                    format!("{n}/{m}")
                })
                .collect();
            anyhow::bail!(
                "the node {node:?} could not be drained within {}: {} still there{}; the node stays cordoned and nothing else changed: fix what keeps them (a PodDisruptionBudget?), or upgrade without --drain",
                crate::health::human(timeout),
                left.join(", "),
                if blocked.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", blocked.join("; "))
                }
            );
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            say!(
                out,
                "upgrade/drain",
                "Waiting for {} pod(s) to leave the node",
                pods.len()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Uncordons `node`.
///
/// # Errors
/// The API refused.
pub fn uncordon(api: &Cluster, node: &str, out: &Out) -> anyhow::Result<()> {
    api.patch_node(node, &serde_json::json!({"spec": {"unschedulable": null}}))
        .with_context(|| {
            format!("could not uncordon the node {node:?}: run \"kubectl uncordon {node}\"")
        })?;
    say!(out, "upgrade/drain", "Uncordoned the node {node:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod() -> Pod {
        Pod::default()
    }

    #[test]
    fn mirror_daemonset_and_finished_pods_stay() {
        assert!(evictable(&pod()));
        let mut mirror = pod();
        mirror.metadata.annotations =
            Some([(MIRROR_ANNOTATION.to_string(), "x".to_string())].into());
        assert!(!evictable(&mirror));
        let mut ds = pod();
        ds.metadata.owner_references = Some(vec![OwnerReference {
            kind: "DaemonSet".into(),
            ..Default::default()
        }]);
        assert!(!evictable(&ds));
        let mut rs = pod();
        rs.metadata.owner_references = Some(vec![OwnerReference {
            kind: "ReplicaSet".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(evictable(&rs));
        let mut done = pod();
        done.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert!(!evictable(&done));
    }
}
