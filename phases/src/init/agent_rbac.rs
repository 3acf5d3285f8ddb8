//! `init phase agent-rbac`: lets the kubeboot agents publish their static pods to the API
//! (no kubeadm equivalent: the kubelet publishes mirror pods with its node identity). The
//! agent authenticates with `/etc/kubernetes/kubeboot-agent.conf` (`kubeconfig/agent`) as
//! `kubeboot:agent:<node>` in the group `kubeboot:agents`; this phase creates the ClusterRole
//! `kubeboot:agent` and binds it to that group in kube-system only. The agent publishes as soon
//! as both exist; until then it retries quietly.

use components::names;
use manifests::agent_rbac;

use crate::init::data::InitData;
use crate::runner::Phase;
use crate::say;

/// The `agent-rbac` phase.
pub fn phase() -> Phase<InitData> {
    Phase::new(
        "agent-rbac",
        "Allow the kubeboot agents to publish their static Pods to the API",
        run,
    )
    .flags(&["config", "kubeconfig", "dry-run"])
}

fn run(d: &mut InitData) -> anyhow::Result<()> {
    let out = d.out.clone();
    let c = d.cluster()?;
    c.create_or_update(&agent_rbac::agent_cluster_role())?;
    c.create_or_update(&agent_rbac::agent_role_binding(names::KUBE_SYSTEM))?;
    say!(
        out,
        "agent-rbac",
        "Allowed the kubeboot agents (group {:?}) to publish their static Pods in namespace {}",
        names::KUBEBOOT_AGENTS_GROUP,
        names::KUBE_SYSTEM
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::init::data::tests::test_data;

    #[test]
    fn creates_the_role_and_its_kube_system_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = test_data(dir.path());
        d.api = Some(Cluster::recording(d.out.clone()));
        run(&mut d).expect("runs");
        let rec = d.api.as_ref().expect("api").recorded();
        let writes: Vec<(String, String, Option<String>, Option<String>)> = rec
            .iter()
            .filter(|r| r.verb != "GET")
            .map(|r| {
                (
                    r.verb.clone(),
                    r.resource.clone(),
                    r.namespace.clone(),
                    r.body
                        .as_ref()
                        .and_then(|b| b["metadata"]["name"].as_str())
                        .map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            writes,
            vec![
                (
                    "CREATE".to_string(),
                    "clusterroles".to_string(),
                    None,
                    Some("kubeboot:agent".to_string())
                ),
                (
                    "CREATE".to_string(),
                    "rolebindings".to_string(),
                    Some("kube-system".to_string()),
                    Some("kubeboot:agent".to_string())
                ),
            ],
            "{rec:?}"
        );
        let out = d.out.captured();
        assert!(
            out.contains("[agent-rbac] Allowed the kubeboot agents (group \"kubeboot:agents\")"),
            "{out}"
        );
    }
}
