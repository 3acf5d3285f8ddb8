//! The agent's status as phases quote it in their messages.

use agent::status::AgentStatus;

/// What the agent knows of a static pod's containers, one line each: state, reason, restarts,
/// last exit and failing probes. The pod is matched by the component name (`kube-apiserver`
/// matches `kube-apiserver-node1`).
pub fn describe(status: &AgentStatus, component: &str) -> Vec<String> {
    let prefix = format!("{component}-");
    let ours = |p: &&agent::status::PodStatus| {
        p.namespace == components::names::KUBE_SYSTEM
            && (p.name == component || p.name.starts_with(&prefix))
    };
    // A replaced pod may still be terminating beside its successor: the successor is it.
    let Some(pod) = (status.pods.iter().filter(ours)).min_by_key(|p| p.phase == "Terminating")
    else {
        let mut lines = vec![format!(
            "no pod for {component} (is its manifest in {}?)",
            status.manifest_dir
        )];
        lines.extend(
            status
                .manifest_errors
                .iter()
                .map(|e| format!("manifest {}: {}", e.manifest, e.message)),
        );
        return lines;
    };
    let mut lines = Vec::new();
    if let Some(reason) = &pod.reason {
        lines.push(format!("pod {} is {}: {reason}", pod.name, pod.phase));
    }
    for c in &pod.containers {
        let mut line = format!("container {} is {}", c.name, c.state);
        if let Some(r) = &c.reason {
            line.push_str(&format!(" ({r})"));
        }
        if let Some(m) = &c.message {
            line.push_str(&format!(": {m}"));
        }
        line.push_str(&format!("; restarts {}", c.restart_count));
        if let Some(code) = c.last_exit_code {
            line.push_str(&format!("; last exit code {code}"));
            if let Some(r) = &c.last_exit_reason {
                line.push_str(&format!(" ({r})"));
            }
        }
        lines.push(line);
        for p in c.probes.iter().filter(|p| p.last_ok == Some(false)) {
            lines.push(format!(
                "{:?} probe of {} failing: {}",
                p.kind,
                c.name,
                p.last_message.as_deref().unwrap_or("no message")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::status::{ContainerStatus, PodStatus};

    fn pod(phase: &str, state: &str) -> PodStatus {
        PodStatus {
            namespace: "kube-system".into(),
            name: "kube-apiserver-node1".into(),
            phase: phase.into(),
            containers: vec![ContainerStatus {
                name: "kube-apiserver".into(),
                state: state.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_successor_is_described_not_the_pod_it_replaces() {
        let status = AgentStatus {
            pods: vec![pod("Terminating", "terminated"), pod("Pending", "waiting")],
            ..Default::default()
        };
        assert_eq!(
            describe(&status, "kube-apiserver"),
            ["container kube-apiserver is waiting; restarts 0"]
        );
        assert!(describe(&status, "etcd")[0].starts_with("no pod for etcd"));
    }
}
